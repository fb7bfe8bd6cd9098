"""Are bfloat16 gradients on this machine repeatable and close to float64? A check of the torch build.

For each layer (the 3-D convolutions of the segmentation recipe's U-Net at each level's width and
grid, and the recommendation MLP's first layer), the same input and weights go through the same
forward and backward pass several times under bfloat16 autocast. It prints, per layer, the
weight-gradient norms of the repeats, the largest difference between two repeats (0 where the
kernel is deterministic) and the relative error of the first repeat against the float64
gradient (bfloat16 keeps about 3 significant digits, so about 1e-2 is expected).

Why it exists: on an AMD EPYC with AVX-512 BF16 (torch 2.13, oneDNN), the 3-D convolution at
the U-Net's coarsest level (128 channels on a 2 x 3 x 3 grid) returned a different weight
gradient on every call, some of them non-finite, which made the segmentation recipe skip a
third of its updates and its runs unrepeatable. bindiff therefore autocasts the U-Net to
bfloat16 only on CUDA (`bindiff.core.unet.bfloat16_autocast`); run this on a new CPU or torch
build before forcing it there.

    python benchmarks/bf16_check.py [--device cpu] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

# (layer, input shape): the segmentation recipe's U-Net levels (batch 8, 2x2x2 patches of a
# 32 x 48 x 40 grid padded to 32 x 48 x 48) and the ML-1M recipe's first MLP layer
LAYERS = [
    ("conv3d 16 -> 16, 16 x 24 x 24", lambda: nn.Conv3d(16, 16, 3, padding=1), (8, 16, 16, 24, 24)),
    ("conv3d 32 -> 32, 8 x 12 x 12", lambda: nn.Conv3d(32, 32, 3, padding=1), (8, 32, 8, 12, 12)),
    ("conv3d 64 -> 64, 4 x 6 x 6", lambda: nn.Conv3d(64, 64, 3, padding=1), (8, 64, 4, 6, 6)),
    ("conv3d 128 -> 128, 2 x 3 x 3", lambda: nn.Conv3d(128, 128, 3, padding=1), (8, 128, 2, 3, 3)),
    ("linear 3706 -> 600", lambda: nn.Linear(3706, 600), (400, 3706)),
]


def weight_gradient(layer: nn.Module, x: torch.Tensor, bf16: bool) -> torch.Tensor:
    layer.zero_grad()
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=bf16):
        y = layer(x)
    (y.double() ** 2).sum().backward()
    return layer.weight.grad.detach().double().clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} thread(s), {args.repeats} repeats")
    for name, make, shape in LAYERS:
        generator = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        layer = make().to(device)
        x = torch.randn(*shape, generator=generator).to(device)
        exact = weight_gradient(layer.double(), x.double(), bf16=False)
        layer = layer.float()
        repeats = [weight_gradient(layer, x, bf16=True) for _ in range(args.repeats)]
        spread = max(float((g - repeats[0]).abs().max()) for g in repeats)
        error = float((repeats[0] - exact).norm() / exact.norm())
        norms = " ".join(f"{float(g.norm()):.6g}" for g in repeats)
        verdict = "ok" if spread == 0 and error < 0.05 else "WRONG"
        print(f"{name:30s} {verdict:5s} repeat spread {spread:.3g}  relative error {error:.2g}  norms {norms}")
    print("command: python benchmarks/bf16_check.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items()))


if __name__ == "__main__":
    main()
