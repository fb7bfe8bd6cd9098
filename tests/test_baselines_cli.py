"""Every model.kind end to end through the CLI on a tiny ratings file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from bindiff.cli import app

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()

# Small networks so each run takes about a second.
TINY = {
    "popularity": [],
    "ease": ["model.params.lambdas=[1, 10, 100]"],
    "multdae": ["model.params.hidden=[16]", "model.params.latent=8"],
    "multvae": ["model.params.hidden=[16]", "model.params.latent=8", "model.params.total_anneal_steps=10"],
    "gaussian": ["model.params.dims=[8, 16]", "model.params.steps=5"],
    "recfusion": ["model.params.hidden=16", "model.params.depth=2", "train.lr=0.001"],
}


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    """200 users in two taste groups over 30 items."""
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"]
    for u in range(200):
        group = u % 2
        for item in rng.choice(np.arange(group * 15, group * 15 + 15), size=8, replace=False):
            lines.append(f"u{u},i{item},5")
        for item in rng.choice(np.arange((1 - group) * 15, (1 - group) * 15 + 15), size=2, replace=False):
            lines.append(f"u{u},i{item},4")
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def args(csv: Path, root: Path, kind: str, *extra: str) -> list[str]:
    # a model fitted in closed form reads no train.* setting: giving it one is refused
    epochs = [] if kind in ("popularity", "ease") else ["train.epochs=2", "train.batch_size=64"]
    return ["train", str(RECIPE), f"data.dataset={csv}", "data.min_rating=4", "data.rating_col=rating",
            "split.n_valid_users=30", "split.n_test_users=30", *epochs,
            "eval.metrics=[recall@5, ndcg@10]", "eval.select=ndcg@10", f"output.root={root}",
            "output.progress=false", f"model.kind={kind}", *TINY[kind], *extra]


def train(csv: Path, root: Path, kind: str, *extra: str) -> Path:
    result = runner.invoke(app, args(csv, root, kind, *extra))
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "ml1m").iterdir()
    return run_dir


@pytest.fixture(scope="module")
def ease_run(ratings_csv, tmp_path_factory) -> Path:
    return train(ratings_csv, tmp_path_factory.mktemp("ease"), "ease")


@pytest.mark.parametrize("kind", ["multdae", "multvae", "gaussian", "recfusion"])
def test_trainable_baseline_trains_evaluates_and_reloads(kind, ratings_csv, tmp_path):
    from bindiff.tasks.recommendation.models import MODELS
    from bindiff.tasks.recommendation.job import load_run

    run_dir = train(ratings_csv, tmp_path, kind)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"recall@5", "ndcg@10"}
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    assert metrics["model"]["kind"] == kind
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in history)
    assert (run_dir / "training_curve.png").is_file()
    payload = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert f"kind: {kind}" in payload["config_yaml"]
    _, _, model, _ = load_run(run_dir)
    assert isinstance(model, MODELS[kind].params_of) and not model.training
    again = runner.invoke(app, ["evaluate", str(run_dir)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["test"] == metrics["test"]


def test_closed_form_run_writes_a_complete_run_directory(ease_run):
    metrics = json.loads((ease_run / "metrics.json").read_text())
    training = metrics["training"]
    assert training["closed_form"] is True and training["epochs_run"] == 0
    assert training["lambda"] in (1.0, 10.0, 100.0)
    best = max(training["grid"], key=lambda row: row["valid"])
    assert training["lambda"] == best["lambda"] and metrics["valid"]["ndcg@10"] == pytest.approx(best["valid"])
    assert json.loads((ease_run / "history.json").read_text()) == []
    assert not (ease_run / "training_curve.png").exists()
    for name in ("best.pt", "last.pt"):
        payload = torch.load(ease_run / "checkpoints" / name, weights_only=True)
        assert payload["model"]["weights"].shape == (30, 30)
        assert float(payload["model"]["chosen_lambda"]) == training["lambda"]


def test_a_piped_closed_form_fit_logs_each_validation(ratings_csv, tmp_path):
    """EASE validates once per λ: piped, each is a line, with the value its grid records."""
    arguments = [a for a in args(ratings_csv, tmp_path, "ease") if a != "output.progress=false"]
    result = runner.invoke(app, [*arguments, "output.progress=null"])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ml1m").iterdir()
    grid = json.loads((run_dir / "metrics.json").read_text())["training"]["grid"]
    lines = [line for line in result.stderr.splitlines() if line.startswith("closed form: ")]
    assert [line.split(" (")[0] for line in lines] == [f"closed form: validation {i}: ndcg@10 {g['valid']:.4f}"
                                                       for i, g in enumerate(grid, 1)]
    assert len(grid) == 3 and "fitting EASE in closed form on 140 training rows" in result.stderr


def test_evaluate_and_recommend_on_a_closed_form_run(ease_run):
    from bindiff.adapters.interactions import Split
    from bindiff.tasks.recommendation.serve import user_history

    result = runner.invoke(app, ["evaluate", str(ease_run)])
    assert result.exit_code == 0, result.output
    stored = json.loads((ease_run / "metrics.json").read_text())
    again = json.loads(result.output)
    assert again["test"] == stored["test"] and again["valid"] == stored["valid"]

    split = Split.load(ease_run / "split")
    user = str(split.test.user_ids[0])
    result = runner.invoke(app, ["recommend", str(ease_run), "--user", user, "--k", "4"])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    seen = {str(split.item_ids[i]) for i in user_history(split, user).indices}
    assert not seen & {r[1] for r in rows}
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_popularity_run_recommends_the_most_popular_unseen_items(ratings_csv, tmp_path):
    from bindiff.adapters.interactions import Split
    from bindiff.tasks.recommendation.serve import recommend, user_history

    run_dir = train(ratings_csv, tmp_path, "popularity")
    split = Split.load(run_dir / "split")
    counts = np.asarray((split.train > 0).sum(axis=0)).ravel()
    user = str(split.valid.user_ids[0])
    seen = set(user_history(split, user).indices.tolist())
    order = [i for i in np.argsort(-counts, kind="stable") if i not in seen][:5]
    got = recommend(run_dir, user, k=5)
    assert [item for item, _ in got] == [str(split.item_ids[i]) for i in order]
    assert [score for _, score in got] == [float(counts[i]) for i in order]


def test_resuming_an_unfinished_closed_form_run_redoes_the_fit(ease_run, tmp_path):
    import shutil

    import bindiff

    copy = tmp_path / "run"
    shutil.copytree(ease_run, copy)
    (copy / "metrics.json").unlink()
    finished = bindiff.resume(copy)
    stored = json.loads((ease_run / "metrics.json").read_text())
    assert finished.metrics["test"] == stored["test"] and finished.metrics["training"]["lambda"] == \
        stored["training"]["lambda"]


@pytest.mark.parametrize("extra, expected", [
    (["model.kind=svd"], "model.kind: unknown model 'svd'; choose one of binomial, popularity, ease, multdae, "
                         "multvae, gaussian, recfusion"),
    (["model.kind=ease", "model.params.lam=3"], "model 'ease' has no parameter(s) ['lam']; it takes ['lambdas']"),
    (["model.kind=multvae", "model.params.width=3"], "it takes ['hidden', 'latent', 'dropout', 'anneal_cap', "
                                                     "'total_anneal_steps']"),
    (["model.params.hidden=[3]"], "the binomial model takes no parameters here"),
    (["model.kind=recfusion", "model.params.depth=-1"], "depth must be an integer >= 0"),
])
def test_bad_model_section_exits_2_naming_the_valid_choices(extra, expected, tmp_path):
    # the dataset does not exist: the model section is refused before any data are read
    result = runner.invoke(app, ["train", str(RECIPE), f"data.dataset={tmp_path / 'missing.csv'}",
                                 f"output.root={tmp_path}", *extra])
    assert result.exit_code == 2
    assert expected in result.output
    assert not (tmp_path / "ml1m").exists()


def test_ease_lambda_is_chosen_on_validation_users_only(monkeypatch, tmp_path):
    """Valid and test targets are built so that they prefer different λ; the valid one must win."""
    from bindiff.adapters.interactions import EvalPart, Split
    from bindiff.tasks.recommendation.baselines.ease import ease_weights
    from bindiff.config import load_recipe
    from bindiff.metrics import topk_excluding
    from bindiff.tasks.recommendation.job import train_recommender

    n_items, small, large = 15, 0.5, 500.0
    rng = np.random.default_rng(4)
    train_m = sp.csr_matrix((rng.random((80, n_items)) < 0.3).astype(np.float32))
    inputs = sp.csr_matrix((rng.random((40, n_items)) < 0.3).astype(np.float32))
    x = torch.from_numpy(inputs.toarray())
    top = {lam: topk_excluding(x @ torch.from_numpy(ease_weights(train_m, lam)).float(), inputs, 1)[:, 0].numpy()
           for lam in (small, large)}
    differ = np.flatnonzero(top[small] != top[large])
    assert len(differ) >= 5  # the construction needs users on whom the two λ disagree

    def targets(lam):
        t = np.zeros((40, n_items), dtype=np.float32)
        t[differ, top[lam][differ]] = 1.0
        return sp.csr_matrix(t)

    ids = np.array([f"u{i}" for i in range(40)])
    split = Split(train=train_m, train_user_ids=np.array([f"t{i}" for i in range(80)]),
                  item_ids=np.array([f"i{j}" for j in range(n_items)]),
                  valid=EvalPart(inputs, inputs.copy(), targets(small), ids),
                  test=EvalPart(inputs, inputs.copy(), targets(large), ids), kind="strong", info={})
    monkeypatch.setattr("bindiff.tasks.recommendation.job.prepare_split", lambda *a, **k: (split, None))
    config = load_recipe(RECIPE, ["model.kind=ease", f"model.params.lambdas=[{large}, {small}]",
                                  "eval.metrics=[ndcg@1]", "eval.select=ndcg@1", f"output.root={tmp_path}",
                                  "output.progress=false"])
    run = train_recommender(config)
    assert run.metrics["training"]["lambda"] == small
    assert run.metrics["valid"]["ndcg@1"] == 1.0 and run.metrics["test"]["ndcg@1"] == 0.0
