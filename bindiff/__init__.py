"""bindiff: Bernoulli (binomial) diffusion over binary 1-D vectors.

The flat public API. The core (``bindiff.core``) knows only (B, D) bit vectors; adapters
(``bindiff.adapters``) turn domain data into such vectors; the rest trains and evaluates.
Heavier pieces are imported lazily so ``import bindiff`` stays cheap.
"""

from .core import (
    BernoulliProcess,
    BinomialDiffusion,
    MLPDenoiser,
    ReverseScheduler,
    bce_x0,
    bernoulli_kl,
    build_denoiser,
    get_schedule,
    register_denoiser,
    vb_terms,
)

__version__ = "0.1.0"

_LAZY = {
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
    "train_masks": "bindiff.tasks.masks.job",
    "run_evaluations": "bindiff.tasks.masks.job",
    "load_masks_run": "bindiff.tasks.masks.job",
    "prepare_split": "bindiff.tasks.recommendation.data",
    "strong_generalization": "bindiff.adapters.interactions",
    "predefined_split": "bindiff.adapters.interactions",
    "build_matrix": "bindiff.adapters.interactions",
    "resolve_dataset": "bindiff.adapters.interactions",
    "Split": "bindiff.adapters.interactions",
}

__all__ = [
    "BernoulliProcess", "BinomialDiffusion", "MLPDenoiser", "ReverseScheduler", "bce_x0", "bernoulli_kl",
    "build_denoiser", "get_schedule", "register_denoiser", "vb_terms", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bindiff' has no attribute {name!r}")
