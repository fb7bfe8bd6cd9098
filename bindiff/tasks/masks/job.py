"""The masks task in the shared lifecycle: recipe → cases → grids → model → training →
completion, denoising, generation.

Layout of a run directory (``runs/<name>/<time>-<hash>/``):
    config.yaml, overrides.txt   the resolved recipe and the command-line overrides
    split/cases.json             data set, label preset, grid, split by case, each case's files,
                                 geometry and grid window
    split/grids.npz              every case's grid as packed bits
    checkpoints/best.pt, last.pt weights-only checkpoints
    history.json, training_curve.png
    completion/<mode>/           summary.json (per case and mean), nifti/, panels/
    denoising/, generation/      the same
    metrics.json                 the means of every evaluation, and the training time
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from ...adapters.masks import to_vectors
from ...config import RecipeError, argument
from ...files import staged_folder
from ...progress import progress_disabled
from ...training.distributed import Workers
from .. import base
from . import corruption
from .completion import evaluate_completion
from .data import (MaskData, check_label_preset, check_split_drawn, load_data, prepare_data, save_data,
                   training_matrix)
from .denoising import check_denoising_steps, evaluate_denoising
from .evaluation import EvalContext, denoise_time
from .generation import evaluate_generation
from .model import MASK_MODEL, probe

EVALUATIONS = ("completion", "denoising", "generation")


class MasksTask(base.Task):
    name = "masks"
    # eval.select chose the checkpoint, output.root and .logger are training's: scoring reads none of them
    rescore_keys = ("evaluations.", "eval.batch_size", "eval.part", "eval.max_cases", "eval.panels", "eval.nifti",
                    "output.progress")

    def model_kind(self, config: dict) -> base.ModelKind:
        return MASK_MODEL

    def check_recipe(self, config: dict) -> None:
        check_label_preset(config)
        flip = config["evaluations"]["denoising"]["flip"]
        if flip > 0.5:  # a recipe check, not the schema's: a run stored with a higher rate still loads
            raise RecipeError(f"key 'evaluations.denoising.flip' must lie in (0, 0.5]: the forward process flips "
                              f"at most half the voxels, got {flip}")
        if "completion" in config["evaluations"]["run"] and not config["evaluations"]["completion"]["hide"]:
            raise RecipeError("evaluations.completion.hide is empty: list a way to hide part of each mask "
                              "(box, alternate_slices, random_slices), or leave completion out of evaluations.run")
        probe(MASK_MODEL, config)
        check_evaluations(config, config["diffusion"]["steps"])  # before any file is read

    def prepare(self, config: dict, data_dir: str | None) -> MaskData:
        return prepare_data(config, data_dir=data_dir, disable_progress=progress_disabled(config))

    def dim(self, data: MaskData) -> int:
        return data.dim

    def training_rows(self, data: MaskData, config: dict) -> sp.csr_matrix:
        return training_matrix(data, config)

    def save_data(self, data: MaskData, folder: Path) -> None:
        save_data(data, folder)

    def data_saved(self, folder: Path) -> bool:
        return (folder / "grids.npz").is_file()  # written after cases.json

    def load_data(self, folder: Path, data_dir: str | None = None) -> MaskData:
        return load_data(folder, data_dir)

    def validator(self, model, data: MaskData, config: dict, device, workers: Workers):
        return make_validator(model, data, config, device)

    def evaluate(self, run_dir: Path, config: dict, data: MaskData, device, workers: Workers) -> dict:
        return run_evaluations(run_dir, config["evaluations"]["run"], data=data, device=device)

    def rescore(self, run_dir, overrides, checkpoint, out_dir, device, data_dir) -> dict:
        base.refuse_no_out(self.name, out_dir)
        chosen = base.rescoring_config(self, base.read_run_config(Path(run_dir)), overrides)
        return run_evaluations(run_dir, chosen["evaluations"]["run"], out_dir=out_dir, overrides=overrides,
                               checkpoint=checkpoint, device=device, data_dir=data_dir)

    def result_folders(self, config: dict) -> tuple[str, ...]:
        return tuple(config["evaluations"]["run"])

    def data_report(self, data: MaskData) -> dict:
        return {"dim": int(data.dim), "cases": {k: len(v) for k, v in data.split.items()}, "dataset": data.dataset,
                "layout": data.layout, "preset": data.preset.name, "region": data.region}

    def check(self, config: dict, data: MaskData, model) -> None:
        check_evaluations(config, model.process.num_steps, model)  # before the run folder is made

    def check_rescoring(self, config: dict, model, payload: dict) -> None:
        check_evaluations(config, model.process.num_steps, model)


TASK = MasksTask()


def train_masks(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> base.Run:
    """Run a masks recipe end to end; returns the run directory and the means of every evaluation."""
    return base.train(TASK, config, overrides, data_dir)


def make_validator(model, data: MaskData, config: dict, device: torch.device):
    """Per-epoch validation: one-step denoising Dice and the negated loss on the validation cases.

    The damaged inputs and the loss's noise are drawn once from seeded generators, so every
    epoch is scored on exactly the same problems.
    """
    flip = config["evaluations"]["denoising"]["flip"]
    t = config["evaluations"]["denoising"]["t"] or denoise_time(model, flip)
    rng = np.random.default_rng(config["seed"] + 7)
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
        # self-conditioning draws, per example, whether it sees its own estimate: the same coins every epoch
        coins = torch.Generator(device=device).manual_seed(config["seed"] + 13)
        for start in range(0, len(clean_t), size):
            sl = slice(start, start + size)
            pred = model.predict_x0(noisy_t[sl], min(t, T)) >= 0.5
            truth = clean_t[sl] >= 0.5
            inter += float((pred & truth).sum())
            total += float(pred.sum() + truth.sum())
            # an ensemble's training loss gives block m of the rows to member m: every member scores every row
            m = len(model.denoiser.members) if model.is_ensemble else 1
            out = model(clean_t[sl].repeat(m, 1), t=loss_t[sl].repeat(m), noise=loss_noise[sl].repeat(m, 1),
                        generator=coins)
            loss += float(out.terms["loss"].sum()) / m
        return {"denoise_dice": 1.0 if total == 0 else 2 * inter / total, "neg_loss": -loss / len(clean_t)}

    return validate


def check_evaluations(config: dict, T: int, model=None) -> None:
    """Refuse evaluation steps and times beyond the model's T, and (given the model, whose schedule
    turns the flip rate into a time) denoising steps beyond the denoising time."""
    evaluations = config["evaluations"]
    checked = [("completion", "steps"), ("generation", "steps"), ("denoising", "steps")]
    if evaluations["completion"]["warm_start"]:  # warm_t is read only by a warm start
        checked.append(("completion", "warm_t"))
    for name, key in checked:
        steps = evaluations[name][key]
        if steps is not None and steps > T:
            raise RecipeError(f"evaluations.{name}.{key} = {steps} exceeds diffusion.steps = {T}")
    t = evaluations["denoising"]["t"]
    if t is not None and t > T:
        raise RecipeError(f"evaluations.denoising.t = {t} exceeds diffusion.steps = {T}")
    if model is not None:
        check_denoising_steps(evaluations["denoising"], model)


class LoadedMasksRun(NamedTuple):
    """A masks run read back: recipe, data, model (eval mode), which checkpoint, and its payload."""

    config: dict
    data: MaskData
    model: torch.nn.Module
    info: dict  # the checkpoint's file, epoch and selection metric
    payload: dict


def load_masks_run(run_dir: str | Path, checkpoint: str = "best", device=None,
                   data_dir: str | None = None) -> LoadedMasksRun:
    """The config, data, model and checkpoint description of a finished (or interrupted) masks run
    (``data_dir``: where a named data set that has moved since the run is now)."""
    config, payload, model = base.load_trained(TASK, run_dir, checkpoint, device)
    data = load_data(Path(run_dir) / "split", data_dir)
    check_split_drawn(data.split, config, Path(run_dir) / "split" / "cases.json")
    info = base.checkpoint_entry(payload, checkpoint)
    return LoadedMasksRun(config, data, model, info, payload)


@base.keeps_threads
def run_evaluations(run_dir: str | Path, evaluations, data: MaskData | None = None, device=None,
                    out_dir: Path | None = None, overrides: list[str] = (), checkpoint: str = "best",
                    command: str | None = None, data_dir: str | None = None) -> dict:
    """Run evaluations on a run's held-out cases; writes ``<out_dir>/<evaluation>/summary.json`` and more.

    ``overrides`` (``evaluations.*``, ``eval.*`` but ``eval.select``, ``output.progress``) apply to
    the run's recipe for this evaluation only (e.g. ``evaluations.completion.steps=10``). With a
    ``command`` (``masks denoising``, named in the refusal), only the sections of ``evaluations``
    are accepted: another evaluation's settings, or ``evaluations.run``, would change nothing.
    ``data_dir``: where a named data set that has moved since the run is now.
    """
    run_dir = Path(run_dir)
    if isinstance(evaluations, (str, bytes)):  # "denoising" would be read as d, e, n, ...
        raise TypeError(f"evaluations must be a list of names, not one string: write [{evaluations!r}]")
    if evaluations is None or not isinstance(evaluations, Iterable):
        raise TypeError(f"evaluations must be a list of names among {', '.join(EVALUATIONS)}, got {evaluations!r}")
    evaluations = list(evaluations)
    # every name and output folder checked before the first evaluation runs: a refusal after one had
    # written its folder left a half-done set of results (and a name given twice was refused as "exists")
    for i, name in enumerate(evaluations):
        if name not in EVALUATIONS:
            raise RecipeError(f"unknown evaluation {name!r}; choose among {', '.join(EVALUATIONS)}")
        if name in evaluations[:i]:
            raise RecipeError(f"evaluations: {name!r} is listed twice")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    for name in evaluations:
        if (out_dir / name).exists():
            raise FileExistsError(f"{out_dir / name}: already exists; bindiff never overwrites (choose another "
                                  f"{argument('out_dir', '--out')})")
    config, stored, model, info, payload = load_masks_run(run_dir, checkpoint=checkpoint, device=device,
                                                          data_dir=data_dir)
    allowed = None
    if command is not None and not isinstance(evaluations, (str, bytes)):
        allowed = (*(f"evaluations.{name}." for name in evaluations),
                   *(key for key in TASK.rescore_keys if not key.startswith("evaluations.")))
    config = base.rescoring_config(TASK, config, overrides, allowed=allowed, command=command)
    TASK.check_rescoring(config, model, payload)
    data = data or stored
    base.apply_threads(config)
    ctx = EvalContext(model=model, data=data, config=config, device=base.device_of(model), checkpoint=info)
    metrics: dict = {"recipe": config["name"], "seed": config["seed"], "checkpoint": info}
    for name in evaluations:
        if (out_dir / name).exists():
            raise FileExistsError(f"{out_dir / name}: already exists; bindiff never overwrites (choose another "
                                  f"{argument('out_dir', '--out')})")
        with staged_folder(out_dir / name) as folder:  # <out>/<name> appears complete, or not at all
            metrics.update(_evaluate(ctx, name, folder))
    return metrics


def _evaluate(ctx: EvalContext, name: str, folder: Path) -> dict:
    """One evaluation's results written into ``folder``; its means for metrics.json."""
    if name == "completion":
        return {"completion": {mode: _means(s) for mode, s in evaluate_completion(ctx, folder).items()}}
    if name == "denoising":
        return {"denoising": _means(evaluate_denoising(ctx, folder))}
    summary = evaluate_generation(ctx, folder)
    return {"generation": {**summary["plausibility"], "reference": summary["reference"],
                           "volume_ks": summary["volume_ks"], "realism": summary["realism"],
                           "seconds": summary["seconds"]}}


def _means(summary: dict) -> dict:
    return {"baselines": summary["baselines"], "cases": summary["cases"], "seconds": summary["seconds"],
            **{m: {k: summary["mean"][m][k] for k in ("dice", "iou", "hd95_mm", "assd_mm", "surface_dice",
                                                       "abs_volume_error_ml", "hidden_dice")
                   if k in summary["mean"][m]}  # hidden_dice: completion only
               for m in summary["mean"]}}
