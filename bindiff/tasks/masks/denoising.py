"""Denoising: flip a share of each held-out mask's voxels and recover it with the denoiser at the
matching time; baseline: a median filter."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...config import RecipeError
from ...files import write_json
from . import baselines, corruption, panels
from .evaluation import EvalContext, denoise_time, batched, case_truth, grids_of, score, summary_of, vectors_of, write_niftis


def check_denoising_steps(cfg: dict, model) -> None:
    """A chain from the denoising time t has t steps: more were cut short, and reported as asked."""
    t = cfg["t"] or denoise_time(model, cfg["flip"])
    if cfg["steps"] > t:
        raise RecipeError(f"evaluations.denoising.steps = {cfg['steps']} exceeds the denoising time t = {t} "
                          f"(evaluations.denoising.t, or the step of flip rate {cfg['flip']})")


def denoised_probabilities(ctx: EvalContext, observed: np.ndarray, desc: str = "denoising") -> tuple[int, np.ndarray]:
    """The time shown to the denoiser and P(voxel = 1) for (n, D) damaged rows: p̂(x_0 | x_t) in
    one call, or ``evaluations.denoising.steps`` reverse steps from t (``desc``: what its progress
    is called)."""
    cfg = ctx.config["evaluations"]["denoising"]
    t = cfg["t"] or denoise_time(ctx.model, cfg["flip"])
    T = ctx.model.process.num_steps
    if t > T:
        raise RecipeError(f"evaluations.denoising.t = {t} exceeds diffusion.steps = {T}")
    check_denoising_steps(cfg, ctx.model)
    if cfg["steps"] == 1:
        fn = lambda x: ctx.model.predict_x0(x, t)  # noqa: E731
    else:
        fn = lambda x: ctx.model.reverse(x, start=t, steps=cfg["steps"], mode="mean")  # noqa: E731
    return t, batched(ctx, fn, observed, desc=desc)


def evaluate_denoising(ctx: EvalContext, out_dir: Path) -> dict:
    cfg = ctx.config["evaluations"]["denoising"]
    started = time.perf_counter()
    records = ctx.eval_records()
    rng = np.random.default_rng(ctx.seed("denoising"))
    observed = [corruption.flip_voxels(r.grid, cfg["flip"], rng, r.transform.valid())[0] for r in records]
    obs_flat, counts = vectors_of(ctx.data, observed)
    t, probs = denoised_probabilities(ctx, obs_flat)
    model_grids = grids_of(ctx.data, (probs >= 0.5).astype(np.uint8), counts, [r.transform.grid_shape for r in records])
    rows = []
    for i, record in enumerate(records):
        valid = record.transform.valid()
        methods = {"input": observed[i], "median": baselines.median_filter(observed[i], cfg["median_size"]) * valid,
                   "model": model_grids[i] * valid}
        rows.append(score(record, case_truth(ctx, record), methods))
        if ctx.config["eval"]["nifti"]:
            write_niftis(out_dir / "nifti", record, methods)
        if i < ctx.config["eval"]["panels"]:
            panels.comparison_panel({"truth": record.grid, **methods}, out_dir / "panels" / f"{record.case_id}.png",
                             title=f"denoising ({cfg['flip']:.0%} flipped) {record.case_id}")
    flip_rate = float((1 - ctx.model.process.alpha_bar[t]) / 2)
    settings = {**cfg, "t_used": t, "flip_rate_at_t": flip_rate,
                "methods": {"input": "the mask with the voxels flipped",
                            "median": f"median filter over {cfg['median_size']}^3 voxels",
                            "model": f"p̂(x_0 | x_t = input) at t = {t}" + (f", {cfg['steps']} reverse steps"
                                                                           if cfg["steps"] > 1 else "")
                            + ", p >= 0.5"}}
    summary = summary_of("denoising", rows, ["input", "median", "model"], settings, time.perf_counter() - started,
                       ctx, {"baselines": ["median"]})
    write_json(out_dir / "summary.json", summary)
    return summary


