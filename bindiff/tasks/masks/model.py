"""The masks task's model: the binomial diffusion over a mask's grid, with a U-Net that knows the
grid, and the training-time mixture that spends more of a CPU budget on small t."""

from __future__ import annotations

import copy

import torch

from ...config import RecipeError
from ...core import BinomialDiffusion
from ...core import unet  # noqa: F401  (registers "unet")
from ...training.builders import build_diffusion
from ..base import ModelKind


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


class LowTimeMixtureDiffusion(BinomialDiffusion):
    """BinomialDiffusion whose training times are a mixture: with probability ``low_share`` a time
    drawn uniformly from 1..low_max, otherwise from 1..train_t_max.

    Denoising a lightly damaged mask and the last steps of every reverse run happen at small t,
    so a CPU-sized training budget is better spent there; every t keeps a positive probability,
    so inpainting and sampling from noise still see every step. The weights are those of a
    plain BinomialDiffusion (evaluation builds one).
    """

    def __init__(self, base: BinomialDiffusion, low_share: float = 0.0, low_max: int = 2):
        super().__init__(base.denoiser, base.process, loss=base.loss_kind, hybrid_coeff=base.hybrid_coeff,
                         train_t_max=base.train_t_max, reverse_kernel=base.reverse_kernel,
                         dice_weight=base.dice_weight, self_condition=base.self_condition,
                         prior_offset_dim=0 if base.prior_logits is None else base.prior_logits.numel(),
                         denoiser_input=base.denoiser_input)
        self.low_share, self.low_max = float(low_share), min(int(low_max), base.train_t_max)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        t = super().sample_timesteps(n, generator, device)
        if self.low_share <= 0:
            return t
        low = torch.randint(1, self.low_max + 1, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device) < self.low_share
        return torch.where(pick, low, t)


def build_mask_model(config: dict, dim: int, training: bool = False) -> BinomialDiffusion:
    """The diffusion over ``dim`` grid bits; ``training``: with the recipe's low-time mixture."""
    model = build_diffusion(model_config(config), dim)
    if training and config["timesteps"]["low_share"] > 0:
        model = LowTimeMixtureDiffusion(model, config["timesteps"]["low_share"], config["timesteps"]["low_max"])
    return model


MASK_MODEL = ModelKind("binomial", build_mask_model, description="binomial diffusion on the mask grid")
