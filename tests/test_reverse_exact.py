"""The reverse process against the truth: an ideal denoiser built here by Bayes' rule.

The data are independent bits with known frequencies f (or, once, a small correlated
distribution enumerated in full). For such data p(x_0 = 1 | x_t) has a closed form, so a
"denoiser" that returns it is perfect, and every exact reverse chain driven by it must
reproduce the data: sampled frequencies within a few standard errors of f. Nothing here is
taken from the code under test: the one-step kernels are 2 x 2 matrices multiplied out by
hand, the posterior comes from enumerating the joint, and the plug-in kernel of D3PM (kept as
``reverse_kernel="plugin"``) is shown to fail the same checks.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion

FREQ = torch.tensor([0.02, 0.1, 0.3, 0.5, 0.8, 0.97], dtype=torch.float64)
N = 40_000
TOLERANCE_SE = 5.0

# name, T, parameters: each ends with ᾱ_T within 3e-4 of 0 (cosine at T = 3: 2.5e-4; linear: β from
# 0.01 to 0.2 over 100 steps)
SCHEDULES = [
    ("jsd", 3, {}), ("jsd", 10, {}), ("jsd", 100, {}),
    ("cosine", 3, {}), ("cosine", 10, {}), ("cosine", 100, {}),
    ("linear", 100, {"beta_start": 0.01, "beta_end": 0.2}),
]


def step_matrix(beta: float) -> torch.Tensor:
    """M[a, b] = q(x_t = b | x_{t-1} = a) of Sohl-Dickstein's kernel B(x (1 − β) + β / 2)."""
    stay = 1 - beta / 2
    return torch.tensor([[stay, 1 - stay], [1 - stay, stay]], dtype=torch.float64)


def transition(betas: list[float], s: int, t: int) -> torch.Tensor:
    """q(x_t | x_s) as a 2 x 2 matrix: the one-step matrices s+1..t multiplied out."""
    m = torch.eye(2, dtype=torch.float64)
    for k in range(s, t):
        m = m @ step_matrix(betas[k])
    return m


class IdealDenoiser(nn.Module):
    """Returns logit p(x_0 = 1 | x_t) for independent bits of frequency ``freq``, by Bayes' rule.

    q(x_t | x_0) is read off the multiplied-out one-step matrices, not the process's closed form.
    """

    def __init__(self, betas: list[float], freq: torch.Tensor):
        super().__init__()
        self.dim = len(freq)
        self.freq = freq
        # like[t][x_0][x_t] = q(x_t | x_0)
        self.like = torch.stack([transition(betas, 0, t) for t in range(len(betas) + 1)])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        like = self.like[t].to(x_t.dtype)  # (B, 2, 2)
        x = x_t.clamp(0, 1)  # "mean" chains feed probabilities: interpolate the likelihood linearly
        given_one = like[:, 1, 1, None] * x + like[:, 1, 0, None] * (1 - x)
        given_zero = like[:, 0, 1, None] * x + like[:, 0, 0, None] * (1 - x)
        f = self.freq.to(x_t.dtype)
        return torch.log(f * given_one) - torch.log((1 - f) * given_zero)


def build(schedule: str, T: int, params: dict, kernel: str = "mixture", freq: torch.Tensor = FREQ):
    process = BernoulliProcess.from_schedule(schedule, T, **params)
    betas = process.betas.tolist()
    return BinomialDiffusion(IdealDenoiser(betas, freq), process, reverse_kernel=kernel), betas


def data_prior(betas: list[float], freq: torch.Tensor) -> torch.Tensor:
    """P(x_T = 1) of each bit under the data, from the multiplied-out kernel."""
    q = transition(betas, 0, len(betas))
    return freq * q[1, 1] + (1 - freq) * q[0, 1]


def worst_z(samples: torch.Tensor, freq: torch.Tensor) -> float:
    """The largest |frequency − f| in standard errors of a mean of N Bernoulli(f) draws."""
    se = torch.sqrt(freq * (1 - freq) / samples.shape[0])
    return float(((samples.double().mean(0) - freq).abs() / se).max())


# -- the kernel itself, against the enumerated joint ----------------------------------------------------
def test_reverse_kernel_is_the_true_conditional_for_every_skip():
    process = BernoulliProcess.from_schedule("linear", 6, beta_start=0.05, beta_end=0.5)
    betas = process.betas.tolist()
    for f, s, t in itertools.product([0.03, 0.4, 0.9], range(0, 6), range(1, 7)):
        if s >= t:
            continue
        q0s, qst, q0t = transition(betas, 0, s), transition(betas, s, t), transition(betas, 0, t)
        prior = torch.tensor([1 - f, f], dtype=torch.float64)
        for xt in (0, 1):
            # joint[x0, xs] at this x_t, then the two conditionals the model sees and must produce
            joint = prior[:, None] * q0s * qst[:, xt][None, :]
            true_next = float(joint[:, 1].sum() / joint.sum())  # p(x_s = 1 | x_t)
            p_hat = float(prior[1] * q0t[1, xt] / (prior @ q0t[:, xt]))  # p(x_0 = 1 | x_t)
            logit = torch.tensor([[math.log(p_hat / (1 - p_hat))]], dtype=torch.float64)
            x = torch.tensor([[float(xt)]], dtype=torch.float64)
            got = float(process.reverse_probs(logit, x, t, s, kernel="mixture"))
            assert got == pytest.approx(true_next, abs=1e-9), (f, s, t, xt)
            plugin = float(process.reverse_probs(logit, x, t, s, kernel="plugin"))
            if s > 0 and 0.05 < p_hat < 0.95:
                # the plug-in weights x_0 by q(x_t | x_0) twice: visibly wrong wherever p̂ is uncertain
                assert abs(plugin - true_next) > 1e-3, (f, s, t, xt)


def test_unknown_reverse_kernel_is_refused():
    process = BernoulliProcess.from_schedule("jsd", 4)
    with pytest.raises(ValueError, match="unknown reverse kernel 'exactish'"):
        process.reverse_logits(torch.zeros(1, 2), torch.zeros(1, 2), 2, kernel="exactish")
    with pytest.raises(ValueError, match="unknown reverse kernel"):
        BinomialDiffusion(IdealDenoiser(process.betas.tolist(), FREQ), process, reverse_kernel="d3pm")


# -- sampling, skip-step sampling, inpainting and reverse with the ideal denoiser -----------------------
@pytest.mark.parametrize("schedule,T,params", SCHEDULES)
def test_sampling_reproduces_the_data(schedule, T, params):
    model, betas = build(schedule, T, params)
    # ᾱ_T is within 3e-4 of 0 for these schedules, so B(½) is a close start; the data's own
    # q(x_T) makes it exact, and B(½) is checked separately below.
    prior = data_prior(betas, FREQ)
    samples = model.sample(N, generator=torch.Generator().manual_seed(T), prior=prior)
    assert set(samples.unique().tolist()) <= {0.0, 1.0}
    assert worst_z(samples, FREQ) < TOLERANCE_SE


@pytest.mark.parametrize("schedule,T,params", [("jsd", 10, {}), ("jsd", 100, {}), ("cosine", 100, {})])
def test_sampling_from_half_reproduces_the_data_when_the_chain_ends_at_half(schedule, T, params):
    model, _ = build(schedule, T, params)
    samples = model.sample(N, generator=torch.Generator().manual_seed(1))
    assert worst_z(samples, FREQ) < TOLERANCE_SE


@pytest.mark.parametrize("schedule,T,params,steps", [
    ("jsd", 100, {}, 7), ("jsd", 100, {}, 25), ("cosine", 100, {}, 10), ("jsd", 10, {}, 3),
    ("linear", 100, {"beta_start": 0.01, "beta_end": 0.2}, 4),
])
def test_skip_step_sampling_reproduces_the_data(schedule, T, params, steps):
    model, betas = build(schedule, T, params)
    calls = []
    model.denoiser.register_forward_hook(lambda m, args, out: calls.append(int(args[1][0])))
    samples = model.sample(N, steps=steps, generator=torch.Generator().manual_seed(2), prior=data_prior(betas, FREQ))
    assert len(calls) == steps and calls[0] == T and calls[-1] == 1
    assert worst_z(samples, FREQ) < TOLERANCE_SE


@pytest.mark.parametrize("schedule,T,params", [("jsd", 100, {}), ("cosine", 10, {}), ("jsd", 3, {})])
def test_inpainting_reproduces_the_data_on_the_free_bits(schedule, T, params):
    model, betas = build(schedule, T, params)
    gen = torch.Generator().manual_seed(3)
    known = (torch.rand(N, len(FREQ), generator=gen, dtype=torch.float64) < 0.5).double()
    mask = torch.zeros(N, len(FREQ), dtype=torch.bool)
    mask[:, [1, 4]] = True  # two bits held at arbitrary values; the bits are independent, so the rest keep f
    out = model.inpaint(known, mask, generator=gen, prior=data_prior(betas, FREQ))
    assert torch.equal(out[:, [1, 4]], known[:, [1, 4]])
    free = [0, 2, 3, 5]
    assert worst_z(out[:, free], FREQ[free]) < TOLERANCE_SE


def test_inpainting_with_resampling_stays_exact():
    model, betas = build("jsd", 10, {})
    gen = torch.Generator().manual_seed(7)
    known = torch.ones(N, len(FREQ), dtype=torch.float64)
    mask = torch.zeros(N, len(FREQ), dtype=torch.bool)
    mask[:, 3] = True
    calls = []
    model.denoiser.register_forward_hook(lambda m, args, out: calls.append(int(args[1][0])))
    out = model.inpaint(known, mask, steps=4, generator=gen, resample=3)
    assert calls == [10, 10, 10, 7, 7, 7, 4, 4, 4, 1]  # each step to s > 0 three times, the decoder once
    free = [0, 1, 2, 4, 5]
    assert worst_z(out[:, free], FREQ[free]) < TOLERANCE_SE
    with pytest.raises(ValueError, match="resample must be an integer >= 1"):
        model.inpaint(known, mask, resample=0)


@pytest.mark.parametrize("schedule,T,params,start", [("jsd", 100, {}, 40), ("cosine", 10, {}, 10),
                                                     ("linear", 100, {"beta_start": 0.01, "beta_end": 0.2}, 30)])
def test_reverse_from_noised_data_reproduces_the_data(schedule, T, params, start):
    model, _ = build(schedule, T, params)
    gen = torch.Generator().manual_seed(4)
    x0 = (torch.rand(N, len(FREQ), generator=gen, dtype=torch.float64) < FREQ).double()
    # x_start ~ q(x_start | x_0), then sampled reverse steps: the last p̂(x_0) averages to f
    p_hat = model.reverse(x0, start=start, mode="sample", add_noise=True, generator=gen)
    assert worst_z(p_hat, FREQ) < TOLERANCE_SE
    # the warm-started inpainting (SDEdit) with nothing known is the same chain, ending in bits
    nothing = torch.zeros_like(x0, dtype=torch.bool)
    bits = model.inpaint(x0, nothing, init=x0, start=start, generator=gen)
    assert worst_z(bits, FREQ) < TOLERANCE_SE


@pytest.mark.parametrize("schedule,T,params", [("jsd", 100, {}), ("jsd", 10, {}), ("cosine", 100, {})])
def test_the_plugin_kernel_fails_the_same_check(schedule, T, params):
    model, betas = build(schedule, T, params, kernel="plugin")
    samples = model.sample(N, generator=torch.Generator().manual_seed(5), prior=data_prior(betas, FREQ))
    assert worst_z(samples, FREQ) > 4 * TOLERANCE_SE
    rare = samples[:, 0].double().mean().item()  # f = 0.02
    assert rare > 0.03


# -- a correlated distribution, enumerated -----------------------------------------------------------------
STATES = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
# bits 0-1 are usually equal, bit 2 follows bit 0, bit 3 is rare: far from a product of marginals
WEIGHTS = torch.tensor([30, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 8, 1, 25, 3], dtype=torch.float64)
JOINT = WEIGHTS / WEIGHTS.sum()


class EnumeratedDenoiser(nn.Module):
    """p(x_0,d = 1 | x_t) for the joint JOINT over 4 bits, by summing over its 16 states."""

    def __init__(self, betas: list[float]):
        super().__init__()
        self.dim = 4
        self.like = torch.stack([transition(betas, 0, t) for t in range(len(betas) + 1)])

    def forward(self, x_t, t):
        like = self.like[t]  # (B, 2, 2): like[b, x0, xt]
        x = x_t.round()
        given_one = like[:, 1, 1, None] * x + like[:, 1, 0, None] * (1 - x)  # q(x_t,d | x_0,d = 1), (B, 4)
        given_zero = like[:, 0, 1, None] * x + like[:, 0, 0, None] * (1 - x)
        ones = STATES[None].bool()  # (1, 16, 4)
        per_bit = torch.where(ones, given_one[:, None, :], given_zero[:, None, :])  # (B, 16, 4)
        weight = JOINT[None, :] * per_bit.prod(-1)  # p(state) q(x_t | state), (B, 16)
        p1 = (weight[:, :, None] * STATES[None]).sum(1) / weight.sum(1, keepdim=True)
        p1 = p1.clamp(1e-12, 1 - 1e-12)
        return torch.log(p1) - torch.log1p(-p1)


def total_variation(samples: torch.Tensor) -> float:
    codes = (samples.long() * torch.tensor([8, 4, 2, 1])).sum(1)
    counts = torch.bincount(codes, minlength=16).double() / samples.shape[0]
    return 0.5 * float((counts - JOINT).abs().sum())


def test_a_correlated_distribution_is_sampled_with_small_total_variation():
    process = BernoulliProcess.from_schedule("jsd", 100)
    betas = process.betas.tolist()
    exact = BinomialDiffusion(EnumeratedDenoiser(betas), process)
    plugin = BinomialDiffusion(EnumeratedDenoiser(betas), process, reverse_kernel="plugin")
    samples = exact.sample(N, generator=torch.Generator().manual_seed(6)).double()
    # A kernel that factorises over bits is exact only as the steps shrink; at T = 100 with
    # 40,000 draws the distance is about 0.011 (sampling noise alone is about 0.006; at T = 200
    # it is 0.005). The plug-in lands near 0.3: an eighth of the draws tells it apart (noise about 0.02).
    assert total_variation(samples) < 0.025
    assert total_variation(plugin.sample(N // 8, generator=torch.Generator().manual_seed(6)).double()) > 0.1


# -- the spread of a whole-vector statistic needs small steps ---------------------------------------------
INTERVAL_D = 120
HALF_WIDTHS = torch.arange(10, 31)  # masks: the interval |i − 60| < w, w uniform on 10..30
INTERVALS = ((torch.arange(INTERVAL_D)[None] - 60).abs() < HALF_WIDTHS[:, None]).double()


class IntervalDenoiser(nn.Module):
    """The exact p(x_0 = 1 | x_t) for data that are one of 21 centred intervals, enumerated."""

    def __init__(self, betas: list[float]):
        super().__init__()
        self.dim = INTERVAL_D
        self.like = torch.stack([transition(betas, 0, t) for t in range(len(betas) + 1)])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        like, x = self.like[t].double(), x_t.double()
        given_one = like[:, 1, 1, None] * x + like[:, 1, 0, None] * (1 - x)  # q(x_t | x_0 = 1) per bit
        given_zero = like[:, 0, 1, None] * x + like[:, 0, 0, None] * (1 - x)
        weights = torch.softmax(given_one.log() @ INTERVALS.T + given_zero.log() @ (1 - INTERVALS).T, dim=1)
        return torch.logit((weights @ INTERVALS).clamp(1e-12, 1 - 1e-12)).to(x_t.dtype)


def test_the_spread_of_the_mask_size_needs_small_reverse_steps():
    """Each step draws the bits independently given p̂, so a statistic of the whole vector (here the
    interval's length, standard deviation 12.1 bits) comes out too narrow when the steps are few
    and large, which is why generated hippocampi at T = 10 vary too little in volume (docs/masks.md).
    With the exact denoiser, all 40 steps keep the spread within 5 %; 3 large steps lose more than
    15 % of it."""
    process = BernoulliProcess.from_schedule("jsd", 40)
    model = BinomialDiffusion(IntervalDenoiser(process.betas.tolist()), process)
    truth = float((2 * HALF_WIDTHS - 1).double().std(unbiased=False))
    spread = {steps: float(model.sample(8000, steps=steps, generator=torch.Generator().manual_seed(steps))
                           .double().sum(1).std())
              for steps in (3, 40)}
    assert abs(spread[40] / truth - 1) < 0.05, spread
    assert spread[3] / truth < 0.85, spread


def test_corrector_steps_give_back_part_of_the_spread_few_steps_lose():
    """``sample(resample=r)`` goes back by q(x_t | x_s) and steps again r times per step. With the
    exact denoiser its forward-backward pair pulls the chain of independent per-bit draws toward
    the true marginal of x_s (which the true joint step would leave in place): on the interval masks, 5 steps keep about 84 %
    of the length's spread and 4 corrector rounds about 92 % (each figure ± 1 % at 4,000 draws)."""
    process = BernoulliProcess.from_schedule("jsd", 40)
    model = BinomialDiffusion(IntervalDenoiser(process.betas.tolist()), process)
    truth = float((2 * HALF_WIDTHS - 1).double().std(unbiased=False))
    spread = {r: float(model.sample(4000, steps=5, generator=torch.Generator().manual_seed(r), resample=r)
                       .double().sum(1).std()) / truth
              for r in (1, 4)}
    assert spread[1] < 0.88 < spread[4] < 1.03, spread
