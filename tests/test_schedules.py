import math

import pytest
import torch

from bindiff.core import BernoulliProcess, get_schedule


def test_quadratic_matches_recfusion_default():
    betas = get_schedule("quadratic", 3, beta_start=1e-4, beta_end=0.1)
    mid = ((math.sqrt(1e-4) + math.sqrt(0.1)) / 2) ** 2
    assert torch.allclose(betas, torch.tensor([1e-4, mid, 0.1], dtype=torch.float64), rtol=1e-12)


def test_jsd_reaches_half_exactly():
    T = 7
    betas = get_schedule("jsd", T)
    assert torch.allclose(betas, torch.tensor([1 / (T - t + 1) for t in range(1, T + 1)], dtype=torch.float64))
    process = BernoulliProcess(betas)
    # ᾱ_t = (T − t) / T, hence x_T ~ B(½) whatever x_0 is
    assert torch.allclose(process.alpha_bar, torch.tensor([(T - t) / T for t in range(T + 1)], dtype=torch.float64))
    x0 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert torch.equal(process.marginal_probs(x0, T), torch.full((1, 2), 0.5, dtype=torch.float64))


def test_linear_constant_cosine_are_valid():
    assert torch.allclose(get_schedule("linear", 5, beta_start=0.1, beta_end=0.5),
                          torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=torch.float64))
    assert torch.equal(get_schedule("constant", 4, beta=0.25), torch.full((4,), 0.25, dtype=torch.float64))
    cos = get_schedule("cosine", 50)
    assert ((cos > 0) & (cos <= 1)).all() and (cos[1:] >= cos[:-1] - 1e-12).all()


def test_cosine_follows_its_formula():
    # Nichol & Dhariwal: ᾱ(t) = f(t) / f(0), f(t) = cos²((t/T + s) / (1 + s) · π/2), s = 0.008,
    # β_t = 1 − ᾱ(t) / ᾱ(t − 1) capped at 0.999; evaluated here with the math module
    T, s = 20, 0.008
    f = [math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2 for k in range(T + 1)]
    expected = [min(1 - (f[k] / f[0]) / (f[k - 1] / f[0]), 0.999) for k in range(1, T + 1)]
    assert get_schedule("cosine", T).tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert expected[-1] == 0.999  # the cap binds at the last step, so ᾱ_T is small but not 0
    abar = BernoulliProcess.from_schedule("cosine", T).alpha_bar
    assert float(abar[T]) == pytest.approx(math.prod(1 - b for b in expected), rel=1e-12)


@pytest.mark.parametrize(
    "name, steps, params, message",
    [
        ("linear", 3, {"beta_start": 0.5, "beta_end": 1.5}, "outside (0, 1]"),
        ("constant", 3, {"beta": 0.0}, "parameter 'beta' = 0.0 is outside (0, 1]"),
        ("linear", 0, {}, "T >= 1"),
        ("quadratic", -2, {}, "T >= 1"),
        ("warp", 3, {}, "unknown schedule 'warp'"),
        ("jsd", 3, {"beta_end": 0.1}, "has no parameter(s) ['beta_end']; it takes []"),
        ("linear", 3, {"beta_start": "1e-3"}, "'beta_start' must be a number, got '1e-3'"),
        ("constant", 3, {"beta": 1.0}, "beta_1 = 1 before the last step"),
    ],
)
def test_invalid_schedules_are_refused(name, steps, params, message):
    with pytest.raises(ValueError) as info:
        get_schedule(name, steps, **params)
    assert message in str(info.value)


def test_flip_kernel_is_the_same_family_with_twice_beta():
    flips = torch.tensor([0.01, 0.05, 0.2], dtype=torch.float64)
    flip = BernoulliProcess(flips, kernel="flip")
    half = BernoulliProcess(2 * flips)
    assert torch.equal(flip.alpha_bar, half.alpha_bar)
    # a flip with probability b keeps a bit's correlation with x_0 by 1 − 2b: ᾱ_t = Π (1 − 2b)
    assert flip.alpha_bar[1:].tolist() == pytest.approx([0.98, 0.98 * 0.9, 0.98 * 0.9 * 0.6], rel=1e-14)
    # one flip step with probability b: P(1 | 1) = 1 − b and P(1 | 0) = b
    x = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(flip.transition_probs(x, 0, 1), torch.tensor([[0.01, 0.99]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(0, 0.5\]"):
        BernoulliProcess(torch.tensor([0.6]), kernel="flip")


def test_config_round_trip():
    process = BernoulliProcess.from_schedule("quadratic", 4, kernel="flip", beta_start=1e-3, beta_end=0.2)
    again = BernoulliProcess.from_config(process.to_config())
    assert again.to_config() == process.to_config()
    assert torch.equal(again.betas, process.betas) and again.kernel == "flip"
    raw = BernoulliProcess(torch.tensor([0.1, 0.3], dtype=torch.float64))
    assert torch.equal(BernoulliProcess.from_config(raw.to_config()).betas, raw.betas)
