"""Calibration and error-detection metrics against hand computations and brute force."""

from __future__ import annotations

import numpy as np
import pytest

from bindiff.metrics.calibration import binary_entropy, brier_score, error_detection_auroc, expected_calibration_error


def test_brier_and_ece_by_hand():
    prob = np.array([0.05, 0.15, 0.95, 1.0, 0.55, 0.45])
    truth = np.array([0, 1, 1, 1, 0, 1])
    assert brier_score(prob, truth) == pytest.approx(np.mean((prob - truth) ** 2))
    # bins of width 0.5: [0, .5) holds .05 .15 .45 (truth 0 1 1), [.5, 1] holds .95 1 .55 (truth 1 1 0)
    low = abs(2 / 3 - (0.05 + 0.15 + 0.45) / 3)
    high = abs(2 / 3 - (0.95 + 1.0 + 0.55) / 3)
    assert expected_calibration_error(prob, truth, bins=2) == pytest.approx(0.5 * low + 0.5 * high)


def test_ece_bins_are_closed_below_and_the_last_one_holds_one():
    # ten bins [0, .1), ..., [.9, 1]: 0.92 and 1.0 share the last bin, mean truth 3/4 against mean p 0.96
    assert expected_calibration_error([0.92, 0.92, 1.0, 1.0], [1, 1, 1, 0], bins=10) == pytest.approx(0.21)
    # 0.25 lies in [.2, .3) and 0.30 on the edge, in [.3, .4): half of |1 − .25| plus half of |0 − .3|
    assert expected_calibration_error([0.25, 0.30], [1, 0], bins=10) == pytest.approx(0.525)
    # p = 29/100 on the edge of bin 29 of 100 (0.29 * 100 = 28.999999999999996 in floats): it has
    # its own bin, apart from 0.285, so ½|1 − .29| + ½|0 − .285| rather than |½ − .2875|
    assert expected_calibration_error([0.29, 0.285], [1, 0], bins=100) == pytest.approx(0.4975)


def test_a_calibrated_forecaster_has_a_small_ece_and_a_confident_wrong_one_a_large_one():
    rng = np.random.default_rng(0)
    prob = rng.random(200_000)
    truth = rng.random(prob.size) < prob  # each value is the frequency it claims
    assert expected_calibration_error(prob, truth) < 0.005
    assert expected_calibration_error(np.where(truth, 0.0, 1.0), truth) == pytest.approx(1.0)


def test_error_detection_auroc_equals_a_count_over_pairs():
    rng = np.random.default_rng(1)
    u = rng.integers(0, 5, 300).astype(float)  # many ties
    e = rng.random(300) < 0.3
    wrong, right = u[e], u[~e]
    pairs = (wrong[:, None] > right[None, :]).sum() + 0.5 * (wrong[:, None] == right[None, :]).sum()
    assert error_detection_auroc(u, e) == pytest.approx(pairs / (len(wrong) * len(right)))
    assert np.isnan(error_detection_auroc(u, np.zeros(300, bool)))


def test_binary_entropy_in_bits():
    np.testing.assert_allclose(binary_entropy([0.0, 0.5, 1.0, 0.25]), [0.0, 1.0, 0.0, 0.8112781244591328])


def test_ece_equals_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    import torch

    rng = np.random.default_rng(2)
    prob = rng.random(5000)
    truth = rng.random(5000) < prob ** 2
    theirs = float(tm.binary_calibration_error(torch.from_numpy(prob), torch.from_numpy(truth.astype(np.int64)),
                                               n_bins=15, norm="l1"))
    assert expected_calibration_error(prob, truth, bins=15) == pytest.approx(theirs, abs=1e-6)


def test_truth_errors_and_probabilities_outside_their_sets_are_refused():
    truth = np.zeros((6, 6, 6), bool)
    truth[2:4, 2:4, 2:4] = True
    prob = np.where(truth, 0.9, 0.1)
    with pytest.raises(ValueError, match="truth: a mask holds 0 and 1"):
        brier_score(prob, np.where(truth, 2, 0))  # label 2 was read as 1
    with pytest.raises(ValueError, match=r"prob \(2, 3\) and truth \(3, 2\) differ in shape"):
        expected_calibration_error(np.full((2, 3), 0.5), np.ones((3, 2)))  # the same size was enough
    with pytest.raises(ValueError, match="uncertainty holds a value that is not finite"):
        error_detection_auroc(np.where(truth, np.nan, 0.5), np.roll(truth, 1, 0))
    with pytest.raises(ValueError, match=r"prob must hold probabilities in \[0, 1\], got nan"):
        binary_entropy([np.nan, 0.5])  # NaN and 1.5 came out as 0 bits, "certain"
    with pytest.raises(ValueError, match=r"got 1.5"):
        binary_entropy([1.5])
    with pytest.raises(ValueError, match="bins must be an integer >= 1, got 2.5"):
        expected_calibration_error(prob, truth, bins=2.5)
