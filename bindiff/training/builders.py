"""Turn a resolved recipe into core objects, naming the recipe key when a value is refused."""

from __future__ import annotations

import torch

from ..baselines import build_recommender
from ..config import RecipeError
from ..core import BernoulliProcess, BinomialDiffusion, build_denoiser


def build_process(config: dict) -> BernoulliProcess:
    d = config["diffusion"]
    try:
        return BernoulliProcess.from_schedule(d["schedule"], d["steps"], kernel=d["kernel"], **d["schedule_params"])
    except ValueError as err:
        raise RecipeError(f"diffusion: {err}") from None


def build_model(config: dict, dim: int) -> BinomialDiffusion:
    model = config.get("model") or {"kind": "binomial", "params": {}}
    if model["kind"] != "binomial" or model.get("params"):  # a baseline (model.kind), or params to refuse
        return build_recommender(config, dim)
    process = build_process(config)
    try:
        denoiser = build_denoiser(config["denoiser"]["name"], dim, **config["denoiser"]["params"])
    except (ValueError, TypeError) as err:
        raise RecipeError(f"denoiser: {err}") from None
    d = config["diffusion"]
    try:
        return BinomialDiffusion(denoiser, process, loss=d["loss"], hybrid_coeff=d["hybrid_coeff"],
                                 train_t_max=d["train_t_max"], reverse_kernel=d["reverse_kernel"])
    except ValueError as err:
        raise RecipeError(f"diffusion: {err}") from None


def build_optimizer(config: dict, model: torch.nn.Module) -> torch.optim.Optimizer | None:
    """None for a model without trainable parameters (popularity, EASE: fitted in closed form)."""
    t = config["train"]
    if not any(p.requires_grad for p in model.parameters()):
        return None
    cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("train.device: 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def make_scorer(model: BinomialDiffusion, config: dict, seed: int):
    """The recipe's inference mode as ``scores(batch) -> p̂(x_0)``.

    A sampling scorer draws from one generator seeded here, so the same run scores the same
    way every time it is evaluated. A baseline (``model.kind`` other than binomial) scores
    with its own ``score`` and ignores the inference section.
    """
    if not isinstance(model, BinomialDiffusion):
        return model.score
    inf = config["inference"]
    T = model.process.num_steps
    if inf["t"] > T:
        raise RecipeError(f"inference.t = {inf['t']} exceeds diffusion.steps = {T}")
    random = inf["add_noise"] or (inf["mode"] == "reverse" and inf["sample"] == "sample")
    if inf["ensemble"] > 1 and not random:
        raise RecipeError(f"inference.ensemble = {inf['ensemble']} would average identical scores: this scorer "
                          "draws no random bits; set inference.add_noise: true (or inference.sample: sample "
                          "with inference.mode: reverse)")
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed) if random else None
    if inf["mode"] == "one_step":
        def once(x):
            if inf["add_noise"]:
                x = model.process.add_noise(x, inf["t"], generator=generator)
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
