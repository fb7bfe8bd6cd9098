from .recipe import RecipeError, config_hash, dump_recipe, load_recipe, parse_override, recipe_from_text
from .schema import COMMON, TASKS, defaults, schema_for

__all__ = ["COMMON", "RecipeError", "TASKS", "schema_for", "config_hash", "defaults", "dump_recipe", "load_recipe", "parse_override",
           "recipe_from_text"]
