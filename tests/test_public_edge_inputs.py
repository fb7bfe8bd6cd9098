"""Edge inputs to the metrics and the core's public functions: each result is checked against a hand
or brute-force computation, and each refusal names the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.core.count import tilt_to_count
from bindiff.core.denoisers import DENOISERS, MLPDenoiser, build_denoiser, register_denoiser
from bindiff.core.process import BernoulliProcess
from bindiff.core.scheduler import ReverseScheduler
from bindiff.core.unet import UNetDenoiser
from bindiff.metrics.calibration import brier_score, error_detection_auroc, expected_calibration_error
from bindiff.metrics.ranking import evaluate_ranking, merge_reports, recall_at_k, topk_excluding
from bindiff.metrics.segmentation import dice, hd95, segmentation_metrics, surface_dice


# --------------------------------------------------------------------------- ranking


def test_integer_scores_beyond_2_53_rank_exactly():
    scores = [2 ** 60, 2 ** 60 + 1, 3, -(2 ** 62), 2 ** 60 + 1, 2 ** 53 + 1, 2 ** 53]
    excluded = {4}
    truth = sorted((i for i in range(len(scores)) if i not in excluded), key=lambda i: (-scores[i], i))
    exclude = sp.csr_matrix(([1], ([0], [4])), shape=(1, len(scores)))
    got = topk_excluding(torch.tensor([scores]), exclude, 6)
    assert got.tolist() == [truth]  # float64 tied 2**60 with 2**60 + 1 and 2**53 with 2**53 + 1


def test_complex_scores_are_refused():
    with pytest.raises(TypeError, match="scores must be real"):
        topk_excluding(torch.tensor([[1 + 0j, 2 + 0j]]), None, 1)


@pytest.mark.parametrize("bad", [np.array([[-2, 0]]), np.array([[2 ** 64 - 1, 0]], dtype=np.uint64)])
def test_item_indices_below_minus_one_or_beyond_int64_are_refused(bad):
    target = sp.csr_matrix(np.array([[1, 0, 1]]))
    with pytest.raises(ValueError, match="topk_idx holds item index"):
        recall_at_k(bad, target, 2)  # each was an empty slot: recall 0.5 instead of an error
    assert recall_at_k(np.array([[-1, 0]]), target, 2).tolist() == [0.5]  # -1 stays the empty slot


def _report(rows, empty_users="drop", metrics=("recall@1",)):
    inputs = sp.csr_matrix(np.eye(3, dtype=np.float32)[rows])
    target = sp.csr_matrix(np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)[rows])
    return evaluate_ranking(lambda b: b @ torch.tensor([[0., 1, 0], [0, 0, 1], [1, 0, 0]]), inputs, inputs, target,
                            list(metrics), empty_users=empty_users)


def test_merge_reports_refuses_reports_of_other_policies_or_metrics():
    merged = merge_reports([_report([0, 1]), _report([2])])
    assert merged.mean["recall@1"] == 1.0  # user 0 scores item 1 first (a hit), user 2 item 0 (a hit)
    with pytest.raises(ValueError, match="empty_users"):  # the second's "zero" was read as "drop"
        merge_reports([_report([0, 1]), _report([2], empty_users="zero")])
    with pytest.raises(ValueError, match="metrics"):  # a KeyError naming one metric
        merge_reports([_report([0, 1], metrics=("recall@1", "hit@1")), _report([2])])


# --------------------------------------------------------------------------- segmentation and calibration


def test_tensors_in_bfloat16_or_with_a_gradient_are_read_as_numbers():
    pred = torch.tensor([[1., 1, 0], [0, 0, 0]])
    truth = np.array([[1, 0, 0], [0, 0, 1]])
    assert dice(pred.bfloat16(), truth) == 0.5  # 2·1 / (2 + 2)
    assert dice(pred.requires_grad_(), truth) == 0.5
    prob = torch.tensor([0.25, 0.75], requires_grad=True)
    assert brier_score(prob, [0, 1]) == 0.0625  # ((0.25)² + (0.25)²) / 2
    assert expected_calibration_error(prob.detach().bfloat16(), [0, 1], bins=2) == 0.25
    assert error_detection_auroc(torch.tensor([0.1, 0.9], requires_grad=True), [0, 1]) == 1.0


def test_a_mask_of_objects_or_probabilities_of_text_is_refused_naming_it():
    with pytest.raises(ValueError, match="prediction: a mask holds 0 and 1"):
        dice(np.array([None, 1]), np.array([1, 0]))  # an AttributeError from the message itself
    with pytest.raises(ValueError, match="prob must hold probabilities"):
        expected_calibration_error(np.array(["0.5"]), [1])  # read as 0.5
    with pytest.raises(ValueError, match="uncertainty must hold real numbers"):
        error_detection_auroc([10 ** 400, 1], [1, 0])  # an OverflowError


@pytest.mark.parametrize("tolerance", [-1.0, float("nan"), "1", True])
def test_surface_dice_refuses_a_tolerance_that_is_no_distance(tolerance):
    a = np.zeros((4, 4), bool)
    a[1:3, 1:3] = True
    with pytest.raises(ValueError, match="tolerance_mm"):
        surface_dice(a, np.roll(a, 1, axis=0), tolerance_mm=tolerance)  # -1 and NaN gave 0 without a word
    with pytest.raises(ValueError, match="tolerance_mm"):
        segmentation_metrics(a * 0, a * 0, tolerance_mm=tolerance)  # not read where both are empty


def test_surface_dice_takes_a_0_d_tolerance():
    a = np.zeros((4, 4), bool)
    a[1:3, 1:3] = True
    b = np.roll(a, 1, axis=0)  # 2 of the 4 surface voxels of each lie on the other surface, the rest 1 mm off
    assert surface_dice(a, b, tolerance_mm=0.0) == 0.5
    for zero_d in (np.array(0.0), torch.tensor(0.0)):  # np.array(0.0) was taken before the check was added
        assert surface_dice(a, b, tolerance_mm=zero_d) == 0.5


@pytest.mark.parametrize("spacing", ["21", 2.0, (True, True)])
def test_hd95_refuses_a_spacing_that_lists_no_voxel_sizes(spacing):
    a = np.zeros((4, 4), bool)
    a[1, 1] = True
    b = np.zeros((4, 4), bool)
    b[3, 1] = True
    assert hd95(a, b, (2, 1)) == 4.0  # two rows of 2 mm
    with pytest.raises(ValueError, match="spacing must list one voxel size"):
        hd95(a, b, spacing)  # "21" was read as (2, 1); 2.0 a TypeError


# --------------------------------------------------------------------------- core


def test_tilt_of_integer_logits_returns_the_fractional_shift():
    out = tilt_to_count(torch.tensor([[1, 2, 3]]), torch.tensor([1.0]))
    assert out.dtype == torch.float32  # cast back to int64 it was [[-1, 0, 0]]
    assert math.isclose(torch.sigmoid(out.double()).sum().item(), 1.0, abs_tol=1e-6)
    assert torch.allclose(out[0, 1:] - out[0, :-1], torch.ones(2))  # one shift for the whole row
    with pytest.raises(TypeError, match="logits must be a torch.Tensor"):
        tilt_to_count(np.zeros((1, 3)), [1])


@pytest.mark.parametrize("t", [float("nan"), float("inf"), None, True, np.True_, np.array(True), torch.tensor(True)])
def test_scheduler_step_refuses_a_time_that_is_no_timestep_naming_t(t):
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 4))
    with pytest.raises(ValueError, match="t = "):
        scheduler.step(torch.zeros(1, 2), t, torch.zeros(1, 2))  # True was the time 1; the others int()'s errors


def test_scheduler_refuses_non_tensors_and_infinite_step_counts_naming_them():
    scheduler = ReverseScheduler(BernoulliProcess.from_schedule("jsd", 4))
    with pytest.raises(TypeError, match="model_output must be a torch.Tensor"):
        scheduler.step(np.zeros((1, 2)), 4, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="num_inference_steps"):
        scheduler.set_timesteps(float("inf"))  # an OverflowError naming nothing
    with pytest.raises(ValueError, match="timesteps"):
        scheduler.set_timesteps(timesteps=[float("inf"), 1])
    with pytest.raises(ValueError, match="timesteps must list"):
        scheduler.set_timesteps(timesteps=3)  # "'int' object is not iterable"
    with pytest.raises(ValueError, match="timesteps must be whole"):
        scheduler.set_timesteps(timesteps=[4, np.True_])  # numpy 2 names np.True_'s type "bool": time 1
    assert scheduler.set_timesteps(timesteps=[np.int64(4), torch.tensor(2)]) == [4, 2]


def test_register_denoiser_refuses_a_name_that_is_no_text():
    before = dict(DENOISERS)
    try:
        with pytest.raises(ValueError, match="non-empty string"):
            register_denoiser(5, MLPDenoiser)
        with pytest.raises(ValueError, match="needs a class"):
            register_denoiser("not_a_class", 5)
        with pytest.raises(ValueError, match="unknown denoiser 'nope'"):  # a TypeError once 5 was registered
            build_denoiser("nope", 3)
    finally:
        DENOISERS.clear()
        DENOISERS.update(before)


@pytest.mark.parametrize("dim", [0, 2.5, True])
def test_denoisers_refuse_a_vector_length_that_is_no_positive_integer(dim):
    with pytest.raises(ValueError, match="dim must be an integer"):
        MLPDenoiser(dim, hidden=[2])
    with pytest.raises(ValueError, match="dim must be an integer"):
        UNetDenoiser(dim, [1, 1], channels=[2])
    assert type(MLPDenoiser(np.int64(3), hidden=[2]).dim) is int  # a plain int, as a config needs


@pytest.mark.parametrize("dtype", [torch.uint16, torch.uint32])
def test_unsigned_scores_rank_as_their_values(dtype):
    """uint16 and uint32 scores raised torch's '"gt_cpu" not implemented'; uint64, which int64 cannot
    hold, is refused naming its dtype."""
    scores = torch.tensor([[3, 60000, 1, 7], [5, 5, 9, 0]])
    truth = [[1, 3, 0], [2, 0, 1]]  # by hand: highest first, ties in index order
    assert topk_excluding(scores.to(dtype), None, 3).tolist() == truth
    with pytest.raises(TypeError, match="uint64"):
        topk_excluding(scores.to(torch.uint64), None, 3)
