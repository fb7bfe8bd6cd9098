"""Seconds per training step of the segmentation recipe's conditional U-Net, by width and precision.

Builds the model exactly as `bindiff train` does for the recipe (with the given overrides), then
times optimiser steps on one random batch of masks and images at the recipe's batch size:
forward, loss, backward and AdamW. The first step is a warm-up and is not counted.

`--bf16 native` is what the recipe runs (bfloat16 autocast on CUDA, float32 on a CPU), `off` is
float32, `forced` runs autocast on a CPU too: emulated on AVX2 (far slower), native on AVX-512
BF16 (faster, but see `benchmarks/bf16_check.py` for why bindiff does not).

    python benchmarks/unet_step.py recipes/hippocampus_segmentation.yaml \
        "denoiser.params.channels=[32,64,128]" --bf16 native forced
"""

from __future__ import annotations

import argparse
import math
import shlex
import time

import torch

from bindiff.config import load_recipe
from bindiff.core import unet
from bindiff.tasks.segmentation.model import build_segmenter


def time_steps(config: dict, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    dim = math.prod(config["grid"]["shape"])
    model = build_segmenter(config, dim, training=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = config["train"]["batch_size"]
    data = torch.Generator().manual_seed(0)
    x0 = (torch.rand(batch, dim, generator=data) < 0.05).float()
    image = torch.randn(batch, dim, generator=data)
    noise = torch.Generator().manual_seed(1)
    seconds = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = model(x0, generator=noise, cond=image).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - started)
    return min(seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--bf16", nargs="+", default=["native"], choices=["native", "off", "forced"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    native = unet.bfloat16_autocast
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}, bfloat16 autocast on cpu: {native('cpu')}, "
          f"torch {torch.__version__}, {args.threads} threads")
    for mode in args.bf16:
        config = load_recipe(args.recipe, [*args.overrides, f"denoiser.params.bf16={str(mode != 'off').lower()}"])
        unet.bfloat16_autocast = (lambda device_type: True) if mode == "forced" else native
        try:
            seconds = time_steps(config, args.steps, args.threads)
        finally:
            unet.bfloat16_autocast = native
        print(f"channels {config['denoiser']['params']['channels']}  bf16 {mode:7s}  "
              f"batch {config['train']['batch_size']}  {seconds:.3f} s per step")
    print("command: python benchmarks/unet_step.py " + " ".join(
        [shlex.quote(a) for a in (args.recipe, *args.overrides)] + ["--bf16", *args.bf16, "--steps", str(args.steps),
                                                                    "--threads", str(args.threads)]))


if __name__ == "__main__":
    main()
