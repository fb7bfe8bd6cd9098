"""Mutation pass over the training layer and the core's networks: tests that kill the survivors.

Each test names in its docstring the mutant(s) it kills, as ``file:line before → after``, and compares
with a truth of its own: a hand value, a brute force, a tiny reference model written here, a round trip.

Equivalent mutants of the pass (no test can tell them from the code, and none is written):

- count.py:20 ``_SHIFT_RANGE = 60.0`` → ``6.0``: the bracket is widened to hold
  [logit(k/D) − max ℓ, logit(k/D) − min ℓ], where the root lies, whatever the range, and the number of
  halvings grows with the bracket's width over 2·range, so the final bracket is narrower (≤ 12·2⁻⁶⁰),
  not wider: the same shift to float64's resolution.
- count.py:49 ``.ceil()`` → ``.floor()``: at most one halving fewer, a final bracket of ≤ 240·2⁻⁶⁰ ≈ 2e-16
  instead of 1e-16; the shift, and the count Σ σ it reaches, agree to float64 rounding.
- count.py:55 the bracket's midpoint → its lower end: they differ by half the final bracket, ≤ 1e-16, the
  same rounding-level difference.
- schedules.py:37 ``alpha_bar = f / f[0]`` → ``f``: β_t = 1 − ᾱ_t / ᾱ_{t−1} is a ratio, in which f(0)
  cancels.
- schedules.py:102 ``int(v) if isinstance(v, numbers.Integral) else float(v)`` → ``float(v)``: no schedule
  takes an integer parameter; each uses its parameters as floats (linspace, sqrt, full), so 1 and 1.0 give
  the same table.

Not equivalent but killed by an existing test outside the files the pass ran for trainer.py:
trainer.py:127 ``loss_sum = workers.sum(loss_sum)`` → removed is the identity in one process;
``test_distributed.py::test_two_gloo_processes_train_as_one_process`` fails on it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.config import RecipeError, load_recipe
from bindiff.core import LossOutput
from bindiff.training.checkpoint import load_checkpoint
from bindiff.training.trainer import fit

CPU = torch.device("cpu")


# -- the training loop, driven with a probe model ----------------------------------------------------

def _codes(x0: torch.Tensor) -> list[int]:
    """Each row's bits read as a binary number: which training row it is."""
    return (x0 * 2 ** torch.arange(x0.shape[1], dtype=x0.dtype)).sum(1).long().tolist()


def _data(n: int, dim: int = 5) -> sp.csr_matrix:
    """Row i holds the bits of i: every row tells which it is."""
    bits = ((np.arange(n)[:, None] >> np.arange(dim)[None, :]) & 1).astype(np.float32)
    return sp.csr_matrix(bits)


class _Probe(torch.nn.Module):
    """A model that records what the trainer shows it at every step; its loss pulls its weights
    toward the batch mean (or is the constant ``fixed`` per row)."""

    def __init__(self, dim: int = 5, fixed: float | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(-1.0, 1.0, dim))
        self.fixed = fixed
        self.rows: list[list[int]] = []
        self.training_flags: list[bool] = []
        self.stale_grads: list[bool] = []
        self.matmul_dtypes: list[torch.dtype] = []
        self.first_noise_state = None

    def forward(self, x0, generator=None, cond=None):
        self.rows.append(_codes(x0))
        self.training_flags.append(self.training)
        self.stale_grads.append(self.weight.grad is not None)
        self.matmul_dtypes.append((x0 @ torch.ones(x0.shape[1], 2)).dtype)
        if self.first_noise_state is None and generator is not None:
            self.first_noise_state = generator.get_state().clone()
        if self.fixed is not None:
            loss = self.weight.sum() * 0.0 + self.fixed
        else:
            loss = ((self.weight - x0.mean(0)) ** 2).sum()
        return LossOutput(loss=loss, terms={"loss": loss.expand(len(x0))}, t=torch.ones(len(x0), dtype=torch.long))


class _SGD:
    """Plain gradient descent with the optimiser interface ``fit`` uses (no torch.optim: importing it
    costs seconds the first time)."""

    def __init__(self, params, lr: float = 0.05):
        self.params, self.lr = list(params), lr

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p -= self.lr * p.grad

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def evaluated(self):
        return contextlib.nullcontext()


def _config(*extra: str) -> dict:
    return load_recipe(None, ["train.epochs=3", "train.batch_size=4", "train.patience=10", "train.lr=0.05",
                              "eval.select=ndcg@10", "output.progress=false", "seed=7", *extra])


def _fit(tmp_path, model, data, values=None, config=None, **kwargs):
    """``fit`` with a validation returning ``values`` in turn (default 0.1, 0.2, ...); also what it saw."""
    config = config or _config()
    seen = []

    def validate():
        seen.append(model.training)
        return {"ndcg@10": values[len(seen) - 1] if values is not None else 0.1 * len(seen)}

    optimizer = _SGD(model.parameters())
    result = fit(model, optimizer, data, config=config, config_yaml="x", validate=validate, checkpoint_dir=tmp_path,
                 device=CPU, **kwargs)
    return result, seen


def test_each_epoch_visits_every_row_once_in_the_seeded_order_with_fresh_gradients(tmp_path):
    """Kills trainer.py:109 ``manual_seed(config["seed"])`` → ``seed + 2`` (another data order),
    trainer.py:110 ``manual_seed(config["seed"] + 1)`` → ``seed`` (noise stream = order stream),
    trainer.py:192 ``range(0, n_rows, …)`` → ``range(0, n_rows - 1, …)`` (last row dropped),
    trainer.py:194 ``order[start:start + batch_size]`` → ``… + batch_size - 1``,
    trainer.py:188 ``model.train()`` → removed (epochs after the first validation train in eval mode),
    trainer.py:193 ``optimizer.zero_grad(set_to_none=True)`` → removed (gradients accumulate),
    trainer.py:195 ``enabled=low_precision is not None`` → ``enabled=True`` (bf16 autocast on a CPU),
    trainer.py:199 ``state.step += 1`` → removed (last.pt's step count)."""
    model, data = _Probe(), _data(9)
    _, seen = _fit(tmp_path, model, data)
    order = torch.Generator().manual_seed(7)  # the recipe seed: the data order's generator
    assert len(model.rows) == 3 * 3  # 9 rows in batches of 4: 3 steps an epoch, 3 epochs
    for epoch in range(3):
        want = torch.randperm(9, generator=order).tolist()
        got = [code for rows in model.rows[3 * epoch:3 * epoch + 3] for code in rows]
        assert got == want, epoch
    assert all(model.training_flags) and not any(model.stale_grads)
    assert set(model.matmul_dtypes) == {torch.float32}
    assert seen == [False, False, False]  # validated in eval mode, once per epoch
    # the diffusion noise draws from a stream of its own, not a copy of the data order's
    assert not torch.equal(model.first_noise_state, torch.Generator().manual_seed(7).get_state())
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 9


def test_a_tie_keeps_the_earliest_best_epoch_and_patience_counts_epochs_since_it(tmp_path):
    """Kills trainer.py:141 ``value > state.best_value`` → ``>=`` (a tie moves the best epoch on and
    the run never stops early), trainer.py:145 ``>= t_cfg["patience"]`` → ``>``."""
    model, data = _Probe(), _data(8)
    config = _config("train.epochs=8", "train.patience=2")
    result, seen = _fit(tmp_path, model, data, values=[0.5] * 8, config=config)
    assert result.best_epoch == 1 and result.epochs_run == 3 and len(seen) == 3  # epochs 2 and 3 do not improve
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1


def test_best_checkpoint_history_and_callbacks_follow_the_validation(tmp_path):
    """Kills trainer.py:150 ``_save_epoch(…, improved, …)`` → ``True`` (best.pt rewritten every epoch),
    trainer.py:225 ``if improved`` → ``if not improved``, trainer.py:144 best epoch ``state.epoch`` →
    ``state.epoch - 1``, trainer.py:166 ``best_epoch=state.best_epoch`` → ``state.epoch``,
    trainer.py:221 ``"epoch": state.best_epoch`` → ``state.epoch``, trainer.py:222
    ``epochs_since_best=…`` → ``0`` and ``done=state.done`` → ``False``, trainer.py:148 history
    ``seconds`` → ``0.0``, trainer.py:154 the history file not written, trainer.py:156
    ``on_epoch(state.history[-1])`` → ``history[0]``."""
    model, data = _Probe(), _data(8)
    rows = []
    history_path = tmp_path / "history.json"
    result, _ = _fit(tmp_path, model, data, values=[0.2, 0.5, 0.4, 0.3], config=_config("train.epochs=4"),
                     history_path=history_path, on_epoch=rows.append)
    assert result.best_epoch == 2 and result.best_value == 0.5 and result.epochs_run == 4
    best, last = load_checkpoint(tmp_path / "best.pt"), load_checkpoint(tmp_path / "last.pt")
    assert best["epoch"] == 2 and best["best"]["epoch"] == 2
    assert last["epoch"] == 4 and last["best"] == {"metric": "ndcg@10", "value": 0.5, "epoch": 2}
    assert last["epochs_since_best"] == 2 and last["done"] is True
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert [row["valid_ndcg@10"] for row in rows] == [0.2, 0.5, 0.4, 0.3]
    assert json.loads(history_path.read_text()) == json.loads(json.dumps(result.history))
    assert all(row["seconds"] > 0 for row in result.history)
    assert [row["seconds"] for row in result.history] == sorted(row["seconds"] for row in result.history)


def test_train_loss_is_per_row_and_one_line_per_epoch_is_logged_when_piped(tmp_path, capsys):
    """Kills trainer.py:146 ``"train_loss": loss_sum / train.shape[0]`` → ``loss_sum``,
    trainer.py:159 ``if piped`` → ``if not piped``, trainer.py:160 the line's ``train_loss`` not per
    row, trainer.py:161 ``(epoch {state.best_epoch})`` → ``(epoch {state.epoch})``."""
    model, data = _Probe(fixed=0.25), _data(9)
    config = _config("output.progress=null")  # null: plain lines where stderr is not a terminal (captured here)
    result, _ = _fit(tmp_path, model, data, values=[0.3, 0.1, 0.2], config=config)
    assert [row["train_loss"] for row in result.history] == pytest.approx([0.25] * 3)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3
    for k, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {k}/3  train_loss 0.2500  valid ndcg@10 ")
        assert "best 0.3000 (epoch 1)" in line


class _EnsembleProbe(_Probe):
    """A probe that trains a 3-member ensemble: the trainer reads its ``denoiser``."""

    def __init__(self, fixed=None):
        super().__init__(fixed=fixed)
        from bindiff.core import DenoiserEnsemble
        from bindiff.core.denoisers import MLPDenoiser

        self.denoiser = DenoiserEnsemble([MLPDenoiser(5, hidden=[2]) for _ in range(3)])
        self.denoiser.requires_grad_(False)


def test_every_ensemble_member_passes_over_every_row_in_an_order_of_its_own(tmp_path):
    """Kills trainer.py:190 M orders → one order repeated M times, trainer.py:207 ``ensemble_size``
    → always 1, trainer.py:200 ``rows_loss / members`` → ``rows_loss`` (train_loss M times too big)."""
    model, data = _EnsembleProbe(fixed=0.25), _data(8)
    result, _ = _fit(tmp_path, model, data, config=_config("train.epochs=1"))
    order = torch.Generator().manual_seed(7)
    want = [torch.randperm(8, generator=order).tolist() for _ in range(3)]
    members = [[], [], []]
    for rows in model.rows:  # each step: 3 blocks of 4 rows, block m for member m
        assert len(rows) == 12
        for m in range(3):
            members[m] += rows[4 * m:4 * m + 4]
    assert members == want  # the first order is the one a single model draws
    assert len({tuple(m) for m in members}) == 3
    assert result.history[0]["train_loss"] == pytest.approx(0.25)


class _Interrupted(Exception):
    pass


def test_a_resumed_run_continues_the_clock_the_epoch_count_and_the_checkpoint(tmp_path, capsys):
    """Kills trainer.py:113 ``resumed_from = state.epoch`` → ``0``, trainer.py:118 ``… - state.seconds``
    → dropped (the resumed run's clock restarts), trainer.py:167 ``epochs_run=len(state.history)``
    → ``state.epoch - resumed_from``, trainer.py:167 ``seconds`` less the earlier time,
    trainer.py:119 the bar's ``initial=state.epoch`` → ``0``, trainer.py:63 ``step`` → ``0``,
    trainer.py:64 ``best_epoch`` read from ``epoch``, trainer.py:66 ``history`` → ``[]``."""
    data, values = _data(8), [0.5, 0.3, 0.4]
    whole, _ = _fit(tmp_path / "whole", _Probe(), data, values=values)

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        _fit(tmp_path / "cut", _Probe(), data, values=values, on_epoch=stop_after_two)
    payload = load_checkpoint(tmp_path / "cut" / "last.pt")
    payload["seconds"] = 1000.0  # as if the first process had trained for a long time
    capsys.readouterr()
    model = _Probe()
    resumed, seen = _fit(tmp_path / "cut", model, data, values=values[2:],
                         config=_config("output.progress=true"), resume=payload)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 3 and len(seen) == 1
    assert resumed.seconds >= 1000.0 and resumed.history[-1]["seconds"] >= 1000.0
    assert resumed.best_epoch == whole.best_epoch == 1
    assert [row["valid_ndcg@10"] for row in resumed.history] == values
    assert torch.equal(model.weight.detach(), load_checkpoint(tmp_path / "whole" / "last.pt")["model"]["weight"])
    steps = [load_checkpoint(tmp_path / run / "last.pt")["step"] for run in ("cut", "whole")]
    assert steps[0] == steps[1] == 3 * 2  # 8 rows in batches of 4, three epochs
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("3/3" in line for line in bar) and not any("1/3" in line for line in bar)


def test_a_run_stopped_early_is_not_trained_further_when_resumed(tmp_path):
    """Kills trainer.py:65 ``done=bool(payload["done"])`` → ``False`` (a run that stopped on patience
    trains on when resumed)."""
    data = _data(8)
    config = _config("train.epochs=6", "train.patience=1")
    first, _ = _fit(tmp_path, _Probe(), data, values=[0.5, 0.1, 0.1], config=config)
    assert first.epochs_run == 2
    again, seen = _fit(tmp_path, _Probe(), data, values=[0.9] * 6, config=config,
                       resume=load_checkpoint(tmp_path / "last.pt"))
    assert seen == [] and again.epochs_run == 2 and again.best_epoch == 1


def test_a_run_resumed_with_its_epochs_lowered_to_where_it_stands_trains_no_further(tmp_path):
    """Kills trainer.py:123 ``state.epoch < t_cfg["epochs"]`` → ``<=`` (reachable when a library caller
    resumes an unfinished run with ``train.epochs`` lowered to the epoch it reached: one epoch more)."""
    data, values = _data(8), [0.1, 0.2, 0.3, 0.4]

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        _fit(tmp_path, _Probe(), data, values=values, config=_config("train.epochs=4"), on_epoch=stop_after_two)
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["done"] is False
    result, seen = _fit(tmp_path, _Probe(), data, values=values[2:], config=_config("train.epochs=2"), resume=payload)
    assert seen == [] and result.epochs_run == 2


def test_the_trainer_refuses_an_empty_matrix_a_short_condition_and_a_diverged_loss(tmp_path):
    """Kills trainer.py:103 ``train.shape[0] == 0`` → ``< 0``, trainer.py:105 ``len(condition) !=
    train.shape[0]`` → ``>``, trainer.py:128 ``not math.isfinite(loss_sum)`` → ``math.isnan``."""
    with pytest.raises(ValueError, match="no users"):
        _fit(tmp_path, _Probe(), sp.csr_matrix((0, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="one row per training row"):
        _fit(tmp_path, _Probe(), _data(8), condition=np.zeros((7, 5), dtype=np.float32))
    with pytest.raises(RecipeError, match="diverged"):
        _fit(tmp_path, _Probe(fixed=math.inf), _data(8))


def test_bf16_precision_autocasts_on_any_device():
    """Kills trainer.py:72 ``precision == "bf16" or …`` → ``and`` (bf16 asked for, float32 given)."""
    from bindiff.training.trainer import autocast_dtype

    assert autocast_dtype({"train": {"precision": "bf16"}}, CPU) is torch.bfloat16
    assert autocast_dtype({"train": {"precision": "fp32"}}, CPU) is None
    assert autocast_dtype({"train": {"precision": "auto"}}, CPU) is None


# -- one-process parts of the distributed layer -----------------------------------------------------

def test_one_process_workers_and_the_torchrun_environment(monkeypatch, tmp_path):
    """Kills distributed.py:45 ``self.rank == 0`` → ``<= 1``, distributed.py:68 ``return [value]`` →
    ``value``, distributed.py:91 ``> 1`` → ``>= 1``, distributed.py:95 ``== 0`` → ``!= 0``,
    distributed.py:107 ``bool(os.environ.get(…))`` → ``False``, distributed.py:113
    ``note and is_main_process()`` → ``note``, distributed.py:222 ``return SINGLE, device_name`` →
    ``"cpu"``."""
    from bindiff.training import distributed as d

    assert d.Workers(rank=1, world=2).is_main is False and d.Workers(rank=0, world=2).is_main is True
    assert d.SINGLE.gather({"a": 1}) == [{"a": 1}] and d.SINGLE.sum(2.5) == 2.5 and d.SINGLE.broadcast("x") == "x"
    for world, launched in (("1", False), ("2", True)):
        monkeypatch.setenv("WORLD_SIZE", world)
        assert d.launched_by_torchrun() is launched
    monkeypatch.delenv("WORLD_SIZE")
    assert d.start("cuda:1") == (d.SINGLE, "cuda:1")  # not under torchrun: the recipe's device as it was
    monkeypatch.delenv(d._RUN_NOTE, raising=False)
    assert d.launcher_names_the_resume() is False
    note = tmp_path / "note"
    monkeypatch.setenv(d._RUN_NOTE, str(note))
    assert d.launcher_names_the_resume() is True
    monkeypatch.setenv("RANK", "1")
    assert d.is_main_process() is False
    d.tell_launcher("/runs/a")
    assert not note.exists()  # only rank 0 names the run
    monkeypatch.setenv("RANK", "0")
    assert d.is_main_process() is True
    d.tell_launcher("/runs/a")
    assert note.read_text() == "/runs/a"


def test_the_stopped_launcher_names_the_resume_of_an_unfinished_run_only(tmp_path, capsys):
    """Kills distributed.py:189 ``and not os.path.exists(…metrics.json)`` → ``and os.path.exists``."""
    from bindiff.training.distributed import _name_the_resume

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 0\n")
    note = tmp_path / "note"
    note.write_text(str(run))
    _name_the_resume(str(note), 2)
    assert capsys.readouterr().err == f"stopped: `bindiff resume {run} --nproc 2` continues this run\n"
    (run / "metrics.json").write_text("{}")
    _name_the_resume(str(note), 2)
    assert capsys.readouterr().err == ""


class _FakeTorchrun:
    """Stands in for torchrun's process: records its environment; ``stop`` sends this process a
    signal while it is waited for, as a ^C would."""

    last, stop = None, False

    def __init__(self, command, env, start_new_session, preexec_fn):
        self.env, self.signals, self.done = env, [], False
        _FakeTorchrun.last = self

    def wait(self, timeout=None):
        import signal

        if _FakeTorchrun.stop and not self.done:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by launch: forwarded to this child
        self.done = True
        return 0

    def poll(self):
        return 0 if self.done else None

    def send_signal(self, number):
        self.signals.append(number)


@pytest.mark.skipif(sys.platform == "win32", reason="sends this process SIGTERM, which Windows does not handle")
def test_launch_shares_the_cores_and_returns_the_signals_exit_code(monkeypatch):
    """Kills distributed.py:133 ``max(1, cores // nproc)`` → ``cores`` (each worker takes every core),
    distributed.py:166 ``128 + received[0]`` → ``code`` (a run stopped by SIGTERM exits 0)."""
    import signal
    import subprocess

    from bindiff.training import distributed as d

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(subprocess, "Popen", _FakeTorchrun)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for nproc in (1, 2, 64):
        _FakeTorchrun.stop = False
        assert d.launch(nproc, ["train", "x.yaml"]) == 0
        assert _FakeTorchrun.last.env["OMP_NUM_THREADS"] == str(max(1, cores // nproc))
    _FakeTorchrun.stop = True
    assert d.launch(2, ["train", "x.yaml"]) == 128 + signal.SIGTERM
    assert _FakeTorchrun.last.signals == [signal.SIGTERM]


def test_several_processes_need_as_many_gpus(monkeypatch):
    """Kills distributed.py:209 ``nproc > device_count()`` → ``nproc > device_count() + 1``,
    devices.py:22 ``… and not torch.cuda.is_available()`` → ``and False``, devices.py:24
    ``device.index >= device_count()`` → ``>``, devices.py:17 ``auto`` → always ``cpu``,
    devices.py:16 ``name == "auto"`` → never."""
    from bindiff.training.devices import resolve_device
    from bindiff.training.distributed import check_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(RecipeError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    assert check_devices("cuda", 2) == torch.device("cuda")
    with pytest.raises(RecipeError, match="3 processes take one GPU each"):
        check_devices("cuda", 3)


def test_seeding_device_of_and_physical_memory():
    """Kills devices.py:33 ``manual_seed(seed)`` → ``seed + 1``, devices.py:41
    ``next(model.parameters(), None)`` → ``None`` and devices.py:44 the device test inverted (a model
    on another device read as on the CPU), devices.py:50 pages × page size → pages."""
    from bindiff.training.devices import device_of, physical_memory_bytes, seed_training

    seed_training(11, CPU)
    assert torch.equal(torch.rand(4), torch.rand(4, generator=torch.Generator().manual_seed(11)))
    on_meta = torch.nn.Linear(2, 2, device="meta")
    assert device_of(on_meta) == torch.device("meta")
    buffers_only = torch.nn.Module()
    buffers_only.register_buffer("counts", torch.zeros(2, device="meta"))
    assert device_of(buffers_only) == torch.device("meta") and device_of(torch.nn.Module()) == CPU
    if os.path.exists("/proc/meminfo"):  # Linux: the kernel's own count of the memory
        with open("/proc/meminfo") as file:
            total = int(next(line for line in file if line.startswith("MemTotal:")).split()[1]) * 1024
        assert 0.8 < physical_memory_bytes() / total < 1.25


def test_seeding_for_a_gpu_seeds_that_gpus_generator_only(monkeypatch):
    """Kills devices.py:34 ``if device.type == "cuda"`` → never (training on a GPU: dropout and
    initialisation there unseeded). No GPU needed: torch.cuda's seeding is recorded."""
    from bindiff.training.devices import seed_training

    current, calls = [None], []

    @contextlib.contextmanager
    def on(device):
        current[0] = device
        yield
        current[0] = None

    monkeypatch.setattr(torch.cuda, "device", on)
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append((seed, current[0])))
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append((seed, "every GPU")))
    seed_training(5, torch.device("cuda:1"))
    assert calls == [(5, torch.device("cuda:1"))]
    seed_training(5, CPU)
    assert calls == [(5, torch.device("cuda:1"))]


def test_the_tensorboard_logger_writes_each_number_under_its_name_at_the_epoch(monkeypatch, tmp_path):
    """Kills loggers.py:40 ``name != "epoch" and`` → dropped (the epoch logged as a scalar),
    loggers.py:41 ``name.replace("valid_", "valid/", 1)`` → ``name``, ``int(row["epoch"])`` → ``0``,
    loggers.py:42 ``flush()`` → removed, loggers.py:53 ``"tensorboard"`` → ``"logs"``, loggers.py:50
    ``== "none"`` → ``!= "none"``."""
    from bindiff.training import loggers

    class Writer:
        def __init__(self, log_dir):
            self.log_dir, self.scalars, self.flushes = log_dir, [], 0

        def add_scalar(self, name, value, step):
            self.scalars.append((name, value, step))

        def flush(self):
            self.flushes += 1

        def close(self):
            pass

    monkeypatch.setattr(loggers, "_summary_writer", Writer)
    monkeypatch.setattr(loggers, "check_logger", lambda config: None)  # no tensorboard package needed
    assert loggers.open_logger({"output": {"logger": "none"}}, tmp_path) is None
    logger = loggers.open_logger({"output": {"logger": "tensorboard"}}, tmp_path)
    assert logger.writer.log_dir == tmp_path / "tensorboard"
    logger({"epoch": 3, "train_loss": 0.5, "valid_ndcg@10": 0.25, "valid_users": 7, "note": "x"})
    assert logger.writer.scalars == [("train_loss", 0.5, 3), ("valid/ndcg@10", 0.25, 3), ("valid/users", 7.0, 3)]
    assert logger.writer.flushes == 1


def test_asking_for_tensorboard_without_it_is_one_recipe_error(monkeypatch, tmp_path):
    """Kills loggers.py:23 ``!= "tensorboard"`` → ``==``, loggers.py:52 ``check_logger(config)`` →
    removed (an ImportError traceback instead of the recipe error)."""
    import builtins

    from bindiff.training import loggers

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.split(".")[0] == "tensorboard" or name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    loggers.check_logger({"output": {"logger": "none"}})
    with pytest.raises(RecipeError, match="output.logger"):
        loggers.open_logger({"output": {"logger": "tensorboard"}}, tmp_path)
    assert not (tmp_path / "tensorboard").exists()


# -- dropout that can be drawn for a whole batch ------------------------------------------------------

def test_sharded_dropout_is_nn_dropout_in_eval_mode_at_rate_0_and_outside_its_block():
    """Kills dropout.py:27 ``… or not self.training`` → dropped (an evaluated shard still drops),
    ``… or self.p == 0`` → dropped (rate 0 draws numbers nn.Dropout does not, so N processes and one
    part ways), dropout.py:47 ``layer.rows = None`` → left set after the block, dropout.py:30
    ``x.shape[0] != hi - lo`` → ``>`` (one row for a shard of two broadcasts to two rows)."""
    from bindiff.core.dropout import ShardableDropout, batch_rows

    x = torch.arange(1.0, 13.0).reshape(4, 3)
    layer = ShardableDropout(0.5)
    layer.rows = (1, 3, 4)
    layer.eval()
    assert torch.equal(layer(x[1:3]), x[1:3])
    layer.train()
    with pytest.raises(ValueError, match="dropout shard is rows 1:3 of 4 but the input has 1 rows"):
        layer(x[:1])
    free = ShardableDropout(0.0)
    free.rows = (1, 3, 4)
    before = torch.get_rng_state()
    assert torch.equal(free(x[1:3]), x[1:3])
    after_shard = torch.get_rng_state()
    torch.set_rng_state(before)
    torch.nn.Dropout(0.0).train()(x)
    assert torch.equal(after_shard, torch.get_rng_state())  # as many draws as nn.Dropout: none
    net = torch.nn.Sequential(ShardableDropout(0.5))
    with batch_rows(net, 0, 2, 4):
        net(x[:2])
    torch.manual_seed(3)
    got = net(x)  # after the block: nn.Dropout over the whole input
    torch.manual_seed(3)
    assert torch.equal(got, torch.nn.Dropout(0.5).train()(x))


# -- denoisers -----------------------------------------------------------------------------------------

def test_sinusoidal_embedding_by_hand():
    """Kills denoisers.py:33 ``/ max(half, 1)`` → ``/ max(half - 1, 1)`` and ``log(10000)`` →
    ``log(1000)``, denoisers.py:35 ``[sin, cos]`` → ``[cos, sin]``, denoisers.py:36 the odd column
    padded first."""
    from bindiff.core.denoisers import sinusoidal_embedding

    t = torch.tensor([0, 3, 50])
    got = sinusoidal_embedding(t, 7).double()
    freqs = [10000.0 ** (-k / 3) for k in range(3)]  # 1, 10000^(-1/3), 10000^(-2/3)
    want = torch.tensor([[math.sin(s * f) for f in freqs] + [math.cos(s * f) for f in freqs] + [0.0]
                         for s in (0.0, 3.0, 50.0)], dtype=torch.float64)
    assert torch.allclose(got, want, atol=1e-5)


def _mlp_by_hand(net, x, t, time_dim):
    """The MLP's eval-mode forward written out: l2 input norm, a time projection added to the first
    hidden layer, the activation, the output layer."""
    h = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) if net.input_norm == "l2" else x
    for i, layer in enumerate(net.layers):
        h = h @ layer.weight.T + layer.bias
        if i == 0 and time_dim:
            half = time_dim // 2
            freqs = torch.tensor([10000.0 ** (-k / half) for k in range(half)])
            emb = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], dim=1)
            h = h + emb @ net.time_proj.weight.T + net.time_proj.bias
        h = torch.tanh(h)
    return h @ net.out.weight.T + net.out.bias


def test_the_mlp_by_hand_and_its_dropouts_where_they_belong():
    """Kills denoisers.py:78 ``input_norm == "l2"`` → never, denoisers.py:79 ``normalize(dim=-1)`` →
    ``dim=0``, denoisers.py:83 time projection added after the last hidden layer,
    denoisers.py:85 dropout after the last hidden layer too (``< len(self.layers)``) or never
    (``< 0``), denoisers.py:68 and :72 ``dropout``/``input_dropout`` swapped, denoisers.py:80 input
    dropout not applied, denoisers.py:74 ``time_dim > 0`` → ``>= 0`` (a time projection, and a bias,
    in RecFusion's time-blind network)."""
    from bindiff.core.denoisers import MLPDenoiser

    torch.manual_seed(0)
    x, t = (torch.rand(3, 6) < 0.5).float(), torch.tensor([1, 4, 9])
    for hidden, norm, time_dim in (([5, 4], "l2", 4), ([5], "none", 0)):
        net = MLPDenoiser(6, hidden=hidden, input_norm=norm, time_dim=time_dim).eval()
        assert torch.allclose(net(x, t), _mlp_by_hand(net, x, t, time_dim), atol=1e-6)
    plain = MLPDenoiser(6, hidden=[5])
    assert sum(p.numel() for p in plain.parameters()) == 6 * 5 + 5 + 5 * 6 + 6  # no time projection at time_dim 0
    ones = torch.ones(2, 6)
    one_layer = MLPDenoiser(6, hidden=[5], dropout=0.9).train()  # dropout acts between hidden layers only
    assert torch.equal(one_layer(ones, t[:2]), one_layer(ones, t[:2]))
    deep = MLPDenoiser(6, hidden=[5, 5], dropout=0.9).train()
    assert not torch.equal(deep(ones, t[:2]), deep(ones, t[:2]))
    dropped_input = MLPDenoiser(6, hidden=[5, 5], input_dropout=0.9).train()
    assert not torch.equal(dropped_input(ones, t[:2]), dropped_input(ones, t[:2]))
    assert torch.equal(dropped_input(torch.zeros(2, 6), t[:2]), dropped_input(torch.zeros(2, 6), t[:2]))


def test_an_ensembles_blocks_and_its_mean_probability_by_hand():
    """Kills denoisers.py:120 each member's block of ``t``/``cond``/``x_t`` → the first block,
    denoisers.py:137 ``logsigmoid(-logits)`` → ``logsigmoid(logits)``, denoisers.py:138 the mean
    probability's logit → the mean logit, denoisers.py:105 ``len(members) < 2`` → ``< 1``,
    denoisers.py:108 ``len(dims) != 1`` → ``> 2``, denoisers.py:116 the equal-blocks check dropped."""
    from bindiff.core import DenoiserEnsemble

    class Member(torch.nn.Module):
        def __init__(self, dim, scale):
            super().__init__()
            self.dim, self.scale = dim, scale

        def forward(self, x, t, cond=None):
            return self.scale * (x + t[:, None].float() + (0 if cond is None else cond))

    members = [Member(3, 1.0), Member(3, -2.0)]
    ensemble = DenoiserEnsemble(members)
    x, t, cond = torch.arange(12.0).reshape(4, 3) / 10, torch.tensor([1, 2, 3, 4]), torch.arange(12.0).reshape(4, 3) / 7
    want = torch.cat([members[0](x[:2], t[:2], cond[:2]), members[1](x[2:], t[2:], cond[2:])])
    assert torch.equal(ensemble.block_logits(x, t, cond), want)
    logits = torch.tensor([[[-30.0, 0.3]], [[2.0, 0.9]], [[40.0, -1.0]]])  # (M=3, B=1, D=2)
    p = torch.sigmoid(logits.double()).mean(0)
    assert torch.allclose(DenoiserEnsemble.mean_logits(logits).double(), torch.log(p / (1 - p)), atol=1e-5)
    with pytest.raises(ValueError, match="at least 2 members"):
        DenoiserEnsemble([Member(3, 1.0)])
    with pytest.raises(ValueError, match="different lengths"):
        DenoiserEnsemble([Member(3, 1.0), Member(4, 1.0)])
    with pytest.raises(ValueError, match="equal blocks"):
        ensemble.block_logits(x[:3], t[:3])


def test_registering_a_class_made_again_replaces_it_and_another_class_is_refused():
    """Kills denoisers.py:162 ``and not same_definition`` → ``and same_definition`` (a re-run
    notebook cell is refused, another class under the name accepted)."""
    from bindiff.core.denoisers import DENOISERS, MLPDenoiser, register_denoiser

    def cell():  # a notebook cell run twice makes a new class object of the same name
        class Made(MLPDenoiser):
            pass
        return Made

    class Other(MLPDenoiser):
        pass

    try:
        register_denoiser("_mutant_probe", cell())
        again = cell()
        register_denoiser("_mutant_probe", again)
        assert DENOISERS["_mutant_probe"] is again
        with pytest.raises(ValueError, match="already registered"):
            register_denoiser("_mutant_probe", Other)
    finally:
        DENOISERS.pop("_mutant_probe", None)


def test_build_denoiser_members_and_names():
    """Kills denoisers.py:175 ``if name not in DENOISERS`` → never, denoisers.py:180 ``low=1`` →
    ``low=0`` (0 members: an IndexError), denoisers.py:185 ``members == 1`` → ``>= 1`` (no
    ensemble), denoisers.py:183 the ``self.dim`` check dropped."""
    from bindiff.core import DenoiserEnsemble, build_denoiser
    from bindiff.core.denoisers import DENOISERS

    assert isinstance(build_denoiser("mlp", 4, members=3, hidden=[2]), DenoiserEnsemble)
    assert len(build_denoiser("mlp", 4, members=3, hidden=[2]).members) == 3
    with pytest.raises(ValueError, match="members"):
        build_denoiser("mlp", 4, members=0, hidden=[2])
    with pytest.raises(ValueError, match="unknown denoiser"):
        build_denoiser("no-such", 4)

    class NoDim(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()

    try:
        DENOISERS["_nodim"] = NoDim
        with pytest.raises(ValueError, match="self.dim = dim"):
            build_denoiser("_nodim", 4)
    finally:
        DENOISERS.pop("_nodim", None)


# -- the U-Net -----------------------------------------------------------------------------------------

def _unet_by_hand(net, x, t, cond=None):
    """The U-Net as its docstring describes it, written with torch's functional operations and the
    module's weights: bits as ±1, condition then coordinate channels in [−1, 1] (axis order), zeros
    padded after the grid to a multiple of patch · 2^(levels − 1), a sinusoidal time embedding
    through Linear-SiLU-Linear, residual blocks (conv → GroupNorm of 8 groups where the width allows
    → SiLU, the embedding added per channel, conv → GroupNorm → SiLU, plus a 1×1 skip where widths
    differ), average pooling down, nearest-neighbour ×2 up with the skip concatenated after, and with
    patch > 1 a transposed-convolution unfold and a refinement that also reads the input."""
    F = torch.nn.functional
    nd, grid, batch = len(net.grid), list(net.grid), x.shape[0]
    conv = F.conv2d if nd == 2 else F.conv3d
    pool = F.avg_pool2d if nd == 2 else F.avg_pool3d
    unconv = F.conv_transpose2d if nd == 2 else F.conv_transpose3d
    channels = [(2 * x - 1).reshape(batch, 1, *grid)]
    if cond is not None:
        channels.append(cond.reshape(batch, -1, *grid))
    if net.coords:
        for k, side in enumerate(grid):
            shape = [1] * nd
            shape[k] = side
            channels.append(torch.linspace(-1, 1, side).reshape(1, 1, *shape).expand(batch, 1, *grid))
    h = torch.cat(channels, 1)
    factor = net.patch * 2 ** (len(net.down) - 1)
    padded = torch.zeros(batch, h.shape[1], *[math.ceil(g / factor) * factor for g in grid])
    padded[(slice(None), slice(None), *[slice(0, g) for g in grid])] = h
    h = x_in = padded
    emb = None
    if net.time_dim:
        half = net.time_dim // 2
        freqs = torch.tensor([10000.0 ** (-k / half) for k in range(half)])
        e = torch.cat([torch.sin(t[:, None] * freqs), torch.cos(t[:, None] * freqs)], 1)
        e = F.pad(e, (0, net.time_dim - 2 * half))
        first, second = net.time_mlp[0], net.time_mlp[2]
        emb = F.linear(F.silu(F.linear(e, first.weight, first.bias)), second.weight, second.bias)

    def block(b, h):
        width = b.conv1.weight.shape[0]
        groups = next(g for g in (8, 4, 2, 1) if width % g == 0)
        r = F.silu(F.group_norm(conv(h, b.conv1.weight, b.conv1.bias, padding=1), groups, b.norm1.weight, b.norm1.bias))
        if emb is not None:
            r = r + F.linear(emb, b.time.weight, b.time.bias).reshape(batch, width, *[1] * nd)
        r = F.silu(F.group_norm(conv(r, b.conv2.weight, b.conv2.bias, padding=1), groups, b.norm2.weight, b.norm2.bias))
        return r + (h if isinstance(b.skip, torch.nn.Identity) else conv(h, b.skip.weight, b.skip.bias))

    if net.patch == 1:
        h = conv(h, net.stem.weight, net.stem.bias, padding=1)
    else:
        h = conv(h, net.stem.weight, net.stem.bias, stride=net.patch)
    skips = []
    for i, b in enumerate(net.down):
        h = block(b, pool(h, 2) if i else h)
        skips.append(h)
    skips.pop()
    for b in net.up:
        for axis in range(2, 2 + nd):
            h = h.repeat_interleave(2, dim=axis)
        h = block(b, torch.cat([h, skips.pop()], 1))
    if net.patch > 1:
        h = F.silu(unconv(h, net.unfold.weight, net.unfold.bias, stride=net.patch))
        h = F.silu(conv(torch.cat([h, x_in], 1), net.refine.weight, net.refine.bias, padding=1))
    out = conv(h, net.head.weight, net.head.bias)
    return out[(slice(None), 0, *[slice(0, g) for g in grid])].reshape(batch, -1)


@pytest.mark.parametrize("grid, channels, patch, cond_channels", [
    ([5, 6], [8, 16], 1, 1),  # padded to 6 x 6; a condition channel
    ([6, 6], [8, 16], 2, 0),  # square (the axes' order shows), patch 2: padded to 8 x 8
    ([4, 4], [8, 16], 1, 0),  # already a multiple: no padding
    ([3, 4, 5], [4, 8], 1, 0),  # 3-D, padded to 4 x 4 x 6
])
def test_the_unet_equals_its_design_written_out(grid, channels, patch, cond_channels, monkeypatch):
    """Kills unet.py:80 SiLU before the norm, unet.py:82 the time embedding not added, unet.py:84 no
    residual, unet.py:61 GroupNorm groups (8, 4, 2, 1) → (4, 2, 1), unet.py:122 padding to
    2^levels, unet.py:123 a multiple padded further, unet.py:155 coordinates in [0, 1], unet.py:156
    ``indexing="ij"`` → ``"xy"``, unet.py:180 bits not mapped to ±1, unet.py:184 coordinates before
    the bits, unet.py:187 zeros padded before the grid, unet.py:189 time ignored, unet.py:195 max
    instead of average pooling, unet.py:200 (bi/tri)linear instead of nearest upsampling, unet.py:201
    the skip concatenated first, unet.py:203 no SiLU after the unfold, unet.py:204 the input
    concatenated first, unet.py:206 the crop taken from the end, unet.py:166 ``self.bf16 and
    bfloat16_autocast`` → ``bfloat16_autocast`` (bf16 on a net that did not ask for it)."""
    from bindiff.core import unet

    monkeypatch.setattr(unet, "bfloat16_autocast", lambda device_type: True)  # as on a bf16 GPU
    torch.manual_seed(0)
    dim = math.prod(grid)
    net = unet.UNetDenoiser(dim, grid, channels=channels, time_dim=6, patch=patch, cond_channels=cond_channels)
    with torch.no_grad():  # GroupNorm's affine weights away from 1 and 0, so every one shows
        for m in net.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = (torch.rand(3, dim) < 0.4).float()
    t = torch.tensor([0, 7, 40])
    cond = torch.rand(3, cond_channels * dim) if cond_channels else None
    got = net(x, t, cond) if cond_channels else net(x, t)
    assert torch.allclose(got, _unet_by_hand(net, x, t, cond), atol=1e-5)


def test_unet_parameter_count_by_hand():
    """Kills unet.py:124 the time MLP's width ``4 * time_dim`` → ``2 *``, unet.py:143 the unfolded
    width's floor ``max(channels[0] // 2, 4)`` → ``max(…, 1)``, unet.py:74 ``emb_dim > 0`` → ``>= 0``
    (a time layer, with a bias, in every block of a time-blind net)."""
    from bindiff.core.unet import UNetDenoiser

    def conv(c_in, c_out, k):
        return c_in * c_out * k * k + c_out

    def block(c_in, c, emb):
        time = emb * c + c if emb else 0
        skip = conv(c_in, c, 1) if c_in != c else 0
        return conv(c_in, c, 3) + conv(c, c, 3) + 2 * 2 * c + time + skip  # two GroupNorms: weight and bias

    def count(net):
        return sum(p.numel() for p in net.parameters())

    # channels [4, 8], time_dim 6 (embedding 24), coords: 1 + 2 input channels, patch 2: the U-Net's finest
    # width 4 unfolds to max(4 // 2, 4) = 4 channels, refined together with the 3 input channels
    emb, fine = 24, 4
    want = (6 * emb + emb) + (emb * emb + emb) + conv(3, 4, 2) + block(4, 4, emb) + block(4, 8, emb) \
        + block(8 + 4, 4, emb) + conv(4, fine, 2) + conv(fine + 3, fine, 3) + conv(fine, 1, 1)
    assert count(UNetDenoiser(36, [6, 6], channels=[4, 8], time_dim=6, patch=2)) == want
    # no time: no embedding anywhere
    plain = conv(3, 4, 3) + block(4, 4, 0) + block(4, 8, 0) + block(12, 4, 0) + conv(4, 1, 1)
    assert count(UNetDenoiser(36, [6, 6], channels=[4, 8], time_dim=0)) == plain


def test_unet_refusals_and_the_bf16_switch(monkeypatch):
    """Kills unet.py:108 ``(2, 3)`` → ``(2, 3, 4)``, unet.py:113 ``patch`` ``low=1`` → ``0``,
    unet.py:160 a cond given to a net without condition channels accepted, unet.py:163 the cond
    shape check dropped, unet.py:46 ``device_type == "cuda" and`` → any device but mps,
    unet.py:52 the CUDA-availability test dropped."""
    from bindiff.core import unet

    with pytest.raises(ValueError, match="2 or 3 positive sides"):
        unet.UNetDenoiser(16, [2, 2, 2, 2], channels=[4])
    with pytest.raises(ValueError, match="patch"):
        unet.UNetDenoiser(16, [4, 4], channels=[4], patch=0)
    net = unet.UNetDenoiser(16, [4, 4], channels=[4], time_dim=0)
    x, t = torch.zeros(2, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="given a cond"):
        net(x, t, torch.zeros(2, 16))
    with_cond = unet.UNetDenoiser(16, [4, 4], channels=[4], time_dim=0, cond_channels=2)
    with pytest.raises(ValueError, match="cond must have shape"):
        with_cond(x, t, torch.zeros(2, 16))
    monkeypatch.setattr(unet, "cuda_computes_bf16", lambda: True)
    assert unet.bfloat16_autocast("cuda") and not unet.bfloat16_autocast("cpu")
    monkeypatch.undo()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert unet.cuda_computes_bf16() is False


# -- schedules, parameter checks, the count tilt ---------------------------------------------------------

def test_every_schedules_defaults_by_hand_in_float64():
    """Kills schedules.py:21 linear defaults ``beta_start=1e-4`` → ``1e-3`` and ``beta_end=0.02`` →
    ``0.2``, schedules.py:25 quadratic ``beta_end=0.1`` → ``0.01``, schedules.py:27 the square
    dropped, schedules.py:47 jsd ``steps - t + 1`` → ``+ 2``, schedules.py:51 constant's
    ``float(beta)`` halved."""
    from bindiff.core import get_schedule

    def close(got, want):
        return torch.allclose(got, torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=0)

    assert close(get_schedule("linear", 3), [1e-4, (1e-4 + 0.02) / 2, 0.02])
    r0, r1 = math.sqrt(1e-4), math.sqrt(0.1)
    assert close(get_schedule("quadratic", 3), [r0 ** 2, ((r0 + r1) / 2) ** 2, r1 ** 2])
    assert close(get_schedule("jsd", 4), [1 / 4, 1 / 3, 1 / 2, 1.0])
    assert close(get_schedule("constant", 2), [0.01, 0.01])
    assert close(get_schedule("constant", 2, beta=0.3), [0.3, 0.3])


def test_schedule_tables_at_the_edges_of_0_1():
    """Kills schedules.py:70 ``betas <= 0`` → ``< 0`` (a step that adds no noise accepted),
    ``betas > 1`` → ``>= 1`` (jsd's last step refused), schedules.py:79 ``betas[:-1] == 1`` →
    ``betas == 1``, schedules.py:66 ``numel() < 1`` → ``< 0``, schedules.py:92 ``steps < 1`` → ``< 0``,
    schedules.py:100 a bool parameter accepted as a number."""
    from bindiff.core import get_schedule
    from bindiff.core.schedules import validate_betas

    assert validate_betas(torch.tensor([0.5, 1.0])).tolist() == [0.5, 1.0]
    for bad, message in (([0.5, 0.0], "beta_2 = 0 is outside"), ([1.0, 0.5], "beta_1 = 1 before the last"),
                         ([1.5], "outside"), ([], "at least one step")):
        with pytest.raises(ValueError, match=message):
            validate_betas(torch.tensor(bad, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        get_schedule("jsd", 0)
    with pytest.raises(ValueError, match="must be a number"):
        get_schedule("constant", 3, beta=True)


def test_parameter_checks_at_their_edges():
    """Kills params.py:21 a bool accepted as an integer, ``value < low`` → ``<=``, params.py:23
    ``> LARGEST`` → ``>=``, params.py:30 an empty list accepted, params.py:32 a width of 0 accepted,
    params.py:37 ``not isinstance(value, bool)`` → ``isinstance(value, str)`` (1 taken for a flag),
    params.py:44 infinity accepted, params.py:51
    ``0 <= value < 1`` → ``<= 1`` or ``0 < value``, params.py:60 ``named[positional:]`` →
    ``named[positional - 1:]``, ``p.name not in fixed`` dropped, params.py:77 ``unknown and not
    takes_any`` → ``unknown`` (a missing parameter reported as an unknown one that ``**kwargs`` takes),
    params.py:80 ``default is p.empty`` → ``is not``."""
    from bindiff.core import params as checks

    assert checks.whole("n", 0) == 0 and checks.whole("n", 1, low=1) == 1
    assert checks.whole("n", 2 ** 63 - 1) == 2 ** 63 - 1
    for value, low in ((True, 0), (0, 1), (2 ** 63, 0), (2.0, 0)):
        with pytest.raises(ValueError, match="n must be an integer"):
            checks.whole("n", value, low)
    assert checks.widths("w", [1, 3]) == [1, 3]
    for value in ([], [0], "12"):
        with pytest.raises(ValueError, match=r"w"):
            checks.widths("w", value)
    assert checks.flag("f", False) is False
    for value in ("false", 1, None):
        with pytest.raises(ValueError, match="f must be true or false"):
            checks.flag("f", value)
    with pytest.raises(ValueError, match="finite"):
        checks.number("x", math.inf)
    assert checks.rate("r", 0.0) == 0.0 and checks.rate("r", 0.5) == 0.5
    with pytest.raises(ValueError, match=r"r must be a number in \[0, 1\)"):
        checks.rate("r", 1.0)

    class Net:
        def __init__(self, dim, width, grid, depth=2, **extra):
            pass

    class Strict:
        def __init__(self, dim, width, depth=2):
            pass

    assert checks.accepted_params(Net) == ["width", "grid", "depth"]
    assert checks.accepted_params(Net, fixed=("grid",)) == ["width", "depth"]
    checks.check_params("net", Net, {"width": 3, "grid": [2], "colour": "red"})  # **extra takes any name
    with pytest.raises(ValueError, match=r"net needs the parameter\(s\) \['width', 'grid'\]"):
        checks.check_params("net", Net, {"colour": "red"})  # an unknown name is no error where **extra takes it
    with pytest.raises(ValueError, match=r"net needs the parameter\(s\) \['width'\]; it takes \['width', 'depth'\]"):
        checks.check_params("net", Strict, {"depth": 3})
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['colour'\]"):
        checks.check_params("net", Strict, {"width": 1, "colour": "red"})


def test_the_count_tilt_reaches_its_count_to_float64_precision():
    """Kills count.py:21 ``_HALVINGS = 60`` → ``30`` (the count held only to ~1e-7), count.py:39
    ``x.numel() == 0`` → ``x.shape[0] == 0`` (rows of no bits fail), count.py:45 and :46 the bracket
    widened by ``x.min`` for ``x.max`` and back (a spread row whose shift lies beyond ±60 ends on the
    bracket's edge), count.py:43 the targets clipped to [0, D] (a count of 0: logits −inf),
    count.py:36 non-finite counts accepted (NaN logits)."""
    from bindiff.core.count import tilt_to_count

    logits = torch.tensor([[-3.0, 0.5, 2.0, -1.0, 0.0, 4.0], [9.0, -9.0, 1.0, 1.0, -2.0, 0.3]], dtype=torch.float64)
    ones = torch.tensor([2.5, 4.0])
    tilted = tilt_to_count(logits, ones)
    assert torch.allclose(torch.sigmoid(tilted).sum(1), ones.double(), rtol=0, atol=1e-12)
    shift = tilted - logits  # one shift per row
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-12)
    assert tilt_to_count(torch.zeros(3, 0), torch.zeros(3)).shape == (3, 0)
    # spread rows whose shift lies near -100 and +100: one on, three off of four, and the reverse
    spread = torch.tensor([[100.0, 90.0, 80.0, 70.0], [-100.0, -90.0, -80.0, -70.0]], dtype=torch.float64)
    tilted = tilt_to_count(spread, torch.tensor([1.0, 3.0]))
    assert torch.sigmoid(tilted).sum(1).tolist() == pytest.approx([1.0, 3.0], rel=1e-9)
    # a count of 0 or D is held at 0.5 or D - 0.5: finite logits cannot be sure of every bit
    tilted = tilt_to_count(torch.zeros(2, 4, dtype=torch.float64), torch.tensor([0.0, 4.0]))
    assert torch.isfinite(tilted).all() and torch.sigmoid(tilted).sum(1).tolist() == pytest.approx([0.5, 3.5])
    with pytest.raises(ValueError, match="ones must be finite"):
        tilt_to_count(logits, torch.tensor([float("nan"), 1.0]))


# -- the weight average ------------------------------------------------------------------------------------

def test_the_weight_average_refuses_decay_0_and_a_checkpoint_of_other_tensors_and_snapshots_its_state():
    """Kills averaging.py:33 ``0.0 < decay`` → ``0.0 <= decay`` (decay 0: no average at all, and
    silently), averaging.py:78 the tensor-count check of ``load_state_dict`` dropped (zip loads a
    prefix), averaging.py:67 ``a.clone()`` → the live averages (a kept state dict drifts)."""
    from bindiff.training.averaging import WeightAverage

    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"decay must lie in \(0, 1\)"):
        WeightAverage([p], 0.0)
    average = WeightAverage([p], 0.5)
    state = average.state_dict()
    with torch.no_grad():
        p.copy_(torch.tensor([5.0, 6.0]))
    average.update()  # the average moves 90 % of the way: (4.6, 5.6)
    assert torch.allclose(average.averages[0], torch.tensor([4.6, 5.6]))
    assert torch.equal(state["averages"][0], torch.tensor([1.0, 2.0]))  # the state taken before is a snapshot
    q = torch.nn.Parameter(torch.zeros(2))
    two = WeightAverage([p, q], 0.5)
    with pytest.raises(ValueError, match="averages 1 tensors, the model has 2"):
        two.load_state_dict(state)
    assert torch.equal(q.detach(), torch.zeros(2)) and torch.equal(p.detach(), torch.tensor([5.0, 6.0]))


# -- building the model a recipe describes ---------------------------------------------------------------

def test_every_diffusion_key_of_the_recipe_reaches_the_model():
    """Kills builders.py:34 ``kernel=d["kernel"]`` dropped, builders.py:57 ``hybrid_coeff`` dropped,
    builders.py:58 ``train_t_max`` and ``reverse_kernel`` dropped, builders.py:59 ``dice_weight``
    dropped, builders.py:60 ``prior_offset`` ignored, builders.py:61 ``denoiser_input`` dropped,
    builders.py:50 ``members`` ignored."""
    from bindiff.core import DenoiserEnsemble
    from bindiff.training.builders import build_diffusion

    config = load_recipe(None, ["diffusion.kernel=flip", "diffusion.loss=hybrid", "diffusion.hybrid_coeff=0.3",
                                "diffusion.steps=4", "diffusion.train_t_max=2", "diffusion.reverse_kernel=plugin",
                                "diffusion.dice_weight=0.5", "diffusion.prior_offset=true",
                                "diffusion.denoiser_input=flat_posterior", "denoiser.members=2",
                                "denoiser.params.hidden=[3]"])
    model = build_diffusion(config, 6)
    assert model.process.kernel == "flip" and model.loss_kind == "hybrid" and model.hybrid_coeff == 0.3
    assert model.train_t_max == 2 and model.reverse_kernel == "plugin" and model.dice_weight == 0.5
    assert model.prior_logits is not None and model.prior_logits.shape == (6,)
    assert model.denoiser_input == "flat_posterior"
    assert isinstance(model.denoiser, DenoiserEnsemble) and len(model.denoiser.members) == 2


def test_self_conditioning_adds_one_condition_channel_to_the_unet_only():
    """Kills builders.py:43 ``self_condition`` ignored, builders.py:44 ``!= "unet"`` → ``== "unet"``,
    builders.py:47 ``+ 1`` → ``+ 0``, builders.py:59 ``self_condition`` not passed on."""
    import bindiff.core.unet  # noqa: F401  (registers the unet)
    from bindiff.training.builders import build_diffusion

    unet = ["denoiser.name=unet", "denoiser.params={grid: [4, 4], channels: [4], time_dim: 0}"]
    model = build_diffusion(load_recipe(None, [*unet, "diffusion.self_condition=true"]), 16)
    assert model.self_condition and model.denoiser.cond_channels == 1
    model = build_diffusion(load_recipe(None, [*unet, "diffusion.self_condition=true",
                                               "denoiser.params.cond_channels=2"]), 16)
    assert model.denoiser.cond_channels == 3
    assert build_diffusion(load_recipe(None, unet), 16).denoiser.cond_channels == 0
    with pytest.raises(RecipeError, match="diffusion.self_condition: .*only the unet"):
        build_diffusion(load_recipe(None, ["diffusion.self_condition=true"]), 16)


@pytest.mark.parametrize("overrides, edits, prefix", [
    (["denoiser.name=nope"], {}, "denoiser.name: unknown denoiser"),
    ([], {"denoiser": {"members": 0}}, "denoiser.members: members"),  # edited by a caller: no schema saw it
    (["denoiser.params.colour=red"], {}, r"denoiser.params: .*has no parameter.*; overrides merge into"),
    (["denoiser.params.hidden=[0]"], {}, "denoiser.params: hidden"),
    (["diffusion.kernel=nope"], {}, "diffusion.kernel: "),
    (["diffusion.schedule=nope", "diffusion.kernel=nope"], {}, "diffusion.schedule: "),
    (["diffusion.schedule_params={beta: 2.0}", "diffusion.schedule=constant"], {}, "diffusion.schedule_params: "),
    ([], {"diffusion": {"reverse_kernel": "nope"}}, "diffusion.reverse_kernel: "),
    ([], {"diffusion": {"loss": "nope", "reverse_kernel": "nope"}}, "diffusion.loss: "),
])
def test_a_refused_value_names_its_recipe_key(overrides, edits, prefix):
    """Kills builders.py:19 and :21 the denoiser's key misnamed, builders.py:28 ``not in`` → ``in``,
    builders.py:36 ``('schedule', 'kernel')`` → ``('kernel', 'schedule')``, builders.py:63
    ``('loss', 'reverse_kernel')`` → ``('reverse_kernel', 'loss')``, builders.py:53 the override
    hint given for the wrong errors."""
    from bindiff.training.builders import build_diffusion

    config = load_recipe(None, overrides)
    for section, values in edits.items():
        config[section].update(values)
    with pytest.raises(RecipeError, match="^" + prefix) as err:
        build_diffusion(config, 6)
    if "has no parameter" not in prefix:
        assert "overrides merge" not in str(err.value)


def test_the_mlp_refuses_an_unknown_activation_or_input_norm_in_one_line():
    """Kills denoisers.py:60 ``not isinstance(activation, str) or`` → dropped (a list: a TypeError
    traceback), denoisers.py:62 ``("none", "l2")`` → also ``"l1"`` (an unknown norm silently none)."""
    from bindiff.core.denoisers import MLPDenoiser

    with pytest.raises(ValueError, match="unknown activation"):
        MLPDenoiser(4, activation=["tanh"])
    with pytest.raises(ValueError, match="input_norm must be 'none' or 'l2', got 'l1'"):
        MLPDenoiser(4, input_norm="l1")


def test_a_model_kind_registered_again_from_a_rerun_cell_replaces_it_and_another_is_refused():
    """Kills denoisers.py:147 ``if a is b`` → never (a kind without ``params_of``, None, registered
    again from a re-run cell is refused), denoisers.py:150 ``name[1] is None or`` → dropped (two
    different builders without a qualified name, such as two ``functools.partial``, taken for one),
    denoisers.py:155 ``code_a is None or code_b is None`` → ``and`` (a cell that redefines a builder
    class as a function of the same name fails with an AttributeError)."""
    import functools

    from bindiff.core.denoisers import same_definition
    from bindiff.tasks.recommendation.models import (
        MODELS,
        RecommenderKind,
        register_model,
    )

    def cell():  # a notebook cell: its builder made again on every run
        def build(config, dim, training=False):
            return torch.nn.Identity()
        return RecommenderKind(name="_mutant_probe", build=build)

    def builder(config, dim, training=False, width=1):
        return torch.nn.Identity()

    try:
        register_model(cell())
        register_model(cell())  # params_of is None in both: the same definition
        MODELS.pop("_mutant_probe")
        register_model(RecommenderKind(name="_mutant_probe", build=functools.partial(builder, width=1)))
        with pytest.raises(ValueError, match="already registered"):
            register_model(RecommenderKind(name="_mutant_probe", build=functools.partial(builder, width=2)))
    finally:
        MODELS.pop("_mutant_probe", None)

    class Build:
        pass

    def build_function():
        pass

    build_function.__qualname__ = Build.__qualname__  # as `class Build` edited into `def Build` in a cell
    assert same_definition(Build, build_function)


# -- a model fitted in closed form ----------------------------------------------------------------------

class _ClosedForm(torch.nn.Module):
    """A closed-form model of one's own (``fitting="closed_form"``) whose answer depends on its mode,
    as one with dropout would; its fit validates once and reports ``report``."""

    def __init__(self, report: dict):
        super().__init__()
        self.register_buffer("weights", torch.zeros(5))
        self.report, self.modes = report, []

    def fit_closed_form(self, train, evaluate_valid):
        self.modes.append(self.training)
        evaluate_valid(self)
        return dict(self.report)


@pytest.mark.parametrize("report", [{"valid": 0.25, "lambda": 3.0}, {}])
def test_a_closed_form_fit_validates_in_eval_mode_and_checkpoints_what_it_reported(tmp_path, report):
    """Kills closed_form.py:27 ``model.eval()`` → removed (validated in training mode), closed_form.py:41
    ``float("nan")`` → ``0.0`` (a fit that reports no validation value gets 0), closed_form.py:46
    ``done=True`` → ``False``, closed_form.py:50 ``best_value=value`` → NaN."""
    from bindiff.training.closed_form import fit_closed_form_run

    model = _ClosedForm(report)
    seen = []
    result, training = fit_closed_form_run(model, _data(6), config=_config(), config_yaml="x",
                                           evaluate_valid=lambda m: seen.append(m.training) or 0.25,
                                           checkpoint_dir=tmp_path)
    assert model.modes == [False] and seen == [False]
    want = report.get("valid", math.nan)
    for name in ("best.pt", "last.pt"):
        saved = load_checkpoint(tmp_path / name)
        assert saved["done"] is True and saved["epoch"] == 0
        assert saved["best"]["value"] == pytest.approx(want, nan_ok=True)
    assert result.best_value == pytest.approx(want, nan_ok=True) and result.epochs_run == 0
    assert training == {"closed_form": True, **report}


def test_refusals_leave_the_state_as_it_was_and_name_what_is_registered():
    """A weight average's refused load keeps its update count (it was set before the check); a
    denoiser registered as a functools.partial is named in the refusal (an AttributeError before)."""
    import functools

    from bindiff.core import DENOISERS, MLPDenoiser, register_denoiser
    from bindiff.training.averaging import WeightAverage

    model = torch.nn.Linear(2, 1)
    average = WeightAverage(list(model.parameters()), decay=0.9)
    state = average.state_dict()
    updates = average.updates
    with pytest.raises(ValueError, match="the checkpoint averages 1 tensors, the model has 2"):
        average.load_state_dict({**state, "updates": updates + 5, "averages": state["averages"][:1]})
    assert average.updates == updates
    try:
        register_denoiser("_partial_test", functools.partial(MLPDenoiser, hidden=[3]))
        with pytest.raises(ValueError, match=r"already registered \(functools.partial"):
            register_denoiser("_partial_test", functools.partial(MLPDenoiser, hidden=[4]))
    finally:
        DENOISERS.pop("_partial_test", None)
