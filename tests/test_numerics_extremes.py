"""Core numerics at the extremes, against float64 written out by hand (log1p / expm1)."""
import math

import pytest
import torch

from bindiff.core.process import BernoulliProcess
from bindiff.core.scheduler import ReverseScheduler


def exact_posterior(betas, x0, xt, t, s):
    """q(x_s = 1 | x_t, x_0) for bits, in float64 without cancellation."""
    log_alpha = torch.log1p(-betas)
    log_as, log_ats = float(log_alpha[:s].sum()), float(log_alpha[s:t].sum())
    a_ts, h_ts = math.exp(log_ats), -math.expm1(log_ats) / 2
    a_s, h_s = math.exp(log_as), -math.expm1(log_as) / 2
    w1 = (a_ts * xt + h_ts) * (a_s * x0 + h_s)
    w0 = (a_ts * (1 - xt) + h_ts) * (a_s * (1 - x0) + h_s)
    return w1 / (w0 + w1)


@pytest.mark.parametrize("schedule,steps", [("cosine", 1000), ("cosine", 10000), ("linear", 1000), ("jsd", 100000)])
def test_float32_posterior_within_1e6_of_exact(schedule, steps):
    process = BernoulliProcess.from_schedule(schedule, steps)
    for t in (2, 3, 5):
        for x0 in (0.0, 1.0):
            for xt in (0.0, 1.0):
                got = process.posterior_probs(torch.tensor([[x0]]), torch.tensor([[xt]]), t).item()
                assert abs(got - exact_posterior(process.betas, x0, xt, t, t - 1)) < 1e-6, (t, x0, xt)


def test_float32_marginal_keeps_a_small_flip_rate():
    process = BernoulliProcess.from_schedule("cosine", 100000)
    got = process.marginal_probs(torch.zeros(1, 1), 1).item()
    assert got == pytest.approx(float(process.betas[0]) / 2, rel=1e-5)  # was 7 % off


def test_a_valid_schedule_whose_alpha_bar_nears_underflow_builds():
    BernoulliProcess.from_schedule("constant", 100000, beta=0.00643)  # was an AssertionError


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_decoder_step_computes_in_float32(dtype):
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 10))
    logits = torch.tensor([[3.0, -3.0]], dtype=dtype)
    out = scheduler.step(logits, 1, torch.ones(1, 2, dtype=dtype), mode="mean")
    assert out.prev_probs.dtype == torch.float32
    assert torch.allclose(out.prev_probs.double(), torch.sigmoid(logits.double()), atol=1e-7)


def test_the_prior_term_keeps_a_tiny_kl():
    """KL(B(p) ‖ B(½)) with p = ½ + d/2, d = ±ᾱ_T, is Σ_k d^2k / (2k (2k − 1)) (the Taylor series of
    ½[(1 + d) log(1 + d) + (1 − d) log(1 − d)]); the closed form read 0 for cosine's ᾱ_T ≈ 2.4e-5."""
    process = BernoulliProcess.from_schedule("cosine", 10)
    a = math.prod(1 - float(b) for b in process.betas)
    by_hand = 4 * sum(a ** (2 * k) / (2 * k * (2 * k - 1)) for k in range(1, 6))  # four bits, each d = ±ᾱ_T
    got = process.prior_kl(torch.tensor([[1.0, 0.0, 1.0, 1.0]])).item()
    assert by_hand > 1e-9 and got == pytest.approx(by_hand, rel=1e-6)
    exact = BernoulliProcess.from_schedule("linear", 5, beta_start=0.1, beta_end=0.3)  # d not small: closed form
    d = math.prod(1 - float(b) for b in exact.betas)
    want = ((1 + d) * math.log1p(d) + (1 - d) * math.log1p(-d)) / 2
    assert exact.prior_kl(torch.tensor([[1.0], [0.0]])).tolist() == pytest.approx([want, want], rel=1e-6)


def test_certain_predictions_have_finite_losses():
    """p̂ exactly 0 or 1 (logits ±inf): a right one costs 0, a wrong one a finite, huge loss (NaN before)."""
    from bindiff.core.losses import bce_x0, bernoulli_kl_logits

    logits = torch.tensor([[-math.inf, math.inf, -math.inf]])
    x0 = torch.tensor([[0.0, 1.0, 1.0]])  # right, right, wrong
    per_bit = torch.stack([bce_x0(logits[:, i:i + 1], x0[:, i:i + 1]) for i in range(3)], -1)[0]
    assert per_bit[:2].tolist() == [0.0, 0.0] and math.isfinite(per_bit[2].item()) and per_bit[2].item() > 1e30
    kl = bernoulli_kl_logits(torch.tensor([0.0, 1.0]), torch.tensor([-math.inf, math.inf]))
    assert kl.tolist() == [0.0, 0.0]


class _LinearDenoiser(torch.nn.Module):
    """x_0 logits that follow x_t strongly (an untrained MLP's are near 0 whatever x_t is: its reverse
    loop's p̂ moved by 0.004 when every input bit was flipped, within any tolerance bf16 needs)."""

    def __init__(self):
        super().__init__()
        self.dim = 4
        self.lin = torch.nn.Linear(4, 4)  # a bfloat16 Linear fed float32 raised "mat1 and mat2 ..."
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor([[3.0, -1, 0.5, 0], [-1, 3, 0, 0.5], [0.5, 0, 3, -1], [0, 0.5, -1, 3]]))
            self.lin.bias.fill_(-1.25)

    def forward(self, x_t, t):
        return self.lin(x_t)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("denoiser_input", ["state", "flat_posterior"])
def test_a_half_precision_model_runs_the_mean_reverse_loop(dtype, denoiser_input):
    """The loop fed its float32 probabilities to bfloat16 weights: "mat1 and mat2 must have the same dtype".
    The float32 model with the same weights (exactly: bf16 and fp16 widen without loss) is the reference;
    bf16 rounding moves p̂ by under 2e-3 here, and the states the loop feeds forward move it by more
    than 0.1 (a half-precision path that read them inverted or rounded to bits passed atol=0.02)."""
    import copy

    from bindiff.core import BinomialDiffusion

    half = BinomialDiffusion(_LinearDenoiser(), BernoulliProcess.from_schedule("jsd", 10),
                             denoiser_input=denoiser_input).eval().to(dtype)
    full = copy.deepcopy(half).float()  # the same weights, exactly, in float32
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    got, want = half.reverse(x, start=5, steps=3), full.reverse(x, start=5, steps=3)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=5e-3)
    # the check can see the state: the reference moves by far more than the tolerance when it changes
    assert (full.reverse(1 - x, start=5, steps=3) - want).abs().max() > 0.1
    mask = torch.tensor([[True, False, False, False]] * 2)
    filled = half.inpaint(x, mask, mode="mean", resample=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[mask], x[mask]) and ((filled >= 0) & (filled <= 1)).all()
