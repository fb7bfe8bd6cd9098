"""A reproduction of the published RecFusion binomial model (``recpack/algorithms/recfusionBin.py``).

This is RecFusion as its official code behaves, defects included, so that bindiff's own
binomial diffusion can be compared with it on the same split. Nothing here is bindiff's
method; see docs/baselines.md and the research notes (§1.2–1.8) for the sources.

Forward ("noising") process, sampled sequentially and never in closed form:
    z_0 = flip(x, β_1),   z_i = flip(z_{i−1}, β_{i+1}),  i = 1..T−1,
where flip(·, β) XORs every bit with an independent Bernoulli(β) draw (taken from the
generator ``fit`` passes). The default β is the quadratic schedule
β = linspace(√1e-4, √0.1, T)² = [1e-4, 0.0266, 0.1] for T = 3.

Network (no time input; one network for every step):
    D → M, PReLU, then the SAME (M → M, PReLU) module applied ``depth`` times, → D, Sigmoid.
The published code builds the hidden part as ``[Linear(M, M), PReLU()] * depth``; list
multiplication repeats the same two module objects, so the hidden layer is weight-shared
and the network has exactly three distinct linear maps (D→M, M→M, M→D) and two PReLU
slopes whatever ``depth`` is. This module makes that sharing explicit.

Loss, for a batch of binary user vectors X, with Ẑ_i = f(z_i) for i = 0..T−1:
    L = −mean_batch(RE − KL),  i.e.  L = BCE_swapped + mean_batch(KL)   (anneal = 1)

    RE = −BCELoss()(X, Ẑ_0)
    KL = Σ_items [log N(Ẑ_{T−1}; √(1−β_1)·Ẑ_{T−1}, logvar = log β_1) − log N(Ẑ_{T−1}; 0, 1)]
       + Σ_{i=0}^{T−1} Σ_items [log N(z_i; √(1−β_{i+1})·z_i, logvar = log β_{i+1})
                                − log N(z_i; Ẑ_i, logvar = β_{i+1})]

with log N(x; μ, logvar) = −½ log 2π − ½ logvar − ½ e^{−logvar} (x − μ)² (Tomczak's
``log_normal_diag``, from which the code descends via CODIGEM).

Defects of the published model, reproduced on purpose:

1. **Swapped BCE arguments.** torch's signature is ``BCELoss()(input=prediction,
   target=label)``; the code passes the data as ``input`` and the prediction as
   ``target``. Since torch clamps each log at −100 and X is binary, the value is
   −mean[Ẑ log X + (1−Ẑ) log(1−X)] = 100 · mean|X − Ẑ_0|: an L1 loss scaled by 100,
   not a cross-entropy.
2. **Its gradient only exists through ``target``.** torch differentiates
   ``binary_cross_entropy`` with respect to ``target`` as −logit(input)/N, which is ±∞ for
   binary data (logit(0) = −∞, logit(1) = +∞): the literal call makes every weight
   gradient NaN on the first step (``tests/test_baselines.py`` checks this), after which
   the next call fails because its target holds NaN. So this module computes the same
   value from the clamped logs explicitly, and autograd differentiates that: ±100/N per
   entry, the gradient of the loss as torch evaluates it.
3. **Mismatched scales.** RE is a mean over all B·D entries, the KL terms are sums over
   the D items (averaged over the batch): per entry the RE gradient is 100/(B·D), that of
   the last KL term e^{−β}|Ẑ_i − z_i|/B, so with thousands of items the "KL" drives
   training (about 28·|Ẑ_i − z_i| times stronger on ML-1M's 2,810 items).
4. **Gaussian "KL" terms on bits.** No Bernoulli posterior or Bernoulli KL is used.
   The first term compares Ẑ_{T−1} with a scaled copy of itself and with N(0, 1); it
   mostly pulls Ẑ_{T−1} towards 0. In the sum, the first density depends on z_i only
   (a large constant without gradient: ½·|log β| per item). The second asks the network
   to reproduce its own noisy input z_i (not z_{i−1}), and passes β_{i+1} where a
   log-variance is expected, so its weight is ½e^{−β} instead of 1/(2β).
5. **No time input and weight sharing** (above): one network denoises every step.
6. **Train/test mismatch.** Inference is one forward pass on the clean fold-in vector x,
   which training never shows the network (z_0 is already flipped).

Inference: ``score(x)`` is one forward pass on the clean history. It returns the network's
pre-sigmoid output, which ranks items exactly as the published sigmoid output does but
cannot tie at a saturated 1.0 in float32.

Defaults follow the published code: T = 3, quadratic β from 1e-4 to 0.1, M = 200,
depth 4; Adam at lr 1e-4 and batch 200 are the recipe's ``train`` keys
(``recipes/ml1m_recfusion.yaml``). torch's default initialisation, no dropout.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ....core import LossOutput
from ....core.process import at_least_float32
from ....core.params import number, whole

SCHEDULES = ("quadratic", "linear", "fixed")
_LOG_2PI = math.log(2.0 * math.pi)


def recfusion_betas(steps: int, schedule: str = "quadratic", beta_start: float = 1e-4,
                    beta_end: float = 0.1) -> np.ndarray:
    """The published ``get_beta_schedule`` for the bit-flip process (flip probabilities)."""
    if schedule == "quadratic":
        return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps, dtype=np.float64) ** 2
    if schedule == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if schedule == "fixed":
        return np.full(steps, beta_start, dtype=np.float64)
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def log_normal_diag(x: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor | float) -> torch.Tensor:
    log_var = torch.as_tensor(log_var, dtype=x.dtype, device=x.device)
    return -0.5 * _LOG_2PI - 0.5 * log_var - 0.5 * torch.exp(-log_var) * (x - mu) ** 2


def log_standard_normal(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * _LOG_2PI - 0.5 * x ** 2


def swapped_bce(data: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The value of ``F.binary_cross_entropy(data, prediction)`` (data as ``input``), differentiable
    in ``prediction`` with finite gradients: −mean[p · max(log x, −100) + (1−p) · max(log(1−x), −100)]."""
    log_x = torch.log(data).clamp(min=-100.0)
    log_1mx = torch.log1p(-data).clamp(min=-100.0)
    return -(prediction * log_x + (1.0 - prediction) * log_1mx).mean()


def flip(z: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """XOR every bit of z with an independent Bernoulli(β) draw."""
    bits = torch.bernoulli(torch.full_like(z, float(beta)), generator=generator)
    return (z - bits).abs()


class RecFusionBin(nn.Module):
    def __init__(self, n_items: int, steps: int = 3, schedule: str = "quadratic", beta_start: float = 1e-4,
                 beta_end: float = 0.1, hidden: int = 200, depth: int = 4):
        super().__init__()
        steps, hidden, depth = whole("steps", steps, low=1), whole("hidden", hidden, low=1), whole("depth", depth)
        betas = recfusion_betas(steps, schedule, number("beta_start", beta_start), number("beta_end", beta_end))
        if not np.all((betas > 0) & (betas < 1)):
            raise ValueError(f"flip probabilities must lie in (0, 1), got {betas.tolist()}")
        self.dim, self.steps, self.depth = int(n_items), steps, depth
        self.betas = [float(b) for b in betas]
        self.first = nn.Linear(self.dim, hidden)
        self.first_act = nn.PReLU()
        self.shared = nn.Linear(hidden, hidden)  # applied `depth` times, one set of weights
        self.shared_act = nn.PReLU()
        self.last = nn.Linear(hidden, self.dim)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.first_act(self.first(z))
        for _ in range(self.depth):
            h = self.shared_act(self.shared(h))
        return self.last(h)

    def net(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))

    def noise_chain(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        zs, z = [], x
        for beta in self.betas:
            z = flip(z, beta, generator)
            zs.append(z)
        return zs

    def loss_terms(self, x: torch.Tensor, zs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        # in float32 under autocast too (bf16 is the default on CUDA): the terms' arithmetic in bf16
        # rounds log β to 2 digits and flattens the per-user differences
        z_hat = [torch.sigmoid(at_least_float32(self.logits(z))) for z in zs]
        re = -swapped_bce(x, z_hat[0])  # a scalar, as in the published code
        b0 = self.betas[0]
        top = z_hat[-1]
        kl = (log_normal_diag(top, math.sqrt(1.0 - b0) * top, math.log(b0)) - log_standard_normal(top)).sum(dim=1)
        for z, zh, beta in zip(zs, z_hat, self.betas):
            kl = kl + (log_normal_diag(z, math.sqrt(1.0 - beta) * z, math.log(beta))
                       - log_normal_diag(z, zh, beta)).sum(dim=1)
        loss = -(re - kl)  # per user; the batch mean is the published loss
        return {"re": re.expand_as(kl), "kl": kl, "loss": loss}

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        terms = self.loss_terms(x0, self.noise_chain(x0, generator))
        return LossOutput(loss=terms["loss"].mean(), terms=terms, t=None)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)
