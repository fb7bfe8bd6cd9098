"""Interaction readers and the binary matrix built from them."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from bindiff.adapters import DataError
from bindiff.adapters.interactions import (
    RawInteractions,
    build_matrix,
    index_ids,
    read_delimited,
    read_ml100k,
    read_movielens_ratings,
    read_pairs,
)

REAL_DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="latin-1")
    return path


# --- MovieLens ratings.dat -------------------------------------------------------------


def test_movielens_reads_ids_as_strings_and_ratings_as_float64(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n42::7::4.5::1\n")
    raw = read_movielens_ratings(path)
    assert raw.user.tolist() == ["1", "1", "42"]
    assert raw.item.tolist() == ["1193", "661", "7"]
    assert raw.rating.dtype == np.float64
    assert raw.rating.tolist() == [5.0, 3.0, 4.5]
    assert raw.source == str(path)
    assert len(raw) == 3


def test_movielens_reads_gzip_and_skips_blank_lines(tmp_path):
    path = tmp_path / "ratings.dat.gz"
    with gzip.open(path, "wt", encoding="latin-1") as handle:
        handle.write("1::10::5::1\r\n\r\n2::20::1::2\r\n\n")
    raw = read_movielens_ratings(path)
    assert raw.user.tolist() == ["1", "2"]
    assert raw.item.tolist() == ["10", "20"]
    assert raw.rating.tolist() == [5.0, 1.0]


def test_movielens_line_numbers_count_skipped_blank_lines(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n\n2::20::5\n")
    with pytest.raises(DataError, match=r"ratings\.dat:3: expected 4 fields separated by '::'.*found 3"):
        read_movielens_ratings(path)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1::10::5::1\n2::20::4::2\n3::30::4\n", 3, r"found 3"),
        ("1::10::5::1\n2::20::4::2::9\n", 2, r"found 5"),
        # A short line next to a long one: the total field count is right, the lines are not.
        ("1::10::5::1\n2::20::4\n3::30::4::2::7\n", 2, r"found 3"),
        # ':::' splits into a field starting with ':'.
        ("1::10::5::1\n2:::20::4\n", 2, r"found 3"),
    ],
)
def test_movielens_malformed_line_names_file_and_line(tmp_path, text, line, what):
    path = write(tmp_path / "ratings.dat", text)
    with pytest.raises(DataError, match=rf"{tmp_path}.*ratings\.dat:{line}: .*{what}"):
        read_movielens_ratings(path)


def test_movielens_non_numeric_rating_names_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n1::11::4::2\n2::10::five::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat:3: rating 'five' is not a number"):
        read_movielens_ratings(path)


def test_movielens_non_finite_rating_is_refused(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n1::11::nan::2\n")
    with pytest.raises(DataError, match=r"ratings\.dat:2: rating 'nan' is not a finite number"):
        read_movielens_ratings(path)


def test_movielens_bad_timestamp_names_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n1::11::4::yesterday\n")
    with pytest.raises(DataError, match=r"ratings\.dat:2: timestamp 'yesterday' is not an integer"):
        read_movielens_ratings(path)


def test_movielens_empty_id_names_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n::11::4::2\n")
    with pytest.raises(DataError, match=r"ratings\.dat:2: empty user id"):
        read_movielens_ratings(path)


def test_movielens_empty_file(tmp_path):
    path = write(tmp_path / "ratings.dat", "\n\n")
    with pytest.raises(DataError, match=r"ratings\.dat: file is empty"):
        read_movielens_ratings(path)


def test_movielens_given_a_tab_file_says_which_delimiter_was_expected(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n")
    with pytest.raises(DataError, match=r"u\.data:1: expected fields separated by '::'.*looks tab-separated"):
        read_movielens_ratings(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.dat: file not found"):
        read_movielens_ratings(tmp_path / "nope.dat")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match=r"ratings\.dat\.gz: cannot read"):
        read_movielens_ratings(path)


# --- ML-100K u.data --------------------------------------------------------------------


def test_ml100k_reads_tab_separated(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    raw = read_ml100k(path)
    assert raw.user.tolist() == ["196", "186"]
    assert raw.item.tolist() == ["242", "302"]
    assert raw.rating.tolist() == [3.0, 3.0]


def test_ml100k_given_a_movielens_file_says_tab_was_expected(tmp_path):
    path = write(tmp_path / "u.data", "1::1193::5::978300760\n")
    with pytest.raises(DataError, match=r"u\.data:1: expected fields separated by tab.*looks '::'-separated"):
        read_ml100k(path)


def test_ml100k_short_line(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\n")
    with pytest.raises(DataError, match=r"u\.data:2: expected 4 fields separated by tab.*found 2"):
        read_ml100k(path)


# --- delimited files -------------------------------------------------------------------


def test_delimited_named_columns_in_any_order(tmp_path):
    path = write(tmp_path / "log.csv", "ts,item,user,score\n1,a,u1,4\n2, b ,u2,2.5\n")
    raw = read_delimited(path, user_col="user", item_col="item", rating_col="score")
    assert raw.user.tolist() == ["u1", "u2"]
    assert raw.item.tolist() == ["a", "b"]
    assert raw.rating.tolist() == [4.0, 2.5]


def test_delimited_without_rating_column(tmp_path):
    path = write(tmp_path / "log.tsv", "user\titem\n7\t8\n7\t9\n")
    raw = read_delimited(path, sep="\t")
    assert raw.rating is None
    assert raw.user.tolist() == ["7", "7"]
    assert raw.item.tolist() == ["8", "9"]


def test_delimited_without_header_uses_column_numbers(tmp_path):
    path = write(tmp_path / "log.csv", "x,1,2,5\ny,3,4,1\n")
    raw = read_delimited(path, user_col=1, item_col=2, rating_col=3, header=False)
    assert raw.user.tolist() == ["1", "3"]
    assert raw.item.tolist() == ["2", "4"]
    assert raw.rating.tolist() == [5.0, 1.0]


def test_delimited_missing_column_names_it_and_the_columns_found(tmp_path):
    path = write(tmp_path / "log.csv", "userId,movieId,rating\n1,2,3\n")
    expected = r"log\.csv: column 'user' \(user_col\) not found.*\['userId', 'movieId', 'rating'\]"
    with pytest.raises(DataError, match=expected):
        read_delimited(path)


def test_delimited_short_row_and_bad_rating_name_lines(tmp_path):
    short = write(tmp_path / "short.csv", "user,item,rating\n1,2,3\n\n4,5\n")
    with pytest.raises(DataError, match=r"short\.csv:4: expected at least 3 fields"):
        read_delimited(short, rating_col="rating")
    bad = write(tmp_path / "bad.csv", "user,item,rating\n1,2,3\n4,5,x\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: rating 'x' is not a number"):
        read_delimited(bad, rating_col="rating")


def test_delimited_header_only(tmp_path):
    path = write(tmp_path / "log.csv", "user,item\n")
    with pytest.raises(DataError, match=r"log\.csv: file has no data rows"):
        read_delimited(path)


# --- DiffRec pair arrays ---------------------------------------------------------------


def test_pairs_become_string_ids(tmp_path):
    path = tmp_path / "train_list.npy"
    np.save(path, np.array([[0, 5], [3, 2]], dtype=np.int64))
    raw = read_pairs(path)
    assert raw.user.tolist() == ["0", "3"]
    assert raw.item.tolist() == ["5", "2"]
    assert raw.rating is None


def test_pair_ids_are_as_wide_as_the_longest_id(tmp_path):
    """`astype(str)` made every int64 id 21 characters (84 bytes): the ML-1M split peaked at 307 MB, 117 now."""
    path = tmp_path / "train_list.npy"
    np.save(path, np.array([[0, 6039], [12, 7], [6039, 3705]], dtype=np.int64))
    raw = read_pairs(path)
    assert raw.user.dtype == np.dtype("<U4") and raw.item.dtype == np.dtype("<U4")
    assert raw.user.tolist() == ["0", "12", "6039"] and raw.item.tolist() == ["6039", "7", "3705"]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 3), dtype=np.int64), r"shape \(N, 2\), got shape \(3, 3\)"),
        (np.zeros(4, dtype=np.int64), r"shape \(N, 2\), got shape \(4,\)"),
        (np.zeros((3, 2), dtype=np.float64), r"integer \(user, item\) ids, got dtype float64"),
        (np.zeros((0, 2), dtype=np.int64), r"no \(user, item\) pairs"),
        (np.array([[0, 1], [-1, 2]], dtype=np.int64), r"row 1 holds a negative id"),
    ],
)
def test_pairs_wrong_content(tmp_path, array, message):
    path = tmp_path / "train_list.npy"
    np.save(path, array)
    with pytest.raises(DataError, match=rf"train_list\.npy: .*{message}"):
        read_pairs(path)


def test_pairs_refuse_pickled_arrays(tmp_path):
    path = tmp_path / "train_list.npy"
    np.save(path, np.array([[0, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"train_list\.npy: not a readable \.npy"):
        read_pairs(path)


# --- binarise, k-core, id maps ---------------------------------------------------------


def hand_example() -> RawInteractions:
    rows = [
        ("1", "9", 5), ("1", "10", 4), ("1", "100", 5), ("1", "4", 2), ("1", "9", 4),
        ("2", "9", 4), ("2", "10", 5), ("2", "5", 4),
        ("3", "9", 5), ("3", "100", 4),
        ("4", "6", 5),
        ("5", "10", 3), ("5", "6", 4),
    ]  # fmt: skip
    users, items, ratings = zip(*rows)
    return RawInteractions(np.array(users), np.array(items), np.array(ratings, dtype=np.float32), "hand")


def test_build_matrix_without_filters_merges_duplicates():
    im = build_matrix(hand_example())
    assert im.user_ids.tolist() == ["1", "2", "3", "4", "5"]
    # Integer-looking ids are ordered by value, not as strings.
    assert im.item_ids.tolist() == ["4", "5", "6", "9", "10", "100"]
    assert im.matrix.dtype == np.float32
    assert im.nnz == 12  # 13 rows, ("1", "9") twice
    assert set(im.matrix.data.tolist()) == {1.0}


def test_binarise_then_k_core_by_hand():
    # ratings >= 4 leave 1:{9,10,100} 2:{9,10,5} 3:{9,100} 4:{6} 5:{6}.
    # 2-core, round 1: users 4 and 5 (1 item) and item 5 (1 user) go;
    # round 2: item 6 lost its two users and goes; then everything has >= 2.
    im = build_matrix(hand_example(), min_rating=4, k_core=2)
    assert im.user_ids.tolist() == ["1", "2", "3"]
    assert im.item_ids.tolist() == ["9", "10", "100"]
    assert im.matrix.toarray().tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 1]]


def test_binarise_only():
    im = build_matrix(hand_example(), min_rating=4)
    assert im.user_ids.tolist() == ["1", "2", "3", "4", "5"]
    assert im.item_ids.tolist() == ["5", "6", "9", "10", "100"]
    assert im.nnz == 10


def test_filters_that_empty_the_matrix_say_which():
    with pytest.raises(DataError, match=r"hand: no interactions left after keeping ratings >= 6"):
        build_matrix(hand_example(), min_rating=6)
    with pytest.raises(DataError, match=r"hand: k_core=4 removed every user and item"):
        build_matrix(hand_example(), min_rating=4, k_core=4)


def test_spaces_around_movielens_ids_do_not_make_a_second_user(tmp_path):
    raw = read_movielens_ratings(write(tmp_path / "ratings.dat", "1::10::5::1\n1 :: 11::4::2\n"))
    assert raw.user.tolist() == ["1", "1"] and raw.item.tolist() == ["10", "11"]


def test_a_rating_equal_to_a_float64_threshold_is_kept(tmp_path):
    # 0.7 >= 0.7: in float32 the rating would read 0.69999999 and fall below np.float64(0.7)
    raw = read_delimited(write(tmp_path / "log.csv", "user,item,rating\n1,10,0.7\n2,10,0.6\n"), rating_col="rating")
    for threshold in (0.7, np.float64(0.7), np.float32(0.7)):
        assert build_matrix(raw, min_rating=threshold).user_ids.tolist() == ["1"], threshold


def test_k_core_must_be_a_whole_number():
    for bad in (2.5, "3", True):
        with pytest.raises(DataError, match=r"hand: k_core must be an integer >= 0, got"):
            build_matrix(hand_example(), k_core=bad)


def test_min_rating_without_ratings_is_an_error():
    raw = RawInteractions(np.array(["1"]), np.array(["2"]), None, "pairs.npy")
    with pytest.raises(DataError, match=r"pairs\.npy: min_rating=4 was given but the data have no ratings"):
        build_matrix(raw, min_rating=4)


def test_index_ids_mixed_ids_fall_back_to_string_order():
    distinct, index = index_ids(np.array(["b", "10", "a", "9", "b"]))
    assert distinct.tolist() == ["10", "9", "a", "b"]
    assert index.tolist() == [3, 0, 2, 1, 3]


# --- real files (skipped where the shared data folder is absent) -----------------------


def test_real_ml100k_counts():
    path = REAL_DATA / "ml-100k" / "u.data"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    raw = read_ml100k(path)
    assert len(raw) == 100_000
    assert (raw.user[0], raw.item[0], float(raw.rating[0])) == ("196", "242", 3.0)
    im = build_matrix(raw)
    assert (im.n_users, im.n_items, im.nnz) == (943, 1682, 100_000)


def test_real_partial_ml1m_ratings_gz():
    path = REAL_DATA / "ml-1m_raw_partial" / "ratings_partial_users1-2999.dat.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    raw = read_movielens_ratings(path)
    assert len(raw) == 487_650
    assert (raw.user[0], raw.item[0], float(raw.rating[0])) == ("1", "1193", 5.0)
    assert np.bincount(raw.rating.astype(int), minlength=6)[1:].tolist() == [27_472, 53_838, 127_216, 170_579, 108_545]
    assert len(np.unique(raw.user)) == 2_999
    assert len(np.unique(raw.item)) == 3_615


def test_item_lists_reader_exact_and_errors(tmp_path):
    from bindiff.adapters.errors import DataError
    from bindiff.adapters.interactions import read_item_lists

    path = tmp_path / "train.txt"
    path.write_text("0 5 7\n1\n2 7\n")
    raw = read_item_lists(path)
    assert raw.user.tolist() == ["0", "0", "2"] and raw.item.tolist() == ["5", "7", "7"] and raw.rating is None
    path.write_text("0 5 7\n1 x 3\n")
    with pytest.raises(DataError, match=r"train.txt:2: expected `user item item \.\.\.` of integer ids, found 'x'"):
        read_item_lists(path)
    path.write_text("\n")
    with pytest.raises(DataError, match="no interactions"):
        read_item_lists(path)


def test_real_amazon_electronics_is_the_union_of_its_files():
    import os

    from bindiff.adapters.interactions import build_matrix, load_interactions, resolve_dataset

    data_dir = os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data")
    if not os.path.isdir(os.path.join(data_dir, "amazonelectronics_bars_m1")):
        pytest.skip("Amazon Electronics BARS split not available")
    source = resolve_dataset("amazon-electronics", data_dir=data_dir, download=False)
    matrix = build_matrix(load_interactions(source))
    # the README's counts: 31,887 train + 4,044 test interactions, 1,435 users, 1,522 items
    assert matrix.matrix.nnz == 31_887 + 4_044 and matrix.n_users == 1_435 and matrix.n_items == 1_522


def test_a_header_of_many_columns_is_named_by_its_first_ten(tmp_path):
    path = write(tmp_path / "wide.csv", ",".join(f"c{i}" for i in range(50_000)) + "\n" + "1," * 49_999 + "1\n")
    with pytest.raises(DataError) as err:
        read_delimited(path, rating_col=None)
    message = str(err.value)
    assert "column 'user' (user_col) not found" in message and "'c9', ... (50000 columns)]" in message
    assert len(message) < 500  # was every name: a line of 400 kB


def test_a_device_given_as_a_data_set_is_named_as_one():
    from bindiff.adapters.interactions import resolve_dataset

    with pytest.raises(DataError, match=r"/dev/zero: not a regular file or a folder"):
        resolve_dataset("/dev/zero", download=False)


# --- files users bring: long ids, quotes, UTF-8 ---------------------------------------------


def test_one_long_id_keeps_the_others_compact_and_indexes_like_short_ids(tmp_path):
    long = "x" * 200  # a URL-like id: numpy's fixed width would give every row 200 characters
    rows = [("u2", "i10"), ("u1", long), ("u2", "i9"), ("u1", "i10")]
    path = tmp_path / "long.csv"
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in rows), encoding="utf-8")
    raw = read_delimited(path)
    assert raw.item.dtype == object and raw.user.dtype.kind == "U"
    distinct, index = index_ids(raw.item)
    assert distinct.tolist() == sorted({i for _, i in rows})  # string order, found by hand
    assert [distinct[k] for k in index] == [i for _, i in rows]
    matrix = build_matrix(raw)
    assert matrix.item_ids.tolist() == ["i10", "i9", long] and matrix.matrix.nnz == 4


def test_an_id_beyond_a_thousand_characters_names_its_line(tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text("user,item\nu1,i1\nu2," + "y" * 1001 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"huge.csv:3: a item id of 1001 characters \(at most 1000\)"):
        read_delimited(path)


def test_a_quote_left_open_is_refused_at_its_line_not_read_to_the_end(tmp_path):
    lines = ["user,item"] + [f"u{k},i{k}" for k in range(50)]
    lines[31] = 'u30,"broken'  # line 32 of the file opens a quote that never closes
    path = tmp_path / "open.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"open.csv:32: not readable as delimited text from this line on "
                                         r"\(unexpected end of data\)"):
        read_delimited(path)
    lines[40] = 'u39,i39"'  # now closed nine lines later: one "id" of ten lines
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"open.csv:32: a quoted field runs over lines 32-41"):
        read_delimited(path)
    # text after a closing quote is refused rather than glued to the id
    path.write_text('user,item\nu1,"Weird Al" Yankovic\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"open.csv:2: not readable as delimited text from this line on"):
        read_delimited(path)
    # a quoted text of several lines in a column that is not read is fine
    path.write_text('user,item,review\nu1,i1,"good\nvery good"\nu2,i2,ok\n', encoding="utf-8")
    assert read_delimited(path).user.tolist() == ["u1", "u2"]
    # a quoted id holding the separator is read whole
    path.write_text('user,item\nu1,"Crouching Tiger, Hidden Dragon"\n', encoding="utf-8")
    assert read_delimited(path).item.tolist() == ["Crouching Tiger, Hidden Dragon"]


def test_a_quote_left_open_in_a_column_not_read_is_named_when_it_swallows_rows(tmp_path, warned):
    path = tmp_path / "reviews.csv"
    # line 3 opens a quote that line 6 closes: the rows u2..u4 become text of u1's review
    path.write_text('user,item,review\nu0,i0,fine\nu1,i1,"good\nu2,i2,ok\nu3,i3,meh\nu4,i4,bad"\nu5,i5,x\n',
                    encoding="utf-8")
    assert read_delimited(path).user.tolist() == ["u0", "u1", "u5"]  # read as written, and said
    err = warned()
    assert err.strip().splitlines() == [f"warning: {path}:3: a quoted field runs over lines 3-6 and holds 3 lines "
                                        "that look like rows of this file; they were read as that field's text, "
                                        "not as interactions (is a quote left open?)"]
    # a review of several lines, one of them with a comma, is no such mistake
    path.write_text('user,item,review\nu1,i1,"good\nvery good, really\nyes"\nu2,i2,ok\n', encoding="utf-8")
    assert read_delimited(path).user.tolist() == ["u1", "u2"] and warned() == ""


def test_an_unquoted_separator_in_an_id_is_refused_where_a_header_names_the_columns(tmp_path):
    path = tmp_path / "comma.csv"
    path.write_text("user,item\ncarl,Crouching Tiger, Hidden Dragon\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"comma.csv:2: 3 fields but the header names 2"):
        read_delimited(path)
    path.write_text("user,item\nu1,i1,\nu2,i2, \n", encoding="utf-8")  # a trailing separator adds an empty field
    assert read_delimited(path).item.tolist() == ["i1", "i2"]


def test_dat_files_keep_utf8_ids_and_fall_back_to_latin1(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_bytes("José::Café 1::5::1\nÅsa::Øl::4::2\n".encode("utf-8"))  # Å is 0xC3 0x85 in UTF-8
    raw = read_movielens_ratings(path)
    assert raw.user.tolist() == ["José", "Åsa"] and raw.item.tolist() == ["Café 1", "Øl"]
    path.write_bytes("Jos\xe9::1::5::1\n2::3::4::2\n".encode("latin-1"))  # GroupLens's own encoding
    assert read_movielens_ratings(path).user.tolist() == ["José", "2"]
