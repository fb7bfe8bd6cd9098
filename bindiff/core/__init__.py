"""The domain-agnostic core: it knows only batches of binary vectors (B, D).

Depends on torch, numpy and einops only; it never imports an adapter.
"""

from .count import tilt_to_count
from .denoisers import DENOISERS, DenoiserEnsemble, MLPDenoiser, build_denoiser, register_denoiser, sinusoidal_embedding
from .diffusion import BinomialDiffusion, LossOutput
from .losses import LOSSES, bce_x0, bernoulli_kl, bernoulli_kl_logits, diffusion_loss, soft_dice_x0, vb_terms
from .process import KERNELS, BernoulliProcess
from .scheduler import ReverseScheduler, StepOutput
from .schedules import SCHEDULES, get_schedule, validate_betas
from .unet import UNetDenoiser  # registers "unet" in DENOISERS

__all__ = [
    "BernoulliProcess", "BinomialDiffusion", "DENOISERS", "DenoiserEnsemble", "KERNELS", "LOSSES", "LossOutput", "MLPDenoiser",
    "ReverseScheduler", "SCHEDULES", "StepOutput", "UNetDenoiser", "bce_x0", "bernoulli_kl", "bernoulli_kl_logits", "soft_dice_x0",
    "build_denoiser", "diffusion_loss", "get_schedule", "register_denoiser", "sinusoidal_embedding",
    "tilt_to_count", "validate_betas", "vb_terms",
]
