"""Completion: hide part of each held-out mask and fill it by inpainting from noise (visible
voxels held fixed); baselines: interpolation across the hidden voxels, retrieval of the
best-agreeing training mask, and for a box also morphological closing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...files import write_json
from . import baselines, corruption, panels
from .evaluation import EvalContext, batched, case_truth, grids_of, score, summary_of, vectors_of, write_niftis

HIDDEN_DICE = ("Dice on the hidden grid voxels alone, 2|P∩T| / (|P| + |T|) over them (1 when neither holds "
               "any): the whole-mask Dice also counts the visible voxels every method copies")


def hidden_dice(pred: np.ndarray, truth: np.ndarray, hidden: np.ndarray) -> float:
    """Dice of ``pred`` against ``truth`` on the ``hidden`` voxels only (grids of one shape)."""
    p, t = np.asarray(pred, dtype=bool)[hidden], np.asarray(truth, dtype=bool)[hidden]
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def inpainted_probabilities(ctx: EvalContext, observed: np.ndarray, known: np.ndarray, generator: torch.Generator,
                            desc: str, init: np.ndarray | None = None, side_by_side: bool = False) -> np.ndarray:
    """P(voxel = 1) from inpainting with the ``known`` voxels held fixed, the mean over
    ``evaluations.completion.samples`` runs; ``init``: warm start from these vectors noised to
    ``warm_t`` (SDEdit) instead of from noise. (n, D) rows in, (n, D) probabilities out.

    ``side_by_side``: the runs of the few rows of one file drawn together, ``eval.batch_size`` rows
    per denoiser call (``masks apply``: 8 runs of one mask in one batch cost little more than one
    run on a CPU); otherwise one run after another over every row, as the evaluations draw them."""
    cfg = ctx.config["evaluations"]["completion"]
    if init is None:
        run = lambda x, k: ctx.model.inpaint(x, k.bool(), steps=cfg["steps"], generator=generator,  # noqa: E731
                                             mode=cfg["sample"], decode="mean", resample=cfg["resample"])
        inputs = (observed, known)
    else:
        run = lambda x, k, start: ctx.model.inpaint(x, k.bool(), steps=cfg["steps"], generator=generator,  # noqa: E731
                                                    mode=cfg["sample"], decode="mean", init=start,
                                                    start=cfg["warm_t"], resample=cfg["resample"])
        inputs = (observed, known, init)
    if side_by_side:
        n, runs = len(observed), cfg["samples"]
        tiled = [np.tile(a, (runs, 1)) for a in inputs]  # run r of row i is row r·n + i
        return batched(ctx, run, *tiled, desc=f"{desc} ({runs} runs)").reshape(runs, n, -1).mean(0)
    probs = np.zeros_like(observed)
    for sample in range(1, cfg["samples"] + 1):  # each sample's batches get lines of their own
        probs += batched(ctx, run, *inputs, desc=f"{desc} sample {sample}/{cfg['samples']}")
    probs /= cfg["samples"]
    return probs


def evaluate_completion(ctx: EvalContext, out_dir: Path, modes: list[str] | None = None) -> dict[str, dict]:
    cfg = ctx.config["evaluations"]["completion"]
    modes = list(modes or cfg["hide"])
    records = ctx.eval_records()
    truths = {r.case_id: case_truth(ctx, r) for r in records}
    results = {}
    for mode in modes:
        started = time.perf_counter()
        rng = np.random.default_rng(ctx.seed("completion", mode))
        observed, known = [], []
        for record in records:
            valid = record.transform.valid()
            obs, kn = corruption.hide(record.grid, mode, rng, box_fraction=cfg["box_fraction"],
                                      box_position=cfg["box_position"], slice_fraction=cfg["slice_fraction"],
                                      axis=cfg["axis"])
            observed.append(obs), known.append(kn)
        obs_flat, counts = vectors_of(ctx.data, observed)
        # the model also holds the padding beyond the image's edge fixed: it is known to be empty
        known_flat, _ = vectors_of(ctx.data, [(k | ~r.transform.valid()).astype(np.uint8) for k, r in zip(known, records)])
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed("completion", mode, "model"))
        spacings = [r.transform.grid_spacing(r.geometry.spacing) for r in records]
        fills = [baselines.completion_baselines(mode, o, k, bank=ctx.retrieval_bank, axis=cfg["axis"], spacing=sp,
                                                radius=cfg["closing_radius"], slice_axis=ctx.grid_slice_axis)
                 for o, k, sp in zip(observed, known, spacings)]
        fills = [{name: grid * r.transform.valid() for name, grid in f.items()} for f, r in zip(fills, records)]
        baseline_names = list(fills[0])
        warm = mode in cfg["warm_start"]
        init = vectors_of(ctx.data, [f["interpolation"] for f in fills])[0] if warm else None
        probs = inpainted_probabilities(ctx, obs_flat, known_flat, generator, f"completion {mode}", init)
        model_grids = grids_of(ctx.data, (probs >= 0.5).astype(np.uint8), counts,
                             [r.transform.grid_shape for r in records])
        rows = []
        folder = out_dir / mode
        for i, record in enumerate(records):
            valid = record.transform.valid()
            methods = {"input": observed[i], **fills[i],
                       "model": np.where(known[i], observed[i], model_grids[i] * valid).astype(np.uint8)}
            row = score(record, truths[record.case_id], methods)
            hidden = ~known[i] & valid.astype(bool)
            for name, grid in methods.items():  # the whole-mask Dice carries the copied visible voxels too
                row[name]["hidden_dice"] = hidden_dice(grid, record.grid, hidden)
            rows.append(row)
            if ctx.config["eval"]["nifti"]:
                write_niftis(folder / "nifti", record, methods)
            if i < ctx.config["eval"]["panels"]:
                panels.comparison_panel({"truth": record.grid, **methods}, folder / "panels" / f"{record.case_id}.png",
                                 title=f"completion ({mode}) {record.case_id}", known=known[i])
        settings = {"mode": mode, "warm_start": warm,
                    **{k: cfg[k] for k in ("box_fraction", "box_position", "slice_fraction", "axis", "warm_t",
                                           "steps", "sample", "samples", "resample", "closing_radius")},
                    "methods": {"input": "the damaged mask, hidden voxels read as background",
                                **{name: baselines.DESCRIPTIONS[name].format(radius=cfg["closing_radius"])
                                   for name in baseline_names},
                                "model": "inpainting: reverse diffusion with the visible voxels held fixed, "
                                + (f"started from the interpolation noised to t = {cfg['warm_t']}" if warm
                                   else "from noise")
                                + ", p >= 0.5"}}
        # every baseline is reported; none is singled out by its test score
        summary = summary_of("completion", rows, ["input", *baseline_names, "model"], settings,
                           time.perf_counter() - started, ctx, {"baselines": baseline_names})
        for name in summary["mean"]:
            summary["mean"][name]["hidden_dice"] = float(np.mean([r[name]["hidden_dice"] for r in rows]))
        summary["definitions"] = {**summary["definitions"], "hidden_dice": HIDDEN_DICE}
        write_json(folder / "summary.json", summary)
        results[mode] = summary
    return results


