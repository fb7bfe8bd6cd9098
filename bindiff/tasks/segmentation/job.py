"""The segmentation task in the shared lifecycle: images and masks → conditional Bernoulli diffusion
→ masks sampled from noise given each held-out image, with calibration and uncertainty.

Layout of a run directory (``runs/<name>/<time>-<hash>/``):
    config.yaml, overrides.txt, split/cases.json, checkpoints/, history.json, training_curve.png
    segmentation/summary.json    per case and mean: Dice, IoU, HD95, ASSD, surface Dice, volume error,
                                 ECE, Brier score, error-detection AUROC of the uncertainty
    segmentation/nifti/          <case>_mask.nii.gz and <case>_uncertainty.nii.gz in the image's geometry
    metrics.json                 ``test: {diffusion: {...}}`` and the training facts

Sampling reads the image only; the label file is read to score the result, never to make it.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ...adapters.masks import load_region, write_mask, write_volume
from ...config import RecipeError
from ...core import unet  # noqa: F401  (registers "unet")
from ...files import write_json
from ...metrics.calibration import binary_entropy, brier_score, error_detection_auroc, expected_calibration_error
from ...metrics.segmentation import DEFINITIONS, EMPTY_RULE, segmentation_metrics, summarize
from ...progress import log, log_lines, progress_disabled
from ...training.builders import build_diffusion
from ...training.distributed import Workers
from .. import base
from ..masks.data import check_label_preset, resolve_preset
from ..masks.model import model_config
from .data import SegmentationData, load_data, prepare_data, save_data

IMAGE_CHANNELS = 1  # the MSD layout holds one image per case


def build_segmenter(config: dict, dim: int, training: bool = False):
    """The diffusion over the mask grid whose U-Net reads the image beside x_t."""
    if config["denoiser"]["name"] != "unet":
        raise RecipeError("denoiser.name: segmentation reads the image through the U-Net; use unet")
    conf = copy.deepcopy(model_config(config))
    params = conf["denoiser"]["params"]
    if params.get("cond_channels", IMAGE_CHANNELS) != IMAGE_CHANNELS:
        raise RecipeError(f"denoiser.params.cond_channels: leave it out; it is the image's {IMAGE_CHANNELS} channel")
    params["cond_channels"] = IMAGE_CHANNELS
    return build_diffusion(conf, dim)


SEGMENTER = base.ModelKind("binomial", build_segmenter, description="conditional binomial diffusion on the mask grid")


class SegmentationTask(base.Task):
    name = "segmentation"
    rescore_keys = ("segmentation.", "eval.", "output.")

    def model_kind(self, config: dict) -> base.ModelKind:
        return SEGMENTER

    def check_recipe(self, config: dict) -> None:
        check_label_preset(config)

    def prepare(self, config: dict, data_dir: str | None) -> SegmentationData:
        return prepare_data(config, data_dir, disable_progress=progress_disabled(config))

    def dim(self, data: SegmentationData) -> int:
        return data.dim

    def training_rows(self, data: SegmentationData, config: dict) -> sp.csr_matrix:
        return data.masks("train")

    def training_condition(self, data: SegmentationData, config: dict) -> np.ndarray:
        return data.images("train")

    def check(self, config: dict, data: SegmentationData, model) -> None:
        steps = config["segmentation"]["steps"]
        if steps is not None and steps > model.process.num_steps:
            raise RecipeError(f"segmentation.steps = {steps} exceeds diffusion.steps = {model.process.num_steps}")

    def save_data(self, data: SegmentationData, folder: Path) -> None:
        save_data(data, folder)

    def data_saved(self, folder: Path) -> bool:
        return (folder / "cases.json").is_file()

    def load_data(self, folder: Path) -> SegmentationData:
        return load_data(folder, base.read_run_config(folder.parent))

    def validator(self, model, data: SegmentationData, config: dict, device, workers: Workers):
        """Dice of one denoiser call from pure noise at t = T given each validation image (noise drawn once)."""
        truth = torch.from_numpy(data.masks("valid").toarray()).to(device) >= 0.5
        images = torch.from_numpy(data.images("valid")).to(device)
        T = model.process.num_steps
        noise = (torch.rand(truth.shape, generator=torch.Generator().manual_seed(base.derived_seed(config["seed"], "valid")))
                 < 0.5).float().to(device)

        @torch.no_grad()
        def validate() -> dict[str, float]:
            pred = model.predict_x0(noise, T, cond=images) >= 0.5
            total = float(pred.sum() + truth.sum())
            return {"dice": 1.0 if total == 0 else 2 * float((pred & truth).sum()) / total}
        return validate

    def evaluate(self, run_dir: Path, config: dict, data: SegmentationData, device, workers: Workers) -> dict:
        return run_segmentation(run_dir, data=data)

    def data_report(self, data: SegmentationData) -> dict:
        return {"dim": data.dim, "cases": {k: len(v) for k, v in data.split.items()}, "dataset": data.dataset,
                "layout": data.layout, "preset": data.preset_name, "region": data.region,
                "outside_voxels": int(sum(c.outside for c in data.cases.values()))}


TASK = SegmentationTask()


def sample_probabilities(model, images: torch.Tensor, cfg: dict, generator: torch.Generator,
                         batch_size: int, report=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over ``cfg["samples"]`` reverse runs from noise given each image: (n, D) each.

    ``report(message)``, when given, hears of each finished run (a log line when piped)."""
    runs = []
    for run in range(cfg["samples"]):
        chunks = [model.sample(len(images[i:i + batch_size]), steps=cfg["steps"], generator=generator,
                               device=images.device, decode="mean", cond=images[i:i + batch_size]).cpu().numpy()
                  for i in range(0, len(images), batch_size)]
        runs.append(np.concatenate(chunks))
        if report is not None:
            report(f"segmentation: sample {run + 1}/{cfg['samples']} of {len(images)} cases")
    stack = np.stack(runs).astype(np.float64)
    return stack.mean(0), stack.var(0)


def run_segmentation(run_dir: str | Path, data: SegmentationData | None = None, overrides: list[str] = (),
                     checkpoint: str = "best", out_dir: Path | None = None) -> dict:
    """Segment the run's held-out cases from their images; writes segmentation/summary.json."""
    run_dir = Path(run_dir)
    config, payload, model = base.load_trained(TASK, run_dir, checkpoint)
    config = base.rescoring_config(TASK, config, overrides)
    data = data or load_data(run_dir / "split", config)
    cfg, started = config["segmentation"], time.perf_counter()
    records = data.part(config["eval"]["part"])[: config["eval"]["max_cases"] or None]
    device = base.device_of(model)
    images = torch.from_numpy(np.stack([r.image.grid.reshape(-1) for r in records]).astype(np.float32)).to(device)
    generator = torch.Generator(device=device).manual_seed(base.derived_seed(config["seed"], "segmentation"))
    mean, variance = sample_probabilities(model, images, cfg, generator, config["eval"]["batch_size"],
                                          report=log if log_lines(config) else None)
    folder = (Path(out_dir) if out_dir is not None else run_dir) / "segmentation"
    if folder.exists():
        raise FileExistsError(f"{folder}: already exists; bindiff never overwrites")
    preset = resolve_preset(config, data.layout)
    rows = []
    for i, record in enumerate(records):
        transform = record.image.transform
        valid = transform.valid().reshape(-1)
        prob = mean[i] * valid
        uncertainty = binary_entropy(prob) if cfg["uncertainty"] == "entropy" else variance[i] * valid
        pred_grid = (prob >= cfg["threshold"]).reshape(transform.grid_shape).astype(np.uint8)
        truth, _ = load_region(record.case, preset, data.region)  # read to score only
        volume = transform.from_grid(pred_grid).astype(bool)
        truth_grid = record.mask.reshape(-1).astype(bool)
        row = {"case_id": record.case_id,
               "diffusion": {**segmentation_metrics(volume, truth, record.geometry.spacing),
                             "ece": expected_calibration_error(prob[valid], truth_grid[valid], cfg["calibration_bins"]),
                             "brier": brier_score(prob[valid], truth_grid[valid]),
                             "error_auroc": error_detection_auroc(uncertainty[valid],
                                                                  (prob[valid] >= cfg["threshold"]) != truth_grid[valid]),
                             "mean_uncertainty": float(uncertainty[valid].mean())}}
        rows.append(row)
        if config["eval"]["nifti"]:
            write_mask(volume, record.geometry, folder / "nifti" / f"{record.case_id}_mask.nii.gz")
            write_volume(transform.from_grid(uncertainty.reshape(transform.grid_shape).astype(np.float32)),
                         record.geometry, folder / "nifti" / f"{record.case_id}_uncertainty.nii.gz")
    means = summarize(r["diffusion"] for r in rows)
    for key in ("ece", "brier", "error_auroc", "mean_uncertainty"):
        values = [r["diffusion"][key] for r in rows if not np.isnan(r["diffusion"][key])]
        means[key] = float(np.mean(values)) if values else float("nan")
    summary = {"task": "segmentation", "cases": len(rows), "mean": {"diffusion": means}, "settings": dict(cfg),
               "definitions": {**DEFINITIONS,
                               "ece": f"expected calibration error of the mean probability, {cfg['calibration_bins']} "
                                      "equal-width bins, over the grid voxels inside the image",
                               "brier": "mean squared difference of the probability and the mask on the grid",
                               "error_auroc": f"AUROC of the per-voxel uncertainty ({cfg['uncertainty']}) for "
                                              "telling wrongly from rightly thresholded voxels"},
               "empty_rule": EMPTY_RULE, "seconds": round(time.perf_counter() - started, 2),
               "checkpoint": {"file": f"{checkpoint}.pt", "epoch": payload.get("epoch")}, "per_case": rows}
    write_json(folder / "summary.json", summary)
    return {"recipe": config["name"], "seed": config["seed"], config["eval"]["part"]: {"diffusion": means}}


def train_segmentation(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> base.Run:
    return base.train(TASK, config, overrides, data_dir)
