"""Turn a resolved recipe's ``diffusion`` and ``denoiser`` sections into core objects, naming
the recipe key when a value is refused. Every task's diffusion model is built here."""

from __future__ import annotations

from ..config import RecipeError
from ..core import BernoulliProcess, BinomialDiffusion, build_denoiser
from ..core.losses import LOSSES
from ..core.process import KERNELS, REVERSE_KERNELS
from ..core.schedules import SCHEDULES


_CHOICES = {"schedule": SCHEDULES, "kernel": KERNELS, "loss": LOSSES, "reverse_kernel": REVERSE_KERNELS}


def denoiser_key(err: Exception) -> str:
    """The recipe key a refused denoiser names: its name, its member count, else its parameters."""
    text = str(err)
    if text.startswith("unknown denoiser"):
        return "denoiser.name"
    if text.startswith("members "):
        return "denoiser.members"
    return "denoiser.params"

def _refused_key(d: dict, keys: tuple[str, ...], otherwise: str) -> str:
    """The ``diffusion`` key a refused value came from: the first of ``keys`` (those the failing
    call read) holding a name it does not know, else ``otherwise``; for the error's prefix."""
    return next((f"diffusion.{key}" for key in keys if d[key] not in _CHOICES[key]), otherwise)


def build_process(config: dict) -> BernoulliProcess:
    d = config["diffusion"]
    try:
        return BernoulliProcess.from_schedule(d["schedule"], d["steps"], kernel=d["kernel"], **d["schedule_params"])
    except ValueError as err:
        raise RecipeError(f"{_refused_key(d, ('schedule', 'kernel'), 'diffusion.schedule_params')}: {err}") from None


def build_diffusion(config: dict, dim: int) -> BinomialDiffusion:
    """The binomial diffusion over ``dim`` bits the recipe describes (untrained)."""
    process = build_process(config)
    params = dict(config["denoiser"]["params"])
    if config["diffusion"]["self_condition"]:
        if config["denoiser"]["name"] != "unet":
            raise RecipeError("diffusion.self_condition: the estimate is read as a condition channel, which only "
                              "the unet denoiser takes")
        params["cond_channels"] = int(params.get("cond_channels", 0)) + 1  # the estimate after the condition
    try:
        # .get: the configs of runs trained before denoiser.members existed hold no such key
        denoiser = build_denoiser(config["denoiser"]["name"], dim, members=config["denoiser"].get("members", 1), **params)
    except ValueError as err:  # a TypeError from inside a constructor is a bug: its traceback is kept
        hint = ("; overrides merge into the recipe's denoiser.params, so to change denoiser.name copy the recipe "
                "and edit its denoiser section" if "has no parameter(s)" in str(err) else "")
        raise RecipeError(f"{denoiser_key(err)}: {err}{hint}") from None
    d = config["diffusion"]
    try:
        return BinomialDiffusion(denoiser, process, loss=d["loss"], hybrid_coeff=d["hybrid_coeff"],
                                 train_t_max=d["train_t_max"], reverse_kernel=d["reverse_kernel"],
                                 dice_weight=d["dice_weight"], self_condition=d["self_condition"],
                                 prior_offset_dim=dim if d["prior_offset"] else 0,
                                 denoiser_input=d["denoiser_input"])
    except ValueError as err:
        raise RecipeError(f"{_refused_key(d, ('loss', 'reverse_kernel'), 'diffusion')}: {err}") from None
