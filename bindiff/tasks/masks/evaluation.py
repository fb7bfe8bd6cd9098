"""What the three evaluations of a trained mask model share: the context they run in, running
the model over many cases, scoring on each case's own voxel grid, and the written results.

The evaluations themselves, each with its baselines:

- completion: hide part of each mask (``box``, ``alternate_slices`` or ``random_slices``) and
  fill it by inpainting from noise (``BinomialDiffusion.inpaint``: visible voxels held fixed).
  Baselines: the damaged input itself, shape-based interpolation across the hidden voxels,
  retrieval of the best-agreeing training mask, and for a box also morphological closing.
- denoising: flip a share of the voxels and recover the mask with the denoiser at the matching
  time. Baselines: the noisy input, and a median filter.
- generation: sample masks from noise and measure how plausible they are: the share with one
  connected component (26-connectivity), the volume distribution against real masks, and
  each sample's Dice to its nearest training mask (a copy would score 1; held-out real
  masks are scored the same way for reference).

(``completion.py``, ``denoising.py``, ``generation.py``). Every result is mapped back to the case's own voxel grid and scored there against the original
mask (``bindiff.metrics.segmentation``, spacing-aware). Every random draw comes from a
generator seeded from the recipe's seed, the task and the mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.masks import from_vectors, load_case, to_vectors, write_mask
from ...core import BinomialDiffusion
from ...progress import log, log_lines, progress_disabled
from ...metrics.segmentation import DEFINITIONS, EMPTY_RULE, segmentation_metrics, summarize
from ..base import derived_seed
from .data import CaseRecord, MaskData


@dataclass
class EvalContext:
    model: BinomialDiffusion
    data: MaskData
    config: dict
    device: torch.device
    checkpoint: dict | None = None  # which checkpoint the model came from (epoch, metric)

    @property
    def progress_disabled(self) -> bool | None:
        return progress_disabled(self.config)

    def seed(self, *parts: str) -> int:
        """A seed for one task and mode, derived from the recipe's seed (stable across runs)."""
        return derived_seed(self.config["seed"], *parts)

    @cached_property
    def retrieval_bank(self) -> np.ndarray:
        """The training masks on the grid, (n, *grid): what the retrieval baseline copies from; for a
        run on 2-D slices, whose cases hold different numbers of them, every training slice."""
        grids = [r.grid for r in self.data.part("train")]
        if self.data.spec.slices:
            return np.concatenate([np.moveaxis(g, self.data.spec.slice_axis, 0) for g in grids]).astype(np.uint8)
        return np.stack(grids).astype(np.uint8)

    @property
    def grid_slice_axis(self) -> int | None:
        """Where the slices of a 2-D run stack in a case's grid (None for a 3-D run)."""
        return self.data.spec.slice_axis if self.data.spec.slices else None

    def eval_records(self) -> list[CaseRecord]:
        """The cases the tasks run on: eval.part (test by default), at most eval.max_cases of them."""
        records = self.data.part(self.config["eval"]["part"])
        limit = self.config["eval"]["max_cases"]
        return records[:limit] if limit else records


# -- running the model over many cases ----------------------------------------------------------------
def vectors_of(data: MaskData, grids: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    rows = [to_vectors(np.ascontiguousarray(g), data.spec) for g in grids]
    return np.concatenate(rows).astype(np.float32), [len(r) for r in rows]


def grids_of(data: MaskData, flat: np.ndarray, counts: list[int], shapes: list[tuple]) -> list[np.ndarray]:
    out, at = [], 0
    for n, shape in zip(counts, shapes):
        out.append(from_vectors(flat[at:at + n], shape, data.spec))
        at += n
    return out


def batched(ctx: EvalContext, fn, *arrays: np.ndarray, desc: str) -> np.ndarray:
    """``fn`` over ``eval.batch_size`` rows at a time; a bar on a terminal, a line per batch when piped."""
    size = ctx.config["eval"]["batch_size"]
    outs = []
    starts = range(0, len(arrays[0]), size)
    piped = log_lines(ctx.config)
    for i, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=ctx.progress_disabled), 1):
        parts = [torch.from_numpy(a[start:start + size]).to(ctx.device) for a in arrays]
        outs.append(fn(*parts).float().cpu().numpy())
        if piped:
            log(f"{desc}: batch {i}/{len(starts)}")
    return np.concatenate(outs) if outs else np.zeros((0, ctx.data.dim), dtype=np.float32)


def denoise_time(model: BinomialDiffusion, flip: float) -> int:
    """The step whose flip rate (1 − ᾱ_t)/2 is closest to ``flip``."""
    rates = (1 - model.process.alpha_bar[1:].numpy()) / 2
    return int(np.argmin(np.abs(rates - flip))) + 1


# -- output helpers --------------------------------------------------------------------------------------
def case_truth(ctx: EvalContext, record: CaseRecord) -> np.ndarray:
    loaded = load_case(record.case, ctx.data.preset, ctx.data.region, ctx.data.spec)
    if loaded.transform.to_dict() != record.transform.to_dict():
        raise DataError(f"{record.case.label}: the file changed since the run was trained (its grid window moved)")
    return loaded.truth


def score(record: CaseRecord, truth: np.ndarray, methods: dict[str, np.ndarray]) -> dict:
    row = {"case_id": record.case_id}
    for name, grid in methods.items():
        volume = record.transform.from_grid(grid.astype(np.uint8)).astype(bool)
        row[name] = segmentation_metrics(volume, truth, record.geometry.spacing)
    return row


def write_niftis(folder: Path, record: CaseRecord, methods: dict[str, np.ndarray]) -> None:
    for name, grid in methods.items():
        volume = record.transform.from_grid(grid.astype(np.uint8))
        write_mask(volume, record.geometry, folder / f"{record.case_id}_{name}.nii.gz")


def summary_of(task: str, rows: list[dict], methods: list[str], settings: dict, seconds: float, ctx: EvalContext,
             extra: dict | None = None) -> dict:
    return {
        "task": task,
        "cases": len(rows),
        "mean": {m: summarize(r[m] for r in rows) for m in methods},
        "methods": settings.pop("methods"),
        "settings": {**settings, "eval_batch_size": ctx.config["eval"]["batch_size"]},  # it decides the draws
        "empty_rule": EMPTY_RULE,
        "definitions": DEFINITIONS,
        "seconds": round(seconds, 2),
        "checkpoint": ctx.checkpoint,
        **(extra or {}),
        "per_case": rows,
    }
