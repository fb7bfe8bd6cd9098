"""The CUDA paths, checked on a machine without a GPU: where each reads the device it runs on, the
GPU is stood in for by what the code asks torch about it (an eleventh audit pass read them)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import RecipeError, load_recipe
from test_resume import overrides, write_ratings

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


def test_the_gpu_batch_is_the_cpu_batch_with_stored_zeros_and_duplicates():
    """The CUDA branch wrote 1.0 for every stored entry: a stored 0 became 1, a duplicate 1 where
    the CPU's `toarray` gives 2 (which the model's bit check refuses)."""
    from bindiff.training.steps import scattered

    coo = sp.coo_matrix((np.array([1.0, 0.0, 1.0, 1.0, 1.0]), (np.array([0, 0, 1, 1, 2]), np.array([0, 1, 2, 2, 3]))),
                        shape=(3, 4))
    rows = coo.tocsr()
    rows.data[1] = 0.0  # an explicit zero survives tocsr's sum as a stored entry
    expected = np.array([[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]], dtype=np.float32)
    assert np.array_equal(rows.toarray(), expected)  # the CPU branch's truth
    assert np.array_equal(scattered(rows, torch.device("cpu")).numpy(), expected)


def test_cuda_on_several_processes_without_a_gpu_is_one_line(tmp_path, monkeypatch):
    """`--nproc 2 train.device=cuda` chose NCCL and set a GPU before the device was checked:
    "Distributed package doesn't have NCCL built in" from every worker."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(app, ["train", "ml100k", "train.device=cuda", f"output.root={tmp_path}",
                                      "--nproc", "2"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "train.device: 'cuda' was asked for but no CUDA device is available" in result.output
    assert not any(tmp_path.iterdir())


def test_more_processes_than_gpus_are_refused_before_torchrun_starts(monkeypatch):
    from bindiff.training import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(RecipeError, match="train.device: 4 processes take one GPU each, but this machine has 1"):
        distributed.check_devices("auto", 4)
    distributed.check_devices("auto", 1)  # one process, one GPU: fine
    distributed.check_devices("cpu", 4)


def test_the_batch_guard_weighs_a_gpu_batch_against_the_gpus_memory(monkeypatch):
    """It compared batches built on the GPU with the host's memory, usually several times larger."""
    from bindiff.adapters.interactions import EvalPart, Split
    from bindiff.tasks.recommendation.evaluation import check_batches_fit

    users, items = 1000, 50_000
    train = sp.csr_matrix((users, items), dtype=np.float32)
    part = EvalPart(input=train[:10], exclude=train[:10], target=train[:10], user_ids=np.arange(10))
    split = Split(train=train, train_user_ids=np.arange(users), item_ids=np.arange(items), valid=part, test=part,
                  kind="test")
    config = load_recipe(None, ["train.batch_size=1000"])  # 8 copies × 4 bytes × 1000 × 50,000: 1.5 GiB
    monkeypatch.setattr("bindiff.tasks.recommendation.evaluation.physical_memory_bytes", lambda: 64 * 2**30)
    check_batches_fit(config, split, device="cpu")  # fits the host
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(total_memory=2**30))
    with pytest.raises(RecipeError, match=r"train.batch_size=1000: .* needs about 1 GiB .* and cuda:0 has 1 GiB"):
        check_batches_fit(config, split, device="cuda:0")


def test_training_from_python_leaves_the_callers_gpu_seeds_alone(monkeypatch, tmp_path):
    """`torch.manual_seed` also reseeds every GPU's generator (queued until CUDA starts): a caller's
    CUDA draws after `bindiff.train` changed. A CPU run seeds the CPU's generator alone."""
    import bindiff

    calls = []
    for name in ("manual_seed_all", "manual_seed"):
        monkeypatch.setattr(torch.cuda, name, lambda seed, name=name: calls.append(name))
    torch.manual_seed(123)  # the caller's own seeds, then the test's record starts
    calls.clear()
    csv = write_ratings(tmp_path / "ratings.csv")
    config = load_recipe(RECIPE, [*overrides(csv, tmp_path / "runs"), "train.epochs=1", "train.patience=1"])
    before = torch.random.get_rng_state()
    bindiff.train(config)
    assert calls == [] and torch.equal(torch.random.get_rng_state(), before)


def test_the_recfusion_baselines_terms_are_float32_under_autocast():
    """The prior term took bf16 from the network's output under autocast (CUDA's default): log β₀
    rounded to -9.1875 from -9.2103 and the per-user differences flattened."""
    from bindiff.tasks.recommendation.baselines.recfusion import RecFusionBin

    torch.manual_seed(0)
    model = RecFusionBin(12, steps=3, hidden=8)
    x = (torch.rand(4, 12, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    zs = model.noise_chain(x, torch.Generator().manual_seed(2))
    logits = [model.logits(z).to(torch.bfloat16) for z in zs]  # what autocast makes of the network
    model.logits = lambda z, it=iter(logits): next(it)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = model.loss_terms(x, zs)
    model.logits = lambda z, it=iter(logits): next(it).float()  # the same outputs, the terms in float32
    plain = model.loss_terms(x, zs)
    assert under["kl"].dtype == torch.float32
    assert torch.allclose(under["kl"], plain["kl"], rtol=1e-6)
    assert torch.allclose(under["loss"], plain["loss"], rtol=1e-6)
