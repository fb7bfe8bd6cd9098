"""Conditional Bernoulli diffusion (the ground of segmentation from images): a condition handed to
every denoiser call, in training and in the one reverse loop, checked against an ideal model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion

# Two classes of 5 independent bits; the condition (one-hot) says which class a vector is from.
FREQUENCIES = torch.tensor([[0.05, 0.9, 0.3, 0.6, 0.02], [0.95, 0.1, 0.7, 0.4, 0.5]], dtype=torch.float64)


class IdealConditionalDenoiser(nn.Module):
    """p(x_0 = 1 | x_t, cond) by Bayes' rule, from the class frequencies and q(x_t | x_0)."""

    def __init__(self, process: BernoulliProcess):
        super().__init__()
        self.process, self.dim = process, FREQUENCIES.shape[1]

    def forward(self, x_t, t, cond=None):
        if cond is None:
            raise AssertionError("the condition was not passed on")
        prior = cond.double() @ FREQUENCIES  # P(x_0 = 1 | class)
        on = self.process.marginal_probs(torch.ones_like(x_t, dtype=torch.float64), t)   # q(x_t = 1 | x_0 = 1)
        off = self.process.marginal_probs(torch.zeros_like(x_t, dtype=torch.float64), t)  # q(x_t = 1 | x_0 = 0)
        x = x_t.double()
        like1, like0 = torch.where(x > 0.5, on, 1 - on), torch.where(x > 0.5, off, 1 - off)
        post = like1 * prior / (like1 * prior + like0 * (1 - prior))
        return torch.logit(post.clamp(1e-12, 1 - 1e-12)).float()


@pytest.mark.parametrize("steps", [None, 4])
def test_sampling_with_a_condition_reproduces_each_class(steps):
    process = BernoulliProcess.from_schedule("jsd", 20)
    model = BinomialDiffusion(IdealConditionalDenoiser(process), process)
    n = 20000
    cond = torch.zeros(n, 2)
    cond[: n // 2, 0] = 1
    cond[n // 2:, 1] = 1
    bits = model.sample(n, steps=steps, generator=torch.Generator().manual_seed(0), cond=cond).double()
    for c in (0, 1):
        rows = bits[c * n // 2:(c + 1) * n // 2]
        se = torch.sqrt(FREQUENCIES[c] * (1 - FREQUENCIES[c]) / rows.shape[0])
        assert torch.all((rows.mean(0) - FREQUENCIES[c]).abs() < 5 * se + 1e-3), (c, rows.mean(0))


def test_predict_x0_and_the_loss_use_the_condition_and_check_its_rows():
    process = BernoulliProcess.from_schedule("jsd", 5)
    model = BinomialDiffusion(IdealConditionalDenoiser(process), process)
    x = torch.zeros(3, 5)
    cond = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    p = model.predict_x0(x, 5, cond=cond).double()  # at t = T the observation says nothing: the prior
    np.testing.assert_allclose(p.numpy(), (cond.double() @ FREQUENCIES).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="cond has 2 rows but the batch has 3"):
        model.predict_x0(x, 1, cond=cond[:2])
    assert math.isfinite(float(model(torch.ones(3, 5), cond=cond, generator=torch.Generator().manual_seed(1)).loss))


class _RecordingModel(nn.Module):
    """A model for `fit` that checks each data row arrives with its own condition row."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen = 0

    def forward(self, x0, generator=None, cond=None):
        ids = (x0 * (2 ** torch.arange(x0.shape[1]))).sum(1)  # each data row spells its own index in bits
        assert torch.equal(ids, cond[:, 0]), "a condition row travelled with the wrong data row"
        self.seen += len(x0)
        from bindiff.core import LossOutput

        loss = (self.weight ** 2).sum() + 1.0
        return LossOutput(loss=loss, terms={"loss": loss.expand(len(x0))}, t=torch.ones(len(x0), dtype=torch.long))


def test_fit_hands_every_row_its_own_condition(tmp_path):
    from bindiff.config import load_recipe
    from bindiff.training.optim import build_optimizer
    from bindiff.training.trainer import fit

    n, bits = 37, 6
    data = np.array([[(i >> b) & 1 for b in range(bits)] for i in range(n)], dtype=np.float32)
    condition = np.arange(n, dtype=np.float32)[:, None]
    config = load_recipe(None, ["train.epochs=3", "train.batch_size=8", "train.patience=3", "eval.select=ndcg@10",
                                "output.progress=false"])
    model = _RecordingModel()
    fit(model, build_optimizer(config, model, 5), sp.csr_matrix(data), config=config, config_yaml="x",
        validate=lambda: {"ndcg@10": 0.0}, checkpoint_dir=tmp_path, device=torch.device("cpu"), condition=condition)
    assert model.seen == 3 * n
    with pytest.raises(ValueError, match="one row per training row"):
        fit(model, build_optimizer(config, model, 5), sp.csr_matrix(data), config=config, config_yaml="x",
            validate=lambda: {"ndcg@10": 0.0}, checkpoint_dir=tmp_path, device=torch.device("cpu"),
            condition=condition[:5])


def _rectangles(n: int, rng: np.random.Generator, side: int = 8) -> np.ndarray:
    masks = np.zeros((n, side, side), np.float32)
    for m in masks:
        r, c = rng.integers(0, side - 3, 2)
        h, w = rng.integers(2, 5, 2)
        m[r:r + h, c:c + w] = 1
    return masks.reshape(n, -1)


def test_a_conditional_unet_learns_to_segment_an_image_and_needs_it():
    """Masks drawn from an image (mask + noise) on an 8x8 grid: after a short training, masks
    sampled from noise given the image agree with the truth; given another case's image they do not."""
    from bindiff.core.unet import UNetDenoiser

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(_rectangles(512, rng))
    images = masks * 2 + torch.from_numpy(rng.normal(0, 0.6, masks.shape).astype(np.float32))
    process = BernoulliProcess.from_schedule("jsd", 5)
    net = UNetDenoiser(64, grid=[8, 8], channels=[8, 16], time_dim=8, cond_channels=1)
    model = BinomialDiffusion(net, process)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for step in range(250):
        rows = torch.randint(0, 448, (32,), generator=g)
        loss = model(masks[rows], generator=g, cond=images[rows]).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    test_masks, test_images = masks[448:], images[448:]

    def dice(cond):
        p = torch.stack([model.sample(len(test_masks), generator=torch.Generator().manual_seed(s), cond=cond,
                                      decode="mean") for s in range(4)]).mean(0) >= 0.5
        truth = test_masks > 0.5
        return float(2 * (p & truth).sum() / (p.sum() + truth.sum()))

    assert dice(test_images) > 0.85
    assert dice(test_images.roll(1, dims=0)) < 0.5  # another case's image: the condition is what it reads
    with pytest.raises(ValueError, match="takes 1 condition channels; pass cond"):
        net(test_masks, torch.ones(len(test_masks), dtype=torch.long))


class RecordingDenoiser(nn.Module):
    """Returns fixed logits per call and records the condition each call is given."""

    def __init__(self, dim: int, logits: list[torch.Tensor]):
        super().__init__()
        self.dim, self.logits, self.conds = dim, logits, []

    def forward(self, x_t, t, cond=None):
        self.conds.append(None if cond is None else cond.clone())
        return self.logits[len(self.conds) - 1].expand(x_t.shape[0], -1).clone()


def test_self_conditioning_feeds_each_reverse_step_the_estimate_of_the_step_before():
    process = BernoulliProcess.from_schedule("jsd", 3)
    logits = [torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[-0.3, 0.4, 1.0]]), torch.tensor([[1.5, 0.0, -2.0]])]
    denoiser = RecordingDenoiser(3, logits)
    model = BinomialDiffusion(denoiser, process, self_condition=True)
    image = torch.tensor([[7.0, 8.0, 9.0]])
    model.sample(1, generator=torch.Generator().manual_seed(0), decode="mean", cond=image)
    assert len(denoiser.conds) == 3
    for call, cond in enumerate(denoiser.conds):
        assert torch.equal(cond[:, :3], image)  # the condition first, then the estimate
        expected = torch.zeros(1, 3) if call == 0 else torch.sigmoid(logits[call - 1])
        torch.testing.assert_close(cond[:, 3:], expected)


def test_self_conditioning_in_training_gives_a_random_half_their_own_estimate():
    process = BernoulliProcess.from_schedule("jsd", 3)
    first = torch.tensor([[0.5, -1.0, 2.0]])
    denoiser = RecordingDenoiser(3, [first, torch.zeros(1, 3)])
    model = BinomialDiffusion(denoiser, process, self_condition=True)
    x0 = torch.tensor([[1.0, 0.0, 1.0]]).repeat(8, 1)
    model(x0, generator=torch.Generator().manual_seed(5))
    # the same draws by hand: times, forward noise, then one coin per example
    g = torch.Generator().manual_seed(5)
    torch.randint(1, 4, (8,), generator=g)
    torch.rand((8, 3), generator=g)
    use = torch.rand(8, 1, generator=g) < 0.5
    assert 0 < int(use.sum()) < 8
    assert torch.equal(denoiser.conds[0], torch.zeros(8, 3))  # the first call sees no estimate
    torch.testing.assert_close(denoiser.conds[1], torch.where(use, torch.sigmoid(first).expand(8, 3),
                                                              torch.zeros(8, 3)))
    with pytest.raises(ValueError, match="pass a generator"):
        model(x0)
