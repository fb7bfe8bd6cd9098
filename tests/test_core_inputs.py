"""The core as a library user calls it: long schedules in float32, times given as ints, and
arguments of the wrong shape, type or values refused with a message naming them."""

from __future__ import annotations

import math

import pytest
import torch

from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser, ReverseScheduler


def _log_alpha_bar(process: BernoulliProcess, t: int) -> float:
    """log ᾱ_t summed by hand from the β table, in Python floats."""
    return math.fsum(math.log(1 - float(b)) for b in process.betas[:t])


def test_a_long_schedule_steps_in_float32_where_alpha_bar_underflows():
    process = BernoulliProcess.from_schedule("linear", 1000, beta_start=0.01, beta_end=0.2)
    t, s = 1000, 980
    assert float(process.alpha_bar[s]) < 1e-45  # below float32: the old ratio was 0 / 0
    scheduler = ReverseScheduler(process)
    scheduler.set_timesteps(50)
    assert scheduler.previous(t) == s
    out = scheduler.step(torch.zeros(1, 2), t, torch.tensor([[1.0, 0.0]]))  # p̂(x_0 = 1) = ½ for both bits
    # by hand: a = ᾱ_t / ᾱ_s; q(x_s = 1 | x_t, x_0) ∝ q(x_t | x_s = 1) q(x_s = 1 | x_0), then the mixture over x_0
    a = math.exp(_log_alpha_bar(process, t) - _log_alpha_bar(process, s))
    a_s = math.exp(_log_alpha_bar(process, s))
    expected = []
    for x_t in (1.0, 0.0):
        like = {1: a * x_t + (1 - a) / 2, 0: a * (1 - x_t) + (1 - a) / 2}
        given = []
        for x0 in (1.0, 0.0):
            prior_one = a_s * x0 + (1 - a_s) / 2
            one, zero = like[1] * prior_one, like[0] * (1 - prior_one)
            given.append(one / (one + zero))
        expected.append(0.5 * given[0] + 0.5 * given[1])
    assert torch.isfinite(out.prev_probs).all()
    assert out.prev_probs[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_a_constant_schedule_whose_alpha_bar_underflows_in_float64_still_steps():
    process = BernoulliProcess.from_schedule("constant", 1000, beta=0.9)
    assert float(process.alpha_bar[400]) == 0.0  # 0.1 ** 400 is below float64 too
    probs = process.posterior_probs(torch.ones(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                                    500)
    # ᾱ_500 / ᾱ_499 = α = 0.1 and ᾱ_499 ≈ 0: q(x_499 = 1 | x_500 = 1) = (0.1 + 0.45) / (0.55 + 0.45)
    assert probs.item() == pytest.approx(0.55, abs=1e-12)


def test_a_step_to_itself_is_the_identity_even_where_alpha_bar_is_zero():
    process = BernoulliProcess.from_schedule("jsd", 5)
    x = torch.tensor([[1.0, 0.0]])
    assert process.transition_probs(x, 5, 5).tolist() == [[1.0, 0.0]]
    assert process.transition_probs(x, 4, 5).tolist() == [[0.5, 0.5]]  # β_T = 1 erases everything


def _model(dim: int = 4) -> BinomialDiffusion:
    torch.manual_seed(0)
    return BinomialDiffusion(MLPDenoiser(dim, [8], time_dim=4), BernoulliProcess.from_schedule("jsd", 10))


def test_training_at_one_time_given_as_an_int():
    model = _model()
    x0 = torch.tensor([[1.0, 0, 1, 0], [0, 1, 1, 0]])
    noise = torch.rand(2, 4, generator=torch.Generator().manual_seed(0))
    out = model(x0, t=3, noise=noise)
    assert out.t.tolist() == [3, 3]
    assert torch.equal(out.loss, model(x0, t=torch.tensor([3, 3]), noise=noise).loss)


@pytest.mark.parametrize("t, message", [
    (torch.tensor([0, 1]), "time steps must lie in 1..10, got 0..1"),
    (11, "time steps must lie in 1..10"),
    (torch.tensor([2.5, 3.0]), "time steps are integers, got [2.5, 3.0]"),
    (torch.tensor([3]), "t: expected an int or one time per row (2,), got shape (1,)"),
])
def test_training_times_outside_the_process_or_of_the_wrong_shape_are_refused(t, message):
    with pytest.raises(ValueError) as caught:
        _model()(torch.zeros(2, 4), t=t)
    assert message in str(caught.value)


@pytest.mark.parametrize("x0, message", [
    (torch.zeros(0, 4), "x0: an empty batch (0 rows) has no loss"),
    (torch.zeros(2, 5), "x0: expected a batch of vectors (B, 4), got shape (2, 5)"),
    (torch.tensor([[0.0, 0.5, 1, 1]]), "x0: must hold bits (0 or 1), got the value 0.5"),
])
def test_a_training_batch_that_is_not_bits_of_the_right_width_is_refused(x0, message):
    with pytest.raises(ValueError) as caught:
        _model()(x0)
    assert str(caught.value) == message


def test_bits_as_bools_or_float64_are_read_as_the_denoisers_floats():
    model = _model().eval()
    x = torch.tensor([[1.0, 0, 1, 0]])
    expected = model.predict_x0(x, 2)
    assert torch.equal(model.predict_x0(x.double(), 2), expected)
    assert torch.equal(model.predict_x0(x.bool(), 2), expected)
    with pytest.raises(ValueError, match=r"x: expected a batch of vectors \(B, 4\), got shape \(4,\)"):
        model.predict_x0(x[0], 2)


def test_inpainting_refuses_known_values_that_are_not_bits_and_masks_that_are_not_boolean():
    model = _model().eval()
    mask = torch.tensor([[True, True, False, False]])
    with pytest.raises(ValueError, match="known: must hold bits"):
        model.inpaint(torch.tensor([[2.0, 0, 0, 0]]), mask)
    with pytest.raises(ValueError, match="known: must hold bits"):
        model.inpaint(torch.tensor([[float("nan"), 0, 0, 0]]), mask)
    with pytest.raises(ValueError, match="mask: must be boolean"):
        model.inpaint(torch.zeros(1, 4), torch.full((1, 4), 0.3))
    out = model.inpaint(torch.tensor([[1.0, 0, 0, 0]]), mask, generator=torch.Generator().manual_seed(0))
    assert out[0, :2].tolist() == [1.0, 0.0]  # the known bits come through


def test_a_step_refuses_shapes_that_would_broadcast_and_times_it_does_not_visit():
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 10))
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match=r"model_output \(2, 3\) and sample \(2, 1\) differ in shape"):
        scheduler.step(torch.zeros(2, 3), 10, torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"t = 9 is not one of this scheduler's timesteps \[10, 7, 4, 1\]"):
        scheduler.step(torch.zeros(2, 3), 9, torch.zeros(2, 3))


def test_a_prior_of_the_wrong_length_is_named():
    with pytest.raises(ValueError, match=r"prior: shape \(3,\) does not fit samples of shape \(2, 4\)"):
        _model().sample(2, prior=torch.full((3,), 0.5), generator=torch.Generator().manual_seed(0))


def test_training_from_python_leaves_the_callers_generator_and_threads_as_they_were(tmp_path):
    from bindiff import load_recipe, train

    config = load_recipe("ml1m", ["data.dataset=synthetic:tiny", "split.n_valid_users=50", "split.n_test_users=50",
                                  "denoiser.params.hidden=[16]", "train.epochs=1", "train.threads=1",
                                  "output.progress=false", f"output.root={tmp_path}"])
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    expected = torch.rand(3)  # what the caller's next draws are without bindiff in between
    torch.manual_seed(123)
    train(config)
    assert torch.equal(torch.rand(3), expected)  # training reseeded the global generator before
    assert torch.get_num_threads() == threads


# -- dtypes, values and config round trips (a library audit, December 2026) -----------------------

def _by_hand_marginal(betas: list[float], t: int, x0: float) -> float:
    alpha_bar = math.prod(1 - b for b in betas[:t])
    return alpha_bar * x0 + (1 - alpha_bar) / 2


@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.bool, torch.float16, torch.bfloat16])
def test_integer_bool_and_half_precision_bits_give_the_float_closed_form(dtype):
    process = BernoulliProcess.from_schedule("quadratic", 3)
    betas = process.betas.tolist()
    x = torch.tensor([[0, 1]]).to(dtype)
    probs = process.marginal_probs(x, 1)
    assert probs.dtype == torch.float32  # integers would have made ᾱ_1 = 0, half precision ᾱ_1 = 1
    # float32's own rounding of 1 − ᾱ_1 (ᾱ_1 = 0.9999) is 1e-8; integers gave 0.5, half precision 0
    assert probs[0].tolist() == pytest.approx([_by_hand_marginal(betas, 1, 0.0), _by_hand_marginal(betas, 1, 1.0)],
                                              abs=1e-7)
    # the posterior q(x_1 = 1 | x_2, x_0) by Bayes' rule, with the same hand-made tables
    a2, a1 = 1 - betas[1], _by_hand_marginal(betas, 1, 1.0) * 2 - 1  # α_2 and ᾱ_1
    assert process.flat_posterior(x, 1)[0].tolist() == pytest.approx([0.5 - a1 / 2, 0.5 + a1 / 2], abs=1e-7)
    assert process.transition_probs(x, 1, 2)[0].tolist() == pytest.approx([(1 - a2) / 2, a2 + (1 - a2) / 2], abs=1e-7)
    x0, x2 = torch.tensor([[0, 1]]).to(dtype), torch.tensor([[1, 0]]).to(dtype)
    expected = []
    for b0, b2 in [(0.0, 1.0), (1.0, 0.0)]:
        like_one, like_zero = a2 * b2 + (1 - a2) / 2, a2 * (1 - b2) + (1 - a2) / 2
        prior_one = a1 * b0 + (1 - a1) / 2
        expected.append(like_one * prior_one / (like_one * prior_one + like_zero * (1 - prior_one)))
    assert process.posterior_probs(x0, x2, 2)[0].tolist() == pytest.approx(expected, abs=2e-6)  # bf16 gave 9e-37
    # a step reads integer states and half-precision logits the same way as float32 ones
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 5))
    logits = torch.tensor([[-2.0, 2.0]])
    reference = scheduler.step(logits, 3, torch.tensor([[1.0, 0.0]]), mode="mean").prev_probs
    low = scheduler.step(logits.to(torch.float16), 3, torch.tensor([[1, 0]]).to(dtype), mode="mean").prev_probs
    torch.testing.assert_close(low, reference, atol=2e-3, rtol=0)  # the logits' own rounding, no more


def test_rare_bits_are_drawn_at_their_rate_from_half_precision_probabilities():
    from bindiff.core.process import draw_bits

    probs = torch.full((2_000_000,), 1e-5, dtype=torch.float16)
    drawn = draw_bits(probs, torch.Generator().manual_seed(0))
    # 20 expected; half-precision uniforms (never below 2^-11 ≈ 4.9e-4 apart from 0) gave ~500
    assert drawn.dtype == torch.float16 and 5 <= int(drawn.sum()) <= 45


@pytest.mark.parametrize("bad", [2.0, -1.0, float("nan")])
def test_values_outside_zero_one_are_refused_wherever_the_process_reads_a_state(bad):
    process = BernoulliProcess.from_schedule("quadratic", 3)
    x = torch.tensor([[1.0, bad]])
    good = torch.tensor([[1.0, 0.0]])
    for call in (lambda: process.marginal_probs(x, 1), lambda: process.add_noise(x, 3),
                 lambda: process.flat_posterior(x, 1), lambda: process.transition_probs(x, 1, 2),
                 lambda: process.posterior_probs(x, good, 2), lambda: process.posterior_probs(good, x, 2),
                 lambda: process.reverse_probs(torch.zeros(1, 2), x, 2)):
        with pytest.raises(ValueError, match=r"values must lie in \[0, 1\] \(bits or probabilities\)"):
            call()
    model = BinomialDiffusion(MLPDenoiser(2, hidden=[4]), BernoulliProcess.from_schedule("jsd", 5)).eval()
    for call in (lambda: model.predict_x0(x), lambda: model.reverse(x, start=2)):
        with pytest.raises(ValueError, match=r"^x: values must lie in \[0, 1\]"):
            call()
    with pytest.raises(ValueError, match="prior holds probabilities"):
        model.sample(2, prior=float("nan"))


class _Diverged(torch.nn.Module):
    dim = 3

    def forward(self, x_t, t):
        return torch.full_like(x_t, float("nan"))


def test_a_denoiser_that_returns_nan_stops_sampling_rather_than_giving_zeros():
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 5))
    for t in (5, 1):  # a middle step and the decoder step
        scheduler.set_timesteps(timesteps=[t])
        with pytest.raises(ValueError, match=f"model_output holds NaN at t = {t}"):
            scheduler.step(torch.full((2, 3), float("nan")), t, torch.ones(2, 3))
    model = BinomialDiffusion(_Diverged(), BernoulliProcess.from_schedule("jsd", 5))
    with pytest.raises(ValueError, match="NaN"):
        model.sample(2, generator=torch.Generator().manual_seed(0))


def test_reverse_reads_any_bits_like_predict_x0_and_names_a_wrong_width_or_mode():
    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(4, hidden=[8]), BernoulliProcess.from_schedule("jsd", 5)).eval()
    bits = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1]])
    reference = model.reverse(bits.float(), start=2)
    for dtype in (torch.long, torch.float64, torch.bool):
        torch.testing.assert_close(model.reverse(bits.to(dtype), start=2), reference)
    with pytest.raises(ValueError, match=r"x: expected a batch of vectors \(B, 4\), got shape \(2, 5\)"):
        model.reverse(torch.ones(2, 5), start=2)
    with pytest.raises(ValueError, match="mode must be one of"):
        model.reverse(bits, start=1, mode="bogus")  # one step left: the mode was never looked at


def test_the_bound_refuses_times_without_a_term_and_a_time_per_row_of_the_wrong_length():
    from bindiff.core.losses import vb_terms

    process = BernoulliProcess.from_schedule("jsd", 4)
    x0, xt = torch.tensor([[0.0, 1.0, 1.0]] * 2), torch.tensor([[1.0, 0.0, 1.0]] * 2)
    for t in (0, -7, 5):  # t = 0 was read as the decoder term, like t = 1
        with pytest.raises(ValueError, match=r"time steps must lie in 1\.\.4"):
            vb_terms(process, x0, xt, t, torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"t: one time per row \(2\) or one for all, got shape \(3,\)"):
        vb_terms(process, x0, xt, torch.tensor([3, 2, 1]), torch.zeros(2, 3))


def test_a_process_config_is_a_copy_and_must_describe_its_betas():
    import numpy as np

    process = BernoulliProcess(torch.tensor([0.1, 0.2]))
    process.to_config()["betas"][0] = 0.9  # editing the copy leaves the process alone
    assert BernoulliProcess.from_config(process.to_config()).betas.tolist() == pytest.approx([0.1, 0.2])
    with pytest.raises(ValueError, match="does not describe these betas"):
        BernoulliProcess(torch.tensor([0.1, 0.2]), config={"schedule": "jsd", "steps": 9})
    for config, message in [({"kernel": "flip"}, "either 'betas' or 'schedule'"),
                            ({"betas": [0.1], "schedule": "jsd", "steps": 1}, "either 'betas' or 'schedule'"),
                            ({"schedule": "jsd"}, "needs 'steps'"),
                            ({"betas": [0.1], "steps": 1}, "takes only 'kernel' beside them")]:
        with pytest.raises(ValueError, match=message):
            BernoulliProcess.from_config(config)
    from_numpy = BernoulliProcess.from_schedule("jsd", np.int64(4))
    assert from_numpy.num_steps == 4 and type(from_numpy.to_config()["steps"]) is int


@pytest.mark.parametrize("kwargs, message", [
    ({"num_inference_steps": 2.7}, "num_inference_steps must be whole numbers, got 2.7"),
    ({"timesteps": [4.6, 2.2]}, "timesteps must be whole numbers, got 4.6"),
    ({"start": "5"}, "start must be whole numbers"),
    ({"num_inference_steps": 2, "timesteps": [5, 3, 1]}, "not both"),
])
def test_set_timesteps_refuses_fractions_and_two_ways_at_once(kwargs, message):
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 5))
    with pytest.raises(ValueError, match=message):
        scheduler.set_timesteps(**kwargs)
    assert scheduler.set_timesteps(timesteps=[torch.tensor(4), 2.0]) == [4, 2]  # whole values of any type


def test_skipped_steps_visit_the_times_torch_linspace_rounds_to():
    """The grid of n steps from start is torch.linspace(start, 1, n) rounded half to even, time for
    time, for every n and every start up to 120 (a grid computed another way moved the ties: 23 steps
    from 26 visited 13 where torch says 14, so a stored run's reverse chain would change)."""
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("linear", 120))
    for start in range(1, 121):
        for n in range(1, start + 1):
            expected = sorted(set(torch.linspace(start, 1, n, dtype=torch.float64).round().long().tolist()),
                              reverse=True)
            assert scheduler.set_timesteps(n, start=start) == expected, (start, n)
    assert scheduler.set_timesteps(23, start=26)[10:14] == [15, 14, 12, 11]
