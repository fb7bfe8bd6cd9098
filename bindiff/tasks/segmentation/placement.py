"""A scan brought to the voxel size its run works at, and its maps brought back to the scan's own
voxels: shared by the run's own cases (``data``, ``job``) and ``bindiff segment``.

A run works at one voxel size: ``images.spacing`` when the recipe sets it (every case is
resampled to it before it is placed on the grid, as nnU-Net does), else the training cases'
median (cases are read as stored, and ``segment`` resamples only a scan that differs from it).
Images and probabilities are resampled linearly, masks by nearest neighbour
(``bindiff.adapters.masks.spacing``); the mask of a resampled case is decided on its own voxels,
from its probability map brought back there. A scan is normalised on its own voxels before it
is resampled, and its anatomy (the brain mask, or the non-zero voxels) is resampled as a mask,
so the z-score comes from the same region at any voxel size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...adapters.masks import spacing as voxel_size
from .decision import foreground


def to_spacing(channels: np.ndarray, spacing: Sequence[float], target: Sequence[float] | None,
               *masks: np.ndarray | None, source: str = "the scan") -> tuple[np.ndarray, list, bool]:
    """(C, X, Y, Z) ``channels`` of voxel size ``spacing`` resampled to ``target`` (None: left as
    they are) with ``masks`` (each None or a boolean volume on the same voxels); also whether
    anything was resampled: not when every axis is within 1 % of the target."""
    if target is None or not voxel_size.needs_resampling(spacing, target):
        return channels, list(masks), False
    shape = voxel_size.resampled_shape(channels.shape[1:], spacing, target, source)
    channels = np.stack([voxel_size.resample(channel, shape, order=1) for channel in channels])
    return channels, [None if m is None else voxel_size.resample(m, shape, order=0) for m in masks], True


def on_scan_voxels(prob: np.ndarray, uncertainty: np.ndarray, transform, cfg: dict,
                   scan_shape: tuple | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask, probability and uncertainty volumes from the grid's flat maps. ``scan_shape``: the
    scan's own voxels when it was resampled (the maps go back there and the mask is decided
    there), else None (the mask is decided on the grid, as the run's evaluation always did)."""
    valid, grid = transform.valid().reshape(-1), transform.grid_shape

    def back(values: np.ndarray) -> np.ndarray:
        volume = transform.from_grid((values * valid).reshape(grid))
        return volume if scan_shape is None else voxel_size.resample(volume, scan_shape, order=1)

    prob_volume = back(prob)
    if scan_shape is None:
        mask = transform.from_grid(foreground(prob * valid, cfg).reshape(grid).astype(np.uint8)).astype(bool)
    else:
        mask = foreground(prob_volume.reshape(-1), cfg).reshape(scan_shape).astype(bool)
    return mask, prob_volume, back(uncertainty)
