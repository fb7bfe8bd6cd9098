"""Recipes: the schema of every key, loading with overrides, and the resolved config as YAML.

The names below are imported on first use (PEP 562), so that ``bindiff.config.keys``, which the
tasks' own schema modules import, can be loaded without loading the schema that lists those
tasks' sections: importing a task's schema first would otherwise be a cycle.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "RecipeError": "recipe", "config_hash": "recipe", "dump_recipe": "recipe", "load_recipe": "recipe",
    "parse_override": "recipe", "recipe_from_text": "recipe", "argument": "recipe", "refuse_one_string": "recipe",
    "whole_count": "recipe",
    "COMMON": "schema", "TASKS": "schema", "defaults": "schema", "schema_for": "schema",
}

__all__ = ["COMMON", "RecipeError", "TASKS", "schema_for", "config_hash", "defaults", "dump_recipe", "load_recipe",
           "parse_override", "recipe_from_text", "argument", "refuse_one_string", "whole_count"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
