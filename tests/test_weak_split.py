"""split.kind: weak, the weak-generalisation split: every user trains, each user's held-out items
are the targets.

The truth is computed here by brute force from the file's text (dicts, sorted by time), independently
of the readers, the matrix build and the split: a splittable user (at least min_items_to_split items)
gives the latest round-half-up share of their items to test, then the same share of the rest (at
least one, leaving one) to validation; the others train. Validation reads the training items, test
the training and validation items; the same items are never ranked.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.adapters.interactions import InteractionMatrix, Split, weak_generalization
from bindiff.cli import app
from bindiff.tasks.recommendation.data import prepare_split
from cli_checks import error_line

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml")


def expected_count(n: int, fraction: float) -> int:
    """Round half up, at least 1, at most n - 1 (the documented rule, written out again)."""
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def item_order(item: str):
    return (0, int(item), "") if item.isdigit() else (1, 0, item)


def brute_force(times: dict, fraction: float, min_items: int, n_items: int | None = None,
                valid_fraction: float | None = None) -> dict:
    """user -> (train, valid, test) item sets of the latest weak split, the vocabulary applied
    (``n_items``: that many held out, at most all but one, instead of the fraction; ``valid_fraction``:
    validation takes that share of all the user's items, leaving one)."""
    def count(n):
        return min(n_items, n - 1) if n_items is not None else expected_count(n, fraction)

    users = {user for user, _ in times}
    parts = {}
    for user in users:
        items = [item for *_, item in sorted((time, item_order(item), item)
                                             for (u, item), time in times.items() if u == user)]
        n = len(items)
        n_test = count(n) if n >= min_items else 0
        rest, test = items[:n - n_test], items[n - n_test:]
        n_valid = count(len(rest)) if n >= min_items and len(rest) >= 2 else 0
        if valid_fraction is not None and n_valid:
            n_valid = min(expected_count(n, valid_fraction), len(rest) - 1)
        parts[user] = (set(rest[:len(rest) - n_valid]), set(rest[len(rest) - n_valid:]), set(test))
    vocabulary = set().union(*(train for train, _, _ in parts.values()))
    return {user: tuple(part & vocabulary for part in three) for user, three in parts.items()}


def actual(split: Split) -> dict:
    """user -> (train, valid, test) item sets, checking each stage's input and exclusions on the way."""
    names = split.item_ids
    train = {user: {names[c] for c in split.train[row].indices} for row, user in enumerate(split.train_user_ids)}
    out = {user: (items, set(), set()) for user, items in train.items()}
    for stage, position in (("valid", 1), ("test", 2)):
        part = getattr(split, stage)
        for row, user in enumerate(part.user_ids.tolist()):
            history = {names[c] for c in part.input[row].indices}
            # validation reads the training items; test the training and validation items
            assert history == (train[user] if stage == "valid" else train[user] | out[user][1]), (stage, user)
            assert (part.exclude[row] != part.input[row]).nnz == 0
            out[user][position].update(names[c] for c in part.target[row].indices)
    return out


def timed_file(path: Path, seed: int, n: int = 1500, n_users: int = 70, n_items: int = 50,
               n_times: int = 12, prefix: str = "") -> dict:
    """A CSV with ties and repeated pairs; returns (user, item) -> its latest time."""
    rng = np.random.default_rng(seed)
    rows = list(zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n), rng.integers(0, n_times, n)))
    path.write_text("user,item,when\n" + "".join(f"u{u},{prefix}{i},{t}\n" for u, i, t in rows))
    times: dict = {}
    for u, i, t in rows:
        key = (f"u{u}", f"{prefix}{i}")
        times[key] = max(times.get(key, -1), int(t))
    return times


@pytest.mark.parametrize("prefix", ["", "i"])
@pytest.mark.parametrize("fraction,min_items,n_items", [(0.2, 5, None), (0.5, 2, None), (0.34, 3, None),
                                                        (0.2, 2, 1), (0.2, 5, 3)])
def test_latest_weak_split_matches_brute_force(tmp_path, prefix, fraction, min_items, n_items):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=3, prefix=prefix)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "weak", "holdout": "latest", "holdout_fraction": fraction,
                              "min_items_to_split": min_items, "holdout_items": n_items}, seed=0)
    assert split.kind == "weak"
    expected = brute_force(times, fraction, min_items, n_items)
    assert actual(split) == expected
    assert any(valid for _, valid, _ in expected.values()) and any(test for *_, test in expected.values())
    # what a run saves is what it trained on
    split.save(tmp_path / "split")
    assert actual(Split.load(tmp_path / "split")) == expected


@pytest.mark.parametrize("fraction,valid_fraction,min_items", [(0.1, 0.1, 3), (0.2, 0.1, 5), (0.2, 0.7, 2)])
def test_a_validation_share_of_all_items_matches_brute_force(tmp_path, fraction, valid_fraction, min_items):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=12, n=2500)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "weak", "holdout": "latest", "holdout_fraction": fraction,
                              "valid_fraction": valid_fraction, "min_items_to_split": min_items}, seed=0)
    expected = brute_force(times, fraction, min_items, valid_fraction=valid_fraction)
    assert actual(split) == expected and split.info["valid_fraction"] == valid_fraction


def test_seven_one_two_by_hand(tmp_path):
    # a saw items 0..29 in order; b (eleven items, under min_items_to_split 12: never split) trains 19..29.
    # 20 % to test: 24..29; 10 % of all 30 to validation: 21..23 (20 % of the 24 left would take five)
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\n" + "".join(f"a,{i},{i}\n" for i in range(30))
                    + "".join(f"b,{i},0\n" for i in range(19, 30)))
    config = {"kind": "weak", "holdout": "latest", "holdout_fraction": 0.2, "min_items_to_split": 12}
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"}, {**config, "valid_fraction": 0.1}, seed=0)
    train, valid, test = actual(split)["a"]
    assert test == set(map(str, range(24, 30))) and valid == {"21", "22", "23"}
    assert train == set(map(str, range(21)))
    share_of_rest, _ = prepare_split({"dataset": str(path), "time_col": "when"}, config, seed=0)
    assert actual(share_of_rest)["a"][1] == set(map(str, range(19, 24)))


def test_hand_example():
    # user a: five items at times 1..5 (item 5 latest): test {5}, valid {4} (0.2 of 4 rounds to 1), train 1..3.
    # user b: four items, fewer than min_items_to_split 5: all train (so 4, 5 and 6 are trained on), never scored.
    # item 9 is only ever user c's latest: it leaves the vocabulary and its pair is counted as dropped.
    users = ["a"] * 5 + ["b"] * 4 + ["c"] * 5
    items = ["1", "2", "3", "4", "5", "3", "4", "5", "6", "1", "2", "3", "4", "9"]
    times = [1, 2, 3, 4, 5, 9, 9, 9, 9, 1, 2, 3, 4, 5]
    user_ids, user_index = np.unique(users, return_inverse=True)
    item_ids, item_index = np.unique(items, return_inverse=True)
    import scipy.sparse as sp

    matrix = sp.csr_matrix((np.ones(len(users), np.float32), (user_index, item_index)),
                           shape=(len(user_ids), len(item_ids)))
    order = np.lexsort((item_index, user_index))  # the matrix's entries are row-major, columns sorted
    im = InteractionMatrix(matrix=matrix, user_ids=user_ids, item_ids=item_ids, source="hand",
                           time=np.asarray(times, dtype=np.float64)[order])
    split = weak_generalization(im, 0.2, 5, seed=0, holdout="latest")
    assert actual(split) == {"a": ({"1", "2", "3"}, {"4"}, {"5"}), "b": ({"3", "4", "5", "6"}, set(), set()),
                             "c": ({"1", "2", "3"}, {"4"}, set())}
    # c's only test item left with the vocabulary: c is still a test user, with an empty target, as a strong
    # split's evaluation user is (eval.empty_users decides how it counts); b, never split, is nobody's
    assert list(split.valid.user_ids) == ["a", "c"] and list(split.test.user_ids) == ["a", "c"]
    assert split.test.n_evaluable_users == 1
    assert "9" not in set(split.item_ids) and split.info["n_held_out_interactions_dropped"] == 1


def test_random_weak_split_counts_partition_and_seed(tmp_path):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=5)
    config = {"dataset": str(path), "time_col": "when"}
    split_cfg = {"kind": "weak", "holdout_fraction": 0.25, "min_items_to_split": 4}
    split, _ = prepare_split(config, split_cfg, seed=1)
    latest, _ = prepare_split(config, {**split_cfg, "holdout": "latest"}, seed=1)
    again, _ = prepare_split(config, split_cfg, seed=1)
    other, _ = prepare_split(config, split_cfg, seed=2)
    parts = actual(split)
    whole: dict = {}
    for user, item in times:
        whole.setdefault(user, set()).add(item)
    vocabulary = set(split.item_ids)
    dropped = 0
    for user, items in whole.items():
        train, valid, test = parts[user]
        assert not (train & valid or train & test or valid & test)
        n = len(items)
        if n >= 4:  # the hand rule's counts, before the vocabulary drops anything
            n_test = expected_count(n, 0.25)
            n_valid = expected_count(n - n_test, 0.25) if n - n_test >= 2 else 0
            assert len(test) <= n_test and len(valid) <= n_valid
            assert len(train) == n - n_test - n_valid
        else:
            assert train == items and not valid and not test
        assert train | valid | test == items & vocabulary
        dropped += len(items - vocabulary)
    assert split.info["n_held_out_interactions_dropped"] == dropped
    assert actual(again) == parts and actual(other) != parts
    assert parts != actual(latest)  # random is not the latest by another name
    assert split.info["holdout"] == "random" and "(seed, user row, 1)" in split.info["holdout_rule"]


def test_every_stage_is_sparse_and_typed(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=8)
    split, _ = prepare_split({"dataset": str(path)}, {"kind": "weak"}, seed=0)
    for matrix in (split.train, split.valid.input, split.test.input, split.test.exclude, split.test.target):
        assert matrix.format == "csr" and matrix.dtype == np.float32 and matrix.has_sorted_indices
        assert set(np.unique(matrix.data)) <= {1.0}


def test_refusals(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=1)
    with pytest.raises(DataError, match="holdout_fraction must be in"):
        prepare_split({"dataset": str(path)}, {"kind": "weak", "holdout_fraction": 1.0}, seed=0)
    with pytest.raises(DataError, match="needs interaction times: name the time column of .*d.csv with data.time_col"):
        prepare_split({"dataset": str(path)}, {"kind": "weak", "holdout": "latest"}, seed=0)


def _train(tmp_path, *overrides):
    args = ["train", RECIPE, *overrides, f"output.root={tmp_path / 'runs'}", "train.threads=1",
            "data.min_rating=null", "--data-dir", str(tmp_path)]
    return CliRunner().invoke(app, args)


def test_a_weak_run_trains_on_every_user_and_records_its_rule(tmp_path):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=2)
    result = _train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=weak",
                    "split.holdout=latest", "model.kind=popularity", "eval.metrics=[recall@10]",
                    "eval.select=recall@10")
    assert result.exit_code == 0, result.output
    (manifest,) = (tmp_path / "runs").rglob("split/split.json")
    saved = json.loads(manifest.read_text())
    assert saved["kind"] == "weak" and "latest" in saved["info"]["holdout_rule"]
    assert actual(Split.load(manifest.parent)) == brute_force(times, 0.2, 5)
    (metrics_path,) = (tmp_path / "runs").rglob("metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert 0 < metrics["test"]["recall@10"] <= 1


def test_leave_one_out_holds_out_the_last_item_then_the_one_before(tmp_path):
    path = tmp_path / "d.csv"
    # user u<k> saw items 0..k+1 in order (k + 2 items); user z trains on every one of them (its own two
    # latest, 100 and 101, are its test and validation items)
    path.write_text("user,item,when\n" + "".join(f"u{k},{i},{i}\n" for k in range(6) for i in range(k + 2))
                    + "".join(f"z,{i},-1\n" for i in range(8)) + "z,100,50\nz,101,51\n")
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "weak", "holdout": "latest", "holdout_items": 1, "min_items_to_split": 2},
                             seed=0)
    parts = actual(split)
    for k in range(1, 6):  # the last item (k + 1) to test, the one before (k) to validation, the rest trains
        train, valid, test = parts[f"u{k}"]
        assert test == {str(k + 1)} and valid == {str(k)} and train == set(map(str, range(k)))
    assert parts["u0"] == ({"0"}, set(), {"1"})  # two items: the one left after the test item trains
    assert parts["z"][0] == set(map(str, range(8)))
    assert split.info["holdout_items"] == 1


def test_strong_split_takes_holdout_items_too(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=4)
    split, _ = prepare_split({"dataset": str(path)}, {"kind": "strong", "n_valid_users": 10, "n_test_users": 10,
                                                      "holdout_items": 2}, seed=0)
    for part in (split.valid, split.test):
        known = np.diff(part.input.indptr) + np.diff(part.target.indptr)
        assert (np.diff(part.target.indptr) == np.where(known >= 5, 2, 0)).all()


def test_refusals_of_holdout_items(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=1)
    with pytest.raises(DataError, match="holdout_items must be null or an integer >= 1, got 0"):
        prepare_split({"dataset": str(path)}, {"kind": "weak", "holdout_items": 0}, seed=0)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for stage in ("train", "valid", "test"):
        np.save(pairs / f"{stage}_list.npy", np.array([[0, 0], [1, 1], [2, 2], [3, 0]]))
    with pytest.raises(DataError, match="split.holdout_items=1 applies to split.kind strong and weak"):
        prepare_split({"dataset": str(pairs)}, {"kind": "predefined", "holdout_items": 1}, seed=0)
    # from the command line: one line, before any folder is made
    line = error_line(_train(tmp_path, f"data.dataset={pairs}", "split.kind=predefined", "split.holdout_items=1"))
    assert "split.holdout_items=1 applies to split.kind strong and weak" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize("rows,overrides,words", [
    # nobody has min_items_to_split items
    ([(u, k) for u in range(6) for k in range(3)], [], ["no user has split.min_items_to_split = 5", "lower it"]),
    # two items each: after the test item one is left, which stays in training
    ([(u, k) for u in range(6) for k in range(2)], ["split.min_items_to_split=2"],
     ["the valid split", "split.holdout_fraction = 0.2", "one item left", "at least 3 items"]),
    # every user's test item is one nobody else has: dropped with its item
    ([(u, (u + k) % 5) for u in range(6) for k in range(5)] + [(u, 100 + u) for u in range(6)],
     ["split.holdout=latest"],
     ["the test split", "one no user trains on", "6 held-out pairs dropped"]),
])
def test_cli_says_why_a_weak_split_has_nobody_to_score(tmp_path, rows, overrides, words):
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\n" + "".join(f"u{u},i{i},{n}\n" for n, (u, i) in enumerate(rows)))
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=weak",
                             "eval.metrics=[recall@2]", "eval.select=recall@2", *overrides))
    assert "no user with a held-out item" in line and all(word in line for word in words), line


def test_valid_fraction_refusals_leave_no_folder(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=6)
    for overrides, words in (([], ["split.valid_fraction=0.1 applies to split.kind weak and temporal only"]),
                             (["split.kind=weak", "split.holdout_items=1"], ["with split.holdout_items"])):
        line = error_line(_train(tmp_path, f"data.dataset={path}", "split.valid_fraction=0.1", *overrides))
        assert all(word in line for word in words), line
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_cli_refusals_are_one_line(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=6)
    line = error_line(_train(tmp_path, f"data.dataset={path}", "split.kind=weakest"))
    assert "split.kind" in line and "'weak'" in line
    for key in ("split.n_valid_users=10", "split.n_test_users=10"):  # would change nothing but the run's name
        line = error_line(_train(tmp_path, f"data.dataset={path}", "split.kind=weak", key))
        assert f"override {key!r}: a weak split never reads" in line and "would change nothing" in line
    line = error_line(_train(tmp_path, f"data.dataset={path}", "split.kind=weak", "split.holdout_items=1",
                             "split.holdout_fraction=0.3"))
    assert "split.holdout_items replaces split.holdout_fraction" in line


def test_a_comparison_knows_a_latest_weak_split_is_the_same_for_every_seed(tmp_path):
    from bindiff.tasks.recommendation.compare import draws_no_split

    path = tmp_path / "d.csv"
    timed_file(path, seed=9)
    data = {"dataset": str(path), "time_col": "when"}
    for holdout, same in (("latest", True), ("random", False)):
        cfg = {"kind": "weak", "holdout": holdout, "seed": None}
        splits = [actual(prepare_split(data, cfg, seed=seed)[0]) for seed in (0, 1)]
        assert (splits[0] == splits[1]) is same and draws_no_split(cfg) is same


def test_a_numpy_count_is_saved_as_a_plain_integer(tmp_path):
    """A numpy integer (accepted as a count) was stored as is: save() failed in json with files half written."""
    from bindiff.adapters.interactions import build_matrix, read_delimited, strong_generalization

    path = tmp_path / "d.csv"
    timed_file(path, seed=2)
    im = build_matrix(read_delimited(path))
    splits = {"weak": weak_generalization(im, seed=0, holdout_items=np.int64(2)),
              "strong": strong_generalization(im, 5, 5, seed=0, holdout_items=np.int64(2))}
    for name, split in splits.items():
        split.save(tmp_path / name)
        assert json.loads((tmp_path / name / "split.json").read_text())["info"]["holdout_items"] == 2


def test_a_share_is_rounded_half_up_on_the_decimal_as_written():
    """0.35 × 90 = 31.5 and 0.7 × 45 = 31.5 round up to 32, though in floating point both products
    are 31.4999…; and 0.2 × 12 = 2.4 rounds down (hand values)."""
    from bindiff.adapters.interactions import holdout_count

    assert 0.35 * 90 < 31.5 and 0.7 * 45 < 31.5  # why the rule needs exact arithmetic
    assert holdout_count(90, 0.35) == 32 and holdout_count(45, 0.7) == 32 and holdout_count(12, 0.2) == 2
