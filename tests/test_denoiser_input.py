"""``denoiser_input="flat_posterior"``: the denoiser reads P(x_0 = 1 | x_t) under a uniform prior."""

from pathlib import Path

import pytest
import torch
from torch import nn

from bindiff.config import RecipeError, load_recipe
from bindiff.core import BernoulliProcess, BinomialDiffusion
from bindiff.training.builders import build_diffusion

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _one_step_posterior_by_hand(betas, t, bit):
    """P(x_0 = 1 | x_t = bit) with P(x_0 = 1) = ½, by multiplying the 2 × 2 one-step kernels
    B(x(1 − β) + β/2) from t = 1 to t and applying Bayes' rule."""
    keep = [[1.0, 0.0], [0.0, 1.0]]  # keep[a][b] = q(x_t = b | x_0 = a)
    for beta in betas[:t]:
        step = [[1 - beta / 2, beta / 2], [beta / 2, 1 - beta / 2]]
        keep = [[sum(keep[a][c] * step[c][b] for c in range(2)) for b in range(2)] for a in range(2)]
    return keep[1][bit] / (keep[0][bit] + keep[1][bit])


@pytest.mark.parametrize("schedule, steps", [("jsd", 4), ("linear", 6), ("cosine", 5)])
def test_flat_posterior_is_bayes_rule_under_a_uniform_prior(schedule, steps):
    process = BernoulliProcess.from_schedule(schedule, steps)
    betas = process.betas.tolist()
    for t in range(1, steps + 1):
        got = process.flat_posterior(torch.tensor([[0.0, 1.0]], dtype=torch.float64), t)[0]
        expected = [_one_step_posterior_by_hand(betas, t, bit) for bit in (0, 1)]
        assert got.tolist() == pytest.approx(expected, abs=1e-12)


class Recorder(nn.Module):
    """Logits 0; keeps what it was shown."""

    def __init__(self, dim):
        super().__init__()
        self.dim, self.seen = dim, []

    def forward(self, x_t, t):
        self.seen.append(x_t.clone())
        return torch.zeros_like(x_t)


def test_the_denoiser_reads_one_half_at_t_T_and_almost_the_bits_at_t_1():
    net = Recorder(3)
    model = BinomialDiffusion(net, BernoulliProcess.from_schedule("jsd", 4), denoiser_input="flat_posterior")
    x = torch.tensor([[0.0, 1.0, 1.0]])
    model.predict_x0(x, t=4)
    model.predict_x0(x, t=1)
    # jsd, T = 4: β = 1/4, 1/3, 1/2, 1, so ᾱ_1 = 3/4 and ᾱ_4 = 0
    assert torch.equal(net.seen[0], torch.full((1, 3), 0.5))
    assert torch.allclose(net.seen[1], torch.tensor([[0.125, 0.875, 0.875]]))
    plain = Recorder(3)
    BinomialDiffusion(plain, BernoulliProcess.from_schedule("jsd", 4)).predict_x0(x, t=4)
    assert torch.equal(plain.seen[0], x)  # the default reads the state itself


class IdealFromFlatPosterior(nn.Module):
    """The exact p(x_0 = 1 | x_t) for independent bits of frequency ``pi``, written in terms of
    the flat posterior f: posterior odds = prior odds × f / (1 − f). Right only if the model
    hands it the flat posterior of the step it is at."""

    def __init__(self, pi):
        super().__init__()
        self.dim, self.prior_logit = pi.numel(), torch.logit(pi)

    def forward(self, f, t):
        return self.prior_logit + torch.logit(f.clamp(1e-12, 1 - 1e-12))


def test_sampling_with_the_ideal_denoiser_on_the_flat_posterior_reproduces_the_frequencies():
    pi = torch.tensor([0.02, 0.2, 0.5, 0.8, 0.97])
    model = BinomialDiffusion(IdealFromFlatPosterior(pi), BernoulliProcess.from_schedule("jsd", 10),
                              denoiser_input="flat_posterior")
    n = 40000
    for steps in (None, 3):
        freq = model.sample(n, steps=steps, generator=torch.Generator().manual_seed(1)).mean(0)
        se = torch.sqrt(pi * (1 - pi) / n)
        assert ((freq - pi).abs() < 5 * se).all(), (steps, freq, pi)
    # fed the raw bits, the same denoiser takes x_t ∈ {0, 1} for a certainty and copies it
    wrong = BinomialDiffusion(IdealFromFlatPosterior(pi), BernoulliProcess.from_schedule("jsd", 10))
    freq = wrong.sample(n, generator=torch.Generator().manual_seed(1)).mean(0)
    assert ((freq - pi).abs() > 5 * torch.sqrt(pi * (1 - pi) / n)).any()


def test_the_recipe_key_is_checked_and_reaches_the_model():
    with pytest.raises(RecipeError, match="diffusion.denoiser_input' must be 'state' or 'flat_posterior'"):
        load_recipe(RECIPES / "ml1m.yaml", ["diffusion.denoiser_input=bits"])
    config = load_recipe(RECIPES / "ml1m.yaml", ["diffusion.denoiser_input=flat_posterior"])
    assert build_diffusion(config, 7).denoiser_input == "flat_posterior"
    assert build_diffusion(load_recipe(RECIPES / "ml1m.yaml"), 7).denoiser_input == "state"
