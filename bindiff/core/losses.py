"""Losses for an x_0-predicting denoiser of binomial diffusion.

The losses return one value per example (features summed), so callers choose the batch
reduction; the KL helpers ``bernoulli_kl`` and ``bernoulli_kl_logits`` are element-wise.
``logits`` are the denoiser's output: logit p̂(x_0 = 1 | x_t).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .process import REVERSE_KERNELS, BernoulliProcess, check_unit_interval, working_dtype

LOSSES = ("bce", "vb", "hybrid")


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(B(p) ‖ B(q)) element-wise, with 0 log 0 = 0."""
    # where p is 0 (or 1) the log q (or log(1 − q)) term is absent; read at 1 there, so that its
    # gradient is 0 and not xlogy's 0/0 at q = 0 (or 1): d/dq −log(1 − q) is 1/(1 − q), finite
    q_where_read = torch.where(p == 0, torch.ones_like(q), q)
    not_q_where_read = torch.where(p == 1, torch.ones_like(q), 1 - q)
    return (
        torch.xlogy(p, p) - torch.xlogy(p, q_where_read) + torch.xlogy(1 - p, 1 - p)
        - torch.xlogy(1 - p, not_q_where_read)
    )


def _finite(logits: torch.Tensor) -> torch.Tensor:
    """±inf logits (p̂ exactly 0 or 1) as the largest finite ones: 0 · log σ(−inf) is NaN where the
    term is 0, and the loss of a certain, right prediction 0 rather than NaN."""
    big = torch.finfo(logits.dtype).max if logits.is_floating_point() else None
    return logits.clamp(-big, big) if big is not None else logits


def bernoulli_kl_logits(p: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(B(p) ‖ B(sigmoid(q_logits))), stable for confident q (uses log-sigmoid)."""
    q_logits = _finite(q_logits)
    return (
        torch.xlogy(p, p)
        + torch.xlogy(1 - p, 1 - p)
        - p * F.logsigmoid(q_logits)
        - (1 - p) * F.logsigmoid(-q_logits)
    )


def _lifted(logits: torch.Tensor, *states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``logits`` and the states (x_0, x_t: bits or probabilities of any dtype, bools included) in
    one float type of at least float32: a half-precision sum over thousands of bits is off by
    whole units, and a float64 model keeps float64."""
    dtype = working_dtype(logits)
    return (logits.to(dtype),) + tuple(x.to(dtype) for x in states)


def _checked(logits: torch.Tensor, **states: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The public losses' inputs: each state refused unless in [0, 1] (a −1 or a 2 gives a finite,
    wrong loss, without a word), then lifted as ``_lifted``."""
    for name, x in states.items():
        check_unit_interval(name, x)
    return _lifted(logits, *states.values())


def bce_x0(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """−log p̂(x_0) per example: the prediction is the input, the data the target."""
    return _bce(*_checked(logits, x0=x0))


def _bce(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(_finite(logits), x0, reduction="none").sum(-1)


DICE_SMOOTH = 1.0  # added to both sides of the soft Dice: an all-zero example is finite, and 0 when p̂ is 0


def soft_dice_x0(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice of p̂(x_0) against x_0 per example: 1 − (2 Σ p̂x + 1) / (Σ p̂ + Σ x + 1).

    An overlap term for sparse bit vectors (a mask's few foreground voxels), where the summed
    cross-entropy is dominated by the many certain zeros.
    """
    return _soft_dice(*_checked(logits, x0=x0))


def _soft_dice(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    return 1 - (2 * (prob * x0).sum(-1) + DICE_SMOOTH) / (prob.sum(-1) + x0.sum(-1) + DICE_SMOOTH)


def vb_terms(
    process: BernoulliProcess,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor | int,
    logits: torch.Tensor,
    reverse_kernel: str = "mixture",
) -> torch.Tensor:
    """The variational bound's term L_{t−1} per example (``t``: one time per row, or one for all).

    t = 1: decoder NLL −log p_θ(x_0 | x_1) with p_θ = p̂ (the network's own prediction).
    t ≥ 2: KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)), with p_θ the reverse kernel that
    sampling runs (``BernoulliProcess.reverse_logits``), so the bound trains what ``sample`` uses.
    """
    logits, x0, x_t = _checked(logits, x0=x0, x_t=x_t)
    _check_kernel(reverse_kernel)
    return _vb_terms(process, x0, x_t, _row_times(process, t, x0), logits, reverse_kernel)


def _check_kernel(reverse_kernel: str) -> None:
    if reverse_kernel not in REVERSE_KERNELS:
        raise ValueError(f"unknown reverse kernel {reverse_kernel!r}; choose one of {', '.join(REVERSE_KERNELS)}")


def _row_times(process: BernoulliProcess, t, x0: torch.Tensor) -> torch.Tensor:
    """``t`` as one long time per row of ``x0``, each in 1..T: one int for all rows, (B,) or a
    column (B, 1); any other shape, t = 0 (the data, which has no term), booleans or fractions
    refused."""
    t = process._check_t(t, low=1).to(x0.device)  # t = 0 has no term: it is the data
    if t.ndim == 2 and t.shape == (x0.shape[0], 1):  # t[:, None] counts as one time per row (docs/api.md)
        t = t.reshape(-1)
    if t.ndim == 0:  # one time for the whole batch
        t = t.expand(x0.shape[0])
    elif t.shape != (x0.shape[0],):
        raise ValueError(f"t: one time per row ({x0.shape[0]}) or one for all, got shape {tuple(t.shape)}")
    return t


def _vb_terms(process, x0, x_t, t, logits, reverse_kernel):
    """``vb_terms`` on inputs already checked and lifted, ``t`` one long time per row (``_row_times``)."""
    terms = _bce(logits, x0)
    later = t >= 2
    if later.any():
        rows = later.nonzero().squeeze(1)
        target = process._posterior_logits(x0[rows], x_t[rows], t[rows], None)
        model_logits = process._reverse_logits(logits[rows], x_t[rows], t[rows], None, reverse_kernel)
        terms = terms.index_put((rows,), _kl_between_logits(target, model_logits).sum(-1))
    return terms


def _kl_between_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(B(σ(p_logits)) ‖ B(σ(q_logits))) from both logits: exactly 0 where they are equal (the
    probability form cancels only to ~1e-7 per bit in float32, often below 0)."""
    p_logits, q_logits = _finite(p_logits), _finite(q_logits)
    return (torch.sigmoid(p_logits) * (F.logsigmoid(p_logits) - F.logsigmoid(q_logits))
            + torch.sigmoid(-p_logits) * (F.logsigmoid(-p_logits) - F.logsigmoid(-q_logits)))


def diffusion_loss(
    kind: str,
    process: BernoulliProcess,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    logits: torch.Tensor,
    hybrid_coeff: float = 0.01,
    reverse_kernel: str = "mixture",
    dice_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Per-example loss terms; ``"loss"`` is what training minimises.

    ``hybrid`` is D3PM's form: the bound plus ``hybrid_coeff`` times the x_0 cross-entropy.
    ``dice_weight`` > 0 adds ``dice_weight · D · soft_dice_x0`` (D bits per example: the term is in
    the summed cross-entropy's per-bit units, so 1 weighs it like the mean cross-entropy).
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    if not hybrid_coeff >= 0 or not dice_weight >= 0:  # NaN fails too; a negative weight maximises its term
        raise ValueError(f"hybrid_coeff and dice_weight must be >= 0, got {hybrid_coeff} and {dice_weight}")
    logits, x0, x_t = _checked(logits, x0=x0, x_t=x_t)
    _check_kernel(reverse_kernel)  # for "bce" too, which reads neither: a bad argument is refused
    t = _row_times(process, t, x0)  # whatever the loss reads (docs/api.md)
    terms: dict[str, torch.Tensor] = {}
    if kind in ("bce", "hybrid"):
        terms["bce"] = _bce(logits, x0)
    if kind in ("vb", "hybrid"):
        terms["vb"] = _vb_terms(process, x0, x_t, t, logits, reverse_kernel)
    if kind == "bce":
        terms["loss"] = terms["bce"]
    elif kind == "vb":
        terms["loss"] = terms["vb"]
    else:
        terms["loss"] = terms["vb"] + hybrid_coeff * terms["bce"]
    if dice_weight:
        terms["dice"] = _soft_dice(logits, x0)
        terms["loss"] = terms["loss"] + dice_weight * x0.shape[-1] * terms["dice"]
    return terms
