"""The deterministic baseline of the segmentation task: the diffusion's own U-Net mapping an image
straight to its mask, trained with binary cross-entropy plus soft Dice (per voxel: the mean
cross-entropy plus ``dice_weight`` × (1 − soft Dice), the diffusion's ``diffusion.dice_weight``
term in the same units).

It is built from the same ``denoiser.params`` as the diffusion model, so the two differ in what
the diffusion adds (noise, time, sampling) and nothing else. Its x_t channel reads a constant 0
and its time is fixed at 0: the image is its only input, and the time embedding becomes one
learned bias per block. ``model(mask, cond=image)`` returns the loss, as the diffusion's does, so
the shared training loop fits it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...core.denoisers import DenoiserEnsemble
from ...core.diffusion import LossOutput
from ...core.losses import soft_dice_x0


class DirectSegmenter(nn.Module):
    """image (B, C·D) → p̂(mask) (B, D) through ``denoiser`` with x_t = 0 and t = 0."""

    def __init__(self, denoiser: nn.Module, dice_weight: float = 1.0):
        super().__init__()
        self.denoiser = denoiser
        self.dice_weight = float(dice_weight)

    def logits(self, cond: torch.Tensor, blocks: bool = False) -> torch.Tensor:
        """x_0 logits (B, D); ``blocks``: an ensemble's training logits, block m of the rows from member m."""
        n = cond.shape[0]
        blank = torch.zeros(n, self.denoiser.dim, device=cond.device, dtype=cond.dtype)
        call = self.denoiser.block_logits if blocks else self.denoiser
        return call(blank, torch.zeros(n, dtype=torch.long, device=cond.device), cond).float()

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                cond: torch.Tensor | None = None) -> LossOutput:
        """The loss of predicting the mask ``x0`` from the image ``cond`` (``generator`` is unused: no noise).
        An ensemble (``denoiser.members``) trains each member on its block of the batch, as the diffusion does."""
        if cond is None:
            raise ValueError("the deterministic segmenter needs the image: pass cond")
        logits = self.logits(cond, blocks=isinstance(self.denoiser, DenoiserEnsemble))
        bce = F.binary_cross_entropy_with_logits(logits, x0, reduction="none").mean(1)
        dice = soft_dice_x0(logits, x0)
        loss = bce + self.dice_weight * dice
        return LossOutput(loss=loss.mean(), terms={"bce": bce.detach(), "dice": dice.detach(), "loss": loss},
                          t=torch.zeros(len(x0), dtype=torch.long, device=x0.device))

    @torch.no_grad()
    def probabilities(self, cond: torch.Tensor) -> torch.Tensor:
        """p̂(voxel is foreground | image), (B, D)."""
        return torch.sigmoid(self.logits(cond))
