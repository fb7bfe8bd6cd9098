"""The segmentation task end to end on a few real MSD hippocampus cases (tiny grid, two epochs):
the run directory, the per-case summary, the NIfTI outputs, and that sampling reads no label."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
runner = CliRunner()
pytestmark = pytest.mark.skipif(not (DATA / "msd_hippocampus" / "images").is_dir(), reason="MSD images not found")

TINY = ["data.max_cases=8", "split.n_valid=2", "split.n_test=2", "grid.mode=resample", "grid.shape=[12,16,12]",
        "denoiser.params.channels=[4,8]", "denoiser.params.patch=1", "denoiser.params.bf16=false",
        "train.epochs=2", "train.warmup_steps=0", "diffusion.steps=4", "segmentation.samples=2",
        "output.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"), *TINY,
                                 f"output.root={root}", "--data-dir", str(DATA)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "hippocampus_segmentation").iterdir()
    return run_dir


def test_a_run_segments_its_test_cases_with_calibration_and_uncertainty(run):
    metrics = json.loads((run / "metrics.json").read_text())
    means = metrics["test"]["diffusion"]
    assert {"dice", "hd95_mm", "ece", "brier", "error_auroc"} <= set(means)
    assert 0 <= means["dice"] <= 1 and 0 <= means["ece"] <= 1 and 0 <= means["brier"] <= 1
    summary = json.loads((run / "segmentation" / "summary.json").read_text())
    split = json.loads((run / "split" / "cases.json").read_text())["split"]
    assert sorted(r["case_id"] for r in summary["per_case"]) == sorted(split["test"])
    assert summary["mean"]["diffusion"]["dice"] == pytest.approx(np.mean([r["diffusion"]["dice"]
                                                                          for r in summary["per_case"]]))
    for case_id in split["test"]:
        image = nib.load(str(DATA / "msd_hippocampus" / "images" / f"{case_id}.nii.gz"))
        for kind in ("mask", "uncertainty"):
            written = nib.load(str(run / "segmentation" / "nifti" / f"{case_id}_{kind}.nii.gz"))
            assert written.shape == image.shape and np.allclose(written.affine, image.affine, atol=1e-5)
    uncertainty = np.asarray(nib.load(str(run / "segmentation" / "nifti" / f"{split['test'][0]}_uncertainty.nii.gz"))
                             .dataobj)
    assert uncertainty.min() >= 0 and uncertainty.max() <= 1  # entropy in bits


def test_sampling_reads_no_label(run, monkeypatch):
    """The probability maps come from the images alone: with every label read refused, they are unchanged."""
    import torch

    from bindiff.tasks import base
    from bindiff.tasks.segmentation import job
    from bindiff.tasks.segmentation.data import load_data

    config, _, model = base.load_trained(job.TASK, run)
    data = load_data(run / "split", config)
    images = torch.from_numpy(data.images("test"))
    before = job.sample_probabilities(model, images, config["segmentation"], torch.Generator().manual_seed(3), 4)

    def refuse(*args, **kwargs):
        raise AssertionError("a label was read while sampling")

    monkeypatch.setattr("bindiff.adapters.masks.io.read_label_map", refuse)
    monkeypatch.setattr("bindiff.adapters.masks.cases.read_label_map", refuse)
    after = job.sample_probabilities(model, images, config["segmentation"], torch.Generator().manual_seed(3), 4)
    np.testing.assert_array_equal(before[0], after[0])
