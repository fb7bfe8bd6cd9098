"""split.kind: temporal, the global time cut-off split.

The truth is computed here by brute force from the file's text (a dict of each pair's earliest time, a
sorted list of times): test holds every pair at or after the time from which the latest
round-half-up share of all pairs lies, validation the same rule on the pairs before it (or a share
of all pairs), training the rest. Only items with a training pair stay; validation reads a user's
training items, test the training and validation ones; a user with a target and nothing known
before it is not scored.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.adapters.interactions import InteractionMatrix, Split, build_matrix, read_delimited, temporal_split
from bindiff.cli import app
from bindiff.tasks.recommendation.data import prepare_split
from cli_checks import error_line

RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml")


def timed_file(path: Path, seed: int, n: int = 900, n_users: int = 40, n_items: int = 30, n_times: int = 25,
               prefix: str = "i") -> dict:
    """A CSV with ties and repeated pairs in which users come and go; returns (user, item) -> earliest time
    (a pair chosen again later was known from its first time)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, n_times, n_users)  # each user is active from a time of their own
    rows = []
    for _ in range(n):
        u = int(rng.integers(0, n_users))
        rows.append((u, int(rng.integers(0, n_items)), int(first[u] + rng.integers(0, 8))))
    path.write_text("user,item,when\n" + "".join(f"u{u},{prefix}{i},{t}\n" for u, i, t in rows))
    times: dict = {}
    for u, i, t in rows:
        key = (f"u{u}", f"{prefix}{i}")
        times[key] = min(times.get(key, t), t)
    return times


def cut_off(times: list, share: Fraction):
    """The time from which the latest round-half-up ``share`` of ``times`` (at least 1) lie."""
    count = min(max(math.floor(share + Fraction(1, 2)), 1), len(times))
    return sorted(times)[len(times) - count]


def brute_force(times: dict, fraction: float, valid_fraction: float | None = None,
                test_from=None, valid_from=None) -> dict:
    """{"valid_from", "test_from", "train": user -> items, "valid"/"test": user -> (input, target)};
    ``test_from`` and ``valid_from``: cut-offs given as times instead of shares."""
    exact = Fraction(str(fraction))  # the decimal as written: 0.35 × 90 is 31.5, not 31.4999…
    if test_from is None:
        test_from = cut_off(list(times.values()), exact * len(times))
    before = [t for t in times.values() if t < test_from]
    share = exact * len(before) if valid_fraction is None else Fraction(str(valid_fraction)) * len(times)
    if valid_from is None:
        valid_from = cut_off(before, min(share, len(before)))
    stage = {pair: "train" if t < valid_from else "valid" if t < test_from else "test" for pair, t in times.items()}
    vocabulary = {item for (_, item), s in stage.items() if s == "train"}
    users = {user for user, _ in times}

    def items(user, *stages):
        return {i for (u, i), s in stage.items() if u == user and s in stages and i in vocabulary}

    def has_target(user, name):  # before the vocabulary drops any target
        return any(u == user and s == name for (u, _), s in stage.items())

    train = {u: items(u, "train") for u in users if items(u, "train")}
    valid = {u: (items(u, "train"), items(u, "valid")) for u in users if has_target(u, "valid") and items(u, "train")}
    test = {u: (items(u, "train", "valid"), items(u, "test")) for u in users
            if has_target(u, "test") and items(u, "train", "valid")}
    return {"valid_from": valid_from, "test_from": test_from, "train": train, "valid": valid, "test": test}


def actual(split: Split) -> dict:
    names = split.item_ids
    out = {"valid_from": split.info["valid_from"], "test_from": split.info["test_from"],
           "train": {u: {names[c] for c in split.train[row].indices} for row, u in enumerate(split.train_user_ids)}}
    for stage in ("valid", "test"):
        part = getattr(split, stage)
        assert (part.exclude != part.input).nnz == 0  # the history is never ranked
        out[stage] = {u: ({names[c] for c in part.input[row].indices}, {names[c] for c in part.target[row].indices})
                      for row, u in enumerate(part.user_ids.tolist())}
    return out


@pytest.mark.parametrize("seed,prefix", [(0, "i"), (1, ""), (2, "i")])
@pytest.mark.parametrize("fraction,valid_fraction", [(0.2, None), (0.1, 0.1), (0.3, 0.05), (0.5, None)])
def test_the_temporal_split_matches_brute_force(tmp_path, seed, prefix, fraction, valid_fraction):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=seed, prefix=prefix)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "temporal", "holdout_fraction": fraction, "valid_fraction": valid_fraction},
                             seed=0)
    expected = brute_force(times, fraction, valid_fraction)
    assert split.kind == "temporal" and actual(split) == expected
    assert expected["valid"] and expected["test"] and len(expected["train"]) < 40  # somebody came late
    split.save(tmp_path / "split")  # what a run saves is what it trained on
    assert actual(Split.load(tmp_path / "split")) == expected


def test_hand_example_with_a_tie_at_the_cut_off():
    # ten pairs at times 0..7, two of them at 7 and two at 5. 20 % of 10 = 2 → test from 7 (both pairs at 7).
    # 20 % of the 8 before = 1.6, rounded 2: the second latest is at 5, so validation is from 5 and takes
    # three pairs (6 and both 5s: a time is never split); training: times 0..4
    rows = [("a", "x", 0), ("a", "y", 1), ("b", "x", 2), ("b", "z", 3), ("c", "y", 4),
            ("a", "z", 5), ("c", "x", 5), ("b", "y", 6), ("a", "w", 7), ("d", "x", 7)]
    users = sorted({u for u, _, _ in rows})
    items = sorted({i for _, i, _ in rows})
    matrix = np.zeros((len(users), len(items)), dtype=np.float32)
    time = {}
    for u, i, t in rows:
        matrix[users.index(u), items.index(i)] = 1
        time[users.index(u), items.index(i)] = t
    import scipy.sparse as sp

    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    entry_times = np.array([time[r, c] for r in range(len(users)) for c in csr.indices[csr.indptr[r]:csr.indptr[r + 1]]])
    split = temporal_split(InteractionMatrix(csr, np.array(users), np.array(items), "hand", entry_times))
    assert (split.info["valid_from"], split.info["test_from"]) == (5, 7)
    names = split.item_ids
    assert set(names) == {"x", "y", "z"}  # w appears only in test: it leaves the vocabulary
    assert list(split.train_user_ids) == ["a", "b", "c"]  # d has nothing before test: it never trains
    # validation: a (z), b (y), c (x), reading their training items
    valid = {u: ({names[c] for c in split.valid.input[r].indices}, {names[c] for c in split.valid.target[r].indices})
             for r, u in enumerate(split.valid.user_ids)}
    assert valid == {"a": ({"x", "y"}, {"z"}), "b": ({"x", "z"}, {"y"}), "c": ({"y"}, {"x"})}
    # test: a held out w (dropped: an empty target, kept), d is new (left out, counted)
    test = {u: ({names[c] for c in split.test.input[r].indices}, {names[c] for c in split.test.target[r].indices})
            for r, u in enumerate(split.test.user_ids)}
    assert test == {"a": ({"x", "y", "z"}, set())}
    assert split.info["n_test_users_without_history"] == 1 and split.info["n_held_out_interactions_dropped"] == 1
    assert split.info["n_train_users"] == 3 and split.info["n_train_interactions"] == 5
    # what each cut took (a tie makes validation's three where 20 % would be two)
    assert (split.info["n_valid_held_out_interactions"], split.info["n_test_held_out_interactions"]) == (3, 2)


def test_the_split_is_sparse_typed_and_drawn_from_nothing(tmp_path):
    from bindiff.tasks.recommendation.compare import draws_no_split

    path = tmp_path / "d.csv"
    timed_file(path, seed=5)
    data, cfg = {"dataset": str(path), "time_col": "when"}, {"kind": "temporal", "seed": None}
    first, second = (prepare_split(data, cfg, seed=seed)[0] for seed in (0, 1))
    assert actual(first) == actual(second) and draws_no_split(cfg)
    for matrix in (first.train, first.valid.input, first.test.input, first.test.exclude, first.test.target):
        assert matrix.format == "csr" and matrix.dtype == np.float32 and matrix.has_sorted_indices
        assert set(np.unique(matrix.data)) <= {1.0}
    json.dumps(first.info)  # plain numbers


def test_refusals_of_the_adapter(tmp_path):
    path = tmp_path / "d.csv"
    timed_file(path, seed=1)
    untimed = build_matrix(read_delimited(path))
    with pytest.raises(DataError, match="a temporal split needs each interaction's time"):
        temporal_split(untimed)
    timed = build_matrix(read_delimited(path, time_col="when"))
    with pytest.raises(DataError, match=r"valid_fraction \(split.valid_fraction\) must be null or in \(0, 1 - "
                                        r"holdout_fraction = 0.8\)"):
        temporal_split(timed, 0.2, valid_fraction=0.8)
    with pytest.raises(DataError, match="holdout_fraction must be in"):
        temporal_split(timed, 1.0)
    same_time = tmp_path / "same.csv"
    same_time.write_text("user,item,when\n" + "".join(f"u{u},{i},7\n" for u in range(5) for i in range(4)))
    with pytest.raises(DataError, match=r"every interaction has the same time, 7: a temporal split needs "
                                        r"interactions at more than one time"):
        temporal_split(build_matrix(read_delimited(same_time, time_col="when")))
    # two times, the later holding most: 0.9 reaches the earlier, and lowering holdout_fraction is the way
    two_times = tmp_path / "two.csv"
    two_times.write_text("user,item,when\nu0,0,1\n" + "".join(f"u{u},{i},7\n" for u in range(5) for i in range(1, 4)))
    with pytest.raises(DataError, match=r"the test cut-off, 1, .* is their earliest time: nothing is left to train "
                                        r"on; lower holdout_fraction \(split.holdout_fraction\)"):
        temporal_split(build_matrix(read_delimited(two_times, time_col="when")), 0.99)


def _train(tmp_path, *overrides):
    args = ["train", RECIPE, *overrides, f"output.root={tmp_path / 'runs'}", "train.threads=1",
            "data.min_rating=null", "--data-dir", str(tmp_path)]
    return CliRunner().invoke(app, args)


def _no_run_folder(tmp_path) -> bool:
    return not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_a_temporal_run_trains_and_records_its_cut_offs(tmp_path):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=2)
    result = _train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=temporal",
                    "model.kind=popularity", "eval.metrics=[recall@10]", "eval.select=recall@10")
    assert result.exit_code == 0, result.output
    (manifest,) = (tmp_path / "runs").rglob("split/split.json")
    saved = json.loads(manifest.read_text())
    expected = brute_force(times, 0.2)
    assert saved["kind"] == "temporal" and saved["info"]["test_from"] == expected["test_from"]
    assert actual(Split.load(manifest.parent)) == expected
    (metrics_path,) = (tmp_path / "runs").rglob("metrics.json")
    assert 0 < json.loads(metrics_path.read_text())["test"]["recall@10"] <= 1


@pytest.mark.parametrize("overrides,words", [
    (["data.time_col=null"], ["split.kind='temporal' needs interaction times", "d.csv", "data.time_col"]),
    (["data.dataset=synthetic:tiny"], ["split.kind='temporal' needs interaction times", "synthetic data",
                                       "split.kind strong or weak"]),
    (["split.holdout_items=1"], ["split.holdout_items=1 applies to split.kind strong and weak",
                                 "a temporal split holds out a share of all interactions"]),
    (["split.n_test_users=5"], ["override 'split.n_test_users=5': a temporal split never reads", "change nothing"]),
    (["split.seed=3"], ["override 'split.seed=3': a temporal split never reads"]),
    (["split.holdout=latest"], ["override 'split.holdout=latest': a temporal split never reads"]),
    (["split.valid_fraction=0.9"], ["split.valid_fraction=0.9 must be below 1 - split.holdout_fraction = 0.8"]),
    (["data.k_core=2"], ["data.k_core=2 cannot be combined with split.kind 'temporal'", "depend on the future"]),
])
def test_cli_refusals_are_one_line_and_leave_no_folder(tmp_path, overrides, words):
    path = tmp_path / "d.csv"
    timed_file(path, seed=6)
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=temporal",
                             *overrides))
    assert all(word in line for word in words), line
    assert _no_run_folder(tmp_path)


def test_cli_says_why_nobody_can_be_scored(tmp_path):
    # every user is active at one time only: whoever has a test item has nothing before it
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\n" + "".join(f"u{u},i{i},{u}\n" for u in range(10) for i in range(u % 4, u % 4 + 5)))
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=temporal",
                             "eval.metrics=[recall@2]", "eval.select=recall@2"))
    assert "the valid split has no user with a held-out item to score" in line
    # ten users at times 0..9, five pairs each (50): test from 8 (the latest 10), validation from 6 (8 of the 40
    # before, 20 %), and users 6 and 7, validation's, have nothing before it
    assert "of the users with an interaction from 6 to before 8, 2 have nothing known before it" in line
    assert "split.holdout_fraction" in line
    assert _no_run_folder(tmp_path)


def test_iso_dates_are_read_as_unix_seconds_and_split_as_the_numbers_would_be(tmp_path):
    """A time column of ISO 8601 dates and times: 2024-01-01T00:00:00Z is 1,704,067,200 s (a hand value);
    the temporal split of the dates is that of the same times written as Unix seconds."""
    day = 86_400
    jan_1 = 1_704_067_200
    iso = tmp_path / "iso.csv"
    iso.write_text("user,item,when\nu1,a,2024-01-05\nu1,b,2024-01-05T10:30:00\nu2,a,2024-01-01 00:00\n")
    raw = read_delimited(iso, time_col="when")  # no offset: UTC
    assert raw.time.dtype == np.int64 and raw.time.tolist() == [jan_1 + 4 * day, jan_1 + 4 * day + 10 * 3600 + 1800,
                                                               jan_1]
    offsets = tmp_path / "offsets.csv"
    offsets.write_text("user,item,when\nu1,a,2024-01-05T10:30:00+01:00\nu2,a,2024-01-01T00:00:00Z\n")
    assert read_delimited(offsets, time_col="when").time.tolist() == [jan_1 + 4 * day + 9 * 3600 + 1800, jan_1]
    fraction = tmp_path / "fraction.csv"
    fraction.write_text("user,item,when\nu1,a,2024-01-01T00:00:00.250Z\nu1,b,2024-01-01T00:00:01Z\n")
    assert read_delimited(fraction, time_col="when").time.tolist() == [jan_1 + 0.25, jan_1 + 1.0]
    # a generated file written both ways splits alike
    seconds = tmp_path / "seconds.csv"
    times = timed_file(seconds, seed=4)
    dates = tmp_path / "dates.csv"
    lines = seconds.read_text().splitlines()
    dates.write_text("\n".join([lines[0]] + [
        ",".join([*line.split(",")[:2], datetime.fromtimestamp(jan_1 + int(line.split(",")[2]) * day,
                                                                 timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")])
        for line in lines[1:]]) + "\n")
    config = {"kind": "temporal"}
    by_seconds = actual(prepare_split({"dataset": str(seconds), "time_col": "when"}, config, seed=0)[0])
    by_dates = actual(prepare_split({"dataset": str(dates), "time_col": "when"}, config, seed=0)[0])
    assert by_dates["test_from"] == jan_1 + by_seconds["test_from"] * day
    assert {k: v for k, v in by_dates.items() if not k.endswith("_from")} == \
        {k: v for k, v in by_seconds.items() if not k.endswith("_from")} == \
        {k: v for k, v in brute_force(times, 0.2).items() if not k.endswith("_from")}


@pytest.mark.parametrize("text,words", [
    ("u1,a,2024-01-05\nu1,b,soon\n", ["d.csv:3: time 'soon' (time_col) is not an ISO 8601 date and time",
                                      "as the column's first value, '2024-01-05', is"]),
    ("u1,a,2024-01-05T10:00Z\nu1,b,2024-01-06T10:00\n", ["d.csv:3", "mixes times with a UTC offset (line 2) and "
                                                          "without one (line 3)"]),
])
def test_a_column_of_dates_refuses_a_value_it_cannot_order(tmp_path, text, words):
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\n" + text)
    with pytest.raises(DataError) as err:
        read_delimited(path, time_col="when")
    assert all(word in str(err.value) for word in words), str(err.value)


def test_dates_are_read_as_python_3_10_reads_iso_8601_too(tmp_path, python_310_isoformat):
    """bindiff supports Python 3.10, whose fromisoformat refuses a "Z" and fractions of other than 3 or 6
    digits: a stand-in that accepts only 3.10's grammar reads every documented form (hand values)."""
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\nu1,a,2024-01-01T00:00:00Z\nu1,b,2024-01-01T00:00:00.25Z\n"
                    "u1,c,2024-01-01T00:00:01.123456789+00:00\n")
    assert read_delimited(path, time_col="when").time.tolist() == [1_704_067_200, 1_704_067_200.25, 1_704_067_201.123456]
    path.write_text("user,item,when\nu1,a,2023/01/05\n")  # not ISO 8601: named as neither
    with pytest.raises(DataError, match=r"time '2023/01/05' \(time_col\) is not a number \(nor an ISO 8601 date"):
        read_delimited(path, time_col="when")


def test_a_seed_for_a_split_that_draws_nothing_is_refused(tmp_path):
    """split.seed changes nothing in a weak split of each user's latest items (as in a temporal one)."""
    path = tmp_path / "d.csv"
    timed_file(path, seed=6)
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=weak",
                             "split.holdout=latest", "split.seed=3"))
    assert "override 'split.seed=3': a weak split of each user's latest items draws nothing" in line
    assert _no_run_folder(tmp_path)


# Cut-offs given as times (split.test_from, split.valid_from) instead of shares.

@pytest.mark.parametrize("seed,test_from,valid_from,valid_fraction", [
    (0, 20, 14, None), (1, 17, None, None), (2, 25, None, 0.1), (3, 9, 5, None), (4, 22, 21, None)])
def test_cut_offs_given_as_times_match_brute_force(tmp_path, seed, test_from, valid_from, valid_fraction):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=seed)
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "temporal", "holdout_fraction": 0.3, "valid_fraction": valid_fraction,
                              "test_from": test_from, "valid_from": valid_from}, seed=0)
    expected = brute_force(times, 0.3, valid_fraction, test_from=test_from, valid_from=valid_from)
    assert actual(split) == expected and expected["test"]
    assert (split.info["test_from_given"], split.info["valid_from_given"]) == (test_from, valid_from)


def test_cut_offs_given_as_dates_split_as_their_unix_seconds(tmp_path):
    """Dates in the file and in the recipe: 2024-01-01 is 1,704,067,200 s (a hand value), a day 86,400 s;
    a cut-off written with an offset is the same instant in UTC."""
    day0, day = 1_704_067_200, 86_400
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=3)
    text = path.read_text().splitlines()
    dated = [text[0]] + [f"{u},{i},{datetime.fromtimestamp(day0 + int(t) * day, tz=timezone.utc).date()}"
                         for u, i, t in (line.split(",") for line in text[1:])]
    path.write_text("\n".join(dated) + "\n")
    split, _ = prepare_split({"dataset": str(path), "time_col": "when"},
                             {"kind": "temporal", "test_from": "2024-01-10", "valid_from": "2024-01-06T02:00:00+02:00"},
                             seed=0)
    expected = brute_force({pair: day0 + t * day for pair, t in times.items()}, 0.2,
                           test_from=day0 + 9 * day, valid_from=day0 + 5 * day)
    assert actual(split) == expected
    assert split.info["test_from"] == day0 + 9 * day and split.info["test_from_given"] == "2024-01-10"


def test_given_cut_offs_that_leave_a_stage_empty_are_refused_naming_the_key():
    im = InteractionMatrix(matrix=sp.csr_matrix(np.ones((2, 3), dtype=np.float32)), user_ids=np.array(["a", "b"]),
                           item_ids=np.array(["x", "y", "z"]), source="d.csv",
                           time=np.array([10, 20, 30, 10, 20, 30]))
    for kwargs, words in [
        ({"test_from": 31}, "no interaction is at or after test_from (split.test_from) 31: nothing to test; the "
                            "interactions' times run from 10 to 30"),
        ({"test_from": 10}, "no interaction is before test_from (split.test_from) 10: nothing is left to train on"),
        ({"test_from": 30, "valid_from": 30}, "valid_from (split.valid_from) 30 must be earlier than test_from"),
        ({"test_from": 30, "valid_from": 5}, "no interaction is before valid_from (split.valid_from) 5"),
        ({"test_from": 30, "valid_from": 25}, "no interaction is from valid_from (split.valid_from) 25 to before "
                                              "the test cut-off 30: nothing to validate on"),
        ({"test_from": "1970-01-01T00:00:31"}, "'1970-01-01T00:00:31' (31 in Unix seconds): nothing to test"),
        ({"test_from": "soon"}, "test_from (split.test_from) 'soon' is neither a number nor an ISO 8601 date"),
        ({"test_from": float("nan")}, "must be a time (a number, or an ISO 8601 date and time), got nan"),
        ({"valid_from": 20, "valid_fraction": 0.1}, "both place the validation cut-off"),
    ]:
        with pytest.raises(DataError) as caught:
            temporal_split(im, **kwargs)
        assert words in str(caught.value), (kwargs, str(caught.value))
    in_ms = InteractionMatrix(matrix=im.matrix, user_ids=im.user_ids, item_ids=im.item_ids, source="d.csv",
                              time=np.array([10, 20, 30, 10, 20, 30]) * 1000 + 1_700_000_000_000)
    with pytest.raises(DataError, match="these times look like milliseconds or finer, not Unix seconds: give the "
                                        "cut-offs as numbers in the time column's unit"):
        temporal_split(in_ms, test_from="2024-01-01")
    split = temporal_split(im, test_from=30, valid_from=20)  # and one that holds: each stage one time
    assert split.info["n_test_held_out_interactions"] == 2 and split.info["n_valid_held_out_interactions"] == 2


def test_a_recipe_date_stays_text_and_round_trips(tmp_path):
    """YAML 1.1 reads an unquoted 2024-01-01 as a date object: the recipe keeps it as written."""
    from bindiff.config import dump_recipe, load_recipe
    from bindiff.config.recipe import recipe_from_text

    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: recommend\nsplit:\n  kind: temporal\n  test_from: 2024-01-01\n  valid_from: 1700000000\n")
    config = load_recipe(str(recipe))
    assert config["split"]["test_from"] == "2024-01-01" and config["split"]["valid_from"] == 1_700_000_000
    assert recipe_from_text(dump_recipe(config))["split"] == config["split"]
    with pytest.raises(Exception, match="split.test_from' must be a number or an ISO 8601 date"):
        load_recipe(str(recipe), ["split.test_from=2024-13-01"])


@pytest.mark.parametrize("overrides,words", [
    (["split.kind=weak", "split.test_from=5"], ["split.test_from=5 applies to split.kind temporal only"]),
    (["split.kind=temporal", "split.valid_from=5", "split.valid_fraction=0.1"],
     ["split.valid_from and split.valid_fraction both place the validation cut-off"]),
    (["split.kind=temporal", "split.test_from=20", "split.valid_from=14", "split.holdout_fraction=0.3"],
     ["override 'split.holdout_fraction=0.3': split.test_from and split.valid_from place both cut-offs"]),
    (["split.kind=temporal", "split.test_from=2099-01-01"], ["'2099-01-01' (4070908800 in Unix seconds): nothing to "
                                                             "test", "(Unix seconds: 1970-01-01T00:00:00Z to"]),
])
def test_cli_refuses_cut_offs_it_cannot_use_in_one_line(tmp_path, overrides, words):
    path = tmp_path / "d.csv"
    timed_file(path, seed=6)
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=when", *overrides))
    assert all(word in line for word in words), line
    assert _no_run_folder(tmp_path)


def test_a_run_with_dated_cut_offs_records_them_as_written(tmp_path):
    path = tmp_path / "d.csv"
    times = timed_file(path, seed=2)
    result = _train(tmp_path, f"data.dataset={path}", "data.time_col=when", "split.kind=temporal",
                    "split.test_from=1970-01-01T00:00:20Z", "split.valid_from=15", "model.kind=popularity",
                    "eval.metrics=[recall@10]", "eval.select=recall@10")
    assert result.exit_code == 0, result.output
    (manifest,) = (tmp_path / "runs").rglob("split/split.json")
    info = json.loads(manifest.read_text())["info"]
    assert (info["test_from"], info["test_from_given"], info["valid_from"], info["valid_from_given"]) == \
        (20, "1970-01-01T00:00:20Z", 15, 15)
    assert actual(Split.load(manifest.parent)) == brute_force(times, 0.2, test_from=20, valid_from=15)
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    assert "test_from: '1970-01-01T00:00:20Z'" in config.read_text()  # quoted: it reads back as text


@pytest.mark.parametrize("text,instant", [
    ("2024-01-15T10:30:00+01:00", datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)),
    ("2024-01-15T10:30:00+0100", datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)),
    ("2024-01-15 10:30+01", datetime(2024, 1, 15, 9, 30, tzinfo=timezone.utc)),
    ("2024-01-15T10z", datetime(2024, 1, 15, 10, tzinfo=timezone.utc)),
    ("2024-01-15-05:00", datetime(2024, 1, 15, 5, tzinfo=timezone.utc)),  # midnight at -05:00
    ("2024-01-15t10:30:00.1234567", datetime(2024, 1, 15, 10, 30, 0, 123456)),  # naive: the column's UTC
])
def test_iso_spellings_read_as_one_grammar_on_every_python(text, instant, python_310_isoformat):
    """Offsets as ±HH, ±HHMM, ±HH:MM; a lower-case t or z; a date with an offset is midnight there (hand
    instants), read alike under Python 3.10's fromisoformat; week dates and the basic format are refused."""
    from bindiff.adapters.interactions.readers import from_iso

    assert from_iso(text) == instant
    for refused in ("2024-W03-1", "20240115T1030", "2024-01-15T10:30:00+1", "2024-01-15X10:30", "2024-01-15 "):
        with pytest.raises(ValueError):
            from_iso(refused)
