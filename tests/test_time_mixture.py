"""The training times' mixture (``timesteps.low_share`` / ``low_max`` / ``top_share``) against its hand-written
distribution, in the core and in both tasks that take it from their recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bindiff.config import RecipeError, load_recipe
from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser
from bindiff.tasks.masks.model import build_mask_model
from bindiff.tasks.segmentation.model import build_segmenter

N = 200_000
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def frequencies(model, n: int = N) -> torch.Tensor:
    t = model.sample_timesteps(n, torch.Generator().manual_seed(0))
    return torch.bincount(t, minlength=model.process.num_steps + 1)[1:].double() / n


def mixture(T: int, share: float, low_max: int, top: float = 0.0) -> torch.Tensor:
    """P(t = k), k = 1..T: share spread over 1..low_max, top on T, the rest over 1..T."""
    return torch.tensor([(1 - share - top) / T + (share / low_max if k <= low_max else 0.0) + (top if k == T else 0.0)
                         for k in range(1, T + 1)], dtype=torch.float64)


def within_5_se(freq: torch.Tensor, expected: torch.Tensor) -> bool:
    return bool(((freq - expected).abs() <= 5 * (expected * (1 - expected) / N).sqrt() + 1e-12).all())


def test_the_core_mixture_has_the_hand_distribution_and_uniform_without_it():
    model = BinomialDiffusion(MLPDenoiser(6, hidden=(8,)), BernoulliProcess.from_schedule("jsd", 10))
    assert within_5_se(frequencies(model), torch.full((10,), 0.1, dtype=torch.float64))
    model.set_time_mixture(0.5, 3)
    assert within_5_se(frequencies(model), mixture(10, 0.5, 3))
    assert not within_5_se(frequencies(model), torch.full((10,), 0.1, dtype=torch.float64))
    model.set_time_mixture(0.2, 3, top_share=0.3)
    assert within_5_se(frequencies(model), mixture(10, 0.2, 3, top=0.3))
    model.set_time_mixture(0.0, 1, top_share=0.5)  # P(T) = 0.5 + 0.5 / 10, every other t 0.05
    assert within_5_se(frequencies(model), torch.tensor([0.05] * 9 + [0.55], dtype=torch.float64))


def test_without_a_top_share_the_draws_are_those_of_the_low_mixture_alone():
    # recipes written before top_share must keep their numbers: the same draws in the same order
    model = BinomialDiffusion(MLPDenoiser(6, hidden=(8,)), BernoulliProcess.from_schedule("jsd", 10))
    model.set_time_mixture(0.5, 3)
    g = torch.Generator().manual_seed(3)
    uniform, low, pick = torch.randint(1, 11, (50,), generator=g), torch.randint(1, 4, (50,), generator=g), \
        torch.rand(50, generator=g)
    assert torch.equal(model.sample_timesteps(50, torch.Generator().manual_seed(3)),
                       torch.where(pick < 0.5, low, uniform))


def test_the_mixture_refuses_bad_values():
    model = BinomialDiffusion(MLPDenoiser(6, hidden=(8,)), BernoulliProcess.from_schedule("jsd", 10))
    with pytest.raises(ValueError, match=r"share must lie in \[0, 1\]"):
        model.set_time_mixture(1.5, 2)
    with pytest.raises(ValueError, match="low_max must be an integer >= 1"):
        model.set_time_mixture(0.5, 0)
    with pytest.raises(ValueError, match=r"top-time share must lie in \[0, 1\]"):
        model.set_time_mixture(0.0, 2, top_share=-0.1)
    with pytest.raises(ValueError, match="sum to 1.2, more than 1"):
        model.set_time_mixture(0.6, 2, top_share=0.6)


def test_a_recipe_whose_shares_sum_above_one_is_refused_naming_the_section():
    config = load_recipe(RECIPES / "hippocampus_segmentation.yaml",
                         ["timesteps.low_share=0.7", "timesteps.top_share=0.5", "grid.shape=[4,4,4]",
                          "denoiser.params.channels=[4]", "denoiser.params.patch=1"])
    with pytest.raises(RecipeError, match="timesteps: the low-time and top-time shares sum to 1.2"):
        build_segmenter(config, 64, training=True)


@pytest.mark.parametrize("recipe, builder", [("hippocampus_masks.yaml", build_mask_model),
                                             ("hippocampus_segmentation.yaml", build_segmenter)])
def test_both_mask_tasks_train_on_the_recipes_mixture(recipe, builder):
    # the segmentation task once ignored these keys; both now read them
    overrides = ["diffusion.steps=6", "timesteps.low_share=0.4", "timesteps.low_max=2", "timesteps.top_share=0.2",
                 "grid.shape=[4,4,4]",
                 "denoiser.params.channels=[4]", "denoiser.params.patch=1", "denoiser.params.bf16=false",
                 "evaluations.completion.steps=2", "evaluations.generation.steps=2"]
    if recipe.startswith("hippocampus_segmentation"):
        overrides = [o for o in overrides if not o.startswith("evaluations.")]
    config = load_recipe(RECIPES / recipe, overrides)
    model = builder(config, 64, training=True)
    assert within_5_se(frequencies(model), mixture(6, 0.4, 2, top=0.2))
