"""What a comparison or a search would have done behind the user's back: a command-line setting
overruled by a model's preset or by the search space, an override no model reads recorded as if
used, one id written two ways counted as two users, EASE refused only after the other models
had trained, users ranked from an empty history without a word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.adapters.errors import DataError
from bindiff.adapters.interactions.matrix import build_matrix
from bindiff.adapters.interactions.readers import RawInteractions, read_delimited
from bindiff.adapters.interactions.splits import predefined_split
from bindiff.cli import app
from bindiff.config import dump_recipe, load_recipe, recipe_from_text
from cli_checks import error_line

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def ratings_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(2)
    lines = ["user,item"]
    for u in range(120):
        for item in rng.choice(20, size=8, replace=False):
            lines.append(f"u{u},i{item}")
    path = tmp_path_factory.mktemp("data") / "pairs.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _tiny(csv_path: Path, root: Path) -> list[str]:
    return [f"data.dataset={csv_path}", "data.min_rating=null", "split.n_valid_users=20", "split.n_test_users=20",
            "train.epochs=1", "eval.metrics=[ndcg@10]",
            "eval.select=ndcg@10", f"output.root={root}", "output.progress=false"]


def test_a_command_line_setting_a_preset_sets_again_is_refused(ratings_csv, tmp_path):
    root = tmp_path / "runs"
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "binomial,multdae", "--seeds", "1",
                                          *_tiny(ratings_csv, root), "train.patience=40"]))
    # multdae's preset sets train.patience=20: binomial alone would have had 40, under a table headed "patience=40"
    assert "'train.patience=40'" in line and "compare.models.multdae sets train.patience" in line
    assert not root.exists()


def test_a_command_line_setting_the_search_replaces_is_refused(ratings_csv, tmp_path):
    root = tmp_path / "runs"
    line = error_line(runner.invoke(app, ["tune", str(RECIPE), "--trials", "1", *_tiny(ratings_csv, root),
                                          "train.lr=0.5"]))  # the recipe's tune.space searches train.lr
    assert "'train.lr=0.5'" in line and "tune.space searches train.lr" in line
    assert not root.exists()
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "binomial", "--seeds", "1",
                                          "--tune", "1", *_tiny(ratings_csv, root), "train.lr=0.5"]))
    assert "compare.spaces.binomial searches train.lr" in line


def test_an_override_the_model_never_reads_is_refused(ratings_csv, tmp_path):
    root = tmp_path / "runs"
    tiny = _tiny(ratings_csv, root)
    line = error_line(runner.invoke(app, ["train", str(RECIPE), *tiny, "model.kind=multdae",
                                          "denoiser.params.hidden=[50]"]))  # Mult-DAE reads model.params.hidden
    assert line == ("error: override 'denoiser.params.hidden=[50]': a multdae run never reads denoiser.*, so it "
                    "would change nothing")
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "dae", "--seeds", "1", *tiny,
                                          "compare.models.dae=[model.kind=multdae, \"denoiser.params.hidden=[50]\"]"]))
    assert line.startswith("error: compare.models.dae: override 'denoiser.params.hidden=[50]'")
    closed_form = [a for a in tiny if not a.startswith("train.")]
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "popularity,ease", "--seeds", "1",
                                          *closed_form, "diffusion.steps=3"]))  # neither model reads it
    assert "'diffusion.steps=3'" in line and "never reads diffusion.*" in line
    assert not root.exists()
    # a closed-form fit still runs where train.threads says
    for command in ("train", "show-config"):  # show-config checks what train checks
        line = error_line(runner.invoke(app, [command, str(RECIPE), *closed_form, "model.kind=ease", "train.epochs=3"]))
        assert "an ease run never reads train.* (but for train.threads, train.device)" in line
    result = runner.invoke(app, ["train", str(RECIPE), *closed_form, "model.kind=popularity", "train.threads=1"])
    assert result.exit_code == 0, result.output


def test_a_shared_override_reaches_the_tuning_of_the_models_that_read_it(ratings_csv, tmp_path):
    # binomial reads diffusion.steps, Mult-DAE does not: its search runs without it (it stopped at trial 0)
    result = runner.invoke(app, ["compare", str(RECIPE), "--models", "binomial,multdae", "--seeds", "1",
                                 "--tune", "1", *_tiny(ratings_csv, tmp_path), "diffusion.steps=5"])
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "compare" / "ml1m").iterdir()
    assert (out / "compare.json").is_file()
    recorded = recipe_from_text((out / "recipe.yaml").read_text())
    assert recorded["tune"]["trials"] == 1 and set(recorded["compare"]["spaces"]) <= {"binomial", "multdae"}
    config = load_recipe(RECIPE, ["model.kind=multdae"])
    config["tune"]["space"] = {"model.params.latent": {"int": [8, 16]}}
    recipe = tmp_path / "dae.yaml"
    recipe.write_text(dump_recipe(config))
    line = error_line(runner.invoke(app, ["tune", str(recipe), "--trials", "1", *_tiny(ratings_csv, tmp_path / "t"),
                                          "diffusion.steps=5"]))
    assert "a multdae run never reads diffusion.*" in line and "tune trial" not in line  # before the data
    assert not (tmp_path / "t").exists()


def test_ease_that_cannot_fit_is_refused_before_any_model_trains(ratings_csv, tmp_path, monkeypatch):
    import bindiff.tasks.recommendation.baselines.ease as ease

    monkeypatch.setattr(ease, "physical_memory_bytes", lambda: 10_000)  # a machine far too small for 20 items
    root = tmp_path / "runs"
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "binomial,ease", "--seeds", "1",
                                          *_tiny(ratings_csv, root)]))
    # 20 items: 4.5 dense float64 20 × 20 matrices = 14,400 bytes > 10,000
    assert "EASE on 20 items" in line
    assert not root.exists()  # binomial had trained first and left a comparison without results


@pytest.mark.parametrize("pair", [("1", "01"), ("3", "3.0"), ("7", "7.00")])
def test_one_id_written_two_ways_is_refused(tmp_path, pair):
    a, b = pair
    path = tmp_path / "x.csv"
    path.write_text(f"user,item\n{a},5\n{b},6\nz,5\n")
    with pytest.raises(DataError, match=rf"x.csv: user ids '{b if b < a else a}' and '{a if b < a else b}' are one "
                                        r"number written two ways"):
        build_matrix(read_delimited(path))
    path.write_text(f"user,item\nu,{a}\nv,{b}\n")
    with pytest.raises(DataError, match="item ids"):
        build_matrix(read_delimited(path))
    # ids that are different numbers, or not numbers, stay apart, as before
    path.write_text("user,item\n1,a\n10,a\n2,b\nx1,b\n")
    assert build_matrix(read_delimited(path)).user_ids.tolist() == ["1", "10", "2", "x1"]


def test_hashes_and_long_numbers_are_not_taken_for_one_number():
    from bindiff.adapters.interactions.matrix import index_ids

    # hex hashes that float() reads as 0 (0e12, 0e34) or as 1e10 (1e10, 10e9) are different ids
    for ids in (["a3f9", "0e12", "0e34"], ["b7c1", "1e10", "10e9"],
                ["100000000000000000000", "100000000000000000001", "1e20"]):  # one float64, three numbers
        assert len(index_ids(np.array(ids, dtype=object))[0]) == 3
    with pytest.raises(DataError, match="'100000000000000000000' and '100000000000000000000.0'"):
        index_ids(np.array(["100000000000000000000", "100000000000000000001", "100000000000000000000.0"],
                           dtype=object))  # not neighbours once sorted by their float value


def test_users_with_held_out_items_but_no_history_are_named(caplog, warned):
    def raw(users, items, name):
        return RawInteractions(np.array(users), np.array(items), None, name)

    # user 1 has valid and test items but no train row: ranked from an empty history
    predefined_split(raw([0, 0, 2, 2], [0, 1, 1, 2], "train.npy"), raw([1, 0], [2, 2], "valid.npy"),
                     raw([1, 2], [0, 0], "test.npy"))
    err = warned()
    assert "warning: valid.npy: 1 users have held-out items but no history in the train file" in err
    assert "warning: test.npy: 1 users have held-out items but no history" in err
    predefined_split(raw([0, 1, 2], [0, 1, 2], "train.npy"), raw([1], [2], "valid.npy"), raw([2], [0], "test.npy"))
    assert "no history" not in warned()
