"""The recommend task in the shared lifecycle: recipe → split → model → training → metrics.

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

from pathlib import Path
from typing import NamedTuple

import scipy.sparse as sp
from torch import nn

from ...adapters.errors import DataError
from ...adapters.interactions import Split
from ...config import RecipeError, argument
from ...files import OutputError, refuse_a_file_above, refuse_a_long_name
from ...training.devices import device_of
from ...training.distributed import SINGLE, Workers
from .. import base
from .data import check_holdout, check_split_is_usable, prepare_split
from .evaluation import (RESCORE_KEYS, check_batches_fit, check_metrics, evaluate_part, score_run,
                         training_popularity)
from .models import (BINOMIAL, PROCESS_KEYS, RecommenderKind, build_model, check_model_params, make_scorer, model_kind,
                     never_reads)


def split_seed(config: dict) -> int:
    """What draws the split: ``split.seed``, else the recipe seed."""
    return config["seed"] if config["split"]["seed"] is None else config["split"]["seed"]


class RecommendationTask(base.Task):
    name = "recommend"
    rescore_keys = RESCORE_KEYS

    def model_kind(self, config: dict) -> RecommenderKind:
        return model_kind(config)

    def check_recipe(self, config: dict) -> None:
        check_model_params(config)
        check_metrics(config)
        check_holdout(config["data"], config["split"])  # split.holdout latest with a predefined split or synthetic data
        if self.model_kind(config).name == BINOMIAL:
            # Built for two items (cheap): the denoiser's parameters and the inference section
            # against diffusion.steps are refused here, as `bindiff show-config` promises.
            make_scorer(build_model(config, 2), config, seed=config["seed"])

    def prepare(self, config: dict, data_dir: str | None) -> Split:
        split, _ = prepare_split(config["data"], config["split"], seed=split_seed(config), data_dir=data_dir)
        return split

    def dim(self, split: Split) -> int:
        return split.train.shape[1]

    def training_rows(self, split: Split, config: dict) -> sp.csr_matrix:
        return split.train

    def check(self, config: dict, split: Split, model: nn.Module) -> None:
        make_scorer(model, config, seed=config["seed"])  # the inference section against the model
        check_metrics(config, n_items=split.train.shape[1])
        check_split_is_usable(config, split)
        check_batches_fit(config, split, trains=self.model_kind(config).fitting != "closed_form",
                          device=device_of(model))

    def save_data(self, split: Split, folder: Path) -> None:
        split.save(folder)

    def data_saved(self, folder: Path) -> bool:
        return (folder / "split.json").is_file()

    def load_data(self, folder: Path, data_dir: str | None = None) -> Split:
        return Split.load(folder)

    def validator(self, model, split: Split, config: dict, device, workers: Workers):
        popularity = training_popularity(split.train)
        return lambda: evaluate_part(model, config, split.valid, device, workers, popularity).mean

    def evaluate(self, run_dir: Path, config: dict, split: Split, device, workers: Workers) -> dict:
        # the main process alone writes it (another, unlinking or checking it, would race with that write)
        per_user = Path(run_dir) / "per_user_test.csv" if config["eval"]["per_user"] and workers.is_main else None
        if per_user is not None:  # left by an attempt killed while it evaluated (no metrics.json yet): written again
            per_user.unlink(missing_ok=True)
        return evaluate_run(run_dir, split=split, device=device, workers=workers, per_user_csv=per_user)

    def rescore(self, run_dir, overrides, checkpoint, out_dir, device, data_dir) -> dict:
        if data_dir is not None:
            raise RecipeError(f"{argument('data_dir', '--data-dir')}: a {self.name} run is scored on the split saved "
                              "in it; it reads no "
                                   "data set")
        return evaluate_run(run_dir, overrides=overrides, checkpoint=checkpoint, device=device)

    def data_report(self, split: Split) -> dict:
        dataset = split.info.get("dataset", {})
        return {"dataset": dataset.get("name"), "layout": dataset.get("layout")}

    def check_rescoring(self, config: dict, model: nn.Module, payload: dict) -> None:
        check_metrics(config, n_items=payload["dim"])
        make_scorer(model, config, seed=config["seed"])

    def unread_reason(self, config: dict, key: str) -> str | None:
        split = config["split"]
        if split["kind"] == "temporal" and key in ("split.n_valid_users", "split.n_test_users", "split.holdout",
                                                   "split.min_items_to_split", "split.seed"):
            return ("a temporal split never reads " + key + " (its cut-offs are times, given or placed by shares of "
                    "all interactions, nothing is drawn, and every user with a history and a target is scored)")
        if split["kind"] == "temporal" and key == "split.holdout_fraction" and split.get("test_from") is not None \
                and (split.get("valid_from") is not None or split.get("valid_fraction") is not None):
            return ("split.test_from and split." + ("valid_from" if split.get("valid_from") is not None
                                                    else "valid_fraction")
                    + " place both cut-offs: split.holdout_fraction is never read")
        if split["kind"] == "temporal" and key == "split.pair_time" and split.get("pair_time") in (None, "earliest"):
            return "a temporal split always counts a repeated pair at its earliest time"
        if split["kind"] == "weak" and split.get("holdout") == "latest" and key == "split.seed":
            return "a weak split of each user's latest items draws nothing"
        if split["kind"] in ("weak", "predefined") and key == "split.n_test_users":
            return f"a {split['kind']} split never reads split.n_test_users (every user with a target is scored)"
        if split["kind"] == "weak" and key == "split.n_valid_users":
            return ("a weak split never reads split.n_valid_users (every user with at least "
                    "split.min_items_to_split items is scored)")
        if split.get("holdout_items") is not None and key == "split.holdout_fraction":
            return "split.holdout_items replaces split.holdout_fraction"
        kind = self.model_kind(config)
        if not never_reads(kind, key):
            return None
        section = key.split(".")[0]
        article = "an" if kind.name[0] in "aeiou" else "a"
        return f"{article} {kind.name} run never reads {section}.*" + (
            f" (but for {', '.join(PROCESS_KEYS)})" if section == "train" else "")


TASK = RecommendationTask()


def train_recommender(config: dict, overrides: list[str] = (), data_dir: str | None = None) -> base.Run:
    """Run a recommendation recipe end to end; returns the run directory and its metrics."""
    return base.train(TASK, config, overrides, data_dir)


class LoadedRun(NamedTuple):
    """A recommendation run read back: its resolved recipe, split, model (eval mode) and checkpoint."""

    config: dict
    split: Split
    model: nn.Module
    payload: dict


def load_run(run_dir: str | Path, checkpoint: str = "best", device=None) -> LoadedRun:
    """The config, split, model and checkpoint of a finished (or interrupted) run."""
    config, payload, model = base.load_trained(TASK, run_dir, checkpoint, device)
    split = Split.load(Path(run_dir) / "split")
    if split.train.shape[1] != payload["dim"]:  # a split/ copied in from another run
        raise DataError(f"{Path(run_dir) / 'split'}: {split.train.shape[1]} items, but the checkpoint "
                        f"{checkpoint}.pt was trained on {payload['dim']}: the split is not this run's")
    return LoadedRun(config, split, model, payload)


def evaluate_run(run_dir: str | Path, split: Split | None = None, device=None, workers: Workers = SINGLE,
                 overrides: list[str] = (), checkpoint: str = "best", per_user_csv: Path | None = None) -> dict:
    """Validation and test metrics of ``checkpoint`` ("best" or "last"), with each metric's definition.

    ``overrides`` (``inference.*``, ``eval.metrics``, ``eval.batch_size``, ``eval.empty_users``,
    ``output.progress``) score the same trained model another way. ``per_user_csv``: a new file (an
    existing one, the run's own metrics.json among them, is never overwritten).
    """
    if per_user_csv is not None:  # refused before anything is read or scored
        per_user_csv = new_output_file(per_user_csv, "per_user_csv")
    config, saved_split, model, payload = load_run(run_dir, checkpoint=checkpoint, device=device)
    if overrides:
        config = base.rescoring_config(TASK, config, overrides)
        TASK.check_rescoring(config, model, payload)
        check_batches_fit(config, split or saved_split, trains=False, device=device_of(model))
    return score_run(config, split or saved_split, model, payload, workers, per_user_csv, checkpoint,
                     overwrite=False)


def new_output_file(path, name: str) -> Path:
    """``path`` as a Path, refused (naming the argument ``name``) when something is there already or a
    file stands where a folder above it must be: bindiff never overwrites."""
    path = Path(path)
    try:
        refuse_a_long_name(path)  # before exists(), which raises on a name the file system cannot hold
        if path.exists() or path.is_symlink():
            raise FileExistsError(f"{name} {path}: already exists; bindiff never overwrites")
        refuse_a_file_above(path)
    except OutputError as err:
        raise OutputError(f"{name} {err}", err.errno) from None
    return path
