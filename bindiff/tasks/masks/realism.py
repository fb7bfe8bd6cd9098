"""How real generated masks look, beyond counting components: orientation and a two-sample test.

- ``orientation_share``: the share of masks closer (in squared distance) to the mean real mask
  than to its mirror image along an axis. Real hippocampi all face one way; a model trained on
  mirrored copies, or one that ignores position, produces mirror images about half the time.
- ``shape_descriptors``: volume, centroid and spread along each axis, in voxels.
- ``mmd_test``: a kernel two-sample test (maximum mean discrepancy with a Gaussian kernel on
  standardised descriptors, bandwidth by the median heuristic) with a seeded permutation
  p-value: "can these samples be told apart from held-out real masks?".
"""

from __future__ import annotations

import numpy as np


def orientation_share(masks: np.ndarray, mean_real: np.ndarray, axis: int = 0) -> float:
    """Share of ``masks`` (n, *grid) closer to ``mean_real`` than to its mirror image along ``axis``."""
    if not len(masks):
        return float("nan")
    flat = masks.reshape(len(masks), -1).astype(np.float64)
    ref = mean_real.reshape(-1).astype(np.float64)
    mirror = np.flip(mean_real, axis=axis).reshape(-1).astype(np.float64)
    to_ref = ((flat - ref) ** 2).sum(1)
    to_mirror = ((flat - mirror) ** 2).sum(1)
    return float(np.mean(to_ref < to_mirror))


def shape_descriptors(masks: np.ndarray) -> np.ndarray:
    """(n, 1 + 2 · ndim): volume, centroid per axis, standard deviation of the voxels per axis."""
    rows = []
    for mask in masks:
        idx = np.argwhere(mask)
        if len(idx) == 0:
            rows.append(np.zeros(1 + 2 * mask.ndim))
            continue
        rows.append(np.concatenate([[len(idx)], idx.mean(0), idx.std(0)]))
    return np.asarray(rows, dtype=np.float64)


def _mmd2(k: np.ndarray, n: int) -> float:
    """Biased MMD² from the joint kernel matrix; the first n rows are one sample."""
    a, b, ab = k[:n, :n], k[n:, n:], k[:n, n:]
    return float(a.mean() + b.mean() - 2 * ab.mean())


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 1000, seed: int = 0) -> dict:
    """MMD² between descriptor sets x and y and its permutation p-value (seeded). The kernel is
    exp(-|z - z'|² / m) with m the median squared distance between the pooled descriptors, each
    standardised by y's mean and standard deviation; p = (exceed + 1) / (permutations + 1)."""
    if len(x) < 2 or len(y) < 2:
        return {"mmd2": float("nan"), "p_value": float("nan"), "permutations": 0}
    joint = np.concatenate([x, y])
    scale = y.std(0)
    scale[scale == 0] = 1.0
    z = (joint - y.mean(0)) / scale  # standardised on the real masks
    sq = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    bandwidth = np.median(sq[np.triu_indices(len(z), 1)]) or 1.0
    k = np.exp(-sq / bandwidth)
    observed = _mmd2(k, len(x))
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(permutations):
        order = rng.permutation(len(z))
        exceed += _mmd2(k[np.ix_(order, order)], len(x)) >= observed
    return {"mmd2": observed, "p_value": float((exceed + 1) / (permutations + 1)), "permutations": permutations}
