"""Time from start to the best checkpoint, for every model of a recipe's compare.models.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/time_to_best.py RECIPE [key=value ...] \
        [--models binomial,ease,...] [--root DIR]

Each model is trained as ``bindiff train RECIPE <its compare overrides>`` would, in this process,
one after the other. For each it prints:

setup      reading the data and building the split (timed once, before the first model: every
           run repeats it, so it is added to each model's time to best)
to best    training-clock seconds at the end of the best epoch (``history.json``: each entry's
           ``seconds`` counts training and validation from the first epoch), or the whole fit of
           a closed-form model (EASE: one eigendecomposition and the λ grid on validation)
epochs     best epoch / epochs run (early stopping runs ``train.patience`` epochs past the best)
per epoch  mean seconds of one epoch, split into validation (one full ranking of the validation
           users, timed once after training with the best weights) and training (the rest)
whole run  wall seconds of the whole ``train_recommender`` call, final test ranking included

Nothing here is asserted; the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--models", default=None, help="comma-separated compare.models (default: all)")
    parser.add_argument("--root", default="runs/time_to_best", help="output.root of the runs")
    args = parser.parse_args()

    from bindiff.config import load_recipe
    from bindiff.tasks.recommendation.data import prepare_split
    from bindiff.tasks.recommendation.evaluation import evaluate_part
    from bindiff.tasks.recommendation.job import load_run, split_seed, train_recommender
    from bindiff.training.devices import device_of

    base = load_recipe(args.recipe, args.overrides)
    presets = base["compare"]["models"]
    names = args.models.split(",") if args.models else list(presets)
    unknown = [name for name in names if name not in presets]
    if unknown:
        parser.error(f"--models: {', '.join(unknown)} not in the recipe's compare.models ({', '.join(presets)})")
    from bindiff.config import RecipeError
    from bindiff.tasks.base import refuse_unread
    from bindiff.tasks.recommendation.job import TASK
    from bindiff.config.recipe import override_key
    from bindiff.tasks.recommendation.tune import refuse_replaced

    try:  # as bindiff compare refuses them: a preset that overrules the command line, a setting never read
        for name in names:
            refuse_replaced(args.overrides, [override_key(o) for o in presets[name]],
                            f"compare.models.{name} sets")
            refuse_unread(TASK, load_recipe(args.recipe, [*args.overrides, *presets[name]]), presets[name],
                          where=f"compare.models.{name}: ")
    except RecipeError as err:
        parser.error(str(err))

    started = time.perf_counter()
    prepare_split(base["data"], base["split"], seed=split_seed(base))
    setup = time.perf_counter() - started

    rows = []
    for name in names:
        config = load_recipe(args.recipe, [*args.overrides, *presets[name], f"output.root={args.root}",
                                           "output.progress=false"])
        started = time.perf_counter()
        run = train_recommender(config)
        whole = time.perf_counter() - started
        training = run.metrics["training"]
        history = json.loads((Path(run.run_dir) / "history.json").read_text())
        if history:
            best = training["best_epoch"]
            to_best = history[best - 1]["seconds"]
            per_epoch = history[-1]["seconds"] / len(history)
            cfg, split, model, _ = load_run(run.run_dir)
            tick = time.perf_counter()
            evaluate_part(model, cfg, split.valid, device_of(model))
            validation = time.perf_counter() - tick
            epochs = f"{best} / {len(history)}"
        else:  # closed form: the fit is the whole training
            to_best, per_epoch, validation, epochs = training["seconds"], None, None, "closed form"
        rows.append((name, setup + to_best, to_best, epochs, per_epoch, validation, whole))
        print(f"{name}: to best {setup + to_best:.1f} s (setup {setup:.1f} + {to_best:.1f}), epochs {epochs}, "
              f"whole run {whole:.1f} s", flush=True)

    print()
    print("| model | time to best | of which setup | best epoch / run | per epoch (train + validation) | whole run |")
    print("|---|---|---|---|---|---|")
    for name, total, to_best, epochs, per_epoch, validation, whole in rows:
        split_text = "" if per_epoch is None else (f"{per_epoch:.2f} s ({per_epoch - validation:.2f} + "
                                                   f"{validation:.2f})")
        print(f"| {name} | {total:.1f} s | {setup:.1f} s | {epochs} | {split_text} | {whole:.1f} s |")
    command = " ".join(["python benchmarks/time_to_best.py", shlex.quote(args.recipe),
                        *map(shlex.quote, args.overrides), *(["--models", args.models] if args.models else []),
                        "--root", shlex.quote(args.root)])
    data_dir = os.environ.get("BINDIFF_DATA_DIR")  # the folder this run read, as the other scripts print it
    print(f"\ncommand: {f'BINDIFF_DATA_DIR={shlex.quote(data_dir)} ' if data_dir else ''}{command}")


if __name__ == "__main__":
    main()
