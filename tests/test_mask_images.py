"""Images beside label maps: canonical reading, channels on one grid, per-case normalisation, and a
grid placed from the image alone."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bindiff.adapters import DataError
from bindiff.adapters.masks import GridSpec, read_label_map
from bindiff.adapters.masks.images import (ImageCase, image_on_grid, image_roi, normalise_channels, read_channels,
                                           read_image)

DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


def test_an_image_reads_in_the_orientation_nibabel_calls_canonical(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 10], [0, 0, 1.5, -3], [0, 1.0, 0, 4], [0, 0, 0, 1]])  # flipped and permuted
    path = _save(tmp_path / "img.nii.gz", data, affine)
    volume = read_image(path)
    expected = nib.as_closest_canonical(nib.load(str(path))).get_fdata()
    np.testing.assert_array_equal(volume.data, expected.astype(np.float32))
    assert volume.spacing == pytest.approx((2.0, 1.5, 1.0))  # world y follows file axis 2, z axis 1


def test_channels_must_share_the_grid_of_each_other_and_of_the_label(tmp_path):
    a = _save(tmp_path / "flair.nii.gz", np.ones((4, 4, 4)), np.eye(4))
    b = _save(tmp_path / "t1c.nii.gz", np.ones((4, 4, 5)), np.eye(4))
    c = _save(tmp_path / "shifted.nii.gz", np.ones((4, 4, 4)), np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(DataError, match=rf"{b}: shape \(4, 4, 5\) differs from {a}'s \(4, 4, 4\)"):
        read_channels([a, b])
    with pytest.raises(DataError, match=rf"{c}: its voxel-to-world affine differs from {a}'s"):
        read_channels([a, c])
    label = tmp_path / "label.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 5), np.uint8), np.eye(4)), str(label))
    with pytest.raises(DataError, match=rf"{a}: shape \(4, 4, 4\) differs from {label}'s"):
        read_channels([a], reference=read_label_map(label).geometry, reference_path=label)
    channels, _ = read_channels([a, a])
    assert channels.shape == (2, 4, 4, 4) and channels.dtype == np.float32


def test_the_same_voxels_stored_in_another_axis_order_are_one_grid(tmp_path):
    """A channel or brain mask written with x and y backwards (LPS beside RAS), its affine changed to
    match, holds the same voxels: it is read as such, not refused as another grid."""
    from bindiff.adapters.masks.images import read_brain_on

    rng = np.random.default_rng(2)
    data = rng.random((5, 6, 7)).astype(np.float32)
    affine = np.diag([1.2, 1.0, 1.5, 1.0])
    affine[:3, 3] = [4.0, -2.0, 7.0]
    # voxel (i, j, k) of the flipped file is voxel (4 - i, 5 - j, k) of the plain one
    flip = np.array([[-1.0, 0, 0, 4], [0, -1, 0, 5], [0, 0, 1, 0], [0, 0, 0, 1]])
    plain = _save(tmp_path / "plain.nii.gz", data, affine)
    flipped = _save(tmp_path / "flipped.nii.gz", data[::-1, ::-1], affine @ flip)
    channels, geometry = read_channels([plain, flipped])
    np.testing.assert_array_equal(channels[0], channels[1])
    brain = (data > 0.5).astype(np.uint8)
    nib.save(nib.Nifti1Image(brain[::-1, ::-1].copy(), affine @ flip), str(tmp_path / "brain.nii.gz"))
    np.testing.assert_array_equal(read_brain_on(tmp_path / "brain.nii.gz", geometry, plain), brain.astype(bool))
    moved = affine @ flip
    moved[0, 3] += 1.2  # one voxel along x: other voxels
    _save(tmp_path / "moved.nii.gz", data[::-1, ::-1], moved)
    with pytest.raises(DataError, match=r"moved.nii.gz: its voxel-to-world affine differs from .*plain.nii.gz's"):
        read_channels([plain, tmp_path / "moved.nii.gz"])
    # the same stored shape with its first two axes swapped in the world: other voxels, and the line
    # shows the shape the voxels are compared in
    cube = _save(tmp_path / "cube.nii.gz", rng.random((5, 6, 7)), np.eye(4))
    swapped = _save(tmp_path / "swapped.nii.gz", rng.random((5, 6, 7)),
                    np.array([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    with pytest.raises(DataError, match=r"swapped.nii.gz: shape \(5, 6, 7\) \(\(6, 5, 7\) in RAS order\) differs from "
                                        r".*cube.nii.gz's \(5, 6, 7\) \(not the same voxels\)"):
        read_channels([cube, swapped])


def test_normalisation_is_a_z_score_inside_the_foreground():
    rng = np.random.default_rng(1)
    channels = np.stack([rng.normal(50, 7, (6, 6, 6)), np.full((6, 6, 6), 3.0)]).astype(np.float32)
    foreground = np.zeros((6, 6, 6), bool)
    foreground[1:5, 1:5, 1:5] = True
    out, stats = normalise_channels(channels, foreground)
    inside = out[0][foreground].astype(np.float64)
    assert inside.mean() == pytest.approx(0.0, abs=1e-6) and inside.std() == pytest.approx(1.0, abs=1e-5)
    assert not out[:, ~foreground].any() and not out[1].any()  # outside and a constant channel: 0
    assert stats[0].mean == pytest.approx(float(channels[0][foreground].mean()), rel=1e-6)
    assert stats[0].foreground_voxels == 64
    with pytest.raises(DataError, match="foreground is empty"):
        normalise_channels(channels, np.zeros((6, 6, 6), bool))
    # every channel constant over the foreground: nothing to segment, whatever the values
    with pytest.raises(DataError, match=r"scan.nii.gz: every voxel .* holds the same value \(3, -2\)"):
        normalise_channels(np.stack([np.full((6, 6, 6), 3.0), np.full((6, 6, 6), -2.0)]), foreground,
                           source="scan.nii.gz")


def test_the_region_comes_from_a_brain_mask_or_the_non_zero_voxels():
    channels = np.zeros((2, 5, 5, 5), np.float32)
    channels[0, 1, 1, 1] = 2.0
    channels[1, 3, 3, 3] = -1.0
    roi = image_roi(channels)
    assert roi.sum() == 2 and roi[1, 1, 1] and roi[3, 3, 3]
    brain = np.zeros((5, 5, 5), bool)
    brain[2] = True
    assert (image_roi(channels, brain) == brain).all()


@pytest.mark.skipif(not (DATA / "msd_hippocampus" / "images").is_dir(), reason="MSD hippocampus images not found")
def test_a_real_case_is_placed_from_its_image_alone_and_its_mask_fits_the_same_window():
    image = sorted((DATA / "msd_hippocampus" / "images").iterdir())[0]
    label = DATA / "msd_hippocampus" / "labels" / image.name
    spec = GridSpec(shape=(32, 48, 40), mode="pad", crop="region", margin=2, slice_axis=2)
    case = ImageCase.load([image], spec)  # no label read: the window comes from the image
    assert case.grid.shape == (1, 32, 48, 40) and case.grid.dtype == np.float32
    valid = case.transform.valid()
    assert abs(float(case.grid[0][valid & (case.grid[0] != 0)].mean())) < 0.5
    mask = read_label_map(label).data > 0
    assert case.transform.outside(mask) == 0  # the whole hippocampus lies in the image-placed window
    placed = image_on_grid(mask[None].astype(np.float32), case.transform)[0]
    assert placed.sum() == mask.sum()


def test_reading_a_dicom_series_leaves_the_process_locale_as_it_was(monkeypatch, tmp_path):
    """GDCM may switch the C locale to "C" (ASCII text) while it parses tags; the reader puts it back."""
    import locale

    from bindiff.adapters.masks import io

    def switching(path):
        locale.setlocale(locale.LC_ALL, "C")
        return np.zeros((2, 2, 2)), np.eye(4), 1, 1

    monkeypatch.setattr(io, "_read_gdcm_series", switching)
    before = (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False))
    io._read_dicom_series(tmp_path)
    assert (locale.setlocale(locale.LC_ALL), locale.getpreferredencoding(False)) == before


def test_a_label_maps_geometry_is_read_from_its_header_alone(tmp_path, monkeypatch):
    """The median spacing of images.spacing reads headers only: the geometry of a flipped 2 x 1 x 3 mm
    NIfTI comes back with no voxel read, and equals what reading the whole file gives."""
    from bindiff.adapters.masks.io import read_geometry, read_label_map

    path = _save(tmp_path / "label.nii.gz", np.zeros((4, 5, 6)), np.diag([-2.0, 1.0, 3.0, 1.0]))
    whole = read_label_map(path).geometry
    import nibabel as nib

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "__array__", lambda *a, **k: pytest.fail("voxels were read"))
    header = read_geometry(path)
    assert header.spacing == pytest.approx((2.0, 1.0, 3.0)) and header.canonical_shape == (4, 5, 6)
    assert np.allclose(header.affine, whole.affine) and (header.ornt == whole.ornt).all()
