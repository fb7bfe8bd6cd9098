"""A new user's findings on cut-offs given as times (split.test_from, split.valid_from), ISO 8601 dates,
`recommend --input` with the run's own file layout, and the Python entry points of compare.

Every expected value is written out by hand or computed here with the standard library (datetime
with an explicit offset), never with bindiff's own readers.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.adapters.interactions import read_delimited
from bindiff.cli import app
from bindiff.config import RecipeError, load_recipe, recipe_from_text
from bindiff.tasks.recommendation.data import prepare_split
from bindiff.tasks.recommendation.serve import read_histories
from cli_checks import error_line

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml")

MIDNIGHT_AT_PLUS_5 = datetime(2024, 1, 15, tzinfo=timezone(timedelta(hours=5))).timestamp()    # 1705258800
MIDNIGHT_AT_MINUS_5 = datetime(2024, 1, 15, tzinfo=timezone(timedelta(hours=-5))).timestamp()  # 1705294800
FIVE_O_CLOCK_UTC = datetime(2024, 1, 15, 5, tzinfo=timezone.utc).timestamp()                    # 1705294800


def hourly_file(path: Path) -> None:
    """Users u0..u5 choosing items hourly from 2024-01-14T12:00Z to 2024-01-15T12:00Z (ISO, with Z)."""
    start = datetime(2024, 1, 14, 12, tzinfo=timezone.utc)
    rows = [f"u{h % 6},i{(h * 7) % 11},{(start + timedelta(hours=h)).strftime('%Y-%m-%dT%H:%M:%SZ')}"
            for h in range(25)]
    path.write_text("user,item,when\n" + "\n".join(rows) + "\n")


# ---------------------------------------------------------------- 1. a date with an offset but no time

def test_a_cut_off_date_with_an_offset_is_not_read_as_a_time_of_day(tmp_path):
    """`2024-01-15+05:00` is midnight at UTC+5 (2024-01-14T19:00Z), as documented; it was read as
    2024-01-15T05:00Z (datetime.fromisoformat takes the '+' for the date-time separator and
    `05:00` for the time), a cut-off ten hours late, without a word."""
    path = tmp_path / "d.csv"
    hourly_file(path)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "temporal", "test_from": "2024-01-15+05:00"}, seed=0)
    assert split.info["test_from"] == MIDNIGHT_AT_PLUS_5, (split.info["test_from"], FIVE_O_CLOCK_UTC)


def test_a_time_column_of_dates_with_offsets_keeps_them_apart(tmp_path):
    """Midnight at +05:00 and at -05:00 are ten hours apart; both were read as 05:00 UTC."""
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\nu1,a,2024-01-15+05:00\nu1,b,2024-01-15-05:00\n")
    assert read_delimited(path, time_col="when").time.tolist() == [MIDNIGHT_AT_PLUS_5, MIDNIGHT_AT_MINUS_5]


# ---------------------------------------------------------------- 2. the same recipe on Python 3.10 and 3.11

@pytest.mark.parametrize("spelling", ["2024-W03-1", "20240115T1030", "2024-01-15T10:30:00+01",
                                      "2024-01-15T10:30:00+0100"])
def test_a_cut_off_spelling_is_read_alike_on_python_3_10(request, spelling):
    """bindiff supports 3.10 and says it reads ISO 8601 "as Python 3.11 reads it, on 3.10 too"; these
    spellings were accepted on 3.11 and refused by 3.10's fromisoformat (checked on a real 3.10.13),
    so one recipe ran on one and failed on the other. The stand-in has 3.10's grammar (any one
    character between date and time, 3 or 6 fraction digits, offsets as ±HH:MM)."""
    overrides = ["split.kind=temporal", f"split.test_from={spelling}"]

    def outcome():
        try:
            return load_recipe(RECIPE, overrides)["split"]["test_from"]
        except RecipeError:
            return "refused"

    on_311 = outcome()
    request.getfixturevalue("python_310_isoformat")
    assert outcome() == on_311


# ---------------------------------------------------------------- 3. a number in scientific notation

@pytest.mark.parametrize("text,seconds", [("1.7e9", 1_700_000_000), ("9.7e8", 970_000_000)])
def test_a_cut_off_in_scientific_notation_is_a_number(text, seconds):
    """"a number in the time column's unit": 1.7e9 Unix seconds was refused as "must be a number or an
    ISO 8601 date and time" (YAML 1.1 reads it as text, and the time keys also take text, so the
    float keys' reading of 1e-3 never applied)."""
    assert load_recipe(RECIPE, ["split.kind=temporal", f"split.test_from={text}"])["split"]["test_from"] == seconds
    recipe = recipe_from_text(f"split:\n  kind: temporal\n  valid_from: {text}\n")
    assert recipe["split"]["valid_from"] == seconds


# ---------------------------------------------------------------- 4. recommend --input in the run's layout

def test_recommend_input_reads_the_run_s_own_separator(tmp_path):
    """--input "reads a file in the training data's layout as it stands ... as training files are": a
    run trained on a semicolon-separated .csv (data.sep=';') refused that very layout."""
    path = tmp_path / "mine.csv"
    path.write_text("uid;movie;stars\nann;m1;5\nann;m2;1\nbob;m3;4\n")
    data = {"sep": ";", "user_col": "uid", "item_col": "movie", "rating_col": "stars", "min_rating": 4}
    users, histories, below = read_histories(path, data)
    assert (users, histories, below) == (["ann", "bob"], [["m1"], ["m3"]], 1)


def test_recommend_input_missing_column_names_the_run_s_own_name(tmp_path):
    """The header may name the user column by the run's name (uid) or as user; the refusal named only
    'user', sending a user who followed the run's names to rename the column."""
    path = tmp_path / "mine.csv"
    path.write_text("person,movie\nann,m1\n")
    with pytest.raises(DataError) as err:
        read_histories(path, {"user_col": "uid", "item_col": "movie", "min_rating": None})
    assert "'uid'" in str(err.value), str(err.value)


# ---------------------------------------------------------------- 5. what split.json and the refusals say

def test_split_json_rule_does_not_say_shares_placed_given_cut_offs(tmp_path):
    """With both cut-offs given, holdout_rule still read "test_from, the time from which the latest
    holdout_fraction of all interactions lie", a share the split never read."""
    path = tmp_path / "d.csv"
    hourly_file(path)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "temporal", "test_from": "2024-01-15T06:00:00Z",
                              "valid_from": "2024-01-15T00:00:00Z"}, seed=0)
    assert split.info["test_from"] == datetime(2024, 1, 15, 6, tzinfo=timezone.utc).timestamp()
    assert "the latest holdout_fraction of all interactions lie" not in split.info["holdout_rule"]


def test_valid_from_after_the_share_placed_test_cut_off_names_holdout_fraction(tmp_path):
    """split.valid_from 2024-01-15T11:00Z with split.holdout_fraction=0.9 (test from 2024-01-14T14:00Z):
    the refusal spoke of "nothing to validate on" and named only valid_from; the key that placed the
    test cut-off before it is split.holdout_fraction."""
    path = tmp_path / "d.csv"
    hourly_file(path)
    with pytest.raises(DataError) as err:
        prepare_split({"dataset": str(path), "time_col": "when"},
                      {"kind": "temporal", "holdout_fraction": 0.9, "valid_from": "2024-01-15T11:00:00Z"}, seed=0)
    assert "holdout_fraction" in str(err.value), str(err.value)


def _train(tmp_path, *overrides):
    path = tmp_path / "d.csv"
    hourly_file(path)
    return CliRunner().invoke(app, ["train", RECIPE, f"data.dataset={path}", "data.time_col=when",
                                    "data.min_rating=null", "model.kind=popularity",
                                    f"output.root={tmp_path / 'runs'}", *overrides])


def test_pair_time_latest_in_a_temporal_split_is_not_said_to_change_nothing(tmp_path):
    """split.pair_time=latest would change a temporal split (a pair chosen before a cut and again after
    it would leave training): that is why it is refused, not that it "would change nothing"."""
    line = error_line(_train(tmp_path, "split.kind=temporal", "split.pair_time=latest"))
    assert "change nothing" not in line, line
    assert not (tmp_path / "runs").exists()


def test_a_seed_refusal_says_it_once(tmp_path):
    """'split.seed changes nothing, so it would change nothing'."""
    line = error_line(_train(tmp_path, "split.kind=weak", "split.holdout=latest", "split.seed=3"))
    assert len(re.findall(r"changes? nothing", line)) == 1, line


# ---------------------------------------------------------------- 6. run_comparison from Python

def test_run_comparison_names_a_model_given_as_text_whole():
    """models="nosuch" (one name as text, as --models takes it) was refused as the unknown models
    ['n', 'o', 's', 'u', 'c', 'h']."""
    from bindiff import run_comparison

    with pytest.raises(RecipeError) as err:
        run_comparison(RECIPE, models="nosuch", seeds=1)
    assert "'nosuch'" in str(err.value) or "nosuch" in str(err.value).replace("'", ""), str(err.value)
    assert "['n', 'o'" not in str(err.value), str(err.value)
