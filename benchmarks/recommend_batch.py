"""Scoring new users: one `bindiff recommend --items` call per user against one
`bindiff recommend --input --output` call for many users (the model loaded once).

    python benchmarks/recommend_batch.py RUN_DIR [--users 1000] [--items-per-user 20] [--repeats 3]

RUN_DIR is a finished recommendation run (e.g. `bindiff train recipes/ml100k.yaml train.epochs=5`).
The new users' histories are drawn (seeded) from the run's own item ids. Each figure is the
median wall-clock time of whole `bindiff` processes, start-up included, as a user meets them.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items-per-user", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    item_ids = np.load(Path(args.run_dir) / "split" / "item_ids.npy", allow_pickle=False).astype(str)
    rng = np.random.default_rng(0)
    histories = [rng.choice(item_ids, size=args.items_per_user, replace=False) for _ in range(args.users)]
    bindiff = str(Path(sys.executable).parent / "bindiff")
    with tempfile.TemporaryDirectory() as tmp:
        users_csv = Path(tmp) / "users.csv"
        with users_csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user", "item"])
            for u, history in enumerate(histories):
                writer.writerows([f"u{u}", item] for item in history)
        single = [timed([bindiff, "recommend", args.run_dir, "--items", ",".join(histories[r]), "--k", "20"])
                  for r in range(args.repeats)]
        batch = []
        for r in range(args.repeats):
            out = Path(tmp) / f"recs{r}.csv"
            batch.append(timed([bindiff, "recommend", args.run_dir, "--input", str(users_csv), "--output", str(out),
                                "--k", "20"]))
    one, many = statistics.median(single), statistics.median(batch)
    print(f"one user per call:   {one:.2f} s per user (median of {args.repeats} calls)")
    print(f"{args.users} users in one call: {many:.2f} s, {1000 * many / args.users:.2f} ms per user")
    print(f"speed-up per user: {one / (many / args.users):.0f}x")
    print(f"command: python benchmarks/recommend_batch.py {args.run_dir} --users {args.users} "
          f"--items-per-user {args.items_per_user} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
