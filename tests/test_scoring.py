"""`bindiff score`: masks against reference label maps, file to file and folder to folder, with
metrics computed here by hand on small boxes, and every bad input refused in one line."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app

runner = CliRunner()
AFFINE = np.diag([2.0, 1.0, 1.0, 1.0])  # 2 x 1 x 1 mm voxels: volumes and distances feel the spacing


def _save(path, array, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.uint8), affine), str(path))
    return path


def _box(lo, hi, shape=(10, 10, 10), value=1):
    volume = np.zeros(shape, np.uint8)
    volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = value
    return volume


@pytest.fixture()
def folders(tmp_path):
    """Two cases: ``a`` predicted one voxel off along x (4x4x4 boxes), ``b`` exactly; ``c`` has no
    prediction. References are hippocampus-style label maps (1 anterior, 2 posterior)."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    _save(pred / "a_mask.nii.gz", _box((3, 3, 3), (7, 7, 7)))
    _save(pred / "a_uncertainty.nii.gz", np.ones((10, 10, 10)))  # segment's other maps are not masks to score
    _save(pred / "b_mask.nii.gz", _box((1, 1, 1), (3, 3, 3)))
    (pred / "summary.json").write_text("{}")
    a_ref = _box((2, 3, 3), (6, 7, 7))
    a_ref[2:4][a_ref[2:4] > 0] = 2  # the posterior half carries label 2
    _save(ref / "a.nii.gz", a_ref)
    _save(ref / "b.nii.gz", _box((1, 1, 1), (3, 3, 3)))
    _save(ref / "c.nii.gz", _box((0, 0, 0), (2, 2, 2)))
    return pred, ref


def test_folders_are_scored_case_by_case_against_a_hand_computation(folders, tmp_path):
    pred, ref = folders
    result = runner.invoke(app, ["score", str(pred), str(ref), "--preset", "msd_hippocampus",
                                 "--out", str(tmp_path / "s" / "scores.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "s" / "scores.json").read_text())
    rows = {r["case_id"]: r for r in summary["per_case"]}
    assert sorted(rows) == ["a", "b"] and summary["unmatched_references"] == ["c"]
    # a: two 4x4x4 boxes overlapping in 3x4x4 voxels -> Dice 2*48/128, IoU 48/80
    assert rows["a"]["dice"] == pytest.approx(0.75) and rows["a"]["iou"] == pytest.approx(0.6)
    assert rows["a"]["volume_ml"] == pytest.approx(64 * 2 / 1000) and rows["a"]["volume_error_ml"] == 0
    # the x faces of the two boxes are one voxel (2 mm) apart and every other surface voxel has a
    # partner at distance 0, so more than 5 % of the distances are 2 mm: HD95 = 2 mm
    assert rows["a"]["hd95_mm"] == pytest.approx(2.0)
    assert rows["b"]["dice"] == 1 and rows["b"]["hd95_mm"] == 0
    assert summary["mean"]["dice"] == pytest.approx((0.75 + 1) / 2) and summary["mean"]["cases"] == 2
    assert "a: Dice 0.7500" in result.output and "1 reference(s) with no prediction, left out: c" in result.output
    # a region of the label map: a's anterior part (label 1) is 2x4x4 voxels inside the prediction
    result = runner.invoke(app, ["score", str(pred / "a_mask.nii.gz"), str(ref / "a.nii.gz"),
                                 "--preset", "msd_hippocampus", "--region", "anterior"])
    assert result.exit_code == 0 and "a: Dice 0.6667" in result.output, result.output  # 2*32/(64+32)


def test_a_reference_with_an_upper_case_suffix_is_found(folders, tmp_path):
    """The suffix is read without regard to case on both sides (B.NII.GZ was a case no prediction
    could find: "no reference b.nii.gz")."""
    pred, ref = folders
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "b.NII.GZ").symlink_to(ref / "b.nii.gz")
    result = runner.invoke(app, ["score", str(pred / "b_mask.nii.gz"), str(upper)])
    assert result.exit_code == 0 and "b: Dice 1.0000" in result.output, result.output


def test_bad_input_is_refused_in_one_line(folders, tmp_path):
    pred, ref = folders
    lonely = _save(tmp_path / "lonely" / "z_mask.nii.gz", _box((1, 1, 1), (2, 2, 2)))
    shifted = _save(tmp_path / "shifted" / "b.nii.gz", _box((1, 1, 1), (3, 3, 3)), np.eye(4))
    smaller = _save(tmp_path / "smaller" / "b.nii.gz", _box((1, 1, 1), (3, 3, 3), shape=(9, 10, 10)))
    labels = _save(tmp_path / "labels" / "b_mask.nii.gz", _box((1, 1, 1), (3, 3, 3), value=2))
    (tmp_path / "empty").mkdir()
    twice = tmp_path / "twice"  # b's reference as .nii.gz and as .nii: which is the truth is not ours to pick
    _save(twice / "b.nii.gz", _box((1, 1, 1), (3, 3, 3)))
    _save(twice / "b.nii", _box((2, 2, 2), (4, 4, 4)))
    cases = (
        ([str(lonely.parent), str(ref), "--preset", "msd_hippocampus"], "z_mask.nii.gz: no reference z.nii.gz"),
        ([str(pred / "b_mask.nii.gz"), str(shifted)], "b_mask.nii.gz: its voxel-to-world affine differs from"),
        ([str(pred / "b_mask.nii.gz"), str(smaller)], "b_mask.nii.gz: shape (10, 10, 10) differs from its reference"),
        ([str(labels), str(ref / "b.nii.gz")], "b_mask.nii.gz: not a 0/1 mask (it holds 0, 2)"),
        ([str(pred), str(ref)], "a.nii.gz: unexpected label value(s) 2 for preset 'binary'"),
        ([str(pred), str(ref), "--preset", "brats2015", "--region", "anterior"], "has no region 'anterior'"),
        ([str(pred), str(ref), "--preset", "unknown"], "unknown label preset 'unknown'"),
        ([str(tmp_path / "empty"), str(ref)], "empty: no mask files"),
        ([str(tmp_path / "missing"), str(ref)], "missing: no such prediction file or folder"),
        ([str(pred), str(ref / "a.nii.gz")], "a.nii.gz: one reference file for 2 predictions"),
        ([str(pred / "b_mask.nii.gz"), str(twice)], "b.nii.gz: a second reference for case 'b' (beside b.nii)"),
        ([str(ref), str(ref)], "a.nii.gz: is its own reference; give the reference label maps"),
        ([str(ref / "b.nii.gz"), str(ref / "b.nii.gz")], "b.nii.gz: is its own reference; give the reference label map"),
        ([str(pred), str(ref), "--preset", "msd_hippocampus", "--out", str(ref / "a.nii.gz" / "s.json")],
         f"--out {ref / 'a.nii.gz' / 's.json'}: cannot write there ({ref / 'a.nii.gz'} is a file, not a folder)"),
    )
    for args, message in cases:
        result = runner.invoke(app, ["score", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output.strip().splitlines()[-1] and "Traceback" not in result.output, result.output
    # an --out below a file is said before any case is read (a prediction that does not read would say otherwise)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "b_mask.nii.gz").write_text("not a volume")
    result = runner.invoke(app, ["score", str(tmp_path / "broken"), str(ref), "--out", str(ref / "a.nii.gz" / "s.json")])
    assert result.exit_code == 2 and "cannot write there" in result.output.strip().splitlines()[-1], result.output
    custom = runner.invoke(app, ["score", str(pred), str(ref), "--preset", "custom"])
    assert custom.exit_code == 2 and "the custom preset's labels come from a run; give --run" in custom.output


def test_score_never_replaces_an_out_file_another_process_wrote_while_it_scored(folders, tmp_path, monkeypatch):
    import bindiff.scoring as scoring
    from bindiff.files import OutputError

    pred, ref = folders
    out = tmp_path / "scores.json"
    real = scoring.summarize

    def and_another_process_writes_out(rows):
        out.write_text("theirs\n")  # after score's own check that out does not exist
        return real(rows)

    monkeypatch.setattr(scoring, "summarize", and_another_process_writes_out)
    with pytest.raises(OutputError, match="another process wrote this file"):
        scoring.score(pred, ref, preset="msd_hippocampus", out=out)
    assert out.read_text() == "theirs\n" and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
