"""The lifecycle every task shares, written once: a task (``tasks/<task>/job.py``) says only what
is particular to it.

Training a recipe (``train``):
    threads → processes and device → the model kind (refused before any data are read) → the
    task's data → model and optimiser from the recipe seed → the task's checks of the recipe
    against the data → a fresh run directory (``create_run_dir``: config.yaml, overrides.txt)
    → the task's data saved in ``split/`` → ``fit`` (or a closed-form fit) with the task's
    validation, checkpoints after every epoch → the task's companions (``Task.companions``:
    further models, e.g. a deterministic baseline, fitted the same way on the same rows and
    budget into ``checkpoints/<name>/``) → the task's evaluation of the best checkpoints
    → ``finish_run``: history.json, training_curve.png, and
    metrics.json last (its presence marks a finished run).
Resuming (``resume``) takes the same path from the run's own config, data and ``last.pt``.
Scoring a trained run again (``rescoring_config``) accepts overrides of the keys the task
names in ``rescore_keys`` only: how a model is scored, never what was trained.

Every model a task trains is described by a ``ModelKind`` (how to build it, how it is fitted,
whether it trains on several processes), so the lifecycle never asks for a model's class.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import threading
import time
import zlib
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse as sp
import torch
import yaml
from torch import nn

from ..config import RecipeError, argument, dump_recipe, parse_override, recipe_from_text, refuse_one_string
from ..config.recipe import with_key
from ..files import OutputError, write_json
from ..plots import plot_training_curve
from ..progress import log, log_lines, warn
from ..runs import create_run_dir, flatten, read_run, remove_unfinished_run, run_config_text
from ..training import distributed
from ..training.checkpoint import (CheckpointError, check_resumable, load_checkpoint, naming_missing_code,
                                  remove_stale_temporaries, run_lock, saved_device_types, state_dict_mismatch)
from ..training.closed_form import fit_closed_form_run
from ..training.devices import device_of, resolve_device, seed_training
from ..training.distributed import Workers
from ..training.loggers import check_logger, open_logger
from ..training.optim import build_optimizer
from ..training.trainer import TrainResult, fit


@dataclass(frozen=True)
class ModelKind:
    """What the lifecycle knows of a model: one entry of a task's model registry.

    ``build(config, dim, training)`` returns the untrained model over ``dim`` bits (``training``:
    True while fitting, where its loss may draw times from the recipe's mixture; False for a model
    read back to be used, whose loss draws them uniformly; the weights are the same); ``fitting`` is
    ``"gradient"`` (``fit`` with the recipe's optimiser) or ``"closed_form"`` (the model's
    ``fit_closed_form(train, evaluate_valid)``, once); ``parallel``: may train on several
    processes.
    """

    name: str
    build: Callable[..., nn.Module]
    fitting: str = "gradient"
    parallel: bool = False
    description: str = ""


@dataclass(frozen=True)
class Companion:
    """A further model a task trains in every run beside its own, on the same rows, split, seed and
    ``train`` budget (a baseline the evaluation compares with). It is fitted after the main model
    into ``checkpoints/<name>/`` (history in ``history_<name>.json``) and resumes as exactly as
    the main model;
    ``validator`` has ``Task.validator``'s signature."""

    name: str
    kind: ModelKind
    validator: Callable[..., Callable[[], dict[str, float]]]


@dataclass
class Run:
    run_dir: Path
    metrics: dict


class Task:
    """A job's particular pieces; ``train``, ``resume`` and ``rescoring_config`` do the rest."""

    name: str = ""
    rescore_keys: tuple[str, ...] = ()  # dotted keys (a trailing "." names a section) a trained run may change

    def model_kind(self, config: dict) -> ModelKind:
        raise NotImplementedError

    def check_recipe(self, config: dict) -> None:
        """Refuse what the recipe alone shows to be wrong, before any data are read."""

    def prepare(self, config: dict, data_dir: str | None) -> Any:
        """The recipe's data, read and split; raises before anything is written."""
        raise NotImplementedError

    def dim(self, data: Any) -> int:
        raise NotImplementedError

    def training_rows(self, data: Any, config: dict) -> sp.csr_matrix:
        """The training vectors, one CSR row each."""
        raise NotImplementedError

    def training_condition(self, data: Any, config: dict) -> np.ndarray | None:
        """One condition row per training row (e.g. each mask's image), or None."""
        return None

    def companions(self, config: dict) -> list[Companion]:
        """Further models trained in the same run (none by default)."""
        return []

    def check(self, config: dict, data: Any, model: nn.Module) -> None:
        """Refuse a recipe that does not fit the data or the model, before the run directory exists."""

    def save_data(self, data: Any, folder: Path) -> None:
        raise NotImplementedError

    def data_saved(self, folder: Path) -> bool:
        raise NotImplementedError

    def load_data(self, folder: Path, data_dir: str | None = None) -> Any:
        """The data ``save_data`` wrote; ``data_dir``: the resumed run's ``--data-dir``, for a task
        whose split refers to files by path (masks, segmentation), whose data set may have moved."""
        raise NotImplementedError

    def validator(self, model: nn.Module, data: Any, config: dict, device: torch.device,
                  workers: Workers) -> Callable[[], dict[str, float]]:
        """Per-epoch validation metrics (gathered over every process); ``eval.select`` among them."""
        raise NotImplementedError

    def evaluate(self, run_dir: Path, config: dict, data: Any, device: torch.device, workers: Workers) -> dict:
        """The metrics of a finished training's best checkpoint (writes the task's result folders)."""
        raise NotImplementedError

    def rescore(self, run_dir: Path, overrides: list[str], checkpoint: str, out_dir: Path | None, device,
                data_dir: str | None) -> dict:
        """``bindiff evaluate``: the metrics of the run's ``checkpoint`` scored again with ``overrides``
        of ``rescore_keys`` (see ``rescoring_config``); files go to ``out_dir``, a new folder or None
        (none written), never into the run. ``data_dir``: where a moved data set now is."""
        raise RecipeError(f"{run_dir}: a {self.name} run, whose task defines no rescoring (Task.rescore): "
                          "`bindiff evaluate` cannot score it; score it from Python with the task's own code")

    def result_folders(self, config: dict) -> tuple[str, ...]:
        """The folders ``evaluate`` creates in the run directory (each refuses to exist already)."""
        return ()

    def data_report(self, data: Any) -> dict:
        """What metrics.json's "training" entry says about the data."""
        return {}

    def check_rescoring(self, config: dict, model: nn.Module, payload: dict) -> None:
        """Refuse rescoring overrides that do not fit the trained model."""

    def unread_reason(self, config: dict, key: str) -> str | None:
        """Why the run's model never reads the recipe key or section ``key`` (an override there
        would change nothing), or None when it does."""
        return None


def panel_count(panels) -> int:
    """``panels`` (how many cases get a PNG panel) as a plain int >= 0 (numpy's too); a ValueError naming it
    for anything else (None or "3" was a TypeError naming nothing, NaN or True drew none or one)."""
    if isinstance(panels, (bool, np.bool_)) or not isinstance(panels, (int, np.integer)) or panels < 0:
        raise ValueError(f"panels must be an integer >= 0, got {panels!r}")
    return int(panels)


def derived_seed(seed: int, *parts: str) -> int:
    """A seed for one named draw (an evaluation, a mode), derived from the recipe's seed; stable across runs."""
    return (seed * 1_000_003 + zlib.crc32("/".join(parts).encode())) % (2 ** 31)


# -- the steps ------------------------------------------------------------------------------------------
def apply_threads(config: dict) -> None:
    """Set torch's CPU threads from ``train.threads`` (null keeps torch's default)."""
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])


def keeps_threads(function: Callable) -> Callable:
    """For a library entry point that calls ``apply_threads``: the caller's thread count is set
    back when it returns or raises."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


_default_dtype_lock = threading.Lock()
_float32_depth = 0  # bindiff calls inside float32_models, in every thread
_callers_dtype = torch.float32


@contextmanager
def float32_models() -> Iterator[None]:
    """Models are built in float32 whatever the caller's ``torch.set_default_dtype``: bindiff's
    batches, embeddings and checkpoints are float32 (a float64 default gave float64 weights, and
    "mat1 and mat2 must have the same dtype" deep in the first forward pass).

    The default is process-wide: calls that overlap (two threads training) share one switch, and
    the last to leave gives the caller's dtype back (each restoring its own left float32 behind).
    With the usual float32 default nothing changes at all."""
    global _float32_depth, _callers_dtype
    with _default_dtype_lock:
        if _float32_depth == 0:
            _callers_dtype = torch.get_default_dtype()
            if _callers_dtype != torch.float32:
                torch.set_default_dtype(torch.float32)
        _float32_depth += 1
    try:
        yield
    finally:
        with _default_dtype_lock:
            _float32_depth -= 1
            if _float32_depth == 0 and _callers_dtype != torch.float32:
                torch.set_default_dtype(_callers_dtype)


def check_recipe(task: Task, config: dict) -> ModelKind:
    """Every check the recipe alone allows (the model kind and its parameters, the task's own
    cross-key checks, the logger), as `bindiff train` and `bindiff show-config` both run them."""
    kind = task.model_kind(config)
    # builds small models: a network too large for memory shows here; their initial weights draw
    # from the global generator, which is the caller's
    with model_fits_in_memory(), torch.random.fork_rng(devices=[]), float32_models():
        task.check_recipe(config)
    check_logger(config)
    return kind


@contextmanager
def model_fits_in_memory():
    """A network too large to allocate (``denoiser.params`` widths of 10^11) is a RecipeError of
    one line rather than the allocator's traceback; any other RuntimeError stays a bug."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:
        # the CPU allocator's refusal only: a GPU out of memory may be another job's doing
        if not isinstance(err, MemoryError) and "DefaultCPUAllocator" not in str(err):
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise RecipeError(f"the model this recipe describes does not fit in memory ({reason}); check the sizes "
                          "in denoiser.params") from None


def check_parallel(task: Task, config: dict) -> None:
    """Refuse, before any data are read or processes started, what several processes cannot train."""
    kind = task.model_kind(config)
    if config.get("denoiser", {}).get("members", 1) > 1:  # its batches are blocks per member, not shards
        raise RecipeError("denoiser.members: an ensemble trains in one process; drop --nproc")
    if kind.parallel:
        return
    if "model" not in config:  # the task has a single model kind, and it trains in one process
        raise RecipeError(f"task: {config['task']!r} recipes train in one process; drop --nproc")
    raise RecipeError(f"model.kind: training on several processes is for the binomial model; train "
                      f"{kind.name!r} in one process")


@keeps_threads
def _in_processes(config: dict, body: Callable[[Workers, torch.device], Run]) -> Run:
    """Run ``body`` inside the process group torchrun describes (one process: no group).

    Training seeds torch's global generator (initial weights, dropout) and sets its thread count;
    a program that calls ``bindiff.train`` gets both back as they were afterwards (the CPU
    generator, and on CUDA the training GPU's: forking every GPU's would start CUDA in a run that
    trains on the CPU).
    """
    # training needs autograd whatever the caller's mode (a notebook cell under torch.no_grad())
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad(), float32_models():
        apply_threads(config)
        workers, device_name = distributed.start(config["train"]["device"])
        try:
            device = resolve_device(device_name)
            with torch.random.fork_rng(devices=[device]) if device.type == "cuda" else nullcontext():
                run = body(workers, device)
        except BaseException:
            distributed.stop(workers, failed=True)
            raise
        distributed.stop(workers)
    return run


def _set_prior_offset(model: nn.Module, rows: sp.csr_matrix) -> None:
    """A diffusion built with a prior offset takes it from the training rows (sparse column means)."""
    if getattr(model, "prior_logits", None) is not None:
        ones = np.asarray(rows.sum(axis=0), dtype=np.float64).ravel()
        model.set_prior_offset(torch.from_numpy(ones / rows.shape[0]), rows.shape[0])


def _build(task: Task, kind: ModelKind, config: dict, data: Any, device: torch.device):
    """Model and optimiser, initialised from the recipe seed."""
    seed_training(config["seed"], device)
    with model_fits_in_memory():
        model = kind.build(config, task.dim(data), training=True).to(device)
    rows = task.training_rows(data, config)
    _set_prior_offset(model, rows)
    steps_per_epoch = -(-rows.shape[0] // config["train"]["batch_size"])
    optimizer = build_optimizer(config, model, steps_per_epoch) if kind.fitting == "gradient" else None
    return model, optimizer, rows


def _validated(config: dict) -> dict:
    """A config from Python, read back as its run will store it: a dict edited by hand (an unknown
    key, 1.0 epochs, a numpy number) is refused now, not by the run's own evaluation after training."""
    if not isinstance(config, dict):  # a recipe's path was called "not a plain YAML value (a numpy number?)",
        # and None was read as the default recipe (a download of ML-1M)
        raise RecipeError(f"config: a config is a mapping of sections (load_recipe(path) reads a recipe file), got "
                          f"{config!r}")
    try:
        text = dump_recipe(config)
    except yaml.representer.RepresenterError as err:
        raise RecipeError(f"config: {err.args[1] if len(err.args) > 1 else err} is not a plain YAML value (a numpy "
                          "number? give int or float)") from None
    return recipe_from_text(text, source="config")


def train(task: Task, config: dict, overrides: list[str] = (), data_dir: str | None = None) -> Run:
    """Run a recipe end to end; returns the run directory and its metrics.

    Started by torchrun (``WORLD_SIZE`` > 1), every process runs this function: all build the
    same data and model, rank 0 alone creates and writes the run directory.
    """
    started = time.perf_counter()
    refuse_one_string(overrides)
    overrides = list(overrides)  # read twice (the unread check, overrides.txt): an iterator was empty the second time
    config = _validated(config)
    if config["task"] != task.name:  # train_recommender given a masks recipe: a KeyError deep in the task
        raise RecipeError(f"config: key 'task' is {config['task']!r}, not {task.name!r}; bindiff.train runs a "
                          "recipe of any task")
    refuse_unread(task, config, overrides)

    def body(workers: Workers, device: torch.device) -> Run:
        kind = check_recipe(task, config)  # before the data are read
        if workers.parallel:
            check_parallel(task, config)
        data = task.prepare(config, data_dir)
        model, optimizer, rows = _build(task, kind, config, data, device)
        task.check(config, data, model)
        run_dir = workers.broadcast(create_run_dir(config, list(overrides)) if workers.is_main else None)
        # from here a stop names the run's resume: the folder holds its config
        with run_lock(run_dir) if workers.is_main else nullcontext(), _output_errors(run_dir):
            if workers.is_main and log_lines(config):
                log(f"run directory: {run_dir}")  # piped output can follow the run from its start
            if workers.is_main:
                task.save_data(data, run_dir / "split")
            return _fit_and_finish(task, kind, run_dir, config, data, model, optimizer, rows, device, workers,
                                   resume=None, started=started)

    return _in_processes(config, body)


def resume(task: Task, run_dir: str | Path, config: dict | None = None, recipe: str | None = None,
           data_dir: str | None = None) -> Run:
    """Continue an interrupted run from ``checkpoints/last.pt`` and finish it.

    The run's own config.yaml and saved data are used; ``config`` (a recipe given with
    ``bindiff train RECIPE --resume RUN_DIR``) must resolve to the same config, apart from
    ``output.root`` and ``output.progress``, which it may give differently but which are then the
    run's own (its checkpoints hold the config they were trained under, word for word). The
    result equals an uninterrupted run's.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    with _naming_code_recorded_in(run_dir):  # a plugin's denoiser, model or task unknown here
        run_config = read_run_config(run_dir)
    if run_config["task"] != task.name:
        raise RecipeError(f"{config_path}: a run of task {run_config['task']!r}, not a {task.name} run")
    if config is not None:
        check_same_recipe(config, run_config, recipe or "recipe", config_path)
    config = run_config
    _refuse_finished(run_dir)

    def body(workers: Workers, device: torch.device) -> Run:
        kind = task.model_kind(config)
        with run_lock(run_dir) if workers.is_main else nullcontext(), _output_errors(run_dir, keep=True):
            if workers.is_main:
                _refuse_finished(run_dir)  # again under the lock: a resume that held it may have just finished
                for folder in (run_dir, run_dir / "split", run_dir / "checkpoints",
                               *(run_dir / "checkpoints" / c.name for c in task.companions(config))):
                    remove_stale_temporaries(folder)
                _remove_interrupted_results(task, run_dir, config)
            data = _saved_or_prepared_data(task, run_dir, config, data_dir, workers)
            with _naming_code_recorded_in(run_dir):
                model, optimizer, rows = _build(task, kind, config, data, device)
            payload = _resumable_checkpoint(run_dir / "checkpoints", config, config_path, task.dim(data), model,
                                            optimizer, device)
            return _fit_and_finish(task, kind, run_dir, config, data, model, optimizer, rows, device, workers,
                                   resume=payload, started=started)

    return _in_processes(config, body)


@contextmanager
def _naming_code_recorded_in(run_dir: Path) -> Iterator[None]:
    """``naming_missing_code`` for a resume, which builds its model before it reads a checkpoint: only
    when a name is unknown is ``checkpoints/last.pt`` read for the modules it records (none when it
    cannot be read: the resume names that problem itself, further on)."""
    try:
        yield
    except RecipeError:
        try:
            payload = load_checkpoint(run_dir / "checkpoints" / "last.pt", mmap=True)  # the weights stay on disk
        except CheckpointError:
            payload = {}
        with naming_missing_code(payload, where=f"{run_dir}: "):
            raise


def _refuse_finished(run_dir: Path) -> None:
    if (run_dir / "metrics.json").is_file():
        raise CheckpointError(f"{run_dir}: the run has finished (metrics.json exists); nothing to resume, and a "
                              "finished run is never overwritten")


def _remove_interrupted_results(task: Task, run_dir: Path, config: dict) -> None:
    """Result folders of a run killed while it evaluated (whole, or still under their hidden
    staging name). metrics.json is written after all of them and is absent here, so they come from
    the killed attempt; the evaluation is deterministic and writes them again, the same."""
    for name in task.result_folders(config):
        for folder in (run_dir / name, *run_dir.glob(f".{name}.*.partial")):
            if folder.is_dir():
                shutil.rmtree(folder)


def read_run_config(run_dir: Path) -> dict:
    """A run directory's config.yaml, validated (CheckpointError when there is none)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        if any(Path(run_dir).glob(".config.yaml.*.tmp")):
            raise CheckpointError(f"{run_dir}: the run was killed while its folder was being created (only a "
                                  "temporary config.yaml is there); nothing to resume: delete the folder and "
                                  "start the run again")
        raise CheckpointError(f"{run_dir}: not a bindiff run directory (no config.yaml)")
    return recipe_from_text(run_config_text(path), source=str(path))


# Errors of the file system, not of bindiff: the output location cannot take the run.
_FULL_OR_READ_ONLY = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


# What a run trains inside ("comparison", "search"), where it is one of many: stopped, its line names
# the whole, which is not resumed, instead of `bindiff resume RUN`, which would finish the run alone.
_PART_OF: ContextVar[str | None] = ContextVar("part_of", default=None)


@contextmanager
def runs_inside(what: str) -> Iterator[dict]:
    """Runs trained in the block are parts of a ``what`` (a comparison, a search) whose folder the
    block puts in the yielded dict as ``"out"``: stopped by Ctrl-C or SIGTERM, one line says the
    whole is unfinished and how to get a whole one (the outermost whole: a search inside a
    comparison is named by the comparison). Entered before ``new_output_dir``, it speaks after
    that has removed a folder that held nothing yet."""
    outermost = _PART_OF.get() is None
    token = _PART_OF.set(what)
    place: dict = {}
    try:
        yield place
    except (KeyboardInterrupt, SystemExit):
        out = place.get("out")
        if outermost and out is not None and distributed.is_main_process():
            log(f"stopped: the {what} in {out} is unfinished and is not resumed; the same command again makes a "
                "whole one" if out.exists() else f"stopped: the {what} had written nothing; {out} was removed")
        raise
    finally:
        _PART_OF.reset(token)


@contextmanager
def _output_errors(run_dir: Path, keep: bool = False):
    """A full or read-only file system as one OutputError line; a run with no checkpoint yet is
    removed (nothing in it could be resumed), one with a checkpoint kept for ``bindiff resume``;
    so is one a RecipeError stops.
    Stopped by Ctrl-C or SIGTERM, a line says how to go on: on a terminal the run's folder was
    named nowhere yet (under ``--nproc`` the launcher says it: see ``distributed.tell_launcher``)."""
    if _PART_OF.get() is None:
        distributed.tell_launcher(run_dir)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        if run_dir.is_dir() and distributed.is_main_process() and _PART_OF.get() is None and \
                not distributed.launcher_names_the_resume():
            how = argument(f"bindiff.resume({str(run_dir)!r})", f"bindiff resume {run_dir}")
            log(f"stopped: `{how}` continues this run")
        raise
    except RecipeError:  # found only once training began (diverged in epoch 1, an eval.select no validation reports)
        if not keep and distributed.is_main_process():
            remove_unfinished_run(run_dir)  # nothing half-made is left: it holds no checkpoint to resume
        raise
    except (OSError, OutputError) as err:  # OutputError: atomic_path's own line for the same errors
        if getattr(err, "errno", None) not in _FULL_OR_READ_ONLY:
            raise
        if not keep:
            remove_unfinished_run(run_dir)
        if not run_dir.exists():
            left = "removed it (no checkpoint yet)"
        elif (run_dir / "checkpoints" / "last.pt").exists():
            left = f"kept it: free space and continue with `bindiff resume {run_dir}`"
        else:  # a first best.pt without its last.pt: kept, but nothing to resume from
            left = "kept its first checkpoint; it cannot be resumed: free space and train again"
        raise OutputError(f"{run_dir}: cannot write ({os.strerror(err.errno)}); {left}", err.errno) from None


def _saved_or_prepared_data(task: Task, run_dir: Path, config: dict, data_dir, workers: Workers):
    # every process sees the state rank 0 saw, before rank 0 may save the data
    folder = run_dir / "split"
    if workers.broadcast(task.data_saved(folder)):
        return task.load_data(folder, data_dir)
    data = task.prepare(config, data_dir)  # killed before the data were saved: a pure function of data and seed
    if workers.is_main:
        task.save_data(data, folder)
    return data


def _resumable_checkpoint(folder: Path, config: dict, config_path: Path, dim: int, model, optimizer,
                          device) -> dict | None:
    """``last.pt`` checked against the run, loaded into model and optimiser; None: start afresh.

    None when the run was killed before its first epoch ended (the epoch is redone), and for a
    closed-form fit (no optimiser), which is always redone from scratch.
    """
    last = folder / "last.pt"
    if not last.is_file() or optimizer is None:
        return None
    payload = load_checkpoint(last, map_location=device)
    check_resumable(payload, last)
    trained_on, here = saved_device_types(payload["rng"]).get("noise", "cpu"), torch.device(device).type
    if trained_on != here:  # a CPU generator's state cannot become a CUDA one's, nor the reverse
        raise CheckpointError(f"{last}: trained on {trained_on}, but train.device "
                              f"{config['train']['device']!r} is {here} here; its random state belongs to "
                              f"{trained_on}: resume it on a machine with {trained_on}")
    # compared as configs, both read the same way: an older run's text names moved keys by their old
    # names and lacks later keys, which both readings translate and fill in alike
    if recipe_from_text(payload["config_yaml"], source=str(last)) != config:
        raise CheckpointError(f"{last}: its config differs from {config_path}; the run was edited "
                              "after it started and cannot be resumed")
    if payload["dim"] != dim:
        raise CheckpointError(f"{last}: model of {payload['dim']} bits, but the saved data have {dim}")
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{last}: does not fit the model and optimiser the config describes: "
                              f"{state_dict_mismatch(err)}") from None
    return payload


def _fit_and_finish(task: Task, kind: ModelKind, run_dir: Path, config: dict, data, model, optimizer, rows,
                    device, workers: Workers, resume: dict | None, started: float) -> Run:
    validate = task.validator(model, data, config, device, workers)
    checkpoints = run_dir / "checkpoints"
    if kind.fitting == "closed_form":
        select = config["eval"]["select"]
        result, report = fit_closed_form_run(model, rows, config=config, config_yaml=dump_recipe(config),
                                             evaluate_valid=lambda m: validate()[select], checkpoint_dir=checkpoints)
    else:
        logger = open_logger(config, run_dir) if workers.is_main else None
        try:
            result = fit(model, optimizer, rows, config=config, config_yaml=dump_recipe(config), validate=validate,
                         checkpoint_dir=checkpoints, device=device, resume=resume, workers=workers,
                         history_path=run_dir / "history.json", on_epoch=logger,
                         condition=task.training_condition(data, config))
        finally:
            if logger is not None:
                logger.close()
        report = _update_counts(optimizer, "model", workers)
    companions = {c.name: _fit_companion(task, c, run_dir, config, data, rows, device, workers)
                  for c in task.companions(config)}
    if companions:
        report["companions"] = companions
    metrics = task.evaluate(run_dir, config, data, device, workers)
    if workers.is_main:
        finish_run(run_dir, config, result, metrics, {**report, "processes": workers.world,
                                                      "training_vectors": int(rows.shape[0]), **task.data_report(data)},
                   started)
    return Run(run_dir=run_dir, metrics=metrics)


def _fit_companion(task: Task, companion: Companion, run_dir: Path, config: dict, data, rows, device,
                   workers: Workers) -> dict:
    """Fit one companion like the main model (continuing from its ``last.pt`` when there is one)."""
    if workers.parallel:
        raise RecipeError(f"task: {task.name!r} trains its {companion.name!r} baseline in one process; drop --nproc")
    seed_training(derived_seed(config["seed"], companion.name), device)
    with model_fits_in_memory():
        model = companion.kind.build(config, task.dim(data), training=True).to(device)
    optimizer = build_optimizer(config, model, -(-rows.shape[0] // config["train"]["batch_size"]))
    folder = run_dir / "checkpoints" / companion.name
    resume = _resumable_checkpoint(folder, config, run_dir / "config.yaml", task.dim(data), model, optimizer, device)
    if workers.is_main and log_lines(config):
        log(f"training the {companion.name} baseline")
    result = fit(model, optimizer, rows, config=config, config_yaml=dump_recipe(config),
                 validate=companion.validator(model, data, config, device, workers), checkpoint_dir=folder,
                 device=device, resume=resume, workers=workers, history_path=run_dir / f"history_{companion.name}.json",
                 condition=task.training_condition(data, config))
    plot_training_curve(result.history, config["eval"]["select"], run_dir / f"training_curve_{companion.name}.png")
    return {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "seconds": round(result.seconds, 2),
            **_update_counts(optimizer, f"{companion.name} baseline", workers)}


def _update_counts(optimizer, model_name: str, workers: Workers) -> dict:
    """The run report's update counts; skipped updates are also a warning, whatever
    ``output.progress`` says: that is not progress."""
    warning = optimizer.skipped_warning(model_name)
    if warning and workers.is_main:
        warn(warning)
    return {"optimizer_steps": optimizer.steps_done, "skipped_steps": optimizer.skipped}


def finish_run(run_dir: Path, config: dict, result: TrainResult, metrics: dict, report: dict, started: float) -> None:
    """The end-of-run writes: history, its curve, and metrics.json last (a finished run's mark)."""
    write_json(run_dir / "history.json", result.history)
    if result.history:  # a closed-form fit has no epochs to plot
        plot_training_curve(result.history, config["eval"]["select"], run_dir / "training_curve.png")
    metrics["training"] = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                           "seconds": round(result.seconds, 2), **report}
    if result.resumed_from_epoch:
        metrics["training"]["resumed_from_epoch"] = result.resumed_from_epoch
    metrics["seconds_total"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / "metrics.json", metrics)


# -- trained runs ------------------------------------------------------------------------------------------
def load_trained(task: Task, run_dir: str | Path, checkpoint: str = "best", device=None,
                 companion: str | None = None):
    """A run's config, loaded checkpoint and model (the evaluated variant, in eval mode).

    ``companion`` names one of the task's companions (its ``checkpoints/<name>/`` checkpoint);
    None: the main model. ``device`` (a torch.device, a name such as ``cpu``, or a CUDA index as
    torch reads one: 0 is ``cuda:0``) defaults to the
    run's ``train.device``: a run trained with ``train.device: cuda`` is read on a machine without
    CUDA by passing ``cpu``.
    """
    if device is not None:  # a name, a torch.device or an index: refused by name before the run is read
        if isinstance(device, (int, np.integer)) and not isinstance(device, (bool, np.bool_)):
            device = f"cuda:{int(device)}"  # torch's own reading of an index (model.to(0) is cuda:0); str(0) is no device
        device = resolve_device(device if isinstance(device, torch.device) else str(device),
                                what=argument("device", "--device"))
    if companion is None:
        config, payload = read_run(run_dir, task.name, checkpoint)
        kind = task.model_kind(config)
    else:
        kinds = {c.name: c.kind for c in task.companions(read_run_config(Path(run_dir)))}
        if companion not in kinds:
            raise RecipeError(f"{run_dir}: this run trained no {companion!r} model (it has {sorted(kinds) or 'none'})")
        config, payload = read_run(run_dir, task.name, f"{companion}/{checkpoint}")
        kind = kinds[companion]
    # the initial weights, overwritten next, draw from the global generator
    with torch.random.fork_rng(devices=[]), float32_models():
        with naming_missing_code(payload, where=f"{run_dir}: "):  # a plugin's denoiser unknown here
            model = kind.build(config, payload["dim"], training=False)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, ValueError, KeyError) as err:  # shapes or names edited, or another model's weights
        path = Path(run_dir) / "checkpoints" / f"{checkpoint if companion is None else f'{companion}/{checkpoint}'}.pt"
        raise CheckpointError(f"{path}: does not fit the model its config describes: "
                              f"{state_dict_mismatch(err)}") from None
    if device is None:
        try:
            device = resolve_device(config["train"]["device"])
        except RecipeError:
            raise RecipeError(f"{run_dir}: the run's train.device is {config['train']['device']!r}, which this "
                              "machine lacks; pass --device cpu (device='cpu' from Python) to use it here") from None
    model.to(device).eval()
    return config, payload, model


def checkpoint_entry(payload: dict, checkpoint: str = "best", companion: str | None = None) -> dict:
    """What every task's metrics.json and summaries say of the checkpoint they scored: its file in
    the run, the epoch it holds and how the best epoch was selected (``last.pt`` holds a later
    epoch than the best one it names)."""
    best = payload.get("best") or {}
    folder = "checkpoints" if companion is None else f"checkpoints/{companion}"
    return {"file": f"{folder}/{checkpoint}.pt", "epoch": payload.get("epoch"),
            "selected_by": best.get("metric"), "best_value": best.get("value"), "best_epoch": best.get("epoch")}


def refuse_unread(task: Task, config: dict, overrides: list[str], where: str = "") -> None:
    """RecipeError for an override the run's model never reads (``denoiser.*`` for Mult-DAE): it
    would be recorded in the run as if it had been used. ``where`` prefixes the message."""
    for text in overrides:
        keys, _ = parse_override(text)
        unread = task.unread_reason(config, ".".join(keys))
        if unread is not None:
            raise RecipeError(f"{where}override {text!r}: {unread}, so it would change nothing")


def rescoring_config(task: Task, config: dict, overrides: list[str] = (), allowed: tuple[str, ...] | None = None,
                     command: str | None = None) -> dict:
    """The run's config with ``overrides`` of ``task.rescore_keys`` only, each checked as on the CLI.

    ``allowed`` narrows them to the keys one command reads (``command`` names it in the refusal):
    a key it would accept and never read would change nothing without a word.
    """
    names = allowed if allowed is not None else task.rescore_keys
    refuse_one_string(overrides)  # its characters would be read as overrides, one by one
    overrides = list(overrides)  # an iterator is read below, then asked whether it is empty
    for text in overrides:
        keys, value = parse_override(text)
        dotted = ".".join(keys)
        unread = task.unread_reason(config, keys[0])
        if unread is not None:
            raise RecipeError(f"override {text!r}: {unread}, so it would change nothing")
        if not any(dotted == k or (k.endswith(".") and f"{dotted}.".startswith(k)) for k in names):
            listed = ", ".join(k + "*" if k.endswith(".") else k for k in names)
            if command is not None and any(dotted == k or (k.endswith(".") and f"{dotted}.".startswith(k))
                                           for k in task.rescore_keys):
                raise RecipeError(f"override {text!r}: {command} does not read it; its keys are {listed}")
            raise RecipeError(f"override {text!r}: a trained run can only be scored differently; allowed keys are "
                              f"{listed}")
        config = with_key(config, dotted, value, f"override {text!r}")
    if overrides:  # probe models draw their weights from the caller's global generator: forked
        with torch.random.fork_rng(devices=[]), float32_models():
            task.check_recipe(config)  # the cross-key checks `bindiff train` makes (segmentation.steps <= T, ...)
    return config


def refuse_no_out(task_name: str, out_dir: Path | None) -> None:
    """A task whose rescoring writes files (masks, segmentation) needs a new folder for them."""
    if out_dir is None:
        raise RecipeError(f"{argument('out_dir', '--out')}: a {task_name} run is scored again into a new folder; "
                          "give one")


def check_same_recipe(given: dict, run: dict, recipe: str, config_path: Path) -> None:
    """RecipeError naming the first key where a recipe resolves differently from a run's config."""
    ignored = {"output.root", "output.progress"}  # where the run lives and how it looks, not what it computes
    if run.get("task") != given.get("task"):  # else the first key one task has and the other lacks was named
        raise RecipeError(f"{recipe}: a {given.get('task')} recipe, but the run being resumed is a {run.get('task')} "
                          f"run ({config_path}); resume it with its own recipe (`bindiff resume RUN_DIR`)")
    a, b = flatten(run), flatten(given)
    for key in sorted(set(a) | set(b)):
        if key not in ignored and a.get(key) != b.get(key):
            raise RecipeError(f"{recipe}: key '{key}' is {b.get(key)!r} but the run being resumed has "
                              f"{a.get(key)!r} ({config_path}); resume with the run's own recipe "
                              "(`bindiff resume RUN_DIR`) or start a new run")


__all__ = ["Companion", "ModelKind", "Run", "Task", "apply_threads", "keeps_threads", "check_parallel",
           "check_same_recipe", "device_of", "finish_run", "load_trained", "read_run_config", "rescoring_config",
           "resume", "train"]
