"""Edge inputs to the adapters' public functions (an audit that called each with numpy scalars, bools,
non-finite and huge numbers, mismatched lengths and odd dtypes); each truth is computed here by hand."""

import numpy as np
import pytest
import scipy.sparse as sp

from bindiff.adapters import DataError, InteractionMatrix, RawInteractions, build_matrix, read_cut_offs
from bindiff.adapters import predefined_split, read_delimited, strong_generalization, weak_generalization
from bindiff.adapters.masks import GridSpec, custom_preset, fit_transform
from bindiff.adapters.masks.spacing import needs_resampling, resample, resampled_shape, training_spacing


def _ids(n):
    return np.arange(n).astype(str)


def test_stored_zeros_in_an_interaction_matrix_are_not_interactions():
    dense = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1]], np.float32)
    matrix = sp.csr_matrix(np.ones_like(dense))
    matrix.data[:] = dense.ravel()  # two stored zeros
    im = InteractionMatrix(matrix, _ids(4), _ids(6))
    assert im.nnz == 22
    split = weak_generalization(im, min_items_to_split=2, seed=0)
    columns = split.item_ids.astype(int)
    total = np.zeros((4, 6))
    total[:, columns] += split.train.toarray()
    for part in (split.valid, split.test):
        total[np.ix_(part.user_ids.astype(int), columns)] += part.target.toarray()
    # a partition of the real interactions (less those whose item left the vocabulary): no stored zero became one
    assert total.max() == 1 and (total <= dense).all()
    assert total.sum() + split.info["n_held_out_interactions_dropped"] == 22


def test_an_interaction_matrix_with_wrong_ids_or_a_dense_array_is_named():
    with pytest.raises(ValueError, match="user_ids"):
        InteractionMatrix(sp.csr_matrix(np.ones((3, 2), np.float32)), _ids(2), _ids(2))
    with pytest.raises(TypeError, match="matrix"):
        InteractionMatrix(np.ones((3, 2), np.float32), _ids(3), _ids(2))


def test_numpy_user_counts_that_overflow_int64_are_refused():
    im = InteractionMatrix(sp.csr_matrix(np.ones((10, 4), np.float32)), _ids(10), _ids(4))
    with pytest.raises(DataError, match="leaves no train users"):  # 2**62 + 2**62 wrapped to -2**63 in int64
        strong_generalization(im, np.int64(2 ** 62), np.int64(2 ** 62), seed=0)


def test_huge_or_text_min_rating_and_non_finite_times_are_named():
    raw = RawInteractions(np.array(["1", "2"]), np.array(["1", "1"]), np.array([4.0, 5.0]), "r.csv")
    for bad in (10 ** 400, "4", True, float("nan")):
        with pytest.raises(DataError, match="min_rating"):
            build_matrix(raw, min_rating=bad)
    timed = RawInteractions(np.array(["1", "2"]), np.array(["1", "1"]), None, "r.csv", np.array([1.0, np.nan]))
    with pytest.raises(DataError, match="r.csv: each interaction's time must be a finite number"):
        build_matrix(timed)
    with pytest.raises(DataError, match="test_from"):
        read_cut_offs(10 ** 400, None)


def test_float_or_bool_id_arrays_are_not_truncated_in_a_predefined_split():
    good = RawInteractions(np.array(["0", "1"]), np.array(["0", "1"]), None, "train")
    floats = RawInteractions(np.array([0.0, 1.5]), np.array([0, 1]), None, "train")  # 1.5 became user 1
    with pytest.raises(DataError, match="integer user and item ids"):
        predefined_split(floats, good, good)
    bools = RawInteractions(np.array([True, False]), np.array([0, 1]), None, "train")
    with pytest.raises(DataError, match="integer user and item ids"):
        predefined_split(bools, good, good)


def test_a_column_number_that_is_a_fraction_or_a_bool_is_refused(tmp_path):
    path = tmp_path / "a b é.csv"
    path.write_text("1,2,9\n3,4,9\n")
    for bad in (1.7, True):  # read as column 1 by int()
        with pytest.raises(DataError, match="user_col"):
            read_delimited(path, header=False, user_col=bad, item_col=0)
    assert read_delimited(path, header=False, user_col=np.int64(0), item_col=1).item.tolist() == ["2", "4"]


def test_grid_spec_refuses_fractional_margins_and_bool_axes_and_reads_whole_floats():
    for bad in (dict(margin=1.5), dict(margin=True), dict(margin=float("nan")), dict(margin="2")):
        with pytest.raises(ValueError, match="grid.margin"):
            GridSpec((4, 4, 4), **bad)
    for bad in (True, 2.5, 3):
        with pytest.raises(ValueError, match="grid.slice_axis"):
            GridSpec((4, 4), slice_axis=bad)
    whole = GridSpec((4, 4), margin=2.0, slice_axis=np.float64(1.0))  # as a side of 4.0 is read: the margin was refused
    assert (whole.margin, whole.slice_axis) == (2, 1) and type(whole.margin) is int and type(whole.slice_axis) is int
    spec = GridSpec([np.float32(4.0), 4, 4])  # an IndexError in to_grid before; a list was unhashable
    assert spec.shape == (4, 4, 4) and hash(spec) == hash(GridSpec((4, 4, 4)))
    volume = np.arange(6 * 5 * 7).reshape(6, 5, 7)
    transform = fit_transform(volume.shape, spec)
    np.testing.assert_array_equal(transform.to_grid(volume), volume[1:5, 0:4, 1:5])  # centred window, by hand


def test_spacings_of_other_axes_or_not_positive_are_named():
    with pytest.raises(ValueError, match="different numbers of axes"):
        resampled_shape((10, 10, 10), (1, 1), (1, 1, 1))  # gave the 2-D shape (10, 10)
    with pytest.raises(ValueError, match="shape"):
        resampled_shape((10, 10, 10, 4), (1, 1, 1), (1, 1, 1))  # dropped an axis
    with pytest.raises(ValueError, match="different numbers of axes"):
        needs_resampling((1, 1), (1, 1, 2))
    with pytest.raises(ValueError, match="tolerance"):
        needs_resampling((1, 1, 1), (2, 2, 2), float("nan"))  # False: no resampling needed
    for bad in (np.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="spacing"):
            training_spacing([[1, 1, bad], [1, 1, 3], [1, 1, 3]])
    assert resampled_shape((5, 5, 5), (1, 1, 1), (2, 2, 2)) == (2, 2, 2)  # 2.5 rounds to even, as before


def test_resample_takes_float16_and_refuses_a_bool_order():
    volume = np.arange(8, dtype=np.float16).reshape(2, 2, 2)
    out = resample(volume, (4, 4, 4), 0)  # scipy's "data type not supported" before
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, volume.repeat(2, 0).repeat(2, 1).repeat(2, 2))
    for bad in (True, 1.0):
        with pytest.raises(ValueError, match="order"):
            resample(volume, (4, 4, 4), bad)


def test_a_custom_preset_from_generators_keeps_its_labels():
    preset = custom_preset((v for v in [1, 2]), (v for v in [2]))  # the checks used them up: an empty region
    assert preset.regions["custom"] == frozenset({2}) and preset.allowed == frozenset({0, 1, 2})


def test_datetime64_or_object_times_are_read_as_unix_seconds():
    users, items = np.array(["a", "a", "b"]), np.array(["x", "y", "x"])
    stamps = np.array(["1970-01-01T00:00:10", "1970-01-01T00:01:00", "1970-01-01T00:00:01.5"], "datetime64[ms]")
    im = build_matrix(RawInteractions(users, items, None, "d", stamps))  # a pandas column's .values
    assert im.time.tolist() == [10.0, 60.0, 1.5]  # entries (a, x), (a, y), (b, x)
    im = build_matrix(RawInteractions(users, items, None, "d", np.array([10, 60, 2], dtype=object)))
    assert im.time.tolist() == [10, 60, 2]
    with pytest.raises(DataError, match="NaT at row 1"):
        build_matrix(RawInteractions(users, items, None, "d", np.array(["1970-01-01", "NaT", "1970-01-02"],
                                                                        "datetime64[s]")))


def test_a_tiny_float64_entry_stays_an_interaction():
    matrix = sp.csr_matrix(np.array([[1e-50, 1.0], [2.0, 0.0]]))  # 1e-50 is 0 in float32
    im = InteractionMatrix(matrix, _ids(2), _ids(2), "m", np.array([1, 2, 3]))
    assert im.matrix.toarray().tolist() == [[1, 1], [1, 0]] and im.time.tolist() == [1, 2, 3]
