"""The third reliability pass: inputs an audit found to crash, or to be read wrongly without a word.

Each gets one clean line (exit code 2 from the CLI), and nothing half-made is left behind.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.adapters.interactions import read_delimited, read_movielens_ratings
from bindiff.cli import app
from cli_checks import error_line
from test_cli_pipeline import ratings_csv, small_args, trained  # noqa: F401  (the fixtures are reused)

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "ml100k.yaml"
runner = CliRunner()


# -- interaction files --------------------------------------------------------------------------------------
def test_a_byte_order_mark_does_not_split_the_first_user(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes("1::10::5::978300760\n1::11::4::978300761\n2::10::3::978300762\n".encode("utf-8-sig"))
    raw = read_movielens_ratings(path)
    assert sorted(set(raw.user.tolist())) == ["1", "2"]  # not "\xef\xbb\xbf1" beside "1"


def test_a_timestamp_beyond_64_bits_names_its_line(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::978300760\n1::11::4::99999999999999999999999\n")
    with pytest.raises(DataError) as caught:
        read_movielens_ratings(path)
    assert str(caught.value) == f"{path}:2: timestamp '99999999999999999999999' lies beyond 64 bits"


def test_column_numbers_without_a_header_are_integers_in_a_recipe(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("7,a,5\n8,b,3\n")
    raw = read_delimited(path, user_col=0, item_col=1, rating_col=2, header=False)
    assert raw.user.tolist() == ["7", "8"] and raw.item.tolist() == ["a", "b"] and raw.rating.tolist() == [5, 3]
    result = runner.invoke(app, ["show-config", str(RECIPE), "data.header=false", "data.user_col=0", "data.item_col=1"])
    assert result.exit_code == 0, result.output
    assert "user_col: 0" in result.output


def test_one_column_named_for_two_keys_is_refused(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("user,item\nu,i\n")
    with pytest.raises(DataError, match="item_col and user_col name the same column"):
        read_delimited(path, user_col="user", item_col="user")


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("user,item,user\nu,i,v\n")
    with pytest.raises(DataError, match=r"the header names column 'user' \(user_col\) more than once"):
        read_delimited(path)


# -- recipes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("data.sep=ab", "key 'data.sep' must be one character, or null, got 'ab'"),
    ("data.sep=''", "key 'data.sep' must be one character, or null, got ''"),
    ("name=../../elsewhere", "key 'name' must be one folder name, not a path"),
    ("name=/tmp/x", "key 'name' must be one folder name, not a path"),
    ("train={lr: 0.1, lr: 0.2}", "key 'lr' appears twice in the same section"),
    # what `bindiff train` refused only after reading the data, `show-config` now refuses too
    ("eval.select=foo", "error: eval.select: unknown metric 'foo'"),
    ("eval.metrics=[recall@10, foo@10]", "error: eval.metrics: unknown metric 'foo@10'"),
    ("inference.t=9", "error: inference.t = 9 exceeds diffusion.steps"),
    ("denoiser.params.bogus=1", "has no parameter(s) ['bogus']"),
])
def test_show_config_refuses_what_train_would(override, message):
    assert message in error_line(runner.invoke(app, ["show-config", str(RECIPE), override]))


def test_yaml_merge_keys_are_read_and_a_list_as_key_is_one_line(tmp_path):
    merged = tmp_path / "merged.yaml"
    merged.write_text("name: m\ntask: recommend\ncommon: &fast\n  lr: 0.01\n  epochs: 2\n")
    from bindiff.config.recipe import read_yaml_file

    merged.write_text("defaults: &fast\n  lr: 0.01\n  epochs: 2\ntrain:\n  <<: *fast\n  epochs: 3\n")
    assert read_yaml_file(merged)["train"] == {"lr": 0.01, "epochs": 3}  # YAML's merge, later keys winning
    odd = tmp_path / "odd.yaml"
    odd.write_text("? [1, 2]\n: 3\n")
    assert error_line(runner.invoke(app, ["show-config", str(odd)])) == \
        f"error: {odd}: line 1: a key must be a name, got a list"


# -- recommend and export ---------------------------------------------------------------------------------
def _histories(path: Path, encoding: str = "utf-8") -> Path:
    text = "user,item\nanna,i1\nanna,i2\nbob,i3\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding=encoding) as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding=encoding)
    return path


@pytest.mark.parametrize("name, encoding", [("users.csv.gz", "utf-8"), ("users.csv", "utf-8-sig")])
def test_recommend_reads_gzip_and_byte_order_marks_as_training_does(trained, tmp_path, name, encoding):  # noqa: F811
    run_dir = trained[0]
    out = tmp_path / "recs.csv"
    result = runner.invoke(app, ["recommend", str(run_dir), "--input", str(_histories(tmp_path / name, encoding)),
                                 "--output", str(out), "--k", "3"])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "user,rank,item,score" and len(rows) == 1 + 2 * 3
    assert [row.split(",")[0] for row in rows[1:]] == ["anna"] * 3 + ["bob"] * 3


def test_recommend_names_a_file_that_is_not_utf8(trained, tmp_path):  # noqa: F811
    path = tmp_path / "users.csv"
    path.write_bytes(b"user,item\nanna,i1\nb\xf6b,i2\n")
    line = error_line(runner.invoke(app, ["recommend", str(trained[0]), "--input", str(path),
                                           "--output", str(tmp_path / "r.csv")]))
    assert line == f"error: {path}:3: not valid utf-8 text"


@pytest.mark.parametrize("where", ["a_folder", "below_a_file", "a_fifo"])
def test_recommend_refuses_an_output_that_cannot_be_a_file(trained, tmp_path, where):  # noqa: F811
    blocker = tmp_path / "blocker"
    if where == "a_folder":
        blocker.mkdir()
        out, expected = blocker, "exists and is not a regular file"
    elif where == "below_a_file":
        blocker.write_text("x")
        out, expected = blocker / "recs.csv", f"cannot write there ({blocker} is a file, not a folder)"
    else:  # a rename over a device or pipe would replace it by a plain file
        os.mkfifo(blocker)
        out, expected = blocker, "exists and is not a regular file"
    line = error_line(runner.invoke(app, ["recommend", str(trained[0]), "--input", str(_histories(tmp_path / "u.csv")),
                                           "--output", str(out)]))
    assert line == f"error: --output {out}: {expected}"
    assert blocker.is_dir() if where == "a_folder" else not blocker.is_file() or blocker.read_text() == "x"
    assert not any(path.name.endswith(".tmp") for path in tmp_path.iterdir())


def test_an_export_that_fails_leaves_no_folder(trained, tmp_path, monkeypatch):  # noqa: F811
    written = Path.write_bytes

    def fills_the_disk(path, data):  # half the archive reaches the disk, then there is no room
        written(path, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    out = tmp_path / "scorer"
    result = runner.invoke(app, ["export", str(trained[0]), "--output", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {out}: cannot write the output folder (No space left on device)"
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging twin


def test_an_export_folder_gets_the_mode_of_a_plain_folder(trained, tmp_path):  # noqa: F811
    out = tmp_path / "scorer"
    result = runner.invoke(app, ["export", str(trained[0]), "--output", str(out)])
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "items.json", "scorer.pt2"]


def test_export_below_a_file_is_one_line(trained, tmp_path):  # noqa: F811
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    line = error_line(runner.invoke(app, ["export", str(trained[0]), "--output", str(blocker / "scorer")]))
    assert line == f"error: {blocker / 'scorer'}: cannot write there ({blocker} is a file, not a folder)"


def test_a_saved_split_whose_files_disagree_is_one_line(trained, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    shutil.copytree(trained[0], run_dir)
    ids = np.load(run_dir / "split" / "item_ids.npy", allow_pickle=False)
    np.save(run_dir / "split" / "item_ids.npy", ids[:-3])
    line = error_line(runner.invoke(app, ["evaluate", str(run_dir)]))
    assert line == (f"error: {run_dir / 'split'}: the saved split's files do not fit together: train has "
                    f"{len(ids)} columns for {len(ids) - 3} item ids")


def test_recommend_with_no_item_ids_is_one_line(trained):  # noqa: F811
    line = error_line(runner.invoke(app, ["recommend", str(trained[0]), "--items", ",,,"]))
    assert line == "error: --items ',,,': no item ids (give them comma-separated, e.g. --items 50,172)"


def test_a_run_that_scores_with_random_bits_exports_a_deterministic_reading(ratings_csv, tmp_path):  # noqa: F811
    root = tmp_path / "runs"
    result = runner.invoke(app, small_args(ratings_csv, root, "train.epochs=1", "inference.add_noise=true"))
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "ml1m").iterdir()
    line = error_line(runner.invoke(app, ["export", str(run_dir), "--output", str(tmp_path / "a")]))
    assert "inference.add_noise=false inference.sample=mean" in line  # says how, in a command that works
    line = error_line(runner.invoke(app, ["export", str(run_dir), "train.lr=0.1", "--output", str(tmp_path / "b")]))
    assert line == "error: export: only inference.* overrides choose how the scorer reads the model, got ['train.lr=0.1']"
    result = runner.invoke(app, ["export", str(run_dir), "inference.add_noise=false", "--output", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    import yaml

    assert yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["inference"]["add_noise"] is False


def test_two_processes_refuse_a_bad_setting_before_torchrun_starts(ratings_csv, tmp_path):  # noqa: F811
    line = error_line(runner.invoke(app, [*small_args(ratings_csv, tmp_path / "runs", "train.threads=1"),
                                          "denoiser.params.activation=nope", "--nproc", "2"]))
    assert "activation" in line and "nope" in line
    assert not (tmp_path / "runs").exists()


def test_tuning_refuses_an_unknown_metric_before_any_trial_or_folder(ratings_csv, tmp_path):  # noqa: F811
    args = small_args(ratings_csv, tmp_path / "runs")[2:]  # the overrides, without `train RECIPE`
    line = error_line(runner.invoke(app, ["tune", str(RECIPE), *args, "eval.select=foo@10", "--trials", "1"]))
    assert line.startswith("error: eval.select: unknown metric 'foo@10'")
    assert not (tmp_path / "runs").exists()
