"""Review of split.test_from/valid_from, split.pair_time, recipe dates and `recommend --input`'s layout.

Every expected value is written out by hand; none is computed with the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bindiff.adapters import DataError
from bindiff.config import RecipeError, recipe_from_text
from bindiff.config.keys import key
from bindiff.config.recipe import _check_value
from bindiff.config.schema import schema_for
from bindiff.tasks.recommendation.data import check_holdout
from bindiff.tasks.recommendation.serve import read_histories

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml")


def test_input_in_the_runs_own_quoted_layout_reads_as_training_reads_it(tmp_path):
    """A semicolon file with quoted fields (what Excel and pandas' QUOTE_ALL write), in the layout the
    run trained on (data.sep=';'): the probe with the name's separator (',') stopped at the quotes
    with "is a quote left open?" instead of trying the run's own separator."""
    path = tmp_path / "mine.csv"
    path.write_text('"uid";"movie";"stars"\n"ann";"m1";5\n"ann";"m2";1\n')
    data = {"sep": ";", "user_col": "uid", "item_col": "movie", "rating_col": "stars", "min_rating": 4}
    assert read_histories(path, data) == (["ann"], [["m1"]], 1)  # by hand: m2 is rated 1 < 4


def test_quoted_text_in_scientific_notation_stays_text_where_a_key_takes_text():
    """The scientific-notation reading was meant for the time keys; it turned the text of any key taking
    text and numbers (a plugin's, say) into a number, even quoted ("quote the value to mean it as text")."""
    label = key((str, float), "auto", "a label name, or a threshold")
    assert _check_value("labels.name", label, "1e3", "override") == "1e3"
    # the time keys still read it as the number it is (text there must be an ISO 8601 date)
    test_from = schema_for("recommend")["split"]["test_from"]
    assert _check_value("split.test_from", test_from, "1.7e9", "override") == 1_700_000_000.0


def test_a_stored_config_reads_an_unquoted_date_as_a_recipe_does():
    """load_recipe keeps `test_from: 2024-01-01` as text; recipe_from_text (public, the same keys)
    still made it a date object and refused it: one config text, two readings."""
    text = "split:\n  kind: temporal\n  test_from: 2024-01-01\n  valid_from: 2023-12-01 00:00:00\n"
    split = recipe_from_text(text)["split"]
    assert (split["test_from"], split["valid_from"]) == ("2024-01-01", "2023-12-01 00:00:00")


def test_pair_time_with_a_predefined_split_does_not_contradict_itself():
    """kind predefined, holdout latest: the refusal said pair_time "applies to split.holdout 'latest'"
    and then that "a predefined split with holdout 'latest' reads no time"."""
    with pytest.raises(DataError) as err:
        check_holdout({}, {"kind": "predefined", "holdout": "latest", "pair_time": "earliest"})
    assert "with holdout 'latest' reads no time" not in str(err.value), str(err.value)


@pytest.mark.parametrize("entry", ["run_comparison", "run_tuning"])
def test_overrides_given_as_one_string_are_not_read_letter_by_letter(entry):
    """run_comparison(recipe, "model.kind=ease") was refused as "override 'm' is not of the form
    key=value" (the string's characters taken for overrides; models= got this guard, overrides not)."""
    import bindiff

    with pytest.raises((TypeError, RecipeError, DataError)) as err:
        if entry == "run_comparison":
            bindiff.run_comparison(RECIPE, "model.kind=ease", models="nosuch", seeds=1)
        else:
            bindiff.run_tuning(RECIPE, "model.kind=ease", trials=0)
    assert "override 'm'" not in str(err.value), str(err.value)


@pytest.mark.parametrize("cut_offs, said", [
    ({"test_from": "2024-02-01", "valid_from": "2024-02-01"},
     "valid_from (split.valid_from) '2024-02-01' (1706745600 in Unix seconds) must be earlier than test_from "
     "(split.test_from) '2024-02-01' (1706745600 in Unix seconds)"),
    ({"test_from": 100, "valid_from": 250}, "valid_from (split.valid_from) 250 must be earlier than test_from "
                                            "(split.test_from) 100"),
])
def test_cut_offs_out_of_order_are_refused_before_the_data_are_read(tmp_path, cut_offs, said):
    """The order of the two cut-offs needs no data; it was checked only after the whole file was read.
    (2024-02-01T00:00Z is 19754 days after 1970-01-01: 1,706,745,600 s.)"""
    from typer.testing import CliRunner

    from bindiff.cli import app

    missing = tmp_path / "not_there.csv"  # were the file read first, the error would name it
    overrides = [f"split.{key}={value}" for key, value in cut_offs.items()]
    result = CliRunner().invoke(app, ["train", RECIPE, f"data.dataset={missing}", "data.time_col=time",
                                      "split.kind=temporal", *overrides, f"output.root={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and said in result.output and "not_there" not in result.output, result.output
    assert not (tmp_path / "runs").exists()
    split = {"kind": "temporal", **cut_offs}
    with pytest.raises(DataError, match="must be earlier than test_from"):
        check_holdout({}, split)


def test_input_without_a_header_reads_as_the_headerless_training_file_did(tmp_path):
    """A run trained on a file without a header (columns by number) refused --input in the same layout:
    "column 'user' not found"; such a file now reads with the run's column numbers and separator."""
    data = {"header": False, "sep": None, "user_col": 0, "item_col": 1, "rating_col": 2, "min_rating": 4}
    plain = tmp_path / "new.tsv"
    plain.write_text("anna\t1\t5\t11\nanna\t2\t1\t12\nbob\t3\t4\t13\n")
    assert read_histories(plain, data) == (["anna", "bob"], [["1"], ["3"]], 1)  # by hand: item 2 is rated 1 < 4
    # the same rows under a header naming them still read by the header (here in another column order)
    named = tmp_path / "named.csv"
    named.write_text("item,user\n1,anna\n3,bob\n")
    assert read_histories(named, data) == (["anna", "bob"], [["1"], ["3"]], 0)
    # a run trained with a header still needs one: the message names the missing column
    with pytest.raises(DataError, match="column 'user'"):
        read_histories(plain, {"header": True, "user_col": "user", "item_col": "item"})
