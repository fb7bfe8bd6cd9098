"""The stratified draw of generation's target volumes: each draw is one of the values with equal
probability, and a batch covers their distribution far more evenly than independent draws."""

from __future__ import annotations

import numpy as np
import torch

from bindiff.tasks.masks.generation import stratified_draw


def test_each_draw_is_uniform_over_the_values():
    values = np.arange(10.0)
    g = torch.Generator().manual_seed(0)
    reps = 20_000
    first = np.array([float(stratified_draw(values, 5, g)[0]) for _ in range(reps)])
    freq = np.bincount(first.astype(int), minlength=10) / reps
    se = np.sqrt(0.1 * 0.9 / reps)
    assert np.all(np.abs(freq - 0.1) < 5 * se)


def test_as_many_draws_as_values_is_a_permutation_of_them():
    values = np.random.default_rng(1).normal(3300, 400, 50)
    draw = stratified_draw(values, 50, torch.Generator().manual_seed(2)).numpy()
    np.testing.assert_array_equal(np.sort(draw), np.sort(values))
    assert not np.array_equal(draw, np.sort(values))  # returned in a random order


def test_a_batch_mean_misses_far_less_than_independent_draws():
    values = np.random.default_rng(3).normal(3300, 440, 200)
    g = torch.Generator().manual_seed(4)
    means = np.array([float(stratified_draw(values, 64, g).mean()) for _ in range(500)])
    independent_se = values.std() / np.sqrt(64)  # the standard error of 64 draws with replacement
    assert np.sqrt(np.mean((means - values.mean()) ** 2)) < 0.3 * independent_se


class _CountingChain:
    """A stand-in for the model whose sample i holds exactly ``ones[i]`` ones (rounded): what an ideal
    tilted chain holds in the mean, so each sample shows which target reached its chain."""

    def sample(self, n, steps=None, generator=None, device=None, decode=None, resample=1, ones=None):
        assert ones is not None and len(ones) == n
        return (torch.arange(40)[None, :] < ones.round().long()[:, None]).float()


def test_each_generated_sample_is_tilted_to_its_own_target_across_batches():
    """draw_samples slices the targets batch by batch (10 samples, batches of 4): sample i's chain gets
    volumes[i]. The pipeline test reads the targets from the summary, which lists them without the chains."""
    from types import SimpleNamespace

    from bindiff.tasks.masks.generation import draw_samples

    volumes = torch.tensor([3.0, 17, 5, 29, 11, 2, 23, 7, 31, 13])
    config = {"seed": 0, "eval": {"batch_size": 4}, "output": {"progress": False},
              "evaluations": {"generation": {"samples": 10, "steps": None, "resample": 1}}}
    ctx = SimpleNamespace(model=_CountingChain(), config=config, device=torch.device("cpu"),
                          progress_disabled=True, seed=lambda *parts: 0)
    samples = draw_samples(ctx, volumes)
    assert samples.shape == (10, 40) and samples.sum(1).tolist() == volumes.long().tolist()
