"""Override syntax at its edges, by hand: a null spelling before a comment, syntax characters with
spaces, empty key parts, a tag after a space, integers for float keys, renamed sections."""

import pytest

from bindiff.config import RecipeError, config_hash, load_recipe
from bindiff.config.recipe import parse_override


@pytest.mark.parametrize("text", ["output.root=null #2", "output.root=~ #2", "output.root= #2"])
def test_a_null_spelling_followed_by_a_comment_is_refused_not_read_as_text(text):
    # YAML reads each as null up to " #": the text after it would be dropped (or, kept whole, a
    # folder literally named "null #2"); the user must quote it.
    with pytest.raises(RecipeError, match="starts a YAML comment"):
        parse_override(text)


def test_a_syntax_character_with_spaces_around_it_means_the_character_alone():
    assert parse_override("data.sep= | ") == (["data", "sep"], "|")
    assert parse_override("data.sep=\t#") == (["data", "sep"], "#")


@pytest.mark.parametrize("text", ["train..lr=1", ".lr=1", "train.=1"])
def test_an_empty_part_of_a_dotted_key_is_named_as_such(text):
    with pytest.raises(RecipeError, match="has an empty key"):
        parse_override(text)


def test_a_tag_after_a_space_is_refused_as_a_tag():
    with pytest.raises(RecipeError, match="YAML tags are not read"):
        parse_override("name= !!str 5")


def test_an_integer_given_to_a_number_only_key_is_stored_as_a_number():
    # segmentation's baseline.dice_weight takes only floats: 2 means 2.0, and the two spellings
    # are the same recipe (same hash, same stored text)
    a = load_recipe("hippocampus_segmentation", ["baseline.dice_weight=2"])
    b = load_recipe("hippocampus_segmentation", ["baseline.dice_weight=2.0"])
    assert type(a["baseline"]["dice_weight"]) is float and a["baseline"]["dice_weight"] == 2.0
    assert config_hash(a) == config_hash(b)


def test_an_old_section_holding_renamed_keys_is_named_as_renamed(tmp_path):
    # a recipe written before the rename: the whole `optimizer:` section moved into train
    recipe = tmp_path / "old.yaml"
    recipe.write_text("task: recommend\noptimizer:\n  warmup_steps: 5\n")
    with pytest.raises(RecipeError, match=r"'optimizer' was renamed: 'optimizer.warmup_steps' is now "
                                          r"'train.warmup_steps'"):
        load_recipe(recipe)

