"""Edge inputs of the adapters that an audit reproduced and left: each against a hand value or the
message that names the argument."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bindiff.adapters import DataError
from bindiff.adapters.interactions import (
    RawInteractions,
    build_matrix,
    holdout_count,
    read_cut_offs,
    read_delimited,
    strong_generalization,
    synthetic_dataset,
    temporal_split,
    train_test_split,
    weak_generalization,
)
from bindiff.adapters.masks.grid import GridSpec, fit_transform, from_vectors
from bindiff.adapters.masks.spacing import area_share, mixed_spacing, resample

# -- holdout_count ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    ((1, 0.2), r"n_items must be an integer >= 2 .*got 1"),  # returned 0, against "at least 1"
    ((0, 0.2), r"n_items must be an integer >= 2 .*got 0"),  # returned -1
    ((5.0, 0.2), r"n_items must be an integer >= 2 .*got 5.0"),
    ((5, 0.2, True), r"holdout_items must be None or an integer >= 1, got True"),  # returned True
    ((5, 0.2, 0), r"holdout_items must be None or an integer >= 1, got 0"),
    ((5, math.nan), r"holdout_fraction must be in \(0, 1\), got nan"),  # a Fraction ValueError
    ((5, 1.5), r"holdout_fraction must be in \(0, 1\), got 1.5"),
])
def test_holdout_count_refuses_what_no_split_passes(args, message):
    with pytest.raises(ValueError, match=message):
        holdout_count(*args)


def test_holdout_count_reads_numpy_scalars_and_0d_arrays_as_numbers():
    assert holdout_count(np.int32(12), 0.2) == 2 and type(holdout_count(np.int32(12), 0.2)) is int
    assert holdout_count(np.array(12), np.array(0.2)) == 2
    assert holdout_count(5, 0.2, np.array(2)) == 2
    assert holdout_count(2, 0.9) == 1 and holdout_count(5, 0.2, 9) == 4  # at most n - 1
    # a float32 share, in a 0-d array too, is read as it prints: 0.35 * 90 = 31.5 gives 32
    assert holdout_count(90, np.array(np.float32(0.35))) == 32


# -- 0-d arrays given to the splits ---------------------------------------------------------------


def _matrix(with_time: bool = False):
    # 8 users with 6..13 items each (user u has items 0..u+5), times 100 * user + item
    users = [u for u in range(8) for _ in range(u + 6)]
    items = [i for u in range(8) for i in range(u + 6)]
    time = np.array([100 * u + i for u, i in zip(users, items)]) if with_time else None
    return build_matrix(RawInteractions(np.array(users).astype(str), np.array(items).astype(str), None, "m",
                                        time=time))


def _same(a, b) -> bool:
    return all((getattr(a, stage).target != getattr(b, stage).target).nnz == 0
               and list(getattr(a, stage).user_ids) == list(getattr(b, stage).user_ids) for stage in ("valid", "test"))


def test_splits_read_0d_arrays_as_the_numbers_they_hold(tmp_path):
    im = _matrix(with_time=True)
    a = np.array
    pairs = [
        (strong_generalization(im, 2, 2, 0.2, 5, seed=3, holdout_items=2),
         strong_generalization(im, a(2), a(2), a(0.2), a(5), seed=a(3), holdout_items=a(2))),
        (weak_generalization(im, 0.2, 5, seed=3, valid_fraction=0.1),
         weak_generalization(im, a(0.2), a(5), seed=a(3), valid_fraction=a(0.1))),
        (temporal_split(im, 0.2, 0.1), temporal_split(im, a(0.2), a(0.1))),
        (temporal_split(im, test_from=600, valid_from=400), temporal_split(im, test_from=a(600), valid_from=a(400))),
    ]
    for plain, arrays in pairs:
        assert _same(plain, arrays) and arrays.info == plain.info
        assert json.dumps(arrays.info)  # split.json holds plain numbers
    assert read_cut_offs(a(600.0), a(400)) == {"test_from": 600, "valid_from": 400}
    with pytest.raises(DataError, match=r"seed must be a non-negative integer, got (np\.)?True"):
        strong_generalization(im, 2, 2, seed=a(True))
    with pytest.raises(DataError, match=r"n_valid_users must be a positive integer.*got (np\.float64\()?2\.0"):
        strong_generalization(im, a(2.0), 2, seed=0)


def _train_test(min_items: int):
    # users 0..3 with 6 training items each, user 4 with 2; a test item for users 0 and 4
    users = [u for u in range(4) for _ in range(6)] + [4, 4]
    items = [i for _ in range(4) for i in range(6)] + [0, 1]
    return (RawInteractions(np.array(users), np.array(items), None, "train.txt"),
            RawInteractions(np.array([0, 4]), np.array([6, 6]), None, "test.txt"))


def test_train_test_split_reads_0d_arrays_and_names_a_lack_of_candidates():
    train, test = _train_test(5)
    plain = train_test_split(train, test, 2, 0.2, 5, 7)
    arrays = train_test_split(train, test, np.array(2), np.array(0.2), np.array(5), np.array(7))
    assert _same(plain, arrays) and arrays.info == plain.info and plain.valid.target.nnz == 2
    # no user (min 7) or one user (min 6 + the user with 7) reaches min_items_to_split: it said
    # "between 1 and the -1 users"
    with pytest.raises(DataError, match=r"train.txt: no user has at least 7 training items, and split.n_valid_users "
                                        r"= 1 validation users need at least 2 such users .*min_items_to_split"):
        train_test_split(train, test, 1, 0.2, 7, 0)
    one = RawInteractions(np.concatenate([train.user, [0]]), np.concatenate([train.item, [9]]), None, "train.txt")
    with pytest.raises(DataError, match=r"only 1 user has at least 7 training items"):
        train_test_split(one, test, 1, 0.2, 7, 0)


# -- synthetic_dataset --------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": 1.7}, r"seed must be an integer >= 0, got 1.7"),  # seed 1's data
    ({"seed": True}, r"seed must be an integer >= 0, got True"),
    ({"seed": -1}, r"seed must be an integer >= 0, got -1"),  # numpy's "expected non-negative integer"
    ({"seed": np.random.default_rng(0)}, r"seed must be an integer >= 0, got Generator"),  # int()'s TypeError
    ({"seed": 1, "k_core": 2.5}, r"k_core must be an integer >= 0, got 2.5"),  # a 3-core
    ({"seed": 1, "k_core": -1}, r"k_core must be an integer >= 0, got -1"),  # no core, without a word
    ({"seed": 1, "k_core": "3"}, r"k_core must be an integer >= 0, got '3'"),  # a TypeError
])
def test_synthetic_dataset_refuses_seeds_and_cores_that_are_not_integers(kwargs, message):
    with pytest.raises(DataError, match=r"^synthetic:20x10x100: " + message):
        synthetic_dataset("synthetic:20x10x100", **kwargs)


def test_synthetic_dataset_reads_numpy_integers_as_the_seed_and_core():
    plain = synthetic_dataset("synthetic:20x10x100", seed=1, k_core=3)
    for seed, k_core in ((np.array(1), np.array(3)), (np.int64(1), np.uint8(3))):
        other = synthetic_dataset("synthetic:20x10x100", seed=seed, k_core=k_core)
        assert (other.matrix != plain.matrix).nnz == 0 and list(other.user_ids) == list(plain.user_ids)
    assert plain.nnz == 100  # 20 users of 5 items each: a 3-core drops nothing


# -- read_delimited's header ----------------------------------------------------------------------


def test_read_delimited_refuses_a_header_that_is_not_a_bool(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("1,2\n3,4\n")
    for header in ("no", 0, None):  # 'no' is truthy: the first row was read as the header
        with pytest.raises(ValueError, match=r"^header must be True or False, got "):
            read_delimited(path, user_col=0, item_col=1, header=header)
    raw = read_delimited(path, user_col=0, item_col=1, header=np.bool_(False))
    assert list(raw.user) == ["1", "3"] and list(raw.item) == ["2", "4"]


# -- masks ----------------------------------------------------------------------------------------


def test_mixed_spacing_of_no_cases_is_none():
    assert mixed_spacing({}) is None  # a ValueError from reshape
    assert mixed_spacing({"a": (1, 1, 1), "b": (1, 1, 1.005)}) is None


def test_from_vectors_refuses_a_grid_of_no_slices_or_fractional_sides():
    spec = GridSpec((4, 4))
    with pytest.raises(ValueError, match=r"grid_shape: a shape must hold whole numbers >= 1, got \(4, 4, 0\)"):
        from_vectors(np.zeros((0, 16)), (4, 4, 0), spec)  # a ZeroDivisionError
    with pytest.raises(ValueError, match=r"grid_shape: .*got \(4, 4, 2.5\)"):
        from_vectors(np.zeros((2, 16)), (4, 4, 2.5), spec)
    assert from_vectors(np.arange(32).reshape(2, 16), (4, 4, 2.0), spec).shape == (4, 4, 2)


def test_resample_and_area_share_refuse_empty_volumes_and_bad_shapes():
    with pytest.raises(ValueError, match=r"resample: the volume of shape \(0, 4, 4\) has no voxels"):
        resample(np.zeros((0, 4, 4)), (2, 2, 2), 1)  # a ZeroDivisionError
    with pytest.raises(ValueError, match=r"area_share: the volume of shape \(0, 2, 2\) has no voxels"):
        area_share(np.zeros((0, 2, 2), bool), (2, 2, 2))
    for shape in ((-1, 2, 2), (8.5, 2, 2), (0, 2, 2), (True, 2, 2)):  # linspace's error; 8.5 read as 8
        with pytest.raises(ValueError, match=r"area_share: shape .* must hold whole numbers >= 1"):
            area_share(np.ones((2, 2, 2), bool), shape)
    # one true voxel of 2 along x, onto 4 voxels: the first two are covered, the last two not
    volume = np.zeros((2, 1, 1), bool)
    volume[0] = True
    assert area_share(volume, (4.0, 1, 1)).ravel().tolist() == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("shape", [(0, 4, 4), (-1, 4, 4), (9.5, 4, 4), (True, 4, 4), ("4", 4, 4)])
def test_fit_transform_refuses_volume_shapes_that_are_not_positive_whole_numbers(shape):
    with pytest.raises(ValueError, match=r"case.nii: a shape must hold whole numbers >= 1"):
        fit_transform(shape, GridSpec((4, 4, 4)), source="case.nii")


def test_fit_transform_takes_whole_numbers_of_any_type():
    for shape in ((8, 4, 4), np.array([8, 4, 4]), (8.0, 4, 4)):
        transform = fit_transform(shape, GridSpec((4, 4, 4)))
        assert transform.volume_shape == (8, 4, 4) and transform.start == (2, 0, 0)
        assert all(type(s) is int for s in transform.volume_shape)


def test_a_shipped_train_test_pair_needs_a_seed_to_draw_its_validation_users(tmp_path):
    from bindiff.adapters.interactions.datasets import DatasetSource, load_predefined_split

    (tmp_path / "train.txt").write_text("".join(f"{u} " + " ".join(str((u + j) % 9) for j in range(6)) + "\n"
                                                for u in range(8)))
    (tmp_path / "test.txt").write_text("".join(f"{u} {(u + 7) % 9}\n" for u in range(8)))
    source = DatasetSource("bars", "item_lists", {part: tmp_path / f"{part}.txt" for part in ("train", "test")})
    with pytest.raises(ValueError, match=r"ships train and test only: a seed is needed to draw its validation users"):
        load_predefined_split(source, n_valid_users=3)  # a default seed of 0 drew them unasked
    drawn = [load_predefined_split(source, n_valid_users=3, seed=5).valid.user_ids.tolist() for _ in range(2)]
    assert len(drawn[0]) == 3 and drawn[0] == drawn[1]
