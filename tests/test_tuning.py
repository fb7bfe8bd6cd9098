"""`bindiff tune` on a tiny synthetic ratings file: a checked space, seeded trials, validation-only choice."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import bindiff.tasks.recommendation.job
from bindiff.cli import app
from bindiff.config import RecipeError, load_recipe
from bindiff.tasks.recommendation.tune import run_tuning

runner = CliRunner()
SELECT = "ndcg@10"
SPACE = {
    "train.lr": {"float": [0.0005, 0.05], "log": True},
    "denoiser.params.input_dropout": {"float": [0.0, 0.6]},
    "denoiser.params.hidden": {"choices": [[8], [16, 8]]},
}
TRIALS = 4


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """160 users in two taste groups over 30 items, and a recipe that trains on them in well under a second."""
    folder = tmp_path_factory.mktemp("tune-data")
    rng = np.random.default_rng(1)
    lines = ["user,item"]
    for u in range(160):
        group = u % 2
        for item in rng.choice(np.arange(group * 15, group * 15 + 15), size=9, replace=False):
            lines.append(f"u{u},i{item}")
        # a little noise from the other group, so trials differ in how well they rank
        for item in rng.choice(np.arange((1 - group) * 15, (1 - group) * 15 + 15), size=2, replace=False):
            lines.append(f"u{u},i{item}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "tiny",
        "seed": 3,
        "data": {"dataset": str(folder / "pairs.csv"), "min_rating": None, "download": False},
        "split": {"n_valid_users": 30, "n_test_users": 30},
        "denoiser": {"params": {"hidden": [16], "time_dim": 4}},
        "train": {"epochs": 3, "batch_size": 50, "patience": 3, "threads": 1},
        "eval": {"metrics": ["recall@5", SELECT], "select": SELECT},
        "tune": {"trials": TRIALS, "space": SPACE},
        "output": {"progress": False},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def tune(recipe: Path, root: Path, *overrides: str, trials: int | None = None) -> Path:
    return run_tuning(recipe, [f"output.root={root}", *overrides], trials=trials)


@pytest.fixture(scope="module")
def tuned(recipe, tmp_path_factory) -> Path:
    return tune(recipe, tmp_path_factory.mktemp("runs"))


def study(out: Path) -> dict:
    return json.loads((out / "study.json").read_text())


def dotted(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("space, message", [
    ({"train.lrate": {"float": [0.001, 0.01]}},
     "tune.space.train.lrate: unknown key 'train.lrate' (did you mean 'train.lr'?). Valid keys: train.optimizer, train.lr, "),
    ({"train.lr": {"float": [0.01, 0.001]}}, "tune.space.train.lr: low must be < high, got [0.01, 0.001]"),
    ({"train.lr": {"float": [0.0, 0.01], "log": True}}, "tune.space.train.lr: log: true needs low > 0, got low = 0.0"),
    ({"train.batch_size": {"int": [50, 50]}}, "tune.space.train.batch_size: low must be < high, got [50, 50]"),
    ({"train.lr": [0.001, 0.01]}, "tune.space.train.lr: must be a mapping, one of {float: [low, high]}, "),
    ({"train.lr": {"flaot": [0.001, 0.01]}}, "tune.space.train.lr: unknown field(s) ['flaot']; a spec is one of "),
    ({"train.lr": {"float": [0.001, 0.01], "choices": [0.1, 0.2]}},
     "tune.space.train.lr: give exactly one of float, int or choices, got ['float', 'choices']"),
    ({"train.batch_size": {"int": [10.5, 50]}}, "tune.space.train.batch_size: int bounds must be integers, got [10.5, 50]"),
    ({"train.lr": {"choices": [0.01]}}, "tune.space.train.lr: choices must be a list of at least two values, got [0.01]"),
    ({"diffusion.steps": {"float": [1, 5]}},
     "tune.space.diffusion.steps: key 'diffusion.steps' must be of type integer, got 1.0"),
    ({"train.lr": {"float": [-0.01, 0.01]}}, "tune.space.train.lr: key 'train.lr' must be > 0, got -0.01"),
    ({"denoiser.params.widht": {"int": [8, 16]}},
     "tune.space.denoiser.params.widht = 8: denoiser.params: denoiser 'mlp' has no parameter(s) ['widht']"),
    ({"split.n_valid_users": {"int": [20, 40]}}, "tune.space.split.n_valid_users: 'split.n_valid_users' cannot be searched"),
    ({"seed": {"int": [0, 5]}}, "tune.space.seed: 'seed' cannot be searched"),
])
def test_bad_space_is_refused_naming_the_key_before_anything_is_written(recipe, tmp_path, space, message):
    # the recipe's own space is valid: replace it by writing the bad one into a copy of the recipe
    config = yaml.safe_load(recipe.read_text())
    config["tune"]["space"] = space
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(RecipeError) as info:
        tune(bad, tmp_path / "runs")
    assert str(info.value).startswith(f"{bad}: {message}")
    assert not (tmp_path / "runs").exists()


def test_empty_space_is_refused(recipe, tmp_path):
    config = yaml.safe_load(recipe.read_text())
    del config["tune"]["space"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(config))
    with pytest.raises(RecipeError, match=r"bare.yaml: tune.space is empty; map each recipe key"):
        tune(bare, tmp_path / "runs")


def test_cli_reports_a_bad_space_in_one_line_with_exit_2(recipe, tmp_path):
    # the override form of a space entry names the same key as the recipe's dotted form, and replaces it
    result = runner.invoke(app, ["tune", str(recipe), f"output.root={tmp_path}",
                                 "tune.space.train.lr={float: [0.05, 0.0005], log: true}"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {recipe}: tune.space.train.lr: low must be < high, got [0.05, 0.0005]"
    assert not (tmp_path / "tune").exists()


def test_tuning_writes_its_directory(tuned):
    assert tuned.parent.parent.name == "tune" and tuned.parent.name == "tiny"
    for name in ("recipe.yaml", "trials.csv", "study.json", "best.yaml", "tuning.png"):
        assert (tuned / name).is_file(), name
    assert (tuned / "tuning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = study(tuned)
    assert [t["number"] for t in result["trials"]] == list(range(TRIALS))
    assert set(result["space"]) == set(SPACE) and result["select"] == SELECT and result["sampler_seed"] == 3


def test_a_piped_search_names_its_folder_first_and_each_trial_as_it_ends(recipe, tmp_path, capsys):
    out = tune(recipe, tmp_path, "output.progress=null", trials=3)
    lines = capsys.readouterr().err.splitlines()  # stderr is not a terminal here
    assert lines[0] == f"tuning directory: {out}"
    assert "trials: 3" in (out / "recipe.yaml").read_text()  # what ran, not the recipe's tune.trials
    trials = study(out)["trials"]
    shown = [line for line in lines if line.startswith("tune: ")]
    assert len(shown) == 3
    for i, (line, trial) in enumerate(zip(shown, trials)):
        values = [t["valid"] for t in trials[: i + 1]]
        best = values.index(max(values))  # the first of equal values, as the search keeps
        assert line.startswith(f"tune: trial {i} ({i + 1} of 3) valid {SELECT} {trial['valid']:.4f} in "), line
        assert line.endswith(f"({' '.join(trial['overrides'])}); best so far trial {best}"), line


def test_each_trial_value_is_the_validation_value_its_run_recorded(tuned):
    trials = study(tuned)["trials"]
    with open(tuned / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["trial"]) for r in rows] == [t["number"] for t in trials]
    for trial, row in zip(trials, rows):
        run_dir = Path(trial["run_dir"])
        assert run_dir.is_relative_to(tuned / "trials")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert trial["valid"] == metrics["valid"][SELECT] == float(row[f"valid_{SELECT}"])
        # the run records the command line's overrides and the trial's, as `bindiff train` would have been given them
        assert (run_dir / "overrides.txt").read_text().splitlines() == [f"output.root={tuned.parents[2]}",
                                                                        *trial["overrides"]]
        # the run trained exactly the values the sampler drew for it
        trained = yaml.safe_load((run_dir / "config.yaml").read_text())
        for key, value in trial["params"].items():
            assert dotted(trained, key) == value
            assert yaml.safe_load(row[key]) == value
    assert len({t["valid"] for t in trials}) > 1, "the trials should differ, or the search tests nothing"


def test_best_yaml_is_the_best_trials_recipe(tuned):
    result = study(tuned)
    best = result["best"]
    assert best["valid"] == max(t["valid"] for t in result["trials"])
    config = load_recipe(tuned / "best.yaml")
    for key, value in best["params"].items():
        assert dotted(config, key) == value
    # apart from where it lives, it is the configuration the best trial's run trained
    run_config = yaml.safe_load((Path(best["run_dir"]) / "config.yaml").read_text())
    config["output"]["root"] = run_config["output"]["root"]
    assert config == run_config
    for override in best["overrides"]:
        assert f"#   {override}\n" in (tuned / "best.yaml").read_text()


def test_same_seed_gives_the_same_trials_and_another_seed_others(recipe, tuned, tmp_path):
    again = study(tune(recipe, tmp_path / "again"))
    first = study(tuned)
    assert [(t["params"], t["valid"]) for t in again["trials"]] == [(t["params"], t["valid"]) for t in first["trials"]]
    other = study(tune(recipe, tmp_path / "other", "tune.seed=11", trials=2))
    assert [t["params"] for t in other["trials"]] != [t["params"] for t in first["trials"][:2]]


def test_choice_ignores_test_metrics(recipe, tuned, tmp_path, monkeypatch):
    """Reverse every run's test metrics (test = 1 - valid): a search that looked at them would now
    pick the trial worst on validation. The choice, and every trial value, must not move."""
    real_evaluate_run = bindiff.tasks.recommendation.job.evaluate_run

    def reversed_test(*args, **kwargs):
        metrics = real_evaluate_run(*args, **kwargs)
        metrics["test"] = {name: 1.0 - value for name, value in metrics["valid"].items()}
        return metrics

    monkeypatch.setattr(bindiff.tasks.recommendation.job, "evaluate_run", reversed_test)
    patched = study(tune(recipe, tmp_path / "patched"))
    honest = study(tuned)
    assert [t["valid"] for t in patched["trials"]] == [t["valid"] for t in honest["trials"]]
    assert patched["best"]["number"] == honest["best"]["number"]
    tests = [json.loads((Path(t["run_dir"]) / "metrics.json").read_text())["test"][SELECT] for t in patched["trials"]]
    assert int(np.argmax(tests)) != patched["best"]["number"]  # the test metric would have chosen another trial
    # the best trial's test metrics are reported from its run, for information only
    assert patched["best_trial_test_for_information_only"][SELECT] == tests[patched["best"]["number"]]


@pytest.mark.parametrize("root_exists", [False, True])
def test_a_missing_dataset_stops_the_search_in_one_line_and_leaves_no_folder(recipe, tmp_path, root_exists):
    missing = tmp_path / "absent.csv"
    if root_exists:  # a root already holding other work keeps it, and only that
        (tmp_path / "runs" / "earlier").mkdir(parents=True)
    result = runner.invoke(app, ["tune", str(recipe), f"output.root={tmp_path / 'runs'}", f"data.dataset={missing}",
                                 "output.progress=null"])  # piped: the folder's line came first, naming no folder
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and str(missing) in result.output
    assert "tuning directory" not in result.output
    assert len(result.output.strip().splitlines()) <= 12  # the message and where to put the data, no traceback
    # no empty runs/tune/<name>/ either: the folders made for the search go with it
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == (["runs", "runs/earlier"] if root_exists else [])


def test_a_search_leaves_the_callers_optuna_verbosity_as_it_was(recipe, tmp_path):
    """optuna's own INFO lines are silenced during the search only: a caller's setting came back WARNING."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        tune(recipe, tmp_path, trials=1)
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)


@pytest.mark.parametrize("where, said", [
    # stopped in a trial: the line named `bindiff resume` of the trial's run, which finishes that run alone
    ("bindiff.tasks.base._fit_and_finish", "stopped: the search in "),
    # stopped while reading the data, before anything was written: the line named a folder then removed
    ("bindiff.tasks.recommendation.job.RecommendationTask.prepare", "stopped: the search had written nothing; "),
])
def test_a_stopped_search_names_itself_and_what_is_left(recipe, tmp_path, monkeypatch, capsys, where, said):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, stopped)
    with pytest.raises(KeyboardInterrupt):
        tune(recipe, tmp_path, trials=2)
    err = capsys.readouterr().err
    assert said in err and "bindiff resume" not in err
    assert ("is not resumed" in err) == (said == "stopped: the search in ")
