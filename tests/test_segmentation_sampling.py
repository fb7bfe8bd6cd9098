"""The map and variance `sample_probabilities` reports are the mean and variance over its runs,
case by case, whatever the batches: checked against the runs drawn one by one in the same order."""

from __future__ import annotations

import numpy as np
import torch

from bindiff.core import BernoulliProcess, BinomialDiffusion, UNetDenoiser
from bindiff.tasks.segmentation.model import _run_estimates, sample_probabilities


def test_the_sampled_map_is_the_mean_and_variance_over_the_runs():
    torch.manual_seed(0)
    model = BinomialDiffusion(UNetDenoiser(dim=64, grid=[4, 4, 4], channels=[4], cond_channels=1, time_dim=8),
                              BernoulliProcess.from_schedule("jsd", 4), denoiser_input="flat_posterior").eval()
    images = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    cfg = {"samples": 3, "steps": None, "average": "final"}
    mean, variance = sample_probabilities(model, images, cfg, torch.Generator().manual_seed(7), batch_size=2)
    generator = torch.Generator().manual_seed(7)  # the same draws, run after run, batch after batch
    runs = np.stack([np.concatenate([_run_estimates(model, images[i:i + 2], cfg, generator).numpy()
                                     for i in range(0, 5, 2)]) for _ in range(cfg["samples"])])
    assert runs.shape == (3, 5, 64) and runs.std(0).max() > 0  # the runs differ: a variance to check
    assert np.array_equal(mean, runs.mean(0))
    assert np.allclose(variance, ((runs - runs.mean(0)) ** 2).mean(0), rtol=1e-12, atol=0)


def test_one_cases_runs_side_by_side_give_the_mean_and_variance_over_its_runs(monkeypatch):
    """`bindiff segment`'s map and variance (segmentation.uncertainty: variance) are the mean and the
    population variance over the runs, whatever the runs per call: checked against known runs."""
    from bindiff.tasks.segmentation import model as model_module

    rng = np.random.default_rng(3)
    runs = rng.uniform(0, 1, (5, 7))  # 5 runs of a 7-voxel case
    drawn = []

    def known_runs(model, cond, cfg, generator, start_logits=None):
        rows = runs[len(drawn):len(drawn) + len(cond)]
        drawn.extend(rows)
        return torch.from_numpy(rows.copy())

    monkeypatch.setattr(model_module, "_run_estimates", known_runs)
    monkeypatch.setattr(model_module, "_first_call", lambda *args: None)
    mean, variance = model_module.sample_case_probabilities(None, torch.zeros(1, 7), {"samples": 5}, None, 2)
    assert len(drawn) == 5  # calls of 2, 2 and 1 runs
    np.testing.assert_allclose(mean, runs.mean(0), rtol=1e-12)
    np.testing.assert_allclose(variance, ((runs - runs.mean(0)) ** 2).mean(0), rtol=1e-12)
