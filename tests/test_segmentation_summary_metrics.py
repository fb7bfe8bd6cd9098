"""The figures metrics.json and summary.json report (HD95, ASSD, surface Dice, spreads, counts) and the
threshold decision, against brute-force enumerations and hand values."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from bindiff.metrics.segmentation import segmentation_metrics, summarize
from bindiff.tasks.segmentation.decision import expected_dice_mask, foreground


def _surface_points(m, spacing):
    eroded = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return np.argwhere(m & ~eroded) * np.asarray(spacing)


@pytest.mark.parametrize("seed", range(3))
def test_segmentation_metrics_surface_figures_equal_an_enumeration(seed):
    """hd95_mm, assd_mm and surface_dice of the all-metrics call (what metrics.json reports), by enumeration
    of every pair of surface voxels; the two masks differ in size so the two directions differ."""
    rng = np.random.default_rng(seed)
    pred, truth = np.zeros((12, 11, 9), bool), np.zeros((12, 11, 9), bool)
    pred[2:9, 3:7, 2:5] = True
    truth[rng.integers(3, 5):10, 2:9, 3:8] = True
    truth[1, 1, 1] = True  # a far outlier on one side only
    spacing = (1.0, 0.7, 2.0)
    sp, st = _surface_points(pred, spacing), _surface_points(truth, spacing)
    d = np.sqrt(((sp[:, None] - st[None]) ** 2).sum(-1))
    d_pt, d_tp = d.min(1), d.min(0)
    assert np.percentile(d_pt, 95) != pytest.approx(np.percentile(d_tp, 95))  # the case tells the directions apart
    got = segmentation_metrics(pred, truth, spacing)
    assert got["hd95_mm"] == pytest.approx(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
    assert got["assd_mm"] == pytest.approx(np.concatenate([d_pt, d_tp]).mean())
    assert got["surface_dice"] == pytest.approx(((d_pt <= 1).sum() + (d_tp <= 1).sum()) / (d_pt.size + d_tp.size))


def test_dice_std_is_the_population_spread():
    rows = [segmentation_metrics(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool)),
            segmentation_metrics(np.ones((2, 2, 2), bool), np.zeros((2, 2, 2), bool))]
    assert summarize(rows)["dice_std"] == pytest.approx(0.5)  # Dice 1 and 0: population std 0.5


def test_the_threshold_decision_uses_the_recipes_threshold_inclusively():
    p = np.array([0.2, 0.3, 0.5, 0.7])
    assert foreground(p, {"decision": "threshold", "threshold": 0.3}).tolist() == [False, True, True, True]
    assert foreground(p, {"decision": "threshold", "threshold": 0.5}).tolist() == [False, False, True, True]


def test_a_uniform_faint_map_keeps_its_voxels_where_brute_force_says_so():
    p = np.full(3, 0.3)

    def exact(mask):  # E[Dice] over every truth of independent voxels; an empty pair scores 1
        total = 0.0
        for y in itertools.product([False, True], repeat=3):
            y = np.array(y)
            both = mask.sum() + y.sum()
            total += np.prod(np.where(y, p, 1 - p)) * (1.0 if both == 0 else 2 * (mask & y).sum() / both)
        return total

    assert exact(np.ones(3, bool)) > exact(np.zeros(3, bool)) + 0.05  # 0.399 against P(empty) = 0.343
    assert expected_dice_mask(p).all()


def test_the_summary_averages_the_size_of_each_volume_error_and_one_empty_mask_has_surface_dice_0():
    cube, none = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    cube[1:3, 1:3, 1:3] = True  # 8 voxels of 1 mm: 0.008 ml
    over, under = segmentation_metrics(cube, none), segmentation_metrics(none, cube)
    assert (over["volume_error_ml"], under["volume_error_ml"]) == pytest.approx((0.008, -0.008))
    assert summarize([over, under])["abs_volume_error_ml"] == pytest.approx(0.008)
    assert over["surface_dice"] == 0.0 == under["surface_dice"]  # the empty rule: exactly one empty scores 0


def test_the_summary_counts_empty_references_and_predictions_apart():
    cube, none = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    cube[1:3, 1:3, 1:3] = True
    s = summarize([segmentation_metrics(cube, none), segmentation_metrics(cube, cube)])  # one reference empty
    assert (s["empty_predictions"], s["empty_references"]) == (0, 1)
