"""The process against exact computation: enumeration, Bayes' rule, hand-worked values."""

import itertools

import pytest
import torch

from bindiff.core import BernoulliProcess, get_schedule

SCHEDULES = [("quadratic", 4, {}), ("jsd", 5, {}), ("linear", 3, {"beta_start": 0.2, "beta_end": 0.9})]


def kernel_matrix(beta: float) -> torch.Tensor:
    """K[a, b] = q(x_t = b | x_{t-1} = a), written out from the definition."""
    p_one = lambda a: a * (1 - beta) + beta / 2  # noqa: E731
    return torch.tensor([[1 - p_one(a), p_one(a)] for a in (0, 1)], dtype=torch.float64)


@pytest.mark.parametrize("name, T, params", SCHEDULES)
def test_closed_form_equals_composed_kernels(name, T, params):
    process = BernoulliProcess.from_schedule(name, T, **params)
    composed = torch.eye(2, dtype=torch.float64)
    for t in range(1, T + 1):
        composed = composed @ kernel_matrix(float(process.betas[t - 1]))
        for x0 in (0, 1):
            closed = process.marginal_probs(torch.tensor([[float(x0)]], dtype=torch.float64), t)
            assert closed.item() == pytest.approx(composed[x0, 1].item(), abs=1e-14)


def steps(betas, s: int, t: int) -> torch.Tensor:
    """q(x_t | x_s) as the product of the one-step kernels s+1 .. t: no closed form of the code."""
    out = torch.eye(2, dtype=torch.float64)
    for i in range(s + 1, t + 1):
        out = out @ kernel_matrix(float(betas[i - 1]))
    return out


@pytest.mark.parametrize("name, T, params", SCHEDULES)
def test_posterior_equals_bayes_by_enumeration(name, T, params):
    process = BernoulliProcess.from_schedule(name, T, **params)
    betas = process.betas
    for t in range(1, T + 1):
        for s in range(0, t):  # every skip, down to x_0 itself
            for x0, xt in itertools.product((0, 1), repeat=2):
                # joint over x_s by enumeration: q(x_s | x_0) q(x_t | x_s), from the one-step kernels
                joint = [steps(betas, 0, s)[x0, xs].item() * steps(betas, s, t)[xs, xt].item() for xs in (0, 1)]
                bayes = joint[1] / (joint[0] + joint[1])
                got = process.posterior_probs(
                    torch.tensor([[float(x0)]], dtype=torch.float64),
                    torch.tensor([[float(xt)]], dtype=torch.float64), t, s,
                ).item()
                assert got == pytest.approx(bayes, rel=1e-12, abs=1e-15)


def test_posterior_with_probabilities_marginalises_over_x0():
    process = BernoulliProcess.from_schedule("jsd", 4)
    t, p_hat = 3, 0.3
    xt = torch.tensor([[1.0]], dtype=torch.float64)
    # Σ_x0 q(x_{t-1}, x_t | x0) p̂(x0), normalised over x_{t-1}
    joint = torch.zeros(2, dtype=torch.float64)
    for x0, w in ((0, 1 - p_hat), (1, p_hat)):  # from the one-step kernels, not the closed forms
        joint += w * torch.stack([steps(process.betas, 0, t - 1)[x0, xs] * steps(process.betas, t - 1, t)[xs, 1]
                                  for xs in (0, 1)])
    expected = (joint[1] / joint.sum()).item()
    got = process.posterior_probs(torch.tensor([[p_hat]], dtype=torch.float64), xt, t).item()
    assert got == pytest.approx(expected, rel=1e-12)


def test_posterior_at_t1_returns_x0_and_hand_value():
    process = BernoulliProcess(torch.tensor([0.2, 0.5], dtype=torch.float64))
    x0 = torch.tensor([[0.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    xt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(process.posterior_probs(x0, xt, 1), x0)
    # t = 2, x0 = 1, x2 = 0: q(x1=1|x0=1) = 0.9, q(x2=0|x1=1) = 0.25, q(x2=0|x1=0) = 0.75
    hand = 0.9 * 0.25 / (0.9 * 0.25 + 0.1 * 0.75)
    assert process.posterior_probs(x0[:, 1:2], xt[:, 1:2], 2).item() == pytest.approx(hand, rel=1e-12)


def test_add_noise_with_explicit_noise_is_exact():
    process = BernoulliProcess(torch.tensor([0.2, 0.5], dtype=torch.float64))
    x0 = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    # P(x_2 = 1 | 1) = 0.4·1 + 0.3 = 0.7, P(x_2 = 1 | 0) = 0.3
    noise = torch.tensor([[0.69, 0.71, 0.29, 0.31]], dtype=torch.float64)
    assert torch.equal(process.add_noise(x0, 2, noise=noise), torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="noise has shape"):
        process.add_noise(x0, 2, noise=noise[:, :2])
    with pytest.raises(ValueError, match="time steps must lie in 0..2"):
        process.marginal_probs(x0, 3)


def test_sampling_frequencies_match_probabilities():
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.05, beta_end=0.4)
    n = 200_000
    x0 = torch.cat([torch.zeros(n, 1), torch.ones(n, 1)], dim=1)
    for t in range(1, 5):
        g = torch.Generator().manual_seed(t)
        freq = process.add_noise(x0, t, generator=g).mean(0)
        expected = process.marginal_probs(torch.tensor([[0.0, 1.0]]), t)[0]
        # 5 standard errors of a proportion from 200k draws
        tol = 5 * torch.sqrt(expected * (1 - expected) / n)
        assert ((freq - expected).abs() <= tol).all(), (t, freq, expected)
    # the same generator seed gives the same bits
    a = process.add_noise(x0, 2, generator=torch.Generator().manual_seed(7))
    b = process.add_noise(x0, 2, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_prior_kl_vanishes_for_jsd_and_not_otherwise():
    x0 = torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)
    assert BernoulliProcess.from_schedule("jsd", 6).prior_kl(x0).item() == pytest.approx(0.0, abs=1e-15)
    assert BernoulliProcess(get_schedule("constant", 2, beta=0.1)).prior_kl(x0).item() > 0.1


def test_the_reverse_kernel_to_x0_is_the_prediction_itself_even_when_confident():
    process = BernoulliProcess.from_schedule("jsd", 4)
    logits = torch.tensor([[-120.0, -90.0, 90.0, 120.0]])  # float32, beyond what its sums keep (about ±87)
    x_t = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    for t, s in ((1, None), (3, 0), (4, 0)):
        assert torch.equal(process.reverse_logits(logits, x_t, t, s), logits)  # was (−87.2, −85.4, 87.1, 85.4)
