"""Recipe ``task`` → its job; the entry points the CLI and the library call for any task."""

from __future__ import annotations

from pathlib import Path

from ..config import RecipeError
from . import base
from .masks.job import MasksTask
from .recommendation.job import RecommendationTask
from .segmentation.job import SegmentationTask

TASKS: dict[str, base.Task] = {task.name: task for task in (RecommendationTask(), MasksTask(), SegmentationTask())}


def get_task(name: str) -> base.Task:
    if name not in TASKS:
        raise RecipeError(f"key 'task' must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name]


def train(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> base.Run:
    """Run a resolved recipe of any task end to end."""
    # a hand-made dict may leave ``task`` out (a recipe's default) or misspell it: read it as a recipe is
    task = get_task(config["task"] if isinstance(config, dict) and "task" in config else base._validated(config)["task"])
    return base.train(task, config, overrides, data_dir)


def resume(run_dir: str | Path, config: dict | None = None, recipe: str | None = None,
           data_dir: str | None = None) -> base.Run:
    """Continue an interrupted run of any task (see ``base.resume``)."""
    task = get_task(base.read_run_config(Path(run_dir))["task"])
    return base.resume(task, run_dir, config=config, recipe=recipe, data_dir=data_dir)


def check_recipe(config: dict) -> None:
    """What `bindiff train` checks before reading any data (``bindiff show-config`` runs it too)."""
    base.check_recipe(get_task(config["task"]), config)


def check_parallel(config: dict) -> None:
    base.check_parallel(get_task(config["task"]), config)
