"""The mask of highest expected Dice, checked against brute force: every subset of a small map for
the objective it maximises, and every possible truth for the Dice it is expected to reach."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bindiff.config import RecipeError, load_recipe
from bindiff.tasks.segmentation.decision import expected_dice_mask, foreground

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "hippocampus_segmentation.yaml"


def _subsets(n: int):
    for bits in itertools.product([False, True], repeat=n):
        yield np.array(bits)


def _exact_expected_dice(mask: np.ndarray, p: np.ndarray) -> float:
    """E[2|S ∩ Y| / (|S| + |Y|)] over every truth Y of independent voxels (an empty pair scores 1)."""
    total = 0.0
    for truth in _subsets(p.size):
        chance = np.prod(np.where(truth, p, 1 - p))
        both = mask.sum() + truth.sum()
        total += chance * (1.0 if both == 0 else 2 * (mask & truth).sum() / both)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_the_rule_reaches_the_largest_ratio_of_expectations_over_every_subset(seed):
    p = np.random.default_rng(seed).random(10) ** 2
    best = max(2 * p[s].sum() / (s.sum() + p.sum()) for s in _subsets(10))
    mask = expected_dice_mask(p)
    assert 2 * p[mask].sum() / (mask.sum() + p.sum()) == pytest.approx(best, rel=1e-12)


def test_it_beats_the_half_threshold_where_many_voxels_lie_just_under_it():
    # four nearly certain voxels and six a little under ½: the truth holds about 6.6 of them
    p = np.array([0.95] * 4 + [0.47] * 6)
    chosen, halved = expected_dice_mask(p), p >= 0.5
    assert chosen.sum() == 10 and halved.sum() == 4
    assert _exact_expected_dice(chosen, p) > _exact_expected_dice(halved, p) + 0.05


def test_maps_that_are_certain_give_their_own_mask_and_an_empty_map_gives_nothing():
    p = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    np.testing.assert_array_equal(expected_dice_mask(p), p == 1)
    assert not expected_dice_mask(np.zeros((2, 3))).any() and expected_dice_mask(np.zeros((2, 3))).shape == (2, 3)


def test_where_the_structure_is_likely_absent_the_empty_mask_is_chosen():
    # eight faint voxels: the truth is empty with probability 0.95^7 · 0.9 ≈ 0.63, which no
    # non-empty mask's expected Dice reaches (brute force over every mask and every truth)
    p = np.array([0.05] * 7 + [0.1])
    exact = {tuple(s): _exact_expected_dice(s, p) for s in _subsets(8)}
    assert max(exact, key=exact.get) == (False,) * 8
    assert not expected_dice_mask(p).any()
    # a likely structure keeps its voxels: P(empty) = 0.3 here, below the top voxel's ratio
    assert expected_dice_mask(np.array([0.7, 0.0, 0.0])).tolist() == [True, False, False]


def test_the_recipe_chooses_the_rule_and_refuses_an_unknown_one():
    p = np.array([0.9, 0.45, 0.45, 0.1])
    by_threshold = load_recipe(RECIPE, ["segmentation.decision=threshold", "segmentation.threshold=0.5"])
    np.testing.assert_array_equal(foreground(p, by_threshold["segmentation"]), [True, False, False, False])
    by_dice = load_recipe(RECIPE, ["segmentation.decision=expected_dice"])
    # ratio 2·0.9/(1+1.9) = 0.62 for the first alone, 2·1.8/(3+1.9) = 0.73 with both 0.45s, 0.64 with all four
    np.testing.assert_array_equal(foreground(p, by_dice["segmentation"]), [True, True, True, False])
    with pytest.raises(RecipeError, match="segmentation.decision' must be 'threshold' or 'expected_dice'"):
        load_recipe(RECIPE, ["segmentation.decision=mode"])
