"""Variants of the binomial model tried for a wider lead over EASE, none of them shipped.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/ml1m_variants.py VARIANT [key=value ...] \
        [--seeds 0,1] [--root DIR]

Each variant is the recipe (``recipes/ml1m.yaml`` unless ``--recipe``) with one change that no
recipe key expresses, patched in for this script only:

recipe        the recipe as it is (the reference, trained the same way)
ease_term     the denoiser's logits plus s · (x_t B), B EASE's closed form on the training users
              (λ = --lam), s a learned scalar starting at 1: "EASE-style linear terms beside the
              non-linear denoiser" (the issue's idea), the MLP learning what EASE misses
linear_term   the same idea without EASE's fit: the logits plus x̃ W, W a learned item × item matrix,
              zero on its diagonal (EASE's constraint), starting at 0 and trained with the MLP by
              the same loss, with an L2 penalty (--weight / 2) ||W||²; x̃ is the input after the
              input dropout, on its original scale. D² more parameters (7.9 M for ML-1M)
multinomial   the loss plus w · (−Σ_i x_0,i log softmax(logits)_i), Mult-VAE's likelihood (w = --weight)
emphasis      EDLAE's emphasised denoising: in the cross-entropy the positives the input dropout
              removed weigh --weight, the positives it kept --kept, every other bit 1 (Steck 2020)

For each seed s (``seed=s``: the split, initialisation and noise) it trains one run and prints its
validation and test metrics (every ``eval.metrics``); only the validation values chose what was kept.
"""

from __future__ import annotations

import argparse
import os
import json
import shlex
import sys
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import bindiff.core.denoisers as denoisers  # noqa: E402
import bindiff.core.diffusion as diffusion  # noqa: E402

VARIANTS = ("recipe", "ease_term", "linear_term", "multinomial", "emphasis")


class EaseTermDenoiser(denoisers.MLPDenoiser):
    """The MLP denoiser with a fixed item-item linear term beside it (``weights``, set before building)."""

    weights: torch.Tensor | None = None

    def __init__(self, dim, hidden=(600,), activation="tanh", dropout=0.0, input_dropout=0.0, input_norm="none",
                 time_dim=0):
        super().__init__(dim, hidden=hidden, activation=activation, dropout=dropout, input_dropout=input_dropout,
                         input_norm=input_norm, time_dim=time_dim)
        self.register_buffer("ease", EaseTermDenoiser.weights.clone())
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x_t, t):
        return super().forward(x_t, t) + self.scale * (x_t @ self.ease)


class LinearTermDenoiser(denoisers.MLPDenoiser):
    """The MLP denoiser plus a learned item-item linear term x̃ W, W zero on its diagonal and
    starting at 0, trained jointly by the same loss; x̃ is the input after the input dropout."""

    l2: float = 0.0

    def __init__(self, dim, hidden=(600,), activation="tanh", dropout=0.0, input_dropout=0.0, input_norm="none",
                 time_dim=0):
        super().__init__(dim, hidden=hidden, activation=activation, dropout=dropout, input_dropout=input_dropout,
                         input_norm=input_norm, time_dim=time_dim)
        self.linear_weight = nn.Parameter(torch.zeros(dim, dim))
        self.register_buffer("off_diagonal", 1.0 - torch.eye(dim))
        if LinearTermDenoiser.l2:  # an L2 penalty (l2 / 2) ||W||^2 on the linear term alone, as a gradient
            self.linear_weight.register_hook(lambda grad: grad + LinearTermDenoiser.l2 * self.linear_weight.detach())

    def forward(self, x_t, t):
        seen: dict[str, torch.Tensor] = {}  # what the MLP's input dropout returns, caught on its way
        handle = self.input_dropout.register_forward_hook(lambda module, inputs, output: seen.setdefault("x", output))
        try:
            logits = super().forward(x_t, t)
        finally:
            handle.remove()
        # the dropped-out input on its original scale: the bits the dropout kept, times 1 / (1 - p)
        kept = seen["x"] * x_t.norm(dim=-1, keepdim=True) if self.input_norm == "l2" else seen["x"]
        return logits + kept @ (self.linear_weight * self.off_diagonal)


def patch_multinomial(weight: float) -> None:
    plain = diffusion.diffusion_loss

    def loss(kind, process, x0, x_t, t, logits, *args, **kwargs):
        terms = plain(kind, process, x0, x_t, t, logits, *args, **kwargs)
        terms["loss"] = terms["loss"] - weight * (x0 * torch.log_softmax(logits, dim=-1)).sum(-1)
        return terms
    diffusion.diffusion_loss = loss


def patch_emphasis(weight: float, kept: float = 1.0) -> None:
    """Record which input bits the dropout removed, and weigh those positives ``weight`` in the
    loss, the input's other positives ``kept``."""
    dropped: dict[str, torch.Tensor | None] = {"mask": None, "kept": None}
    plain_dropout = denoisers.MLPDenoiser.forward

    def forward(self, x_t, t):
        def record(module, inputs, output):
            dropped["mask"] = (inputs[0] != 0) & (output == 0) if module.training else None
            dropped["kept"] = (inputs[0] != 0) & (output != 0) if module.training else None
        handle = self.input_dropout.register_forward_hook(record)
        try:
            return plain_dropout(self, x_t, t)
        finally:
            handle.remove()
    denoisers.MLPDenoiser.forward = forward
    plain = diffusion.diffusion_loss

    def loss(kind, process, x0, x_t, t, logits, *args, **kwargs):
        terms = plain(kind, process, x0, x_t, t, logits, *args, **kwargs)
        if dropped["mask"] is not None:
            per_bit = nn.functional.binary_cross_entropy_with_logits(logits, x0, reduction="none")
            weights = 1 + (weight - 1) * dropped["mask"].float() + (kept - 1) * dropped["kept"].float()
            terms["loss"] = (per_bit * weights).sum(-1)
        return terms
    diffusion.diffusion_loss = loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--recipe", default="recipes/ml1m.yaml")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--lam", type=float, default=501.0, help="EASE's λ for ease_term (seed 0's choice on validation)")
    parser.add_argument("--weight", type=float, default=2.0, help="w of multinomial, the emphasis of emphasis, the L2 penalty of linear_term")
    parser.add_argument("--kept", type=float, default=1.0, help="emphasis: the weight of the positives kept")
    parser.add_argument("--root", default="runs/variants")
    args = parser.parse_args()

    from bindiff.config import load_recipe
    from bindiff.tasks.recommendation.baselines.ease import ease_weights
    from bindiff.tasks.recommendation.data import prepare_split
    from bindiff.tasks.recommendation.job import split_seed
    from bindiff.tasks.recommendation.job import train_recommender

    if args.variant == "multinomial":
        patch_multinomial(args.weight)
    elif args.variant == "emphasis":
        patch_emphasis(args.weight, args.kept)
    elif args.variant == "ease_term":
        denoisers.register_denoiser("mlp_ease_term", EaseTermDenoiser)
    elif args.variant == "linear_term":
        denoisers.register_denoiser("mlp_linear_term", LinearTermDenoiser)
        LinearTermDenoiser.l2 = args.weight
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        overrides = [*args.overrides, f"seed={seed}", f"output.root={args.root}/{args.variant}", "output.progress=false"]
        if args.variant == "ease_term":
            config = load_recipe(args.recipe, overrides)
            # the split the run trains on (split.seed when given): EASE must not see its test users
            split, _ = prepare_split(config["data"], config["split"], seed=split_seed(config))
            EaseTermDenoiser.weights = torch.from_numpy(ease_weights(split.train, args.lam)).float()
            overrides.append("denoiser.name=mlp_ease_term")
        if args.variant == "linear_term":
            overrides.append("denoiser.name=mlp_linear_term")
        config = load_recipe(args.recipe, overrides)
        select = config["eval"]["select"]
        run = train_recommender(config)
        rows.append((seed, run.metrics["valid"][select], run.metrics["test"][select],
                     run.metrics["training"]["seconds"], run.metrics["training"]["best_epoch"]))
        print(json.dumps({"variant": args.variant, "seed": seed, f"valid_{select}": rows[-1][1],
                          f"test_{select}": rows[-1][2], "seconds": rows[-1][3], "best_epoch": rows[-1][4],
                          "valid": run.metrics["valid"], "test": run.metrics["test"]}), flush=True)
    command = shlex.join(["python", "benchmarks/ml1m_variants.py", args.variant, *args.overrides, "--recipe", args.recipe,
                          "--seeds", args.seeds, "--lam", str(args.lam), "--weight", str(args.weight),
                          "--kept", str(args.kept), "--root", args.root])
    data_dir = os.environ.get("BINDIFF_DATA_DIR")  # the folder this run read
    print(f"command: {f'BINDIFF_DATA_DIR={shlex.quote(data_dir)} ' if data_dir else ''}{command}")


if __name__ == "__main__":
    main()
