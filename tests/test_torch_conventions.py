"""The core inside a PyTorch user's own loop: DDPM habits (Gaussian noise), times of other
shapes, float64 models for gradcheck, half-precision targets, torch.compile, and configs and
settings that were taken without a word. Every expected value is computed here by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from bindiff.core import (BernoulliProcess, BinomialDiffusion, MLPDenoiser, ReverseScheduler, UNetDenoiser,
                          bce_x0, diffusion_loss, get_schedule, soft_dice_x0, vb_terms)


def _process() -> BernoulliProcess:
    return BernoulliProcess.from_schedule("linear", 10, beta_start=0.1, beta_end=0.3)


def test_gaussian_noise_is_refused_as_a_bernoulli_draw():
    process = _process()
    x0 = torch.zeros(50, 4)
    gaussian = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"noise: must be uniform on \[0, 1\)"):
        process.add_noise(x0, 5, noise=gaussian)
    model = BinomialDiffusion(MLPDenoiser(4, hidden=[8]), process)
    with pytest.raises(ValueError, match="uniform"):
        model(x0, t=5, noise=gaussian)
    with pytest.raises(ValueError, match="uniform"):
        process.add_noise(x0, 5, noise=torch.ones(50, 4))  # 1 is outside [0, 1): it would never draw a 1
    # uniform noise is the exact draw: x_t = 1 where noise < P(x_t = 1 | x_0 = 0) = (1 − ᾱ_5) / 2
    half_gap = (1 - math.prod(1 - float(b) for b in process.betas[:5])) / 2
    noise = torch.tensor([[half_gap - 1e-6, half_gap + 1e-6, 0.0, 0.999]])
    assert process.add_noise(torch.zeros(1, 4), 5, noise=noise).tolist() == [[1.0, 0.0, 1.0, 0.0]]


def test_a_time_tensor_of_another_shape_is_refused():
    process = _process()
    with pytest.raises(ValueError, match=r"t: expected an int or one time per row \(3,\), got shape \(1, 3\)"):
        process.marginal_probs(torch.ones(3, 3), torch.tensor([[1, 5, 10]]))  # was applied per column
    with pytest.raises(ValueError, match=r"one time per row \(1,\)"):
        process.marginal_probs(torch.ones(1, 3), torch.tensor([1, 5, 10]))  # gave three rows from one
    with pytest.raises(ValueError, match="t:"):
        process.add_noise(torch.ones(1, 3), torch.tensor([1, 5]), generator=torch.Generator().manual_seed(0))
    # one time per row (also as t[:, None]), and one time for all, still work: ᾱ_t + (1 − ᾱ_t) / 2 at x_0 = 1
    assert torch.equal(process.marginal_probs(torch.ones(2, 1), torch.tensor([[1], [3]])),
                       process.marginal_probs(torch.ones(2, 1), torch.tensor([1, 3])))
    got = process.marginal_probs(torch.ones(2, 1), torch.tensor([1, 3]))
    for row, t in zip(got[:, 0].tolist(), (1, 3)):
        a = math.prod(1 - float(b) for b in process.betas[:t])
        assert row == pytest.approx(a + (1 - a) / 2, rel=1e-6)


def test_alpha_ratio_refuses_what_is_no_ratio_of_the_schedule():
    process = _process()
    for t, s in ((2, 5), (-1, 0), (2.5, 0), (11, 0)):
        with pytest.raises(ValueError):
            process.alpha_ratio(t, s)
    beta = [0.1 + k * 0.2 / 9 for k in range(10)]  # the linear schedule, β_1..β_10
    assert float(process.alpha_ratio(3, 1)) == pytest.approx((1 - beta[1]) * (1 - beta[2]), rel=1e-12)


def test_the_scheduler_step_checks_its_sample_and_its_time():
    scheduler = ReverseScheduler(_process())
    for value in (2.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"sample: values must lie in \[0, 1\]"):
            scheduler.step(torch.zeros(1, 4), 5, torch.full((1, 4), value))
    with pytest.raises(ValueError, match=r"t: one time for the whole batch"):
        scheduler.step(torch.zeros(3, 4), torch.full((3,), 7), torch.ones(3, 4))
    with pytest.raises(ValueError, match="known and mask go together"):
        model = BinomialDiffusion(MLPDenoiser(4, hidden=[8]), _process())
        model.run_reverse(torch.ones(1, 4), scheduler, known=torch.ones(1, 4))  # known was ignored


def test_a_scheduler_config_with_a_misspelt_key_is_refused():
    config = {"process": {"schedule": "jsd", "steps": 10}, "reverse_kernal": "plugin"}
    with pytest.raises(ValueError, match="unknown: reverse_kernal"):
        ReverseScheduler.from_config(config)  # was the default kernel, without a word
    with pytest.raises(ValueError, match="'process' is missing"):
        ReverseScheduler.from_config({"reverse_kernel": "mixture"})  # was a KeyError
    good = {"process": {"schedule": "jsd", "steps": 10}, "reverse_kernel": "plugin", "timesteps": [10, 5, 1]}
    back = ReverseScheduler.from_config(good)
    assert (back.reverse_kernel, back.timesteps) == ("plugin", [10, 5, 1])


def test_model_settings_that_were_coerced_are_refused():
    denoiser = MLPDenoiser(4, hidden=[8])
    for bad in (float("nan"), -5):
        with pytest.raises(ValueError, match="hybrid_coeff"):
            BinomialDiffusion(denoiser, _process(), loss="hybrid", hybrid_coeff=bad)
    for bad in (2.7, True, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="train_t_max"):
            BinomialDiffusion(denoiser, _process(), train_t_max=bad)
    with pytest.raises(ValueError, match="MLPDenoiser.forward"):
        BinomialDiffusion(denoiser, _process(), self_condition=True)  # a TypeError at the first forward
    with pytest.raises(ValueError, match="hybrid_coeff and dice_weight"):
        diffusion_loss("hybrid", _process(), torch.ones(1, 2), torch.ones(1, 2), 2, torch.zeros(1, 2),
                       hybrid_coeff=-1)


def test_the_public_losses_refuse_values_that_are_no_bits():
    logits = torch.zeros(1, 3)
    for value in (2.0, -1.0, float("nan")):
        x0 = torch.tensor([[0.0, 1.0, value]])
        with pytest.raises(ValueError, match=r"x0: values must lie in \[0, 1\]"):
            bce_x0(logits, x0)
        with pytest.raises(ValueError, match="x0"):
            vb_terms(_process(), x0, torch.ones(1, 3), 2, logits)
        with pytest.raises(ValueError, match="x0"):
            soft_dice_x0(logits, x0)
    with pytest.raises(ValueError, match="x_t"):
        vb_terms(_process(), torch.ones(1, 3), torch.full((1, 3), 3.0), 2, logits)


def test_half_and_bool_targets_give_the_float_loss():
    # by hand: p̂ = σ(l); −Σ [x log p̂ + (1 − x) log(1 − p̂)] over D = 3000 bits, in float64
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3000, generator=gen)
    x0 = (torch.rand(2, 3000, generator=gen) < 0.3).float()
    p = torch.sigmoid(logits.double())
    by_hand = -(x0.double() * p.log() + (1 - x0.double()) * (1 - p).log()).sum(-1)
    for target in (x0.half(), x0.bool(), x0.to(torch.uint8), x0.bfloat16()):
        got = bce_x0(logits, target)
        assert got.dtype == torch.float32  # a float16 sum of 3000 terms was off by whole units
        assert got.double().tolist() == pytest.approx(by_hand.tolist(), rel=1e-5)
    process = _process()
    x_t = process.add_noise(x0, 4, generator=gen)
    full = vb_terms(process, x0, x_t, torch.tensor([2, 6]), logits)
    half = vb_terms(process, x0.half(), x_t.half(), torch.tensor([2, 6]), logits)  # was an index_put error
    assert torch.equal(full, half)


def test_a_float64_model_passes_gradcheck():
    process = _process()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(3, hidden=[4], time_dim=4), process, loss="hybrid",
                              dice_weight=0.5).double()
    x0 = (torch.rand(5, 3, generator=gen) < 0.5).double()
    t = torch.tensor([1, 2, 5, 7, 10])
    noise = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    bias = model.denoiser.out.bias.detach().clone().requires_grad_(True)
    loss = model(x0, t=t, noise=noise).loss
    assert loss.dtype == torch.float64  # the logits were rounded to float32 first

    def of_bias(b):
        return functional_call(model, {"denoiser.out.bias": b}, (x0,), {"t": t, "noise": noise}).loss

    assert torch.autograd.gradcheck(of_bias, (bias,))  # finite differences: an independent truth


@pytest.mark.parametrize("make", [lambda: MLPDenoiser(6, hidden=[8], time_dim=4),
                                  lambda: UNetDenoiser(dim=16, grid=[4, 4], channels=[4, 8], time_dim=8)])
def test_denoisers_follow_double(make):
    torch.manual_seed(0)
    denoiser = make()
    x = (torch.rand(2, denoiser.dim, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    t = torch.tensor([1, 7])
    single = denoiser(x, t)
    double = denoiser.double()(x.double(), t)  # was "mat1 and mat2 must have the same dtype"
    assert double.dtype == torch.float64
    assert torch.allclose(double.float(), single, atol=1e-5)  # the same weights in float32


def test_value_checks_run_inside_torch_compile():
    torch._dynamo.reset()
    scheduler = ReverseScheduler(_process())
    compiled = torch.compile(scheduler.step, backend="eager")
    with pytest.raises(ValueError, match="NaN"):  # gave zeros without a word
        compiled(torch.full((2, 4), float("nan")), 10, torch.ones(2, 4))
    process = _process()
    noised = torch.compile(lambda x: process.marginal_probs(x, 3), backend="eager")
    with pytest.raises(ValueError, match="x0"):  # gave 1.4
        noised(torch.full((1, 3), 2.0))
    assert noised(torch.zeros(1, 3)).tolist() == process.marginal_probs(torch.zeros(1, 3), 3).tolist()


def test_numpy_integers_name_a_schedule_and_reprs_stay_short():
    assert torch.equal(get_schedule("jsd", np.int64(10)), get_schedule("jsd", 10))
    assert torch.equal(get_schedule("linear", 5, beta_start=np.float32(0.25), beta_end=0.5),
                       get_schedule("linear", 5, beta_start=0.25, beta_end=0.5))
    process = BernoulliProcess(torch.full((1000,), 0.01))
    assert len(repr(process)) < 200  # a thousand rates were printed
    model = BinomialDiffusion(MLPDenoiser(4, hidden=[8]), process, loss="hybrid")
    assert "loss='hybrid'" in repr(model) and "T=1000" in repr(model)


def test_numpy_integers_size_denoisers_and_baselines():
    from bindiff.core import build_denoiser
    from bindiff.tasks.recommendation.baselines.multvae import MultVAE
    from bindiff.tasks.recommendation.baselines.recfusion import RecFusionBin

    # a value read from a numpy array or a sweep is an integer: it was refused as "not an integer"
    assert len(build_denoiser("mlp", 4, members=np.int64(2), hidden=[8]).members) == 2
    assert MultVAE(4, hidden=[np.int64(3)], latent=np.int64(2)).latent == 2
    assert RecFusionBin(4, steps=np.int64(2), hidden=np.int64(5), depth=np.int64(1)) is not None
    with pytest.raises(ValueError, match=r"hidden\[0\] must be an integer >= 1, got 2.5"):
        MultVAE(4, hidden=[2.5])
