"""The three evaluations of a trained mask model on held-out cases, each with its baselines.

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

Every result is mapped back to the case's own voxel grid and scored there against the original
mask (``bindiff.metrics.segmentation``, spacing-aware). Every random draw comes from a
generator seeded from the recipe's seed, the task and the mode.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage, stats
from tqdm.auto import tqdm

from ..adapters.masks import from_vectors, load_case, to_vectors, write_mask
from ..core import BinomialDiffusion
from ..files import write_json
from ..lifecycle import progress_disabled
from ..metrics.segmentation import DEFINITIONS, EMPTY_RULE, segmentation_metrics, summarize
from . import baselines, corruption, panels, realism
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
        return (self.config["seed"] * 1_000_003 + zlib.crc32("/".join(parts).encode())) % (2 ** 31)

    @cached_property
    def retrieval_bank(self) -> np.ndarray:
        """The training masks on the grid, (n, *grid): what the retrieval baseline copies from."""
        return np.stack([r.grid for r in self.data.part("train")]).astype(np.uint8)

    def eval_records(self) -> list[CaseRecord]:
        """The cases the tasks run on: eval.part (test by default), at most eval.max_cases of them."""
        records = self.data.part(self.config["eval"]["part"])
        limit = self.config["eval"]["max_cases"]
        return records[:limit] if limit else records


# -- running the model over many cases ----------------------------------------------------------------
def _vectors(data: MaskData, grids: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    rows = [to_vectors(np.ascontiguousarray(g), data.spec) for g in grids]
    return np.concatenate(rows).astype(np.float32), [len(r) for r in rows]


def _grids(data: MaskData, flat: np.ndarray, counts: list[int], shapes: list[tuple]) -> list[np.ndarray]:
    out, at = [], 0
    for n, shape in zip(counts, shapes):
        out.append(from_vectors(flat[at:at + n], shape, data.spec))
        at += n
    return out


def _batched(ctx: EvalContext, fn, *arrays: np.ndarray, desc: str) -> np.ndarray:
    size = ctx.config["eval"]["batch_size"]
    outs = []
    starts = range(0, len(arrays[0]), size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=ctx.progress_disabled):
        parts = [torch.from_numpy(a[start:start + size]).to(ctx.device) for a in arrays]
        outs.append(fn(*parts).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, ctx.data.dim), dtype=np.float32)


def denoise_time(model: BinomialDiffusion, flip: float) -> int:
    """The step whose flip rate (1 − ᾱ_t)/2 is closest to ``flip``."""
    rates = (1 - model.process.alpha_bar[1:].numpy()) / 2
    return int(np.argmin(np.abs(rates - flip))) + 1


# -- output helpers --------------------------------------------------------------------------------------
def _case_truth(ctx: EvalContext, record: CaseRecord) -> np.ndarray:
    loaded = load_case(record.case, ctx.data.preset, ctx.data.region, ctx.data.spec)
    if loaded.transform.to_dict() != record.transform.to_dict():
        from ..adapters.errors import DataError

        raise DataError(f"{record.case.label}: the file changed since the run was trained (its grid window moved)")
    return loaded.truth


def _score(record: CaseRecord, truth: np.ndarray, methods: dict[str, np.ndarray]) -> dict:
    row = {"case_id": record.case_id}
    for name, grid in methods.items():
        volume = record.transform.from_grid(grid.astype(np.uint8)).astype(bool)
        row[name] = segmentation_metrics(volume, truth, record.geometry.spacing)
    return row


def _write_niftis(folder: Path, record: CaseRecord, methods: dict[str, np.ndarray]) -> None:
    for name, grid in methods.items():
        volume = record.transform.from_grid(grid.astype(np.uint8))
        write_mask(volume, record.geometry, folder / f"{record.case_id}_{name}.nii.gz")


def _summary(task: str, rows: list[dict], methods: list[str], settings: dict, seconds: float, ctx: EvalContext,
             extra: dict | None = None) -> dict:
    return {
        "task": task,
        "cases": len(rows),
        "mean": {m: summarize(r[m] for r in rows) for m in methods},
        "methods": settings.pop("methods"),
        "settings": settings,
        "empty_rule": EMPTY_RULE,
        "definitions": DEFINITIONS,
        "seconds": round(seconds, 2),
        "checkpoint": ctx.checkpoint,
        **(extra or {}),
        "per_case": rows,
    }


# -- completion ------------------------------------------------------------------------------------------
def evaluate_completion(ctx: EvalContext, out_dir: Path, modes: list[str] | None = None) -> dict[str, dict]:
    cfg = ctx.config["tasks"]["completion"]
    modes = list(modes or cfg["hide"])
    records = ctx.eval_records()
    truths = {r.case_id: _case_truth(ctx, r) for r in records}
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
        obs_flat, counts = _vectors(ctx.data, observed)
        # the model also holds the padding beyond the image's edge fixed: it is known to be empty
        known_flat, _ = _vectors(ctx.data, [(k | ~r.transform.valid()).astype(np.uint8) for k, r in zip(known, records)])
        generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed("completion", mode, "model"))
        spacings = [r.transform.grid_spacing(r.geometry.spacing) for r in records]
        fills = [baselines.completion_baselines(mode, o, k, bank=ctx.retrieval_bank, axis=cfg["axis"], spacing=sp,
                                                radius=cfg["closing_radius"])
                 for o, k, sp in zip(observed, known, spacings)]
        fills = [{name: grid * r.transform.valid() for name, grid in f.items()} for f, r in zip(fills, records)]
        baseline_names = list(fills[0])
        probs = np.zeros_like(obs_flat)
        warm = mode in cfg["warm_start"]
        if not warm:
            run = lambda x, k: ctx.model.inpaint(x, k.bool(), steps=cfg["steps"], generator=generator,  # noqa: E731
                                                 mode=cfg["sample"], decode="mean", resample=cfg["resample"])
            inputs = (obs_flat, known_flat)
        else:
            run = lambda x, k, init: ctx.model.inpaint(x, k.bool(), steps=cfg["steps"], generator=generator,  # noqa: E731
                                                       mode=cfg["sample"], decode="mean", init=init,
                                                       start=cfg["warm_t"], resample=cfg["resample"])
            inputs = (obs_flat, known_flat, _vectors(ctx.data, [f["interpolation"] for f in fills])[0])
        for _ in range(cfg["samples"]):
            probs += _batched(ctx, run, *inputs, desc=f"completion {mode}")
        probs /= cfg["samples"]
        model_grids = _grids(ctx.data, (probs >= 0.5).astype(np.uint8), counts,
                             [r.transform.grid_shape for r in records])
        rows = []
        folder = out_dir / mode
        for i, record in enumerate(records):
            valid = record.transform.valid()
            methods = {"input": observed[i], **fills[i],
                       "model": np.where(known[i], observed[i], model_grids[i] * valid).astype(np.uint8)}
            rows.append(_score(record, truths[record.case_id], methods))
            if ctx.config["eval"]["nifti"]:
                _write_niftis(folder / "nifti", record, methods)
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
        summary = _summary("completion", rows, ["input", *baseline_names, "model"], settings,
                           time.perf_counter() - started, ctx, {"baselines": baseline_names})
        write_json(folder / "summary.json", summary)
        results[mode] = summary
    return results


# -- denoising -------------------------------------------------------------------------------------------
def evaluate_denoising(ctx: EvalContext, out_dir: Path) -> dict:
    cfg = ctx.config["tasks"]["denoising"]
    started = time.perf_counter()
    records = ctx.eval_records()
    rng = np.random.default_rng(ctx.seed("denoising"))
    observed = [corruption.flip_voxels(r.grid, cfg["flip"], rng, r.transform.valid())[0] for r in records]
    t = cfg["t"] or denoise_time(ctx.model, cfg["flip"])
    T = ctx.model.process.num_steps
    if t > T:
        from ..config import RecipeError

        raise RecipeError(f"tasks.denoising.t = {t} exceeds diffusion.steps = {T}")
    obs_flat, counts = _vectors(ctx.data, observed)
    if cfg["steps"] == 1:
        fn = lambda x: ctx.model.predict_x0(x, t)  # noqa: E731
    else:
        fn = lambda x: ctx.model.reverse(x, start=t, steps=min(cfg["steps"], t), mode="mean")  # noqa: E731
    probs = _batched(ctx, fn, obs_flat, desc="denoising")
    model_grids = _grids(ctx.data, (probs >= 0.5).astype(np.uint8), counts, [r.transform.grid_shape for r in records])
    rows = []
    for i, record in enumerate(records):
        valid = record.transform.valid()
        methods = {"input": observed[i], "median": baselines.median_filter(observed[i], cfg["median_size"]) * valid,
                   "model": model_grids[i] * valid}
        rows.append(_score(record, _case_truth(ctx, record), methods))
        if ctx.config["eval"]["nifti"]:
            _write_niftis(out_dir / "nifti", record, methods)
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
    summary = _summary("denoising", rows, ["input", "median", "model"], settings, time.perf_counter() - started,
                       ctx, {"baselines": ["median"]})
    write_json(out_dir / "summary.json", summary)
    return summary


# -- generation ------------------------------------------------------------------------------------------
def _components(mask: np.ndarray) -> int:
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return int(ndimage.label(mask.astype(bool), structure=structure)[1])


def _nearest(samples: np.ndarray, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Dice of each sample's nearest row of ``bank`` (both (n, D) bits)."""
    s = torch.from_numpy(samples.astype(np.float32))
    b = torch.from_numpy(bank.astype(np.float32))
    inter = s @ b.T
    total = s.sum(1, keepdim=True) + b.sum(1)[None, :]
    d = torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total))
    best = d.max(1)
    return best.indices.numpy(), best.values.numpy()


def _describe(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    if not len(v):
        return {}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "p05": float(np.percentile(v, 5)), "median": float(np.median(v)), "p95": float(np.percentile(v, 95)),
            "max": float(v.max())}


def evaluate_generation(ctx: EvalContext, out_dir: Path) -> dict:
    cfg = ctx.config["tasks"]["generation"]
    started = time.perf_counter()
    data = ctx.data
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed("generation"))
    size = ctx.config["eval"]["batch_size"]
    chunks = []
    for start in tqdm(range(0, cfg["samples"], size), desc="generation", unit="batch", disable=ctx.progress_disabled):
        n = min(size, cfg["samples"] - start)
        # thresholding the last p̂ (not drawing from it) keeps isolated voxels out of the masks
        chunks.append(ctx.model.sample(n, steps=cfg["steps"], generator=generator, device=ctx.device,
                                       decode="threshold").cpu().numpy())
    samples = np.concatenate(chunks).astype(np.uint8)
    shape = data.spec.vector_grid
    train_records = data.part("train")
    bank, owner = [], []
    for record in train_records:
        rows = to_vectors(np.ascontiguousarray(record.grid), data.spec)
        bank.append(rows)
        owner += [record] * len(rows)
    bank = np.concatenate(bank)
    if data.spec.slices:  # only slices that show the mask are masks
        keep = bank.any(1)
        bank, owner = bank[keep], [o for o, k in zip(owner, keep) if k]
    voxel_ml = float(np.median([np.prod(r.transform.grid_spacing(r.geometry.spacing)) for r in train_records])) / 1000
    idx, near_dice = _nearest(samples, bank)
    held_out = ctx.eval_records()
    held_rows = np.concatenate([to_vectors(np.ascontiguousarray(r.grid), data.spec) for r in held_out])
    if data.spec.slices:
        held_rows = held_rows[held_rows.any(1)]
    _, held_dice = _nearest(held_rows, bank)
    sample_volumes = [float(s.sum()) * voxel_ml for s in samples]
    real_volumes = [float(b.sum()) * voxel_ml for b in bank]
    components = [_components(s.reshape(shape)) for s in samples]
    real_components = [_components(b.reshape(shape)) for b in bank]
    rows = []
    for i, sample in enumerate(samples):
        near = owner[int(idx[i])]
        rows.append({"sample": i, "components": components[i], "volume_ml": sample_volumes[i],
                     "nearest_training_case": near.case_id, "nearest_training_dice": float(near_dice[i])})
        if ctx.config["eval"]["nifti"] and not data.spec.slices:
            # placed in the frame of its nearest training case, written with that case's geometry
            volume = near.transform.from_grid(sample.reshape(shape))
            write_mask(volume, near.geometry, out_dir / "nifti" / f"sample_{i:03d}_in_{near.case_id}.nii.gz")
    n_panel = min(cfg["samples"], max(ctx.config["eval"]["panels"], 1) * 2)
    if ctx.config["eval"]["panels"]:
        panels.sample_panel([samples[i].reshape(shape) for i in range(n_panel)],
                     [bank[int(idx[i])].reshape(shape) for i in range(n_panel)],
                     [float(near_dice[i]) for i in range(n_panel)], out_dir / "panels" / "samples.png",
                     title="generated masks (top) and their nearest training masks (bottom)")
    ks = stats.ks_2samp(sample_volumes, real_volumes) if len(sample_volumes) > 1 else None
    held_volumes = [float(h.sum()) * voxel_ml for h in held_rows]
    ks_held = stats.ks_2samp(sample_volumes, held_volumes) if len(sample_volumes) > 1 and len(held_volumes) > 1 else None
    grids = samples.reshape(len(samples), *shape)
    held_grids = held_rows.reshape(len(held_rows), *shape)
    mean_real = bank.reshape(len(bank), *shape).mean(0)
    axis = cfg["mirror_axis"]
    realism_block = {
        "orientation_share": realism.orientation_share(grids, mean_real, axis),
        "held_out_orientation_share": realism.orientation_share(held_grids, mean_real, axis),
        "descriptor_mmd": realism.mmd_test(realism.shape_descriptors(grids), realism.shape_descriptors(held_grids),
                                           seed=ctx.seed("generation", "mmd")),
        "volume_ks_held_out": None if ks_held is None else {"statistic": float(ks_held.statistic),
                                                             "p_value": float(ks_held.pvalue)},
        "max_nearest_training_dice": float(near_dice.max()) if len(near_dice) else None,
    }
    if ctx.config["eval"]["panels"] and len(shape) == 3:
        n_show = min(6, len(grids), len(held_grids))
        panels.projection_panel(list(held_grids[:n_show]), list(grids[:n_show]), out_dir / "panels" / "projections.png",
                                title="maximum-intensity projections: held-out real masks (left), generated (right)")
    summary = {
        "task": "generation",
        "samples": int(cfg["samples"]),
        "settings": dict(cfg),
        "plausibility": {
            "one_component_share": float(np.mean([c == 1 for c in components])),
            "empty_share": float(np.mean([c == 0 for c in components])),
            "components": _describe(components),
            "volume_ml": _describe(sample_volumes),
            "nearest_training_dice": _describe(near_dice.tolist()),
        },
        "reference": {
            "training_masks": len(bank),
            "one_component_share": float(np.mean([c == 1 for c in real_components])),
            "volume_ml": _describe(real_volumes),
            "held_out_nearest_training_dice": _describe(held_dice.tolist()),
        },
        "volume_ks": None if ks is None else {"statistic": float(ks.statistic), "p_value": float(ks.pvalue)},
        "realism": realism_block,
        "volume_wasserstein_ml": float(stats.wasserstein_distance(sample_volumes, real_volumes)),
        "definitions": {
            "components": "connected components with 26-connectivity (8 in 2-D)",
            "volume_ml": "voxels x the median voxel volume of the training grids",
            "nearest_training_dice": "largest Dice between the sample and any training mask on the grid; "
                                     "1 would be a copy; compare with held_out_nearest_training_dice",
            "volume_ks": "two-sample Kolmogorov-Smirnov test, sample volumes against training volumes",
            "orientation_share": f"share closer to the mean training mask than to its mirror image along axis {axis}",
            "descriptor_mmd": "kernel two-sample test (MMD, Gaussian kernel, permutation p-value) on volume, "
                              "centroid and spread per axis, samples against held-out real masks",
            "volume_ks_held_out": "Kolmogorov-Smirnov test, sample volumes against held-out real volumes",
        },
        "seconds": round(time.perf_counter() - started, 2),
        "checkpoint": ctx.checkpoint,
        "per_sample": rows,
    }
    write_json(out_dir / "summary.json", summary)
    return summary
