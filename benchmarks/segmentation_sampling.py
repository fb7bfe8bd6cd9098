"""Where a segmentation run's Dice comes from: the diffusion's sampling settings beside the U-Net,
on the validation (or test) cases of one or several finished runs, at several thresholds.

For each run, ``--samples`` reverse runs from noise are drawn per case exactly as the run's own
evaluation draws them (the same seeded generator, the same batches), and every step's p̂(x_0) is
kept, so one pass scores every way of turning them into a probability map: the trajectory mean
of the first 8 or of all runs (the recipe's ``average: trajectory``), the last steps' mean
(``final``), the first call alone (one deterministic map from t = T), the later steps without the
first, and the mean in logit space. Each map is thresholded, brought back to the case's own voxels
and scored with Dice against its label's region; the U-Net's map beside them. Choose on
``--part valid``: the test cases are for reporting the choice.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/segmentation_sampling.py RUN_DIR [RUN_DIR ...] --part valid
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import numpy as np
import torch

from bindiff.adapters.masks import load_region
from bindiff.metrics.segmentation import dice
from bindiff.tasks import base
from bindiff.tasks.masks.data import resolve_preset
from bindiff.tasks.segmentation import job, model as segmentation_model
from bindiff.tasks.segmentation.data import load_data

THRESHOLDS = (0.4, 0.45, 0.5, 0.55)


def _logit_mean(steps: np.ndarray) -> np.ndarray:
    p = np.clip(steps, 1e-6, 1 - 1e-6)
    return 1 / (1 + np.exp(-np.log(p / (1 - p)).mean(0)))


def maps_of(run: Path, part: str, samples: int) -> tuple[dict[str, np.ndarray], list, object]:
    """Every variant's grid probabilities (cases, D) for the run's ``part``, its records and data."""
    config, _, model = base.load_trained(job.TASK, run)
    config = base.rescoring_config(job.TASK, config, [f"eval.part={part}"])
    data = load_data(run / "split", config)
    records = data.part(part)
    images = torch.from_numpy(np.stack([r.image.grid.reshape(-1) for r in records]).astype(np.float32))
    batch = config["eval"]["batch_size"]
    # the generator and the order of draws of segmentation_model.sample_probabilities: run by run, batch by batch
    generator = torch.Generator().manual_seed(base.derived_seed(config["seed"], "segmentation"))
    runs = []
    for _ in range(samples):
        batches = []
        for i in range(0, len(images), batch):
            steps: list[np.ndarray] = []
            model.sample(len(images[i:i + batch]), steps=config["segmentation"]["steps"], generator=generator,
                         decode="mean", cond=images[i:i + batch], on_step=lambda t, p: steps.append(p.double().numpy()))
            batches.append(np.stack(steps))
        runs.append(np.concatenate(batches, axis=1))
    trajectories = np.stack(runs)  # (runs, steps, cases, D)
    _, _, unet = base.load_trained(job.TASK, run, companion="unet")
    first8 = trajectories[:8]
    maps = {"U-Net": segmentation_model.unet_probabilities(unet, images, batch),
            "trajectory, 8 runs": first8.mean((0, 1)), f"trajectory, {samples} runs": trajectories.mean((0, 1)),
            "final steps, 8 runs": first8[:, -1].mean(0), "first call alone": trajectories[0, 0],
            "later steps, 8 runs": first8[:, 1:].mean((0, 1)),
            "logit mean, 8 runs": _logit_mean(first8.reshape(-1, *first8.shape[2:]))}
    return maps, records, data


def scores(run: Path, part: str, samples: int) -> dict[tuple[str, float], float]:
    """Mean Dice over the part's cases of every variant at every threshold, on each case's voxels."""
    maps, records, data = maps_of(run, part, samples)
    config = base.read_run_config(run)
    preset = resolve_preset(config, data.layout)
    out: dict[tuple[str, float], list[float]] = {}
    for i, record in enumerate(records):
        truth, _ = load_region(record.case, preset, data.region)  # read to score only
        transform = record.image.transform
        valid = transform.valid().reshape(-1)
        for name, prob in maps.items():
            for threshold in THRESHOLDS:
                grid = ((prob[i] * valid) >= threshold).reshape(transform.grid_shape).astype(np.uint8)
                out.setdefault((name, threshold), []).append(dice(transform.from_grid(grid), truth))
    return {key: float(np.mean(values)) for key, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--part", default="valid", choices=("valid", "test"))
    parser.add_argument("--samples", type=int, default=16, help="reverse runs per case (at least 8)")
    args = parser.parse_args()
    if args.samples < 8:
        parser.error("--samples must be at least 8: the recipe's variants average 8 runs")
    data_dir = os.environ.get("BINDIFF_DATA_DIR")  # the folder the runs' cases are read from
    print(f"command: {f'BINDIFF_DATA_DIR={shlex.quote(data_dir)} ' if data_dir else ''}"
          + shlex.join(["python", "benchmarks/segmentation_sampling.py", *args.run_dirs, "--part", args.part,
                        "--samples", str(args.samples)]))
    table = {run: scores(Path(run), args.part, args.samples) for run in args.run_dirs}
    seeds = [str(base.read_run_config(Path(run))["seed"]) for run in args.run_dirs]
    print(f"mean Dice over each run's {args.part} cases; runs by seed: {', '.join(seeds)}")
    print(f"| map | threshold | {' | '.join('seed ' + s for s in seeds)} | mean | mean − U-Net at ½ |")
    print("|---|---|" + "---|" * (len(seeds) + 2))
    unet = np.array([table[run][("U-Net", 0.5)] for run in args.run_dirs])
    for key in table[args.run_dirs[0]]:
        values = np.array([table[run][key] for run in args.run_dirs])
        print(f"| {key[0]} | {key[1]:.2f} | " + " | ".join(f"{v:.4f}" for v in values)
              + f" | {values.mean():.4f} | {(values - unet).mean():+.4f} |")


if __name__ == "__main__":
    main()
