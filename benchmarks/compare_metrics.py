"""Compare two runs' metrics.json to the digit, leaf by leaf, ignoring timings.

Used to show that a change of code leaves results untouched (the same recipe and seed before and
after):

    python benchmarks/compare_metrics.py RUN_DIR_BEFORE RUN_DIR_AFTER

Prints every metric that differs (or is missing on one side) and the count of equal ones; exit
code 1 when anything differs. Keys that hold wall-clock time (``seconds``, ``seconds_total``) and
the run's own paths are not compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

IGNORED = {"seconds", "seconds_total"}


def leaves(value, prefix: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in IGNORED:
                yield from leaves(item, f"{prefix}{key}.")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{prefix}{i}.")
    else:  # files before December 2026 wrote an undefined value as NaN, later ones as null
        yield prefix.rstrip("."), None if isinstance(value, float) and value != value else value


def main(before: str, after: str) -> int:
    a = dict(leaves(json.loads((Path(before) / "metrics.json").read_text())))
    b = dict(leaves(json.loads((Path(after) / "metrics.json").read_text())))
    shared = sorted(set(a) & set(b))
    differ = [k for k in shared if a[k] != b[k]]
    for key in differ:
        print(f"differs  {key}: {a[key]!r} -> {b[key]!r}")
    for key in sorted(set(a) ^ set(b)):
        print(f"only in {'before' if key in a else 'after'}: {key}")
    print(f"{len(shared) - len(differ)} of {len(shared)} shared values equal to the digit; "
          f"{len(set(a) ^ set(b))} keys on one side only")
    print(f"command: python benchmarks/compare_metrics.py {before} {after}")
    return 1 if differ else 0


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # asked for: the usage on stdout, exit 0
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) < 3:  # a usage error: the usage on stderr, exit 1
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:3]))
