"""A small 2-D or 3-D convolutional U-Net denoiser for bit vectors that are flattened grids.

The core still sees only (B, D) vectors: this denoiser is told the grid shape once, at
construction (``grid``, e.g. ``[32, 48, 40]``), reshapes each vector to that grid with einops,
runs a U-Net with a time embedding, and flattens the logits back to (B, D). Where the grid
comes from (an image adapter, a recipe) is not its concern; ``dim`` must equal the product of
``grid``. The flattening order is row-major (C order), the order of ``einops.rearrange``
with ``"b (x y z) -> b x y z"``.

Design: residual blocks (conv → GroupNorm → SiLU, twice) with the time embedding added per
channel, average-pool downsampling, nearest-neighbour upsampling with skip connections, and
optional coordinate channels (CoordConv) so the network knows where in the grid it is, which
a shape prior on aligned masks needs. Grids whose sides are not multiples of
2^(levels − 1) are zero-padded inside the network and cropped back.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from einops import rearrange
from torch import nn

from .denoisers import register_denoiser, sinusoidal_embedding
from .params import flag, whole, widths
from .process import at_least_float32

_PATTERNS = {2: ("b (x y) -> b 1 x y", "b 1 x y -> b (x y)"),
             3: ("b (x y z) -> b 1 x y z", "b 1 x y z -> b (x y z)")}
# a condition of C channels on the grid, flattened channel by channel: (B, C·D) -> (B, C, *grid)
_COND_PATTERNS = {2: "b (c x y) -> b c x y", 3: "b (c x y z) -> b c x y z"}


def bfloat16_autocast(device_type: str) -> bool:
    """Whether the U-Net's ``bf16`` option autocasts on ``device_type``: on CUDA with bfloat16 only.

    Never on a CPU. Where a CPU emulates bfloat16 (AVX2 only), a 3-D training step ran about 40
    times slower than in float32 (84 s against 2.1 s on a 2-core AVX2 CPU). Where it computes
    bfloat16 natively (AVX-512 BF16), oneDNN's 3-D convolution at the coarsest level (128
    channels on a 2 x 3 x 3 grid, torch 2.13) returned a different, sometimes non-finite,
    weight gradient on every call: the segmentation recipe skipped a third of its updates and
    no run repeated (``benchmarks/bf16_check.py`` shows it).
    """
    return device_type == "cuda" and cuda_computes_bf16()


def cuda_computes_bf16() -> bool:
    """Whether this machine's GPU computes bfloat16 itself (Ampere and later). Recent torch counts a
    GPU that emulates it (a T4, a V100) as supporting it, where bf16 is slower than float32."""
    if not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before 2.4 has no such argument and counts no emulation
        return torch.cuda.is_bf16_supported()


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class _Block(nn.Module):
    def __init__(self, conv: type[nn.Module], c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = conv(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.time = nn.Linear(emb_dim, c_out) if emb_dim > 0 else None
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        # normalisation and the residual sum in float32 at least, even under bfloat16 autocast
        h = self.act(self.norm1(at_least_float32(self.conv1(x))))
        if self.time is not None and emb is not None:
            h = h + at_least_float32(self.time(emb)).reshape(emb.shape[0], -1, *([1] * (x.ndim - 2)))
        h = self.act(self.norm2(at_least_float32(self.conv2(h))))
        return h + at_least_float32(self.skip(x))


class UNetDenoiser(nn.Module):
    """(B, D) bits → (B, D) x_0 logits through a U-Net on the grid ``grid`` (2 or 3 sides).

    channels: width of each level, finest first (its length is the number of levels).
    time_dim: size of the sinusoidal time embedding; 0 leaves t out.
    coords: add one coordinate channel per axis (values in [−1, 1]) to the input.
    patch: side of the cubes the stem folds into channels (a strided convolution); the U-Net
        then runs at 1/patch of the resolution, which is what makes 3-D grids affordable on a
        CPU. A transposed convolution unfolds the result, and one convolution at full resolution
        that also sees the input refines it voxel by voxel. 1 runs the U-Net at full resolution.
    bf16: run the convolutions under bfloat16 autocast on CUDA; on a CPU they run in float32
        (see ``bfloat16_autocast``). The logits are returned in float32.
    cond_channels: channels of a condition on the same grid (e.g. an image's modalities), given
        to ``forward`` as ``cond`` of shape (B, cond_channels · D) and read beside x_t; 0: none.
    """

    def __init__(self, dim: int, grid: Sequence[int], channels: Sequence[int] = (16, 32, 64),
                 time_dim: int = 32, coords: bool = True, patch: int = 1, bf16: bool = False,
                 cond_channels: int = 0):
        super().__init__()
        dim = whole("dim", dim, low=1)  # 16.0 or True were kept as the vector length
        grid = widths("grid", grid)  # 2.7 is not a side
        if len(grid) not in (2, 3):
            raise ValueError(f"grid must list 2 or 3 positive sides, got {grid}")
        if math.prod(grid) != dim:
            raise ValueError(f"grid {grid} holds {math.prod(grid)} voxels but the vectors have length {dim}")
        channels = widths("channels", channels)
        patch, time_dim = whole("patch", patch, low=1), whole("time_dim", time_dim)
        cond_channels = whole("cond_channels", cond_channels)
        coords, bf16 = flag("coords", coords), flag("bf16", bf16)
        self.cond_channels = int(cond_channels)
        self.dim, self.grid, self.ndim = dim, grid, len(grid)
        self.time_dim, self.coords, self.patch, self.bf16 = int(time_dim), bool(coords), int(patch), bool(bf16)
        conv = nn.Conv2d if self.ndim == 2 else nn.Conv3d
        unconv = nn.ConvTranspose2d if self.ndim == 2 else nn.ConvTranspose3d
        pool = nn.AvgPool2d if self.ndim == 2 else nn.AvgPool3d
        factor = self.patch * 2 ** (len(channels) - 1)
        self.padded = [math.ceil(g / factor) * factor for g in grid]
        emb_dim = 4 * self.time_dim if self.time_dim else 0
        self.time_mlp = (nn.Sequential(nn.Linear(self.time_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
                         if self.time_dim else None)
        c_in = 1 + (self.ndim if self.coords else 0) + self.cond_channels
        if self.patch == 1:
            self.stem = conv(c_in, channels[0], 3, padding=1)
        else:
            self.stem = conv(c_in, channels[0], self.patch, stride=self.patch)
        self.down = nn.ModuleList()
        for i, c in enumerate(channels):
            self.down.append(_Block(conv, channels[max(i - 1, 0)], c, emb_dim))
        self.pool = pool(2)
        self.up = nn.ModuleList(
            _Block(conv, channels[i + 1] + channels[i], channels[i], emb_dim) for i in reversed(range(len(channels) - 1))
        )
        if self.patch == 1:
            self.unfold, self.refine = None, None
            self.head = conv(channels[0], 1, 1)
        else:
            fine = max(channels[0] // 2, 4)
            self.unfold = unconv(channels[0], fine, self.patch, stride=self.patch)
            self.refine = conv(fine + c_in, fine, 3, padding=1)
            self.head = conv(fine, 1, 1)
        if self.ndim == 3:
            # channels-last weights: oneDNN's 3-D convolutions (and their gradients) then run
            # channels-last, about 1.2x faster on a CPU at widths of 32 and more; load_state_dict
            # copies into these tensors and keeps their layout
            for module in self.modules():
                if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                    module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        if self.coords:
            axes = [torch.linspace(-1, 1, g) for g in grid]
            mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"))
            self.register_buffer("coord_grid", mesh, persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if (cond is None) != (self.cond_channels == 0):
            raise ValueError(f"this U-Net takes {self.cond_channels} condition channels; "
                             + ("pass cond" if cond is None else "it was given a cond"))
        if cond is not None and cond.shape != (x_t.shape[0], self.cond_channels * self.dim):
            raise ValueError(f"cond must have shape {(x_t.shape[0], self.cond_channels * self.dim)}, "
                             f"got {tuple(cond.shape)}")
        low_precision = self.bf16 and bfloat16_autocast(x_t.device.type)
        with torch.autocast(device_type=x_t.device.type, dtype=torch.bfloat16, enabled=low_precision):
            logits = self._forward(x_t, t, cond)
        return at_least_float32(logits)

    def _layout(self, h: torch.Tensor) -> torch.Tensor:
        """3-D activations in the channels-last layout of the weights. Pooling, the 1×1 skips and
        the input come back in the plain layout, and a mixed ``cat`` or convolution then copies
        them over: 22 % of a CPU forward pass. The values are the same either way."""
        return h.contiguous(memory_format=torch.channels_last_3d) if self.ndim == 3 else h

    def _forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        to_grid, to_vec = _PATTERNS[self.ndim]
        sides = dict(zip("xyz", self.grid))
        h = rearrange(x_t * 2 - 1, to_grid, **sides)
        if cond is not None:
            h = torch.cat([h, rearrange(cond.to(h.dtype), _COND_PATTERNS[self.ndim], **sides)], dim=1)
        if self.coords:
            h = torch.cat([h, self.coord_grid.to(h.dtype).expand(h.shape[0], *self.coord_grid.shape)], dim=1)
        pad = [p - g for g, p in zip(self.grid, self.padded)]
        if any(pad):
            h = nn.functional.pad(h, [v for p in reversed(pad) for v in (0, p)])
        h = self._layout(h)
        emb = self.time_mlp(sinusoidal_embedding(t, self.time_dim).to(h.dtype)) if self.time_mlp is not None else None
        x_in = h
        h = self.stem(h)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = self.pool(h)
            h = self._layout(block(h, emb))
            skips.append(h)
        skips.pop()
        for block in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = self._layout(block(torch.cat([h, skips.pop()], dim=1), emb))
        if self.unfold is not None:
            h = nn.functional.silu(self.unfold(h))
            h = nn.functional.silu(self.refine(torch.cat([h, x_in], dim=1)))
        out = self.head(h)
        crop = (slice(None), slice(None), *(slice(0, g) for g in self.grid))
        return rearrange(out[crop], to_vec, **sides)


register_denoiser("unet", UNetDenoiser)
