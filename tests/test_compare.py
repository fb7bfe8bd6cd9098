"""`bindiff compare` on a tiny synthetic ratings file: same splits, a table, a test, a plot."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import dump_recipe, load_recipe, recipe_from_text

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    lines = ["user,item"]
    for u in range(160):
        group = u % 2
        for item in rng.choice(np.arange(group * 15, group * 15 + 15), size=9, replace=False):
            lines.append(f"u{u},i{item}")
    path = tmp_path_factory.mktemp("data") / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def args(csv_path: Path, root: Path, *extra: str) -> list[str]:
    """A comparison of a small ML-1M recipe written beside ``root``. Its settings are the recipe's,
    not the command line's: a typed override that a model's preset or a search sets again is refused."""
    small = ["name=ml1m", f"data.dataset={csv_path}", "data.min_rating=null", "split.n_valid_users=30",
             "split.n_test_users=30", "denoiser.params.hidden=[16]", "train.epochs=3", "train.lr=0.01",
             "train.batch_size=50", "eval.metrics=[recall@5, ndcg@10]", "eval.select=ndcg@10"]
    recipe = root.with_name(root.name + "-recipe.yaml")
    recipe.write_text(dump_recipe(load_recipe(RECIPE, small)))
    return ["compare", str(recipe), f"output.root={root}", "output.progress=false", *extra]


def test_compare_writes_table_csv_plot_and_paired_test(ratings_csv, tmp_path):
    result = runner.invoke(app, args(ratings_csv, tmp_path, "--models", "binomial,popularity", "--seeds", "2"))
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    table = json.loads((out / "compare.json").read_text())
    assert table["best_baseline"] == "popularity"
    rows = table["models"]
    assert set(rows) == {"binomial", "popularity"} and rows["binomial"]["seeds"] == [0, 1]
    # every cell is the mean of the per-seed run metrics written by the runs themselves
    for name, row in rows.items():
        values = [json.loads((Path(r) / "metrics.json").read_text())["test"]["ndcg@10"] for r in row["runs"]]
        assert row["mean"]["ndcg@10"] == pytest.approx(np.mean(values))
        assert row["std"]["ndcg@10"] == pytest.approx(np.std(values, ddof=1))
    # both models of a seed were evaluated on the same split
    for seed_index in range(2):
        a, b = (Path(rows[m]["runs"][seed_index]) / "split" / "test_target.npz" for m in ("binomial", "popularity"))
        assert a.read_bytes() == b.read_bytes()
    versus = rows["binomial"]["vs_best_baseline"]
    assert versus["baseline"] == "popularity" and 0.0 <= versus["wilcoxon_p"] <= 1.0
    with open(out / "results.csv") as handle:
        assert [r["model"] for r in csv.DictReader(handle)] == ["binomial", "popularity"]
    assert "± " in (out / "results.md").read_text()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_a_piped_comparison_names_its_folder_first_and_each_run_as_it_ends(ratings_csv, tmp_path):
    extra = [a for a in args(ratings_csv, tmp_path, "--models", "popularity", "--seeds", "2")
             if a != "output.progress=false"]
    result = runner.invoke(app, [*extra, "output.progress=null"])
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    lines = result.stderr.splitlines()  # not a terminal here
    assert lines[0] == f"comparison directory: {out}"
    runs = json.loads((out / "compare.json").read_text())["models"]["popularity"]["runs"]
    shown = [line for line in lines if line.startswith("compare: ")]
    for i, (line, run) in enumerate(zip(shown, runs)):
        valid = json.loads((Path(run) / "metrics.json").read_text())["valid"]["ndcg@10"]
        assert line.startswith(f"compare: run {i + 1}/2, popularity seed {i}: valid ndcg@10 {valid:.4f} in "), line
    assert len(shown) == 2


def test_compare_reports_the_list_metrics_that_train_reports(tmp_path):
    """popularity@K needs the training items' popularity: compare ranked the test users again
    without it and stopped with a traceback after the first model."""
    result = runner.invoke(app, ["compare", str(RECIPE), "data.dataset=synthetic:tiny", "data.min_rating=null",
                                 "split.n_valid_users=50", "split.n_test_users=50",
                                 "eval.metrics=[recall@20, popularity@10]", f"output.root={tmp_path}",
                                 "output.progress=false", "--models", "popularity", "--seeds", "1"])
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    row = json.loads((out / "compare.json").read_text())["models"]["popularity"]
    recorded = json.loads((Path(row["runs"][0]) / "metrics.json").read_text())["test"]
    assert row["mean"]["popularity@10"] == pytest.approx(recorded["popularity@10"])


def test_the_paired_user_test_pairs_each_user_with_the_best_baselines_value_on_the_same_seed():
    from scipy.stats import wilcoxon

    from bindiff.tasks.recommendation.compare import ModelRun, summarise

    rng = np.random.default_rng(4)
    ours = {seed: rng.random(30) for seed in (0, 1)}
    theirs = {seed: rng.random(30) * 0.9 for seed in (0, 1)}

    def run(model, kind, seed, values):  # each seed its own 30 users, as strong generalisation draws them
        return ModelRun(model, kind, seed, Path("/r"), {"ndcg@10": float(values.mean())}, {"ndcg@10": 0.1},
                        {"ndcg@10": values}, 1.0, 0.1, np.arange(30) + 100 * seed)

    runs = [run("binomial", "binomial", s, ours[s]) for s in (0, 1)]
    runs += [run("ease", "ease", s, theirs[s]) for s in (0, 1)]
    versus = summarise(runs, {"eval": {"select": "ndcg@10"}})["models"]["binomial"]["vs_best_baseline"]
    a, b = np.concatenate([ours[0], ours[1]]), np.concatenate([theirs[0], theirs[1]])
    assert versus["users"] == 60 and versus["mean_difference"] == pytest.approx(float((a - b).mean()))
    assert versus["wilcoxon_p"] == pytest.approx(float(wilcoxon(a, b).pvalue))  # was never compared with anything


def test_a_user_tested_under_several_seeds_counts_once_in_the_paired_test():
    """On a fixed split (DiffRec's) every seed tests the same users: pooled, each entered the test
    once per seed and a deterministic baseline's p-value fell from 1e-14 to 1e-40 with 3 seeds."""
    from scipy.stats import wilcoxon

    from bindiff.tasks.recommendation.compare import ModelRun, summarise

    rng = np.random.default_rng(5)
    users = np.array(["u7", "u3", "u9", "u1", "u4", "u8", "u2", "u6", "u5", "u0"] * 4)[:40]
    users = np.array([f"{u}{i}" for i, u in enumerate(users)])  # 40 distinct ids, not in sorted order
    ease = rng.random(40)  # deterministic: the same values on every seed
    ours = {seed: rng.random(40) for seed in range(3)}

    def run(model, kind, seed, values, order):
        return ModelRun(model, kind, seed, Path("/r"), {"ndcg@10": float(np.nanmean(values))}, {"ndcg@10": 0.1},
                        {"ndcg@10": values[order]}, 1.0, 0.1, users[order])

    orders = {seed: rng.permutation(40) for seed in range(3)}  # each seed may list its users in another order
    runs = [run("binomial", "binomial", s, ours[s], orders[s]) for s in range(3)]
    runs += [run("ease", "ease", s, ease, orders[s]) for s in range(3)]
    versus = summarise(runs, {"eval": {"select": "ndcg@10"}})["models"]["binomial"]["vs_best_baseline"]
    mean_ours = (ours[0] + ours[1] + ours[2]) / 3  # each user's mean over the seeds, by hand
    assert versus["users"] == 40
    assert versus["mean_difference"] == pytest.approx(float((mean_ours - ease).mean()))
    assert versus["wilcoxon_p"] == pytest.approx(float(wilcoxon(mean_ours, ease).pvalue))

    # users with nothing held out are NaN: left out, or 0 under eval.empty_users=zero as in the table's means
    ours[0][:5] = ours[1][:5] = ours[2][:5] = np.nan
    held = ease.copy()
    held[:5] = np.nan
    runs = [run("binomial", "binomial", s, ours[s], orders[s]) for s in range(3)]
    runs += [run("ease", "ease", s, held, orders[s]) for s in range(3)]
    dropped = summarise(runs, {"eval": {"select": "ndcg@10"}})["models"]["binomial"]["vs_best_baseline"]
    zero = summarise(runs, {"eval": {"select": "ndcg@10", "empty_users": "zero"}})["models"]["binomial"]
    mean_ours = (ours[0] + ours[1] + ours[2]) / 3
    assert dropped["users"] == 35
    assert dropped["mean_difference"] == pytest.approx(float((mean_ours[5:] - ease[5:]).mean()))
    assert zero["vs_best_baseline"]["users"] == 40  # the table's mean over 40 users, and so the difference
    assert zero["vs_best_baseline"]["mean_difference"] == pytest.approx(float((mean_ours[5:] - ease[5:]).sum() / 40))


def test_compare_refuses_a_recipe_of_another_task_in_one_line(tmp_path):
    for recipe in ("hippocampus_masks", "hippocampus_segmentation"):
        result = runner.invoke(app, ["compare", recipe, f"output.root={tmp_path}"])
        assert result.exit_code == 2
        assert result.output.strip().endswith(f"bindiff compare compares recommendation models; this recipe has "
                                              f"task '{recipe.split('_')[1]}'")  # was a KeyError traceback
    assert list(tmp_path.iterdir()) == []


def test_compare_refuses_unknown_models_before_training(ratings_csv, tmp_path):
    result = runner.invoke(app, args(ratings_csv, tmp_path, "--models", "binomial,svd"))
    assert result.exit_code == 2 and "unknown model(s) ['svd']" in result.output
    assert not (tmp_path / "compare").exists()


def test_the_best_baseline_is_chosen_on_validation_not_on_test():
    from bindiff.tasks.recommendation.compare import ModelRun, summarise

    per_user = {"ndcg@10": np.array([0.1, 0.2, 0.3])}

    def run(model, kind, valid, test):
        return ModelRun(model, kind, 0, Path("/r"), {"ndcg@10": test}, {"ndcg@10": valid}, per_user, 1.0, 0.1,
                        np.arange(3))

    runs = [run("binomial", "binomial", 0.5, 0.5),
            run("ease", "ease", 0.40, 0.30),         # better on validation, worse on test
            run("popularity", "popularity", 0.20, 0.35)]
    table = summarise(runs, {"eval": {"select": "ndcg@10"}})
    assert table["best_baseline"] == "ease"
    assert table["models"]["binomial"]["vs_best_baseline"]["baseline"] == "ease"
    # a baseline whose validation value is undefined (NaN) is never the best, wherever it is listed
    undefined = [run("binomial", "binomial", 0.5, 0.5), run("multvae", "multvae", float("nan"), 0.6), *runs[1:]]
    assert summarise(undefined, {"eval": {"select": "ndcg@10"}})["best_baseline"] == "ease"


def test_the_seeds_get_a_paired_t_test_of_their_means_beside_the_pooled_user_test():
    from scipy.stats import t as student

    from bindiff.tasks.recommendation.compare import ModelRun, summarise

    per_user = {"ndcg@10": np.array([0.1, 0.2, 0.3])}

    def run(model, kind, seed, test):
        return ModelRun(model, kind, seed, Path("/r"), {"ndcg@10": test}, {"ndcg@10": 0.1}, per_user, 1.0, 0.1,
                        np.arange(3))

    ours, theirs = [0.50, 0.47, 0.52], [0.45, 0.46, 0.44]
    runs = [run("binomial", "binomial", s, v) for s, v in enumerate(ours)]
    runs += [run("ease", "ease", s, v) for s, v in enumerate(theirs)]
    versus = summarise(runs, {"eval": {"select": "ndcg@10"}})["models"]["binomial"]["vs_best_baseline"]
    d = np.subtract(ours, theirs)  # 0.05, 0.01, 0.08: t = mean / (sd / sqrt(3)) on 2 degrees of freedom
    t_value = d.mean() / (d.std(ddof=1) / np.sqrt(3))
    assert versus["seeds"] == 3 and versus["seed_t_p"] == pytest.approx(2 * student.sf(t_value, 2))
    one_seed = summarise(runs[:1] + runs[3:4], {"eval": {"select": "ndcg@10"}})
    assert one_seed["models"]["binomial"]["vs_best_baseline"]["seed_t_p"] is None  # undefined with one seed


def test_compare_tune_gives_every_searched_model_the_same_trials_chosen_on_validation(ratings_csv, tmp_path):
    result = runner.invoke(app, args(
        ratings_csv, tmp_path, "compare.spaces.binomial.train.lr={float: [0.001, 0.05], log: true}",
        "compare.spaces.multdae.train.lr={float: [0.001, 0.05], log: true}",  # the recipe's other entries kept
        "--models", "binomial,popularity,multdae", "--seeds", "1", "--tune", "3"))
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    table = json.loads((out / "compare.json").read_text())
    assert table["tuning"]["popularity"] == {"trials": 0}
    compared = json.loads((out / "models.json").read_text())
    for name in ("binomial", "multdae"):
        tuning = table["tuning"][name]
        assert tuning["trials"] == 3
        trial_runs = sorted(Path(tuning["study"], "trials").glob("*/*/*/metrics.json"))
        assert len(trial_runs) == 3  # three trainings, each with its own validation value
        valid = [json.loads(p.read_text())["valid"]["ndcg@10"] for p in trial_runs]
        assert tuning["best_valid"] == pytest.approx(max(valid))  # chosen on validation users
        # the compared run trained with the best trial's learning rate
        (lr_override,) = [o for o in tuning["best_overrides"] if o.startswith("train.lr=")]
        assert compared[name][-len(tuning["best_overrides"]):] == tuning["best_overrides"]
        (run,) = table["models"][name]["runs"]
        import yaml
        config = yaml.safe_load((Path(run) / "config.yaml").read_text())
        assert config["train"]["lr"] == pytest.approx(float(lr_override.split("=", 1)[1]))
    assert "| tuning trials |" in (out / "results.md").read_text()


@pytest.mark.parametrize("models, extra, message", [
    ("popularity,ease", ["--tune", "2"], "--tune needs compare.spaces for at least one of ['popularity', 'ease']"),
    ("binomial,popularity", ["compare.spaces.svd.train.lr={float: [0.001, 0.01]}", "--tune", "2"],
     "compare.spaces names model(s) ['svd'] that compare.models does not list"),
    ("binomial,popularity", ["compare.spaces.binomial.train.speed={float: [0.001, 0.01]}", "--tune", "2"],
     "compare.spaces.binomial.train.speed"),
    # keys the model never reads: every trial would be the same model
    ("binomial,popularity", ["compare.spaces.popularity.train.lr={float: [0.001, 0.01]}", "--tune", "2"],
     "compare.spaces.popularity.train.lr: model 'popularity' does not read the train section"),
    ("binomial,multdae", ["compare.spaces.multdae.denoiser.params.hidden={choices: [[8], [16]]}", "--tune", "2"],
     "compare.spaces.multdae.denoiser.params.hidden: model 'multdae' does not read the denoiser section"),
])
def test_compare_tune_refuses_a_bad_space_before_training(ratings_csv, tmp_path, models, extra, message):
    result = runner.invoke(app, args(ratings_csv, tmp_path, "--models", models, *extra))
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "compare").exists()


@pytest.mark.parametrize("tuned", [["--tune", "1"], []])  # untuned, models.json is written before the data are read
def test_compare_on_a_missing_dataset_fails_in_one_line_and_leaves_no_comparison(tmp_path, tuned):
    missing = tmp_path / "absent.csv"
    result = runner.invoke(app, args(missing, tmp_path / "runs", "--models", "binomial,popularity", *tuned,
                                     "output.progress=null"))  # piped: the folder's line came first
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and str(missing) in result.output
    assert "comparison directory" not in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nor an empty runs/compare/<name>/ (nor the nested tune's)


@pytest.mark.parametrize("option, message", [
    (["--seeds", "0"], "error: --seeds must be at least 1, got 0"),
    (["--seeds", "-1"], "error: --seeds must be at least 1, got -1"),
    (["--models", ""], "error: --models: an empty model name in ''"),
    (["--models", "binomial,,ease"], "error: --models: an empty model name in 'binomial,,ease'"),
    (["--models", "binomial,ease,binomial"], "error: --models: 'binomial' listed twice"),
    (["--models", "binomial,ease", "compare.models.ease=[model.kind=ease, split.n_test_users=20]"],
     "error: compare.models.ease: 'split.n_test_users=20' would give this model its own split"),
    (["--models", "binomial,ease", "compare.models.ease=[model.kind=ease, eval.select=recall@5]"],
     "error: compare.models.ease: 'eval.select=recall@5' would give this model its own eval"),
])
def test_compare_refuses_no_seeds_or_an_empty_model_name_before_writing(ratings_csv, tmp_path, option, message):
    result = runner.invoke(app, args(ratings_csv, tmp_path, *option))
    assert result.exit_code == 2 and result.output.startswith(message), result.output
    assert not (tmp_path / "compare").exists()


def test_one_seed_has_no_standard_deviation_and_merging_needs_the_same_seeds(ratings_csv, tmp_path, monkeypatch, capsys):
    import importlib.util
    import subprocess
    import sys

    for root, seeds in (("a", "1"), ("b", "2")):
        result = runner.invoke(app, args(ratings_csv, tmp_path / root, "--models", "popularity", "--seeds", seeds))
        assert result.exit_code == 0, result.output
    one, two = (next((tmp_path / root / "compare" / "ml1m").iterdir()) for root in ("a", "b"))
    # recipe.yaml records what ran (it said the recipe's 5 seeds and every model), and the folders differ
    for folder, seeds in ((one, 1), (two, 2)):
        recorded = recipe_from_text((folder / "recipe.yaml").read_text())["compare"]
        assert recorded["seeds"] == seeds and list(recorded["models"]) == ["popularity"]
    assert one.name != two.name
    text = (one / "results.md").read_text()
    assert "± n/a" in text and "One seed, so no standard deviation" in text and "seeds p" not in text
    script = RECIPE.parent.parent / "benchmarks" / "merge_comparisons.py"
    done = subprocess.run([sys.executable, str(script), str(one), str(two)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the same model in both: one seed's runs must agree
    # the refusals below from the script's main() in this process (each start of the script costs 2 s)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository first
    spec = importlib.util.spec_from_file_location("merge_comparisons_script", script)
    merge_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(merge_script)

    def merged(*folders: Path) -> str | None:
        """The script's refusal (SystemExit's message), or None when it merged."""
        monkeypatch.setattr(sys, "argv", [str(script), *map(str, folders)])
        try:
            merge_script.main()
        except SystemExit as refused:
            assert isinstance(refused.code, str), refused.code
            return refused.code
        finally:
            capsys.readouterr()
        return None

    # a model on seeds 0-1 beside a model on seed 0 only: refused, naming both
    assert runner.invoke(app, args(ratings_csv, tmp_path / "c", "--models", "binomial", "--seeds", "1")).exit_code == 0
    (three,) = (tmp_path / "c" / "compare" / "ml1m").iterdir()
    assert "the models have different seeds (popularity: [0, 1]; binomial: [0])" in merged(two, three)
    # comparisons trained otherwise (here 2 epochs against 3) are not one table
    assert runner.invoke(app, args(ratings_csv, tmp_path / "d", "--models", "binomial", "--seeds", "2",
                                   "train.epochs=2")).exit_code == 0
    (four,) = (tmp_path / "d" / "compare" / "ml1m").iterdir()
    assert "section 'train' of its recipe differs" in merged(two, four)
    # a tuned comparison (its recipe.yaml says tune.trials: 1) merges with an untuned one
    assert runner.invoke(app, args(ratings_csv, tmp_path / "e", "--models", "binomial", "--seeds", "1",
                                   "--tune", "1")).exit_code == 0
    (five,) = (tmp_path / "e" / "compare" / "ml1m").iterdir()
    assert merged(one, five) is None


def test_keys_that_change_how_a_model_runs_may_differ_per_model_and_the_rest_of_their_section_not():
    from bindiff.config import RecipeError
    from bindiff.tasks.recommendation.compare import _model_overrides

    allowed = ["model.kind=ease", "eval.batch_size=7", "output.progress=false", "output.logger=tensorboard"]
    config = {"compare": {"models": {"binomial": [], "ease": allowed}}}
    assert _model_overrides(config, None) == {"binomial": [], "ease": allowed}
    for shared in ["eval.per_user=true", "eval.empty_users=zero", "output.root=elsewhere"]:
        config = {"compare": {"models": {"binomial": [], "ease": ["model.kind=ease", shared]}}}
        with pytest.raises(RecipeError, match=f"'{shared}' would give this model its own "
                                              r".*only eval.batch_size, output.progress, output.logger may differ"):
            _model_overrides(config, None)


def test_a_stopped_comparison_names_itself_not_the_resume_of_its_run(ratings_csv, tmp_path, monkeypatch, capsys):
    """Ctrl-C in a model's training said "`bindiff resume RUN` continues this run", which finishes that
    run alone: a comparison is not resumed."""
    from bindiff.tasks import base
    from bindiff.tasks.recommendation.compare import run_comparison

    real = base._fit_and_finish
    calls = {"n": 0}

    def stopped_in_the_second_run(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(base, "_fit_and_finish", stopped_in_the_second_run)
    compare_args = args(ratings_csv, tmp_path, "--models", "popularity", "--seeds", "2")
    with pytest.raises(KeyboardInterrupt):
        run_comparison(compare_args[1], compare_args[2:4], ["popularity"], 2)
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    said = capsys.readouterr().err
    assert "bindiff resume" not in said
    assert f"stopped: the comparison in {out} is unfinished and is not resumed" in said
    # a run on its own still names its resume: from Python, the function (`bindiff resume` is the command's)
    with pytest.raises(KeyboardInterrupt):
        from bindiff.tasks import registry

        calls["n"] = 1
        registry.train(load_recipe(compare_args[1], [f"output.root={tmp_path / 'alone'}", "model.kind=popularity"]))
    (alone,) = (tmp_path / "alone" / "ml1m").iterdir()
    assert f"stopped: `bindiff.resume({str(alone)!r})` continues this run" in capsys.readouterr().err


def test_a_split_that_draws_nothing_says_its_spread_is_training_alone(ratings_csv, tmp_path):
    """Under split.seed fixed (and a weak split's latest items) every seed has one split: popularity,
    which trains nothing random, has no spread, and the footnote said each seed drew its own split."""
    command = args(ratings_csv, tmp_path, "--models", "popularity", "--seeds", "2", "split.seed=3",
                   "eval.metrics=[recall@5, ndcg@10]")
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "compare" / "ml1m").iterdir()
    text = (folder / "results.md").read_text()
    # the command the table prints runs again in a shell: the override with a space is one word
    import shlex

    printed = shlex.split(next(line for line in text.splitlines() if line.startswith("`bindiff compare")).strip("`"))
    assert printed[:3] == ["bindiff", "compare", command[1]] and "eval.metrics=[recall@5, ndcg@10]" in printed
    assert "over 2 seeds, all on one split" in text and "each seed's split" not in text
    table = json.loads((folder / "compare.json").read_text())
    assert table["one_split"] is True and set(table["models"]["popularity"]["std"].values()) == {0.0}
    drawn = runner.invoke(app, args(ratings_csv, tmp_path / "drawn", "--models", "popularity", "--seeds", "2"))
    assert drawn.exit_code == 0, drawn.output
    (folder,) = (tmp_path / "drawn" / "compare" / "ml1m").iterdir()
    assert "each seed's split shared by all models" in (folder / "results.md").read_text()
    assert json.loads((folder / "compare.json").read_text())["one_split"] is False
