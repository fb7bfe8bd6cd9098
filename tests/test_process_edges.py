"""Edges of the process and its schedules, by hand: the prior term's series, B(0) never drawn 1,
a posterior to its own time, an unknown reverse kernel, cosine's offset and cap, tables that are no
kernel, booleans as counts."""

import math

import pytest
import torch

from bindiff.core.process import BernoulliProcess, draw_bits
from bindiff.core.schedules import get_schedule


@pytest.mark.parametrize("a", [0.45, 0.009, 3e-9])
def test_prior_kl_equals_its_series_summed_to_convergence(a):
    """KL(B((1+d)/2) || B(1/2)) = sum_k d^2k / (2k(2k-1)), d = alpha_bar_T; summed by hand to 200 terms."""
    process = BernoulliProcess(torch.tensor([1 - a], dtype=torch.float64))
    d = 1.0 - (1.0 - a)  # alpha_1 as the table rounds it
    want = math.fsum(d ** (2 * k) / (2 * k * (2 * k - 1)) for k in range(1, 200))
    got = process.prior_kl(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert got.tolist() == pytest.approx([2 * want], rel=1e-12, abs=0)


def test_a_bit_of_probability_zero_is_never_drawn_one(monkeypatch):
    """B(0) is 0 whatever the uniform, including a uniform of exactly 0 (which float32 draws 1 in 2^24)."""
    process = BernoulliProcess.from_schedule("linear", 4)
    zeros = torch.zeros(3, 5)
    assert process.add_noise(zeros, 0, noise=torch.zeros(3, 5)).sum().item() == 0
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.zeros(shape, dtype=kw.get("dtype")))
    assert draw_bits(zeros).sum().item() == 0


def test_a_posterior_to_its_own_time_is_refused():
    process = BernoulliProcess.from_schedule("linear", 4)
    x = torch.ones(1, 3)
    with pytest.raises(ValueError, match="posterior needs s < t"):
        process.posterior_logits(x, x, 3, s=3)


def test_the_bound_refuses_an_unknown_reverse_kernel_instead_of_using_the_mixture():
    from bindiff.core.losses import diffusion_loss

    process = BernoulliProcess.from_schedule("linear", 4)
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="unknown reverse kernel 'plugni'"):
        diffusion_loss("vb", process, x, x, torch.tensor([2, 3]), torch.zeros(2, 3), reverse_kernel="plugni")


def test_cosine_takes_its_offset_and_its_cap():
    betas = get_schedule("cosine", 4, offset=0.1, max_beta=0.6)
    f = [math.cos((k / 4 + 0.1) / 1.1 * math.pi / 2) ** 2 for k in range(5)]  # by hand
    want = [min(1 - f[k + 1] / f[k], 0.6) for k in range(4)]
    assert betas.tolist() == pytest.approx(want, rel=1e-12)
    assert float(betas[-1]) == 0.6  # the last step capped


def test_a_transition_backwards_in_time_is_refused():
    process = BernoulliProcess.from_schedule("linear", 4)
    with pytest.raises(ValueError, match="s <= t"):
        process.transition_probs(torch.ones(1, 2), 3, 2)


@pytest.mark.parametrize("betas, message", [([0.5, 1.0, 1.0], "beta_2 = 1 before the last step"),
                                            ([0.1, float("nan")], "finite")])
def test_tables_that_are_no_kernel_are_refused_by_name(betas, message):
    with pytest.raises(ValueError, match=message):
        BernoulliProcess(torch.tensor(betas, dtype=torch.float64))


@pytest.mark.parametrize("steps, params, message", [(True, {}, "steps must be an integer"),
                                                    (3, {"beta_end": True}, "must be a number")])
def test_a_boolean_is_no_step_count_or_schedule_parameter(steps, params, message):
    with pytest.raises(ValueError, match=message):
        get_schedule("linear", steps, **params)
