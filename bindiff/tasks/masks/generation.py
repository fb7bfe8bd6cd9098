"""Generation: sample masks from noise and measure how plausible they are: connected components,
the volume distribution against real masks, nearest-training-mask Dice, orientation and a
kernel two-sample test on shape descriptors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tqdm.auto import tqdm

from ...adapters.masks import to_vectors, write_mask
from ...files import write_json
from ...progress import log, log_lines, warn
from . import panels, realism
from .evaluation import EvalContext

def _components(mask: np.ndarray) -> int:
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
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


DEFINITIONS = {
    "components": "connected components with 26-connectivity (8 in 2-D)",
    "volume_ml": "voxels x the median voxel volume of the training grids (see volume_scale)",
    "nearest_training_dice": "largest Dice between the sample and any training mask on the grid; "
                             "1 would be a copy; compare with held_out_nearest_training_dice",
    "volume_ks": "two-sample Kolmogorov-Smirnov test, sample volumes against training volumes",
    "orientation_share": "share closer to the mean training mask than to its mirror image along axis {axis}",
    "descriptor_mmd": "kernel two-sample test (biased MMD², kernel exp(-|z - z'|² / median |z - z'|²) on "
                      "descriptors standardised by the held-out masks' mean and sd, permutation p-value "
                      "(exceed + 1) / (permutations + 1)) on volume, centroid and spread per axis, samples "
                      "against held-out real masks",
    "volume_wasserstein_ml": "1-Wasserstein distance between the sample and training volume distributions, in ml "
                             "(under volume: training the samples are drawn to training volumes, so it says little)",
    "volume_ks_held_out": "Kolmogorov-Smirnov test, sample volumes against held-out real volumes",
    "held_out_volume_ml": "volumes of the held-out real masks the tests compare with, on the grid as volume_ml",
    "target_volume_ml": "volume: training only: the training mask volume this sample's chain was tilted to",
    "voxels_beyond_frame": "the sample's voxels in the padding of its nearest training case's grid window: "
                           "beyond that scan's edge, so not in the sample's NIfTI file (volume_ml counts them)",
}


def stratified_draw(values: np.ndarray, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from the empirical distribution of ``values``, stratified: the i-th smallest draw
    is the quantile at (i + u_i) / n, u_i ~ U(0, 1), and the n are returned in a random order.

    Each draw on its own is still one of ``values`` taken with equal probability, but the n
    together cover the distribution evenly: 64 independent draws from 200 training volumes
    can miss their mean by 2-3 standard errors, which then reads as a model that generates
    the wrong volumes.
    """
    ordered = torch.from_numpy(np.sort(np.asarray(values, dtype=np.float64)))
    quantiles = (torch.arange(n, dtype=torch.float64) + torch.rand(n, generator=generator, dtype=torch.float64)) / n
    picked = ordered[(quantiles * len(ordered)).long().clamp_max(len(ordered) - 1)]
    return picked[torch.randperm(n, generator=generator)]


def target_volumes(ctx: EvalContext, bank: np.ndarray) -> torch.Tensor | None:
    """Voxel counts for ``evaluations.generation.volume: training``: the training masks' volumes,
    drawn stratified (``stratified_draw``) by a generator of their own, so the chains' noise is
    the same as with ``free``; None for ``free``."""
    cfg = ctx.config["evaluations"]["generation"]
    if cfg["volume"] == "free":
        return None
    generator = torch.Generator().manual_seed(ctx.seed("generation", "volume"))
    return stratified_draw(bank.sum(1), cfg["samples"], generator).float()


def draw_samples(ctx: EvalContext, volumes: torch.Tensor | None = None) -> np.ndarray:
    """``evaluations.generation.samples`` masks from noise, (n, D) bits, from the task's own
    generator; ``volumes`` (voxels, one per sample) holds each chain's expected volume."""
    cfg = ctx.config["evaluations"]["generation"]
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed("generation"))
    size = ctx.config["eval"]["batch_size"]
    chunks = []
    starts = range(0, cfg["samples"], size)
    for i, start in enumerate(tqdm(starts, desc="generation", unit="batch", disable=ctx.progress_disabled), 1):
        if log_lines(ctx.config):
            log(f"generation: batch {i}/{len(starts)}")
        n = min(size, cfg["samples"] - start)
        # thresholding the last p̂ (not drawing from it) keeps isolated voxels out of the masks
        ones = None if volumes is None else volumes[start:start + n].to(ctx.device)
        chunks.append(ctx.model.sample(n, steps=cfg["steps"], generator=generator, device=ctx.device,
                                       decode="threshold", resample=cfg["resample"], ones=ones).cpu().numpy())
    return np.concatenate(chunks).astype(np.uint8)


def _mask_rows(data, records) -> tuple[np.ndarray, list]:
    """The masks of ``records`` as (n, D) rows with the record each came from; in slice mode only
    the slices that show the mask (the others are no masks)."""
    rows, owner = [], []
    for record in records:
        vectors = to_vectors(np.ascontiguousarray(record.grid), data.spec)
        rows.append(vectors)
        owner += [record] * len(vectors)
    rows = np.concatenate(rows)
    if data.spec.slices:
        keep = rows.any(1)
        rows, owner = rows[keep], [o for o, k in zip(owner, keep) if k]
    return rows, owner


def _wasserstein(a: list[float], b: list[float]) -> float:
    from scipy import stats

    return float(stats.wasserstein_distance(a, b))


def _ks(a: list[float], b: list[float]) -> dict | None:
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats  # here: 0.7 s at start-up that most commands never need

    test = stats.ks_2samp(a, b)
    return {"statistic": float(test.statistic), "p_value": float(test.pvalue)}


def _realism(ctx: EvalContext, grids: np.ndarray, held_grids: np.ndarray, bank_grids: np.ndarray,
             sample_volumes: list[float], held_volumes: list[float], near_dice: np.ndarray) -> dict:
    """Whether the samples look like held-out real masks: orientation, shape descriptors, volumes."""
    axis = ctx.config["evaluations"]["generation"]["mirror_axis"]
    mean_real = bank_grids.mean(0)
    return {
        "orientation_share": realism.orientation_share(grids, mean_real, axis),
        "held_out_orientation_share": realism.orientation_share(held_grids, mean_real, axis),
        "descriptor_mmd": realism.mmd_test(realism.shape_descriptors(grids), realism.shape_descriptors(held_grids),
                                           seed=ctx.seed("generation", "mmd")),
        "volume_ks_held_out": _ks(sample_volumes, held_volumes),
        "held_out_volume_ml": _describe(held_volumes),
        "max_nearest_training_dice": float(near_dice.max()) if len(near_dice) else None,
    }


def _write_outputs(ctx: EvalContext, out_dir: Path, samples: np.ndarray, bank: np.ndarray, owner: list,
                   idx: np.ndarray, near_dice: np.ndarray, held_grids: np.ndarray) -> list[int] | None:
    """NIfTI files (each sample in its nearest training case's frame) and the PNG panels. Returns, when
    the files are written, each sample's voxels that fall in its frame's padding (left out of its file)."""
    shape, cfg, evaluation = ctx.data.spec.vector_grid, ctx.config["evaluations"]["generation"], ctx.config["eval"]
    beyond = None
    if evaluation["nifti"] and not ctx.data.spec.slices:
        beyond = []
        for i, sample in enumerate(samples):
            near = owner[int(idx[i])]
            grid = sample.reshape(shape).astype(bool)
            beyond.append(int((grid & ~near.transform.valid()).sum()))
            volume = near.transform.from_grid(grid)
            write_mask(volume, near.geometry, out_dir / "nifti" / f"sample_{i:03d}_in_{near.case_id}.nii.gz")
        if any(beyond):
            warn(f"{sum(n > 0 for n in beyond)} generated sample(s) reach beyond their nearest training "
                f"case's volume (most: {max(beyond)} voxel(s)); those voxels are not in their NIfTI files "
                "(voxels_beyond_frame in summary.json)")
    if not evaluation["panels"]:
        return beyond
    n_panel = min(cfg["samples"], evaluation["panels"] * 2)
    panels.sample_panel([samples[i].reshape(shape) for i in range(n_panel)],
                        [bank[int(idx[i])].reshape(shape) for i in range(n_panel)],
                        [float(near_dice[i]) for i in range(n_panel)], out_dir / "panels" / "samples.png",
                        title="generated masks (top) and their nearest training masks (bottom)")
    if len(shape) == 3:
        grids = samples.reshape(len(samples), *shape)
        n_show = min(6, len(grids), len(held_grids))
        panels.projection_panel(list(held_grids[:n_show]), list(grids[:n_show]), out_dir / "panels" / "projections.png",
                                title="maximum-intensity projections: held-out real masks (left), generated (right)")
    return beyond


def evaluate_generation(ctx: EvalContext, out_dir: Path) -> dict:
    """Sample masks, compare them with the training and held-out masks, write summary.json."""
    cfg = ctx.config["evaluations"]["generation"]
    started = time.perf_counter()
    data = ctx.data
    shape = data.spec.vector_grid
    train_records = data.part("train")
    bank, owner = _mask_rows(data, train_records)
    targets = target_volumes(ctx, bank)
    samples = draw_samples(ctx, targets)
    held_rows, _ = _mask_rows(data, ctx.eval_records())
    voxel_mm3 = np.array([np.prod(r.transform.grid_spacing(r.geometry.spacing)) for r in train_records])
    voxel_ml = float(np.median(voxel_mm3)) / 1000
    # where each case's box is resampled to the grid (grid.mode: resample), grid voxels differ in
    # size between cases and a sample has no scan: every volume here is then a size on the grid
    on_scans = bool(np.allclose(voxel_mm3, voxel_mm3[0], rtol=1e-6))
    idx, near_dice = _nearest(samples, bank)
    _, held_dice = _nearest(held_rows, bank)
    sample_volumes = [float(s.sum()) * voxel_ml for s in samples]
    real_volumes = [float(b.sum()) * voxel_ml for b in bank]
    held_volumes = [float(h.sum()) * voxel_ml for h in held_rows]
    components = [_components(s.reshape(shape)) for s in samples]
    real_components = [_components(b.reshape(shape)) for b in bank]
    held_grids = held_rows.reshape(len(held_rows), *shape)
    beyond = _write_outputs(ctx, out_dir, samples, bank, owner, idx, near_dice, held_grids)
    summary = {
        "task": "generation",
        "samples": int(cfg["samples"]),
        "settings": {**cfg, "eval_batch_size": ctx.config["eval"]["batch_size"]},  # it decides the draws
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
        "volume_ks": _ks(sample_volumes, real_volumes),
        "realism": _realism(ctx, samples.reshape(len(samples), *shape), held_grids, bank.reshape(len(bank), *shape),
                            sample_volumes, held_volumes, near_dice),
        "volume_wasserstein_ml": _wasserstein(sample_volumes, real_volumes),
        "volume_scale": "the scans' millilitres (every grid voxel has the training scans' size)" if on_scans else
                        "a size on the grid, not the scans' millilitres: the cases' grid voxels differ in size "
                        f"({voxel_mm3.min():.3g} to {voxel_mm3.max():.3g} mm³), so every volume is grid voxels × "
                        "their median",
        "definitions": {**DEFINITIONS, "orientation_share": DEFINITIONS["orientation_share"].format(
            axis=cfg["mirror_axis"])},
        "seconds": round(time.perf_counter() - started, 2),
        "checkpoint": ctx.checkpoint,
        "per_sample": [{"sample": i, "components": components[i], "volume_ml": sample_volumes[i],
                        "nearest_training_case": owner[int(idx[i])].case_id,
                        "nearest_training_dice": float(near_dice[i]),
                        **({} if targets is None else {"target_volume_ml": float(targets[i]) * voxel_ml}),
                        **({} if beyond is None else {"voxels_beyond_frame": beyond[i]})}
                       for i in range(len(samples))],
    }
    write_json(out_dir / "summary.json", summary)
    return summary
