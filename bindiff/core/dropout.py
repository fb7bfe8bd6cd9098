"""Dropout whose mask can be drawn for a whole batch while only some rows are computed.

Data-parallel training splits each batch of B users over N processes. For N processes to
train exactly as one does, each must use the random numbers one process would have used for
its rows. On CPU torch draws a Bernoulli mask in memory order, so drawing the (B, …) mask of
the whole batch and keeping rows lo:hi gives those rows' numbers; ``ShardableDropout`` does
that while ``rows`` is set. Unset (one process, or evaluation) it is ``nn.Dropout``, bit for
bit, so single-process runs are unchanged. The cost is drawing the whole batch's mask on
every process, which is small next to the matrix products of a step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class ShardableDropout(nn.Dropout):
    def __init__(self, p: float = 0.5):
        super().__init__(p)
        self.rows: tuple[int, int, int] | None = None  # (lo, hi, batch): this process computes rows lo:hi of batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows is None or not self.training or self.p == 0:
            return super().forward(x)
        lo, hi, batch = self.rows
        if x.shape[0] != hi - lo:
            raise ValueError(f"dropout shard is rows {lo}:{hi} of {batch} but the input has {x.shape[0]} rows")
        keep = torch.empty((batch, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        # the same arithmetic as torch's CPU dropout: input * (mask / (1 - p))
        return x * keep[lo:hi].div_(1 - self.p)


@contextmanager
def batch_rows(module: nn.Module, lo: int, hi: int, batch: int) -> Iterator[None]:
    """Within the block, every ShardableDropout in ``module`` draws for ``batch`` rows and keeps lo:hi."""
    layers = [m for m in module.modules() if isinstance(m, ShardableDropout)]
    for layer in layers:
        layer.rows = (lo, hi, batch)
    try:
        yield
    finally:
        for layer in layers:
            layer.rows = None
