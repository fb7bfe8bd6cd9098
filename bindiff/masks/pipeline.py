"""The masks job: recipe → cases → grids → model → training → completion, denoising, generation.

Layout of a run directory (``runs/<name>/<time>-<hash>/``):
    config.yaml, overrides.txt   the resolved recipe and the command-line overrides
    split/cases.json             data set, label preset, grid, split by case, each case's files,
                                 geometry and grid window
    split/grids.npz              every case's grid as packed bits
    checkpoints/best.pt, last.pt weights-only checkpoints
    history.json, training_curve.png
    completion/<mode>/           summary.json (per case and mean), nifti/, panels/
    denoising/, generation/      the same
    metrics.json                 the means of every task, and the training time

The U-Net's grid is not a recipe key of its own: it is ``grid.shape``, handed to the denoiser
here (the core's process never sees a shape).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import RecipeError, dump_recipe
from ..core import BinomialDiffusion
from ..core import unet  # noqa: F401  (registers "unet")
from ..files import write_json
from ..lifecycle import apply_threads, progress_disabled
from ..plots import plot_training_curve
from ..runs import create_run_dir, read_trained_model
from ..training.builders import build_model, build_optimizer, resolve_device
from ..training.trainer import fit
from . import corruption
from .data import MaskData, load_data, prepare_data, save_data, training_matrix
from .optim import WarmupClip
from .evaluate import EvalContext, denoise_time, evaluate_completion, evaluate_denoising, evaluate_generation

TASK_NAMES = ("completion", "denoising", "generation")


@dataclass
class MasksRun:
    run_dir: Path
    metrics: dict


def model_config(config: dict) -> dict:
    """The recipe with the grid handed to a spatial denoiser (``denoiser.params.grid``)."""
    if config["denoiser"]["name"] != "unet":
        return config
    out = copy.deepcopy(config)
    params = out["denoiser"]["params"]
    grid = [int(s) for s in config["grid"]["shape"]]
    if "grid" in params and [int(s) for s in params["grid"]] != grid:
        raise RecipeError(f"denoiser.params.grid {params['grid']} differs from grid.shape {grid}; "
                          "leave it out, the grid is taken from grid.shape")
    params["grid"] = grid
    return out


class LowTimeMixtureDiffusion(BinomialDiffusion):
    """BinomialDiffusion whose training times are a mixture: with probability ``low_share`` a time
    drawn uniformly from 1..low_max, otherwise from 1..train_t_max.

    Denoising a lightly damaged mask and the last steps of every reverse run happen at small t,
    so a CPU-sized training budget is better spent there; every t keeps a positive probability,
    so inpainting and sampling from noise still see every step. The weights are those of a
    plain BinomialDiffusion (evaluation builds one).
    """

    def __init__(self, base: BinomialDiffusion, low_share: float = 0.0, low_max: int = 2):
        super().__init__(base.denoiser, base.process, loss=base.loss_kind, hybrid_coeff=base.hybrid_coeff,
                         train_t_max=base.train_t_max, reverse_kernel=base.reverse_kernel)
        self.low_share, self.low_max = float(low_share), min(int(low_max), base.train_t_max)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        t = super().sample_timesteps(n, generator, device)
        if self.low_share <= 0:
            return t
        low = torch.randint(1, self.low_max + 1, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device) < self.low_share
        return torch.where(pick, low, t)


def build_mask_model(config: dict, dim: int, training: bool = False):
    model = build_model(model_config(config), dim)
    if training and config["timesteps"]["low_share"] > 0:
        model = LowTimeMixtureDiffusion(model, config["timesteps"]["low_share"], config["timesteps"]["low_max"])
    return model


def make_validator(model, data: MaskData, config: dict, device: torch.device):
    """Per-epoch validation: one-step denoising Dice and the negated loss on the validation cases.

    The damaged inputs and the loss's noise are drawn once from seeded generators, so every
    epoch is scored on exactly the same problems.
    """
    flip = config["tasks"]["denoising"]["flip"]
    t = config["tasks"]["denoising"]["t"] or denoise_time(model, flip)
    rng = np.random.default_rng(config["seed"] + 7)
    from ..adapters.masks import to_vectors

    clean, noisy = [], []
    for record in data.part("valid"):
        observed, _ = corruption.flip_voxels(record.grid, flip, rng, record.transform.valid())
        clean.append(to_vectors(np.ascontiguousarray(record.grid), data.spec))
        noisy.append(to_vectors(np.ascontiguousarray(observed), data.spec))
    clean_t = torch.from_numpy(np.concatenate(clean).astype(np.float32)).to(device)
    noisy_t = torch.from_numpy(np.concatenate(noisy).astype(np.float32)).to(device)
    T = model.process.num_steps
    g = torch.Generator().manual_seed(config["seed"] + 11)
    loss_t = torch.randint(1, model.train_t_max + 1, (len(clean_t),), generator=g).to(device)
    loss_noise = torch.rand(clean_t.shape, generator=g).to(device)
    size = config["eval"]["batch_size"]

    @torch.no_grad()
    def validate() -> dict[str, float]:
        inter = total = 0.0
        loss = 0.0
        for start in range(0, len(clean_t), size):
            sl = slice(start, start + size)
            pred = model.predict_x0(noisy_t[sl], min(t, T)) >= 0.5
            truth = clean_t[sl] >= 0.5
            inter += float((pred & truth).sum())
            total += float(pred.sum() + truth.sum())
            loss += float(model(clean_t[sl], t=loss_t[sl], noise=loss_noise[sl]).terms["loss"].sum())
        return {"denoise_dice": 1.0 if total == 0 else 2 * inter / total, "neg_loss": -loss / len(clean_t)}

    return validate


def train_masks(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> MasksRun:
    """Run a masks recipe end to end; returns the run directory and the means of every task."""
    started = time.perf_counter()
    apply_threads(config)
    device = resolve_device(config["train"]["device"])
    data = prepare_data(config, data_dir=data_dir, disable_progress=progress_disabled(config))
    # Everything that can be refused is checked before the run directory exists.
    torch.manual_seed(config["seed"])
    model = build_mask_model(config, dim=data.dim, training=True).to(device)
    _check_tasks(config, model)
    train = training_matrix(data, config)
    opt_cfg = config["optimizer"]
    steps = config["train"]["epochs"] * -(-train.shape[0] // config["train"]["batch_size"])
    optimizer = WarmupClip(build_optimizer(config, model), opt_cfg["warmup_steps"], opt_cfg["clip_grad_norm"],
                           total_steps=steps if opt_cfg["decay"] == "cosine" else None)

    run_dir = create_run_dir(config, list(overrides))
    save_data(data, run_dir / "split")
    validate = make_validator(model, data, config, device)
    result = fit(model, optimizer, train, config=config, config_yaml=dump_recipe(config), validate=validate,
                 checkpoint_dir=run_dir / "checkpoints", device=device)
    write_json(run_dir / "history.json", result.history)
    plot_training_curve(result.history, config["eval"]["select"], run_dir / "training_curve.png")
    training = {"optimizer_steps": optimizer.steps_done, "skipped_steps": optimizer.skipped,
                "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "seconds": round(result.seconds, 2),
                "training_vectors": int(train.shape[0]), "dim": int(data.dim),
                "cases": {k: len(v) for k, v in data.split.items()}, "dataset": data.dataset, "layout": data.layout,
                "preset": data.preset.name, "region": data.region}
    metrics = run_tasks(run_dir, config["tasks"]["run"], data=data, device=device)
    metrics["training"] = training
    metrics["seconds_total"] = round(time.perf_counter() - started, 2)
    write_json(run_dir / "metrics.json", metrics)
    return MasksRun(run_dir=run_dir, metrics=metrics)


def _check_tasks(config: dict, model) -> None:
    T = model.process.num_steps
    tasks = config["tasks"]
    for name, key in (("completion", "steps"), ("completion", "warm_t"), ("generation", "steps")):
        steps = tasks[name][key]
        if steps is not None and steps > T:
            raise RecipeError(f"tasks.{name}.{key} = {steps} exceeds diffusion.steps = {T}")
    if tasks["denoising"]["t"] is not None and tasks["denoising"]["t"] > T:
        raise RecipeError(f"tasks.denoising.t = {tasks['denoising']['t']} exceeds diffusion.steps = {T}")


def load_masks_run(run_dir: str | Path, checkpoint: str = "best", device=None):
    """The config, data and model of a finished (or interrupted) masks run."""
    run_dir = Path(run_dir)
    config, payload, model = read_trained_model(run_dir, "masks", build_mask_model, checkpoint, device)
    data = load_data(run_dir / "split")
    info = {"file": f"{checkpoint}.pt", "epoch": payload.get("epoch"), **(payload.get("best") or {})}
    return config, data, model, info


def run_tasks(run_dir: str | Path, tasks, data: MaskData | None = None, device=None, out_dir: Path | None = None,
              config_updates: list[str] = (), checkpoint: str = "best") -> dict:
    """Run evaluations on a run's held-out cases; writes ``<out_dir>/<task>/summary.json`` and more.

    ``config_updates`` are ``tasks.*`` / ``eval.*`` overrides applied to the run's recipe for
    this evaluation only (e.g. ``tasks.completion.steps=10``).
    """
    run_dir = Path(run_dir)
    config, stored, model, info = load_masks_run(run_dir, checkpoint=checkpoint, device=device)
    if config_updates:
        from ..config.recipe import _merge, _nest, parse_override
        from ..config.schema import schema_for

        for text in config_updates:
            keys, value = parse_override(text)
            if keys[0] not in ("tasks", "eval", "output"):
                raise RecipeError(f"override {text!r}: only tasks.*, eval.* and output.* can change after training")
            _merge(config, _nest(keys, value), schema_for("masks"), f"override {text!r}")
    data = data or stored
    apply_threads(config)
    device = next(model.parameters()).device
    _check_tasks(config, model)
    ctx = EvalContext(model=model, data=data, config=config, device=device, checkpoint=info)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    metrics: dict = {"recipe": config["name"], "seed": config["seed"], "checkpoint": info}
    for task in tasks:
        if task not in TASK_NAMES:
            raise RecipeError(f"unknown task {task!r}; choose among {', '.join(TASK_NAMES)}")
        folder = out_dir / task
        folder.mkdir(parents=True, exist_ok=False)
        if task == "completion":
            results = evaluate_completion(ctx, folder)
            metrics["completion"] = {mode: _means(s) for mode, s in results.items()}
        elif task == "denoising":
            metrics["denoising"] = _means(evaluate_denoising(ctx, folder))
        else:
            summary = evaluate_generation(ctx, folder)
            metrics["generation"] = {**summary["plausibility"], "reference": summary["reference"],
                                     "volume_ks": summary["volume_ks"], "realism": summary["realism"],
                                     "seconds": summary["seconds"]}
    return metrics


def _means(summary: dict) -> dict:
    return {"baselines": summary["baselines"], "cases": summary["cases"], "seconds": summary["seconds"],
            **{m: {k: summary["mean"][m][k] for k in ("dice", "iou", "hd95_mm", "abs_volume_error_ml")}
               for m in summary["mean"]}}
