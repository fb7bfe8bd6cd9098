"""Recipe ``task`` → its job; the entry points the CLI and the library call for any task."""

from __future__ import annotations

from pathlib import Path

from ..config import RecipeError
from . import base
from .masks.job import MasksTask
from .recommendation.job import RecommendationTask
from .segmentation.job import SegmentationTask

TASKS: dict[str, base.Task] = {task.name: task for task in (RecommendationTask(), MasksTask(), SegmentationTask())}


def register_task(task: base.Task, sections: dict) -> None:
    """Make a task of one's own available to recipes as ``task: <task.name>``, with the recipe
    ``sections`` only it has (the ``config.keys.key`` tables the shared sections are made of, an
    ``eval`` section with ``select`` among them). Every command that reads a recipe or a run then
    knows it. Registering the same definition again replaces it; another under a taken name is refused."""
    from ..config import schema
    from ..config.keys import Key
    from ..core.denoisers import same_definition

    if not isinstance(task, base.Task) or not isinstance(getattr(task, "name", None), str) or not task.name:
        raise TypeError(f"register_task takes an instance of bindiff.tasks.base.Task with a name, got {task!r}")
    if not isinstance(sections, dict) or not isinstance(sections.get("eval"), dict) or not isinstance(
            sections["eval"].get("select"), Key):
        raise ValueError(f"task {task.name!r}: its sections need an eval section with a select key (the lifecycle "
                         "selects the best checkpoint by it)")
    _check_sections(task.name, sections)  # a table of anything else broke every later load_recipe of the task
    shared = sorted(set(sections) & set(schema.COMMON))
    if shared:
        raise ValueError(f"task {task.name!r}: sections {shared} are every task's; a task adds sections of its own")
    taken = TASKS.get(task.name)
    if taken is not None and not same_definition(type(taken), type(task)):
        raise ValueError(f"a task named {task.name!r} is already registered")
    schema.TASKS[task.name] = sections
    TASKS[task.name] = task


def _check_sections(task_name: str, table: dict, prefix: str = "") -> None:
    """ValueError naming the first entry of a task's sections that is not a ``Key``, ``FREE`` or a
    mapping of these (sub-sections), nor named by a string."""
    from ..config.keys import FREE, Key

    for name, spec in table.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"task {task_name!r}: section and key names are non-empty strings, got {name!r}"
                             + (f" in {prefix[:-1]}" if prefix else ""))
        if isinstance(spec, dict):
            _check_sections(task_name, spec, f"{prefix}{name}.")
        elif not (isinstance(spec, Key) or spec is FREE):
            raise ValueError(f"task {task_name!r}: {prefix}{name} must be a bindiff.config.keys.key(...), a "
                             f"mapping of them or keys.FREE, got {spec!r}")


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
