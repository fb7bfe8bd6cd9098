"""Holding a sample's number of ones: the tilt against a KL projection solved here, and chains
driven by an ideal (and a deliberately biased) denoiser built by Bayes' rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize

from bindiff.core import BernoulliProcess, BinomialDiffusion, tilt_to_count
from test_reverse_exact import FREQ, IdealDenoiser

N = 40_000


def kl_projection(p: np.ndarray, k: float) -> np.ndarray:
    """argmin_q KL(q ‖ p) over products of Bernoullis with Σ q = k, by a general constrained solver."""
    def kl(q):
        return float(np.sum(q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))))
    start = np.full_like(p, k / len(p))
    found = optimize.minimize(kl, start, method="SLSQP", bounds=[(1e-9, 1 - 1e-9)] * len(p),
                              constraints=[{"type": "eq", "fun": lambda q: q.sum() - k}],
                              options={"ftol": 1e-14, "maxiter": 500})
    assert found.success, found.message
    return found.x


@pytest.mark.parametrize("k", [0.7, 2.0, 3.5, 5.2])
def test_tilt_is_the_kl_projection_onto_the_count(k):
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, size=6)
    p = 1 / (1 + np.exp(-logits))
    tilted = torch.sigmoid(tilt_to_count(torch.tensor(logits)[None], torch.tensor([k], dtype=torch.float64)))[0].numpy()
    assert tilted.sum() == pytest.approx(k, abs=1e-9)
    np.testing.assert_allclose(tilted, kl_projection(p, k), atol=1e-4)


def test_tilt_keeps_each_row_its_own_target_and_dtype():
    logits = torch.tensor([[-3.0, 0.0, 3.0, 1.0], [5.0, 5.0, -5.0, -5.0]], dtype=torch.float32)
    out = tilt_to_count(logits, torch.tensor([1.0, 3.0]))
    assert out.dtype == torch.float32
    sums = torch.sigmoid(out.double()).sum(1)
    assert sums.tolist() == pytest.approx([1.0, 3.0], abs=1e-5)
    # one shift per row: differences inside a row are untouched
    assert (out - logits).std(1).max() < 1e-5


def test_tilt_refuses_mismatched_counts():
    with pytest.raises(ValueError, match="ones has 1 values for 2 rows"):
        tilt_to_count(torch.zeros(2, 3), torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        tilt_to_count(torch.zeros(3), torch.tensor([1.0]))


class BiasedDenoiser(IdealDenoiser):
    """The ideal answer pushed down by a constant logit: a chain driven by it loses ones."""

    def forward(self, x_t, t):
        return super().forward(x_t, t) - 0.6


def chain(denoiser_cls, T=20):
    process = BernoulliProcess.from_schedule("jsd", T)
    return BinomialDiffusion(denoiser_cls(process.betas.tolist(), FREQ), process)


def count_stats(samples: torch.Tensor) -> tuple[float, float]:
    counts = samples.double().sum(1)
    return float(counts.mean()), float(counts.std() / len(counts) ** 0.5)


def test_an_ideal_chain_tilted_to_a_count_ends_on_that_count_in_the_mean():
    model = chain(IdealDenoiser)
    g = torch.Generator().manual_seed(0)
    target = 4.2  # the data's mean count is Σ f = 2.69
    mean, se = count_stats(model.sample(N, generator=g, ones=torch.full((N,), target)))
    assert abs(mean - target) < 5 * se
    free_mean, free_se = count_stats(model.sample(N, generator=g))
    assert abs(free_mean - float(FREQ.sum())) < 5 * free_se
    assert abs(free_mean - target) > 50 * free_se


def test_the_tilt_puts_a_drifting_chain_back_on_the_data_counts():
    data_counts = torch.bernoulli(FREQ.expand(N, -1), generator=torch.Generator().manual_seed(1)).sum(1)
    model = chain(BiasedDenoiser)
    g = torch.Generator().manual_seed(2)
    drifted, se = count_stats(model.sample(N, generator=g))
    assert drifted < float(FREQ.sum()) - 10 * se  # the bias is real
    samples = model.sample(N, generator=g, steps=5, ones=data_counts)
    held, se = count_stats(samples)
    assert abs(held - float(data_counts.mean())) < 5 * se
    # each row ends on its own count, not on the batch's: the rows given c ones (clipped to [0.5, D - 0.5])
    # hold c in the mean (the overall mean alone let the counts be shuffled across rows, or averaged)
    targets = data_counts.double().clamp(0.5, len(FREQ) - 0.5)
    for c in (1.0, 2.0, 3.0, 4.0, 5.0):  # each held by 500 rows or more here
        mean, se = count_stats(samples[targets == c])
        assert abs(mean - c) < 5 * se, (c, mean, se)


def test_the_count_cannot_be_held_next_to_known_bits():
    model = chain(IdealDenoiser)
    known = torch.zeros(2, len(FREQ))
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, 0] = True
    with pytest.raises(ValueError, match="cannot be combined with known bits"):
        model.inpaint(known, mask, ones=torch.tensor([1.0, 2.0]))


def test_the_tilt_reaches_its_count_from_far_outside_sixty():
    # every bit at logit −80 (D = 100): the shift must be about +77.8; a bracket of ±60 stopped at 2e-7 ones
    far = torch.full((1, 100), -80.0, dtype=torch.float64)
    assert torch.sigmoid(tilt_to_count(far, torch.tensor([10.0]))).sum().item() == pytest.approx(10.0, rel=1e-9)
    assert torch.sigmoid(tilt_to_count(-far, torch.tensor([10.0]))).sum().item() == pytest.approx(10.0, rel=1e-9)
    with pytest.raises(ValueError, match="logits must be finite"):
        tilt_to_count(torch.tensor([[0.0, float("inf")]]), torch.tensor([1.0]))


def test_the_tilt_of_nothing_is_nothing_and_huge_logits_are_bounded():
    assert tilt_to_count(torch.zeros(0, 5), torch.zeros(0)).shape == (0, 5)
    assert tilt_to_count(torch.zeros(3, 0), torch.zeros(3)).shape == (3, 0)
    huge = torch.tensor([[1e308, -1e308, 0.0]], dtype=torch.float64)  # a bracket of width inf before
    assert torch.isfinite(tilt_to_count(huge, torch.tensor([1.5]))).all()
