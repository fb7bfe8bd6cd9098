"""Data adapters: everything that turns files on disk into arrays for bindiff.

Installed as `bindiff.adapters`; `bindiff.core` never imports it, so the model
code stays independent of any file format.
"""

from .errors import DataError
from .interactions import (
    DATASETS,
    DatasetSource,
    DatasetSpec,
    EvalPart,
    InteractionMatrix,
    LocalLayout,
    RawInteractions,
    Split,
    build_matrix,
    download_dataset,
    load_interactions,
    load_predefined_split,
    predefined_split,
    read_delimited,
    read_ml100k,
    read_movielens_ratings,
    read_pairs,
    resolve_dataset,
    strong_generalization,
    weak_generalization,
    temporal_split,
    read_cut_offs,
    train_test_split,
)

__all__ = [
    "DATASETS",
    "DataError",
    "DatasetSource",
    "DatasetSpec",
    "EvalPart",
    "InteractionMatrix",
    "LocalLayout",
    "RawInteractions",
    "Split",
    "build_matrix",
    "download_dataset",
    "load_interactions",
    "load_predefined_split",
    "predefined_split",
    "read_delimited",
    "read_ml100k",
    "read_movielens_ratings",
    "read_pairs",
    "resolve_dataset",
    "strong_generalization",
    "weak_generalization",
    "temporal_split",
    "read_cut_offs",
    "train_test_split",
]
