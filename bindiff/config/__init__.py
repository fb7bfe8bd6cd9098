from .recipe import RecipeError, config_hash, dump_recipe, load_recipe, parse_override, recipe_from_text
from .schema import SCHEMA, defaults

__all__ = ["RecipeError", "SCHEMA", "config_hash", "defaults", "dump_recipe", "load_recipe", "parse_override",
           "recipe_from_text"]
