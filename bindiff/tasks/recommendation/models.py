"""Every model a recommendation recipe can train, behind one registry and one scoring interface.

A recipe's ``model.kind`` picks the entry; ``binomial`` (the default) is bindiff's own binomial
diffusion built from the ``diffusion`` and ``denoiser`` sections, every other kind is a
baseline built from ``model.params``. Every model is an ``nn.Module``, so checkpoints
(state_dict, ``weights_only``) and loading work the same for all.

What a trained model offers to evaluation and inference is a scorer, ``scores(x) -> (B, D)``
(higher is better), from ``make_scorer``: for the binomial model it runs the recipe's
``inference`` section, for a baseline it is the model's own ``score``. How a model is fitted
is its ``ModelKind.fitting``:

- ``gradient``: ``forward(x0, generator=None) -> LossOutput``, trained by the shared ``fit``
  (the binomial model, Mult-DAE/Mult-VAE, the Gaussian diffusion, the RecFusion reproduction);
- ``closed_form``: ``fit_closed_form(train_csr, evaluate_valid) -> dict``, fitted once without an
  optimiser (popularity, EASE); ``evaluate_valid(model)`` returns the validation value of
  ``eval.select`` and is the only metric such a model may look at.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ...config import RecipeError
from ...core import BinomialDiffusion
from ...core.denoisers import same_definition
from ...core import params as checks
from ...training.builders import build_diffusion
from ...training.devices import device_of
from ..base import ModelKind
from .baselines import EASE, GaussianDiffusionRecommender, MultVAE, Popularity, RecFusionBin

BINOMIAL = "binomial"


def _baseline_scorer(model: nn.Module, config: dict, seed: int, per_history: bool = False):
    return model.score


@dataclass(frozen=True)
class RecommenderKind(ModelKind):
    """A ``ModelKind`` with its scorer and the class whose ``__init__`` names its ``model.params``.

    ``scorer(model, config, seed, per_history)`` returns ``scores(x) -> (B, D)``; by default the
    model's own ``score`` method (a baseline's contract)."""

    scorer: Callable[[nn.Module, dict, int], Callable] = _baseline_scorer
    params_of: type | None = None  # None: takes no model.params
    fixed_params: frozenset = frozenset()  # set by the kind itself, never accepted from model.params


def draws_random_bits(config: dict) -> bool:
    """Whether the recipe's model scores with random bits: the diffusion with ``inference.add_noise``
    or with sampled reverse steps (at least two visited times). Every other model scores deterministically."""
    if config["model"]["kind"] != BINOMIAL:
        return False
    inference = config.get("inference") or {}
    if inference.get("add_noise"):
        return True
    if inference.get("mode") != "reverse" or inference.get("sample") != "sample":
        return False
    # only a step to s > 0 draws bits: a run that visits one time (t = 1, or steps = 1) ends on p̂ alone
    start = inference.get("t", 1)
    return min(start, inference.get("steps") or start) >= 2


def _diffusion_scorer(model: BinomialDiffusion, config: dict, seed: int, per_history: bool = False):
    """The recipe's inference mode as ``scores(batch) -> p̂(x_0)``.

    A sampling scorer draws from one generator seeded here, so the same run scores the same
    way every time it is evaluated. ``per_history`` (one-step reads only): every row of a batch
    gets the draws one row alone would get, so a history's scores do not depend on its batch.
    """
    inf = config["inference"]
    T = model.process.num_steps
    if inf["t"] > T:
        raise RecipeError(f"inference.t = {inf['t']} exceeds diffusion.steps = {T}")
    if inf["mode"] == "reverse" and inf["steps"] is not None and inf["steps"] > inf["t"]:
        raise RecipeError(f"inference.steps = {inf['steps']} exceeds inference.t = {inf['t']}: a reverse run from "
                          f"t = {inf['t']} visits at most {inf['t']} times")
    random = draws_random_bits(config)
    if inf["ensemble"] > 1 and not random:
        raise RecipeError(f"inference.ensemble = {inf['ensemble']} would average identical scores: this scorer "
                          "draws no random bits; set inference.ensemble: 1, or draw them with "
                          "inference.add_noise: true (or inference.sample: sample with inference.mode: reverse)")
    generator = torch.Generator(device=device_of(model)).manual_seed(seed) if random else None
    if per_history and inf["mode"] != "one_step":
        raise ValueError("per_history draws are for one-step reads; score a reverse run one history at a time")
    if inf["mode"] == "one_step":
        def once(x):
            if inf["add_noise"]:
                noise = None
                if per_history:  # one row's draws, shared by every row: what it gets alone
                    noise = torch.rand((1, x.shape[1]), generator=generator, device=x.device,
                                       dtype=model.process.marginal_probs(x[:1], inf["t"]).dtype).expand(x.shape)
                x = model.process.add_noise(x, inf["t"], noise=noise, generator=generator)
            return model.predict_x0(x, inf["t"])
    else:
        def once(x):
            return model.reverse(x, start=inf["t"], steps=inf["steps"], mode=inf["sample"],
                                 add_noise=inf["add_noise"], generator=generator)
    if inf["ensemble"] == 1:
        return once

    def averaged(x):  # a running sum: memory of one batch of scores, whatever the ensemble size
        total = once(x)
        for _ in range(inf["ensemble"] - 1):
            total += once(x)
        return total / inf["ensemble"]
    return averaged


def _from_params(constructor, **fixed):
    def build(config: dict, dim: int, training: bool = False) -> nn.Module:
        return constructor(dim, **fixed, **dict(config["model"]["params"] or {}))
    return build


MODELS: dict[str, RecommenderKind] = {kind.name: kind for kind in (
    RecommenderKind(BINOMIAL, lambda config, dim, training=False: build_diffusion(config, dim), parallel=True,
                    scorer=_diffusion_scorer, description="binomial diffusion (the diffusion and denoiser sections)"),
    RecommenderKind("popularity", _from_params(Popularity), fitting="closed_form", scorer=_baseline_scorer,
                    params_of=Popularity, description="item counts of the training users"),
    RecommenderKind("ease", _from_params(EASE), fitting="closed_form", scorer=_baseline_scorer, params_of=EASE,
                    description="EASE, λ chosen on validation users"),
    RecommenderKind("multdae", _from_params(MultVAE, variational=False), scorer=_baseline_scorer, params_of=MultVAE,
                    fixed_params=frozenset({"variational"}), description="Mult-DAE"),
    RecommenderKind("multvae", _from_params(MultVAE, variational=True), scorer=_baseline_scorer, params_of=MultVAE,
                    fixed_params=frozenset({"variational"}), description="Mult-VAE"),
    RecommenderKind("gaussian", _from_params(GaussianDiffusionRecommender), scorer=_baseline_scorer,
                    params_of=GaussianDiffusionRecommender, description="Gaussian diffusion (DiffRec-style)"),
    RecommenderKind("recfusion", _from_params(RecFusionBin), scorer=_baseline_scorer, params_of=RecFusionBin,
                    description="the published RecFusion code, reproduced"),
)}


def register_model(kind: RecommenderKind) -> None:
    """Make a recommendation model of one's own available to recipes as ``model.kind: <kind.name>``:
    ``train``, ``compare``, ``tune``, ``evaluate``, ``recommend`` and ``export`` then treat it as a
    baseline (every kind but ``binomial`` is one). Its model is an ``nn.Module`` built by
    ``kind.build(config, n_items, training=False)``; ``_from_params``-style builders read
    ``model.params`` and name the class in ``params_of``. A gradient model's ``forward(x0,
    generator=None)`` returns a ``LossOutput``; a closed-form one (``fitting="closed_form"``) has
    ``fit_closed_form(train_csr, evaluate_valid) -> dict``; both have ``score(x) -> (B, n_items)``.
    Registering the same definition again replaces it; another under a taken name is refused."""
    if not isinstance(kind, RecommenderKind):
        raise TypeError(f"register_model takes a RecommenderKind, got {type(kind).__name__}")
    if not isinstance(kind.name, str) or not kind.name:  # a name of 5 broke every later "unknown model" line
        raise ValueError(f"a model's name is a non-empty string, got {kind.name!r}")
    if not callable(kind.build):
        raise ValueError(f"model {kind.name!r}: build must be a function (config, n_items, training=False) -> "
                         f"nn.Module, got {kind.build!r}")
    if kind.params_of is not None and not isinstance(kind.params_of, type):
        raise ValueError(f"model {kind.name!r}: params_of must be a class (whose __init__ names model.params) or "
                         f"None, got {kind.params_of!r}")
    if not callable(kind.scorer):
        raise ValueError(f"model {kind.name!r}: scorer must be a function (model, config, seed, per_history), "
                         f"got {kind.scorer!r}")
    if kind.fitting not in ("gradient", "closed_form"):
        raise ValueError(f"model {kind.name!r}: fitting must be 'gradient' or 'closed_form', got {kind.fitting!r}")
    taken = MODELS.get(kind.name)
    if taken is not None and taken is not kind and not (
            same_definition(taken.build, kind.build) and same_definition(taken.params_of, kind.params_of)):
        raise ValueError(f"a model named {kind.name!r} is already registered")
    MODELS[kind.name] = kind


def model_kinds() -> list[str]:
    return list(MODELS)


def accepted_params(kind: str) -> list[str]:
    cls = MODELS[kind].params_of
    if cls is None:
        return []
    return checks.accepted_params(cls, fixed=tuple(MODELS[kind].fixed_params))


def unread_sections(kind: RecommenderKind) -> tuple[str, ...]:
    """Recipe sections a model kind never reads: the diffusion's own for a baseline, and training
    for a model fitted in closed form (but for ``PROCESS_KEYS``)."""
    if kind.name == BINOMIAL:
        return ()
    return ("diffusion", "denoiser", "inference", *(("train",) if kind.fitting == "closed_form" else ()))


PROCESS_KEYS = ("train.threads", "train.device")  # where any model runs, a closed-form fit too


def never_reads(kind: RecommenderKind, key: str) -> bool:
    """Whether a run of ``kind`` never reads the recipe key (dotted) or section ``key``."""
    return key.split(".")[0] in unread_sections(kind) and not any(
        key == k or key.startswith(k + ".") for k in PROCESS_KEYS)


def model_kind(config: dict) -> RecommenderKind:
    """The recipe's model kind, with the names in ``model.params`` checked; RecipeError names the key."""
    section = config["model"]
    name, params = section["kind"], dict(section.get("params") or {})
    if name not in MODELS:
        raise RecipeError(f"model.kind: unknown model {name!r}; choose one of {', '.join(model_kinds())} (one of "
                          "your own is registered first: register_model, run by a plugin for the bindiff command)")
    kind = MODELS[name]
    if kind.params_of is None:
        if params:
            raise RecipeError(f"model.params: the {name} model takes no parameters here (got {sorted(params)}); "
                              "it is configured by the diffusion and denoiser sections")
        return kind
    try:
        checks.check_params(f"model {name!r}", kind.params_of, params, fixed=tuple(kind.fixed_params))
    except ValueError as err:
        raise RecipeError(f"model.params: {err}") from None
    return kind


def check_model_params(config: dict) -> None:
    """Refuse invalid ``model.params`` values before any data are read.

    A baseline is built once for two items (cheap for every model; it draws from torch's
    default generator, which the lifecycle seeds afterwards). The binomial model, whose
    parameters are the diffusion and denoiser sections, is built the same way by
    ``RecommendationTask.check_recipe``, with its inference section checked beside it.
    """
    kind = model_kind(config)
    if kind.params_of is not None:
        build_model(config, 2)


def build_model(config: dict, dim: int) -> nn.Module:
    """The recipe's untrained model over ``dim`` items."""
    kind = model_kind(config)
    try:
        return kind.build(config, dim)
    except ValueError as err:  # a model's refusal of a value; a TypeError from inside is a bug, kept
        if isinstance(err, RecipeError):
            raise
        raise RecipeError(f"model.params: model {kind.name!r}: {err}") from None


def make_scorer(model: nn.Module, config: dict, seed: int, per_history: bool = False):
    """What evaluation and ``recommend`` call: ``scores(batch) -> (B, D)`` for the recipe's model.
    ``per_history``: random draws that do not depend on the other rows of a batch (one-step reads).
    ``seed``: an integer (numpy's, or a 0-d array or tensor, too) that ``torch.Generator.manual_seed`` takes."""
    return model_kind(config).scorer(model, config, scorer_seed(seed), per_history)


def scorer_seed(seed) -> int:
    """``seed`` as a plain int (``manual_seed`` refused numpy's integers with "an integer is required"),
    refused by name when it is not a whole number torch's generators take."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    try:
        value = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed must be an integer, got {seed!r}") from None
    if not -2 ** 63 <= value < 2 ** 64:
        raise ValueError(f"seed must lie in -2**63 .. 2**64 - 1 (torch's generators), got {value}")
    return value


__all__ = ["BINOMIAL", "MODELS", "RecommenderKind", "accepted_params", "build_model", "check_model_params",
           "draws_random_bits", "make_scorer", "model_kind",
           "model_kinds", "register_model"]
