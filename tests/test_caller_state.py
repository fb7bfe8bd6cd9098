"""bindiff inside someone else's process: rescoring with overrides leaves torch's global generator
alone; training works (and gives the same numbers) whatever the caller's grad mode and default
dtype; a hand-made config without ``task`` is read as a recipe is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bindiff.config import RecipeError, load_recipe
from bindiff.tasks import base, registry
from bindiff.tasks.recommendation.job import evaluate_run
from bindiff.training.checkpoint import load_checkpoint
from test_resume import overrides, write_ratings

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


def _config(tmp_path: Path) -> dict:
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = write_ratings(tmp_path / "ratings.csv")
    return load_recipe(RECIPE, [*overrides(csv, tmp_path / "runs"), "train.epochs=2", "train.patience=2"])


def _weights(run) -> dict:
    return load_checkpoint(run.run_dir / "checkpoints" / "best.pt")["model"]


def test_training_ignores_the_callers_grad_mode_and_default_dtype(tmp_path):
    reference = registry.train(_config(tmp_path / "a"))
    with torch.no_grad():
        no_grad = registry.train(_config(tmp_path / "b"))
    with torch.inference_mode():
        inference = registry.train(_config(tmp_path / "c"))
    torch.set_default_dtype(torch.float64)
    try:
        float64 = registry.train(_config(tmp_path / "d"))
        assert torch.get_default_dtype() == torch.float64  # given back
        assert evaluate_run(reference.run_dir)["test"] == reference.metrics["test"]
    finally:
        torch.set_default_dtype(torch.float32)
    for run in (no_grad, inference, float64):
        assert run.metrics["test"] == reference.metrics["test"]
        assert all(torch.equal(a, b) for a, b in zip(_weights(run).values(), _weights(reference).values()))


def test_rescoring_with_overrides_leaves_the_global_generator_alone(tmp_path):
    run = registry.train(_config(tmp_path))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    evaluate_run(run.run_dir, overrides=["inference.t=1"])
    base.rescoring_config(registry.get_task("recommend"), base.read_run_config(run.run_dir), ["inference.t=1"])
    assert torch.equal(state, torch.get_rng_state())


def test_a_config_without_task_is_read_as_a_recipe(tmp_path):
    config = {"name": "x", "data": {"dataset": str(tmp_path / "none.csv")}, "output": {"root": str(tmp_path)}}
    with pytest.raises(Exception) as err:
        registry.train(config)
    assert not isinstance(err.value, KeyError)
    with pytest.raises(RecipeError, match="unknown key 'tsk'"):
        registry.train({**config, "tsk": "recommend"})


def test_overlapping_calls_give_the_callers_default_dtype_back_once_the_last_leaves():
    """Two threads training at once: each restoring its own saved dtype left float32 behind for good."""
    torch.set_default_dtype(torch.float64)
    try:
        first, second = base.float32_models(), base.float32_models()
        first.__enter__()
        second.__enter__()
        assert torch.get_default_dtype() == torch.float32
        first.__exit__(None, None, None)  # A leaves while B still builds: B keeps float32
        assert torch.get_default_dtype() == torch.float32
        second.__exit__(None, None, None)
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
