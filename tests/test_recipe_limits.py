"""The recipe limits (YAML aliases, integer digits) lie exactly where their messages say."""

import pytest

from bindiff.config import RecipeError
from bindiff.config.recipe import recipe_from_text


def _laughs(levels: int) -> str:
    lines = ["task: recommend", "denoiser:", "  params:", "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_the_limits_lie_where_their_messages_say():
    # 11 + 111 + 1,111 + 11,111 entries (+ params, denoiser, the recipe, task) = 12,348: loads
    assert len(recipe_from_text(_laughs(4))["denoiser"]["params"]) == 4
    # one level more: 123,459 entries, beyond 100,000
    with pytest.raises(RecipeError, match="expand the recipe to 123,459 entries"):
        recipe_from_text(_laughs(5))
    assert recipe_from_text("denoiser:\n  params:\n    n: " + "9" * 1000 + "\n")["denoiser"]["params"]["n"] == 10 ** 1000 - 1
    with pytest.raises(RecipeError, match="an integer of 1001 digits"):
        recipe_from_text("denoiser:\n  params:\n    n: -" + "9" * 1001 + "\n")
