"""Wall time and peak memory of reading mask and segmentation cases, as the jobs read them.

Three variants, each in a fresh process (so one variant's peak is not another's):

labels        ``load_region`` of every case: the label map read and binarised to the recipe's region
masks         ``bindiff.tasks.masks.data.prepare_data`` of the masks recipe (what ``bindiff train`` reads)
segmentation  ``bindiff.tasks.segmentation.data.prepare_data`` of the segmentation recipe: label maps,
              image channels and brain masks, normalised and placed on the grid

on the six BraTS 2015 cases (``recipes/brats_masks.yaml``, ``recipes/brats_segmentation.yaml``)
and, with ``--msd N``, on the first N MSD hippocampus cases (the hippocampus recipes, one validation
and one test case). Each process reads every case once and reports the seconds, the rise of its
resident memory over the read (the kernel's high-water mark, reset before it) and the peak of the
memory Python and numpy allocate during it (``tracemalloc``). ``--repeats`` runs each variant that
many times, in as many processes, and prints the median and the range.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/mask_read.py [--msd 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("labels", "masks", "segmentation")
RECIPES = {"brats": ("recipes/brats_masks.yaml", "recipes/brats_segmentation.yaml", []),
           "msd": ("recipes/hippocampus_masks.yaml", "recipes/hippocampus_segmentation.yaml",
                   ["split.n_valid=1", "split.n_test=1"])}


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {key}")


def _reader(variant: str, data: str, cases: int | None, data_dir: str):
    """A function reading every case of ``data`` as ``variant`` says, and how many cases it reads."""
    from bindiff.config.recipe import load_recipe
    from bindiff.tasks.masks import data as masks_data
    from bindiff.tasks.segmentation import data as segmentation_data

    masks_recipe, segmentation_recipe, extra = RECIPES[data]
    overrides = ["train.threads=1", *extra] + ([f"data.max_cases={cases}"] if cases else [])
    config = load_recipe(ROOT / (segmentation_recipe if variant == "segmentation" else masks_recipe), overrides)
    if variant == "labels":
        from bindiff.adapters.masks import find_dataset, load_region

        dataset = find_dataset(config["data"]["dataset"], config["data"]["layout"], data_dir=data_dir)
        chosen = list(dataset.cases)[:cases] if cases else list(dataset.cases)
        preset = masks_data.resolve_preset(config, dataset.layout)

        def read() -> None:  # each region dropped as the next is read, as load_case drops it once on its grid
            for case in chosen:
                load_region(case, preset, config["labels"]["region"])

        return read, len(chosen)
    module = masks_data if variant == "masks" else segmentation_data

    def prepare() -> int:  # the cases the job read
        data = module.prepare_data(config, data_dir=data_dir, disable_progress=True)
        return len(data.records if variant == "masks" else data.cases)

    return prepare, None


def child(variant: str, data: str, cases: int | None, data_dir: str) -> dict:
    """One variant measured in this process: one read, timed and traced (tracemalloc's bookkeeping
    costs well under 1 % of a BraTS read: a few thousand blocks, nearly all of them numpy arrays)."""
    import nibabel.orientations  # noqa: F401  imported by the first read otherwise, and timed with it
    import torch

    torch.set_num_threads(1)
    read, n = _reader(variant, data, cases, data_dir)
    with open("/proc/self/clear_refs", "w") as clear:  # the high-water mark starts again from here
        clear.write("5")
    before = _status_mib("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    result = read()
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": seconds, "rss_rise_mib": _status_mib("VmHWM") - before, "traced_peak_mib": traced / 2**20,
            "cases": result if n is None else n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--msd", type=int, default=0, help="also read the first N MSD hippocampus cases (0: none)")
    parser.add_argument("--repeats", type=int, default=1, help="processes per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, of " + ", ".join(VARIANTS))
    parser.add_argument("--data-dir", help="the folder of the data sets (default: $BINDIFF_DATA_DIR)")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "DATA", "CASES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from bindiff.adapters.data_dir import data_root
    from bindiff.adapters.errors import DataError

    variants = [v for v in args.variants.split(",") if v]
    if unknown := sorted(set(variants) - set(VARIANTS)):
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; choose of {', '.join(VARIANTS)}")
    try:
        root = data_root(args.data_dir)
        if root is None:
            raise DataError("give --data-dir or set BINDIFF_DATA_DIR: the folder holding brats2015_deepmedic")
        if args.child:
            variant, data, cases = args.child
            print(json.dumps(child(variant, data, int(cases) or None, str(root))))
            return
    except DataError as err:  # a missing data set: its one line, from this process or the measuring one
        raise SystemExit(str(err)) from None
    env_dir = os.environ.get("BINDIFF_DATA_DIR")
    shown = ["python", "benchmarks/mask_read.py", "--msd", str(args.msd), "--repeats", str(args.repeats)]
    if args.variants != ",".join(VARIANTS):
        shown += ["--variants", args.variants]
    if args.data_dir is not None:
        shown += ["--data-dir", args.data_dir]
    print("command: " + (f"BINDIFF_DATA_DIR={shlex.quote(env_dir)} " if env_dir and args.data_dir is None else "")
          + shlex.join(shown))
    print(f"data: {root}; one process per variant and repeat, one torch thread, one read of every case each")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    for data, cases in (("brats", 0), ("msd", args.msd)):
        if data == "msd" and not cases:
            continue
        for variant in variants:
            runs = []
            for _ in range(args.repeats):
                command = [sys.executable, __file__, "--data-dir", str(root), "--child", variant, data, str(cases)]
                finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, check=False)
                if finished.returncode != 0:
                    raise SystemExit(f"{data} {variant}: the measuring process failed: {finished.stderr.strip()}")
                runs.append(json.loads(finished.stdout.strip().splitlines()[-1]))
            print(f"{data:5} {variant:12} {runs[0]['cases']:3d} cases: " + "  ".join(
                _spread([r[key] for r in runs], unit) for key, unit in
                (("seconds", "s"), ("rss_rise_mib", "MiB peak RSS rise"), ("traced_peak_mib", "MiB traced peak"))))


def _spread(values: list[float], unit: str) -> str:
    """The median, and the range when there are several."""
    median = statistics.median(values)
    digits = 2 if unit == "s" else 0
    if len(values) == 1:
        return f"{median:.{digits}f} {unit}"
    return f"{median:.{digits}f} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


if __name__ == "__main__":
    main()
