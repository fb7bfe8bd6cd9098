"""Segmentation and mask files that an audit found to be read wrongly or to crash: each is now one
clean line (exit code 2 from the CLI) or read as its input says, and nothing is overwritten."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.cli import app
from cli_checks import error_line, train_tiny
from test_segmentation_task import TINY as SEGMENTATION_TINY

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
MSD = DATA / "msd_hippocampus"
runner = CliRunner()
needs_msd = pytest.mark.skipif(not (MSD / "images").is_dir(), reason="MSD images not found")

# the segmentation tests' tiny run, smaller still (a later override of a key wins)
TINY = [*SEGMENTATION_TINY, "data.max_cases=6", "split.n_valid=1", "split.n_test=1", "train.epochs=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not (MSD / "images").is_dir():
        pytest.skip("MSD images not found")
    return train_tiny(tmp_path_factory.mktemp("runs"), "hippocampus_segmentation", TINY, DATA)[0]


def _scan(name: str = "hippocampus_001.nii.gz") -> Path:
    return MSD / "images" / name


# -- segment ------------------------------------------------------------------------------------------------
@needs_msd
def test_two_inputs_of_one_case_name_are_refused_before_anything_is_written(run, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(_scan(), scans / "p1.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(_scan())), str(scans / "p1.mha"))  # the same case name, another format
    line = error_line(runner.invoke(app, ["segment", str(run), "--input", str(scans), "--output", str(tmp_path / "o")]))
    assert line == (f"error: {scans / 'p1.nii.gz'}: case 'p1' again (also {scans / 'p1.mha'}); their outputs "
                    "would overwrite each other (on macOS and Windows also when only upper and lower case differ): rename one")
    assert not (tmp_path / "o").exists()


def test_a_case_folder_missing_a_channel_is_named_not_skipped(tmp_path):
    from bindiff.tasks.segmentation.segment import find_inputs

    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    for case, names in (("p1", ("Flair", "T1c")), ("p2", ("Flair",))):
        (tmp_path / case).mkdir()
        for name in names:
            nib.save(image, str(tmp_path / case / f"{name}.nii.gz"))
    for given in (tmp_path, tmp_path / "p2"):  # a folder of cases, and the case itself
        with pytest.raises(DataError) as caught:
            find_inputs(given, ["Flair", "T1c"])
        assert str(caught.value) == f"{tmp_path / 'p2'}: no T1c beside Flair (the run reads Flair, T1c)"
    (tmp_path / "p2" / "Flair.nii.gz").unlink()  # a folder holding none of them is not a case: passed over
    assert [case.case_id for case in find_inputs(tmp_path, ["Flair", "T1c"])] == ["p1"]
    # a folder with nothing bindiff reads says what it holds
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "scan.nii.bz2").write_bytes(b"BZh9")
    (tmp_path / "other" / "notes.txt").write_text("")
    with pytest.raises(DataError) as caught:
        find_inputs(tmp_path / "other", None)
    assert str(caught.value).endswith("or DICOM series folders in this folder (it holds notes.txt, scan.nii.bz2)")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"in this folder \(it is empty\)$"):
        find_inputs(tmp_path / "empty", None)


@needs_msd
def test_reverse_steps_beyond_the_trained_ones_are_refused(run, tmp_path):
    line = error_line(runner.invoke(app, ["segment", str(run), "segmentation.steps=9", "--input", str(_scan()),
                                           "--output", str(tmp_path / "o")]))
    assert line == "error: segmentation.steps = 9 exceeds diffusion.steps = 4"


@needs_msd
@pytest.mark.parametrize("damage, message", [
    ("{", "damaged: not readable JSON"),
    ('{"layout": "msd"}', "damaged: an entry is missing or malformed (KeyError: 'split')"),
])
def test_a_damaged_cases_file_is_one_line(run, tmp_path, damage, message):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "split" / "cases.json").write_text(damage)
    line = error_line(runner.invoke(app, ["segment", str(copy), "--input", str(_scan()), "--output",
                                           str(tmp_path / "o")]))
    assert line.startswith(f"error: {copy / 'split' / 'cases.json'}: {message}")


@needs_msd
def test_a_checkpoint_from_another_run_is_named(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = (copy / "config.yaml").read_text()
    assert "channels:\n    - 4\n    - 8\n" in config or "channels: [4, 8]" in config
    # the run's config now says another network than its checkpoints hold, as after copying one in
    (copy / "config.yaml").write_text(config.replace("channels: [4, 8]", "channels: [8, 16]")
                                      .replace("channels:\n    - 4\n    - 8\n", "channels:\n    - 8\n    - 16\n"))
    line = error_line(runner.invoke(app, ["segment", str(copy), "--input", str(_scan()), "--output",
                                           str(tmp_path / "o")]))
    assert line == (f"error: {copy / 'checkpoints' / 'best.pt'}: not this run's checkpoint: its "
                    "denoiser.params.channels is [4, 8], the run's config.yaml has [8, 16]")


# -- score --------------------------------------------------------------------------------------------------
def _mask_file(path: Path, mask: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), str(path))
    return path


def _mask() -> np.ndarray:
    mask = np.zeros((6, 7, 8), np.uint8)
    mask[1:4, 2:6, 3:7] = 1
    return mask


def test_score_never_overwrites_its_out_file(tmp_path):
    reference = _mask_file(tmp_path / "c1.nii.gz", _mask(), np.eye(4))
    prediction = _mask_file(tmp_path / "c1_mask.nii.gz", _mask(), np.eye(4))
    before = reference.read_bytes()
    line = error_line(runner.invoke(app, ["score", str(prediction), str(reference), "--out", str(reference)]))
    assert line == f"error: --out {reference}: already exists; bindiff never overwrites"
    assert reference.read_bytes() == before


def test_one_grid_stored_in_two_axis_orders_scores_as_one(tmp_path):
    mask = _mask()
    reference = _mask_file(tmp_path / "c1.nii.gz", mask, np.eye(4))
    flipped = np.eye(4)
    flipped[0, 0], flipped[0, 3] = -1, mask.shape[0] - 1  # x stored backwards: voxel i is the old voxel 5 - i
    prediction = _mask_file(tmp_path / "c1_mask.nii.gz", mask[::-1], flipped)
    result = runner.invoke(app, ["score", str(prediction), str(reference)])
    assert result.exit_code == 0, result.output
    assert "c1: Dice 1.0000" in result.output


# -- files --------------------------------------------------------------------------------------------------
def test_a_nifti_without_geometry_codes_comes_back_as_each_library_read_it(tmp_path):
    from bindiff.adapters.masks import read_label_map, write_mask

    image = nib.Nifti1Image(_mask(), np.diag([1.5, 2.0, 2.5, 1.0]))
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nib.save(image, str(tmp_path / "in.nii.gz"))
    volume = read_label_map(tmp_path / "in.nii.gz")
    write_mask(volume.data, volume.geometry, tmp_path / "out.nii.gz")
    given, written = (sitk.ReadImage(str(tmp_path / name)) for name in ("in.nii.gz", "out.nii.gz"))
    for read in ("GetOrigin", "GetDirection", "GetSpacing"):
        assert np.allclose(getattr(written, read)(), getattr(given, read)()), read
    assert np.allclose(nib.load(str(tmp_path / "out.nii.gz")).affine, nib.load(str(tmp_path / "in.nii.gz")).affine)
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(given))


def test_an_unreadable_nrrd_gives_its_reason_and_no_cpp_noise(tmp_path, capfd):
    from bindiff.adapters.masks.images import read_image

    path = tmp_path / "scan.nrrd"
    path.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n" + bytes(32))
    with pytest.raises(DataError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: SimpleITK cannot read it") and "require endian info" in message
    assert "\n" not in message and ".cxx" not in message
    metaimage = tmp_path / "scan.mha"  # a header whose data file is missing: MetaIO prints to stderr from C++
    metaimage.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_FLOAT\n"
                         "ElementDataFile = absent.raw\n")
    with pytest.raises(DataError):
        read_image(metaimage)
    assert capfd.readouterr().err == ""


def test_a_garbage_checkpoint_does_not_advise_unsafe_loading(tmp_path):
    from bindiff.training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "best.pt"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: not a readable checkpoint")
    assert "weights_only" not in str(caught.value)


def test_a_grid_that_misses_label_voxels_says_so(tmp_path, warned):
    from bindiff.config import load_recipe
    from bindiff.tasks.masks.data import prepare_data

    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(4):
        mask = np.zeros((12, 12, 12), np.uint8)
        mask[2:10, 3:9, 4:8] = 1  # 8 voxels long in x: a 6-voxel window misses 2 x 6 x 4 = 48 of them
        nib.save(nib.Nifti1Image(mask, np.eye(4)), str(folder / f"c{i}.nii.gz"))
    config = load_recipe(ROOT / "recipes" / "hippocampus_masks.yaml",
                         [f"data.dataset={folder}", "data.layout=files", "grid.shape=[6,12,12]", "grid.mode=pad",
                          "grid.crop=region", "split.n_valid=1", "split.n_test=1"])
    data = prepare_data(config, disable_progress=True)
    assert sum(record.outside for record in data.records.values()) == 4 * 48
    err = warned()
    assert f"warning: {folder}: grid.shape [6, 12, 12] misses 192 label voxel(s) of 4 case(s)" in err
    # scored against the whole label map on the case's own voxels (it said "neither learned nor scored")
    assert "they are not learned, and the held-out cases' are scored as missed: enlarge grid.shape" in err
    from bindiff.adapters.masks import load_case
    from bindiff.tasks.masks.evaluation import score

    record = next(iter(data.records.values()))
    truth = load_case(record.case, data.preset, data.region, data.spec).truth
    perfect_on_the_grid = score(record, truth, {"grid": record.grid})["grid"]
    # 192 label voxels, 144 in the window: Dice 2 · 144 / (144 + 192), by hand
    assert perfect_on_the_grid["dice"] == pytest.approx(2 * 144 / (144 + 192))


def test_score_from_python_takes_a_preset_by_name(tmp_path):
    from bindiff.scoring import score

    reference = np.zeros((6, 7, 8), np.uint8)
    reference[1:4, 2:6, 3:7] = 2  # label 2: the posterior hippocampus, inside the whole
    nib.save(nib.Nifti1Image(reference, np.eye(4)), str(tmp_path / "c1.nii.gz"))
    prediction = (reference > 0).astype(np.uint8)
    prediction[1, 2, 3] = 0  # one voxel of 48 missed
    nib.save(nib.Nifti1Image(prediction, np.eye(4)), str(tmp_path / "c1_mask.nii.gz"))
    summary = score(tmp_path / "c1_mask.nii.gz", tmp_path / "c1.nii.gz", "msd_hippocampus", "whole")
    assert summary["preset"] == "msd_hippocampus"
    assert summary["per_case"][0]["dice"] == pytest.approx(2 * 47 / (47 + 48))


@needs_msd
def test_a_run_killed_while_it_evaluated_resumes_to_the_same_metrics(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    finished = json.loads((copy / "metrics.json").read_text())
    # what a kill after the results were written, before metrics.json, leaves; and one mid-way
    (copy / "metrics.json").unlink()
    (copy / ".segmentation.k1ll3d.partial" / "nifti").mkdir(parents=True)
    result = runner.invoke(app, ["resume", str(copy)])
    assert result.exit_code == 0, result.output
    resumed = json.loads((copy / "metrics.json").read_text())
    assert resumed["test"] == finished["test"] and resumed["paired"] == finished["paired"]
    assert not list(copy.glob(".segmentation.*"))


def test_every_training_mask_empty_is_refused_as_the_masks_task_refuses_it(tmp_path):
    """The segmentation task trained a whole run on empty masks (test Dice 0) with a warning only."""
    rng = np.random.default_rng(0)
    for sub in ("images", "labels"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i in range(6):
        nib.save(nib.Nifti1Image(rng.normal(100, 20, (12, 16, 12)).astype(np.float32), np.eye(4)),
                 str(tmp_path / "data" / "images" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(np.zeros((12, 16, 12), np.uint8), np.eye(4)),
                 str(tmp_path / "data" / "labels" / f"c{i}.nii.gz"))
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"),
                                 f"data.dataset={tmp_path / 'data'}", "data.layout=msd", "split.n_valid=1",
                                 "split.n_test=1", "grid.shape=[12,16,12]", "grid.crop=none", "train.threads=1",
                                 f"output.root={tmp_path / 'runs'}"])
    assert error_line(result) == (f"error: {tmp_path / 'data'}: every training mask is empty for labels.region "
                                  "'whole' of preset 'msd_hippocampus'; nothing to learn (check the region, or "
                                  "labels.foreground of a custom preset)")
    assert not (tmp_path / "runs").exists()


def test_variance_of_one_sample_is_refused_in_the_recipe_in_evaluate_and_in_segment(run, tmp_path):
    """One sample has no variance: the uncertainty map was all zeros (error AUROC 0.5) without a word."""
    wanted = ("error: segmentation.uncertainty: variance across samples needs segmentation.samples >= 2, got 1 "
              "(one sample has none: a map of zeros); use entropy")
    recipe = runner.invoke(app, ["show-config", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"),
                                 "segmentation.samples=1", "segmentation.uncertainty=variance"])
    assert error_line(recipe) == wanted
    rescored = runner.invoke(app, ["evaluate", str(run), "segmentation.samples=1", "segmentation.uncertainty=variance",
                                   "--out", str(tmp_path / "r")])
    assert error_line(rescored) == wanted and not (tmp_path / "r").exists()
    segmented = runner.invoke(app, ["segment", str(run), "segmentation.samples=1", "segmentation.uncertainty=variance",
                                    "--input", str(_scan()), "--output", str(tmp_path / "s")])
    assert error_line(segmented) == wanted and not (tmp_path / "s").exists()


def test_scoring_under_a_callers_float64_default_gives_the_same_figures(run, tmp_path):
    """The U-Net baseline's blank x_t took the caller's default dtype: 'Input type (double) and bias
    type (float) should be the same'."""
    import torch

    from bindiff.tasks.segmentation.job import run_segmentation

    reference = run_segmentation(run, out_dir=tmp_path / "a")
    torch.set_default_dtype(torch.float64)
    try:
        again = run_segmentation(run, out_dir=tmp_path / "b")
    finally:
        torch.set_default_dtype(torch.float32)
    assert again["test"] == reference["test"] and set(again["test"]) == {"diffusion", "unet"}


def test_the_brats2021_layout_names_its_channels_by_the_case(tmp_path, monkeypatch):
    """BraTS 2018–2023 name every file after its case (``<case>/<case>_flair.nii.gz``): one
    ``images.channels: [flair, t1ce]`` finds them in every case, for training and for segment."""
    from bindiff.adapters.masks.datasets import find_dataset
    from bindiff.tasks.segmentation.data import image_files
    from bindiff.tasks.segmentation.segment import find_inputs

    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    for case in ("BraTS2021_00000", "BraTS2021_00002"):
        (tmp_path / case).mkdir()
        for name in ("seg", "flair", "t1ce", "t1"):
            nib.save(image, str(tmp_path / case / f"{case}_{name}.nii.gz"))
    cases = find_dataset(str(tmp_path), "brats2021").cases
    assert [image_files(case, ["flair", "t1ce"]) for case in cases] == [
        [tmp_path / c / f"{c}_flair.nii.gz", tmp_path / c / f"{c}_t1ce.nii.gz"]
        for c in ("BraTS2021_00000", "BraTS2021_00002")]
    found = find_inputs(tmp_path, ["flair", "t1ce"])
    assert [(case.case_id, [f.name for f in case.files]) for case in found] == [
        (c, [f"{c}_flair.nii.gz", f"{c}_t1ce.nii.gz"]) for c in ("BraTS2021_00000", "BraTS2021_00002")]
    with pytest.raises(DataError, match=r"no image 't2' \(images.channels; nor BraTS2021_00000_t2\)"):
        image_files(cases[0], ["flair", "t2"])
    with pytest.raises(DataError, match=r"images.channels: 'seg' is the case's label map"):
        image_files(cases[0], ["flair", "seg"])  # the answer is never an input, by either name
    monkeypatch.chdir(tmp_path / "BraTS2021_00002")  # the case folder given as "." is named as it is
    assert [(case.case_id, [f.name for f in case.files]) for case in find_inputs(Path("."), ["flair", "t1ce"])] == [
        ("BraTS2021_00002", ["BraTS2021_00002_flair.nii.gz", "BraTS2021_00002_t1ce.nii.gz"])]
