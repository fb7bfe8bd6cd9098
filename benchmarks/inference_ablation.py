"""Score trained runs with other inference settings: one step vs reverse steps, noise, ensembles.

Each variant is a list of `bindiff evaluate` overrides (inference.* only), so every cell of the
table is also one command: `bindiff evaluate RUN_DIR <overrides>`. Nothing is retrained and
nothing is written; the mean ± std is over the given runs (one per seed).

    python benchmarks/inference_ablation.py runs/compare/ml1m/<stamp>/runs/binomial/ml1m/*/
"""

from __future__ import annotations

import sys
import time

import numpy as np

VARIANTS: dict[str, list[str]] = {
    "one step at t = 1 (recipe)": [],
    "one step at t = 2": ["inference.t=2"],
    "one step at t = 3": ["inference.t=3"],
    "reverse, 3 steps from x_3 = history (mean)": ["inference.mode=reverse", "inference.t=3"],
    "reverse, 2 steps from x_2 = history (mean)": ["inference.mode=reverse", "inference.t=2"],
    "one step on noised history, 10-draw ensemble": ["inference.add_noise=true", "inference.ensemble=10"],
    "one step on history noised to t = 3, 10-draw ensemble": [
        "inference.t=3", "inference.add_noise=true", "inference.ensemble=10"],
    "reverse from noised x_3, sampled bits, 10-draw ensemble": [
        "inference.mode=reverse", "inference.t=3", "inference.add_noise=true", "inference.sample=sample",
        "inference.ensemble=10"],
}


def main(run_dirs: list[str]) -> None:
    from bindiff.tasks.recommendation.job import evaluate_run  # here: the usage prints without torch

    print(f"command: python benchmarks/inference_ablation.py {' '.join(run_dirs)}")
    print(f"{len(run_dirs)} runs; mean ± std over runs; each cell: bindiff evaluate RUN_DIR <overrides>\n")
    metric = None
    rows = []
    for name, overrides in VARIANTS.items():
        valid, test, seconds = [], [], []
        for run in run_dirs:
            started = time.perf_counter()
            m = evaluate_run(run, overrides=overrides)
            seconds.append(time.perf_counter() - started)
            metric = metric or m["checkpoint"]["selected_by"]
            valid.append(m["valid"][metric])
            test.append(m["test"][metric])
        rows.append((name, overrides, valid, test, seconds))
    # ± is the population standard deviation over the runs (ddof 0); `bindiff compare` tables use ddof 1
    print(f"| inference | overrides | valid {metric} (± sd, ddof 0) | test {metric} (± sd, ddof 0) "
          "| seconds per run (valid + test) |")
    print("|---|---|---|---|---|")
    for name, overrides, valid, test, seconds in rows:
        print(f"| {name} | `{' '.join(overrides) or '(none)'}` | {np.mean(valid):.4f} ± {np.std(valid):.4f} "
              f"| {np.mean(test):.4f} ± {np.std(test):.4f} | {np.mean(seconds):.1f} |")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # asked for: the usage on stdout, exit 0
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) < 2:  # a usage error: the usage on stderr, exit 1
        sys.exit(__doc__)
    main(sys.argv[1:])
