"""Popularity: every user gets the items most training users interacted with."""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def popularity_scores(train_csr) -> np.ndarray:
    """Number of users with a stored non-zero entry for each item (float64, length n_items).

    Counting users rather than summing values keeps the baseline meaningful for weighted or
    repeated interactions.
    """
    csr = sp.csr_matrix(train_csr).copy()
    csr.sum_duplicates()  # duplicates that cancel out are no interaction
    csr.eliminate_zeros()
    return np.bincount(csr.indices, minlength=csr.shape[1]).astype(np.float64)


class Popularity(nn.Module):
    """Score of item i = number of training users with an interaction on i (same for every user).

    Equal counts rank the lower item index first (the ranking code's tie rule). The counts
    are a buffer, so the model saves and loads like any other.
    """

    def __init__(self, n_items: int):
        super().__init__()
        self.register_buffer("counts", torch.zeros(int(n_items), dtype=torch.float32))

    def fit_closed_form(self, train_csr, evaluate_valid: Callable[[nn.Module], float]) -> dict:
        if train_csr.shape[1] != self.counts.numel():
            raise ValueError(f"training matrix has {train_csr.shape[1]} items, the model {self.counts.numel()}")
        counts = torch.from_numpy(popularity_scores(train_csr)).to(self.counts)
        self.counts.copy_(counts)
        return {"valid": float(evaluate_valid(self))}

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.counts.to(x.device).expand(x.shape[0], -1)
