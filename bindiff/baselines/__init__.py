"""Baseline recommenders behind the same recipe, training and evaluation interface.

A recipe's ``model.kind`` picks the model; ``binomial`` (the default) is bindiff's own
binomial diffusion built from the ``diffusion`` and ``denoiser`` sections, every other kind
is a class in :data:`MODELS` built from ``model.params``. Every model is an ``nn.Module``,
so checkpoints (state_dict, ``weights_only``) and ``load_run`` work the same for all. Each
baseline exposes ``score(x) -> (B, D)`` scores (higher is better) and either

- ``forward(x0, generator=None) -> LossOutput``: trained by :func:`bindiff.training.trainer.fit`
  unchanged (Mult-DAE/Mult-VAE, the Gaussian diffusion, the RecFusion reproduction); or
- ``fit_closed_form(train_csr, evaluate_valid) -> dict``: fitted once, without an optimiser
  (popularity, EASE); ``evaluate_valid(model)`` returns the validation value of
  ``eval.select`` and is the only metric a closed-form model may look at.
"""

from __future__ import annotations

import inspect

from torch import nn

from ..config import RecipeError
from .ease import EASE
from .gaussian import GaussianDiffusionRecommender
from .multvae import MultVAE
from .popularity import Popularity
from .recfusion import RecFusionBin

BINOMIAL = "binomial"


def _multdae(n_items: int, **params) -> MultVAE:
    return MultVAE(n_items, variational=False, **params)


def _multvae(n_items: int, **params) -> MultVAE:
    return MultVAE(n_items, variational=True, **params)


# kind -> (constructor, the class whose __init__ names the accepted parameters)
MODELS: dict[str, tuple] = {
    "popularity": (Popularity, Popularity),
    "ease": (EASE, EASE),
    "multdae": (_multdae, MultVAE),
    "multvae": (_multvae, MultVAE),
    "gaussian": (GaussianDiffusionRecommender, GaussianDiffusionRecommender),
    "recfusion": (RecFusionBin, RecFusionBin),
}

# Parameters fixed by the kind itself, never accepted from model.params.
_FIXED = {"multdae": {"variational"}, "multvae": {"variational"}}


def model_kinds() -> list[str]:
    return [BINOMIAL, *MODELS]


def accepted_params(kind: str) -> list[str]:
    cls = MODELS[kind][1]
    skip = {"self", "n_items", *_FIXED.get(kind, ())}
    return [p for p in inspect.signature(cls.__init__).parameters if p not in skip]


def build_recommender(config: dict, n_items: int) -> nn.Module:
    """The recipe's model for ``n_items`` items; RecipeError names model.kind / model.params."""
    section = config.get("model") or {"kind": BINOMIAL, "params": {}}
    kind, params = section["kind"], dict(section.get("params") or {})
    if kind == BINOMIAL:
        if params:
            raise RecipeError(f"model.params: the binomial model takes no parameters here (got {sorted(params)}); "
                              "it is configured by the diffusion and denoiser sections")
        # the binomial model is the core's; bindiff.training.builders.build_model builds it
        raise ValueError("build_recommender builds baselines only; use bindiff.training.builders.build_model")
    if kind not in MODELS:
        raise RecipeError(f"model.kind: unknown model {kind!r}; choose one of {', '.join(model_kinds())}")
    accepted = accepted_params(kind)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise RecipeError(f"model.params: model {kind!r} has no parameter(s) {unknown}; it takes {accepted}")
    try:
        return MODELS[kind][0](n_items, **params)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"model.params: model {kind!r}: {err}") from None


def check_model_config(config: dict) -> None:
    """Refuse an unknown model.kind, unknown or invalid model.params before any data are read.

    A baseline is built once for two items (cheap for every model); the binomial model is
    checked by ``build_model`` when the data's item count is known, as before.
    """
    section = config.get("model") or {"kind": BINOMIAL, "params": {}}
    if section["kind"] != BINOMIAL or section.get("params"):
        build_recommender(config, 2)


__all__ = ["BINOMIAL", "EASE", "GaussianDiffusionRecommender", "MODELS", "MultVAE", "Popularity", "RecFusionBin",
           "accepted_params", "build_recommender", "check_model_config", "model_kinds"]
