"""Images beside their label maps: one or several channels per case, in the masks' canonical
orientation and on the same grid, normalised per case and channel.

The first piece of segmentation from images: everything here works without a label, because at
inference there is none. The grid window is placed from the image (``image_roi``: a brain mask
when there is one, else the voxels where any channel is non-zero), never from the label, and the
normalisation statistics are recorded so a run can state what it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from .grid import GridSpec, GridTransform, fit_transform
from .io import Geometry, Volume, _read, read_brain_mask, require_one_grid

__all__ = ["ChannelStats", "ImageCase", "image_on_grid", "image_roi", "normalise_channels", "read_brain_on",
           "read_channels", "read_image"]


def read_image(path: str | Path, channels: bool = False) -> Volume:
    """An intensity image (NIfTI via nibabel, other formats via SimpleITK) as float32, canonical order.

    ``channels``: the data as (C, X, Y, Z), a 4-D file holding C channels on its last axis (as the
    MSD stores several modalities) and a 3-D file one."""
    data, geometry, path = _read(path, "image", channels=channels)
    if channels:
        data = np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: image has data type {data.dtype}, not numbers")
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:  # finite float64 values beyond float32 became inf
        with np.errstate(invalid="ignore"):
            huge = np.isfinite(data) & (np.abs(data) > np.finfo(np.float32).max)
        if huge.any():
            raise DataError(f"{path}: image holds {int(huge.sum())} values beyond float32's range "
                            f"(largest {np.nanmax(np.abs(data[np.isfinite(data)])):.3g}); rescale it")
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        raise DataError(f"{path}: image holds {int((~finite).sum())} NaN or infinite values")
    return Volume(data=data, geometry=geometry, path=path)


def read_brain_on(brain: str | Path, geometry: Geometry, source: str | Path) -> np.ndarray:
    """A brain-mask file as canonical booleans, refused (naming it and ``source``) unless it lies
    on ``geometry``'s grid."""
    volume = read_brain_mask(brain)
    require_one_grid(geometry, volume.geometry, source, brain)
    return volume.data


def read_channels(paths: Sequence[str | Path], reference: Geometry | None = None,
                  reference_path: str | Path | None = None) -> tuple[np.ndarray, Geometry]:
    """The channels of one case stacked as (C, X, Y, Z) float32 in canonical order, and their geometry.

    Every channel must lie on the first one's grid, and on ``reference``'s (the label map's) when
    given; a mismatch is refused naming both files.
    """
    if not paths:
        raise DataError("no image channels given")
    volumes = [read_image(p) for p in paths]
    first = volumes[0]
    for other in volumes[1:]:
        require_one_grid(first.geometry, other.geometry, first.path, other.path)
    if reference is not None:
        require_one_grid(reference, first.geometry, reference_path or reference.source, first.path)
    return np.stack([v.data for v in volumes]), first.geometry


@dataclass(frozen=True)
class ChannelStats:
    """The z-score of one channel: ``(x - mean) / std`` inside the foreground, 0 outside (on the
    scan's own voxels; a scan resampled after it is normalised blends the two at the edge)."""

    mean: float
    std: float
    foreground_voxels: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "foreground_voxels": self.foreground_voxels}


def _named(source: str | Path, message: str) -> str:
    return f"{source}: {message}" if str(source) else message


def image_roi(channels: np.ndarray, brain: np.ndarray | None = None, source: str | Path = "") -> np.ndarray:
    """Where the case's anatomy is, from the image alone: the brain mask, or any non-zero channel.
    ``source`` (the image's file) names the case in an error."""
    if brain is not None:
        if tuple(brain.shape) != tuple(channels.shape[1:]):
            raise DataError(_named(source, f"brain mask of shape {tuple(brain.shape)} does not fit images of "
                                           f"shape {tuple(channels.shape[1:])}"))
        return np.asarray(brain, dtype=bool)
    return np.any(channels != 0, axis=0)


def normalise_channels(channels: np.ndarray, foreground: np.ndarray, source: str | Path = "",
                       in_place: bool = False) -> tuple[np.ndarray, list[ChannelStats]]:
    """Each channel z-scored over ``foreground`` (mean 0, standard deviation 1 there), 0 elsewhere.

    A constant channel gets standard deviation 1, so it becomes 0 rather than NaN (one modality
    of several may be blank). An image whose every channel is constant is refused: it holds no
    contrast, and a model would still draw a mask of plausible shape on it. ``source`` (the
    image's file) names the case in an error. ``in_place``: ``channels`` (a writable float32
    array; anything else is copied as without it) is overwritten and returned, for a caller that
    has no further use of the raw values, nor of any view of them (one volume of every channel less
    at once: 68 MiB for a two-channel BraTS case); after a ``DataError`` it may be part-overwritten.
    """
    foreground = np.asarray(foreground, dtype=bool)
    if np.iscomplexobj(channels):  # astype(float64) below kept the real part with only a numpy warning
        raise DataError(_named(source, f"the image has data type {np.asarray(channels).dtype}, not real numbers"))
    if not foreground.any():
        raise DataError(_named(source, "the image's foreground is empty (every voxel of the image is 0, or "
                                       "its brain mask marks none)"))
    in_place = in_place and isinstance(channels, np.ndarray) and channels.dtype == np.float32 \
        and channels.flags.writeable
    out = channels if in_place else np.zeros_like(channels, dtype=np.float32)
    background = ~foreground if in_place else None
    stats, constant = [], []
    for c, channel in enumerate(channels):
        values = channel[foreground].astype(np.float64)
        if not np.isfinite(values).all():  # files with NaN are refused on reading; this guards other callers
            raise DataError(_named(source, f"channel {c} holds {int((~np.isfinite(values)).sum())} NaN or infinite "
                                           "value(s) inside the foreground"))
        mean, std = float(values.mean()), float(values.std())
        constant.append(std == 0)
        std = std if std > 0 else 1.0
        if in_place:  # ``values`` holds the channel's foreground already
            out[c][background] = 0
        out[c][foreground] = ((values - mean) / std).astype(np.float32)
        stats.append(ChannelStats(mean, std, int(foreground.sum())))
    if all(constant):
        values = ", ".join(f"{s.mean:g}" for s in stats)
        raise DataError(_named(source, f"every voxel of the image's foreground holds the same value ({values}): "
                                       "no contrast to segment (a mask given as the image?)"))
    return out, stats


def image_on_grid(channels: np.ndarray, transform: GridTransform) -> np.ndarray:
    """(C, *grid) float32: every channel through the case's grid transform (padding reads 0)."""
    return np.stack([transform.to_grid(channel) for channel in channels]).astype(np.float32)


@dataclass
class ImageCase:
    """One case's images on the grid, placed and normalised from the images alone."""

    grid: np.ndarray  # (C, *grid) normalised channels
    geometry: Geometry
    transform: GridTransform
    stats: list[ChannelStats]

    @classmethod
    def load(cls, paths: Sequence[str | Path], spec: GridSpec, brain: str | Path | None = None,
             reference: Geometry | None = None, reference_path: str | Path | None = None) -> "ImageCase":
        """A case whose channels are one file each (all on one grid, and on ``reference``'s when given)."""
        channels, geometry = read_channels(paths, reference, reference_path)
        return cls.place(channels, geometry, spec, brain=brain, source=paths[0])

    @classmethod
    def place(cls, channels: np.ndarray, geometry: Geometry, spec: GridSpec,
              brain: str | Path | np.ndarray | None = None, source: str | Path = "",
              stats: list[ChannelStats] | None = None) -> "ImageCase":
        """(C, X, Y, Z) canonical channels normalised and placed on the grid. ``brain``: a brain-mask
        file on ``geometry``'s grid, or the region of the anatomy already as a canonical boolean
        array on the channels' voxels. ``stats``: the channels were already z-scored with these
        statistics (``brain`` then gives the region as an array). A scan brought to another voxel
        size is normalised on its own voxels first, because linear resampling smears a zero
        background into a shell of small values and mixes it into the edge of the anatomy."""
        brain_mask = brain if isinstance(brain, np.ndarray) or brain is None else read_brain_on(brain, geometry, source)
        if stats is not None and not isinstance(brain_mask, np.ndarray):
            raise ValueError("place: normalised channels (stats given) need their region as the brain array")
        roi = image_roi(channels, brain_mask, source=source)
        if stats is None:
            normalised, stats = normalise_channels(channels, roi, source=source)
        else:
            normalised = channels
        transform = fit_transform(channels.shape[1:], spec, roi=roi, source=str(source))
        return cls(image_on_grid(normalised, transform), geometry, transform, stats)
