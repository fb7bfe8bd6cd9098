"""EASE (Steck 2019) on the split of an existing run, as a reference point for its metrics.

EASE's item-item weights are B = I - P / diag(P) with P = (XᵀX + λI)⁻¹; λ is chosen on the
run's validation users from a fixed grid, and the test figure of that λ is reported. The
item × item matrix is dense (fine for thousands of items); users stay sparse.

    python benchmarks/ease_reference.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from bindiff.adapters.interactions import Split
from bindiff.config import recipe_from_text
from bindiff.metrics import evaluate_ranking

GRID = (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)


def ease_weights(train, lam: float) -> torch.Tensor:
    gram = torch.from_numpy((train.T @ train).toarray().astype(np.float64))
    gram += lam * torch.eye(gram.shape[0], dtype=torch.float64)
    precision = torch.linalg.inv(gram)
    weights = -precision / torch.diagonal(precision)
    weights.fill_diagonal_(0.0)
    return weights.float()


def evaluate(weights, part, config):
    return evaluate_ranking(lambda x: x @ weights, part.input, part.exclude, part.target, config["eval"]["metrics"],
                            empty_users=config["eval"]["empty_users"]).mean


def main(run_dirs: list[str]) -> None:
    for run_dir in run_dirs:
        config = recipe_from_text(open(f"{run_dir}/config.yaml").read())
        split = Split.load(f"{run_dir}/split")
        select = config["eval"]["select"]
        start = time.perf_counter()
        best = max(((evaluate(w := ease_weights(split.train, lam), split.valid, config)[select], lam, w)
                    for lam in GRID), key=lambda r: r[0])
        test = evaluate(best[2], split.test, config)
        print(json.dumps({"run": run_dir, "lambda": best[1], "valid_" + select: round(best[0], 4),
                          "test": {k: round(v, 4) for k, v in test.items()},
                          "seconds_for_grid": round(time.perf_counter() - start, 1)}))
    print("command: python benchmarks/ease_reference.py " + " ".join(run_dirs))


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # asked for: the usage on stdout, exit 0
        print(__doc__)
        sys.exit(0)
    if not sys.argv[1:]:  # a usage error: the usage on stderr, exit 1
        sys.exit(__doc__)
    main(sys.argv[1:])
