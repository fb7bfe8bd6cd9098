"""`images.spacing`: a segmentation data set whose cases come at several voxel sizes is brought to
one before the grid (as nnU-Net does), the target is taken from the training cases alone, and the
run's evaluation, its NIfTI outputs and `bindiff segment` work on each case's own voxels.

The data are synthetic: a bright ball of fixed radius in millimetres inside a noisy crop, at
1 mm or 0.8 mm voxels (and one case at 1 x 1 x 1.6 mm), so the truth is the ball's volume."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import load_recipe
from bindiff.tasks.segmentation.data import prepare_data

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
RADIUS_MM, EXTENT_MM = 6.0, 24.0
SPACINGS = [(1.0, 1.0, 1.0), (0.8, 0.8, 0.8), (1.0, 1.0, 1.0), (0.8, 0.8, 0.8), (1.0, 1.0, 1.6), (1.0, 1.0, 1.0),
            (0.8, 0.8, 0.8), (1.0, 1.0, 1.0)]
BALL_VOXELS_AT_1MM = 4 / 3 * np.pi * RADIUS_MM ** 3  # 905 voxels of 1 mm³


def _ball_case(spacing, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Image and label of a ball of RADIUS_MM about the crop's centre, on voxels of ``spacing`` mm."""
    shape = [int(round(EXTENT_MM / s)) for s in spacing]
    centres = [(np.arange(n) + 0.5) * s - EXTENT_MM / 2 for n, s in zip(shape, spacing)]
    x, y, z = np.meshgrid(*centres, indexing="ij")
    label = (x ** 2 + y ** 2 + z ** 2 <= RADIUS_MM ** 2).astype(np.uint8)
    rng = np.random.default_rng(seed)
    image = (100 + 60 * label + rng.normal(0, 5, label.shape)).astype(np.float32)
    return image, label


@pytest.fixture(scope="module")
def balls(tmp_path_factory) -> Path:
    """An MSD-layout data set (images/ beside labels/) of eight ball cases at the SPACINGS."""
    root = tmp_path_factory.mktemp("balls")
    for folder in ("images", "labels"):
        (root / folder).mkdir()
    for i, spacing in enumerate(SPACINGS):
        image, label = _ball_case(spacing, i)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(root / "images" / f"ball_{i:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(root / "labels" / f"ball_{i:02d}.nii.gz"))
    return root


def _config(root: Path, *overrides: str) -> dict:
    return load_recipe(ROOT / "recipes" / "hippocampus_segmentation.yaml",
                       [f"data.dataset={root}", "split.n_valid=1", "split.n_test=2", "grid.shape=[32,32,32]",
                        "labels.preset=custom", "labels.foreground=[1]", "output.progress=false", *overrides])


def test_every_case_reaches_the_grid_at_one_voxel_size(balls, warned):
    data = prepare_data(_config(balls, "images.spacing=[1,1,1]"))
    assert data.spacing == (1.0, 1.0, 1.0) and "warning" not in warned()
    for case_id, case in data.cases.items():
        spacing = SPACINGS[int(case_id.split("_")[1])]
        assert case.resampled == (spacing != (1.0, 1.0, 1.0))
        # the ball covers its volume in 1 mm voxels whatever voxels the file stored
        assert case.mask.sum() == pytest.approx(BALL_VOXELS_AT_1MM, rel=0.08), (case_id, spacing, case.mask.sum())
        assert case.outside == 0
    # read as stored, a 0.8 mm case's ball fills (1/0.8)³ ≈ 1.95 times the voxels
    as_stored = prepare_data(_config(balls))
    warning = warned()
    assert "4 of 8 cases have a voxel size" in warning  # three at 0.8 mm, one at 1.6 mm slices
    assert "set images.spacing: median" in warning
    assert ": ball_04 (1 x 1 x 1.6 mm), ball_01 (0.8 x 0.8 x 0.8 mm)" in warning  # farthest first, by case id
    fine = [c for i, c in as_stored.cases.items() if SPACINGS[int(i.split("_")[1])] == (0.8, 0.8, 0.8)]
    assert all(c.mask.sum() > 1.7 * BALL_VOXELS_AT_1MM for c in fine) and as_stored.spacing is None


def test_the_median_spacing_comes_from_the_training_cases_alone(balls):
    from bindiff.adapters.masks import split_cases

    ids = [f"ball_{i:02d}" for i in range(len(SPACINGS))]
    of = lambda part: np.array([SPACINGS[int(i.split("_")[1])] for i in part])  # noqa: E731
    # a seed whose training cases' median differs from that of all eight cases
    seed = next(s for s in range(100)
                if not np.allclose(np.median(of(split_cases(ids, 1, 2, seed=s)["train"]), 0), np.median(of(ids), 0)))
    data = prepare_data(_config(balls, "images.spacing=median", f"seed={seed}"))
    assert data.spacing == pytest.approx(tuple(np.median(of(data.split["train"]), axis=0)))
    assert not np.allclose(data.spacing, np.median(of(ids), axis=0))


def test_a_run_at_one_spacing_scores_and_writes_each_case_on_its_own_voxels(balls, tmp_path):
    tiny = ["images.spacing=[1,1,1]", "denoiser.params.channels=[4,8]", "denoiser.params.patch=1",
            "train.epochs=1", "train.warmup_steps=0", "segmentation.samples=1", "eval.panels=0",
            f"output.root={tmp_path}"]
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"),
                                 f"data.dataset={balls}", "split.n_valid=1", "split.n_test=2", "grid.shape=[32,32,32]",
                                 "labels.preset=custom", "labels.foreground=[1]", "output.progress=false", *tiny])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "hippocampus_segmentation").iterdir()
    cases = json.loads((run / "split" / "cases.json").read_text())
    assert cases["spacing_mm"] == [1.0, 1.0, 1.0]
    summary = json.loads((run / "segmentation" / "summary.json").read_text())
    for row in summary["per_case"]:
        label = nib.load(str(balls / "labels" / f"{row['case_id']}.nii.gz"))
        for kind in ("mask", "uncertainty"):
            written = nib.load(str(run / "segmentation" / "nifti" / f"{row['case_id']}_{kind}.nii.gz"))
            assert written.shape == label.shape and np.allclose(written.affine, label.affine)
        # the reference volume is the file's own: voxels × its voxel volume
        voxel_ml = float(np.prod(label.header.get_zooms())) / 1000
        assert row["diffusion"]["reference_volume_ml"] == pytest.approx(np.asarray(label.dataobj).sum() * voxel_ml)
    # a new scan at 0.8 mm is brought to the run's 1 mm, not to the median of the files it read
    image, _ = _ball_case((0.8, 0.8, 0.8), 99)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, np.diag([0.8, 0.8, 0.8, 1.0])), str(scan))
    result = runner.invoke(app, ["segment", str(run), "--input", str(scan), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    segmented = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert segmented["training_spacing_mm"] == [1.0, 1.0, 1.0] and segmented["cases"][0]["resampled"]
    # evaluate reads the cases again at the saved spacing and places them exactly as training did
    result = runner.invoke(app, ["evaluate", str(run), "eval.nifti=false", "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "segmentation" / "summary.json").read_text())
    assert again["mean"]["unet"]["dice"] == pytest.approx(summary["mean"]["unet"]["dice"])


def test_a_bad_spacing_is_refused_naming_the_key(balls):
    for value in ("[1,1]", "[0,1,1]", "fine"):
        result = runner.invoke(app, ["train", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"),
                                     f"images.spacing={value}", f"data.dataset={balls}"])
        assert result.exit_code == 2 and "images.spacing" in result.output and "Traceback" not in result.output


def test_a_skull_stripped_scan_is_normalised_over_its_anatomy_at_any_voxel_size(tmp_path):
    """Anatomy of intensity 100 ± 10 in a zero background (a skull-stripped scan). Resampled
    linearly, the zero background's edge becomes a shell of small values; counted as anatomy it
    pulled the mean to about 93 and doubled the spread the z-score divides by; counted only
    inside the anatomy, its edge still mixed in zeros (96.5)."""
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i, spacing in enumerate([(0.8, 0.8, 0.8)] * 4):
        shape = [int(round(40 / s)) for s in spacing]
        centres = [(np.arange(n) + 0.5) * s - 20 for n, s in zip(shape, spacing)]
        x, y, z = np.meshgrid(*centres, indexing="ij")
        anatomy, label = x ** 2 + y ** 2 + z ** 2 <= 14 ** 2, (x ** 2 + y ** 2 + z ** 2 <= 5 ** 2).astype(np.uint8)
        image = np.where(anatomy, np.random.default_rng(i).normal(100, 10, shape), 0).astype(np.float32)
        affine = np.diag([*spacing, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(tmp_path / "images" / f"brain_{i}.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "labels" / f"brain_{i}.nii.gz"))
    data = prepare_data(_config(tmp_path, "images.spacing=[1,1,1]", "split.n_test=1"))
    for case in data.cases.values():
        assert case.resampled
        (stats,) = case.image.stats
        assert stats.mean == pytest.approx(100, abs=1.0)  # the anatomy's own mean
        assert stats.std < 10.5  # interpolation averages neighbours: at most the anatomy's own spread
        # the statistics come from the scan's own 0.8 mm voxels: the anatomy's, not a shell more
        assert stats.foreground_voxels == anatomy.sum()


def test_an_image_off_its_label_maps_grid_is_refused_naming_both_files(tmp_path):
    """The training path checks each image against its label map (data.py's read_channels(reference=...)):
    a shifted image would otherwise train on masks that lie elsewhere, without a word."""
    from bindiff.adapters.errors import DataError

    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        image, label = _ball_case((1.0, 1.0, 1.0), i)
        shifted = np.eye(4)
        shifted[0, 3] = 2.0 if i == 2 else 0.0  # case 2's image lies 2 mm off its label map
        nib.save(nib.Nifti1Image(image, shifted), str(tmp_path / "images" / f"ball_{i:02d}.nii.gz"))
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(tmp_path / "labels" / f"ball_{i:02d}.nii.gz"))
    with pytest.raises(DataError, match=r"images/ball_02\.nii\.gz: its voxel-to-world affine differs from "
                                        r".*labels/ball_02\.nii\.gz's"):
        prepare_data(_config(tmp_path))
