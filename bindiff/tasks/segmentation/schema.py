"""Recipe sections of the ``segmentation`` task. The data, labels, grid, split and timesteps are the
masks task's sections (one definition each); evaluation and sampling are this task's own."""

from __future__ import annotations

from typing import Any

from ...config.keys import at_least_one, fraction, key
from ..masks.schema import SECTIONS as MASKS

SECTIONS: dict[str, Any] = {
    **{name: MASKS[name] for name in ("data", "labels", "grid", "split", "timesteps")},
    "eval": {
        "select": key(str, "dice", "validation metric for the best checkpoint: dice (one denoiser call from noise)",
                      (lambda v: v == "dice", "must be 'dice'")),
        "batch_size": key(int, 8, "cases passed through the denoiser at once", at_least_one),
        "part": key(str, "test", "cases the evaluation runs on: test or valid",
                    (lambda v: v in ("test", "valid"), "must be 'test' or 'valid'")),
        "max_cases": key((int, type(None)), None, "evaluate the first N cases only; null: all", at_least_one),
        "nifti": key(bool, True, "write each case's mask and uncertainty map as NIfTI in the image's geometry"),
    },
    "segmentation": {
        "samples": key(int, 4, "reverse runs from noise per case, averaged into the probability map", at_least_one),
        "steps": key((int, type(None)), None, "reverse steps of each run; null: all T", at_least_one),
        "threshold": key(float, 0.5, "probability at which a voxel is foreground", fraction),
        "calibration_bins": key(int, 10, "equal-width bins of the expected calibration error", at_least_one),
        "uncertainty": key(str, "entropy", "per-voxel uncertainty: entropy (of the mean probability, bits) or "
                           "variance (across the samples)",
                           (lambda v: v in ("entropy", "variance"), "must be 'entropy' or 'variance'")),
    },
}
