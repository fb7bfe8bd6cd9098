"""MetaImage and detached NRRD headers in every spelling ITK reads: a data file outside the header's
folder is refused, a header past the size limit is refused, a large attached NRRD is read."""

import pytest

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import read_label_map


def test_a_list_header_naming_a_slice_outside_its_folder_is_refused(tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes([0, 1, 0, 1]))
    case = tmp_path / "case"
    case.mkdir()
    (case / "s0.raw").write_bytes(bytes([1, 0, 1, 0]))
    header = case / "x.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                      f"ElementDataFile = LIST\ns0.raw\n{secret}\n")
    with pytest.raises(DataError, match=f"x.mhd: its header reads the voxels from {secret}, outside"):
        read_label_map(header)


def _secret(tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes([0, 1, 0, 1, 0, 1, 0, 1]))
    (tmp_path / "case").mkdir()
    return secret


@pytest.mark.parametrize("name, text", [
    ("a.mhd", "ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = {s}\n"),
    ("b.mhd", "ObjectType = Image\nNDims = 3\n\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile = {s}\n"),
    ("c.nhdr", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndatafile: {s}\n"),
    ("e.nhdr", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\nDATA FILE: {s}\n"),  # ITK reads it
])
def test_every_header_spelling_naming_a_file_elsewhere_is_refused(tmp_path, name, text):
    secret = _secret(tmp_path)
    header = tmp_path / "case" / name
    header.write_text(text.format(s=secret))
    with pytest.raises(DataError, match=f"{name}: its header reads the voxels from {secret}, outside"):
        read_label_map(header)


def test_a_header_longer_than_the_limit_is_refused_not_read_in_part(tmp_path):
    secret = _secret(tmp_path)
    header = tmp_path / "case" / "big.nhdr"
    header.write_text("NRRD0004\n" + ("# " + "c" * 998 + "\n") * 1100
                      + f"type: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: {secret}\n")
    with pytest.raises(DataError, match="big.nhdr: its text header runs past 1,048,576 bytes"):
        read_label_map(header)


def test_an_attached_nrrd_larger_than_the_header_limit_is_read(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    labels = np.zeros((128, 128, 80), np.uint8)  # 1.3 MB of voxels after a short header
    labels[3:9, 4:8, 5:7] = 1
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "m.nrrd"), useCompression=False)
    assert (tmp_path / "m.nrrd").stat().st_size > 1 << 20
    assert int(read_label_map(tmp_path / "m.nrrd").data.sum()) == 6 * 4 * 2


def test_a_header_whose_voxels_file_is_missing_names_that_file(tmp_path):
    """SimpleITK's line named the header (which is there): "File cannot be read: a.mhd"."""
    header = tmp_path / "a.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                      "ElementDataFile = a.raw\n")
    with pytest.raises(DataError, match=r"a.mhd: its header reads the voxels from a.raw, which is not in "):
        read_label_map(header)
    (tmp_path / "a.raw").write_bytes(bytes([0, 1] * 4))  # once there, read
    assert int(read_label_map(header).data.sum()) == 4
