"""Using a trained masks run on one's own label maps: complete or denoise each file, folder to folder.

Each input is read with the run's label preset and region (a label value outside the preset is
refused), brought to the training cases' voxel size when its own differs by more than 1 % on an
axis (``bindiff.adapters.masks.spacing``, nearest neighbour), placed on the run's grid the way
its training cases were, processed, mapped back to the input's own voxel grid and written as
NIfTI with the input's geometry: ``<output>/<case>.nii.gz``, and ``<output>/summary.json`` lists
every case with its settings. The folder appears only once every case is written.

Completion needs to know which voxels are unknown: ``unknown_label`` (a label value in the
input that marks them; those voxels are read as background) or ``unknown`` (a second file, or
a folder holding a file of the same name per input, whose non-zero voxels are unknown).
Completion changes the unknown voxels only; denoising every voxel the grid's window covers.
Voxels outside the window keep the input's values.
"""

from __future__ import annotations

import numbers
import time
from pathlib import Path

import numpy as np
import torch

from ...adapters.errors import DataError
from ...adapters.masks import (
    binarize,
    fit_transform,
    read_label_map,
    to_vectors,
    write_mask,
)
from ...adapters.masks import spacing as voxel_size
from ...adapters.masks.datasets import (
    LABEL_SUFFIXES,
    refuse_non_file,
    refuse_repeated_cases,
    volume_stem,
)
from ...adapters.masks.grid import bounding_box
from ...adapters.masks.io import require_one_grid
from ...config import RecipeError, argument
from ...files import refuse_a_long_name, staged_folder, write_json
from ...progress import warn
from .. import base
from .completion import inpainted_probabilities
from .denoising import denoise_time, denoised_probabilities
from .evaluation import EvalContext, grids_of
from .job import TASK, load_masks_run
from .panels import comparison_panel

APPLY_TASKS = ("completion", "denoising")
# what each task reads of the recipe here (the evaluations' other keys describe how they damage masks)
APPLY_KEYS = {"completion": ("evaluations.completion.steps", "evaluations.completion.sample",
                             "evaluations.completion.resample", "evaluations.completion.samples"),
              "denoising": ("evaluations.denoising.t", "evaluations.denoising.flip", "evaluations.denoising.steps")}
_OLD_NAMES = {"complete": "completion", "denoise": "denoising"}  # the verbs of earlier versions


def label_files(path: Path) -> list[Path]:
    """One label map, or every label map in a folder (sorted by name; hidden files, such as the
    ``._*`` a Mac leaves, are passed over); two of one case name are refused."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if not p.name.startswith(".") and p.name.lower().endswith(LABEL_SUFFIXES))
        for file in files:  # a broken link or a folder of that name: skipped, a case would go missing
            refuse_non_file(file, "label map")
        if not files:
            raise DataError(f"{path}: no label maps ({', '.join(LABEL_SUFFIXES)}) in this folder")
        refuse_repeated_cases([(_case_id(file), file) for file in files])
        return files
    raise DataError(f"{path}: no such file or folder")


def _case_id(path: Path) -> str:
    return volume_stem(path) or path.stem


def _unknown_voxels(path: Path, labels: np.ndarray, geometry, unknown: Path | None, unknown_label: int | None):
    if unknown_label is not None:
        hidden = labels == unknown_label
        if not hidden.any():
            raise DataError(f"{path}: no voxel holds the unknown label {unknown_label}; nothing to complete")
        if hidden.all():
            raise DataError(f"{path}: every voxel holds the unknown label {unknown_label}; nothing to complete from")
        return hidden
    source = unknown / path.name if unknown.is_dir() else unknown
    if not source.is_file():
        raise DataError(f"{source}: no unknown-voxel file for {path}")
    mask = read_label_map(source)
    require_one_grid(geometry, mask.geometry, path, source)
    hidden = mask.data != 0
    if not hidden.any() or hidden.all():  # as --unknown-label: nothing to complete, or nothing to complete from
        raise DataError(f"{source}: {'no' if not hidden.any() else 'every'} voxel is marked unknown; nothing to "
                        f"complete{'' if not hidden.any() else ' from'}")
    return hidden


# A label map whose voxels are more than this many times larger or smaller than the training's
# is resampled with a warning (as `segment` warns of scans unlike the training images).
RESAMPLING_WARNING = 2.0


@base.keeps_threads
def apply_run(run_dir: str | Path, task: str, input_path: str | Path, output_dir: str | Path,
              unknown: str | Path | None = None, unknown_label: int | None = None, overrides: list[str] = (),
              checkpoint: str = "best", device=None, panels: int = 20) -> dict:
    """Complete or denoise every label map of ``input_path``; writes NIfTI files and summary.json,
    and PNG panels (the input and the result in three planes) of the first ``panels`` files.
    ``device``: where the model runs (default: the run's train.device)."""
    if unknown_label is not None and (isinstance(unknown_label, bool)
                                      or not isinstance(unknown_label, numbers.Integral)):  # "9" matched no voxel
        raise TypeError(f"unknown_label must be an integer label value, got {unknown_label!r}")
    panels = base.panel_count(panels)
    task = _OLD_NAMES.get(task, task)
    if task not in APPLY_TASKS:
        raise RecipeError(f"apply: {argument('task', '--task')} must be one of {', '.join(APPLY_TASKS)}, got {task!r}")
    if task == "completion" and (unknown is None) == (unknown_label is None):
        raise RecipeError(f"apply {argument('task=completion', '--task completion')}: name the unknown voxels with "
                          f"exactly one of {argument('unknown', '--unknown FILE|FOLDER')} or "
                          f"{argument('unknown_label', '--unknown-label N')}")
    if task == "denoising" and (unknown is not None or unknown_label is not None):
        raise RecipeError(f"apply {argument('task=denoising', '--task denoising')}: it may change every voxel; "
                          f"{argument('unknown', '--unknown')} and {argument('unknown_label', '--unknown-label')} are "
                          "for completion")
    if unknown_label is not None and unknown_label == 0:
        raise RecipeError(f"apply {argument('unknown_label=0', '--unknown-label 0')}: 0 is the background; mark the "
                          "unknown voxels with a value the label maps use for nothing else")
    output_dir = Path(output_dir)
    refuse_a_long_name(output_dir)  # before exists(), which raises on a name the file system cannot hold
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir}: exists and is not an empty folder; bindiff never overwrites")
    files = label_files(Path(input_path))
    config, data, model, info, payload = load_masks_run(run_dir, checkpoint=checkpoint, device=device)
    config = base.rescoring_config(TASK, config, overrides, allowed=(*APPLY_KEYS[task], "eval.batch_size",
                                                                     "output.progress"),
                                   command=f"masks apply --task {task}")
    TASK.check_rescoring(config, model, payload)  # steps and times within the model's T
    if unknown_label is not None and unknown_label in data.preset.allowed:
        raise RecipeError(f"apply {argument('unknown_label=', '--unknown-label ')}{unknown_label}: a label of preset "
                          f"{data.preset.name!r} "
                          f"({', '.join(map(str, sorted(data.preset.allowed)))}); mark the unknown voxels with "
                          "another value")
    if data.spec.crop == "brain":
        raise RecipeError(f"{run_dir}: the run places masks on its grid around the brain (grid.crop: brain), "
                          "which needs each case's brain mask; apply works on runs with grid.crop region or none")
    base.apply_threads(config)
    ctx = EvalContext(model=model, data=data, config=config, device=base.device_of(model), checkpoint=info)
    spacing = voxel_size.training_spacing([r.geometry.spacing for r in data.part("train")])
    started = time.perf_counter()
    cases = []
    with staged_folder(output_dir) as staging:
        for i, path in enumerate(files):
            cases.append(_apply_one(ctx, task, path, staging, output_dir, None if unknown is None else Path(unknown),
                                    unknown_label, spacing, panel=i < panels))
        settings = {**config["evaluations"][task], "eval_batch_size": config["eval"]["batch_size"]}  # decides the draws
        if task == "denoising":  # the time a null t resolves to, as the masks evaluation reports it
            settings["t_used"] = settings["t"] or denoise_time(model, settings["flip"])
        outside = {case["case_id"]: case["outside_grid_voxels"] for case in cases if case["outside_grid_voxels"]}
        if outside:
            worst = max(outside, key=outside.get)
            warn(f"{input_path}: the run's grid window misses {sum(outside.values())} region voxel(s) of "
                f"{len(outside)} file(s) (most: {worst}, {outside[worst]}); they are written as they came "
                "(outside_grid_voxels in summary.json)")
        unseen = {case["case_id"]: case["unknown_outside_grid_voxels"] for case in cases
                  if case.get("unknown_outside_grid_voxels")}
        if unseen:  # the model never saw them: nothing was completed there
            worst = max(unseen, key=unseen.get)
            warn(f"{input_path}: {sum(unseen.values())} unknown voxel(s) of {len(unseen)} file(s) lie outside "
                f"the run's grid window (most: {worst}, {unseen[worst]}); they are written as background "
                "(unknown_outside_grid_voxels in summary.json)")
        summary = {"task": task, "run": str(run_dir), "checkpoint": info, "input": str(input_path),
                   "settings": settings, "preset": data.preset.name, "region": data.region,
                   "training_spacing_mm": list(spacing), "seconds": round(time.perf_counter() - started, 2),
                   "cases": cases}
        write_json(staging / "summary.json", summary)
    return summary


def _apply_one(ctx: EvalContext, task: str, path: Path, staging: Path, output_dir: Path, unknown: Path | None,
               unknown_label: int | None, spacing, panel: bool = False) -> dict:
    data = ctx.data
    volume = read_label_map(path)
    labels = np.asarray(volume.data)
    hidden = None
    if task == "completion":
        hidden = _unknown_voxels(path, labels, volume.geometry, unknown, unknown_label)
        labels = np.where(hidden, 0, labels)
    mask = binarize(labels, data.preset, data.region, source=path)
    # the model works on voxels of the size it learned; `work_*` are the file's on those voxels
    resampled = voxel_size.needs_resampling(volume.geometry.spacing, spacing)
    ratio = np.asarray(volume.geometry.spacing, dtype=float) / np.asarray(spacing, dtype=float)
    if ratio.max() > RESAMPLING_WARNING or ratio.min() < 1 / RESAMPLING_WARNING:  # the mask is still written
        warn(f"{path}: voxels of {' x '.join(f'{v:.3g}' for v in volume.geometry.spacing)} mm, the run "
            f"learned on {' x '.join(f'{v:.3g}' for v in spacing)} mm; resampled that far there and back, the "
            "mask's outline changes with the voxel size as much as with the model")
    work_mask, work_hidden = mask, hidden
    if resampled:
        shape = voxel_size.resampled_shape(mask.shape, volume.geometry.spacing, spacing, str(path))
        if hidden is None:
            work_mask = voxel_size.resample(mask, shape, order=0)
        else:  # a voxel of the training size is known where a quarter of it is known in the file: the
            # nearest file voxel alone made every voxel unknown under unknown slices thinner than it
            known_share = voxel_size.area_share(~hidden, shape)
            work_hidden = known_share < 0.25
            inside = voxel_size.area_share(mask, shape)  # the hidden voxels are not in the mask
            work_mask = (inside >= 0.5 * known_share) & ~work_hidden  # most of its known part in the region
    transform = fit_transform(work_mask.shape, data.spec, roi=_window_roi(work_mask, work_hidden), source=str(path))
    grid = transform.to_grid(work_mask.astype(np.uint8))
    valid = transform.valid()
    rows = to_vectors(np.ascontiguousarray(grid), data.spec).astype(np.float32)
    seed = ctx.seed("apply", task, _case_id(path))
    generator = torch.Generator(device=ctx.device).manual_seed(seed)
    if task == "completion":
        known_grid = ~transform.to_grid(work_hidden.astype(np.uint8)).astype(bool)
        # the padding beyond the image's edge is known to be empty, as in training and evaluation
        known_rows = to_vectors(np.ascontiguousarray((known_grid | ~valid).astype(np.uint8)), data.spec)
        probs = inpainted_probabilities(ctx, rows, known_rows.astype(np.float32), generator, f"apply {path.name}",
                                        side_by_side=True)
        filled = grids_of(data, (probs >= 0.5).astype(np.uint8), [len(rows)], [transform.grid_shape])[0]
        out_grid = np.where(known_grid, grid, filled * valid).astype(np.uint8)
    else:
        t, probs = denoised_probabilities(ctx, rows, f"apply {path.name}")
        out_grid = (grids_of(data, (probs >= 0.5).astype(np.uint8), [len(rows)], [transform.grid_shape])[0]
                    * valid).astype(np.uint8)
    covered = transform.from_grid(np.ones(transform.grid_shape, dtype=np.uint8)).astype(bool)
    processed = transform.from_grid(out_grid).astype(bool)
    if resampled:  # back onto the file's own voxels
        covered, processed = (voxel_size.resample(v, mask.shape, order=0) for v in (covered, processed))
    changed = covered if hidden is None else covered & hidden  # completion keeps every known voxel as it was
    result = np.where(changed, processed, mask)
    name = f"{_case_id(path)}.nii.gz"
    write_mask(result, volume.geometry, staging / name)
    row = {"case_id": _case_id(path), "input": str(path), "output": str(output_dir / name), "seed": seed,
           "input_voxels": int(mask.sum()), "output_voxels": int(result.sum()),
           "outside_grid_voxels": int((mask & ~covered).sum()),
           "spacing_mm": list(volume.geometry.spacing), "resampled": resampled}
    if hidden is not None:
        row["unknown_voxels"] = int(hidden.sum())
        row["unknown_outside_grid_voxels"] = int((hidden & ~covered).sum())
    if panel:  # on the file's own voxels, as written; the unknown voxels tinted
        row["panel"] = str(output_dir / "panels" / f"{_case_id(path)}.png")
        comparison_panel({"input": mask, task: result}, staging / "panels" / f"{_case_id(path)}.png",
                         title=f"{_case_id(path)}: {task}", known=None if hidden is None else ~hidden,
                         reference="the input")
    return row


# Parts of a mask this far (voxels) beyond the box of its large parts are strays, not anatomy: the
# 14 small parts (1-4 voxels) of the 260 MSD hippocampus label maps lie within 1 voxel of it.
_STRAY_DISTANCE = 5


def _window_roi(mask: np.ndarray, hidden: np.ndarray | None) -> np.ndarray:
    """What the grid window is placed on, as training placed it on a clean region: for completion
    the region and the unknown voxels; for denoising the region without its small parts (under a
    tenth of the largest) that lie more than ``_STRAY_DISTANCE`` voxels beyond the box of the
    large ones, so that the stray voxels denoising is for do not pull the window off the region.
    A clean region keeps every part, and the window training gave it."""
    if hidden is not None:
        return mask | hidden
    from scipy import ndimage

    parts, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(parts.ravel())[1:]
    large = np.isin(parts, 1 + np.flatnonzero(sizes >= 0.1 * sizes.max()))
    lo, hi = bounding_box(large)
    near = np.zeros(mask.shape, dtype=bool)
    near[tuple(slice(max(a - _STRAY_DISTANCE, 0), b + _STRAY_DISTANCE) for a, b in zip(lo, hi))] = True
    return np.isin(parts, np.unique(parts[near & mask]))  # every part with a voxel near the large ones
