"""The baseline recommenders against hand and brute-force computations (tiny data only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from bindiff.tasks.recommendation.baselines import EASE, GaussianDiffusionRecommender, MultVAE, Popularity, RecFusionBin
from bindiff.tasks.recommendation.baselines.ease import ease_weights
from bindiff.tasks.recommendation.baselines.gaussian import linear_var_tables
from bindiff.tasks.recommendation.baselines.recfusion import flip, recfusion_betas, swapped_bce


def random_binary(rows: int, cols: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((rows, cols)) < density).astype(np.float32)
    dense[np.arange(rows), rng.integers(0, cols, rows)] = 1.0  # no empty row
    dense[rng.integers(0, rows, cols), np.arange(cols)] = 1.0  # no empty column
    return sp.csr_matrix(dense)


# -- EASE -------------------------------------------------------------------------------------


def test_ease_weights_match_a_direct_numpy_computation():
    x = random_binary(30, 8, 0.3, seed=1).toarray().astype(np.float64)
    lam = 7.0
    p = np.linalg.inv(x.T @ x + lam * np.eye(8))
    expected = np.eye(8) - p / np.diag(p)  # B = I − P diag(P)⁻¹ (column j divided by P_jj)
    got = ease_weights(sp.csr_matrix(x), lam)
    assert np.allclose(got, expected, atol=1e-12)
    assert np.all(np.diag(got) == 0.0)
    # Steck's optimality condition: the off-diagonal of (XᵀX + λI)(B) equals XᵀX there
    gram = x.T @ x
    residual = (gram + lam * np.eye(8)) @ got - gram
    off = ~np.eye(8, dtype=bool)
    assert np.allclose(residual[off], 0.0, atol=1e-9)


def test_one_eigendecomposition_gives_every_lambda_of_the_grid():
    from bindiff.tasks.recommendation.baselines.ease import DEFAULT_LAMBDAS, EaseSolver

    x = random_binary(40, 9, 0.3, seed=4)
    dense = x.toarray().astype(np.float64)
    solver = EaseSolver(x)
    for lam in (0.5, 10.0, 631.0, 1e4):
        p = np.linalg.inv(dense.T @ dense + lam * np.eye(9))
        assert np.allclose(solver.weights(lam), np.eye(9) - p / np.diag(p), atol=1e-10), lam
    ratios = np.diff(np.log10(DEFAULT_LAMBDAS))  # the default grid: ten per decade, 10 to 10^4
    assert DEFAULT_LAMBDAS[0] == 10.0 and DEFAULT_LAMBDAS[-1] == 1e4 and np.allclose(ratios, 0.1, atol=2e-4)


def test_ease_keeps_the_lambda_its_validation_callback_prefers():
    train = random_binary(30, 8, 0.3, seed=2)
    grid = [1.0, 10.0, 100.0]
    values = iter([0.2, 0.7, 0.4])
    seen = []

    def evaluate_valid(model):
        seen.append(model.weights.clone())
        return next(values)

    model = EASE(8, lambdas=grid)
    report = model.fit_closed_form(train, evaluate_valid)
    assert report["lambda"] == 10.0 and report["valid"] == 0.7
    assert [row["lambda"] for row in report["grid"]] == grid
    assert float(model.chosen_lambda) == 10.0
    assert torch.allclose(model.weights, torch.from_numpy(ease_weights(train, 10.0)).float())
    for weights, lam in zip(seen, grid):  # each λ was evaluated with its own weights
        assert torch.allclose(weights, torch.from_numpy(ease_weights(train, lam)).float())
    x = torch.from_numpy(train[:3].toarray())
    assert torch.allclose(model.score(x), x @ model.weights)


def test_ease_refuses_a_bad_grid():
    with pytest.raises(ValueError, match="lambdas"):
        EASE(4, lambdas=[])
    with pytest.raises(ValueError, match="lambdas"):
        EASE(4, lambdas=[100, -1])


# -- popularity -------------------------------------------------------------------------------


def test_popularity_ranks_items_by_training_counts():
    from bindiff.metrics import topk_excluding

    train = random_binary(40, 12, 0.25, seed=3)
    model = Popularity(12)
    report = model.fit_closed_form(train, lambda m: 0.5)
    counts = np.asarray((train > 0).sum(axis=0)).ravel()
    assert report == {"valid": 0.5}
    assert np.array_equal(model.counts.numpy(), counts.astype(np.float32))
    scores = model.score(torch.zeros(2, 12))
    assert scores.shape == (2, 12) and torch.equal(scores[0], scores[1])
    top = topk_excluding(scores, None, 12)[0].numpy()
    assert np.array_equal(top, np.argsort(-counts, kind="stable"))  # ties: lower index first


# -- Mult-DAE / Mult-VAE ----------------------------------------------------------------------


def _numpy_forward(model: MultVAE, x: np.ndarray, eps: np.ndarray | None):
    def lin(layer, h):
        return h @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()

    h = x / np.linalg.norm(x, axis=1, keepdims=True)
    for i, layer in enumerate(model.encoder):
        h = lin(layer, h)
        if i < len(model.encoder) - 1:
            h = np.tanh(h)
    if eps is None:  # Mult-DAE
        z, kl = np.tanh(h), 0.0
    else:
        mu, logvar = h[:, :model.latent], h[:, model.latent:]
        z = mu + eps * np.exp(0.5 * logvar)
        kl = 0.5 * np.sum(-logvar + np.exp(logvar) + mu ** 2 - 1.0)
    for i, layer in enumerate(model.decoder):
        z = lin(layer, z)
        if i < len(model.decoder) - 1:
            z = np.tanh(z)
    log_softmax = z - np.log(np.sum(np.exp(z)))
    nll = -np.sum(log_softmax * x)
    return nll, kl


def test_multvae_loss_is_multinomial_nll_plus_annealed_kl_on_one_user():
    torch.manual_seed(0)
    model = MultVAE(5, variational=True, hidden=[3], latent=2, dropout=0.0, anneal_cap=0.5, total_anneal_steps=4)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    eps = torch.randn((1, 2), generator=torch.Generator().manual_seed(7)).double().numpy()
    nll, kl = _numpy_forward(model, x.double().numpy(), eps)
    model.train()
    model.updates.fill_(3)  # β = min(0.5, 3/4) = 0.5
    out = model(x, generator=torch.Generator().manual_seed(7))
    assert out.t is None
    assert out.terms["nll"].item() == pytest.approx(nll, rel=1e-5)
    assert out.terms["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert out.loss.item() == pytest.approx(nll + 0.5 * kl, rel=1e-5)
    assert int(model.updates) == 4


def test_multvae_anneal_schedule_and_deterministic_scores():
    torch.manual_seed(0)
    model = MultVAE(6, hidden=[4], latent=2, anneal_cap=0.3, total_anneal_steps=4)
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    model.train()
    betas = []
    for _ in range(6):
        betas.append(model.anneal())
        out = model(x, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
    assert betas == pytest.approx([0.0, 0.25, 0.3, 0.3, 0.3, 0.3])
    model.eval()
    with torch.no_grad():
        model(x)  # an evaluation-mode call is not an update
    assert int(model.updates) == 6
    assert MultVAE(6, total_anneal_steps=0, anneal_cap=0.2).anneal() == 0.2
    # scores: decoder logits of the mean, no sampling, written out from the weights by hand
    e, d = model.encoder, model.decoder
    h = x / x.norm()
    mu = (torch.tanh(h @ e[0].weight.T + e[0].bias) @ e[1].weight.T + e[1].bias)[:, :2]
    expected = torch.tanh(mu @ d[0].weight.T + d[0].bias) @ d[1].weight.T + d[1].bias
    assert torch.allclose(model.score(x), expected.detach(), atol=1e-6)


def test_multdae_loss_is_the_multinomial_nll():
    torch.manual_seed(1)
    model = MultVAE(5, variational=False, hidden=[], latent=3, dropout=0.0)
    assert [layer.out_features for layer in model.encoder] == [3] and len(model.decoder) == 1
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0]])
    nll, _ = _numpy_forward(model, x.double().numpy(), None)
    model.train()
    out = model(x)
    assert out.loss.item() == pytest.approx(nll, rel=1e-5)
    assert out.terms["kl"].item() == 0.0


# -- Gaussian (DiffRec-style) diffusion -------------------------------------------------------


def test_gaussian_linear_var_tables_match_brute_force():
    steps, scale, lo, hi = 5, 0.1, 0.2, 0.6
    tables = linear_var_tables(steps, scale, lo, hi)
    wanted = [scale * (lo + (hi - lo) * t / (steps - 1)) for t in range(steps)]  # 1 − ᾱ_t
    alpha_bar, prod = [], 1.0
    for beta in tables["betas"]:
        prod *= 1.0 - beta
        alpha_bar.append(prod)
    assert np.allclose(1.0 - np.array(alpha_bar), wanted, rtol=0, atol=1e-15)
    assert np.allclose(tables["alphas_cumprod"], alpha_bar, rtol=0, atol=1e-15)
    assert tables["alphas_cumprod_prev"][0] == 1.0
    assert tables["betas"].dtype == np.float64


def test_gaussian_posterior_mean_matches_bayes_rule():
    model = GaussianDiffusionRecommender(3, dims=[4], steps=6, noise_scale=0.2, noise_min=0.1, noise_max=0.9)
    betas = model.betas.numpy()
    abar = model.alphas_cumprod.numpy()
    x0 = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    xt = torch.tensor([[1.1, 0.4, -0.5]], dtype=torch.float64)
    for step in range(6):
        t = torch.tensor([step])
        got = model.posterior_mean(x0, xt, t).numpy()
        # q(x_{t−1} | x_0) = N(√ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}),  q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t)
        prev = abar[step - 1] if step > 0 else 1.0
        if step == 0:  # x_{−1} is x_0 itself
            expected = x0.numpy()
        else:
            precision = 1.0 / (1.0 - prev) + (1.0 - betas[step]) / betas[step]
            expected = (math.sqrt(prev) * x0.numpy() / (1.0 - prev)
                        + math.sqrt(1.0 - betas[step]) * xt.numpy() / betas[step]) / precision
        assert np.allclose(got, expected, rtol=1e-12, atol=1e-12), step


def test_gaussian_reverse_chain_with_an_oracle_returns_it():
    model = GaussianDiffusionRecommender(4, dims=[3], steps=7, noise_scale=0.3)
    x0 = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 1.0, 0.0]])
    history = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    calls = []

    def oracle(x_t, t):
        calls.append(int(t[0]))
        return x0

    out = model.reverse(history, predict=oracle)
    assert calls == list(range(6, -1, -1))  # every step, from T−1 down to 0
    assert torch.allclose(out, x0, atol=1e-6)


def test_gaussian_reverse_chain_follows_the_ddpm_posterior_mean_step_by_step():
    """A prediction that reads x_t, so every step shows: x_{t−1} = c1 x̂_0 + c2 x_t with DDPM's
    coefficients, written out here from DiffRec's linear variance schedule."""
    T, scale, low, high = 5, 0.3, 0.005, 0.01
    model = GaussianDiffusionRecommender(3, dims=[2], steps=T, noise_scale=scale, noise_min=low, noise_max=high)
    alpha_bar = 1 - np.linspace(scale * low, scale * high, T)  # ᾱ_t = 1 − variance_t, t = 0 .. T−1
    history = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    expected = history.double().numpy()
    for t in range(T - 1, -1, -1):
        prev = alpha_bar[t - 1] if t else 1.0
        beta = 1 - alpha_bar[t] / prev
        c1 = np.sqrt(prev) * beta / (1 - alpha_bar[t])
        c2 = np.sqrt(1 - beta) * (1 - prev) / (1 - alpha_bar[t])
        expected = c1 * (0.5 * expected + 0.25) + c2 * expected
    out = model.reverse(history, predict=lambda x_t, t: 0.5 * x_t + 0.25)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-6)


def test_gaussian_training_loss_is_mse_on_x0():
    torch.manual_seed(0)
    model = GaussianDiffusionRecommender(5, dims=[4], steps=4, dropout=0.0)
    x0 = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]])
    t = torch.tensor([2])
    out = model(x0, generator=torch.Generator().manual_seed(3), t=t)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x_t = math.sqrt(model.alphas_cumprod[2]) * x0 + math.sqrt(1 - model.alphas_cumprod[2]) * noise
    expected = ((x0 - model.predict_x0(x_t, t)) ** 2).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


# -- RecFusion reproduction -------------------------------------------------------------------


def test_recfusion_shares_its_hidden_layer():
    D, M = 30, 8
    for depth in (0, 1, 4, 9):
        model = RecFusionBin(D, hidden=M, depth=depth)
        n = sum(p.numel() for p in model.parameters())
        assert n == (D * M + M) + (M * M + M) + (M * D + D) + 2  # three linear maps, two PReLU slopes
    torch.manual_seed(0)
    a = RecFusionBin(D, hidden=M, depth=1)
    b = RecFusionBin(D, hidden=M, depth=3)
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, D)
    h = a.first_act(a.first(x))
    for _ in range(3):
        h = a.shared_act(a.shared(h))
    assert torch.allclose(b.logits(x), a.last(h))


def test_recfusion_schedule_is_the_published_quadratic_one():
    assert np.allclose(recfusion_betas(3), [1e-4, ((math.sqrt(1e-4) + math.sqrt(0.1)) / 2) ** 2, 0.1])
    assert np.allclose(RecFusionBin(4).betas, [1e-4, 0.0266061, 0.1], atol=1e-6)


def test_swapped_bce_is_100_times_the_mean_absolute_error_for_binary_data():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    z = torch.tensor([[0.3, 0.2, 0.9, 0.6], [0.5, 0.01, 0.99, 0.25]], requires_grad=True)
    hand = 100.0 * (x - z).abs().mean()  # 100 · (0.7+0.2+0.1+0.6+0.5+0.01+0.01+0.75)/8
    assert hand.item() == pytest.approx(100 * 2.87 / 8)
    value = swapped_bce(x, z)
    assert value.item() == pytest.approx(hand.item(), rel=1e-6)
    assert value.item() == pytest.approx(F.binary_cross_entropy(x, z.detach()).item(), rel=1e-6)
    (grad,) = torch.autograd.grad(value, z)
    assert torch.allclose(grad, 100.0 * (z - x).sign() / 8)  # finite: the gradient of the value


def test_torchs_own_gradient_of_the_swapped_bce_is_not_finite():
    """Why RecFusionBin computes the swapped BCE itself (docstring, defect 2)."""
    x = torch.tensor([[1.0, 0.0]])
    z = torch.tensor([[0.4, 0.3]], requires_grad=True)
    (grad,) = torch.autograd.grad(F.binary_cross_entropy(x, z), z)
    assert not torch.isfinite(grad).any()


def test_recfusion_flip_noise_frequencies_and_seed():
    model = RecFusionBin(400, schedule="linear", beta_start=0.05, beta_end=0.3)
    x = (torch.rand(300, 400, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    zs = model.noise_chain(x, torch.Generator().manual_seed(1))
    again = model.noise_chain(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(zs, again))
    previous = x
    n = x.numel()
    for z, beta in zip(zs, [0.05, 0.175, 0.3]):
        assert set(z.unique().tolist()) <= {0.0, 1.0}
        rate = (z != previous).float().mean().item()
        assert abs(rate - beta) < 4 * math.sqrt(beta * (1 - beta) / n)
        previous = z
    assert flip(torch.zeros(2, 3), 0.999999, torch.Generator().manual_seed(0)).sum() == 6


def test_recfusion_loss_is_the_published_formula():
    torch.manual_seed(0)
    model = RecFusionBin(6, hidden=4, depth=2)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]])
    zs = model.noise_chain(x, torch.Generator().manual_seed(2))
    terms = model.loss_terms(x, zs)
    with torch.no_grad():
        zh = [model.net(z).double().numpy() for z in zs]
    xs, zn = x.double().numpy(), [z.double().numpy() for z in zs]

    def log_n(v, mu, logvar):
        return -0.5 * math.log(2 * math.pi) - 0.5 * logvar - 0.5 * math.exp(-logvar) * (v - mu) ** 2

    b = model.betas
    re = -100.0 * np.abs(xs - zh[0]).mean()
    kl = (log_n(zh[-1], math.sqrt(1 - b[0]) * zh[-1], math.log(b[0]))
          - (-0.5 * math.log(2 * math.pi) - 0.5 * zh[-1] ** 2)).sum(1)
    for i in range(3):
        kl += (log_n(zn[i], math.sqrt(1 - b[i]) * zn[i], math.log(b[i])) - log_n(zn[i], zh[i], b[i])).sum(1)
    assert np.allclose(terms["kl"].detach().numpy(), kl, rtol=1e-5)
    assert np.allclose(terms["loss"].detach().numpy(), -(re - kl), rtol=1e-5)
    out = model(x, generator=torch.Generator().manual_seed(2))
    assert out.loss.item() == pytest.approx(float(np.mean(-(re - kl))), rel=1e-5)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # one pass on the clean history, the shared hidden layer applied `depth` times, by hand
    prelu = torch.nn.functional.prelu
    h = prelu(x @ model.first.weight.T + model.first.bias, model.first_act.weight)
    for _ in range(2):
        h = prelu(h @ model.shared.weight.T + model.shared.bias, model.shared_act.weight)
    expected = h @ model.last.weight.T + model.last.bias
    assert torch.allclose(model.score(x), expected.detach(), atol=1e-6)


def test_ease_refuses_a_catalogue_whose_dense_matrices_exceed_the_memory(monkeypatch):
    from bindiff.adapters import DataError
    from bindiff.tasks.recommendation.baselines import ease

    monkeypatch.setattr(ease, "physical_memory_bytes", lambda: 2**30)  # a 1 GiB machine
    EASE(4000)  # 4.5 × 8 B × 4000² = 0.54 GiB: fits
    with pytest.raises(DataError, match=r"EASE on 6,000 items needs about 1 GiB .* this machine has 1 GiB"):
        EASE(6000)  # 1.21 GiB


def test_ease_equals_recpacks_on_the_same_matrix_and_lambda():
    """Cross-check against an established implementation (optional: `pip install recpack`)."""
    recpack_ease = pytest.importorskip("recpack.algorithms").EASE

    train = random_binary(60, 25, 0.2, seed=6)
    for lam in (1.0, 30.0, 500.0):
        theirs = recpack_ease(l2=lam)
        theirs.fit(train)
        similarity = theirs.similarity_matrix_
        similarity = similarity.toarray() if hasattr(similarity, "toarray") else np.asarray(similarity)
        assert np.allclose(ease_weights(train, lam), similarity, atol=1e-8), lam
        expected_scores = np.asarray(theirs.predict(train[:10]).toarray())
        model = EASE(25, lambdas=[lam])
        model.fit_closed_form(train, lambda m: 0.0)
        ours = model.score(torch.from_numpy(train[:10].toarray())).numpy()
        assert np.allclose(ours, expected_scores, atol=1e-5), lam
