"""The training loop: minibatches densified from CSR, validation every epoch, early stopping.

Randomness: the data order and the diffusion noise come from two generators seeded from the
recipe seed; dropout and initialisation use torch's default generator, which is seeded from
the same seed before the model is built (``nn.Dropout`` takes no generator).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ..core import BinomialDiffusion
from .checkpoint import save_checkpoint


@dataclass
class TrainResult:
    best_epoch: int
    best_value: float
    epochs_run: int
    seconds: float
    history: list[dict] = field(default_factory=list)


def dense_batch(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """The only place training turns sparse rows into a dense (batch, D) tensor."""
    return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False)).to(device, non_blocking=True)


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
) -> TrainResult:
    t_cfg, select = config["train"], config["eval"]["select"]
    seed = config["seed"]
    order_rng = torch.Generator().manual_seed(seed)
    noise_rng = torch.Generator(device=device).manual_seed(seed + 1)
    n_users, batch_size = train.shape[0], t_cfg["batch_size"]
    if n_users == 0:
        raise ValueError("the training matrix has no users")
    history: list[dict] = []
    best_value, best_epoch = -np.inf, 0
    started = time.perf_counter()
    bar = tqdm(range(1, t_cfg["epochs"] + 1), desc="training", unit="epoch", disable=_disable(config))
    for epoch in bar:
        model.train()
        order = torch.randperm(n_users, generator=order_rng).numpy()
        loss_sum = 0.0
        for start in range(0, n_users, batch_size):
            rows = order[start:start + batch_size]
            out = model(dense_batch(train, rows, device), generator=noise_rng)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            loss_sum += out.loss.item() * len(rows)
        model.eval()
        metrics = validate()
        value = metrics[select]
        history.append({"epoch": epoch, "train_loss": loss_sum / n_users,
                        **{f"valid_{k}": v for k, v in metrics.items()},
                        "seconds": time.perf_counter() - started})
        state = dict(config_yaml=config_yaml, model=model, dim=train.shape[1], epoch=epoch,
                     optimizer=optimizer.state_dict(), best={"metric": select, "value": float(max(value, best_value)),
                                                             "epoch": epoch if value > best_value else best_epoch})
        if value > best_value:
            best_value, best_epoch = value, epoch
            save_checkpoint(checkpoint_dir / "best.pt", **state)
        save_checkpoint(checkpoint_dir / "last.pt", **state)
        bar.set_postfix({select: f"{value:.4f}", "best": f"{best_value:.4f}"})
        if epoch - best_epoch >= t_cfg["patience"]:
            break
    bar.close()
    return TrainResult(best_epoch=best_epoch, best_value=float(best_value), epochs_run=len(history),
                       seconds=time.perf_counter() - started, history=history)


def _disable(config: dict) -> bool | None:
    progress = config["output"]["progress"]
    return None if progress is None else not progress  # None: tqdm shows bars only on a terminal
