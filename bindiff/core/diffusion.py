"""BinomialDiffusion: a denoiser plus a Bernoulli process; ``model(x0)`` returns the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .losses import LOSSES, diffusion_loss
from .process import BernoulliProcess
from .scheduler import ReverseScheduler


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar: batch mean of the per-example loss
    terms: dict[str, torch.Tensor]  # per-example terms ("bce", "vb", "loss")
    t: torch.Tensor  # the time step drawn for each example


class BinomialDiffusion(nn.Module):
    """Training loss and every inference mode of binomial diffusion over (B, D) bits.

    Inference modes:
    - ``predict_x0(x, t)``: one denoiser call on an observed vector (RecFusion's inference);
    - ``reverse(x, start, steps)``: treat x as x_start (or noise it first) and run reverse steps;
    - ``inpaint(known, mask)``: reverse from noise while holding known bits at their values;
    - ``sample(n)``: reverse from x_T ~ B(½).
    """

    def __init__(self, denoiser: nn.Module, process: BernoulliProcess, loss: str = "bce",
                 hybrid_coeff: float = 0.01, train_t_max: int | None = None):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        self.denoiser = denoiser
        self.process = process
        self.loss_kind = loss
        self.hybrid_coeff = hybrid_coeff
        # Recommenders only ever denoise lightly corrupted histories; training on the first
        # few steps only concentrates capacity there. None trains on every step.
        self.train_t_max = process.num_steps if train_t_max is None else int(train_t_max)
        if not 1 <= self.train_t_max <= process.num_steps:
            raise ValueError(f"train_t_max must lie in 1..{process.num_steps}, got {train_t_max}")

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        return torch.randint(1, self.train_t_max + 1, (n,), generator=generator, device=device)

    def draw_noise(self, n: int, dim: int, generator: torch.Generator | None = None, device=None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The time steps and uniform noise ``forward`` draws for n examples, in the same order.

        Data-parallel training draws them for the whole batch on every process and keeps its
        own rows, so that N processes use exactly the numbers one process would.
        """
        t = self.sample_timesteps(n, generator, device)
        return t, torch.rand((n, dim), generator=generator, device=device, dtype=dtype)

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> LossOutput:
        if x0.ndim != 2:
            raise ValueError(f"expected a batch of vectors (B, D), got shape {tuple(x0.shape)}")
        if t is None:
            t = self.sample_timesteps(x0.shape[0], generator, x0.device)
        x_t = self.process.add_noise(x0, t, noise=noise, generator=generator)
        # float32 logits even when the denoiser ran under bf16 autocast: the losses need the range
        logits = self.denoiser(x_t, t).float()
        terms = diffusion_loss(self.loss_kind, self.process, x0, x_t, t, logits, self.hybrid_coeff)
        return LossOutput(loss=terms["loss"].mean(), terms=terms, t=t)

    def _times(self, n: int, t: int, device) -> torch.Tensor:
        return torch.full((n,), int(t), dtype=torch.long, device=device)

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: int = 1) -> torch.Tensor:
        """p̂(x_0 = 1 | x_t = x) from a single denoiser call."""
        return torch.sigmoid(self.denoiser(x, self._times(x.shape[0], t, x.device)))

    @torch.no_grad()
    def reverse(self, x: torch.Tensor, start: int, steps: int | None = None, mode: str = "mean",
                add_noise: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Run reverse steps from time ``start``; return p̂(x_0) of the last denoiser call.

        ``add_noise=False`` treats the observation itself as x_start (as DiffRec does with a
        user's history); ``True`` first draws x_start ~ q(x_start | x). ``mode="mean"`` feeds
        probabilities forward, ``"sample"`` draws bits at every step.
        """
        scheduler = ReverseScheduler(self.process)
        scheduler.set_timesteps(steps, start=start)
        sample = self.process.add_noise(x, start, generator=generator) if add_noise else x
        pred_x0 = x
        for t in scheduler.timesteps:
            logits = self.denoiser(sample, self._times(x.shape[0], t, x.device))
            out = scheduler.step(logits, t, sample, generator=generator, mode=mode)
            sample, pred_x0 = out.prev_sample, out.pred_x0
        return pred_x0

    @torch.no_grad()
    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None, mode: str = "sample") -> torch.Tensor:
        """Fill the bits where ``mask`` is False, holding those where it is True at ``known``.

        At every time the known bits are replaced by a fresh draw of q(x_s | x_0 = known), so
        the unknown bits are always denoised next to correctly noised context (RePaint without
        resampling). Returns bits (mode "sample") or probabilities (mode "mean") for the
        unknown positions, with the known ones copied through exactly.
        """
        if known.shape != mask.shape:
            raise ValueError(f"known {tuple(known.shape)} and mask {tuple(mask.shape)} differ in shape")
        mask = mask.bool()
        scheduler = ReverseScheduler(self.process)
        scheduler.set_timesteps(steps)
        T = self.process.num_steps
        sample = self.process.add_noise(known, T, generator=generator)
        sample = torch.where(mask, sample, torch.bernoulli(torch.full_like(known, 0.5), generator=generator))
        for t in scheduler.timesteps:
            logits = self.denoiser(sample, self._times(known.shape[0], t, known.device))
            out = scheduler.step(logits, t, sample, generator=generator, mode=mode)
            s = scheduler.previous(t)
            context = self.process.add_noise(known, s, generator=generator) if s > 0 else known
            sample = torch.where(mask, context, out.prev_sample)
        return sample

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None,
               device=None) -> torch.Tensor:
        """Unconditional bits from x_T ~ B(½), exact as a prior when ᾱ_T ≈ 0 (e.g. "jsd")."""
        nothing_known = torch.zeros((n, self.denoiser.dim), device=device)
        return self.inpaint(nothing_known, nothing_known.bool(), steps=steps, generator=generator)
