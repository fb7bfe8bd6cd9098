"""A reverse run's first denoiser call, computed once for several runs given the same condition.

Where the denoiser reads the flat posterior and ᾱ_T = 0 ("jsd"), it reads a constant ½ at t = T,
so every run from noise given one condition makes the same first call. `start_logits` computes it
once; the runs handed it must draw exactly what they draw without it, and the call is made once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bindiff.core import BernoulliProcess, BinomialDiffusion, UNetDenoiser
from bindiff.tasks.segmentation.model import sample_probabilities


def _model(denoiser_input="flat_posterior", schedule="jsd", self_condition=False):
    torch.manual_seed(0)
    unet = UNetDenoiser(dim=64, grid=[4, 4, 4], channels=[4], cond_channels=1 + self_condition, time_dim=8)
    return BinomialDiffusion(unet, BernoulliProcess.from_schedule(schedule, 4), denoiser_input=denoiser_input,
                             self_condition=self_condition).eval()


class _Counting:
    """Counts the denoiser's forward calls and the rows each one saw."""

    def __init__(self, model):
        self.rows: list[int] = []
        model.denoiser.register_forward_hook(lambda module, args, out: self.rows.append(args[0].shape[0]))


@pytest.mark.parametrize("self_condition", [False, True])
def test_runs_handed_the_first_call_draw_what_they_draw_without_it(self_condition):
    model = _model(self_condition=self_condition)
    cond = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    first = model.start_logits(cond)
    for seed in range(3):
        for decode in ("mean", "sample"):
            steps = []
            alone = model.sample(3, generator=torch.Generator().manual_seed(seed), cond=cond, decode=decode,
                                 on_step=lambda t, p: steps.append(p))
            handed_steps = []
            handed = model.sample(3, generator=torch.Generator().manual_seed(seed), cond=cond, decode=decode,
                                  on_step=lambda t, p: handed_steps.append(p), start_logits=first)
            assert torch.equal(alone, handed)
            assert len(steps) == len(handed_steps) == 4 and all(map(torch.equal, steps, handed_steps))
    # RePaint's repeats at the first time read the sample again (and, self-conditioned, the estimate)
    alone = model.sample(3, steps=2, generator=torch.Generator().manual_seed(5), cond=cond, resample=3)
    handed = model.sample(3, steps=2, generator=torch.Generator().manual_seed(5), cond=cond, resample=3,
                          start_logits=first)
    assert torch.equal(alone, handed)


def test_the_first_call_is_made_once_for_all_runs():
    model = _model()
    calls = _Counting(model)
    images = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    sample_probabilities(model, images, {"samples": 3, "steps": None, "average": "trajectory"},
                         torch.Generator().manual_seed(7), batch_size=2)
    # 3 batches (2, 2, 1 cases): one first call each, then 3 runs of the 3 later steps each
    assert sorted(calls.rows) == sorted([2, 2, 1] + [2, 2, 1] * 3 * 3)


def test_where_the_denoiser_reads_x_T_its_first_call_is_not_shared():
    images = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    for model in (_model(denoiser_input="state"), _model(schedule="linear")):  # reads the bits / ᾱ_T > 0
        assert not model.blind_at(4)
        with pytest.raises(ValueError, match="reads x_t at t = 4"):
            model.start_logits(images)
        calls = _Counting(model)
        sample_probabilities(model, images, {"samples": 2, "steps": None, "average": "final"},
                             torch.Generator().manual_seed(7), batch_size=2)
        assert len(calls.rows) == 2 * 4  # every run makes every call
    blind = _model()
    assert blind.blind_at(4) and not blind.blind_at(3)  # ᾱ_3 > 0 of jsd at T = 4
    with pytest.raises(ValueError, match="reads x_t at t = 2"):  # a warm start at t = 2 reads its state
        blind.inpaint(torch.zeros(2, 64), torch.zeros(2, 64, dtype=torch.bool), start=2, init=torch.zeros(2, 64),
                      cond=images, start_logits=blind.start_logits(images))


def test_first_logits_of_another_shape_are_refused():
    model = _model()
    cond = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"start_logits \(2, 64\) and sample \(3, 64\) differ in shape"):
        model.sample(3, cond=cond, start_logits=model.start_logits(cond[:2]))


def test_one_sampled_map_is_the_same_with_and_without_sharing():
    """The evaluation's map: the runs with the shared first call against runs made by hand without it."""
    model = _model()
    images = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    cfg = {"samples": 4, "steps": None, "average": "trajectory"}
    mean, _ = sample_probabilities(model, images, cfg, torch.Generator().manual_seed(3), batch_size=2)
    generator = torch.Generator().manual_seed(3)
    runs = []
    for _ in range(4):
        parts = []
        for i in range(0, 5, 2):
            steps = []
            model.sample(len(images[i:i + 2]), generator=generator, cond=images[i:i + 2], decode="mean",
                         on_step=lambda t, p: steps.append(p.double()))
            parts.append(torch.stack(steps).mean(0).numpy())
        runs.append(np.concatenate(parts))
    assert np.array_equal(mean, np.stack(runs).mean(0))


def test_one_scans_runs_side_by_side_share_a_first_call_made_on_the_image_alone():
    """`bindiff segment`'s path: the first call on one row instead of a batch of copies, the runs'
    draws otherwise as they were (a float32 rounding apart, where convolutions sum in another order)."""
    from bindiff.tasks.segmentation.model import sample_case_probabilities

    model = _model()
    image = torch.randn(1, 64, generator=torch.Generator().manual_seed(1))
    cfg = {"samples": 5, "steps": None, "average": "trajectory"}
    calls = _Counting(model)
    mean, variance = sample_case_probabilities(model, image, cfg, torch.Generator().manual_seed(3), batch_size=2)
    assert calls.rows == [1] + [2, 2, 2] + [2, 2, 2] + [1, 1, 1]  # the image alone, then 3 chunks of 2, 2, 1 runs
    generator = torch.Generator().manual_seed(3)
    runs = []
    for rows in (2, 2, 1):
        steps = []
        model.sample(rows, generator=generator, cond=image.expand(rows, -1), decode="mean",
                     on_step=lambda t, p: steps.append(p.double()))
        runs.append(torch.stack(steps).mean(0))
    runs = torch.cat(runs).numpy()
    np.testing.assert_allclose(mean, runs.mean(0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(variance, runs.var(0), rtol=0, atol=1e-6)
