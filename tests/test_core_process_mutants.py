"""Tests that kill the mutants of the core's closed forms and sampling entry points that the suite let live.

A mutation pass over bindiff/core/process.py, schedules.py and the parts of diffusion.py outside the
reverse loop (argument checks, ``inpaint``/``sample``'s start, the config round trip) left these
changes passing every test that exercises those modules; each test here fails on one or more of them.
Every expectation is independent of the code under test: values worked out by hand with Python floats
(one-step kernels composed, Bayes' rule by enumeration), torch's own uniforms, or an error message.
"""

import math

import pytest
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion, get_schedule
from bindiff.core.process import draw_bits


def hand_marginal(betas, x0: float, t: int, s: int = 0) -> float:
    """P(x_t = 1 | x_s = x0): the one-step kernel p ← p (1 − β) + β / 2 applied for steps s+1..t."""
    p = float(x0)
    for k in range(s, t):
        p = p * (1 - float(betas[k])) + float(betas[k]) / 2
    return p


def hand_joint(betas, x0: float, xt: int, t: int, s: int) -> list[float]:
    """[q(x_s = 0, x_t = xt | x_0), q(x_s = 1, x_t = xt | x_0)] for x_0 a bit or P(x_0 = 1), enumerated."""
    out = []
    for xs in (0, 1):
        one = hand_marginal(betas, x0, s)
        prior = one if xs else 1 - one
        up = hand_marginal(betas, xs, t, s)
        out.append(prior * (up if xt else 1 - up))
    return out


class Fixed(nn.Module):
    """Returns the same x_0 logits whatever it is shown, and records the times it was called at."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.dim = logits.shape[-1]
        self.register_buffer("logits", logits)
        self.calls: list[list[int]] = []

    def forward(self, x_t, t):
        self.calls.append(t.tolist())
        return self.logits.expand(x_t.shape[0], -1)


# -- process.py: the checks on states and times ------------------------------------------------------

@pytest.mark.parametrize("bad", [1.25, -0.25])
def test_values_just_outside_zero_one_are_refused(bad):
    process = BernoulliProcess.from_schedule("jsd", 3)
    with pytest.raises(ValueError, match=rf"^x0: values must lie in \[0, 1\] \(bits or probabilities\), got {bad}$"):
        process.marginal_probs(torch.tensor([[0.0, bad]]), 1)


def test_an_empty_batch_passes_through_the_closed_forms():
    process = BernoulliProcess.from_schedule("jsd", 3)
    empty = torch.zeros(0, 4)
    assert process.marginal_probs(empty, 2).shape == (0, 4)
    assert process.add_noise(empty, 2, generator=torch.Generator().manual_seed(0)).shape == (0, 4)
    assert process.posterior_probs(empty, empty, 2).shape == (0, 4)
    assert process.flat_posterior(empty, 1).shape == (0, 4)


def test_draw_bits_returns_the_dtype_asked_from_torch_uniforms():
    probs = torch.tensor([[0.1, 0.5, 0.9, 0.3]])
    got = draw_bits(probs, torch.Generator().manual_seed(3), dtype=torch.float64)
    uniform = torch.rand(probs.shape, generator=torch.Generator().manual_seed(3))  # float32, as probs
    assert got.dtype == torch.float64 and got.tolist() == (uniform < probs).double().tolist()
    assert draw_bits(probs, torch.Generator().manual_seed(3), dtype=torch.bool).dtype == torch.bool


# -- schedules.py --------------------------------------------------------------------------------------

def test_a_beta_just_above_one_is_refused_by_name():
    with pytest.raises(ValueError, match=r"parameter 'beta' = 1.0005 is outside \(0, 1\]"):
        get_schedule("constant", 2, beta=1.0005)
    with pytest.raises(ValueError, match=r"^betas: beta_2 = 1 is outside \(0, 1\]"):  # 1 + 1e-12, printed to 6 digits
        BernoulliProcess(torch.tensor([0.5, 1 + 1e-12], dtype=torch.float64))


def test_a_table_of_betas_that_is_not_one_dimensional_is_refused_by_its_shape():
    with pytest.raises(ValueError, match=r"^betas: need at least one step \(T >= 1\), got shape \(1, 2\)$"):
        BernoulliProcess(torch.tensor([[0.1, 0.2]]))


def test_zero_steps_are_refused_as_a_step_count():
    with pytest.raises(ValueError, match=r"^schedule 'linear': steps must be an integer >= 1 \(T >= 1\), got 0$"):
        get_schedule("linear", 0)


# -- process.py: times ---------------------------------------------------------------------------------

def test_a_single_time_in_a_tensor_of_one_applies_to_every_row():
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.1, beta_end=0.4)
    x0 = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    got = process.marginal_probs(x0, torch.tensor([2]))
    want = [hand_marginal(process.betas, v, 2) for v in x0.flatten().tolist()]
    assert got.shape == (3, 2) and got.flatten().tolist() == pytest.approx(want, abs=1e-15)


def test_schedule_defaults_are_the_documented_ones():
    """docs/api.md and docs/mathematics.md: linear 1e-4..0.02, quadratic 1e-4..0.1 (β = 0.0001, 0.02661, 0.1
    at T = 3, ᾱ_3 ≈ 0.876), constant 0.01; at T = 1 linear and quadratic give beta_start."""
    assert get_schedule("linear", 3).tolist() == pytest.approx([1e-4, (1e-4 + 0.02) / 2, 0.02], rel=1e-12)
    quadratic = get_schedule("quadratic", 3)
    assert quadratic.tolist() == pytest.approx([1e-4, 0.02661, 0.1], rel=2e-4)
    assert math.prod(1 - b for b in quadratic.tolist()) == pytest.approx(0.876, abs=5e-4)
    assert get_schedule("constant", 2).tolist() == [0.01, 0.01]
    assert get_schedule("linear", 1).tolist() == get_schedule("quadratic", 1).tolist() == pytest.approx([1e-4])


# -- process.py: the config round trip -------------------------------------------------------------------

def test_a_config_naming_another_kernel_is_refused():
    """The flip kernel with rates b is β = 2b: a config saying "flip" beside rates read as β would not rebuild
    this process (from_config of it has twice the betas)."""
    config = {"schedule": "linear", "steps": 3, "kernel": "flip"}
    with pytest.raises(ValueError, match="does not describe these betas"):
        BernoulliProcess(get_schedule("linear", 3), kernel="toward_half", config=config)
    again = BernoulliProcess.from_config(config)
    assert again.kernel == "flip" and again.betas.tolist() == pytest.approx([2e-4, 0.02 + 1e-4, 0.04], rel=1e-12)


# -- times given to the model and the process -------------------------------------------------------------

def _model(**kwargs) -> BinomialDiffusion:
    return BinomialDiffusion(Fixed(torch.tensor([[0.5, -1.0, 2.0]])),
                             BernoulliProcess.from_schedule("linear", 5, beta_start=0.1, beta_end=0.5), **kwargs)


def test_time_zero_among_times_per_row_is_refused():
    model = _model()
    with pytest.raises(ValueError, match=r"^time steps must lie in 1\.\.5, got 0\.\.1$"):
        model.logits(torch.ones(2, 3), torch.tensor([0, 1]))
    assert model.denoiser.calls == []


def test_booleans_given_as_times_are_refused():
    """A mask passed for the times would read as times 1 and 0."""
    process = BernoulliProcess.from_schedule("jsd", 3)
    with pytest.raises(ValueError, match=r"^time steps are integers, got booleans \[True, False\]$"):
        process.marginal_probs(torch.ones(2, 3), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="got booleans"):
        _model().logits(torch.ones(2, 3), torch.tensor([True, True]))


# -- diffusion.py: the constructor's checks -------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"denoiser_input": "flat"}, r"unknown denoiser input 'flat'; choose one of state, flat_posterior"),
    ({"dice_weight": float("nan")}, r"dice_weight must be >= 0, got nan"),
    ({"hybrid_coeff": float("nan")}, r"hybrid_coeff must be >= 0, got nan"),
    ({"train_t_max": 0}, r"train_t_max must lie in 1\.\.5, got 0"),
])
def test_the_model_refuses_unknown_or_nan_settings(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        _model(**kwargs)


def test_a_ratio_of_alpha_bars_backwards_in_time_is_refused():
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.1, beta_end=0.4)
    with pytest.raises(ValueError, match=r"^alpha_ratio\(t, s\) needs s <= t$"):
        process.alpha_ratio(2, 3)
    assert float(process.alpha_ratio(3, 1)) == pytest.approx((1 - 0.2) * (1 - 0.3), rel=1e-14)


# -- add_noise and the noise the model draws -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float64])
def test_add_noise_draws_torch_uniforms_of_the_working_dtype_and_keeps_the_bits_dtype(dtype):
    """x_t = [u < P(x_t = 1 | x_0)], u the generator's uniforms in float32 (float64 for float64 bits), the
    probabilities composed by hand; the bits come back in x_0's dtype."""
    process = BernoulliProcess.from_schedule("linear", 3, beta_start=0.2, beta_end=0.6)
    x0 = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 1]] * 4).to(dtype)
    got = process.add_noise(x0, 2, generator=torch.Generator().manual_seed(11))
    uniform_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    u = torch.rand(x0.shape, generator=torch.Generator().manual_seed(11), dtype=uniform_dtype).tolist()
    want = [[u[i][j] < hand_marginal(process.betas, float(v), 2) for j, v in enumerate(row)]
            for i, row in enumerate(x0.int().tolist())]
    assert got.dtype == dtype and got.bool().tolist() == want


def test_the_noise_the_model_draws_is_the_noise_its_forward_pass_draws():
    """draw_noise(n, D, g) gives the times and uniforms that forward(x0, g) uses, in the same order."""
    # the vb term reads x_t (through the posterior): the loss depends on the noise, not only on the times
    model = BinomialDiffusion(Fixed(torch.tensor([[0.3, -0.2, 1.0]])), BernoulliProcess.from_schedule("jsd", 6),
                              loss="vb")
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    t, noise = model.draw_noise(2, 3, generator=torch.Generator().manual_seed(4))
    again = model.draw_noise(2, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(t, again[0]) and torch.equal(noise, again[1])
    drawn = model(x0, generator=torch.Generator().manual_seed(4))
    given = model(x0, t=t, noise=noise)
    assert torch.equal(drawn.t, t) and torch.equal(drawn.loss, given.loss)
    other = model(x0, t=t, noise=1 - noise)  # the check can see the noise
    assert not torch.equal(other.loss, given.loss)


# -- the posterior and the reverse kernel -------------------------------------------------------------------

def test_a_float64_estimate_beside_float32_bits_gives_the_float64_posterior():
    """p̂ in float64 next to x_t in float32: the plug-in posterior Σ_x0 q(x_s, x_t | x_0) p̂(x_0), normalised,
    enumerated by hand, to float64's precision (float32 would be off by ~1e-8)."""
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.1, beta_end=0.4)
    p_hat = torch.tensor([[0.123456789012, 0.987654321098]], dtype=torch.float64)
    xt = torch.tensor([[1.0, 0.0]])
    got = process.posterior_probs(p_hat, xt, 3)
    want = []
    for p, x in zip(p_hat[0].tolist(), xt[0].tolist()):
        zero, one = [p * j1 + (1 - p) * j0 for j0, j1 in zip(hand_joint(process.betas, 0, int(x), 3, 2),
                                                             hand_joint(process.betas, 1, int(x), 3, 2))]
        want.append(one / (zero + one))
    assert got.dtype == torch.float64 and got[0].tolist() == pytest.approx(want, rel=1e-13)


def test_nan_logits_are_refused_by_the_reverse_kernel():
    process = BernoulliProcess.from_schedule("jsd", 4)
    with pytest.raises(ValueError, match=r"^x0_logits holds NaN"):
        process.reverse_logits(torch.tensor([[0.0, float("nan")]]), torch.ones(1, 2), 3)


def hand_mixture(betas, p_hat: float, xt: int, t: int, s: int) -> float:
    """p_θ(x_s = 1 | x_t) = p̂ q(x_s = 1 | x_t, x_0 = 1) + (1 − p̂) q(x_s = 1 | x_t, x_0 = 0), by Bayes by hand."""
    joints = [hand_joint(betas, x0, xt, t, s) for x0 in (0, 1)]
    post = [j[1] / (j[0] + j[1]) for j in joints]
    return p_hat * post[1] + (1 - p_hat) * post[0]


def test_half_precision_logits_give_the_float32_reverse_kernel():
    """bf16 logits (0.375 and −2.5 are exact in bf16) are lifted before the kernel's log-space sums: the result
    is float32 and within float32's rounding of the mixture by hand (bf16 sums would be off by ~1e-3)."""
    process = BernoulliProcess.from_schedule("linear", 4, beta_start=0.1, beta_end=0.4)
    logits = torch.tensor([[0.375, -2.5, 0.375, -2.5]], dtype=torch.bfloat16)
    xt = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    got = process.reverse_probs(logits, xt, 3)
    want = [hand_mixture(process.betas, 1 / (1 + math.exp(-lg)), int(x), 3, 2)
            for lg, x in zip(logits.float()[0].tolist(), xt[0].tolist())]
    assert got.dtype == torch.float32 and got[0].tolist() == pytest.approx(want, abs=2e-6)


def test_the_prior_term_refuses_values_outside_zero_one():
    process = BernoulliProcess.from_schedule("linear", 4)
    with pytest.raises(ValueError, match=r"^x0: values must lie in \[0, 1\]"):
        process.prior_kl(torch.tensor([[0.0, 2.0]]))


@pytest.mark.parametrize("t", [True, 2.5])
def test_a_boolean_or_fractional_time_is_refused_by_the_model(t):
    model = _model()
    with pytest.raises(ValueError, match=rf"^t must be an integer in 1\.\.5, got {t}$"):
        model.predict_x0(torch.ones(1, 3), t=t)
    assert model.denoiser.calls == []


def test_unknown_kernels_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^unknown kernel 'Flip'; choose one of toward_half, flip$"):
        BernoulliProcess(torch.tensor([0.1, 0.2]), kernel="Flip")
    process = BernoulliProcess.from_schedule("jsd", 4)
    with pytest.raises(ValueError, match=r"^unknown reverse kernel 'plug-in'; choose one of mixture, plugin$"):
        process.reverse_logits(torch.zeros(1, 2), torch.ones(1, 2), 3, kernel="plug-in")


def test_one_step_prediction_defaults_to_time_one():
    """docs/api.md: ``predict_x0(x, t=1, cond=None)``, one denoiser call, p̂ its sigmoid."""
    model = _model()
    got = model.predict_x0(torch.ones(2, 3))
    assert model.denoiser.calls == [[1, 1]]
    want = [1 / (1 + math.exp(-v)) for v in (0.5, -1.0, 2.0)]
    assert got[0].tolist() == pytest.approx(want, rel=1e-6) and got[1].tolist() == pytest.approx(want, rel=1e-6)


# -- diffusion.py: the sampling entry points ---------------------------------------------------------------

class RowMean(nn.Module):
    """Logits from the mean of each row of x_t: every bit's estimate reads every other bit, known ones too."""

    dim = 4

    def forward(self, x_t, t):
        return (6 * x_t.mean(1, keepdim=True) - 3).expand_as(x_t)


def test_inpainting_draws_the_noised_known_bits_from_its_generator():
    """Same generator, same numbers, whatever the global generator holds (the start's known bits too)."""
    model = BinomialDiffusion(RowMean(), BernoulliProcess.from_schedule("linear", 4, beta_start=0.3, beta_end=0.6))
    known = torch.tensor([[1.0, 1.0, 0.0, 0.0]]).repeat(64, 1)
    mask = torch.tensor([[True, True, False, False]]).repeat(64, 1)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(model.inpaint(known, mask, steps=1, generator=torch.Generator().manual_seed(5), mode="mean",
                                  decode="mean"))
    assert torch.equal(runs[0], runs[1])


def test_start_logits_are_refused_where_alpha_bar_is_small_but_not_zero():
    """β = 0.9 four times: ᾱ_4 = 0.1^4 = 1e-4 > 0, so the flat posterior still reads x_T."""
    model = BinomialDiffusion(Fixed(torch.zeros(1, 3)), BernoulliProcess(torch.full((4,), 0.9, dtype=torch.float64)),
                              denoiser_input="flat_posterior")
    assert not model.blind_at(4)
    with pytest.raises(ValueError, match=r"^the denoiser reads x_t at t = 4 \(denoiser_input='flat_posterior', "
                                         r"ᾱ_t = 0\.0001\)"):
        model.start_logits(n=2)


class FixedGiven(Fixed):
    """``Fixed`` that also takes a condition (and ignores it)."""

    def forward(self, x_t, t, cond):
        return super().forward(x_t, t)


def test_start_logits_refuse_a_condition_and_a_row_count_at_once():
    model = BinomialDiffusion(FixedGiven(torch.zeros(1, 3)), BernoulliProcess.from_schedule("jsd", 4),
                              denoiser_input="flat_posterior")
    with pytest.raises(ValueError, match=r"^give cond \(one row per run\) or n .*, not both$"):
        model.start_logits(torch.zeros(2, 5), n=3)
    assert model.denoiser.calls == []
    assert model.start_logits(torch.zeros(2, 5)).shape == (2, 3) and model.denoiser.calls == [[4, 4]]


def test_reverse_from_noised_data_draws_its_noise_from_its_generator():
    model = BinomialDiffusion(RowMean(), BernoulliProcess.from_schedule("linear", 4, beta_start=0.3, beta_end=0.6))
    x = torch.tensor([[1.0, 1.0, 0.0, 1.0]]).repeat(64, 1)
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        runs.append(model.reverse(x, start=3, add_noise=True, generator=torch.Generator().manual_seed(8)))
    assert torch.equal(runs[0], runs[1])
    # the noise is drawn: without it the run starts from x itself
    assert not torch.equal(runs[0], model.reverse(x, start=3))


class Recorder(nn.Module):
    """Records the state of every call and predicts ½ everywhere."""

    dim = 25

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x_t, t):
        self.seen.append(x_t.clone())
        return torch.zeros_like(x_t)


def test_sampling_starts_from_the_prior_drawn_with_its_generator():
    """x_T = [u < prior], u the generator's first float32 uniforms, whatever the global generator holds; 0.3
    itself, not its half-precision 0.2998 (50,000 uniforms: about 10 fall between the two)."""
    model = BinomialDiffusion(Recorder(), BernoulliProcess.from_schedule("jsd", 3))
    torch.manual_seed(123)
    model.sample(2000, steps=1, prior=0.3, generator=torch.Generator().manual_seed(3))
    u = torch.rand((2000, 25), generator=torch.Generator().manual_seed(3))
    assert torch.equal(model.denoiser.seen[0], (u < 0.3).float())


def test_a_warm_start_of_another_shape_is_refused():
    model = _model()
    known, mask = torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"^init \(3, 3\) and known \(2, 3\) differ in shape$"):
        model.inpaint(known, mask, init=torch.ones(3, 3), start=2)
    assert model.denoiser.calls == []


# -- defects the same pass found by probing these modules (each failed before its fix) --------------------

def _mlp_model(steps: int = 4) -> BinomialDiffusion:
    from bindiff.core import MLPDenoiser

    torch.manual_seed(0)
    return BinomialDiffusion(MLPDenoiser(4, (8,), time_dim=4), BernoulliProcess.from_schedule("jsd", steps)).eval()


def test_a_warm_start_with_a_prior_is_refused_rather_than_the_prior_ignored():
    """inpaint(init=x, prior=0.0) drew nothing from the prior: the same bits as without it."""
    x, mask = torch.tensor([[1.0, 0, 1, 0]]), torch.tensor([[True, False, False, False]])
    with pytest.raises(ValueError, match="give one of them"):
        _mlp_model().inpaint(x, mask, init=x, start=2, prior=0.0, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("t", [float("inf"), float("-inf"), float("nan")])
def test_an_infinite_or_nan_time_is_refused_naming_t(t):
    """int(inf) raised an OverflowError, int(nan) a ValueError naming neither t nor its range; the process
    read inf as a time of -9223372036854775808."""
    model = _mlp_model()
    with pytest.raises(ValueError, match=r"t must be an integer in 1\.\.4"):
        model.predict_x0(torch.ones(1, 4), t=t)
    with pytest.raises(ValueError, match="time steps are integers"):
        model.process.marginal_probs(torch.ones(1, 4), t)
    with pytest.raises(ValueError, match="low_max must be an integer >= 1"):
        model.set_time_mixture(0.2, t)


def test_a_config_of_numpy_numbers_rebuilds_a_process_whose_config_is_plain():
    """from_config kept np.float32(0.01), which yaml.safe_dump refuses (from_schedule already converted)."""
    import numpy as np
    import yaml

    config = BernoulliProcess.from_config({"schedule": "constant", "steps": np.int64(3), "beta": np.float32(0.01)}
                                          ).to_config()
    assert yaml.safe_load(yaml.safe_dump(config)) == config
    assert type(config["beta"]) is float and type(config["steps"]) is int
    assert config["beta"] == float(np.float32(0.01))  # the value as given, widened


@pytest.mark.parametrize("n", [2.0, True, -1])
def test_a_sample_count_that_is_not_a_whole_number_is_refused_naming_n(n):
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        _mlp_model().sample(n, generator=torch.Generator().manual_seed(0))


def test_the_start_from_float64_data_stays_float64():
    """prior_from_data computed in float32 whatever the data: 0.1 + 1e-9 lost its last digits."""
    from bindiff.core import MLPDenoiser

    model = BinomialDiffusion(MLPDenoiser(4, (8,), time_dim=4), BernoulliProcess.from_schedule("constant", 1, beta=0.5))
    x0 = torch.tensor([[0.1 + 1e-9, 0, 1, 0], [0.1 + 1e-9, 0, 0, 0]], dtype=torch.float64)
    got = model.prior_from_data(x0)
    assert got.dtype == torch.float64
    # ᾱ_1 = ½: ½ · mean + ¼ per bit, by hand (float32 would move the first by about 1e-9)
    assert got.tolist() == pytest.approx([0.5 * (0.1 + 1e-9) + 0.25, 0.25, 0.5, 0.25], abs=1e-15)


# -- found by the review of that pass (each failed before its fix) ------------------------------------------

def test_a_time_or_count_held_in_a_0d_tensor_or_array_is_read_as_its_number():
    """A loop over torch.arange hands the model 0-d tensors: predict_x0(x, t=torch.tensor(3)) and
    sample(torch.tensor(2)) ran before the checks of infinite times, which refused every non-number."""
    import numpy as np

    model = _model()
    x = torch.ones(1, 3)
    want = model.predict_x0(x, t=3)
    for t in (torch.tensor(3), np.array(3), np.int64(3), 3.0):
        assert torch.equal(model.predict_x0(x, t=t), want)
    for t in (torch.tensor(True), torch.tensor(2.5), np.bool_(True)):
        with pytest.raises(ValueError, match=r"^t must be an integer in 1\.\.5, got "):
            model.predict_x0(x, t=t)
    assert model.sample(torch.tensor(2), steps=1, generator=torch.Generator().manual_seed(0)).shape == (2, 3)


def test_a_time_beyond_a_floats_range_or_none_is_refused_naming_the_range():
    """math.isfinite(10 ** 400) raised an OverflowError; 1e30 was read as the time -9223372036854775808;
    a time of None met torch's "Could not infer dtype of NoneType"."""
    model = _model()
    with pytest.raises(ValueError, match=r"^t must be an integer in 1\.\.5, got 1000"):
        model.predict_x0(torch.ones(1, 3), t=10 ** 400)
    model.set_time_mixture(0.2, 10 ** 400)  # clipped to train_t_max, as any low_max above it is
    assert model.low_time_max == 5
    with pytest.raises(ValueError, match=r"^time steps must lie in 0\.\.5, got 1e\+30\.\.1e\+30$"):
        model.process.marginal_probs(torch.ones(1, 3), 1e30)
    with pytest.raises(ValueError, match=r"^time steps are integers, got None$"):
        model.process.marginal_probs(torch.ones(1, 3), None)
