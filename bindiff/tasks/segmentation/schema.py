"""Recipe sections of the ``segmentation`` task. The data, labels, grid, split and timesteps are the
masks task's sections (one definition each); evaluation and sampling are this task's own."""

from __future__ import annotations

from typing import Any

from ...config.keys import at_least_one, fraction, key
from ..masks.schema import SECTIONS as MASKS
from .decision import DECISIONS


def _plain_stem(name) -> bool:
    """A file name beside the label map, without folder or image suffix."""
    return (isinstance(name, str) and bool(name) and not name.startswith(".") and "/" not in name
            and "\\" not in name and not name.lower().endswith((".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")))


# Shared keys whose default differs here: the image is read through the U-Net's extra channels.
COMMON_DEFAULTS: dict[str, Any] = {"denoiser.name": "unet"}

SECTIONS: dict[str, Any] = {
    **{name: MASKS[name] for name in ("data", "labels", "grid", "split", "timesteps")},
    "images": {
        "channels": key((list, type(None)), None, "image files beside each label map, one per channel, by name "
                        "without suffix (e.g. [Flair_subtrMeanDivStd, T1c_subtrMeanDivStd]); null: the data set's "
                        "one image per case (MSD: images/<case>)",
                        (lambda v: v is None or (bool(v) and all(_plain_stem(n) for n in v) and len(set(v)) == len(v)),
                         "must be null or a non-empty list of distinct file names without folder or suffix "
                         "(Flair_subtrMeanDivStd, not ../x/Flair or Flair.nii.gz)")),
        "spacing": key((str, list, type(None)), None, "voxel size (mm) every case is resampled to before it is placed "
                       "on the grid, as nnU-Net does: median (the training cases' median per axis), [x, y, z], or "
                       "null (read as stored; a pad grid given cases of several voxel sizes warns)",
                       (lambda v: v is None or v == "median" or (isinstance(v, list) and len(v) == 3 and all(
                           isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in v)),
                        "must be null, 'median' or three positive numbers [x, y, z] in mm")),
        "brain": key(bool, False, "place the grid and z-score each channel inside the case's brain mask (needs "
                     "one per case, and `bindiff segment --brain`); false: inside the image's non-zero voxels"),
    },
    "eval": {
        "select": key(str, "dice", "validation metric for the best checkpoint: dice (one denoiser call from noise)",
                      (lambda v: v == "dice", "must be 'dice'")),
        "batch_size": key(int, 8, "cases passed through the denoiser at once", at_least_one),
        "part": key(str, "test", "cases the evaluation runs on: test or valid",
                    (lambda v: v in ("test", "valid"), "must be 'test' or 'valid'")),
        "max_cases": key((int, type(None)), None, "evaluate the first N cases only; null: all", at_least_one),
        "nifti": key(bool, True, "write each case's mask and uncertainty map as NIfTI in the image's geometry"),
        "panels": key(int, 4, "cases drawn as PNG panels (image, truth, each model's mask, uncertainty); 0: none",
                      (lambda v: v >= 0, "must be >= 0")),
    },
    "baseline": {
        "unet": key(bool, True, "also train the deterministic U-Net (the same backbone, image → mask) in the run"),
        "dice_weight": key(float, 1.0, "weight of the soft Dice term beside binary cross-entropy in its loss",
                           (lambda v: v >= 0, "must be >= 0")),
    },
    "segmentation": {
        "samples": key(int, 4, "reverse runs from noise per case, averaged into the probability map", at_least_one),
        "steps": key((int, type(None)), None, "reverse steps of each run; null: all T", at_least_one),
        "average": key(str, "final", "what each run adds to the map: final (p̂(x_0) of its last step) or trajectory "
                       "(the mean of p̂(x_0) over its steps: the same map with less Monte Carlo noise)",
                       (lambda v: v in ("final", "trajectory"), "must be 'final' or 'trajectory'")),
        "decision": key(str, "threshold", "how each case's probability map becomes its mask, for every model: "
                        "threshold (p ≥ segmentation.threshold) or expected_dice (the mask of highest expected Dice "
                        "under the map: its most probable voxels, as many as maximise it)",
                        (lambda v: v in DECISIONS, "must be 'threshold' or 'expected_dice'")),
        "threshold": key(float, 0.5, "probability at which a voxel is foreground (decision: threshold)", fraction),
        "calibration_bins": key(int, 10, "equal-width bins of the expected calibration error", at_least_one),
        "uncertainty": key(str, "entropy", "per-voxel uncertainty: entropy (of the mean probability, bits) or "
                           "variance (across the samples; needs samples >= 2)",
                           (lambda v: v in ("entropy", "variance"), "must be 'entropy' or 'variance'")),
    },
}
