"""Ensembles of the binomial model on one split: over seeds, and beside EASE's linear term.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/ensembles.py RECIPE [key=value ...] \
        [--splits 0,1,2] [--members 3] [--root DIR]

For each split seed s (``split.seed=s``), it trains ``--members`` binomial models (the recipe
as it is, ``seed`` = s, s + 1000, s + 2000, ...: other initialisations, data orders and
noise on the same split) and EASE (``compare.models.ease``, λ chosen on validation), then
ranks the validation and test users with:

single        the first member alone (what ``bindiff train`` gives)
seeds         the mean of the members' scores p̂(x_0)
+EASE w       (1 - w) · z(seeds) + w · z(EASE), z: each user's scores standardised over the
              items; w from {0, 0.1, ..., 1} chosen on the validation users' eval.select

Only validation users choose w (on ``eval.select``); test values are reported once per split.
Printed: each variant's validation and test ``eval.select`` per split, then a table of the means,
validation ``eval.select`` and every test metric of ``eval.metrics`` with its ratio to EASE, and
the mean training seconds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


def standardised(scores: torch.Tensor) -> torch.Tensor:
    return (scores - scores.mean(dim=1, keepdim=True)) / scores.std(dim=1, keepdim=True).clamp_min(1e-12)


def table(results: dict[str, list[tuple[dict, dict]]], select: str, names: list[str]) -> str:
    """Markdown: each variant's mean validation ``select`` and mean test value of every metric
    (± the standard deviation over splits for ``select``), and each test mean over EASE's."""
    ease = {m: np.mean([test[m] for _, test in results["EASE"]]) for m in names}
    lines = [f"| variant | valid {select} | " + " | ".join(f"test {m}" for m in names) + " | "
             + " | ".join(f"× EASE ({m})" for m in names) + " |",
             "|---" * (2 + 2 * len(names)) + "|"]
    for name, pairs in results.items():
        valid = np.mean([v[select] for v, _ in pairs])
        tests = {m: [test[m] for _, test in pairs] for m in names}
        cells = [f"{np.mean(values):.4f}" + (f" ± {np.std(values, ddof=1):.4f}" if m == select and len(values) > 1
                                             else "") for m, values in tests.items()]
        ratios = [f"{np.mean(values) / ease[m]:.3f}" for m, values in tests.items()]
        lines.append(f"| {name} | {valid:.4f} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--splits", default="0,1,2")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--root", default="runs/ensembles")
    args = parser.parse_args()

    from bindiff.config import load_recipe
    from bindiff.metrics import evaluate_ranking
    from bindiff.tasks.recommendation.evaluation import metric_names
    from bindiff.tasks.recommendation.job import load_run, train_recommender
    from bindiff.tasks.recommendation.models import make_scorer

    base = load_recipe(args.recipe, args.overrides)
    select = base["eval"]["select"]
    ease_overrides = base["compare"]["models"]["ease"]
    results: dict[str, list[tuple[float, float]]] = {}
    seconds: list[float] = []

    def scorers_of(run_dir):
        cfg, split, model, _ = load_run(run_dir)
        return cfg, split, make_scorer(model, cfg, seed=cfg["seed"])

    for s in (int(v) for v in args.splits.split(",")):
        common = [*args.overrides, f"split.seed={s}", f"output.root={args.root}", "output.progress=false"]
        members = []
        for m in range(args.members):
            run = train_recommender(load_recipe(args.recipe, [*common, f"seed={s + 1000 * m}"]))
            seconds.append(run.metrics["training"]["seconds"])
            members.append(scorers_of(run.run_dir))
        ease_run = train_recommender(load_recipe(args.recipe, [*common, f"seed={s}", *ease_overrides]))
        cfg, split, ease_scorer = scorers_of(ease_run.run_dir)
        names = metric_names(cfg)

        def evaluate(part, score) -> dict[str, float]:
            return evaluate_ranking(score, part.input, part.exclude, part.target, names,
                                    batch_size=cfg["eval"]["batch_size"], empty_users=cfg["eval"]["empty_users"],
                                    device=torch.device("cpu")).mean

        def seeds_mean(batch):
            return torch.stack([scorer(batch) for _, _, scorer in members]).mean(dim=0)

        def blend(w):
            return lambda batch: (1 - w) * standardised(seeds_mean(batch)) + w * standardised(ease_scorer(batch))

        variants = {"single": members[0][2], f"seeds ({args.members})": seeds_mean}
        for name, score in variants.items():
            results.setdefault(name, []).append((evaluate(split.valid, score), evaluate(split.test, score)))
        valid = {w: evaluate(split.valid, blend(w)) for w in WEIGHTS}
        best_w = max(WEIGHTS, key=lambda w: valid[w][select])  # a tie keeps the smaller weight
        test = evaluate(split.test, blend(best_w))
        results.setdefault(f"seeds ({args.members}) + EASE", []).append((valid[best_w], test))
        results.setdefault("EASE", []).append((evaluate(split.valid, ease_scorer), evaluate(split.test, ease_scorer)))
        print(f"split {s}: " + ", ".join(f"{k} {v[-1][1][select]:.4f}" for k, v in results.items())
              + f"; w = {best_w} (validation {select}: "
              + ", ".join(f"{w}: {v[select]:.4f}" for w, v in valid.items()) + ")", flush=True)

    print(table(results, select, names))
    print(f"\nmean binomial training seconds per member: {np.mean(seconds):.1f}")
    command = shlex.join(["python", "benchmarks/ensembles.py", args.recipe, *args.overrides, "--splits", args.splits,
                          "--members", str(args.members), "--root", args.root])
    data_dir = os.environ.get("BINDIFF_DATA_DIR")  # the folder this run read
    print(f"command: {f'BINDIFF_DATA_DIR={shlex.quote(data_dir)} ' if data_dir else ''}{command}")


if __name__ == "__main__":
    main()
