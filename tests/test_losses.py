import math

import pytest
import torch

from bindiff.core import (LOSSES, BernoulliProcess, bce_x0, bernoulli_kl, bernoulli_kl_logits, diffusion_loss,
                          vb_terms)


def test_kl_is_zero_for_equal_distributions():
    p = torch.tensor([0.0, 0.1, 0.5, 0.93, 1.0], dtype=torch.float64)
    assert torch.equal(bernoulli_kl(p, p), torch.zeros_like(p))
    inner = p[1:-1]
    assert torch.allclose(bernoulli_kl_logits(inner, torch.logit(inner)), torch.zeros_like(inner), atol=1e-15)


def test_kl_hand_computed():
    # KL(B(0.2) ‖ B(0.5)) = 0.2 ln 0.4 + 0.8 ln 1.6
    expected = 0.2 * math.log(0.4) + 0.8 * math.log(1.6)
    p, q = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64)
    assert bernoulli_kl(p, q).item() == pytest.approx(expected, rel=1e-14)
    assert bernoulli_kl_logits(p, torch.logit(q)).item() == pytest.approx(expected, rel=1e-12)
    # a certain p puts all mass on one term: KL(B(1) ‖ B(0.25)) = −ln 0.25
    assert bernoulli_kl(torch.ones(1, dtype=torch.float64), torch.tensor([0.25], dtype=torch.float64)).item() == \
        pytest.approx(math.log(4), rel=1e-14)


def test_bce_is_prediction_against_data():
    logits = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    x0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    p = torch.sigmoid(logits)[0]
    expected = -(math.log(p[0]) + math.log(1 - p[1]))
    assert bce_x0(logits, x0).item() == pytest.approx(expected, rel=1e-12)


def hand_vb(betas, x0, xt, t, logits, kernel="mixture") -> list[float]:
    """The bound's term of each row, written out bit by bit from the one-step kernels:
    −log p̂(x_0) at t = 1, else KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t))."""
    alpha_bar = [1.0]
    for beta in betas:  # ᾱ_t = Π (1 − β): no table of the code
        alpha_bar.append(alpha_bar[-1] * (1 - beta))

    def posterior(x0v, xtv, tt):  # Bayes' rule written out for one bit
        a, ab = alpha_bar[tt] / alpha_bar[tt - 1], alpha_bar[tt - 1]
        one = (a * xtv + (1 - a) / 2) * (ab * x0v + (1 - ab) / 2)
        zero = (a * (1 - xtv) + (1 - a) / 2) * (ab * (1 - x0v) + (1 - ab) / 2)
        return one / (one + zero)

    def model_kernel(p, xtv, tt):
        if kernel == "mixture":  # p̂ q(x_s | x_t, x_0 = 1) + (1 − p̂) q(x_s | x_t, x_0 = 0): what sampling runs
            return p * posterior(1.0, xtv, tt) + (1 - p) * posterior(0.0, xtv, tt)
        return posterior(p, xtv, tt)  # D3PM's plug-in: p̂ in place of x_0

    rows = []
    for x0r, xtr, tt, lr in zip(x0.tolist(), xt.tolist(), t.tolist(), logits.tolist()):
        total = 0.0
        for x0v, xtv, logit in zip(x0r, xtr, lr):
            p = 1 / (1 + math.exp(-logit))
            if tt == 1:
                total += -math.log(p if x0v else 1 - p)
            else:
                q, m = posterior(x0v, xtv, tt), model_kernel(p, xtv, tt)
                total += q * math.log(q / m) + (1 - q) * math.log((1 - q) / (1 - m))
        rows.append(total)
    return rows


def test_vb_terms_brute_force():
    betas = [0.1, 0.3, 0.6]
    process = BernoulliProcess(torch.tensor(betas, dtype=torch.float64))
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    xt = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    logits = torch.tensor([[0.3, -2.0, 1.5], [-0.4, 0.8, 2.2], [1.0, -1.0, 0.1]], dtype=torch.float64)
    t = torch.tensor([1, 2, 3])
    for kernel in ("mixture", "plugin"):
        got = vb_terms(process, x0, xt, t, logits, reverse_kernel=kernel)
        expected = hand_vb(betas, x0, xt, t, logits, kernel)
        assert torch.allclose(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-9), kernel
    # the two kernels train different things wherever p̂ is uncertain
    assert not torch.allclose(vb_terms(process, x0, xt, t, logits), vb_terms(process, x0, xt, t, logits, "plugin"))


def test_vb_is_zero_when_the_prediction_is_the_truth():
    process = BernoulliProcess.from_schedule("jsd", 4)
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    xt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    sure = (2 * x0 - 1) * 60  # logits of a confident, correct prediction
    for t in (2, 3, 4):
        assert vb_terms(process, x0, xt, torch.tensor([t]), sure).item() == pytest.approx(0.0, abs=1e-12)


def test_hybrid_combines_terms_and_unknown_loss_is_refused():
    process = BernoulliProcess.from_schedule("quadratic", 3)
    x0 = torch.tensor([[1.0, 0.0]]).double()
    xt = torch.tensor([[1.0, 1.0]]).double()
    logits = torch.tensor([[0.5, 0.2]]).double()
    t = torch.tensor([2])
    terms = diffusion_loss("hybrid", process, x0, xt, t, logits, hybrid_coeff=0.5)
    p = [1 / (1 + math.exp(-v)) for v in (0.5, 0.2)]
    bce = -(math.log(p[0]) + math.log(1 - p[1]))  # the data are 1, 0
    betas = process.betas.tolist()
    assert terms["loss"].item() == pytest.approx(hand_vb(betas, x0, xt, t, logits)[0] + 0.5 * bce, rel=1e-9)
    assert torch.allclose(diffusion_loss("bce", process, x0, xt, t, logits)["loss"], bce_x0(logits, x0))
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        diffusion_loss("mse", process, x0, xt, t, logits)


def test_every_loss_kind_refuses_the_times_and_kernel_the_bound_refuses():
    """docs/api.md: `diffusion_loss` refuses t = 0, a time beyond T, a per-row time of the wrong
    length and an unknown reverse kernel, whichever `kind`. "bce" reads neither, and took them all."""
    process = BernoulliProcess.from_schedule("jsd", 4)
    x0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    logits = torch.zeros(2, 3)
    for kind in LOSSES:
        for t, message in ((0, "1..4"), (5, "1..4"), (torch.tensor([1, 2, 3]), "one time per row"),
                           (torch.tensor([True, False]), "booleans"), (1.5, "integers"), (None, "got None")):
            with pytest.raises(ValueError, match=message):
                diffusion_loss(kind, process, x0, x0, t, logits)
        with pytest.raises(ValueError, match="unknown reverse kernel"):
            diffusion_loss(kind, process, x0, x0, 1, logits, reverse_kernel="mixtur")
        column = diffusion_loss(kind, process, x0, x0, torch.tensor([[1], [4]]), logits)["loss"]
        assert torch.equal(column, diffusion_loss(kind, process, x0, x0, torch.tensor([1, 4]), logits)["loss"])


def test_the_soft_dice_term_by_hand():
    """1 − (2 Σ p x + 1) / (Σ p + Σ x + 1), weighted by D so that 1 weighs it like the mean cross-entropy."""
    process = BernoulliProcess.from_schedule("jsd", 3)
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).double()
    logits = torch.tensor([[2.0, -1.0, 0.0, 0.5], [-3.0, 1.0, -2.0, 0.0]]).double()
    p = [[1 / (1 + math.exp(-v)) for v in row] for row in logits.tolist()]
    dice = [1 - (2 * (p[0][0] + p[0][2]) + 1) / (sum(p[0]) + 2 + 1), 1 - 1 / (sum(p[1]) + 0 + 1)]
    bce = [-sum(math.log(q) if x else math.log(1 - q) for q, x in zip(pr, xr)) for pr, xr in zip(p, x0.tolist())]
    terms = diffusion_loss("bce", process, x0, x0, torch.tensor([1, 1]), logits, dice_weight=0.5)
    assert terms["dice"].tolist() == pytest.approx(dice)
    assert terms["loss"].tolist() == pytest.approx([b + 0.5 * 4 * d for b, d in zip(bce, dice)])
    assert "dice" not in diffusion_loss("bce", process, x0, x0, torch.tensor([1, 1]), logits)


def test_bernoulli_kl_has_the_finite_gradient_where_p_is_certain():
    """xlogy's backward pass gave NaN at q = p ∈ {0, 1}: d/dq −log(1 − q) = 1 at q = 0,
    d/dq −log q = −1 at q = 1."""
    q = torch.tensor([0.0, 1.0, 0.25, 0.5], requires_grad=True)
    p = torch.tensor([0.0, 1.0, 0.0, 1.0])
    bernoulli_kl(p, q).sum().backward()
    assert torch.allclose(q.grad, torch.tensor([1.0, -1.0, 1 / 0.75, -2.0]))


@pytest.mark.parametrize("t", [2, 5, 10])
def test_the_bound_is_exactly_zero_at_a_certain_right_prediction(t):
    """The KL was taken between the posterior's probability and the model's logits: in float32 it
    cancelled to about ±1e-4 per example of 3706 bits, often below 0."""
    from bindiff.core import vb_terms

    process = BernoulliProcess.from_schedule("jsd", 10)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(64, 3706, generator=g) < 0.1).float()
    times = torch.full((64,), t)
    x_t = process.add_noise(x0, times, generator=g)
    certain = torch.where(x0 > 0, torch.tensor(float("inf")), torch.tensor(float("-inf")))
    assert torch.equal(vb_terms(process, x0, x_t, times, certain), torch.zeros(64))
