"""The completion baselines and the realism measures, against masks built by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bindiff.tasks.masks import baselines, corruption, realism


def cone(shape=(21, 21, 12)) -> np.ndarray:
    """A disc whose radius grows linearly with the slice index (axis 2): 2 + 0.5 k voxels."""
    x, y = np.indices(shape[:2]) - shape[0] // 2
    out = np.zeros(shape, dtype=np.uint8)
    for k in range(shape[2]):
        out[:, :, k] = x ** 2 + y ** 2 <= (2 + 0.5 * k) ** 2
    return out


def test_interpolation_fills_a_hidden_box_from_the_slices_beyond_it():
    mask = cone()
    observed, known = corruption.hide_box(mask, fraction=0.5)
    lo = np.argwhere(~known).min(0)
    hi = np.argwhere(~known).max(0)
    assert hi[2] < mask.shape[2] - 1 and lo[2] > 0  # there are visible slices on both sides
    filled = baselines.interpolate_slices(observed, known, axis=2)
    assert np.array_equal(filled[known], observed[known])  # visible voxels untouched
    hidden = ~known
    # signed distances of discs interpolate linearly in the radius, so the cone comes back
    # up to the voxels on the rim (a rounding of the disc boundary)
    wrong = (filled[hidden] != mask[hidden]).mean()
    assert wrong < 0.05
    # and it does far better than leaving the box empty
    assert wrong < 0.2 * (observed[hidden] != mask[hidden]).mean()


def test_retrieval_copies_the_bank_mask_that_best_agrees_with_the_visible_voxels():
    truth = cone()
    shifted = np.roll(truth, 3, axis=0)
    other = np.zeros_like(truth)
    other[2:8, 2:8, :] = 1
    bank = np.stack([other, shifted, truth.copy(), np.zeros_like(truth)])
    observed, known = corruption.alternate_slices(truth)
    filled = baselines.retrieve(observed, known, bank)
    assert np.array_equal(filled, truth)  # the identical bank entry wins and fills every hidden slice
    bank_without = bank[[0, 1, 3]]
    filled = baselines.retrieve(observed, known, bank_without)
    assert np.array_equal(filled[~known], shifted[~known])  # the shifted copy overlaps most
    with pytest.raises(ValueError, match="retrieval bank has masks of shape"):
        baselines.retrieve(observed, known, bank[:, :5])


def test_completion_baselines_by_mode():
    mask = cone()
    bank = mask[None]
    box = baselines.completion_baselines("box", *corruption.hide_box(mask), bank=bank, axis=2,
                                         spacing=(1, 1, 1), radius=1)
    assert list(box) == ["closing", "interpolation", "retrieval"]
    slices = baselines.completion_baselines("alternate_slices", *corruption.alternate_slices(mask), bank=bank,
                                            axis=2, spacing=(1, 1, 1), radius=1)
    assert list(slices) == ["interpolation", "retrieval"]
    assert set(baselines.DESCRIPTIONS) >= set(box)


def test_orientation_share_tells_a_mask_from_its_mirror_image():
    left = np.zeros((10, 6, 4), dtype=np.uint8)
    left[1:4, 2:4, 1:3] = 1
    mirrored = np.flip(left, axis=0)
    masks = np.stack([left, left, left, mirrored])
    assert realism.orientation_share(masks, left.astype(float), axis=0) == 0.75
    assert realism.orientation_share(masks, mirrored.astype(float), axis=0) == 0.25


def test_shape_descriptors_by_hand():
    mask = np.zeros((5, 5, 5), dtype=np.uint8)
    mask[1, 2, 3] = mask[3, 2, 3] = 1
    (row,) = realism.shape_descriptors(mask[None])
    assert row.tolist() == [2, 2, 2, 3, 1, 0, 0]  # volume, centroid, spread per axis


def test_mmd_test_separates_different_distributions_and_not_equal_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 3)), rng.normal(size=(60, 3))
    shifted = rng.normal(loc=1.5, size=(60, 3))
    same = realism.mmd_test(a, b, permutations=300, seed=1)
    apart = realism.mmd_test(shifted, b, permutations=300, seed=1)
    assert same["p_value"] > 0.05 and apart["p_value"] < 0.01 and apart["mmd2"] > same["mmd2"]
    assert realism.mmd_test(a, b, permutations=300, seed=1) == same  # seeded


def test_closing_fills_a_hidden_gap_and_keeps_every_known_voxel():
    # a bar of 3 x 3 voxels along x with its middle slab hidden (observed 0, unknown), plus a
    # stray visible voxel far away that a closing keeps
    observed = np.zeros((9, 5, 5), dtype=np.uint8)
    observed[1:8, 1:4, 1:4] = 1
    observed[4] = 0
    known = np.ones(observed.shape, dtype=bool)
    known[4] = False
    observed[0, 0, 0] = 1  # visible: stays
    known[8, 4, 4] = False  # hidden and far from anything: stays empty
    out = baselines.closing(observed, known, radius=1)
    assert out[4, 2, 2] == 1  # the gap of one slab between two visible ones is closed at its core
    assert np.array_equal(out[known], observed[known])  # nothing visible is rewritten
    assert out[8, 4, 4] == 0


def test_hidden_dice_counts_the_hidden_voxels_alone():
    from bindiff.tasks.masks.completion import hidden_dice

    truth = np.zeros((4, 4, 4), dtype=np.uint8)
    truth[:, :2] = 1  # 32 voxels, 16 of them in the hidden half x >= 2
    hidden = np.zeros(truth.shape, dtype=bool)
    hidden[2:] = True
    pred = truth.copy()
    pred[2:] = 0
    pred[3, :2] = 1  # of the 16 hidden truth voxels it finds 8, and adds none
    assert hidden_dice(pred, truth, hidden) == pytest.approx(2 * 8 / (8 + 16))
    assert hidden_dice(np.zeros_like(truth), truth, hidden) == 0.0  # the damaged input: nothing found
    assert hidden_dice(truth, truth, np.zeros(truth.shape, dtype=bool)) == 1.0  # nothing hidden
