"""Recipe sections of the ``masks`` task: binary segmentation masks as bit vectors.

``bindiff.config.schema`` lists them in ``TASKS["masks"]``; a recipe with ``task: masks`` gets these
sections next to the common ones (diffusion, denoiser, train, output).
"""

from __future__ import annotations

from typing import Any

from ...config.keys import at_least_one, fraction, key, non_negative


def _one_of(*values: str):
    return (lambda v: v in values, "must be one of " + ", ".join(str(v) for v in values))


def _list_of(values: tuple[str, ...]):
    return (lambda v: all(x in values for x in v) and len(set(v)) == len(v),
            "must list distinct values among " + ", ".join(values))


_grid_shape = (lambda v: len(v) in (2, 3) and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v),
               "must list 2 or 3 positive integers")
_axes = (lambda v: all(type(a) is int and a in (0, 1, 2) for a in v) and len(set(v)) == len(v),
         "must list distinct axes among 0, 1, 2")  # 1.0 and true passed `in`; [0, 0] mirrored twice
_int_list = (lambda v: all(isinstance(x, int) and not isinstance(x, bool) for x in v), "must list integers")
_count_or_fraction = (lambda v: (isinstance(v, int) and v >= 1) or (isinstance(v, float) and 0 < v < 1),
                      "must be a count >= 1 or a fraction in (0, 1)")
_axis = _one_of(0, 1, 2)

SECTIONS: dict[str, Any] = {
    "data": {
        "dataset": key(str, "msd_hippocampus",
                       "msd_hippocampus or brats2015_deepmedic (found under $BINDIFF_DATA_DIR) or a folder"),
        "layout": key(str, "auto", "auto, msd (labels/), brats2015 (OTMultiClass), brats2021 (*_seg) or files",
                      _one_of("auto", "msd", "brats2015", "brats2021", "files")),
        "max_cases": key((int, type(None)), None, "use only the first N cases in sorted order; null: every case",
                         at_least_one),
    },
    "labels": {
        "preset": key(str, "auto", "auto (the layout's), brats2015, brats2021, brats2023, msd_hippocampus or custom",
                      _one_of("auto", "brats2015", "brats2021", "brats2023", "msd_hippocampus", "custom")),
        "region": key(str, "whole", "the preset's region: whole, core, enhancing (BraTS); whole, anterior, "
                      "posterior (hippocampus); ignored by custom"),
        "allowed": key((list, type(None)), None, "custom: every label value a file may hold (0 is implied)", _int_list),
        "foreground": key((list, type(None)), None, "custom: the label values that form the mask", _int_list),
    },
    "grid": {
        "shape": key(list, [32, 48, 40], "grid sides: 3 for 3-D masks, 2 for 2-D slices along slice_axis", _grid_shape),
        "mode": key(str, "pad", "pad (a window of the grid's size, no resampling: cases of other voxel sizes get a "
                    "warning) or resample (nearest neighbour)",
                    _one_of("pad", "resample")),
        "crop": key(str, "region", "window around: region (the mask), brain (brain mask) or none (whole volume)",
                    _one_of("region", "brain", "none")),
        "margin": key(int, 2, "voxels added on each side of the bounding box", non_negative),
        "slice_axis": key(int, 2, "canonical RAS axis of 2-D slices: 0 sagittal, 1 coronal, 2 axial", _axis),
    },
    "split": {
        "n_valid": key((int, float), 10, "validation cases: a count, or a fraction of the cases", _count_or_fraction),
        "n_test": key((int, float), 50, "held-out test cases: a count, or a fraction of the cases", _count_or_fraction),
    },
    "augment": {
        "flip_axes": key(list, [], "add a mirrored copy of every training case along each of these axes (opt-in: "
                          "a mirrored hippocampus is anatomy the data never holds)", _axes),
        "shifts": key(int, 0, "add copies of every training case shifted by ± this many voxels per axis",
                      non_negative),
    },
    "timesteps": {
        "low_share": key((float, int), 0.0, "share of training examples whose time is drawn from 1..low_max instead "
                         "of 1..T (denoising and the last reverse steps happen there)",
                         (lambda v: 0 <= v <= 1, "must lie in [0, 1]")),
        "low_max": key(int, 2, "largest time of the low-time draws", at_least_one),
        "top_share": key((float, int), 0.0, "share of training examples at t = T, where sampling from noise finds "
                         "the whole mask from the condition alone (low_share + top_share at most 1)",
                         (lambda v: 0 <= v <= 1, "must lie in [0, 1]")),
    },
    "eval": {
        "select": key(str, "denoise_dice", "validation metric for the best checkpoint: denoise_dice or neg_loss",
                      _one_of("denoise_dice", "neg_loss")),
        "batch_size": key(int, 8, "vectors passed through the denoiser at once", at_least_one),
        "part": key(str, "test", "cases the evaluations run on: test (held out) or valid (to choose inference settings "
                    "without reading the test cases)", _one_of("test", "valid")),
        "max_cases": key((int, type(None)), None, "evaluate the first N test cases only; null: all", at_least_one),
        "panels": key(int, 3, "cases drawn as PNG panels per task", non_negative),
        "nifti": key(bool, True, "write every result as NIfTI in the geometry of its input"),
    },
    "evaluations": {
        "run": key(list, ["completion", "denoising", "generation"], "evaluations run after training",
                   _list_of(("completion", "denoising", "generation"))),
        "completion": {
            "hide": key(list, ["box", "alternate_slices", "random_slices"], "ways to hide part of each mask",
                        _list_of(("box", "alternate_slices", "random_slices"))),
            "box_fraction": key(float, 0.5, "box side as a share of the mask's extent per axis", fraction),
            "box_position": key(str, "center", "center of the mask, or random inside its bounding box",
                                _one_of("center", "random")),
            "slice_fraction": key(float, 0.5, "random_slices: share of the mask's slices hidden", fraction),
            "axis": key(int, 2, "canonical axis of hidden slices: 2 = axial", _axis),
            "warm_start": key(list, [], "modes inpainted from the interpolation noised to time warm_t instead "
                              "of from noise (SDEdit's warm start)", _list_of(("box", "alternate_slices", "random_slices"))),
            "warm_t": key(int, 2, "time to which the interpolation is noised for a warm start", at_least_one),
            "steps": key((int, type(None)), None, "reverse steps of the inpainting; null: every step", at_least_one),
            "sample": key(str, "mean", "reverse states as probabilities (mean) or bits (sample)",
                          _one_of("mean", "sample")),
            "samples": key(int, 1, "inpainting runs per case, averaged before thresholding", at_least_one),
            "resample": key(int, 1, "RePaint resampling: each reverse step taken this many times, going back by "
                            "q(x_t | x_s) in between; 1: none", at_least_one),
            "closing_radius": key(int, 2, "ball radius (voxels) of the morphological-closing baseline", at_least_one),
        },
        "denoising": {
            "flip": key(float, 0.05, "share of the voxels flipped (at most 0.5: MasksTask.check_recipe)", fraction),
            "t": key((int, type(None)), None, "time shown to the denoiser; null: the step whose flip rate "
                     "(1 − ᾱ_t)/2 is closest to flip", at_least_one),
            "steps": key(int, 1, "reverse steps from t; 1: one denoiser call", at_least_one),
            "median_size": key(int, 3, "side of the median-filter baseline's cube (1 to 15 voxels)",
                               (lambda v: 1 <= v <= 15, "must lie in 1..15 (a side in voxels)")),
        },
        "generation": {
            "samples": key(int, 16, "masks sampled from noise", at_least_one),
            "steps": key((int, type(None)), None, "reverse steps; null: every step", at_least_one),
            "resample": key(int, 1, "corrector steps: each reverse step taken this many times, going back by "
                            "q(x_t | x_s) in between; 1: none", at_least_one),
            "volume": key(str, "free", "free: the chain's own volumes | training: each sample's volume drawn "
                          "from the training masks (stratified over the batch) and held by tilting every step's p̂ to it", _one_of("free", "training")),
            "mirror_axis": key(int, 0, "axis of the mirror image the orientation check compares with: "
                               "0 = left-right", _axis),
        },
    },
}
