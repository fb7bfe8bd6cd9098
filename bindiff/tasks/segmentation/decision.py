"""From a probability map to a mask: a fixed threshold, or the mask of highest expected Dice.

With independent voxels of probabilities p, the Dice of a mask S against the unknown truth Y is
2|S ∩ Y| / (|S| + |Y|). Its expectation is close to the ratio of expectations,
2 Σ_{i∈S} p_i / (|S| + Σ_i p_i), once the mask holds many voxels (|Y| then concentrates). For a
given size k that ratio is largest on the k most probable voxels, so the best mask is the top k
for the k that maximises it. Adding a voxel raises the ratio exactly when its probability exceeds
half the ratio reached, so the rule thresholds each case at half its own expected Dice: a little
under ½, further under it where the case is uncertain. The rule is only as good as the
probabilities are calibrated, which is what sampling from the posterior is for.

The empty mask is a candidate too: under the empty-mask rule (both empty: Dice 1) its expected
Dice is exactly P(the truth is empty) = Π (1 − p_i), which wins where the structure is likely
absent (a tumour without an enhancing part); the ratio above would never pick it.
"""

from __future__ import annotations

import numpy as np

DECISIONS = ("threshold", "expected_dice")


def expected_dice_mask(prob: np.ndarray) -> np.ndarray:
    """The mask (bool, the shape of ``prob``) of the largest 2 Σ_S p / (|S| + Σ p): the top k voxels."""
    flat = np.asarray(prob, dtype=np.float64).reshape(-1)
    mask = np.zeros(flat.shape, dtype=bool)
    total = flat.sum()
    if total <= 0:
        return mask.reshape(np.shape(prob))  # nothing can be there: the empty mask is certain
    order = np.argsort(-flat, kind="stable")
    ratio = 2 * np.cumsum(flat[order]) / (np.arange(1, flat.size + 1) + total)
    with np.errstate(divide="ignore"):
        truth_empty = float(np.exp(np.log1p(-np.minimum(flat, 1.0)).sum()))  # Π (1 − p_i); 0 if any p is 1
    if truth_empty < ratio.max():
        mask[order[: int(np.argmax(ratio)) + 1]] = True
    return mask.reshape(np.shape(prob))


def foreground(prob: np.ndarray, cfg: dict) -> np.ndarray:
    """The mask of one case's probabilities under the recipe's ``segmentation.decision``."""
    if cfg["decision"] == "expected_dice":
        return expected_dice_mask(prob)
    return np.asarray(prob) >= cfg["threshold"]
