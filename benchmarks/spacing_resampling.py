"""What resampling to the training spacing buys `bindiff segment` on scans of another voxel size.

Each of the run's first ``--cases`` held-out MSD hippocampus images is resampled by SimpleITK
(linear, the same outer faces) to every spacing of ``--spacings``; `bindiff segment` segments
the copies twice, as it does (resampling each to the run's training spacing and its maps back)
and with that step switched off (the grid then reads the scan's own voxels as training voxels).
Each mask is brought back onto its label map's grid by SimpleITK (nearest neighbour) and
scored with Dice against the label's region (1 anterior, 2 posterior, both for whole). The
labels are read to score only.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/spacing_resampling.py RUN_DIR --cases 10 --spacings 0.8,1.25
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import SimpleITK as sitk

from bindiff.adapters.masks import spacing as voxel_size
from bindiff.tasks.base import read_run_config
from bindiff.tasks.segmentation.segment import segment

REGION_LABELS = {"whole": (1, 2), "anterior": (1,), "posterior": (2,)}


def rescaled(image: sitk.Image, spacing: float) -> sitk.Image:
    """``image`` on isotropic ``spacing`` mm voxels covering the same extent (linear interpolation)."""
    size = [int(round(n * s / spacing)) for n, s in zip(image.GetSize(), image.GetSpacing())]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    origin = np.array(image.GetOrigin()) + direction @ (-0.5 * np.array(image.GetSpacing()) + 0.5 * spacing)
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), [spacing] * 3,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def dice_on_label_grid(mask_file: Path, label: sitk.Image, labels: tuple[int, ...]) -> float:
    back = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(mask_file)), label, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0)) > 0
    truth = np.isin(sitk.GetArrayFromImage(label), labels)
    total = back.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (back & truth).sum() / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--cases", type=int, default=10, help="held-out cases, the first of the run's test split")
    parser.add_argument("--spacings", default="0.8,1.25", help="comma-separated isotropic voxel sizes in mm")
    args = parser.parse_args()
    data_dir = os.environ.get("BINDIFF_DATA_DIR")  # the folder the scans are read from
    print(f"command: {f'BINDIFF_DATA_DIR={shlex.quote(data_dir)} ' if data_dir else ''}"
          + shlex.join(["python", "benchmarks/spacing_resampling.py", args.run_dir, "--cases", str(args.cases),
                        "--spacings", args.spacings]))
    run = Path(args.run_dir)
    config = read_run_config(run)
    if config["data"]["dataset"] != "msd_hippocampus":
        raise SystemExit(f"{run}: this benchmark scores MSD hippocampus runs, not {config['data']['dataset']}")
    data = Path(os.environ.get("BINDIFF_DATA_DIR", "../shared/data")) / "msd_hippocampus"
    cases = json.loads((run / "split" / "cases.json").read_text())["split"]["test"][: args.cases]
    spacings = [float(s) for s in args.spacings.split(",")]
    labels = REGION_LABELS[config["labels"]["region"]]
    with tempfile.TemporaryDirectory() as tmp:
        scans = Path(tmp) / "scans"
        scans.mkdir()
        for case in cases:
            image = sitk.ReadImage(str(data / "images" / f"{case}.nii.gz"), sitk.sitkFloat32)
            for s in spacings:
                sitk.WriteImage(rescaled(image, s), str(scans / f"{case}_{s}.nii.gz"))
        for resampling in (True, False):
            out = Path(tmp) / f"out_{resampling}"
            if resampling:
                segment(run, scans, out)
            else:  # the counterfactual: every scan read as if it had the training spacing
                with mock.patch.object(voxel_size, "needs_resampling", lambda *a, **k: False):
                    segment(run, scans, out)
            for s in spacings:
                scores = [dice_on_label_grid(out / f"{case}_{s}_mask.nii.gz",
                                             sitk.ReadImage(str(data / "labels" / f"{case}.nii.gz")), labels)
                          for case in cases]
                how = "resampled to the training spacing" if resampling else "read as they are"
                print(f"scans at {s} mm, {how}: mean Dice {np.mean(scores):.4f} over {len(cases)} held-out cases")


if __name__ == "__main__":
    main()
