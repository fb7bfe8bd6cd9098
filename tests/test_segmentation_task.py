"""The segmentation task end to end on a few real MSD hippocampus cases (tiny grid, two epochs):
the run directory with both models (diffusion and the deterministic U-Net), the per-case
summary and paired test, the NIfTI outputs and panels, that sampling reads no label, and
`bindiff segment` on folders of unlabelled images; BraTS with two channels and brain masks."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from cli_checks import train_tiny

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
runner = CliRunner()
pytestmark = pytest.mark.skipif(not (DATA / "msd_hippocampus" / "images").is_dir(), reason="MSD images not found")

TINY = ["data.max_cases=8", "split.n_valid=2", "split.n_test=2", "grid.mode=resample", "grid.shape=[12,16,12]",
        "denoiser.params.channels=[4,8]", "denoiser.params.patch=1", "denoiser.params.bf16=false",
        "train.epochs=2", "train.warmup_steps=0", "diffusion.steps=4", "segmentation.samples=2",
        "output.progress=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("runs"), "hippocampus_segmentation", TINY, DATA)[0]


def test_a_run_segments_its_test_cases_with_calibration_and_uncertainty(run):
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"diffusion", "unet"}
    for means in metrics["test"].values():
        assert {"dice", "hd95_mm", "ece", "brier", "error_auroc"} <= set(means)
        assert 0 <= means["dice"] <= 1 and 0 <= means["ece"] <= 1 and 0 <= means["brier"] <= 1
    assert metrics["training"]["companions"]["unet"]["epochs_run"] == 2
    for name, history in (("diffusion", "history.json"), ("unet", "history_unet.json")):
        epochs = json.loads((run / history).read_text())  # the epoch of highest validation Dice
        dice = [e["valid_dice"] for e in epochs]
        assert metrics["checkpoint"][name]["epoch"] == epochs[int(np.argmax(dice))]["epoch"]
        assert (run / metrics["checkpoint"][name]["file"]).is_file()
    assert (run / "checkpoints" / "unet" / "best.pt").is_file() and (run / "history_unet.json").is_file()
    summary = json.loads((run / "segmentation" / "summary.json").read_text())
    split = json.loads((run / "split" / "cases.json").read_text())["split"]
    assert sorted(r["case_id"] for r in summary["per_case"]) == sorted(split["test"])
    for name in ("diffusion", "unet"):
        assert summary["mean"][name]["dice"] == pytest.approx(np.mean([r[name]["dice"] for r in summary["per_case"]]))
        defined = [r[name]["error_auroc"] for r in summary["per_case"] if r[name]["error_auroc"] is not None]
        assert summary["mean"][name]["error_auroc_cases"] == len(defined)  # an undefined AUROC is null
    differences = [r["diffusion"]["dice"] - r["unet"]["dice"] for r in summary["per_case"]]
    assert metrics["paired"]["dice"]["mean_difference"] == pytest.approx(np.mean(differences))
    assert metrics["paired"]["dice"]["units"] == len(split["test"])
    from matplotlib.image import imread

    panels = sorted((run / "segmentation" / "panels").glob("*.png"))
    assert [p.stem for p in panels] == sorted(split["test"])  # eval.panels 4 > the 2 test cases
    assert imread(panels[0]).ndim == 3
    for case_id in split["test"]:
        image = nib.load(str(DATA / "msd_hippocampus" / "images" / f"{case_id}.nii.gz"))
        for kind in ("mask", "uncertainty"):
            written = nib.load(str(run / "segmentation" / "nifti" / f"{case_id}_{kind}.nii.gz"))
            assert written.shape == image.shape and np.allclose(written.affine, image.affine, atol=1e-5)
    uncertainty = np.asarray(nib.load(str(run / "segmentation" / "nifti" / f"{split['test'][0]}_uncertainty.nii.gz"))
                             .dataobj)
    assert uncertainty.min() >= 0 and uncertainty.max() <= 1  # entropy in bits


def test_the_predictions_do_not_depend_on_the_labels(run, tmp_path, monkeypatch):
    """Evaluated again with every label of the held-out cases replaced by an empty mask (the files read
    for scoring and the grids loaded with the data), each model writes the same masks and maps; only
    the scores change."""
    import nibabel as nib

    from bindiff.tasks.segmentation import job

    def predictions(out):
        summary = job.run_segmentation(run, overrides=["eval.panels=0"], out_dir=out)
        written = sorted((out / "segmentation" / "nifti").glob("*.nii.gz"))
        return summary, {p.name: np.asanyarray(nib.load(str(p)).dataobj) for p in written}

    honest, honest_maps = predictions(tmp_path / "honest")
    real_load_region, real_load_data = job.load_region, job.load_data

    def empty_region(*args, **kwargs):
        truth, geometry = real_load_region(*args, **kwargs)
        return np.zeros_like(truth), geometry

    def empty_masks(*args, **kwargs):
        data = real_load_data(*args, **kwargs)
        for record in data.cases.values():
            record.mask[...] = 0
        return data

    monkeypatch.setattr(job, "load_region", empty_region)
    monkeypatch.setattr(job, "load_data", empty_masks)
    blind, blind_maps = predictions(tmp_path / "blind")
    assert honest_maps and honest_maps.keys() == blind_maps.keys()
    for name, volume in honest_maps.items():
        np.testing.assert_array_equal(volume, blind_maps[name], err_msg=name)
    honest_dice, blind_dice = (s["test"]["diffusion"]["dice"] for s in (honest, blind))
    assert honest_dice > 0.1 and blind_dice != honest_dice  # the swap reached the scoring


def test_the_baseline_reads_the_image_alone_and_learns_bce_plus_soft_dice(run):
    """The U-Net baseline's loss against a hand computation from its own logits; its output does not
    depend on anything but the image."""
    import torch

    from bindiff.tasks import base
    from bindiff.tasks.segmentation import job
    from bindiff.tasks.segmentation import model as model_module

    config, _, unet = base.load_trained(job.TASK, run, companion="unet")
    images = torch.from_numpy(job.load_data(run / "split", config).images("test"))
    masks = (torch.rand(images.shape[0], images.shape[1], generator=torch.Generator().manual_seed(0)) < 0.1).float()
    p = unet.probabilities(images).double().numpy()
    y = masks.double().numpy()
    eps = 1e-12
    bce = -(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)).mean(1)
    dice = 1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)
    with torch.no_grad():
        loss = unet(masks, cond=images).loss.item()
    assert loss == pytest.approx(float(np.mean(bce + config["baseline"]["dice_weight"] * dice)), rel=1e-4)
    # each case's map is its image's alone: scored by itself, every case gives its row of the batch
    for i in range(images.shape[0]):
        np.testing.assert_allclose(unet.probabilities(images[i:i + 1]).double().numpy()[0], p[i], atol=1e-5)

    class Recorder(torch.nn.Module):  # and the network reads x_t = 0 at t = 0 beside the image, nothing else
        dim = unet.denoiser.dim

        def forward(self, x_t, t, cond):
            self.seen = (x_t.clone(), t.clone(), cond.clone())
            return torch.zeros_like(x_t)

    recorder = Recorder()
    model_module.DirectSegmenter(recorder).logits(images[:2])
    x_t, t, cond = recorder.seen
    assert x_t.shape == (2, unet.denoiser.dim) and not x_t.any() and not t.any() and torch.equal(cond, images[:2])


def _unlabelled_folder(tmp_path, case_ids):
    """A folder holding only images (links to the shared files: nothing is copied)."""
    folder = tmp_path / "scans"
    folder.mkdir()
    for case_id in case_ids:
        (folder / f"{case_id}.nii.gz").symlink_to(DATA.resolve() / "msd_hippocampus" / "images" / f"{case_id}.nii.gz")
    return folder


def test_segment_writes_masks_and_uncertainty_in_each_inputs_geometry_without_labels(run, tmp_path, monkeypatch):
    import SimpleITK as sitk

    def refuse(*args, **kwargs):
        raise AssertionError("a label was read by segment")

    monkeypatch.setattr("bindiff.adapters.masks.io.read_label_map", refuse)
    monkeypatch.setattr("bindiff.adapters.masks.cases.read_label_map", refuse)
    monkeypatch.setattr("bindiff.adapters.masks.load_region", refuse)
    cases = ["hippocampus_001", "hippocampus_003"]
    folder = _unlabelled_folder(tmp_path, cases)
    # beside the scans, what segment does not read: said in one line and listed, not skipped unseen
    (folder / "notes.txt").write_text("scanned on the 3 T\n")
    (folder / "hippocampus_009.nii.bz2").write_bytes(b"BZh9")  # a compression bindiff does not read
    (folder / "old runs").mkdir()
    (folder / ".DS_Store").write_bytes(b"")  # hidden: not a user's file
    result = runner.invoke(app, ["segment", str(run), "--input", str(folder), "--output", str(tmp_path / "out"),
                                 "--probabilities"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [c["case_id"] for c in summary["cases"]] == cases
    assert summary["not_read"] == ["hippocampus_009.nii.bz2", "notes.txt", "old runs"]
    assert f"warning: {folder}: 3 entries not read" in result.output
    assert "hippocampus_009.nii.bz2, notes.txt, old runs" in result.output
    for case_id in cases:
        source = folder / f"{case_id}.nii.gz"
        image, itk_image = nib.load(str(source)), sitk.ReadImage(str(source))
        for kind in ("mask", "uncertainty", "probability"):
            path = tmp_path / "out" / f"{case_id}_{kind}.nii.gz"
            written = nib.load(str(path))
            assert written.shape == image.shape and np.allclose(written.affine, image.affine, atol=1e-5)
            itk = sitk.ReadImage(str(path))
            assert itk.GetSize() == itk_image.GetSize()
            np.testing.assert_allclose(itk.GetSpacing(), itk_image.GetSpacing(), atol=1e-5)
            np.testing.assert_allclose(itk.GetOrigin(), itk_image.GetOrigin(), atol=1e-4)
            np.testing.assert_allclose(itk.GetDirection(), itk_image.GetDirection(), atol=1e-6)
        mask = np.asarray(nib.load(str(tmp_path / "out" / f"{case_id}_mask.nii.gz")).dataobj)
        assert set(np.unique(mask)) <= {0, 1}
        # the mask is the probability map thresholded at segmentation.threshold (½), voxel for voxel
        prob = np.asarray(nib.load(str(tmp_path / "out" / f"{case_id}_probability.nii.gz")).dataobj)
        assert prob.min() >= 0 and prob.max() <= 1 and mask.any()
        differ = (prob >= 0.5) != mask.astype(bool)
        assert not differ.any() or np.abs(prob[differ] - 0.5).max() < 1e-6  # float32 rounding at ½ only

    # each case's seed is its own: one image alone gives the same mask as within the folder
    alone = runner.invoke(app, ["segment", str(run), "--input", str(folder / f"{cases[1]}.nii.gz"),
                                "--output", str(tmp_path / "alone"), "--panels", "0"])
    assert alone.exit_code == 0, alone.output
    # PNG panels of the cases (20 by default), none with --panels 0
    from matplotlib.image import imread

    assert [c["panel"] for c in summary["cases"]] == [str(tmp_path / "out" / "panels" / f"{c}.png") for c in cases]
    assert all(imread(c["panel"]).ndim == 3 for c in summary["cases"])
    assert not (tmp_path / "alone" / "panels").exists()
    a, b = (np.asarray(nib.load(str(tmp_path / d / f"{cases[1]}_mask.nii.gz")).dataobj) for d in ("out", "alone"))
    np.testing.assert_array_equal(a, b)
    monkeypatch.undo()  # scoring reads the labels, after segment is done

    # `bindiff score` on segment's folder with the run's preset: the Dice of each written mask
    # against its label map's whole hippocampus (labels 1 and 2), computed here with numpy
    result = runner.invoke(app, ["score", str(tmp_path / "out"), str(DATA / "msd_hippocampus" / "labels"),
                                 "--run", str(run), "--out", str(tmp_path / "scores.json")])
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["preset"] == "msd_hippocampus" and scores["foreground_labels"] == [1, 2]
    for row in scores["per_case"]:
        mask = np.asarray(nib.load(str(tmp_path / "out" / f"{row['case_id']}_mask.nii.gz")).dataobj) > 0
        truth = np.asarray(nib.load(str(DATA / "msd_hippocampus" / "labels" / f"{row['case_id']}.nii.gz")).dataobj) > 0
        assert row["dice"] == pytest.approx(2 * (mask & truth).sum() / (mask.sum() + truth.sum()))
    assert [r["case_id"] for r in scores["per_case"]] == cases and len(scores["unmatched_references"]) == 258


def _write_dicom_series(volume: np.ndarray, spacing, origin, direction, folder: Path, suffix: str = ".dcm",
                        series: str = "1.2.826.0.1.3680043.2.1125.7.1", prefix: str = "IM") -> None:
    """``volume`` (x, y, z) int16 written as one DICOM file per slice, as a scanner exports it: LPS
    ``origin`` and ``direction`` (3 × 3, columns the x, y, z axes), slices numbered from 1.
    GDCM's writer leaves the process in the "C" locale (ASCII text files): it is put back."""
    import locale

    saved = locale.setlocale(locale.LC_ALL)
    try:
        _write_slices(volume, spacing, origin, direction, folder, suffix, series, prefix)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(volume, spacing, origin, direction, folder: Path, suffix: str, series: str, prefix: str) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))
    image.SetSpacing([float(v) for v in spacing])
    image.SetOrigin([float(v) for v in origin])
    image.SetDirection([float(v) for v in np.asarray(direction).reshape(-1)])
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetImageIO("GDCMImageIO")  # the files may have no suffix to tell the format by
    cosines = np.asarray(direction)
    for k in range(volume.shape[2]):
        slice_ = image[:, :, k]
        for tag, value in (("0008|0060", "MR"), ("0020|000d", series + ".0"), ("0020|000e", series),
                           ("0020|0013", str(k + 1)), ("0018|0050", str(spacing[2])),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in (*cosines[:, 0], *cosines[:, 1]))),
                           ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))):
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:04d}{suffix}"))
        writer.Execute(slice_)


def test_segment_reads_a_dicom_series_as_the_same_scan_in_nifti(run, tmp_path):
    """A scan exported as DICOM slices (oblique-free but flipped axes, no file suffix) gives the mask
    its NIfTI copy gives, voxel for voxel, written on the series' own grid."""
    image = nib.load(str(DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"))
    data = np.asarray(image.dataobj, dtype=np.float64)
    volume = np.round(data / data.max() * 30000).astype(np.int16)[::-1, :, ::-1]  # another voxel order
    spacing, origin = (1.0, 1.0, 1.0), (12.5, -40.0, 7.0)
    direction = np.array([[-1.0, 0, 0], [0, 1, 0], [0, 0, -1]])  # LPS columns of the x, y, z axes
    _write_dicom_series(volume, spacing, origin, direction, tmp_path / "dicom" / "scan", suffix="")
    # the same scan as NIfTI, its RAS affine written by hand from the DICOM geometry
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = direction * np.array(spacing), origin
    nifti = tmp_path / "nifti" / "scan.nii.gz"
    nifti.parent.mkdir()
    nib.save(nib.Nifti1Image(volume, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps), str(nifti))

    masks = {}
    for given, out in ((tmp_path / "dicom", "from_dicom"), (tmp_path / "dicom" / "scan", "one_series"),
                       (nifti, "from_nifti")):
        result = runner.invoke(app, ["segment", str(run), "--input", str(given), "--output", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        assert "not read" not in result.output  # a series' slices are all read
        written = nib.load(str(tmp_path / out / "scan_mask.nii.gz"))
        assert written.shape == volume.shape
        np.testing.assert_allclose(written.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, atol=1e-4)
        masks[out] = np.asarray(written.dataobj)
    np.testing.assert_array_equal(masks["from_dicom"], masks["from_nifti"])
    np.testing.assert_array_equal(masks["one_series"], masks["from_nifti"])


def test_segment_refuses_dicom_it_cannot_take_as_one_scan(run, tmp_path):
    volume = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    two = tmp_path / "two_series"
    _write_dicom_series(volume, (1, 1, 1), (0, 0, 0), np.eye(3), two)
    _write_dicom_series(volume, (1, 1, 1), (0, 0, 0), np.eye(3), two, series="1.2.826.0.1.3680043.2.1125.7.2",
                        prefix="T2_")  # a second scan exported into the same folder
    holes = tmp_path / "missing_slice"
    _write_dicom_series(volume, (1, 1, 2), (0, 0, 0), np.eye(3), holes)
    (holes / "IM0002.dcm").unlink()  # gaps of 2, 4 and 2 mm
    broken = tmp_path / "broken_slice"
    _write_dicom_series(volume, (1, 1, 1), (0, 0, 0), np.eye(3), broken)
    (broken / "IM0001.dcm").write_bytes((broken / "IM0001.dcm").read_bytes()[:300])  # truncated in transfer
    for given, message in ((holes, "missing_slice: its 3 slices are not evenly spaced (gaps from 2 to 4 mm)"),
                           (broken, "broken_slice: 1 DICOM file(s) are not part of its series (IM0001.dcm)"),
                           (two, "two_series: holds 2 DICOM series"),
                           (sorted(two.iterdir())[0], "IM0000.dcm: one DICOM file is one slice; give the folder")):
        result = runner.invoke(app, ["segment", str(run), "--input", str(given), "--output", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert message in result.output.strip().splitlines()[-1] and "Traceback" not in result.output, result.output


def test_segment_refuses_overrides_it_would_not_read(run, tmp_path):
    image = DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"
    for override in ("eval.max_cases=1", "eval.panels=0", "segmentation.calibration_bins=5"):  # read by evaluate only
        result = runner.invoke(app, ["segment", str(run), override, "--input", str(image),
                                     "--output", str(tmp_path / "out")])
        assert result.exit_code == 2
        assert result.output.strip().startswith(f"error: override {override!r}: segment --model diffusion does not "
                                                "read it; its keys are segmentation.samples, segmentation.steps"), \
            result.output
        assert not (tmp_path / "out").exists()
    # the U-Net is one call: samples, steps and the like would change nothing
    result = runner.invoke(app, ["segment", str(run), "segmentation.samples=16", "--model", "unet",
                                 "--input", str(image), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and "segment --model unet does not read it" in result.output


def _written_nothing(tmp_path, name):
    return not (tmp_path / name).exists() and not list(tmp_path.glob(f".{name}.*"))


def test_segment_refuses_what_is_not_an_image_or_has_the_wrong_channels(run, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    corrupt = tmp_path / "broken" / "scan.nii.gz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\x1f\x8b garbage")
    image = nib.load(str(DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"))
    two = np.stack([np.asarray(image.dataobj, dtype=np.float32)] * 2, axis=-1)
    four_d = tmp_path / "two_channels.nii.gz"
    nib.save(nib.Nifti1Image(two, image.affine), str(four_d))
    blank = tmp_path / "blank.nii.gz"  # a readable image with nothing in it: no anatomy to place the grid on
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.float32), image.affine), str(blank))
    as_mask = tmp_path / "label_as_image.nii.gz"  # a label map given as the image: one value wherever non-zero
    nib.save(nib.Nifti1Image((np.asarray(image.dataobj) > np.median(image.dataobj)).astype(np.uint8), image.affine),
             str(as_mask))
    mixed = _unlabelled_folder(tmp_path, ["hippocampus_001"])
    (mixed / "zz_broken.nii.gz").write_bytes(b"garbage")
    linked = tmp_path / "linked"  # a good scan beside a link to one that is gone: a case would go missing
    linked.mkdir()
    (linked / "a.nii.gz").symlink_to(mixed / "hippocampus_001.nii.gz")
    (linked / "b.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    for given, message in ((text, "notes.txt: not an image file"),
                           (corrupt.parent, "scan.nii.gz: not a readable NIfTI file"),
                           (four_d, "two_channels.nii.gz: 2 image channel(s), but the run was trained on 1"),
                           (tmp_path / "missing", "missing: no such file or folder"),
                           (blank, "blank.nii.gz: the image's foreground is empty"),
                           (as_mask, "label_as_image.nii.gz: every voxel of the image's foreground holds the same "
                                     "value (1): no contrast to segment"),
                           (mixed, "zz_broken.nii.gz: not a readable NIfTI file"),
                           (linked, "b.nii.gz: a broken link where a scan is expected")):
        result = runner.invoke(app, ["segment", str(run), "--input", str(given), "--output", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert message in lines[-1] and "Traceback" not in result.output, result.output
        assert _written_nothing(tmp_path, "out")  # the first, good case of `mixed` was not left behind
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = runner.invoke(app, ["segment", str(run), "--input", str(mixed / "hippocampus_001.nii.gz"),
                                 "--output", str(blocker / "out")])
    assert result.exit_code == 2 and f"cannot write there ({blocker} is a file, not a folder)" in result.output, \
        result.output
    result = runner.invoke(app, ["segment", str(run), "--input", str(mixed), "--output", str(tmp_path),
                                 "--brain", str(tmp_path)])
    assert result.exit_code == 2 and "exists and is not an empty folder" in result.output


BRATS = DATA / "brats2015_deepmedic"


@pytest.mark.skipif(not BRATS.is_dir(), reason="BraTS 2015 cases not found")
def test_brats_two_channels_with_brain_masks_train_and_segment(tmp_path):
    tiny = ["grid.shape=[12,12,12]", "denoiser.params.channels=[4,8]", "denoiser.params.patch=1",
            "denoiser.params.bf16=false", "train.epochs=1", "train.warmup_steps=0", "diffusion.steps=3",
            "segmentation.samples=1", "output.progress=false", "eval.panels=0"]
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "brats_segmentation.yaml"), *tiny,
                                 f"output.root={tmp_path}", "--data-dir", str(DATA)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "brats_segmentation").iterdir()
    cases = json.loads((run_dir / "split" / "cases.json").read_text())["cases"]
    assert all(len(c["normalisation"]) == 2 for c in cases.values())  # FLAIR and T1c, each z-scored
    case = BRATS / "brats_2013_pat0001_1"
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(case), "--output", str(tmp_path / "out"),
                                 "--brain", str(case / "brainmask.nii.gz")])
    assert result.exit_code == 0, result.output
    written = nib.load(str(tmp_path / "out" / f"{case.name}_mask.nii.gz"))
    flair = nib.load(str(case / "Flair_subtrMeanDivStd.nii.gz"))
    assert written.shape == flair.shape and np.allclose(written.affine, flair.affine)
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(case), "--output", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "give one with --brain" in result.output

    # the same case on 1 x 1 x 2 mm voxels: channels and brain mask are brought to the run's 1 mm together
    import SimpleITK as sitk

    thick = tmp_path / "thick" / case.name
    thick.mkdir(parents=True)
    for name, interpolator in (("Flair_subtrMeanDivStd", sitk.sitkLinear), ("T1c_subtrMeanDivStd", sitk.sitkLinear),
                               ("brainmask", sitk.sitkNearestNeighbor)):
        image = sitk.ReadImage(str(case / f"{name}.nii.gz"), sitk.sitkFloat32)
        spacing = np.array([1.0, 1.0, 2.0])
        direction = np.array(image.GetDirection()).reshape(3, 3)
        origin = np.array(image.GetOrigin()) + direction @ (-0.5 * np.array(image.GetSpacing()) + 0.5 * spacing)
        size = [int(round(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing)]
        sitk.WriteImage(sitk.Resample(image, size, sitk.Transform(), interpolator, origin.tolist(), spacing.tolist(),
                                      image.GetDirection(), 0.0, sitk.sitkFloat32), str(thick / f"{name}.nii.gz"))
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(thick), "--output", str(tmp_path / "o3"),
                                 "--brain", str(thick / "brainmask.nii.gz")])
    assert result.exit_code == 0, result.output
    (row,) = json.loads((tmp_path / "o3" / "summary.json").read_text())["cases"]
    assert row["resampled"] and row["spacing_mm"] == pytest.approx([1.0, 1.0, 2.0])
    written, flair = (sitk.ReadImage(str(p)) for p in (tmp_path / "o3" / f"{case.name}_mask.nii.gz",
                                                        thick / "Flair_subtrMeanDivStd.nii.gz"))
    assert written.GetSize() == flair.GetSize() and written.GetSpacing() == pytest.approx(flair.GetSpacing())
    # a brain mask that is not on the scan's voxels is refused, naming both files
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(thick), "--output", str(tmp_path / "o4"),
                                 "--brain", str(case / "brainmask.nii.gz")])
    assert result.exit_code == 2 and "brainmask.nii.gz" in result.output and "Flair" in result.output, result.output

    # brain masks that would be read wrongly, and channels under other names, are each one line
    mask_image = nib.load(str(case / "brainmask.nii.gz"))
    inside = np.asanyarray(mask_image.dataobj) > 0.5
    for name, values, message in (("probabilities", np.where(inside, 0.3, 0.0), "hold other values (e.g. 0.3)"),
                                  ("empty", np.zeros(inside.shape), "marks no voxel")):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(values.astype(np.float32), mask_image.affine), str(path))
        result = runner.invoke(app, ["segment", str(run_dir), "--input", str(case), "--output",
                                     str(tmp_path / f"o_{name}"), "--brain", str(path)])
        assert result.exit_code == 2 and f"{path}: " in result.output and message in result.output, result.output
    two = tmp_path / "two"
    for name in ("a", "b"):
        (two / name).mkdir(parents=True)
        for channel in ("Flair_subtrMeanDivStd", "T1c_subtrMeanDivStd"):
            (two / name / f"{channel}.nii.gz").symlink_to((case / f"{channel}.nii.gz").resolve())
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(two), "--output", str(tmp_path / "o5"),
                                 "--brain", str(case / "brainmask.nii.gz")])
    assert result.exit_code == 2 and "one brain mask for 2 cases; give a folder" in result.output, result.output
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for channel, other in (("Flair_subtrMeanDivStd", "FLAIR"), ("T1c_subtrMeanDivStd", "T1c")):
        (renamed / f"{other}.nii.gz").symlink_to((case / f"{channel}.nii.gz").resolve())
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(renamed), "--output", str(tmp_path / "o6"),
                                 "--brain", str(tmp_path)])
    assert result.exit_code == 2 and "a folder holding Flair_subtrMeanDivStd, T1c_subtrMeanDivStd" in result.output
    # with one brain-mask file the folder reads as two one-file cases: the line says how it would be one case
    result = runner.invoke(app, ["segment", str(run_dir), "--input", str(renamed), "--output", str(tmp_path / "o7"),
                                 "--brain", str(case / "brainmask.nii.gz")])
    assert result.exit_code == 2 and (f"if {renamed} is one case, name its files Flair_subtrMeanDivStd, "
                                      "T1c_subtrMeanDivStd: the run's images.channels") in result.output, result.output


@pytest.mark.skipif(not BRATS.is_dir(), reason="BraTS 2015 cases not found")
@pytest.mark.parametrize("channels, message", [
    ("[Flair_subtrMeanDivStd,OTMultiClass]", "images.channels: 'OTMultiClass' is the case's label map"),
    ("[Flair_subtrMeanDivStd,brainmask]", "images.channels: 'brainmask' is the case's brain mask"),
])
def test_the_label_map_or_brain_mask_is_never_an_input_channel(tmp_path, channels, message):
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "brats_segmentation.yaml"), f"images.channels={channels}",
                                 f"output.root={tmp_path}", "--data-dir", str(DATA)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "brats_segmentation").exists()


@pytest.mark.parametrize("channels", ["[Flair, ../other_case/T1c]", "[Flair, Flair.nii.gz]", "[Flair, .hidden]"])
def test_channel_names_are_plain_file_stems(channels):
    result = runner.invoke(app, ["show-config", str(ROOT / "recipes" / "brats_segmentation.yaml"),
                                 f"images.channels={channels}"])
    assert result.exit_code == 2 and "without folder or suffix" in result.output, result.output


def test_segment_places_an_image_exactly_as_training_did(run):
    """The inference path (the image file alone) and the training path (image beside its label) give
    the same grid window, normalisation and grid image."""
    from bindiff.adapters.masks.images import ImageCase
    from bindiff.tasks import base
    from bindiff.tasks.masks.data import grid_spec
    from bindiff.tasks.segmentation import job
    from bindiff.tasks.segmentation.segment import find_inputs, read_case

    config, _, _ = base.load_trained(job.TASK, run)
    data = job.load_data(run / "split", config)
    case_id = data.split["test"][0]
    (case,) = find_inputs(DATA / "msd_hippocampus" / "images" / f"{case_id}.nii.gz", None)
    channels, geometry = read_case(case, 1)
    placed = ImageCase.place(channels, geometry, grid_spec(config), source=case.files[0])
    trained = data.cases[case_id].image
    assert placed.transform.to_dict() == trained.transform.to_dict()
    assert [s.to_dict() for s in placed.stats] == [s.to_dict() for s in trained.stats]
    np.testing.assert_array_equal(placed.grid, trained.grid)


def test_segment_with_the_baseline(run, tmp_path):
    folder = _unlabelled_folder(tmp_path, ["hippocampus_001"])
    result = runner.invoke(app, ["segment", str(run), "--input", str(folder), "--output", str(tmp_path / "out"),
                                 "--model", "unet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["model"] == "unet" and summary["checkpoint"]["file"] == "checkpoints/unet/best.pt"
    assert set(summary["settings"]) == {"decision", "threshold"}  # one call: no samples, steps or average
    result = runner.invoke(app, ["segment", str(run), "--input", str(folder), "--output", str(tmp_path / "o2"),
                                 "--model", "gan"])
    assert result.exit_code == 2 and "segment: --model must be one of diffusion, unet" in result.output


PAD_GRID = (16, 24, 16)


@pytest.fixture(scope="module")
def pad_run(tmp_path_factory):
    """A run that places images without resampling (grid.mode pad), as the hippocampus recipe does."""
    root = tmp_path_factory.mktemp("pad_runs")
    tiny = [o for o in TINY if not o.startswith(("grid.", "train.epochs"))]
    result = runner.invoke(app, ["train", str(ROOT / "recipes" / "hippocampus_segmentation.yaml"), *tiny,
                                 "grid.mode=pad", f"grid.shape={list(PAD_GRID)}".replace(" ", ""), "train.epochs=1",
                                 f"output.root={root}", "--data-dir", str(DATA)])
    assert result.exit_code == 0, result.output
    # the small window misses label voxels; segmentation scores each case on its own voxels, so the
    # held-out cases' missed voxels count as missed (the masks task's "nor scored" was said here)
    assert "they are not learned, and the held-out cases' are scored as missed" in result.output, result.output
    (run_dir,) = (root / "hippocampus_segmentation").iterdir()
    return run_dir


def test_segment_brings_a_scan_of_another_spacing_to_the_training_spacing(pad_run, tmp_path, monkeypatch):
    """A stand-in model marks a ball of 5 grid voxels' radius. The run learned at 1 mm, so the ball
    must come out 1 mm voxels wide whatever the scan's spacing: the same volume in millilitres from
    the scan and from a 0.8 mm copy of it, written on each scan's own voxels."""
    import SimpleITK as sitk
    import torch

    centre = (np.array(PAD_GRID) - 1) / 2
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in PAD_GRID], indexing="ij"), -1)
    ball = (((coords - centre) ** 2).sum(-1) <= 5 ** 2).astype(np.float32)
    monkeypatch.setattr("bindiff.tasks.segmentation.unet_baseline.DirectSegmenter.probabilities",
                        lambda self, cond: torch.from_numpy(ball.reshape(1, -1)))
    source = DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"
    image = sitk.ReadImage(str(source), sitk.sitkFloat32)
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "native.nii.gz").symlink_to(source.resolve())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    size = [int(round(n / 0.8)) for n in image.GetSize()]
    origin = np.array(image.GetOrigin()) + direction @ np.full(3, -0.5 + 0.4)  # the same outer faces
    fine = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [0.8] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)
    sitk.WriteImage(fine, str(scans / "fine.nii.gz"))

    result = runner.invoke(app, ["segment", str(pad_run), "--input", str(scans), "--output", str(tmp_path / "out"),
                                 "--model", "unet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["training_spacing_mm"] == [1.0, 1.0, 1.0]
    rows = {row["case_id"]: row for row in summary["cases"]}
    # at 1 mm one grid voxel is one scan voxel: the mask is the ball, voxel for voxel
    assert rows["native"]["voxels"] == int(ball.sum())
    assert rows["native"]["volume_ml"] == pytest.approx(ball.sum() / 1000)
    # at 0.8 mm the ball keeps its size in millimetres (unresampled it would shrink to 0.8³ = 51 %)
    assert rows["fine"]["volume_ml"] == pytest.approx(rows["native"]["volume_ml"], rel=0.08)
    assert not rows["native"]["resampled"] and rows["fine"]["resampled"]
    for name, scan in (("native", image), ("fine", fine)):
        for kind in ("mask", "uncertainty"):
            written = sitk.ReadImage(str(tmp_path / "out" / f"{name}_{kind}.nii.gz"))
            assert written.GetSize() == scan.GetSize()
            np.testing.assert_allclose(written.GetSpacing(), scan.GetSpacing(), atol=1e-5)
            np.testing.assert_allclose(written.GetOrigin(), scan.GetOrigin(), atol=1e-4)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "fine_mask.nii.gz")))
    assert mask.sum() == rows["fine"]["voxels"] and rows["fine"]["volume_ml"] == pytest.approx(mask.sum() * 0.512 / 1000)


def test_segment_names_a_larger_scan_whose_anatomy_the_window_leaves_out(pad_run, tmp_path):
    """Without resampling the grid is a window: on a crop like the training ones it leaves out what
    training left out too (counted, no warning); on the same crop extended by 12 mm (mirrored, so
    all of it is anatomy), longer than every training image but not the 1.5 times of the extent
    warning, the voxels never looked at are named."""
    image = nib.load(str(DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"))
    crop = np.asarray(image.dataobj, dtype=np.float32)
    scans = tmp_path / "scans"
    scans.mkdir()
    nib.save(nib.Nifti1Image(crop, image.affine), str(scans / "crop.nii.gz"))
    longer = np.concatenate([crop, crop[::-1][:12]], axis=0)
    nib.save(nib.Nifti1Image(longer, image.affine), str(scans / "longer.nii.gz"))
    result = runner.invoke(app, ["segment", str(pad_run), "--input", str(scans), "--output", str(tmp_path / "out"),
                                 "--model", "unet"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rows = {row["case_id"]: row for row in summary["cases"]}
    window = int(np.prod(PAD_GRID))
    # every 1 mm voxel of these crops is non-zero anatomy, and the window covers PAD_GRID of them
    assert (crop != 0).all() and rows["crop"]["outside_window_ml"] == pytest.approx((crop.size - window) / 1000)
    assert rows["crop"]["warning"] is None
    assert rows["longer"]["outside_window_ml"] == pytest.approx((longer.size - window) / 1000)
    assert 1.01 < longer.shape[0] / summary["training_extent_mm"]["largest"][0] < 1.5
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "longer.nii.gz: the grid window (16 x 24 x 16 voxels) leaves " in warnings[0]
    assert f"leaves {(longer.size - window) / 1000:.2f} ml of its anatomy" in rows["longer"]["warning"]


def test_segment_warns_about_a_scan_far_larger_or_thinner_than_the_training_crops(run, tmp_path):
    """MSD images are crops of about 40-60 mm. The same crop inside a 160 mm volume of non-zero
    voxels (a whole head, say) gets a warning naming the file, and so does one slice of it; padded
    with zeros it does not, since the grid is centred on the non-zero voxels."""
    image = nib.load(str(DATA / "msd_hippocampus" / "images" / "hippocampus_001.nii.gz"))
    crop = np.asarray(image.dataobj, dtype=np.float32)
    scans = tmp_path / "scans"
    scans.mkdir()
    head = np.full((160, 160, 160), float(crop.mean()), np.float32)
    head[60:60 + crop.shape[0], 50:50 + crop.shape[1], 60:60 + crop.shape[2]] = crop
    nib.save(nib.Nifti1Image(head, image.affine), str(scans / "head.nii.gz"))
    nib.save(nib.Nifti1Image(np.pad(crop, 40), image.affine), str(scans / "padded.nii.gz"))
    nib.save(nib.Nifti1Image(crop[:, :, 17:18], image.affine), str(scans / "slice.nii.gz"))  # one 1 mm slice
    result = runner.invoke(app, ["segment", str(run), "--input", str(scans), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert "head.nii.gz: its anatomy spans 160 x 160 x 160 mm, the run's training images at most" in warnings[0]
    assert f"slice.nii.gz: its anatomy spans {crop.shape[0]} x {crop.shape[1]} x 1 mm" in warnings[1]
    assert "the run's training images at least" in warnings[1]
    rows = {row["case_id"]: row for row in json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]}
    assert rows["head"]["warning"] and rows["slice"]["warning"] and rows["padded"]["warning"] is None


def test_the_spacing_benchmark_scores_both_ways_and_prints_its_command(pad_run):
    import subprocess
    import sys

    argv = [str(pad_run), "--cases", "1", "--spacings", "0.8"]
    finished = subprocess.run([sys.executable, "benchmarks/spacing_resampling.py", *argv], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "BINDIFF_DATA_DIR": str(DATA)})
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    # the data folder it read, and every argument, quoted for a shell
    assert lines[0] == (f"command: BINDIFF_DATA_DIR={shlex.quote(str(DATA))} python benchmarks/spacing_resampling.py "
                        + shlex.join(argv))
    scored = [line for line in lines if line.startswith("scans at 0.8 mm")]
    assert [line.split(",")[1].split(":")[0].strip() for line in scored] == [
        "resampled to the training spacing", "read as they are"]
    assert all(0.0 <= float(line.split("mean Dice ")[1].split()[0]) <= 1.0 for line in scored)


def test_the_sampling_benchmark_agrees_with_the_runs_own_evaluation(run, tmp_path):
    """Its U-Net row at ½ is the run's U-Net Dice, and its 8-run trajectory row the Dice that
    `bindiff evaluate` gives with 8 runs: the same draws, scored by two different code paths."""
    import subprocess
    import sys

    result = runner.invoke(app, ["evaluate", str(run), "segmentation.samples=8", "eval.nifti=false",
                                 "--out", str(tmp_path / "eight")])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((tmp_path / "eight" / "segmentation" / "summary.json").read_text())["mean"]
    finished = subprocess.run([sys.executable, "benchmarks/segmentation_sampling.py", str(run), "--part", "test",
                               "--samples", "8"], cwd=ROOT, capture_output=True, encoding="utf-8",
                              env={**os.environ, "BINDIFF_DATA_DIR": str(DATA), "PYTHONIOENCODING": "utf-8"})
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0] == (f"command: BINDIFF_DATA_DIR={shlex.quote(str(DATA))} python benchmarks/segmentation_sampling.py "
                        f"{shlex.quote(str(run))} --part test --samples 8")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]): float(line.split("|")[3])
            for line in lines if line.startswith("| ") and not line.startswith("| map")}
    assert rows[("U-Net", "0.50")] == pytest.approx(evaluated["unet"]["dice"], abs=1e-4)
    assert rows[("trajectory, 8 runs", "0.50")] == pytest.approx(evaluated["diffusion"]["dice"], abs=1e-4)


class _TimeOnly(__import__("torch").nn.Module):
    """A denoiser whose x_0 logit is the image value times t: p̂(x_0) at each step known by hand."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x_t, t, cond):
        return cond * t[:, None].to(cond.dtype)


def test_each_run_adds_its_last_or_its_mean_estimate_as_the_recipe_says():
    import torch

    from bindiff.core import BernoulliProcess, BinomialDiffusion
    from bindiff.tasks.segmentation import model as model_module

    model = BinomialDiffusion(_TimeOnly(5), BernoulliProcess.from_schedule("jsd", 4))
    images = torch.tensor([[0.1, -0.3, 0.7, 0.0, 2.0], [1.0, 0.2, -1.0, 0.5, 0.0]])
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    x = images.numpy().astype(np.float64)
    cfg = {"samples": 3, "steps": None}
    mean, var = model_module.sample_probabilities(model, images, {**cfg, "average": "final"}, torch.Generator().manual_seed(0), 2)
    np.testing.assert_allclose(mean, sigmoid(x * 1), rtol=1e-6)  # the last call is at t = 1
    mean, var = model_module.sample_probabilities(model, images, {**cfg, "average": "trajectory"},
                                         torch.Generator().manual_seed(0), 2)
    np.testing.assert_allclose(mean, np.mean([sigmoid(x * t) for t in (4, 3, 2, 1)], axis=0), rtol=1e-6)
    np.testing.assert_allclose(var, 0, atol=1e-12)  # every run made the same calls
    mean, _ = model_module.sample_probabilities(model, images, {"samples": 2, "steps": 2, "average": "trajectory"},
                                       torch.Generator().manual_seed(0), 1)  # 2 steps evenly from T to 1: t = 4, 1
    np.testing.assert_allclose(mean, np.mean([sigmoid(x * t) for t in (4, 1)], axis=0), rtol=1e-6)
    # one case with its runs side by side (3 runs, 2 per call), as `bindiff segment` draws them
    mean, var = model_module.sample_case_probabilities(model, images[1:], {**cfg, "average": "trajectory"},
                                              torch.Generator().manual_seed(0), 2)
    assert mean.shape == var.shape == (5,)
    np.testing.assert_allclose(mean, np.mean([sigmoid(x[1] * t) for t in (4, 3, 2, 1)], axis=0), rtol=1e-6)
    np.testing.assert_allclose(var, 0, atol=1e-12)


class _ReadsTheState(__import__("torch").nn.Module):
    """A denoiser that follows x_t: runs with different noise end with different estimates."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x_t, t, cond):
        return 4 * (x_t - 0.5) + 0 * cond


def test_the_runs_of_one_case_side_by_side_draw_their_own_noise():
    import torch

    from bindiff.core import BernoulliProcess, BinomialDiffusion
    from bindiff.tasks.segmentation import model as model_module

    model = BinomialDiffusion(_ReadsTheState(400), BernoulliProcess.from_schedule("jsd", 4))
    cfg = {"samples": 6, "steps": None, "average": "final"}
    mean, var = model_module.sample_case_probabilities(model, torch.zeros(1, 400), cfg, torch.Generator().manual_seed(0), 4)
    # from x_T ~ B(½) every voxel's runs disagree unless they share their noise; their mean sits near ½
    assert (var > 0).mean() > 0.9 and abs(mean.mean() - 0.5) < 0.05


def test_evaluate_scores_a_segmentation_run_again_into_a_new_folder(run, tmp_path):
    out = tmp_path / "trajectory"
    result = runner.invoke(app, ["evaluate", str(run), "segmentation.average=trajectory", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    summary = json.loads((out / "segmentation" / "summary.json").read_text())
    assert summary["settings"]["average"] == "trajectory" and set(metrics["test"]) == {"diffusion", "unet"}
    # the reverse runs are drawn that many at a time, which decides their draws: the summary says how many
    import yaml

    assert summary["settings"]["eval_batch_size"] == yaml.safe_load((run / "config.yaml").read_text())["eval"]["batch_size"]
    # the U-Net is scored as in the run itself; only the diffusion's map is made another way
    original = json.loads((run / "metrics.json").read_text())["test"]["unet"]
    assert metrics["test"]["unet"]["dice"] == pytest.approx(original["dice"])
    # with the run's own settings, the run's own figures (it reads the test cases alone)
    again = runner.invoke(app, ["evaluate", str(run), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["test"] == \
        json.loads((run / "metrics.json").read_text())["test"]
    missing = runner.invoke(app, ["evaluate", str(run), "segmentation.average=trajectory"])
    assert missing.exit_code == 2 and "--out: a segmentation run is scored again into a new folder" in missing.output
    trained = runner.invoke(app, ["evaluate", str(run), "train.epochs=9", "--out", str(tmp_path / "other")])
    assert trained.exit_code == 2 and "train.epochs" in trained.output and not (tmp_path / "other").exists()


def test_piped_scoring_and_segmenting_write_lines_and_a_bar_only_when_asked(run, tmp_path):
    """output.progress null and the output not a terminal (here): one line per reverse run or per
    case, no bar (evaluate drew one into the pipe, and segment showed nothing until the end);
    output.progress true: a bar of the cases."""
    scans = _unlabelled_folder(tmp_path, ["hippocampus_001", "hippocampus_003"])
    scored = runner.invoke(app, ["evaluate", str(run), "output.progress=null", "--out", str(tmp_path / "scored")])
    segmented = runner.invoke(app, ["segment", str(run), "output.progress=null", "--input", str(scans),
                                    "--output", str(tmp_path / "piped")])
    for result in (scored, segmented):
        assert result.exit_code == 0, result.output
        assert "\r" not in result.output and "%|" not in result.output
    assert "segmentation: sample 1/2 of 2 cases" in scored.output.splitlines()
    assert [line.split(" -> ")[0] for line in segmented.output.splitlines() if line.startswith("segment: ")] == [
        "segment: hippocampus_001", "segment: hippocampus_003"]
    barred = runner.invoke(app, ["segment", str(run), "output.progress=true", "--input", str(scans),
                                 "--output", str(tmp_path / "bar")])
    assert barred.exit_code == 0, barred.output
    assert "segment: 100%|" in barred.output and "2/2" in barred.output


def test_evaluate_with_the_expected_dice_rule_keeps_every_voxel_the_half_threshold_keeps(run, tmp_path):
    # The rule adds a voxel while its p exceeds half the expected Dice reached, which is at most 1,
    # so its mask holds every voxel of p > ½: with the same seeded maps, the run's own masks.
    out = tmp_path / "expected_dice"
    result = runner.invoke(app, ["evaluate", str(run), "segmentation.decision=expected_dice", "eval.panels=0",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "segmentation" / "summary.json").read_text())
    assert summary["settings"]["decision"] == "expected_dice"
    assert "segmentation.decision: expected_dice" in summary["definitions"]["error_auroc"]
    added = 0
    for row in summary["per_case"]:
        name = f"{row['case_id']}_mask.nii.gz"
        decided = np.asarray(nib.load(str(out / "segmentation" / "nifti" / name)).dataobj).astype(bool)
        halved = np.asarray(nib.load(str(run / "segmentation" / "nifti" / name)).dataobj).astype(bool)
        assert decided.shape == halved.shape and not (halved & ~decided).any()
        added += int(decided.sum() - halved.sum())
    # and it keeps more: voxels below ½ but above half the expected Dice (a map without any would
    # be certain everywhere; the rule ignored, writing the ½ mask, passed the checks above)
    assert added > 0


def test_scoring_that_fails_part_way_leaves_no_output_folder(run, tmp_path, monkeypatch):
    from bindiff.tasks.segmentation import job

    written = []

    def panel_then_fail(*args, **kwargs):  # the first case's NIfTIs are written by now; its panel fails
        written.append(args[-1] if args else kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job, "segmentation_panel", panel_then_fail)
    out = tmp_path / "rescored"
    result = runner.invoke(app, ["evaluate", str(run), "segmentation.average=trajectory", "--out", str(out)])
    assert result.exit_code != 0 and written
    assert not out.exists() and not list(tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())


def test_a_model_read_back_draws_times_uniformly_and_trains_on_the_recipes_mixture(run):
    """``ModelKind.build``'s training flag: the recipe's timesteps mixture is a training choice; a
    model read back (segment, evaluate, Python) computes ``model(x0)`` over uniform t, as documented."""
    from bindiff.tasks import base
    from bindiff.tasks.segmentation.job import TASK

    config, payload, loaded = base.load_trained(TASK, run)
    assert (loaded.low_time_share, loaded.top_time_share) == (0.0, 0.0)
    fitting = TASK.model_kind(config).build(config, payload["dim"], training=True)
    assert fitting.top_time_share == config["timesteps"]["top_share"] == 0.45


def test_a_run_whose_data_folder_moved_reads_the_cases_where_the_data_folder_now_is(run, tmp_path, monkeypatch):
    """Runs store full paths: a workspace moved (or a run copied to another machine) finds a named
    data set where --data-dir or $BINDIFF_DATA_DIR now points, and says where it looked otherwise."""
    import shutil

    from bindiff.adapters.errors import DataError
    from bindiff.tasks.segmentation import job

    honest = job.run_segmentation(run, overrides=["eval.panels=0", "eval.nifti=false"], out_dir=tmp_path / "a")
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    cases = moved / "split" / "cases.json"
    meta = json.loads(cases.read_text())
    old_root, gone = os.path.abspath(DATA / "msd_hippocampus"), "/gone/workspace/data/msd_hippocampus"
    assert meta["dataset"] == "msd_hippocampus" and old_root in json.dumps(meta)
    cases.write_text(json.dumps(meta).replace(old_root, gone))  # as the run reads on a machine without old_root
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(DATA))
    again = job.run_segmentation(moved, overrides=["eval.panels=0", "eval.nifti=false"], out_dir=tmp_path / "b")
    assert again["test"] == honest["test"]
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="/gone/workspace/data/msd_hippocampus/"):
        job.run_segmentation(moved, overrides=["eval.panels=0", "eval.nifti=false"], out_dir=tmp_path / "c")
    # a resume's --data-dir reaches the cases as the variable does
    split = job.TASK.load_data(moved / "split", data_dir=str(DATA))
    assert all(case.case.label.is_file() and str(case.case.label).startswith(os.path.abspath(DATA))
               for case in split.cases.values())
    # and so does evaluate's (the option was missing; only the variable worked)
    from bindiff.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(moved), "eval.panels=0", "eval.nifti=false", "--data-dir",
                                      str(DATA), "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["test"] == honest["test"]


def _ece_by_hand(p, y, bins):
    total = 0.0
    for k in range(bins):
        inside = (p >= k / bins) & ((p < (k + 1) / bins) if k < bins - 1 else (p <= 1))
        if inside.any():
            total += inside.sum() / p.size * abs(y[inside].mean() - p[inside].mean())
    return total


def _auroc_by_hand(u, wrong):
    pairs = u[wrong][:, None] - u[~wrong][None, :]
    return float(((pairs > 0).sum() + 0.5 * (pairs == 0).sum()) / pairs.size)


def test_the_runs_evaluation_writes_and_scores_each_models_own_maps_as_the_recipe_says(run, tmp_path, monkeypatch):
    """Known maps in place of the samplers (the diffusion's mean and variance, the U-Net's probability):
    segmentation/nifti/ holds the diffusion's mask and its variance map (segmentation.uncertainty), and
    each model's ECE (segmentation.calibration_bins), error AUROC (against the mask decided at
    segmentation.threshold) and mean uncertainty (the U-Net's: its entropy) are those of its own map."""
    from bindiff.tasks import base
    from bindiff.tasks.segmentation import job

    config, _, _ = base.load_trained(job.TASK, run)
    records = job.load_data(run / "split", config, parts=["test"]).part("test")
    dim = records[0].image.transform.valid().size
    rng = np.random.default_rng(5)
    mean, variance, unet = (rng.uniform(0, 1, (len(records), dim)), rng.uniform(0, 0.25, (len(records), dim)),
                            rng.uniform(0, 1, (len(records), dim)))
    monkeypatch.setattr(job, "sample_probabilities", lambda *args, **kwargs: (mean, variance))
    monkeypatch.setattr(job, "unet_probabilities", lambda *args, **kwargs: unet)
    overrides = ["segmentation.uncertainty=variance", "segmentation.threshold=0.3", "segmentation.calibration_bins=3",
                 "eval.panels=0"]
    job.run_segmentation(run, overrides=overrides, out_dir=tmp_path)
    rows = {r["case_id"]: r for r in json.loads((tmp_path / "segmentation" / "summary.json").read_text())["per_case"]}
    entropy = lambda p: -(p * np.log2(p) + (1 - p) * np.log2(1 - p))  # noqa: E731  (no p is 0 or 1 here)
    for i, record in enumerate(records):
        transform, truth = record.image.transform, record.mask.reshape(-1).astype(bool)
        valid = transform.valid().reshape(-1)
        written = {kind: record.geometry.to_canonical(np.asarray(nib.load(str(
            tmp_path / "segmentation" / "nifti" / f"{record.case_id}_{kind}.nii.gz")).dataobj))
            for kind in ("mask", "uncertainty")}
        np.testing.assert_array_equal(written["mask"], transform.from_grid(
            ((mean[i] >= 0.3) & valid).reshape(transform.grid_shape)).astype(np.uint8))
        np.testing.assert_allclose(written["uncertainty"], transform.from_grid(
            (variance[i] * valid).reshape(transform.grid_shape)), rtol=1e-6)
        for name, prob, uncertainty in (("diffusion", mean[i], variance[i]), ("unet", unet[i], entropy(unet[i]))):
            p, u, y = prob[valid], uncertainty[valid], truth[valid]
            row = rows[record.case_id][name]
            assert row["ece"] == pytest.approx(_ece_by_hand(p, y, 3), abs=1e-12), name
            assert row["error_auroc"] == pytest.approx(_auroc_by_hand(u, (p >= 0.3) != y), abs=1e-12), name
            assert row["mean_uncertainty"] == pytest.approx(u.mean(), abs=1e-12), name


def test_segment_with_the_baseline_writes_the_entropy_of_its_probability(run, tmp_path):
    folder = _unlabelled_folder(tmp_path, ["hippocampus_001"])
    result = runner.invoke(app, ["segment", str(run), "--input", str(folder), "--output", str(tmp_path / "out"),
                                 "--model", "unet", "--probabilities", "--panels", "0"])
    assert result.exit_code == 0, result.output
    prob, uncertainty = (np.asarray(nib.load(str(tmp_path / "out" / f"hippocampus_001_{kind}.nii.gz")).dataobj,
                                    dtype=np.float64) for kind in ("probability", "uncertainty"))
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = np.nan_to_num(-(prob * np.log2(prob) + (1 - prob) * np.log2(1 - prob)))
    assert uncertainty.max() > 0.5  # somewhere the U-Net is unsure
    np.testing.assert_allclose(uncertainty, entropy, atol=1e-5)


def test_segment_reads_no_file_of_the_runs_own_cases(run, tmp_path):
    """The run's split/cases.json names its cases' label maps and images; `segment` needs none of them
    (it reads the run's geometry from cases.json itself): with every one of those paths gone, it
    writes the same mask. (A read of a label's header by nibabel passed the read_label_map guard.)"""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cases = copy / "split" / "cases.json"
    meta = json.loads(cases.read_text())
    for record in meta["cases"].values():
        for key in ("label", "image", "brain"):
            if record.get(key):
                record[key] = str(tmp_path / "gone" / Path(record[key]).name)
    cases.write_text(json.dumps(meta))
    folder = _unlabelled_folder(tmp_path, ["hippocampus_003"])
    masks = []
    for run_dir, out in ((run, "a"), (copy, "b")):
        result = runner.invoke(app, ["segment", str(run_dir), "--input", str(folder), "--output", str(tmp_path / out),
                                     "--panels", "0"])
        assert result.exit_code == 0, result.output
        masks.append(np.asarray(nib.load(str(tmp_path / out / "hippocampus_003_mask.nii.gz")).dataobj))
    np.testing.assert_array_equal(*masks)


def test_segments_summary_lists_the_settings_segment_reads_and_no_other():
    """summary.json's settings listed segmentation.calibration_bins, a key segment refuses (it scores nothing)."""
    from bindiff.config import load_recipe
    from bindiff.tasks.segmentation.segment import _settings_read

    config = load_recipe(ROOT / "recipes" / "hippocampus_segmentation.yaml")
    assert set(_settings_read(config, "diffusion")) == {"samples", "steps", "average", "decision", "threshold",
                                                         "uncertainty", "eval_batch_size"}
    assert set(_settings_read(config, "unet")) == {"decision", "threshold"}
