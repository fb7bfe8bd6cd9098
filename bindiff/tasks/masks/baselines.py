"""Repairs the model must beat: closing, shape-based interpolation, retrieval, median filtering.

Each takes the observation on the grid (and, for completion, what is known) and returns a
uint8 mask. Completion baselines change hidden voxels only; known voxels stay as observed.
Retrieval is the data-driven one: a shape prior with no diffusion, it copies the training mask
that best agrees with what is visible.
"""

from __future__ import annotations

import numpy as np

_BIG = 1e6


def ball(radius: int, ndim: int = 3) -> np.ndarray:
    grid = np.indices((2 * radius + 1,) * ndim) - radius
    return (grid ** 2).sum(0) <= radius ** 2


def closing(observed: np.ndarray, known: np.ndarray, radius: int = 2) -> np.ndarray:
    """Morphological closing with a ball, applied to the hidden voxels only."""
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    closed = ndimage.binary_closing(observed.astype(bool), structure=ball(radius, observed.ndim))
    return np.where(known, observed, closed).astype(np.uint8)


def _signed_distance(slab: np.ndarray, spacing) -> np.ndarray:
    """Signed distance of a 2-D mask in mm: negative inside, positive outside."""
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    if not slab.any():
        return np.full(slab.shape, _BIG)
    if slab.all():
        return np.full(slab.shape, -_BIG)
    return (ndimage.distance_transform_edt(~slab, sampling=spacing)
            - ndimage.distance_transform_edt(slab, sampling=spacing))


def interpolate_slices(observed: np.ndarray, known: np.ndarray, axis: int = 2, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Shape-based interpolation: fill each hidden slice from the nearest visible slice on each
    side by interpolating their signed distance maps linearly in the slice position.

    A slice is visible when all of its voxels are known, so the same rule fills hidden slices
    and a hidden box (whose slices are filled, inside the box only, from the slices just beyond
    it). With a visible slice on one side only, that slice is copied.
    """
    obs = np.moveaxis(observed.astype(bool), axis, 0)
    kn = np.moveaxis(known, axis, 0)
    inplane = [s for a, s in enumerate(spacing) if a != axis]
    visible = np.flatnonzero(kn.reshape(kn.shape[0], -1).all(1))
    out = obs.copy()
    if len(visible) == 0:
        return np.moveaxis(out, 0, axis).astype(np.uint8)
    cache: dict[int, np.ndarray] = {}
    sdf = lambda k: cache.setdefault(k, _signed_distance(obs[k], inplane))  # noqa: E731
    for k in range(obs.shape[0]):
        if k in set(visible.tolist()):
            continue
        below, above = visible[visible < k], visible[visible > k]
        if len(below) and len(above):
            a, b = below[-1], above[0]
            w = (k - a) / (b - a)
            filled = (1 - w) * sdf(a) + w * sdf(b) < 0
        else:
            filled = obs[below[-1] if len(below) else above[0]]
        out[k] = np.where(kn[k], obs[k], filled)
    return np.moveaxis(out, 0, axis).astype(np.uint8)


def median_filter(observed: np.ndarray, size: int = 3) -> np.ndarray:
    """The majority of each voxel's size^3 neighbourhood (a median filter on bits)."""
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    return ndimage.median_filter(observed.astype(np.uint8), size=size, mode="constant", cval=0)


def retrieve(observed: np.ndarray, known: np.ndarray, bank: np.ndarray, slice_axis: int | None = None) -> np.ndarray:
    """Fill the hidden voxels from the training mask with the best Dice on the known voxels.

    ``bank`` holds the training masks on the same grid, shape (n, *observed.shape). A run on
    2-D slices (``slice_axis``: where the slices stack in ``observed``) has cases of different
    slice counts: its bank holds every training slice, and each slice is filled from its best.
    """
    if slice_axis is not None:
        filled = [retrieve(o, k, bank) for o, k in zip(np.moveaxis(observed, slice_axis, 0),
                                                       np.moveaxis(known, slice_axis, 0))]
        return np.moveaxis(np.stack(filled), 0, slice_axis)
    if bank.shape[1:] != observed.shape:
        raise ValueError(f"retrieval bank has masks of shape {bank.shape[1:]}, the observation {observed.shape}")
    k = known.reshape(-1).astype(np.float32)
    seen = observed.reshape(-1).astype(np.float32) * k
    flat = bank.reshape(len(bank), -1).astype(np.float32)
    overlap, size = flat @ seen, flat @ k
    total = size + seen.sum()
    dice = np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)
    best = bank[int(np.argmax(dice))]
    return np.where(known, observed, best).astype(np.uint8)


DESCRIPTIONS = {
    "closing": "morphological closing with a ball of radius {radius} on the hidden voxels",
    "interpolation": "shape-based interpolation: the signed distance maps of the nearest fully visible "
                     "slices on each side, interpolated linearly across the hidden voxels",
    "retrieval": "the training mask with the best Dice on the visible voxels, copied into the hidden ones",
}


def completion_baselines(mode: str, observed, known, *, bank: np.ndarray, axis: int, spacing,
                         radius: int, slice_axis: int | None = None) -> dict[str, np.ndarray]:
    """Every baseline that suits a way of hiding, by name (keys of ``DESCRIPTIONS``);
    ``slice_axis`` for a run on 2-D slices (see ``retrieve``)."""
    fills = {}
    if mode == "box":
        fills["closing"] = closing(observed, known, radius)
    fills["interpolation"] = interpolate_slices(observed, known, axis, spacing)
    fills["retrieval"] = retrieve(observed, known, bank, slice_axis)
    return fills
