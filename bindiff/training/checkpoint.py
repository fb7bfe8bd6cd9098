"""Checkpoints that load with ``torch.load(weights_only=True)``: tensors and plain values only.

The config travels as YAML text, never as a pickled object, so a checkpoint from someone
else can be opened without running their code. A checkpoint that holds anything else (a
pickled class, a numpy array) is refused with a message naming the file and what it holds.

``last.pt`` is also the resume point of a run: besides the model and optimiser it holds the
epoch, the optimiser step, the best metric so far, the early-stopping state, the history so
far and every random-number state training draws from (see :func:`capture_rng` and
:class:`bindiff.training.trainer.TrainState`). Every file is written to a temporary name and
renamed into place (:func:`bindiff.files.atomic_path`), so a crash at any moment leaves
either the previous checkpoint or the new one under the final name, never a truncated file.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from .. import __version__
from ..config import RecipeError
from ..files import CheckpointError, atomic_path  # noqa: F401 - CheckpointError: its old home
from ..plugins import ENV as PLUGINS_ENV

FORMAT_VERSION = 1
RESUME_KEYS = ("epoch", "step", "best", "epochs_since_best", "history", "rng", "optimizer", "done", "seconds")


def save_checkpoint(path: str | Path, *, config_yaml: str, model: torch.nn.Module, dim: int, **state) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "bindiff_version": __version__,
        "config_yaml": config_yaml,
        "dim": int(dim),
        "code_modules": code_modules(model),
        "model": model.state_dict(),
        **state,
    }
    # streamed through a writer that keeps what a write raised: torch's own writer reports a full disk,
    # and a Ctrl-C or SIGTERM arriving during a write, as a RuntimeError ("unexpected pos"), which
    # ended a stopped run with a traceback and exit 1; serialising into memory first doubled the peak memory
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        writer = _KeepsError(file)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise


def code_modules(model: torch.nn.Module) -> list[str]:
    """The modules, outside bindiff and torch, that define the model's layers: a plugin's denoiser,
    model or task. A run records them, so that a process which reads the run without them is told
    which to load instead of meeting an unknown name."""
    ours = ("bindiff", "torch", "__main__")  # __main__: a script's or notebook's own, never importable
    return sorted({type(layer).__module__ for layer in model.modules()
                   if type(layer).__module__.split(".")[0] not in ours})


class _KeepsError(io.RawIOBase):
    """``file`` for torch.save, remembering what a write raised (torch turns it into a RuntimeError):
    an OSError, or the KeyboardInterrupt or SystemExit of a signal that arrived during the write."""

    def __init__(self, file):
        super().__init__()
        self.file, self.error = file, None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except (OSError, KeyboardInterrupt, SystemExit) as err:
            self.error = err
            raise


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def state_dict_mismatch(err: BaseException) -> str:
    """The first mismatch of a failed ``load_state_dict`` ("size mismatch for layers.0.weight: ..."),
    not torch's heading ("Error(s) in loading state_dict for X:"), which names none."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        return lines[1]
    return lines[0] if lines else type(err).__name__


def load_checkpoint(path: str | Path, map_location="cpu", mmap: bool = False) -> dict:
    """Load a bindiff checkpoint with ``weights_only=True``; CheckpointError if unusable.

    ``mmap``: the tensors stay in the file, mapped, until read: a scorer that needs the model's
    weights never reads the optimiser's moments (two thirds of a checkpoint) into memory."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        # torch maps only its zip format; any other file is read (and refused) as before. Not on
        # Windows, where a mapped file cannot be replaced: a run still training could not write best.pt
        payload = torch.load(path, map_location=map_location, weights_only=True,
                             mmap=mmap and sys.platform != "win32" and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)", str(err))  # two phrasings across torch versions
        if not found:  # random bytes, a truncated file: nothing that would run
            # torch's own first line advises weights_only=False, which bindiff never does: give its reason only
            reason = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(err))
            raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a torch file: "
                                  f"{reason.group(1) if reason else 'it does not unpickle'})") from None
        raise CheckpointError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain values "
            f"(a pickled {found.group(1)}); loading it would run code from the file"
        ) from None
    except Exception as err:  # noqa: BLE001 - any failure to parse an untrusted file is bad input
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or not a torch file: {_first_line(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a bindiff checkpoint of format {FORMAT_VERSION}")
    for key, kind in (("config_yaml", str), ("dim", int), ("model", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(f"{path}: key '{key}' is missing or not a {kind.__name__}")
    modules = payload.get("code_modules", [])  # absent from the checkpoints of bindiff before 2026-12-07
    if not isinstance(modules, list) or not all(isinstance(name, str) for name in modules):
        raise CheckpointError(f"{path}: key 'code_modules' is not a list of module names")
    return payload


@contextmanager
def naming_missing_code(payload: dict, where: str = "") -> Iterator[None]:
    """Around reading a checkpoint's config or building its model: a RecipeError (an unknown denoiser,
    model or task) becomes a CheckpointError that also names the modules the model was built from
    that this process has not imported, and the ``BINDIFF_PLUGINS`` naming them beside those already
    named. Only a hint: without such a module the error passes as it was (a module may be importable
    under another name, or register nothing the run needs)."""
    try:
        yield
    except RecipeError as err:
        missing = [name for name in payload.get("code_modules", []) if name not in sys.modules]
        if not missing:
            raise
        named = [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]
        raise CheckpointError(f"{where}{err}; its model was built by code in {', '.join(map(repr, missing))}, which "
                              f"this process has not imported: set {PLUGINS_ENV}={','.join(named + missing)} for the "
                              "bindiff command (or import it first, from Python)") from None


def check_resumable(payload: dict, path: str | Path) -> None:
    """CheckpointError unless ``payload`` carries everything a resume needs."""
    missing = [key for key in RESUME_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: cannot resume from this checkpoint: key(s) {missing} missing")
    rng = payload["rng"]
    if not isinstance(rng, dict) or not {"order", "noise", "torch"} <= set(rng):
        raise CheckpointError(f"{path}: cannot resume from this checkpoint: random-number states incomplete")


# -- random-number states as tensors and plain values ----------------------------------------


def _training_gpu(generators: dict[str, torch.Generator]) -> torch.device | None:
    """The GPU training draws on (its own generators' device), or None on the CPU."""
    return next((gen.device for gen in generators.values() if gen.device.type == "cuda"), None)


def capture_rng(generators: dict[str, torch.Generator]) -> dict:
    """Every random state training draws from, in a form ``weights_only`` loads: its own generators
    (with the type of device each draws on), torch's global one, and on CUDA that GPU's default
    generator (dropout layers draw from them, inside the run's forked state). Only the training
    GPU's: in several processes each rank trains on its own GPU, with the same state as rank 0's,
    which alone writes checkpoints; the others' GPUs as rank 0 sees them were never drawn from.
    numpy's and Python's global states are not kept: nothing in training draws from them, and
    restoring them on resume would overwrite the caller's (checkpoints up to December 2026 hold
    them; they are ignored)."""
    gpu = _training_gpu(generators)
    return {
        **{name: gen.get_state() for name, gen in generators.items()},
        "devices": {name: gen.device.type for name, gen in generators.items()},
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(gpu)] if gpu is not None else [],
    }


def saved_device_types(state: dict) -> dict[str, str]:
    """The device type each generator of a saved state drew on. Checkpoints before December 2026
    do not say: a CUDA generator's state is its seed and offset (16 bytes), a CPU one's 5056 bytes."""
    if isinstance(state.get("devices"), dict):
        return dict(state["devices"])
    return {name: "cuda" if value.numel() == 16 else "cpu" for name, value in state.items()
            if name not in ("torch", "cuda", "numpy", "python", "devices") and isinstance(value, torch.Tensor)}


def restore_rng(state: dict, generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng`."""
    for name, gen in generators.items():
        gen.set_state(state[name].cpu())
    torch.set_rng_state(state["torch"].cpu())
    gpu = _training_gpu(generators)
    if state.get("cuda") and gpu is not None:
        # the first entry: the training GPU's, or (a list of every GPU, before December 2026) rank 0's
        torch.cuda.set_rng_state(state["cuda"][0].cpu(), gpu)


# -- one process per run directory -------------------------------------------------------------


LOCK_NAME = ".bindiff.lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory while training writes into it.

    ``filelock`` on ``<run>/.bindiff.lock`` (an OS lock on every platform): the system drops it
    when the process dies (even by SIGKILL), so a killed run never leaves a stale lock, while a
    second ``bindiff`` resuming a run that is still training is refused.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(Path(run_dir) / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CheckpointError(
            f"{run_dir}: another bindiff process is training in this run directory; "
            "wait for it to finish or stop it first"
        ) from None
    try:
        yield
    finally:
        lock.release()


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries left by writes a crash interrupted (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for path in folder.glob(".*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
