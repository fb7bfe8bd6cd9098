"""How trustworthy a per-voxel probability map is: calibration, and whether its uncertainty
points at its errors. The metrics segmentation with uncertainty reports beside Dice.

Definitions (``prob``: predicted P(voxel = 1), ``truth``: the reference bits, any shape):

- Brier score = mean of (prob − truth)²; 0 is perfect.
- ECE (expected calibration error, equal-width bins over [0, 1], the last bin closed): the sum
  over bins of (voxels in the bin / all voxels) · |mean truth − mean prob| in the bin; 0 when
  every predicted probability is the frequency it claims. Bin b holds k/B ≤ p < (k+1)/B, the
  edges k/B taken as the floats ``k / B``, so p = 0.29 lies in bin 29 of 100 (``int(p * B)`` put
  it in bin 28). torchmetrics' ``binary_calibration_error(norm="l1")`` bins the same way except
  at p = 1, which it puts in a bin of its own.
- ``binary_entropy``: −p log₂ p − (1 − p) log₂ (1 − p), in bits: 1 at p = ½, 0 at p ∈ {0, 1}.
- Error-detection AUROC: the probability that a wrongly predicted voxel has a higher uncertainty
  than a correctly predicted one (ties count ½), i.e. the Mann–Whitney statistic; 0.5 is chance.
"""

from __future__ import annotations

import numpy as np

__all__ = ["binary_entropy", "brier_score", "error_detection_auroc", "expected_calibration_error"]


def _pair(prob, truth) -> tuple[np.ndarray, np.ndarray]:
    prob, truth = np.asarray(prob, dtype=np.float64).ravel(), np.asarray(truth).astype(bool).ravel()
    if prob.shape != truth.shape:
        raise ValueError(f"prob has {prob.size} values but truth {truth.size}")
    if prob.size and (prob.min() < 0 or prob.max() > 1 or not np.isfinite(prob).all()):
        raise ValueError("prob must hold probabilities in [0, 1]")
    return prob, truth


def brier_score(prob, truth) -> float:
    prob, truth = _pair(prob, truth)
    return float(np.mean((prob - truth) ** 2)) if prob.size else float("nan")


def expected_calibration_error(prob, truth, bins: int = 10) -> float:
    prob, truth = _pair(prob, truth)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if not prob.size:
        return float("nan")
    edges = np.arange(bins + 1) / bins  # k / B, correctly rounded (np.linspace's k * (1/B) is not)
    index = np.minimum(np.searchsorted(edges, prob, side="right") - 1, bins - 1)  # p = 1: the last bin
    gap = np.abs(np.bincount(index, weights=truth.astype(np.float64), minlength=bins)
                 - np.bincount(index, weights=prob, minlength=bins))
    return float(gap.sum() / prob.size)  # sum_b (n_b / N) |mean truth_b − mean prob_b|


def binary_entropy(prob) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def error_detection_auroc(uncertainty, errors) -> float:
    """AUROC of ``uncertainty`` for telling wrong voxels (``errors`` True) from right ones; NaN
    when there are no errors or no correct voxels."""
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    e = np.asarray(errors).astype(bool).ravel()
    if u.shape != e.shape:
        raise ValueError(f"uncertainty has {u.size} values but errors {e.size}")
    n_wrong, n_right = int(e.sum()), int((~e).sum())
    if not n_wrong or not n_right:
        return float("nan")
    from scipy import stats  # here: 0.7 s at start-up that most commands never need

    ranks = stats.rankdata(u)  # ties get their mean rank: a tie counts one half
    return float((ranks[e].sum() - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right))
