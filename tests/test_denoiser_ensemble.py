"""`denoiser.members`: several denoisers trained as if alone, averaged at inference."""

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.core import BernoulliProcess, BinomialDiffusion, DenoiserEnsemble, MLPDenoiser, build_denoiser

runner = CliRunner()


def test_the_ensemble_returns_the_logit_of_the_mean_probability():
    torch.manual_seed(0)
    ensemble = build_denoiser("mlp", 7, members=3, hidden=[5])
    x, t = torch.bernoulli(torch.full((4, 7), 0.5)), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        each = [member(x, t).double() for member in ensemble.members]
        mean = sum(torch.sigmoid(logits) for logits in each) / 3
        np.testing.assert_allclose(torch.sigmoid(ensemble(x, t).double()), mean, rtol=1e-5, atol=1e-6)
    # saturated members: the mean of 1 and 1/(1 + e^80) is 1/2, whose logit is 0; and two certain 0s stay finite
    saturated = torch.tensor([[[80.0, -90.0]], [[-80.0, -95.0]]])
    got = DenoiserEnsemble.mean_logits(saturated)
    assert torch.isfinite(got).all() and abs(got[0, 0].item()) < 1e-6 and got[0, 1].item() < -85


def test_each_member_learns_from_its_own_block_as_if_it_were_trained_alone():
    torch.manual_seed(1)
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.05, beta_end=0.3)
    ensemble = BinomialDiffusion(build_denoiser("mlp", 9, members=2, hidden=[6], time_dim=4), process)
    x0 = torch.bernoulli(torch.full((6, 9), 0.4))  # two blocks of 3 rows: member 0 rows 0-2, member 1 rows 3-5
    t = torch.tensor([1, 2, 3, 4, 2, 1])
    noise = torch.rand(6, 9)
    ensemble(x0, t=t, noise=noise).loss.backward()
    for k, member in enumerate(ensemble.denoiser.members):
        alone = BinomialDiffusion(copy.deepcopy(member), process)
        block = slice(3 * k, 3 * k + 3)
        alone(x0[block], t=t[block], noise=noise[block]).loss.backward()
        for (name, p_alone), p_member in zip(alone.denoiser.named_parameters(), member.parameters()):
            # the loss is the mean over the 6 rows, i.e. the mean of the two members' losses: half of each gradient
            torch.testing.assert_close(p_member.grad, p_alone.grad / 2, msg=f"member {k}, {name}")
    with pytest.raises(ValueError, match="2 equal blocks of rows, got 5 rows"):
        ensemble(x0[:5], t=t[:5], noise=noise[:5])


def test_an_epoch_gives_each_member_every_row_once_in_its_own_order():
    from bindiff.training.trainer import TrainState, _train_epoch

    class Recorder(torch.nn.Module):
        def __init__(self, members):
            super().__init__()
            self.denoiser = build_denoiser("mlp", 4, members=members, hidden=[2])

    class NoOptimizer:
        def zero_grad(self, set_to_none=True):
            pass

        def step(self):
            pass

    def batches(members: int) -> list[np.ndarray]:
        seen = []

        def step(rows):
            seen.append(rows)
            return torch.zeros((), requires_grad=True), 0.0
        _train_epoch(Recorder(members), NoOptimizer(), np.zeros((10, 4)), step, torch.Generator().manual_seed(5),
                     TrainState(), 4, None, torch.device("cpu"))
        return seen

    single, ensemble = batches(1), batches(3)
    assert [len(b) for b in ensemble] == [12, 12, 6]  # batches of 4, 4 and 2 rows for each of the 3 members
    orders = [np.concatenate([b[m * len(b) // 3:(m + 1) * len(b) // 3] for b in ensemble]) for m in range(3)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(10))
    assert np.array_equal(orders[0], np.concatenate(single))  # the first member's order is a single model's
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_members_start_from_different_weights_and_one_member_is_the_plain_denoiser():
    torch.manual_seed(2)
    ensemble = build_denoiser("mlp", 6, members=2, hidden=[4])
    first, second = ensemble.members
    assert not torch.equal(first.layers[0].weight, second.layers[0].weight)
    assert type(build_denoiser("mlp", 6, members=1, hidden=[4])) is MLPDenoiser
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="members must be an integer >= 1"):
            build_denoiser("mlp", 6, members=bad, hidden=[4])


def test_a_recipe_with_members_trains_evaluates_recommends_and_exports(tmp_path):
    from bindiff.tasks.recommendation.job import load_run
    from test_cli_pipeline import RECIPE, small_args

    rng = np.random.default_rng(3)
    lines = ["user,item,rating"]
    for u in range(200):
        for item in rng.choice(np.arange((u % 2) * 15, (u % 2) * 15 + 15), size=8, replace=False):
            lines.append(f"u{u},i{item},5")
    csv = tmp_path / "ratings.csv"
    csv.write_text("\n".join(lines) + "\n")
    root = tmp_path / "runs"
    result = runner.invoke(app, small_args(csv, root, "denoiser.members=3", "train.epochs=3"))
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / RECIPE.stem).iterdir()
    config, _, model, _ = load_run(run_dir)
    assert config["denoiser"]["members"] == 3 and len(model.denoiser.members) == 3
    again = runner.invoke(app, ["evaluate", str(run_dir)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["test"] == json.loads((run_dir / "metrics.json").read_text())["test"]
    x = torch.zeros(1, model.denoiser.dim)
    x[0, :3] = 1
    with torch.no_grad():
        members = torch.stack([torch.sigmoid(m(x, torch.ones(1, dtype=torch.long))) for m in model.denoiser.members])
    out = tmp_path / "exported"
    assert runner.invoke(app, ["export", str(run_dir), "--output", str(out)]).exit_code == 0
    scorer = torch.export.load(str(out / "scorer.pt2")).module()
    np.testing.assert_allclose(scorer(x).numpy(), members.mean(0).numpy(), rtol=1e-5, atol=1e-6)


class ImageToMask(torch.nn.Module):
    """A tiny conditional denoiser: a linear map of the image (the mask's x_t and t unused)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.linear = torch.nn.Linear(dim, dim)

    def forward(self, x_t, t, cond):
        return self.linear(cond)


def test_the_deterministic_segmenters_members_also_learn_alone():
    from bindiff.tasks.segmentation.unet_baseline import DirectSegmenter

    torch.manual_seed(4)
    members = [ImageToMask(8), ImageToMask(8)]
    ensemble = DirectSegmenter(DenoiserEnsemble(members), dice_weight=1.0)
    image, mask = torch.randn(4, 8), torch.bernoulli(torch.full((4, 8), 0.3))
    ensemble(mask, cond=image).loss.backward()
    for k, member in enumerate(members):
        alone = DirectSegmenter(copy.deepcopy(member), dice_weight=1.0)
        alone(mask[2 * k:2 * k + 2], cond=image[2 * k:2 * k + 2]).loss.backward()
        torch.testing.assert_close(member.linear.weight.grad, alone.denoiser.linear.weight.grad / 2)
    with torch.no_grad():
        mean = sum(torch.sigmoid(m.linear(image)) for m in members) / 2
    torch.testing.assert_close(ensemble.probabilities(image), mean)


def test_an_interrupted_ensemble_run_resumes_to_the_uninterrupted_metrics(tmp_path, monkeypatch):
    from bindiff.training import trainer
    from bindiff.training.checkpoint import load_checkpoint
    from test_cli_pipeline import RECIPE, small_args
    from test_resume import write_ratings

    csv = write_ratings(tmp_path / "ratings.csv")
    args = ["denoiser.members=2", "train.epochs=5", "train.patience=5"]
    reference = runner.invoke(app, small_args(csv, tmp_path / "reference", *args))
    assert reference.exit_code == 0, reference.output

    save, saved = trainer._save_epoch, []

    def save_then_stop(checkpoint_dir, improved, state, *rest, **kwargs):
        save(checkpoint_dir, improved, state, *rest, **kwargs)
        saved.append(state.epoch)
        if state.epoch == 2:
            raise KeyboardInterrupt  # as a kill right after epoch 2's checkpoints
    monkeypatch.setattr(trainer, "_save_epoch", save_then_stop)
    stopped = runner.invoke(app, small_args(csv, tmp_path / "victim", *args))
    assert stopped.exit_code != 0 and saved == [1, 2]
    monkeypatch.setattr(trainer, "_save_epoch", save)
    (run_dir,) = (tmp_path / "victim" / RECIPE.stem).iterdir()
    resumed = runner.invoke(app, ["resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    (ref_dir,) = (tmp_path / "reference" / RECIPE.stem).iterdir()
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, ref_dir))
    assert got["test"] == want["test"] and got["valid"] == want["valid"]
    a, b = (load_checkpoint(d / "checkpoints" / "last.pt")["model"] for d in (run_dir, ref_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
