"""``train.ema``: the weights a run validates and saves are the moving average of the trained ones.

Truths: the average recomputed by hand in float64 from every trained weight the optimiser
produced; a run without the average (whose training must be the same, step for step); a run
killed and resumed against one that was not.
"""

import json
import subprocess
import sys
import os

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import RecipeError, load_recipe
from bindiff.training.averaging import WeightAverage
from bindiff.training.checkpoint import load_checkpoint
from bindiff.training.optim import build_optimizer
from bindiff.training.trainer import fit

from test_resume import RECIPE, assert_same_run, kill_after, overrides, write_ratings

runner = CliRunner()


class _Quadratic(torch.nn.Module):
    """A model whose loss pulls its weights toward a target, so every step moves them."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        self.register_buffer("counts", torch.tensor([3.0]))  # a buffer: never averaged

    def forward(self, x0, generator=None, cond=None):
        from bindiff.core import LossOutput

        loss = ((self.weight - x0.mean()) ** 2).sum() + 0.1 * (self.weight ** 4).sum()
        return LossOutput(loss=loss, terms={"loss": loss.expand(len(x0))}, t=torch.ones(len(x0), dtype=torch.long))


def _fit_recording(tmp_path, decay):
    """Fit the quadratic model for 3 epochs; the trained weights after every step, and the config."""
    rng = np.random.default_rng(0)
    data = sp.csr_matrix((rng.random((40, 5)) < 0.4).astype(np.float32))
    config = load_recipe(None, ["train.epochs=3", "train.batch_size=8", "train.patience=5", "train.lr=0.05",
                                f"train.ema={decay}", "eval.select=ndcg@10", "output.progress=false"])
    model = _Quadratic()
    optimizer = build_optimizer(config, model, 5)
    trained = [model.weight.detach().double().clone()]
    optimizer.optimizer.register_step_post_hook(lambda *_: trained.append(model.weight.detach().double().clone()))
    seen = []  # what validation saw
    fit(model, optimizer, data, config=config, config_yaml="x", checkpoint_dir=tmp_path, device=torch.device("cpu"),
        validate=lambda: seen.append(model.weight.detach().double().clone()) or {"ndcg@10": float(len(seen))})
    return trained, seen, model


def test_saved_and_validated_weights_are_the_hand_computed_average(tmp_path):
    decay = 0.8
    trained, seen, model = _fit_recording(tmp_path, decay)
    assert len(trained) == 1 + 3 * 5  # 40 rows in batches of 8, three epochs
    average, by_epoch = trained[0].clone(), []
    for k, weights in enumerate(trained[1:], start=1):
        d = min(decay, k / (k + 9))  # the ramp: 0.1, 0.18, ... up to the decay
        average = d * average + (1 - d) * weights
        if k % 5 == 0:
            by_epoch.append(average.clone())
    for epoch, (got, want) in enumerate(zip(seen, by_epoch), start=1):
        assert torch.allclose(got, want, atol=1e-6), epoch  # validation saw the average
    last = load_checkpoint(tmp_path / "last.pt")
    assert torch.allclose(last["model"]["weight"].double(), by_epoch[-1], atol=1e-6)
    assert torch.equal(last["model"]["counts"], torch.tensor([3.0]))
    # after the epoch the model trains on from its own weights, which the checkpoint keeps for a resume
    assert torch.allclose(model.weight.detach().double(), trained[-1], atol=0)
    assert torch.allclose(last["optimizer"]["weight_average"]["trained"][0].double(), trained[-1], atol=0)
    assert not torch.allclose(trained[-1], by_epoch[-1], atol=1e-3)  # the two really differ here


def test_the_average_does_not_change_training(tmp_path):
    with_average, _, _ = _fit_recording(tmp_path / "a", 0.9)
    plain, seen_plain, _ = _fit_recording(tmp_path / "b", 0.0)
    assert all(torch.equal(a, b) for a, b in zip(with_average, plain))
    assert torch.equal(seen_plain[-1], plain[-1])  # without the average validation sees the trained weights


def test_weight_average_refuses_and_round_trips():
    p = torch.nn.Parameter(torch.tensor([2.0, 4.0]))
    with pytest.raises(ValueError, match=r"decay must lie in \(0, 1\)"):
        WeightAverage([p], 1.0)
    average = WeightAverage([p], 0.5)
    values = [[4.0, 0.0]] + [[2.2, 3.6]] * 9 + [[4.2, 1.6]]
    expected = [2.0, 4.0]
    for n, value in enumerate(values, start=1):
        with torch.no_grad():
            p.copy_(torch.tensor(value))
        average.update()
        d = min(0.5, n / (n + 9))  # 0.1, 2/11, ..., 0.5 from the 9th update on
        expected = [d * e + (1 - d) * v for e, v in zip(expected, value)]
        if n == 1:
            assert torch.allclose(average.averages[0], torch.tensor([3.8, 0.4]), atol=1e-6)  # 0.1·(2, 4) + 0.9·(4, 0)
    assert torch.allclose(average.averages[0], torch.tensor(expected), atol=1e-6)
    with average.evaluated():
        assert torch.equal(p.detach(), average.averages[0])
        state = average.state_dict()  # taken while the averages stand in the model
        with pytest.raises(RuntimeError, match="stood in"):
            average.update()
    assert torch.equal(p.detach(), torch.tensor([4.2, 1.6]))
    other = torch.nn.Parameter(average.averages[0].clone())  # a fresh model holding the saved (averaged) weights
    restored = WeightAverage([other], 0.5)
    restored.load_state_dict(state)
    assert torch.equal(other.detach(), torch.tensor([4.2, 1.6])) and restored.updates == 11 and torch.equal(restored.averages[0], average.averages[0])
    with pytest.raises(ValueError, match="decay 0.5, the recipe says 0.9"):
        WeightAverage([other], 0.9).load_state_dict(state)


def test_recipe_refuses_a_decay_outside_0_1():
    with pytest.raises(RecipeError, match=r"train.ema.*\[0, 1\)"):
        load_recipe(None, ["train.ema=1.0"])


def test_a_killed_run_with_the_average_resumes_exactly(tmp_path):
    csv = write_ratings(tmp_path / "ratings.csv")
    def train_args(root):
        return ["train", str(RECIPE), *[o.replace("train.epochs=60", "train.epochs=12") for o in overrides(csv, root)],
                "train.ema=0.9"]

    args = train_args(tmp_path / "reference")
    assert runner.invoke(app, args).exit_code == 0
    reference = next((tmp_path / "reference" / "ml1m").iterdir())
    victim_root = tmp_path / "victim"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    victim_args = train_args(victim_root)
    proc = subprocess.Popen([sys.executable, "-m", "bindiff", *victim_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    last = None
    while proc.poll() is None:  # kill it once an epoch has been saved, before the run ends
        runs = list((victim_root / "ml1m").glob("*/checkpoints/last.pt")) if (victim_root / "ml1m").is_dir() else []
        if runs:
            last = runs[0]
            break
    assert kill_after(proc, 0.0) is not None, "the run ended before it could be killed"
    run_dir = last.parent.parent
    assert not (run_dir / "metrics.json").exists()
    result = runner.invoke(app, ["resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert_same_run(run_dir, reference)
    for name in ("best.pt", "last.pt"):
        got, want = (load_checkpoint(d / "checkpoints" / name)["optimizer"]["weight_average"] for d in (run_dir, reference))
        assert all(torch.equal(a, b) for a, b in zip(got["averages"] + got["trained"], want["averages"] + want["trained"]))
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["training"]["epochs_run"] == 12
