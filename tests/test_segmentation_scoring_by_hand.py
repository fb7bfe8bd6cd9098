"""score_case (the run's per-case Dice, ECE, Brier and error AUROC) against values worked out by
hand on synthetic ball cases read as stored: no training, no helper of the code in the expected values."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bindiff.adapters.masks import load_region
from bindiff.tasks.masks.data import resolve_preset
from bindiff.tasks.segmentation.data import prepare_data
from bindiff.tasks.segmentation.evaluation import score_case
from test_segmentation_spacing import SPACINGS, _ball_case, _config


@pytest.fixture(scope="module")
def balls(tmp_path_factory):
    root = tmp_path_factory.mktemp("balls")
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    for i, spacing in enumerate(SPACINGS):
        image, label = _ball_case(spacing, i)
        nib.save(nib.Nifti1Image(image, np.diag([*spacing, 1.0])), str(root / "images" / f"ball_{i:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.diag([*spacing, 1.0])), str(root / "labels" / f"ball_{i:02d}.nii.gz"))
    return root


def test_score_case_equals_a_hand_computation(balls):
    config = _config(balls)  # read as stored: the grid window is a crop/pad of the scan's own voxels
    data = prepare_data(config)
    preset = resolve_preset(config, data.layout)
    cfg = {**config["segmentation"], "calibration_bins": 10, "decision": "threshold", "threshold": 0.5}
    for record in data.part("test"):
        truth, _ = load_region(record.case, preset, data.region)
        label = np.asarray(nib.load(str(record.case.label)).dataobj) > 0
        n = int(label.sum())
        valid = record.image.transform.valid().reshape(-1)
        on = record.mask.reshape(-1).astype(bool)
        assert int(on.sum()) == n and int(valid.sum()) > n  # the whole ball lies inside the window
        v = int(valid.sum())
        wrong = np.flatnonzero(on & valid)[:20]  # 20 ball voxels the model misses (p = 0.3)
        prob = np.where(on, 0.9, 0.1)
        prob[wrong] = 0.3
        uncertainty = np.zeros(prob.size)
        uncertainty[wrong] = 1.0  # certain everywhere but where it is wrong
        row, *_ = score_case(prob, uncertainty, record, truth, cfg)
        # Dice on the scan's own voxels: 20 of n found voxels missing, none added
        assert row["dice"] == pytest.approx(2 * (n - 20) / (2 * n - 20), abs=1e-12)
        # Brier: 0.1² on every valid voxel but the 20 misses, 0.7² there
        assert row["brier"] == pytest.approx(((v - 20) * 0.01 + 20 * 0.49) / v, abs=1e-12)
        # ECE, 10 bins: 0.1 (v − n voxels, none true), 0.3 (20, all true), 0.9 (n − 20, all true)
        assert row["ece"] == pytest.approx(((v - n) * 0.1 + 20 * 0.7 + (n - 20) * 0.1) / v, abs=1e-12)
        # the uncertainty is 1 exactly on the wrongly decided voxels: a perfect error detector
        assert row["error_auroc"] == pytest.approx(1.0)
        assert row["mean_uncertainty"] == pytest.approx(20 / v)
        # a reversed uncertainty (0 where wrong, 1 elsewhere) detects nothing: AUROC 0
        reversed_row, *_ = score_case(prob, 1 - uncertainty, record, truth, cfg)
        assert reversed_row["error_auroc"] == pytest.approx(0.0)
