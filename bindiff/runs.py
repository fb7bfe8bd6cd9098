"""Run directories: ``<root>/<recipe name>/<YYYYmmdd-HHMMSS>-<config hash>/``, never reused."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .config import RecipeError, argument, config_hash, dump_recipe, recipe_from_text
from .config.schema import FOLDER_NAME_RULE, is_folder_name
from .files import OutputError, write_text
from .training.checkpoint import CheckpointError, load_checkpoint, naming_missing_code


def create_output_dir(config: dict, kind: str = "run", folder: str | None = None) -> Path:
    """``<output.root>/[<folder>/]<name>/<time>-<hash>[-N]/``, made fresh, never an existing one.

    Two runs of the same recipe started in the same second get ``-2``, ``-3``, ... rather than
    colliding. A root that cannot hold folders (a file, a read-only or full file system) is
    refused as ``OutputError`` naming ``output.root``.
    """
    if not is_folder_name(config["name"]):  # a config from Python: load_recipe checks a recipe's own
        raise RecipeError(f"name: {FOLDER_NAME_RULE}, got {config['name']!r}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(config["output"]["root"]).expanduser() / (folder or "")
    base = root / config["name"] / f"{stamp}-{config_hash(config)}"
    for attempt in range(1, 1000):
        out = base if attempt == 1 else base.with_name(f"{base.name}-{attempt}")
        try:
            out.mkdir(parents=True, exist_ok=False)
            return out
        except (KeyboardInterrupt, SystemExit):  # a stop as the folder was made: no empty folder is left
            with suppress(OSError):
                out.rmdir()
            raise
        except FileExistsError:
            if not out.is_dir():  # a file in the way, not a run of the same second
                raise OutputError(f"output.root: cannot create the {kind} directory {out}: a file of that name "
                                  "is in the way") from None
        except OSError as err:
            raise OutputError(f"output.root: cannot create the {kind} directory {out} ({err.strerror})") from None
    raise OutputError(f"output.root: {base}: 999 {kind} directories of this recipe in one second")


def first_missing_folder(path: Path) -> Path | None:
    """The highest folder on the way to ``path`` that does not exist yet (None when ``path`` does)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


@contextmanager
def new_output_dir(config: dict, kind: str, folder: str, preamble: tuple[str, ...] = ("recipe.yaml",)
                   ) -> Iterator[Path]:
    """``create_output_dir`` for a search or comparison, removed again, with the folders made for
    it, when the work inside stops before writing anything beyond ``preamble``.

    A search or comparison writes its resolved recipe first and reads its data only in its first
    run; a dataset that is missing or malformed must not leave behind a folder that looks like a
    search which found nothing, nor an empty ``<root>/tune/<name>/``. Empty folders made on the
    way do not count; once a trial or run has written a file, the folder stays.
    """
    made = first_missing_folder(Path(config["output"]["root"]).expanduser() / folder / config["name"])
    out = create_output_dir(config, kind, folder)
    top = made or out  # the highest folder this call made
    try:
        yield out
    except BaseException:
        files = [path for path in top.rglob("*") if not path.is_dir()] if top.is_dir() else None
        if files is not None and all(path.parent == out and path.name in preamble for path in files):
            shutil.rmtree(top)
        raise


def create_run_dir(config: dict, overrides: list[str] = ()) -> Path:
    """Make a fresh run directory holding the resolved config; refuse an existing one."""
    run_dir = create_output_dir(config)
    try:
        write_text(run_dir / "config.yaml", dump_recipe(config))
        write_text(run_dir / "overrides.txt", "".join(f"{o}\n" for o in overrides))
    except (KeyboardInterrupt, SystemExit):  # stopped before the run began: nothing of it is left
        remove_unfinished_run(run_dir)
        raise
    except (OSError, OutputError) as err:  # OutputError: atomic_path's line for a full disk
        remove_unfinished_run(run_dir)
        raise OutputError(f"output.root: cannot write in {run_dir} ({os.strerror(err.errno) if err.errno else err})",
                          err.errno) from None
    return run_dir


def remove_unfinished_run(run_dir: Path) -> None:
    """Delete a run directory that holds no checkpoint yet (nothing in it can be resumed). One with
    any checkpoint is kept: a first ``best.pt`` is written before the first ``last.pt``."""
    import shutil

    if not any((run_dir / "checkpoints").rglob("*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


# What each task's trained runs are used with (named when a run reaches another task's command).
_COMMANDS_OF = {"recommend": "`bindiff evaluate`, `recommend` and `export`",
                "masks": "`bindiff masks completion|denoising|generation|apply`",
                "segmentation": "`bindiff evaluate RUN_DIR --out DIR`, `segment` and `score --run`"}


def run_config_text(path: Path) -> str:
    """A run's ``config.yaml`` as text; a file that cannot be read, is not UTF-8 or is empty is one
    CheckpointError naming it (a traceback, or an empty file read as the defaults of a recommendation run)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                              "the run's config was damaged") from None
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not text.strip():
        raise CheckpointError(f"{path}: empty; the run's config was damaged")
    return text


def read_run(run_dir: str | Path, task: str, checkpoint: str = "best") -> tuple[dict, dict]:
    """The resolved config and a loaded checkpoint of a run of ``task``, checked."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a bindiff run directory (no config.yaml)")
    *companion, name = str(checkpoint).split("/")  # "best", or a companion's "unet/best"
    if name not in ("best", "last") or any(part in ("", ".", "..") for part in companion):
        # not a path to any .pt file
        raise RecipeError(f"{argument('checkpoint', '--checkpoint')} must be best or last, got {checkpoint!r}")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    payload = load_checkpoint(path, mmap=True)  # only the weights are read: the optimiser's state stays on disk
    with naming_missing_code(payload):  # a plugin's denoiser, model or task not registered here
        config = recipe_from_text(payload["config_yaml"], source=str(path))
    if config["task"] != task:
        raise RecipeError(f"{run_dir}: a {config['task']} run, not a {task} run; {config['task']} runs are used "
                          f"with {_COMMANDS_OF.get(config['task'], 'its own task module')}")
    # A checkpoint copied in from another run would be built as that run's model and then fed
    # this run's data; where they disagree is named here instead of a shape error deep inside.
    # Over the keys of both: a free section (denoiser.params) may hold a key on one side only.
    stored = flatten(recipe_from_text(run_config_text(run_dir / "config.yaml"),
                                      source=str(run_dir / "config.yaml")))
    ours = flatten(config)
    for key in sorted(set(ours) | set(stored), reverse=True):  # "a.b.c" before "a.b", which may be an empty {}
        if key.startswith("output.") or ours.get(key, _ABSENT) == stored.get(key, _ABSENT):
            continue
        theirs = f"has {stored[key]!r}" if key in stored else f"has no {key}"
        raise CheckpointError(f"{path}: not this run's checkpoint: "
                              + (f"its {key} is {ours[key]!r}" if key in ours else f"it has no {key}")
                              + f", the run's config.yaml {theirs}")
    return config, payload


_ABSENT = object()


def read_metrics(run_dir: str | Path) -> dict:
    """A finished run's ``metrics.json`` (any task)."""
    return json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8"))


def flatten(config: dict, prefix: str = "") -> dict:
    """A nested config as ``{"section.key": value}`` (an empty mapping stays one value)."""
    out = {}
    for name, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out
