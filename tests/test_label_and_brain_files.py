"""Label maps and brain masks that are no such thing, refused by name: an infinite label, a complex
label map, a brain mask voxel at the threshold itself, a brain mask that marks nothing. Each value is
written here by hand (mutants of io.py's checks survived every other test)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import read_label_map
from bindiff.adapters.masks.io import read_brain_mask


def _save(tmp_path, name, data):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def test_an_infinite_label_is_named_not_a_traceback(tmp_path):
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.inf, 1  # without the check: int(inf), an OverflowError
    with pytest.raises(DataError, match=r"inf.nii: label map holds 1 NaN or infinite values"):
        read_label_map(_save(tmp_path, "inf.nii", data))


def test_a_complex_label_map_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"label map has data type complex64, not integers"):
        read_label_map(_save(tmp_path, "c.nii", np.zeros((3, 3, 3), np.complex64)))


def test_a_brain_mask_value_at_the_threshold_is_unclear_and_an_empty_mask_marks_nothing(tmp_path):
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1] = 0.5, 1.0  # 0.5 is neither outside (0) nor inside (above 0.5)
    with pytest.raises(DataError, match=r"1 voxel\(s\) hold other values \(e.g. 0.5\)"):
        read_brain_mask(_save(tmp_path, "half.nii", data))
    with pytest.raises(DataError, match=r"the brain mask marks no voxel"):
        read_brain_mask(_save(tmp_path, "empty.nii", np.zeros((3, 3, 3), np.uint8)))
    inside = read_brain_mask(_save(tmp_path, "ok.nii", (data == 1.0).astype(np.uint8) * 255))
    assert int(inside.data.sum()) == 1 and inside.data[1, 1, 1]
