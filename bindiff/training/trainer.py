"""The training loop: minibatches densified from CSR, validation every epoch, early stopping.

Randomness: the data order and the diffusion noise come from two generators seeded from the
recipe seed; dropout and initialisation use torch's default generator, which is seeded from
the same seed before the model is built (``nn.Dropout`` takes no generator).

Exact resume: after every epoch ``last.pt`` receives everything the rest of the run depends
on: model, optimiser (and learning-rate schedule, when there is one), epoch, optimiser step,
best metric and its epoch, epochs since the best (early stopping), the history so far, the
elapsed time and every random state (data order, diffusion noise, torch's default generator,
CUDA, numpy, python). ``fit(..., resume=payload)`` restores all of it and continues with
the next epoch, so a run killed at any point and resumed from its last checkpoint ends with
bit-identical weights and metrics on CPU: the interrupted epoch is redone from the same
state and draws the same numbers.
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
from ..core import BinomialDiffusion
from ..core.dropout import batch_rows
from ..lifecycle import progress_disabled
from .checkpoint import capture_rng, restore_rng, save_checkpoint
from .distributed import SINGLE, Workers


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    resumed_from_epoch: int = 0


def dense_batch(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """The only place training turns sparse rows into a dense (batch, D) tensor.

    On CUDA only the coordinates travel, from pinned memory and without blocking, and the
    dense batch is built on the GPU: a batch of users holds far fewer interactions than
    batch × D entries.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False))
    sub = matrix[rows].tocoo()
    coords = torch.from_numpy(np.stack([sub.row, sub.col]).astype(np.int64)).pin_memory()
    coords = coords.to(device, non_blocking=True)
    batch = torch.zeros(sub.shape, dtype=torch.float32, device=device)
    batch[coords[0], coords[1]] = 1.0
    return batch


def autocast_dtype(config: dict, device: torch.device) -> torch.dtype | None:
    """The dtype the denoiser's forward pass runs in under autocast; None: float32 throughout."""
    precision = config["train"]["precision"]
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def fit(
    model: BinomialDiffusion,
    optimizer: torch.optim.Optimizer,
    train: sp.csr_matrix,
    *,
    config: dict,
    config_yaml: str,
    validate: Callable[[], dict[str, float]],
    checkpoint_dir: Path,
    device: torch.device,
    resume: dict | None = None,
    scheduler=None,
    workers: Workers = SINGLE,
) -> TrainResult:
    """Train until ``train.epochs`` or early stopping; ``resume`` is a loaded ``last.pt``.

    ``scheduler`` is an optional learning-rate scheduler stepped once per epoch; its state
    travels in the checkpoint like the optimiser's. With several ``workers`` each process
    computes its block of every batch (see ``distributed``), ``validate`` must return metrics
    gathered over all processes, and only rank 0 writes checkpoints.
    """
    t_cfg, select = config["train"], config["eval"]["select"]
    seed = config["seed"]
    generators = {
        "order": torch.Generator().manual_seed(seed),  # data order
        "noise": torch.Generator(device=device).manual_seed(seed + 1),  # diffusion times and noise
    }
    n_users, batch_size = train.shape[0], t_cfg["batch_size"]
    if n_users == 0:
        raise ValueError("the training matrix has no users")

    history: list[dict] = []
    best_value, best_epoch, epoch, step, elapsed, done = -math.inf, 0, 0, 0, 0.0, False
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("lr_scheduler") is not None:
            scheduler.load_state_dict(resume["lr_scheduler"])
        restore_rng(resume["rng"], generators)
        history = [dict(row) for row in resume["history"]]
        best_value, best_epoch = float(resume["best"]["value"]), int(resume["best"]["epoch"])
        epoch, step, elapsed, done = int(resume["epoch"]), int(resume["step"]), float(resume["seconds"]), bool(resume["done"])
    resumed_from = epoch
    step_fn = _parallel_step(model, train, device, generators["noise"], workers) if workers.parallel \
        else _single_step(model, train, device, generators["noise"])
    low_precision = autocast_dtype(config, device)

    started = time.perf_counter() - elapsed
    bar = tqdm(total=t_cfg["epochs"], initial=epoch, desc="training", unit="epoch",
               disable=progress_disabled(config) if workers.is_main else True)
    while not done and epoch < t_cfg["epochs"]:
        epoch += 1
        model.train()
        order = torch.randperm(n_users, generator=generators["order"]).numpy()
        loss_sum = 0.0
        for start in range(0, n_users, batch_size):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=low_precision, enabled=low_precision is not None):
                loss, rows_loss = step_fn(order[start:start + batch_size])
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += rows_loss
        loss_sum = workers.sum(loss_sum)
        if not math.isfinite(loss_sum):
            raise RecipeError(
                f"train.lr: training diverged (the loss is {loss_sum} in epoch {epoch}); "
                f"lower train.lr (now {t_cfg['lr']})"
            )
        if scheduler is not None:
            scheduler.step()
        model.eval()
        metrics = validate()
        value = float(metrics[select])
        improved = value > best_value  # a NaN metric never counts as an improvement
        if improved:
            best_value, best_epoch = value, epoch
        done = epoch - best_epoch >= t_cfg["patience"] or epoch >= t_cfg["epochs"]
        history.append({"epoch": epoch, "train_loss": loss_sum / n_users,
                        **{f"valid_{k}": v for k, v in metrics.items()},
                        "seconds": time.perf_counter() - started})
        state = dict(
            config_yaml=config_yaml, model=model, dim=train.shape[1], epoch=epoch, step=step,
            optimizer=optimizer.state_dict(),
            lr_scheduler=None if scheduler is None else scheduler.state_dict(),
            best={"metric": select, "value": float(best_value), "epoch": best_epoch},
            epochs_since_best=epoch - best_epoch, done=done, history=history,
            rng=capture_rng(generators), seconds=time.perf_counter() - started,
        )
        # best.pt first: a crash between the two writes leaves last.pt one epoch behind, and
        # the resumed run redoes that epoch and rewrites the same best.pt. The other order
        # could leave a last.pt that names a best epoch best.pt does not hold.
        if workers.is_main:
            if improved:
                save_checkpoint(checkpoint_dir / "best.pt", **state)
            save_checkpoint(checkpoint_dir / "last.pt", **state)
        bar.update(1)
        bar.set_postfix({select: f"{value:.4f}", "best": f"{best_value:.4f}"})
    bar.close()
    workers.barrier()  # every checkpoint is on disk before any process reads one
    return TrainResult(best_epoch=best_epoch, best_value=float(best_value), epochs_run=len(history),
                       seconds=time.perf_counter() - started, history=history, resumed_from_epoch=resumed_from)


def _single_step(model, train: sp.csr_matrix, device: torch.device, noise: torch.Generator):
    """One process: the model draws its own noise. Returns (loss to differentiate, summed loss)."""
    def step(rows: np.ndarray):
        out = model(dense_batch(train, rows, device), generator=noise)
        return out.loss, out.loss.item() * len(rows)
    return step


def _parallel_step(model, train: sp.csr_matrix, device: torch.device, noise: torch.Generator, workers: Workers):
    """Several processes: this one computes its block of the batch with the batch's own noise."""
    if not isinstance(model, BinomialDiffusion):
        raise RecipeError("model.kind: training on several processes is for the binomial model; "
                          f"train {type(model).__name__} in one process")
    from torch.nn.parallel import DistributedDataParallel

    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    dim = train.shape[1]

    def step(rows: np.ndarray):
        t, u = model.draw_noise(len(rows), dim, noise, device)
        lo, hi = workers.block(len(rows))
        with batch_rows(model, lo, hi, len(rows)):
            out = net(dense_batch(train, rows[lo:hi], device), t=t[lo:hi], noise=u[lo:hi])
        rows_loss = out.terms["loss"].sum()
        # DDP averages gradients over processes: scaling by world / batch makes the average
        # the gradient of the whole batch's mean loss.
        return rows_loss * (workers.world / len(rows)), rows_loss.item()
    return step


