"""One case from files to grid: read, check, binarise, place on the grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .datasets import MaskCase
from .grid import GridSpec, GridTransform, fit_transform
from .images import read_image
from .io import Geometry, read_brain_mask, read_label_map, require_one_grid
from .labels import LabelPreset, binarize

__all__ = ["LoadedCase", "load_region", "load_case"]


@dataclass
class LoadedCase:
    case_id: str
    truth: np.ndarray  # bool, canonical RAS order, the file's full volume
    geometry: Geometry
    transform: GridTransform
    grid: np.ndarray  # uint8 on the grid (3-D; in slice mode the slice axis has the window's length)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing


def load_region(case: MaskCase, preset: LabelPreset, region: str) -> tuple[np.ndarray, Geometry]:
    """The case's binary region (canonical order) and the label file's geometry."""
    volume = read_label_map(case.label, compact=True)  # binarised below: no int64 copy of a float map
    if case.image is not None:
        if str(case.image).lower().endswith((".nii", ".nii.gz")):
            import nibabel as nib

            try:
                shape = tuple(nib.load(str(case.image)).shape[:3])  # the header alone
            except Exception as err:  # header only; any failure is bad data
                raise DataError(f"{case.image}: image header not readable: {err}") from None
        else:  # .mha, .nrrd: read whole (their shape was not checked before)
            shape = tuple(read_image(case.image, channels=True).geometry.shape)
        if shape != tuple(volume.geometry.shape):
            raise DataError(f"{case.image}: image has shape {shape} but its label map {case.label} has shape "
                            f"{tuple(volume.geometry.shape)} (image/mask shape mismatch)")
    return binarize(volume.data, preset, region, source=case.label), volume.geometry


def load_case(case: MaskCase, preset: LabelPreset, region: str, spec: GridSpec) -> LoadedCase:
    """One case's label map read with ``preset``, binarised to ``region`` and placed on the grid of
    ``spec`` (the window around the region, the brain mask or the whole volume, as ``spec.crop``
    says), with its geometry, to write results back."""
    truth, geometry = load_region(case, preset, region)
    roi = truth
    if spec.crop == "brain":
        if case.brain is None:
            raise DataError(f"{case.label}: grid.crop is 'brain' but case {case.case_id!r} has no brain mask")
        brain = read_brain_mask(case.brain)
        require_one_grid(geometry, brain.geometry, f"its label map {case.label}", case.brain)
        roi = brain.data
    transform = fit_transform(truth.shape, spec, roi=roi, source=str(case.label))
    return LoadedCase(case.case_id, truth, geometry, transform, transform.to_grid(truth.astype(np.uint8)))
