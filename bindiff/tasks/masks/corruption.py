"""Ways to damage a mask for evaluation, each seeded, each returning what stays known.

All work on a case's 3-D grid array (uint8 0/1) and return ``(observed, known)``: the damaged
mask as the model and the baselines see it, and a boolean array that is True where the
observation is trustworthy. Hidden voxels read 0 in ``observed``. Flipping hides nothing
(``known`` is all False: every voxel may be wrong). ``valid`` (the grid voxels that lie inside
the image) limits where anything happens.
"""

from __future__ import annotations

import numpy as np

from ...adapters.masks.grid import bounding_box

HIDE_MODES = ("box", "alternate_slices", "random_slices")


def _extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    box = bounding_box(mask.astype(bool))
    if box is None:  # an empty mask: use the whole grid
        return np.zeros(mask.ndim, dtype=int), np.array(mask.shape)
    return box


def hide_box(mask: np.ndarray, fraction: float = 0.5, position: str = "center",
             rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Hide a box whose sides are ``fraction`` of the mask's extent, at its centre or at random.

    A random box lies inside the mask's bounding box, its corner drawn uniformly from ``rng``.
    """
    lo, hi = _extent(mask)
    size = np.maximum(np.round((hi - lo) * fraction).astype(int), 1)
    if position == "center":
        start = lo + (hi - lo - size) // 2
    elif position == "random":
        if rng is None:
            raise ValueError("a random box needs a seeded numpy Generator")
        start = np.array([rng.integers(a, max(b - s, a) + 1) for a, b, s in zip(lo, hi, size)])
    else:
        raise ValueError(f"box position must be 'center' or 'random', got {position!r}")
    known = np.ones(mask.shape, dtype=bool)
    known[tuple(slice(int(a), int(a + s)) for a, s in zip(start, size))] = False
    return np.where(known, mask, 0).astype(np.uint8), known


def hide_slices(mask: np.ndarray, hidden: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Hide whole slices (indices ``hidden``) along ``axis``."""
    known = np.ones(mask.shape, dtype=bool)
    index = [slice(None)] * mask.ndim
    index[axis] = np.asarray(hidden, dtype=int)
    known[tuple(index)] = False
    return np.where(known, mask, 0).astype(np.uint8), known


def alternate_slices(mask: np.ndarray, axis: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Hide every other slice along ``axis`` (the odd grid indices), as thick-slice imaging would."""
    return hide_slices(mask, np.arange(1, mask.shape[axis], 2), axis)


def random_slices(mask: np.ndarray, fraction: float, axis: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Hide a random ``fraction`` of the slices that cross the mask's extent along ``axis``."""
    lo, hi = _extent(mask)
    candidates = np.arange(lo[axis], hi[axis])
    n = int(round(fraction * len(candidates)))
    return hide_slices(mask, np.sort(rng.choice(candidates, size=n, replace=False)), axis)


def flip_voxels(mask: np.ndarray, fraction: float, rng: np.random.Generator,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly round(fraction × n) voxels drawn without replacement among the n valid ones."""
    valid = np.ones(mask.shape, dtype=bool) if valid is None else valid
    where = np.flatnonzero(valid.ravel())
    chosen = rng.choice(where, size=int(round(fraction * len(where))), replace=False)
    observed = mask.copy().astype(np.uint8).ravel()
    observed[chosen] = 1 - observed[chosen]
    return observed.reshape(mask.shape), np.zeros(mask.shape, dtype=bool)


def hide(mask: np.ndarray, mode: str, rng: np.random.Generator, *, box_fraction: float = 0.5,
         box_position: str = "center", slice_fraction: float = 0.5, axis: int = 2) -> tuple[np.ndarray, np.ndarray]:
    if mode == "box":
        return hide_box(mask, box_fraction, box_position, rng)
    if mode == "alternate_slices":
        return alternate_slices(mask, axis)
    if mode == "random_slices":
        return random_slices(mask, slice_fraction, axis, rng)
    raise ValueError(f"unknown completion mode {mode!r}; choose one of {', '.join(HIDE_MODES)}")
