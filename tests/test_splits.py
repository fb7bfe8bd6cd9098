"""Strong-generalisation and predefined splits, and saving/loading them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from bindiff.adapters import DataError
from bindiff.adapters.interactions import (
    EvalPart,
    RawInteractions,
    Split,
    build_matrix,
    holdout_count,
    predefined_split,
    read_pairs,
    strong_generalization,
)

REAL_DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))


def synthetic_matrix(n_users: int = 60, n_items: int = 40, seed: int = 0, rare_items: bool = True):
    """Random interactions with some light users (< 5 items) and, optionally, very rare items."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(n_users):
        count = int(rng.integers(1, 4)) if user % 7 == 0 else int(rng.integers(5, 20))
        for item in rng.choice(n_items, size=count, replace=False):
            users.append(f"u{user}")
            items.append(f"i{item}")
    # Items only a few users have: some of them will be seen by no train user.
    for user in range(0, n_users if rare_items else 0, 9):
        users.append(f"u{user}")
        items.append(f"rare{user}")
    raw = RawInteractions(np.array(users), np.array(items), None, "synthetic")
    return build_matrix(raw)


def items_of(matrix: sp.csr_matrix, row: int, item_ids: np.ndarray) -> set[str]:
    return set(item_ids[matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]]].tolist())


def test_strong_split_invariants():
    im = synthetic_matrix()
    split = strong_generalization(im, n_valid_users=10, n_test_users=12, seed=3)
    assert split.kind == "strong"

    train_users = set(split.train_user_ids.tolist())
    valid_users = set(split.valid.user_ids.tolist())
    test_users = set(split.test.user_ids.tolist())
    assert (len(train_users), len(valid_users), len(test_users)) == (im.n_users - 22, 10, 12)
    assert not (train_users & valid_users or train_users & test_users or valid_users & test_users)
    assert train_users | valid_users | test_users == set(im.user_ids.tolist())

    # The vocabulary is exactly the items some train user has.
    row_of = {user: row for row, user in enumerate(im.user_ids)}
    train_rows = [row_of[user] for user in split.train_user_ids]
    expected_vocabulary = set().union(*(items_of(im.matrix, row, im.item_ids) for row in train_rows))
    assert set(split.item_ids.tolist()) == expected_vocabulary
    assert len(split.item_ids) < im.n_items  # some rare items were only held-out users'
    assert split.train.shape == (len(train_rows), len(split.item_ids))
    for position, row in enumerate(train_rows):
        assert items_of(split.train, position, split.item_ids) == items_of(im.matrix, row, im.item_ids)

    n_split_users = 0
    for part in (split.valid, split.test):
        assert part.input.shape == part.exclude.shape == part.target.shape == (len(part.user_ids), len(split.item_ids))
        assert (part.exclude != part.input).nnz == 0
        for position, user in enumerate(part.user_ids):
            known = items_of(im.matrix, row_of[user], im.item_ids) & expected_vocabulary
            given = items_of(part.input, position, split.item_ids)
            held = items_of(part.target, position, split.item_ids)
            assert given | held == known and not given & held
            if len(known) >= 5:
                assert len(held) == round(0.2 * len(known))
                n_split_users += 1
            else:
                assert held == set()
    assert n_split_users > 0
    assert split.info["n_valid_users"] == 10 and split.info["n_test_users"] == 12
    assert split.info["n_items"] == len(split.item_ids)
    assert split.info["seed"] == 3


def test_holdout_count_rounds_and_keeps_both_sides_non_empty():
    assert [holdout_count(n, 0.2) for n in (5, 7, 8, 12, 13, 100)] == [1, 1, 2, 2, 3, 20]
    assert holdout_count(2, 0.9) == 1
    assert holdout_count(5, 0.01) == 1


def test_same_seed_same_split_other_seed_other_split():
    im = synthetic_matrix()
    first = strong_generalization(im, 10, 10, seed=7)
    again = strong_generalization(im, 10, 10, seed=7)
    other = strong_generalization(im, 10, 10, seed=8)
    assert_splits_equal(first, again)
    assert first.test.user_ids.tolist() != other.test.user_ids.tolist()


def test_a_users_holdout_does_not_depend_on_the_other_held_out_users():
    im = synthetic_matrix(rare_items=False)
    small = strong_generalization(im, 5, 5, seed=11)
    # Same seed, same permutation: the first 5 test users stay test users.
    large = strong_generalization(im, 5, 15, seed=11)
    assert small.item_ids.tolist() == large.item_ids.tolist()
    for position, user in enumerate(small.test.user_ids):
        other = large.test.user_ids.tolist().index(user)
        assert items_of(small.test.target, position, small.item_ids) == items_of(
            large.test.target, other, large.item_ids
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_valid_users": 30, "n_test_users": 30}, r"n_valid_users \+ n_test_users = 60 leaves no train users"),
        ({"n_valid_users": 0, "n_test_users": 5}, r"n_valid_users must be a positive integer"),
        ({"n_valid_users": 5, "n_test_users": 0}, r"n_test_users must be a positive integer"),
        ({"n_valid_users": 5, "n_test_users": 5, "holdout_fraction": 1.0}, r"holdout_fraction must be in \(0, 1\)"),
        ({"n_valid_users": 5, "n_test_users": 5, "min_items_to_split": 1}, r"min_items_to_split must be an int"),
    ],
)
def test_strong_split_refuses_impossible_parameters(kwargs, message):
    with pytest.raises(DataError, match=rf"synthetic: {message}"):
        strong_generalization(synthetic_matrix(), seed=0, **kwargs)


# --- predefined (DiffRec) split --------------------------------------------------------


def write_pairs(directory: Path, **stages) -> dict[str, RawInteractions]:
    directory.mkdir(parents=True, exist_ok=True)
    raws = {}
    for stage, pairs in stages.items():
        path = directory / f"{stage}_list.npy"
        np.save(path, np.array(pairs, dtype=np.int64))
        raws[stage] = read_pairs(path)
    return raws


def test_predefined_split_masks_like_diffrec(tmp_path):
    raws = write_pairs(
        tmp_path,
        train=[[0, 0], [0, 1], [1, 2], [2, 0], [2, 3]],
        valid=[[0, 2], [1, 0]],
        test=[[0, 3], [2, 1]],
    )
    split = predefined_split(raws["train"], raws["valid"], raws["test"])
    assert split.kind == "predefined"
    assert split.train.shape == (3, 4)
    assert split.train_user_ids.tolist() == ["0", "1", "2"]
    assert split.item_ids.tolist() == ["0", "1", "2", "3"]
    train = [[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]
    assert split.train.toarray().tolist() == train
    assert split.valid.input.toarray().tolist() == train
    assert split.valid.exclude.toarray().tolist() == train
    assert split.valid.target.toarray().tolist() == [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    assert split.test.input.toarray().tolist() == train
    assert split.test.exclude.toarray().tolist() == [[1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 0, 1]]
    assert split.test.target.toarray().tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert split.valid.n_evaluable_users == 2 and split.test.n_evaluable_users == 2
    assert split.test.exclude.dtype == np.float32


def test_held_out_pairs_the_model_is_given_are_named(tmp_path, warned):
    """A held-out pair also among the pairs the model reads is excluded from its ranking, so it can
    never be hit, yet it counts in every metric: the files are named with the count (here one
    validation pair repeats a training pair, and two test pairs a training and a validation one)."""
    raws = write_pairs(tmp_path, train=[[0, 0], [0, 1], [1, 2], [1, 3]], valid=[[0, 1], [1, 0]],
                       test=[[0, 0], [1, 0], [0, 3]])
    predefined_split(raws["train"], raws["valid"], raws["test"])
    lines = warned().splitlines()
    assert lines == [
        f"warning: {raws['valid'].source}: 1 of its 2 pairs are also the train file's; they are excluded from the "
        "ranking, so they can never be recommended, yet they count as held-out items in every metric",
        f"warning: {raws['test'].source}: 2 of its 3 pairs are also the train or valid file's; they are excluded "
        "from the ranking, so they can never be recommended, yet they count as held-out items in every metric"]
    clean = write_pairs(tmp_path, train=[[0, 0], [1, 1]], valid=[[0, 1]], test=[[1, 0]])
    predefined_split(clean["train"], clean["valid"], clean["test"])
    assert warned() == ""


def test_predefined_split_ids_outside_train_name_the_file(tmp_path):
    raws = write_pairs(tmp_path, train=[[0, 0], [1, 1]], valid=[[0, 1]], test=[[1, 2]])
    with pytest.raises(DataError, match=r"test_list\.npy: item id 2 is outside the train file's items 0\.\.1"):
        predefined_split(raws["train"], raws["valid"], raws["test"])
    raws = write_pairs(tmp_path, train=[[0, 0], [1, 1]], valid=[[5, 1]], test=[[1, 0]])
    with pytest.raises(DataError, match=r"valid_list\.npy: user id 5 is outside the train file's users 0\.\.1"):
        predefined_split(raws["train"], raws["valid"], raws["test"])


# --- save / load -----------------------------------------------------------------------


def assert_csr_equal(left: sp.csr_matrix, right: sp.csr_matrix) -> None:
    assert isinstance(right, sp.csr_matrix)
    assert left.shape == right.shape and left.dtype == right.dtype
    assert np.array_equal(left.indptr, right.indptr)
    assert np.array_equal(left.indices, right.indices)
    assert np.array_equal(left.data, right.data)


def assert_ids_equal(left: np.ndarray, right: np.ndarray) -> None:
    assert left.dtype == right.dtype and np.array_equal(left, right)


def assert_splits_equal(left: Split, right: Split) -> None:
    assert left.kind == right.kind and left.info == right.info
    assert_csr_equal(left.train, right.train)
    assert_ids_equal(left.train_user_ids, right.train_user_ids)
    assert_ids_equal(left.item_ids, right.item_ids)
    for stage in ("valid", "test"):
        a: EvalPart = getattr(left, stage)
        b: EvalPart = getattr(right, stage)
        for name in ("input", "exclude", "target"):
            assert_csr_equal(getattr(a, name), getattr(b, name))
        assert_ids_equal(a.user_ids, b.user_ids)


def test_strong_split_round_trip(tmp_path):
    split = strong_generalization(synthetic_matrix(), 8, 9, seed=5)
    split.save(tmp_path / "split")
    loaded = Split.load(tmp_path / "split")
    assert_splits_equal(split, loaded)
    assert not [path for path in (tmp_path / "split").iterdir() if path.name.endswith(".tmp")]
    assert json.loads((tmp_path / "split" / "split.json").read_text())["kind"] == "strong"


def test_predefined_split_round_trip_overwrites_an_older_save(tmp_path):
    raws = write_pairs(tmp_path / "pairs", train=[[0, 0], [1, 1], [1, 2]], valid=[[0, 1]], test=[[1, 0]])
    split = predefined_split(raws["train"], raws["valid"], raws["test"])
    strong_generalization(synthetic_matrix(), 5, 5, seed=0).save(tmp_path / "split")
    split.save(tmp_path / "split")
    assert_splits_equal(split, Split.load(tmp_path / "split"))


def test_load_reports_what_is_missing(tmp_path):
    with pytest.raises(DataError, match=r"split\.json: not found"):
        Split.load(tmp_path)
    strong_generalization(synthetic_matrix(), 5, 5, seed=0).save(tmp_path)
    (tmp_path / "test_target.npz").unlink()
    with pytest.raises(DataError, match=r"test_target\.npz: missing from the saved split"):
        Split.load(tmp_path)


def test_load_names_an_empty_file_of_the_saved_split(tmp_path):
    strong_generalization(synthetic_matrix(), 5, 5, seed=0).save(tmp_path)
    for name, what in (("train.npz", "unreadable sparse matrix"), ("item_ids.npy", "unreadable id array")):
        kept = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(b"")  # a disk that filled up; was an EOFError traceback
        with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')}: {what}"):
            Split.load(tmp_path)
        (tmp_path / name).write_bytes(kept)


# --- real data (skipped where absent) --------------------------------------------------


def real_pairs() -> dict[str, RawInteractions]:
    folder = REAL_DATA / "ml-1m_diffrec" / "ml-1m_clean"
    if not (folder / "train_list.npy").is_file():
        pytest.skip(f"{folder} not present")
    return {stage: read_pairs(folder / f"{stage}_list.npy") for stage in ("train", "valid", "test")}


def test_real_ml1m_strong_split_600_600():
    raws = real_pairs()
    union = RawInteractions(
        np.concatenate([raw.user for raw in raws.values()]),
        np.concatenate([raw.item for raw in raws.values()]),
        None,
        "ml-1m_clean",
    )
    im = build_matrix(union)
    split = strong_generalization(im, 600, 600, seed=0)
    assert len(split.train_user_ids) == 5_949 - 1_200
    assert len(split.valid.user_ids) == len(split.test.user_ids) == 600
    assert split.valid.n_evaluable_users == split.test.n_evaluable_users == 600
    total = split.train.nnz + sum(p.input.nnz + p.target.nnz for p in (split.valid, split.test))
    assert total + split.info["n_held_out_interactions_dropped"] == 571_531


def test_real_ml1m_predefined_split():
    raws = real_pairs()
    split = predefined_split(raws["train"], raws["valid"], raws["test"])
    assert split.train.shape == (5_949, 2_810)
    assert (split.train.nnz, split.valid.target.nnz, split.test.target.nnz) == (403_277, 110_722, 57_532)
    assert split.test.exclude.nnz == 403_277 + 110_722


# -- a shipped train/test pair (BARS), validation held out of train ---------------------------


def _item_lists(tmp_path, name, rows):
    path = tmp_path / name
    path.write_text("".join(f"{u} " + " ".join(map(str, items)) + "\n" for u, items in rows.items()))
    return path


def test_train_test_split_holds_validation_out_of_train_and_tests_on_the_whole_history(tmp_path, warned):
    from bindiff.adapters.interactions import read_item_lists
    from bindiff.adapters.interactions.splits import train_test_split

    rng = np.random.default_rng(3)
    train_rows = {u: sorted(rng.choice(30, size=int(rng.integers(3, 12)), replace=False).tolist()) for u in range(20)}
    test_rows = {u: sorted(set(rng.choice(30, size=3, replace=False).tolist()) - set(train_rows[u]))
                 for u in range(20)}
    test_rows = {u: items for u, items in test_rows.items() if items}
    train = read_item_lists(_item_lists(tmp_path, "train.txt", train_rows))
    test = read_item_lists(_item_lists(tmp_path, "test.txt", test_rows))
    split = train_test_split(train, test, n_valid_users=6, holdout_fraction=0.25, min_items_to_split=5, seed=7)

    def row_set(matrix, r):
        return set(matrix[r].indices.tolist())

    assert split.kind == "predefined" and split.train.shape == (20, 30)
    valid_users = [int(u) for u in split.valid.user_ids]
    assert len(valid_users) == 6 and all(len(train_rows[u]) >= 5 for u in valid_users)
    for position, u in enumerate(valid_users):
        held, shown = row_set(split.valid.target, position), row_set(split.valid.input, position)
        n = len(train_rows[u])
        assert len(held) == min(max(int(np.floor(0.25 * n + 0.5)), 1), n - 1)  # round half up, by hand
        assert held | shown == set(train_rows[u]) and not held & shown
        assert row_set(split.train, u) == shown  # the model never trains on a validation target
    for u in set(range(20)) - set(valid_users):
        assert row_set(split.train, u) == set(train_rows[u])
    for u in range(20):  # test: the whole training file as history, the test file as targets
        assert row_set(split.test.input, u) == set(train_rows[u]) == row_set(split.test.exclude, u)
        assert row_set(split.test.target, u) == set(test_rows.get(u, []))
    # test items apart from the training ones: nothing to warn of; one test item repeated from training is named
    assert warned() == ""
    u = next(iter(test_rows))
    repeated = read_item_lists(_item_lists(tmp_path, "repeated.txt", {**test_rows, u: [*test_rows[u], train_rows[u][0]]}))
    train_test_split(train, repeated, 6, 0.25, 5, seed=7)
    assert warned().startswith(f"warning: {repeated.source}: 1 of its ")
    again = train_test_split(train, test, 6, 0.25, 5, seed=7)
    assert (again.valid.user_ids == split.valid.user_ids).all()
    other = train_test_split(train, test, 6, 0.25, 5, seed=8)
    assert not ((other.valid.user_ids == split.valid.user_ids).all()
                and (other.valid.target != split.valid.target).nnz == 0)
    with pytest.raises(DataError, match=r"split.n_valid_users = 50 must lie between 1 and"):
        train_test_split(train, test, 50, 0.25, 5, seed=7)
    # called as a library, bad arguments are one DataError each (1.5 held out n - 1 items per user)
    for args, message in (((6, 1.5, 5, 7), r"holdout_fraction must be in \(0, 1\), got 1.5"),
                          ((6, float("nan"), 5, 7), r"holdout_fraction must be in \(0, 1\), got nan"),
                          ((6.0, 0.25, 5, 7), r"n_valid_users must be a positive integer, got 6.0"),
                          ((6, 0.25, 5, None), r"seed must be a non-negative integer, got None")):
        with pytest.raises(DataError, match=message):
            train_test_split(train, test, *args[:3], seed=args[3])


def test_a_bars_folder_trains_on_its_own_split_through_the_recipe(tmp_path):
    from bindiff.tasks.recommendation.data import prepare_split

    folder = tmp_path / "amazoncds_bars_m1"
    folder.mkdir()
    rng = np.random.default_rng(5)
    _item_lists(folder, "train.txt", {u: rng.choice(40, size=8, replace=False).tolist() for u in range(30)})
    _item_lists(folder, "test.txt", {u: [40 + u % 3] for u in range(30)})
    split, _ = prepare_split({"dataset": "amazon-cds", "min_rating": None, "download": False},
                             {"kind": "predefined", "n_valid_users": 5, "holdout_fraction": 0.2,
                              "min_items_to_split": 5}, seed=0, data_dir=tmp_path)
    assert split.train.shape == (30, 43) and split.valid.n_users == 5 and split.test.target.nnz == 30
    with pytest.raises(DataError, match="split.n_valid_users is needed"):
        prepare_split({"dataset": "amazon-cds", "min_rating": None, "download": False},
                      {"kind": "predefined"}, seed=0, data_dir=tmp_path)
    # the item lists hold no ratings: a threshold cannot be honoured (it was ignored without a word)
    with pytest.raises(DataError, match=r"data\.min_rating=4 cannot be applied to 'amazon-cds'.*hold no ratings"):
        prepare_split({"dataset": "amazon-cds", "min_rating": 4, "download": False},
                      {"kind": "predefined", "n_valid_users": 5}, seed=0, data_dir=tmp_path)


def test_split_seed_draws_the_split_apart_from_the_recipe_seed(tmp_path):
    from bindiff.config import load_recipe
    from bindiff.tasks.recommendation.job import RecommendationTask

    rng = np.random.default_rng(2)
    lines = ["user,item", *(f"u{u},i{i}" for u in range(120) for i in rng.choice(40, size=8, replace=False))]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"

    def test_users(*overrides):
        config = load_recipe(recipe, [f"data.dataset={tmp_path / 'pairs.csv'}", "data.min_rating=null",
                                      "split.n_valid_users=20", "split.n_test_users=20", *overrides])
        return sorted(RecommendationTask().prepare(config, None).test.user_ids)

    assert test_users("seed=1", "split.seed=5") == test_users("seed=2", "split.seed=5")  # members of one split
    assert test_users("seed=5") == test_users("seed=9", "split.seed=5")  # null: the recipe seed
    assert test_users("seed=1") != test_users("seed=2")
