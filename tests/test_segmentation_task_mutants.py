"""A mutation pass over the segmentation task's scoring and models (evaluation.py, decision.py,
model.py, unet_baseline.py, panels.py, job.py): each test kills mutants the other files let live,
against a hand computation, a brute force or an ideal model built here. No training: the run's
evaluation is driven with ideal models whose p(x_0 | x_t, image) is known, on a synthetic data
set of a few small anisotropic (1 x 1 x 2.5 mm) block cases read as stored, so that part of the
grid lies outside the image and part of the image outside the grid."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import ndimage

from bindiff.config import RecipeError, load_recipe
from bindiff.core import BernoulliProcess, BinomialDiffusion
from bindiff.tasks import base
from bindiff.tasks.segmentation import job
from bindiff.tasks.segmentation import model as model_module
from bindiff.tasks.segmentation.data import prepare_data
from bindiff.tasks.segmentation.decision import expected_dice_mask
from bindiff.tasks.segmentation.evaluation import case_means, score_case
from bindiff.tasks.segmentation.unet_baseline import DirectSegmenter

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "hippocampus_segmentation.yaml"
SPACING = (1.0, 1.0, 2.5)


# -- by-hand helpers (none of them calls the code under test) ------------------------------------------------
def _entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def _dice(a, b):
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    both = a.sum() + b.sum()
    return 1.0 if both == 0 else 2 * (a & b).sum() / both


def _ece(p, y, bins):
    total = 0.0
    for k in range(bins):
        inside = (p >= k / bins) & ((p < (k + 1) / bins) if k < bins - 1 else (p <= 1))
        if inside.any():
            total += inside.sum() / p.size * abs(y[inside].mean() - p[inside].mean())
    return total


def _auroc(u, wrong):
    if not wrong.any() or wrong.all():
        return float("nan")
    pairs = u[wrong][:, None] - u[~wrong][None, :]
    return float(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size)


def _best_candidate(p):
    """The documented rule by brute force: of every subset S (the empty one scoring Π(1 − p)),
    the one of largest 2 Σ_S p / (|S| + Σ p)."""
    best, best_value = None, -1.0
    for bits in itertools.product([False, True], repeat=p.size):
        s = np.array(bits)
        value = np.prod(1 - p) if not s.any() else 2 * p[s].sum() / (s.sum() + p.sum())
        if value > best_value:
            best, best_value = s, value
    return best


def _expected_dice_by_hand(p):
    """The same rule for a large map, written out: the top k by probability for the k of the largest
    ratio, or nothing where Π(1 − p) beats it."""
    order = sorted(range(p.size), key=lambda i: -p[i])
    total, running, best_k, best_ratio = p.sum(), 0.0, 0, -1.0
    for k, i in enumerate(order, start=1):
        running += p[i]
        ratio = 2 * running / (k + total)
        if ratio > best_ratio:
            best_k, best_ratio = k, ratio
    mask = np.zeros(p.size, bool)
    if total > 0 and np.prod(1 - p) < best_ratio:
        mask[order[:best_k]] = True
    return mask


def _surface_mm(m):
    eroded = ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return np.argwhere(m & ~eroded) * np.asarray(SPACING)


def _hd95_by_hand(a, b):
    pa, pb = _surface_mm(a), _surface_mm(b)
    d = np.sqrt(((pa[:, None] - pb[None]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


# -- the synthetic data set ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """Five 10 x 9 x 6 cases of 1 x 1 x 2.5 mm voxels, a 4 x 4 x 3 block each, placed on a 12 x 8 x 8
    grid: x and z padded (grid voxels outside the image), y cropped (a scan row outside the grid)."""
    root = tmp_path_factory.mktemp("blocks")
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        label = np.zeros((10, 9, 6), np.uint8)
        label[3:7, 2:6, 1 + i % 2:4 + i % 2] = 1
        image = (100 + 60 * label + rng.normal(0, 5, label.shape)).astype(np.float32)
        affine = np.diag([*SPACING, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(root / "images" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labels" / f"c{i}.nii.gz"))
    config = load_recipe(RECIPE, [f"data.dataset={root}", "split.n_valid=1", "split.n_test=2", "grid.shape=[12,8,8]",
                                  "grid.crop=none", "labels.preset=custom", "labels.foreground=[1]",
                                  "output.progress=false", "denoiser.params.channels=[4,8]", "diffusion.steps=4",
                                  "segmentation.samples=3", "train.threads=1"])
    data = prepare_data(config, disable_progress=True)
    for record in data.part("test") + data.part("valid"):
        valid = record.image.transform.valid()
        assert record.outside == 0 and 0 < valid.sum() < valid.size  # the whole block inside; padding outside
    return config, data


# -- decision.py --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [0.08, 0.3, 0.6, 1.0])
def test_the_expected_dice_mask_is_the_best_candidate_by_brute_force_the_empty_mask_included(scale):
    rng = np.random.default_rng(int(scale * 100))
    chosen_empty = 0
    for _ in range(12):
        p = rng.random(7) * scale
        wanted = _best_candidate(p)
        np.testing.assert_array_equal(expected_dice_mask(p), wanted, err_msg=str(p))
        np.testing.assert_array_equal(expected_dice_mask(p.reshape(7, 1)), wanted.reshape(7, 1))
        chosen_empty += not wanted.any()
    if scale == 0.3:  # maps where the empty mask and a non-empty one each win
        assert 0 < chosen_empty < 12


def test_the_empty_mask_wins_only_where_its_probability_beats_the_ratio():
    # P(empty) = 0.5 against the top voxel's ratio 2·0.5/(1 + 0.5) = 0.67: the voxel is kept,
    # and a faint second voxel P(empty) = 0.5·0.9 = 0.45 against 1/1.6 = 0.625: still kept alone
    np.testing.assert_array_equal(expected_dice_mask(np.array([0.5, 0.0, 0.0])), [True, False, False])
    np.testing.assert_array_equal(expected_dice_mask(np.array([0.5, 0.1])), [True, False])
    # P(empty) = 0.7 against 2·0.3/1.3 = 0.46: nothing
    assert not expected_dice_mask(np.array([0.3, 0.0])).any()


# -- evaluation.py: score_case and case_means ---------------------------------------------------------------
def test_score_case_figures_by_hand_on_anisotropic_voxels(blocks):
    """A prediction one z-slice thicker than the truth, a known map and uncertainty: Dice, HD95 in mm,
    the signed volume error, ECE, Brier, error AUROC and mean uncertainty worked out here."""
    config, data = blocks
    from bindiff.adapters.masks import load_region
    from bindiff.tasks.masks.data import resolve_preset

    record = data.part("test")[0]
    truth, _ = load_region(record.case, resolve_preset(config, data.layout), data.region)
    grid = record.image.transform.grid_shape
    valid = record.image.transform.valid().reshape(-1)
    y = record.mask.reshape(-1).astype(bool)
    pred = record.mask.astype(bool).copy()
    z = np.flatnonzero(pred.any((0, 1)))
    pred[..., z[-1] + 1] = pred[..., z[-1]]  # one slice thicker: 16 voxels of 2.5 mm³ too many
    pred = pred.reshape(-1)
    assert not (pred & ~valid).any() and pred.sum() == y.sum() + 16
    rng = np.random.default_rng(1)
    prob = np.where(pred, rng.uniform(0.55, 0.95, pred.size), rng.uniform(0.0, 0.45, pred.size))
    prob[~valid] = 0.9  # beyond the image: never read
    uncertainty = rng.uniform(0, 1, prob.size)
    cfg = {**config["segmentation"], "decision": "threshold", "threshold": 0.5, "calibration_bins": 7}
    row, grid_mask, volume, _ = score_case(prob, uncertainty, record, truth, cfg)
    assert volume.shape == truth.shape and int(volume.sum()) == int(pred.sum())
    assert row["dice"] == pytest.approx(_dice(pred, y), abs=1e-12)
    hd_mm = _hd95_by_hand(pred.reshape(grid), y.reshape(grid))
    assert hd_mm == pytest.approx(2.5) and row["hd95_mm"] == pytest.approx(hd_mm)  # in mm: 1 voxel is 2.5 mm in z
    assert row["volume_error_ml"] == pytest.approx(16 * 2.5 / 1000)  # prediction − truth: over-segmented
    assert (row["empty_prediction"], row["empty_reference"]) == (False, False)
    p, u = prob[valid], uncertainty[valid]
    assert row["ece"] == pytest.approx(_ece(p, y[valid], 7), abs=1e-12)
    assert row["brier"] == pytest.approx(np.mean((p - y[valid]) ** 2), abs=1e-12)
    assert row["error_auroc"] == pytest.approx(_auroc(u, pred[valid] != y[valid]), abs=1e-12)
    assert row["mean_uncertainty"] == pytest.approx(u.mean(), abs=1e-12)
    np.testing.assert_array_equal(grid_mask, pred)


def test_the_expected_dice_decision_reads_the_voxels_inside_the_image_alone(blocks):
    """A map high beyond the image (where a model still answers) must not move the mask decided
    inside it: the rule's total and ratio are over the image's voxels."""
    config, data = blocks
    record = data.part("test")[1]
    valid = record.image.transform.valid().reshape(-1)
    y = record.mask.reshape(-1).astype(bool)
    prob = np.where(y, 0.9, 0.02)
    prob[np.flatnonzero(valid & ~y)[:30]] = 0.4  # a rim of doubtful voxels the rule keeps
    prob[~valid] = 0.97
    cfg = {**config["segmentation"], "decision": "expected_dice"}
    from bindiff.adapters.masks import load_region
    from bindiff.tasks.masks.data import resolve_preset

    truth, _ = load_region(record.case, resolve_preset(config, data.layout), data.region)
    uncertainty = _entropy(prob)
    row, grid_mask, _, _ = score_case(prob, uncertainty, record, truth, cfg)
    inside = np.zeros(prob.size, bool)
    inside[valid] = _expected_dice_by_hand(prob[valid])
    assert inside.sum() == y.sum() + 30  # the rim is kept under the image's own voxels
    np.testing.assert_array_equal(grid_mask[valid], inside[valid])
    assert row["error_auroc"] == pytest.approx(_auroc(uncertainty[valid], inside[valid] != y[valid]), abs=1e-12)


def _row(dice, ece, brier, auroc, unc):
    return {"dice": dice, "iou": dice / (2 - dice), "hd95_mm": 1.0, "assd_mm": 1.0, "surface_dice": 1.0,
            "volume_error_ml": 0.0, "empty_prediction": False, "empty_reference": False, "ece": ece, "brier": brier,
            "error_auroc": auroc, "mean_uncertainty": unc}


def test_case_means_leave_an_undefined_auroc_out_and_count_the_rest():
    rows = [_row(0.9, 0.01, 0.02, 0.8, 0.1), _row(0.5, 0.05, 0.04, float("nan"), 0.3),
            _row(0.1, 0.30, 0.20, 0.6, 0.8)]
    means = case_means(rows)
    assert means["dice"] == pytest.approx(0.5) and means["cases"] == 3
    assert means["ece"] == pytest.approx(0.12) and means["brier"] == pytest.approx(0.26 / 3)
    assert means["mean_uncertainty"] == pytest.approx(0.4)  # (0.1 + 0.3 + 0.8) / 3: a mean, not the median 0.3
    assert means["error_auroc"] == pytest.approx(0.7) and means["error_auroc_cases"] == 2
    none = case_means([_row(1.0, 0.0, 0.0, float("nan"), 0.0)])  # no wrong voxel: undefined, not 0
    assert np.isnan(none["error_auroc"]) and none["error_auroc_cases"] == 0


# -- model.py: the probability maps -------------------------------------------------------------------------
def _features(cond, dim):
    """What the ideal models read of the image: its first channel plus a quarter of the others."""
    channels = cond.reshape(len(cond), -1, dim)
    return channels[:, 0] + 0.25 * channels[:, 1:].sum(1)


class _IdealDenoiser(torch.nn.Module):
    """p(x_0 | x_t, image) = σ(w · image + o_r), known for reverse run r (counted from the calls:
    ``calls_per_run`` each) whatever x_t and t: every step's p̂(x_0) is that of its run."""

    def __init__(self, dim, offsets, calls_per_run, weight=1.5):
        super().__init__()
        self.dim, self.offsets, self.calls_per_run, self.weight, self.calls = dim, offsets, calls_per_run, weight, 0

    def forward(self, x_t, t, cond):
        run = self.calls // self.calls_per_run
        self.calls += 1
        return _features(cond, self.dim) * self.weight + self.offsets[run]


def _ideal_maps(x, offsets, weight=1.5):
    """Each run's p̂ as the ideal denoiser computes it (float32), then their mean and population variance."""
    runs = np.stack([torch.sigmoid(torch.from_numpy(x) * weight + o).double().numpy() for o in offsets])
    return runs.mean(0), ((runs - runs.mean(0)) ** 2).mean(0)


class _IdealRows(torch.nn.Module):
    """As ``_IdealDenoiser`` for one case's runs side by side: row j of a call block (``steps``
    calls on the same rows) is run ``done + j``, where ``done`` counts the rows of earlier blocks."""

    def __init__(self, dim, offsets, steps):
        super().__init__()
        self.dim, self.offsets, self.steps, self.calls, self.done, self.rows = dim, offsets, steps, 0, 0, 0

    def forward(self, x_t, t, cond):
        if self.calls and self.calls % self.steps == 0:
            self.done += self.rows
        self.calls, self.rows = self.calls + 1, len(cond)
        offsets = torch.tensor(self.offsets[self.done:self.done + len(cond)], dtype=cond.dtype)[:, None]
        return cond * 1.5 + offsets


@pytest.mark.parametrize("average", ["final", "trajectory"])
def test_the_map_averages_the_runs_of_each_case_over_several_batches(average):
    images = torch.from_numpy(np.random.default_rng(2).normal(0, 1, (3, 20)).astype(np.float32))
    offsets = [-1.0, 0.5, 2.0]
    denoiser = _IdealDenoiser(20, offsets, calls_per_run=2 * 4)  # two batches of four steps per run
    model = BinomialDiffusion(denoiser, BernoulliProcess.from_schedule("jsd", 4))
    cfg = {"samples": 3, "steps": None, "average": average}
    mean, variance = model_module.sample_probabilities(model, images, cfg, torch.Generator().manual_seed(0), 2)
    assert denoiser.calls == 3 * 2 * 4
    want_mean, want_var = _ideal_maps(images.numpy(), offsets)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(variance, want_var, rtol=1e-5, atol=1e-12)
    # one case's runs side by side, two per call (`bindiff segment`): the same map and spread
    offsets = [-1.0, 0.5, 2.0, -0.3, 1.1]
    denoiser = _IdealRows(20, offsets, steps=4)
    model = BinomialDiffusion(denoiser, BernoulliProcess.from_schedule("jsd", 4))
    mean, variance = model_module.sample_case_probabilities(model, images[1:2], {**cfg, "samples": 5},
                                                            torch.Generator().manual_seed(0), 2)
    assert denoiser.calls == 3 * 4 and denoiser.done + denoiser.rows == 5  # calls of 2, 2 and 1 runs
    want_mean, want_var = _ideal_maps(images[1].numpy(), offsets)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(variance, want_var, rtol=1e-5, atol=1e-12)


class _ImageLogits(torch.nn.Module):
    """A U-Net stand-in whose logits are a known function of the image: 3 · image − 1 (``_features``)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, x_t, t, cond):
        return 3 * _features(cond, self.dim) - 1 + 0 * x_t


def test_the_unet_maps_come_back_one_per_image_in_order():
    images = torch.from_numpy(np.random.default_rng(3).normal(0, 1, (3, 10)).astype(np.float32))
    prob = model_module.unet_probabilities(DirectSegmenter(_ImageLogits(10)), images, 2)
    assert prob.shape == (3, 10) and prob.dtype == np.float64
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-(3 * images.numpy().astype(np.float64) - 1))), rtol=1e-6)


# -- unet_baseline.py and the models' recipe keys -----------------------------------------------------------
def test_the_baselines_loss_weighs_soft_dice_by_its_recipe_weight():
    cond = torch.from_numpy(np.random.default_rng(4).normal(0, 1, (2, 6)).astype(np.float32))
    x0 = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0]], dtype=torch.float32)
    p = 1 / (1 + np.exp(-(3 * cond.numpy().astype(np.float64) - 1)))
    y = x0.numpy().astype(np.float64)
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(1)
    dice = 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    loss = DirectSegmenter(_ImageLogits(6), dice_weight=2.5)(x0, cond=cond).loss.item()
    assert loss == pytest.approx(float(np.mean(bce + 2.5 * dice)), rel=1e-5)


def test_the_baseline_takes_its_own_dice_weight_and_the_recipes_ensemble(blocks):
    config, data = blocks
    from bindiff.core.denoisers import DenoiserEnsemble

    recipe = load_recipe(RECIPE, ["grid.shape=[12,8,8]", "denoiser.params.channels=[4,8]", "baseline.dice_weight=2.5",
                                  "diffusion.dice_weight=1.0", "denoiser.members=2"])
    baseline = model_module.build_unet_baseline(recipe, 12 * 8 * 8)
    assert baseline.dice_weight == 2.5
    assert isinstance(baseline.denoiser, DenoiserEnsemble) and len(baseline.denoiser.members) == 2
    for bad, message in ((("bogus", 1), "denoiser.params: denoiser 'unet' has no parameter(s) ['bogus']"),
                         (("channels", [4, -8]), "denoiser.params: channels[1] must be an integer >= 1, got -8")):
        edited = load_recipe(RECIPE, ["grid.shape=[12,8,8]", "denoiser.params.channels=[4,8]"])
        edited["denoiser"]["params"][bad[0]] = bad[1]  # as a run's config.yaml edited by hand reads
        with pytest.raises(RecipeError) as caught:
            model_module.build_unet_baseline(edited, 12 * 8 * 8)
        assert str(caught.value).startswith(message)


def test_reverse_steps_equal_to_the_trained_ones_are_accepted(blocks):
    config, _ = blocks
    job.TASK.check_recipe({**config, "segmentation": {**config["segmentation"], "steps": 4}})
    with pytest.raises(RecipeError, match="segmentation.steps = 5 exceeds diffusion.steps = 4"):
        job.TASK.check_recipe({**config, "segmentation": {**config["segmentation"], "steps": 5}})


# -- job.py: the validators ---------------------------------------------------------------------------------
class _ValidData:
    def __init__(self, masks, images):
        self._masks, self._images = masks, images
        self.split = {"valid": [f"v{i}" for i in range(len(masks))]}
        self.dim = masks.shape[1]

    def masks(self, part):
        assert part == "valid"
        return sp.csr_matrix(self._masks.astype(np.float32))

    def images(self, part):
        assert part == "valid"
        return self._images


def test_the_validation_dice_is_the_pooled_dice_of_the_half_threshold():
    truth = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 0, 0]])
    prob = np.array([[0.9, 0.2, 0.7, 0.1, 0.6], [0.1, 0.8, 0.5, 0.55, 0.0]], dtype=np.float32)
    pred = prob >= 0.5  # ½ is kept: 4 right of 6 predicted, 5 true, 2 · 4 / 11 pooled over the cases
    data = _ValidData(truth, np.zeros((2, 5), np.float32))
    got = job._dice_validator(data, "cpu", lambda images: torch.from_numpy(prob))()
    assert got["dice"] == pytest.approx(_dice(pred, truth)) == pytest.approx(8 / 11)
    empty = _ValidData(np.zeros((1, 3)), np.zeros((1, 3), np.float32))  # nothing to find, nothing found
    assert job._dice_validator(empty, "cpu", lambda images: torch.zeros(1, 3))()["dice"] == 1.0

    class Unet:
        def probabilities(self, images):
            return torch.from_numpy(prob)

    assert job._unet_validator(Unet(), data, {}, "cpu", None)()["dice"] == pytest.approx(8 / 11)


def test_the_diffusion_validator_calls_once_at_t_T_from_fair_coin_noise():
    calls = []

    class Model:
        process = BernoulliProcess.from_schedule("jsd", 4)

        def predict_x0(self, noise, t, cond=None):
            calls.append((noise.clone(), t, cond))
            return torch.zeros(noise.shape)

    data = _ValidData(np.zeros((2, 400)), np.ones((2, 400), np.float32))
    validate = job._diffusion_validator(Model(), data, {"seed": 3}, "cpu", None)
    validate(), validate()
    (first, t, cond), (second, _, _) = calls
    assert t == 4 and torch.equal(cond, torch.ones(2, 400)) and torch.equal(first, second)
    assert set(first.unique().tolist()) == {0.0, 1.0} and 0.45 < float(first.mean()) < 0.55


# -- job.py: the run's evaluation with ideal models ---------------------------------------------------------
OFFSETS = [-1.0, 0.5, 2.0]


@pytest.fixture
def evaluate(blocks, monkeypatch, tmp_path):
    """run_segmentation on the block cases with the ideal diffusion (three runs of known p̂) and the
    ideal U-Net (σ(3 · image − 1)); returns a function of (overrides, checkpoint) giving the result,
    the summary, the calls to load_trained and load_data and the panels drawn."""
    config, data = blocks
    record = {"trained": [], "parts": [], "panels": []}
    dim = data.dim

    def load_trained(task, run_dir, checkpoint="best", device=None, companion=None):
        record["trained"].append((companion, checkpoint))
        payload = {"dim": dim, "epoch": 7 if companion else 5, "best": {"metric": "dice", "value": 0.5, "epoch": 3}}
        if companion == "unet":
            return config, payload, DirectSegmenter(_ImageLogits(dim))
        calls_per_run = 4  # one batch of cases (eval.batch_size 8) of four steps per run
        return config, payload, BinomialDiffusion(_IdealDenoiser(dim, OFFSETS, calls_per_run),
                                                  BernoulliProcess.from_schedule("jsd", 4))

    def load_data(folder, cfg, parts=None, data_dir=None):
        record["parts"].append(parts)
        return data

    monkeypatch.setattr(base, "load_trained", load_trained)
    monkeypatch.setattr(job, "load_data", load_data)
    monkeypatch.setattr(job, "segmentation_panel", lambda *args, **kwargs: record["panels"].append((args, kwargs)))
    count = iter(range(100))

    def run(overrides=(), checkpoint="best"):
        for key in record:
            record[key].clear()
        out = tmp_path / f"out{next(count)}"
        result = job.run_segmentation(tmp_path / "run", overrides=list(overrides), checkpoint=checkpoint, out_dir=out)
        summary = json.loads((out / "segmentation" / "summary.json").read_text())
        return result, summary, out, record
    return run


def _expected_rows(records, cfg_over):
    """Per case and model: the masks and figures worked out here from the ideal models' maps."""
    threshold, decision = cfg_over.get("threshold", 0.5), cfg_over.get("decision", "threshold")
    bins, uncertainty_kind = cfg_over.get("calibration_bins", 10), cfg_over.get("uncertainty", "entropy")
    out = []
    for record in records:
        grid = record.image.grid.astype(np.float32)
        x = (torch.from_numpy(grid[0]) + 0.25 * torch.from_numpy(grid[1:]).sum(0)).numpy().reshape(-1)
        valid = record.image.transform.valid().reshape(-1)
        y = record.mask.reshape(-1).astype(bool)
        mean, variance = _ideal_maps(x, OFFSETS)
        unet = torch.sigmoid(3 * torch.from_numpy(x) - 1).double().numpy()
        maps = {"diffusion": (mean, _entropy(mean) if uncertainty_kind == "entropy" else variance),
                "unet": (unet, _entropy(unet))}
        row = {}
        for name, (prob, unc) in maps.items():
            p, u = prob[valid], unc[valid]
            mask = np.zeros(prob.size, bool)
            mask[valid] = _expected_dice_by_hand(p) if decision == "expected_dice" else p >= threshold
            row[name] = {"mask": mask, "uncertainty": unc * valid, "dice": _dice(mask, y), "ece": _ece(p, y[valid], bins),
                         "brier": float(np.mean((p - y[valid]) ** 2)), "error_auroc": _auroc(u, mask[valid] != y[valid]),
                         "mean_uncertainty": float(u.mean())}
        out.append(row)
    return out


def _check_rows(summary, records, expected):
    assert [r["case_id"] for r in summary["per_case"]] == [r.case_id for r in records]
    for got, want in zip(summary["per_case"], expected):
        for name in ("diffusion", "unet"):
            for key in ("dice", "ece", "brier", "error_auroc", "mean_uncertainty"):
                value = float("nan") if got[name][key] is None else got[name][key]  # an undefined AUROC is null
                assert value == pytest.approx(want[name][key], abs=1e-9, nan_ok=True), (got["case_id"], name, key)


def test_the_runs_evaluation_scores_each_models_own_map_as_worked_out_by_hand(evaluate, blocks, monkeypatch):
    """Threshold 0.3, 7 bins, entropy: every per-case figure, the means, the paired test over the
    five paired metrics (diffusion − unet) in summary.json and metrics.json, the NIfTI mask and
    uncertainty (the diffusion's), the panels (eval.panels of them: each model's own mask, the
    diffusion's uncertainty inside the image, the truth)."""
    config, data = blocks
    records = data.part("test")
    for rec in records:  # a second image channel: every channel reaches the models, the panel shows the first
        second = np.random.default_rng(7).normal(0, 1, rec.image.grid.shape[1:]).astype(rec.image.grid.dtype)
        monkeypatch.setattr(rec.image, "grid", np.concatenate([rec.image.grid, second[None]]))
    overrides = {"threshold": 0.3, "calibration_bins": 7}
    result, summary, out, record = evaluate([f"segmentation.{k}={v}" for k, v in overrides.items()] + ["eval.panels=1"])
    expected = _expected_rows(records, overrides)
    assert any(not np.isnan(w["diffusion"]["error_auroc"]) for w in expected)
    _check_rows(summary, records, expected)
    assert expected[0]["diffusion"]["dice"] != pytest.approx(expected[0]["unet"]["dice"])  # the models differ
    for name in ("diffusion", "unet"):
        for key in ("dice", "ece", "brier", "mean_uncertainty"):
            assert result["test"][name][key] == pytest.approx(np.mean([w[name][key] for w in expected]), abs=1e-9)
        assert summary["mean"][name]["dice"] == result["test"][name]["dice"]
    paired_keys = {"dice", "iou", "hd95_mm", "ece", "brier"}
    assert set(result["paired"]) == paired_keys and paired_keys <= set(summary["paired"])
    for key in ("dice", "ece", "brier"):
        diff = [w["diffusion"][key] - w["unet"][key] for w in expected]
        assert result["paired"][key]["mean_difference"] == pytest.approx(np.mean(diff), abs=1e-9)
        assert result["paired"][key] == summary["paired"][key]
    assert record["parts"] == [["test"]] and record["trained"] == [(None, "best"), ("unet", "best")]
    # NIfTI: the diffusion's mask and its entropy, on the scan's voxels
    for rec, want in zip(records, expected):
        transform = rec.image.transform
        for kind, grid_values in (("mask", want["diffusion"]["mask"]), ("uncertainty", want["diffusion"]["uncertainty"])):
            written = rec.geometry.to_canonical(np.asarray(nib.load(str(
                out / "segmentation" / "nifti" / f"{rec.case_id}_{kind}.nii.gz")).dataobj, dtype=np.float64))
            np.testing.assert_allclose(written, transform.from_grid(grid_values.reshape(transform.grid_shape)),
                                       atol=1e-6, err_msg=kind)
    # the panels: eval.panels = 1 of them
    assert len(record["panels"]) == 1
    (image, truth, masks, uncertainty, path), kwargs = record["panels"][0]
    rec, want = records[0], expected[0]
    grid = rec.image.transform.grid_shape
    np.testing.assert_array_equal(image, rec.image.grid[0])
    np.testing.assert_array_equal(truth, rec.mask.astype(bool))
    assert list(masks) == ["diffusion", "unet"]
    for name in masks:
        np.testing.assert_array_equal(masks[name], want[name]["mask"].reshape(grid), err_msg=name)
    np.testing.assert_allclose(uncertainty, want["diffusion"]["uncertainty"].reshape(grid), atol=1e-12)
    assert path.name == f"{rec.case_id}.png"
    assert kwargs["title"] == (f"{rec.case_id}: diffusion Dice {want['diffusion']['dice']:.3f}, "
                               f"unet Dice {want['unet']['dice']:.3f}")


def test_the_variance_the_expected_dice_rule_another_part_and_checkpoint(evaluate, blocks):
    config, data = blocks
    overrides = {"uncertainty": "variance", "decision": "expected_dice"}
    result, summary, out, record = evaluate([f"segmentation.{k}={v}" for k, v in overrides.items()] + ["eval.part=valid"],
                                            checkpoint="last")
    records = data.part("valid")
    expected = _expected_rows(records, overrides)
    _check_rows(summary, records, expected)
    assert set(result) >= {"valid", "paired"} and "test" not in result and summary["cases"] == len(records)
    assert record["parts"] == [["valid"]] and record["trained"] == [(None, "last"), ("unet", "last")]
    assert result["checkpoint"]["diffusion"]["file"] == "checkpoints/last.pt"
    assert result["checkpoint"]["unet"] == {"file": "checkpoints/unet/last.pt", "epoch": 7, "selected_by": "dice",
                                            "best_value": 0.5, "best_epoch": 3}
    rec = records[0]
    written = rec.geometry.to_canonical(np.asarray(nib.load(str(
        out / "segmentation" / "nifti" / f"{rec.case_id}_uncertainty.nii.gz")).dataobj, dtype=np.float64))
    grid = rec.image.transform.grid_shape
    np.testing.assert_allclose(written, rec.image.transform.from_grid(expected[0]["diffusion"]["uncertainty"]
                                                                       .reshape(grid)), atol=1e-6)
    # eval.max_cases scores the first cases only
    result, summary, _, _ = evaluate(["eval.max_cases=1"])
    assert summary["cases"] == 1 == result["test"]["diffusion"]["cases"]


# -- panels.py ----------------------------------------------------------------------------------------------
class _Ax:
    def __init__(self):
        self.shown, self.contours, self.title, self.ylabel = [], [], None, None

    def imshow(self, data, **kwargs):
        self.shown.append((data, kwargs))
        return self

    def contour(self, plane, **kwargs):
        self.contours.append(np.asarray(plane))

    def set_xticks(self, *args):
        pass

    set_yticks = set_xticks

    def set_title(self, title, **kwargs):
        self.title = title

    def set_ylabel(self, label, **kwargs):
        self.ylabel = label


class _Figure:
    """What segmentation_panel draws, recorded instead of rendered."""
    made: list = []

    def __init__(self, figsize=None):
        self.axes, self.title = None, None
        _Figure.made.append(self)

    def subplots(self, rows, cols, squeeze=False):
        self.axes = np.empty((rows, cols), dtype=object)
        for index in np.ndindex(rows, cols):
            self.axes[index] = _Ax()
        return self.axes

    def colorbar(self, *args, **kwargs):
        pass

    def suptitle(self, title, **kwargs):
        self.title = title

    def tight_layout(self):
        pass

    def savefig(self, path, **kwargs):
        Path(path).write_bytes(b"png")


def _plane(volume, axis, index):  # rows: the later axis, flipped (anterior / superior up)
    return np.flipud(np.take(volume, index, axis=axis).T)


def _draw(monkeypatch, tmp_path, truth, masks):
    import matplotlib.figure

    from bindiff.tasks.segmentation.panels import segmentation_panel

    _Figure.made.clear()
    monkeypatch.setattr(matplotlib.figure, "Figure", _Figure)
    rng = np.random.default_rng(6)
    image, uncertainty = rng.normal(0, 1, (9, 8, 7)), rng.uniform(0, 0.6, (9, 8, 7))
    segmentation_panel(image, truth, masks, uncertainty, tmp_path / "c.png", title="c")
    (fig,) = _Figure.made
    return fig, image, uncertainty


def _block(corner, size=3):
    m = np.zeros((9, 8, 7), bool)
    m[tuple(slice(c, c + size) for c in corner)] = True
    return m


def _check_panel(fig, image, uncertainty, truth, masks, centre):
    columns = ["image", *(["truth"] if truth is not None else []), *masks, "uncertainty"]
    assert fig.axes.shape == (3, len(columns))
    assert [ax.title for ax in fig.axes[0]] == columns and all(ax.title is None for ax in fig.axes[1:].ravel())
    low, high = np.percentile(image, [1, 99])
    for row, (plane, axis) in enumerate((("sagittal", 0), ("coronal", 1), ("axial", 2))):
        index = centre[axis]
        truth_plane = None if truth is None else _plane(truth.astype(float), axis, index)
        assert fig.axes[row, 0].ylabel == f"{plane} {index}"
        for col, name in enumerate(columns):
            ax = fig.axes[row, col]
            if name == "uncertainty":
                (data, kwargs), = ax.shown
                np.testing.assert_array_equal(data, _plane(uncertainty, axis, index))
                assert kwargs["vmin"] == 0 and kwargs["vmax"] == pytest.approx(uncertainty.max())
                assert not ax.contours
                continue
            data, kwargs = ax.shown[0]
            np.testing.assert_array_equal(data, _plane(image, axis, index))
            assert (kwargs["vmin"], kwargs["vmax"]) == pytest.approx((low, high))
            if name == "image":
                assert len(ax.shown) == 1 and not ax.contours
                continue
            overlay = ax.shown[1][0]
            shown = truth_plane if name == "truth" else _plane(masks[name].astype(float), axis, index)
            np.testing.assert_array_equal(np.ma.getmaskarray(overlay), shown == 0)  # only the mask is coloured
            np.testing.assert_array_equal(overlay.filled(0), shown)
            outlined = name != "truth" and truth_plane is not None and truth_plane.any()
            assert len(ax.contours) == int(outlined), (name, plane)
            if outlined:
                np.testing.assert_array_equal(ax.contours[0], truth_plane)
    assert fig.title == "c" + ("  (cyan outline: the truth)" if truth is not None else "")


def test_a_panel_cuts_every_column_through_the_first_models_mask_centre(monkeypatch, tmp_path):
    truth = _block((5, 1, 2))  # the sagittal plane x = 2 misses it: nothing to outline there
    masks = {"diffusion": _block((1, 2, 1)), "unet": _block((4, 4, 3), size=2)}
    fig, image, uncertainty = _draw(monkeypatch, tmp_path, truth, masks)
    _check_panel(fig, image, uncertainty, truth, masks, centre=(2, 3, 2))  # the diffusion block's centre
    assert (tmp_path / "c.png").is_file()


def test_a_panel_whose_first_mask_is_empty_cuts_through_the_truth_or_the_middle(monkeypatch, tmp_path):
    truth = _block((5, 1, 2))
    masks = {"diffusion": np.zeros((9, 8, 7), bool), "unet": _block((1, 4, 3), size=2)}
    fig, image, uncertainty = _draw(monkeypatch, tmp_path, truth, masks)
    _check_panel(fig, image, uncertainty, truth, masks, centre=(6, 2, 3))  # the truth's centre
    # a scan without a label (`bindiff segment`): no truth column, the middle of the volume
    masks = {"diffusion": np.zeros((9, 8, 7), bool)}
    fig, image, uncertainty = _draw(monkeypatch, tmp_path, None, masks)
    _check_panel(fig, image, uncertainty, None, masks, centre=(4, 4, 3))
