"""Segmentation metrics against hand computations and brute force."""

import itertools
import math

import numpy as np
import pytest

from bindiff.metrics.segmentation import dice, hd95, iou, segmentation_metrics, summarize, surface, volume_ml


def test_dice_and_iou_on_tiny_arrays():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    truth = np.array([[1, 0, 0], [0, 1, 1]])
    # |P| = 3, |R| = 3, |P∩R| = 2, |P∪R| = 4
    assert dice(pred, truth) == pytest.approx(2 * 2 / 6)
    assert iou(pred, truth) == pytest.approx(2 / 4)
    assert dice(pred, pred) == 1.0 and iou(pred, 1 - pred) == 0.0


def face_surface(mask: np.ndarray) -> np.ndarray:
    """Voxels with one of their 6 face neighbours outside the mask (the array border outside),
    enumerated here: not the code's ``surface``, which the metrics call."""
    padded = np.pad(np.asarray(mask, bool), 1)
    inner = np.ones(mask.shape, bool)
    for axis in range(mask.ndim):
        for step in (-1, 1):
            inner &= np.roll(padded, step, axis=axis)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return np.asarray(mask, bool) & ~inner


def brute_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Every surface voxel of one mask against every surface voxel of the other, in mm."""
    pa = np.argwhere(face_surface(a)) * np.asarray(spacing)
    pb = np.argwhere(face_surface(b)) * np.asarray(spacing)
    d = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_surface_is_the_voxels_with_an_outside_face_neighbour():
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    assert surface(cube).sum() == 27 - 1  # all but the centre
    full = np.ones((3, 3, 3), bool)
    assert surface(full).sum() == 26  # the array border counts as outside
    # a box cannot tell face neighbours from all 26: a ball can. Radius 5: 222 face-surface voxels
    # (344 if an edge or corner neighbour outside counted), and shifted by one voxel 134 of each
    # 222 lie 1 mm from the other surface, 88 on it: ASSD = 134 / 222, HD95 = 1 mm
    ball = (((np.indices((15, 15, 15)) - 7) ** 2).sum(0) <= 25)
    assert surface(ball).sum() == face_surface(ball).sum() == 222
    np.testing.assert_array_equal(surface(ball), face_surface(ball))
    from bindiff.metrics.segmentation import assd
    shifted = np.roll(ball, 1, axis=0)
    assert assd(ball, shifted) == pytest.approx(134 / 222, abs=1e-12)
    assert hd95(ball, shifted) == pytest.approx(1.0)


def test_hd95_with_anisotropic_spacing_matches_brute_force():
    a = np.zeros((12, 14, 10), bool)
    b = np.zeros_like(a)
    a[2:8, 3:11, 2:6] = True
    grid = np.indices(a.shape)
    b[((grid[0] - 6) / 3.5) ** 2 + ((grid[1] - 7) / 5) ** 2 + ((grid[2] - 5) / 3) ** 2 <= 1] = True
    spacing = (0.7, 1.3, 2.5)
    assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing))
    assert hd95(a, b, spacing) != pytest.approx(hd95(a, b, (1, 1, 1)))


def test_hd95_of_a_shifted_box_is_the_shift_in_mm():
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.roll(a, 2, axis=2)
    assert hd95(a, b, (1.0, 1.0, 3.0)) == pytest.approx(6.0)  # every surface point moves 2 voxels × 3 mm


def test_empty_mask_rule():
    empty, one = np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool)
    one[1, 1, 1] = True
    spacing = (1.0, 2.0, 0.5)
    both = segmentation_metrics(empty, empty, spacing)
    assert (both["dice"], both["iou"], both["hd95_mm"], both["volume_error_ml"]) == (1.0, 1.0, 0.0, 0.0)
    diagonal = math.sqrt(4 ** 2 + 10 ** 2 + 3 ** 2)
    for pred, truth in ((empty, one), (one, empty)):
        m = segmentation_metrics(pred, truth, spacing)
        assert m["dice"] == 0.0 and m["iou"] == 0.0 and m["hd95_mm"] == pytest.approx(diagonal)
    assert segmentation_metrics(one, empty, spacing)["volume_error_ml"] == pytest.approx(1.0 / 1000)


def test_volume_and_summary():
    mask = np.ones((10, 10, 10), bool)
    assert volume_ml(mask, (1.0, 1.0, 2.0)) == pytest.approx(2.0)
    rows = [segmentation_metrics(mask, mask, (1, 1, 1)), segmentation_metrics(~mask, mask, (1, 1, 1))]
    s = summarize(rows)
    assert s["cases"] == 2 and s["dice"] == pytest.approx(0.5) and s["empty_predictions"] == 1
    assert s["abs_volume_error_ml"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_hd95_random_shapes_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((7, 8, 6)) < 0.6  # dense enough to have interior voxels (at 0.3 nearly all are surface)
    b = rng.random((7, 8, 6)) < 0.6
    spacing = tuple(rng.uniform(0.5, 3.0, 3))
    assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing))
    assert hd95(a, b, spacing) == pytest.approx(hd95(b, a, spacing))
    for p in itertools.permutations(range(3)):
        assert hd95(a.transpose(p), b.transpose(p), tuple(spacing[i] for i in p)) == pytest.approx(hd95(a, b, spacing))


# -- average symmetric surface distance and normalised surface Dice -----------------------------------------
def _brute_surface_distances(pred, truth, spacing):
    """Every surface voxel's distance to the nearest surface voxel of the other mask, by enumeration."""
    from scipy import ndimage

    def surf(m):
        return np.argwhere(m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(m.ndim, 1),
                                                        border_value=0)) * np.asarray(spacing)
    sp, st = surf(pred), surf(truth)
    d = np.sqrt(((sp[:, None, :] - st[None, :, :]) ** 2).sum(-1))
    return d.min(1), d.min(0)


def _two_boxes(rng, shape, pred_sides, truth_sides, low, high):
    """Two boolean boxes of the given sides at random corners in [low, high) on one grid."""
    pred, truth = np.zeros(shape, bool), np.zeros(shape, bool)
    for mask, sides in ((pred, pred_sides), (truth, truth_sides)):
        corner = rng.integers(low, high, 3)
        mask[tuple(slice(c, c + s) for c, s in zip(corner, sides))] = True
    return pred, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assd_and_surface_dice_equal_an_enumeration(seed):
    from bindiff.metrics.segmentation import assd, surface_dice

    pred, truth = _two_boxes(np.random.default_rng(seed), (14, 12, 10), (6, 5, 4), (7, 4, 5), 2, 5)
    spacing = (1.0, 0.8, 2.0)
    d_pt, d_tp = _brute_surface_distances(pred, truth, spacing)
    assert assd(pred, truth, spacing) == pytest.approx(np.concatenate([d_pt, d_tp]).mean())
    for tol in (0.5, 1.0, 2.5):
        expected = ((d_pt <= tol).sum() + (d_tp <= tol).sum()) / (d_pt.size + d_tp.size)
        assert surface_dice(pred, truth, spacing, tol) == pytest.approx(expected)


def test_surface_metrics_follow_the_empty_rule():
    from bindiff.metrics.segmentation import assd, diagonal_mm, surface_dice

    empty, full = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    full[1:3, 1:3, 1:3] = True
    assert assd(empty, empty) == 0.0 and surface_dice(empty, empty) == 1.0
    assert assd(full, empty, (1, 1, 2)) == diagonal_mm((4, 4, 4), (1, 1, 2)) and surface_dice(empty, full) == 0.0
    assert assd(full, full) == 0.0 and surface_dice(full, full) == 1.0


def test_surface_metrics_equal_monai():
    metrics = pytest.importorskip("monai.metrics")
    import torch

    from bindiff.metrics.segmentation import assd, surface_dice

    rng = np.random.default_rng(7)
    for _ in range(3):
        pred, truth = _two_boxes(rng, (16, 16, 12), (7, 6, 4), (6, 7, 5), 2, 6)
        spacing = (1.0, 1.0, 1.5)
        p = torch.from_numpy(pred)[None, None].float()
        t = torch.from_numpy(truth)[None, None].float()
        theirs_assd = float(metrics.compute_average_surface_distance(p, t, symmetric=True, spacing=spacing))
        theirs_nsd = float(metrics.compute_surface_dice(p, t, class_thresholds=[1.0], spacing=spacing,
                                                        include_background=True))
        assert assd(pred, truth, spacing) == pytest.approx(theirs_assd, rel=1e-5)
        assert surface_dice(pred, truth, spacing, 1.0) == pytest.approx(theirs_nsd, rel=1e-5)


def test_a_spacing_a_rounding_error_above_the_tolerance_keeps_a_one_voxel_shift_inside_it():
    from bindiff.metrics.segmentation import segmentation_metrics, surface_dice

    truth = np.zeros((12, 12, 12), bool)
    truth[3:9, 3:9, 3:9] = True
    shifted = np.roll(truth, 1, axis=0)  # every surface point 1 voxel = 1 mm from the other surface
    for spacing in [(1.0, 1.0, 1.0), (1.0000000298, 1.0, 1.0)]:  # the second: a float32 affine's 1 mm
        assert surface_dice(shifted, truth, spacing, 1.0) == 1.0
        assert segmentation_metrics(shifted, truth, spacing)["surface_dice"] == 1.0
    assert surface_dice(shifted, truth, (1.001, 1.0, 1.0), 1.0) < 1.0  # a real 1 µm beyond it is not


def _cube() -> np.ndarray:
    truth = np.zeros((6, 6, 6), bool)
    truth[2:4, 2:4, 2:4] = True
    return truth


@pytest.mark.parametrize("metric", [dice, iou, hd95, segmentation_metrics])
@pytest.mark.parametrize("bad, shown", [(0.9, "0.9"), (2, "2"), (float("nan"), "nan")])
def test_a_probability_map_a_label_map_or_nan_is_refused_not_counted_where_non_zero(metric, bad, shown):
    truth = _cube()
    pred = np.where(truth, bad, 0)  # as a mask, every non-zero voxel counted: 0.9 scored Dice 1.0
    with pytest.raises(ValueError, match=f"prediction: a mask holds 0 and 1 \\(or booleans\\), got {shown}"):
        metric(pred, truth)
    with pytest.raises(ValueError, match="reference: a mask holds 0 and 1"):
        metric(truth, np.where(truth, bad, 0))
    assert dice(truth.astype(np.uint8), truth.astype(np.float32)) == 1.0  # 0/1 of any type is a mask


@pytest.mark.parametrize("spacing", [(0, 1, 1), (-1, 1, 1), (float("nan"), 1, 1), (1, 1)])
def test_a_voxel_size_that_is_not_positive_and_finite_per_axis_is_refused(spacing):
    truth = _cube()
    shifted = np.roll(truth, 1, axis=0)
    for call in (lambda: volume_ml(truth, spacing), lambda: hd95(shifted, truth, spacing),
                 lambda: segmentation_metrics(shifted, truth, spacing)):
        with pytest.raises(ValueError, match="spacing"):
            call()


def test_segmentation_metrics_takes_the_single_metrics_defaults():
    truth = _cube()
    shifted = np.roll(truth, 1, axis=0)
    # one voxel along x: by hand, the faces 1 mm apart; with 1 mm voxels and no spacing given
    assert segmentation_metrics(shifted, truth, None) == segmentation_metrics(shifted, truth, (1.0, 1.0, 1.0))
    assert volume_ml(truth) == pytest.approx(8 / 1000)
    # half a voxel of tolerance: the shifted faces (1 mm off) are outside; with 1 mm they are in
    strict = segmentation_metrics(shifted, truth, tolerance_mm=0.5)["surface_dice"]
    assert strict < 1.0 == segmentation_metrics(shifted, truth)["surface_dice"]
