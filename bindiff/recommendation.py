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

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from .adapters.errors import DataError
from .adapters.interactions import Split, prepare_split
from .config import RecipeError, dump_recipe, recipe_from_text
from .files import write_json
from .lifecycle import apply_threads
from .metrics import evaluate_ranking, merge_reports
from .plots import plot_training_curve
from .runs import create_run_dir, read_trained_model
from .training.builders import build_model, build_optimizer, make_scorer, resolve_device
from .training import distributed
from .training.checkpoint import (CheckpointError, check_resumable, load_checkpoint, remove_stale_temporaries,
                                  run_lock)
from .training.distributed import SINGLE, Workers
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


def evaluate_part(model, config: dict, part, device, workers: Workers = SINGLE) -> "RankingReport":  # noqa: F821
    """Rank one evaluation part (valid or test) with the recipe's scorer and metrics.

    With several workers each process ranks its block of users and the per-user values are
    gathered, so every process gets the report of all users.
    """
    scorer = make_scorer(model, config, seed=config["seed"])
    matrices = (part.input, part.exclude, part.target)
    if workers.parallel:
        lo, hi = workers.block(part.input.shape[0])
        matrices = tuple(None if m is None else m[lo:hi] for m in matrices)
    try:
        report = evaluate_ranking(
            lambda batch: scorer(batch), *matrices, _metric_names(config),
            batch_size=config["eval"]["batch_size"], empty_users=config["eval"]["empty_users"], device=device,
        )
    except ValueError as err:
        raise RecipeError(f"eval.metrics: {err}") from None
    return merge_reports(workers.gather(report)) if workers.parallel else report


def train_recommender(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> TrainedRun:
    """Run a recommendation recipe end to end; returns the run directory and its metrics.

    Started by torchrun (``WORLD_SIZE`` > 1), every process runs this function: all build the
    same split and model, rank 0 alone creates and writes the run directory.
    """
    apply_threads(config)
    workers, device_name = distributed.start(config["train"]["device"])
    try:
        run = _train_new_run(config, list(overrides), data_dir, workers, resolve_device(device_name))
    except BaseException:
        distributed.stop(workers, failed=True)
        raise
    distributed.stop(workers)
    return run


def _train_new_run(config: dict, overrides: list[str], data_dir, workers: Workers, device) -> TrainedRun:
    from .baselines import check_model_config

    check_model_config(config)  # model.kind / model.params, before the data are read
    if workers.parallel:
        distributed.check_recipe(config)
    split, _ = prepare_split(config["data"], config["split"], seed=config["seed"], data_dir=data_dir)
    # Validate everything that can be refused before a run directory exists.
    torch.manual_seed(config["seed"])
    model = build_model(config, dim=split.train.shape[1]).to(device)
    optimizer = build_optimizer(config, model)
    make_scorer(model, config, seed=config["seed"])
    _evaluate_metrics_are_valid(config, n_items=split.train.shape[1])
    _check_split_is_usable(config, split)

    run_dir = workers.broadcast(create_run_dir(config, overrides) if workers.is_main else None)
    with run_lock(run_dir) if workers.is_main else nullcontext():
        if workers.is_main:
            split.save(run_dir / "split")
        return _train_and_evaluate(run_dir, config, split, model, optimizer, device, workers=workers)


def resume_recommender(run_dir: str | Path, config: dict | None = None, recipe: str | None = None,
                       data_dir: str | None = None) -> TrainedRun:
    """Continue an interrupted run from ``checkpoints/last.pt`` and finish it.

    The run's own config.yaml and saved split are used; ``config`` (a recipe given with
    ``bindiff train RECIPE --resume RUN_DIR``) must resolve to the same config, apart from
    ``output.root`` and ``output.progress``. The result equals an uninterrupted run's.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir}: not a bindiff run directory (no config.yaml)")
    run_config = recipe_from_text(config_path.read_text(encoding="utf-8"), source=str(config_path))
    if run_config["task"] != "recommend":
        raise RecipeError(f"{config_path}: task {run_config['task']!r}: only recommendation runs can be resumed")
    if config is not None:
        _check_same_recipe(config, run_config, recipe or "recipe", config_path)
    config = run_config
    if (run_dir / "metrics.json").is_file():
        raise CheckpointError(f"{run_dir}: the run has finished (metrics.json exists); nothing to resume, and a "
                              "finished run is never overwritten")
    apply_threads(config)
    workers, device_name = distributed.start(config["train"]["device"])
    try:
        run = _resume_run(run_dir, config, config_path, data_dir, workers, resolve_device(device_name))
    except BaseException:
        distributed.stop(workers, failed=True)
        raise
    distributed.stop(workers)
    return run


def _resume_run(run_dir: Path, config: dict, config_path: Path, data_dir, workers: Workers, device) -> TrainedRun:
    with run_lock(run_dir) if workers.is_main else nullcontext():
        if workers.is_main:
            for folder in (run_dir, run_dir / "split", run_dir / "checkpoints"):
                remove_stale_temporaries(folder)
        # every process sees the split state rank 0 saw, before rank 0 may save it
        saved = workers.broadcast((run_dir / "split" / "split.json").is_file())
        if saved:
            split = Split.load(run_dir / "split")
        else:  # killed before the split was saved: it is a pure function of data and seed
            split, _ = prepare_split(config["data"], config["split"], seed=config["seed"], data_dir=data_dir)
            if workers.is_main:
                split.save(run_dir / "split")
        torch.manual_seed(config["seed"])
        model = build_model(config, dim=split.train.shape[1]).to(device)
        optimizer = build_optimizer(config, model)
        last = run_dir / "checkpoints" / "last.pt"
        payload = None
        # else killed before the first epoch ended: start it again; a closed-form fit
        # (no optimiser) is always redone from scratch
        if last.is_file() and optimizer is not None:
            payload = load_checkpoint(last, map_location=device)
            check_resumable(payload, last)
            if payload["config_yaml"] != dump_recipe(config):
                raise CheckpointError(f"{last}: its config differs from {config_path}; the run was edited "
                                      "after it started and cannot be resumed")
            if payload["dim"] != split.train.shape[1]:
                raise CheckpointError(f"{last}: model of {payload['dim']} items, but the saved split has "
                                      f"{split.train.shape[1]}")
            try:
                model.load_state_dict(payload["model"])
                optimizer.load_state_dict(payload["optimizer"])
            except (RuntimeError, ValueError, KeyError) as err:
                raise CheckpointError(f"{last}: does not fit the model and optimiser the config describes: "
                                      f"{str(err).strip().splitlines()[0]}") from None
        return _train_and_evaluate(run_dir, config, split, model, optimizer, device, resume=payload,
                                   workers=workers)


def _train_and_evaluate(run_dir: Path, config: dict, split: Split, model, optimizer, device,
                        resume: dict | None = None, workers: Workers = SINGLE) -> TrainedRun:
    extra: dict = {}
    if optimizer is None:  # a closed-form baseline (popularity, EASE): no training loop
        from .baselines.closed_form import fit_closed_form_run

        select = config["eval"]["select"]
        result, extra = fit_closed_form_run(
            model, split.train, config=config, config_yaml=dump_recipe(config),
            evaluate_valid=lambda m: evaluate_part(m, config, split.valid, device).mean[select],
            checkpoint_dir=run_dir / "checkpoints",
        )
    else:
        result = fit(
            model, optimizer, split.train, config=config, config_yaml=dump_recipe(config),
            validate=lambda: evaluate_part(model, config, split.valid, device, workers).mean,
            checkpoint_dir=run_dir / "checkpoints", device=device, resume=resume, workers=workers,
        )
    metrics = evaluate_run(run_dir, split=split, device=device, workers=workers)
    if not workers.is_main:
        return TrainedRun(run_dir=run_dir, metrics=metrics)
    write_json(run_dir / "history.json", result.history)
    if result.history:  # a closed-form fit has no epochs to plot
        plot_training_curve(result.history, config["eval"]["select"], run_dir / "training_curve.png")
    dataset = split.info.get("dataset", {})
    metrics["training"] = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                           "seconds": round(result.seconds, 2), "dataset": dataset.get("name"),
                           "layout": dataset.get("layout"), "processes": workers.world, **extra}
    if result.resumed_from_epoch:
        metrics["training"]["resumed_from_epoch"] = result.resumed_from_epoch
    write_json(run_dir / "metrics.json", metrics)  # last: its presence marks a finished run
    return TrainedRun(run_dir=run_dir, metrics=metrics)


def _check_same_recipe(given: dict, run: dict, recipe: str, config_path: Path) -> None:
    """RecipeError naming the first key where a recipe resolves differently from a run's config."""
    ignored = {"output.root", "output.progress"}  # where the run lives and how it looks, not what it computes
    a, b = _flatten(run), _flatten(given)
    for key in sorted(set(a) | set(b)):
        if key not in ignored and a.get(key) != b.get(key):
            raise RecipeError(f"{recipe}: key '{key}' is {b.get(key)!r} but the run being resumed has "
                              f"{a.get(key)!r} ({config_path}); resume with the run's own recipe "
                              "(`bindiff resume RUN_DIR`) or start a new run")


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for name, value in config.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def _check_split_is_usable(config: dict, split: Split) -> None:
    """DataError when validation or test has no user with a held-out item to score."""
    where = (split.info.get("dataset") or {}).get("name") or split.info.get("source") or "data"
    for stage in ("valid", "test"):
        part = getattr(split, stage)
        if part.n_evaluable_users == 0:
            hint = ""
            if split.kind == "strong":
                hint = (f"; users with fewer than split.min_items_to_split = "
                        f"{config['split']['min_items_to_split']} items are not split, so lower it or raise "
                        f"split.n_{stage}_users (now {config['split'][f'n_{stage}_users']})")
            raise DataError(f"{where}: the {stage} split has no user with a held-out item to score "
                            f"({part.n_users} {stage} users){hint}")


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
    config, payload, model = read_trained_model(run_dir, "recommend", build_model, checkpoint, device)
    split = Split.load(run_dir / "split")
    return config, split, model, payload


# What `evaluate_run` may change on a trained run: how it is scored, never what was trained.
EVALUATION_KEYS = ("inference.", "eval.metrics", "eval.batch_size", "eval.empty_users")


def evaluate_run(run_dir: str | Path, split: Split | None = None, device=None, workers: Workers = SINGLE,
                 overrides: list[str] = ()) -> dict:
    """Validation and test metrics of the best checkpoint, with each metric's definition.

    ``overrides`` (``inference.*``, ``eval.metrics``, ``eval.batch_size``, ``eval.empty_users``)
    score the same trained model another way.
    """
    config, loaded_split, model, payload = load_run(run_dir, device=device)
    if overrides:
        from .config import load_recipe

        for text in overrides:
            if not text.split("=", 1)[0].startswith(EVALUATION_KEYS):
                raise RecipeError(f"override {text!r}: a trained run can only be scored differently; allowed "
                                  f"keys are {', '.join(k + '*' if k.endswith('.') else k for k in EVALUATION_KEYS)}")
        config = load_recipe(Path(run_dir) / "config.yaml", overrides)
        _evaluate_metrics_are_valid(config, n_items=payload["dim"])
    split = split or loaded_split
    device = _device_of(model)
    reports = {name: evaluate_part(model, config, getattr(split, name), device, workers)
               for name in ("valid", "test")}
    return {
        "recipe": config["name"],
        "seed": config["seed"],
        "checkpoint": {"epoch": payload["epoch"], "selected_by": payload["best"]["metric"],
                       "best_value": payload["best"]["value"]},
        "valid": reports["valid"].mean,
        "test": reports["test"].mean,
        "users": {name: {"evaluated": r.n_users_evaluated, "total": r.n_users} for name, r in reports.items()},
        "definitions": reports["test"].definitions,
        "inference": config["inference"],
        "model": config.get("model"),
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
        raise DataError(f"user {raw_user!r} is not in this run's data")
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
    device = _device_of(model)
    scores = make_scorer(model, config, seed=config["seed"])(
        torch.from_numpy(history.toarray().astype(np.float32)).to(device)).cpu()
    top = topk_excluding(scores, history, min(k, history.shape[1]))[0]
    top = top[top >= 0]
    return [(str(split.item_ids[i]), float(scores[0, i])) for i in top.tolist()]


def _device_of(model: torch.nn.Module) -> torch.device:
    """Where a model lives; closed-form baselines hold buffers only, no parameters."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
