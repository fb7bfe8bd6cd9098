"""Resampling a scan to a model's training spacing and back (bindiff.adapters.masks.spacing),
checked against analytic volumes: a linear ramp, whose values at the new voxel centres are known
in millimetres, and masks whose extent in millimetres must not change."""

from __future__ import annotations

import numpy as np
import pytest

from bindiff.adapters.masks.spacing import (area_share, mixed_spacing, needs_resampling, resample, resampled_shape,
                                           training_spacing)


def test_the_training_spacing_is_the_median_per_axis():
    spacings = [(1.0, 1.0, 3.0), (0.8, 1.0, 2.0), (1.2, 0.9, 5.0)]
    assert training_spacing(spacings) == (1.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="one \\(x, y, z\\) spacing per training case"):
        training_spacing([])


def test_spacings_within_one_percent_are_the_same():
    assert not needs_resampling((1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    assert not needs_resampling((0.995, 1.0, 1.009), (1.0, 1.0, 1.0))  # header rounding
    assert needs_resampling((1.0, 1.0, 1.02), (1.0, 1.0, 1.0))
    assert needs_resampling((0.8, 0.8, 0.8), (1.0, 1.0, 1.0))


def test_mixed_spacings_are_counted_against_their_median_and_the_farthest_named():
    rounding = {"a.nii.gz": (1.0, 1.0, 1.0), "b.nii.gz": (1.0, 1.0, 1.0), "c.nii.gz": (1.0, 1.0, 1.0),
                "d.nii.gz": (1.004, 1.0, 0.996)}
    assert mixed_spacing(rounding) is None  # header rounding
    found = mixed_spacing({"a.nii.gz": (1.0, 1.0, 3.0), "b.nii.gz": (1.0, 1.0, 3.0), "c.nii.gz": (0.8, 0.8, 3.0),
                           "d.nii.gz": (1.0, 1.0, 5.0)})
    # d is 5/3 of the median on z, c 0.8 of it: d is the farther (in ratio), so it comes first
    assert found == ("2 of 4 cases have a voxel size more than 1% from the median 1 x 1 x 3 mm "
                     "(from 0.8 x 0.8 x 3 to 1 x 1 x 5 mm): d.nii.gz (1 x 1 x 5 mm), c.nii.gz (0.8 x 0.8 x 3 mm)")
    many = {f"{i:02d}.nii.gz": (1.0, 1.0, 1.0) for i in range(5)} | {f"odd{i}.nii.gz": (1.0 + i / 10, 1.0, 1.0)
                                                                    for i in range(1, 5)}
    assert mixed_spacing(many).endswith(
        ": odd4.nii.gz (1.4 x 1 x 1 mm), odd3.nii.gz (1.3 x 1 x 1 mm), odd2.nii.gz (1.2 x 1 x 1 mm) and 1 more")


def test_the_resampled_shape_covers_the_same_extent():
    # 44 voxels of 0.8 mm span 35.2 mm: 35 voxels of 1 mm; 28 of 1.25 mm span 35 mm
    assert resampled_shape((44, 64, 44), (0.8, 0.8, 0.8), (1.0, 1.0, 1.0)) == (35, 51, 35)
    assert resampled_shape((28, 41, 28), (1.25, 1.25, 1.25), (1.0, 1.0, 1.0)) == (35, 51, 35)
    assert resampled_shape((3, 1, 2), (0.1, 0.1, 0.1), (1.0, 1.0, 1.0)) == (1, 1, 1)  # never 0 voxels


@pytest.mark.parametrize("spacing,target", [(0.8, 1.0), (1.0, 0.8), (1.25, 1.0)])
def test_a_linear_ramp_keeps_its_values_in_millimetres(spacing, target):
    n = 40
    centres = (np.arange(n) + 0.5) * spacing  # mm from the volume's outer face
    volume = np.broadcast_to(centres[:, None, None], (n, 4, 4)).astype(np.float64)
    m = resampled_shape((n, 4, 4), (spacing, 1, 1), (target, 1, 1))[0]
    out = resample(volume, (m, 4, 4), order=1)
    assert out.shape == (m, 4, 4)
    new_centres = (np.arange(m) + 0.5) * target
    inside = (new_centres > centres[0]) & (new_centres < centres[-1])  # beyond the last centre it is held
    np.testing.assert_allclose(out[inside, 0, 0], new_centres[inside], atol=1e-6)
    assert out.min() >= volume.min() - 1e-9 and out.max() <= volume.max() + 1e-9  # linear: no overshoot


def test_a_box_mask_keeps_its_extent_in_millimetres_and_comes_back_exactly():
    mask = np.zeros((50, 50, 50), bool)
    mask[10:30, 5:45, 20:25] = True  # 20 x 40 x 5 mm at 1 mm
    down = resample(mask, (40, 40, 40), order=0)  # 1.25 mm voxels
    assert down.dtype == bool
    # 1.25 mm voxel j has its centre at (j + 0.5) * 1.25 mm: inside [10, 30) for j = 8..23, [5, 45) for
    # j = 4..35, [20, 25) for j = 16..19: 16 x 32 x 4 = 2048 voxels, 4000 mm³ exactly as before
    assert down.sum() == 2048 and down.sum() * 1.25 ** 3 == mask.sum()
    corners = np.argwhere(down)
    assert np.array_equal(corners.min(0), [8, 4, 16]) and np.array_equal(corners.max(0), [23, 35, 19])
    up = resample(mask, (100, 100, 100), order=0)  # 0.5 mm: every voxel splits into 8
    assert up.sum() == 8 * mask.sum()
    np.testing.assert_array_equal(resample(up, (50, 50, 50), order=0), mask)


def test_resample_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="order must be 0"):
        resample(np.zeros((2, 2, 2)), (3, 3, 3), order=3)
    with pytest.raises(ValueError, match="3-D volume"):
        resample(np.zeros((2, 2)), (3, 3, 3), order=1)


@pytest.mark.parametrize("old, new", [(6, 2), (6, 4), (2, 4), (3, 7), (7, 3), (5, 5)])
def test_the_area_share_of_each_new_voxel_is_its_overlap_counted_by_brute_force(old, new):
    """Each new voxel's share of true old voxels along one axis, against a count on a fine common
    grid of old × new cells (every voxel edge of both grids falls on a cell edge)."""
    rng = np.random.default_rng(old * 10 + new)
    values = rng.random(old) < 0.5
    fine = np.repeat(values, new)  # old × new cells: each old voxel is `new` cells
    expected = fine.reshape(new, old).mean(1)  # each new voxel is `old` cells
    got = area_share(values[None, None, :], (1, 1, new))[0, 0]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    # the axes multiply: a product of per-axis patterns gives the product of their shares
    other = rng.random(3) < 0.5
    both = area_share(values[:, None, None] & other[None, :, None] & np.ones((1, 1, 2), bool), (new, 3, 2))
    np.testing.assert_allclose(both, expected[:, None, None] * other[None, :, None] * np.ones((1, 1, 2)), atol=1e-12)
