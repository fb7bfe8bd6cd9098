"""Binary segmentation masks as bit vectors: read label maps, binarise them with a named
label preset, place them on a fixed grid and back, find data sets and split them by case.

Installed as ``bindiff.adapters.masks``; the core never imports it.
"""

from .cases import LoadedCase, load_case, load_region
from .datasets import (KNOWN_DATASETS, LAYOUTS, MaskCase, MaskDataset, case_reader, find_dataset, load_case_split,
                       split_cases)
from .grid import GridSpec, GridTransform, bounding_box, fit_transform, from_vectors, to_vectors
from .io import Geometry, Volume, read_brain_mask, read_label_map, write_mask, write_volume
from .labels import PRESETS, LabelPreset, binarize, custom_preset, get_preset

__all__ = [
    "Geometry", "GridSpec", "GridTransform", "KNOWN_DATASETS", "LAYOUTS", "LabelPreset", "LoadedCase", "MaskCase",
    "MaskDataset", "PRESETS", "Volume", "binarize", "bounding_box", "case_reader", "custom_preset", "find_dataset", "fit_transform",
    "from_vectors", "get_preset", "load_case", "load_case_split", "load_region", "read_brain_mask", "read_label_map",
    "split_cases", "to_vectors", "write_mask", "write_volume",
]
