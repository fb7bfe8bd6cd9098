"""The training loop every task uses: minibatches densified from CSR, validation every epoch,
early stopping, a checkpoint after every epoch.

Randomness: the data order and the diffusion noise come from two generators seeded from the
recipe seed; dropout and initialisation use torch's default generator, which is seeded from
the same seed before the model is built (``nn.Dropout`` takes no generator).

Exact resume: after every epoch ``last.pt`` receives everything the rest of the run depends
on (``TrainState``, the model, the optimiser with its schedule, every random state: data
order, diffusion noise, torch's default generator, CUDA; nothing draws from numpy's or Python's). ``fit(...,
resume=payload)`` restores all of it and continues with the next epoch, so a run killed at
any point and resumed from its last checkpoint ends with bit-identical weights and metrics on
CPU: the interrupted epoch is redone from the same state and draws the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ..config import RecipeError
from ..core import DenoiserEnsemble
from ..core.unet import cuda_computes_bf16
from ..files import write_json
from ..progress import log, log_lines, progress_disabled
from .checkpoint import capture_rng, restore_rng, save_checkpoint
from .distributed import SINGLE, Workers
from .steps import parallel_step, single_step


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0


@dataclass
class TrainState:
    """Where a run stands after an epoch: what a checkpoint must hold to continue it exactly."""

    epoch: int = 0
    step: int = 0  # optimiser steps taken
    best_value: float = -math.inf
    best_epoch: int = 0
    seconds: float = 0.0  # training time before this process started
    done: bool = False
    history: list[dict] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, payload: dict) -> "TrainState":
        return cls(epoch=int(payload["epoch"]), step=int(payload["step"]),
                   best_value=float(payload["best"]["value"]), best_epoch=int(payload["best"]["epoch"]),
                   seconds=float(payload["seconds"]), done=bool(payload["done"]),
                   history=[dict(row) for row in payload["history"]])


def autocast_dtype(config: dict, device: torch.device) -> torch.dtype | None:
    """The dtype the denoiser's forward pass runs in under autocast; None: float32 throughout."""
    precision = config["train"]["precision"]
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and cuda_computes_bf16()):
        return torch.bfloat16
    return None


def fit(
    model: torch.nn.Module,
    optimizer,
    train: sp.csr_matrix,
    *,
    config: dict,
    config_yaml: str,
    validate: Callable[[], dict[str, float]],
    checkpoint_dir: Path,
    device: torch.device,
    resume: dict | None = None,
    workers: Workers = SINGLE,
    history_path: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    condition: np.ndarray | None = None,
) -> TrainResult:
    """Train until ``train.epochs`` or early stopping; ``resume`` is a loaded ``last.pt``.

    With several ``workers`` each process computes its block of every batch (``steps``),
    ``validate`` must return metrics gathered over all processes, and only rank 0 writes
    checkpoints. ``history_path``, when given, is rewritten after every epoch, so a run can be
    followed while it trains; ``on_epoch`` receives each epoch's history row (rank 0 only).
    ``condition`` holds one row per training row (e.g. a mask's image), passed to the model as
    ``cond`` beside its data row; one process only.
    """
    t_cfg, select = config["train"], config["eval"]["select"]
    if train.shape[0] == 0:
        raise ValueError("the training matrix has no users")
    if condition is not None and (len(condition) != train.shape[0] or workers.parallel):
        raise ValueError(f"condition must hold one row per training row ({train.shape[0]}), got {len(condition)}, "
                         "and conditional training runs in one process")
    generators = {
        "order": torch.Generator().manual_seed(config["seed"]),  # data order
        "noise": torch.Generator(device=device).manual_seed(config["seed"] + 1),  # diffusion times and noise
    }
    state = _restore(resume, model, optimizer, generators) if resume is not None else TrainState()
    resumed_from = state.epoch
    step_fn = parallel_step(model, train, device, generators["noise"], workers) if workers.parallel \
        else single_step(model, train, device, generators["noise"], condition)
    low_precision = autocast_dtype(config, device)

    started = time.perf_counter() - state.seconds
    bar = tqdm(total=t_cfg["epochs"], initial=state.epoch, desc="training", unit="epoch",
               disable=progress_disabled(config) if workers.is_main else True)
    piped = workers.is_main and log_lines(config)
    try:  # the bar is closed on an error too, or a terminal redraws it after the traceback
        while not state.done and state.epoch < t_cfg["epochs"]:
            state.epoch += 1
            loss_sum = _train_epoch(model, optimizer, train, step_fn, generators["order"], state, t_cfg["batch_size"],
                                    low_precision, device)
            loss_sum = workers.sum(loss_sum)
            if not math.isfinite(loss_sum):
                raise RecipeError(f"train.lr: training diverged (the loss is {loss_sum} in epoch {state.epoch}); "
                                  f"lower train.lr (now {t_cfg['lr']})")
            model.eval()
            with optimizer.evaluated():  # train.ema: the average is what is validated and saved
                metrics = validate()
                if select not in metrics:  # a task of one's own whose validation names other metrics
                    raise RecipeError(f"eval.select: {select!r} is not among the validation metrics "
                                      f"{', '.join(sorted(metrics))}")
                value = float(metrics[select])
                # the first epoch is the best so far whatever its value, so best.pt exists from then on
                # (an undefined metric, NaN or -inf, once left none and the run could not finish); a
                # NaN never beats a defined value, and a defined value beats a NaN
                improved = state.best_epoch == 0 or value > state.best_value or (
                    math.isnan(state.best_value) and not math.isnan(value))
                if improved:
                    state.best_value, state.best_epoch = value, state.epoch
                state.done = state.epoch - state.best_epoch >= t_cfg["patience"] or state.epoch >= t_cfg["epochs"]
                state.history.append({"epoch": state.epoch, "train_loss": loss_sum / train.shape[0],
                                      **{f"valid_{k}": v for k, v in metrics.items()},
                                      "seconds": time.perf_counter() - started})
                if workers.is_main:
                    _save_epoch(checkpoint_dir, improved, state, model, optimizer, generators, config_yaml, select,
                                dim=train.shape[1], seconds=time.perf_counter() - started)
            if workers.is_main:
                if history_path is not None:
                    write_json(history_path, state.history)
                if on_epoch is not None:
                    on_epoch(state.history[-1])
            bar.update(1)
            bar.set_postfix({select: f"{value:.4f}", "best": f"{state.best_value:.4f}"})
            if piped:  # tqdm draws nothing when piped: one line per epoch instead
                log(f"epoch {state.epoch}/{t_cfg['epochs']}  train_loss {loss_sum / train.shape[0]:.4f}  "
                    f"valid {select} {value:.4f}  best {state.best_value:.4f} (epoch {state.best_epoch})  "
                    f"{time.perf_counter() - started:.1f} s")
    finally:
        bar.close()
    workers.barrier()  # every checkpoint is on disk before any process reads one
    return TrainResult(best_epoch=state.best_epoch, best_value=float(state.best_value),
                       epochs_run=len(state.history), seconds=time.perf_counter() - started,
                       history=state.history, resumed_from_epoch=resumed_from)


def _restore(resume: dict, model, optimizer, generators: dict) -> TrainState:
    """Put a loaded ``last.pt`` back: weights, optimiser, random states; returns where it stood."""
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    restore_rng(resume["rng"], generators)
    return TrainState.from_checkpoint(resume)


def _train_epoch(model, optimizer, train: sp.csr_matrix, step_fn, order_generator: torch.Generator,
                 state: TrainState, batch_size: int, low_precision, device: torch.device) -> float:
    """One pass over the training rows in a freshly drawn order; returns the summed loss.

    An ensemble of M members (``denoiser.members``) draws M orders, one per member, and each
    step's batch is their M blocks of ``batch_size`` rows side by side (block m is member m's,
    see ``DenoiserEnsemble``): every member passes over every row once per epoch, in its own
    order. The first order is the one a single model draws. The summed loss is per member.
    """
    model.train()
    n_rows, members = train.shape[0], ensemble_size(model)
    orders = [torch.randperm(n_rows, generator=order_generator).numpy() for _ in range(members)]
    loss_sum = 0.0
    for start in range(0, n_rows, batch_size):
        optimizer.zero_grad(set_to_none=True)
        rows = np.concatenate([order[start:start + batch_size] for order in orders])
        with torch.autocast(device.type, dtype=low_precision, enabled=low_precision is not None):
            loss, rows_loss = step_fn(rows)
        loss.backward()
        optimizer.step()
        state.step += 1
        loss_sum += rows_loss / members
    return loss_sum


def ensemble_size(model) -> int:
    """How many members the model's denoiser holds (1: not an ensemble)."""
    denoiser = getattr(model, "denoiser", None)
    return len(denoiser.members) if isinstance(denoiser, DenoiserEnsemble) else 1


def _save_epoch(checkpoint_dir: Path, improved: bool, state: TrainState, model, optimizer, generators: dict,
                config_yaml: str, select: str, dim: int, seconds: float) -> None:
    """``best.pt`` when the epoch improved, then ``last.pt``.

    best.pt first: a crash between the two writes leaves last.pt one epoch behind, and the
    resumed run redoes that epoch and rewrites the same best.pt. The other order could leave a
    last.pt that names a best epoch best.pt does not hold.
    """
    payload = dict(
        config_yaml=config_yaml, model=model, dim=dim, epoch=state.epoch, step=state.step,
        optimizer=optimizer.state_dict(),
        best={"metric": select, "value": float(state.best_value), "epoch": state.best_epoch},
        epochs_since_best=state.epoch - state.best_epoch, done=state.done, history=state.history,
        rng=capture_rng(generators), seconds=seconds,
    )
    if improved:
        save_checkpoint(checkpoint_dir / "best.pt", **payload)
    save_checkpoint(checkpoint_dir / "last.pt", **payload)
