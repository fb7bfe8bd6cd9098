"""The masks task end to end through the CLI: a tiny run on real hippocampus cases, its outputs,
the task commands on the finished run, and bad input ending with exit code 2."""

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from bindiff.cli import app
from cli_checks import error_line
from bindiff.config import dump_recipe, load_recipe, recipe_from_text
from cli_checks import train_tiny

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DATA = Path(os.path.abspath(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data")))  # as runs store it
runner = CliRunner()
needs_hippo = pytest.mark.skipif(not (DATA / "msd_hippocampus" / "labels").is_dir(),
                                 reason="MSD hippocampus data not found")

TINY = ["data.max_cases=10", "split.n_valid=2", "split.n_test=2", "grid.mode=resample", "grid.shape=[12,16,12]",
        "denoiser.params.channels=[4,8]", "denoiser.params.patch=1", "denoiser.params.bf16=false",
        "train.epochs=2", "diffusion.steps=4", "evaluations.completion.steps=2", "evaluations.generation.samples=3",
        "evaluations.generation.steps=2", "evaluations.completion.samples=4", "eval.panels=1",
        "output.progress=false"]


@pytest.mark.parametrize("name", ["hippocampus_masks.yaml", "brats_masks.yaml"])
def test_mask_recipes_load_and_round_trip(name):
    config = load_recipe(RECIPES / name)
    assert config["task"] == "masks" and config["name"] == Path(name).stem
    assert recipe_from_text(dump_recipe(config)) == config


def test_masks_recipe_keys_are_checked():
    from bindiff.config import RecipeError

    with pytest.raises(RecipeError, match="grid.shape' must list 2 or 3 positive integers"):
        load_recipe(RECIPES / "hippocampus_masks.yaml", ["grid.shape=[4]"])
    with pytest.raises(RecipeError, match="evaluations.completion.hide' must list distinct values among box"):
        load_recipe(RECIPES / "hippocampus_masks.yaml", ["evaluations.completion.hide=[circle]"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    if not (DATA / "msd_hippocampus" / "labels").is_dir():
        pytest.skip("MSD hippocampus data not found")
    return train_tiny(tmp_path_factory.mktemp("runs"), "hippocampus_masks", TINY, DATA)


@needs_hippo
def test_train_writes_summaries_niftis_and_panels(tiny_run):
    run_dir, result = tiny_run
    assert f"run directory: {run_dir}" in result.output
    for name in ("config.yaml", "metrics.json", "history.json", "training_curve.png", "checkpoints/best.pt",
                 "split/cases.json", "split/grids.npz", "denoising/summary.json", "generation/summary.json"):
        assert (run_dir / name).is_file(), name
    cases = json.loads((run_dir / "split" / "cases.json").read_text())
    assert {len(v) for v in cases["split"].values()} == {6, 2} and cases["preset"]["name"] == "msd_hippocampus"
    for mode, names in (("box", ["closing", "interpolation", "retrieval"]),
                        ("alternate_slices", ["interpolation", "retrieval"]),
                        ("random_slices", ["interpolation", "retrieval"])):
        summary = json.loads((run_dir / "completion" / mode / "summary.json").read_text())
        assert summary["cases"] == 2 and len(summary["per_case"]) == 2 and summary["baselines"] == names
        assert set(summary["mean"]) == {"input", *names, "model"} and "both masks empty" in summary["empty_rule"]
        for row in summary["per_case"]:
            assert 0 <= row["model"]["dice"] <= 1 and row["model"]["hd95_mm"] >= 0
            # the damaged input reads every hidden voxel as background: it finds none of the hidden truth
            assert row["input"]["hidden_dice"] in (0.0, 1.0)  # 1 only where nothing of the mask was hidden
        assert summary["mean"]["model"]["hidden_dice"] == pytest.approx(
            np.mean([row["model"]["hidden_dice"] for row in summary["per_case"]]))
        assert (run_dir / "completion" / mode / "panels").is_dir()
    panel = next((run_dir / "denoising" / "panels").glob("*.png"))
    assert panel.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    generation = json.loads((run_dir / "generation" / "summary.json").read_text())
    assert generation["samples"] == 3 and 0 <= generation["plausibility"]["one_component_share"] <= 1
    assert len(generation["per_sample"]) == 3 and "nearest_training_dice" in generation["plausibility"]
    # each case's box is resampled to the grid (grid.mode=resample): its volumes are sizes on the grid
    assert generation["volume_scale"].startswith("a size on the grid, not the scans' millilitres")


@needs_hippo
def test_nifti_outputs_have_the_geometry_of_their_inputs(tiny_run):
    run_dir, _ = tiny_run
    cases = {c["case_id"]: c for c in json.loads((run_dir / "split" / "cases.json").read_text())["cases"]}
    outputs = sorted((run_dir / "completion" / "box" / "nifti").glob("*_model.nii.gz"))
    outputs += sorted((run_dir / "generation" / "nifti").glob("*.nii.gz"))[:1]
    assert len(outputs) == 3
    for out in outputs:
        case_id = out.name.split("_in_")[-1][: -len(".nii.gz")] if "_in_" in out.name else out.name[: -len("_model.nii.gz")]
        source = Path(cases[case_id]["label"])
        a, b = nib.load(str(source)), nib.load(str(out))
        assert a.shape == b.shape and np.allclose(a.affine, b.affine)
        assert set(np.unique(np.asarray(b.dataobj)).tolist()) <= {0, 1}
        ia, ib = sitk.ReadImage(str(source)), sitk.ReadImage(str(out))
        for attr in ("GetSize", "GetOrigin", "GetSpacing", "GetDirection"):
            assert np.allclose(getattr(ia, attr)(), getattr(ib, attr)()), attr


@needs_hippo
def test_task_commands_on_a_finished_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    out = tmp_path / "again"
    result = runner.invoke(app, ["masks", "denoising", str(run_dir), "evaluations.denoising.flip=0.1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "denoising" / "summary.json").read_text())
    assert summary["settings"]["flip"] == 0.1 and summary["cases"] == 2
    assert summary["settings"]["eval_batch_size"] == 8  # the recipe's: it decides the draws, so it is recorded
    # jsd over T = 4 steps: alpha_bar_t = (T - t) / T, so x_t flips a bit with probability t / (2T)
    settings = summary["settings"]
    assert settings["flip_rate_at_t"] == pytest.approx(settings["t_used"] / (2 * 4))
    again = runner.invoke(app, ["masks", "denoise", str(run_dir), "--out", str(out)])  # the old verb: an alias
    assert again.exit_code == 2 and "exists" in again.output
    result = runner.invoke(app, ["masks", "completion", str(run_dir), "evaluations.completion.hide=[box]",
                                 "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c" / "completion" / "box" / "summary.json").read_text())["cases"] == 2
    # the validation cases, to choose inference settings without reading the test cases
    result = runner.invoke(app, ["masks", "completion", str(run_dir), "evaluations.completion.hide=[box]", "eval.part=valid",
                                 "evaluations.completion.sample=sample", "evaluations.completion.resample=2",
                                 "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "v" / "completion" / "box" / "summary.json").read_text())
    cases = json.loads((run_dir / "split" / "cases.json").read_text())["split"]
    assert sorted(r["case_id"] for r in summary["per_case"]) == sorted(cases["valid"])
    assert summary["settings"]["resample"] == 2
    bad = runner.invoke(app, ["masks", "generation", str(run_dir), "train.lr=1"])
    assert bad.exit_code == 2 and ("can only be scored differently; allowed keys are evaluations.generation.*, "
                                   "eval.batch_size, eval.part, eval.max_cases, eval.panels, eval.nifti, "
                                   "output.progress") in bad.output
    # another evaluation's settings, or the list of evaluations, would change nothing here
    for override in ("evaluations.completion.samples=3", "evaluations.run=[completion]"):
        line = error_line(runner.invoke(app, ["masks", "denoising", str(run_dir), override, "--out", str(tmp_path / "d")]))
        assert line == (f"error: override '{override}': masks denoising does not read it; its keys are "
                        "evaluations.denoising.*, eval.batch_size, eval.part, eval.max_cases, eval.panels, eval.nifti, "
                        "output.progress")
    assert not (tmp_path / "d").exists()
    # its own section given whole is its own section (it was refused as not read)
    whole = runner.invoke(app, ["masks", "denoising", str(run_dir), "evaluations.denoising={flip: 0.2}",
                                "eval.panels=0", "--out", str(tmp_path / "w")])
    assert whole.exit_code == 0, whole.output
    assert json.loads((tmp_path / "w" / "denoising" / "summary.json").read_text())["settings"]["flip"] == 0.2


@needs_hippo
def test_generation_can_draw_its_volumes_from_the_training_masks(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    result = runner.invoke(app, ["masks", "generation", str(run_dir), "evaluations.generation.volume=training",
                                 "evaluations.generation.samples=6", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "generation" / "summary.json").read_text())
    train = json.loads((run_dir / "split" / "cases.json").read_text())["split"]["train"]
    packed = np.load(run_dir / "split" / "grids.npz")
    counts = np.array([np.unpackbits(packed[case]).sum() for case in train], dtype=float)  # padding bits are 0
    voxel_ml = summary["reference"]["volume_ml"]["mean"] / counts.mean()
    targets = np.array([row["target_volume_ml"] for row in summary["per_sample"]]) / voxel_ml
    assert len(targets) == 6
    # every target is one training mask's voxel count
    assert np.abs(targets[:, None] - counts[None, :]).min(1).max() < 1e-3


# -- bad input: one line naming the file, exit code 2 ------------------------------------------------------
def _mask(label: int = 1) -> np.ndarray:
    grid = np.indices((12, 14, 10))
    inside = ((grid[0] - 6) / 4) ** 2 + ((grid[1] - 7) / 5) ** 2 + ((grid[2] - 5) / 3) ** 2 <= 1
    return (inside * label).astype(np.uint8)


def _folder(tmp_path: Path, bad: str | None) -> Path:
    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(5):
        nib.save(nib.Nifti1Image(_mask(1 + i % 2), np.eye(4)), str(folder / f"case{i}.nii.gz"))
    path = folder / "case9.nii.gz"
    if bad == "label":
        nib.save(nib.Nifti1Image(_mask(7), np.eye(4)), str(path))
    elif bad == "float":
        nib.save(nib.Nifti1Image(_mask().astype(np.float32) * 0.3, np.eye(4)), str(path))
    elif bad == "4d":
        nib.save(nib.Nifti1Image(np.stack([_mask(), _mask()], -1), np.eye(4)), str(path))
    elif bad == "gzip":
        packed = gzip.compress(nib.Nifti1Image(_mask(), np.eye(4)).to_bytes())
        path.write_bytes(packed[: len(packed) // 2])
    return folder


@pytest.mark.parametrize("bad, message", [
    ("label", "case9.nii.gz: unexpected label value(s) 7 for preset 'msd_hippocampus'"),
    ("float", "case9.nii.gz: label map holds non-integer values"),
    ("4d", "case9.nii.gz: expected a 3-D label map"),
    ("gzip", "case9.nii.gz: not a readable NIfTI file"),
])
def test_bad_masks_exit_2_naming_the_file(tmp_path, bad, message):
    folder = _folder(tmp_path, bad)
    result = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), f"data.dataset={folder}",
                                 "labels.preset=msd_hippocampus", "split.n_valid=1", "split.n_test=1",
                                 f"output.root={tmp_path / 'runs'}", "output.progress=false"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made


def test_missing_data_and_unknown_layout_exit_2(tmp_path):
    result = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), f"data.dataset={tmp_path / 'nope'}"])
    assert result.exit_code == 2 and "no such folder" in result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), f"data.dataset={tmp_path / 'empty'}"])
    assert result.exit_code == 2 and "no label maps found" in result.output
    folder = _folder(tmp_path, None)
    result = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), f"data.dataset={folder}",
                                 "labels.preset=auto"])
    assert result.exit_code == 2 and "implies no label convention" in result.output


def test_a_missing_run_directory_exits_2(tmp_path):
    result = runner.invoke(app, ["masks", "completion", str(tmp_path)])
    assert result.exit_code == 2 and "not a bindiff run directory" in result.output


@needs_hippo
def test_two_d_slices_with_the_mlp_denoiser(tmp_path):
    """2-D slice mode and the recipe's other denoiser, through the library."""
    from bindiff.tasks.masks.job import train_masks

    config = load_recipe(RECIPES / "hippocampus_masks.yaml", [*TINY, "grid.shape=[12,16]", f"output.root={tmp_path}",
                                                                 "evaluations.completion.samples=2"])
    config["denoiser"] = {"name": "mlp", "params": {"hidden": [32], "time_dim": 8}}
    run = train_masks(config, data_dir=str(DATA))
    assert run.metrics["denoising"]["cases"] == 2 and "model" in run.metrics["denoising"]
    # completion too: its retrieval baseline copies training slices, as cases hold different numbers of them
    assert {"model", "retrieval"} <= set(run.metrics["completion"]["alternate_slices"])
    summary = json.loads((run.run_dir / "generation" / "summary.json").read_text())
    assert summary["samples"] == 3 and summary["reference"]["training_masks"] > 6  # slices showing the mask
    assert not (run.run_dir / "generation" / "nifti").exists()  # 2-D samples have no 3-D geometry


def test_image_and_mask_of_different_shapes_exit_2(tmp_path):
    root = tmp_path / "msd"
    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(4):
        nib.save(nib.Nifti1Image(_mask(1), np.eye(4)), str(root / "labels" / f"case{i}.nii.gz"))
        shape = (12, 14, 10) if i != 2 else (12, 14, 11)
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)), str(root / "images" / f"case{i}.nii.gz"))
    result = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), f"data.dataset={root}",
                                 "split.n_valid=1", "split.n_test=1", f"output.root={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "images/case2.nii.gz: image has shape (12, 14, 11)" in result.output
    assert "image/mask shape mismatch" in result.output


class _Killed(Exception):
    """Stands for the process being killed mid-training."""


@needs_hippo
def test_a_killed_masks_run_resumes_to_the_uninterrupted_metrics(tiny_run, tmp_path, monkeypatch):
    """Killed while validating epoch 2 (last.pt holds epoch 1), `bindiff resume` ends with the
    reference run's history and metrics."""
    from bindiff.tasks.masks.job import MasksTask

    reference, _ = tiny_run
    real_validator = MasksTask.validator

    def dying_validator(self, *args):
        validate, calls = real_validator(self, *args), []

        def once():
            calls.append(1)
            if len(calls) == 2:
                raise _Killed
            return validate()
        return once

    monkeypatch.setattr(MasksTask, "validator", dying_validator)
    with pytest.raises(_Killed):
        runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), *TINY, f"output.root={tmp_path}",
                            "--data-dir", str(DATA)], catch_exceptions=False)
    monkeypatch.setattr(MasksTask, "validator", real_validator)
    (victim,) = (tmp_path / "hippocampus_masks").iterdir()
    assert not (victim / "metrics.json").exists()
    result = runner.invoke(app, ["resume", str(victim), "--data-dir", str(DATA)])
    assert result.exit_code == 0, result.output
    a = json.loads((reference / "metrics.json").read_text())
    b = json.loads((victim / "metrics.json").read_text())
    assert b["training"]["resumed_from_epoch"] == 1
    import torch

    for name in ("best.pt", "last.pt"):  # weights bit-identical to the uninterrupted run's
        wa, wb = (torch.load(r / "checkpoints" / name, weights_only=True)["model"] for r in (reference, victim))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((reference / "history.json").read_text())[-1]["train_loss"] == \
        json.loads((victim / "history.json").read_text())[-1]["train_loss"]
    for name in ("denoising", "generation"):
        assert {k: v for k, v in a[name].items() if k != "seconds"} == {k: v for k, v in b[name].items() if k != "seconds"}
    assert a["completion"]["box"]["model"] == b["completion"]["box"]["model"]


# -- applying a trained run to one's own label maps ----------------------------------------------------------
@needs_hippo
def test_apply_denoise_equals_the_denoiser_on_the_cases_grid(tiny_run, tmp_path):
    """`bindiff masks apply --task denoise` on two of the run's test files, against p̂(x_0 | x_t) computed
    here on the grids the run itself stored for them."""
    from bindiff.adapters.masks import read_label_map, to_vectors, from_vectors
    from bindiff.tasks.masks.job import load_masks_run

    run_dir, _ = tiny_run
    config, data, model, _, _ = load_masks_run(run_dir)
    records = data.part("test")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for r in records:
        (inputs / r.case.label.name).symlink_to(Path(r.case.label).resolve())
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "output.progress=null", "--task", "denoising",
                                 "--input", str(inputs), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # not a terminal here: one line per batch, naming the file (each was 'denoising: batch 1/1' alike)
    assert [line for line in result.stderr.splitlines() if ": batch " in line] == [
        f"apply {name}: batch 1/1" for name in sorted(r.case.label.name for r in records)]
    rates = (1 - model.process.alpha_bar[1:].numpy()) / 2
    t = int(np.argmin(np.abs(rates - config["evaluations"]["denoising"]["flip"]))) + 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [c["case_id"] + ".nii.gz" for c in summary["cases"]] == sorted(r.case.label.name for r in records)
    for r in records:
        import torch

        rows = torch.from_numpy(to_vectors(np.ascontiguousarray(r.grid), data.spec).astype(np.float32))
        with torch.no_grad():
            grid = from_vectors((model.predict_x0(rows, t) >= 0.5).numpy().astype(np.uint8), r.transform.grid_shape,
                                data.spec) * r.transform.valid()
        expected = r.transform.from_grid(grid.astype(np.uint8)).astype(bool)
        written = read_label_map(tmp_path / "out" / r.case.label.name)
        assert written.geometry.shape == r.geometry.shape
        np.testing.assert_allclose(written.geometry.affine, r.geometry.affine, atol=1e-5)
        assert np.array_equal(written.data.astype(bool), expected)
    assert summary["settings"]["t_used"] == t and "warning" not in result.output
    # a picture of each file: the input and the result in three planes
    assert sorted(p.name for p in (tmp_path / "out" / "panels").iterdir()) == sorted(
        f"{c['case_id']}.png" for c in summary["cases"])
    assert all(Path(c["panel"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for c in summary["cases"])



@needs_hippo
def test_evaluate_runs_a_masks_runs_evaluations_again_to_its_numbers(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    refused = runner.invoke(app, ["evaluate", str(run_dir)])
    assert refused.exit_code == 2 and "--out: a masks run is scored again into a new folder" in refused.output
    result = runner.invoke(app, ["evaluate", str(run_dir), "evaluations.run=[denoising]", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    trained = json.loads((run_dir / "metrics.json").read_text())["denoising"]
    again = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert set(again) >= {"denoising"} and "completion" not in again  # the overridden evaluations.run
    assert {k: v for k, v in again["denoising"].items() if k != "seconds"} == \
        {k: v for k, v in trained.items() if k != "seconds"}  # the training-time numbers, again
    assert (tmp_path / "e" / "denoising" / "summary.json").is_file()


@needs_hippo
def test_evaluating_the_last_checkpoint_names_its_epoch_and_the_best_one(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    result = runner.invoke(app, ["evaluate", str(run_dir), "--checkpoint", "last", "evaluations.run=[denoising]",
                                 "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / "e" / "metrics.json").read_text())["checkpoint"]
    history = json.loads((run_dir / "history.json").read_text())
    values = [epoch[f"valid_{entry['selected_by']}"] for epoch in history]
    assert entry["file"] == "checkpoints/last.pt" and (run_dir / entry["file"]).is_file()
    assert entry["epoch"] == history[-1]["epoch"] == 2  # the last epoch, whichever was best
    assert entry["best_epoch"] == history[int(np.argmax(values))]["epoch"] and entry["best_value"] == max(values)


@needs_hippo
def test_apply_refuses_overrides_it_would_not_read(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    label = DATA / "msd_hippocampus" / "labels" / "hippocampus_001.nii.gz"
    for task, override in (("completion", "evaluations.completion.hide=[box]"),  # apply takes --unknown instead
                           ("denoising", "evaluations.completion.steps=2"), ("denoising", "eval.max_cases=1")):
        extra = ["--unknown-label", "7"] if task == "completion" else []
        result = runner.invoke(app, ["masks", "apply", str(run_dir), override, "--task", task, "--input", str(label),
                                     "--output", str(tmp_path / "out"), *extra])
        assert result.exit_code == 2
        assert f"error: override {override!r}: masks apply --task {task} does not read it" in result.output
        assert not (tmp_path / "out").exists()


@needs_hippo
def test_apply_complete_fills_only_the_unknown_voxels(tiny_run, tmp_path):
    from bindiff.adapters.masks import read_label_map

    run_dir, _ = tiny_run
    (record,) = [json.loads((run_dir / "split" / "cases.json").read_text())["records"][i]
                 for i in json.loads((run_dir / "split" / "cases.json").read_text())["split"]["test"][:1]]
    source = Path(record["label"])
    image = nib.load(str(source))
    labels = np.asarray(image.dataobj).copy()
    hit = np.argwhere(labels > 0)
    lo, hi = hit.min(0), hit.max(0) + 1
    mid = (lo + hi) // 2
    box = tuple(slice(m - 2, m + 2) for m in mid)
    labels[box] = 9  # the unknown voxels, marked in the file itself
    damaged = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(labels, image.affine, image.header), str(damaged))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input", str(damaged),
                                 "--unknown-label", "9", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = read_label_map(tmp_path / "out" / "case.nii.gz")
    original = read_label_map(damaged)
    unknown = original.data == 9
    assert unknown.sum() == 4 ** 3
    assert np.array_equal(written.data.astype(bool)[~unknown], (original.data > 0)[~unknown] & ~unknown[~unknown])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cases"][0]["unknown_voxels"] == 64
    # without naming the unknown voxels, 9 is a label the preset refuses
    bad = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input", str(damaged),
                              "--output", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and str(damaged) in bad.output and "9" in bad.output
    missing = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input", str(damaged),
                                  "--output", str(tmp_path / "bad2")])
    assert missing.exit_code == 2 and "exactly one of --unknown FILE|FOLDER or --unknown-label N" in missing.output
    again = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input", str(damaged),
                                "--unknown-label", "9", "--output", str(tmp_path / "out")])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    # an --unknown file that marks no voxel (or every voxel) is refused as --unknown-label's would be
    for fill, name in ((np.zeros, "no"), (np.ones, "every")):
        marks = tmp_path / f"{name}_unknown.nii.gz"
        nib.save(nib.Nifti1Image(fill(labels.shape, np.uint8), image.affine, image.header), str(marks))
        refused = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input",
                                      str(tmp_path / "out" / "case.nii.gz"), "--unknown", str(marks),
                                      "--output", str(tmp_path / f"none_{name}")])
        assert refused.exit_code == 2 and f"{marks}: {name} voxel is marked unknown" in refused.output, refused.output
    # a broken link among the label maps of a folder is refused, not skipped (a case would go missing)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes((tmp_path / "out" / "case.nii.gz").read_bytes())
    (folder / "b.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    broken = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input", str(folder),
                                 "--output", str(tmp_path / "from_folder")])
    assert broken.exit_code == 2 and f"{folder / 'b.nii.gz'}: a broken link where a label map is expected" \
        in broken.output and not (tmp_path / "from_folder").exists()


@needs_hippo
def test_a_self_conditioned_masks_run_trains_and_validates_reproducibly(tmp_path):
    """Self-conditioning draws coins in the validation loss too: two identical runs agree."""
    from bindiff.tasks.masks.job import train_masks

    losses = []
    for name in ("a", "b"):
        config = load_recipe(RECIPES / "hippocampus_masks.yaml",
                             [*TINY, "diffusion.self_condition=true", "eval.select=neg_loss",
                              "evaluations.run=[denoising]", "eval.nifti=false", f"output.root={tmp_path / name}"])
        run = train_masks(config, data_dir=str(DATA))
        history = json.loads((run.run_dir / "history.json").read_text())
        losses.append([entry["valid_neg_loss"] for entry in history])
    assert len(losses[0]) == 2 and all(np.isfinite(losses[0]))
    assert losses[0] == losses[1]


def _test_label(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first test case's label map and affine, as stored."""
    cases = json.loads((run_dir / "split" / "cases.json").read_text())
    image = nib.load(cases["records"][cases["split"]["test"][0]]["label"])
    return np.asarray(image.dataobj).astype(np.uint8), image.affine


def _resliced(affine: np.ndarray, thickness: float, first_centre: float) -> np.ndarray:
    """``affine`` with slices ``thickness`` mm apart along the third axis, the first centred
    ``first_centre`` mm from the old first slice's centre."""
    return affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, thickness, first_centre], [0, 0, 0, 1]])


@needs_hippo
@pytest.mark.parametrize("fine", [2, 3])
def test_apply_complete_keeps_what_thin_unknown_slices_leave_known(pad_run, tmp_path, fine):
    """A label map on 1/2 or 1/3 mm slices (each 1 mm slice repeated), one slice of each repeat
    unknown: brought to the run's 1 mm voxels, every voxel is still mostly known, so nothing is
    left to complete and each unknown slice comes back as its known twin. The nearest slice alone,
    or a point sample of the known share, made every voxel unknown, and the model drew a
    hippocampus from nothing."""
    run_dir = pad_run
    labels, affine = _test_label(run_dir)
    thin = np.repeat(labels, fine, axis=2)
    marked = thin.copy()
    marked[:, :, 1::fine] = 9
    nib.save(nib.Nifti1Image(marked, _resliced(affine, 1 / fine, -(fine - 1) / (2 * fine))), str(tmp_path / "thin.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "output.progress=null", "--task", "completion",
                                 "--input", str(tmp_path / "thin.nii.gz"), "--unknown-label", "9",
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = np.asarray(nib.load(str(tmp_path / "out" / "thin.nii.gz")).dataobj).astype(bool)
    assert np.array_equal(written, thin > 0)
    # piped, a line per batch: the file's 4 runs drawn side by side, in one batch
    assert [line for line in result.stderr.splitlines() if ": batch " in line] == [
        "apply thin.nii.gz (4 runs): batch 1/1"]


@needs_hippo
def test_apply_complete_leaves_to_the_model_what_thick_unknown_slices_hide(pad_run, tmp_path, monkeypatch):
    """A label map on 2 mm slices, every other one unknown: each 1 mm voxel inside an unknown slice
    is unknown, and the model decides it (a stand-in answers 1 everywhere); the known slices come
    back as they were. Interpolating the known share between slices called most of them known,
    and copied their neighbours instead."""
    monkeypatch.setattr("bindiff.tasks.masks.apply.inpainted_probabilities",
                        lambda ctx, rows, known, generator, desc, side_by_side: np.ones_like(rows))
    run_dir = pad_run
    labels, affine = _test_label(run_dir)
    thick = labels[:, :, : labels.shape[2] // 2 * 2: 2]
    marked = thick.copy()
    marked[:, :, 1::2] = 9
    nib.save(nib.Nifti1Image(marked, _resliced(affine, 2.0, 0.5)), str(tmp_path / "thick.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input",
                                 str(tmp_path / "thick.nii.gz"), "--unknown-label", "9", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = np.asarray(nib.load(str(tmp_path / "out" / "thick.nii.gz")).dataobj).astype(bool)
    unknown = marked == 9
    assert written[unknown].all() and np.array_equal(written[~unknown], thick[~unknown] > 0)


@needs_hippo
def test_apply_complete_names_unknown_voxels_beyond_the_window_as_such(pad_run, tmp_path):
    """Every other sagittal slice unknown across a volume twice the window's width: the window,
    centred on the volume, holds the region and the middle slices; the unknown voxels beyond it are
    written as background and named as unknown voxels (they were counted as region voxels "written
    as they came")."""
    run_dir = pad_run
    labels, affine = _test_label(run_dir)
    width = 2 * PAD_GRID[0]
    before = (width - labels.shape[0]) // 2
    wide = np.pad(labels, ((before, width - labels.shape[0] - before), (0, 0), (0, 0)))
    wide[1::2] = 9
    nib.save(nib.Nifti1Image(wide, affine), str(tmp_path / "wide.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "completion", "--input",
                                 str(tmp_path / "wide.nii.gz"), "--unknown-label", "9", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (case,) = json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]
    start = (width - PAD_GRID[0]) // 2  # the window, centred on the volume
    beyond = np.ones(width, bool)
    beyond[start:start + PAD_GRID[0]] = False
    expected = int((wide[beyond] == 9).sum())
    assert case["outside_grid_voxels"] == 0 and case["unknown_outside_grid_voxels"] == expected > 0
    assert f"{expected} unknown voxel(s) of 1 file(s) lie outside the run's grid window" in result.output
    assert "region voxel(s)" not in result.output
    written = np.asarray(nib.load(str(tmp_path / "out" / "wide.nii.gz")).dataobj)
    assert not written[beyond].any()


@needs_hippo
def test_a_clean_label_map_is_placed_where_training_placed_it():
    """The denoising window drops strays far from the region, never a clean map's own small parts:
    on every MSD hippocampus label map, what the window is placed on spans the region's box."""
    from bindiff.adapters.masks.grid import bounding_box
    from bindiff.tasks.masks.apply import _window_roi

    for path in sorted((DATA / "msd_hippocampus" / "labels").glob("*.nii.gz")):
        region = np.asarray(nib.load(str(path)).dataobj) > 0
        assert [b.tolist() for b in bounding_box(_window_roi(region, None))] == [
            b.tolist() for b in bounding_box(region)], path.name


@needs_hippo
def test_apply_denoise_places_its_window_on_the_region_not_on_a_stray_island(tiny_run, tmp_path):
    """Denoising is for stray voxels: an island 20 voxels beyond the region must not move the grid
    window (it is placed on the region without its small parts), so the region comes back exactly
    as without the island, and the island, outside the window, as it came."""
    run_dir, _ = tiny_run
    labels, affine = _test_label(run_dir)
    region = np.pad(labels > 0, 30).astype(np.uint8)
    hits = np.argwhere(region)
    corner = hits.max(0) + 20
    island = region.copy()
    island[tuple(slice(c, c + 2) for c in corner)] = 1
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(region, affine), str(tmp_path / "in" / "clean.nii.gz"))
    nib.save(nib.Nifti1Image(island, affine), str(tmp_path / "in" / "island.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input",
                                 str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--panels", "0"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out" / "panels").exists()
    clean, with_island = (np.asarray(nib.load(str(tmp_path / "out" / f"{n}.nii.gz")).dataobj).astype(bool)
                          for n in ("clean", "island"))
    kept = island.astype(bool) & ~region.astype(bool)
    assert kept.sum() == 8 and with_island[kept].all()
    assert np.array_equal(with_island & ~kept, clean)
    rows = {c["case_id"]: c for c in json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]}
    assert rows["island"]["outside_grid_voxels"] == 8


PAD_GRID = (40, 56, 40)


@pytest.fixture(scope="module")
def pad_run(tmp_path_factory):
    """A run that places masks without resampling (grid.mode pad, a window larger than the files),
    as the hippocampus recipe does."""
    if not (DATA / "msd_hippocampus" / "labels").is_dir():
        pytest.skip("MSD hippocampus data not found")
    root = tmp_path_factory.mktemp("pad_runs")
    tiny = [o for o in TINY if not o.startswith(("grid.", "train.epochs"))]
    trained = runner.invoke(app, ["train", str(RECIPES / "hippocampus_masks.yaml"), *tiny, "grid.mode=pad",
                                  f"grid.shape={list(PAD_GRID)}".replace(" ", ""), "train.epochs=1",
                                  "evaluations.run=[]",  # the tests apply its model; no evaluation reads it
                                  f"output.root={root}", "--data-dir", str(DATA)])
    assert trained.exit_code == 0, trained.output
    assert "warning:" not in trained.output  # every MSD label map has 1 mm voxels
    (run_dir,) = (root / "hippocampus_masks").iterdir()
    return run_dir


@needs_hippo
def test_apply_brings_a_label_map_of_another_spacing_to_the_training_spacing(pad_run, tmp_path, monkeypatch):
    """A stand-in denoiser answers with a ball of 6 grid voxels' radius. The run learned on 1 mm
    voxels and places masks without resampling, so the ball must come out 1 mm voxels wide from
    the label map and from a 0.8 mm copy of it."""
    grid_shape, run_dir = PAD_GRID, pad_run
    centre = (np.array(grid_shape) - 1) / 2
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij"), -1)
    ball = (((coords - centre) ** 2).sum(-1) <= 6 ** 2).astype(np.float32)
    monkeypatch.setattr("bindiff.tasks.masks.apply.denoised_probabilities",
                        lambda ctx, rows, desc: (1, np.repeat(ball.reshape(1, -1), len(rows), 0)))
    source = DATA / "msd_hippocampus" / "labels" / "hippocampus_001.nii.gz"
    label = sitk.ReadImage(str(source))
    assert label.GetSpacing() == (1.0, 1.0, 1.0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "native.nii.gz").symlink_to(source.resolve())
    direction = np.array(label.GetDirection()).reshape(3, 3)
    origin = np.array(label.GetOrigin()) + direction @ np.full(3, -0.5 + 0.4)  # the same outer faces
    fine = sitk.Resample(label, [int(round(n / 0.8)) for n in label.GetSize()], sitk.Transform(),
                         sitk.sitkNearestNeighbor, origin.tolist(), [0.8] * 3, label.GetDirection(), 0,
                         label.GetPixelID())
    sitk.WriteImage(fine, str(inputs / "fine.nii.gz"))
    coarse = sitk.Resample(label, [int(round(n / 2.5)) for n in label.GetSize()], sitk.Transform(),
                           sitk.sitkNearestNeighbor, label.GetOrigin(), [2.5] * 3, label.GetDirection(), 0,
                           label.GetPixelID())
    sitk.WriteImage(coarse, str(inputs / "coarse.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input", str(inputs),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # 2.5 mm voxels are far from the 1 mm the run learned on: said; 0.8 mm ones are not far
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "coarse.nii.gz: voxels of 2.5 x 2.5 x 2.5 mm, the run learned on 1 x 1 x 1 mm" \
        in warnings[0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["training_spacing_mm"] == [1.0, 1.0, 1.0]
    rows = {row["case_id"]: row for row in summary["cases"]}
    # the window covers the whole 1 mm file, so its result is the ball, voxel for voxel
    assert rows["native"]["output_voxels"] == int(ball.sum()) and rows["native"]["outside_grid_voxels"] == 0
    # at 0.8 mm the ball keeps its size in millimetres (read as 1 mm voxels it would shrink to 51 %)
    fine_ml, native_ml = rows["fine"]["output_voxels"] * 0.512 / 1000, rows["native"]["output_voxels"] / 1000
    assert fine_ml == pytest.approx(native_ml, rel=0.08)
    assert rows["fine"]["resampled"] and not rows["native"]["resampled"]
    for name, reference in (("native", label), ("fine", fine)):
        written = sitk.ReadImage(str(tmp_path / "out" / f"{name}.nii.gz"))
        assert written.GetSize() == reference.GetSize()
        np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-4)

    # two blobs 100 voxels apart: the 40-voxel window, centred between them, holds neither; the user is told
    far = np.zeros((120, 20, 20), dtype=np.uint8)
    far[5:9, 8:12, 8:12] = far[105:109, 8:12, 8:12] = 1
    (tmp_path / "far").mkdir()
    nib.save(nib.Nifti1Image(far, np.eye(4)), str(tmp_path / "far" / "far.nii.gz"))
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input",
                                 str(tmp_path / "far"), "--output", str(tmp_path / "far_out")])
    assert result.exit_code == 0, result.output
    (case,) = json.loads((tmp_path / "far_out" / "summary.json").read_text())["cases"]
    assert case["outside_grid_voxels"] == 128  # two blobs of 4 x 4 x 4 voxels, written as they came
    assert f"warning: {tmp_path / 'far'}: the run's grid window misses 128 region voxel(s) of 1 file(s)" in result.output


@needs_hippo
def test_apply_that_fails_part_way_leaves_no_output_folder(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a_good.nii.gz").symlink_to((DATA / "msd_hippocampus" / "labels" / "hippocampus_001.nii.gz").resolve())
    (inputs / "b_broken.nii.gz").write_bytes(b"\x1f\x8b not a label map")
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input", str(inputs),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and "b_broken.nii.gz" in result.output.strip().splitlines()[-1], result.output
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # the good case was not left
    a_file = tmp_path / "taken"
    a_file.write_text("")
    result = runner.invoke(app, ["masks", "apply", str(run_dir), "--task", "denoising", "--input", str(inputs),
                                 "--output", str(a_file)])
    assert result.exit_code == 2 and "exists and is not an empty folder" in result.output, result.output


def test_a_grid_that_does_not_resample_warns_about_cases_of_other_voxel_sizes(tmp_path):
    folder = _folder(tmp_path, None)
    nib.save(nib.Nifti1Image(_mask(), np.diag([1.5, 1.5, 1.5, 1.0])), str(folder / "case9.nii.gz"))
    tiny = [o for o in TINY if not o.startswith("grid.")]
    common = ["train", str(RECIPES / "hippocampus_masks.yaml"), *tiny, f"data.dataset={folder}",
              "labels.preset=msd_hippocampus", "split.n_valid=1", "split.n_test=1", "train.epochs=1"]
    result = runner.invoke(app, [*common, "grid.mode=pad", "grid.shape=[16,16,12]", f"output.root={tmp_path / 'a'}"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(folder) in warnings[0], result.output
    assert "1 of 6 cases have a voxel size more than 1% from the median 1 x 1 x 1 mm (from 1 x 1 x 1 to " \
           "1.5 x 1.5 x 1.5 mm): case9 (1.5 x 1.5 x 1.5 mm); grid.mode pad" in warnings[0]
    # a grid that resamples each case's region does not warn
    result = runner.invoke(app, [*common, "grid.mode=resample", "grid.shape=[8,8,8]", f"output.root={tmp_path / 'b'}"])
    assert result.exit_code == 0 and "warning:" not in result.output, result.output


@needs_hippo
def test_piped_output_has_a_line_for_reading_and_one_per_epoch(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bindiff", "train", str(RECIPES / "hippocampus_masks.yaml"), *TINY,
                           "output.progress=null", "evaluations.run=[denoising]", "eval.nifti=false",
                           f"output.root={tmp_path}", "--data-dir", str(DATA)],
                          capture_output=True, text=True, timeout=300)  # stderr is a pipe, not a terminal
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"reading 10 label maps from {DATA / 'msd_hippocampus'}" in lines
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]


def test_an_ensembles_validation_loss_is_the_mean_of_its_members_losses_on_every_case():
    """It gave block m of the validation rows to member m: a traceback unless the batch divided into
    the members' blocks, and each case scored by one member only."""
    import copy

    import torch

    from bindiff.tasks.masks.data import prepare_data
    from bindiff.tasks.masks.job import make_validator
    from bindiff.tasks.masks.model import build_mask_model

    config = load_recipe(RECIPES / "hippocampus_masks.yaml", [*TINY, "denoiser.members=3"])  # 2 validation cases
    data = prepare_data(config, data_dir=str(DATA), disable_progress=True)
    torch.manual_seed(0)
    model = build_mask_model(config, data.dim, training=True).eval()
    ensemble = make_validator(model, data, config, torch.device("cpu"))()["neg_loss"]
    alone = []
    for member in model.denoiser.members:  # each member as a model of its own, by hand
        single = copy.deepcopy(model)
        single.denoiser = member
        alone.append(make_validator(single, data, config, torch.device("cpu"))()["neg_loss"])
    assert np.isfinite(ensemble) and len(set(alone)) == 3
    assert ensemble == pytest.approx(float(np.mean(alone)), rel=1e-6)


@pytest.mark.parametrize("shape", [(8, 12, 1), (1, 12, 8), (8, 1, 8)])
def test_panels_of_a_grid_one_voxel_thin_are_drawn(tmp_path, shape):
    """grid.shape accepts a side of 1; drawing the red outline of such a plane was a traceback after training."""
    from bindiff.tasks.masks.panels import comparison_panel

    truth = np.zeros(shape, bool)
    truth[tuple(slice(0, max(1, s // 2)) for s in shape)] = True
    comparison_panel({"truth": truth, "model": ~truth}, tmp_path / "p.png", title="thin")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_warm_t_is_checked_against_t_only_when_a_warm_start_reads_it():
    """A one-step chain was refused for evaluations.completion.warm_t = 2, which no warm start read."""
    one_step = [*TINY, "diffusion.steps=1", "evaluations.completion.steps=1", "evaluations.generation.steps=1"]
    result = runner.invoke(app, ["show-config", str(RECIPES / "hippocampus_masks.yaml"), *one_step])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["show-config", str(RECIPES / "hippocampus_masks.yaml"), *one_step,
                                 "evaluations.completion.warm_start=[box]"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: evaluations.completion.warm_t = 2 exceeds diffusion.steps = 1"


@needs_hippo
def test_completion_scores_equal_the_written_masks_and_the_hidden_voxels(tiny_run):
    """Independent of the scorer: each method's Dice from its written NIfTI and the label file, and
    hidden_dice of the damaged input (hidden voxels read as background): 0 wherever anything of the
    mask was hidden (its whole-mask Dice below 1), 1 only where nothing was."""
    run_dir, _ = tiny_run
    cases = {c["case_id"]: c for c in json.loads((run_dir / "split" / "cases.json").read_text())["cases"]}
    for mode in ("box", "alternate_slices", "random_slices"):
        summary = json.loads((run_dir / "completion" / mode / "summary.json").read_text())
        for row in summary["per_case"]:
            truth = np.asarray(nib.load(cases[row["case_id"]]["label"]).dataobj) > 0  # region whole: labels 1, 2
            for name in ("input", "model"):
                written = np.asarray(nib.load(str(run_dir / "completion" / mode / "nifti"
                                                  / f"{row['case_id']}_{name}.nii.gz")).dataobj) > 0
                by_hand = 2 * (written & truth).sum() / (written.sum() + truth.sum())
                assert row[name]["dice"] == pytest.approx(by_hand, abs=1e-12), (mode, name)
            lost = row["input"]["dice"] < 1
            assert row["input"]["hidden_dice"] == (0.0 if lost else 1.0), (mode, row["case_id"])


@needs_hippo
def test_a_masks_model_read_back_draws_times_uniformly(tiny_run):
    """The recipe's time mixture (half the examples at low t) is a training choice, as documented."""
    from bindiff.tasks.masks.job import load_masks_run

    run_dir, _ = tiny_run
    loaded = load_masks_run(run_dir)
    assert loaded.config["timesteps"]["low_share"] == 0.5
    assert (loaded.model.low_time_share, loaded.model.top_time_share) == (0.0, 0.0)


@needs_hippo
def test_denoising_steps_beyond_its_time_are_refused_not_cut_short(tiny_run, tmp_path):
    """steps=1000 ran 3 steps and the summary said 1000 reverse steps."""
    run_dir, _ = tiny_run
    result = runner.invoke(app, ["masks", "denoising", str(run_dir), "evaluations.denoising.t=2",
                                 "evaluations.denoising.steps=3", "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and not (tmp_path / "d").exists(), result.output
    assert "error: evaluations.denoising.steps = 3 exceeds the denoising time t = 2" in result.output
    beyond = runner.invoke(app, ["show-config", str(RECIPES / "hippocampus_masks.yaml"), *TINY,
                                 "evaluations.denoising.steps=5"])  # T = 4: refused before any file is read
    assert beyond.exit_code == 2 and "evaluations.denoising.steps = 5 exceeds diffusion.steps = 4" in beyond.output


def test_a_checkpoint_name_is_best_or_last_never_a_path(tiny_run):
    """--checkpoint ../../x was joined into the path: any .pt file a relative path reached was loaded."""
    run_dir, _ = tiny_run
    for name in ("foo", "../../../x", "../best"):
        result = runner.invoke(app, ["masks", "denoising", str(run_dir), "--checkpoint", name])
        assert result.exit_code == 2 and "--checkpoint must be best or last" in result.output, (name, result.output)


def test_completion_with_nothing_to_hide_is_refused():
    """It trained and wrote "completion": {} without a word."""
    result = runner.invoke(app, ["show-config", str(RECIPES / "hippocampus_masks.yaml"), *TINY,
                                 "evaluations.completion.hide=[]"])
    assert result.exit_code == 2 and result.output.strip() == (
        "error: evaluations.completion.hide is empty: list a way to hide part of each mask (box, alternate_slices, "
        "random_slices), or leave completion out of evaluations.run")
    fine = runner.invoke(app, ["show-config", str(RECIPES / "hippocampus_masks.yaml"), *TINY,
                               "evaluations.completion.hide=[]", "evaluations.run=[denoising]"])
    assert fine.exit_code == 0, fine.output


@needs_hippo
def test_the_retrieval_baseline_copies_from_training_cases_only(tiny_run):
    """The completion baseline picks the best-agreeing mask of its bank: a held-out case in it would
    be copied onto itself."""
    from bindiff.tasks.masks.data import load_data
    from bindiff.tasks.masks.evaluation import EvalContext

    run_dir, _ = tiny_run
    split = json.loads((run_dir / "split" / "cases.json").read_text())["split"]
    data = load_data(run_dir / "split")
    bank = EvalContext(model=None, data=data, config={}, device="cpu", checkpoint={}).retrieval_bank
    assert len(bank) == len(split["train"])
    for case_id, grid in zip(split["train"], bank):
        np.testing.assert_array_equal(grid, data.records[case_id].grid)
    held_out = [data.records[i].grid for i in split["valid"] + split["test"]]
    assert not any(np.array_equal(grid, other) for grid in bank for other in held_out)


@needs_hippo
def test_a_masks_run_whose_data_folder_moved_is_evaluated_with_data_dir(tiny_run, tmp_path, monkeypatch):
    """`masks denoising --data-dir` finds a named data set that moved since the run (no such option before)."""
    import shutil

    run_dir, _ = tiny_run
    honest = runner.invoke(app, ["masks", "denoising", str(run_dir), "eval.panels=0", "--out", str(tmp_path / "a")])
    assert honest.exit_code == 0, honest.output
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved)
    cases = moved / "split" / "cases.json"
    cases.write_text(cases.read_text().replace(str(DATA / "msd_hippocampus"), "/gone/data/msd_hippocampus"))
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(tmp_path / "nowhere"))
    result = runner.invoke(app, ["masks", "denoising", str(moved), "eval.panels=0", "--data-dir", str(DATA),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    first, again = (json.loads((tmp_path / f / "denoising" / "summary.json").read_text()) for f in ("a", "b"))
    assert again["per_case"] == first["per_case"]


def test_one_files_runs_drawn_side_by_side_are_the_mean_of_its_runs():
    """`masks apply` draws a file's runs in one batch: the map is the mean over the runs, row by row,
    the same as drawing the tiled rows in one call and averaging them by hand."""
    import torch

    from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser
    from bindiff.tasks.masks.completion import inpainted_probabilities
    from bindiff.tasks.masks.evaluation import EvalContext

    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(6, hidden=[8]), BernoulliProcess.from_schedule("jsd", 3)).eval()
    config = {"evaluations": {"completion": {"samples": 3, "steps": None, "sample": "sample", "resample": 1}},
              "eval": {"batch_size": 4}, "output": {"progress": False}}
    ctx = EvalContext(model=model, data=None, config=config, device=torch.device("cpu"))
    rows = np.array([[1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0]], dtype=np.float32)
    known = np.array([[1, 1, 0, 0, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=np.float32)
    got = inpainted_probabilities(ctx, rows, known, torch.Generator().manual_seed(5), "t", side_by_side=True)
    generator = torch.Generator().manual_seed(5)  # by hand: 6 tiled rows (run r of row i is row 2r + i), batches of 4
    tiled, tiled_known = torch.from_numpy(np.tile(rows, (3, 1))), torch.from_numpy(np.tile(known, (3, 1))).bool()
    parts = [model.inpaint(tiled[a:a + 4], tiled_known[a:a + 4], generator=generator, mode="sample", decode="mean")
             for a in (0, 4)]
    expected = torch.cat(parts).numpy().reshape(3, 2, 6).mean(0)
    assert got.shape == (2, 6) and np.allclose(got, expected, rtol=0, atol=1e-7)
    assert np.array_equal(got[known.astype(bool)], rows[known.astype(bool)])  # the known voxels held


@needs_hippo
def test_apply_refuses_an_output_name_too_long_and_an_unknown_task_in_one_line(tiny_run, tmp_path):
    """A 300-byte --output ended `masks apply` with an OSError traceback (ENAMETOOLONG from stat); an
    unknown --task was named as the Python argument `task`."""
    run_dir, _ = tiny_run
    for extra, said in ((["--task", "denoising", "--output", str(tmp_path / ("a" * 300))],
                         "cannot write there (File name too long)"),
                        (["--task", "painting", "--output", str(tmp_path / "out")],
                         "error: apply: --task must be one of completion, denoising, got 'painting'")):
        result = runner.invoke(app, ["masks", "apply", str(run_dir), "--input", str(tmp_path), *extra])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, result.output
