"""Holding the number of ones of a sample: the exponential tilt of a product of Bernoullis.

A reverse chain whose denoiser is slightly off can drift in a whole-vector statistic that no
single bit carries, such as the volume of a mask (docs/masks.md). Among all products of
Bernoullis whose expected number of ones is k, the one closest in KL divergence to p̂ is
p̂ tilted by a single logit shift b: σ(logit p̂ + b), with b the root of Σ σ(logit p̂_i + b) = k
(the Lagrange condition of min KL(q ‖ p̂) subject to Σ q_i = k). One shift per row keeps the
ordering of the bits, so the tilt moves the least certain bits first (a mask's boundary).
"""

from __future__ import annotations

import torch

# Bisection on the shift: Σ σ(ℓ + b) is increasing in b, so the root is unique. It lies in
# [logit(k/D) − max ℓ, logit(k/D) − min ℓ] (there every bit is at most, or at least, the mean it
# needs); the bracket is [-60, 60] widened to hold that interval, and 60 halvings of a bracket
# of 120 reach float64's resolution. (Newton's method, even kept inside a bracket, stalled short
# of the count on saturated rows of a mask's 61,440 voxels.)
_SHIFT_RANGE = 60.0
_HALVINGS = 60


def tilt_to_count(logits: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
    """``logits`` (B, D) shifted row by row so that the sum of their sigmoids is ``ones`` (B,).

    Targets are clipped to [0.5, D − 0.5]: a product of Bernoullis with finite logits cannot
    have all or none of its bits on for sure. Computed in float64, returned in the dtype of
    ``logits`` (float32 for integer or boolean logits).
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, D), got shape {tuple(logits.shape)}")
    try:
        ones = torch.as_tensor(ones, device=logits.device).to(torch.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError, RuntimeError) as error:  # 10**400: "Overflow when unpacking long long"
        raise ValueError(f"ones must be counts, one for each row: {error}") from None
    if ones.shape[0] != logits.shape[0]:
        raise ValueError(f"ones has {ones.shape[0]} values for {logits.shape[0]} rows")
    if not torch.isfinite(ones).all():
        raise ValueError("ones must be finite counts")
    # integer or boolean logits: the shifted logits are fractions, returned in float32 (cast back to
    # int64 they were truncated, [[1, 2, 3]] tilted to one 1 came back [[-1, 0, 0]])
    out_dtype = logits.dtype if logits.is_floating_point() else torch.float32
    x = logits.to(torch.float64)
    if x.numel() == 0:  # no rows, or rows of no bits: nothing to shift
        return logits.to(out_dtype, copy=True)
    if not torch.isfinite(x).all():
        raise ValueError("logits must be finite")
    target = ones.clamp(0.5, x.shape[1] - 0.5)
    mean_logit = torch.logit(target / x.shape[1])
    low = torch.minimum(torch.full_like(target, -_SHIFT_RANGE), mean_logit - x.max(1).values)
    high = torch.maximum(torch.full_like(target, _SHIFT_RANGE), mean_logit - x.min(1).values)
    # each doubling of the bracket beyond 120 costs one halving more (at most 1,100: float64's range)
    halvings = _HALVINGS + int(torch.log2((high - low).max() / (2 * _SHIFT_RANGE)).nan_to_num(posinf=1100)
                               .ceil().clamp(0, 1100))
    for _ in range(halvings):
        mid = (low + high) / 2
        above = torch.sigmoid(x + mid[:, None]).sum(1) > target
        high = torch.where(above, mid, high)
        low = torch.where(above, low, mid)
    return (x + ((low + high) / 2)[:, None]).to(out_dtype)
