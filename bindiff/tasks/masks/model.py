"""The masks task's model: the binomial diffusion over a mask's grid, with a U-Net that knows the
grid, training on the recipe's mixture of times (more of a CPU budget spent on small t)."""

from __future__ import annotations

import copy
import math

from ...config import RecipeError
from ...core import BinomialDiffusion
from ...core import unet  # noqa: F401  (registers "unet")
from ...training.builders import build_diffusion
from ..base import ModelKind
from .data import grid_spec


def model_config(config: dict) -> dict:
    """The recipe with the grid handed to a spatial denoiser (``denoiser.params.grid``).

    The U-Net's grid is not a recipe key of its own: it is ``grid.shape`` (the core's process
    never sees a shape).
    """
    if config["denoiser"]["name"] != "unet":
        return config
    out = copy.deepcopy(config)
    params = out["denoiser"]["params"]
    grid = [int(s) for s in config["grid"]["shape"]]
    if "grid" in params and [int(s) for s in params["grid"]] != grid:
        raise RecipeError(f"denoiser.params.grid {params['grid']} differs from grid.shape {grid}; "
                          "leave it out, the grid is taken from grid.shape")
    params["grid"] = grid
    return out


def with_time_mixture(model: BinomialDiffusion, config: dict) -> BinomialDiffusion:
    """The recipe's ``timesteps`` mixture set on ``model``: a CPU-sized budget spent on small t, or on t = T."""
    times = config["timesteps"]
    try:
        model.set_time_mixture(times["low_share"], times["low_max"], times["top_share"])
    except ValueError as err:
        raise RecipeError(f"timesteps: {err}") from None
    return model


def build_mask_model(config: dict, dim: int, training: bool = False) -> BinomialDiffusion:
    """The diffusion over ``dim`` grid bits; while ``training``, its loss draws t from the recipe's
    mixture of times, and a model read back to be used draws t uniformly (``model(x0)`` is then the
    plain bound)."""
    model = build_diffusion(model_config(config), dim)
    return with_time_mixture(model, config) if training else model


def probe(kind: ModelKind, config: dict) -> None:
    """Build ``kind``'s model once from the recipe alone, on the grid ``grid.shape`` gives: a bad
    schedule, denoiser parameter or time mixture is refused by `bindiff show-config`, and before
    `bindiff train` reads any file (building the weights takes a fraction of a second). A
    ``timesteps.low_max`` beyond T is capped at T, so that a shorter chain keeps the recipe's."""
    kind.build(config, math.prod(grid_spec(config).vector_grid), training=True)


MASK_MODEL = ModelKind("binomial", build_mask_model, description="binomial diffusion on the mask grid")
