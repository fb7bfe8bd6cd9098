"""PNG panels of a segmented case: the image, the truth (when there is one), each model's mask and
the uncertainty map, in three planes through the centre of the first model's mask (through the
truth's where that mask is empty, so that a missed structure is shown; the volume's middle where
there is neither)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..masks.panels import PLANES, finish_figure, label_cell, mask_centre, outline, plane_slice


def segmentation_panel(image: np.ndarray, truth: np.ndarray | None, masks: dict[str, np.ndarray],
                       uncertainty: np.ndarray, path: Path, title: str = "") -> None:
    """One row per plane; columns: image, truth (outlined on the image; none for a scan without a
    label), each mask, uncertainty."""
    from matplotlib.figure import Figure

    names = list(masks)
    first = np.asarray(masks[names[0]], dtype=bool)
    if first.any():
        centre = mask_centre(first)
    elif truth is not None:
        centre = mask_centre(truth)
    else:
        centre = [n // 2 for n in first.shape]
    if truth is None:
        truth = np.zeros(first.shape, dtype=bool)
        columns = ["image", *names, "uncertainty"]
    else:
        columns = ["image", "truth", *names, "uncertainty"]
    fig = Figure(figsize=(2.2 * len(columns), 6.6))
    axes = fig.subplots(3, len(columns), squeeze=False)
    low, high = np.percentile(image, [1, 99])
    for row, (plane, axis) in enumerate(PLANES):
        background = plane_slice(image, axis, centre[axis])
        truth_plane = plane_slice(truth.astype(float), axis, centre[axis])
        for col, name in enumerate(columns):
            ax = axes[row, col]
            if name == "uncertainty":
                shown = ax.imshow(plane_slice(uncertainty, axis, centre[axis]), cmap="magma", vmin=0,
                                  vmax=max(float(uncertainty.max()), 1e-6), interpolation="nearest")
                if row == 0:
                    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            else:
                ax.imshow(background, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
                if name != "image":
                    mask = truth_plane if name == "truth" else plane_slice(masks[name].astype(float), axis, centre[axis])
                    ax.imshow(np.ma.masked_where(mask == 0, mask), cmap="autumn", alpha=0.45, interpolation="nearest")
                if name in masks and truth_plane.any():
                    outline(ax, truth_plane, "cyan")
            label_cell(ax, name if row == 0 else None, f"{plane} {centre[axis]}" if col == 0 else None)
    finish_figure(fig, title + ("  (cyan outline: the truth)" if "truth" in columns else ""), path)
