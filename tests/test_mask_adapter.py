"""The mask adapter: label presets, reading, canonical orientation, the grid and its exact inverse."""

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from bindiff.adapters.errors import DataError
from bindiff.adapters.masks import (
    GridSpec, binarize, find_dataset, fit_transform, from_vectors, get_preset, load_case, read_brain_mask,
    read_label_map, split_cases, to_vectors, write_mask,
)

DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
HIPPO = DATA / "msd_hippocampus"
BRATS = DATA / "brats2015_deepmedic"
needs_hippo = pytest.mark.skipif(not (HIPPO / "labels").is_dir(), reason="MSD hippocampus data not found")
needs_brats = pytest.mark.skipif(not BRATS.is_dir(), reason="BraTS 2015 data not found")

# an oblique, permuted, flipped, anisotropic affine: axis order and signs all differ from RAS
AFFINE = np.array([[0.0, 0.0, -2.5, 40.0], [1.2, 0.0, 0.0, -7.0], [0.0, -0.9, 0.0, 12.0], [0, 0, 0, 1]])


def blob(shape=(20, 24, 18), centre=(10, 12, 9), radii=(5, 7, 4), label=1) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii))
    return np.where(r2 <= 1, label, 0).astype(np.uint8)


def save_nifti(path: Path, data: np.ndarray, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


# -- label presets ---------------------------------------------------------------------------------------
def test_brats2015_regions_and_refusal():
    labels = np.array([0, 1, 2, 3, 4])
    preset = get_preset("brats2015")
    assert binarize(labels, preset, "whole").tolist() == [False, True, True, True, True]
    assert binarize(labels, preset, "core").tolist() == [False, True, False, True, True]
    assert binarize(labels, preset, "enhancing").tolist() == [False, False, False, False, True]
    with pytest.raises(DataError, match=r"case\.nii\.gz: unexpected label value\(s\) 5 for preset 'brats2015'"):
        binarize(np.array([0, 5]), preset, "whole", source="case.nii.gz")


@pytest.mark.parametrize("name, allowed, whole, core, enhancing, refused", [
    ("brats2021", [0, 1, 2, 4], [1, 2, 4], [1, 4], [4], 3),
    ("brats2023", [0, 1, 2, 3], [1, 2, 3], [1, 3], [3], 4),
])
def test_later_brats_presets(name, allowed, whole, core, enhancing, refused):
    preset = get_preset(name)
    labels = np.array(allowed)
    for region, expected in (("whole", whole), ("core", core), ("enhancing", enhancing)):
        assert labels[binarize(labels, preset, region)].tolist() == expected
    with pytest.raises(DataError, match=f"unexpected label value\\(s\\) {refused} for preset '{name}'"):
        binarize(np.array([0, refused]), preset, "whole")


def test_hippocampus_and_custom_presets():
    preset = get_preset("msd_hippocampus")
    assert binarize(np.array([0, 1, 2]), preset, "whole").tolist() == [False, True, True]
    assert binarize(np.array([0, 1, 2]), preset, "posterior").tolist() == [False, False, True]
    with pytest.raises(DataError, match="has no region 'core'"):
        binarize(np.array([0, 1]), preset, "core")
    custom = get_preset("custom", allowed=[0, 3, 7], foreground=[7])
    assert binarize(np.array([0, 3, 7]), custom, "whole").tolist() == [False, False, True]
    with pytest.raises(DataError, match="unexpected label value"):
        binarize(np.array([0, 5]), custom, "whole")
    with pytest.raises(DataError, match="must not contain 0"):
        get_preset("custom", allowed=[0, 1], foreground=[0, 1])
    with pytest.raises(DataError, match="unknown label preset 'brats2019'"):
        get_preset("brats2019")


# -- reading ---------------------------------------------------------------------------------------------
def test_canonical_orientation_and_spacing(tmp_path):
    data = blob()
    volume = read_label_map(save_nifti(tmp_path / "m.nii.gz", data))
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, AFFINE))
    assert nib.aff2axcodes(volume.geometry.canonical_affine) == ("R", "A", "S")
    assert np.array_equal(volume.data, np.asarray(canonical.dataobj))
    assert np.allclose(volume.geometry.canonical_affine, canonical.affine)
    assert np.allclose(volume.spacing, canonical.header.get_zooms())
    assert np.array_equal(volume.geometry.from_canonical(volume.data), data)


def test_itk_formats_match_nifti(tmp_path):
    data = blob(label=2)
    nifti = read_label_map(save_nifti(tmp_path / "m.nii", data))
    itk = sitk.ReadImage(str(tmp_path / "m.nii"))
    for suffix in (".mha", ".nrrd"):
        sitk.WriteImage(itk, str(tmp_path / f"m{suffix}"))
        other = read_label_map(tmp_path / f"m{suffix}")
        assert np.array_equal(other.data, nifti.data)
        assert np.allclose(other.geometry.canonical_affine, nifti.geometry.canonical_affine, atol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda p: save_nifti(p, blob().astype(np.float32) * 0.5), "non-integer values"),
    (lambda p: save_nifti(p, np.stack([blob(), blob()], -1)), "expected a 3-D label map"),
    (lambda p: p.write_bytes(gzip.compress(b"not a nifti")[:15]), "not a readable NIfTI file"),
    (lambda p: p, "label map file not found"),
])
def test_bad_label_files_name_the_file(tmp_path, make, message):
    path = tmp_path / "bad.nii.gz"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        read_label_map(path)
    assert str(path) in str(info.value)


def test_nifti_round_trip_keeps_the_geometry(tmp_path):
    data = blob()
    source = save_nifti(tmp_path / "in.nii.gz", data)
    volume = read_label_map(source)
    out = write_mask(volume.data > 0, volume.geometry, tmp_path / "out.nii.gz")
    again = nib.load(str(out))
    assert again.shape == data.shape and np.allclose(again.affine, AFFINE)
    assert np.array_equal(np.asarray(again.dataobj), data > 0)
    itk_in, itk_out = sitk.ReadImage(str(source)), sitk.ReadImage(str(out))
    assert itk_in.GetSize() == itk_out.GetSize()
    for attr in ("GetOrigin", "GetSpacing", "GetDirection"):
        assert np.allclose(getattr(itk_in, attr)(), getattr(itk_out, attr)(), atol=1e-5), attr
    assert np.array_equal(sitk.GetArrayFromImage(itk_out), sitk.GetArrayFromImage(itk_in) > 0)


def test_mha_input_is_written_as_nifti_with_its_geometry(tmp_path):
    image = sitk.GetImageFromArray(np.transpose(blob(), (2, 1, 0)))
    image.SetSpacing((0.8, 1.1, 2.0))
    image.SetOrigin((3.0, -4.0, 5.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    sitk.WriteImage(image, str(tmp_path / "in.mha"))
    volume = read_label_map(tmp_path / "in.mha")
    back = sitk.ReadImage(str(write_mask(volume.data > 0, volume.geometry, tmp_path / "out.nii.gz")))
    for attr in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
        assert np.allclose(getattr(image, attr)(), getattr(back, attr)(), atol=1e-5), attr


# -- grid ------------------------------------------------------------------------------------------------
def test_pad_window_is_an_exact_inverse():
    truth = blob().astype(bool)
    t = fit_transform(truth.shape, GridSpec((16, 20, 14)), roi=truth)
    grid = t.to_grid(truth)
    assert grid.shape == (16, 20, 14) and grid.sum() == truth.sum()
    assert np.array_equal(t.from_grid(grid), truth)
    # a window larger than the volume pads; padding is marked invalid and reads 0
    big = fit_transform(truth.shape, GridSpec((32, 32, 32)), roi=truth)
    assert (~big.valid()).sum() == 32 ** 3 - truth.size
    assert np.array_equal(big.from_grid(big.to_grid(truth)), truth)


def test_resample_grid_to_volume_to_grid_is_the_identity():
    rng = np.random.default_rng(0)
    truth = blob().astype(bool)
    for shape in ((8, 9, 7), (13, 10, 11), (4, 4, 4)):  # the window shrinks onto the grid on every axis
        t = fit_transform(truth.shape, GridSpec(shape, mode="resample", margin=1), roi=truth)
        grid = rng.random(shape) < 0.5
        assert np.array_equal(t.to_grid(t.from_grid(grid)), grid)
    up = fit_transform(truth.shape, GridSpec((30, 40, 25), mode="resample", margin=1), roi=truth)
    assert np.array_equal(up.from_grid(up.to_grid(truth)), truth)  # upsampling loses nothing


def test_two_d_slices_flatten_and_invert():
    truth = blob().astype(bool)
    spec = GridSpec((16, 20), slice_axis=2)
    t = fit_transform(truth.shape, spec, roi=truth)
    grid = t.to_grid(truth)
    vectors = to_vectors(grid, spec)
    assert vectors.shape == (grid.shape[2], 16 * 20)
    assert np.array_equal(from_vectors(vectors, grid.shape, spec), grid)
    assert np.array_equal(t.from_grid(grid), truth)


def test_split_is_seeded_and_by_case():
    ids = [f"c{i:02d}" for i in range(20)]
    a, b = split_cases(ids, 3, 0.25, seed=4), split_cases(list(reversed(ids)), 3, 0.25, seed=4)
    assert a == b and len(a["valid"]) == 3 and len(a["test"]) == 5 and len(a["train"]) == 12
    assert sorted(a["train"] + a["valid"] + a["test"]) == ids
    assert split_cases(ids, 3, 5, seed=5) != a
    with pytest.raises(DataError, match="cannot split 3 cases"):
        split_cases(ids[:3], 1, 2, seed=0)


# -- real data -------------------------------------------------------------------------------------------
@needs_hippo
def test_msd_layout_and_real_round_trip(tmp_path):
    dataset = find_dataset("msd_hippocampus", data_dir=DATA)
    assert dataset.layout == "msd" and len(dataset.cases) == 260 and dataset.default_preset == "msd_hippocampus"
    case = dataset.cases[0]
    loaded = load_case(case, get_preset("msd_hippocampus"), "whole", GridSpec((32, 48, 40)))
    assert np.array_equal(loaded.transform.from_grid(loaded.grid).astype(bool), loaded.truth)
    out = write_mask(loaded.transform.from_grid(loaded.grid), loaded.geometry, tmp_path / "h.nii.gz")
    source, written = nib.load(str(case.label)), nib.load(str(out))
    assert written.shape == source.shape and np.allclose(written.affine, source.affine)
    assert np.array_equal(np.asarray(written.dataobj) > 0, np.asarray(source.dataobj) > 0)
    a, b = sitk.ReadImage(str(case.label)), sitk.ReadImage(str(out))
    assert a.GetSize() == b.GetSize() and np.allclose(a.GetOrigin(), b.GetOrigin())
    assert np.allclose(a.GetDirection(), b.GetDirection()) and np.allclose(a.GetSpacing(), b.GetSpacing())


@needs_brats
def test_brats2015_layout_brain_crop_and_geometry(tmp_path):
    dataset = find_dataset(str(BRATS))
    assert dataset.layout == "brats2015" and len(dataset.cases) == 6 and dataset.default_preset == "brats2015"
    case = dataset.cases[0]
    brain = read_brain_mask(case.brain)
    assert brain.data.dtype == bool and 1_000_000 < brain.data.sum() < 1_700_000
    loaded = load_case(case, get_preset("brats2015"), "whole", GridSpec((24, 24, 16), mode="resample", crop="brain"))
    assert loaded.grid.shape == (24, 24, 16) and loaded.grid.any()
    assert np.array_equal(loaded.transform.to_grid(loaded.transform.from_grid(loaded.grid)), loaded.grid)
    out = write_mask(loaded.truth, loaded.geometry, tmp_path / "wt.nii.gz")
    source, written = nib.load(str(case.label)), nib.load(str(out))
    assert np.allclose(written.affine, source.affine) and written.shape == (240, 240, 155)
    assert np.array_equal(np.asarray(written.dataobj) > 0, np.asarray(source.dataobj) > 0)
    a, b = sitk.ReadImage(str(case.label)), sitk.ReadImage(str(out))
    for attr in ("GetOrigin", "GetSpacing", "GetDirection", "GetSize"):
        assert np.allclose(getattr(a, attr)(), getattr(b, attr)(), atol=1e-4), attr


def test_brats2021_layout_and_shape_mismatch(tmp_path):
    for case_id in ("BraTS2021_00000", "BraTS2021_00002"):
        folder = tmp_path / "BraTS2021" / case_id
        folder.mkdir(parents=True)
        save_nifti(folder / f"{case_id}_seg.nii.gz", blob(label=4))
        save_nifti(folder / f"{case_id}_flair.nii.gz", np.ones((20, 24, 17), dtype=np.float32))
    dataset = find_dataset(str(tmp_path / "BraTS2021"))
    assert dataset.layout == "brats2021" and [c.case_id for c in dataset.cases] == ["BraTS2021_00000",
                                                                                    "BraTS2021_00002"]
    with pytest.raises(DataError, match=r"shape \(20, 24, 17\) .*differs from its label map .*_seg.nii.gz's") as info:
        load_case(dataset.cases[0], get_preset("brats2021"), "whole", GridSpec((8, 8, 8), crop="brain"))
    assert "BraTS2021_00000_flair.nii.gz" in str(info.value)


# -- a team's own folders ----------------------------------------------------------------------------------
def _msd_folder(root: Path, images: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """``root/images`` and ``root/labels`` holding the given files (their names carry the format)."""
    for folder, files in (("images", images), ("labels", labels)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            if name.endswith(".mha"):
                sitk.WriteImage(sitk.GetImageFromArray(data), str(root / folder / name))
            else:
                save_nifti(root / folder / name, data)
    return root


def test_an_image_saved_as_another_file_type_than_its_label_is_found(tmp_path):
    label = blob()
    root = _msd_folder(tmp_path / "d", {"a.nii": label.astype(np.float32), "b_0000.mha": label.astype(np.float32)},
                       {"a.nii.gz": label, "b.nii.gz": label})
    cases = {c.case_id: c for c in find_dataset(str(root), "msd").cases}
    assert cases["a"].image == root / "images" / "a.nii" and cases["b"].image == root / "images" / "b_0000.mha"
    save_nifti(root / "images" / "a.nii.gz", label.astype(np.float32))  # the label's own type wins, as before
    assert {c.case_id: c for c in find_dataset(str(root), "msd").cases}["a"].image == root / "images" / "a.nii.gz"
    save_nifti(root / "images" / "b_0000.nii", label.astype(np.float32))  # two of one name: which is meant?
    with pytest.raises(DataError, match=r"b_0000.mha: a second image of case 'b' \(also .*b_0000.nii\)"):
        find_dataset(str(root), "msd")


def test_an_upper_case_image_is_found_and_an_image_without_a_label_is_named(tmp_path, warned):
    """c.NII.GZ is c's image (it was "no image beside this label map"); an image no label map
    claims is named, not dropped without a word; nnU-Net's channel files are their case's."""
    label = blob()
    root = _msd_folder(tmp_path / "d", {"c.NII.GZ": label.astype(np.float32), "d_0000.nii.gz": label.astype(np.float32),
                                        "d_0001.nii.gz": label.astype(np.float32), "lost.nii.gz": label.astype(np.float32)},
                       {"c.nii.gz": label, "d.nii.gz": label})
    cases = {c.case_id: c for c in find_dataset(str(root), "msd").cases}
    assert cases["c"].image == root / "images" / "c.NII.GZ" and cases["d"].image == root / "images" / "d_0000.nii.gz"
    assert warned().splitlines() == [
        f"warning: {root / 'images'}: 1 image(s) with no label map beside them, left out: lost"]


def test_an_mha_image_of_another_shape_than_its_label_is_refused_as_a_nifti_one(tmp_path):
    label = blob()
    root = _msd_folder(tmp_path / "d", {"a.mha": label[:-2].astype(np.float32)}, {"a.mha": label})
    (case,) = find_dataset(str(root), "msd").cases
    with pytest.raises(DataError, match="image/mask shape mismatch"):
        load_case(case, get_preset("msd_hippocampus"), "whole", GridSpec((8, 8, 8), mode="resample"))


def test_two_label_maps_of_one_case_are_both_named(tmp_path):
    label = blob()
    root = _msd_folder(tmp_path / "d", {}, {"a.nii.gz": label, "a.nii": label})
    with pytest.raises(DataError, match=r"a.nii.gz: case 'a' again \(also .*a.nii\)"):
        find_dataset(str(root), "msd")


def test_nnunet_channels_beyond_the_first_are_refused_not_dropped(tmp_path):
    from bindiff.tasks.segmentation.data import image_files

    label = blob()
    root = tmp_path / "d"
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    save_nifti(root / "labelsTr" / "a.nii.gz", label)
    save_nifti(root / "imagesTr" / "a_0000.nii.gz", label.astype(np.float32))
    (case,) = find_dataset(str(root), "msd").cases
    assert image_files(case, None) == [root / "imagesTr" / "a_0000.nii.gz"]  # one channel: read
    save_nifti(root / "imagesTr" / "a_0001.nii.gz", label.astype(np.float32))
    with pytest.raises(DataError, match=r"a_0001.nii.gz: a second channel of a_0000.nii.gz \(nnU-Net's layout\)"):
        image_files(case, None)


def test_an_empty_label_map_among_a_teams_cases_is_named_in_a_warning(tmp_path, warned):
    from bindiff.config import load_recipe
    from bindiff.tasks.masks.data import prepare_data

    root = tmp_path / "flat"
    root.mkdir()
    for k in range(6):
        save_nifti(root / f"c{k}.nii.gz", blob() * (k != 3))  # c3: all zero, as an export mistake leaves it
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "hippocampus_masks.yaml"
    config = load_recipe(recipe, [f"data.dataset={root}", "data.layout=files", "labels.preset=msd_hippocampus",
                                  "split.n_valid=1", "split.n_test=1", "grid.mode=resample", "grid.shape=[8,8,8]",
                                  "output.progress=false"])
    prepare_data(config)
    warnings = [line for line in warned().splitlines() if "no voxel of labels.region" in line]
    assert len(warnings) == 1 and str(root / "c3.nii.gz") in warnings[0] and "c0" not in warnings[0]
