"""Masks and segmentation against independent truths where a mutation round found the tests blind.

Of 197 mutants of the grid, spacing, labels and images adapters, the segmentation and calibration
metrics, the masks evaluations and baselines, segmentation's data, placement and `segment`, and the
core's schedules and process, 50 that changed behaviour survived the suite: every real case is 1 mm
isotropic (voxels and millimetres agree), the small masks recipe never pads, and most results were
checked against each other. The tests here kill 45 of them (scores in voxels instead of mm, HD95's
percentile by nearest rank, padding reading voxel 0, `segment --brain` normalising outside the
brain, completion probabilities summed over the samples, a symlinked label map read as an image
channel, labels outside a preset accepted, among them), each against a hand or brute-force value.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks.grid import GridSpec
from bindiff.adapters.masks.images import ImageCase, normalise_channels
from bindiff.adapters.masks.labels import PRESETS, binarize, custom_preset
from bindiff.adapters.masks.spacing import resampled_shape
from bindiff.metrics.segmentation import hd95
from bindiff.tasks.masks import corruption


# -- metrics ---------------------------------------------------------------------------------------
def _brute_surface(mask):
    out = np.zeros_like(mask)
    for idx in zip(*np.nonzero(mask)):
        for ax in range(mask.ndim):
            for d in (-1, 1):
                j = list(idx)
                j[ax] += d
                if j[ax] < 0 or j[ax] >= mask.shape[ax] or not mask[tuple(j)]:
                    out[idx] = True
    return out


def _brute_hd95(p, t, spacing):
    sp, st = np.argwhere(_brute_surface(p)) * spacing, np.argwhere(_brute_surface(t)) * spacing
    d = np.sqrt(((sp[:, None, :] - st[None, :, :]) ** 2).sum(-1))
    def pct95(x):  # linear interpolation between order statistics, by hand
        x = np.sort(x)
        r = 0.95 * (len(x) - 1)
        lo = int(np.floor(r))
        return x[lo] + (r - lo) * (x[min(lo + 1, len(x) - 1)] - x[lo])
    return max(pct95(d.min(1)), pct95(d.min(0)))


def test_hd95_interpolates_the_95th_percentile_linearly():
    rng = np.random.default_rng(3)
    p = np.zeros((24, 24), bool)
    p[4:18, 5:15] = True
    t = np.zeros((24, 24), bool)
    t[6:21, 3:12] = True
    t |= rng.random(t.shape) < 0.04  # scattered voxels make the distances uneven
    spacing = np.array([1.0, 1.7])
    want = _brute_hd95(p, t, spacing)
    from bindiff.metrics.segmentation import segmentation_metrics
    for a, b in ((p, t), (t, p)):  # each direction's percentile in turn the larger
        assert hd95(a, b, spacing) == pytest.approx(want, rel=1e-12)
        assert segmentation_metrics(a, b, spacing)["hd95_mm"] == pytest.approx(want, rel=1e-12)
    # the data is such that another percentile rule gives another value
    sp, st = np.argwhere(_brute_surface(p)) * spacing, np.argwhere(_brute_surface(t)) * spacing
    d = np.sqrt(((sp[:, None, :] - st[None, :, :]) ** 2).sum(-1))
    nearest = max(np.percentile(d.min(1), 95, method="nearest"), np.percentile(d.min(0), 95, method="nearest"))
    assert abs(nearest - want) > 1e-6


# -- labels ----------------------------------------------------------------------------------------
TABLE = {"brats2015": {0, 1, 2, 3, 4}, "brats2021": {0, 1, 2, 4}, "brats2023": {0, 1, 2, 3},
         "msd_hippocampus": {0, 1, 2}}  # the module docstring's table


@pytest.mark.parametrize("name", sorted(TABLE))
@pytest.mark.parametrize("value", [-1, 0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.float64])
def test_every_value_outside_a_presets_table_is_refused(name, value, dtype):
    labels = np.array([0, 1, value], dtype=dtype).reshape(1, 1, 3)
    if value in TABLE[name]:
        binarize(labels, PRESETS[name], "whole")
    else:
        with pytest.raises(DataError, match="unexpected label value"):
            binarize(labels, PRESETS[name], "whole")


def test_a_negative_label_is_refused_even_as_the_smallest_value():
    with pytest.raises(DataError, match="-1"):
        binarize(np.array([-1, 1, 2], dtype=np.int64).reshape(1, 1, 3), PRESETS["brats2015"], "whole")


def test_a_custom_foreground_outside_the_allowed_values_is_refused():
    with pytest.raises(DataError, match="not in labels.allowed"):
        custom_preset([1, 2], [3])


# -- spacing ---------------------------------------------------------------------------------------
def test_the_resampled_shape_rounds_to_the_nearest_voxel():
    # 11 voxels of 0.9 mm are 9.9 mm: 10 voxels of 1 mm cover it best (9 would lose 0.9 mm)
    assert resampled_shape((11, 11, 20), (0.9, 0.9, 0.45), (1.0, 1.0, 1.0)) == (10, 10, 9)


# -- images ----------------------------------------------------------------------------------------
def test_in_place_normalisation_zeroes_everything_outside_a_brain_mask():
    rng = np.random.default_rng(0)
    channels = rng.uniform(1, 100, (2, 6, 7, 8)).astype(np.float32)  # no voxel is 0: a skull around the brain
    brain = np.zeros((6, 7, 8), bool)
    brain[1:5, 2:6, 2:7] = True
    copy, _ = normalise_channels(channels.copy(), brain)
    inplace, _ = normalise_channels(channels.copy(), brain, in_place=True)
    assert (inplace[:, ~brain] == 0).all() and (copy[:, ~brain] == 0).all()
    np.testing.assert_array_equal(inplace, copy)


def test_an_image_case_window_is_centred_on_the_images_own_anatomy():
    channels = np.zeros((1, 40, 40, 40), np.float32)
    channels[0, 30:36, 2:8, 18:24] = np.arange(216, dtype=np.float32).reshape(6, 6, 6) + 1
    geometry = None  # passed through untouched
    case = ImageCase.place(channels, geometry, GridSpec((16, 16, 16), mode="pad", crop="region", margin=2))
    roi = channels[0] != 0
    # by hand: centre (lo + hi − 16) // 2 per axis of the box [30, 36) × [2, 8) × [18, 24)
    assert case.transform.start == (25, -3, 13)
    assert case.transform.outside(roi) == 0 and int((case.grid != 0).sum()) == int(roi.sum())


# -- corruption ------------------------------------------------------------------------------------
def _cube(lo, hi, shape=(20, 20, 20)):
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return m


def test_a_box_side_is_the_rounded_fraction_of_the_extent():
    observed, known = corruption.hide_box(_cube((2, 2, 2), (11, 11, 11)), 0.3)  # 9 × 0.3 = 2.7 → 3
    assert int((~known).sum()) == 27


def test_a_random_box_can_start_at_every_position_of_the_extent_and_only_there():
    mask = _cube((2, 3, 4), (12, 13, 14))  # extent 10 per axis, box 5: starts lo .. lo + 5
    rng = np.random.default_rng(1)
    starts = set()
    for _ in range(600):
        _, known = corruption.hide_box(mask, 0.5, "random", rng)
        starts.add(tuple(int(np.flatnonzero((~known).any(axis=tuple(b for b in range(3) if b != a)))[0])
                         for a in range(3)))
    assert {s[0] for s in starts} == set(range(2, 8))
    assert {s[2] for s in starts} == set(range(4, 10))


def test_alternate_slices_hides_the_odd_indices():
    _, known = corruption.alternate_slices(np.ones((3, 3, 6), np.uint8), axis=2)
    assert not known[:, :, 1::2].any() and known[:, :, 0::2].all()


def test_random_slices_draws_from_every_slice_of_the_extent():
    mask = _cube((0, 0, 2), (20, 20, 6))
    _, known = corruption.random_slices(mask, 1.0, 2, np.random.default_rng(0))
    assert sorted(np.flatnonzero(~known.all(axis=(0, 1)))) == [2, 3, 4, 5]
    # round(0.4 × 7) = 3 slices of the 7 in the extent
    _, known = corruption.random_slices(_cube((0, 0, 3), (20, 20, 10)), 0.4, 2, np.random.default_rng(0))
    assert int((~known.all(axis=(0, 1))).sum()) == 3


def test_hide_passes_the_slice_fraction_to_random_slices():
    mask = _cube((0, 0, 0), (20, 20, 20))
    _, known = corruption.hide(mask, "random_slices", np.random.default_rng(0), box_fraction=0.5, slice_fraction=0.25)
    assert int((~known.all(axis=(0, 1))).sum()) == 5


def test_flipping_stays_inside_the_valid_voxels_and_flips_the_stated_count():
    mask = _cube((2, 2, 2), (8, 8, 8), (10, 10, 10))
    valid = np.zeros(mask.shape, bool)
    valid[:, :, :5] = True
    observed, known = corruption.flip_voxels(mask, 0.3, np.random.default_rng(0), valid)
    changed = observed != mask
    assert not changed[~valid].any() and int(changed.sum()) == round(0.3 * valid.sum())
    assert not known.any()


# -- baselines -------------------------------------------------------------------------------------
def _brute_sdf(slab, spacing):
    pts = np.argwhere(np.ones(slab.shape, bool))
    inside = slab.reshape(-1)
    d = np.sqrt((((pts[:, None, :] - pts[None, :, :]) * np.asarray(spacing)) ** 2).sum(-1))
    to_in = np.where(inside[None, :], d, np.inf).min(1)
    to_out = np.where(~inside[None, :], d, np.inf).min(1)
    return np.where(inside, -to_out, to_in).reshape(slab.shape)


def test_interpolation_measures_distances_with_each_in_plane_axis_own_spacing():
    from bindiff.tasks.masks.baselines import interpolate_slices
    a = np.zeros((9, 9), bool)
    a[1:8, 3:6] = True  # long along axis 0
    b = np.zeros((9, 9), bool)
    b[3:6, 1:8] = True  # long along axis 1
    observed = np.stack([a, np.zeros_like(a), b], axis=2).astype(np.uint8)  # slices along axis 2
    known = np.ones(observed.shape, bool)
    known[:, :, 1] = False
    spacing = (1.0, 3.0, 2.0)
    want = 0.5 * _brute_sdf(a, spacing[:2]) + 0.5 * _brute_sdf(b, spacing[:2]) < 0
    got = interpolate_slices(observed, known, axis=2, spacing=spacing)
    np.testing.assert_array_equal(got[:, :, 1].astype(bool), want)
    swapped = 0.5 * _brute_sdf(a, spacing[1::-1]) + 0.5 * _brute_sdf(b, spacing[1::-1]) < 0
    assert (swapped != want).any()  # the test tells the two axis orders apart


def test_median_filter_counts_voxels_beyond_the_grid_as_background():
    from bindiff.tasks.masks.baselines import median_filter
    out = median_filter(np.ones((3, 3, 3), np.uint8), 3)
    # the corner's 3×3×3 neighbourhood holds 8 mask voxels and 19 outside the grid: majority 0
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 1


def test_retrieval_ranks_by_dice_on_the_known_voxels_and_keeps_them():
    from bindiff.tasks.masks.baselines import retrieve
    truth = _cube((3, 3, 3), (6, 6, 6), (10, 10, 10))
    known = np.ones(truth.shape, bool)
    known[:, :, 5:] = False
    observed = np.where(known, truth, 0).astype(np.uint8)
    exact = truth.copy()
    huge = np.ones_like(truth)  # overlaps every visible voxel too, but its Dice is 2·18 / (18 + 500)
    grown = truth.copy()
    grown[:, :, 5:] = 1  # same known voxels as truth: Dice 1 on them
    out = retrieve(observed, known, np.stack([huge, exact]))
    np.testing.assert_array_equal(out, exact)
    # a tie on the known voxels: the first mask of the bank, whatever it holds where hidden
    out = retrieve(observed, known, np.stack([grown, exact]))
    np.testing.assert_array_equal(out, grown)
    # known voxels stay as observed even where the copied mask disagrees
    shifted = np.roll(truth, 1, axis=0)
    out = retrieve(observed, known, shifted[None])
    np.testing.assert_array_equal(out[known], observed[known])


# -- grid ------------------------------------------------------------------------------------------
def test_bounding_box_is_the_min_and_max_index_per_axis():
    from bindiff.adapters.masks.grid import bounding_box
    rng = np.random.default_rng(2)
    for _ in range(20):
        m = rng.random((7, 8, 9)) < 0.02
        if not m.any():
            continue
        idx = np.argwhere(m)
        lo, hi = bounding_box(m)
        np.testing.assert_array_equal(lo, idx.min(0))
        np.testing.assert_array_equal(hi, idx.max(0) + 1)


def test_a_pad_window_beyond_the_volume_reads_zero_on_both_sides():
    from bindiff.adapters.masks.grid import GridTransform
    vol = np.arange(1, 1 + 4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)  # no voxel is 0
    tr = GridTransform((4, 5, 6), (-2, -1, 0), (6, 6, 6), (8, 7, 6), ("pad", "pad", "pad"))
    grid = tr.to_grid(vol)
    want = np.zeros((8, 7, 6), np.float32)
    want[2:6, 1:6, :] = vol  # grid j reads volume start + j
    np.testing.assert_array_equal(grid, want)


def test_grid_spacing_of_a_resampled_axis_is_the_window_over_the_grid_side():
    from bindiff.adapters.masks.grid import GridTransform
    tr = GridTransform((40, 30, 20), (0, 5, 2), (20, 25, 18), (10, 10, 16), ("resample", "pad", "resample"))
    # 20 voxels of 0.5 mm in 10 grid voxels: 1 mm; pad keeps 0.8; 16 voxels of 2 mm in 16: 2 mm
    assert tr.grid_spacing((0.5, 0.8, 2.0)) == pytest.approx((1.0, 0.8, 2.0))


def test_outside_counts_the_mask_voxels_a_pad_window_loses():
    from bindiff.adapters.masks.grid import GridTransform
    rng = np.random.default_rng(4)
    mask = rng.random((9, 10, 11)) < 0.3
    for start in itertools.product((-3, 0, 2), repeat=3):
        tr = GridTransform((9, 10, 11), start, tuple(s + 8 for s in start), (8, 8, 8), ("pad",) * 3)
        kept = tr.from_grid(tr.to_grid(mask.astype(np.uint8))).astype(bool)  # a pad window is the identity inside
        assert tr.outside(mask) == int(mask.sum() - kept.sum())


def test_slice_mode_keeps_every_slice_up_to_the_volumes_last():
    from bindiff.adapters.masks.grid import fit_transform
    roi = np.zeros((20, 20, 12), bool)
    roi[5:9, 6:10, 7:12] = True  # reaches the last slice
    tr = fit_transform(roi.shape, GridSpec((8, 8), mode="pad", margin=2, slice_axis=2), roi)
    assert (tr.start[2], tr.stop[2], tr.grid_shape[2]) == (5, 12, 7)


# -- completion ------------------------------------------------------------------------------------
class _StubModel:
    def __init__(self, value):
        self.value, self.known = value, []

    def inpaint(self, x, known, **kw):
        import torch
        self.known.append(known.clone())
        return torch.full(x.shape, self.value)


def _ctx(model, samples):
    from types import SimpleNamespace
    cfg = {"evaluations": {"completion": {"steps": 2, "sample": "x", "resample": 1, "samples": samples,
                                           "warm_t": 1}},
           "eval": {"batch_size": 4}, "output": {"progress": False}}
    return SimpleNamespace(model=model, config=cfg, progress_disabled=True, data=SimpleNamespace(dim=6), device="cpu")


def test_inpainted_probabilities_are_the_mean_over_the_samples():
    import torch
    from bindiff.tasks.masks.completion import inpainted_probabilities
    observed, known = np.zeros((3, 6), np.float32), np.ones((3, 6), np.float32)
    for side in (False, True):
        probs = inpainted_probabilities(_ctx(_StubModel(0.3), 4), observed, known, torch.Generator(), "t",
                                        side_by_side=side)
        np.testing.assert_allclose(probs, 0.3, rtol=1e-6)


# -- evaluation ------------------------------------------------------------------------------------
def test_scores_are_in_the_cases_millimetres():
    from types import SimpleNamespace
    from bindiff.adapters.masks.grid import GridTransform
    from bindiff.metrics.segmentation import segmentation_metrics
    from bindiff.tasks.masks.evaluation import score
    tr = GridTransform((12, 10, 8), (0, 0, 0), (12, 10, 8), (12, 10, 8), ("pad",) * 3)
    record = SimpleNamespace(case_id="c", transform=tr, geometry=SimpleNamespace(spacing=(3.0, 1.0, 0.5)))
    truth = _cube((2, 2, 2), (8, 7, 6), (12, 10, 8)).astype(bool)
    pred = _cube((3, 2, 2), (10, 7, 5), (12, 10, 8))
    row = score(record, truth, {"m": pred})
    want = segmentation_metrics(pred.astype(bool), truth, (3.0, 1.0, 0.5))
    assert row["m"] == pytest.approx(want)
    assert row["m"]["hd95_mm"] == pytest.approx(6.0)  # the shift of 2 voxels of 3 mm along axis 0, by hand


def test_grids_of_inverts_vectors_of_for_cases_of_several_slices():
    from types import SimpleNamespace
    from bindiff.tasks.masks.evaluation import grids_of, vectors_of
    data = SimpleNamespace(spec=GridSpec((4, 5), slice_axis=1))
    rng = np.random.default_rng(5)
    grids = [(rng.random((4, n, 5)) < 0.5).astype(np.uint8) for n in (3, 2, 4)]
    flat, counts = vectors_of(data, grids)
    back = grids_of(data, flat, counts, [g.shape for g in grids])
    for g, b in zip(grids, back):
        np.testing.assert_array_equal(b, g)


# -- generation ------------------------------------------------------------------------------------
def test_nearest_training_dice_is_the_dice_by_hand():
    from bindiff.tasks.masks.generation import _nearest
    rng = np.random.default_rng(6)
    samples = (rng.random((5, 30)) < 0.4).astype(np.uint8)
    bank = (rng.random((7, 30)) < 0.4).astype(np.uint8)
    idx, best = _nearest(samples, bank)
    for i, s in enumerate(samples):
        d = [2 * int((s & b).sum()) / (int(s.sum()) + int(b.sum())) for b in bank]
        assert best[i] == pytest.approx(max(d), rel=1e-6) and d[idx[i]] == pytest.approx(max(d))


def test_components_are_counted_with_26_connectivity():
    from bindiff.tasks.masks.generation import _components
    m = np.zeros((4, 4, 4), np.uint8)
    m[0, 0, 0] = m[1, 1, 1] = 1  # corners touching: one component
    assert _components(m) == 1
    m[3, 3, 0] = 1
    assert _components(m) == 2


def test_slice_rows_keep_the_case_they_came_from():
    from types import SimpleNamespace
    from bindiff.tasks.masks.generation import _mask_rows
    spec = GridSpec((3, 3), slice_axis=2)
    a = np.zeros((3, 3, 4), np.uint8)
    a[1, 1, 0] = a[1, 1, 3] = 1  # slices 0 and 3 show the mask
    b = np.zeros((3, 3, 2), np.uint8)
    b[0, 0, 1] = 1  # slice 1
    ra, rb = SimpleNamespace(grid=a, name="a"), SimpleNamespace(grid=b, name="b")
    rows, owner = _mask_rows(SimpleNamespace(spec=spec), [ra, rb])
    assert [o.name for o in owner] == ["a", "a", "b"] and len(rows) == 3
    np.testing.assert_array_equal(rows[2].reshape(3, 3), b[:, :, 1])


# -- process ---------------------------------------------------------------------------------------
def test_float32_posterior_logits_are_antisymmetric_under_a_bit_flip():
    import torch
    from bindiff.core.process import BernoulliProcess
    p = BernoulliProcess.from_schedule("linear", 1000)
    x0 = torch.tensor([0.0, 0.0, 1.0, 1.0])
    xt = torch.tensor([0.0, 1.0, 0.0, 1.0])
    for t in (2, 3, 10, 50):
        got = p.posterior_logits(x0, xt, t)
        flipped = p.posterior_logits(1 - x0, 1 - xt, t)
        torch.testing.assert_close(flipped, -got, rtol=1e-6, atol=1e-6)


# -- segmentation data -----------------------------------------------------------------------------
def test_a_channel_that_links_to_the_label_map_is_refused(tmp_path):
    from bindiff.adapters.masks.datasets import MaskCase
    from bindiff.tasks.segmentation.data import image_files
    (tmp_path / "seg.nii.gz").write_bytes(b"x")
    (tmp_path / "t1.nii.gz").symlink_to(tmp_path / "seg.nii.gz")
    with pytest.raises(DataError, match="label map"):
        image_files(MaskCase("c", tmp_path / "seg.nii.gz"), ["t1"])


def test_the_public_reverse_kernel_refuses_nan_logits_and_add_noise_a_noise_of_one():
    import torch
    from bindiff.core.process import BernoulliProcess
    p = BernoulliProcess.from_schedule("linear", 10)
    with pytest.raises(ValueError, match="NaN"):
        p.reverse_logits(torch.tensor([float("nan")]), torch.tensor([1.0]), 5)
    with pytest.raises(ValueError, match="uniform"):
        p.add_noise(torch.ones(3), 5, noise=torch.ones(3))


def test_training_extents_are_in_millimetres(tmp_path):
    import json
    from bindiff.tasks.segmentation.data import training_geometry
    def geometry(diag, shape):
        return {"affine": np.diag([*diag, 1.0]).tolist(), "shape": list(shape),
                "ornt": [[0, 1], [1, 1], [2, 1]], "qform_code": 1, "sform_code": 1, "source": "x", "qform": None}
    meta = {"split": {"train": ["a", "b"], "valid": [], "test": []}, "spacing_mm": None,
            "cases": {"a": {"geometry": geometry((2.0, 1.0, 0.5), (10, 20, 30))},
                      "b": {"geometry": geometry((1.0, 1.0, 1.0), (30, 10, 10))}}}
    (tmp_path / "cases.json").write_text(json.dumps(meta))
    got = training_geometry(tmp_path)
    assert got.spacing == pytest.approx((1.5, 1.0, 0.75))
    assert got.smallest == pytest.approx((20.0, 10.0, 10.0)) and got.largest == pytest.approx((30.0, 20.0, 15.0))


def test_a_cases_outside_count_is_of_its_mask_voxels_the_window_misses(tmp_path):
    import nibabel as nib
    from bindiff.adapters.masks.datasets import MaskCase
    from bindiff.tasks.segmentation.data import _load_case
    rng = np.random.default_rng(7)
    image = rng.uniform(10, 20, (40, 40, 40)).astype(np.float32)  # anatomy everywhere: the window is central
    label = np.zeros((40, 40, 40), np.uint8)
    label[1:4, 1:4, 18:22] = 1
    label[19:21, 19:21, 19:21] = 1
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "img.nii.gz"))
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "lab.nii.gz"))
    case = MaskCase("c", tmp_path / "lab.nii.gz", image=tmp_path / "img.nii.gz")
    loaded = _load_case(case, custom_preset(None, [1]), "whole", GridSpec((16, 16, 16)),
                        {"brain": False, "channels": None}, None)
    assert loaded.image.transform.start == (12, 12, 12)
    assert loaded.outside == 36 and int(loaded.mask.sum()) == 8  # the corner blob is lost, the centre one kept


def test_schedule_defaults_are_the_documented_ones():
    from bindiff.core.schedules import get_schedule
    # docs/api.md: linear beta_start=1e-4, beta_end=0.02; quadratic 1e-4 .. 0.1
    b = get_schedule("linear", 5)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    q = get_schedule("quadratic", 5)
    assert float(q[0]) == pytest.approx(1e-4) and float(q[-1]) == pytest.approx(0.1)


def test_scoring_refuses_a_label_file_whose_window_moved_since_training(tmp_path):
    import nibabel as nib
    from types import SimpleNamespace
    from bindiff.adapters.masks.cases import load_case
    from bindiff.adapters.masks.datasets import MaskCase
    from bindiff.tasks.masks.evaluation import case_truth
    label = np.zeros((30, 30, 30), np.uint8)
    label[5:10, 5:10, 5:10] = 1
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "lab.nii.gz"))
    case, preset, spec = MaskCase("c", tmp_path / "lab.nii.gz"), custom_preset(None, [1]), GridSpec((12, 12, 12))
    record = SimpleNamespace(case=case, transform=load_case(case, preset, "whole", spec).transform)
    ctx = SimpleNamespace(data=SimpleNamespace(preset=preset, region="whole", spec=spec))
    assert case_truth(ctx, record).sum() == 125
    label = np.roll(label, 12, axis=0)  # the file changed: its structure, and so the window, moved
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "lab.nii.gz"))
    with pytest.raises(DataError, match="changed since the run was trained"):
        case_truth(ctx, record)


def test_a_segmentation_run_refuses_an_image_whose_window_moved(tmp_path):
    import nibabel as nib
    from pathlib import Path
    from bindiff.config import load_recipe
    from bindiff.tasks.segmentation.data import load_data, prepare_data, save_data
    root = tmp_path / "data"
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(8)
    def write(i, at):
        image = np.zeros((30, 30, 30), np.float32)
        image[at:at + 10, 8:18, 8:18] = rng.uniform(50, 100, (10, 10, 10))
        label = np.zeros((30, 30, 30), np.uint8)
        label[at + 3:at + 7, 11:15, 11:15] = 1
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "images" / f"c_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labels" / f"c_{i}.nii.gz"))
    for i in range(5):
        write(i, 5)
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "hippocampus_segmentation.yaml"
    config = load_recipe(recipe, [f"data.dataset={root}", "split.n_valid=1", "split.n_test=1", "grid.shape=[16,16,16]",
                                  "labels.preset=custom", "labels.foreground=[1]", "output.progress=false"])
    save_data(prepare_data(config, disable_progress=True), tmp_path / "split")
    load_data(tmp_path / "split", config)  # unchanged: read again
    write(0, 15)
    with pytest.raises(DataError, match="changed since the run was trained"):
        load_data(tmp_path / "split", config)


# -- segment ---------------------------------------------------------------------------------------
def test_the_extent_warning_is_in_millimetres_and_needs_one_axis_alone():
    from pathlib import Path
    from bindiff.tasks.segmentation.data import TrainingGeometry
    from bindiff.tasks.segmentation.segment import InputCase, _extent_warning
    trained = TrainingGeometry((1.0, 1.0, 1.0), (30.0, 30.0, 30.0), (40.0, 40.0, 40.0))
    case = InputCase("c", (Path("c.nii.gz"),))
    roi = np.zeros((100, 100, 100), bool)
    roi[:35, :35, :35] = True   # 35 voxels of 2 mm: 70 mm, beyond 1.5 × 40 mm on every axis
    assert "spans 70 x 70 x 70 mm" in _extent_warning(case, roi, (2.0, 2.0, 2.0), trained)
    roi[:] = False
    roi[:70, :35, :35] = True   # one axis alone 70 mm at 1 mm
    assert "spans 70 x 35 x 35 mm" in _extent_warning(case, roi, (1.0, 1.0, 1.0), trained)
    roi[:] = False
    roi[:35, :35, :35] = True   # 35 mm at 1 mm: within what the model saw
    assert _extent_warning(case, roi, (1.0, 1.0, 1.0), trained) is None


def test_segment_normalises_and_places_a_scan_inside_the_brain_mask_it_is_given(tmp_path):
    import nibabel as nib
    from bindiff.tasks.segmentation.data import TrainingGeometry
    from bindiff.tasks.segmentation.segment import InputCase, _place_case
    rng = np.random.default_rng(9)
    image = rng.uniform(200, 300, (40, 40, 40)).astype(np.float32)       # a skull everywhere ...
    brain = np.zeros((40, 40, 40), np.uint8)
    brain[4:14, 20:30, 10:20] = 1
    image[brain > 0] = rng.uniform(10, 20, int(brain.sum()))               # ... around a darker brain
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(tmp_path / "c.nii.gz"))
    nib.save(nib.Nifti1Image(brain, np.eye(4)), str(tmp_path / "brain.nii.gz"))
    trained = TrainingGeometry((1.0, 1.0, 1.0), (30.0, 30.0, 30.0), (60.0, 60.0, 60.0))
    placed = _place_case(InputCase("c", (tmp_path / "c.nii.gz",)), 1, GridSpec((16, 16, 16)), trained,
                         tmp_path / "brain.nii.gz")[0]
    inside = image[brain > 0].astype(np.float64)
    assert placed.stats[0].mean == pytest.approx(inside.mean()) and placed.stats[0].std == pytest.approx(inside.std())
    assert placed.transform.start == (1, 17, 7)  # centred on the brain mask's box, by hand


def test_maps_go_back_to_a_resampled_scan_by_linear_interpolation():
    from bindiff.adapters.masks.grid import GridTransform
    from bindiff.tasks.segmentation.placement import on_scan_voxels
    tr = GridTransform((2, 1, 1), (0, 0, 0), (2, 1, 1), (2, 1, 1), ("pad",) * 3)
    prob = np.array([0.2, 0.7])
    mask, prob_volume, unc_volume = on_scan_voxels(prob, prob, tr, {"decision": "threshold", "threshold": 0.5},
                                                   (4, 1, 1))
    # cells of 2 → 4: centres 0.25, 0.75 → 0.125 .. 0.875; clamped at the edges, linear between, by hand
    want = [0.2, 0.2 + 0.5 * 0.25, 0.2 + 0.5 * 0.75, 0.7]
    np.testing.assert_allclose(prob_volume.reshape(-1), want, rtol=1e-6)
    np.testing.assert_array_equal(mask.reshape(-1), np.array(want) >= 0.5)


def test_the_expected_dice_mask_is_decided_on_the_voxels_inside_the_scan():
    from bindiff.adapters.masks.grid import GridTransform
    from bindiff.tasks.segmentation.placement import on_scan_voxels
    tr = GridTransform((4, 1, 1), (-3, 0, 0), (4, 1, 1), (7, 1, 1), ("pad",) * 3)  # grid 0..2: padding
    prob = np.array([0.9, 0.9, 0.9, 0.55, 0.45, 0.4, 0.05])
    mask, _, _ = on_scan_voxels(prob, prob, tr, {"decision": "expected_dice", "threshold": 0.5}, None)
    p = prob[3:]  # the scan's voxels; by hand: the k most probable of them maximising 2 Σ top-k / (k + Σ p)
    ratios = [2 * np.sort(p)[::-1][:k].sum() / (k + p.sum()) for k in range(1, 5)]
    k = int(np.argmax(ratios)) + 1
    assert max(ratios) > np.prod(1 - p)
    np.testing.assert_array_equal(mask.reshape(-1), p >= np.sort(p)[::-1][k - 1])


@pytest.mark.parametrize("kind", ["entropy", "variance"])
def test_segment_writes_the_uncertainty_the_recipe_names(tmp_path, monkeypatch, kind):
    import nibabel as nib
    from bindiff.tasks.segmentation import segment as seg
    from bindiff.tasks.segmentation.data import TrainingGeometry
    shape = (8, 6, 4)
    rng = np.random.default_rng(10)
    nib.save(nib.Nifti1Image(rng.uniform(1, 2, shape).astype(np.float32), np.eye(4)), str(tmp_path / "c.nii.gz"))
    prob = rng.uniform(0, 1, int(np.prod(shape)))
    variance = rng.uniform(0, 0.25, prob.size)
    monkeypatch.setattr(seg, "sample_case_probabilities", lambda *a, **k: (prob, variance))
    config = {"seed": 0, "eval": {"batch_size": 2}, "images": {"channels": None}, "output": {"progress": False},
              "segmentation": {"uncertainty": kind, "decision": "threshold", "threshold": 0.5}}
    trained = TrainingGeometry((1.0, 1.0, 1.0), (4.0, 4.0, 4.0), (10.0, 10.0, 10.0))
    row = seg._segment_case(seg.InputCase("c", (tmp_path / "c.nii.gz",)), None, "diffusion", config, GridSpec(shape),
                            1, trained, "cpu", tmp_path, tmp_path, None, True, False)
    written = np.asarray(nib.load(row["uncertainty"]).dataobj)
    entropy = -(prob * np.log2(prob) + (1 - prob) * np.log2(1 - prob))  # bits, by hand
    np.testing.assert_allclose(written.reshape(-1), entropy if kind == "entropy" else variance, rtol=1e-5)
    assert row["mean_uncertainty"] == pytest.approx((entropy if kind == "entropy" else variance).mean())


def test_the_volume_a_window_leaves_out_is_in_the_scans_millilitres(tmp_path):
    import nibabel as nib
    from bindiff.tasks.segmentation.data import TrainingGeometry
    from bindiff.tasks.segmentation.segment import InputCase, _place_case
    rng = np.random.default_rng(11)
    nib.save(nib.Nifti1Image(rng.uniform(1, 2, (20, 20, 20)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])),
             str(tmp_path / "c.nii.gz"))  # a 40 mm cube of anatomy at 2 mm
    trained = TrainingGeometry((1.0, 1.0, 1.0), (30.0, 30.0, 30.0), (60.0, 60.0, 60.0))
    out = _place_case(InputCase("c", (tmp_path / "c.nii.gz",)), 1, GridSpec((16, 16, 16)), trained, None)
    assert out[2] is True  # resampled to 1 mm
    assert out[5] == pytest.approx((40 ** 3 - 16 ** 3) / 1000)  # 64 ml of anatomy, 4.096 ml inside the window


def test_the_mean_uncertainty_leaves_out_the_padding(tmp_path, monkeypatch):
    import nibabel as nib
    from bindiff.tasks.segmentation import segment as seg
    from bindiff.tasks.segmentation.data import TrainingGeometry
    rng = np.random.default_rng(12)
    nib.save(nib.Nifti1Image(rng.uniform(1, 2, (8, 6, 4)).astype(np.float32), np.eye(4)), str(tmp_path / "c.nii.gz"))
    variance = np.full((10, 6, 4), 0.2)
    variance[1:9] = 0.1  # grid x = 0 and 9 lie beyond the scan
    monkeypatch.setattr(seg, "sample_case_probabilities", lambda *a, **k: (np.full(240, 0.3), variance.reshape(-1)))
    config = {"seed": 0, "eval": {"batch_size": 2}, "images": {"channels": None}, "output": {"progress": False},
              "segmentation": {"uncertainty": "variance", "decision": "threshold", "threshold": 0.5}}
    trained = TrainingGeometry((1.0, 1.0, 1.0), (4.0, 4.0, 4.0), (10.0, 10.0, 10.0))
    row = seg._segment_case(seg.InputCase("c", (tmp_path / "c.nii.gz",)), None, "diffusion", config,
                            GridSpec((10, 6, 4)), 1, trained, "cpu", tmp_path, tmp_path, None, False, False)
    assert row["mean_uncertainty"] == pytest.approx(0.1)
