"""One training step's loss on a minibatch of rows: in one process, or split over several.

Both return ``step(rows) -> (loss to differentiate, loss summed over the rows)`` and are the
only places the trainer touches the model's forward pass.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..core.dropout import batch_rows
from .distributed import Workers


def dense_batch(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """The only place training turns sparse rows into a dense (batch, D) tensor.

    On CUDA only the coordinates travel, from pinned memory and without blocking, and the
    dense batch is built on the GPU: a batch of users holds far fewer interactions than
    batch × D entries.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return torch.from_numpy(matrix[rows].toarray().astype(np.float32, copy=False))
    return scattered(matrix[rows], device, pin=True)


def scattered(rows: sp.spmatrix, device: torch.device, pin: bool = False) -> torch.Tensor:
    """``rows.toarray()`` as float32, built on ``device`` from the stored entries alone (``pin``: they
    travel from pinned memory without blocking). Their values, not 1: a stored zero stays 0 and a
    duplicate entry sums, as ``toarray`` gives them, so the model's bit check sees the same batch."""
    sub = rows.tocoo()
    sub.sum_duplicates()
    coords = torch.from_numpy(np.stack([sub.row, sub.col]).astype(np.int64))
    values = torch.from_numpy(sub.data.astype(np.float32))
    if pin:
        coords, values = coords.pin_memory(), values.pin_memory()
    coords, values = coords.to(device, non_blocking=pin), values.to(device, non_blocking=pin)
    batch = torch.zeros(sub.shape, dtype=torch.float32, device=device)
    batch[coords[0], coords[1]] = values
    return batch


def single_step(model, train: sp.csr_matrix, device: torch.device, noise: torch.Generator,
                condition: np.ndarray | None = None):
    """One process: the model draws its own noise; ``condition`` rows go with their data rows."""
    def step(rows: np.ndarray):
        if condition is None:
            out = model(dense_batch(train, rows, device), generator=noise)
        else:
            cond = torch.from_numpy(np.ascontiguousarray(condition[rows])).to(device)
            out = model(dense_batch(train, rows, device), generator=noise, cond=cond)
        return out.loss, out.loss.item() * len(rows)
    return step


def parallel_step(model, train: sp.csr_matrix, device: torch.device, noise: torch.Generator, workers: Workers):
    """Several processes: this one computes its block of the batch with the whole batch's noise.

    Every process draws the noise of the whole batch from the same generator state, so the
    result equals one process's; the model must offer ``draw_noise`` (the binomial diffusion
    does; the lifecycle refuses other kinds before any process starts).
    """
    from torch.nn.parallel import DistributedDataParallel

    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    dim = train.shape[1]

    def step(rows: np.ndarray):
        t, u = model.draw_noise(len(rows), dim, noise, device)
        lo, hi = workers.block(len(rows))
        # a batch shorter than the processes leaves some blocks empty: such a process still runs
        # one row (DDP all-reduces in every backward, and dropout draws the whole batch's masks from
        # torch's generator on every process), weighted 0, so it adds nothing to the gradient
        weight = 1.0 if hi > lo else 0.0
        if hi == lo:
            lo, hi = 0, 1
        with batch_rows(model, lo, hi, len(rows)):
            out = net(dense_batch(train, rows[lo:hi], device), t=t[lo:hi], noise=u[lo:hi])
        rows_loss = out.terms["loss"].sum() * weight
        # DDP averages gradients over processes: scaling by world / batch makes the average
        # the gradient of the whole batch's mean loss.
        return rows_loss * (workers.world / len(rows)), rows_loss.item()
    return step
