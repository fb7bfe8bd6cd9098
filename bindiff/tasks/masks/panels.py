"""PNG panels of masks: middle slices through the truth, the damaged input and each result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...files import atomic_path

PLANES = (("sagittal", 0), ("coronal", 1), ("axial", 2))


def mask_centre(mask: np.ndarray) -> list[int]:
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return [s // 2 for s in mask.shape]
    return [int(v) for v in np.round(idx.mean(0))]


def plane_slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    # rows: the later axis, flipped so that anterior / superior point up
    return np.flipud(np.take(volume, index, axis=axis).T)


def outline(ax, plane: np.ndarray, colour: str) -> None:
    """The 0.5 contour of a plane, drawn where one exists: a plane one voxel thin (a grid side of 1)
    has no contour, and matplotlib refuses it."""
    if min(plane.shape) >= 2:
        ax.contour(plane, levels=[0.5], colors=colour, linewidths=0.5)


def save_png(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def label_cell(ax, title: str | None, ylabel: str | None) -> None:
    """No ticks; the column's title on the first row, the plane on the first column."""
    ax.set_xticks([]), ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=8)


def finish_figure(fig, title: str, path: Path) -> None:
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path)


def comparison_panel(columns: dict[str, np.ndarray], path: Path, title: str = "",
                     known: np.ndarray | None = None, reference: str = "the truth") -> None:
    """One row per plane through the first mask's centre, one column per mask (first: the truth,
    or the ``reference`` the others are outlined against).

    Hidden voxels (where ``known`` is False) are tinted in the second column.
    """
    from matplotlib.figure import Figure

    names = list(columns)
    truth = columns[names[0]].astype(bool)
    centre = mask_centre(truth)
    fig = Figure(figsize=(2.2 * len(names), 6.6))
    axes = fig.subplots(3, len(names), squeeze=False)
    for row, (plane, axis) in enumerate(PLANES):
        for col, name in enumerate(names):
            ax = axes[row, col]
            image = plane_slice(columns[name].astype(float), axis, centre[axis])
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if known is not None and col == 1:
                hidden = plane_slice((~known).astype(float), axis, centre[axis])
                ax.imshow(np.ma.masked_where(hidden == 0, hidden), cmap="autumn", alpha=0.35, interpolation="nearest")
            if col and name != "input":
                diff = plane_slice((columns[name].astype(bool) != truth).astype(float), axis, centre[axis])
                outline(ax, diff, "red")
            label_cell(ax, name if row == 0 else None, f"{plane} {centre[axis]}" if col == 0 else None)
    finish_figure(fig, title + f"  (red outline: voxels that differ from {reference})", path)


def sample_panel(samples: list[np.ndarray], nearest: list[np.ndarray], dices: list[float], path: Path,
                 title: str = "") -> None:
    """Axial middle slices of generated masks (top) above their nearest training masks (bottom)."""
    from matplotlib.figure import Figure

    n = len(samples)
    fig = Figure(figsize=(1.8 * n, 4.0))
    axes = fig.subplots(2, n, squeeze=False)
    for i, (sample, near, d) in enumerate(zip(samples, nearest, dices)):
        for row, volume in enumerate((sample, near)):
            axis = volume.ndim - 1
            image = volume if volume.ndim == 2 else plane_slice(volume, axis, mask_centre(sample.astype(bool))[axis])
            axes[row, i].imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes[row, i].set_xticks([]), axes[row, i].set_yticks([])
        axes[0, i].set_title(f"sample {i}", fontsize=8)
        axes[1, i].set_title(f"nearest: Dice {d:.2f}", fontsize=8)
    finish_figure(fig, title, path)


def projection_panel(real: list[np.ndarray], generated: list[np.ndarray], path: Path, title: str = "") -> None:
    """Maximum-intensity projections in three views: real masks (left block) beside generated ones.

    One row per view (sagittal, coronal, axial), one column per mask; 3-D masks only.
    """
    from matplotlib.figure import Figure

    columns = [("real", m) for m in real] + [("generated", m) for m in generated]
    fig = Figure(figsize=(1.6 * len(columns), 5.2))
    axes = fig.subplots(3, len(columns), squeeze=False)
    for col, (kind, mask) in enumerate(columns):
        for row, (plane, axis) in enumerate(PLANES):
            ax = axes[row, col]
            projection = np.flipud(mask.astype(float).max(axis=axis).T)
            ax.imshow(projection, cmap="gray" if kind == "real" else "bone", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(kind, fontsize=8, color="black" if kind == "real" else "tab:blue")
            if col == 0:
                ax.set_ylabel(plane, fontsize=8)
    finish_figure(fig, title, path)
