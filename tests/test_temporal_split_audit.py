"""Audit of split.kind: temporal against the documented protocol ("train on the past, test on the future").

Each truth here is written from the docs' words, by hand on a few rows:
- docs/recipes.md (split.kind): "Users train on what they did before the validation cut-off";
  docs/getting-started.md: "nothing after the cut is trained on";
- docs/api.md: the test cut is "the time from which the latest holdout_fraction of all interactions
  (rounded half up) lie";
- project standard: an error line names the key to change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bindiff.adapters import DataError
from bindiff.tasks.recommendation.data import prepare_split
from bindiff.tasks.recommendation.serve import user_history


def _write(path: Path, rows) -> Path:
    path.write_text("user,item,t\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


def _split(path: Path, **split):
    data = {"dataset": str(path), "time_col": "t", "k_core": split.pop("k_core", 0)}
    return prepare_split(data, {"kind": "temporal", **split}, seed=0)[0]


def _train_rows(split) -> dict:
    names = split.item_ids
    return {str(u): {str(names[c]) for c in split.train[r].indices} for r, u in enumerate(split.train_user_ids)}


def test_a_pair_chosen_before_the_validation_cut_trains_even_if_chosen_again_after_the_test_cut(tmp_path):
    # a chose x at 0, long before the cuts, and again at 8 (after the test cut). Ten pairs, 20 %:
    # test from 8 (two latest pairs), validation from 7; a did x, y, z before 7, so a trains on all three.
    rows = [("a", "x", 0), ("a", "y", 1), ("b", "x", 2), ("b", "y", 3), ("b", "z", 4), ("a", "z", 5),
            ("c", "x", 6), ("c", "y", 7), ("a", "x", 8), ("c", "z", 9)]
    split = _split(_write(tmp_path / "d.csv", rows), holdout_fraction=0.2)
    assert _train_rows(split)["a"] == {"x", "y", "z"}  # before the fix {"y", "z"}: the re-choice erased the past


def test_training_rows_do_not_depend_on_interactions_after_the_test_cut_with_k_core(tmp_path):
    # the same past, two futures of the same size and times: the cut-offs are equal, so the past a model
    # trains on must be too (or k_core, computed over all times, is refused with a temporal split)
    past = [("c", "x", 0), ("a", "x", 1), ("a", "y", 2), ("b", "x", 3), ("b", "y", 4), ("a", "w", 5), ("b", "w", 6)]
    one = _write(tmp_path / "one.csv", past + [("c", "z", 10), ("a", "z", 11)])
    other = _write(tmp_path / "other.csv", past + [("b", "z", 10), ("a", "z", 11)])
    try:
        first, second = (_split(path, holdout_fraction=0.2, k_core=2) for path in (one, other))
    except DataError as err:
        assert "k_core" in str(err)
        return
    assert (first.info["valid_from"], first.info["test_from"]) == (second.info["valid_from"], second.info["test_from"])
    assert _train_rows(first) == _train_rows(second)  # before the fix c trained in one and not in the other


def test_the_test_share_is_rounded_half_up_exactly(tmp_path):
    # 90 pairs at 90 distinct times; 0.35 of 90 is 31.5, rounded half up 32 (the float product is 31.4999...)
    rows = [(f"u{k % 9}", f"i{k}", k) for k in range(90)]
    split = _split(_write(tmp_path / "d.csv", rows), holdout_fraction=0.35)
    assert split.info["test_from"] == 90 - 32


def test_the_validation_cut_refusal_names_the_key_to_change(tmp_path):
    # 40 distinct pairs at five times (8 each): 20 % test from time 4; validation 0.7 of all is 28 of the 32
    # before it, so its cut reaches time 0 and nothing is left to train on: refused, naming the key to lower
    # (before the fix: "lower the validation share")
    rows = [(f"u{k % 6}", f"i{k % 7}", k // 8) for k in range(40)]
    path = _write(tmp_path / "d.csv", rows)
    with pytest.raises(DataError, match=r"nothing is left to train on; lower valid_fraction \(split\.valid_fraction\)"):
        _split(path, holdout_fraction=0.2, valid_fraction=0.7)
    # without valid_fraction, validation is holdout_fraction of what test leaves: 0.6 of 40 is 24, from time 2;
    # 0.6 of the 16 before is 9.6, 10, reaching time 0: the key to lower is holdout_fraction
    with pytest.raises(DataError, match=r"nothing is left to train on; lower holdout_fraction "
                                        r"\(split\.holdout_fraction\)"):
        _split(path, holdout_fraction=0.6)


def test_recommend_does_not_say_a_user_of_the_data_is_not_in_it(tmp_path):
    # d arrives after the test cut: counted in split.json, in the data, but in no part of the saved split
    rows = [("a", "x", 0), ("a", "y", 1), ("b", "x", 2), ("b", "z", 3), ("c", "y", 4),
            ("a", "z", 5), ("c", "x", 5), ("b", "y", 6), ("a", "w", 7), ("d", "x", 7)]
    split = _split(_write(tmp_path / "d.csv", rows), holdout_fraction=0.2)
    assert split.info["n_test_users_without_history"] == 1
    with pytest.raises(DataError) as err:
        user_history(split, "d")
    assert "not in this run's data" not in str(err.value), str(err.value)
