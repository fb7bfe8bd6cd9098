"""The segmentation task's data: each case's image channels and mask on one grid placed from the
image alone (``bindiff.adapters.masks.images``), split by case.

With ``images.spacing`` set, every case is first resampled to that voxel size (``placement``),
its label by nearest neighbour; the run's evaluation scores each mask on the case's own voxels.

A run stores ``split/cases.json`` (data set, preset, grid, the split, the voxel size it works
at, and per case its files, geometry, grid transform, normalisation and whether it was
resampled); loading re-reads the files, which the saved transforms and statistics reproduce
exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.masks import MaskCase, case_reader, load_region, split_cases, to_vectors
from ...adapters.masks.datasets import find_by_stem, find_channel, volume_stem
from ...adapters.masks.images import ImageCase, image_roi, normalise_channels, read_brain_on, read_channels
from ...adapters.masks.io import Geometry, read_geometry
from ...adapters.masks.spacing import training_spacing
from ...files import write_json
from ...progress import log, log_lines
from ..masks.data import (cases_json, check_split_drawn, find_cases, grid_spec, refuse_empty_training, resolve_preset,
                          warn_empty, warn_mixed_spacing, warn_outside)
from .placement import to_spacing


@dataclass
class SegmentationCase:
    case: MaskCase
    geometry: Geometry
    image: ImageCase  # channels on the grid, its transform and normalisation
    mask: np.ndarray  # uint8 grid of the label (training and scoring only; inference never reads it)
    outside: int  # mask voxels the image-placed window misses
    resampled: bool = False  # brought to the run's images.spacing: the grid maps the resampled volume

    @property
    def scan_shape(self) -> tuple[int, int, int] | None:
        """The case's own (canonical) voxels when it was resampled, where its masks are scored; else None."""
        return self.geometry.canonical_shape if self.resampled else None

    @property
    def case_id(self) -> str:
        return self.case.case_id


@dataclass
class SegmentationData:
    dataset: str
    layout: str
    preset_name: str
    region: str
    spec: object
    split: dict[str, list[str]]
    cases: dict[str, SegmentationCase]
    spacing: tuple[float, float, float] | None = None  # images.spacing resolved (mm); None: read as stored

    def part(self, name: str) -> list[SegmentationCase]:
        if any(i not in self.cases for i in self.split[name]):  # a bug: load_data(parts=...) left them out
            raise ValueError(f"the {name} cases were not read (load_data was given other parts)")
        return [self.cases[i] for i in self.split[name]]

    @property
    def dim(self) -> int:
        return int(np.prod(self.spec.vector_grid))

    def masks(self, part: str) -> sp.csr_matrix:
        # the uint8 grids made sparse first: a dense float32 copy of every case was 4 times the bytes
        rows = [to_vectors(np.ascontiguousarray(c.mask), self.spec) for c in self.part(part)]
        return sp.csr_matrix(np.concatenate(rows)).astype(np.float32)

    def images(self, part: str) -> np.ndarray:
        """(cases, C·D) float32: each case's channels flattened one after the other, as the U-Net reads them."""
        return np.stack([c.image.grid.reshape(-1) for c in self.part(part)]).astype(np.float32, copy=False)


def image_files(case: MaskCase, channels: list[str] | None) -> list[Path]:
    """The case's image channels: the named files beside its label map, or the data set's one image."""
    if channels is None:
        if case.image is None:
            raise DataError(f"{case.label}: no image beside this label map (segmentation needs images/ next to "
                            "labels/, or images.channels naming the files beside each label map)")
        stem = volume_stem(case.image) or ""
        if stem.endswith("_0000") and (second := find_by_stem(case.image.parent, f"{stem[:-5]}_0001")):
            # nnU-Net's second channel: reading the first alone would train on part of the scan without a word
            raise DataError(f"{second}: a second channel of "
                            f"{case.image.name} (nnU-Net's layout); bindiff reads several channels from one 4-D file "
                            "per case, or from files named by images.channels beside each label map")
        return [case.image]
    files = []
    for name in channels:
        found = find_channel(case.label.parent, name, case.case_id)
        if found is None:
            raise DataError(f"{case.label.parent}: no image {name!r} (images.channels; nor {case.case_id}_{name}) "
                            f"beside {case.label.name}")
        # the label as an input would let the model read the answer it is scored on, and a 0/1 brain mask
        # is no image; but the "brain" of the BraTS 2018-2023 layout is the case's own FLAIR (its non-zero
        # voxels), an image found here by its case-prefixed name: that one is a channel
        brain_image = volume_stem(found) != name
        for what, path in (("label map", case.label), ("brain mask", None if brain_image else case.brain)):
            if path is not None and found.resolve() == Path(path).resolve():
                raise DataError(f"images.channels: {name!r} is the case's {what} ({found}), not an image")
        files.append(found)
    return files


def _load_case(case: MaskCase, preset, region: str, spec, images: dict,
               spacing: tuple[float, float, float] | None = None) -> SegmentationCase:
    if images["brain"] and case.brain is None:
        raise DataError(f"{case.label}: images.brain is true but this case has no brain mask")
    truth, geometry = load_region(case, preset, region)
    files = image_files(case, images["channels"])
    # the brain mask first: its reading holds the file's whole array (int32 in BraTS 2015, float64 where the
    # file is scaled) and its checks' temporaries, a peak that then passes without the channels held
    brain = read_brain_on(case.brain, geometry, files[0]) if images["brain"] else None
    channels, _ = read_channels(files, reference=geometry, reference_path=case.label)
    # normalised on the scan's own voxels, before any resampling (see ImageCase.place)
    roi = image_roi(channels, brain, source=files[0])
    # in place: ``channels`` is read_channels' own stack, and nothing below needs its raw values (segment.py's
    # _place_case keeps a view of the first channel for its panel, so it normalises a copy)
    channels, stats = normalise_channels(channels, roi, source=files[0], in_place=True)
    channels, (truth, roi), resampled = to_spacing(channels, geometry.spacing, spacing, truth, roi,
                                                   source=geometry.source)
    image = ImageCase.place(channels, geometry, spec, brain=roi, source=files[0], stats=stats)
    return SegmentationCase(case, geometry, image, image.transform.to_grid(truth.astype(np.uint8)),
                            image.transform.outside(truth), resampled)


def resolve_spacing(images: dict, train: list[MaskCase]) -> tuple[float, float, float] | None:
    """``images.spacing`` in mm: as given, the training cases' median (``median``), or None."""
    wanted = images["spacing"]
    if wanted is None:
        return None
    if wanted == "median":  # the training cases' label headers: nothing of the held-out cases is read
        return training_spacing([read_geometry(c.label).spacing for c in train])
    return tuple(float(v) for v in wanted)


def prepare_data(config: dict, data_dir: str | None = None, disable_progress: bool | None = None) -> SegmentationData:
    dataset, cases, spec, preset = find_cases(config, data_dir)
    if spec.slices:
        raise DataError("segmentation works on 3-D grids: give grid.shape three sides")
    region = config["labels"]["region"]
    split = split_cases([c.case_id for c in cases], config["split"]["n_valid"], config["split"]["n_test"],
                        seed=config["seed"])
    train = set(split["train"])
    spacing = resolve_spacing(config["images"], [c for c in cases if c.case_id in train])
    if log_lines(config):  # piped: the bar is off, so say what the first minute is spent on
        log(f"reading the images and label maps of {len(cases)} cases from {dataset.root}")
    loaded = {c.case_id: _load_case(c, preset, region, spec, config["images"], spacing)
              for c in tqdm(cases, desc="reading images and masks", unit="case", disable=disable_progress)}
    if spacing is None:  # with images.spacing every case is on one voxel size already
        warn_mixed_spacing(spec, {case_id: c.geometry.spacing for case_id, c in loaded.items()}, dataset.root,
                           remedy="set images.spacing: median to resample every case to one voxel size")
    warn_outside(spec, {case_id: c.outside for case_id, c in loaded.items()}, dataset.root)
    warn_empty([c.case.label for c in loaded.values() if not c.mask.any() and not c.outside], region)
    refuse_empty_training([loaded[i].mask for i in split["train"]], dataset.root, region, preset.name)
    return SegmentationData(dataset.name, dataset.layout, preset.name, region, spec, split, loaded, spacing)


def save_data(data: SegmentationData, folder: Path) -> None:
    write_json(Path(folder) / "cases.json", {
        "dataset": data.dataset, "layout": data.layout, "preset": data.preset_name, "region": data.region,
        "split": data.split, "spacing_mm": None if data.spacing is None else list(data.spacing),
        "cases": {i: {**c.case.to_dict(), "geometry": c.geometry.to_dict(), "transform": c.image.transform.to_dict(),
                      "normalisation": [s.to_dict() for s in c.image.stats], "outside_voxels": c.outside,
                      "resampled": c.resampled}
                  for i, c in data.cases.items()},
    })


class TrainingGeometry(NamedTuple):
    """What a run's model saw, per canonical axis in mm."""

    spacing: tuple[float, float, float]  # the voxel size it learned at: images.spacing, else the training median
    smallest: tuple[float, float, float]  # the shortest extent of a training image
    largest: tuple[float, float, float]  # the longest


def training_geometry(folder: Path) -> TrainingGeometry:
    """The run's ``TrainingGeometry``, read from ``cases.json`` alone (no image is read again)."""
    with cases_json(folder, "segmentation") as meta:
        geometries = [Geometry.from_dict(meta["cases"][i]["geometry"]) for i in meta["split"]["train"]]
        spacing = meta.get("spacing_mm") or training_spacing([g.spacing for g in geometries])
    extents = np.array([np.array(g.canonical_shape) * np.array(g.spacing) for g in geometries])
    return TrainingGeometry(tuple(float(v) for v in spacing),
                            tuple(float(v) for v in extents.min(0)), tuple(float(v) for v in extents.max(0)))


def load_data(folder: Path, config: dict, parts: Sequence[str] | None = None,
              data_dir: str | None = None) -> SegmentationData:
    """The run's cases read again from their files; refused if a file changed since the run.
    ``parts``: read only the cases of these parts of the split (default: every case); scoring
    the 50 test cases of the hippocampus recipe then reads 50 files instead of 260 (4 s less)."""
    with cases_json(folder, "segmentation") as meta:  # its entries first, then the images they name
        preset = resolve_preset(config, meta["layout"])
        spacing = None if meta.get("spacing_mm") is None else tuple(float(v) for v in meta["spacing_mm"])
        read_case = case_reader(meta["dataset"], data_dir)
        records = {case_id: (read_case(record), record["transform"])
                   for case_id, record in meta["cases"].items()}
        described = meta["dataset"], meta["layout"], meta["preset"], meta["region"]
        split = meta["split"]
    check_split_drawn(split, config, Path(folder) / "cases.json")
    spec = grid_spec(config)
    wanted = None if parts is None else {i for part in parts for i in split[part]}
    cases = {}
    for case_id, (record, transform) in records.items():
        if wanted is not None and case_id not in wanted:
            continue
        case = _load_case(record, preset, described[3], spec, config["images"], spacing)
        if case.image.transform.to_dict() != transform:
            raise DataError(f"{case.case.image}: the image changed since the run was trained (its grid window moved)")
        cases[case_id] = case
    return SegmentationData(*described, spec, split, cases, spacing)
