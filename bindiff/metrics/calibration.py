"""How trustworthy a per-voxel probability map is: calibration, and whether its uncertainty
points at its errors. The metrics segmentation with uncertainty reports beside Dice.

Definitions (``prob``: predicted P(voxel = 1), ``truth``: the reference bits, any shape):

- Brier score = mean of (prob − truth)²; 0 is perfect.
- ECE (expected calibration error, equal-width bins over [0, 1], the last bin closed): the sum
  over bins of (voxels in the bin / all voxels) · |mean truth − mean prob| in the bin; 0 when
  every predicted probability is the frequency it claims. Bin b holds k/B ≤ p < (k+1)/B, the
  edges k/B taken as the floats ``k / B``, so p = 0.29 lies in bin 29 of 100 (``int(p * B)`` put
  it in bin 28). torchmetrics' ``binary_calibration_error(norm="l1")`` bins the same way except
  at p = 1, which it puts in a bin of its own, and at edges where ``torch.linspace(0, 1, B + 1)``
  is not the float k / B (2/3 with 3 bins: it puts p = 2/3 one bin lower).
- ``binary_entropy``: −p log₂ p − (1 − p) log₂ (1 − p), in bits: 1 at p = ½, 0 at p ∈ {0, 1}.
- Error-detection AUROC: the probability that a wrongly predicted voxel has a higher uncertainty
  than a correctly predicted one (ties count ½), i.e. the Mann–Whitney statistic; 0.5 is chance.
"""

from __future__ import annotations

import numbers

import numpy as np

from .segmentation import as_array, as_mask

__all__ = ["binary_entropy", "brier_score", "error_detection_auroc", "expected_calibration_error"]


def _pair(prob, truth) -> tuple[np.ndarray, np.ndarray]:
    prob, truth = _probabilities(prob, "prob"), as_mask(truth, "truth")
    if prob.shape != truth.shape:  # before flattening: a (2, 3) map is not a (3, 2) one
        raise ValueError(f"prob {prob.shape} and truth {truth.shape} differ in shape")
    return prob.ravel(), truth.ravel()


def _probabilities(values, name: str) -> np.ndarray:
    array = as_array(values)
    if array.dtype.kind not in "biuf":  # text ("0.5" was read as 0.5), complex, objects
        raise ValueError(f"{name} must hold probabilities in [0, 1], got an array of {array.dtype}")
    array = array.astype(np.float64)
    inside = (array >= 0) & (array <= 1)  # NaN is outside
    if not inside.all():
        raise ValueError(f"{name} must hold probabilities in [0, 1], got {array[~inside].flat[0].item()!r}")
    return array


def brier_score(prob, truth) -> float:
    """Mean of (prob − truth)² over the voxels; 0 is perfect (NaN for no voxels)."""
    prob, truth = _pair(prob, truth)
    return float(np.mean((prob - truth) ** 2)) if prob.size else float("nan")


def expected_calibration_error(prob, truth, bins: int = 10) -> float:
    """Σ over ``bins`` equal-width bins of (share of voxels in the bin) · |frequency of 1s − mean
    prob| (the module docstring has the bin edges); 0 when every probability is the frequency it claims."""
    prob, truth = _pair(prob, truth)
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if not prob.size:
        return float("nan")
    edges = np.arange(bins + 1) / bins  # k / B, correctly rounded (np.linspace's k * (1/B) is not)
    index = np.minimum(np.searchsorted(edges, prob, side="right") - 1, bins - 1)  # p = 1: the last bin
    gap = np.abs(np.bincount(index, weights=truth.astype(np.float64), minlength=bins)
                 - np.bincount(index, weights=prob, minlength=bins))
    return float(gap.sum() / prob.size)  # sum_b (n_b / N) |mean truth_b − mean prob_b|


def binary_entropy(prob) -> np.ndarray:
    """−p log₂ p − (1 − p) log₂ (1 − p) per voxel, in bits: 1 at p = ½, 0 at 0 and 1."""
    p = _probabilities(prob, "prob")  # NaN and 1.5 came out 0 bits: "certain"
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def error_detection_auroc(uncertainty, errors) -> float:
    """AUROC of ``uncertainty`` for telling wrong voxels (``errors`` True) from right ones; NaN
    when there are no errors or no correct voxels."""
    u, e = as_array(uncertainty), as_mask(errors, "errors")
    if u.dtype.kind not in "biuf":  # text, complex, integers beyond a float
        raise ValueError(f"uncertainty must hold real numbers, got an array of {u.dtype}")
    u = u.astype(np.float64)
    if u.shape != e.shape:
        raise ValueError(f"uncertainty {u.shape} and errors {e.shape} differ in shape")
    if not np.isfinite(u).all():  # a NaN rank made the AUROC NaN, read as "undefined" and left out of means
        raise ValueError(f"uncertainty holds a value that is not finite: {u[~np.isfinite(u)].flat[0].item()!r}")
    u, e = u.ravel(), e.ravel()
    n_wrong, n_right = int(e.sum()), int((~e).sum())
    if not n_wrong or not n_right:
        return float("nan")
    from scipy import stats  # here: 0.7 s at start-up that most commands never need

    ranks = stats.rankdata(u)  # ties get their mean rank: a tie counts one half
    return float((ranks[e].sum() - n_wrong * (n_wrong + 1) / 2) / (n_wrong * n_right))
