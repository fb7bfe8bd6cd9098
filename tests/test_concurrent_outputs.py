"""Several processes on one output, and file systems that fill up or turn read-only mid-run
(an audit of several processes at once). Each test fails on the code before the fix."""

from __future__ import annotations

import errno
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.files import OutputError, atomic_path, staged_folder
from cli_checks import error_line
from test_cli_pipeline import ratings_csv, small_args  # noqa: F401  (the fixture is reused)

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def test_a_folder_another_process_filled_meanwhile_is_one_line(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="another process wrote this folder"):
        with staged_folder(out) as staging:
            (staging / "mine.json").write_text("{}")
            out.mkdir()  # the same command, started beside this one, finished first
            (out / "theirs.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left
    assert [p.name for p in out.iterdir()] == ["theirs.json"]


def test_a_file_that_must_not_be_overwritten_is_not_replaced_by_a_second_process(tmp_path):
    path = tmp_path / "recs.csv"
    with pytest.raises(OutputError, match="another process wrote this file"):
        with atomic_path(path, overwrite=False) as tmp:
            tmp.write_text("mine\n")
            path.write_text("theirs\n")  # written by another process after the caller's exists() check
    assert path.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["recs.csv"]


def _train_with_files_capped_at(limit: int, root: Path) -> subprocess.CompletedProcess:
    """`bindiff train` on tiny synthetic data where no file may grow past ``limit`` bytes: the
    kernel's short write (EFBIG) is what a full disk does to a write in progress."""
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
              "from bindiff.cli import main; sys.argv = ['bindiff', *sys.argv[1:]]; main()")
    return subprocess.run(
        [sys.executable, "-c", script, "train", "recipes/ml1m.yaml", "data.dataset=synthetic:tiny",
         "split.n_valid_users=50", "split.n_test_users=50", "denoiser.params.hidden=[16]", "train.epochs=1",
         "train.threads=1", f"output.root={root}", "output.progress=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("limit, where", [
    (3000, "config.yaml"),   # the run folder's first file
    (20000, "split/"),       # numpy's writer reported a short write without errno: a traceback
    (60000, "checkpoint"),   # torch's writer reported it as RuntimeError("unexpected pos"): a traceback
])
def test_a_disk_that_fills_before_the_first_checkpoint_is_one_line_and_leaves_no_run(tmp_path, limit, where):
    result = _train_with_files_capped_at(limit, tmp_path / "runs")
    assert result.returncode == 2, (where, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "File too large" in lines[0], (where, lines)
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "runs").glob("*/*")), where  # nothing half-made: no run folder at all


def test_a_read_only_file_system_before_the_first_checkpoint_removes_the_run(ratings_csv, tmp_path, monkeypatch):  # noqa: F811
    import bindiff.tasks.base as base

    def read_only(*args, **kwargs):  # what atomic_path raises when mkstemp meets EROFS
        raise OutputError("runs/x/checkpoints/best.pt: cannot write there (Read-only file system)", errno.EROFS)

    monkeypatch.setattr(base, "fit", read_only)
    line = error_line(runner.invoke(app, small_args(ratings_csv, tmp_path / "runs")))
    assert "cannot write (Read-only file system); removed it (no checkpoint yet)" in line
    assert list((tmp_path / "runs" / "ml1m").iterdir()) == []


def test_a_resume_that_gets_the_lock_after_another_finished_the_run_is_refused(ratings_csv, tmp_path, monkeypatch):  # noqa: F811
    import bindiff.tasks.base as base

    runner.invoke(app, small_args(ratings_csv, tmp_path / "runs", "train.epochs=1"))
    (run,) = (tmp_path / "runs" / "ml1m").iterdir()
    metrics = (run / "metrics.json").read_bytes()
    (run / "metrics.json").rename(tmp_path / "metrics.json")  # the run as a kill after its last epoch left it
    real_lock = base.run_lock

    @contextmanager
    def lock_after_the_other_finished(run_dir):
        (run / "metrics.json").write_bytes(metrics)  # the resume that held the lock has just finished
        with real_lock(run_dir):
            yield

    monkeypatch.setattr(base, "run_lock", lock_after_the_other_finished)
    line = error_line(runner.invoke(app, ["resume", str(run)]))
    assert "the run has finished" in line
    assert (run / "metrics.json").read_bytes() == metrics


def test_a_file_system_without_hard_links_still_publishes_once(tmp_path, monkeypatch):
    import os

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "recs.csv"
    with atomic_path(path, overwrite=False) as tmp:
        tmp.write_text("mine\n")
    assert path.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["recs.csv"]
    with pytest.raises(OutputError, match="another process wrote this file"):
        with atomic_path(path, overwrite=False) as tmp:
            tmp.write_text("again\n")
    assert path.read_text() == "mine\n" and [p.name for p in tmp_path.iterdir()] == ["recs.csv"]


def test_a_schedulers_stop_cleans_up_as_ctrl_c_does(tmp_path):
    """SIGTERM (SLURM's time limit, scancel) killed the process outright: staging folders and
    temporary files stayed behind, exit code -15. Now SystemExit(143) runs the clean-up."""
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "bindiff", "train", "recipes/ml1m.yaml", "data.dataset=synthetic:tiny",
         "split.n_valid_users=50", "split.n_test_users=50", "denoiser.params.hidden=[16]", "train.epochs=100000",
         "train.patience=100000", "train.threads=1", f"output.root={root}", "output.progress=false"],
        cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(root.glob("*/*/checkpoints/last.pt")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "training ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    (run,) = root.glob("*/*")
    # on a terminal the folder was named nowhere: where the run is, and how to go on
    assert f"stopped: `bindiff resume {run}` continues this run" in err
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert not (run / "metrics.json").exists() and (run / "checkpoints" / "last.pt").is_file()  # resumable


def test_an_output_given_as_a_link_is_written_where_it_leads(tmp_path):
    """A link (even dangling) was refused as 'another process wrote this file', after all the work."""
    (tmp_path / "real").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "real" / "target.csv")
    with atomic_path(link, overwrite=False) as tmp:
        tmp.write_text("mine\n")
    assert link.is_symlink() and (tmp_path / "real" / "target.csv").read_text() == "mine\n"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["target.csv"]
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(OutputError, match="a link that leads back to itself"):
        with atomic_path(loop, overwrite=False):
            pass


def test_a_file_system_that_refuses_modes_still_gets_the_files_and_no_temporaries(tmp_path, monkeypatch):
    """FAT and some network mounts refuse chmod: a traceback, and the temporary or staging folder left."""
    import os

    def no_modes(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", no_modes)
    with atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
    with staged_folder(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.json"]
    assert (tmp_path / "out" / "a.txt").read_text() == "a"


def test_a_disk_that_fills_at_the_first_last_pt_keeps_the_best_pt_written_before_it(ratings_csv, tmp_path, monkeypatch):  # noqa: F811
    """best.pt is written before last.pt: the run holding it was deleted as 'no checkpoint yet'."""
    import bindiff.training.trainer as trainer

    real_save = trainer.save_checkpoint

    def last_is_full(path, **kwargs):
        if Path(path).name == "last.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", last_is_full)
    line = error_line(runner.invoke(app, small_args(ratings_csv, tmp_path / "runs")))
    assert line.endswith("cannot write (No space left on device); kept its first checkpoint; it cannot be "
                         "resumed: free space and train again")
    (run,) = (tmp_path / "runs" / "ml1m").iterdir()
    assert (run / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_stop_during_a_checkpoint_write_is_the_stop_not_a_traceback(tmp_path, monkeypatch, stop):
    """A SIGTERM (SystemExit(143)) or Ctrl-C arriving while torch.save wrote reached the caller as
    torch's RuntimeError "unexpected pos": a stopped run ended with a traceback and exit 1."""
    import builtins

    import torch

    from bindiff.training import checkpoint

    class StopsMidway:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            if self.written > 1000:  # the signal's handler runs during a write
                raise stop(143) if stop is SystemExit else stop()
            self.written += len(data)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.file.__exit__(*exc)

    monkeypatch.setattr(checkpoint, "open", lambda *a, **k: StopsMidway(builtins.open(*a, **k)), raising=False)
    with pytest.raises(stop):
        checkpoint.save_checkpoint(tmp_path / "last.pt", config_yaml="name: x\n", model=torch.nn.Linear(100, 100),
                                   dim=100)
    assert list(tmp_path.iterdir()) == []  # no half-written checkpoint, no temporary


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_stop_landing_in_an_interpreter_callback_still_stops(tmp_path, signum):
    """A signal handled while the interpreter ran a weakref callback (or an import lock's) raised
    there, was printed as "Exception ignored" and dropped: the command ran on to exit 0, and every
    later SIGTERM was ignored."""
    import signal

    script = tmp_path / "stopped.py"
    script.write_text(
        "import os, signal, time, weakref\n"
        # as on a terminal: a runner that ignores SIGINT passes that on to its children, whose Python
        # then raises no KeyboardInterrupt at all
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from bindiff import cli\n"
        "cli._install_stop_handlers()\n"
        "class Obj: pass\n"
        "o = Obj()\n"
        f"ref = weakref.ref(o, lambda r: (os.kill(os.getpid(), signal.{signum}), sum(range(100))))\n"
        "del o\n"
        "for _ in range(400):\n"  # 20 s at most: the stop is sent again from a thread, which a loaded
        "    time.sleep(0.05)\n"  # machine may start late (a 2 s window once ran out under the full suite)
        "print('ran on', flush=True)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert "ran on" not in done.stdout and "Exception ignored" not in done.stderr
    stopped = getattr(signal, signum)
    assert done.returncode in (128 + stopped, -stopped)  # SIGINT's KeyboardInterrupt ends by the signal itself


@pytest.mark.parametrize("where", ["mkdir", "config.yaml"])
def test_a_stop_as_a_run_folder_is_made_leaves_no_folder(tmp_path, monkeypatch, where):
    """Stopped between making the run's folder and writing its config, an empty or config-less folder
    stayed, which `bindiff resume` refused as "not a bindiff run directory"."""
    from bindiff import runs
    from bindiff.config import load_recipe

    config = load_recipe(RECIPE_FOR_STOPS, [f"output.root={tmp_path / 'runs'}"])
    if where == "mkdir":
        made = Path.mkdir

        def mkdir_then_stopped(self, *args, **kwargs):
            made(self, *args, **kwargs)
            if self.name[:1].isdigit():  # the run's own <stamp>-<hash> folder, not a parent on the way
                raise SystemExit(143)  # the handler ran right after the folder was made

        monkeypatch.setattr(Path, "mkdir", mkdir_then_stopped)
    else:
        def stopped(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(runs, "write_text", stopped)
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        runs.create_run_dir(config)
    monkeypatch.undo()
    assert [p for p in (tmp_path / "runs").rglob("*") if p.name.startswith("2")] == []  # no <stamp>-<hash> folder


RECIPE_FOR_STOPS = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


def test_a_stop_as_a_temporary_is_made_leaves_no_temporary(tmp_path, monkeypatch):
    """mkstemp and mkdtemp made the temporary before its name was known to the code that removes it:
    a stop right then left `.training_curve.png.<random>.tmp` or `.out.<random>.partial/` behind."""
    import os

    real_open, real_mkdir = os.open, Path.mkdir

    def open_then_stopped(*args, **kwargs):
        os.close(real_open(*args, **kwargs))
        raise KeyboardInterrupt

    def mkdir_then_stopped(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        if self.name.endswith(".partial"):
            raise SystemExit(143)

    monkeypatch.setattr(os, "open", open_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "curve.png") as tmp:
            tmp.write_bytes(b"never")
    monkeypatch.setattr(os, "open", real_open)
    monkeypatch.setattr(Path, "mkdir", mkdir_then_stopped)
    with pytest.raises(SystemExit):
        with staged_folder(tmp_path / "out"):
            pass
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_job_leaves_no_folder_it_made_to_hold_its_output(tmp_path):
    """`evaluate RUN --out deep/a/b` refused inside the job: the folders made for b's staging go too,
    those that were there stay."""
    (tmp_path / "kept").mkdir()
    with pytest.raises(ValueError, match="refused"):
        with staged_folder(tmp_path / "kept" / "deep" / "a" / "b") as staging:
            (staging / "half.json").write_text("{")
            raise ValueError("refused")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["kept"]
    with staged_folder(tmp_path / "kept" / "deep" / "b") as staging:  # a job that succeeds keeps them
        (staging / "whole.json").write_text("{}")
    assert (tmp_path / "kept" / "deep" / "b" / "whole.json").read_text() == "{}"
