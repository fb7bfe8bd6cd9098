"""Run directories: ``<root>/<recipe name>/<YYYYmmdd-HHMMSS>-<config hash>/``, never reused."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import RecipeError, config_hash, dump_recipe, recipe_from_text
from .files import write_text
from .training.checkpoint import load_checkpoint


def create_output_dir(config: dict, kind: str = "run", folder: str | None = None) -> Path:
    """``<output.root>/[<folder>/]<name>/<time>-<hash>/``, made fresh; an existing one is refused."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(config["output"]["root"]) / (folder or "")
    out = root / config["name"] / f"{stamp}-{config_hash(config)}"
    try:
        out.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise FileExistsError(f"{out}: {kind} directory already exists; bindiff never overwrites") from None
    return out


def create_run_dir(config: dict, overrides: list[str] = ()) -> Path:
    """Make a fresh run directory holding the resolved config; refuse an existing one."""
    run_dir = create_output_dir(config)
    write_text(run_dir / "config.yaml", dump_recipe(config))
    write_text(run_dir / "overrides.txt", "".join(f"{o}\n" for o in overrides))
    return run_dir


def read_run(run_dir: str | Path, task: str, checkpoint: str = "best") -> tuple[dict, dict]:
    """The resolved config and a loaded checkpoint of a run of ``task``, checked."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a bindiff run directory (no config.yaml)")
    payload = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    config = recipe_from_text(payload["config_yaml"], source=f"{run_dir}/checkpoints/{checkpoint}.pt")
    if config["task"] != task:
        raise RecipeError(f"{run_dir}: a run of task {config['task']!r}, not a {task} run")
    return config, payload


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
