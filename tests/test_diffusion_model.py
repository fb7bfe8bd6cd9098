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
    for _ in range(2):
        torch.manual_seed(0)
        model = BinomialDiffusion(MLPDenoiser(10, [12], time_dim=4), process, loss="hybrid")
        losses.append(model(x0, generator=torch.Generator().manual_seed(5)).loss.item())
    assert losses[0] == losses[1]


def test_scheduler_timesteps_and_errors():
    sched = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 10))
    assert sched.set_timesteps(4, start=10) == [10, 7, 4, 1]
    assert sched.set_timesteps(start=3) == [3, 2, 1]
    assert sched.previous(3) == 2 and sched.previous(1) == 0
    with pytest.raises(ValueError, match="strictly descending"):
        sched.set_timesteps(timesteps=[2, 5])
    with pytest.raises(ValueError, match="start must lie in 1..10"):
        sched.set_timesteps(start=11)


def test_reverse_mean_mode_is_the_posterior_chain():
    process = BernoulliProcess(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    logits = torch.tensor([[1.0, -2.0, 0.0]], dtype=torch.float64)
    oracle = Oracle(logits)
    model = BinomialDiffusion(oracle, process)
    x = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    out = model.reverse(x, start=3, mode="mean")
    assert oracle.calls == [3, 2, 1]
    assert torch.allclose(out, torch.sigmoid(logits))
    # the state fed to the second call is the posterior under p̂
    sched = ReverseScheduler(process)
    step = sched.step(logits, 3, x, mode="mean")
    assert torch.allclose(step.prev_probs, process.posterior_probs(torch.sigmoid(logits), x, 3, 2))


def test_one_step_prediction_uses_requested_time():
    oracle = Oracle(torch.zeros(1, 4))
    model = BinomialDiffusion(oracle, BernoulliProcess.from_schedule("jsd", 5))
    probs = model.predict_x0(torch.ones(2, 4), t=2)
    assert oracle.calls == [2] and torch.equal(probs, torch.full((2, 4), 0.5))


def test_inpainting_holds_known_bits_and_samples_the_rest():
    dim = 4
    logits = torch.tensor([[8.0, -8.0, 8.0, -8.0]])
    model = BinomialDiffusion(Oracle(logits), BernoulliProcess.from_schedule("jsd", 6))
    known = torch.tensor([[0.0, 1.0, 0.0, 0.0]]).repeat(500, 1)
    mask = torch.tensor([[True, True, False, False]]).repeat(500, 1)
    out = model.inpaint(known, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :2], known[:, :2])
    # the free bits follow the final decoder p̂ = sigmoid(±8)
    assert out[:, 2].mean().item() > 0.99 and out[:, 3].mean().item() < 0.01
    with pytest.raises(ValueError, match="differ in shape"):
        model.inpaint(known, mask[:, :2])
    samples = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (3, dim) and set(samples.unique().tolist()) <= {0.0, 1.0}


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
