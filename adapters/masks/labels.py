"""Named label conventions: which label values a file may hold and which of them form a region.

BraTS changed its labels twice, and users mix them up constantly; so a preset states both the
allowed values and the regions, and a file holding any other value is refused (nnU-Net's
conversion script does the same) instead of being silently binarised.

| preset          | allowed      | whole            | core     | enhancing |
|-----------------|--------------|------------------|----------|-----------|
| brats2015       | 0,1,2,3,4    | 1,2,3,4 (= > 0)  | 1,3,4    | 4         |
| brats2021       | 0,1,2,4      | 1,2,4            | 1,4      | 4         |
| brats2023       | 0,1,2,3      | 1,2,3            | 1,3      | 3         |
| msd_hippocampus | 0,1,2        | 1,2 (= > 0)      | anterior: 1, posterior: 2 |

BraTS 2015: 1 necrosis, 2 oedema, 3 non-enhancing tumour, 4 enhancing tumour. BraTS 2018–2021:
1 necrotic/non-enhancing core, 2 oedema, 4 enhancing. BraTS 2023 (GLI): 1 NETC, 2 SNFH, 3 ET.
MSD Task04: 1 anterior (head), 2 posterior (body and tail) of the hippocampus.
A custom preset is built from the recipe's ``labels.allowed`` and ``labels.foreground``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["LabelPreset", "PRESETS", "binarize", "custom_preset", "get_preset"]


@dataclass(frozen=True)
class LabelPreset:
    name: str
    allowed: frozenset[int]
    regions: Mapping[str, frozenset[int]]
    description: str = ""

    def region(self, name: str) -> frozenset[int]:
        if name not in self.regions:
            raise DataError(f"label preset {self.name!r} has no region {name!r}; "
                            f"it has {', '.join(self.regions)}")
        return self.regions[name]

    def to_dict(self) -> dict:
        return {"name": self.name, "allowed": sorted(self.allowed),
                "regions": {k: sorted(v) for k, v in self.regions.items()}, "description": self.description}


class Regions(Mapping):
    """A preset's regions, read-only (a caller editing a shipped preset's regions would change them
    for the whole process) and, unlike ``MappingProxyType``, picklable and copyable."""

    def __init__(self, regions: dict):
        self._regions = {name: frozenset(labels) for name, labels in regions.items()}

    def __getitem__(self, name: str) -> frozenset[int]:
        return self._regions[name]

    def __iter__(self):
        return iter(self._regions)

    def __len__(self) -> int:
        return len(self._regions)

    def __repr__(self) -> str:
        return f"Regions({self._regions!r})"


def _preset(name: str, allowed, regions: dict, description: str) -> LabelPreset:
    return LabelPreset(name, frozenset(allowed), Regions(regions), description)


PRESETS: dict[str, LabelPreset] = {
    "brats2015": _preset("brats2015", {0, 1, 2, 3, 4},
                         {"whole": {1, 2, 3, 4}, "core": {1, 3, 4}, "enhancing": {4}},
                         "BraTS 2015: 1 necrosis, 2 oedema, 3 non-enhancing, 4 enhancing"),
    "brats2021": _preset("brats2021", {0, 1, 2, 4},
                         {"whole": {1, 2, 4}, "core": {1, 4}, "enhancing": {4}},
                         "BraTS 2018-2021: 1 necrotic/non-enhancing core, 2 oedema, 4 enhancing"),
    "brats2023": _preset("brats2023", {0, 1, 2, 3},
                         {"whole": {1, 2, 3}, "core": {1, 3}, "enhancing": {3}},
                         "BraTS 2023 GLI: 1 non-enhancing core, 2 oedema (SNFH), 3 enhancing"),
    "msd_hippocampus": _preset("msd_hippocampus", {0, 1, 2},
                               {"whole": {1, 2}, "anterior": {1}, "posterior": {2}},
                               "MSD Task04: 1 anterior (head), 2 posterior (body and tail)"),
}


# What a custom preset's one region may be called: the recipes' default "whole", or its own name.
CUSTOM_REGIONS = ("whole", "custom")


def custom_preset(allowed, foreground) -> LabelPreset:
    """A preset from explicit lists; 0 is always allowed (background) and never foreground."""
    if isinstance(foreground, (str, bytes, numbers.Number)) or (allowed is not None and isinstance(
            allowed, (str, bytes, numbers.Number))):
        raise DataError(f"custom labels are lists of label values, got allowed={allowed!r}, foreground={foreground!r}")
    # lists of them first: a generator (or any one-pass iterable) was used up by the checks and left an empty region
    try:
        foreground = list(foreground)
        allowed = None if allowed is None else list(allowed)
    except TypeError:
        raise DataError(f"custom labels are lists of label values, got allowed={allowed!r}, "
                        f"foreground={foreground!r}") from None
    if not foreground:
        raise DataError("labels.preset is 'custom' but labels.foreground lists no label values")
    values = [allowed, foreground] if allowed is not None else [foreground]
    for vals in values:  # numpy integers too: what np.unique of a label map gives
        if any(not isinstance(v, numbers.Integral) or isinstance(v, (bool, np.bool_)) for v in vals):
            raise DataError(f"custom labels must be integers, got {vals!r}")
    allowed = None if allowed is None else [int(v) for v in allowed]
    foreground = [int(v) for v in foreground]
    allowed_set = frozenset(allowed) | {0} if allowed is not None else frozenset(foreground) | {0}
    fg = frozenset(foreground)
    if 0 in fg:
        raise DataError("labels.foreground must not contain 0, the background")
    if not fg <= allowed_set:
        raise DataError(f"labels.foreground {sorted(fg)} holds values not in labels.allowed {sorted(allowed_set)}")
    return LabelPreset("custom", allowed_set, Regions({"custom": fg}), "custom mapping from the recipe")


def get_preset(name: str, allowed=None, foreground=None) -> LabelPreset:
    """A shipped label preset by name (``PRESETS``), or ``"custom"`` built from ``allowed`` and
    ``foreground`` (``custom_preset``); DataError for an unknown name."""
    if name == "custom":
        return custom_preset(allowed, foreground)
    if name not in PRESETS:
        raise DataError(f"unknown label preset {name!r}; choose one of {', '.join([*PRESETS, 'custom'])}")
    return PRESETS[name]


def binarize(labels: np.ndarray, preset: LabelPreset, region: str, source: str | Path = "") -> np.ndarray:
    """The region as a boolean array; DataError naming ``source`` if a value is not allowed or is
    not a whole number (``read_label_map`` refuses those files; this guards other callers). A
    custom preset has one region, its foreground labels, whatever ``region`` names (recipes
    refuse a ``labels.region`` other than ``whole`` with it)."""
    values = _present_values(labels)
    if values.dtype.kind == "f":
        bad = values[~np.isfinite(values) | (values != np.round(values))]
        if bad.size:
            shown = ", ".join(repr(float(v)) for v in bad[:5])
            raise DataError(f"{source}: label values must be whole numbers, got {shown}")
    unexpected = [int(v) for v in values if int(v) not in preset.allowed]
    if unexpected:
        shown = ", ".join(str(v) for v in unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        other = ("" if preset.name in ("custom", "binary") else
                 "; a recipe for another label set names it: labels.preset=custom with labels.allowed and "
                 "labels.foreground")
        raise DataError(f"{source}: unexpected label value(s) {shown} for preset {preset.name!r}, "
                        f"which allows {', '.join(str(v) for v in sorted(preset.allowed))}{other}")
    chosen = preset.region(region) if preset.name != "custom" else preset.regions["custom"]
    return np.isin(labels, sorted(chosen))


def _present_values(labels: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``labels``, as ``np.unique`` gives them. A 64-bit integer label
    map (what ``read_label_map`` returns for a float or int64 file) of small non-negative labels is
    counted with ``np.bincount``, which reads the array in place: ``np.unique`` copied it (68 MiB
    for a 240 x 240 x 155 BraTS map) and took 8 times as long. Narrower integers would be widened
    by ``np.bincount``, so they keep ``np.unique``."""
    labels = np.asarray(labels)
    if labels.size and labels.dtype.kind in "iu" and labels.dtype.itemsize == np.dtype(np.intp).itemsize:
        low, high = labels.min(), labels.max()
        if low >= 0 and high < 2 ** 16:
            counts = np.bincount(labels.reshape(-1).astype(np.intp, copy=False))
            return np.flatnonzero(counts).astype(labels.dtype)
    return np.unique(labels)
