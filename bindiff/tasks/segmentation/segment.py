"""Using a trained segmentation run on new scans: image(s) in, mask and uncertainty map out.

No label is read anywhere here. A case whose voxel spacing differs from the run's (its
``images.spacing``, else the training cases' median; by more than 1 % on an axis) is first
resampled to it, and its maps come back onto its own voxels afterwards (``placement``). Each
case is placed on the run's grid exactly as its training images were (from the image, or its
brain mask when the run used them), segmented by the run's diffusion model (K reverse runs from noise, or the deterministic
U-Net with ``model="unet"``), mapped back to the input's voxel grid and written as NIfTI with the
input's geometry: ``<output>/<case>_mask.nii.gz`` and ``<output>/<case>_uncertainty.nii.gz``;
``<output>/summary.json`` lists every case.

A case is an image file (3-D for a one-channel run; a 4-D NIfTI with the channels on its last
axis otherwise), a folder holding one DICOM series (named after the folder) or, for a run with
named ``images.channels``, a folder holding those files (each a file or a DICOM series folder
of that name). ``input`` is one case, or a folder of cases.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.masks import write_mask, write_volume
from ...adapters.masks.datasets import (LABEL_SUFFIXES, find_by_stem, find_channel, refuse_non_file,
                                        refuse_repeated_cases, volume_stem)
from ...adapters.masks.grid import bounding_box
from ...adapters.masks.images import ImageCase, image_roi, normalise_channels, read_brain_on, read_channels, read_image
from ...adapters.masks.io import detached_data_files, is_dicom_series
from ...config import RecipeError, argument
from ...files import staged_folder, write_json
from ...metrics.calibration import binary_entropy
from ...progress import log, log_lines, progress_disabled, warn
from .. import base
from ..masks.data import grid_spec
from .data import TrainingGeometry, training_geometry
from .job import TASK
from .model import image_channels, sample_case_probabilities
from .panels import segmentation_panel
from .placement import on_scan_voxels, to_spacing

IMAGE_SUFFIXES = LABEL_SUFFIXES  # the formats nibabel and SimpleITK read here
# A scan whose anatomy is this many times longer than every training image along an axis, or
# this many times shorter than all of them, is not what the model learned from: MSD hippocampus
# images are crops of 40-60 mm, a whole head is 150 mm or more, one slice is 1 mm.
LONGER_WARNING, SHORTER_WARNING = 1.5, 3.0
SEGMENT_MODELS = ("diffusion", "unet")
# the overrides segment reads (the ECE's bins and the evaluation's cases belong to scoring, not segmenting);
# the U-Net is one call on the whole batch: it reads how its mask is decided
SEGMENT_KEYS = {"diffusion": ("segmentation.samples", "segmentation.steps", "segmentation.average",
                              "segmentation.decision", "segmentation.threshold", "segmentation.uncertainty",
                              "eval.batch_size", "output.progress"),
                "unet": ("segmentation.decision", "segmentation.threshold", "output.progress")}


@dataclass(frozen=True)
class InputCase:
    case_id: str
    files: tuple[Path, ...]  # one file or DICOM folder (all channels), or one per named channel


def _folder_name(folder: Path) -> str:
    """A case folder's name, also when it is given as ``.`` or ``..`` (whose ``name`` is empty); a
    link keeps its own name."""
    return Path(os.path.abspath(folder)).name


def _channel(folder: Path, name: str) -> Path | None:
    """Channel ``name`` of a case folder: a file ``<name>.<suffix>`` (or ``<case>_<name>``, as BraTS
    names them) or a DICOM series folder ``<name>``."""
    found = find_channel(folder, name, _folder_name(folder))
    return found if found is not None or not is_dicom_series(folder / name) else folder / name


def _channel_folder(folder: Path, names: list[str]) -> InputCase | None:
    """The case a folder holding the run's channels is; None when it holds none of them; DataError
    naming what is missing when it holds only some (a case would otherwise be skipped unseen)."""
    files = [_channel(folder, name) for name in names]
    missing = [name for name, found in zip(names, files) if found is None]
    if len(missing) == len(names):
        return None
    if missing:
        raise DataError(f"{folder}: no {', '.join(missing)} beside {', '.join(n for n in names if n not in missing)} "
                        f"(the run reads {', '.join(names)})")
    return InputCase(_folder_name(folder), tuple(files))


def find_inputs(path: Path, names: list[str] | None) -> list[InputCase]:
    """The cases under ``path`` (see the module's doc), sorted by name; DataError when there are none."""
    if path.is_file():
        stem = volume_stem(path)
        if stem is None:
            if path.suffix.lower() == ".dcm":
                raise DataError(f"{path}: one DICOM file is one slice; give the folder holding the whole series")
            raise DataError(f"{path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)}, "
                            "or a folder holding a DICOM series)")
        return [InputCase(stem, (path,))]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    if names and (case := _channel_folder(path, names)):
        return [case]
    if not names and is_dicom_series(path):  # the folder is one scan
        return [InputCase(_folder_name(path), (path,))]
    cases = []
    for entry in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
        if volume_stem(entry) is not None and not entry.is_file():  # a broken link or a folder: a case would go missing
            refuse_non_file(entry, "scan")
        if entry.is_file() and (stem := volume_stem(entry)) is not None:
            cases.append(InputCase(stem, (entry,)))
        elif entry.is_dir() and names and (case := _channel_folder(entry, names)):
            cases.append(case)
        elif entry.is_dir() and not names and is_dicom_series(entry):
            cases.append(InputCase(entry.name, (entry,)))
    if not cases:
        wanted = f"image files ({', '.join(IMAGE_SUFFIXES)})"
        wanted += f" or case folders holding {', '.join(names)}" if names else " or DICOM series folders"
        seen = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        held = (f" (it holds {', '.join(seen[:5])}" + (f" and {len(seen) - 5} more" if len(seen) > 5 else "") + ")"
                if seen else " (it is empty)")
        raise DataError(f"{path}: no {wanted} in this folder{held}")
    refuse_repeated_cases([(case.case_id, case.files[0]) for case in cases])
    return cases


def unread_entries(path: Path, names: list[str] | None, cases: list[InputCase]) -> list[str]:
    """The names of the entries of a folder of cases (``find_inputs``) that no case reads (a format
    bindiff does not read, a folder that is neither a case nor a series, a sidecar): said, so no
    scan goes missing unseen."""
    if not path.is_dir() or (_channel_folder(path, names) if names else is_dicom_series(path)):
        return []  # one file, or a folder that is itself one case
    used = {file for case in cases for file in case.files} | {case.files[0].parent for case in cases}
    used |= {data for case in cases for file in case.files for data in detached_data_files(file)}  # an .mhd's .raw
    return sorted(entry.name for entry in path.iterdir() if not entry.name.startswith(".") and entry not in used)


def read_case(case: InputCase, channels: int, names: list[str] | None = None) -> tuple[np.ndarray, object]:
    """(C, X, Y, Z) channels in canonical order and their geometry; refuses a wrong channel count
    (``names``: the run's ``images.channels``, named in the refusal)."""
    if len(case.files) > 1:
        data, geometry = read_channels(case.files)
    else:
        volume = read_image(case.files[0], channels=True)
        data, geometry = volume.data, volume.geometry
    if data.shape[0] != channels:
        raise DataError(f"{case.files[0]}: {data.shape[0]} image channel(s), but the run was trained on {channels}"
                        + (f" (a case is a {channels}-channel 4-D file, or a folder holding {', '.join(names)})"
                           if names else ""))
    return data, geometry


def _brain_file(brain: Path | None, case: InputCase) -> Path | None:
    if brain is None:
        return None
    if brain.is_file():
        return brain
    found = find_by_stem(brain, case.case_id)
    if found is None:
        raise DataError(f"{brain}: no brain mask {case.case_id}.nii.gz (or another image format) for {case.files[0]}")
    return found


def _settings_read(config: dict, model: str) -> dict:
    """The settings the model used (``SEGMENT_KEYS``): the U-Net is one call, so it reads only how
    the mask is decided (its uncertainty is the entropy of its probability); the diffusion's runs
    are drawn ``eval.batch_size`` at a time, which decides their draws."""
    cfg = config["segmentation"]
    read = {key.split(".", 1)[1]: cfg[key.split(".", 1)[1]] for key in SEGMENT_KEYS[model]
            if key.startswith("segmentation.")}  # not calibration_bins: segment scores nothing
    return {**read, "eval_batch_size": config["eval"]["batch_size"]} if model == "diffusion" else read


@base.keeps_threads
def segment(run_dir: str | Path, input_path: str | Path, output_dir: str | Path, brain: str | Path | None = None,
            model: str = "diffusion", overrides: list[str] = (), checkpoint: str = "best",
            probabilities: bool = False, panels: int = 20, device=None) -> dict:
    """Segment every case of ``input_path`` with a trained run; writes NIfTI files and summary.json
    (and each case's probability map with ``probabilities``), and PNG panels (image, mask,
    uncertainty in three planes) of the first ``panels`` cases. ``device``: where the model runs
    (default: the run's train.device)."""
    if model not in SEGMENT_MODELS:
        raise RecipeError(f"segment: {argument('model', '--model')} must be one of {', '.join(SEGMENT_MODELS)}, "
                          f"got {model!r}")
    panels = base.panel_count(panels)
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FileExistsError(f"{output_dir}: exists and is not an empty folder; bindiff never overwrites")
    config, payload, diffusion = base.load_trained(TASK, run_dir, checkpoint, device=device)
    config = base.rescoring_config(TASK, config, overrides, allowed=SEGMENT_KEYS[model],
                                   command=f"segment --model {model}")
    uses_brain = config["images"]["brain"]
    if uses_brain and brain is None:
        raise RecipeError(f"{run_dir}: the run placed and normalised its images inside brain masks (images.brain); "
                          f"give one with {argument('brain', '--brain FILE|FOLDER')}")
    if not uses_brain and brain is not None:
        raise RecipeError(f"{run_dir}: the run placed its images from their non-zero voxels, not brain masks; "
                          f"drop {argument('brain', '--brain')}")
    cases = find_inputs(Path(input_path), config["images"]["channels"])
    unread = unread_entries(Path(input_path), config["images"]["channels"], cases)
    if unread:  # not refused: a folder may hold notes or sidecars beside its scans
        shown = ", ".join(unread[:5]) + (f" and {len(unread) - 5} more" if len(unread) > 5 else "")
        warn(f"{input_path}: {len(unread)} entr{'y' if len(unread) == 1 else 'ies'} not read (not an image "
            f"file of {', '.join(IMAGE_SUFFIXES)}, nor a case folder): {shown}")
    if model == "unet":
        _, payload, net = base.load_trained(TASK, run_dir, checkpoint, device=base.device_of(diffusion),
                                            companion="unet")
    else:
        net = diffusion
    base.apply_threads(config)
    spec, cfg, channels = grid_spec(config), config["segmentation"], image_channels(config)
    trained = training_geometry(Path(run_dir) / "split")
    if brain is not None and not Path(brain).exists():
        raise DataError(f"{brain}: no such brain-mask file or folder")
    if brain is not None and Path(brain).is_file() and len(cases) > 1:
        names = config["images"]["channels"]
        one_case = (f" (or, if {input_path} is one case, name its files {', '.join(names)}: the run's images.channels)"
                    if names and all(len(case.files) == 1 for case in cases) else "")
        raise DataError(f"{brain}: one brain mask for {len(cases)} cases; give a folder of <case>.nii.gz brain masks"
                        + one_case)
    device, started, rows = base.device_of(net), time.perf_counter(), []
    with staged_folder(output_dir) as staging:
        for i, case in enumerate(tqdm(cases, desc="segment", unit="case", disable=progress_disabled(config))):
            rows.append(_segment_case(case, net, model, config, spec, channels, trained, device, staging,
                                      output_dir, None if brain is None else Path(brain), probabilities,
                                      panel=i < panels))
        summary = {"run": str(run_dir), "model": model,
                   "checkpoint": base.checkpoint_entry(payload, checkpoint, None if model == "diffusion" else model),
                   "input": str(input_path), "not_read": unread, "settings": _settings_read(config, model),
                   "training_spacing_mm": list(trained.spacing),
                   "training_extent_mm": {"smallest": list(trained.smallest), "largest": list(trained.largest)},
                   "uncertainty": cfg["uncertainty"] if model == "diffusion" else "entropy",
                   "seconds": round(time.perf_counter() - started, 2), "cases": rows}
        write_json(staging / "summary.json", summary)
    return summary


def _mm(values) -> str:
    return " x ".join(f"{v:.0f}" for v in values)


def _extent_warning(case: InputCase, roi: np.ndarray, spacing, trained: TrainingGeometry) -> str | None:
    """A line when the anatomy the grid is centred on (non-zero voxels or brain mask) is far larger
    than any training image (the window would land in its middle, wherever the structure is) or
    far thinner than all of them (a slice or a slab, where a 3-D model lacks its context)."""
    box = bounding_box(roi)
    if box is None:  # an empty image: refused by name when it is placed
        return None
    extent = (box[1] - box[0]) * np.array(spacing)
    spans = f"{case.files[0]}: its anatomy spans {_mm(extent)} mm"
    if (extent > LONGER_WARNING * np.array(trained.largest)).any():
        return (f"{spans}, the run's training images at most {_mm(trained.largest)} mm; the model learned from such "
                "crops, so crop the scan around the structure first or expect a wrong mask")
    if (extent < np.array(trained.smallest) / SHORTER_WARNING).any():
        return (f"{spans}, the run's training images at least {_mm(trained.smallest)} mm; the model needs the "
                "3-D context it learned with, so expect a wrong mask")
    return None


def _window_warning(case: InputCase, roi: np.ndarray, outside_ml: float, spec,
                    trained: TrainingGeometry) -> str | None:
    """A line when the grid window leaves anatomy out of a scan larger than every training image.
    Training crops lost anatomy too (the window is smaller than most MSD crops), so only a scan
    beyond what the model learned from is named: its structure may lie in the part never looked at."""
    lo, hi = bounding_box(roi)  # not empty: some of it lies outside
    extent = (hi - lo) * np.array(trained.spacing)  # roi is on the training voxels by now
    if not (extent > np.array(trained.largest) * 1.01).any():
        return None
    return (f"{case.files[0]}: the grid window ({_mm(spec.shape)} voxels) leaves {outside_ml:.2f} ml of its anatomy "
            f"({_mm(extent)} mm; the training images at most {_mm(trained.largest)} mm) unseen: its mask is 0 and its "
            "uncertainty 0 without being looked at; crop the scan around the structure first")


def _place_case(case: InputCase, channels: int, spec, trained: TrainingGeometry, brain: Path | None,
                names: list[str] | None = None) -> tuple[ImageCase, object, bool, str | None, np.ndarray, float]:
    """The case read, brought to the training voxel size when its own differs, and placed on the
    grid; also its geometry, whether it was resampled, a warning when it is unlike the training
    images (``None`` otherwise), its first channel as read (canonical order, for the panel) and
    the volume (ml) of its anatomy the grid window leaves out."""
    data, geometry = read_case(case, channels, names)
    first_channel = data[0]
    brain_file = _brain_file(brain, case)
    brain_mask = None if brain_file is None else read_brain_on(brain_file, geometry, case.files[0])
    roi = image_roi(data, brain_mask, source=case.files[0])
    warning = _extent_warning(case, roi, geometry.spacing, trained)
    if warning:  # the mask is still written: the user may know better
        warn(warning)
    # normalised on the scan's own voxels, then brought to the voxels the model learned at (see
    # ImageCase.place); image.transform then maps that volume
    data, stats = normalise_channels(data, roi, source=case.files[0])
    data, (roi,), resampled = to_spacing(data, geometry.spacing, trained.spacing, roi, source=geometry.source)
    image = ImageCase.place(data, geometry, spec, brain=roi, source=case.files[0], stats=stats)
    # counted on the voxels the model sees (the training spacing's), so given in ml, whatever the scan's
    outside_ml = image.transform.outside(roi) * float(np.prod(trained.spacing)) / 1000
    if outside_ml and warning is None:
        warning = _window_warning(case, roi, outside_ml, spec, trained)
        if warning:
            warn(warning)
    return image, geometry, resampled, warning, first_channel, outside_ml


def _segment_case(case: InputCase, net, model: str, config: dict, spec, channels: int, trained: TrainingGeometry,
                  device, staging: Path, output_dir: Path, brain: Path | None, probabilities: bool,
                  panel: bool) -> dict:
    cfg = config["segmentation"]
    image, geometry, resampled, warning, shown, outside_ml = _place_case(case, channels, spec, trained, brain,
                                                                      config["images"]["channels"])
    cond = torch.from_numpy(image.grid.reshape(1, -1).astype(np.float32)).to(device)
    seed = base.derived_seed(config["seed"], "segment", case.case_id)
    if model == "diffusion":
        generator = torch.Generator(device=device).manual_seed(seed)
        prob, variance = sample_case_probabilities(net, cond, cfg, generator, config["eval"]["batch_size"])
        uncertainty = binary_entropy(prob) if cfg["uncertainty"] == "entropy" else variance
    else:
        prob = net.probabilities(cond).cpu().numpy()[0].astype(np.float64)
        uncertainty = binary_entropy(prob)
    mask, prob_volume, uncertainty_volume = on_scan_voxels(
        prob, uncertainty, image.transform, cfg, geometry.canonical_shape if resampled else None)
    names = {"mask": f"{case.case_id}_mask.nii.gz", "uncertainty": f"{case.case_id}_uncertainty.nii.gz"}
    write_mask(mask, geometry, staging / names["mask"])
    write_volume(uncertainty_volume.astype(np.float32), geometry, staging / names["uncertainty"])
    if probabilities:
        names["probability"] = f"{case.case_id}_probability.nii.gz"
        write_volume(prob_volume.astype(np.float32), geometry, staging / names["probability"])
    volume_ml = float(mask.sum() * np.prod(geometry.spacing) / 1000)
    if panel:  # on the scan's own voxels: what the NIfTI files hold
        names["panel"] = f"panels/{case.case_id}.png"
        segmentation_panel(shown, None, {model: mask}, uncertainty_volume, staging / names["panel"],
                           title=f"{case.case_id}: {model} mask, {volume_ml:.2f} ml")
    if log_lines(config):
        log(f"segment: {case.case_id} -> {output_dir / names['mask']}")
    valid = image.transform.valid().reshape(-1)
    return {"case_id": case.case_id, "inputs": [str(f) for f in case.files],
            **{k: str(output_dir / v) for k, v in names.items()}, "seed": seed, "voxels": int(mask.sum()),
            "volume_ml": volume_ml,
            "spacing_mm": list(geometry.spacing), "resampled": resampled,
            "mean_uncertainty": float(uncertainty[valid].mean()), "outside_window_ml": outside_ml,
            "warning": warning}
