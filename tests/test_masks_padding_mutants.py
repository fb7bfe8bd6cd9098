"""The masks evaluations on cases that are padded and of different voxel sizes, against hand truths.

No earlier test runs these evaluations on a case smaller than its grid window (padded) or on cases of
different voxel sizes, so four mutants of the completion, denoising and generation evaluations survived: completion no longer telling the
model that the padding beyond a case's edge is known (cp5), denoising flipping voxels of the padding
too (d3), a generated sample written in another training case's frame than its nearest one (gn9), and
volumes in millilitres from the mean instead of the median grid-voxel volume (gn6).

Here seven tiny label maps, each smaller than a 16 x 16 x 14 grid placed without resampling
(``grid.mode: pad``) and each of its own shape, origin and voxel size (1 to 64 mm³), are read the
way a run reads them; a stand-in model records what the evaluation hands it. The padding, the flip
count, the written files and the volumes are worked out from the cases as written here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from bindiff.config import load_recipe
from bindiff.core.process import BernoulliProcess
from bindiff.tasks.masks.completion import evaluate_completion
from bindiff.tasks.masks.data import prepare_data
from bindiff.tasks.masks.denoising import evaluate_denoising
from bindiff.tasks.masks.evaluation import EvalContext
from bindiff.tasks.masks.generation import evaluate_generation
from bindiff.tasks.masks.job import make_validator

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "hippocampus_masks.yaml"
GRID = (16, 16, 14)
# per case: volume shape, the mask's box [lo, hi), voxel size (mm; voxel volumes 1, 2, 4, ... 64 mm³),
# origin (mm). Every box is a different size, so every mask is its own nearest training mask alone.
CASES = {
    "case0": ((10, 12, 8), ((3, 4, 2), (7, 8, 6)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
    "case1": ((11, 12, 9), ((3, 3, 2), (8, 9, 7)), (1.0, 1.0, 2.0), (10.0, -5.0, 3.0)),
    "case2": ((10, 13, 8), ((2, 4, 3), (8, 9, 6)), (1.0, 2.0, 2.0), (-20.0, 7.0, 1.5)),
    "case3": ((12, 11, 8), ((4, 3, 2), (9, 7, 5)), (2.0, 2.0, 2.0), (4.0, 4.0, -9.0)),
    "case4": ((9, 12, 10), ((2, 3, 3), (7, 10, 8)), (2.0, 2.0, 4.0), (30.0, 0.0, 2.0)),
    "case5": ((10, 10, 9), ((3, 3, 3), (6, 6, 7)), (2.0, 4.0, 4.0), (-1.0, -2.0, -3.0)),
    "case6": ((11, 10, 9), ((3, 2, 2), (8, 8, 6)), (4.0, 4.0, 4.0), (6.0, -8.0, 12.0)),
}


def _label(case_id: str) -> np.ndarray:
    shape, (lo, hi), _, _ = CASES[case_id]
    label = np.zeros(shape, np.uint8)
    label[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    label[lo[0], lo[1], lo[2]] = 2  # msd_hippocampus: labels 1 and 2 are the whole region
    return label


def _affine(case_id: str) -> np.ndarray:
    _, _, spacing, origin = CASES[case_id]
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def _valid(case_id: str) -> np.ndarray:
    """The grid voxels inside the case's volume, by hand: grid.mode pad centres a window of the
    grid's side on the mask's box, start = (lo + hi − m) // 2, and grid voxel j is volume voxel
    start + j (docs: adapters/masks/grid.py)."""
    shape, (lo, hi), _, _ = CASES[case_id]
    inside = []
    for n, a, b, m in zip(shape, lo, hi, GRID):
        start = (a + b - m) // 2
        assert start < 0 and start + m > n  # padding on both sides of every axis
        inside.append((start + np.arange(m) >= 0) & (start + np.arange(m) < n))
    return inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("padded") / "masks"
    folder.mkdir()
    for case_id in CASES:
        nib.save(nib.Nifti1Image(_label(case_id), _affine(case_id)), str(folder / f"{case_id}.nii.gz"))
    config = _config(folder)
    return folder, prepare_data(config, disable_progress=True)


def _config(folder: Path, *more: str) -> dict:
    return load_recipe(RECIPE, [f"data.dataset={folder}", "data.max_cases=null", "split.n_valid=1", "split.n_test=2",
                                "grid.mode=pad", f"grid.shape={list(GRID)}".replace(" ", ""), "eval.panels=0",
                                "eval.batch_size=8", "output.progress=false", "train.threads=1", *more])


class _Spy:
    """A stand-in model: records what each call is given; ``rows`` are what ``sample`` returns."""

    def __init__(self, rows: np.ndarray | None = None):
        self.process = BernoulliProcess.from_schedule("jsd", 4)
        self.rows, self.seen = rows, []

    def inpaint(self, x, known, **kw):
        self.seen.append((x.clone(), known.clone()))
        return x.clone()

    def predict_x0(self, x, t):
        self.seen.append(x.clone())
        return x.clone()

    def sample(self, n, **kw):
        out, self.rows = self.rows[:n], self.rows[n:]
        return torch.from_numpy(out.astype(np.float32))


def _ctx(data, model, folder, *more) -> EvalContext:
    return EvalContext(model=model, data=data, config=_config(folder, *more), device=torch.device("cpu"))


def test_the_cases_here_are_padded_and_of_several_voxel_sizes(data):
    _, mask_data = data
    assert len(mask_data.split["train"]) == 4 and len(mask_data.split["test"]) == 2
    for case_id, record in mask_data.records.items():
        assert record.outside == 0 and not _valid(case_id).all()


# -- cp5: completion holds the padding fixed ------------------------------------------------------------
def test_completion_tells_the_model_the_padding_is_known(data, tmp_path):
    """cp5: the grid voxels beyond a case's edge are known to be empty; the inpainting must hold them
    fixed, in the hidden slices too, or the chain paints them and the denoiser reads noise there."""
    folder, mask_data = data
    spy = _Spy()
    ctx = _ctx(mask_data, spy, folder, "evaluations.completion.hide=[alternate_slices]", "evaluations.completion.axis=2",
               "evaluations.completion.samples=1", "evaluations.completion.resample=1", "evaluations.run=[completion]",
               "eval.nifti=false")
    evaluate_completion(ctx, tmp_path / "completion")
    ((x, known),) = spy.seen  # one batch: the two held-out cases, in the split's order
    z = np.arange(GRID[2])[None, None, :]
    hidden_slices = np.broadcast_to(z % 2 == 1, GRID)  # every other axial slice of the grid, the odd ones
    for row, case_id in enumerate(mask_data.split["test"]):
        valid = _valid(case_id)
        assert (hidden_slices & ~valid).any()  # hidden slices cross the padding: the two rules differ here
        np.testing.assert_array_equal(known[row].numpy().reshape(GRID), ~hidden_slices | ~valid,
                                      err_msg=f"{case_id}: known voxels")
        assert not x[row].numpy().reshape(GRID)[~valid].any()  # and the padding it holds fixed reads 0


# -- d3: denoising flips only the voxels inside the case ----------------------------------------------
def test_denoising_flips_the_stated_share_of_the_cases_own_voxels_and_none_of_the_padding(data, tmp_path):
    folder, mask_data = data
    spy = _Spy()
    flip = 0.1
    ctx = _ctx(mask_data, spy, folder, f"evaluations.denoising.flip={flip}", "evaluations.denoising.t=1",
               "evaluations.denoising.steps=1", "diffusion.steps=4", "eval.nifti=true")
    evaluate_denoising(ctx, tmp_path / "denoising")
    observed = torch.cat(spy.seen).numpy()
    for row, case_id in enumerate(mask_data.split["test"]):  # two cases of different shapes and windows
        grid, valid = observed[row].reshape(GRID), _valid(case_id)
        assert not grid[~valid].any(), f"{case_id}: {int(grid[~valid].sum())} padding voxels flipped to 1"
        # on the case's own voxels, exactly round(flip × its voxel count) differ from its label map
        label = (_label(case_id) > 0).astype(np.uint8)
        written = np.asarray(nib.load(str(tmp_path / "denoising" / "nifti" / f"{case_id}_input.nii.gz")).dataobj)
        assert int((written != label).sum()) == round(flip * label.size), case_id
        assert int(grid[valid].sum()) == int(written.sum())


# -- gn9 and gn6: generation ------------------------------------------------------------------------------
def _generate(data, tmp_path, order: list[str]) -> tuple[dict, Path]:
    folder, mask_data = data
    rows = np.stack([mask_data.records[c].grid.reshape(-1) for c in order])
    spy = _Spy(rows)
    ctx = _ctx(mask_data, spy, folder, f"evaluations.generation.samples={len(order)}", "evaluations.generation.steps=2",
               "evaluations.generation.volume=free", "diffusion.steps=4", "eval.nifti=true")
    return evaluate_generation(ctx, tmp_path / "generation"), tmp_path / "generation" / "nifti"


def test_a_generated_mask_is_written_in_its_nearest_training_cases_frame(data, tmp_path):
    """gn9: each sample is a training mask here, so its nearest training case is that one: the file
    must be that case's own label map (binarised), on its voxels and with its affine."""
    _, mask_data = data
    train = mask_data.split["train"]
    order = train[1:] + train[:1]  # sample i is not the i-th training mask, nor the first
    summary, nifti = _generate(data, tmp_path, order)
    assert sorted(p.name for p in nifti.iterdir()) == sorted(f"sample_{i:03d}_in_{c}.nii.gz" for i, c in enumerate(order))
    for i, case_id in enumerate(order):
        image = nib.load(str(nifti / f"sample_{i:03d}_in_{case_id}.nii.gz"))
        np.testing.assert_allclose(image.affine, _affine(case_id), atol=1e-6)
        np.testing.assert_array_equal(np.asarray(image.dataobj), (_label(case_id) > 0).astype(np.uint8))
        assert summary["per_sample"][i]["nearest_training_case"] == case_id
        assert summary["per_sample"][i]["nearest_training_dice"] == pytest.approx(1.0)


def test_generated_and_training_volumes_use_the_median_grid_voxel_volume(data, tmp_path):
    """gn6: in pad mode a grid voxel is a scan voxel; the training cases' voxels here are of four sizes
    (a doubling series: mean and median differ), and a volume is voxels × their median."""
    _, mask_data = data
    train = mask_data.split["train"]
    mm3 = sorted(float(np.prod(CASES[c][2])) for c in train)
    median_ml = (mm3[1] + mm3[2]) / 2 / 1000  # four values: the mean of the middle two
    assert abs(median_ml - np.mean(mm3) / 1000) > 1e-4
    voxels = {c: int((_label(c) > 0).sum()) for c in CASES}
    summary, _ = _generate(data, tmp_path, train)
    for i, case_id in enumerate(train):
        assert summary["per_sample"][i]["volume_ml"] == pytest.approx(voxels[case_id] * median_ml, rel=1e-9)
    assert summary["reference"]["volume_ml"]["mean"] == pytest.approx(
        np.mean([voxels[c] for c in train]) * median_ml, rel=1e-9)
    held = mask_data.split["test"]
    assert summary["realism"]["held_out_volume_ml"]["mean"] == pytest.approx(
        np.mean([voxels[c] for c in held]) * median_ml, rel=1e-9)
    assert "median" in summary["volume_scale"] and f"{mm3[0]:.3g} to {mm3[-1]:.3g} mm³" in summary["volume_scale"]


def test_the_validations_damaged_inputs_flip_only_the_cases_own_voxels(data):
    """d3's twin in the per-epoch validation (``make_validator``, job.py): the damaged validation
    inputs flip the stated share of the case's own voxels and none of the padding."""
    folder, mask_data = data

    class _ValidationSpy(_Spy):
        train_t_max, is_ensemble = 4, False

        def __call__(self, x, **kw):  # the loss term the validation also reads
            return SimpleNamespace(terms={"loss": torch.zeros(len(x))})

    spy = _ValidationSpy()
    flip = 0.1
    config = _config(folder, f"evaluations.denoising.flip={flip}", "evaluations.denoising.t=1", "diffusion.steps=4")
    make_validator(spy, mask_data, config, torch.device("cpu"))()
    (case_id,) = mask_data.split["valid"]
    grid, valid = torch.cat(spy.seen).numpy().reshape(GRID), _valid(case_id)
    assert not grid[~valid].any(), f"{case_id}: {int(grid[~valid].sum())} padding voxels flipped to 1"
    clean = mask_data.records[case_id].grid.astype(bool)
    label = (_label(case_id) > 0)
    assert int(clean.sum()) == int(label.sum())  # the window holds the whole case
    assert int((grid[valid].astype(bool) != clean[valid]).sum()) == round(flip * label.size)


def test_sample_voxels_beyond_the_nearest_cases_scan_are_counted_and_said(data, tmp_path, warned):
    """A sample's voxels in its frame's padding cannot be written into that scan's NIfTI file; they were
    dropped without a word while volume_ml counted them. Grid voxel (0, 0, 0) is padding for every case here."""
    folder, mask_data = data
    train = mask_data.split["train"]
    rows = np.stack([mask_data.records[c].grid.reshape(-1) for c in train])
    assert not _valid(train[0])[0, 0, 0]
    rows[0, 0] = 1  # one voxel beyond case train[0]'s scan; it stays that case's nearest mask
    ctx = _ctx(mask_data, _Spy(rows), folder, f"evaluations.generation.samples={len(train)}",
               "evaluations.generation.steps=2", "evaluations.generation.volume=free", "diffusion.steps=4",
               "eval.nifti=true")
    summary = evaluate_generation(ctx, tmp_path / "generation")
    assert [s["voxels_beyond_frame"] for s in summary["per_sample"]] == [1] + [0] * (len(train) - 1)
    written = nib.load(str(tmp_path / "generation" / "nifti" / f"sample_000_in_{train[0]}.nii.gz"))
    np.testing.assert_array_equal(np.asarray(written.dataobj), (_label(train[0]) > 0).astype(np.uint8))
    assert "1 generated sample(s) reach beyond their nearest training case's volume (most: 1 voxel(s))" in warned()
