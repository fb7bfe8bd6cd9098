import math

import pytest
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser, ReverseScheduler, build_denoiser


class Oracle(nn.Module):
    """Predicts fixed x_0 logits whatever it is shown: makes reverse runs exactly computable."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.dim = logits.shape[-1]
        self.register_buffer("logits", logits)
        self.calls: list[int] = []

    def forward(self, x_t, t):
        self.calls.append(int(t[0]))
        return self.logits.expand(x_t.shape[0], -1)


def test_forward_returns_the_loss_of_explicit_noise():
    torch.manual_seed(0)
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.1, beta_end=0.4)
    model = BinomialDiffusion(MLPDenoiser(6, [8], time_dim=4), process, loss="bce")
    x0 = torch.tensor([[1.0, 0, 0, 1, 0, 1], [0, 0, 1, 1, 0, 0]])
    noise = torch.rand(2, 6, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 3])
    out = model(x0, t=t, noise=noise)
    x_t = process.add_noise(x0, t, noise=noise)
    logits = model.denoiser(x_t, t)
    expected = nn.functional.binary_cross_entropy_with_logits(logits, x0, reduction="none").sum(1).mean()
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_training_is_seeded():
    process = BernoulliProcess.from_schedule("quadratic", 3)
    x0 = (torch.rand(8, 10, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    losses = []
    for global_seed in (1, 2):
        torch.manual_seed(0)  # the same initial weights
        model = BinomialDiffusion(MLPDenoiser(10, [12], time_dim=4), process, loss="hybrid")
        torch.manual_seed(global_seed)  # the global generator differs: the loss draws from the one passed
        losses.append(model(x0, generator=torch.Generator().manual_seed(5)).loss.item())
    assert losses[0] == losses[1]
    assert model(x0, generator=torch.Generator().manual_seed(6)).loss.item() != losses[0]  # and it draws


def test_scheduler_timesteps_and_errors():
    sched = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 10))
    assert sched.set_timesteps(4, start=10) == [10, 7, 4, 1]
    assert sched.set_timesteps(start=3) == [3, 2, 1]
    assert sched.previous(3) == 2 and sched.previous(1) == 0
    with pytest.raises(ValueError, match="strictly descending"):
        sched.set_timesteps(timesteps=[2, 5])
    with pytest.raises(ValueError, match="start must lie in 1..10"):
        sched.set_timesteps(start=11)


class Echo(nn.Module):
    """Logits that depend on what the denoiser is shown: w_t (x_t − ½), with w_t = 4 / t."""

    dim = 3

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def forward(self, x_t, t):
        self.calls.append(int(t[0]))
        return 4.0 / t[:, None].to(x_t.dtype) * (x_t - 0.5)


def test_reverse_mean_mode_is_the_mixture_chain_computed_by_hand():
    betas = [0.1, 0.2, 0.3]
    process = BernoulliProcess(torch.tensor(betas, dtype=torch.float64))
    model = BinomialDiffusion(Echo(), process)
    x = torch.tensor([[1.0, 0.0, 0.7]], dtype=torch.float64)
    out = model.reverse(x, start=3, mode="mean")
    assert model.denoiser.calls == [3, 2, 1]

    def step(state, t):  # one mean step from t to t − 1, element by element with the scalar formulas
        abar = [1.0, 1 - betas[0], (1 - betas[0]) * (1 - betas[1])]  # ᾱ_0, ᾱ_1, ᾱ_2
        alpha, a_s = 1 - betas[t - 1], abar[t - 1]
        nxt = []
        for v in state:
            p_hat = 1 / (1 + math.exp(-4.0 / t * (v - 0.5)))
            like_one, like_zero = alpha * v + (1 - alpha) / 2, alpha * (1 - v) + (1 - alpha) / 2
            def post(x0):  # q(x_s = 1 | x_t, x_0) by Bayes' rule
                prior_one = a_s * x0 + (1 - a_s) / 2
                return like_one * prior_one / (like_one * prior_one + like_zero * (1 - prior_one))
            nxt.append(p_hat * post(1.0) + (1 - p_hat) * post(0.0))
        return nxt

    state = step(step(x[0].tolist(), 3), 2)
    expected = [1 / (1 + math.exp(-4.0 * (v - 0.5))) for v in state]  # the t = 1 call decodes p̂
    assert out[0].tolist() == pytest.approx(expected, abs=1e-12)


def test_one_step_prediction_uses_requested_time():
    oracle = Oracle(torch.zeros(1, 4))
    model = BinomialDiffusion(oracle, BernoulliProcess.from_schedule("jsd", 5))
    probs = model.predict_x0(torch.ones(2, 4), t=2)
    assert oracle.calls == [2] and torch.equal(probs, torch.full((2, 4), 0.5))


def test_inpainting_holds_known_bits_and_checks_shapes():
    # frequencies of the free bits are checked against an ideal denoiser in test_reverse_exact.py
    model = BinomialDiffusion(Echo(), BernoulliProcess.from_schedule("jsd", 6))
    known = torch.tensor([[0.0, 1.0, 0.0]]).repeat(50, 1)
    mask = torch.tensor([[True, True, False]]).repeat(50, 1)
    out = model.inpaint(known, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :2], known[:, :2]) and set(out[:, 2].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="differ in shape"):
        model.inpaint(known, mask[:, :2])
    with pytest.raises(ValueError, match="needs an initial guess"):
        model.inpaint(known, mask, start=3)
    samples = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, 3) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert set(model.sample(3, decode="threshold").unique().tolist()) <= {0.0, 1.0}


def test_times_outside_the_process_are_refused():
    model = BinomialDiffusion(Echo(), BernoulliProcess.from_schedule("jsd", 5))
    for t in (0, -1, 6, 1000):
        with pytest.raises(ValueError, match="t must be an integer in 1..5"):
            model.predict_x0(torch.ones(1, 3), t=t)


def test_sampling_is_reproducible_with_a_generator():
    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(12, [16], time_dim=8), BernoulliProcess.from_schedule("jsd", 5))
    model.eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(9))
    b = model.sample(4, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_build_denoiser_validates_names_and_parameters():
    net = build_denoiser("mlp", 10, hidden=[200, 200], activation="prelu")
    # RecFusion's network: exactly three linear maps D→200→200→D and no time input
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 200), (200, 200), (200, 10)]
    with pytest.raises(ValueError, match="unknown denoiser 'unet9'"):
        build_denoiser("unet9", 10)
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['width'\]"):
        build_denoiser("mlp", 10, width=3)
    with pytest.raises(ValueError, match="unknown activation"):
        build_denoiser("mlp", 10, activation="swish2")


def test_scheduler_config_round_trips():
    sched = ReverseScheduler(BernoulliProcess.from_schedule("cosine", 12), reverse_kernel="plugin")
    sched.set_timesteps(4)
    again = ReverseScheduler.from_config(sched.to_config())
    assert again.timesteps == [12, 8, 5, 1] and again.reverse_kernel == "plugin"
    assert torch.equal(again.process.betas, sched.process.betas)
    with pytest.raises(ValueError, match="unknown reverse kernel"):
        ReverseScheduler(sched.process, reverse_kernel="exact")
