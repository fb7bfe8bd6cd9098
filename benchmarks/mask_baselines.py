"""The classical damage-and-repair pairs of docs/masks.md ("The baselines against the issue's calibration").

Every MSD hippocampus mask (or the first ``--masks N``, in sorted order) is placed on the grid of
``recipes/hippocampus_masks.yaml`` (32×48×40, ``pad``, whole hippocampus = labels 1 and 2),
damaged and repaired with the code and the settings of ``bindiff masks completion`` and
``bindiff masks denoising``, and scored as they score: the repair (zero on the padding beyond the
image) mapped back to the case's own voxel grid, Dice against its whole label map. Six rows:

alternate_linear  every other axial slice hidden (the odd grid indices); each hidden voxel the linear
                  interpolation of the two neighbouring slices, kept where it is >= 1/2 (a slice with
                  one visible neighbour copies it)
alternate_shape   the same slices, shape-based interpolation (``baselines.interpolate_slices``:
                  signed distance maps of the nearest visible slices, interpolated linearly)
flip_median       5 % of the grid voxels inside the image flipped (``corruption.flip_voxels``),
                  3×3×3 median filter (``baselines.median_filter``)
box_empty         the centre box of half the mask's extent per axis hidden (``corruption.hide_box``),
                  left empty
box_closing       the same box, morphological closing with a ball of r = 2 (``baselines.closing``)
random_shape      50 % of the axial slices across the mask's extent hidden at random
                  (``corruption.random_slices``), shape-based interpolation

The draws: one ``numpy.random.default_rng(seed)`` for the whole run; each mask in turn takes its
flips, then its random slices, from it (so the first N masks are damaged alike in any run of N or
more). No other randomness.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/mask_baselines.py [--masks N] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "recipes/hippocampus_masks.yaml"
ROWS = {
    "alternate_linear": "every other axial slice, linear interpolation of the two neighbours (>= 1/2)",
    "alternate_shape": "every other axial slice, shape-based (signed-distance) interpolation",
    "flip_median": "{flip:.0%} flipped, {size}x{size}x{size} median filter",
    "box_empty": "centre box of {box:g} of the extent, left empty",
    "box_closing": "the same box, morphological closing (r = {radius})",
    "random_shape": "{slices:.0%} of the slices at random, shape-based interpolation",
}


def linear_interpolation(observed: np.ndarray, known: np.ndarray, axis: int = 2) -> np.ndarray:
    """Each hidden voxel from the nearest fully visible slice on each side, weighted linearly by the
    slice position and kept where the weighted mean is >= 1/2 (midway between two slices: where either
    holds the mask); with a visible slice on one side only, that slice is copied. Known voxels stay
    as observed (the rule of ``baselines.interpolate_slices``, on the bits instead of distances)."""
    obs = np.moveaxis(observed.astype(np.float64), axis, 0)
    kn = np.moveaxis(known, axis, 0)
    visible = np.flatnonzero(kn.reshape(kn.shape[0], -1).all(1))
    out = obs.copy()
    if len(visible) == 0:
        return np.moveaxis(out, 0, axis).astype(np.uint8)
    for k in sorted(set(range(obs.shape[0])) - set(visible.tolist())):
        below, above = visible[visible < k], visible[visible > k]
        if len(below) and len(above):
            a, b = below[-1], above[0]
            w = (k - a) / (b - a)
            filled = (1 - w) * obs[a] + w * obs[b] >= 0.5
        else:
            filled = obs[below[-1] if len(below) else above[0]] >= 0.5
        out[k] = np.where(kn[k], obs[k], filled)
    return np.moveaxis(out, 0, axis).astype(np.uint8)


def repairs(grid: np.ndarray, valid: np.ndarray, spacing, config: dict, rng: np.random.Generator) -> dict:
    """The six repaired grids of one mask, by row name; the two random damages drawn from ``rng``
    in the rows' order (flips, then slices)."""
    from bindiff.tasks.masks import baselines, corruption

    comp, den = config["evaluations"]["completion"], config["evaluations"]["denoising"]
    axis = comp["axis"]
    out = {}
    observed, known = corruption.alternate_slices(grid, axis)
    out["alternate_linear"] = linear_interpolation(observed, known, axis)
    out["alternate_shape"] = baselines.interpolate_slices(observed, known, axis, spacing)
    flipped, _ = corruption.flip_voxels(grid, den["flip"], rng, valid)
    out["flip_median"] = baselines.median_filter(flipped, den["median_size"])
    observed, known = corruption.hide_box(grid, comp["box_fraction"], "center")
    out["box_empty"] = observed
    out["box_closing"] = baselines.closing(observed, known, comp["closing_radius"])
    observed, known = corruption.random_slices(grid, comp["slice_fraction"], axis, rng)
    out["random_shape"] = baselines.interpolate_slices(observed, known, axis, spacing)
    return {name: (repaired * valid).astype(np.uint8) for name, repaired in out.items()}  # as the jobs do


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="the folder of the data sets (default: $BINDIFF_DATA_DIR)")
    parser.add_argument("--masks", type=int, default=None, help="only the first N masks in sorted order (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the one numpy generator of the damage")
    args = parser.parse_args(argv)
    if args.masks is not None and args.masks < 1:
        parser.error(f"--masks must be at least 1, got {args.masks}")
    return args


def command_line(args: argparse.Namespace) -> str:
    env_dir = os.environ.get("BINDIFF_DATA_DIR")
    shown = ["python", "benchmarks/mask_baselines.py"]
    if args.data_dir is not None:
        shown += ["--data-dir", args.data_dir]
    if args.masks is not None:
        shown += ["--masks", str(args.masks)]
    shown += ["--seed", str(args.seed)]
    return ("command: " + (f"BINDIFF_DATA_DIR={shlex.quote(env_dir)} " if env_dir and args.data_dir is None else "")
            + shlex.join(shown))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from bindiff.adapters.data_dir import data_root
    from bindiff.adapters.errors import DataError
    from bindiff.adapters.masks import find_dataset, load_case
    from bindiff.config import RecipeError
    from bindiff.config.recipe import load_recipe
    from bindiff.metrics.segmentation import dice
    from bindiff.tasks.masks.data import grid_spec, resolve_preset, warn_outside

    started = time.perf_counter()
    print(command_line(args), flush=True)
    try:
        root = data_root(args.data_dir)
        if root is None:
            raise DataError("give --data-dir or set BINDIFF_DATA_DIR: the folder holding msd_hippocampus")
        config = load_recipe(ROOT / RECIPE)
        dataset = find_dataset(config["data"]["dataset"], config["data"]["layout"], data_dir=root)
        cases = list(dataset.cases)[:args.masks] if args.masks else list(dataset.cases)
        spec, preset, region = grid_spec(config), resolve_preset(config, dataset.layout), config["labels"]["region"]
        comp, den = config["evaluations"]["completion"], config["evaluations"]["denoising"]
        print(f"data: {dataset.root} ({dataset.layout} layout), {len(cases)} of {len(dataset.cases)} masks, "
              f"region {region!r} of preset {preset.name!r}")
        print(f"grid: {RECIPE}: shape {list(spec.shape)}, mode {spec.mode}, crop {spec.crop}; slices along axis "
              f"{comp['axis']}; flip {den['flip']}, median {den['median_size']}, box {comp['box_fraction']} "
              f"(centre), closing r = {comp['closing_radius']}, random slices {comp['slice_fraction']}")
        print(f"seed: {args.seed}: one numpy default_rng({args.seed}); each mask draws its flips, then its random "
              "slices; Dice on each case's own voxel grid")
        rng = np.random.default_rng(args.seed)
        scores: dict[str, list[float]] = {name: [] for name in ROWS}
        outside = {}
        for case in cases:
            loaded = load_case(case, preset, region, spec)
            transform = loaded.transform
            outside[case.case_id] = transform.outside(loaded.truth)
            spacing = transform.grid_spacing(loaded.geometry.spacing)
            for name, repaired in repairs(loaded.grid, transform.valid(), spacing, config, rng).items():
                scores[name].append(dice(transform.from_grid(repaired).astype(bool), loaded.truth))
        warn_outside(spec, outside, dataset.root)
    except (DataError, RecipeError) as err:  # a missing or bad data set: its one line, exit code 2
        print(err, file=sys.stderr)
        raise SystemExit(2) from None
    labels = {"flip": den["flip"], "size": den["median_size"], "box": comp["box_fraction"],
              "radius": comp["closing_radius"], "slices": comp["slice_fraction"]}
    print(f"{'row':17} {'Dice':>6}  {'(mean':>8}  {'sd)':>6}  damage and repair")
    for name, values in scores.items():
        mean = float(np.mean(values))
        print(f"{name:17} {mean:6.3f}  ({mean:.5f}  {np.std(values):.4f})  {ROWS[name].format(**labels)}")
    print(f"{len(cases)} masks in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
