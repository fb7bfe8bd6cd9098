"""Mutation pass over the ranking, calibration and paired metrics and `bindiff score`.

Each test below kills at least one hand-made mutant that the rest of the suite let live (the mutant
ids, R.. ranking, C.. calibration, P.. paired, S.. scoring, are named in the comments). Every expected
value is a hand computation or a brute force written here, never the code under test.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.metrics import (
    evaluate_ranking,
    merge_reports,
    ndcg_at_k,
    recall_at_k,
    topk_excluding,
)
from bindiff.metrics.calibration import (
    binary_entropy,
    brier_score,
    error_detection_auroc,
    expected_calibration_error,
)


def _rows(dense) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(dense, dtype=np.float64))


# --------------------------------------------------------------------------- ranking: per-user functions


def test_a_target_built_with_cancelling_duplicates_and_unsorted_indices_is_read_as_its_sum():
    # R01: row 0 stores item 2 twice (1 and -1: not relevant) and item 0 after it (indices unsorted)
    target = sp.csr_matrix((np.array([1.0, -1.0, 1.0]), np.array([2, 2, 0]), np.array([0, 3])), shape=(1, 3))
    top = [[2, 0]]
    # one relevant item (0) at rank 2: recall 1 / min(2, 1), NDCG (1 / log2 3) / 1
    assert recall_at_k(top, target, 2)[0] == 1.0
    assert ndcg_at_k(top, target, 2)[0] == pytest.approx(1 / math.log2(3), abs=1e-15)


def test_index_arrays_and_cut_offs_outside_their_sets_are_refused_with_their_own_message():
    target = _rows([[1, 0, 1], [0, 1, 0]])
    with pytest.raises(ValueError, match="must be 2-D"):  # R03: a 1-D list failed later with an IndexError
        recall_at_k(np.array([0, 1]), target, 1)
    with pytest.raises(ValueError, match="row 0 lists item 0 more than once"):  # R07: item 0 repeated
        recall_at_k([[0, 0], [1, 2]], target, 2)
    with pytest.raises(ValueError, match="row 1 lists item"):  # R09: the first offending row is named
        recall_at_k([[0, 1], [2, 2], [1, 1]], _rows(np.ones((3, 3))), 2)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):  # R10
        recall_at_k([[0, 1], [1, 2]], target, 0)
    with pytest.raises(ValueError, match="item index 3 >= n_items=3"):  # R13: 0*3+3 is row 1's item 0
        recall_at_k([[3], [1]], target, 1)
    with pytest.raises(ValueError, match="1 rows but target_csr has shape"):  # R106: one row broadcast to all
        recall_at_k([[0]], target, 1)


def test_only_the_first_k_columns_of_a_ranking_are_read():
    # R12: the docstring's "only the first k columns of topk_idx are used": column 3 is never looked at
    target = _rows([[1, 0, 1]])
    assert recall_at_k([[0, 1, 99]], target, 2)[0] == 0.5  # one hit (item 0) of min(2, 2)


def test_no_users_give_empty_results_for_integer_and_float_index_arrays():
    # R04 (an empty float array refused) and R105 (max() of an empty array)
    for idx in (np.zeros((0, 3), dtype=np.int64), np.zeros((0, 3))):
        assert recall_at_k(idx, sp.csr_matrix((0, 5)), 3).shape == (0,)
        assert ndcg_at_k(idx, sp.csr_matrix((0, 5)), 3).shape == (0,)


def test_a_user_with_an_empty_held_out_set_is_nan_without_a_warning():
    # R26, R30: 0 / 0 gives the same NaN but with "invalid value encountered in divide"; R104: the
    # mean of no users; C09, C12: calibration of no voxels
    target = _rows([[0, 0, 0], [0, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(recall_at_k([[0, 1], [1, 0]], target, 2)[0])
        assert np.isnan(ndcg_at_k([[0, 1], [1, 0]], target, 2)[0])
        report = evaluate_ranking(lambda x: x, _rows(np.ones((2, 3))), None, sp.csr_matrix((2, 3)), ["recall@2"])
        assert math.isnan(report.mean["recall@2"])
        assert math.isnan(brier_score([], []))
        assert math.isnan(expected_calibration_error([], []))


# --------------------------------------------------------------------------- ranking: top-k


def test_an_explicitly_stored_zero_in_exclude_excludes_nothing():
    # R55: the stored 0 at item 0 is not an exclusion
    exclude = sp.csr_matrix((np.array([0.0]), np.array([0]), np.array([0, 1])), shape=(1, 3))
    assert topk_excluding(torch.tensor([[3.0, 2.0, 1.0]]), exclude, 1).tolist() == [[0]]


def test_negative_integer_scores_beyond_2_53_keep_their_order():
    # R59: -(2**60) - 1 < -(2**60), which float64 rounds to one value (a tie won by item 0)
    scores = torch.tensor([[-(2 ** 60) - 1, -(2 ** 60)]], dtype=torch.int64)
    assert topk_excluding(scores, None, 1).tolist() == [[1]]
    assert topk_excluding(scores, None, 2).tolist() == [[1, 0]]


def test_an_exclude_matrix_of_another_width_is_refused():
    with pytest.raises(ValueError, match=r"exclude has shape \(1, 2\)"):  # R107
        topk_excluding(torch.zeros((1, 3)), sp.csr_matrix((1, 2)), 1)
    with pytest.raises(ValueError, match="must be 2-D"):  # R108: 1-D scores failed on unpacking
        topk_excluding(torch.zeros(3), None, 1)


def test_ties_wholly_inside_a_long_cut_keep_the_lower_index_first():
    # R72: k = n_items, so no tie crosses the cut and the fast path orders 4000 values of three kinds
    rng = np.random.default_rng(0)
    values = rng.integers(0, 3, 4000)
    got = topk_excluding(torch.from_numpy(values.astype(np.float32))[None], None, 4000)[0].numpy()
    want = np.lexsort((np.arange(4000), -values))  # by score descending, then by index
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- ranking: evaluator


def _evaluate(scores, exclude, target, metrics, **kw):
    scores = torch.tensor(scores, dtype=torch.float64)
    n_users, n_items = scores.shape
    inputs = sp.csr_matrix(np.arange(n_users)[:, None] * np.ones((1, n_items)))  # row i holds i: its scores
    return evaluate_ranking(lambda x: scores[x.long()[:, 0]], inputs, exclude, target, metrics, **kw)


def test_precision_at_two_cut_offs_divides_each_by_its_own_k():
    # R31: ranking 0, 1, 2, 3; relevant {0, 3}: precision@1 = 1/1, precision@4 = 2/4
    report = _evaluate([[4, 3, 2, 1]], None, _rows([[1, 0, 0, 1]]), ["precision@1", "precision@4"])
    assert report.mean == {"precision@1": 1.0, "precision@4": 0.5}


def test_a_metric_named_twice_is_reported_once_and_no_metrics_is_refused():
    report = _evaluate([[2, 1]], None, _rows([[1, 0]]), ["recall@1", "RECALL@1 "])  # R76
    assert report.metrics == ["recall@1"] and list(report.to_dict()["mean"]) == ["recall@1"]
    with pytest.raises(ValueError, match="no metrics requested"):  # R77: max() of nothing
        _evaluate([[2, 1]], None, _rows([[1, 0]]), [])


def test_bad_batch_sizes_and_popularity_lengths_are_refused_by_name():
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):  # R83
        _evaluate([[2, 1]], None, _rows([[1, 0]]), ["recall@1"], batch_size=0)
    with pytest.raises(ValueError, match="popularity@K needs item_popularity"):  # R85: one value too many
        _evaluate([[2, 1]], None, _rows([[1, 0]]), ["popularity@1"], item_popularity=np.array([0.5, 0.2, 0.1]))


def test_the_progress_report_counts_batches_and_users():
    # R87 (a floor division: "batch 1/1" of two), R94 (a user count past the end)
    lines = []
    _evaluate([[2, 1]] * 3, None, _rows([[1, 0]] * 3), ["recall@1"], batch_size=2, report=lines.append)
    assert lines == ["ranking: batch 1/2 (2 of 3 users)", "ranking: batch 2/2 (3 of 3 users)"]


def test_coverage_and_popularity_read_only_their_own_cut_off_and_skip_padding():
    # scores 5 > 4 > 3 > 2; user 1 has items 1, 2, 3 excluded, so its top-3 list is [0, -1, -1]
    scores = [[5, 4, 3, 2], [5, 4, 3, 2]]
    exclude = _rows([[0, 0, 0, 0], [0, 1, 1, 1]])
    target = _rows([[1, 0, 0, 0], [1, 0, 0, 0]])
    popularity = np.array([0.8, 0.4, 0.2, 0.1])
    report = _evaluate(scores, exclude, target, ["coverage@1", "popularity@1", "recall@3", "coverage@3"],
                       item_popularity=popularity)
    # R89: coverage@1 and popularity@1 read the top-1 lists (item 0 for both users), not the top 3
    assert report.mean["coverage@1"] == 0.25 and report.mean["popularity@1"] == pytest.approx(0.8)
    # R90: user 0 lists 0, 1, 2, user 1 lists item 0 and padding; -1 must not mark item 3
    assert report.mean["coverage@3"] == 0.75
    # R99: the means come in the order asked for
    assert list(report.mean) == ["coverage@1", "popularity@1", "recall@3", "coverage@3"]


def test_merged_reports_under_the_zero_policy_divide_by_every_user_of_every_part():
    # R102: user 0 hits (recall 1), user 1 holds nothing out, user 2 misses
    scores, target = [[2, 1], [2, 1], [2, 1]], _rows([[1, 0], [0, 0], [0, 1]])
    parts = [_evaluate(scores[lo:hi], None, target[lo:hi], ["recall@1"], empty_users="zero") for lo, hi in ((0, 1), (1, 3))]
    merged = merge_reports(parts)
    assert (merged.n_users, merged.n_users_evaluated) == (3, 2)
    assert merged.mean["recall@1"] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- calibration


def test_boolean_probabilities_and_uncertainties_are_read_as_0_and_1():
    # C02, C24: a bool map is a map of 0s and 1s, as the dtype check's "b" says
    assert brier_score(np.array([True, False, True]), [1, 1, 1]) == pytest.approx(1 / 3)
    # uncertain (True) voxels 0 and 1 are wrong, voxel 2 right and certain, voxel 3 right and uncertain:
    # of the 2 x 2 (wrong, right) pairs, (0, 2) and (1, 2) are ordered, (0, 3) and (1, 3) tied: (2 + 1) / 4
    assert error_detection_auroc(np.array([True, True, False, True]), [1, 1, 0, 0]) == pytest.approx(0.75)


def test_the_first_value_outside_0_1_is_the_one_named():
    with pytest.raises(ValueError, match=r"got 2\.0$"):  # C06
        brier_score([0.5, 2.0, -1.0], [1, 0, 1])


def test_zero_bins_are_refused_by_name():
    with pytest.raises(ValueError, match="bins must be an integer >= 1, got 0"):  # C10: a bincount error
        expected_calibration_error([0.5], [1], bins=0)


def test_uncertainty_and_errors_must_share_a_shape_and_errors_must_be_a_mask():
    with pytest.raises(ValueError, match=r"uncertainty \(2, 3\) and errors \(3, 2\) differ in shape"):  # C25
        error_detection_auroc(np.zeros((2, 3)), np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="errors: a mask holds 0 and 1"):  # C34: 2 was read as an error
        error_detection_auroc([0.1, 0.2, 0.3], [0, 2, 1])


def test_auroc_of_one_class_and_entropy_of_certain_voxels_come_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(error_detection_auroc([0.1, 0.2], [1, 1]))  # C27: all wrong, 0 / 0
        assert np.isnan(error_detection_auroc([0.1, 0.2], [0, 0]))
        np.testing.assert_array_equal(binary_entropy([0.0, 1.0]), [0.0, 0.0])  # C33: log2(0)


# --------------------------------------------------------------------------- paired
# (every non-equivalent mutant of paired.py was killed by tests/test_paired.py)


# --------------------------------------------------------------------------- bindiff score


def _volume(path, array, spacing=(1.0, 1.0, 1.0)):
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.uint8), np.diag([*spacing, 1.0])), str(path))
    return path


def _cube(lo, hi, value=1):
    volume = np.zeros((6, 6, 6), np.uint8)
    volume[lo:hi, lo:hi, lo:hi] = value
    return volume


def _run_folder(tmp_path, **labels):
    """A masks run's folder as `labels_to_score(run=...)` reads it: the recipe as its config.yaml."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "recipes" / "hippocampus_masks.yaml").read_text()
    for key, value in labels.items():
        text = text.replace({"preset": "preset: msd_hippocampus", "region": "region: whole"}[key], f"{key}: {value}", 1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(text)
    return tmp_path / "run"


def test_a_single_prediction_file_that_is_no_volume_is_refused_by_its_name(tmp_path):
    from bindiff.adapters.errors import DataError

    from bindiff.scoring import score

    (tmp_path / "notes.txt").write_text("not a mask")
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 3))
    with pytest.raises(DataError, match=r"notes.txt: not a mask file \(expected one of \.nii\.gz"):  # S04
        score(tmp_path / "notes.txt", tmp_path / "ref")


def test_hidden_entries_among_the_references_are_passed_over_and_the_unmatched_come_sorted(tmp_path):
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 3))
    for case in ("q", "c", "x", "a", "m", "f", "b", "z"):
        _volume(tmp_path / "ref" / f"{case}.nii.gz", _cube(1, 3))
    (tmp_path / "ref" / ".Trash.nii.gz").mkdir()  # S13: a hidden folder is no reference and no error
    summary = score(tmp_path / "pred", tmp_path / "ref")
    assert summary["per_case"][0]["dice"] == 1.0
    assert summary["unmatched_references"] == ["b", "c", "f", "m", "q", "x", "z"]  # S18: not a set's order


def test_millimetres_come_from_the_references_voxel_size(tmp_path):
    # S23: a prediction 0.9 µm off in voxel size is on the reference's grid (affines agree to 1e-3 mm)
    # but its 8 voxels are 8 x 2 mm^3 of the reference: 0.016 ml, not 8 x 2.0009 mm^3
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 3), spacing=(2.0009, 1.0, 1.0))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 3), spacing=(2.0, 1.0, 1.0))
    row = score(tmp_path / "pred", tmp_path / "ref")["per_case"][0]
    assert row["volume_ml"] == pytest.approx(8 * 2.0 / 1000, rel=1e-12)


def test_a_custom_preset_is_reported_as_its_own_region(tmp_path):
    # S35: the custom preset's one region is "custom", whatever region the caller passed
    from bindiff.adapters.masks import get_preset

    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 3))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 3, value=5))
    summary = score(tmp_path / "pred", tmp_path / "ref", preset=get_preset("custom", [0, 1, 5], [5]), region="whole")
    assert (summary["preset"], summary["region"], summary["foreground_labels"]) == ("custom", "custom", [5])
    assert summary["per_case"][0]["dice"] == 1.0


def test_labels_to_score_by_name_and_from_a_run(tmp_path):
    from bindiff.config import RecipeError
    from bindiff.scoring import BINARY, labels_to_score

    assert labels_to_score(preset="binary") == (BINARY, "whole")  # S28: "binary" is no registered preset
    with pytest.raises(RecipeError, match="^score: .*'nope'"):  # S30: refused here, with the command's name
        labels_to_score(preset="msd_hippocampus", region="nope")
    run = _run_folder(tmp_path)
    preset, region = labels_to_score(run=run, region="anterior")  # S26: the caller's region over the run's
    assert (preset.name, region, sorted(preset.region(region))) == ("msd_hippocampus", "anterior", [1])
    assert labels_to_score(run=run)[1] == "whole"


def test_a_run_with_an_auto_preset_and_no_split_is_told_to_name_one(tmp_path):
    # S42: a run without split/cases.json is a folder of files, whose layout implies no labels
    from bindiff.config import RecipeError
    from bindiff.scoring import labels_to_score

    with pytest.raises(RecipeError, match="labels.preset is 'auto' but layout 'files' implies no label convention"):
        labels_to_score(run=_run_folder(tmp_path, preset="auto"))


def test_a_summary_the_file_system_refuses_is_an_output_error_naming_out(tmp_path, monkeypatch):
    # S44: an OSError from writing (a full disk) becomes one line naming --out, not a traceback
    import errno

    from bindiff import scoring
    from bindiff.files import OutputError

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 3))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 3))
    monkeypatch.setattr(scoring, "write_json", full)
    with pytest.raises(OutputError, match=r"out .*scores.json: cannot write the summary \(No space left on device\)"):
        scoring.score(tmp_path / "pred", tmp_path / "ref", out=tmp_path / "scores.json")
