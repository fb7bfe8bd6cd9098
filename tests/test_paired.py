"""The paired Wilcoxon signed-rank test against an enumeration of every sign pattern."""

from itertools import product

import numpy as np
import pytest

from bindiff.metrics.paired import paired_wilcoxon


def _exact_p(differences) -> float:
    """Two-sided exact p of the signed-rank statistic: all 2^n sign patterns, distinct |d| (no ties)."""
    d = np.asarray(differences, dtype=float)
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    totals = [sum(r for r, s in zip(ranks, signs) if s) for signs in product((0, 1), repeat=len(d))]
    low = np.mean([t <= observed for t in totals])
    high = np.mean([t >= observed for t in totals])
    return min(1.0, 2 * min(low, high))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_p_value_and_mean_difference_equal_an_enumeration(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=9)
    b = a - rng.normal(0.4, 1.0, size=9)
    result = paired_wilcoxon(a, b)
    assert result["units"] == 9
    assert result["mean_difference"] == pytest.approx(float(np.mean(a - b)))
    assert result["wilcoxon_p"] == pytest.approx(_exact_p(a - b))


def test_nan_units_are_left_out_and_equal_scores_give_p_one():
    result = paired_wilcoxon([0.5, np.nan, 0.7], [0.5, 0.1, 0.7])
    assert result == {"units": 2, "ranked": 0, "mean_difference": 0.0, "wilcoxon_p": 1.0}
    # a tie is a unit of the mean but not of the ranks: 3 units, 2 ranked
    assert paired_wilcoxon([0.5, 0.9, 0.2], [0.5, 0.1, 0.7])["ranked"] == 2
    with pytest.raises(ValueError, match="one shape"):
        paired_wilcoxon([1.0, 2.0], [1.0])


def test_many_tied_units_take_the_normal_approximation_with_the_tie_correction():
    """Per-user metrics have many ties and far more than 50 units: the large-sample statistic, by hand."""
    import math

    d = np.array([1, 1, 2, 2, 2, -1, 3, -3, 3, 4, 0] * 6, dtype=float)
    ranked = d[d != 0]  # Wilcoxon's zero method: zeros are dropped before ranking
    n = ranked.size
    magnitudes = np.abs(ranked)
    ranks = np.empty(n)
    for value in np.unique(magnitudes):  # mid-ranks of tied magnitudes
        where = magnitudes == value
        below = int((magnitudes < value).sum())
        ranks[where] = below + (where.sum() + 1) / 2
    w_plus = ranks[ranked > 0].sum()
    ties = [int((magnitudes == v).sum()) for v in np.unique(magnitudes)]
    variance = n * (n + 1) * (2 * n + 1) / 24 - sum(t ** 3 - t for t in ties) / 48
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(variance)
    assert (n, w_plus, variance) == (60, 1500, 18084.75)
    result = paired_wilcoxon(d, np.zeros_like(d))
    assert (result["units"], result["ranked"]) == (66, 60)
    assert result["wilcoxon_p"] == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)  # 1.36e-5
