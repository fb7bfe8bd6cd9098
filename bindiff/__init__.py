"""bindiff: Bernoulli (binomial) diffusion over binary 1-D vectors.

The flat public API. The core (``bindiff.core``) knows only (B, D) bit vectors; adapters
(``bindiff.adapters``) turn domain data into such vectors; the rest trains and evaluates.
Heavier pieces are imported lazily so ``import bindiff`` stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    # the core too: `bindiff --help` and `--version` must not pay for torch
    "BernoulliProcess": "bindiff.core",
    "BinomialDiffusion": "bindiff.core",
    "DenoiserEnsemble": "bindiff.core",
    "MLPDenoiser": "bindiff.core",
    "ReverseScheduler": "bindiff.core",
    "bce_x0": "bindiff.core",
    "bernoulli_kl": "bindiff.core",
    "build_denoiser": "bindiff.core",
    "get_schedule": "bindiff.core",
    "register_denoiser": "bindiff.core",
    "tilt_to_count": "bindiff.core",
    "vb_terms": "bindiff.core",
    "load_recipe": "bindiff.config",
    "RecipeError": "bindiff.config",
    "evaluate_ranking": "bindiff.metrics",
    "recall_at_k": "bindiff.metrics",
    "ndcg_at_k": "bindiff.metrics",
    "topk_excluding": "bindiff.metrics",
    "train": "bindiff.tasks.registry",
    "resume": "bindiff.tasks.registry",
    "train_recommender": "bindiff.tasks.recommendation.job",
    "evaluate_run": "bindiff.tasks.recommendation.job",
    "load_run": "bindiff.tasks.recommendation.job",
    "recommend": "bindiff.tasks.recommendation.serve",
    "Recommender": "bindiff.tasks.recommendation.serve",
    "run_comparison": "bindiff.tasks.recommendation.compare",
    "run_tuning": "bindiff.tasks.recommendation.tune",
    "train_masks": "bindiff.tasks.masks.job",
    "run_evaluations": "bindiff.tasks.masks.job",
    "load_masks_run": "bindiff.tasks.masks.job",
    "prepare_split": "bindiff.tasks.recommendation.data",
    "strong_generalization": "bindiff.adapters.interactions",
    "weak_generalization": "bindiff.adapters.interactions",
    "temporal_split": "bindiff.adapters.interactions",
    "read_cut_offs": "bindiff.adapters.interactions",
    "predefined_split": "bindiff.adapters.interactions",
    "train_test_split": "bindiff.adapters.interactions",
    "build_matrix": "bindiff.adapters.interactions",
    "resolve_dataset": "bindiff.adapters.interactions",
    "Split": "bindiff.adapters.interactions",
    # every other name docs/api.md documents (tests/test_conventions.py keeps this list complete)
    "DATASETS": "bindiff.adapters",
    "DENOISERS": "bindiff.core",
    "DataError": "bindiff.adapters.errors",
    "BindiffWarning": "bindiff.progress",
    "DatasetSource": "bindiff.adapters.interactions.datasets",
    "DatasetSpec": "bindiff.adapters.interactions.datasets",
    "LocalLayout": "bindiff.adapters.interactions.datasets",
    "download_dataset": "bindiff.adapters.interactions.datasets",
    "load_predefined_split": "bindiff.adapters.interactions.datasets",
    "EMPTY_RULE": "bindiff.metrics.segmentation",
    "EvalPart": "bindiff.adapters.interactions.splits",
    "GridSpec": "bindiff.adapters.masks.grid",
    "GridTransform": "bindiff.adapters.masks.grid",
    "InteractionMatrix": "bindiff.adapters.interactions.matrix",
    "LOSSES": "bindiff.core",
    "KERNELS": "bindiff.core",
    "LabelPreset": "bindiff.adapters.masks.labels",
    "LoadedMasksRun": "bindiff.tasks.masks.job",
    "LoadedRun": "bindiff.tasks.recommendation.job",
    "LossOutput": "bindiff.core.diffusion",
    "MODELS": "bindiff.tasks.recommendation.models",
    "ModelKind": "bindiff.tasks.base",
    "RecommenderKind": "bindiff.tasks.recommendation.models",
    "Task": "bindiff.tasks.base",
    "register_model": "bindiff.tasks.recommendation.models",
    "register_task": "bindiff.tasks.registry",
    "MaskCase": "bindiff.adapters.masks.datasets",
    "MaskDataset": "bindiff.adapters.masks.datasets",
    "RankingReport": "bindiff.metrics.ranking",
    "RawInteractions": "bindiff.adapters.interactions.readers",
    "SCHEDULES": "bindiff.core",
    "StepOutput": "bindiff.core.scheduler",
    "UNetDenoiser": "bindiff.core.unet",
    "Volume": "bindiff.adapters.masks.io",
    "apply_run": "bindiff.tasks.masks.apply",
    "train_segmentation": "bindiff.tasks.segmentation.job",
    "run_segmentation": "bindiff.tasks.segmentation.job",
    "segment": "bindiff.tasks.segmentation.segment",
    "paired_wilcoxon": "bindiff.metrics.paired",
    "soft_dice_x0": "bindiff.core.losses",
    "score": "bindiff.scoring",
    "labels_to_score": "bindiff.scoring",
    "as_mask": "bindiff.metrics.segmentation",
    "expected_calibration_error": "bindiff.metrics.calibration",
    "brier_score": "bindiff.metrics.calibration",
    "binary_entropy": "bindiff.metrics.calibration",
    "error_detection_auroc": "bindiff.metrics.calibration",
    "bernoulli_kl_logits": "bindiff.core.losses",
    "binarize": "bindiff.adapters.masks.labels",
    "case_reader": "bindiff.adapters.masks.datasets",
    "dice": "bindiff.metrics.segmentation",
    "diffusion_loss": "bindiff.core.losses",
    "export_run": "bindiff.tasks.recommendation.export",
    "find_dataset": "bindiff.adapters.masks.datasets",
    "fit_transform": "bindiff.adapters.masks.grid",
    "from_vectors": "bindiff.adapters.masks.grid",
    "get_preset": "bindiff.adapters.masks.labels",
    "custom_preset": "bindiff.adapters.masks.labels",
    "hd95": "bindiff.metrics.segmentation",
    "assd": "bindiff.metrics.segmentation",
    "surface_dice": "bindiff.metrics.segmentation",
    "iou": "bindiff.metrics.segmentation",
    "load_case": "bindiff.adapters.masks.cases",
    "load_interactions": "bindiff.adapters.interactions.datasets",
    "make_scorer": "bindiff.tasks.recommendation.models",
    "read_delimited": "bindiff.adapters.interactions.readers",
    "read_label_map": "bindiff.adapters.masks.io",
    "read_ml100k": "bindiff.adapters.interactions.readers",
    "read_movielens_ratings": "bindiff.adapters.interactions.readers",
    "read_pairs": "bindiff.adapters.interactions.readers",
    "segmentation_metrics": "bindiff.metrics.segmentation",
    "sinusoidal_embedding": "bindiff.core.denoisers",
    "to_vectors": "bindiff.adapters.masks.grid",
    "validate_betas": "bindiff.core.schedules",
    "volume_ml": "bindiff.metrics.segmentation",
    "write_mask": "bindiff.adapters.masks.io",
}

__all__ = [*_LAZY]


def __dir__() -> list[str]:  # the lazy names too, for a notebook's completion
    return sorted(set(globals()) | set(_LAZY))


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"bindiff.{name}") is not None:
        return importlib.import_module(f"bindiff.{name}")  # `bindiff.core.X` after a bare `import bindiff`
    raise AttributeError(f"module 'bindiff' has no attribute {name!r}")
