"""Exact resume: a training process killed at a random point and resumed ends like an uninterrupted run.

Also: a finished, edited, busy or tampered run directory is refused with a clear message, and
checkpoint writes are atomic.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.training.checkpoint import load_checkpoint, run_lock, save_checkpoint

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
KILL_SEED = 20260101  # seeds the random kill times, so a failure can be replayed
runner = CliRunner()


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The recipe asks for one thread; give the rest of the session its own setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_ratings(path: Path) -> Path:
    """300 users in two taste groups over 40 items, ratings 1-5."""
    rng = np.random.default_rng(0)
    lines = ["user,item,rating"]
    for u in range(300):
        group = u % 2
        liked = rng.choice(np.arange(group * 20, group * 20 + 20), size=12, replace=False)
        other = rng.choice(np.arange((1 - group) * 20, (1 - group) * 20 + 20), size=2, replace=False)
        lines += [f"u{u},i{item},{rng.integers(4, 6)}" for item in liked]
        lines += [f"u{u},i{item},{rng.integers(1, 3)}" for item in other]
    path.write_text("\n".join(lines) + "\n")
    return path


def overrides(csv: Path, root: Path) -> list[str]:
    # ~30 ms an epoch; dropout on the input exercises torch's default generator.
    return [f"data.dataset={csv}", "data.min_rating=4", "data.rating_col=rating",
            "split.n_valid_users=40", "split.n_test_users=40", "denoiser.params.hidden=[32]",
            "train.epochs=60", "train.patience=30", "train.lr=0.01", "train.batch_size=32", "train.threads=1",
            "eval.metrics=[recall@5, ndcg@20]", "eval.select=ndcg@20", f"output.root={root}",
            "output.progress=false"]


def bindiff(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "bindiff", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def only_run(root: Path) -> Path:
    (run_dir,) = (root / "ml1m").iterdir()
    return run_dir


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def kill_after(proc: subprocess.Popen, delay: float) -> int | None:
    """SIGKILL ``proc`` after ``delay`` seconds; its return code, or None if it had already ended."""
    time.sleep(delay)
    if proc.poll() is not None:
        return None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def assert_same_run(run: Path, reference: Path) -> None:
    for name in ("best.pt", "last.pt"):
        got, want = load_checkpoint(run / "checkpoints" / name), load_checkpoint(reference / "checkpoints" / name)
        assert got["epoch"] == want["epoch"] and got["best"] == want["best"] and got["step"] == want["step"], name
        assert got["model"].keys() == want["model"].keys()
        for key in want["model"]:
            assert torch.equal(got["model"][key], want["model"][key]), (name, key)
        for param, state in want["optimizer"]["state"].items():
            for key, value in state.items():
                assert torch.equal(got["optimizer"]["state"][param][key], value), (name, param, key)
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    assert got["test"] == want["test"] and got["valid"] == want["valid"] and got["checkpoint"] == want["checkpoint"]
    assert got["training"]["best_epoch"] == want["training"]["best_epoch"]
    assert got["training"]["epochs_run"] == want["training"]["epochs_run"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    got, want = (json.loads((d / "history.json").read_text()) for d in (run, reference))
    assert strip(got) == strip(want)
    assert (run / "training_curve.png").is_file()
    assert not list(run.rglob(".*.tmp"))  # no temporary left behind


@pytest.fixture(scope="module")
def reference_and_killed(tmp_path_factory):
    """An uninterrupted run, and a run killed twice at random points and resumed each time."""
    base = tmp_path_factory.mktemp("resume")
    csv = write_ratings(base / "ratings.csv")
    ref_root, victim_root = base / "reference", base / "victim"
    reference = bindiff("train", str(RECIPE), *overrides(csv, ref_root))
    victim = bindiff("train", str(RECIPE), *overrides(csv, victim_root))
    draw = random.Random(KILL_SEED)
    kills = []

    # 1. kill `bindiff train` at a random moment after its first checkpoint
    wait_for(lambda: any(victim_root.glob("ml1m/*/checkpoints/last.pt")), victim)
    run_dir = only_run(victim_root)
    last = run_dir / "checkpoints" / "last.pt"
    assert kill_after(victim, draw.uniform(0.0, 0.8)) == -signal.SIGKILL, "training ended before the kill"
    kills.append(load_checkpoint(last)["epoch"])
    assert not (run_dir / "metrics.json").exists()

    # 2. resume with `bindiff resume`, and kill that too once it has written a checkpoint
    before = last.stat().st_mtime_ns
    resumed = bindiff("resume", str(run_dir))
    wait_for(lambda: last.stat().st_mtime_ns != before, resumed)
    code = kill_after(resumed, draw.uniform(0.0, 0.5))
    if code is not None:
        assert code == -signal.SIGKILL
        kills.append(load_checkpoint(last)["epoch"])

    # 3. finish with `bindiff train RECIPE --resume RUN_DIR` (the same recipe and overrides)
    final = bindiff("train", str(RECIPE), *overrides(csv, victim_root), "--resume", str(run_dir))
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert f"run directory: {run_dir}" in out
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    return only_run(ref_root), run_dir, kills, csv


def test_killed_and_resumed_run_equals_the_uninterrupted_run(reference_and_killed):
    reference, resumed, kills, _ = reference_and_killed
    assert kills and all(epoch >= 1 for epoch in kills)
    assert_same_run(resumed, reference)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_epoch"] == kills[-1]


def test_resume_from_before_the_first_checkpoint(reference_and_killed, tmp_path):
    """Killed during epoch 1 (no last.pt yet) or before the split was saved: starts over identically."""
    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    for name in ("checkpoints", "split"):
        shutil.rmtree(run / name)
    for name in ("metrics.json", "history.json", "training_curve.png"):
        (run / name).unlink()
    (run / ".history.json.abc123.tmp").write_text("{ truncated")  # what a kill mid-write leaves
    result = runner.invoke(app, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert_same_run(run, reference)
    assert "resumed_from_epoch" not in json.loads((run / "metrics.json").read_text())["training"]


def test_resume_after_the_last_epoch_only_finishes(reference_and_killed, tmp_path):
    """Killed after the last checkpoint but before metrics.json: no epoch is trained again."""
    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    for name in ("metrics.json", "history.json", "training_curve.png"):
        (run / name).unlink()
    stamp = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = runner.invoke(app, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    assert_same_run(run, reference)


def test_last_checkpoint_holds_the_whole_training_state(reference_and_killed):
    reference, _, _, _ = reference_and_killed
    last = torch.load(reference / "checkpoints" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "step", "best", "epochs_since_best", "done",
            "history", "rng", "seconds"} <= set(last)
    assert set(last["rng"]) >= {"order", "noise", "torch"} and not {"numpy", "python"} & set(last["rng"])
    assert last["done"] is True and len(last["history"]) == last["epoch"]
    assert last["epochs_since_best"] == last["epoch"] - last["best"]["epoch"]


def expect_refusal(args: list[str], *fragments: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def test_a_finished_run_is_not_resumed(reference_and_killed):
    reference, _, _, _ = reference_and_killed
    before = (reference / "metrics.json").read_bytes()
    expect_refusal(["resume", str(reference)], str(reference), "the run has finished")
    assert (reference / "metrics.json").read_bytes() == before


def test_resume_with_a_different_recipe_is_refused(reference_and_killed, tmp_path):
    reference, _, _, csv = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    (run / "metrics.json").unlink()
    args = ["train", str(RECIPE), *overrides(csv, tmp_path), "train.lr=0.02", "--resume", str(run)]
    expect_refusal(args, "key 'train.lr' is 0.02 but the run being resumed has 0.01", "config.yaml")
    expect_refusal(["resume", str(tmp_path / "nowhere")], "nowhere: not a bindiff run directory")


def test_resume_refuses_a_run_another_process_is_training(reference_and_killed, tmp_path):
    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    (run / "metrics.json").unlink()
    with run_lock(run):
        expect_refusal(["resume", str(run)], "another bindiff process is training in this run directory")


def test_resume_refuses_unsafe_or_damaged_checkpoints(reference_and_killed, tmp_path):
    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    (run / "metrics.json").unlink()
    last = run / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    torch.save({**payload, "extra": Path("/etc/passwd")}, last)  # a pickled object
    expect_refusal(["resume", str(run)], "last.pt: refused", "pathlib")
    last.write_bytes((reference / "checkpoints" / "last.pt").read_bytes()[:1000])  # truncated
    expect_refusal(["resume", str(run)], "last.pt: not a readable checkpoint")
    torch.save({k: v for k, v in payload.items() if k != "rng"}, last)  # from an older bindiff
    expect_refusal(["resume", str(run)], "last.pt: cannot resume", "'rng'")
    best = torch.load(reference / "checkpoints" / "best.pt", weights_only=True)
    name = next(iter(best["model"]))
    best["model"][name] = best["model"][name][..., :-1]  # a weight cut short: edited, or another model's
    torch.save(best, run / "checkpoints" / "best.pt")
    expect_refusal(["evaluate", str(run)], "best.pt: does not fit the model its config describes", name)
    (run / "checkpoints" / "best.pt").write_bytes(b"")
    expect_refusal(["evaluate", str(run)], "best.pt: not a readable checkpoint")


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "last.pt"
    save_checkpoint(path, config_yaml="name: x\n", model=model, dim=3, epoch=1)
    good = path.read_bytes()

    def crash_mid_write(obj, f, *args, **kwargs):
        f.write(good[: len(good) // 3])  # part of a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, config_yaml="name: x\n", model=model, dim=3, epoch=2)
    assert path.read_bytes() == good and load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_metrics_and_split_writes_are_atomic(reference_and_killed, tmp_path, monkeypatch):
    import scipy.sparse as sp

    from bindiff.adapters.interactions import Split
    from bindiff.files import write_json

    target = tmp_path / "metrics.json"
    write_json(target, {"test": 1})

    def crash_mid_write(self, text, *args, **kwargs):
        with open(self, "w") as handle:
            handle.write(text[:3])
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_text", crash_mid_write)
        with pytest.raises(KeyboardInterrupt):
            write_json(target, {"test": 2})
    assert json.loads(target.read_text()) == {"test": 1} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    reference, _, _, _ = reference_and_killed
    split = Split.load(reference / "split")
    folder = tmp_path / "split"
    real_save, calls = sp.save_npz, []

    def crash_on_third(handle, matrix, *args, **kwargs):
        calls.append(1)
        real_save(handle, matrix, *args, **kwargs)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sp, "save_npz", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        split.save(folder)
    assert not (folder / "split.json").exists()  # an incomplete split is never taken for a split
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_an_edited_config_with_one_line(reference_and_killed, tmp_path):
    """The refusals inside the resume itself (config.yaml edited after the start) exit 2, no NameError."""
    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    (run / "metrics.json").unlink()
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.01", "lr: 0.03"))
    expect_refusal(["resume", str(run)], "its config differs from", "config.yaml")


def test_a_run_written_before_a_key_existed_resumes(reference_and_killed, tmp_path):
    """An older bindiff wrote config.yaml and last.pt without output.logger: both readings fill it
    in alike, so the run resumes (the texts differ, and comparing them refused it)."""
    import yaml

    reference, _, _, _ = reference_and_killed
    run = tmp_path / reference.name
    shutil.copytree(reference, run)
    for name in ("metrics.json", "history.json", "training_curve.png"):
        (run / name).unlink()

    def older(text: str) -> str:
        config = yaml.safe_load(text)
        del config["output"]["logger"]
        return yaml.safe_dump(config, sort_keys=False)  # another layout too: block style

    (run / "config.yaml").write_text(older((run / "config.yaml").read_text()))
    last = run / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    payload["config_yaml"] = older(payload["config_yaml"])
    torch.save(payload, last)
    result = runner.invoke(app, ["resume", str(run)])
    assert result.exit_code == 0, result.output
    assert_same_run(run, reference)
