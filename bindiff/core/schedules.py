"""Noise schedules as pure functions: ``get_schedule(name, steps, ...) -> betas``.

Every schedule returns β_1..β_T as a float64 tensor of length T for the kernel
q(x_t | x_{t-1}) = B(x_{t-1}(1 − β_t) + β_t / 2). β_t = 1 randomises a bit completely
(B(½)), so valid values lie in (0, 1]; anything else is refused here rather than
producing probabilities outside [0, 1] later.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Callable

import torch

ScheduleFn = Callable[..., torch.Tensor]


def linear(steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def quadratic(steps: int, beta_start: float = 1e-4, beta_end: float = 0.1) -> torch.Tensor:
    """RecFusion's default: linear in √β, so early steps add very little noise."""
    return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps, dtype=torch.float64) ** 2


def cosine(steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule, expressed through ᾱ_t = f(t) / f(0).

    The cap keeps the last β below 1 so the chain does not jump to B(½) in one step.
    """
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def jsd(steps: int) -> torch.Tensor:
    """Sohl-Dickstein's binomial schedule β_t = 1 / (T − t + 1).

    It gives ᾱ_t = (T − t) / T, so x_T ~ B(½) exactly (β_T = 1).
    """
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    return 1.0 / (steps - t + 1)


def constant(steps: int, beta: float = 0.01) -> torch.Tensor:
    return torch.full((steps,), float(beta), dtype=torch.float64)


SCHEDULES: dict[str, ScheduleFn] = {
    "linear": linear,
    "quadratic": quadratic,
    "cosine": cosine,
    "jsd": jsd,
    "constant": constant,
}


def validate_betas(betas: torch.Tensor, *, source: str = "betas") -> torch.Tensor:
    """Refuse tables that would not describe a Bernoulli kernel."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.ndim != 1 or betas.numel() < 1:
        raise ValueError(f"{source}: need at least one step (T >= 1), got shape {tuple(betas.shape)}")
    if not torch.isfinite(betas).all():
        raise ValueError(f"{source}: every beta must be finite")
    bad = (betas <= 0) | (betas > 1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"{source}: beta_{first + 1} = {betas[first].item():.6g} is outside (0, 1]; "
            "a Bernoulli kernel needs 0 < beta <= 1"
        )
    # β = 1 erases x_0 completely (ᾱ = 0); any later step would then condition on nothing
    # and its posterior would be 0/0. Only the last step may do that (as "jsd" does).
    early_one = (betas[:-1] == 1).nonzero()
    if len(early_one):
        first = int(early_one[0])
        raise ValueError(
            f"{source}: beta_{first + 1} = 1 before the last step; only beta_T may be 1"
        )
    return betas


MAX_STEPS = 100_000  # every table is computed at once (the recipe's diffusion.steps has the same bound)
BETA_PARAMETERS = ("beta_start", "beta_end", "beta")  # each a β itself, in (0, 1]


def get_schedule(name: str, steps: int, **params: float) -> torch.Tensor:
    """β_1..β_T for the named schedule, validated."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"schedule {name!r}: steps must be an integer >= 1 (T >= 1), got {steps!r}")
    if steps > MAX_STEPS:  # 10**400 failed in torch's argument parsing, 2**40 in its allocator, neither naming steps
        raise ValueError(f"schedule {name!r}: steps must be at most {MAX_STEPS}, got {steps!r}")
    steps = int(steps)  # numpy's integers too
    accepted = [p for p in inspect.signature(SCHEDULES[name]).parameters if p != "steps"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"schedule {name!r} has no parameter(s) {unknown}; it takes {accepted}")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"schedule {name!r}: parameter {key!r} must be a number, got {value!r}")
        if key in BETA_PARAMETERS and not 0 < value <= 1:  # quadratic's √ of a negative β named nothing
            raise ValueError(f"schedule {name!r}: parameter {key!r} = {value!r} is outside (0, 1]; it is a beta")
        # a cap, not a β: 1 or more caps nothing (β <= 1 already), as runs trained with max_beta: 2 were built
        if key == "max_beta" and not value > 0:
            raise ValueError(f"schedule {name!r}: parameter 'max_beta' = {value!r} must be > 0 (the cap on every "
                             "beta; 1 or more: no cap)")
        if key == "offset" and not -1 < value < math.inf:  # at -1 cosine's f divides by 0
            raise ValueError(f"schedule {name!r}: parameter 'offset' must be a finite number > -1, got {value!r}")
    params = {key: int(v) if isinstance(v, numbers.Integral) else float(v) for key, v in params.items()}
    return validate_betas(SCHEDULES[name](steps, **params), source=f"schedule {name!r}")
