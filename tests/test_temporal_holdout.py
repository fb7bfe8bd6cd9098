"""split.holdout: latest, the time-ordered hold-out of the strong split, and data.time_col.

Each held-out user's target must be their latest items by time (a pair seen twice at its latest time
among the rows that pass min_rating; equal times: the later item id counts as later). The truth is
computed here by brute force from the file's text (dicts, sorted by time), independently of the
readers, the matrix build and the split. ``random`` must give, bit for bit, the split it gave before
the feature: the digests below were computed with the code as it was before (commit 179b9e7), on the
same data, by ``split_digest``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.adapters import DataError
from bindiff.adapters.interactions import RawInteractions, Split, build_matrix, read_delimited, read_movielens_ratings
from bindiff.cli import app
from bindiff.tasks.recommendation.data import prepare_split
from cli_checks import error_line

REAL_DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
RECIPE = str(Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml")


# ----------------------------------------------------------------------------- independent truth

def expected_count(n: int, fraction: float) -> int:
    """Round half up, at least 1, at most n - 1 (the documented rule, written out again)."""
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def latest_times(rows, min_rating=None):
    """(user, item) -> the latest time among the rows (user, item, rating, time) that pass min_rating."""
    times: dict = {}
    for user, item, rating, time in rows:
        if min_rating is not None and float(rating) < min_rating:
            continue
        key = (user, item)
        times[key] = max(times.get(key, -math.inf), float(time))
    return times


def item_order(item: str):
    """The matrix's column order: integer-looking ids by value, other ids as strings."""
    return (0, int(item), "") if item.isdigit() else (1, 0, item)


def expected_parts(times: dict, held_users, train_users, fraction, min_items):
    """user -> (input items, target items) of a latest hold-out, by brute force."""
    vocabulary = {item for (user, item) in times if user in train_users}
    out = {}
    for user in held_users:
        items = sorted((time, item_order(item), item) for (u, item), time in times.items()
                       if u == user and item in vocabulary)
        n = len(items)
        count = expected_count(n, fraction) if n >= min_items else 0
        out[user] = ({i for *_, i in items[:n - count]}, {i for *_, i in items[n - count:]})
    return out


def actual_parts(split: Split):
    out = {}
    for part in (split.valid, split.test):
        for row, user in enumerate(part.user_ids.tolist()):
            out[user] = ({split.item_ids[c] for c in part.input[row].indices},
                         {split.item_ids[c] for c in part.target[row].indices})
            assert (part.exclude[row] != part.input[row]).nnz == 0
    return out


def split_digest(split: Split) -> str:
    h = hashlib.sha256()

    def add(a):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())

    for part in (split.train, split.valid.input, split.valid.exclude, split.valid.target,
                 split.test.input, split.test.exclude, split.test.target):
        add(np.array(part.shape, dtype=np.int64))
        add(part.indptr.astype(np.int64))
        add(part.indices.astype(np.int64))
        add(part.data)
    for ids in (split.train_user_ids, split.item_ids, split.valid.user_ids, split.test.user_ids):
        add(np.asarray(ids).astype(str))
    return h.hexdigest()


def saved(split: Split, folder: Path) -> Split:
    split.save(folder)
    return Split.load(folder)


def tiny_csv(path: Path) -> Path:
    """The file the random-split digests were computed on (ties and repeated pairs included)."""
    rng = np.random.default_rng(7)
    n = 900
    users = rng.integers(0, 60, n)
    items = rng.integers(0, 40, n)
    ratings = rng.integers(1, 6, n)
    times = rng.integers(1_000, 1_200, n)
    with open(path, "w") as f:
        f.write("user,item,rating,timestamp\n")
        for u, i, r, t in zip(users, items, ratings, times):
            f.write(f"u{u},{i},{r},{t}\n")
    return path


def read_rows(path: Path, sep=","):
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=sep))
    return [tuple(row) for row in rows[1:]]


# ----------------------------------------------------------------------------- latest against brute force

@pytest.mark.parametrize("item_prefix", ["", "i"])  # integer ids order by value ("2" < "10"), others as strings
@pytest.mark.parametrize("min_rating,fraction,min_items", [(None, 0.2, 5), (3, 0.5, 3), (2, 0.34, 2)])
def test_latest_targets_match_brute_force(tmp_path, item_prefix, min_rating, fraction, min_items):
    rng = np.random.default_rng(11)
    n = 1500
    # few distinct times (many ties) and many repeated pairs
    rows = [(f"u{u}", f"{item_prefix}{i}", str(r), str(t)) for u, i, r, t in
            zip(rng.integers(0, 80, n), rng.integers(0, 60, n), rng.integers(1, 6, n), rng.integers(0, 15, n))]
    path = tmp_path / "d.csv"
    path.write_text("user,item,rating,timestamp\n" + "".join(",".join(r) + "\n" for r in rows))
    data = {"dataset": str(path), "rating_col": "rating", "time_col": "timestamp", "min_rating": min_rating}
    split_cfg = {"n_valid_users": 10, "n_test_users": 12, "holdout_fraction": fraction,
                 "min_items_to_split": min_items}
    latest, _ = prepare_split(data, {**split_cfg, "holdout": "latest"}, seed=4)
    random, _ = prepare_split(data, split_cfg, seed=4)
    # the same users are held out, the same training rows and vocabulary; only the targets differ
    assert split_digest(_train_only(latest)) == split_digest(_train_only(random))
    times = latest_times(rows, min_rating)
    held = set(latest.valid.user_ids.tolist()) | set(latest.test.user_ids.tolist())
    expected = expected_parts(times, held, set(latest.train_user_ids.tolist()), fraction, min_items)
    assert actual_parts(latest) == expected
    assert any(target for _, target in expected.values())
    assert actual_parts(latest) != actual_parts(random)
    assert latest.info["holdout"] == "latest" and random.info["holdout"] == "random"
    assert saved(latest, tmp_path / "split").info["holdout"] == "latest"


def _train_only(split: Split) -> Split:
    """The split with both targets emptied and inputs made whole: what must not depend on the holdout."""
    import copy

    out = copy.copy(split)
    for stage in ("valid", "test"):
        part = copy.copy(getattr(split, stage))
        whole = (part.input + part.target).tocsr()
        whole.sort_indices()
        part.input = part.exclude = part.target = whole
        setattr(out, stage, part)
    return out


def test_ties_go_by_item_id_order_and_input_is_the_earlier_items(tmp_path):
    # user a: items 10, 2, 7 at the same time 5, item 3 at time 1; holdout 0.5 of 4 = 2 items:
    # the latest two by (time, item id as a number): 7 and 10 (not 2, although "2" > "10" as text)
    rows = ["a,10,5", "a,2,5", "a,7,5", "a,3,1"] + [f"t{u},{i},1" for u in range(4) for i in (10, 2, 7, 3)]
    path = tmp_path / "d.csv"
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    for seed in range(20):  # a seed that puts user a among the test users
        split, _ = prepare_split({"dataset": str(path), "time_col": "ts"},
                                 {"n_valid_users": 1, "n_test_users": 1, "holdout_fraction": 0.5,
                                  "min_items_to_split": 2, "holdout": "latest"}, seed=seed)
        if split.test.user_ids.tolist() == ["a"]:
            break
    else:
        pytest.fail("no seed held user a out for test")
    assert actual_parts(split)["a"] == ({"2", "3"}, {"7", "10"})


# ----------------------------------------------------------------------------- duplicates and k-core

def test_a_repeated_pair_keeps_its_latest_time(tmp_path):
    # x: first at time 1, again at 100 -> its time is 100, so it is a's latest item
    # y: at 90 with a rating that passes, at 200 with one that does not -> its time is 90
    rows = [("a", "x", "5", "1"), ("a", "p", "5", "50"), ("a", "q", "5", "60"), ("a", "x", "4", "100"),
            ("a", "y", "4", "90"), ("a", "y", "1", "200"), ("a", "r", "5", "95")]
    path = tmp_path / "d.csv"
    path.write_text("user,item,rating,t\n" + "".join(",".join(r) + "\n" for r in rows))
    raw = read_delimited(path, rating_col="rating", time_col="t")
    assert raw.time.dtype == np.int64 and raw.time.tolist() == [1, 50, 60, 100, 90, 200, 95]
    im = build_matrix(raw, min_rating=3)
    got = {(im.user_ids[r], im.item_ids[c]): im.time[k]
           for r in range(im.n_users) for k, c in zip(range(im.matrix.indptr[r], im.matrix.indptr[r + 1]),
                                                      im.matrix.indices[im.matrix.indptr[r]:im.matrix.indptr[r + 1]])}
    assert got == latest_times(rows, 3) == {("a", "x"): 100, ("a", "p"): 50, ("a", "q"): 60, ("a", "y"): 90,
                                             ("a", "r"): 95}
    # without min_rating y's failing row counts too: 200
    assert dict(zip(build_matrix(raw).item_ids.tolist(), build_matrix(raw).time.tolist()))["y"] == 200


def test_k_core_keeps_the_times_of_the_entries_it_keeps(tmp_path):
    rng = np.random.default_rng(3)
    n = 700
    rows = [(f"u{u}", f"{i}", "1", f"{t}") for u, i, t in
            zip(rng.integers(0, 70, n), rng.integers(0, 90, n), rng.integers(0, 10**6, n))]
    path = tmp_path / "d.csv"
    path.write_text("user,item,rating,t\n" + "".join(",".join(r) + "\n" for r in rows))
    im = build_matrix(read_delimited(path, time_col="t"), k_core=6)
    # brute-force k-core on sets
    times = latest_times(rows)
    pairs = set(times)
    while True:
        users = {u: sum(1 for (v, _) in pairs if v == u) for (u, _) in pairs}
        items = {i: sum(1 for (_, j) in pairs if j == i) for (_, i) in pairs}
        kept = {(u, i) for (u, i) in pairs if users[u] >= 6 and items[i] >= 6}
        if kept == pairs:
            break
        pairs = kept
    assert 50 < len(pairs) < len(times)
    coo = im.matrix.tocoo()
    got = {(im.user_ids[r], im.item_ids[c]): t for r, c, t in zip(coo.row, coo.col, im.time)}
    assert got == {pair: times[pair] for pair in pairs}


def test_time_rides_along_sparse(tmp_path):
    """One time per stored entry, never users x items."""
    path = tmp_path / "d.csv"
    path.write_text("user,item,t\n" + "".join(f"u{u},{u * 1000 + k},{k}\n" for u in range(300) for k in range(3)))
    im = build_matrix(read_delimited(path, time_col="t"))
    assert im.n_users * im.n_items == 300 * 900 and im.time.shape == (900,)


def test_float_times_and_a_numbered_column(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("1.5\ta\tx\n2\tb\ty\n1e3\ta\ty\n")
    raw = read_delimited(path, sep="\t", user_col=1, item_col=2, time_col=0, header=False)
    assert raw.time.dtype == np.float64 and raw.time.tolist() == [1.5, 2.0, 1000.0]


def test_grouplens_files_carry_their_timestamps(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::978300760\n1::11::3::978302109\n")
    assert read_movielens_ratings(path).time.tolist() == [978300760, 978302109]
    assert RawInteractions(np.array(["1"]), np.array(["2"]), None, "s").time is None


# ----------------------------------------------------------------------------- refusals

ISO = " (nor an ISO 8601 date and time, such as 2024-01-05, 2024-01-05 10:30 or 2024-01-05T10:30:00Z)"


@pytest.mark.parametrize("value,what", [("soon", "is not a number" + ISO), ("", "is not a number" + ISO),
                                        ("nan", "is not a finite number")])
def test_a_non_numeric_time_names_file_line_and_key(tmp_path, value, what):
    path = tmp_path / "d.csv"
    path.write_text(f"user,item,when\na,x,12\nb,y,{value}\n")
    with pytest.raises(DataError) as err:
        read_delimited(path, time_col="when")
    assert str(err.value) == f"{path}:3: time {value!r} (time_col) {what}"


def _train(tmp_path, *overrides, command="train"):
    args = [command, RECIPE, *overrides, f"output.root={tmp_path / 'runs'}", "train.threads=1",
            "split.n_valid_users=2", "split.n_test_users=2", "--data-dir", str(tmp_path)]
    if command == "compare":
        args += ["--models", "popularity", "--seeds", "1"]
    return CliRunner().invoke(app, args)


def _timed_csv(tmp_path) -> Path:
    path = tmp_path / "d.csv"
    path.write_text("user,item,when\n" + "".join(f"u{u},i{(u * 7 + k) % 30},{k}\n" for u in range(20) for k in range(8)))
    return path


def _nothing_written(tmp_path) -> bool:
    runs = tmp_path / "runs"
    return not runs.exists() or not any(runs.rglob("*"))


def test_refusals_from_the_cli_are_one_line_and_leave_no_folder(tmp_path):
    csv_path = _timed_csv(tmp_path)
    (tmp_path / "bad.csv").write_text("user,item,when\na,x,1\nb,y,later\n")
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n")
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for stage in ("train", "valid", "test"):
        np.save(pairs / f"{stage}_list.npy", np.array([[0, 0], [1, 1], [2, 2], [3, 0]]))
    base = ["data.min_rating=null", "split.holdout=latest"]
    cases = {
        "no time column": ([f"data.dataset={csv_path}", *base], ["data.time_col", str(csv_path)]),
        "predefined": ([f"data.dataset={pairs}", "split.kind=predefined", *base], ["predefined"]),
        "synthetic": (["data.dataset=synthetic:tiny", *base], ["synthetic:tiny", "none"]),
        "diffrec pairs": ([f"data.dataset={pairs}", *base], ["data.time_col", "diffrec_pairs"]),
        "bad time value": ([f"data.dataset={tmp_path / 'bad.csv'}", "data.time_col=when", *base],
                           [f"{tmp_path / 'bad.csv'}:3", "'later'", "time_col"]),
        "time_col on u.data": ([f"data.dataset={tmp_path / 'u.data'}", "data.time_col=3", *base],
                               ["data.time_col=3", "ml100k"]),
    }
    for name, (overrides, words) in cases.items():
        line = error_line(_train(tmp_path, *overrides))
        assert all(word in line for word in words), (name, line)
        assert _nothing_written(tmp_path), name
    # compare names its folder before the first run: the refusal comes first there too
    line = error_line(_train(tmp_path, f"data.dataset={csv_path}", *base, command="compare"))
    assert "data.time_col" in line and _nothing_written(tmp_path)
    # a bad value for the key itself
    line = error_line(_train(tmp_path, f"data.dataset={csv_path}", "split.holdout=newest"))
    assert "split.holdout" in line and _nothing_written(tmp_path)


def test_a_latest_run_records_its_rule(tmp_path):
    csv_path = _timed_csv(tmp_path)
    result = _train(tmp_path, f"data.dataset={csv_path}", "data.min_rating=null", "data.time_col=when",
                    "split.holdout=latest", "model.kind=popularity", "eval.metrics=[recall@10]",
                    "eval.select=recall@10")
    assert result.exit_code == 0, result.output
    (info_path,) = (tmp_path / "runs").rglob("split/split.json")
    info = json.loads(info_path.read_text())["info"]
    assert info["holdout"] == "latest" and "latest" in info["holdout_rule"]
    split = Split.load(info_path.parent)
    times = latest_times([(u, i, "1", t) for u, i, t in read_rows(csv_path)])
    held = set(split.valid.user_ids.tolist()) | set(split.test.user_ids.tolist())
    assert actual_parts(split) == expected_parts(times, held, set(split.train_user_ids.tolist()), 0.2, 5)


# ----------------------------------------------------------------------------- random is unchanged

# split_digest of the saved split, computed with the code before split.holdout existed
BEFORE = {
    "csv": "70a146053b05e42ec61be8b7471927ae11bc0fbee8b368be0f6f990cb160c040",
    "csv_kcore": "53a01a5cddd0f94c1e0e1290e06848a0c546f8a947e64d6df24ed92fc20d5413",
    "ml100k": "55d0675189e37283a258d68acb41b02c05e62554e2875aa473320ab4d498f66b",
    "ml100k_kcore": "7f477692b00b7db721c78f5e043083bcc93224b6577d9b2b6dd4de20b044a45b",
}


def _configs(csv_path):
    return {
        "csv": ({"dataset": str(csv_path), "rating_col": "rating", "min_rating": 3},
                {"n_valid_users": 8, "n_test_users": 8}, 3),
        "csv_kcore": ({"dataset": str(csv_path), "rating_col": "rating", "k_core": 5},
                      {"n_valid_users": 8, "n_test_users": 8, "holdout_fraction": 0.3}, 11),
        "ml100k": ({"dataset": "ml-100k", "min_rating": 4, "download": False},
                   {"n_valid_users": 100, "n_test_users": 100}, 0),
        "ml100k_kcore": ({"dataset": "ml-100k", "min_rating": 4, "k_core": 5, "download": False},
                         {"n_valid_users": 100, "n_test_users": 100, "holdout_fraction": 0.5,
                          "min_items_to_split": 3}, 5),
    }


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_random_gives_the_split_it_gave_before(tmp_path, name):
    if name.startswith("ml100k") and not (REAL_DATA / "ml-100k" / "u.data").is_file():
        pytest.skip("ml-100k not present")
    data, split_cfg, seed = _configs(tiny_csv(tmp_path / "tiny.csv"))[name]
    variants = [(data, split_cfg), (data, {**split_cfg, "holdout": "random"})]
    if name.startswith("csv"):  # a named time column, read and unused, changes nothing either
        variants.append(({**data, "time_col": "timestamp"}, {**split_cfg, "holdout": "random"}))
    for number, (d, s) in enumerate(variants):
        split, _ = prepare_split(d, s, seed=seed, data_dir=REAL_DATA)
        assert split_digest(saved(split, tmp_path / f"split{number}")) == BEFORE[name], (name, number)


# ----------------------------------------------------------------------------- real data

def test_ml100k_latest_targets_are_never_earlier_than_inputs(tmp_path):
    u_data = REAL_DATA / "ml-100k" / "u.data"
    if not u_data.is_file():
        pytest.skip("ml-100k not present")
    table = np.loadtxt(u_data, dtype=np.int64, delimiter="\t")
    time = {(str(u), str(i)): t for u, i, r, t in table.tolist() if r >= 4}
    split, _ = prepare_split({"dataset": "ml-100k", "min_rating": 4, "download": False},
                             {"n_valid_users": 100, "n_test_users": 100, "holdout": "latest"}, seed=0,
                             data_dir=REAL_DATA)
    split = saved(split, tmp_path / "split")
    assert split.info["holdout"] == "latest"
    checked = 0
    for user, (inputs, targets) in actual_parts(split).items():
        if targets:
            assert min(time[user, i] for i in targets) >= max(time[user, i] for i in inputs), user
            assert len(targets) == expected_count(len(inputs) + len(targets), 0.2)
            checked += 1
    assert checked > 150


def _repeat_file(tmp_path) -> Path:
    """a chooses i1 at 1 and again at 6; b and c train every item whichever rule holds."""
    rows = [("a", "i1", 1), ("a", "i2", 2), ("a", "i3", 3), ("a", "i4", 4), ("a", "i5", 5), ("a", "i1", 6),
            ("b", "i1", 1), ("b", "i2", 2), ("b", "i3", 3), ("b", "i4", 4), ("b", "i5", 5),
            ("c", "i4", 1), ("c", "i5", 2), ("c", "i1", 3), ("c", "i2", 4), ("c", "i3", 5)]
    path = tmp_path / "repeat.csv"
    path.write_text("user,item,t\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


@pytest.mark.parametrize("pair_time,test,valid", [(None, {"i1"}, {"i5"}), ("latest", {"i1"}, {"i5"}),
                                                   ("earliest", {"i5"}, {"i4"})])
def test_pair_time_decides_whether_a_re_chosen_item_is_held_out(tmp_path, pair_time, test, valid):
    """Leave-one-out on each user's latest item, by hand: at its latest time (6) a's i1 is the test
    target; at its earliest (1) it is a's first item and trains, and i5 (5) is the target."""
    split, _ = prepare_split({"dataset": str(_repeat_file(tmp_path)), "time_col": "t"},
                             {"kind": "weak", "holdout": "latest", "holdout_items": 1, "min_items_to_split": 2,
                              "pair_time": pair_time}, seed=0)

    def row(part, user):
        (r,) = np.flatnonzero(part.user_ids == user)
        return {split.item_ids[c] for c in part.target[r].indices}, {split.item_ids[c] for c in part.input[r].indices}

    assert row(split.test, "a")[0] == test and row(split.valid, "a")[0] == valid
    assert row(split.test, "a")[1] == {"i1", "i2", "i3", "i4", "i5"} - test  # everything before it is known
    assert split.info["pair_time"] == (pair_time or "latest")


@pytest.mark.parametrize("overrides,words", [
    (["split.pair_time=earliest"], ["split.pair_time='earliest' applies to split.holdout 'latest'",
                                    "a strong split with holdout 'random' reads no time"]),
    (["split.kind=temporal", "split.pair_time=earliest"], ["a temporal split always counts a repeated pair at its "
                                                           "earliest time"]),
    (["split.holdout=latest", "split.pair_time=first"], ["must be 'latest', 'earliest' or null"]),
])
def test_pair_time_where_it_changes_nothing_is_refused_in_one_line(tmp_path, overrides, words):
    path = _repeat_file(tmp_path)
    line = error_line(_train(tmp_path, f"data.dataset={path}", "data.time_col=t", "split.kind=strong", *overrides))
    assert all(word in line for word in words), line


def test_a_recipe_asking_a_temporal_split_for_latest_pair_times_is_refused():
    from bindiff.tasks.recommendation.data import check_holdout

    with pytest.raises(DataError, match="split.pair_time='latest' cannot be combined with split.kind 'temporal': a "
                                        "pair chosen before a cut-off and again after it would leave training"):
        check_holdout({}, {"kind": "temporal", "pair_time": "latest"})
    check_holdout({}, {"kind": "temporal", "pair_time": "earliest"})  # what it reads anyway
    with pytest.raises(DataError, match="split.pair_time='earliest' applies to split.holdout 'latest'"):
        check_holdout({}, {"kind": "predefined", "holdout": "latest", "pair_time": "earliest"})
