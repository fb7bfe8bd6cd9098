"""Training called as a library: an undefined validation metric still gives a best checkpoint and
a finished run; resuming, loading a run and scoring it leave the caller's random states and
thread count as they were; a checkpoint's bytes do not depend on where it was written."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import load_recipe
from bindiff.tasks import base, registry
from bindiff.training.checkpoint import load_checkpoint, save_checkpoint
from test_resume import overrides, write_ratings

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()


class Interrupted(Exception):
    pass


def _config(tmp_path: Path, *extra: str) -> dict:
    csv = write_ratings(tmp_path / "ratings.csv")
    return load_recipe(RECIPE, [*overrides(csv, tmp_path / "runs"), "train.epochs=6", "train.patience=3", *extra])


def _validate_with(monkeypatch, change):
    """Every validation of the next runs passes its metrics (and its 1-based call) through ``change``."""
    real, calls = base.fit, [0]

    def fit(*args, validate, **kwargs):
        def validated():
            calls[0] += 1
            return change(validate(), calls[0])
        return real(*args, validate=validated, **kwargs)
    monkeypatch.setattr(base, "fit", fit)


def test_a_metric_that_is_never_defined_still_finishes_the_run_on_its_first_epoch(tmp_path, monkeypatch):
    _validate_with(monkeypatch, lambda metrics, call: {**metrics, "ndcg@20": float("nan")})
    run = registry.train(_config(tmp_path))
    best = load_checkpoint(run.run_dir / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and run.metrics["training"]["epochs_run"] == 4  # patience 3 after epoch 1
    assert run.metrics["checkpoint"]["epoch"] == 1


def test_a_defined_value_beats_an_undefined_first_one(tmp_path, monkeypatch):
    _validate_with(monkeypatch, lambda metrics, call: {**metrics, "ndcg@20": float("nan") if call == 1 else 0.1 * call})
    run = registry.train(_config(tmp_path))
    assert run.metrics["training"]["best_epoch"] == 6  # 0.2, 0.3, ... rise to the last epoch
    assert load_checkpoint(run.run_dir / "checkpoints" / "best.pt")["epoch"] == 6


def _states():
    return np.random.get_state()[1].copy(), np.random.get_state()[2], random.getstate(), torch.get_rng_state()


def test_resume_and_reading_a_run_leave_the_callers_random_states_and_threads_alone(tmp_path, monkeypatch):
    def stop_at_third(metrics, call):
        if call == 3:
            raise Interrupted
        return metrics
    _validate_with(monkeypatch, stop_at_third)
    with pytest.raises(Interrupted):
        registry.train(_config(tmp_path))
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "runs" / "ml1m").iterdir()

    np.random.seed(7)
    random.seed(7)
    torch.manual_seed(7)
    torch.set_num_threads(2)
    before = _states()
    run = registry.resume(run_dir)
    assert run.metrics["training"]["resumed_from_epoch"] == 2
    base.load_trained(registry.get_task("recommend"), run_dir)
    after = _states()
    assert np.array_equal(before[0], after[0]) and before[1] == after[1]  # numpy's global state
    assert before[2] == after[2] and torch.equal(before[3], after[3])  # Python's and torch's
    assert torch.get_num_threads() == 2  # the recipe's train.threads=1 was the run's only


def test_the_scoring_entry_points_give_the_callers_thread_count_back(tmp_path, monkeypatch):
    from bindiff.tasks.masks.apply import apply_run
    from bindiff.tasks.masks.job import run_evaluations
    from bindiff.tasks.segmentation.segment import segment

    def one_thread_then_fail(*args, **kwargs):  # a run read with train.threads: 1, then a bug part-way
        torch.set_num_threads(1)
        raise Interrupted
    monkeypatch.setattr(base, "load_trained", one_thread_then_fail)
    (tmp_path / "case.nii.gz").write_bytes(b"")
    calls = {"apply_run": lambda: apply_run(tmp_path, "denoising", tmp_path / "case.nii.gz", tmp_path / "out"),
             "run_evaluations": lambda: run_evaluations(tmp_path, ["denoising"]),
             "segment": lambda: segment(tmp_path, tmp_path / "case.nii.gz", tmp_path / "out")}
    for name, call in calls.items():
        torch.set_num_threads(2)
        with pytest.raises(Interrupted):
            call()
        assert torch.get_num_threads() == 2, name


def test_a_checkpoint_has_the_same_bytes_wherever_it_is_written(tmp_path):
    model = torch.nn.Linear(3, 2)
    for name in ("a.pt", "b.pt"):
        save_checkpoint(tmp_path / name, model=model, config_yaml="name: x\n", dim=3, epoch=1)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_a_list_metric_cannot_select_the_best_checkpoint():
    result = runner.invoke(app, ["show-config", str(RECIPE), "eval.select=popularity@20"])
    assert result.exit_code == 2
    assert "eval.select: popularity@20 describes the lists, not how well they rank" in result.output
