"""Data-parallel training: N processes must train and evaluate as one process does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser, get_schedule
from bindiff.core.dropout import ShardableDropout, batch_rows
from bindiff.metrics import evaluate_ranking, merge_reports
from bindiff.training.checkpoint import load_checkpoint
from bindiff.training.distributed import Workers

from test_cli_pipeline import ratings_csv, small_args  # noqa: F401  (the fixture is reused)

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (10, 3), (200, 4)])
def test_blocks_cover_every_row_once_in_order(n, world):
    blocks = [Workers(rank=r, world=world).block(n) for r in range(world)]
    rows = [i for lo, hi in blocks for i in range(lo, hi)]
    assert rows == list(range(n))
    sizes = [hi - lo for lo, hi in blocks]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("empty_users", ["drop", "zero"])
def test_merged_block_reports_equal_the_report_of_all_users(empty_users):
    rng = np.random.default_rng(1)
    n_users, n_items = 23, 30
    inputs = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    held_out = rng.random((n_users, n_items)) < 0.1
    held_out[3] = False  # a user without held-out items exercises the empty-user rule
    target = sp.csr_matrix(held_out.astype(np.float32))
    scores = torch.from_numpy(rng.random((n_users, n_items)).astype(np.float32))
    lookup = {tuple(r.tolist()): s for r, s in zip(torch.from_numpy(inputs.toarray()), scores)}
    score = lambda batch: torch.stack([lookup[tuple(r.tolist())] for r in batch])  # noqa: E731
    metrics = ["recall@5", "ndcg@10"]
    whole = evaluate_ranking(score, inputs, inputs, target, metrics, empty_users=empty_users)
    parts = []
    for r in range(3):
        lo, hi = Workers(rank=r, world=3).block(n_users)
        parts.append(evaluate_ranking(score, inputs[lo:hi], inputs[lo:hi], target[lo:hi], metrics,
                                      empty_users=empty_users))
    merged = merge_reports(parts)
    assert merged.mean == whole.mean
    assert (merged.n_users, merged.n_users_evaluated) == (whole.n_users, whole.n_users_evaluated)
    for name in metrics:
        np.testing.assert_array_equal(merged.per_user[name], whole.per_user[name])


def test_shardable_dropout_is_nn_dropout_and_its_blocks_are_the_rows_of_the_whole_batch():
    x = torch.rand(9, 40) + 0.5
    torch.manual_seed(5)
    expected = nn.Dropout(0.4).train()(x)
    layer = ShardableDropout(0.4).train()
    torch.manual_seed(5)
    assert torch.equal(layer(x), expected)
    for lo, hi in [(0, 4), (4, 9), (3, 3)]:
        torch.manual_seed(5)
        with batch_rows(layer, lo, hi, 9):
            assert torch.equal(layer(x[lo:hi]), expected[lo:hi])
    assert layer.rows is None  # the block setting ends with the with-statement


def test_explicit_noise_reproduces_the_models_own_draws():
    process = BernoulliProcess(get_schedule("linear", 4, beta_start=0.05, beta_end=0.3))
    model = BinomialDiffusion(MLPDenoiser(12, hidden=[8], input_dropout=0.3, time_dim=4), process)
    x0 = (torch.rand(6, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    torch.manual_seed(0)
    own = model(x0, generator=torch.Generator().manual_seed(7))
    t, u = model.draw_noise(6, 12, torch.Generator().manual_seed(7))
    torch.manual_seed(0)
    explicit = model(x0, t=t, noise=u)
    assert torch.equal(own.t, explicit.t)
    assert torch.equal(own.terms["loss"], explicit.terms["loss"])


def _bindiff(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bindiff", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


# Odd batch size: the two blocks differ in size, and the last batch of the 220 training users is one
# row, so one process has none of it (it crashed) and must still step with the other. Both kinds of
# dropout are on, so the masks must be drawn for the whole batch to agree.
TWO_PROCESS = ["train.batch_size=73", "train.epochs=4", "train.patience=4", "train.threads=1",
               "denoiser.params.dropout=0.2", "denoiser.params.hidden=[32, 16]"]


@pytest.fixture(scope="module")
def two_process_run(ratings_csv, tmp_path_factory):  # noqa: F811
    """One uninterrupted run on two gloo processes: the reference of the tests below."""
    root = tmp_path_factory.mktemp("two")
    # OMP_NUM_THREADS unset, as on a user's machine: the launcher shares the cores out itself, without
    # torchrun's four-line warning; piped with output.progress null, rank 0 logs for both
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    two = subprocess.run([sys.executable, "-m", "bindiff", *small_args(ratings_csv, root, *TWO_PROCESS),
                          "output.progress=null", "--nproc", "2"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run directory:") == 1  # rank 0 reports; rank 1 stays quiet
    assert "OMP_NUM_THREADS" not in two.stderr, two.stderr
    epochs = [line for line in two.stderr.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/4", "2/4", "3/4", "4/4"]  # once each, not per process
    # the final ranking's lines say they count the first process's block of the users
    ranking = [line for line in two.stderr.splitlines() if " ranking: batch " in line]
    assert ranking and all(line.endswith(" on process 1 of 2") for line in ranking), ranking
    (run_two,) = (root / "ml1m").iterdir()  # one run directory for both processes
    return run_two


def test_two_gloo_processes_train_as_one_process(ratings_csv, two_process_run, tmp_path):  # noqa: F811
    from test_cli_pipeline import app, runner

    threads = torch.get_num_threads()  # the one-process reference, in this process (train.threads=1 sets it)
    try:
        one = runner.invoke(app, small_args(ratings_csv, tmp_path / "one", *TWO_PROCESS))
    finally:
        torch.set_num_threads(threads)
    assert one.exit_code == 0, one.output
    (run_one,) = (tmp_path / "one" / "ml1m").iterdir()
    run_two = two_process_run

    for name in ("last.pt", "best.pt"):
        a, b = (load_checkpoint(r / "checkpoints" / name) for r in (run_one, run_two))
        assert a["epoch"] == b["epoch"] and a["step"] == b["step"]
        for key in a["model"]:
            torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5)
        for state_a, state_b in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
            torch.testing.assert_close(state_b["exp_avg"], state_a["exp_avg"], rtol=1e-3, atol=1e-6)
    m_one, m_two = (json.loads((r / "metrics.json").read_text()) for r in (run_one, run_two))
    assert m_two["training"]["processes"] == 2 and m_one["training"]["processes"] == 1
    for part in ("valid", "test"):
        assert m_two[part] == pytest.approx(m_one[part], abs=1e-6)
    h_one, h_two = (json.loads((r / "history.json").read_text()) for r in (run_one, run_two))
    assert [row["train_loss"] for row in h_two] == pytest.approx([row["train_loss"] for row in h_one], rel=1e-5)


def test_several_processes_refuse_a_baseline_before_starting(ratings_csv, tmp_path):  # noqa: F811
    result = _bindiff(*small_args(ratings_csv, tmp_path, "model.kind=ease"), "--nproc", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: model.kind: training on several processes is for the binomial model; train 'ease' in one process"]
    assert not (tmp_path / "ml1m").exists()


def test_a_data_error_found_by_the_workers_is_their_one_line_and_exit_code_2(tmp_path):  # noqa: F811
    bad = tmp_path / "ratings.csv"
    bad.write_text("user,item,rating\nu1,i1,5\nu1,i2,five\n")
    result = _bindiff(*small_args(bad, tmp_path, *TWO_PROCESS), "--nproc", "2")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    # each worker reads the file and says so; torchrun added a traceback and a failure summary
    assert set(lines) == {f"error: {bad}:3: rating 'five' is not a number"}, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and entry.name != str(os.getpid()):
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGKILL"])
def test_killing_the_launcher_leaves_no_worker(ratings_csv, tmp_path, how):  # noqa: F811
    """`kill <pid of bindiff train --nproc 2>` (-INT too, and even kill -9 of it alone) stops every worker
    within 10 s."""
    import signal
    import time

    root = tmp_path / f"runs-{how}"
    args = small_args(ratings_csv, root, "train.epochs=100000", "train.patience=100000", "train.threads=1")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    stderr = tmp_path / "stderr.txt"
    launcher = subprocess.Popen([sys.executable, "-m", "bindiff", *args, "--nproc", "2"], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr.open("w"))
    try:
        deadline = time.time() + 90
        while time.time() < deadline and not list(root.glob("ml1m/*/checkpoints/last.pt")):
            time.sleep(0.5)  # the workers are training once the first epoch is saved
        assert list(root.glob("ml1m/*/checkpoints/last.pt")), "the workers never started training"
        assert len(_processes_mentioning(str(root))) >= 3  # launcher, torchrun, two workers
        launcher.send_signal(getattr(signal, how))
        launcher.wait(timeout=30)
        if how != "SIGKILL":  # ended by the signal, as a one-process run would be: 128 + 15 (or 2), and quietly
            assert launcher.returncode == 128 + getattr(signal, how)
            said = stderr.read_text()
            assert "Traceback" not in said and "death signal" not in said, said  # torchrun's own warning
            (run,) = (root / "ml1m").iterdir()  # and, as one process does, one line that names the resume
            stops = [line for line in said.splitlines() if line.startswith("stopped:")]
            assert stops == [f"stopped: `bindiff resume {run} --nproc 2` continues this run"], said
        deadline = time.time() + 10
        while time.time() < deadline and _processes_mentioning(str(root)):
            time.sleep(0.2)
        assert _processes_mentioning(str(root)) == []
    finally:
        for pid in _processes_mentioning(str(root)):
            os.kill(pid, signal.SIGKILL)
        if launcher.poll() is None:
            launcher.kill()


# `bindiff resume` only: `train RECIPE --resume RUN` takes the same path once the recipe is checked
# against the run (tests/test_resume.py runs it on one process), and each case costs 20 s of the suite
@pytest.mark.parametrize("command", ["resume"])
def test_a_killed_two_process_run_resumes_on_two_processes_to_the_same_metrics(ratings_csv, two_process_run,  # noqa: F811
                                                                              tmp_path, command):
    import signal
    import time

    root = tmp_path / "victim"
    args = small_args(ratings_csv, root, *TWO_PROCESS)
    launcher = subprocess.Popen([sys.executable, "-m", "bindiff", *args, "--nproc", "2"], cwd=REPO,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and not list(root.glob("ml1m/*/checkpoints/last.pt")):
        time.sleep(0.05)
    launcher.send_signal(signal.SIGTERM)
    launcher.wait(timeout=30)
    (victim,) = (root / "ml1m").iterdir()
    if (victim / "metrics.json").exists():
        pytest.skip("the run finished before it could be killed")
    if command == "resume":  # `bindiff resume RUN_DIR --nproc 2`: the run's own config, on two processes
        resumed = _bindiff("resume", str(victim), "--nproc", "2")
    else:
        resumed = _bindiff(*args, "--resume", str(victim), "--nproc", "2")
    assert resumed.returncode == 0, resumed.stderr
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (two_process_run, victim))
    assert b["training"].get("resumed_from_epoch", 0) >= 1
    assert a["test"] == b["test"] and a["valid"] == b["valid"]


_LAUNCH_UNDER_NOHUP = """
import signal, sys
signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does before it runs bindiff
sys.executable = sys.argv[1]  # torchrun's stand-in: launch runs `<python> -m ...`
from bindiff.training.distributed import launch
sys.exit(launch(2, ["train", "x"]))
"""

_TORCHRUN_STAND_IN = """#!{python}
import signal, sys, time
def hung_up(number, frame):  # torchrun stops its workers on SIGHUP, whatever it inherited
    open({marker!r}, "w").write("hung up")
    sys.exit(1)
signal.signal(signal.SIGHUP, hung_up)
time.sleep(3)
"""


def test_a_run_under_nohup_survives_the_hang_up(tmp_path):
    """`nohup bindiff train ... --nproc 2`: the terminal's hang-up reached torchrun, which stopped the
    workers, while a one-process run went on."""
    import signal
    import time

    marker = tmp_path / "hung_up"
    stand_in = tmp_path / "python"
    stand_in.write_text(_TORCHRUN_STAND_IN.format(python=sys.executable, marker=str(marker)))
    stand_in.chmod(0o755)
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCH_UNDER_NOHUP, str(stand_in)], start_new_session=True)
    time.sleep(1.5)  # the stand-in is running
    os.killpg(launcher.pid, signal.SIGHUP)  # the terminal closes: its whole session is hung up
    assert launcher.wait(timeout=30) == 0
    assert not marker.exists()
