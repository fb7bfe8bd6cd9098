"""Bringing a scan to the voxel spacing a model was trained at, and its results back.

A run that places images with ``grid.mode: pad`` never resamples: one grid voxel is one image
voxel, so a model trained on 1 mm voxels sees a 0.8 mm scan as a hippocampus 25 % too large.
``bindiff segment`` therefore first resamples a scan of another spacing to the training spacing
and maps its probability and uncertainty maps back onto the scan's own voxels (as nnU-Net does);
``bindiff masks apply`` does the same with label maps (nearest neighbour).

Resampling is ``scipy.ndimage.zoom`` with ``grid_mode=True``: voxels are cells, so the first and
last cells of both grids share their outer faces and the volume keeps its physical extent. The
zoom factor of each axis is the ratio of the two shapes, so the result has exactly the shape asked
for. Linear interpolation (order 1) for images and probabilities: it stays within the input's
range, which a cubic spline does not; nearest neighbour (order 0) for masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import DataError
from ..values import is_whole as _whole

__all__ = ["SPACING_TOLERANCE", "area_share", "mixed_spacing", "needs_resampling", "resample", "resampled_shape",
           "training_spacing"]

# Relative difference per axis below which two spacings count as equal: a header's spacing of
# 0.9999 mm against a run's 1 mm is rounding, not another resolution.
SPACING_TOLERANCE = 0.01


def training_spacing(spacings: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """The median voxel size per axis (mm) of the training cases: the spacing the model learned at."""
    values = np.asarray(spacings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] != 3:
        raise ValueError(f"expected one (x, y, z) spacing per training case, got an array of shape {values.shape}")
    for row in values:  # a NaN, 0 or negative size made a median of NaN, 0 or below
        _voxel_sizes(row, "spacings: a case's spacing")
    return tuple(float(v) for v in np.median(values, axis=0))


def mixed_spacing(spacings: Mapping[str, Sequence[float]], tolerance: float = SPACING_TOLERANCE,
                  named: int = 3) -> str | None:
    """A sentence when the cases' voxel sizes (by case id) differ from their median by more than
    ``tolerance`` on an axis (a grid that does not resample then shows one structure at several
    scales), else None. It names the ``named`` cases farthest from the median, so that a user can
    find the odd ones among hundreds (by case id: BraTS 2015 names every label file alike)."""
    names = list(spacings)
    if not names:  # no cases differ (a reshape of nothing failed)
        return None
    values = np.asarray([spacings[name] for name in names], dtype=np.float64).reshape(len(names), -1)
    target = training_spacing(values)
    odd = [i for i, v in enumerate(values) if needs_resampling(v, target, tolerance)]
    if not odd:
        return None
    farthest = sorted(odd, key=lambda i: -float(np.max(np.abs(np.log(values[i] / target)))))[:named]
    listed = ", ".join(f"{names[i]} ({_mm(values[i])} mm)" for i in farthest)
    more = f" and {len(odd) - len(farthest)} more" if len(odd) > len(farthest) else ""
    return (f"{len(odd)} of {len(values)} cases have a voxel size more than {tolerance:.0%} from the median "
            f"{_mm(target)} mm (from {_mm(values.min(0))} to {_mm(values.max(0))} mm): {listed}{more}")


def _mm(values) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def _voxel_sizes(values: Sequence[float], name: str) -> np.ndarray:
    """Voxel sizes in mm as float64; ValueError naming ``name`` unless each is finite and > 0 (a 0
    gave a shape of 1 voxel, a NaN "no resampling needed")."""
    sizes = np.asarray(values, dtype=np.float64)
    if sizes.ndim != 1 or not (np.isfinite(sizes) & (sizes > 0)).all():
        raise ValueError(f"{name} {tuple(np.ravel(values).tolist())}: voxel sizes in mm must be finite and > 0")
    return sizes


def _same_axes(spacing: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ValueError unless both give one size per axis of the same axes (zip dropped the extra axis)."""
    if spacing.shape != target.shape:
        raise ValueError(f"spacing {tuple(spacing.tolist())} and target {tuple(target.tolist())} have different "
                         "numbers of axes")
    return spacing, target


def needs_resampling(spacing: Sequence[float], target: Sequence[float], tolerance: float = SPACING_TOLERANCE) -> bool:
    """True when an axis of ``spacing`` differs from ``target`` by more than ``tolerance`` (relative)."""
    spacing, target = _same_axes(_voxel_sizes(spacing, "spacing"), _voxel_sizes(target, "target"))
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.integer, np.floating)) or \
            not 0 <= tolerance < float("inf"):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    # a hair above the bound, so that 1.01 against 1.0 (0.0100000000000000089 apart) is within 1 %
    return bool((np.abs(spacing - target) > tolerance * target * (1 + 1e-9)).any())


# Resampling to more voxels than both of these means a voxel size read wrong (a header in microns,
# say), not a scan: 512³ float32 voxels are half a gigabyte, and a scan 64 times finer than its file
# is no scan either (a large CT of 512 × 512 × 560 voxels resampled by a few percent is one).
MAX_RESAMPLED_VOXELS = 512 ** 3
MAX_RESAMPLED_GROWTH = 64


def resampled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float],
                    source: str = "the volume") -> tuple[int, ...]:
    """The shape that covers the same extent as ``shape`` voxels of ``spacing`` mm with ``target`` mm
    voxels; a DataError naming ``source`` beyond both ``MAX_RESAMPLED_VOXELS`` and
    ``MAX_RESAMPLED_GROWTH`` times its own voxels."""
    spacing, target = _same_axes(_voxel_sizes(spacing, "spacing"), _voxel_sizes(target, "target"))
    if len(shape) != len(spacing) or any(isinstance(n, bool) or int(n) != n or n < 1 for n in shape):
        raise ValueError(f"shape {tuple(shape)}: one whole number of voxels >= 1 per axis of the spacing "
                         f"{tuple(spacing.tolist())} needed")
    out = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))
    voxels = float(np.prod([float(n) for n in out]))
    if voxels > MAX_RESAMPLED_VOXELS and voxels > MAX_RESAMPLED_GROWTH * float(np.prod([float(n) for n in shape])):
        sizes = [float(f"{s:.4g}") for s in spacing], [float(f"{t:.4g}") for t in target]
        raise DataError(f"{source}: {list(shape)} voxels of {sizes[0]} mm would become {list(out)} voxels of "
                        f"{sizes[1]} mm, more than 512³ and 64 times its own; is its voxel size (or its unit) right?")
    return out


def resample(volume: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """``volume`` (3-D) resampled onto ``shape`` voxels covering the same extent; order 0 or 1."""
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)) or order not in (0, 1):
        raise ValueError(f"order must be 0 (masks) or 1 (images and probabilities), got {order}")
    if volume.ndim != 3 or len(shape) != 3:
        raise ValueError(f"resample takes a 3-D volume and a 3-D shape, got {volume.shape} and {tuple(shape)}")
    _check_shapes("resample", volume, shape)
    factors = [int(m) / int(n) for m, n in zip(shape, volume.shape)]
    # an integer image interpolated linearly would be rounded back to integers
    # scipy's zoom has no float16: such a map is resampled in float32 and given back in float16
    widen = volume.dtype == bool or volume.dtype == np.float16 or (order == 1 and volume.dtype.kind in "iu")
    source = volume.astype(np.float32) if widen else volume
    out = ndimage.zoom(source, factors, order=order, mode="nearest", grid_mode=True)
    if volume.dtype == np.float16:
        out = out.astype(np.float16)
    # zoom rounds shape × factor; with factor = m / n that is m, but say so rather than trust it
    if out.shape != tuple(int(m) for m in shape):
        raise AssertionError(f"zoom gave {out.shape}, not {tuple(shape)}")
    return out > 0.5 if volume.dtype == bool else out


def _check_shapes(name: str, volume: np.ndarray, shape: Sequence[int]) -> None:
    """ValueError naming ``name`` unless ``shape`` holds whole numbers >= 1 and ``volume`` has voxels
    (an empty one divided by zero)."""
    if any(isinstance(m, (bool, np.bool_)) or not _whole(m) or m < 1 for m in shape):
        raise ValueError(f"{name}: shape {tuple(shape)} must hold whole numbers >= 1")
    if volume.size == 0:
        raise ValueError(f"{name}: the volume of shape {volume.shape} has no voxels")


def area_share(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The share of each voxel of ``shape`` that the true voxels of ``volume`` (3-D, bool) cover,
    float64 in [0, 1], on the grid ``resample`` uses (the two grids share their outer faces).

    Exact, whatever the ratio of the voxel sizes: per axis, a voxel's share is its overlap with
    each voxel of the other grid over its own length, and the three axes multiply. Where the new
    voxels are smaller, each lies inside one or two old ones; where they are larger, each averages
    the old ones it holds (what a point sample, as interpolation takes, misses).
    """
    if volume.ndim != 3 or len(shape) != 3:
        raise ValueError(f"area_share takes a 3-D volume and a 3-D shape, got {volume.shape} and {tuple(shape)}")
    _check_shapes("area_share", volume, shape)  # linspace's error for -1; 8.5 read as 8
    out = np.asarray(volume, dtype=np.float64)
    for axis, (n_new, n_old) in enumerate(zip(shape, volume.shape)):
        new_edges, old_edges = np.linspace(0, 1, int(n_new) + 1), np.linspace(0, 1, n_old + 1)
        overlap = np.clip(np.minimum(new_edges[1:, None], old_edges[None, 1:])
                          - np.maximum(new_edges[:-1, None], old_edges[None, :-1]), 0, None)
        weights = overlap / overlap.sum(1, keepdims=True)  # (n_new, n_old): each row sums to 1
        out = np.moveaxis(np.tensordot(weights, np.moveaxis(out, axis, 0), axes=1), 0, axis)
    return np.clip(out, 0.0, 1.0)
