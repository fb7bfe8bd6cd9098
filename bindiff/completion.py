"""Shell completion for the ``bindiff`` command (``bindiff --install-completion``): shipped recipe
names and YAML files where a recipe goes, and the recipe's keys where an override goes.

Completion runs on every Tab, so it reads no data and imports no torch; it never fails (a
recipe it cannot read completes the defaults' keys)."""

from __future__ import annotations

from pathlib import Path

_YAML = (".yaml", ".yml")


def complete_recipe(incomplete: str) -> list[str]:
    """Shipped recipe names, then folders and YAML files, that start with ``incomplete``."""
    from .config.recipe import shipped_recipes

    found = [name for name in shipped_recipes() if name.startswith(incomplete)]
    folder, slash, stem = incomplete.rpartition("/")
    base = Path(folder + slash or ".")
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem.startswith(".")):
            continue
        if entry.is_dir():
            found.append(f"{folder}{slash}{entry.name}/")
        elif entry.suffix in _YAML:
            found.append(f"{folder}{slash}{entry.name}")
    return found


def _dotted(schema: dict, prefix: str = "") -> list[str]:
    """Every key of a schema as an override starts it: ``train.lr=``, ``denoiser.params.`` (free-form)."""
    from .config.keys import FREE

    out = []
    for name, spec in schema.items():
        if spec is FREE:
            out.append(f"{prefix}{name}.")
        elif isinstance(spec, dict):
            out.extend(_dotted(spec, f"{prefix}{name}."))
        else:
            out.append(f"{prefix}{name}=")
    return out


def complete_override(ctx, args: list[str], incomplete: str) -> list[str]:
    """The keys of the recipe's task (a ``task=`` override first, else the recipe file's, else
    ``recommend``) that start with ``incomplete``; nothing once a value is being typed, nor for a
    task bindiff does not ship (a plugin's)."""
    if "=" in incomplete:
        return []
    from .config.schema import TASKS, schema_for

    task = "recommend"
    try:
        recipe = ctx.params.get("recipe")
        overrides = list(ctx.params.get("overrides") or [])
        given = [text.split("=", 1)[1] for text in overrides if text.startswith("task=")]
        if given:
            task = given[-1]
        elif recipe and "=" not in recipe:
            from .config.recipe import find_recipe, read_yaml_file

            loaded = read_yaml_file(find_recipe(recipe))
            task = loaded.get("task", task) if isinstance(loaded, dict) else task
        elif recipe and recipe.startswith("task="):  # show-config's defaults of another task
            task = recipe.split("=", 1)[1]
        elif ctx.params.get("run_dir"):  # evaluate, segment: the run's own task
            from .config.recipe import read_yaml_file

            stored = read_yaml_file(Path(ctx.params["run_dir"]) / "config.yaml")
            task = stored.get("task", task) if isinstance(stored, dict) else task
    except Exception:  # noqa: BLE001 - a recipe that cannot be read: complete the defaults' keys
        task = "recommend"
    if task not in TASKS:  # a plugin's task (plugins import torch, too slow for a Tab): its keys are unknown here
        return []
    return [key for key in _dotted(schema_for(task)) if key.startswith(incomplete)]
