"""Tests that kill the mutants a scripted mutation pass over the interaction adapters left alive.

The pass (212 single-line mutants over adapters/interactions/readers.py, matrix.py, splits.py, datasets.py
and synthetic.py; flipped comparisons, off-by-one, dropped `not`/strip/sort/dedup, swapped arguments,
removed calls, changed defaults and constants) ran each module's existing test files; every test here
passes on the real code and fails on the mutant(s) its docstring names as file:line before → after,
against a hand value, a brute force written here, or the rule the docs state (docs/architecture.md's
random streams). Line numbers are those of commit 2718679.

Equivalent mutants (no test can tell them from the real code), and why:

- readers.py:177 row[ri].strip() → row[ri] and readers.py:179 row[ti].strip() → row[ti]: numpy's
  string-to-float64/int64 conversion strips surrounding whitespace itself (np.array([" 4"], float) is
  [4.0]); only the quoted value in a "not a number" message would keep its spaces.
- readers.py:296 `while lines and not lines[-1]` → `while False`: trailing empty lines are then dropped by
  the `"" in lines` filter just below, which keeps every other line's number; an all-empty file still
  reaches the "file is empty" line.
- readers.py:383 longest <= 64 → < 64: ids of exactly 64 characters become an object array instead of
  '<U64'; the values, and index_ids' answer for them, are the same (memory only).
- readers.py:446 len(names) != 1 → len(names) > 1: the header row is found with `if row`, so names is
  never empty.
- matrix.py:150 np.lexsort((distinct, values)) → np.argsort(values): _refuse_two_spellings has already
  refused two ids of one value, so the values are distinct and the tie-break never acts.
- matrix.py:174 np.diff(ties) > 1 → > 0: also starts a scan inside a run of equal floats already scanned
  whole from its first element; no pair is added or missed.
- matrix.py:180 Decimal(str(id).strip()) → Decimal(str(id)): Decimal accepts surrounding whitespace (and
  the readers strip ids).
- matrix.py:193 matrix.sum_duplicates() → pass: scipy's csr_matrix((data, (rows, cols))) constructor
  already sums duplicates into canonical (sorted) form.
- matrix.py:209 drop `or matrix.shape[1] == 0`: with no item left the next pass drops every user and
  returns a 0 x 0 matrix; both callers see nnz == 0 and refuse with the same line.
- splits.py:305 im.time[entry_positions(im.matrix, all rows, all columns)] → im.time: the identity
  whenever im.matrix has sorted indices, which InteractionMatrix requires of ``time`` (aligned with the
  sorted indices) and build_matrix and synthetic_dataset guarantee.
- synthetic.py:161 room = counts < high → every row: rows at the cap have fraction 0, and at least
  `missing` rows have a positive fraction (they add up to more than missing - 0.5, each below 1), so the
  stable sort by largest fraction never reaches a capped row.
- synthetic.py:164 counts > low → >= low: a dead branch; the bisection stops within 0.5 of the total,
  so the floors never add up to more than the total and `missing < 0` never happens.
- synthetic.py:193 _DENSE_ABOVE_SHARE 1/8 → 1/2: both samplers draw exactly the same distribution
  (successive sampling, see the module docstring); the mutant changes only which random numbers a seed
  spends and the speed for rows taking 1/8 to 1/2 of the items.
- synthetic.py:243 np.minimum(items, n_items - 1) → pass: the cdf ends at exactly 1.0 after normalising
  and Generator.random() < 1, so searchsorted(side="right") never returns n_items.

One survivor was the real code being wrong: matrix.py:169 np.isfinite(values) → ~np.isnan(values) was *more*
right than the code (ids of over ~309 digits became inf and skipped the two-spellings check); fixed, see
test_a_number_of_400_digits_written_two_ways_is_refused.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from bindiff.adapters.errors import DataError
from bindiff.adapters.interactions.datasets import (
    DATASETS,
    _expected_files,
    load_interactions,
    load_predefined_split,
    resolve_dataset,
)
from bindiff.adapters.interactions.matrix import (
    InteractionMatrix,
    binary_csr,
    build_matrix,
    entry_positions,
    index_ids,
)
from bindiff.adapters.interactions.readers import (
    RawInteractions,
    read_delimited,
    read_item_lists,
    read_movielens_ratings,
    read_pairs,
)
from bindiff.adapters.interactions.splits import (
    Split,
    predefined_split,
    train_test_split,
    weak_generalization,
)
from bindiff.adapters.interactions.synthetic import (
    _counts_adding_up_to,
    synthetic_dataset,
    synthetic_interactions,
    weighted_sample_without_replacement,
)

# ----------------------------------------------------------------------------------------- readers


def _csv(tmp_path, text, name="r.csv", **kwargs):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def test_blank_lines_before_the_header_are_skipped(tmp_path):
    """readers.py:112 next(row ... if row) → next(row ...) (the blank line would be taken as the header)."""
    raw = read_delimited(_csv(tmp_path, "\n\nuser,item\nu1,i1\n"))
    assert raw.user.tolist() == ["u1"]


def test_header_names_are_stripped(tmp_path):
    """readers.py:115 name.strip() → name (" user " would not be found as "user")."""
    raw = read_delimited(_csv(tmp_path, " user , item \nu1,i1\n"))
    assert raw.item.tolist() == ["i1"]


def test_a_missing_column_of_a_wide_header_shows_ten_names_and_the_count(tmp_path):
    """readers.py:117 len(names) > 10 → > 100 (the message would list 11 names and no count)."""
    header = ",".join(f"c{i}" for i in range(11))
    with pytest.raises(DataError) as err:
        read_delimited(_csv(tmp_path, header + "\n" + ",".join("1" * 11) + "\n"))
    message = str(err.value)
    assert "c9', ... (11 columns)]" in message and "'c10'" not in message


def test_a_column_number_names_a_header_column_of_that_name(tmp_path):
    """readers.py:123 str(column) not in names → column not in names (user_col=0 would miss the header "0")."""
    raw = read_delimited(_csv(tmp_path, "0,1\nu1,i1\n"), user_col=0, item_col=1)
    assert raw.user.tolist() == ["u1"] and raw.item.tolist() == ["i1"]


def test_a_negative_column_number_without_header_is_refused(tmp_path):
    """readers.py:138 positions[key] < 0 → < -1 (user_col=-1 would silently read the last column)."""
    with pytest.raises(DataError, match=r"user_col=-1 must be >= 0"):
        read_delimited(_csv(tmp_path, "u1,i1,5\n"), user_col=-1, item_col=1, header=False)


@pytest.mark.parametrize("columns, pair", [
    ({"user_col": "u", "item_col": "i", "rating_col": "i"}, "rating_col and item_col"),
    ({"user_col": "u", "item_col": "i", "rating_col": "r", "time_col": "r"}, "time_col and rating_col"),
    ({"user_col": "u", "item_col": "u"}, "item_col and user_col"),
])
def test_two_keys_naming_one_column_are_refused(tmp_path, columns, pair):
    """readers.py:141 drop ("rating_col", "item_col"); readers.py:142 drop ("time_col", "rating_col");
    also readers.py:143 positions[key] == positions[other] → ... and False (killed by the existing tests too)."""
    with pytest.raises(DataError, match=pair + " name the same column"):
        read_delimited(_csv(tmp_path, "u,i,r\nu1,5,4\n"), **columns)


@pytest.mark.parametrize("text", ['user,item\n"u\n1",i1\n', 'user,item\r\n"u\r1",i1\r\n'])
def test_an_id_quoted_over_two_lines_is_refused(tmp_path, text):
    """readers.py:156 line_num > last_line + 1 → + 2 (a field over exactly two lines would pass);
    readers.py:156 drop `or "\\r" in field` (an old-Mac line break inside a quoted id would pass)."""
    with pytest.raises(DataError, match=r"r.csv:2: a quoted field runs over lines 2-3"):
        read_delimited(_csv(tmp_path, text))


def test_rows_swallowed_by_an_open_quote_are_warned_of_once_per_file(tmp_path, warned):
    """readers.py:160 `and not warned` → '' (a second swallowed block would warn again)."""
    text = ('user,item,review\nu0,i0,"a\nu1,i1,x\nu2,i2,y"\nu3,i3,ok\nu4,i4,"b\nu5,i5,x\nu6,i6,y"\n')
    assert read_delimited(_csv(tmp_path, text)).user.tolist() == ["u0", "u3", "u4"]
    assert len(warned().strip().splitlines()) == 1


def test_a_line_of_spaces_is_skipped_like_an_empty_line(tmp_path):
    """readers.py:164 `not row or (len(row) == 1 and not row[0].strip())` → `not row` (refused as too few fields)."""
    raw = read_delimited(_csv(tmp_path, "user,item\nu1,i1\n   \nu2,i2\n"))
    assert raw.user.tolist() == ["u1", "u2"]


def test_delimited_ids_are_stripped(tmp_path):
    """readers.py:174 row[ui].strip() → row[ui]; readers.py:175 row[ii].strip() → row[ii]
    (" u1" and "u1" would be two users)."""
    raw = read_delimited(_csv(tmp_path, "user,item\n u1 , i1 \nu1,i1\n"))
    assert raw.user.tolist() == ["u1", "u1"] and raw.item.tolist() == ["i1", "i1"]


def test_an_empty_delimited_id_is_refused_naming_its_line(tmp_path):
    """readers.py:185 `if "" in values` → `if False` (an empty id would become a user of its own)."""
    with pytest.raises(DataError, match=r"r.csv:3: empty item id"):
        read_delimited(_csv(tmp_path, "user,item\nu1,i1\nu2, \n"))
    with pytest.raises(DataError, match=r"r.csv:2: empty user id"):
        read_delimited(_csv(tmp_path, "user,item\n,i1\n"))


def test_a_bad_time_names_the_key_the_caller_gave(tmp_path):
    """readers.py:193 keys["time_col"] → "time_col" (the caller's name for the key would be lost)."""
    with pytest.raises(DataError, match=r"r.csv:2: time 'soon' \(data.time_col\) is not a number"):
        read_delimited(_csv(tmp_path, "user,item,t\nu1,i1,soon\n"), time_col="t", keys={"time_col": "data.time_col"})


def test_a_boolean_pair_array_is_refused(tmp_path):
    """readers.py:223 dtype.kind not in "iu" → not in "iub" (True/False would become user and item "1"/"0")."""
    path = tmp_path / "pairs.npy"
    np.save(path, np.array([[True, False], [False, True]]))
    with pytest.raises(DataError, match=r"pairs.npy: expected integer \(user, item\) ids, got dtype bool"):
        read_pairs(path)


def test_item_lists_refuse_digits_that_are_not_ascii(tmp_path):
    """readers.py:252 field.isascii() and field.isdigit() → field.isdigit() ('١' would be an item beside '1')."""
    path = tmp_path / "train.txt"
    path.write_text("0 1 \u0661\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.txt:1: expected `user item item ...` of integer ids, found '\u0661'"):
        read_item_lists(path)


def test_a_byte_order_mark_before_latin1_movielens_lines_is_dropped(tmp_path):
    """readers.py:294 .removeprefix("\\xef\\xbb\\xbf") → '' (the first user would be 'ï»¿1', not '1')."""
    path = tmp_path / "ratings.dat"
    path.write_bytes(b"\xef\xbb\xbf1::10::5::100\n1::Caf\xe9::4::200\n")
    raw = read_movielens_ratings(path)
    assert raw.user.tolist() == ["1", "1"] and raw.item.tolist() == ["10", "Caf\u00e9"]


def test_a_separator_ending_the_last_line_is_counted(tmp_path):
    """readers.py:350 width = len(codes) - len(sep_codes) + 1 → without + 1 (the "::" closing the file would not
    count, and the line be reported as a wrong field count instead of its empty timestamp)."""
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n2::10::5::", encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings.dat:2: timestamp '' is not an integer"):
        read_movielens_ratings(path)


def test_a_line_with_too_many_separators_is_refused_even_where_split_would_find_four_fields(tmp_path):
    """readers.py:358 per_line != n_fields - 1 → per_line < n_fields - 1 (':::' splits into four fields, one of
    them ':10', so the line would be read with item ':10'; and an earlier long line would not be the one named)."""
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n2:::10::5::100\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings.dat:2: expected 4 fields"):
        read_movielens_ratings(path)
    path.write_text("1::10::5::100::7\n2::10::5\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings.dat:1: expected 4 fields .* found 5"):
        read_movielens_ratings(path)


def test_an_id_of_exactly_the_longest_allowed_length_is_read(tmp_path):
    """readers.py:379 longest > MAX_ID_CHARS → >= (an id of exactly 1000 characters would be refused)."""
    raw = read_delimited(_csv(tmp_path, f"user,item\n{'u' * 1000},i1\n"))
    assert len(raw.user[0]) == 1000
    with pytest.raises(DataError, match=r"r.csv:2: a user id of 1001 characters \(at most 1000\)"):
        read_delimited(_csv(tmp_path, f"user,item\n{'u' * 1001},i1\n"))


def test_a_delimited_time_column_of_integers_is_exact_int64_and_fractions_make_it_float(tmp_path):
    """readers.py:395 np.array(values, dtype=np.int64) → dtype=np.float64 (2**62 + 1 would round to 2**62)."""
    raw = read_delimited(_csv(tmp_path, f"user,item,t\nu1,i1,{2**62 + 1}\nu2,i1,7\n"), time_col="t")
    assert raw.time.dtype == np.int64 and raw.time.tolist() == [2**62 + 1, 7]
    raw = read_delimited(_csv(tmp_path, "user,item,t\nu1,i1,1.5\nu2,i1,7\n"), time_col="t")
    assert raw.time.dtype == np.float64 and raw.time.tolist() == [1.5, 7.0]


def test_trailing_spaces_are_not_taken_for_a_space_delimiter(tmp_path):
    """readers.py:416 `delimiter in text.strip()` → `in text` (a line "12345 " would 'look space-separated')."""
    path = tmp_path / "ratings.dat"
    path.write_text("12345 \n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ratings.dat:1: expected fields separated by '::' .* but no delimiter "
                                        r"was found: '12345 '"):
        read_movielens_ratings(path)


def test_one_swallowed_line_that_looks_like_a_row_is_not_warned_of(tmp_path, warned):
    """readers.py:432 rows_inside < 2 → < 1 (a review holding one line with the row's commas would warn).
    A BindiffWarning, not a stderr line: capsys read "" whatever the reader warned."""
    text = 'user,item,review\nu1,i1,"good\nreally, truly, good"\nu2,i2,ok\n'
    assert read_delimited(_csv(tmp_path, text)).user.tolist() == ["u1", "u2"]
    assert warned() == ""


def test_a_header_with_spaces_gets_no_space_delimiter_hint(tmp_path):
    """readers.py:449 `delimiter not in (sep, " ")` → `delimiter != sep` (a header "user id" would be said
    to look space-separated; a space is too common inside a column name to tell)."""
    with pytest.raises(DataError) as err:
        read_delimited(_csv(tmp_path, "user id\nu1\n"), user_col="user id", item_col="item")
    assert "looks" not in str(err.value)
    with pytest.raises(DataError, match=r"the header looks semicolon-separated: set data.sep"):
        read_delimited(_csv(tmp_path, "user;item\nu1;i1\n"))


def test_a_timestamp_of_exactly_2_to_the_63_lies_beyond_64_bits(tmp_path):
    """readers.py:469 number < 2**63 → <= 2**63 (2**63 would pass as an int64 and the search for the bad
    value end in StopIteration, a traceback)."""
    path = tmp_path / "ratings.dat"
    path.write_text(f"1::10::5::{2**63}\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"ratings.dat:1: timestamp '{2**63}' lies beyond 64 bits"):
        read_movielens_ratings(path)


def test_a_bad_line_of_exactly_80_characters_is_shown_whole(tmp_path):
    """readers.py:473 len(line) > _PREVIEW_CHARS → >= (a line of exactly 80 characters would end in '...')."""
    line = "1::2::3::4::" + "5" * 68
    assert len(line) == 80
    path = tmp_path / "ratings.dat"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_movielens_ratings(path)
    assert str(err.value).endswith(repr(line))


# ------------------------------------------------------------------------------------------ matrix


def _raw(users, items, rating=None, time=None):
    return RawInteractions(np.array(users), np.array(items), None if rating is None else np.array(rating, float),
                           "x.csv", None if time is None else np.array(time, np.int64))


def _brute_k_core(pairs, k):
    """The k-core by hand: drop users and items with fewer than k pairs until none is left to drop."""
    pairs = set(pairs)
    while True:
        users = {u: sum(1 for p in pairs if p[0] == u) for u, _ in pairs}
        items = {i: sum(1 for p in pairs if p[1] == i) for _, i in pairs}
        kept = {(u, i) for u, i in pairs if users[u] >= k and items[i] >= k}
        if kept == pairs:
            return pairs
        pairs = kept


def _pairs_of(im):
    coo = im.matrix.tocoo()
    return {(str(im.user_ids[r]), str(im.item_ids[c])) for r, c in zip(coo.row, coo.col)}


def test_integer_ids_come_back_as_decimal_strings():
    """matrix.py:143 np.unique(ids.astype(str)) → np.unique(ids) (integers would come back as integers)."""
    distinct, inverse = index_ids(np.array([10, 2, 10]))
    assert distinct.tolist() == ["2", "10"] and inverse.tolist() == [1, 0, 1]


@pytest.mark.parametrize("ids", [["+3", "3", "u1"], ["3", "-0", "0", "u1"]])
def test_a_signed_number_beside_its_plain_spelling_is_refused_among_other_ids(ids):
    """matrix.py:158 _DECIMAL `[+-]?` → '' ("+3" beside "3" would be two users when another id is not a number)."""
    with pytest.raises(DataError, match="written two ways"):
        index_ids(np.array(ids), "user ids", "x.csv")


def test_entry_positions_follow_sorted_columns_of_an_unsorted_matrix_or_selection():
    """matrix.py:124 picked.sort_indices() → pass (the positions would come in storage order, not column order;
    every caller in the package passes sorted matrices and columns, so only a direct call sees it)."""
    unsorted = sp.csr_matrix((np.ones(3, np.float32), np.array([2, 0, 1]), np.array([0, 3])), shape=(1, 3))
    # entry 0 holds column 2, entry 1 column 0, entry 2 column 1: in column order, entries 1, 2, 0
    assert entry_positions(unsorted, np.array([0]), np.arange(3)).tolist() == [1, 2, 0]
    plain = sp.csr_matrix(np.array([[1, 1, 1]], np.float32))
    # columns picked as (2, 0, 1): new column 0 is entry 2, 1 is entry 0, 2 is entry 1
    assert entry_positions(plain, np.array([0]), np.array([2, 0, 1])).tolist() == [2, 0, 1]


def test_an_item_emptied_by_the_k_core_leaves_even_when_it_is_the_last_column():
    """matrix.py:204 bincount(indices, minlength=n_items) → bincount(indices) (once users c and d leave, item z,
    the last column, has no interaction left; without minlength its count is missing and it stays)."""
    im = build_matrix(_raw(["a", "a", "b", "b", "c", "d"], ["x", "y", "x", "y", "z", "z"]), k_core=2)
    assert im.item_ids.tolist() == ["x", "y"] and im.user_ids.tolist() == ["a", "b"]
    assert _pairs_of(im) == _brute_k_core(zip("aabbcd", "xyxyzz"), 2)


def test_a_number_of_400_digits_written_two_ways_is_refused():
    """A bug the pass found (matrix.py:169): ids beyond float64's range (over ~309 digits) became inf and
    skipped the two-spellings check, so '1' * 400 and '0' + '1' * 400 (one number) were two users. Two
    different long numbers stay two ids."""
    number = "1" * 400
    with pytest.raises(DataError, match="written two ways"):
        index_ids(np.array([number, "0" + number, "u"]), "user ids", "x.csv")
    distinct, _ = index_ids(np.array([number, "2" * 400, "u"]), "user ids", "x.csv")
    assert len(distinct) == 3


# ------------------------------------------------------------------------------------------ splits


def _im(rows: dict, times: dict | None = None, n_items: int | None = None) -> InteractionMatrix:
    """An InteractionMatrix of users 0..n-1 from {row: [columns]} (and {(row, col): time})."""
    n_users = len(rows)
    n_items = n_items or 1 + max(c for cols in rows.values() for c in cols)
    r = np.array([u for u in range(n_users) for _ in rows[u]], dtype=np.int64)
    c = np.array([c for u in range(n_users) for c in rows[u]], dtype=np.int64)
    matrix = binary_csr(r, c, (n_users, n_items))
    time = None
    if times is not None:
        coo = matrix.tocoo()
        time = np.array([times[(int(a), int(b))] for a, b in zip(coo.row, coo.col)], dtype=np.int64)
    return InteractionMatrix(matrix, np.array([f"u{u}" for u in range(n_users)]),
                             np.array([str(i) for i in range(n_items)]), "m", time)


def _with_one_item_users(rows: dict, times: dict, n_items: int):
    """``rows`` and ``times`` with one user more per item holding only that item (never split, as
    min_items_to_split >= 2), so that every item trains and the vocabulary keeps it."""
    rows, times = dict(rows), dict(times)
    for item in range(n_items):
        user = len(rows)
        rows[user], times[(user, item)] = [item], 0
    return rows, times


def _row_sets(split, stage, name) -> dict:
    part = getattr(split, stage)
    matrix = getattr(part, name)
    return {str(u): {str(split.item_ids[c]) for c in matrix[k].indices} for k, u in enumerate(part.user_ids)}


def _full(n_users, n_items):
    return {u: list(range(n_items)) for u in range(n_users)}


@pytest.mark.parametrize("kwargs, message", [
    ({"valid_fraction": 0.0}, "valid_fraction must be null or in \\(0, 1\\)"),
    ({"valid_fraction": 0.1, "holdout_items": 1}, "valid_fraction goes with holdout_fraction"),
    ({"holdout": "newest"}, "holdout must be one of 'random', 'latest'"),
    ({"holdout": "latest"}, "holdout 'latest' needs each interaction's time"),
    ({"holdout_fraction": 0.0}, "holdout_fraction must be in \\(0, 1\\)"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"seed": True}, "seed must be a non-negative integer"),
])
def test_weak_split_settings_are_checked(kwargs, message):
    """splits.py:297 0.0 < valid_fraction → 0.0 <=; splits.py:299 `if holdout_items is not None` → `if False`;
    splits.py:558 `holdout not in HOLDOUTS` → False; splits.py:560 `and im.time is None` → `and False`;
    splits.py:567 0.0 < holdout_fraction → 0.0 <=; splits.py:573 seed < 0 → < -1 (default_rng's own ValueError,
    a traceback); splits.py:578 drop `and not isinstance(value, bool)` (seed=True would pass as 1)."""
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(DataError, match="m: " + message):
        weak_generalization(_im(_full(4, 6)), **kwargs)


def test_weak_split_random_draws_use_the_documented_streams():
    """splits.py:317 stream=(1,) → () (the validation draw would repeat the test draw's stream; also kills
    splits.py:549 [seed, row] → [seed, position], which the existing tests kill too: user 0 has too few items,
    so the others' positions among the splittable users are not their rows). The rule (docs/api.md): test
    with default_rng([seed, row]), validation from the rest with default_rng([seed, row, 1])."""
    rows = {0: [0, 1], 1: list(range(10)), 2: list(range(10)), 3: list(range(10))}
    split = weak_generalization(_im(rows), holdout_fraction=0.3, min_items_to_split=5, seed=11)
    test, valid = _row_sets(split, "test", "target"), _row_sets(split, "valid", "target")
    assert set(test) == set(valid) == {"u1", "u2", "u3"}
    for row in (1, 2, 3):
        items = [str(c) for c in range(10)]
        chosen = np.random.default_rng([11, row]).choice(10, size=3, replace=False)
        expected_test = {items[k] for k in chosen}
        rest = [i for i in items if i not in expected_test]
        chosen = np.random.default_rng([11, row, 1]).choice(7, size=2, replace=False)  # round(0.3 * 7) = 2
        assert (test[f"u{row}"], valid[f"u{row}"]) == (expected_test, {rest[k] for k in chosen})


def test_weak_validation_never_takes_a_user_s_last_training_item():
    """splits.py:542 min(holdout_count(total, valid_fraction), n - 1) → holdout_count(total, valid_fraction)
    (3 items, test 1, validation 0.6 of 3 = 2 of the 2 left: nothing would train)."""
    rows, times = _with_one_item_users({0: [0, 1, 2]}, {(0, c): c for c in range(3)}, 3)
    split = weak_generalization(_im(rows, times), holdout_fraction=0.4, valid_fraction=0.6, min_items_to_split=3,
                                holdout="latest", seed=0)
    assert _row_sets(split, "test", "target") == {"u0": {"2"}} and _row_sets(split, "valid", "target") == {"u0": {"1"}}
    assert {str(split.item_ids[c]) for c in split.train[0].indices} == {"0"}


def test_weak_split_does_not_depend_on_how_the_csr_stores_its_columns():
    """splits.py:590 matrix.sort_indices() → pass (the random draw picks positions in the stored order, so
    the same matrix stored with unsorted columns would hold out other items)."""
    im = _im({u: list(range(8)) for u in range(6)})
    coo = im.matrix.tocoo()
    order = np.random.default_rng(0).permutation(coo.nnz)  # the same entries, stored row by row, shuffled
    order = order[np.argsort(coo.row[order], kind="stable")]
    shuffled = sp.csr_matrix((coo.data[order], coo.col[order], im.matrix.indptr), shape=im.matrix.shape)
    assert not shuffled.has_sorted_indices
    same = InteractionMatrix(shuffled, im.user_ids, im.item_ids, "m")
    a, b = weak_generalization(im, seed=4), weak_generalization(same, seed=4)
    for stage in ("valid", "test"):
        assert _row_sets(a, stage, "target") == _row_sets(b, stage, "target")


def test_a_saved_split_of_another_format_version_is_refused(tmp_path):
    """splits.py:144 format_version != _FORMAT_VERSION → False (a split of another format would be read)."""
    split = weak_generalization(_im(_full(4, 6)), seed=0)
    split.save(tmp_path)
    manifest = tmp_path / "split.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 2'))
    with pytest.raises(DataError, match=r"split.json: format_version 2 is not the supported 1"):
        Split.load(tmp_path)


def _pairs(pairs, name):
    return RawInteractions(np.array([str(u) for u, _ in pairs]), np.array([str(i) for _, i in pairs]), None, name)


def test_predefined_split_stages_by_hand(warned):
    """splits.py:392 known_at_test.data[:] = 1.0 → pass (a pair in both train and valid would be a 2 in test's
    exclusions). The stages are checked whole, by hand, so the test also kills splits.py:402, :405, :431, :442
    (which the existing tests kill too)."""
    train = _pairs([(0, 0), (0, 1), (1, 1), (3, 2)], "train")
    valid = _pairs([(0, 1), (1, 2)], "valid")  # (0, 1) repeats a train pair
    test = _pairs([(0, 2), (1, 0), (2, 0)], "test")  # user 2: no train history
    split = predefined_split(train, valid, test)
    dense = lambda m: m.toarray().tolist()
    assert dense(split.train) == [[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert dense(split.valid.exclude) == dense(split.train)
    assert dense(split.valid.target) == [[0, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert dense(split.test.exclude) == [[1, 1, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]]
    assert dense(split.test.input) == dense(split.train)
    err = warned()
    assert "warning: valid: 1 of its 2 pairs are also the train file's" in err
    assert "warning: test: 1 users have held-out items but no history in the train file" in err


@pytest.mark.parametrize("valid, test, message", [
    ([(0, 1)], [(0, 3)], r"test: item id 3 is outside the train file's items 0..2 \(row 0\)"),
    ([(0, 1)], [(0, -1)], r"test: negative ids are not allowed"),
])
def test_predefined_split_ids_beyond_or_below_the_train_file_are_refused(valid, test, message):
    """splits.py:602 drop `or items.min() < 0` (a negative item would fail inside scipy, a traceback); the first
    case also kills splits.py:383 ids.max() >= bound → > bound, which the existing tests kill too."""
    train = _pairs([(0, 0), (0, 2), (1, 1)], "train")
    with pytest.raises(DataError, match=message):
        predefined_split(train, _pairs(valid, "valid"), _pairs(test, "test"))


def test_predefined_split_refuses_ids_far_beyond_the_file_s_size():
    """splits.py:376 n > 2 * distinct + 1000 → + 100000 (a user id of 3000 among 2 users would allocate 3001 rows)."""
    with pytest.raises(DataError, match=r"train: user id 3000 is far beyond the 2 distinct users"):
        predefined_split(_pairs([(0, 0), (3000, 1)], "train"), _pairs([(0, 1)], "valid"), _pairs([(0, 0)], "test"))


def test_train_test_split_by_hand():
    """splits.py:464 n_users from train and test → train only (a test user past the train file would fail inside
    scipy, a traceback); splits.py:482 the stream [seed, 0x5EED] → seed (docs/architecture.md documents it).
    Also kills splits.py:478, :487, :493 (killed by the existing tests too)."""
    train_pairs = [(u, i) for u in range(4) for i in range(5)]  # four users with exactly 5 items
    split = train_test_split(_pairs(train_pairs, "train"), _pairs([(0, 5), (5, 0)], "test"), 2, 0.4, 5, 9)
    rng = np.random.default_rng([9, 0x5EED])
    valid_rows = sorted(rng.choice(np.arange(4), size=2, replace=False).tolist())
    assert split.valid.user_ids.tolist() == [str(u) for u in valid_rows]
    assert split.train.shape == (6, 6) and split.test.input.shape == (6, 6)
    known = {(u, i) for u, i in train_pairs}
    held = set()
    for k, u in enumerate(valid_rows):
        chosen = np.random.default_rng([9, u]).choice(5, size=2, replace=False)
        target = {int(c) for c in split.valid.target[k].indices}
        assert target == set(chosen.tolist())
        held |= {(u, c) for c in target}
    coo = split.train.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist())) == known - held
    coo = split.test.input.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist())) == known

# ---------------------------------------------------------------------------------------- datasets


@pytest.fixture
def no_data_env(tmp_path, monkeypatch):
    """No data folder from the environment, a cache folder of this test's own, HOME in tmp_path."""
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    monkeypatch.setenv("BINDIFF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def _diffrec_files(folder, train, valid, test):
    folder.mkdir(parents=True, exist_ok=True)
    for name, pairs in (("train", train), ("valid", valid), ("test", test)):
        np.save(folder / f"{name}_list.npy", np.array(pairs, dtype=np.int64))
    return folder


def _ml100k(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("1\t10\t5\t100\n2\t10\t3\t200\n", encoding="utf-8")
    return path


def test_registered_layouts_are_found_whole_data_folder_first_and_marked_binarised(no_data_env):
    """datasets.py:146 (data_root, cache) → (cache, data_root) (the cache would win over the data folder);
    datasets.py:260 all(path.is_file()) → any (a layout missing two of its files would be taken). Also kills
    datasets.py:84 diffrec binarised_at=4.0 → None (killed by the existing tests too)."""
    data, cache = no_data_env / "data", no_data_env / "cache"
    _diffrec_files(data / "ml-1m_clean", [(0, 0)], [(0, 0)], [(0, 0)])
    _diffrec_files(cache / "ml-1m_clean", [(0, 0)], [(0, 0)], [(0, 0)])
    source = resolve_dataset("ml-1m", data_dir=data, download=False)
    assert source.layout == "diffrec_pairs" and source.binarised_at == 4.0
    assert source.paths["train"] == data / "ml-1m_clean" / "train_list.npy"
    partial = no_data_env / "partial"
    (partial / "ml-1m_clean").mkdir(parents=True)
    np.save(partial / "ml-1m_clean" / "train_list.npy", np.array([[0, 0]]))
    ratings = partial / "ml-1m" / "ratings.dat"
    ratings.parent.mkdir()
    ratings.write_text("1::1::5::1\n", encoding="utf-8")
    source = resolve_dataset("ml-1m", data_dir=partial, download=False)
    assert (source.layout, source.paths) == ("movielens", {"ratings": ratings})


def test_synthetic_names_are_generated_data_binarised_at_4(no_data_env):
    """datasets.py:141 binarised_at=4.0 → None (MovieLens recipes with min_rating 4 would not run on it)."""
    source = resolve_dataset("synthetic:tiny", download=False)
    assert (source.layout, source.binarised_at, source.paths) == ("synthetic", 4.0, {})


def test_the_cache_folder_argument_and_the_variable_expand_home_and_an_empty_variable_is_unset(no_data_env,
                                                                                                monkeypatch):
    """datasets.py:313 Path(argument).expanduser() → Path(argument); datasets.py:315 `if value` → `if value is
    not None` (BINDIFF_CACHE_DIR="" would make the cache the current folder)."""
    home = no_data_env / "home"
    _ml100k(home / "c" / "ml-100k" / "u.data")
    source = resolve_dataset("ml-100k", cache_dir="~/c", download=False)
    assert source.paths["ratings"] == home / "c" / "ml-100k" / "u.data"
    monkeypatch.setenv("BINDIFF_CACHE_DIR", "")
    with pytest.raises(DataError) as err:
        resolve_dataset("ml-100k", download=False)
    assert f"Searched: {home / '.cache' / 'bindiff'}." in str(err.value)


def test_load_interactions_passes_the_column_options_and_the_default_separator(no_data_env):
    """datasets.py:228 header=header → header=True (a file without a header would lose its first row);
    datasets.py:229 time_col=time_col → None (the times would be dropped). Also kills datasets.py:226, :228
    rating_col, :286 and :301 (killed by the existing tests too)."""
    path = no_data_env / "r.tsv"
    path.write_text("u1\ti1\t4\t100\nu2\ti2\t2\t200\n", encoding="utf-8")
    source = resolve_dataset(str(path))
    assert source.layout == "delimited"
    raw = load_interactions(source, user_col=0, item_col=1, rating_col=2, header=False, time_col=3)
    assert raw.user.tolist() == ["u1", "u2"] and raw.rating.tolist() == [4.0, 2.0] and raw.time.tolist() == [100, 200]


@pytest.mark.parametrize("name, layout", [("u.data.gz", "ml100k"), ("R.CSV", "delimited"), ("r.csv.gz", "delimited"),
                                          ("x.tsv", "delimited"), ("r.dat", "movielens"), ("p.npy", "pairs")])
def test_a_file_s_layout_follows_its_name(no_data_env, name, layout):
    """datasets.py:283 path.name[:-len(".gz")] → [:-len(".g")] (u.data.gz would not be ML-100K);
    datasets.py:305 suffix.lower() → suffix (R.CSV would be refused). Also kills datasets.py:306 and :286
    (killed by the existing tests too)."""
    path = no_data_env / name
    path.write_bytes(b"")
    assert resolve_dataset(str(path)).layout == layout


def test_a_folder_s_layout_needs_all_three_pair_files_and_names_u_data(no_data_env):
    """datasets.py:269 all(file.is_file()) → any (one pair file would make a DiffRec folder); datasets.py:271
    ("u.data", "ml100k") → ("u.data", "movielens")."""
    folder = no_data_env / "f"
    folder.mkdir()
    np.save(folder / "train_list.npy", np.array([[0, 0]]))
    with pytest.raises(DataError, match=r"f: folder holds none of train_list.npy/valid_list.npy/test_list.npy"):
        resolve_dataset(str(folder))
    _ml100k(folder / "u.data")
    assert resolve_dataset(str(folder)).layout == "ml100k"


def test_only_diffrec_and_bars_folders_have_a_predefined_split(no_data_env):
    """datasets.py:246 layout != "diffrec_pairs" → == "movielens" (a .npy pair file would fail on a missing key,
    a traceback). Also kills datasets.py:253 (the run's record of its files; killed by the existing tests too)."""
    path = no_data_env / "p.npy"
    np.save(path, np.array([[0, 0]]))
    with pytest.raises(DataError, match=r"\(layout 'pairs'\) has no predefined split"):
        load_predefined_split(resolve_dataset(str(path)))
    folder = _diffrec_files(no_data_env / "d", [(0, 0), (1, 1)], [(0, 1)], [(1, 0)])
    split = load_predefined_split(resolve_dataset(str(folder)))
    assert split.info["dataset"] == {"name": str(folder), "layout": "diffrec_pairs",
                                     "paths": {s: str(folder / f"{s}_list.npy") for s in ("train", "valid", "test")}}


def test_the_files_expected_after_a_download_are_listed_per_layout():
    """datasets.py:320 len(layout.files) > 1 → >= 1 (a one-file layout would be shown in braces)."""
    assert _expected_files(DATASETS["ml-100k"]) == "ml-100k/u.data"
    assert _expected_files(DATASETS["amazon-cds"]) == "{amazoncds_bars_m1/train.txt, amazoncds_bars_m1/test.txt}"


# --------------------------------------------------------------------------------------- synthetic


def test_a_nan_popularity_exponent_is_refused():
    """synthetic.py:127 `not item_exponent >= 0` → `item_exponent < 0` (NaN would pass and every weight be NaN)."""
    with pytest.raises(ValueError, match="must be >= 0"):
        synthetic_interactions(4, 10, 20, seed=0, item_exponent=float("nan"))


def test_counts_are_the_largest_remainder_rounding_of_the_proportional_share():
    """synthetic.py:162 argsort(-fractions) → argsort(fractions) (the smallest remainders would be rounded up);
    by hand:
    activity (1, 1, 1, 1.3) and 5 items → shares 1.16 1.16 1.16 1.51 → (1, 1, 1, 2); with a cap of 2 and
    activity (1, 1, 10): shares 2, 2, capped 2 → 6 of 6. (The :161 mutant is equivalent, see the module
    docstring; the cases here check the rounding around it.)"""
    assert _counts_adding_up_to(np.array([1.0, 1.0, 1.0, 1.3]), 5, 1, 10).tolist() == [1, 1, 1, 2]
    assert _counts_adding_up_to(np.array([1.0, 1.0, 10.0]), 6, 1, 2).tolist() == [2, 2, 2]
    assert _counts_adding_up_to(np.array([1.0, 3.0, 3.0, 3.0]), 10, 1, 3).tolist() == [1, 3, 3, 3]


class _CountingGenerator:
    """A numpy Generator that counts the exponential draws (the races) made through it."""

    def __init__(self, seed):
        self.rng, self.races = np.random.default_rng(seed), 0

    def standard_exponential(self, *args, **kwargs):
        self.races += 1
        return self.rng.standard_exponential(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.rng, name)


def test_a_row_holding_nearly_all_the_mass_is_finished_by_a_race_without_its_items():
    """synthetic.py:291 finish[excluded] = np.inf → 0.0 (the items a row already has would win the race that
    finishes it: duplicates); synthetic.py:232 mass_left = max(1 - mass_taken, 1e-12) → 1.0 (the row would never
    count as costly and be finished by draws that hit item 7 999 times in 1000; at a steeper popularity that
    loop runs for minutes). One item holds 0.999 of the mass: after it, 4 more items would need ~4400 draws
    of 100 items, so the documented race finishes the row."""
    probabilities = np.full(100, 0.001 / 99)
    probabilities[7] = 0.999
    rng = _CountingGenerator(2)
    counts = [5] * 20
    m = weighted_sample_without_replacement(np.array(counts), probabilities, rng)
    assert np.diff(m.indptr).tolist() == counts and rng.races >= 1
    for row in range(20):
        cols = m.indices[m.indptr[row]:m.indptr[row + 1]]
        assert (np.diff(cols) > 0).all() and 7 in cols


def test_a_size_spec_with_fewer_items_than_the_default_minimum_uses_them_all():
    """synthetic.py:305 min(_DEFAULT_MIN_ITEMS, items) → _DEFAULT_MIN_ITEMS (3 items could not hold 5 each)."""
    im = synthetic_dataset("synthetic:10x3x30", seed=0)
    assert im.matrix.toarray().tolist() == [[1, 1, 1]] * 10


def test_a_synthetic_dataset_is_drawn_from_a_child_of_the_seed_and_k_cored():
    """synthetic.py:324 SeedSequence(seed).spawn(1)[0] → SeedSequence(seed) (the data would share the split's
    stream; killed by the existing tests too); synthetic.py:331 k_core > 1 → > 2 (k_core=2 would keep items seen
    once). The rule: synthetic_dataset's docstring, and a brute-force k-core here."""
    raw = synthetic_interactions(20, 60, 120, seed=np.random.SeedSequence(5).spawn(1)[0], min_items=5)
    assert (synthetic_dataset("synthetic:20x60x120", seed=5).matrix != raw).nnz == 0
    im = synthetic_dataset("synthetic:20x60x120", seed=5, k_core=2)
    coo = raw.tocoo()
    expected = _brute_k_core([(str(r), str(c)) for r, c in zip(coo.row, coo.col)], 2)
    assert 0 < len(expected) < raw.nnz and _pairs_of(im) == expected
