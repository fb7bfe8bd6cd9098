"""Interaction ids and matrices against hand values and a brute-force k-core: one number written
two ways refused wherever it sorts, long numbers kept apart, duplicates merged, min_rating inclusive."""

import numpy as np
import pytest

from bindiff.adapters.errors import DataError
from bindiff.adapters.interactions.matrix import binary_csr, build_matrix, index_ids
from bindiff.adapters.interactions.readers import RawInteractions


@pytest.mark.parametrize("ids", [["1", "01"], ["1", "01", "2"], ["3", "3.0", "u1"], ["7", "7.00"]])
def test_one_number_written_two_ways_is_refused(ids):
    with pytest.raises(DataError, match="written two ways"):
        index_ids(np.array(ids), "user ids", "x.csv")


def test_a_duplicate_is_found_past_a_different_id_of_the_same_float():
    # all three are 9007199254740992.0 as float64; the first and last are the same number,
    # the middle one is not (it ends in .5): the first and last must be caught
    ids = np.array(["009007199254740992", "09007199254740992.5", "9007199254740992"])
    with pytest.raises(DataError, match="written two ways"):
        index_ids(ids, "item ids", "x.csv")


def test_a_duplicate_is_found_in_a_later_run_of_equal_floats():
    # 0.1 and 0.10000000000000000001 are one float but two numbers (fine); 1 and 01 are one number
    with pytest.raises(DataError, match="'01' and '1'|'1' and '01'"):
        index_ids(np.array(["0.1", "0.10000000000000000001", "1", "01"]), "user ids", "x.csv")


def test_long_numbers_a_float_rounds_together_stay_two_ids():
    ids = np.array(["9007199254740992", "9007199254740993", "u"])
    distinct, inverse = index_ids(ids)
    assert len(distinct) == 3 and sorted(inverse.tolist()) == [0, 1, 2]


def test_duplicate_pairs_are_merged_into_a_single_one():
    m = binary_csr(np.array([0, 0, 1]), np.array([1, 1, 0]), (2, 2))
    assert m.nnz == 2 and m.toarray().tolist() == [[0, 1], [1, 0]]


def test_min_rating_keeps_ratings_equal_to_it():
    raw = RawInteractions(np.array(["a", "b", "c"]), np.array(["x", "y", "z"]), np.array([3.0, 4.0, 5.0]), "r.csv")
    im = build_matrix(raw, min_rating=4.0)
    assert sorted(im.user_ids.tolist()) == ["b", "c"] and im.nnz == 2


def _brute_k_core(pairs: set, k: int) -> set:
    while True:
        users = {u for u, _ in pairs}
        items = {i for _, i in pairs}
        bad_u = {u for u in users if sum(1 for p in pairs if p[0] == u) < k}
        bad_i = {i for i in items if sum(1 for p in pairs if p[1] == i) < k}
        if not bad_u and not bad_i:
            return pairs
        pairs = {(u, i) for u, i in pairs if u not in bad_u and i not in bad_i}


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_core_matches_a_brute_force_fixed_point(k, seed):
    rng = np.random.default_rng(seed)
    dense = rng.random((14, 11)) < 0.3
    rows, cols = np.nonzero(dense)
    raw = RawInteractions(np.array([f"u{r}" for r in rows]), np.array([f"i{c}" for c in cols]), None, "k.csv")
    expected = _brute_k_core({(f"u{r}", f"i{c}") for r, c in zip(rows, cols)}, k)
    assert expected  # a non-empty core: the data are dense enough
    im = build_matrix(raw, k_core=k)
    coo = im.matrix.tocoo()
    got = {(im.user_ids[r], im.item_ids[c]) for r, c in zip(coo.row, coo.col)}
    assert got == expected
    assert set(im.user_ids) == {u for u, _ in expected} and set(im.item_ids) == {i for _, i in expected}


def test_a_number_written_without_its_leading_zero_is_refused():
    with pytest.raises(DataError, match="written two ways"):
        index_ids(np.array([".5", "0.5"]), "item ids", "x.csv")
