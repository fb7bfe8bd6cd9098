"""The segmentation task in the shared lifecycle: images and masks → conditional Bernoulli diffusion
→ masks sampled from noise given each held-out image, with calibration and uncertainty, beside a
deterministic U-Net (``unet_baseline``) trained in the same run as the lifecycle's companion.

Layout of a run directory (``runs/<name>/<time>-<hash>/``):
    config.yaml, overrides.txt, split/cases.json, history.json, training_curve.png
    checkpoints/{best,last}.pt   the diffusion model;  checkpoints/unet/: the baseline (history_unet.json)
    segmentation/summary.json    per case and model, and means: Dice, IoU, HD95, ASSD, surface Dice,
                                 volume error, ECE, Brier score, error-detection AUROC of the uncertainty;
                                 the paired Wilcoxon test diffusion − unet
    segmentation/nifti/          <case>_mask.nii.gz and <case>_uncertainty.nii.gz in the label map's geometry
    segmentation/panels/         <case>.png: image, truth, each model's mask, uncertainty
    metrics.json                 ``test: {diffusion: {...}, unet: {...}}``, ``paired``, ``checkpoint``, training facts

Sampling reads the image only; the label file is read to score the result, never to make it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ...adapters.masks import load_region, write_mask, write_volume
from ...config import RecipeError
from ...files import staged_folder, write_json
from ...metrics.calibration import binary_entropy
from ...metrics.paired import paired_wilcoxon
from ...metrics.segmentation import DEFINITIONS, EMPTY_RULE
from ...progress import log, log_lines, progress_disabled
from ...training.distributed import Workers
from .. import base
from ..masks.data import check_label_preset, resolve_preset
from ..masks.model import probe
from .data import SegmentationData, load_data, prepare_data, save_data
from .evaluation import PAIRED, case_means, score_case
from .model import SEGMENTER, UNET_BASELINE, sample_probabilities, unet_probabilities
from .panels import segmentation_panel


def _dice_validator(data: SegmentationData, device, segment: Callable[[torch.Tensor], torch.Tensor]):
    """Validation Dice of ``segment(images) -> probabilities`` over the validation cases, thresholded at 1/2."""
    truth = torch.from_numpy(data.masks("valid").toarray()).to(device) >= 0.5
    images = torch.from_numpy(data.images("valid")).to(device)

    @torch.no_grad()
    def validate() -> dict[str, float]:
        pred = segment(images) >= 0.5
        total = float(pred.sum() + truth.sum())
        return {"dice": 1.0 if total == 0 else 2 * float((pred & truth).sum()) / total}
    return validate


def _diffusion_validator(model, data: SegmentationData, config: dict, device, workers: Workers):
    """One denoiser call from pure noise at t = T given each image (the noise drawn once, for every epoch)."""
    T = model.process.num_steps
    shape = (len(data.split["valid"]), data.dim)
    noise = (torch.rand(shape, generator=torch.Generator().manual_seed(base.derived_seed(config["seed"], "valid")))
             < 0.5).float().to(device)
    return _dice_validator(data, device, lambda images: model.predict_x0(noise, T, cond=images))


def _unet_validator(model, data: SegmentationData, config: dict, device, workers: Workers):
    return _dice_validator(data, device, model.probabilities)


class SegmentationTask(base.Task):
    name = "segmentation"
    # eval.select chose the checkpoint, output.root and .logger are training's: scoring reads none of them
    rescore_keys = ("segmentation.", "eval.batch_size", "eval.part", "eval.max_cases", "eval.panels", "eval.nifti",
                    "output.progress")

    def model_kind(self, config: dict) -> base.ModelKind:
        return SEGMENTER

    def companions(self, config: dict) -> list[base.Companion]:
        return [base.Companion("unet", UNET_BASELINE, _unet_validator)] if config["baseline"]["unet"] else []

    def check_recipe(self, config: dict) -> None:
        check_label_preset(config)
        cfg = config["segmentation"]
        steps, T = cfg["steps"], config["diffusion"]["steps"]
        if steps is not None and steps > T:
            raise RecipeError(f"segmentation.steps = {steps} exceeds diffusion.steps = {T}")
        if cfg["uncertainty"] == "variance" and cfg["samples"] < 2:
            raise RecipeError(f"segmentation.uncertainty: variance across samples needs segmentation.samples >= 2, "
                              f"got {cfg['samples']} (one sample has none: a map of zeros); use entropy")
        probe(SEGMENTER, config)

    def prepare(self, config: dict, data_dir: str | None) -> SegmentationData:
        return prepare_data(config, data_dir, disable_progress=progress_disabled(config))

    def dim(self, data: SegmentationData) -> int:
        return data.dim

    def training_rows(self, data: SegmentationData, config: dict) -> sp.csr_matrix:
        return data.masks("train")

    def training_condition(self, data: SegmentationData, config: dict) -> np.ndarray:
        return data.images("train")

    def save_data(self, data: SegmentationData, folder: Path) -> None:
        save_data(data, folder)

    def data_saved(self, folder: Path) -> bool:
        return (folder / "cases.json").is_file()

    def load_data(self, folder: Path, data_dir: str | None = None) -> SegmentationData:
        return load_data(folder, base.read_run_config(folder.parent), data_dir=data_dir)

    def validator(self, model, data: SegmentationData, config: dict, device, workers: Workers):
        return _diffusion_validator(model, data, config, device, workers)

    def evaluate(self, run_dir: Path, config: dict, data: SegmentationData, device, workers: Workers) -> dict:
        return run_segmentation(run_dir, data=data, device=device)

    def rescore(self, run_dir, overrides, checkpoint, out_dir, device, data_dir) -> dict:
        base.refuse_no_out(self.name, out_dir)
        return run_segmentation(run_dir, overrides=overrides, checkpoint=checkpoint, out_dir=out_dir, device=device,
                                data_dir=data_dir)

    def result_folders(self, config: dict) -> tuple[str, ...]:
        return ("segmentation",)

    def data_report(self, data: SegmentationData) -> dict:
        return {"dim": data.dim, "cases": {k: len(v) for k, v in data.split.items()}, "dataset": data.dataset,
                "layout": data.layout, "preset": data.preset_name, "region": data.region,
                "outside_voxels": int(sum(c.outside for c in data.cases.values()))}


TASK = SegmentationTask()


@base.keeps_threads
def run_segmentation(run_dir: str | Path, data: SegmentationData | None = None, overrides: list[str] = (),
                     checkpoint: str = "best", out_dir: Path | None = None, device=None,
                     data_dir: str | None = None) -> dict:
    """Segment the run's held-out cases from their images with the diffusion model and, when the run
    trained it, the deterministic U-Net; writes segmentation/summary.json and the panels. ``device``:
    where the models run (default: the run's train.device); ``data_dir``: where a named data set that
    has moved since the run is now (default: ``$BINDIFF_DATA_DIR``)."""
    run_dir = Path(run_dir)
    config, payload, model = base.load_trained(TASK, run_dir, checkpoint, device=device)
    config = base.rescoring_config(TASK, config, overrides)
    base.apply_threads(config)  # float sums in another order would move the figures from the run's own
    data = data or load_data(run_dir / "split", config, parts=[config["eval"]["part"]], data_dir=data_dir)
    cfg, started = config["segmentation"], time.perf_counter()
    batch = config["eval"]["batch_size"]
    records = data.part(config["eval"]["part"])[: config["eval"]["max_cases"] or None]
    device = base.device_of(model)
    images = torch.from_numpy(np.stack([r.image.grid.reshape(-1) for r in records]).astype(np.float32)).to(device)
    folder = (Path(out_dir) if out_dir is not None else run_dir) / "segmentation"
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; bindiff never overwrites")

    # probabilities and uncertainty of every model, from the images alone
    generator = torch.Generator(device=device).manual_seed(base.derived_seed(config["seed"], "segmentation"))
    mean, variance = sample_probabilities(model, images, cfg, generator, batch,
                                          report=log if log_lines(config) else None,
                                          disable=progress_disabled(config))
    outputs = {"diffusion": (mean, binary_entropy(mean) if cfg["uncertainty"] == "entropy" else variance)}
    checkpoints = {"diffusion": base.checkpoint_entry(payload, checkpoint)}
    for companion in TASK.companions(config):
        _, other_payload, other = base.load_trained(TASK, run_dir, checkpoint, device=device, companion=companion.name)
        prob = unet_probabilities(other, images, batch)
        outputs[companion.name] = (prob, binary_entropy(prob))  # one deterministic map: no sample variance
        checkpoints[companion.name] = base.checkpoint_entry(other_payload, checkpoint, companion.name)

    preset = resolve_preset(config, data.layout)
    # written into a staging folder that becomes `folder` only once everything is there: a failure
    # part-way (a bad case, a full disk) leaves no half-written segmentation/ behind
    with staged_folder(folder) as staging:
        rows = []
        for i, record in enumerate(records):
            truth, _ = load_region(record.case, preset, data.region)  # read to score only
            row, grid_masks, volumes, uncertainties = {"case_id": record.case_id}, {}, {}, {}
            for name, (prob, uncertainty) in outputs.items():
                row[name], grid_masks[name], volumes[name], uncertainties[name] = score_case(
                    prob[i], uncertainty[i], record, truth, cfg)
            rows.append(row)
            transform = record.image.transform
            diffusion_uncertainty = (outputs["diffusion"][1][i] * transform.valid().reshape(-1)).reshape(transform.grid_shape)
            if config["eval"]["nifti"]:
                write_mask(volumes["diffusion"], record.geometry, staging / "nifti" / f"{record.case_id}_mask.nii.gz")
                write_volume(uncertainties["diffusion"].astype(np.float32), record.geometry,
                             staging / "nifti" / f"{record.case_id}_uncertainty.nii.gz")
            if i < config["eval"]["panels"]:
                segmentation_panel(record.image.grid[0], record.mask.astype(bool),
                                   {name: grid_masks[name].reshape(transform.grid_shape) for name in outputs},
                                   diffusion_uncertainty, staging / "panels" / f"{record.case_id}.png",
                                   title=f"{record.case_id}: " + ", ".join(
                                       f"{name} Dice {row[name]['dice']:.3f}" for name in outputs))
        means = {name: case_means([r[name] for r in rows]) for name in outputs}
        paired = {}
        if "unet" in outputs:
            paired = {"models": ["diffusion", "unet"], "test": "two-sided Wilcoxon signed-rank over the cases",
                      **{key: paired_wilcoxon([r["diffusion"][key] for r in rows], [r["unet"][key] for r in rows])
                         for key in PAIRED}}
        summary = {"task": "segmentation", "cases": len(rows), "mean": means, "paired": paired,
                   "settings": {**cfg, "eval_batch_size": batch},  # the reverse runs' draws depend on it
                   "definitions": {**DEFINITIONS,
                                   "ece": f"expected calibration error of the probability map, {cfg['calibration_bins']} "
                                          "equal-width bins, over the grid voxels inside the image",
                                   "brier": "mean squared difference of the probability and the mask on the grid",
                                   "error_auroc": f"AUROC of the per-voxel uncertainty (diffusion: {cfg['uncertainty']}; "
                                                  "unet: entropy of its probability) for telling wrongly from rightly "
                                                  f"decided voxels (segmentation.decision: {cfg['decision']})",
                                   "mean_uncertainty": "mean of the per-voxel uncertainty over the grid voxels "
                                                       "inside the image (as ECE and Brier)",
                                   "paired": "mean_difference is diffusion − unet",
                                   "means": "over all cases; error_auroc over the cases with both wrongly and "
                                            "rightly decided voxels (it is undefined otherwise)"},
                   "empty_rule": EMPTY_RULE, "seconds": round(time.perf_counter() - started, 2),
                   "checkpoint": checkpoints, "per_case": rows}
        write_json(staging / "summary.json", summary)
    # the same top-level names as the other tasks' metrics.json (recipe, seed, checkpoint, the part)
    result = {"recipe": config["name"], "seed": config["seed"], "checkpoint": checkpoints,
              config["eval"]["part"]: means}
    if paired:
        result["paired"] = {key: paired[key] for key in PAIRED}
    return result


def train_segmentation(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> base.Run:
    """Run a segmentation recipe end to end (the diffusion, the U-Net baseline, the held-out cases
    segmented and scored); returns the run directory and its metrics."""
    return base.train(TASK, config, overrides, data_dir)
