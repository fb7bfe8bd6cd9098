"""Arguments at the edge of what floats and sizes hold, each against a value computed in the test."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bindiff.metrics.segmentation import assd, hd95, segmentation_metrics, surface_dice


def _surface_points(mask):
    """Voxels of the mask with a face neighbour outside it (the array border counts as outside)."""
    points = []
    for index in zip(*np.nonzero(mask)):
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            neighbour = list(index)
            neighbour[axis] += step
            if not 0 <= neighbour[axis] < mask.shape[axis] or not mask[tuple(neighbour)]:
                points.append(index)
                break
    return points


def _directed_mm(from_mask, to_mask, spacing):
    """Each surface voxel's distance to the other surface, in Python floats with math.hypot (no squares)."""
    targets = _surface_points(to_mask)
    return [min(math.hypot(*((a - b) * s for a, b, s in zip(p, q, spacing))) for q in targets)
            for p in _surface_points(from_mask)]


@pytest.mark.parametrize("spacing", [(1e200, 1e200, 1e200), (1e160, 1e170, 3e165), (1e-300, 1e-300, 1e-300),
                                     (1e-170, 1e-160, 3e-165), (1.0, 0.8, 2.5)])
def test_surface_metrics_hold_at_voxel_sizes_whose_squares_overflow_or_underflow(spacing):
    # in mm the distance transform squared 1e308 (HD95 NaN) and 1e-300 (HD95 0)
    pred, truth = np.zeros((5, 5, 5), bool), np.zeros((5, 5, 5), bool)
    pred[1:3, 1:3, 1:3], truth[2:4, 1:4, 2:4] = True, True
    d_pt, d_tp = _directed_mm(pred, truth, spacing), _directed_mm(truth, pred, spacing)
    both = d_pt + d_tp
    expected_hd95 = max(np.percentile(d_pt, 95), np.percentile(d_tp, 95))
    assert hd95(pred, truth, spacing) == pytest.approx(expected_hd95, rel=1e-12)
    assert assd(pred, truth, spacing) == pytest.approx(math.fsum(d / len(both) for d in both), rel=1e-12)
    distinct = sorted(set(both))
    tolerance = distinct[(len(distinct) - 1) // 2]  # a tolerance some distances pass and some do not
    expected_nsd = sum(d <= tolerance * (1 + 1e-6) for d in both) / len(both)
    assert 0 < expected_nsd < 1
    assert surface_dice(pred, truth, spacing, tolerance) == pytest.approx(expected_nsd)
    row = segmentation_metrics(pred, truth, spacing, tolerance)
    assert row["hd95_mm"] == pytest.approx(expected_hd95, rel=1e-12) and row["surface_dice"] == pytest.approx(expected_nsd)


@pytest.mark.parametrize("metric", [hd95, assd, surface_dice])
def test_voxel_sizes_too_far_apart_for_the_distance_transform_are_refused(metric):
    # at (1e308, 1, 1) every distance along the 1 mm axes came out 0
    pred = np.zeros((3, 3, 3), bool)
    pred[1, 1, 1] = True
    with pytest.raises(ValueError, match=r"spacing .*differ by more than a factor of 1e150"):
        metric(pred, pred, (1e308, 1.0, 1.0))


def test_the_empty_mask_distance_is_the_diagonal_even_when_its_square_overflows():
    pred, empty = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    pred[1, 1, 1] = True
    assert hd95(pred, empty, (1e200, 1e200, 1e200)) == pytest.approx(math.sqrt(3) * 4e200)  # was an OverflowError


def test_a_pair_of_equal_infinities_is_left_out_as_a_nan_pair_is():
    from scipy.stats import wilcoxon

    from bindiff.metrics.paired import paired_wilcoxon

    a, b = [math.inf, 1.0, 2.5, 3.0, 7.0, math.nan], [math.inf, 0.0, 1.0, 3.5, 2.0, 1.0]
    kept_a, kept_b = [1.0, 2.5, 3.0, 7.0], [0.0, 1.0, 3.5, 2.0]  # by hand: inf − inf and the NaN have no difference
    result = paired_wilcoxon(a, b)
    assert result["units"] == 4 and result["ranked"] == 4
    assert result["mean_difference"] == pytest.approx((1.0 + 1.5 - 0.5 + 5.0) / 4)  # was NaN
    assert result["wilcoxon_p"] == pytest.approx(wilcoxon(kept_a, kept_b).pvalue)
    assert paired_wilcoxon([math.inf], [-math.inf])["mean_difference"] == math.inf  # a defined difference stays


@pytest.mark.parametrize("steps", [10 ** 400, 2 ** 40, 100_001])
def test_a_schedule_of_more_steps_than_the_recipe_allows_is_refused_naming_steps(steps):
    from bindiff.core.schedules import get_schedule

    with pytest.raises(ValueError, match=r"^schedule 'linear': steps must be at most 100000, got \d+$"):
        get_schedule("linear", steps)  # failed in torch's argument parsing or its allocator, naming nothing
    assert get_schedule("jsd", 100_000)[-1] == 1.0  # the bound itself builds: β_T = 1 / (T − T + 1)


@pytest.mark.parametrize("name, key, value", [("quadratic", "beta_start", -0.1), ("linear", "beta_end", math.nan),
                                              ("constant", "beta", 0.0)])
def test_a_beta_parameter_outside_0_1_is_refused_naming_it(name, key, value):
    from bindiff.core.schedules import get_schedule

    # quadratic's √ of a negative β was a "math domain error"; cosine's max_beta of 2 built silently
    with pytest.raises(ValueError, match=rf"^schedule '{name}': parameter '{key}' = .* is outside \(0, 1\]; it is a beta$"):
        get_schedule(name, 4, **{key: value})


@pytest.mark.parametrize("offset", [-1.0, -3.0, math.inf, math.nan])
def test_a_cosine_offset_where_its_formula_breaks_is_refused_naming_it(offset):
    from bindiff.core.schedules import get_schedule

    with pytest.raises(ValueError, match=r"^schedule 'cosine': parameter 'offset' must be a finite number > -1"):
        get_schedule("cosine", 4, offset=offset)  # was "every beta must be finite", naming no parameter


def test_a_cosine_cap_of_one_or_more_caps_nothing_and_a_cap_of_zero_or_nan_is_refused():
    from bindiff.core.schedules import get_schedule

    # a run trained with max_beta: 2 (accepted before) could no longer be loaded, evaluated or resumed
    f = [math.cos((t / 5 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(6)]  # ᾱ_t = f(t) / f(0)
    uncapped = [1 - f[t] / f[t - 1] for t in range(1, 6)]
    for cap in (1.0, 2.0, math.inf):
        assert get_schedule("cosine", 5, max_beta=cap).tolist() == pytest.approx(uncapped, rel=1e-12)
    for cap in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match=r"^schedule 'cosine': parameter 'max_beta' = .* must be > 0"):
            get_schedule("cosine", 5, max_beta=cap)
