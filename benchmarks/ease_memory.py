"""The peak memory of an EASE fit, in dense item × item float64 matrices.

    python benchmarks/ease_memory.py [--items 3000] [--users-per-item 4] [--per-user 20]

EASE refuses, before allocating, a catalogue whose fit would not fit this machine's memory
(``check_ease_fits``), counting ``_DENSE_MATRICES`` float64 item × item matrices. This measures
what a fit over three λ really holds at its peak (the rise of the process's peak resident memory
over the fit, on generated interactions), so the count can be checked against it.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys


def peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--users-per-item", type=int, default=4)
    parser.add_argument("--per-user", type=int, default=20, help="interactions per user")
    args = parser.parse_args()

    from bindiff.adapters.interactions.synthetic import synthetic_interactions
    from bindiff.tasks.recommendation.baselines import ease

    n = args.items
    users = args.users_per_item * n
    x = synthetic_interactions(users, n, args.per_user * users, seed=0)
    model = ease.EASE(n, lambdas=[50.0, 100.0, 200.0])
    before = peak_bytes()
    model.fit_closed_form(x, lambda fitted: float(fitted.weights[0, 1]))  # a stand-in validation value
    matrices = (peak_bytes() - before) / (8 * n * n)
    print(f"EASE fit on {n:,} items ({users:,} users, {x.nnz:,} interactions): peak rise "
          f"{(peak_bytes() - before) / 2**20:,.0f} MiB = {matrices:.2f} dense float64 item × item matrices "
          f"(the guard counts {ease._DENSE_MATRICES})")
    print("command: " + shlex.join(["python", "benchmarks/ease_memory.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
