"""Hostile image files on the segmentation path (``adapters/masks/images.py``, ``io.py``,
``bindiff segment``'s input listing): tiny volumes built here, each checked against what the file
holds or against an independent reading (nibabel's raw bytes, SimpleITK)."""

from __future__ import annotations

import struct

import nibabel as nib
import numpy as np
import pytest

from bindiff.adapters import DataError
from bindiff.adapters.masks import read_label_map, write_mask
from bindiff.adapters.masks.images import normalise_channels, read_image


def _nifti(path, data, affine=None):
    affine = np.eye(4) if affine is None else affine
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def _patch(path, offset: int, fmt: str, *values) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["scan.nii", "scan.nii.gz"])
def test_a_single_file_nifti_whose_voxels_start_inside_its_header_is_refused(tmp_path, name):
    """vox_offset 0 in a .nii: nibabel (which takes 0 as "unset") read the voxels from byte 0, so the
    352 header bytes became the first 88 float32 voxels and the whole scan moved by 88 voxels: a mask
    in the wrong place, without a word. SimpleITK reads it shifted another way."""
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 1
    plain = _nifti(tmp_path / "scan.nii", data)
    _patch(plain, 108, "<f", 0.0)  # vox_offset
    path = plain
    if name.endswith(".gz"):
        import gzip

        path = tmp_path / name
        path.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DataError, match=rf"{path}: its header puts the voxels at byte 0 \(vox_offset\), inside its "
                                        r"own 352-byte header"):
        read_image(path)
    with pytest.raises(DataError, match="inside its own 352-byte header"):
        read_label_map(path)


def test_a_damaged_qform_beside_a_valid_sform_reads_and_writes_back(tmp_path):
    """A NaN quaternion beside a valid sform (qform_code 1): nibabel and SimpleITK both read the
    sform, but the qform was kept to be written back and nibabel's set_qform raised a traceback
    after the whole case had been segmented."""
    import SimpleITK as sitk

    affine = np.array([[-1.0, 0, 0, 3], [0, 1.0, 0, -2], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    data = np.zeros((4, 5, 6), np.float32)
    data[1:3, 1:4, 2:5] = np.arange(18).reshape(2, 3, 3) + 1
    path = _nifti(tmp_path / "scan.nii", data, affine)
    _patch(path, 256, "<f", float("nan"))  # quatern_b
    volume = read_image(path)
    out = write_mask(volume.data > 5, volume.geometry, tmp_path / "mask.nii.gz")
    written = nib.load(str(out))
    assert np.allclose(written.affine, affine) and np.isfinite(written.header.get_qform()).all()
    source, mask = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
    assert np.allclose(source.GetOrigin(), mask.GetOrigin()) and np.allclose(source.GetDirection(), mask.GetDirection())
    np.testing.assert_array_equal(np.asarray(written.dataobj), (data > 5).astype(np.uint8))


def test_a_3d_nifti_stored_with_trailing_unit_axes_reads_as_3d(tmp_path):
    """(X, Y, Z, 1, 1), as some converters store a plain scan: SimpleITK reads it as 3-D; bindiff
    refused it as "expected a 3-D image"."""
    import SimpleITK as sitk

    data = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    path = _nifti(tmp_path / "scan.nii.gz", data[..., None, None], np.diag([1.0, 1.0, 2.0, 1.0]))
    assert sitk.ReadImage(str(path)).GetDimension() == 3
    np.testing.assert_array_equal(read_image(path).data, data)
    assert read_image(path, channels=True).data.shape == (1, 4, 5, 6)
    labels = _nifti(tmp_path / "labels.nii.gz", (data > 0.5).astype(np.uint8)[..., None, None])
    np.testing.assert_array_equal(read_label_map(labels).data, (data > 0.5).astype(np.uint8))
    vector = _nifti(tmp_path / "vector.nii.gz", np.stack([data, data], -1)[..., None, :])  # (X, Y, Z, 1, 2)
    with pytest.raises(DataError, match=r"expected a 3-D image, got an array of shape \(4, 5, 6, 1, 2\)"):
        read_image(vector)


def test_complex_channels_are_refused_not_cut_to_their_real_part():
    channels = (np.ones((1, 3, 3, 3)) + 1j * np.arange(27).reshape(1, 3, 3, 3)).astype(np.complex64)
    with pytest.raises(DataError, match=r"scan.nii: the image has data type complex64, not real numbers"):
        normalise_channels(channels, np.ones((3, 3, 3), bool), source="scan.nii")


def test_a_metaimage_data_file_beside_its_header_is_not_listed_as_unread(tmp_path):
    """A folder of .mhd scans: each header's .raw is read with it, yet bindiff segment warned "not read"
    about every one and listed them in summary.json's not_read."""
    from bindiff.tasks.segmentation.segment import find_inputs, unread_entries

    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4).transpose(2, 1, 0)
    for name in ("a", "b"):
        (tmp_path / f"{name}.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 3 4\n"
                                              f"ElementType = MET_FLOAT\nElementDataFile = {name}.raw\n")
        (tmp_path / f"{name}.raw").write_bytes(data.astype("<f4").tobytes())
    (tmp_path / "notes.txt").write_text("x")
    cases = find_inputs(tmp_path, None)
    assert [c.case_id for c in cases] == ["a", "b"]
    assert unread_entries(tmp_path, None, cases) == ["notes.txt"]
    np.testing.assert_array_equal(read_image(tmp_path / "a.mhd").data.shape, (2, 3, 4))
