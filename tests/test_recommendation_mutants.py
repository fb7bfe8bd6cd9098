"""The recommendation task against independent truths where a mutation round found its tests blind:
of 173 mutants of the baselines, models, evaluation, data, serving, export, compare, tune, the paired
tests, the interaction matrix and `bindiff score`, 36 that changed behaviour survived the suite (the
best baseline chosen on test values, `split.holdout_fraction` ignored, `log: true` ignored, the study
minimised, per-user rows labelled with validation users, ...); the tests here kill 34 of them."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.config import RecipeError, load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory) -> Path:
    """160 users in two taste groups over 30 items with integer ids 1..30 (numeric order differs
    from string order); users 0-19 have only 3 items (never split: nothing held out)."""
    rng = np.random.default_rng(1)
    lines = ["user,item"]
    for u in range(160):
        group = u % 2
        size = 3 if u < 20 else 9
        for item in rng.choice(np.arange(group * 15, group * 15 + 15), size=size, replace=False):
            lines.append(f"u{u},{item + 1}")
    path = tmp_path_factory.mktemp("data") / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def small(csv_path, root, *extra):
    return load_recipe(RECIPE, ["name=ml1m", f"data.dataset={csv_path}", "data.min_rating=null",
                                "split.n_valid_users=30", "split.n_test_users=30", "denoiser.params.hidden=[16]",
                                "train.epochs=2", "train.batch_size=50", "eval.metrics=[hit@5, ndcg@10]",
                                "eval.select=ndcg@10", f"output.root={root}", "output.progress=false", *extra])


def raw_items(csv_path) -> dict:
    out = {}
    for line in Path(csv_path).read_text().split("\n")[1:]:
        if line:
            u, i = line.split(",")
            out.setdefault(u, set()).add(i)
    return out


# --- compare: the best baseline is chosen on validation, end to end (C5) --------------------------------
def test_compare_chooses_the_best_baseline_on_the_runs_validation_values(pairs_csv, tmp_path, monkeypatch):
    import bindiff.tasks.recommendation.compare as compare
    from bindiff.config import dump_recipe

    real = compare.train_recommender

    def inverted(config, *a, **k):  # validation now prefers whichever model is worse on test
        run = real(config, *a, **k)
        run.metrics["valid"]["ndcg@10"] = -run.metrics["test"]["ndcg@10"]
        return run

    monkeypatch.setattr(compare, "train_recommender", inverted)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(dump_recipe(small(pairs_csv, tmp_path / "out")))
    out = compare.run_comparison(recipe, models=["popularity", "ease"], seeds=1)  # a Path; no overrides
    table = json.loads((out / "compare.json").read_text())
    tests = {m: table["models"][m]["mean"]["ndcg@10"] for m in ("popularity", "ease")}
    assert tests["popularity"] != tests["ease"]
    assert table["best_baseline"] == min(tests, key=tests.get)  # best on (inverted) validation = worse on test
    assert table["models"][table["best_baseline"]]["vs_best_baseline"] is None  # C10


def test_paired_helpers():
    from bindiff.tasks.recommendation.compare import ModelRun, _p_value, _seed_t_p, per_user_pairs
    assert _seed_t_p([0.5, 0.75], [0.25, 0.5]) is None        # C17: constant difference: undefined
    assert _seed_t_p([0.5, 0.5], [0.5, 0.5]) is None
    assert _p_value(0.0) == "< 1e-300"                           # C20
    pu = {"ndcg@10": np.array([0.1, 0.2])}
    a = ModelRun("m", "binomial", 0, Path("/a"), {}, {}, pu, 1, 1, np.array(["u1", "u2"]))
    b = ModelRun("b", "ease", 0, Path("/b"), {}, {}, pu, 1, 1, np.array(["u1", "u3"]))
    with pytest.raises(ValueError, match="other users"):       # C13
        per_user_pairs([a], [b], "ndcg@10")


# --- tune ----------------------------------------------------------------------------------------------
def _space(config, space):
    from bindiff.tasks.recommendation.tune import parse_space
    return parse_space({**config, "tune": {**config["tune"], "space": space}}, "r.yaml")


def test_tune_refuses_eval_keys_unread_sections_and_duplicate_choices(pairs_csv, tmp_path):
    config = small(pairs_csv, tmp_path)
    with pytest.raises(RecipeError, match="cannot be searched"):                        # T2
        _space(config, {"eval.select": {"choices": ["ndcg@10", "hit@5"]}})
    with pytest.raises(RecipeError, match="does not read the diffusion section"):       # T3
        _space(load_recipe(RECIPE, ["model.kind=ease"]), {"diffusion.steps": {"int": [2, 5]}})
    with pytest.raises(RecipeError, match="twice"):                                     # T6
        _space(config, {"train.batch_size": {"choices": [100, 100]}})


def test_a_log_range_is_sampled_log_uniformly():                                          # T17
    import optuna
    from bindiff.tasks.recommendation.tune import Dimension
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dim = Dimension("train.lr", "float", 1e-4, 1e-2, log=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = []
    for _ in range(400):
        trial = study.ask()
        values.append(dim.suggest(trial))
        study.tell(trial, 0.0)
    # log-uniform on [1e-4, 1e-2]: median 1e-3 and half the draws below it; uniform: median ~5e-3
    assert 7e-4 < np.median(values) < 1.4e-3


def test_best_trial_nan_never_wins_and_ties_go_to_the_earlier():                         # T10, T13
    from bindiff.tasks.recommendation.tune import TrialRecord, best_trial
    recs = [TrialRecord(i, {}, [], v, Path("/r"), 0.0) for i, v in enumerate([math.nan, 0.3, 0.3, 0.1])]
    assert best_trial(recs).number == 1


def test_refuse_replaced_sees_sections_and_keys_inside_them():                            # T14
    from bindiff.tasks.recommendation.tune import refuse_replaced
    with pytest.raises(RecipeError):
        refuse_replaced(["model.params={latent: 5}"], ["model.params.latent"], "x searches")
    with pytest.raises(RecipeError):
        refuse_replaced(["train.lr=0.1"], ["train"], "x searches")


def test_tpe_search_climbs_towards_the_higher_validation_value(pairs_csv, tmp_path, monkeypatch):  # T9
    import bindiff.tasks.recommendation.tune as tune
    from bindiff.config import dump_recipe
    from bindiff.tasks.base import Run

    def fake(config, overrides=(), data_dir=None):
        lr = config["train"]["lr"]
        run_dir = Path(config["output"]["root"]) / "run"
        run_dir.mkdir(parents=True)
        value = -abs(math.log10(lr) + 2.5)   # best at lr = 10^-2.5, inside [1e-4, 1e-1]
        (run_dir / "metrics.json").write_text(json.dumps({"valid": {"ndcg@10": value}, "test": {"ndcg@10": 0}}))
        return Run(run_dir=run_dir, metrics={"valid": {"ndcg@10": value}, "test": {"ndcg@10": 0}})

    monkeypatch.setattr(tune, "train_recommender", fake)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(dump_recipe(small(pairs_csv, tmp_path / "out", "tune.sampler=tpe")))
    out = tune.run_tuning(str(recipe), [], trials=30, space={"train.lr": {"float": [1e-4, 1e-1], "log": True}})
    values = [t["valid"] for t in json.loads((out / "study.json").read_text())["trials"]]
    assert np.mean(values[-10:]) > np.mean(values[:10])   # maximising: later trials are better, not worse


# --- EASE ----------------------------------------------------------------------------------------------
def test_ease_nan_never_wins_ties_go_to_the_smallest_lambda_and_zero_is_refused():       # E6, E7, E14
    from bindiff.tasks.recommendation.baselines import EASE
    train = sp.csr_matrix((np.random.default_rng(0).random((30, 6)) < 0.4).astype(np.float32))
    values = iter([math.nan, 0.5, 0.5])
    report = EASE(6, lambdas=[1.0, 10.0, 100.0]).fit_closed_form(train, lambda m: next(values))
    assert report["lambda"] == 10.0 and report["valid"] == 0.5
    with pytest.raises(ValueError, match="lambdas"):
        EASE(6, lambdas=[0.0])


# --- baselines' definitions ----------------------------------------------------------------------------
def test_gaussian_network_reads_the_raw_history_and_the_step_itself():                   # G6, G7
    from bindiff.core import sinusoidal_embedding
    from bindiff.tasks.recommendation.baselines import GaussianDiffusionRecommender
    torch.manual_seed(0)
    model = GaussianDiffusionRecommender(12, dims=[8, 6], time_dim=4).eval()
    x, t = torch.rand(3, 12), torch.tensor([0, 5, 39])
    h = torch.cat([x, model.time_proj(sinusoidal_embedding(t, 4))], dim=-1)  # by hand: no l2 norm (norm=False)
    for layer in model.in_layers:
        h = torch.tanh(layer(h))
    h = torch.tanh(model.out_layers[0](h))
    h = model.out_layers[1](h)
    assert torch.allclose(model.predict_x0(x, t), h, atol=1e-6)


def test_gaussian_training_draws_every_step_uniformly():                                  # G9
    from bindiff.tasks.recommendation.baselines import GaussianDiffusionRecommender
    model = GaussianDiffusionRecommender(5, dims=[4, 4], time_dim=2, steps=3)
    out = model(torch.zeros(3000, 5), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(out.t, minlength=3)
    assert counts.min() > 900  # each of t = 0, 1, 2 about 1000 times


def test_gaussian_beta_is_capped():                                                       # G2
    from bindiff.tasks.recommendation.baselines.gaussian import linear_var_tables
    assert linear_var_tables(2, 1.0, 0.5, 0.9999)["betas"][1] == 0.999


def test_initialisations_follow_the_papers():                                            # M13, G14
    from bindiff.tasks.recommendation.baselines import GaussianDiffusionRecommender, MultVAE
    torch.manual_seed(0)
    w = MultVAE(1000, hidden=[600]).encoder[0].weight
    bound = math.sqrt(6 / (1000 + 600))               # Xavier uniform
    assert 0.99 * bound < w.abs().max() <= bound
    g = GaussianDiffusionRecommender(1000, dims=[200, 600], time_dim=10).in_layers[0].weight
    assert g.std().item() == pytest.approx(math.sqrt(2 / (1010 + 600)), rel=0.02)


def test_recfusion_refuses_a_flip_probability_of_one():                                   # R12
    from bindiff.tasks.recommendation.baselines import RecFusionBin
    with pytest.raises(ValueError, match="flip probabilities"):
        RecFusionBin(4, schedule="linear", beta_start=0.5, beta_end=1.0)


def test_popularity_counts_users_not_values():                                           # P1-P3
    from bindiff.tasks.recommendation.baselines import popularity_scores
    m = sp.csr_matrix((np.array([5.0, 1.0, 1.0, 0.0, 1.0, 1.0, -1.0]), np.array([1, 1, 2, 0, 0, 2, 2]),
                       np.array([0, 3, 5, 7])), shape=(3, 3))
    # user 0: item 1 twice (5 and 1), item 2; user 1: item 0 as 0 and 1; user 2: item 2 as +1 and -1 (cancel)
    assert popularity_scores(m).tolist() == [1.0, 1.0, 1.0]


# --- evaluation, data, serve, export -------------------------------------------------------------------
def test_a_cutoff_equal_to_the_items_is_allowed(pairs_csv, tmp_path):                     # EV2
    from bindiff.tasks.recommendation.evaluation import check_metrics
    config = small(pairs_csv, tmp_path)
    check_metrics(config, n_items=10)
    with pytest.raises(RecipeError):
        check_metrics(config, n_items=9)


@pytest.fixture(scope="module")
def pop_run(pairs_csv, tmp_path_factory):
    from bindiff.tasks.recommendation.job import train_recommender
    root = tmp_path_factory.mktemp("pop")
    return train_recommender(small(pairs_csv, root, "model.kind=popularity", "eval.per_user=true",
                                   "split.n_test_users=40")).run_dir


def test_per_user_csv_names_the_test_users_with_values_by_hand(pop_run, pairs_csv):      # EV8, EV9
    import csv
    from bindiff.adapters.interactions import Split
    split = Split.load(pop_run / "split")
    rows = list(csv.DictReader(open(pop_run / "per_user_test.csv")))
    assert [r["user"] for r in rows] == [str(u) for u in split.test.user_ids]
    counts = np.asarray(split.train.sum(axis=0)).ravel()
    for i, row in enumerate(rows):
        target = set(split.test.target[i].indices)
        if not target:
            assert row["hit@5"] == ""  # nothing held out: an empty cell
            continue
        seen = set(split.test.exclude[i].indices)
        order = sorted((j for j in range(len(counts)) if j not in seen), key=lambda j: (-counts[j], j))
        assert float(row["hit@5"]) == float(bool(target & set(order[:5])))
    assert any(r["hit@5"] == "" for r in rows)


def test_recommend_for_a_runs_own_user_excludes_everything_the_data_hold(pop_run, pairs_csv):  # S6
    from bindiff.adapters.interactions import Split
    from bindiff.tasks.recommendation.serve import Recommender, recommend
    split = Split.load(pop_run / "split")
    truth = raw_items(pairs_csv)
    for user in split.test.user_ids[20:25]:
        assert set(Recommender.from_run(pop_run).history_of(user)) == truth[str(user)]
        listed = [item for item, _ in recommend(pop_run, str(user), k=30)]
        assert not set(listed) & truth[str(user)] and len(listed) == 30 - len(truth[str(user)])


def test_an_unknown_id_is_listed_once(pop_run):                                           # S9
    from bindiff.tasks.recommendation.serve import Recommender
    (rec,) = Recommender.from_run(pop_run).recommend([["zzz", "zzz", "1"]], k=3)
    assert rec.unknown == ["zzz"]


def test_export_items_json_names_the_scorers_columns(pop_run, tmp_path):                   # X3
    from bindiff.tasks.recommendation.export import export_run
    from bindiff.tasks.recommendation.serve import Recommender
    out = export_run(pop_run, tmp_path / "exp")
    items = json.loads((out / "items.json").read_text())
    assert items == [str(i) for i in sorted(int(i) for i in items)]  # ids 1..30 in numeric (column) order
    scorer = torch.export.load(str(out / "scorer.pt2")).module()
    rec = Recommender.from_run(pop_run)
    x = torch.zeros(1, len(items))
    x[0, items.index("2")] = 1.0
    assert np.allclose(scorer(x).numpy(), rec.score([["2"]]))


def test_strong_split_holds_out_the_fraction_asked(tmp_path):                              # D5
    from bindiff.tasks.recommendation.data import prepare_split
    lines = ["user,item"] + [f"u{u},{i}" for u in range(40) for i in range(u % 5, u % 5 + 10)]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    split, _ = prepare_split({"dataset": str(tmp_path / "p.csv"), "min_rating": None},
                             {"kind": "strong", "n_valid_users": 10, "n_test_users": 10, "holdout_fraction": 0.5},
                             seed=0)
    assert np.diff(split.valid.target.indptr).tolist() == [5] * 10  # half of each user's 10 items


def test_build_matrix_refuses_a_negative_k_core():                                         # MX11
    from bindiff.adapters.errors import DataError
    from bindiff.adapters.interactions import build_matrix
    from bindiff.adapters.interactions.readers import RawInteractions

    raw = RawInteractions(user=np.array(["a", "b"]), item=np.array(["x", "y"]), rating=None, source="s")
    with pytest.raises(DataError, match="k_core"):
        build_matrix(raw, k_core=-1)


# --- bindiff score (SC7, SC1) --------------------------------------------------------------------------
def test_score_reports_the_predictions_own_volume(tmp_path):
    import nibabel as nib
    from bindiff.scoring import case_of, score
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    pred, ref = np.zeros((6, 6, 6), np.uint8), np.zeros((6, 6, 6), np.uint8)
    pred[1:2, 1:3, 1:2] = 1   # 2 voxels of 2 mm³
    ref[1:2, 1:5, 1:2] = 1    # 4 voxels
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    nib.save(nib.Nifti1Image(pred, affine), str(tmp_path / "p" / "a_mask.nii.gz"))
    nib.save(nib.Nifti1Image(ref, affine), str(tmp_path / "r" / "a.nii.gz"))
    (row,) = score(tmp_path / "p", tmp_path / "r")["per_case"]
    assert row["volume_ml"] == pytest.approx(0.004) and row["reference_volume_ml"] == pytest.approx(0.008)
    assert row["volume_error_ml"] == pytest.approx(-0.004)
    assert case_of(Path("_mask.nii.gz")) == "_mask"
