"""The memory savings of reading masks and images change no number: in-place normalisation never
touches an array its caller still reads, and a float label map read into the narrowest integer
type keeps every value, however far it lies beyond uint8. Volumes are built here; the expected
values are worked out by hand in the comments (segment's nine-voxel z-scores, of mean 140 / 9, are
written as their definition)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import GridSpec, MaskCase, custom_preset, get_preset, load_region, read_label_map
from bindiff.adapters.masks.images import normalise_channels
from bindiff.adapters.masks.labels import binarize
from bindiff.tasks.segmentation.data import TrainingGeometry, _load_case
from bindiff.tasks.segmentation.segment import InputCase, _place_case

# one 3 x 3 x 1 volume: 8 foreground voxels and one background voxel (the last)
FOREGROUND = np.array([True] * 8 + [False]).reshape(3, 3, 1)
# channel 0 over the foreground: 2 4 4 4 5 5 7 9, mean 5, standard deviation 2 -> z = (x - 5) / 2
# channel 1: four 10s and four 30s, mean 20, standard deviation 10 -> z = -1 or +1
RAW = np.array([[2, 4, 4, 4, 5, 5, 7, 9, 100],
                [10, 10, 10, 10, 30, 30, 30, 30, -7]], dtype=np.float32).reshape(2, 3, 3, 1)
Z = np.array([[-1.5, -0.5, -0.5, -0.5, 0, 0, 1, 2, 0],  # the background voxel reads 0 in both
              [-1, -1, -1, -1, 1, 1, 1, 1, 0]], dtype=np.float32).reshape(2, 3, 3, 1)


def _save(path: Path, values, dtype) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(values, dtype=dtype).reshape(1, 1, -1), np.eye(4)), str(path))
    return path


def test_normalising_in_place_gives_the_numbers_of_a_copy_and_a_copy_leaves_its_input():
    channels = RAW.copy()
    out, stats = normalise_channels(channels, FOREGROUND)
    assert np.array_equal(channels, RAW)  # the default never writes into its caller's array
    assert np.array_equal(out, Z)
    assert [(s.mean, s.std, s.foreground_voxels) for s in stats] == [(5.0, 2.0, 8), (20.0, 10.0, 8)]
    again, stats_again = normalise_channels(channels, FOREGROUND, in_place=True)
    assert again is channels and np.array_equal(channels, Z) and stats_again == stats
    for unwritable in (RAW.astype(np.int16), RAW.astype(np.float64), np.broadcast_to(RAW, RAW.shape)):
        kept = unwritable.copy()  # not float32, or read-only: copied as without in_place
        out, _ = normalise_channels(unwritable, FOREGROUND, in_place=True)
        assert out is not unwritable and np.array_equal(unwritable, kept) and np.array_equal(out, Z)


def test_segment_keeps_the_first_channel_as_read_for_its_panel(tmp_path):
    # segment.py holds a view of the first channel (the panel shows the scan as read): its
    # normalisation must be a copy, or the panel shows z-scores (-1.5 ... 2 and 0 for 100)
    scan = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(RAW[0], np.eye(4)), str(scan))
    trained = TrainingGeometry((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (3.0, 3.0, 1.0))
    image, _, _, _, shown, _ = _place_case(InputCase("case", (scan,)), 1, GridSpec((3, 3, 1)), trained, None)
    assert np.array_equal(shown, RAW[0])
    # every voxel is non-zero, so all nine are the foreground: mean 140 / 9, z of 100 above 2.5
    values = RAW[0].astype(np.float64).reshape(-1)
    expected = ((values - values.mean()) / values.std()).astype(np.float32).reshape(3, 3, 1)
    assert np.array_equal(image.grid[0], expected)


def test_a_training_case_is_normalised_as_its_stats_say(tmp_path):
    # the segmentation job's reader normalises in place: the grid must hold Z, the stats 5 / 2 and 20 / 10
    for c, name in enumerate(("a", "b")):
        nib.save(nib.Nifti1Image(RAW[c], np.eye(4)), str(tmp_path / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(FOREGROUND.astype(np.uint8), np.eye(4)), str(tmp_path / "brain.nii.gz"))
    nib.save(nib.Nifti1Image(np.eye(3, dtype=np.float32).reshape(3, 3, 1), np.eye(4)), str(tmp_path / "seg.nii.gz"))
    case = MaskCase("c", tmp_path / "seg.nii.gz", brain=tmp_path / "brain.nii.gz")
    loaded = _load_case(case, custom_preset([1], [1]), "whole", GridSpec((3, 3, 1)),
                        {"channels": ["a", "b"], "brain": True, "spacing": None})
    assert np.array_equal(loaded.image.grid, Z)
    assert [(s.mean, s.std) for s in loaded.image.stats] == [(5.0, 2.0), (20.0, 10.0)]
    assert np.array_equal(loaded.mask[..., 0], np.eye(3, dtype=np.uint8))


@pytest.mark.parametrize("values, dtype", [
    ([0, 4, 255], np.uint8),
    ([0, 4, 256], np.int16),  # uint8 would read 256 as 0
    ([-1, 0, 4], np.int8),  # uint8 would read -1 as 255
    ([0, 4, 40000], np.int32),  # int16 would read 40000 as -25536
    ([0, 4, 3_000_000_000], np.int64),  # int32 would read it as -1294967296
])
def test_a_float_label_map_read_compact_keeps_every_value(tmp_path, values, dtype):
    path = _save(tmp_path / "labels.nii.gz", values, np.float64)
    compact = read_label_map(path, compact=True).data
    assert compact.dtype == dtype and compact.reshape(-1).tolist() == values
    assert read_label_map(path).data.dtype == np.int64  # without compact: as before
    # the value a narrower type would wrap is the region: its voxel alone, whatever else the map holds
    odd = min(values) if min(values) < 0 else max(values)
    truth, _ = load_region(MaskCase("c", path), custom_preset(values, [odd]), "whole")
    assert truth.reshape(-1).tolist() == [v == odd for v in values]


def test_label_values_a_narrow_or_64_bit_type_cannot_hold_are_named_as_stored(tmp_path):
    with pytest.raises(DataError, match=r"labels\.nii\.gz: unexpected label value\(s\) 256 for preset 'brats2015'"):
        load_region(MaskCase("c", _save(tmp_path / "labels.nii.gz", [0, 4, 256], np.float32)),
                    get_preset("brats2015"), "whole")  # 256, not 0: uint8 would have passed it as background
    with pytest.raises(DataError, match=r"huge\.nii\.gz: label map holds 1e\+19, beyond the 64-bit integers"):
        read_label_map(_save(tmp_path / "huge.nii.gz", [0, 1, 1e19], np.float64), compact=True)  # was -2**63
    with pytest.raises(DataError, match=r"near\.nii\.gz: label map holds non-integer values \(1\.00000012\)"):
        read_label_map(_save(tmp_path / "near.nii.gz", [0, 1.0000001], np.float32), compact=True)
    # a region naming a value beyond the map's narrow type (300 beside uint8) marks what the map holds, no more
    truth, _ = load_region(MaskCase("c", _save(tmp_path / "small.nii.gz", [0, 4, 255], np.float32)),
                           custom_preset([4, 255, 300], [255, 300]), "whole")
    assert truth.reshape(-1).tolist() == [False, False, True]
    # an int64 map (a float file read without compact) is counted, not sorted: 70000 is beyond that count's
    # 2 ** 16 and must still be named
    with pytest.raises(DataError, match=r"case: unexpected label value\(s\) 70000 for preset 'brats2015'"):
        binarize(np.array([0, 70000, 3], dtype=np.int64), get_preset("brats2015"), "whole", source="case")
    assert binarize(np.array([[4, 0], [1, 2]], dtype=np.int64), get_preset("brats2015"),
                    "enhancing").tolist() == [[True, False], [False, False]]
