"""The mask and image adapters called as a library, at their edges: 4-D ITK files, a NIfTI whose
qform and sform disagree, values a label map or a mask cannot hold, and the types NIfTI stores.
Each expected value comes from another reader (SimpleITK, a 3-D file of the same content) or
from the numbers written in the test."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import binarize, custom_preset, get_preset, read_label_map, write_mask, write_volume
from bindiff.adapters.masks import spacing as voxel_size
from bindiff.adapters.masks.images import normalise_channels, read_image


def test_a_4d_itk_file_keeps_the_geometry_of_its_first_three_axes(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.random((2, 5, 6, 7)).astype(np.float32)  # (t, z, y, x) as SimpleITK stores arrays
    four = sitk.GetImageFromArray(stack, isVector=False)
    four.SetSpacing((2.0, 3.0, 4.0, 1.0))
    four.SetOrigin((7.0, 8.0, 9.0, 0.0))
    sitk.WriteImage(four, str(tmp_path / "four.mha"))
    for t in range(2):  # each time point alone, as a 3-D file with the same geometry: the reference
        three = sitk.GetImageFromArray(stack[t])
        three.SetSpacing((2.0, 3.0, 4.0))
        three.SetOrigin((7.0, 8.0, 9.0))
        sitk.WriteImage(three, str(tmp_path / f"three_{t}.mha"))
    both = read_image(tmp_path / "four.mha", channels=True)
    for t in range(2):
        alone = read_image(tmp_path / f"three_{t}.mha")
        assert np.array_equal(both.data[t], alone.data)  # was the stored array, unflipped
        np.testing.assert_allclose(both.geometry.affine, alone.geometry.affine)  # was the identity
    assert both.geometry.spacing == pytest.approx((2.0, 3.0, 4.0))


def test_a_nifti_whose_qform_and_sform_disagree_is_written_back_with_both(tmp_path):
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[2:4, 3:5, 4:6] = 1
    image = nib.Nifti1Image(labels, np.eye(4))
    qform = np.eye(4)
    qform[:3, 3] = [10, 10, 10]  # 10 mm away from the sform
    image.set_qform(qform, code=1)
    image.set_sform(np.eye(4), code=2)
    nib.save(image, str(tmp_path / "in.nii.gz"))
    volume = read_label_map(tmp_path / "in.nii.gz")
    write_mask(volume.data.astype(bool), volume.geometry, tmp_path / "out.nii.gz")
    # SimpleITK reads the qform, nibabel the sform: each must read the output as it read the input
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetOrigin() == \
        sitk.ReadImage(str(tmp_path / "in.nii.gz")).GetOrigin() == (-10.0, -10.0, 10.0)
    out = nib.load(str(tmp_path / "out.nii.gz"))
    np.testing.assert_allclose(out.affine, np.eye(4))
    np.testing.assert_allclose(out.header.get_qform(), qform)


def test_label_values_that_are_not_whole_numbers_are_refused_by_binarize():
    preset = get_preset("msd_hippocampus")
    for bad, shown in ((2.7, "2.7"), (np.nan, "nan")):
        with pytest.raises(DataError, match=rf"case\.nii: label values must be whole numbers, got {shown}"):
            binarize(np.array([0.0, 1.0, bad]), preset, "whole", source="case.nii")
    assert binarize(np.array([0.0, 1.0, 2.0]), preset, "whole").tolist() == [False, True, True]


def test_write_mask_refuses_what_is_not_zero_or_one_and_write_volume_stores_any_label_map(tmp_path):
    geometry = read_label_map(_label_file(tmp_path)).geometry
    with pytest.raises(ValueError, match="a mask holds 0 and 1 only, got values such as 0.7"):
        write_mask(np.full(geometry.canonical_shape, 0.7), geometry, tmp_path / "p.nii.gz")  # was written as 0
    with pytest.raises(ValueError, match="a mask holds 0 and 1 only, got values such as 2"):
        write_mask(np.full(geometry.canonical_shape, 2), geometry, tmp_path / "l.nii.gz")
    labels = read_label_map(_label_file(tmp_path, np.float32)).data  # float label files read as int64
    assert labels.dtype == np.int64
    write_volume(labels, geometry, tmp_path / "labels.nii.gz")  # nibabel refused int64
    assert np.array_equal(read_label_map(tmp_path / "labels.nii.gz").data, labels)
    for values in (labels > 0, labels.astype(np.float16)):
        write_volume(values, geometry, tmp_path / f"{values.dtype}.nii.gz")
        assert np.array_equal(nib.load(str(tmp_path / f"{values.dtype}.nii.gz")).get_fdata(), labels > 0
                              if values.dtype == bool else labels)


def test_a_label_map_of_near_integers_names_its_values_in_full(tmp_path):
    image = nib.Nifti1Image(np.array([[[0.0, 0.99999997]]], dtype=np.float64), np.eye(4))
    nib.save(image, str(tmp_path / "near.nii.gz"))
    with pytest.raises(DataError, match=r"non-integer values \(0\.99999997\)"):  # printed as 1 before
        read_label_map(tmp_path / "near.nii.gz")


def test_normalising_refuses_nan_inside_the_foreground():
    channels = np.ones((1, 4, 4, 4), dtype=np.float32)
    channels[0, 1, 1, 1] = np.nan
    with pytest.raises(DataError, match=r"scan\.nii: .*channel 0 holds 1 NaN or infinite value"):
        normalise_channels(channels, np.ones((4, 4, 4), dtype=bool), source="scan.nii")


def test_one_percent_apart_is_within_the_tolerance_and_linear_resampling_keeps_fractions():
    assert not voxel_size.needs_resampling((1.01, 0.99, 1.0), (1.0, 1.0, 1.0))  # exactly 1 %: the same size
    assert voxel_size.needs_resampling((1.0101, 1.0, 1.0), (1.0, 1.0, 1.0))
    ramp = np.zeros((2, 1, 1), dtype=np.uint8)
    ramp[1] = 255
    # 2 voxels onto 4 of half the size: centres at 0.25 and 0.75 of the first voxel's width ...
    out = voxel_size.resample(ramp, (4, 1, 1), order=1)
    assert out[:, 0, 0].tolist() == pytest.approx([0.0, 63.75, 191.25, 255.0])  # ... not rounded to integers


def test_a_custom_preset_takes_numpy_integers():
    values = np.unique(np.array([0, 3, 5]))  # np.int64, as a label map's values come
    preset = custom_preset(list(values), [values[2]])
    assert binarize(np.array([0, 3, 5]), preset, "whole").tolist() == [False, False, True]


def _label_file(folder, dtype=np.uint8):
    labels = np.zeros((5, 6, 7), dtype=dtype)
    labels[1:3, 2:4, 3:5] = 1
    labels[3, 3, 3] = 2
    path = folder / f"labels_{np.dtype(dtype).name}.nii.gz"
    nib.save(nib.Nifti1Image(labels, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def test_a_label_map_name_that_is_no_file_is_refused_not_skipped(tmp_path):
    from bindiff.adapters.masks import find_dataset
    from bindiff.scoring import score

    for folder in ("images", "labels", "elsewhere"):
        (tmp_path / folder).mkdir()
    for case in ("c1", "c2"):
        image = nib.Nifti1Image(np.ones((3, 3, 3), dtype=np.uint8), np.eye(4))
        nib.save(image, str(tmp_path / "labels" / f"{case}.nii.gz"))
    (tmp_path / "labels" / "c3.nii.gz").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    # skipped, the data set had one case less and another split, without a word
    with pytest.raises(DataError, match=r"labels/c3\.nii\.gz: not a regular file where a label map is expected"):
        find_dataset(str(tmp_path), layout="msd")
    (tmp_path / "labels" / "c3.nii.gz").unlink()
    (tmp_path / "labels" / "c3.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(DataError, match=r"c3\.nii\.gz: a broken link where a label map is expected"):
        find_dataset(str(tmp_path), layout="msd")
    # bindiff score: a prediction of that kind left out of the mean, and a reference left off the list
    with pytest.raises(DataError, match=r"c3\.nii\.gz: not a readable mask file"):
        score(tmp_path / "labels", tmp_path / "labels")


def test_a_nifti_in_metres_is_read_in_mm_as_simpleitk_reads_it(tmp_path):
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[2:4, 3:5, 1:6] = 1
    affine = np.diag([0.001, 0.002, 0.003, 1.0])  # 1, 2 and 3 mm voxels, written in metres
    affine[:3, 3] = [0.01, 0.02, 0.03]
    image = nib.Nifti1Image(labels, affine)
    image.header.set_xyzt_units("meter")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(tmp_path / "metres.nii.gz"))
    volume = read_label_map(tmp_path / "metres.nii.gz")
    itk = sitk.ReadImage(str(tmp_path / "metres.nii.gz"))  # ITK converts the unit: the reference
    assert volume.geometry.spacing == pytest.approx(itk.GetSpacing())
    assert volume.geometry.spacing == pytest.approx((1.0, 2.0, 3.0))
    write_mask(volume.data, volume.geometry, tmp_path / "out.nii.gz")  # written back in mm, the same place
    back = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert back.GetSpacing() == pytest.approx(itk.GetSpacing()) and back.GetOrigin() == pytest.approx(itk.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(itk))


def test_a_voxel_size_that_would_make_a_billion_voxels_is_refused_naming_the_file():
    assert voxel_size.resampled_shape((35, 51, 35), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)) == (70, 102, 70)
    # a large CT, beyond 512³ voxels already, resampled by a few percent: a scan, not a wrong unit
    assert voxel_size.resampled_shape((512, 512, 560), (0.78, 0.78, 1.0), (0.76, 0.76, 1.0)) == (525, 525, 560)
    with pytest.raises(DataError, match=r"scan.nii: \[35, 51, 35\] voxels of \[1000.0, 1000.0, 1000.0\] mm would "
                                        r"become \[35000, 51000, 35000\] voxels of \[1.0, 1.0, 1.0\] mm, "
                                        r"more than 512³ and 64 times its own"):
        voxel_size.resampled_shape((35, 51, 35), (1000.0, 1000.0, 1000.0), (1.0, 1.0, 1.0), "scan.nii")


def test_a_nifti_without_orientation_is_read_with_one_warning(tmp_path, warned):
    image = nib.Nifti1Image(np.ones((4, 4, 4), dtype=np.uint8), np.eye(4))
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp_path / "bare.nii.gz"))
    read_label_map(tmp_path / "bare.nii.gz")
    read_label_map(tmp_path / "bare.nii.gz")
    err = warned()
    assert err.count("bare.nii.gz: no orientation (qform and sform codes are 0)") == 1


def test_finite_float64_intensities_beyond_float32_are_named_as_such(tmp_path):
    data = np.ones((4, 4, 4), dtype=np.float64)
    data[0, 0, 0] = 1e39
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "huge.nii.gz"))
    with pytest.raises(DataError, match=r"huge.nii.gz: image holds 1 values beyond float32's range \(largest 1e\+39\)"):
        read_image(tmp_path / "huge.nii.gz")


def test_grid_helpers_name_a_wrong_shape_instead_of_an_index_error():
    from bindiff.adapters.masks import GridSpec, fit_transform, from_vectors, to_vectors

    with pytest.raises(ValueError, match=r"positive whole sides, got \[4.5, 4, 4\]"):
        GridSpec((4.5, 4, 4))
    with pytest.raises(ValueError, match=r"a grid is placed in a 3-D volume, got the shape \(10, 10\)"):
        fit_transform((10, 10), GridSpec((4, 4, 4)))
    spec = GridSpec((4, 4, 4))
    with pytest.raises(ValueError, match=r"vectors of shape \(1, 63\) do not make a grid of shape \(4, 4, 4\)"):
        from_vectors(np.zeros((1, 63)), (4, 4, 4), spec)
    with pytest.raises(ValueError, match=r"grid of shape \(5, 4, 4\) does not fit grid.shape \[4, 4, 4\]"):
        to_vectors(np.zeros((5, 4, 4)), spec)
    grid = np.arange(64).reshape(4, 4, 4)
    assert np.array_equal(from_vectors(to_vectors(grid, spec), (4, 4, 4), spec), grid)
    slices = GridSpec((4, 4), slice_axis=1)  # one row per slice along y: rows of x × z
    rows = to_vectors(np.arange(4 * 3 * 4).reshape(4, 3, 4), slices)
    assert rows.shape == (3, 16) and rows[1].tolist() == np.arange(48).reshape(4, 3, 4)[:, 1, :].ravel().tolist()


def test_label_presets_are_read_only_and_picklable_and_a_custom_preset_has_one_region(tmp_path):
    shipped = get_preset("msd_hippocampus")
    with pytest.raises(TypeError):
        shipped.regions["whole"] = frozenset({1})  # would have changed it for the whole process
    assert get_preset("msd_hippocampus").regions["whole"] == frozenset({1, 2})
    preset = custom_preset([1, 2], [2])
    labels = np.array([0, 1, 2])
    assert binarize(labels, preset, "whole").tolist() == [False, False, True]
    assert binarize(labels, preset, "anterior").tolist() == [False, False, True]  # its one region, as documented
    import copy
    import pickle

    for clone in (pickle.loads(pickle.dumps(shipped)), copy.deepcopy(shipped)):  # read-only, yet picklable
        assert clone == shipped and dict(clone.regions) == {"whole": {1, 2}, "anterior": {1}, "posterior": {2}}
    with pytest.raises(DataError, match="custom labels are lists of label values"):
        custom_preset(None, 1)


def test_write_mask_names_a_volume_given_for_its_geometry(tmp_path):
    path = tmp_path / "m.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), str(path))
    volume = read_label_map(path)
    with pytest.raises(TypeError, match="geometry: expected a Geometry \\(such as volume.geometry\\), got Volume"):
        write_mask(np.zeros((3, 3, 3), bool), volume, tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (float("nan"), 1.0, 1.0)])
def test_the_spacing_helpers_refuse_a_voxel_size_that_is_not_positive(bad):
    with pytest.raises(ValueError, match="voxel sizes in mm must be finite and > 0"):
        voxel_size.resampled_shape((10, 10, 10), bad, (1.0, 1.0, 1.0))  # 0 gave a shape of 1 voxel
    with pytest.raises(ValueError, match="voxel sizes in mm must be finite and > 0"):
        voxel_size.needs_resampling(bad, (1.0, 1.0, 1.0))  # NaN said "no resampling needed"
    with pytest.raises(ValueError, match=r"shape \(4.5, 4, 4\) must hold whole numbers"):
        voxel_size.resample(np.zeros((4, 4, 4)), (4.5, 4, 4), 0)


def test_library_calls_refuse_one_string_where_a_list_is_meant(tmp_path):
    from bindiff.tasks import base
    from bindiff.tasks.masks.apply import apply_run
    from bindiff.tasks.masks.job import run_evaluations
    from bindiff.tasks.segmentation.job import TASK

    with pytest.raises(TypeError, match=r"overrides must be a list of key=value strings, not one string: write "
                                        r"\['segmentation.samples=4'\]"):
        base.rescoring_config(TASK, {}, "segmentation.samples=4")
    with pytest.raises(TypeError, match=r"evaluations must be a list of names, not one string"):
        run_evaluations(tmp_path / "no-run", "denoising")
    with pytest.raises(TypeError, match="unknown_label must be an integer label value, got '9'"):
        apply_run(tmp_path / "no-run", "completion", tmp_path, tmp_path / "out", unknown_label="9")


def test_a_case_file_is_found_in_any_suffix_case_and_a_second_one_is_refused(tmp_path):
    """The channel, brain-mask and reference files a case is looked up by: b.NII.GZ is b's (it was
    not found), and b.nii beside b.nii.gz is refused naming both (the first suffix was taken)."""
    from bindiff.adapters.masks.datasets import find_by_stem

    (tmp_path / "b.NII.GZ").write_bytes(b"x")
    (tmp_path / "bb.nii.gz").write_bytes(b"x")  # another case whose name starts alike
    assert find_by_stem(tmp_path, "b") == tmp_path / "b.NII.GZ"
    assert find_by_stem(tmp_path, "c") is None and find_by_stem(tmp_path / "missing", "b") is None
    (tmp_path / "b.nii").write_bytes(b"x")
    with pytest.raises(DataError, match=r"b.nii: a second file for 'b' beside b.NII.GZ; keep one|"
                                        r"b.NII.GZ: a second file for 'b' beside b.nii; keep one"):
        find_by_stem(tmp_path, "b")
