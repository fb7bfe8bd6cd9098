"""The masks task's commands on inputs an audit found to crash, to be written over, or to be read
wrongly without a word: each is now one clean line (exit code 2) or read as its input says."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from cli_checks import error_line, train_tiny
from bindiff.tasks.masks.baselines import retrieve

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
LABELS = DATA / "msd_hippocampus" / "labels"
runner = CliRunner()

TINY = ["data.max_cases=8", "split.n_valid=2", "split.n_test=2", "grid.mode=resample", "grid.shape=[12,16,12]",
        "denoiser.params.channels=[4,8]", "denoiser.params.patch=1", "denoiser.params.bf16=false",
        "train.epochs=1", "diffusion.steps=4", "evaluations.run=[denoising]", "evaluations.completion.steps=2",
        "evaluations.generation.steps=2", "eval.panels=0",
        "output.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not LABELS.is_dir():
        pytest.skip("MSD hippocampus data not found")
    return train_tiny(tmp_path_factory.mktemp("runs"), "hippocampus_masks", TINY, DATA)[0]


def _label(name: str = "hippocampus_001.nii.gz") -> Path:
    return LABELS / name


def _apply(run_dir: Path, out: Path, *args: str):
    return runner.invoke(app, ["masks", "apply", str(run_dir), *args, "--output", str(out)])


# -- the evaluation commands --------------------------------------------------------------------------------
def test_an_evaluation_that_fails_half_way_leaves_no_folder(run, tmp_path, monkeypatch):
    import bindiff.tasks.masks.job as job
    from bindiff.adapters import DataError

    def fails(ctx, folder):
        (folder / "nifti").mkdir()
        (folder / "nifti" / "case_model.nii.gz").write_bytes(b"half")
        raise DataError("hippocampus_009.nii.gz: not a readable NIfTI file")

    monkeypatch.setattr(job, "evaluate_denoising", fails)
    line = error_line(runner.invoke(app, ["masks", "denoising", str(run), "--out", str(tmp_path / "out")]))
    assert line == "error: hippocampus_009.nii.gz: not a readable NIfTI file"
    assert not (tmp_path / "out" / "denoising").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]


def test_an_evaluation_below_a_file_is_one_line(run, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    line = error_line(runner.invoke(app, ["masks", "denoising", str(run), "--out", str(blocker)]))
    assert line == f"error: {blocker / 'denoising'}: cannot write there ({blocker} is a file, not a folder)"


def test_a_median_filter_beyond_reason_is_refused(run, tmp_path):
    line = error_line(runner.invoke(app, ["masks", "denoising", str(run), "evaluations.denoising.median_size=100",
                                           "--out", str(tmp_path / "out")]))
    assert "key 'evaluations.denoising.median_size' must lie in 1..15" in line


# -- a damaged run ------------------------------------------------------------------------------------------
def test_a_damaged_grid_file_is_one_line(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    grids = copy / "split" / "grids.npz"
    for damaged in (grids.read_bytes()[:100], b""):  # truncated, and empty (an EOFError traceback before)
        grids.write_bytes(damaged)
        line = error_line(runner.invoke(app, ["masks", "denoising", str(copy), "--out", str(tmp_path / "out")]))
        assert line.startswith(f"error: {grids}: missing or damaged")


def test_a_grid_file_of_another_run_is_blamed_not_the_cases_file(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    grids = copy / "split" / "grids.npz"
    cases = json.loads((copy / "split" / "cases.json").read_text())
    first = next(iter(cases["records"]))
    packed = dict(np.load(grids))
    for foreign in ({k: v for k, v in packed.items() if k != first},  # a case it lacks
                    {**packed, first: packed[first][:3]}):  # a grid cut short
        np.savez_compressed(grids, **foreign)
        line = error_line(runner.invoke(app, ["masks", "denoising", str(copy), "--out", str(tmp_path / "out")]))
        assert line.startswith(f"error: {grids}: holds no grid of "), line
        assert f"for case {first!r} of cases.json; the two files come from different runs" in line
    np.savez_compressed(grids, **{**packed, first: packed[first].astype(np.float64)})  # not packed bits
    line = error_line(runner.invoke(app, ["masks", "denoising", str(copy), "--out", str(tmp_path / "out")]))
    assert line.startswith(f"error: {grids}: case {first!r} is damaged (TypeError"), line


def test_a_split_from_another_run_is_named(run, tmp_path):
    from bindiff.adapters.masks import split_cases

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    path = copy / "split" / "cases.json"
    meta = json.loads(path.read_text())
    ids = [i for part in ("train", "valid", "test") for i in meta["split"][part]]
    meta["split"] = split_cases(ids, 2, 2, seed=1)  # the recipe's split under another seed
    assert meta["split"] != split_cases(ids, 2, 2, seed=0)
    path.write_text(json.dumps(meta))
    line = error_line(runner.invoke(app, ["masks", "denoising", str(copy), "--out", str(tmp_path / "out")]))
    assert line == (f"error: {path}: its split is not the one seed 0 draws from its cases; the split folder comes "
                    "from another run")


# -- masks apply --------------------------------------------------------------------------------------------
def test_two_label_maps_of_one_case_name_are_refused(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(_label(), folder / "a.nii.gz")
    volume = nib.load(str(_label()))
    nib.save(nib.Nifti1Image(np.asanyarray(volume.dataobj), volume.affine), str(folder / "a.nii"))
    (folder / "._a.nii.gz").write_bytes(b"\x00\x05\x16\x07")  # what a Mac leaves beside a file: passed over
    line = error_line(_apply(run, tmp_path / "out", "--task", "denoising", "--input", str(folder)))
    assert line == (f"error: {folder / 'a.nii.gz'}: case 'a' again (also {folder / 'a.nii'}); their outputs would "
                    "overwrite each other (on macOS and Windows also when only upper and lower case differ): rename one")
    assert not (tmp_path / "out").exists()


def _hidden_box(labels: np.ndarray) -> np.ndarray:
    hidden = np.zeros(labels.shape, dtype=np.uint8)
    centre = [int(np.mean(axis)) for axis in np.nonzero(labels)]
    hidden[tuple(slice(c - 3, c + 3) for c in centre)] = 1
    return hidden


def test_an_unknown_mask_is_matched_by_where_its_voxels_are(run, tmp_path):
    volume = nib.load(str(_label()))
    labels = np.asanyarray(volume.dataobj)
    hidden = _hidden_box(labels)
    nib.save(nib.Nifti1Image(hidden, volume.affine), str(tmp_path / "plain.nii.gz"))
    # the same voxels stored with x backwards: another array, the same place in the world
    flipped = volume.affine @ np.array([[-1, 0, 0, labels.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(hidden[::-1].copy(), flipped), str(tmp_path / "flipped.nii.gz"))
    shifted = volume.affine.copy()
    shifted[:3, 3] += 20  # the same array 20 mm away: other voxels of the scan
    nib.save(nib.Nifti1Image(hidden, shifted), str(tmp_path / "shifted.nii.gz"))
    outputs = {}
    for name in ("plain", "flipped"):
        result = _apply(run, tmp_path / name, "--task", "completion", "--input", str(_label()),
                        "--unknown", str(tmp_path / f"{name}.nii.gz"))
        assert result.exit_code == 0, result.output
        outputs[name] = np.asanyarray(nib.load(str(tmp_path / name / "hippocampus_001.nii.gz")).dataobj)
    assert np.array_equal(outputs["plain"], outputs["flipped"])
    line = error_line(_apply(run, tmp_path / "shifted_out", "--task", "completion", "--input", str(_label()),
                              "--unknown", str(tmp_path / "shifted.nii.gz")))
    assert line == (f"error: {tmp_path / 'shifted.nii.gz'}: its voxel-to-world affine differs from {_label()}'s "
                    "(the two are not on one grid)")


@pytest.mark.parametrize("args, message", [
    (["--task", "completion", "--unknown-label", "9"], "hippocampus_001.nii.gz: no voxel holds the unknown label 9"),
    (["--task", "completion", "--unknown-label", "0"], "apply --unknown-label 0: 0 is the background"),
    (["--task", "completion", "--unknown-label", "1"], "apply --unknown-label 1: a label of preset 'msd_hippocampus'"),
    (["--task", "denoising", "--unknown-label", "9"], "apply --task denoising: it may change every voxel"),
    (["--task", "completion", "--unknown-label", "9", "evaluations.completion.steps=99"],
     "evaluations.completion.steps = 99 exceeds diffusion.steps = 4"),
])
def test_unknown_labels_and_steps_that_mean_nothing_are_refused(run, tmp_path, args, message):
    overrides = [a for a in args if "=" in a]
    options = [a for a in args if "=" not in a]
    line = error_line(runner.invoke(app, ["masks", "apply", str(run), *overrides, *options, "--input", str(_label()),
                                           "--output", str(tmp_path / "out")]))
    assert message in line
    assert not (tmp_path / "out").exists()


# -- the retrieval baseline on 2-D slices -------------------------------------------------------------------
def test_retrieval_on_slices_fills_each_slice_from_its_best_training_slice():
    bank = np.zeros((3, 4, 4), np.uint8)
    bank[0, :2] = 1  # top half
    bank[1, :, :2] = 1  # left half
    bank[2, 1:3, 1:3] = 1  # centre
    # a case of two slices stacked on the last axis: slice 0 shows the top row, slice 1 the left column
    observed = np.zeros((4, 4, 2), np.uint8)
    known = np.zeros((4, 4, 2), bool)
    known[0, :, 0] = True
    observed[0, :, 0] = 1
    known[:, 0, 1] = True
    observed[:, 0, 1] = 1
    filled = retrieve(observed, known, bank, slice_axis=2)
    assert np.array_equal(filled[..., 0], bank[0]) and np.array_equal(filled[..., 1], bank[1])


def test_a_run_killed_while_it_evaluated_resumes_to_the_same_metrics(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    finished = json.loads((copy / "metrics.json").read_text())
    (copy / "metrics.json").unlink()  # killed after its evaluations were written, before metrics.json
    result = runner.invoke(app, ["resume", str(copy)])
    assert result.exit_code == 0, result.output
    resumed = json.loads((copy / "metrics.json").read_text())["denoising"]
    resumed.pop("seconds"), finished["denoising"].pop("seconds")  # the only field that is a timing
    assert resumed == finished["denoising"]
