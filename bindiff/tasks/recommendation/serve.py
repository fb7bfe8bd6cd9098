"""Using a trained recommendation run: the top-k unseen items for one of its users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ...adapters.errors import DataError
from ...adapters.interactions import Split
from ...metrics import topk_excluding
from ...training.devices import device_of
from .job import load_run
from .models import make_scorer


def user_history(split: Split, raw_user: str) -> sp.csr_matrix:
    """Every interaction the run knows for a user, as one CSR row (what a recommendation excludes)."""
    rows = []
    for ids, matrices in ((split.train_user_ids, [split.train]),
                          (split.valid.user_ids, [split.valid.input, split.valid.exclude, split.valid.target]),
                          (split.test.user_ids, [split.test.input, split.test.exclude, split.test.target])):
        hits = np.flatnonzero(ids == raw_user)
        rows += [m[hits] for m in matrices if len(hits)]
    if not rows:
        raise DataError(f"user {raw_user!r} is not in this run's data")
    history = sp.csr_matrix(sum(rows[1:], rows[0]))  # each part holds a user at most once: one row
    history.data[:] = 1.0
    return history


def recommend(run_dir: str | Path, raw_user: str, k: int = 20) -> list[tuple[str, float]]:
    """Top-k unseen items for a user, as (raw item id, score), best first."""
    config, split, model, _ = load_run(run_dir)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    history = user_history(split, str(raw_user))
    scores = make_scorer(model, config, seed=config["seed"])(
        torch.from_numpy(history.toarray().astype(np.float32)).to(device_of(model))).cpu()
    top = topk_excluding(scores, history, min(k, history.shape[1]))[0]
    top = top[top >= 0]
    return [(str(split.item_ids[i]), float(scores[0, i])) for i in top.tolist()]
