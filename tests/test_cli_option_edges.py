"""Command-line options given hostile values (an audit of every option of every command): each is
one `error:` line naming the option or file, exit code 2, no traceback, and nothing written."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from cli_checks import error_line, train_tiny

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A recommendation run of one epoch on 120 users in two taste groups over 20 items."""
    rng = np.random.default_rng(0)
    lines = ["user,item"]
    for u in range(120):
        group = u % 2
        for item in rng.choice(np.arange(group * 10, group * 10 + 10), size=6, replace=False):
            lines.append(f"u{u},i{item}")
    csv = tmp_path_factory.mktemp("data") / "log.csv"
    csv.write_text("\n".join(lines) + "\n")
    tiny = [f"data.dataset={csv}", "data.min_rating=null", "split.n_valid_users=20", "split.n_test_users=20",
            "denoiser.params.hidden=[8]", "train.epochs=1", "train.batch_size=64", "train.threads=1",
            "diffusion.steps=3", "eval.metrics=[recall@5]", "eval.select=recall@5", "output.progress=false"]
    return train_tiny(tmp_path_factory.mktemp("runs"), "ml1m", tiny, csv.parent)[0]


def test_a_device_torch_knows_but_bindiff_does_not_run_on_is_one_line(run):
    """`--device meta` (mps, xpu, hpu) passed the check and ended in torch's traceback, exit code 1."""
    line = error_line(runner.invoke(app, ["evaluate", str(run), "--device", "meta"]))
    assert line == "error: --device: 'meta' is not a device bindiff runs on; use auto, cpu, cuda or cuda:N"


def test_compare_refuses_seeds_beyond_the_largest_before_training_or_writing(tmp_path):
    """`seed=4294967295 --seeds 2` trained the first seed, left a comparison folder, then blamed an
    override 'seed=4294967296' nobody wrote; `--seeds 10**20` built a list of 10**20 seeds (the
    process held 24 GB when the system killed it)."""
    args = ["compare", "ml1m", "data.dataset=synthetic:tiny", "data.min_rating=null", "split.n_valid_users=50",
            "split.n_test_users=50", "eval.metrics=[recall@5]", "eval.select=recall@5", "--models", "popularity",
            f"output.root={tmp_path}"]
    line = error_line(runner.invoke(app, [*args, "seed=4294967295", "--seeds", "2"]))
    assert line == "error: --seeds 2 from seed 4294967295: the last seed, 4294967296, lies beyond 2**32 - 1"
    line = error_line(runner.invoke(app, [*args, "--seeds", str(10 ** 20)]))
    assert line.startswith(f"error: --seeds {10 ** 20} from seed 0: the last seed")
    assert list(tmp_path.iterdir()) == []


def test_nproc_beyond_what_the_machine_can_start_is_refused_before_torchrun(monkeypatch, tmp_path):
    """`--nproc 99999999999999999999` went to torchrun, whose memory grew until the system killed
    it: exit code 247 and not a word."""
    from bindiff.training import distributed

    started = []
    monkeypatch.setattr(distributed, "launch", lambda nproc, args: started.append(nproc) or 0)
    monkeypatch.setattr(distributed, "physical_memory_bytes", lambda: 8 * 2 ** 30, raising=False)
    line = error_line(runner.invoke(app, ["train", "ml1m", f"output.root={tmp_path}", "--nproc", str(10 ** 20)]))
    assert line.startswith(f"error: --nproc {10 ** 20}: {10 ** 20} processes take at least")
    assert line.endswith("but this machine has 8 GB: lower --nproc")
    assert started == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, said", [(b"task: recommend\n\xff\xfe\n", "not UTF-8 text (byte 0xff at offset 16)"),
                                           (b"", "empty"), (b"  \n", "empty")])
def test_a_damaged_config_yaml_of_a_run_is_one_line(run, tmp_path, content, said):
    """Not UTF-8: a UnicodeDecodeError traceback. Empty: read as a default recommendation config,
    and the run's own checkpoint was called another run's ("its tune.space.train.lr.log is True")."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "config.yaml").write_bytes(content)
    for command in (["evaluate", str(copy)], ["recommend", str(copy), "--user", "u1"], ["resume", str(copy)]):
        line = error_line(runner.invoke(app, command))
        assert line == f"error: {copy / 'config.yaml'}: {said}; the run's config was damaged"


def test_resuming_with_a_recipe_of_another_task_says_so(run, tmp_path):
    """It named the first key one task has and the other lacks: "key 'augment.flip_axes' is None
    but the run being resumed has []"."""
    line = error_line(runner.invoke(app, ["train", "hippocampus_masks", f"output.root={tmp_path}",
                                          "--resume", str(run)]))
    assert line.startswith("error: hippocampus_masks: a masks recipe, but the run being resumed is a recommend run (")


def test_a_checkpoint_that_is_a_path_is_named_whole(run):
    """`--checkpoint ../best` was answered "got 'best'", the one value that is allowed."""
    line = error_line(runner.invoke(app, ["evaluate", str(run), "--checkpoint", "../best"]))
    assert line == "error: --checkpoint must be best or last, got '../best'"


def test_empty_options_are_refused_not_read_as_absent(run, tmp_path):
    """`masks completion RUN --out ""` wrote into RUN/eval-<time> (as without --out), `score --region
    ""` scored the run's or the whole region, `recommend --user ""` said to give one of --user,
    --items or --input."""
    line = error_line(runner.invoke(app, ["masks", "completion", str(run), "--out", ""]))
    assert line == "error: --out is empty; name a new folder, or leave --out off for RUN_DIR/eval-<time>"
    line = error_line(runner.invoke(app, ["score", str(tmp_path / "p"), str(tmp_path / "r"), "--preset",
                                          "msd_hippocampus", "--region", ""]))
    assert line == "error: score: --region is empty"
    for option in ("--user", "--input"):
        line = error_line(runner.invoke(app, ["recommend", str(run), option, " "]))
        assert line == f"error: recommend: {option} is empty"
    assert not any(path.name.startswith("eval-") for path in run.iterdir())


def test_recommend_refuses_a_folder_as_output_before_scoring(run, tmp_path, monkeypatch):
    """A folder as --output was refused after every history had been scored."""
    from bindiff.tasks.recommendation import serve

    def scored(*args, **kwargs):
        raise AssertionError("scored before the output was checked")

    monkeypatch.setattr(serve.Recommender, "recommend", scored)
    users = tmp_path / "users.csv"
    users.write_text("user,item\nanna,i1\n")
    (tmp_path / "out").mkdir()
    line = error_line(runner.invoke(app, ["recommend", str(run), "--input", str(users), "--output",
                                          str(tmp_path / "out")]))
    assert line == f"error: --output {tmp_path / 'out'}: exists and is not a regular file"


def _main(argv, monkeypatch, capsys) -> str:
    """`bindiff ARGV` through the command's own entry point (a usage error is reformatted there); its one line."""
    from bindiff import cli

    monkeypatch.setattr(sys, "argv", ["bindiff", *argv])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and out == "" and len(err.splitlines()) == 1, (exit_.value.code, out, err)
    return err.strip()


@pytest.mark.parametrize("command, named", [(["resume", ""], "'run_dir'"), (["evaluate", ".", "--out", " "], "'--out'"),
                                            (["train", ""], "'recipe'"), (["train", "ml1m", "--data-dir", ""], "'--data-dir'"),
                                            (["segment", ".", "--input", "", "--output", "o"], "'--input'"),
                                            (["score", "", "."], "'prediction'"), (["export", ".", "--output", ""], "'--output'")])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(command, named, tmp_path, monkeypatch, capsys):
    """`resume ""` said ".: not a bindiff run directory", `evaluate R --out ""` ": already exists"."""
    monkeypatch.chdir(tmp_path)
    line = _main(command, monkeypatch, capsys)
    assert line.startswith(f"error: bindiff {command[0]}: Invalid value for {named}") and "is empty" in line
    assert list(tmp_path.iterdir()) == []


def test_an_empty_output_root_is_refused_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run folders were made in the current folder
    line = error_line(runner.invoke(app, ["train", "ml1m", "output.root=' '"]))
    assert line.startswith("error: override \"output.root=' '\": key 'output.root' must name a folder")
    assert list(tmp_path.iterdir()) == []
