"""A DiffRec-style Gaussian diffusion recommender (Wang et al., SIGIR 2023).

Forward process (0-based steps t = 0..T−1, as DiffRec indexes them):
    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),

with DiffRec's ``linear-var`` schedule: 1 − ᾱ_t runs linearly from noise_scale·noise_min
(t = 0) to noise_scale·noise_max (t = T−1), so β_0 = 1 − ᾱ_0 and
β_t = min(1 − ᾱ_t / ᾱ_{t−1}, 0.999).

Network: predicts x_0 from (x_t, t). x_t (optionally l2-normalised, then dropout on the
input) is concatenated with a learned projection of a ``time_dim``-dimensional sinusoidal
embedding of t, and passes through I+time_dim → dims reversed... → I: with DiffRec's ML-1M
``dims = [200, 600]`` that is I+10 → 600 → 200 → 600 → I, tanh after every layer but the
last. Weights are N(0, 2/(fan_in + fan_out)), biases N(0, 0.001²), as in DiffRec.

Training: t uniform on 0..T−1, ε ~ N(0, I) from the generator ``fit`` passes, loss = mean
over items of (x_0 − x̂_0(x_t, t))² (DiffRec's ``mean_type x0``; its SNR reweighting and
importance sampling of t are not used).

Inference (DiffRec with ``sampling_steps = 0``): x_{T−1} := the user's history itself (no
noise added), then for t = T−1..0 the posterior mean

    μ̃_t(x_t, x̂_0) = c1_t x̂_0 + c2_t x_t,   c1_t = β_t √ᾱ_{t−1} / (1 − ᾱ_t),
                                          c2_t = (1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t),

deterministically (no sampling noise); ᾱ_{−1} = 1, so c1_0 = 1, c2_0 = 0 and the last step
returns the network's x̂_0, which is the score. The tables are float64 and the chain is
carried in float64; only the network sees float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ....core import LossOutput, sinusoidal_embedding
from ....core.params import number, rate, whole, widths

MAX_BETA = 0.999


def linear_var_tables(steps: int, noise_scale: float, noise_min: float, noise_max: float) -> dict[str, np.ndarray]:
    """Every schedule table of the process, float64, indexed by the 0-based step t."""
    variance = np.linspace(noise_scale * noise_min, noise_scale * noise_max, steps, dtype=np.float64)
    alpha_bar = 1.0 - variance
    betas = np.empty(steps, dtype=np.float64)
    betas[0] = 1.0 - alpha_bar[0]
    betas[1:] = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    return {
        "betas": betas,
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": prev,
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "posterior_mean_coef1": betas * np.sqrt(prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (1.0 - prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    }


class GaussianDiffusionRecommender(nn.Module):
    def __init__(self, n_items: int, dims: Sequence[int] = (200, 600), time_dim: int = 10, dropout: float = 0.5,
                 norm: bool = False, steps: int = 40, noise_scale: float = 0.005, noise_min: float = 0.005,
                 noise_max: float = 0.01):
        super().__init__()
        dims, time_dim = widths("dims", dims), whole("time_dim", time_dim, low=1)
        dropout, steps = rate("dropout", dropout), whole("steps", steps, low=1)
        noise_scale, noise_min, noise_max = (number(name, value) for name, value in (
            ("noise_scale", noise_scale), ("noise_min", noise_min), ("noise_max", noise_max)))
        if not (noise_scale > 0 and 0 < noise_min <= noise_max and noise_scale * noise_max < 1):
            raise ValueError("need noise_scale > 0, 0 < noise_min <= noise_max and noise_scale * noise_max < 1; got "
                             f"noise_scale={noise_scale}, noise_min={noise_min}, noise_max={noise_max}")
        self.dim, self.steps, self.time_dim, self.norm = int(n_items), steps, time_dim, bool(norm)
        self.drop = nn.Dropout(dropout)
        self.time_proj = nn.Linear(time_dim, time_dim)
        widths_in = [self.dim + time_dim, *reversed(dims)]  # I+emb → 600 → 200
        widths_out = [*dims, self.dim]                      # 200 → 600 → I
        self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths_in[:-1], widths_in[1:]))
        self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths_out[:-1], widths_out[1:]))
        for layer in (self.time_proj, *self.in_layers, *self.out_layers):
            nn.init.normal_(layer.weight, std=math.sqrt(2.0 / (layer.in_features + layer.out_features)))
            nn.init.normal_(layer.bias, std=0.001)
        # Rebuilt from the parameters at construction, so not part of the checkpoint.
        for name, table in linear_var_tables(steps, noise_scale, noise_min, noise_max).items():
            self.register_buffer(name, torch.from_numpy(table), persistent=False)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = F.normalize(x_t, dim=-1) if self.norm else x_t
        h = self.drop(h)
        emb = self.time_proj(sinusoidal_embedding(t, self.time_dim).to(h.dtype))
        h = torch.cat([h, emb], dim=-1)
        for layer in self.in_layers:
            h = torch.tanh(layer(h))
        for i, layer in enumerate(self.out_layers):
            h = layer(h)
            if i < len(self.out_layers) - 1:
                h = torch.tanh(h)
        return h

    def _at(self, name: str, t: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)[t].unsqueeze(-1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mean = self._at("sqrt_alphas_cumprod", t) * x0.double()
        return (mean + self._at("sqrt_one_minus_alphas_cumprod", t) * noise.double()).to(x0.dtype)

    def posterior_mean(self, x0_hat: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t−1} | x_t, x_0 = x0_hat), float64."""
        return self._at("posterior_mean_coef1", t) * x0_hat.double() + self._at("posterior_mean_coef2", t) * x_t.double()

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None) -> LossOutput:
        if t is None:
            t = torch.randint(0, self.steps, (x0.shape[0],), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        mse = (x0 - self.predict_x0(x_t, t)).pow(2).mean(dim=1)
        return LossOutput(loss=mse.mean(), terms={"mse": mse, "loss": mse}, t=t)

    @torch.no_grad()
    def reverse(self, x: torch.Tensor, predict=None) -> torch.Tensor:
        """The deterministic reverse chain from x (as x_{T−1}) down to t = 0; returns the final x̂_0.

        ``predict(x_t, t)`` replaces the network (tests pass an oracle).
        """
        predict = predict or self.predict_x0
        x_t = x.double()
        for step in range(self.steps - 1, -1, -1):
            t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
            x_t = self.posterior_mean(predict(x_t.to(x.dtype), t), x_t, t)
        return x_t.to(x.dtype)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.reverse(x)
