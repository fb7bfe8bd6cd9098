"""Scoring a segmentation: one model's metrics on one case (overlap and surface on the case's own
voxels, calibration and error detection on the grid) and their means over the cases. The label is
read here, to score, never to segment."""

from __future__ import annotations

import numpy as np

from ...metrics.calibration import brier_score, error_detection_auroc, expected_calibration_error
from ...metrics.segmentation import segmentation_metrics, summarize
from .decision import foreground
from .placement import on_scan_voxels


def score_case(prob: np.ndarray, uncertainty: np.ndarray, record, truth: np.ndarray,
               cfg: dict) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """One model's metrics on one case from its grid probabilities; also returns its mask on the
    model's grid (flat), and its mask and uncertainty on the case's own voxels.

    ``truth`` is the label volume (scoring only). Overlap and surface metrics are taken on the
    case's own voxels (a case resampled to ``images.spacing`` has its maps brought back there
    first); calibration on the grid voxels inside the image, against the label on the grid.
    """
    transform = record.image.transform
    valid = transform.valid().reshape(-1)
    prob, uncertainty = prob * valid, uncertainty * valid
    grid_mask = foreground(prob, cfg)
    volume, _, uncertainty_volume = on_scan_voxels(prob, uncertainty, transform, cfg, record.scan_shape)
    truth_grid = record.mask.reshape(-1).astype(bool)[valid]
    p, u = prob[valid], uncertainty[valid]
    return {**segmentation_metrics(volume, truth, record.geometry.spacing),
            "ece": expected_calibration_error(p, truth_grid, cfg["calibration_bins"]),
            "brier": brier_score(p, truth_grid),
            "error_auroc": error_detection_auroc(u, grid_mask[valid] != truth_grid),
            "mean_uncertainty": float(u.mean())}, grid_mask, volume, uncertainty_volume


PAIRED = ("dice", "iou", "hd95_mm", "ece", "brier")  # per-case metrics compared between the two models


def case_means(rows: list[dict]) -> dict:
    """Means over the cases of one model's per-case rows; a NaN (error AUROC of a case with no wrong
    voxel) leaves its case out of that mean, and ``error_auroc_cases`` counts the cases it is defined on."""
    means = summarize(rows)
    for key in ("ece", "brier", "error_auroc", "mean_uncertainty"):
        values = [r[key] for r in rows if not np.isnan(r[key])]
        means[key] = float(np.mean(values)) if values else float("nan")
    means["error_auroc_cases"] = sum(not np.isnan(r["error_auroc"]) for r in rows)  # the cases it is defined on
    return means
