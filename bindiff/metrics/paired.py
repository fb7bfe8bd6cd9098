"""Paired comparison of two models scored on the same units (users, cases)."""

from __future__ import annotations

import numpy as np


def paired_wilcoxon(a, b) -> dict:
    """Mean of ``a − b`` and the two-sided Wilcoxon signed-rank p-value over the units both score.

    Units whose difference is undefined (either value NaN, or both the same infinity) are left
    out; ``units`` counts the rest, over which the mean difference is taken. The test ranks the
    non-zero differences only (scipy's ``zero_method`` "wilcox", Wilcoxon's own), counted as
    ``ranked``; when every difference is 0 the p-value is 1.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must have one shape, got {a.shape} and {b.shape}")
    with np.errstate(invalid="ignore"):  # inf − inf is NaN: no difference to rank, as a NaN score
        keep = ~np.isnan(a - b)
    diff = a[keep] - b[keep]
    if not keep.any():
        return {"units": 0, "ranked": 0, "mean_difference": float("nan"), "wilcoxon_p": float("nan")}
    p = float(wilcoxon(a[keep], b[keep]).pvalue) if np.any(diff != 0) else 1.0
    return {"units": int(keep.sum()), "ranked": int(np.count_nonzero(diff)), "mean_difference": float(diff.mean()),
            "wilcoxon_p": p}
