"""End to end through the CLI on a small synthetic ratings file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.training.checkpoint import CheckpointError, load_checkpoint

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    """300 users in two taste groups over 40 items, ratings 1-5."""
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"]
    for u in range(300):
        group = u % 2
        liked = rng.choice(np.arange(group * 20, group * 20 + 20), size=12, replace=False)
        other = rng.choice(np.arange((1 - group) * 20, (1 - group) * 20 + 20), size=2, replace=False)
        for item in liked:
            lines.append(f"u{u},i{item},{rng.integers(4, 6)}")
        for item in other:
            lines.append(f"u{u},i{item},{rng.integers(1, 3)}")
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def small_args(csv: Path, root: Path, *extra: str) -> list[str]:
    # a baseline fitted in closed form reads neither denoiser.* nor train.*: giving them is refused
    binomial = not any(e in ("model.kind=ease", "model.kind=popularity") for e in extra)
    own = ["denoiser.params.hidden=[32]", "train.epochs=6", "train.lr=0.01", "train.batch_size=64"] if binomial else []
    return ["train", str(RECIPE), f"data.dataset={csv}", "data.min_rating=4", "data.rating_col=rating",
            "split.n_valid_users=40", "split.n_test_users=40", *own,
            "eval.metrics=[recall@5, recall@10, ndcg@20]", "eval.select=ndcg@20", f"output.root={root}", "output.progress=false", *extra]


@pytest.fixture(scope="module")
def trained(ratings_csv, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, small_args(ratings_csv, root))
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "ml1m").iterdir()
    return run_dir, root, result


def test_train_writes_a_complete_run_directory(trained):
    run_dir, _, result = trained
    assert f"run directory: {run_dir}" in result.output
    for name in ("config.yaml", "overrides.txt", "history.json", "metrics.json", "training_curve.png",
                 "checkpoints/best.pt", "checkpoints/last.pt", "split/split.json", "split/item_ids.npy"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["test"]) == {"recall@5", "recall@10", "ndcg@20"}
    assert "min(10, |held-out|)" in metrics["definitions"]["recall@10"]
    assert all(0.0 <= v <= 1.0 for v in metrics["test"].values())
    assert len(json.loads((run_dir / "history.json").read_text())) == metrics["training"]["epochs_run"]
    # items rated below 4 were dropped before the split: only the 40 items survive
    assert len(np.load(run_dir / "split" / "item_ids.npy")) == 40


def test_model_beats_popularity_on_structured_data(trained):
    from bindiff.adapters.interactions import Split
    from bindiff.metrics import evaluate_ranking
    from bindiff.tasks.recommendation.baselines import popularity_scores

    run_dir, _, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    split = Split.load(run_dir / "split")
    popularity = torch.from_numpy(popularity_scores(split.train)).float()
    baseline = evaluate_ranking(lambda x: popularity.expand(x.shape[0], -1), split.test.input, split.test.exclude,
                                split.test.target, ["recall@10"]).mean["recall@10"]
    # two taste groups: ranking the user's own group first beats any single global order
    assert metrics["test"]["recall@10"] > baseline + 0.2


def test_checkpoint_is_weights_only_with_yaml_config(trained):
    run_dir, _, _ = trained
    payload = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert isinstance(payload["config_yaml"], str) and "name: ml1m" in payload["config_yaml"]
    evil = run_dir.parent / "evil.pt"
    torch.save({"format_version": 1, "thing": Path("x")}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)


def test_evaluate_reproduces_the_stored_metrics(trained):
    run_dir, _, _ = trained
    result = runner.invoke(app, ["evaluate", str(run_dir)])
    assert result.exit_code == 0, result.output
    stored = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads(result.output)
    assert again["test"] == stored["test"] and again["valid"] == stored["valid"]


def test_same_recipe_and_seed_give_the_same_metrics(trained, ratings_csv, tmp_path):
    run_dir, _, _ = trained
    result = runner.invoke(app, small_args(ratings_csv, tmp_path))
    assert result.exit_code == 0, result.output
    (second,) = (tmp_path / "ml1m").iterdir()
    first = json.loads((run_dir / "metrics.json").read_text())
    again = json.loads((second / "metrics.json").read_text())
    assert first["test"] == again["test"] and first["valid"] == again["valid"]
    other = runner.invoke(app, small_args(ratings_csv, tmp_path / "other", "seed=5"))
    assert other.exit_code == 0
    (third,) = (tmp_path / "other" / "ml1m").iterdir()
    assert json.loads((third / "metrics.json").read_text())["test"] != first["test"]


def test_recommend_uses_raw_ids_and_excludes_seen_items(trained, ratings_csv):
    run_dir, _, _ = trained
    result = runner.invoke(app, ["recommend", str(run_dir), "--user", "u7", "--k", "5"])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.output.strip().splitlines()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    seen = {line.split(",")[1] for line in ratings_csv.read_text().splitlines()[1:]
            if line.startswith("u7,") and int(line.split(",")[2]) >= 4}
    recommended = [r[1] for r in rows]
    assert all(item.startswith("i") for item in recommended) and not seen & set(recommended)
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    missing = runner.invoke(app, ["recommend", str(run_dir), "--user", "nobody"])
    assert missing.exit_code == 2 and "user 'nobody' is not in this run's data" in missing.output


def test_unknown_key_exits_2_with_valid_keys_and_writes_nothing(ratings_csv, tmp_path):
    result = runner.invoke(app, small_args(ratings_csv, tmp_path, "train.lrate=0.1"))
    assert result.exit_code == 2
    assert "unknown key 'train.lrate' (did you mean 'train.lr'?). Valid keys: train.optimizer, train.lr" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "ml1m").exists()


def test_bad_values_and_missing_data_exit_2(ratings_csv, tmp_path):
    for override, message in [("diffusion.steps=0", "diffusion.steps' must lie in 1..100000"),
                              ("train.lr=-1", "train.lr' must be > 0"),
                              ("diffusion.schedule_params.beta_end=1.5", "outside (0, 1]"),
                              ("denoiser.params.width=3", "has no parameter(s) ['width']"),
                              ("eval.metrics=[f1@5]", "eval.metrics"),
                              ("eval.metrics=[ndcg@100]", "error: eval.metrics: cut-off 100 exceeds the 40 items"),
                              ("eval.select=recall@500", "error: eval.select: cut-off 500 exceeds the 40 items")]:
        result = runner.invoke(app, small_args(ratings_csv, tmp_path, override))
        assert result.exit_code == 2, (override, result.output)
        assert message in result.output and "Traceback" not in result.output
    result = runner.invoke(app, small_args(tmp_path / "nope.csv", tmp_path))
    assert result.exit_code == 2 and "nope.csv" in result.output
    assert not (tmp_path / "ml1m").exists()


def test_an_existing_run_is_never_overwritten(tmp_path, monkeypatch):
    from bindiff.config import load_recipe
    from bindiff.runs import create_run_dir

    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000")
    config = load_recipe(RECIPE, [f"output.root={tmp_path}"])
    first = create_run_dir(config)
    (first / "marker").write_text("keep")
    second = create_run_dir(config)  # same recipe, same second: a folder of its own
    assert second != first and not (second / "marker").exists()
    assert (first / "marker").read_text() == "keep"


def test_show_config_prints_the_resolved_recipe():
    result = runner.invoke(app, ["show-config", str(RECIPE), "train.lr=0.5"])
    assert result.exit_code == 0 and "lr: 0.5" in result.output and "patience: 10" in result.output


def test_show_config_of_another_tasks_defaults_takes_the_task_as_an_override():
    import yaml

    from bindiff.config.schema import TASKS

    result = runner.invoke(app, ["show-config", "task=masks", "seed=4"])  # was read as a recipe file "task=masks"
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["task"] == "masks" and shown["seed"] == 4 and set(TASKS["masks"]) <= set(shown)


@pytest.mark.parametrize("task", ["recommend", "masks", "segmentation"])
def test_every_tasks_defaults_are_a_valid_recipe(task):
    import yaml

    result = runner.invoke(app, ["show-config", f"task={task}"])  # segmentation refused its own MLP default
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    # segmentation reads the image through the U-Net; the other tasks keep the documented MLP default
    assert shown["denoiser"]["name"] == ("unet" if task == "segmentation" else "mlp")


def test_show_config_reads_a_recipe_file_whose_path_holds_an_equals_sign(tmp_path):
    import shutil

    import yaml

    folder = tmp_path / "lr=0.5"  # a sweep's folder
    folder.mkdir()
    shutil.copy(RECIPE, folder / "recipe.yaml")
    result = runner.invoke(app, ["show-config", str(folder / "recipe.yaml")])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["name"] == "ml1m"  # the file was read: was an unknown key ".../lr"


def test_evaluate_refuses_a_run_of_another_task(trained, tmp_path):
    import shutil

    import torch

    run_dir, _, _ = trained
    other = tmp_path / "other_run"
    shutil.copytree(run_dir, other)
    payload = torch.load(other / "checkpoints" / "best.pt", weights_only=True)
    # a masks run's config: its own sections, none of the recommendation ones
    payload["config_yaml"] = "task: masks\nname: hippo\n"
    torch.save(payload, other / "checkpoints" / "best.pt")
    result = runner.invoke(app, ["evaluate", str(other)])
    assert result.exit_code == 2 and "a masks run, not a recommend run; masks runs are used with `bindiff masks" in result.output


def test_evaluate_scores_the_trained_model_another_way(trained):
    from bindiff.metrics import evaluate_ranking
    from bindiff.tasks.recommendation.job import load_run

    run_dir, _, _ = trained
    result = runner.invoke(app, ["evaluate", str(run_dir), "inference.mode=reverse", "inference.t=3"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["inference"]["mode"] == "reverse" and shown["inference"]["t"] == 3
    _, split, model, _ = load_run(run_dir)
    part = split.test
    expected = evaluate_ranking(lambda x: model.reverse(x, start=3), part.input, part.exclude, part.target,
                                ["ndcg@20"])
    assert shown["test"]["ndcg@20"] == pytest.approx(expected.mean["ndcg@20"], abs=1e-12)
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert stored["inference"]["mode"] == "one_step"  # nothing was written


def test_scoring_and_recommending_show_their_batches_when_asked(trained, capsys):
    """output.progress null with stderr not a terminal (here): one line per ranked batch of each
    part, no bar, and the metrics alone on stdout; recommending many histories, one line per batch."""
    from bindiff.tasks.recommendation.serve import Recommender

    run_dir, _, _ = trained
    result = runner.invoke(app, ["evaluate", str(run_dir), "output.progress=null", "eval.batch_size=16"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test"]  # the lines went to stderr
    lines = result.stderr.splitlines()
    # 40 validation and 40 test users, those with held-out items ranked 16 at a time
    assert [line.split(" (")[0] for line in lines] == [f"{part} ranking: batch {b}/3" for part in ("valid", "test")
                                                       for b in (1, 2, 3)], lines
    assert "\r" not in result.stderr
    recommender = Recommender.from_run(run_dir)
    recommender.batch_size = 2
    results = recommender.recommend([["i1"], ["i2", "i3"], ["i4"]], k=3, progress=None)
    assert len(results) == 3
    assert capsys.readouterr().err.splitlines() == ["recommend: batch 1/2 (2 of 3 histories)",
                                                    "recommend: batch 2/2 (3 of 3 histories)"]


def test_a_batch_too_large_for_the_memory_is_refused_naming_its_key(trained, ratings_csv, tmp_path, monkeypatch):
    """A batch as large as the users is the dense users × items matrix: on a machine too small for
    it (here a stand-in of 64 KiB), one line naming the key, before any run folder is made."""
    import bindiff.tasks.recommendation.evaluation as evaluation

    monkeypatch.setattr(evaluation, "physical_memory_bytes", lambda: 64 * 2**10)
    root = tmp_path / "runs"
    result = runner.invoke(app, small_args(ratings_csv, root, "train.batch_size=1000"))
    assert result.exit_code == 2, result.output
    # 300 users, 40 of them validation and 40 test: 220 training rows × 40 items × 8 float32 copies
    assert result.output.strip().splitlines()[-1] == (
        "error: train.batch_size=1000: a batch of 220 users × 40 items needs about 0 GiB dense (8 float32 copies), "
        "and this machine has 0 GiB; lower it")
    assert not (root / "ml1m").exists() or not any((root / "ml1m").iterdir())
    run_dir, _, _ = trained
    monkeypatch.setattr(evaluation, "physical_memory_bytes", lambda: 16 * 2**10)  # under 40 × 40 × 4 copies × 4 bytes
    result = runner.invoke(app, ["evaluate", str(run_dir), "eval.batch_size=100"])
    assert result.exit_code == 2 and "error: eval.batch_size=100: a batch of 40 users × 40 items" in result.output
    monkeypatch.setattr(evaluation, "physical_memory_bytes", lambda: 32 * 2**10)  # over them
    assert runner.invoke(app, ["evaluate", str(run_dir), "eval.batch_size=100"]).exit_code == 0


def test_evaluate_refuses_overrides_that_change_the_trained_model(trained):
    run_dir, _, _ = trained
    result = runner.invoke(app, ["evaluate", str(run_dir), "train.lr=0.1"])
    assert result.exit_code == 2
    assert "override 'train.lr=0.1': a trained run can only be scored differently" in result.output


def test_version_flag_prints_the_installed_version():
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])  # against the installed metadata (pyproject.toml)
    assert result.exit_code == 0 and result.output.strip() == f"bindiff {version('bindiff')}"


# -- using a trained model on new users ---------------------------------------------------------------------
def _hand_scores(run_dir, histories):
    """p̂(x_0 | x_1 = history) straight from the checkpoint's denoiser, the recipe's one-step inference."""
    from bindiff.tasks.recommendation.job import load_run

    config, split, model, _ = load_run(run_dir)
    column = {item: j for j, item in enumerate(split.item_ids.tolist())}
    x = torch.zeros(len(histories), len(column))
    for row, history in enumerate(histories):
        for item in history:
            if item in column:
                x[row, column[item]] = 1.0
    assert config["inference"]["mode"] == "one_step" and config["inference"]["t"] == 1
    with torch.no_grad():
        return model.predict_x0(x, 1).numpy(), split.item_ids, x.numpy()


def test_recommend_for_a_new_history_of_raw_items(trained):
    run_dir, _, _ = trained
    history = ["i1", "i3", "i5", "i8"]
    result = runner.invoke(app, ["recommend", str(run_dir), "--items", ",".join(history + ["not-an-item"]),
                                 "--k", "6"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.strip().splitlines() if not line.startswith("warning")]
    got = [line.split("\t")[1] for line in lines]
    scores, item_ids, x = _hand_scores(run_dir, [history])
    masked = np.where(x[0] > 0, -np.inf, scores[0])
    expected = [str(item_ids[j]) for j in np.argsort(-masked, kind="stable")[:6]]
    assert got == expected and not set(got) & set(history)
    assert "1 item id(s) of 1 user(s) are not in the run's items" in result.output and "not-an-item" in result.output


def test_random_bit_scores_of_a_history_depend_on_it_alone(trained):
    import copy

    from bindiff.tasks.recommendation.serve import Recommender

    run_dir, _, _ = trained
    loaded = Recommender.from_run(run_dir)
    config = copy.deepcopy(loaded.config)
    config["inference"].update(add_noise=True, t=2, ensemble=2)  # noisy reads of the history, averaged
    recommender = Recommender(config, loaded.model, loaded.item_ids, loaded.split)
    anna, bob = ["i1", "i3", "i5", "i8"], ["i21", "i22", "i30"]
    alone = recommender.score([anna])[0]
    assert np.array_equal(recommender.score([anna])[0], alone)  # an earlier call does not move the draws
    # nor does a history before or after it (up to the rounding of a batch of 2 against 1 in the matmul)
    np.testing.assert_allclose(recommender.score([bob, anna])[1], alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(recommender.score([anna, bob])[0], alone, rtol=0, atol=1e-6)
    sampled = copy.deepcopy(config)  # a sampled reverse run draws inside the chain: one history at a time
    sampled["inference"].update(add_noise=False, mode="reverse", sample="sample", ensemble=2)
    chains = Recommender(sampled, loaded.model, loaded.item_ids, loaded.split)
    np.testing.assert_allclose(chains.score([bob, anna])[1], chains.score([anna])[0], rtol=0, atol=1e-6)
    plain = Recommender(loaded.config, loaded.model, loaded.item_ids, loaded.split).score([anna])[0]
    assert not np.allclose(alone, plain)  # the bits were random: the test would pass vacuously otherwise


def test_a_run_trained_on_cuda_is_used_on_a_cpu_with_device_cpu(trained, tmp_path, monkeypatch):
    import shutil

    run_dir, _, _ = trained
    gpu_run = tmp_path / "gpu_run"
    shutil.copytree(run_dir, gpu_run)
    # as if trained on a GPU machine: train.device cuda in config.yaml and in every checkpoint
    config_file = gpu_run / "config.yaml"
    config_file.write_text(config_file.read_text().replace("device: cpu", "device: cuda"))
    for path in (gpu_run / "checkpoints").glob("*.pt"):
        payload = torch.load(path, weights_only=True)
        payload["config_yaml"] = payload["config_yaml"].replace("device: cpu", "device: cuda")
        torch.save(payload, path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine: no GPU
    items = ["recommend", "--items", "i1,i3,i5", "--k", "5"]
    refused = runner.invoke(app, [items[0], str(gpu_run), *items[1:]])
    assert refused.exit_code == 2
    assert refused.output.strip() == (f"error: {gpu_run}: the run's train.device is 'cuda', which this machine lacks; "
                                      "pass --device cpu (device='cpu' from Python) to use it here")
    here = runner.invoke(app, [items[0], str(gpu_run), *items[1:], "--device", "cpu"])
    original = runner.invoke(app, [items[0], str(run_dir), *items[1:]])
    assert here.exit_code == 0 and here.output == original.output
    bad = runner.invoke(app, [items[0], str(gpu_run), *items[1:], "--device", "gpu0"])
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --device: 'gpu0' is not a device; use auto, cpu, cuda or cuda:N"


def test_recommend_many_new_users_from_a_file(trained, tmp_path):
    from bindiff.tasks.recommendation.serve import Recommender

    run_dir, _, _ = trained
    histories = {"a": ["i0", "i2", "i4"], "b": ["i21", "i22"], "c": ["i30", "i31", "i39", "i1"]}
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, items in histories.items() for i in items))
    out = tmp_path / "out" / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(out),
                                 "--k", "3"])
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["user", "rank", "item", "score"] and len(rows) == 1 + 3 * 3
    scores, item_ids, x = _hand_scores(run_dir, list(histories.values()))
    for u, user in enumerate(histories):
        mine = [r for r in rows[1:] if r[0] == user]
        masked = np.where(x[u] > 0, -np.inf, scores[u])
        assert [r[2] for r in mine] == [str(item_ids[j]) for j in np.argsort(-masked, kind="stable")[:3]]
        assert [int(r[1]) for r in mine] == [1, 2, 3]
    # the library gives the same scores as the hand computation, whatever the batch size
    recommender = Recommender.from_run(run_dir)
    recommender.batch_size = 2
    np.testing.assert_allclose(recommender.score(list(histories.values())), scores, rtol=1e-6)


def test_recommend_input_leaves_out_rows_rated_below_the_runs_min_rating(trained, tmp_path):
    """The run kept ratings >= 4: a row rated 2 is not an interaction (its item stays recommendable),
    and a user whose every row is below 4 gets the empty history's list, named in a warning."""
    run_dir, _, _ = trained
    users_csv = tmp_path / "rated.csv"
    users_csv.write_text("user,item,rating\na,i0,5\na,i2,2\na,i4,4\nb,i21,1\nc,i30,5\nc,i31,3.5\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(out),
                                 "--k", "5"])
    assert result.exit_code == 0, result.output
    assert f"3 row(s) of {users_csv} rate below the run's data.min_rating=4 and are not interactions" in result.output
    assert "warning: 1 user(s) have no item rated at least data.min_rating the run knows" in result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    kept = {"a": ["i0", "i4"], "b": [], "c": ["i30"]}  # by hand: the rows rated 4 or more
    scores, item_ids, x = _hand_scores(run_dir, list(kept.values()))
    for u, user in enumerate(kept):
        masked = np.where(x[u] > 0, -np.inf, scores[u])
        assert [r[2] for r in rows if r[0] == user] == [str(item_ids[j]) for j in np.argsort(-masked, kind="stable")[:5]]


def test_input_histories_read_the_runs_own_column_names(tmp_path):
    """A file in the training data's layout reads as it stands: the run's column names first, then
    user/item/rating; ratings are read only where the run kept some of them."""
    from bindiff.adapters.errors import DataError
    from bindiff.tasks.recommendation.serve import read_histories

    path = tmp_path / "own.csv"
    path.write_text("uid,user,movie,stars\nx,n1,m1,4.5\nx,n1,m2,1\ny,n2,m1,3.5\n")
    data = {"user_col": "uid", "item_col": "movie", "rating_col": "stars", "min_rating": 3.5}
    assert read_histories(path, data) == (["x", "y"], [["m1"], ["m1"]], 1)
    # no threshold: every row is an interaction, and the rating column is not even parsed
    path.write_text("user,item,rating\nx,m1,great\nx,m2,\n")
    assert read_histories(path, {"min_rating": None}) == (["x"], [["m1", "m2"]], 0)
    # a threshold but no rating column: every row, as documented (a file of the kept rows)
    path.write_text("user,item\nx,m1\n")
    assert read_histories(path, {"min_rating": 4}) == (["x"], [["m1"]], 0)
    path.write_text("user,item,rating\nx,m1,great\n")
    with pytest.raises(DataError, match="rating"):
        read_histories(path, {"min_rating": 4})
    # the run's separator where the name's does not split the header (a .csv of semicolons, as trained on)
    path.write_text("uid;movie;stars\nx;m1;5\nx;m2;2\n")
    data = {**data, "sep": ";", "min_rating": 4}
    assert read_histories(path, data) == (["x"], [["m1"]], 1)
    path.write_text("uid,movie,stars\nx,m1,5\n")  # a comma file still reads by its name
    assert read_histories(path, data) == (["x"], [["m1"]], 0)
    path.write_text("a;b\nx;m1\n")  # neither finds the columns: the name's separator's message
    with pytest.raises(DataError, match="column 'user' \\(--input's user column, 'uid' or 'user'\\) not found; "
                                        "columns found with separator ','"):
        read_histories(path, data)


def test_a_history_of_nearly_every_item_gets_the_rest_with_a_warning(trained, tmp_path):
    from bindiff.tasks.recommendation.serve import Recommender

    run_dir, _, _ = trained
    recommender = Recommender.from_run(run_dir)
    items = [str(i) for i in recommender.item_ids]
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user,item\n" + "".join(f"all,{i}\n" for i in items[2:]) + "a,i1\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(out),
                                 "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "warning: 1 user(s) got fewer than 3 items, every item they have not seen (all)" in result.output
    assert f"2 users, 2 to 3 items each: {out}" in result.output
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    assert sorted(r[2] for r in rows if r[0] == "all") == sorted(items[:2])  # exactly the two it has not seen
    same = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(users_csv)])
    assert same.exit_code == 2 and "is the --input file; the histories would be overwritten" in same.output
    for history in ("i1", ["i1", "i3"]):  # a string is not a list of histories, nor a history
        with pytest.raises(TypeError, match="not a string|got the string"):
            recommender.recommend(history)


@pytest.mark.parametrize("args, message", [
    (["--items", "i1", "--user", "u7"], "give exactly one of --user, --items or --input (got --user, --items)"),
    (["--input", "{csv}"], "--input and --output go together"),
])
def test_recommend_refuses_conflicting_options(trained, tmp_path, args, message):
    run_dir, _, _ = trained
    args = [a.replace("{csv}", str(tmp_path / "x.csv")) for a in args]
    result = runner.invoke(app, ["recommend", str(run_dir), *args])
    assert result.exit_code == 2 and message in result.output


def test_recommend_input_without_a_header_or_to_an_unwritable_folder_exits_2(trained, tmp_path):
    run_dir, _, _ = trained
    bad = tmp_path / "bad.csv"
    bad.write_text("a,i1\nb,i2\n")
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(bad), "--output", str(tmp_path / "o.csv")])
    # named as --input's column: `user_col` is a recipe key recommend has no option for
    assert result.exit_code == 2 and f"{bad}: column 'user' (--input's user column) not found; columns found with " \
        "separator ',': ['a', 'i1']" in result.output
    # a .tsv is tab-separated, as a training data file named so is: the same recommendations as --items
    tsv = tmp_path / "histories.tsv"
    tsv.write_text("user\titem\na\ti1\na\ti3\n")
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(tsv), "--output", str(tmp_path / "t.csv")])
    assert result.exit_code == 0, result.output
    alone = runner.invoke(app, ["recommend", str(run_dir), "--items", "i1,i3", "--k", "20"])
    assert alone.exit_code == 0, alone.output
    listed = [line.split(",")[2] for line in (tmp_path / "t.csv").read_text().splitlines()[1:]]
    shown = [line.split("\t")[1] for line in alone.stdout.splitlines() if line.count("\t") == 2]
    assert len(listed) == 20 and listed == shown
    # a .tsv output is tab-separated, as --input reads it back
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(tsv), "--output", str(tmp_path / "t.tsv")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.tsv").read_text().splitlines()[0] == "user\trank\titem\tscore"
    # a header separated otherwise than the name says: the advice fits the file
    for name, text, advice in (("tabs.csv", "user\titem\na\ti1\n", "looks tab-separated: name the file .tsv"),
                               ("commas.tsv", "user,item\na,i1\n", "looks comma-separated: name the file .csv"),
                               ("semi.csv", "user;item\na;i1\n", "looks semicolon-separated: --input reads "
                                                                   "comma-separated .csv and tab-separated .tsv files")):
        (tmp_path / name).write_text(text)
        result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(tmp_path / name), "--output",
                                     str(tmp_path / f"{name}.out.csv")])
        assert result.exit_code == 2 and advice in result.output, result.output
    good = tmp_path / "good.csv"
    good.write_text("user,item\na,i1\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(good), "--output",
                                     str(locked / "recs.csv")])
        if result.exit_code != 0 or not (locked / "recs.csv").exists():  # root may write anywhere
            assert result.exit_code == 2 and "cannot write there" in result.output
    finally:
        locked.chmod(0o700)


def test_export_writes_a_scorer_torch_alone_loads_with_the_runs_scores(trained, tmp_path):
    run_dir, _, _ = trained
    out = tmp_path / "exported"
    result = runner.invoke(app, ["export", str(run_dir), "--output", str(out)])
    assert result.exit_code == 0, result.output
    scorer = torch.export.load(str(out / "scorer.pt2")).module()
    items = json.loads((out / "items.json").read_text())
    histories = [["i1", "i3"], ["i25", "i26", "i27"]]
    scores, item_ids, x = _hand_scores(run_dir, histories)
    assert items == [str(i) for i in item_ids]
    np.testing.assert_allclose(scorer(torch.from_numpy(x)).numpy(), scores, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scorer(torch.from_numpy(x[:1])).numpy(), scores[:1], rtol=1e-6, atol=1e-7)
    again = runner.invoke(app, ["export", str(run_dir), "--output", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
    # a deterministic reverse reading, as the docs offer for exporting: its scores are the model's own
    # reverse chain (the chain's time grid failed while torch.export traced it)
    from bindiff.tasks.recommendation.job import load_run

    reverse = runner.invoke(app, ["export", str(run_dir), "inference.mode=reverse", "inference.t=3",
                                  "--output", str(tmp_path / "reverse")])
    assert reverse.exit_code == 0, reverse.output
    exported = torch.export.load(str(tmp_path / "reverse" / "scorer.pt2")).module()
    _, _, model, _ = load_run(run_dir)
    with torch.no_grad():
        expected = model.reverse(torch.from_numpy(x), start=3)
    torch.testing.assert_close(exported(torch.from_numpy(x)), expected, rtol=1e-6, atol=1e-7)


def test_every_ranking_metric_and_the_per_user_csv_from_a_run(ratings_csv, tmp_path):
    result = runner.invoke(app, small_args(ratings_csv, tmp_path, "train.epochs=2", "eval.per_user=true",
                                           "eval.metrics=[precision@5, hit@5, map@5, mrr@5, coverage@5, popularity@5]"))
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ml1m").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert list(metrics["test"]) == ["precision@5", "hit@5", "map@5", "mrr@5", "coverage@5", "popularity@5", "ndcg@20"]
    assert 0 < metrics["test"]["coverage@5"] <= 1 and 0 < metrics["test"]["popularity@5"] <= 1
    rows = (run_dir / "per_user_test.csv").read_text().splitlines()
    assert rows[0].split(",") == ["user", "precision@5", "hit@5", "map@5", "mrr@5", "popularity@5", "ndcg@20"]
    values = [float(r.split(",")[2]) for r in rows[1:] if r.split(",")[2]]
    assert len(rows) == 1 + metrics["users"]["test"]["total"]
    assert np.mean(values) == pytest.approx(metrics["test"]["hit@5"])


def test_a_rating_threshold_on_a_file_whose_rating_column_is_not_named_says_how_to_name_it(ratings_csv, tmp_path):
    args = [a for a in small_args(ratings_csv, tmp_path) if a != "data.rating_col=rating"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "its files hold no ratings; set min_rating to null, or name the file's " \
        "rating column with data.rating_col" in result.output
    assert not (tmp_path / "ml1m").exists()


# -- using a trained run: what an audit found (December 2026) --------------------------------------

def test_inference_overrides_of_a_baseline_run_are_refused_as_changing_nothing(ratings_csv, tmp_path):
    root = tmp_path / "runs"
    assert runner.invoke(app, small_args(ratings_csv, root, "model.kind=ease")).exit_code == 0
    (run_dir,) = (root / "ml1m").iterdir()
    for command, override in ((["evaluate", str(run_dir)], "inference.t=3"),
                              (["export", str(run_dir), "--output", str(tmp_path / "e")], "inference.add_noise=true")):
        result = runner.invoke(app, [*command, override])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"error: override '{override}': an ease run never reads inference.*, so it "
                                         "would change nothing")
    assert not (tmp_path / "e").exists()


def test_reverse_steps_beyond_the_start_time_are_named(trained, tmp_path):
    run_dir, _, _ = trained
    for command in (["evaluate", str(run_dir)], ["export", str(run_dir), "--output", str(tmp_path / "e")]):
        result = runner.invoke(app, [*command, "inference.mode=reverse", "inference.t=2", "inference.steps=3"])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: inference.steps = 3 exceeds inference.t = 2"), result.output


def test_a_full_disk_while_writing_recommendations_is_one_line_and_leaves_nothing(trained, tmp_path, monkeypatch):
    import csv
    import errno
    import os

    run_dir, _, _ = trained
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user,item\na,i0\nb,i21\n")

    class FullDisk:  # what a write to a full file system raises, part-way through the rows
        def __init__(self, handle, **format_options):
            self.rows = 0

        def writerow(self, row):
            self.rows += 1
            if self.rows > 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(csv, "writer", FullDisk)
    out = tmp_path / "out" / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == (f"error: --output {out}: cannot write there (No space left on "
                                                      "device)")
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor its temporary


def test_a_full_disk_in_a_staged_folder_is_an_output_error_naming_it(tmp_path):
    import errno
    import os

    from bindiff.files import OutputError, staged_folder

    with pytest.raises(OutputError, match=r"exported: cannot write the output folder \(No space left on device\)"):
        with staged_folder(tmp_path / "exported") as staging:
            (staging / "a").write_text("x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):  # another OSError inside (an input not found) is not the output's
        with staged_folder(tmp_path / "exported"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.csv")


def test_an_output_folder_given_as_a_link_fills_the_folder_it_names(tmp_path):
    """A link to an empty (scratch) folder, or a link whose folder does not exist yet: the files go
    where the link points and the link stays (os.replace onto a link raised NotADirectoryError
    after all the work was done)."""
    from bindiff.files import OutputError, staged_folder

    (tmp_path / "scratch").mkdir()
    (tmp_path / "to_scratch").symlink_to(tmp_path / "scratch")
    (tmp_path / "dangling").symlink_to(tmp_path / "later")
    for link in ("to_scratch", "dangling"):
        with staged_folder(tmp_path / link) as staging:
            (staging / "summary.json").write_text("{}")
        assert (tmp_path / link).is_symlink() and (tmp_path / link / "summary.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "later", "scratch", "to_scratch"]
    (tmp_path / "loop").symlink_to(tmp_path / "loop")  # refused before any work, not after it
    with pytest.raises(OutputError, match="loop: a link that leads back to itself; give a folder"):
        with staged_folder(tmp_path / "loop"):
            raise AssertionError("the work ran")


def test_a_split_copied_from_another_run_is_named(trained, tmp_path):
    import shutil

    run_dir, _, _ = trained
    other_root = tmp_path / "other"
    result = runner.invoke(app, ["train", str(RECIPE), "data.dataset=synthetic:tiny", "split.n_valid_users=50",
                                 "split.n_test_users=50", "train.epochs=1", "denoiser.params.hidden=[8]",
                                 f"output.root={other_root}", "output.progress=false"])
    assert result.exit_code == 0, result.output
    (other,) = (other_root / "ml1m").iterdir()
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    shutil.rmtree(mixed / "split")
    shutil.copytree(other / "split", mixed / "split")
    n_items = len(np.load(other / "split" / "item_ids.npy", allow_pickle=False))
    for command in (["recommend", str(mixed), "--items", "i1"], ["evaluate", str(mixed)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"error: {mixed / 'split'}: {n_items} items, but the checkpoint best.pt was "
                                         "trained on 40: the split is not this run's")


def test_recommend_never_overwrites_its_output_and_writes_gzip_for_a_gz_name(trained, tmp_path):
    import gzip

    run_dir, _, _ = trained
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user,item\na,i0\na,i2\nb,i21\n")
    kept = tmp_path / "keep.csv"
    kept.write_text("important\n")
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(kept)])
    assert result.exit_code == 2 and result.output.startswith(f"error: --output {kept}: exists; bindiff never "
                                                              "overwrites"), result.output
    assert kept.read_text() == "important\n"
    packed = tmp_path / "recs.csv.gz"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(packed),
                                 "--k", "2"])
    assert result.exit_code == 0, result.output
    rows = gzip.decompress(packed.read_bytes()).decode().splitlines()
    assert rows[0] == "user,rank,item,score" and [r.split(",")[:2] for r in rows[1:]] == [
        ["a", "1"], ["a", "2"], ["b", "1"], ["b", "2"]]
    # RFC 1952 header: byte 3 flags, bytes 4-8 the time, then the file name: the output's, not its
    # temporary's (gunzip -N restored a hidden .tmp file), and no time, so a seed gives the same bytes
    header = packed.read_bytes()
    assert header[3] & 0x08 and header[4:8] == b"\0\0\0\0" and header[10:].split(b"\0")[0] == b"recs.csv"
    again = tmp_path / "again" / "recs.csv.gz"
    again.parent.mkdir()
    assert runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(again),
                               "--k", "2"]).exit_code == 0
    assert again.read_bytes() == packed.read_bytes()
    plain = tmp_path / "recs.csv"
    assert runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(plain),
                               "--k", "2"]).exit_code == 0
    assert plain.read_text().splitlines() == rows


def test_users_the_run_knows_nothing_of_and_an_unfinished_run_are_named_in_warnings(trained, tmp_path):
    import shutil

    run_dir, _, _ = trained
    users_csv = tmp_path / "users.csv"
    users_csv.write_text("user,item\na,i0\nstranger,nope\n")
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users_csv), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert ("warning: 1 user(s) have no item the run knows, so their lists are the model's answer to an empty "
            "history, the same for each (stranger)") in result.output
    assert "has not finished" not in result.output
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "metrics.json").unlink()
    result = runner.invoke(app, ["recommend", str(unfinished), "--items", "i0"])
    assert result.exit_code == 0, result.output
    assert (f"warning: {unfinished}: no metrics.json, so the run has not finished (still training, or stopped; "
            "`bindiff resume` ends it); its best.pt was used as it stands") in result.output


def test_recommend_lists_the_best_scored_unseen_items_with_their_scores(trained):
    """Against a ranking by hand of ``score()``'s matrix: the k highest scores outside the history,
    best first (ties: lower column first), with those scores as Python floats; a history that
    leaves fewer than k items lists all of them."""
    from bindiff.tasks.recommendation.serve import Recommender

    run_dir, _, _ = trained
    recommender = Recommender.from_run(run_dir)
    recommender.batch_size = 2
    ids = list(recommender.item_ids)
    histories = [[ids[0]], ids[1:4], [], ids[:-2]]  # the last leaves two items for k = 5
    scores = recommender.score(histories)
    results = recommender.recommend(histories, k=5)
    for history, row, result in zip(histories, scores, results):
        unseen = [j for j in range(len(ids)) if ids[j] not in history]
        best = sorted(unseen, key=lambda j: (-row[j], j))[:5]
        assert result.items == [ids[j] for j in best]
        assert result.scores == [float(row[j]) for j in best]
        assert all(type(s) is float for s in result.scores) and all(type(i) is str for i in result.items)


def test_recommend_and_export_refuse_an_output_name_too_long_or_below_a_file_before_any_work(trained, tmp_path):
    """A 300-byte name ended recommend and export with an OSError traceback (ENAMETOOLONG from stat);
    an --output below a file was found only after every history was scored."""
    run_dir, _, _ = trained
    users = tmp_path / "users.csv"
    users.write_text("user,item\na,i1\n")
    long = tmp_path / ("a" * 300)
    for command in (["recommend", str(run_dir), "--input", str(users), "--output", f"{long}.csv"],
                    ["export", str(run_dir), "--output", str(long)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and "cannot write there (File name too long)" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(users), "--output",
                                 str(users / "sub" / "recs.csv")])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: --output {users / 'sub' / 'recs.csv'}: cannot write there ({users} is a file, not a folder)"]
