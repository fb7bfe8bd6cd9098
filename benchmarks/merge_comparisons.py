"""One table from several `bindiff compare` runs of the same recipe and seeds, run side by side.

    python benchmarks/merge_comparisons.py COMPARE_DIR [COMPARE_DIR ...] \
        [--out DIR]

A comparison with ``--tune`` tunes its models one after another; on a 2-core machine two
comparisons of disjoint model sets (``--models``) finish in about half the time. Each seed draws
its split from the seed alone, so the same seed gives every comparison the same users; this script
checks that (the test targets must be identical), that the comparisons share their recipe (apart
from the seed, the model list and the output folder) and that every model has the same seeds,
re-scores every run's best checkpoint on its
test users (deterministic: the figures equal each comparison's own) and builds the table as
`bindiff compare` does, the best baseline chosen on validation over all the merged models. A
model present in several comparisons (EASE, for the ratio) is kept once and must agree.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bindiff.files import write_json, write_text  # noqa: E402
from bindiff.tasks.recommendation.compare import ModelRun, _to_markdown, summarise  # noqa: E402
from bindiff.tasks.recommendation.evaluation import evaluate_part, training_popularity  # noqa: E402
from bindiff.tasks.recommendation.job import load_run  # noqa: E402
from bindiff.training.devices import device_of  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparisons", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="folder for merged.json and merged.md")
    args = parser.parse_args()

    runs: dict[tuple[str, int], ModelRun] = {}
    targets: dict[int, bytes] = {}
    config = None
    tuning: dict[str, dict] = {}
    shared = None
    for folder in args.comparisons:
        recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
        recipe = {k: v for k, v in recipe.items() if k not in ("seed", "output", "compare")}
        # `compare --tune N` records its trials in tune.trials; each model's own count is in compare.json
        recipe["tune"] = {k: v for k, v in (recipe.get("tune") or {}).items() if k != "trials"}
        if shared is not None and recipe != shared:
            key = next(k for k in sorted(set(recipe) | set(shared)) if recipe.get(k) != shared.get(k))
            raise SystemExit(f"{folder}: section {key!r} of its recipe differs from {args.comparisons[0]}'s; "
                             "a merged table compares models trained alike")
        shared = recipe
        table = json.loads((folder / "compare.json").read_text())
        for name, row in table["models"].items():
            tuning.setdefault(name, table.get("tuning", {}).get(name, {"trials": 0}))
            for seed, run_dir in zip(row["seeds"], row["runs"]):
                cfg, split, model, _ = load_run(run_dir)
                config = config or cfg
                target = (Path(run_dir) / "split" / "test_target.npz").read_bytes()
                if targets.setdefault(seed, target) != target:
                    raise SystemExit(f"{run_dir}: seed {seed} has other test users than the first comparison's")
                started = time.perf_counter()
                report = evaluate_part(model, cfg, split.test, device_of(model),
                                       popularity=training_popularity(split.train))  # popularity@K reads it
                seconds = time.perf_counter() - started
                recorded = json.loads((Path(run_dir) / "metrics.json").read_text())
                valid = {m: np.nan if v is None else v for m, v in recorded["valid"].items()}  # null: undefined
                run = ModelRun(name, cfg["model"]["kind"], seed, Path(run_dir), report.mean, valid,
                               report.per_user, recorded["training"]["seconds"], seconds, split.test.user_ids)
                if (name, seed) in runs:
                    if not all(np.isclose(runs[name, seed].test[m], run.test[m]) for m in run.test):
                        raise SystemExit(f"{name}, seed {seed}: the comparisons disagree ({runs[name, seed].test} "
                                         f"against {run.test})")
                    continue
                runs[name, seed] = run
    seeds = {name: sorted(seed for model, seed in runs if model == name) for name, _ in runs}
    if len({tuple(s) for s in seeds.values()}) > 1:
        raise SystemExit("the models have different seeds (" + "; ".join(f"{n}: {s}" for n, s in seeds.items())
                         + "); merge comparisons that cover the same seeds")
    merged = summarise(list(runs.values()), config)
    merged["tuning"] = tuning
    merged["merged_from"] = [str(f) for f in args.comparisons]
    trials = max(t.get("trials", 0) for t in tuning.values()) or None
    text = _to_markdown(merged, "(merged)", [], None, len(targets), trials)
    # the first line names one compare command; a merge has several, listed in merged.json
    text = "Merged from " + ", ".join(f"`{f}`" for f in args.comparisons) + "\n" + text.split("\n", 1)[1]
    print(text)
    # it reads the comparisons' folders alone, no data set
    print("command: " + shlex.join(["python", "benchmarks/merge_comparisons.py", *map(str, args.comparisons),
                                    *(["--out", str(args.out)] if args.out else [])]))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "merged.json", merged)
        write_text(args.out / "merged.md", text)


if __name__ == "__main__":
    main()
