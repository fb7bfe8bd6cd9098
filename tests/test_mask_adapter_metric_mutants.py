"""The mask adapters (io, grid, labels, spacing, images, datasets) and the metrics (ranking,
segmentation, calibration) against independent truths, where a scripted mutation pass found the
suite blind.

Of 209 scripted mutants of adapters/masks/{io,grid,labels,spacing,images,datasets}.py and
bindiff/metrics/{ranking,segmentation,calibration}.py, each run against the test files that grep
finds for its module, the ones that changed behaviour and survived are killed here, each against a
hand value or a brute force (the docstring of each test names its mutants as file:line before → after).

Equivalent mutants (left alive, with the argument). One more, io.py:152's ``offset + n_bytes > held`` →
``>=``, was equivalent only because the check read the header's ``vox_offset``, which nibabel leaves
at 0: a bug, fixed (the last test); an intact file now holds exactly offset + n_bytes, so ``>=``
refuses every file and the suite kills it.

- io.py:442 squeezing a single-volume 4-D file also when ``channels``: the 3-D array then becomes
  ``data[None]`` in ``read_image``, the same (1, X, Y, Z) as the 4-D array moved to channels-first.
- io.py:459 ``qform_code == 0 or sform_code == 0`` → ``and``: the extra qform kept is written back
  under its own code 0, which nibabel and SimpleITK both ignore (checked: the written masks read
  back with the input's affine, origin, direction and spacing for code pairs 0/1, 1/0, 0/0, 2/1).
- io.py:506 ``data != np.round(data)`` → ``np.floor``: a finite float differs from its rounding
  exactly when it differs from its floor (it is an integer in both cases otherwise).
- labels.py:113 ``fg <= allowed_set`` → ``fg < allowed_set``: 0 is always in ``allowed_set`` and
  never in ``fg`` (refused just above), so ⊆ and ⊊ agree.
- labels.py:160 the bincount path for labels below ``2 ** 16`` → ``2 ** 8``: labels above go to
  ``np.unique``, which gives the same sorted values (only slower).
- spacing.py:113 ``mode="nearest"`` → ``"reflect"``: with ``grid_mode`` and order 0 or 1 no sample
  reads beyond the first neighbour outside the volume, which both modes take from the edge voxel.
- spacing.py:117 ``out > 0.5`` → ``out >= 0.5`` for boolean volumes: every caller resamples masks
  with order 0, whose output is exactly 0 or 1 (only order 1, never used on masks, can make 0.5).
- datasets.py:43 ``.nii`` before ``.nii.gz`` in LABEL_SUFFIXES: no suffix ends another, so stems
  are the same; the order only changes which of two files an error names first and the order of
  the suffixes listed in messages.
- datasets.py:281 ``0 <= value < 1`` → ``<= 1``: a fraction of 1 makes v = n, which the next check
  (``v + t >= n``) refuses, also with a line naming split.n_valid and split.n_test.
- ranking.py:130 ``np.log2`` → ``np.log`` in the discounts: DCG and IDCG scale by the same 1/ln 2.
- ranking.py:144 ``where=denom > 0`` → ``denom >= 0``: 0/0 writes NaN, the value already there
  (with a RuntimeWarning, and only outside ``evaluate_ranking``, which skips empty users).
- ranking.py:197 the k-th value by ``topk(sorted=False).amin`` → ``topk(sorted=True)[:, -1]``: the
  k-th largest value is the same whatever order topk returns.
- segmentation.py:126 the crop margin of one voxel dropped: every surface voxel of both masks lies
  in their joint bounding box, so the distance to the nearest surface voxel of the crop is unchanged.
- calibration.py:84 ``not n_wrong or not n_right`` → ``not n_wrong``: with no correct voxel the rank
  sum is exactly n(n + 1)/2 (ranks and mean ranks are integers and half-integers), so the statistic
  is 0/0, NaN as before (with a RuntimeWarning).

Left alive, not equivalent but unspecified: datasets.py:194 ``("flair", "t2f")`` → ``("t2f", "flair")``
changes which file is the brain mask only in a folder holding both ``<case>_flair`` and ``<case>_t2f``
(or both with ``-``); no BraTS release does (2018-2021 name ``_flair``, 2023 ``-t2f``) and the
documentation does not say which would win, so no test pins it.
"""

from __future__ import annotations

import gzip
import math

import nibabel as nib
import numpy as np
import pytest
import scipy.sparse as sp

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import io as mask_io


# -- io: geometry ------------------------------------------------------------------------------------
def _rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _geometry(affine: np.ndarray, shape=(4, 5, 6)) -> mask_io.Geometry:
    from nibabel.orientations import io_orientation

    return mask_io.Geometry(affine=affine, shape=shape, ornt=io_orientation(affine))


def test_spacing_of_an_oblique_anisotropic_affine_is_its_column_lengths():
    """io.py:82 ``np.sqrt((A ** 2).sum(0))`` → ``.sum(1)`` (row norms instead of column norms)."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(30) @ np.diag([1.0, 2.0, 3.0])  # voxels of 1 x 2 x 3 mm, rotated 30° about z
    assert _geometry(affine).spacing == pytest.approx((1.0, 2.0, 3.0))


def test_from_canonical_refuses_an_array_of_another_shape():
    """io.py:92 the shape check of ``from_canonical`` removed (a transposed mask was written silently)."""
    geometry = _geometry(np.diag([1.0, 1.0, 1.0, 1.0]), shape=(4, 4, 6))
    with pytest.raises(ValueError, match="does not fit the canonical shape"):
        geometry.from_canonical(np.zeros((4, 6, 4), dtype=np.uint8))


def test_a_stored_geometry_without_nifti_codes_reads_them_as_1():
    """io.py:104 ``data.get("qform_code", 1)`` → ``0``."""
    stored = {"affine": np.eye(4).tolist(), "shape": [2, 3, 4], "ornt": [[0, 1], [1, 1], [2, 1]]}
    geometry = mask_io.Geometry.from_dict(stored)
    assert (geometry.qform_code, geometry.sform_code) == (1, 1)


def test_two_grids_a_hundredth_of_a_millimetre_apart_are_not_one_grid():
    """io.py:115 ``allclose(..., atol=1e-3)`` → ``atol=1e-1``."""
    reference = _geometry(np.eye(4))
    shifted = np.eye(4)
    shifted[0, 3] = 0.01
    mask_io.require_one_grid(reference, _geometry(np.eye(4)), "label.nii", "image.nii")
    with pytest.raises(DataError, match="image.nii: its voxel-to-world affine differs"):
        mask_io.require_one_grid(reference, _geometry(shifted), "label.nii", "image.nii")


def test_a_file_in_metres_and_one_in_mm_on_the_same_voxels_are_one_grid(tmp_path):
    """io.py:177 ``np.diag([s, s, s, 1]) @ matrix`` → ``np.diag([s, s, s, s])`` (the homogeneous row scaled
    by 1000: a label map in metres no longer matched its image in mm)."""
    data = np.zeros((3, 4, 5), dtype=np.uint8)
    data[1, 1, 1] = 1
    mm = np.diag([1.0, 2.0, 3.0, 1.0])
    mm[:3, 3] = [10.0, 20.0, 30.0]
    metres = np.diag([0.001, 0.001, 0.001, 1.0]) @ mm
    for name, affine, unit in (("mm.nii.gz", mm, "mm"), ("m.nii.gz", metres, "meter")):
        image = nib.Nifti1Image(data, affine)
        image.header.set_xyzt_units(unit)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, str(tmp_path / name))
    a, b = mask_io.read_label_map(tmp_path / "mm.nii.gz"), mask_io.read_label_map(tmp_path / "m.nii.gz")
    np.testing.assert_allclose(b.geometry.affine, mm, atol=1e-9)
    mask_io.require_one_grid(a.geometry, b.geometry, "mm.nii.gz", "m.nii.gz")


class _SliceTags:
    """What ``_check_even_slices`` reads of a series reader: each slice's position and orientation."""

    def __init__(self, z_positions, orientation=(1, 0, 0, 0, 1, 0)):
        self.positions = [(0.0, 0.0, float(z)) for z in z_positions]
        self.orientation = "\\".join(str(v) for v in orientation)

    def HasMetaDataKey(self, i, tag):  # noqa: N802 (SimpleITK's names)
        return True

    def GetMetaData(self, i, tag):  # noqa: N802
        return self.orientation if tag == "0020|0037" else "\\".join(str(v) for v in self.positions[i])


def test_slices_a_tenth_of_a_millimetre_off_their_step_are_refused():
    """io.py:328 tolerance ``max(0.01 * step, 1e-3)`` → ``max(0.1 * step, 1e-3)``: gaps of 2 and 2.1 mm
    (step 2.05, 2.4 % off) are not one spacing."""
    with pytest.raises(DataError, match="not evenly spaced"):
        mask_io._check_even_slices(_SliceTags([0, 2, 4.1, 6.1]), 4, "scan")
    mask_io._check_even_slices(_SliceTags([0, 2, 4.01, 6.01]), 4, "scan")  # 0.5 % off: rounding, accepted


def test_slice_gaps_are_measured_in_position_order_not_file_order():
    """io.py:326 ``np.diff(np.sort(positions @ normal))`` → ``np.diff(positions @ normal)`` (evenly spaced
    slices listed out of order read as uneven gaps)."""
    mask_io._check_even_slices(_SliceTags([0, 4, 2, 6]), 4, "scan")


def test_a_metaimage_header_naming_no_data_file_is_refused_in_one_line(tmp_path):
    """io.py:347 ``if not value or value.upper() == "LOCAL"`` → ``if value.upper() == "LOCAL"`` (an empty
    ``ElementDataFile =`` raised IndexError, a traceback, instead of DataError)."""
    header = tmp_path / "case.mhd"
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nElementDataFile =\n")
    with pytest.raises(DataError, match="case.mhd"):
        mask_io.read_label_map(header)


# -- images ------------------------------------------------------------------------------------------
def test_a_float64_image_far_below_float32s_range_is_named_as_such(tmp_path):
    """images.py:38 ``np.abs(data) > float32 max`` → ``data > float32 max`` (-1e39 became -inf and was
    reported as "NaN or infinite values", which the file does not hold)."""
    from bindiff.adapters.masks.images import read_image

    data = np.ones((3, 4, 5))
    data[1, 1, 1] = -1e39
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "scan.nii.gz"))
    with pytest.raises(DataError, match=r"scan.nii.gz: image holds 1 values beyond float32's range"):
        read_image(tmp_path / "scan.nii.gz")


def test_a_constant_channel_is_recorded_with_standard_deviation_1():
    """images.py:131 ``std if std > 0 else 1.0`` → ``else 0.5`` (the recorded statistics of a blank
    modality no longer say what was done: the docstring promises 1)."""
    from bindiff.adapters.masks.images import normalise_channels

    channels = np.zeros((2, 3, 3, 3), dtype=np.float32)
    channels[0] = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    channels[1] = 7.0
    foreground = np.ones((3, 3, 3), dtype=bool)
    out, stats = normalise_channels(channels, foreground)
    assert (stats[1].mean, stats[1].std, stats[1].foreground_voxels) == (7.0, 1.0, 27)
    assert stats[0].mean == 13.0 and stats[0].std == pytest.approx(math.sqrt((27 ** 2 - 1) / 12))
    assert not out[1].any()


# -- io: NIfTI codes, units and label types ----------------------------------------------------------
def test_a_distinct_qform_in_metres_is_written_back_in_mm(tmp_path):
    """io.py:462 ``_in_mm(qform, header)`` → ``qform`` (a file in metres whose qform and sform differ got its
    qform back in metres under an "mm" unit: ITK, which reads the qform, saw voxels 1000 times smaller)."""
    data = np.zeros((3, 4, 5), dtype=np.uint8)
    data[1, 2, 3] = 1
    sform = np.diag([0.001, 0.002, 0.003, 1.0])
    qform = sform.copy()
    qform[:3, 3] = [0.004, 0.0, 0.0]  # 4 mm apart from the sform
    image = nib.Nifti1Image(data, sform)
    image.header.set_xyzt_units("meter")
    image.set_sform(sform, code=1)
    image.set_qform(qform, code=1)
    nib.save(image, str(tmp_path / "m.nii.gz"))
    volume = mask_io.read_label_map(tmp_path / "m.nii.gz")
    in_mm = np.diag([1.0, 2.0, 3.0, 1.0])
    in_mm[:3, 3] = [4.0, 0.0, 0.0]
    np.testing.assert_allclose(volume.geometry.qform, in_mm, atol=1e-6)
    mask_io.write_mask(volume.data, volume.geometry, tmp_path / "out.nii.gz")
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert out.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(out.header.get_qform(), in_mm, atol=1e-4)


@pytest.mark.parametrize("values, dtype", [([0, 1, 4], np.uint8), ([0, 127], np.uint8), ([-1, 2], np.int8),
                                           ([0, 255], np.uint8), ([0, 256], np.int16)])
def test_a_compact_label_map_takes_the_first_type_of_uint8_int8_int16_that_holds_it(tmp_path, values, dtype):
    """io.py:530 ``(np.uint8, np.int8, ...)`` → ``(np.int8, np.uint8, ...)`` (labels 0..127 came back int8)."""
    data = np.zeros((2, 2, 2), dtype=np.float32)
    data.flat[:len(values)] = values
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "labels.nii.gz"))
    volume = mask_io.read_label_map(tmp_path / "labels.nii.gz", compact=True)
    assert volume.data.dtype == dtype and sorted(np.unique(volume.data).tolist()) == sorted(set(values) | {0})


def test_a_brain_mask_holding_nan_is_refused(tmp_path):
    """io.py:548 ``np.isnan(data) | (data < 0) | ...`` → ``(data < 0) | ...`` (NaN voxels silently outside)."""
    data = np.zeros((3, 4, 5), dtype=np.float32)
    data[1:, 1:, 1:] = 1.0
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "brain.nii.gz"))
    with pytest.raises(DataError, match=r"brain.nii.gz: a brain mask holds 0 .* 1 voxel\(s\) hold other values"):
        mask_io.read_brain_mask(tmp_path / "brain.nii.gz")


@pytest.mark.parametrize("high, dtype", [(32767, np.int16), (32768, np.int32), (-32768, np.int16)])
def test_64_bit_labels_are_written_in_the_smallest_nifti_type_that_holds_them(tmp_path, high, dtype):
    """io.py:583 ``high <= iinfo(kind).max`` → ``high < iinfo(kind).max`` (32767 written as int32)."""
    values = np.zeros((2, 2, 2), dtype=np.int64)
    values[1, 1, 1] = high
    geometry = mask_io._geometry(np.eye(4), values.shape, 1, 1, "labels")
    mask_io.write_volume(values, geometry, tmp_path / "out.nii.gz")
    out = nib.load(str(tmp_path / "out.nii.gz"))
    assert out.get_data_dtype() == dtype and int(np.asarray(out.dataobj)[1, 1, 1]) == high


def test_normalisation_statistics_are_exact_for_large_intensities():
    """images.py:125 foreground values taken as ``float64`` → ``float32`` (means and standard deviations of
    intensities around 1e7 lost to float32 accumulation: values 1e7 and 1e7 + 1 have mean 1e7 + 0.5, sd 0.5)."""
    from bindiff.adapters.masks.images import normalise_channels

    channels = np.full((1, 10, 10, 10), 1e7, dtype=np.float32)
    channels[0, ::2] += 1.0
    out, stats = normalise_channels(channels, np.ones((10, 10, 10), dtype=bool))
    assert (stats[0].mean, stats[0].std) == (1e7 + 0.5, 0.5)
    assert sorted(np.unique(out).tolist()) == [-1.0, 1.0]


def test_a_compressed_mask_carries_no_timestamp(tmp_path):
    """io.py:608 ``gzip.compress(..., mtime=0)`` → no ``mtime`` (the gzip header's MTIME field, bytes 4-7,
    held the time of writing: the same mask written twice gave different files)."""
    geometry = mask_io._geometry(np.eye(4), (2, 3, 4), 1, 1, "labels")
    path = mask_io.write_mask(np.ones((2, 3, 4), dtype=bool), geometry, tmp_path / "out.nii.gz")
    payload = path.read_bytes()
    assert payload[:2] == b"\x1f\x8b" and payload[4:8] == b"\0\0\0\0"
    assert gzip.decompress(payload)  # a whole gzip stream


def test_the_geometry_of_a_4d_label_file_is_refused_as_its_reading_is(tmp_path):
    """io.py:487 ``if len(image.shape) == 3`` → ``>= 3`` (a two-volume file got a geometry from its header
    although ``read_label_map`` refuses it)."""
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 2), dtype=np.uint8), np.eye(4)), str(tmp_path / "two.nii.gz"))
    with pytest.raises(DataError, match=r"two.nii.gz: expected a 3-D label map, got an array of shape \(3, 4, 5, 2\)"):
        mask_io.read_geometry(tmp_path / "two.nii.gz")


def test_a_4d_image_whose_space_axes_lean_into_the_fourth_is_refused(tmp_path):
    """io.py:404 the tilt check ``direction[:3, 3] != 0 or direction[3, :3] != 0`` → ``direction[:3, 3] != 0``
    (a 4-D MetaImage whose x axis has a component along the fourth dimension was read as channels, and
    one of a single volume as a plain 3-D label map)."""
    import SimpleITK as sitk

    from bindiff.adapters.masks.images import read_image

    for name, volumes in (("tilted.mha", 2), ("one.mha", 1)):
        image = sitk.GetImageFromArray(np.zeros((volumes, 5, 4, 3), dtype=np.uint8), isVector=False)
        direction = np.eye(4)
        direction[3, 0] = 0.5
        image.SetDirection(direction.ravel().tolist())
        sitk.WriteImage(image, str(tmp_path / name))
    with pytest.raises(DataError, match="tilted.mha: its fourth axis is tilted into space"):
        read_image(tmp_path / "tilted.mha", channels=True)
    with pytest.raises(DataError, match="one.mha: its fourth axis is tilted into space"):
        mask_io.read_label_map(tmp_path / "one.mha")


# -- datasets ----------------------------------------------------------------------------------------
def test_split_fractions_round_half_up():
    """datasets.py:283 ``floor(value * n + 0.5)`` → ``int(value * n)`` (15 % of 10 cases gave 1, not 2)."""
    from bindiff.adapters.masks.datasets import split_cases

    ids = [f"case{i:02d}" for i in range(10)]
    split = split_cases(ids, 0.15, 0.25, seed=0)  # 1.5 → 2 and 2.5 → 3
    assert (len(split["valid"]), len(split["test"]), len(split["train"])) == (2, 3, 5)
    assert sorted(split["train"] + split["valid"] + split["test"]) == ids
    # on the decimal as written: 0.35 × 90 = 31.5 → 32 and 0.1 × 90 = 9 (in floating point 0.35 × 90 is 31.4999…)
    many = [f"case{i:02d}" for i in range(90)]
    split = split_cases(many, 0.35, 0.1, seed=0)
    assert (len(split["valid"]), len(split["test"]), len(split["train"])) == (32, 9, 49)


def test_a_split_leaving_no_training_case_is_refused():
    """datasets.py:306 ``v + t >= n`` → ``v + t > n`` (2 validation and 3 test cases of 5 left training empty)."""
    from bindiff.adapters.masks.datasets import split_cases

    ids = ["a", "b", "c", "d", "e"]
    assert len(split_cases(ids, 2, 2, seed=1)["train"]) == 1
    with pytest.raises(DataError, match="cannot split 5 cases into 2 validation, 3 test"):
        split_cases(ids, 2, 3, seed=1)


# -- grid --------------------------------------------------------------------------------------------
def test_a_grid_side_of_zero_is_refused_and_a_margin_of_zero_is_accepted():
    """grid.py:51 ``s < 1`` → ``s < 0`` (a side of 0 accepted); grid.py:57 ``margin < 0`` → ``margin <= 0``
    (the tight crop, margin 0, refused)."""
    from bindiff.adapters.masks.grid import GridSpec, fit_transform

    with pytest.raises(ValueError, match="grid.shape must list 2 .* positive whole sides"):
        GridSpec(shape=(0, 4, 4))
    roi = np.zeros((8, 8, 8), dtype=bool)
    roi[2:5, 3:6, 1:7] = True
    transform = fit_transform(roi.shape, GridSpec(shape=(3, 3, 6), mode="resample", margin=0), roi=roi)
    assert (transform.start, transform.stop) == ((2, 3, 1), (5, 6, 7))  # the bounding box itself


def test_a_case_split_is_the_documented_permutation_of_the_sorted_ids():
    """datasets.py:309 ``default_rng(seed)`` → ``default_rng(seed + 1)`` (docs/architecture.md: one
    permutation by ``numpy.random.default_rng(seed)`` of the sorted case ids; a stored split must be
    drawn again the same)."""
    from bindiff.adapters.masks.datasets import split_cases

    ids = [f"c{i}" for i in (5, 3, 9, 1, 7, 0, 2, 8)]
    order = [sorted(ids)[i] for i in np.random.default_rng(11).permutation(len(ids))]
    split = split_cases(ids, 2, 3, seed=11)
    assert split == {"valid": sorted(order[:2]), "test": sorted(order[2:5]), "train": sorted(order[5:])}


def test_a_pad_window_is_centred_on_the_region_even_where_its_margin_leaves_the_volume():
    """grid.py:191 centre on the region's box → on the box plus margin clipped to the volume (a region at
    the volume's edge moved the window inward, off centre)."""
    from bindiff.adapters.masks.grid import GridSpec, fit_transform

    roi = np.zeros((20, 20, 20), dtype=bool)
    roi[0:3, 8:11, 17:20] = True  # boxes [0, 3), [8, 11), [17, 20): centres 1.5, 9.5, 18.5
    transform = fit_transform(roi.shape, GridSpec(shape=(7, 7, 7), mode="pad", margin=2), roi=roi)
    # a 7-voxel window centred on c starts at floor(c - 3.5): -2, 6, 15
    assert transform.start == (-2, 6, 15) and transform.stop == (5, 13, 22)


def test_to_grid_refuses_a_volume_of_another_shape():
    """grid.py:117 the shape check ``volume.shape != volume_shape`` → ``volume.ndim != 3`` (a larger volume
    was read through the window silently)."""
    from bindiff.adapters.masks.grid import GridSpec, fit_transform

    transform = fit_transform((6, 6, 6), GridSpec(shape=(4, 4, 4), mode="resample", crop="none"))
    assert transform.to_grid(np.ones((6, 6, 6))).shape == (4, 4, 4)
    with pytest.raises(ValueError, match="does not match the transform's"):
        transform.to_grid(np.ones((7, 6, 6)))


# -- ranking -----------------------------------------------------------------------------------------
def test_cut_off_metrics_read_only_their_own_top_k_when_a_larger_k_is_asked_too():
    """ranking.py:160 precision ``hits[:, :k]`` → ``hits``; ranking.py:164 hit ``hits[:, :k]`` → ``hits``;
    ranking.py:178 mrr ``h = hits[:, :k]`` → ``hits`` (each read the largest k's columns)."""
    import torch

    from bindiff.metrics.ranking import evaluate_ranking

    # scores rank items 0 > 1 > 2 > 3 > 4 for every user; user 0 holds out item 1, user 1 item 0
    fn = lambda x: torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]]).expand(x.shape[0], -1)  # noqa: E731
    target = sp.csr_matrix(np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=float))
    names = ["precision@1", "hit@1", "mrr@1", "recall@3"]
    report = evaluate_ranking(fn, sp.csr_matrix((2, 5)), None, target, names)
    assert report.per_user["precision@1"].tolist() == [0.0, 1.0]
    assert report.per_user["hit@1"].tolist() == [0.0, 1.0]
    assert report.per_user["mrr@1"].tolist() == [0.0, 1.0]  # user 0's hit at rank 2 lies beyond k = 1
    assert report.per_user["recall@3"].tolist() == [1.0, 1.0]


def test_ties_inside_a_long_top_k_list_the_lower_item_first():
    """ranking.py:303 fast path ``torch.sort(vals, ..., stable=True)`` → ``stable=False`` (torch's unstable
    CPU sort reorders equal values once a row holds 64 or more: ties inside the top k left index order)."""
    import torch

    from bindiff.metrics.ranking import topk_excluding

    rng = np.random.default_rng(4)
    scores = np.zeros((3, 300), dtype=np.float32)
    scores[:, :150] = rng.integers(1, 4, size=(3, 150))  # the top 150 hold three tie groups; the rest are 0
    top = topk_excluding(torch.from_numpy(scores), None, 150).numpy()
    for row, ranked in zip(scores, top):
        expected = sorted(range(300), key=lambda i: (-row[i], i))[:150]  # brute force: score, then index
        assert ranked.tolist() == expected


def test_an_explicit_zero_in_the_exclusions_excludes_nothing():
    """ranking.py:233 ``ex.eliminate_zeros()`` removed (a stored 0 excluded its item)."""
    import torch

    from bindiff.metrics.ranking import topk_excluding

    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    exclude = sp.csr_matrix((np.array([0.0, 1.0]), np.array([0, 0]), np.array([0, 1, 2])), shape=(2, 3))
    assert exclude.nnz == 2  # row 0 stores an explicit 0 for item 0, row 1 a 1
    assert topk_excluding(scores, exclude, 2).tolist() == [[0, 1], [1, 2]]


def test_a_cut_off_of_zero_is_refused():
    """ranking.py:91 ``k < 1`` → ``k < 0`` (recall@0 and ndcg@0 came out NaN instead of an error)."""
    from bindiff.metrics.ranking import ndcg_at_k, recall_at_k

    target = sp.csr_matrix(np.array([[1.0, 0.0, 0.0]]))
    for fn in (recall_at_k, ndcg_at_k):
        with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
            fn(np.array([[0, 1]]), target, 0)


# -- labels ------------------------------------------------------------------------------------------
def test_a_custom_preset_with_no_foreground_is_refused():
    """labels.py:101 ``if not foreground`` removed (an empty region: every mask silently empty)."""
    from bindiff.adapters.masks.labels import custom_preset

    with pytest.raises(DataError, match="labels.foreground lists no label values"):
        custom_preset([0, 1, 2], [])


def test_booleans_are_not_label_values():
    """labels.py:105 the ``bool`` refusal of ``custom_preset`` removed (``foreground: [true]``, YAML's yes,
    was read as label 1)."""
    from bindiff.adapters.masks.labels import custom_preset

    for allowed, foreground in (([0, 1], [True]), ([0, np.bool_(True)], [1])):
        with pytest.raises(DataError, match="custom labels must be integers"):
            custom_preset(allowed, foreground)


def test_coverage_does_not_count_the_padding_of_a_short_list():
    """ranking.py:585 ``recommended[lists[lists >= 0]]`` → ``recommended[lists]`` (the -1 that pads a
    short list marked the last item as recommended)."""
    import torch

    from bindiff.metrics.ranking import evaluate_ranking

    fn = lambda x: torch.tensor([[3.0, 2.0, 1.0]]).expand(x.shape[0], -1)  # noqa: E731
    exclude = sp.csr_matrix(np.array([[0, 1, 1]], dtype=float))  # only item 0 is left: the list is [0, -1]
    target = sp.csr_matrix(np.array([[1, 0, 0]], dtype=float))
    report = evaluate_ranking(fn, sp.csr_matrix((1, 3)), exclude, target, ["coverage@2"])
    assert report.mean["coverage@2"] == pytest.approx(1 / 3)
    assert report.recommended["coverage@2"].tolist() == [True, False, False]


def test_held_out_duplicates_that_cancel_are_not_relevant():
    """ranking.py:67 ``sum_duplicates(); eliminate_zeros()`` → ``eliminate_zeros(); sum_duplicates()`` (an
    entry stored as +1 and -1 summed to a stored 0 and counted as a held-out item)."""
    from bindiff.metrics.ranking import recall_at_k

    # row 0 stores item 0 twice (+1, -1: cancelled) and item 1 once
    target = sp.csr_matrix((np.array([1.0, -1.0, 1.0]), np.array([0, 0, 1]), np.array([0, 3])), shape=(1, 3))
    assert recall_at_k(np.array([[0, 1]]), target, 1).tolist() == [0.0]  # held out: {1}; the top 1 is item 0
    assert recall_at_k(np.array([[0, 1]]), target, 2).tolist() == [1.0]


def test_an_allowed_negative_label_outside_the_foreground_stays_background():
    """labels.py:148 ``np.isin(labels, chosen)`` → ``... | (labels < 0)`` (a custom preset allowing -1 as
    "unlabelled" got those voxels in its region)."""
    from bindiff.adapters.masks.labels import binarize, custom_preset

    preset = custom_preset([0, -1, 2, 3], [2])
    assert binarize(np.array([0, -1, 2, 3, -1]), preset, "whole").tolist() == [False, False, True, False, False]


# -- spacing -----------------------------------------------------------------------------------------
def test_the_area_share_of_a_full_volume_is_one_and_never_above():
    """spacing.py:138 ``np.clip(out, 0, 1)`` → ``out`` (rounding left shares of 1.0000000000000002 where
    20 voxels per axis fold into 5: a share above 1 is no share)."""
    from bindiff.adapters.masks.spacing import area_share

    shares = area_share(np.ones((20, 20, 20), dtype=bool), (5, 5, 5))
    assert shares.max() <= 1.0 and shares.min() == pytest.approx(1.0, abs=1e-12)


# -- segmentation ------------------------------------------------------------------------------------
def test_a_surface_distance_equal_to_the_tolerance_counts_as_within():
    """segmentation.py:174 ``d <= limit`` → ``d < limit`` (the definition counts distances ≤ τ: with τ whose
    slackened bound τ·(1 + 1e-6) is exactly 1.0, a one-voxel shift at 1 mm lies within it)."""
    from bindiff.metrics.segmentation import surface_dice

    tolerance = 1 / (1 + 1e-6)
    assert tolerance * (1 + 1e-6) == 1.0
    pred = np.zeros((1, 8), dtype=bool)
    pred[0, 2] = True
    truth = np.zeros((1, 8), dtype=bool)
    truth[0, 3] = True  # one voxel apart: both directed distances are 1.0 mm
    assert surface_dice(pred, truth, (1.0, 1.0), tolerance_mm=tolerance) == 1.0
    assert surface_dice(pred, truth, (1.0, 1.0), tolerance_mm=0.99) == 0.0


# -- calibration -------------------------------------------------------------------------------------
def test_the_calibration_error_takes_ten_bins_unless_told():
    """calibration.py:51 ``bins: int = 10`` → ``15`` (docs/recipes.md: ``segmentation.calibration_bins``
    defaults to 10; the function's own default must agree)."""
    from bindiff.metrics.calibration import expected_calibration_error

    prob, truth = np.array([0.62, 0.68]), np.array([1, 0])
    # ten bins: both in [0.6, 0.7): |1/2 - 0.65| = 0.15; fifteen would split them: (0.38 + 0.68) / 2 = 0.53
    assert expected_calibration_error(prob, truth) == pytest.approx(0.15, abs=1e-12)
    assert expected_calibration_error(prob, truth, bins=15) == pytest.approx(0.53, abs=1e-12)


def test_a_boolean_number_of_bins_is_refused():
    """calibration.py:55 the ``bool`` refusal of ``bins`` removed (``bins=True`` failed with a TypeError from
    numpy instead of the one-line ValueError)."""
    from bindiff.metrics.calibration import expected_calibration_error

    with pytest.raises(ValueError, match="bins must be an integer >= 1, got True"):
        expected_calibration_error(np.array([0.2, 0.9]), np.array([0, 1]), bins=True)


def test_grid_defaults_crop_none_and_the_slice_axis_place_the_window_by_hand():
    """grid.py:47 ``margin: int = 2`` → ``3`` (docs/masks.md: ``grid.margin`` defaults to 2); grid.py:175
    ``crop != "none"`` dropped (``crop: none`` cropped to the region anyway); grid.py:182
    ``sides.insert(slice_axis, None)`` → ``sides.append(None)`` (slices along axis 0 cut along axis 2)."""
    from bindiff.adapters.masks.grid import GridSpec, fit_transform

    roi = np.zeros((10, 10, 10), dtype=bool)
    roi[3:5, 3:5, 3:5] = True
    default = fit_transform(roi.shape, GridSpec(shape=(4, 4, 4), mode="resample"), roi=roi)
    assert (default.start, default.stop) == ((1, 1, 1), (7, 7, 7))  # the box [3, 5) widened by 2
    whole = fit_transform(roi.shape, GridSpec(shape=(4, 4, 4), mode="resample", crop="none"), roi=roi)
    assert (whole.start, whole.stop) == ((0, 0, 0), (10, 10, 10))
    slices = fit_transform((6, 8, 10), GridSpec(shape=(4, 5), mode="resample", crop="none", slice_axis=0))
    assert slices.grid_shape == (6, 4, 5) and slices.modes == ("pad", "resample", "resample")


# -- datasets (continued) ----------------------------------------------------------------------------
def _label_file(path) -> None:
    data = np.zeros((3, 3, 3), dtype=np.uint8)
    data[1, 1, 1] = 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def test_a_data_set_given_as_a_relative_folder_stores_absolute_paths(tmp_path, monkeypatch):
    """datasets.py:224 ``Path(os.path.abspath(root))`` → ``Path(root)`` (a run stored ``ds/a.nii.gz``, which
    no longer holds once read from another folder)."""
    from bindiff.adapters.masks.datasets import find_dataset

    (tmp_path / "ds").mkdir()
    _label_file(tmp_path / "ds" / "a.nii.gz")
    monkeypatch.chdir(tmp_path)
    dataset = find_dataset("ds", "files")
    assert dataset.root == tmp_path / "ds" and dataset.cases[0].label == tmp_path / "ds" / "a.nii.gz"



def test_macos_debris_beside_the_label_maps_is_not_a_case(tmp_path):
    """datasets.py:119 ``_visible`` → always True (``._a.nii.gz``, the AppleDouble file macOS leaves on a
    USB disk, became a case of its own)."""
    from bindiff.adapters.masks.datasets import find_dataset

    (tmp_path / "labels").mkdir()
    _label_file(tmp_path / "labels" / "a.nii.gz")
    (tmp_path / "labels" / "._a.nii.gz").write_bytes(b"\0\5\26\7" + b"\0" * 60)
    (tmp_path / "c").mkdir()
    _label_file(tmp_path / "c" / "OTMultiClass.nii.gz")
    (tmp_path / ".c").mkdir()
    _label_file(tmp_path / ".c" / "OTMultiClass.nii.gz")
    assert [case.case_id for case in find_dataset(str(tmp_path), "msd").cases] == ["a"]
    assert [case.case_id for case in find_dataset(str(tmp_path), "brats2015").cases] == ["c"]


def test_a_nifti_cut_short_inside_its_voxels_is_named_as_truncated(tmp_path):
    """A bug the pass found: the size check read the header's vox_offset, which nibabel leaves at 0,
    so a file short by fewer than its 352-byte header passed it (nibabel's short read spoke instead)."""
    from bindiff.adapters.masks import read_label_map

    whole = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.uint8), np.eye(4)), str(whole))
    assert whole.stat().st_size == 352 + 60  # header and extension, then the 60 voxel bytes
    cut = tmp_path / "t.nii"
    cut.write_bytes(whole.read_bytes()[:400])
    with pytest.raises(DataError, match=r"t\.nii: its header gives shape \(3, 4, 5\) \(60 bytes of voxels from "
                                        r"byte 352: 412 in all\) but the file holds 400 bytes: truncated"):
        read_label_map(cut)
