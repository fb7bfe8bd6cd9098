"""User-item interaction data: readers, binary sparse matrices, splits, datasets."""

from .datasets import (
    DATASETS,
    DatasetSource,
    DatasetSpec,
    LocalLayout,
    download_dataset,
    load_interactions,
    load_predefined_split,
    describe_source,
    resolve_dataset,
)
from .matrix import InteractionMatrix, binary_csr, build_matrix, index_ids
from .readers import (RawInteractions, read_delimited, read_item_lists, read_ml100k, read_movielens_ratings,
                      read_pairs)
from .splits import (EvalPart, Split, holdout_count, predefined_split, read_cut_offs, strong_generalization,
                     temporal_split, train_test_split, weak_generalization)
from .synthetic import SYNTHETIC_PRESETS, synthetic_dataset, synthetic_interactions

__all__ = [
    "DATASETS",
    "DatasetSource",
    "DatasetSpec",
    "EvalPart",
    "InteractionMatrix",
    "LocalLayout",
    "RawInteractions",
    "SYNTHETIC_PRESETS",
    "Split",
    "binary_csr",
    "build_matrix",
    "describe_source",
    "download_dataset",
    "holdout_count",
    "index_ids",
    "load_interactions",
    "load_predefined_split",
    "predefined_split",
    "train_test_split",
    "read_delimited",
    "read_item_lists",
    "read_ml100k",
    "read_movielens_ratings",
    "read_pairs",
    "resolve_dataset",
    "strong_generalization",
    "weak_generalization",
    "temporal_split",
    "read_cut_offs",
    "synthetic_dataset",
    "synthetic_interactions",
]
