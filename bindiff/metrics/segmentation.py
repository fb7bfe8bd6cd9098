"""Segmentation metrics for binary masks: Dice, IoU, HD95 in millimetres, volume error.

Definitions (prediction P, reference R, both boolean arrays on one voxel grid):

- Dice = 2|P ∩ R| / (|P| + |R|); IoU = |P ∩ R| / |P ∪ R|.
- HD95: the surface of a mask is its voxels with at least one of the 6 face neighbours outside
  the mask (the array border counts as outside). For every surface voxel of P, the Euclidean
  distance in mm (``spacing`` per axis) to the nearest surface voxel of R, and vice versa;
  HD95 = max(95th percentile of the P→R distances, 95th percentile of the R→P distances),
  percentiles by linear interpolation (``numpy.percentile``). This is MONAI's
  ``HausdorffDistanceMetric(percentile=95)`` with ``spacing`` given.
- ASSD: the mean of the P→R and R→P distances together. Normalised surface Dice at tolerance
  τ mm: (|{P→R distances ≤ τ}| + |{R→P distances ≤ τ}|) / (|surface P| + |surface R|);
  ``segmentation_metrics`` uses τ = 1 mm. These are MONAI's ``compute_average_surface_distance
  (symmetric=True)`` and ``compute_surface_dice``.
- Volumes in millilitres (voxel count × voxel volume / 1000); volume error = predicted −
  reference (signed), and its absolute value is averaged.

Empty masks (the rule BraTS uses, stated here so nobody has to guess):
- both empty: Dice = IoU = 1, HD95 = 0 (a correct "nothing here");
- exactly one empty: Dice = IoU = 0, HD95 = the diagonal of the field of view in mm (shape ×
  spacing: 373.13 mm for a 240×240×155 BraTS volume at 1 mm, a little more than the largest
  distance between two voxel centres).
Every case therefore has a finite value of every metric, and means are over all cases.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

import numpy as np

__all__ = ["EMPTY_RULE", "DEFINITIONS", "SURFACE_TOLERANCE_MM", "as_mask", "assd", "dice", "iou", "hd95", "surface",
           "surface_dice", "surface_distances", "volume_ml", "segmentation_metrics", "summarize"]

EMPTY_RULE = ("both masks empty: dice = iou = surface_dice = 1, hd95_mm = assd_mm = 0; exactly one empty: "
              "dice = iou = surface_dice = 0, hd95_mm = assd_mm = diagonal of the field of view in mm; "
              "means are over all cases")
DEFINITIONS = {
    "dice": "2|P∩R| / (|P|+|R|)",
    "iou": "|P∩R| / |P∪R|",
    "hd95_mm": "max of the 95th percentiles of the two directed surface-to-surface distances, in mm "
               "(surface: voxels with a 6-neighbour outside the mask)",
    "assd_mm": "average symmetric surface distance: the mean of both directed surface distances together, in mm",
    "surface_dice": "normalised surface Dice at a tolerance of 1 mm: the share of both surfaces within 1 mm "
                    "of the other surface (Nikolov et al. 2021)",
    "volume_error_ml": "predicted minus reference volume in ml (the mean is of the absolute value)",
}
SURFACE_TOLERANCE_MM = 1.0  # surface Dice's tolerance in segmentation_metrics


def as_mask(values, name: str = "mask") -> np.ndarray:
    """``values`` as a boolean mask; ValueError naming ``name`` for anything but 0 and 1 (or
    booleans): a probability map or a label map would otherwise count every non-zero voxel."""
    array = as_array(values)
    if array.dtype == bool:
        return array
    binary = (array == 0) | (array == 1)  # NaN is neither
    if not binary.all():
        bad = array[~binary].flat[0]
        raise ValueError(f"{name}: a mask holds 0 and 1 (or booleans), got {getattr(bad, 'item', lambda: bad)()!r}; "
                         "threshold a probability map, or binarize a label map, first")
    return array.astype(bool)


def as_array(values) -> np.ndarray:
    """``values`` as a numpy array; a torch tensor from any device, with a gradient or in bfloat16
    (numpy has no such type) too: each raised torch's error, naming no argument."""
    import sys

    torch = sys.modules.get("torch")  # a tensor can only exist where torch is imported
    if torch is not None and isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        return (values.float() if values.dtype == torch.bfloat16 else values).numpy()
    return np.asarray(values)


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = as_mask(pred, "prediction"), as_mask(truth, "reference")
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and reference {truth.shape} differ in shape")
    return pred, truth


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P∩R| / (|P| + |R|) of two masks of one shape; 1 when both are empty."""
    pred, truth = _pair(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """|P∩R| / |P∪R| (Jaccard) of two masks of one shape; 1 when both are empty."""
    pred, truth = _pair(pred, truth)
    union = int((pred | truth).sum())
    return 1.0 if union == 0 else int((pred & truth).sum()) / union


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside it (the array border is outside)."""
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    mask = as_mask(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(math.hypot(*(n * s for n, s in zip(shape, spacing))))  # hypot: no overflow in the squares


def _directed(from_surface: np.ndarray, to_surface: np.ndarray, spacing) -> np.ndarray:
    from scipy import ndimage  # here: 0.2 s at start-up that a recommendation run never needs
    distance = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return distance[from_surface]


def _spacing(pred: np.ndarray, spacing) -> tuple[float, ...]:
    if spacing is None:
        spacing = (1.0,) * pred.ndim
    if isinstance(spacing, (str, bytes)) or np.ndim(spacing) != 1 or not all(
            isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_)) for s in as_array(spacing).tolist()):
        # text ("21" was read as 2 mm by 1 mm), one number, booleans
        raise ValueError(f"spacing must list one voxel size in mm per axis, got {spacing!r}")
    spacing = tuple(float(s) if abs(s) < 2 ** 1024 else math.inf for s in as_array(spacing).tolist())
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {spacing} does not match a {pred.ndim}-D mask")
    if not all(math.isfinite(s) and s > 0 for s in spacing):  # 0 mm made every distance 0
        raise ValueError(f"spacing {spacing}: voxel sizes in mm must be finite and > 0")
    if max(spacing) > 1e150 * min(spacing):  # the distance transform squares distances in units of the largest
        raise ValueError(f"spacing {spacing}: voxel sizes differ by more than a factor of 1e150 between axes")
    return spacing


def surface_distances(pred: np.ndarray, truth: np.ndarray,
                      spacing: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The directed surface distances in mm, P→R and R→P; None when either mask is empty."""
    distances = _distances_in_units(pred, truth, spacing)
    if distances is None:
        return None
    d_pt, d_tp, unit = distances
    return d_pt * unit, d_tp * unit


def _distances_in_units(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The directed surface distances in units of the largest voxel size, and that size in mm.
    The distance transform squares distances: in mm, voxels of 1e308 mm overflowed (HD95 NaN)
    and voxels of 1e-300 mm underflowed (HD95 0); in units of the largest voxel they cannot."""
    pred, truth = _pair(pred, truth)
    spacing = _spacing(pred, spacing)
    if not pred.any() or not truth.any():
        return None
    unit = max(spacing)
    return _directed_pair(pred, truth, tuple(s / unit for s in spacing)) + (unit,)


def _directed_pair(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Both directed surface distances of two non-empty masks, in the units of ``spacing``."""
    # crop to the joint bounding box plus one voxel: same distances, much less work
    both = pred | truth
    lo = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(both.ndim) if a != ax)))[0]) for ax in range(both.ndim)]
    hi = [int(np.flatnonzero(both.any(axis=tuple(a for a in range(both.ndim) if a != ax)))[-1]) + 1
          for ax in range(both.ndim)]
    box = tuple(slice(max(a - 1, 0), min(b + 1, n)) for a, b, n in zip(lo, hi, both.shape))
    # the surface is computed on the full array so that the array border counts as outside
    sp, st = surface(pred)[box], surface(truth)[box]
    return _directed(sp, st, spacing), _directed(st, sp, spacing)


def _empty_value(pred: np.ndarray, truth: np.ndarray, spacing, both_empty: float, one_empty: float | None):
    if not pred.any() and not truth.any():
        return both_empty
    return diagonal_mm(pred.shape, _spacing(pred, spacing)) if one_empty is None else one_empty


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """The larger of the two directed 95th-percentile surface distances, in mm (voxels of
    ``spacing`` mm; 1 mm when None); the empty-mask rule of this module for empty masks."""
    pred, truth = _pair(pred, truth)
    distances = _distances_in_units(pred, truth, spacing)
    if distances is None:
        return _empty_value(pred, truth, spacing, 0.0, None)
    return _hd95(*distances)


def assd(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance in mm: the mean of both directed distance sets together."""
    pred, truth = _pair(pred, truth)
    distances = _distances_in_units(pred, truth, spacing)
    if distances is None:
        return _empty_value(pred, truth, spacing, 0.0, None)
    return _assd(*distances)


def surface_dice(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None,
                 tolerance_mm: float = 1.0) -> float:
    """Normalised surface Dice (Nikolov et al. 2021): the share of both surfaces lying within
    ``tolerance_mm`` of the other surface."""
    pred, truth = _pair(pred, truth)
    tolerance_mm = _tolerance(tolerance_mm)
    distances = _distances_in_units(pred, truth, spacing)
    if distances is None:
        return _empty_value(pred, truth, spacing, 1.0, 0.0)
    return _share_within(*distances, tolerance_mm)


def _tolerance(tolerance_mm) -> float:
    """A distance in mm >= 0: a negative or NaN tolerance gave surface Dice 0 without a word."""
    if np.ndim(tolerance_mm) == 0 and type(tolerance_mm).__name__ in ("ndarray", "Tensor"):
        tolerance_mm = tolerance_mm.item()  # a 0-d array or tensor, as every other number argument takes
    if isinstance(tolerance_mm, (bool, np.bool_)) or not isinstance(tolerance_mm, numbers.Real) or not tolerance_mm >= 0:
        raise ValueError(f"tolerance_mm must be a distance in mm >= 0, got {tolerance_mm!r}")
    return float(tolerance_mm)


def _hd95(d_pt: np.ndarray, d_tp: np.ndarray, unit: float) -> float:
    return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)) * unit)


def _assd(d_pt: np.ndarray, d_tp: np.ndarray, unit: float) -> float:
    return float(np.concatenate((d_pt, d_tp)).mean() * unit)


def _share_within(d_pt: np.ndarray, d_tp: np.ndarray, unit: float, tolerance_mm: float) -> float:
    """The share of both surfaces' distances (in ``unit`` mm) within the tolerance. Spacings read
    from a float32 affine are off by ~1e-7 mm (1.00000003 on a slightly oblique scan), and a
    one-voxel shift then lies just beyond a 1 mm tolerance: the comparison allows a relative 1e-6."""
    limit = tolerance_mm / unit * (1 + 1e-6)
    return float(((d_pt <= limit).sum() + (d_tp <= limit).sum()) / (d_pt.size + d_tp.size))


def volume_ml(mask: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """The mask's volume in millilitres: its voxel count × the voxel volume in mm³ / 1000
    (``spacing`` per axis, 1 mm when None)."""
    mask = as_mask(mask)
    return float(mask.sum()) * math.prod(_spacing(mask, spacing)) / 1000.0


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None,
                         tolerance_mm: float = SURFACE_TOLERANCE_MM) -> dict[str, float]:
    """Every metric of one case (see the module docstring for the definitions and empty rule);
    ``spacing`` and ``tolerance_mm`` as in ``hd95`` and ``surface_dice``."""
    pred, truth = _pair(pred, truth)
    spacing, tolerance_mm = _spacing(pred, spacing), _tolerance(tolerance_mm)
    v_pred, v_truth = volume_ml(pred, spacing), volume_ml(truth, spacing)
    distances = _distances_in_units(pred, truth, spacing)  # once, for HD95, ASSD and surface Dice
    if distances is None:
        hd, mean_distance = (_empty_value(pred, truth, spacing, 0.0, None),) * 2
        nsd = _empty_value(pred, truth, spacing, 1.0, 0.0)
    else:
        hd, mean_distance = _hd95(*distances), _assd(*distances)
        nsd = _share_within(*distances, tolerance_mm)
    return {"dice": dice(pred, truth), "iou": iou(pred, truth), "hd95_mm": hd, "assd_mm": mean_distance,
            "surface_dice": nsd, "volume_ml": v_pred, "reference_volume_ml": v_truth,
            "volume_error_ml": v_pred - v_truth, "empty_prediction": not pred.any(), "empty_reference": not truth.any()}


def summarize(per_case: Iterable[dict[str, float]]) -> dict[str, float]:
    """Means over cases: Dice, IoU, HD95 and the absolute volume error; counts of empty masks.
    ``dice_std`` is the spread of Dice over the cases (population, ddof = 0)."""
    rows = list(per_case)
    if not rows:
        return {"cases": 0}
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    return {"cases": len(rows), "dice": mean("dice"), "iou": mean("iou"), "hd95_mm": mean("hd95_mm"),
            "assd_mm": mean("assd_mm"), "surface_dice": mean("surface_dice"),
            "abs_volume_error_ml": float(np.mean([abs(r["volume_error_ml"]) for r in rows])),
            "dice_std": float(np.std([r["dice"] for r in rows])),
            "empty_predictions": int(sum(bool(r["empty_prediction"]) for r in rows)),
            "empty_references": int(sum(bool(r["empty_reference"]) for r in rows))}
