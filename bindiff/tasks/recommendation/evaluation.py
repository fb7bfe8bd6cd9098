"""Ranking metrics of a recommendation model on a split part (validation or test users)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...adapters.interactions import EvalPart, Split
from ...config import RecipeError
from ...files import write_text
from ...progress import log, log_lines
from ...metrics import RankingReport, evaluate_ranking, merge_reports
from ...metrics.ranking import LIST_METRICS, _parse_metrics
from ...training.devices import device_of, physical_memory_bytes
from ...training.distributed import SINGLE, Workers
from ..base import checkpoint_entry
from .models import make_scorer

# What scoring a trained run again may change: how it is scored, never what was trained.
RESCORE_KEYS = ("inference.", "eval.metrics", "eval.batch_size", "eval.empty_users", "output.progress")


def metric_names(config: dict) -> list[str]:
    """``eval.metrics`` with ``eval.select`` added when it is not among them."""
    names = list(config["eval"]["metrics"])
    if config["eval"]["select"] not in names:
        names.append(config["eval"]["select"])
    return names


def check_metrics(config: dict, n_items: int | None = None) -> None:
    """Refuse a metric name that does not parse (naming its key) or, given the data's number of
    items, a cut-off beyond them."""
    cutoffs = []  # (cut-off, the key that names it)
    for key, names in (("eval.metrics", config["eval"]["metrics"]), ("eval.select", [config["eval"]["select"]])):
        try:
            parsed = _parse_metrics(names)
        except ValueError as err:
            raise RecipeError(f"{key}: {err}") from None
        # reports name each metric in its one spelling; `NDCG@100` would be looked up and not found
        for raw in names:
            if not any(str(raw) == name for name, _, _ in parsed):
                canonical = _parse_metrics([raw])[0][0]
                raise RecipeError(f"{key}: write {str(raw)!r} as {canonical!r} (lower case, no leading zeros)")
        cutoffs += [(k, key) for _, _, k in parsed]
    (_, kind, _), = _parse_metrics([config["eval"]["select"]])
    if kind in LIST_METRICS:  # higher is not better: the best checkpoint would be the most popularity-biased
        raise RecipeError(f"eval.select: {config['eval']['select']} describes the lists, not how well they rank; "
                          "select on recall, recall_heldout, ndcg, precision, hit, map or mrr")
    if n_items is not None and max(cutoffs)[0] > n_items:
        cutoff, key = max(cutoffs, key=lambda pair: pair[0])  # the first key that names the largest
        raise RecipeError(f"{key}: cut-off {cutoff} exceeds the {n_items} items of the data")


# float32 (batch, items) tensors alive at once: a training step's input, noised input, logits and
# their gradients, with room to spare; an evaluation's input, scores and the top-k's working copy
BATCH_COPIES = {"train.batch_size": 8, "eval.batch_size": 4}


def check_batches_fit(config: dict, split: Split, trains: bool = True, device=None) -> None:
    """RecipeError naming the key when a dense batch of users × items cannot fit the memory of the
    ``device`` the batches are built on (this machine's on the CPU, the GPU's on CUDA): a batch
    size at or beyond the users makes it the whole users × items matrix, which the rest of bindiff
    never builds (an allocator's traceback, or the kernel's kill, otherwise)."""
    device = torch.device(device if device is not None else "cpu")
    if device.type == "cuda":
        have, where = torch.cuda.get_device_properties(device).total_memory, f"{device} has"
    else:
        have, where = physical_memory_bytes(), "this machine has"
    if have is None:
        return
    n_items = split.train.shape[1]
    users = {"train.batch_size": split.train.shape[0],
             "eval.batch_size": max(split.valid.input.shape[0], split.test.input.shape[0])}
    for key, copies in BATCH_COPIES.items():
        if key == "train.batch_size" and not trains:
            continue
        section, name = key.split(".")
        rows = min(config[section][name], users[key])
        need = copies * 4 * rows * n_items
        if need > have:
            raise RecipeError(f"{key}={config[section][name]}: a batch of {rows:,} users × {n_items:,} items "
                              f"needs about {need / 2**30:.0f} GiB dense ({copies} float32 copies), and {where} "
                              f"{have / 2**30:.0f} GiB; lower it")


def training_popularity(train) -> np.ndarray:
    """Share of the training users who have each item (what ``popularity@K`` averages)."""
    counts = np.bincount(train.indices, minlength=train.shape[1]).astype(np.float64)
    return counts / max(train.shape[0], 1)


def evaluate_part(model: nn.Module, config: dict, part: EvalPart, device, workers: Workers = SINGLE,
                  popularity: np.ndarray | None = None, shown: str | None = None) -> RankingReport:
    """Rank one evaluation part with the recipe's scorer and metrics.

    With several workers each process ranks its block of users and the per-user values are
    gathered, so every process gets the report of all users. ``shown``: the part's name, to show
    the ranking's progress as ``output.progress`` says (a bar, or a line per batch when piped);
    None (the validation of every epoch) shows nothing.
    """
    scorer = make_scorer(model, config, seed=config["seed"])
    matrices = (part.input, part.exclude, part.target)
    if workers.parallel:
        lo, hi = workers.block(part.input.shape[0])
        matrices = tuple(None if m is None else m[lo:hi] for m in matrices)
    # the metrics and the scorer were checked against the recipe before (check_metrics, make_scorer):
    # an error here is the model's or bindiff's, and keeps its traceback
    shows = shown is not None and workers.is_main
    where = f" on process 1 of {workers.world}" if workers.parallel else ""  # its block of the users alone
    report = evaluate_ranking(
        lambda batch: scorer(batch), *matrices, metric_names(config),
        batch_size=config["eval"]["batch_size"], empty_users=config["eval"]["empty_users"], device=device,
        item_popularity=popularity, progress=config["output"]["progress"] if shows else False,
        report=(lambda line: log(f"{shown} {line}{where}")) if shows and log_lines(config) else None,
    )
    return merge_reports(workers.gather(report)) if workers.parallel else report


def score_run(config: dict, split: Split, model: nn.Module, payload: dict, workers: Workers = SINGLE,
              per_user_csv: Path | None = None, checkpoint: str = "best", overwrite: bool = True) -> dict:
    """Validation and test metrics of a trained model, with each metric's definition;
    ``per_user_csv``: also each test user's values, one row per user (raw id first); ``overwrite``:
    False refuses a file another process wrote there meanwhile."""
    device = device_of(model)
    popularity = training_popularity(split.train)
    reports = {name: evaluate_part(model, config, getattr(split, name), device, workers, popularity, shown=name)
               for name in ("valid", "test")}
    if per_user_csv is not None and workers.is_main:
        write_per_user_csv(per_user_csv, split.test.user_ids, reports["test"], overwrite=overwrite)
    return {
        "recipe": config["name"],
        "seed": config["seed"],
        "checkpoint": checkpoint_entry(payload, checkpoint),
        "valid": reports["valid"].mean,
        "test": reports["test"].mean,
        "users": {name: {"evaluated": r.n_users_evaluated, "total": r.n_users} for name, r in reports.items()},
        "definitions": reports["test"].definitions,
        "inference": config["inference"],
        "model": config.get("model"),
    }


def write_per_user_csv(path: Path, user_ids, report: RankingReport, overwrite: bool = True) -> None:
    """``user,<metric>,...`` for every user of a part; empty cells for users with nothing held out."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    names = [n for n in report.metrics if n in report.per_user]
    writer.writerow(["user", *names])
    for i, user in enumerate(user_ids):
        values = [report.per_user[n][i] for n in names]
        writer.writerow([user, *("" if np.isnan(v) else f"{v:.6g}" for v in values)])
    write_text(path, buffer.getvalue(), overwrite=overwrite)
