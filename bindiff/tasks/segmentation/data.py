"""The segmentation task's data: each case's image channels and mask on one grid placed from the
image alone (``bindiff.adapters.masks.images``), split by case.

A run stores ``split/cases.json`` (data set, preset, grid, the split, and per case its files,
geometry, grid transform and normalisation); loading re-reads the files, which the saved
transforms and statistics reproduce exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.masks import MaskCase, find_dataset, load_region, split_cases, to_vectors
from ...adapters.masks.datasets import find_by_stem
from ...adapters.masks.images import ImageCase
from ...adapters.masks.io import Geometry
from ...adapters.masks.spacing import training_spacing
from ...files import write_json
from ..masks.data import grid_spec, resolve_preset, warn_mixed_spacing


@dataclass
class SegmentationCase:
    case: MaskCase
    geometry: Geometry
    image: ImageCase  # channels on the grid, its transform and normalisation
    mask: np.ndarray  # uint8 grid of the label (training and scoring only; inference never reads it)
    outside: int  # mask voxels the image-placed window misses

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

    def part(self, name: str) -> list[SegmentationCase]:
        return [self.cases[i] for i in self.split[name]]

    @property
    def dim(self) -> int:
        return int(np.prod(self.spec.vector_grid))

    def masks(self, part: str) -> sp.csr_matrix:
        rows = [to_vectors(np.ascontiguousarray(c.mask), self.spec).astype(np.float32) for c in self.part(part)]
        return sp.csr_matrix(np.concatenate(rows))

    def images(self, part: str) -> np.ndarray:
        """(cases, C·D) float32: each case's channels flattened one after the other, as the U-Net reads them."""
        return np.stack([c.image.grid.reshape(-1) for c in self.part(part)]).astype(np.float32)


def image_files(case: MaskCase, channels: list[str] | None) -> list[Path]:
    """The case's image channels: the named files beside its label map, or the data set's one image."""
    if channels is None:
        if case.image is None:
            raise DataError(f"{case.label}: no image beside this label map (segmentation needs images/ next to "
                            "labels/, or images.channels naming the files beside each label map)")
        return [case.image]
    files = []
    for name in channels:
        found = find_by_stem(case.label.parent, name)
        if found is None:
            raise DataError(f"{case.label.parent}: no image {name!r} (images.channels) beside {case.label.name}")
        files.append(found)
    return files


def _load_case(case: MaskCase, preset, region: str, spec, images: dict) -> SegmentationCase:
    if images["brain"] and case.brain is None:
        raise DataError(f"{case.label}: images.brain is true but this case has no brain mask")
    truth, geometry = load_region(case, preset, region)
    image = ImageCase.load(image_files(case, images["channels"]), spec, brain=case.brain if images["brain"] else None,
                           reference=geometry, reference_path=case.label)
    return SegmentationCase(case, geometry, image, image.transform.to_grid(truth.astype(np.uint8)),
                            image.transform.outside(truth))


def prepare_data(config: dict, data_dir: str | None = None, disable_progress: bool | None = None) -> SegmentationData:
    d = config["data"]
    dataset = find_dataset(d["dataset"], d["layout"], data_dir=data_dir)
    cases = list(dataset.cases)[: d["max_cases"]] if d["max_cases"] else list(dataset.cases)
    spec = grid_spec(config)
    if spec.slices:
        raise DataError("segmentation works on 3-D grids: give grid.shape three sides")
    preset = resolve_preset(config, dataset.layout)
    region = config["labels"]["region"]
    loaded = {c.case_id: _load_case(c, preset, region, spec, config["images"])
              for c in tqdm(cases, desc="reading images and masks", unit="case", disable=disable_progress)}
    warn_mixed_spacing(spec, [c.geometry.spacing for c in loaded.values()], dataset.root)
    split = split_cases(list(loaded), config["split"]["n_valid"], config["split"]["n_test"], seed=config["seed"])
    return SegmentationData(dataset.name, dataset.layout, preset.name, region, spec, split, loaded)


def save_data(data: SegmentationData, folder: Path) -> None:
    write_json(Path(folder) / "cases.json", {
        "dataset": data.dataset, "layout": data.layout, "preset": data.preset_name, "region": data.region,
        "split": data.split,
        "cases": {i: {**c.case.to_dict(), "geometry": c.geometry.to_dict(), "transform": c.image.transform.to_dict(),
                      "normalisation": [s.to_dict() for s in c.image.stats], "outside_voxels": c.outside}
                  for i, c in data.cases.items()},
    })


class TrainingGeometry(NamedTuple):
    """What a run's model saw, per canonical axis in mm."""

    spacing: tuple[float, float, float]  # the voxel size it learned at: the training cases' median
    smallest: tuple[float, float, float]  # the shortest extent of a training image
    largest: tuple[float, float, float]  # the longest


def training_geometry(folder: Path) -> TrainingGeometry:
    """The run's ``TrainingGeometry``, read from ``cases.json`` alone (no image is read again)."""
    path = Path(folder) / "cases.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; is {Path(folder).parent} a segmentation run directory?")
    meta = json.loads(path.read_text())
    geometries = [Geometry.from_dict(meta["cases"][i]["geometry"]) for i in meta["split"]["train"]]
    extents = np.array([np.array(g.canonical_shape) * np.array(g.spacing) for g in geometries])
    return TrainingGeometry(training_spacing([g.spacing for g in geometries]),
                            tuple(float(v) for v in extents.min(0)), tuple(float(v) for v in extents.max(0)))


def load_data(folder: Path, config: dict) -> SegmentationData:
    """The run's cases read again from their files; refused if a file changed since the run."""
    path = Path(folder) / "cases.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; is {Path(folder).parent} a segmentation run directory?")
    meta = json.loads(path.read_text())
    spec = grid_spec(config)
    preset = resolve_preset(config, meta["layout"])
    cases = {}
    for case_id, record in meta["cases"].items():
        case = _load_case(MaskCase.from_dict(record), preset, meta["region"], spec, config["images"])
        if case.image.transform.to_dict() != record["transform"]:
            raise DataError(f"{case.case.image}: the image changed since the run was trained (its grid window moved)")
        cases[case_id] = case
    return SegmentationData(meta["dataset"], meta["layout"], meta["preset"], meta["region"], spec, meta["split"],
                            cases)
