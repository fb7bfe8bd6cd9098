"""Device choice: autocast precision, batch densification on CPU and CUDA."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.training.steps import dense_batch
from bindiff.training.trainer import autocast_dtype

from test_cli_pipeline import ratings_csv, small_args  # noqa: F401  (the fixture is reused)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("precision,device,expected", [
    ("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("fp32", "cuda", None),
    ("fp32", "cpu", None), ("bf16", "cpu", torch.bfloat16), ("bf16", "cuda", torch.bfloat16),
])
def test_autocast_dtype_follows_precision_and_device(precision, device, expected, monkeypatch):
    monkeypatch.setattr("bindiff.training.trainer.cuda_computes_bf16", lambda: True)  # an Ampere GPU, say
    assert autocast_dtype({"train": {"precision": precision}}, torch.device(device)) == expected


@pytest.mark.parametrize("computes, expected", [(False, None), (True, torch.bfloat16)])
def test_auto_precision_keeps_float32_on_a_gpu_that_emulates_bf16(computes, expected, monkeypatch):
    """Recent torch counts a T4's or V100's emulated bfloat16 as supported, where it is slower than float32."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # supported counting emulation either way; without it, only where the GPU computes it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation or computes)
    assert autocast_dtype({"train": {"precision": "auto"}}, torch.device("cuda")) == expected
    assert autocast_dtype({"train": {"precision": "bf16"}}, torch.device("cuda")) == torch.bfloat16  # asked for


def _matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    return sp.csr_matrix((rng.random((50, 31)) < 0.2).astype(np.float32))


def test_dense_batch_densifies_exactly_the_rows_asked_for():
    matrix, rows = _matrix(), np.array([7, 0, 49, 7])
    batch = dense_batch(matrix, rows, torch.device("cpu"))
    assert batch.dtype == torch.float32
    np.testing.assert_array_equal(batch.numpy(), matrix.toarray()[rows])


@needs_cuda
def test_dense_batch_on_cuda_equals_the_cpu_batch():
    matrix, rows = _matrix(), np.array([3, 1, 4, 1, 5])
    on_gpu = dense_batch(matrix, rows, torch.device("cuda"))
    assert on_gpu.is_cuda
    assert torch.equal(on_gpu.cpu(), dense_batch(matrix, rows, torch.device("cpu")))


def test_bf16_autocast_trains_on_cpu(ratings_csv, tmp_path):  # noqa: F811
    result = CliRunner().invoke(app, small_args(ratings_csv, tmp_path, "train.precision=bf16", "train.epochs=2"))
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ml1m").iterdir()
    history = json.loads((run_dir / "history.json").read_text())
    assert all(np.isfinite(row["train_loss"]) for row in history)
    fp32 = CliRunner().invoke(app, small_args(ratings_csv, tmp_path / "fp32", "train.epochs=2"))
    assert fp32.exit_code == 0, fp32.output
    (fp32_dir,) = (tmp_path / "fp32" / "ml1m").iterdir()
    fp32_history = json.loads((fp32_dir / "history.json").read_text())
    # bf16 keeps about 3 significant digits: close to the float32 run, and not identical to it
    assert history[0]["train_loss"] == pytest.approx(fp32_history[0]["train_loss"], rel=0.05)
    assert history[0]["train_loss"] != fp32_history[0]["train_loss"]


@needs_cuda
def test_training_on_cuda_with_bf16_autocast(ratings_csv, tmp_path):  # noqa: F811
    result = CliRunner().invoke(app, small_args(ratings_csv, tmp_path, "train.device=cuda", "train.epochs=2"))
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ml1m").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["ndcg@20"] <= 1.0
