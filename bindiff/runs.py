"""Run directories: ``<root>/<recipe name>/<YYYYmmdd-HHMMSS>-<config hash>/``, never reused."""

from __future__ import annotations

import time
from pathlib import Path

from .config import config_hash, dump_recipe
from .files import write_text


def create_run_dir(config: dict, overrides: list[str] = ()) -> Path:
    """Make a fresh run directory holding the resolved config; refuse an existing one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config["output"]["root"]) / config["name"] / f"{stamp}-{config_hash(config)}"
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except FileExistsError:
        raise FileExistsError(f"{run_dir}: run directory already exists; bindiff never overwrites a run") from None
    write_text(run_dir / "config.yaml", dump_recipe(config))
    write_text(run_dir / "overrides.txt", "".join(f"{o}\n" for o in overrides))
    return run_dir
