"""The prior offset: the denoiser's logits sit on top of the training data's per-bit marginal."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))


class Silent(nn.Module):
    """A denoiser that adds nothing: every logit 0 whatever x_t is."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x_t, t):
        return torch.zeros_like(x_t)


def _model(dim: int, offset: bool = True) -> BinomialDiffusion:
    return BinomialDiffusion(Silent(dim), BernoulliProcess.from_schedule("jsd", 5),
                             prior_offset_dim=dim if offset else 0)


def test_a_silent_denoiser_predicts_the_smoothed_training_frequencies():
    model = _model(4)
    # 10 rows: a bit on in 0, 3, 7 and 10 of them
    model.set_prior_offset(torch.tensor([0.0, 0.3, 0.7, 1.0]), 10)
    expected = [(ones + 0.5) / 11 for ones in (0, 3, 7, 10)]
    got = model.predict_x0(torch.ones(2, 4), t=5)
    assert torch.allclose(got, torch.tensor([expected, expected]), atol=1e-6)
    # at t = T the jsd chain forgets x_0, so the marginal is the exact p(x_0 | x_T): with the
    # offset, sampling from noise with a silent denoiser gives the data's frequencies
    samples = model.sample(20000, generator=torch.Generator().manual_seed(0))
    se = [math.sqrt(p * (1 - p) / 20000) for p in expected]
    assert all(abs(f - p) < 5 * s + 1e-9 for f, p, s in zip(samples.mean(0).tolist(), expected, se))


def test_without_the_offset_the_same_denoiser_predicts_one_half():
    model = _model(3, offset=False)
    assert model.prior_logits is None
    assert torch.equal(model.predict_x0(torch.zeros(1, 3), t=1), torch.full((1, 3), 0.5))
    assert not any("prior" in name for name in model.state_dict())


@pytest.mark.parametrize("frequency, n, message", [
    ([0.5, 0.5], 4, "needs 3 frequencies, got 2"),
    ([0.5, 1.5, 0.0], 4, r"frequencies in \[0, 1\]"),
    ([0.5, 0.5, 0.5], 0, "at least one row"),
])
def test_bad_frequencies_are_refused(frequency, n, message):
    with pytest.raises(ValueError, match=message):
        _model(3).set_prior_offset(torch.tensor(frequency), n)


def test_a_model_without_the_offset_refuses_one():
    with pytest.raises(ValueError, match="built without a prior offset"):
        _model(3, offset=False).set_prior_offset(torch.tensor([0.5, 0.5, 0.5]), 2)


@pytest.mark.skipif(not (DATA / "msd_hippocampus" / "labels").is_dir(), reason="MSD hippocampus data not found")
def test_a_masks_run_takes_the_offset_from_its_training_masks_and_reloads_it(tmp_path):
    from bindiff.config import load_recipe
    from bindiff.tasks.masks.generation import _mask_rows
    from bindiff.tasks.masks.job import load_masks_run, train_masks
    from test_masks_pipeline import TINY

    config = load_recipe(ROOT / "recipes" / "hippocampus_masks.yaml",
                         [*TINY, "train.epochs=1", "diffusion.prior_offset=true", "evaluations.run=[]",
                          "eval.nifti=false", f"output.root={tmp_path}"])
    run = train_masks(config, data_dir=str(DATA))
    loaded = load_masks_run(run.run_dir)
    rows, _ = _mask_rows(loaded.data, loaded.data.part("train"))
    ones = rows.astype(np.float64).sum(0)
    expected = np.log((ones + 0.5) / (len(rows) - ones + 0.5))  # logit of (ones + ½) / (n + 1)
    assert np.allclose(loaded.model.prior_logits.numpy(), expected, atol=1e-5)
    assert (ones == 0).any() and ones.max() > len(rows) / 2  # background and mask voxels both present
