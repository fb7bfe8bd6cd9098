"""How closely a synthetic preset resembles a real data set: user activity and item popularity.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/synthetic_shape.py [REAL_DATASET] [PRESET] [SEED]

Defaults: ml-1m (DiffRec's copy under the data folder), synthetic:ml-1m, seed 0. Both are
taken whole (every interaction, before any split), the synthetic one as a recipe with that
seed would generate it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys

import numpy as np

from bindiff.adapters.interactions import build_matrix, load_interactions, resolve_dataset, synthetic_dataset


def shape(matrix) -> dict:
    per_user = np.diff(matrix.indptr)
    per_item = np.sort(np.bincount(matrix.indices, minlength=matrix.shape[1]))[::-1]
    n_items = len(per_item)
    ranks = np.arange(1, n_items + 1)
    middle = slice(n_items // 100, n_items // 2)  # ranks 1%..50%: below the head, above the sparse tail
    slope = np.polyfit(np.log(ranks[middle]), np.log(np.maximum(per_item[middle], 1)), 1)[0]
    return {
        "users": matrix.shape[0], "items": n_items, "interactions": int(matrix.nnz),
        "user_items_median": float(np.median(per_user)), "user_items_max": int(per_user.max()),
        "user_log_items_std": round(float(np.log(np.maximum(per_user, 1)).std()), 2),
        "top10pct_users_share": round(float(np.sort(per_user)[::-1][: len(per_user) // 10].sum() / matrix.nnz), 2),
        "top10pct_items_share": round(float(per_item[: n_items // 10].sum() / matrix.nnz), 2),
        "top20pct_items_share": round(float(per_item[: n_items // 5].sum() / matrix.nnz), 2),
        "most_popular_item_user_share": round(float(per_item[0] / matrix.shape[0]), 2),
        "rank_count_loglog_slope_1_to_50pct": round(float(slope), 2),
    }


def main(argv: list[str]) -> None:
    real_name = argv[0] if len(argv) > 0 else "ml-1m"
    preset = argv[1] if len(argv) > 1 else "synthetic:ml-1m"
    seed = int(argv[2]) if len(argv) > 2 else 0
    real = build_matrix(load_interactions(resolve_dataset(real_name))).matrix
    synthetic = synthetic_dataset(preset, seed=seed).matrix
    rows = {real_name: shape(real), f"{preset} (seed {seed})": shape(synthetic)}
    width = max(len(key) for key in next(iter(rows.values())))
    print(f"{'':<{width}}  " + "  ".join(f"{name:>24}" for name in rows))
    for key in next(iter(rows.values())):
        print(f"{key:<{width}}  " + "  ".join(f"{row[key]:>24}" for row in rows.values()))
    print(json.dumps(rows))
    data_dir = os.environ.get("BINDIFF_DATA_DIR")
    prefix = f"BINDIFF_DATA_DIR={shlex.quote(data_dir)} " if data_dir else ""
    print(f"command: {prefix}python {shlex.join([sys.argv[0], *argv])}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # asked for: the usage on stdout, exit 0
        print(__doc__)
        sys.exit(0)
    main(sys.argv[1:])
