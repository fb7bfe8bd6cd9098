"""Where a masks model loses the volume of its samples: training masks noised to t, run back to 0.

For each start time t, ``--masks`` training masks of the run's split (a seeded draw) are noised to
x_t with q(x_t | x_0) and run through the exact reverse chain (bits, the last step decoded at
p̂ ≥ ½, as generation does). A perfect model keeps the volume distribution at every t; the
mean and spread of the results, and their correlation with each input's own volume, show from
which t on the learned model pulls its chains away from it.

    python benchmarks/volume_drift.py RUN_DIR --from 5,10,20,30,40
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bindiff.tasks.masks.generation import _mask_rows
from bindiff.tasks.masks.job import load_masks_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--from", dest="starts", default="5,10,20,30,40", help="comma-separated start times")
    parser.add_argument("--masks", type=int, default=64, help="training masks to run back")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and of the chains")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    print(f"command: python benchmarks/volume_drift.py {args.run_dir} --from {args.starts} --masks {args.masks} "
          f"--seed {args.seed} --batch-size {args.batch_size}")

    run = load_masks_run(args.run_dir)
    model = run.model
    starts = [int(s) for s in args.starts.split(",")]
    if not all(1 <= s <= model.process.num_steps for s in starts):
        parser.error(f"--from {args.starts}: each start time must lie in 1..{model.process.num_steps} "
                     "(the run's diffusion.steps)")
    rows, _ = _mask_rows(run.data, run.data.part("train"))
    everyone = rows.sum(1)
    generator = torch.Generator().manual_seed(args.seed)
    # a random draw, not the first rows: a chain from noise can only reach the training mean,
    # and a subset whose mean is off would read as drift
    pick = torch.randperm(len(rows), generator=generator)[:args.masks].numpy()
    x0 = torch.from_numpy(rows[pick].astype(np.float32))
    volumes = x0.sum(1).numpy()
    print(f"all {len(rows)} training masks: volume mean {everyone.mean():.1f} voxels, sd {everyone.std():.1f}; "
          f"the {len(x0)} run back: mean {volumes.mean():.1f}, sd {volumes.std():.1f}")
    with torch.no_grad():
        for start in starts:
            x_t = model.process.add_noise(x0, torch.full((len(x0),), start), generator=generator)
            out = torch.cat([model.run_reverse(x_t[i:i + args.batch_size], model.scheduler(start=start),
                                               mode="sample", decode="threshold", generator=generator)[0]
                             for i in range(0, len(x_t), args.batch_size)])
            got = out.sum(1).numpy()
            expected = torch.cat([model.predict_x0(x_t[i:i + args.batch_size], start)
                                  for i in range(0, len(x_t), args.batch_size)]).sum(1).numpy()
            print(f"one call at t = {start}: expected volume {expected.mean() / volumes.mean() - 1:+.1%}, "
                  f"sd {expected.std():.1f}, correlation with the input's volume "
                  f"{correlation(expected, volumes)}")
            print(f"from t = {start}: volume mean {got.mean():.1f} ({got.mean() / volumes.mean() - 1:+.1%}), "
                  f"sd {got.std():.1f}, correlation with the input's volume {correlation(got, volumes)}")


def correlation(a: np.ndarray, b: np.ndarray) -> str:
    """Pearson's r to 3 places; n/a where either side has no spread (every volume alike)."""
    if a.std() == 0 or b.std() == 0:
        return "n/a (no spread)"
    return f"{np.corrcoef(a, b)[0, 1]:.3f}"


if __name__ == "__main__":
    main()
