"""A fixed grid for every case, and its exact inverse.

Each case gets a ``GridTransform``: per canonical axis, a window ("box") of the volume and how
it maps to the grid side:

- ``pad``: the window has exactly the grid's side and is centred on the region of interest
  (it may reach past the volume; those grid voxels are padding, see ``valid``). Grid voxel j is
  volume voxel start + j: no resampling, so volume → grid → volume is the identity on every
  voxel inside the window.
- ``resample``: the window is the region's bounding box plus a margin (inside the volume),
  resampled to the grid side with nearest neighbour: grid voxel j reads volume voxel
  lo + ⌊(2j + 1)·n / 2m⌋ (n window voxels, m grid voxels) and volume voxel i reads grid voxel
  ⌊(2(i − lo) + 1)·m / 2n⌋. Integer arithmetic, so along an axis where the window is at least
  as long as the grid side (n ≥ m) grid → volume → grid is the identity, and where it is
  shorter (upsampling) volume → grid → volume is.

The region of interest is the mask's bounding box (``crop: region``), a brain mask's
(``crop: brain``) or the whole volume (``crop: none``), widened by ``margin`` voxels.

2-D slice mode (a grid with two sides): the two in-plane axes follow the rules above and the
slice axis keeps every slice of the window at native resolution; each slice is one vector.

Vectors are flattened in C order with einops (``"x y z -> (x y z)"``), the order the U-Net
denoiser reshapes them back with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from einops import rearrange

from ..errors import DataError
from ..values import is_whole as _whole

__all__ = ["GridSpec", "GridTransform", "fit_transform", "bounding_box", "to_vectors", "from_vectors"]

MODES = ("pad", "resample")
CROPS = ("region", "brain", "none")


@dataclass(frozen=True)
class GridSpec:
    shape: tuple[int, ...]  # 3 sides: 3-D grid; 2 sides: 2-D slices along slice_axis
    mode: str = "pad"
    crop: str = "region"
    margin: int = 2
    slice_axis: int = 2  # canonical RAS axis: 2 = axial slices

    def __post_init__(self) -> None:
        if len(self.shape) not in (2, 3) or any(isinstance(s, (bool, np.bool_)) or not _whole(s) or s < 1
                                                for s in self.shape):
            raise ValueError(f"grid.shape must list 2 (slices) or 3 positive whole sides, got {list(self.shape)}")
        # plain ints in a tuple: a side of 4.0 indexed nothing (an IndexError in to_grid), a list made the spec unhashable
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        # whole numbers as the sides are (a margin of 2.0 was refused where a side of 4.0 was taken)
        if isinstance(self.margin, (bool, np.bool_)) or not _whole(self.margin) or self.margin < 0:
            raise ValueError(f"grid.margin must be a whole number of voxels >= 0, got {self.margin!r}")
        if isinstance(self.slice_axis, (bool, np.bool_)) or not _whole(self.slice_axis):
            raise ValueError(f"grid.slice_axis must be 0, 1 or 2, got {self.slice_axis!r}")
        object.__setattr__(self, "margin", int(self.margin))
        object.__setattr__(self, "slice_axis", int(self.slice_axis))
        if self.mode not in MODES:
            raise ValueError(f"grid.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.crop not in CROPS:
            raise ValueError(f"grid.crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if self.slice_axis not in (0, 1, 2):
            raise ValueError(f"grid.slice_axis must be 0, 1 or 2, got {self.slice_axis}")

    @property
    def slices(self) -> bool:
        return len(self.shape) == 2

    @property
    def vector_grid(self) -> tuple[int, ...]:
        """The grid each vector is: the 3-D grid, or one slice of it."""
        return tuple(int(s) for s in self.shape)


def _sides_of(shape, name: str) -> tuple[int, ...]:
    """A shape as plain ints; ValueError naming ``name`` unless each side is a whole number >= 1
    (a side of 0 or -1 placed a window in no volume, 9.5 was read as 9)."""
    shape = tuple(shape)
    if any(isinstance(s, (bool, np.bool_)) or not _whole(s) or s < 1 for s in shape):
        raise ValueError(f"{name}: a shape must hold whole numbers >= 1, got {shape}")
    return tuple(int(s) for s in shape)


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) with hi exclusive per axis, or None for an empty mask."""
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        lo.append(hits[0])
        hi.append(hits[-1] + 1)
    return np.array(lo), np.array(hi)


@dataclass
class GridTransform:
    """How one case's canonical volume maps onto the fixed grid and back."""

    volume_shape: tuple[int, int, int]
    start: tuple[int, int, int]  # window per axis, [start, stop); pad windows may leave the volume
    stop: tuple[int, int, int]
    grid_shape: tuple[int, int, int]  # the 3-D grid (slice mode: the slice axis has stop − start)
    modes: tuple[str, str, str]  # per axis: "pad" or "resample"

    # -- index maps ---------------------------------------------------------------------
    def _forward(self, axis: int) -> np.ndarray:
        """Volume index read by each grid index along ``axis``; −1 where the grid is padding."""
        m, lo, hi, n_vol = self.grid_shape[axis], self.start[axis], self.stop[axis], self.volume_shape[axis]
        if self.modes[axis] == "pad":
            src = lo + np.arange(m)
            return np.where((src >= 0) & (src < n_vol), src, -1)
        n = hi - lo
        return lo + ((2 * np.arange(m) + 1) * n) // (2 * m)

    def _inverse(self, axis: int) -> tuple[int, int, np.ndarray]:
        """(lo, hi, grid index of each volume index in lo..hi−1) along ``axis``."""
        m, lo, hi, n_vol = self.grid_shape[axis], self.start[axis], self.stop[axis], self.volume_shape[axis]
        if self.modes[axis] == "pad":
            a, b = max(lo, 0), min(hi, n_vol)
            return a, b, np.arange(a, b) - lo
        n = hi - lo
        return lo, hi, ((2 * np.arange(n) + 1) * m) // (2 * n)

    # -- mapping ------------------------------------------------------------------------
    def to_grid(self, volume: np.ndarray) -> np.ndarray:
        """The grid's view of a canonical volume (nearest neighbour; padding reads 0)."""
        if tuple(volume.shape) != tuple(self.volume_shape):
            raise ValueError(f"volume of shape {volume.shape} does not match the transform's {self.volume_shape}")
        idx = [self._forward(a) for a in range(3)]
        out = volume[np.ix_(*(np.maximum(i, 0) for i in idx))]
        invalid = ~self.valid()
        if invalid.any():
            out = out.copy()
            out[invalid] = 0
        return out

    def from_grid(self, grid: np.ndarray) -> np.ndarray:
        """A grid array back on the canonical volume; voxels outside the window are 0."""
        if tuple(grid.shape) != tuple(self.grid_shape):
            raise ValueError(f"grid of shape {grid.shape} does not match the transform's {self.grid_shape}")
        out = np.zeros(self.volume_shape, dtype=grid.dtype)
        parts = [self._inverse(a) for a in range(3)]
        region = tuple(slice(a, b) for a, b, _ in parts)
        out[region] = grid[np.ix_(*(g for _, _, g in parts))]
        return out

    def valid(self) -> np.ndarray:
        """Grid voxels that lie inside the volume (False: padding beyond the volume's edge)."""
        masks = [self._forward(a) >= 0 for a in range(3)]
        return masks[0][:, None, None] & masks[1][None, :, None] & masks[2][None, None, :]

    def grid_spacing(self, spacing) -> tuple[float, float, float]:
        """Voxel size in mm on the grid (resampled axes stretch or shrink)."""
        out = []
        for axis in range(3):
            s = float(spacing[axis])
            if self.modes[axis] == "resample":
                s *= (self.stop[axis] - self.start[axis]) / self.grid_shape[axis]
            out.append(s)
        return tuple(out)

    def outside(self, mask: np.ndarray) -> int:
        """Voxels of ``mask`` that the window does not cover (lost to the grid)."""
        inside = tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(self.start, self.stop, self.volume_shape))
        return int(mask.sum() - mask[inside].sum())

    def to_dict(self) -> dict:
        return {"volume_shape": list(self.volume_shape), "start": list(self.start), "stop": list(self.stop),
                "grid_shape": list(self.grid_shape), "modes": list(self.modes)}

    @classmethod
    def from_dict(cls, data: dict) -> "GridTransform":
        return cls(**{k: tuple(int(v) if k != "modes" else str(v) for v in data[k]) for k in
                      ("volume_shape", "start", "stop", "grid_shape", "modes")})


def fit_transform(volume_shape, spec: GridSpec, roi: np.ndarray | None = None, source: str = "") -> GridTransform:
    """The transform of one case: the window around ``roi`` (None or empty: the whole volume)."""
    volume_shape = tuple(volume_shape)
    if len(volume_shape) != 3:
        raise ValueError(f"{source or 'volume_shape'}: a grid is placed in a 3-D volume, got the shape {volume_shape}")
    volume_shape = _sides_of(volume_shape, source or "volume_shape")
    if roi is not None and tuple(roi.shape) != volume_shape:
        raise DataError(f"{source}: region-of-interest mask of shape {tuple(roi.shape)} does not match "
                        f"the label map's shape {volume_shape}")
    box = bounding_box(roi) if roi is not None and spec.crop != "none" else None
    if box is None:
        lo, hi = np.zeros(3, dtype=int), np.array(volume_shape)
    else:
        lo, hi = box[0] - spec.margin, box[1] + spec.margin
    sides = list(spec.shape)
    if spec.slices:
        sides.insert(spec.slice_axis, None)
    start, stop, grid_shape, modes = [], [], [], []
    for axis in range(3):
        n_vol, m = volume_shape[axis], sides[axis]
        a, b = max(int(lo[axis]), 0), min(int(hi[axis]), n_vol)
        if m is None:  # slice axis: every slice of the window, natively
            start.append(a), stop.append(b), grid_shape.append(b - a), modes.append("pad")
        elif spec.mode == "pad":
            # centre the window on the region (without margin, so the margin is symmetric)
            c_lo, c_hi = (int(box[0][axis]), int(box[1][axis])) if box is not None else (0, n_vol)
            s = (c_lo + c_hi - m) // 2
            start.append(s), stop.append(s + m), grid_shape.append(m), modes.append("pad")
        else:
            start.append(a), stop.append(b), grid_shape.append(m), modes.append("resample")
    return GridTransform(volume_shape=volume_shape, start=tuple(start), stop=tuple(stop),
                         grid_shape=tuple(grid_shape), modes=tuple(modes))


def to_vectors(grid: np.ndarray, spec: GridSpec) -> np.ndarray:
    """A case's grid as (n, D) rows: one row (3-D) or one row per slice (2-D). A view where numpy
    can make one: writing into the rows writes into the grid."""
    grid = np.asarray(grid)
    if grid.ndim != 3 or any(g != s for g, s in zip(_sides(grid.shape, spec), spec.shape)):
        raise ValueError(f"grid of shape {grid.shape} does not fit grid.shape {list(spec.shape)}"
                         + (f" (slices along axis {spec.slice_axis})" if spec.slices else ""))
    if not spec.slices:
        return rearrange(grid, "x y z -> 1 (x y z)")
    pattern = {0: "s x y -> s (x y)", 1: "x s y -> s (x y)", 2: "x y s -> s (x y)"}[spec.slice_axis]
    return rearrange(grid, pattern)


def _sides(shape, spec: GridSpec) -> tuple[int, ...]:
    """The sides of a 3-D grid that ``spec.shape`` fixes: all three, or the two in-plane ones."""
    return tuple(shape) if not spec.slices else tuple(s for a, s in enumerate(shape) if a != spec.slice_axis)


def from_vectors(vectors: np.ndarray, grid_shape, spec: GridSpec) -> np.ndarray:
    """The inverse of ``to_vectors`` for a case whose 3-D grid has ``grid_shape``."""
    x, y, z = _sides_of(grid_shape, "grid_shape")  # 0 slices divided by zero; 9.5 was read as 9
    vectors = np.asarray(vectors)
    rows = 1 if not spec.slices else int(grid_shape[spec.slice_axis])
    if vectors.shape != (rows, x * y * z // rows):
        raise ValueError(f"vectors of shape {vectors.shape} do not make a grid of shape {(x, y, z)}: expected "
                         f"{(rows, x * y * z // rows)}")
    if not spec.slices:
        return rearrange(vectors, "1 (x y z) -> x y z", x=x, y=y, z=z)
    sides = [x, y, z]
    inplane = [sides[a] for a in range(3) if a != spec.slice_axis]
    pattern = {0: "s (x y) -> s x y", 1: "s (x y) -> x s y", 2: "s (x y) -> x y s"}[spec.slice_axis]
    return rearrange(vectors, pattern, x=inplane[0], y=inplane[1])
