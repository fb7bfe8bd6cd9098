"""The recommendation job: recipe → split → model → training → metrics, in a run directory.

Layout of a run directory (``runs/<name>/<time>-<hash>/``):
    config.yaml      the resolved recipe (every default filled in)
    overrides.txt    the command-line overrides, one per line
    split/           the split (CSR matrices, raw user and item id maps, split.json)
    checkpoints/     best.pt (best validation metric) and last.pt
    history.json     per-epoch training loss and validation metrics
    metrics.json     validation and test metrics of the best checkpoint, with definitions
    training_curve.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .adapters.interactions import Split, prepare_split
from .config import RecipeError, dump_recipe, recipe_from_text
from .files import write_json
from .metrics import evaluate_ranking
from .plots import plot_training_curve
from .runs import create_run_dir
from .training.builders import build_model, build_optimizer, make_scorer, resolve_device
from .training.checkpoint import load_checkpoint
from .training.trainer import fit


@dataclass
class TrainedRun:
    run_dir: Path
    metrics: dict


def _metric_names(config: dict) -> list[str]:
    names = list(config["eval"]["metrics"])
    if config["eval"]["select"] not in names:
        names.append(config["eval"]["select"])
    return names


def _evaluate_part(model, config: dict, part, device) -> "RankingReport":  # noqa: F821
    scorer = make_scorer(model, config, seed=config["seed"])
    try:
        return evaluate_ranking(
            lambda batch: scorer(batch), part.input, part.exclude, part.target, _metric_names(config),
            batch_size=config["eval"]["batch_size"], empty_users=config["eval"]["empty_users"], device=device,
        )
    except ValueError as err:
        raise RecipeError(f"eval.metrics: {err}") from None


def train_recommender(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> TrainedRun:
    """Run a recommendation recipe end to end; returns the run directory and its metrics."""
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    device = resolve_device(config["train"]["device"])
    split, source = prepare_split(config["data"], config["split"], seed=config["seed"], data_dir=data_dir)
    # Validate everything that can be refused before a run directory exists.
    torch.manual_seed(config["seed"])
    model = build_model(config, dim=split.train.shape[1]).to(device)
    optimizer = build_optimizer(config, model)
    make_scorer(model, config, seed=config["seed"])
    _evaluate_metrics_are_valid(config, n_items=split.train.shape[1])

    run_dir = create_run_dir(config, list(overrides))
    split.save(run_dir / "split")
    config_yaml = dump_recipe(config)
    result = fit(
        model, optimizer, split.train, config=config, config_yaml=config_yaml,
        validate=lambda: _evaluate_part(model, config, split.valid, device).mean,
        checkpoint_dir=run_dir / "checkpoints", device=device,
    )
    write_json(run_dir / "history.json", result.history)
    plot_training_curve(result.history, config["eval"]["select"], run_dir / "training_curve.png")
    metrics = evaluate_run(run_dir, split=split, device=device)
    metrics["training"] = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                           "seconds": round(result.seconds, 2), "dataset": source.name, "layout": source.layout}
    write_json(run_dir / "metrics.json", metrics)
    return TrainedRun(run_dir=run_dir, metrics=metrics)


def _evaluate_metrics_are_valid(config: dict, n_items: int) -> None:
    from .metrics.ranking import _parse_metrics

    try:
        cutoffs = [k for _, _, k in _parse_metrics(_metric_names(config))]
    except ValueError as err:
        raise RecipeError(f"eval.metrics: {err}") from None
    if max(cutoffs) > n_items:
        raise RecipeError(f"eval.metrics: cut-off {max(cutoffs)} exceeds the {n_items} items of the data")


def load_run(run_dir: str | Path, checkpoint: str = "best", device=None):
    """The config, split and model of a finished (or interrupted) run."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a bindiff run directory (no config.yaml)")
    payload = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt")
    config = recipe_from_text(payload["config_yaml"], source=f"{run_dir}/checkpoints/{checkpoint}.pt")
    device = device or resolve_device(config["train"]["device"])
    model = build_model(config, dim=payload["dim"])
    model.load_state_dict(payload["model"])
    model.to(device).eval()
    split = Split.load(run_dir / "split")
    return config, split, model, payload


def evaluate_run(run_dir: str | Path, split: Split | None = None, device=None) -> dict:
    """Validation and test metrics of the best checkpoint, with each metric's definition."""
    config, loaded_split, model, payload = load_run(run_dir, device=device)
    split = split or loaded_split
    device = next(model.parameters()).device
    reports = {name: _evaluate_part(model, config, getattr(split, name), device) for name in ("valid", "test")}
    return {
        "recipe": config["name"],
        "seed": config["seed"],
        "checkpoint": {"epoch": payload["epoch"], **payload["best"]},
        "valid": reports["valid"].mean,
        "test": reports["test"].mean,
        "users": {name: {"evaluated": r.n_users_evaluated, "total": r.n_users} for name, r in reports.items()},
        "definitions": reports["test"].definitions,
        "inference": config["inference"],
    }


def user_history(split: Split, raw_user: str) -> sp.csr_matrix:
    """Every interaction the run knows for a user, as one CSR row (what a recommendation excludes)."""
    rows = []
    for ids, matrices in ((split.train_user_ids, [split.train]),
                          (split.valid.user_ids, [split.valid.input, split.valid.exclude, split.valid.target]),
                          (split.test.user_ids, [split.test.input, split.test.exclude, split.test.target])):
        hits = np.flatnonzero(ids == raw_user)
        rows += [m[hits] for m in matrices if len(hits)]
    if not rows:
        raise KeyError(f"user {raw_user!r} is not in this run's data")
    history = sp.csr_matrix(sum(rows[1:], rows[0]))  # each part holds a user at most once: one row
    history.data[:] = 1.0
    return history


def recommend(run_dir: str | Path, raw_user: str, k: int = 20) -> list[tuple[str, float]]:
    """Top-k unseen items for a user, as (raw item id, score), best first."""
    from .metrics import topk_excluding

    config, split, model, _ = load_run(run_dir)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    history = user_history(split, str(raw_user))
    device = next(model.parameters()).device
    scores = make_scorer(model, config, seed=config["seed"])(
        torch.from_numpy(history.toarray().astype(np.float32)).to(device)).cpu()
    top = topk_excluding(scores, history, min(k, history.shape[1]))[0]
    top = top[top >= 0]
    return [(str(split.item_ids[i]), float(scores[0, i])) for i in top.tolist()]


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())
