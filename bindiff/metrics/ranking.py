"""Full-ranking top-k evaluation for implicit-feedback recommenders.

Every user is ranked against the whole item catalogue (no negative sampling).
Scores are produced and consumed one batch of users at a time, so memory stays
at O(batch_size x n_items) however many users there are.

Conventions shared by every function here:

* Relevance is binary: an item is relevant to a user when the user's row of the
  target matrix stores a non-zero value for it.
* Excluded items (typically the user's training interactions) are never
  returned in a top-k list.  If a user has fewer than k non-excluded items the
  trailing slots hold -1, which never counts as a hit.
* Ties: among equal scores the lower item index ranks first.  The rule is
  applied exactly, so rankings do not depend on the batch size, the device or
  torch's (unstable) ``topk``.
* Per-user metric values are NaN for users whose held-out set is empty; how
  these users enter the mean is the ``empty_users`` policy of
  :func:`evaluate_ranking`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

__all__ = [
    "RankingReport",
    "evaluate_ranking",
    "merge_reports",
    "ndcg_at_k",
    "recall_at_k",
    "topk_excluding",
]

_METRIC_RE = re.compile(r"^(recall|recall_heldout|ndcg|precision|hit|map|mrr|coverage|popularity)@([0-9]+)$")
_VALID_FORMS = ("'recall@K', 'recall_heldout@K', 'ndcg@K', 'precision@K', 'hit@K', 'map@K', 'mrr@K', 'coverage@K' "
                "or 'popularity@K' with K a positive integer")
# Metrics of the recommended lists as a whole rather than of each user's hits.
LIST_METRICS = ("coverage", "popularity")
_EMPTY_POLICIES = ("drop", "zero")


# --------------------------------------------------------------------------- helpers


def _as_csr(matrix, name: str) -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy.sparse matrix, got {type(matrix).__name__}")
    return sp.csr_matrix(matrix)


def _binary_structure(matrix, name: str) -> sp.csr_matrix:
    """Canonical CSR copy whose stored entries are exactly the relevant items.

    Duplicates are summed first and only then are zeros dropped, so an entry
    whose duplicates cancel out is not relevant.  Canonical form (sorted
    indices) is what lets :func:`_hits` use a single ``searchsorted``.
    """
    csr = _as_csr(matrix, name).copy()
    csr.sum_duplicates()
    csr.eliminate_zeros()
    return csr


def _as_index_array(topk_idx) -> np.ndarray:
    if isinstance(topk_idx, torch.Tensor):
        topk_idx = topk_idx.detach().cpu().numpy()
    arr = np.asarray(topk_idx)
    if arr.ndim != 2:
        raise ValueError(f"topk_idx must be 2-D (users, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"topk_idx must hold integer item indices, got dtype {arr.dtype}")
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger) and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"topk_idx holds item index {int(arr.max())}, beyond int64")  # it wrapped to -1: "no item"
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < -1:  # only -1 marks an empty slot; -2 counted as one without a word
        raise ValueError(f"topk_idx holds item index {int(arr.min())}; item indices are >= 0, and -1 marks an empty slot")
    ranked = np.sort(arr, axis=1)
    repeated = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)  # -1 pads a short list
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"topk_idx row {row} lists item {int(ranked[row, 1:][repeated[row]][0])} more than once; "
                         "a ranking holds each item once")
    return arr


def _check_k(k, n_cols: int | None = None, what: str = "topk_idx") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if n_cols is not None and k > n_cols:
        raise ValueError(f"k={k} exceeds the {n_cols} columns of {what}")
    return k


def _hits(topk_idx: np.ndarray, target: sp.csr_matrix, k: int) -> np.ndarray:
    """Boolean (B, k) matrix: is the item at rank r relevant to the user?

    ``target`` must be canonical (see :func:`_binary_structure`).  Each stored
    entry is encoded as ``row * n_items + col``; canonical CSR makes that key
    array sorted, so membership for all B*k queries is one ``searchsorted``.
    """
    n_rows, n_items = target.shape
    idx = topk_idx[:, :k]
    if idx.shape[0] != n_rows:
        raise ValueError(
            f"topk_idx has {idx.shape[0]} rows but target_csr has shape {target.shape}"
        )
    if idx.size and idx.max() >= n_items:
        raise ValueError(f"topk_idx holds item index {idx.max()} >= n_items={n_items}")
    valid = idx >= 0
    if target.nnz == 0 or idx.size == 0:
        return np.zeros(idx.shape, dtype=bool)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(target.indptr))
    keys = rows * n_items + target.indices.astype(np.int64)
    queries = np.arange(n_rows, dtype=np.int64)[:, None] * n_items + np.where(valid, idx, 0)
    pos = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return valid & (keys[pos] == queries)


def _n_heldout(target: sp.csr_matrix) -> np.ndarray:
    return np.diff(target.indptr).astype(np.int64)


def _discounts(k: int) -> np.ndarray:
    # rank r (1-based) is discounted by 1 / log2(r + 1)
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _recall_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int, denominator: str) -> np.ndarray:
    if denominator == "min_k_heldout":
        denom = np.minimum(n_heldout, k)
    elif denominator == "heldout":
        denom = n_heldout
    else:
        raise ValueError(
            f"denominator must be 'min_k_heldout' or 'heldout', got {denominator!r}"
        )
    n_hits = hits[:, :k].sum(axis=1).astype(np.float64)
    out = np.full(n_hits.shape, np.nan, dtype=np.float64)
    np.divide(n_hits, denom, out=out, where=denom > 0)
    return out


def _ndcg_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    disc = _discounts(k)
    dcg = hits[:, :k].astype(np.float64) @ disc
    # ideal_dcg[m] is the DCG of m relevant items at ranks 1..m
    ideal_dcg = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal_dcg[np.minimum(n_heldout, k)]
    out = np.full(dcg.shape, np.nan, dtype=np.float64)
    np.divide(dcg, idcg, out=out, where=n_heldout > 0)
    return out


def _precision_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    return np.where(n_heldout > 0, hits[:, :k].sum(axis=1) / k, np.nan)


def _hit_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    return np.where(n_heldout > 0, hits[:, :k].any(axis=1).astype(np.float64), np.nan)


def _map_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    """Truncated average precision: sum over hit ranks r <= k of precision@r, / min(k, |held-out|)."""
    h = hits[:, :k].astype(np.float64)
    precision_at = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    denom = np.minimum(n_heldout, k).astype(np.float64)
    out = np.full(h.shape[0], np.nan)
    np.divide((precision_at * h).sum(axis=1), denom, out=out, where=denom > 0)
    return out


def _mrr_from_hits(hits: np.ndarray, n_heldout: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k]
    first = np.where(h.any(axis=1), 1.0 / (h.argmax(axis=1) + 1), 0.0)
    return np.where(n_heldout > 0, first, np.nan)


# --------------------------------------------------------------------------- top-k


def _rank_rows_exactly(work: torch.Tensor, excluded: torch.Tensor | None, k: int) -> torch.Tensor:
    """Tie-exact top-k for rows where ``torch.topk``'s own choice cannot be trusted.

    The k-th largest value is unique whatever order ``topk`` returns, so every
    item strictly above it is in the list and the remaining slots go to the
    lowest-indexed eligible items equal to it.  ``work`` already holds -inf at
    excluded positions; ``excluded`` is needed only to tell those apart from
    model -inf scores when the cut falls at -inf.
    """
    n_rows = work.shape[0]
    device = work.device
    threshold = torch.topk(work, k, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    above = work > threshold
    tied = work == threshold
    if excluded is not None:
        tied &= ~excluded
    need = k - above.sum(dim=1, keepdim=True, dtype=torch.int32)
    rank_in_tie = torch.cumsum(tied, dim=1, dtype=torch.int32)
    selected = above | (tied & (rank_in_tie <= need))

    counts = selected.sum(dim=1)
    row_idx, item_idx = selected.nonzero(as_tuple=True)  # row-major: ascending item per row
    if bool((counts == k).all()):
        idx = item_idx.view(n_rows, k)
    else:
        idx = torch.full((n_rows, k), -1, dtype=torch.long, device=device)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(item_idx.numel(), device=device) - starts[row_idx]
        idx[row_idx, slot] = item_idx

    key = work.gather(1, idx.clamp_min(0))
    key.masked_fill_(idx < 0, -math.inf)
    # idx is ascending by item within each row and padding sits at the end,
    # so a stable descending sort yields "lower index first" and padding last.
    order = torch.sort(key, dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def _exclusions(exclude, shape: tuple[int, int]) -> sp.csr_matrix | None:
    """``exclude`` as CSR with only its non-zero entries; None when it excludes nothing."""
    if exclude is None:
        return None
    ex = _as_csr(exclude, "exclude")
    if ex.shape != shape:
        raise ValueError(f"exclude has shape {ex.shape} but scores have shape {shape}")
    if (ex.data == 0).any():
        ex = ex.copy()
        ex.eliminate_zeros()
    return ex if ex.nnz else None


def _working_scores(scores: torch.Tensor, copy: bool) -> torch.Tensor:
    """Scores in a dtype that compares them exactly; a copy when excluded items will be overwritten."""
    if scores.dtype == torch.bool:
        return scores.to(torch.float32)
    if scores.dtype in (torch.uint16, torch.uint32):  # torch compares neither ("gt_cpu"); int64 holds both
        scores = scores.to(torch.int64)
    if scores.dtype == torch.uint64:
        raise TypeError("scores of dtype torch.uint64 cannot be compared by torch; give them as int64 or float64")
    if not scores.is_floating_point():
        beyond = (scores > 2 ** 53) | (scores < -(2 ** 53))
        if bool(beyond.any()):  # float64 would round them (2**60 + 1 tied with 2**60): their dense ranks keep the order
            return torch.unique(scores, sorted=True, return_inverse=True)[1].to(torch.float64)
        return scores.to(torch.float64)  # float64 keeps integer scores exact up to 2**53
    return scores.detach().clone() if copy else scores.detach()  # the caller's tensor must not see the -inf


def _excluded_mask(ex: sp.csr_matrix, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, column) index tensors of the stored entries of ``ex``, for advanced indexing."""
    rows = np.repeat(np.arange(ex.shape[0], dtype=np.int64), np.diff(ex.indptr))
    return torch.from_numpy(rows).to(device), torch.from_numpy(ex.indices.astype(np.int64)).to(device)


def topk_excluding(scores: torch.Tensor, exclude, k: int) -> torch.Tensor:
    """Indices of the k highest-scoring non-excluded items per row.

    Args:
        scores: (B, n_items) tensor, any device.  Integer and boolean scores are
            compared exactly (promoted to float64 / float32).  ``-inf`` is a
            legitimate score that ranks below every finite one but still above
            excluded items; NaN raises ``ValueError``.
        exclude: (B, n_items) scipy sparse matrix; stored non-zero entries are
            excluded items.  ``None`` excludes nothing.
        k: 1 <= k <= n_items.

    Returns:
        (B, k) int64 tensor on ``scores.device``, best first.  Among equal scores
        the lower item index ranks first.  A row with fewer than k
        non-excluded items is padded on the right with -1.

    One ``torch.topk`` of k+1 values decides, per row, whether the tie group
    at the cut lies wholly inside the top k (then the set is right and only
    its order needs fixing, on B x k values).  Only rows whose tie group
    crosses the cut, or whose cut is at -inf, take the exact dense path, so
    real-valued model scores cost little more than a bare ``topk``.
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (batch, n_items), got shape {tuple(scores.shape)}")
    if scores.is_complex():  # the cast to float64 dropped the imaginary part with only a warning
        raise TypeError(f"scores must be real numbers, got {scores.dtype}")
    n_rows, n_items = scores.shape
    k = _check_k(k, n_items, what="scores")
    device = scores.device

    ex = _exclusions(exclude, (n_rows, n_items))
    work = _working_scores(scores, copy=ex is not None)
    if n_rows == 0:
        return torch.empty((0, k), dtype=torch.long, device=device)
    if ex is not None:
        work[_excluded_mask(ex, device)] = -math.inf

    n_top = min(k + 1, n_items)
    vals, idx = torch.topk(work, n_top, dim=1, sorted=True)
    # topk ranks NaN above everything, so any NaN in a row reaches vals
    if torch.isnan(vals).any():
        raise ValueError("scores contain NaN; rankings would be meaningless")
    cut = vals[:, k - 1]
    needs_exact = cut == -math.inf
    if n_top > k:
        needs_exact |= vals[:, k] == cut
    vals, idx = vals[:, :k], idx[:, :k]

    by_item = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_item), vals.gather(1, by_item)
    idx = idx.gather(1, torch.sort(vals, dim=1, descending=True, stable=True).indices)

    exact_rows = needs_exact.nonzero(as_tuple=True)[0]
    if exact_rows.numel():
        excluded = None
        if ex is not None:
            sub = ex[exact_rows.cpu().numpy()]
            excluded = torch.zeros((sub.shape[0], n_items), dtype=torch.bool, device=device)
            excluded[_excluded_mask(sub, device)] = True
        idx[exact_rows] = _rank_rows_exactly(work[exact_rows], excluded, k)
    return idx


# --------------------------------------------------------------------------- per-user metrics


def recall_at_k(topk_idx, target_csr, k: int, denominator: str = "min_k_heldout") -> np.ndarray:
    """Per-user Recall@k.

    Args:
        topk_idx: (B, >=k) item indices, best first (tensor or array); -1 is an
            empty slot.  Rows are expected to hold distinct items.
        target_csr: (B, n_items) sparse held-out interactions.
        k: cut-off; only the first k columns of ``topk_idx`` are used.
        denominator: ``"min_k_heldout"`` divides hits by min(k, |held-out|)
            (Liang et al. 2018, RecPack's CalibratedRecallK), so a perfect
            ranking always scores 1; ``"heldout"`` divides by |held-out|
            (RecBole, DiffRec).

    Returns:
        float64 array of length B; NaN where the held-out set is empty.
    """
    idx = _as_index_array(topk_idx)
    k = _check_k(k, idx.shape[1])
    target = _binary_structure(target_csr, "target_csr")
    return _recall_from_hits(_hits(idx, target, k), _n_heldout(target), k, denominator)


def ndcg_at_k(topk_idx, target_csr, k: int) -> np.ndarray:
    """Per-user NDCG@k with binary relevance.

    DCG = sum_{r=1..k} rel_r / log2(r + 1) and
    IDCG = sum_{r=1..min(k, |held-out|)} 1 / log2(r + 1).

    Returns a float64 array of length B; NaN where the held-out set is empty.
    """
    idx = _as_index_array(topk_idx)
    k = _check_k(k, idx.shape[1])
    target = _binary_structure(target_csr, "target_csr")
    return _ndcg_from_hits(_hits(idx, target, k), _n_heldout(target), k)


# --------------------------------------------------------------------------- evaluator


@dataclass
class RankingReport:
    """Outcome of :func:`evaluate_ranking`.

    ``per_user[name]`` has one entry per row of the input matrices and is NaN
    for users with an empty held-out set under either ``empty_users`` policy;
    the policy only decides how those users enter ``mean``.
    """

    per_user: dict[str, np.ndarray]
    mean: dict[str, float]
    n_users: int
    n_users_evaluated: int
    definitions: dict[str, str]
    empty_users: str = "drop"
    metrics: list[str] = field(default_factory=list)
    recommended: dict[str, np.ndarray] = field(default_factory=dict)  # coverage@K: items in any top-K list

    def to_dict(self, include_per_user: bool = False) -> dict:
        """JSON-ready summary; NaN becomes ``None`` because JSON has no NaN."""

        def clean(x: float):
            x = float(x)
            return None if math.isnan(x) else x

        out = {
            "metrics": list(self.metrics or self.mean),
            "mean": {name: clean(v) for name, v in self.mean.items()},
            "definitions": dict(self.definitions),
            "n_users": int(self.n_users),
            "n_users_evaluated": int(self.n_users_evaluated),
            "empty_users": self.empty_users,
        }
        if include_per_user:
            out["per_user"] = {
                name: [clean(v) for v in arr] for name, arr in self.per_user.items()
            }
        return out


def _parse_metrics(metrics: Sequence[str]) -> list[tuple[str, str, int]]:
    if isinstance(metrics, str):
        metrics = [metrics]
    parsed: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for raw in metrics:
        m = _METRIC_RE.match(str(raw).strip().lower())
        if m is None or int(m.group(2)) < 1:
            raise ValueError(f"unknown metric {raw!r}; valid forms are {_VALID_FORMS}")
        kind, k = m.group(1), int(m.group(2))
        name = f"{kind}@{k}"
        if name not in seen:
            seen.add(name)
            parsed.append((name, kind, k))
    if not parsed:
        raise ValueError(f"no metrics requested; valid forms are {_VALID_FORMS}")
    return parsed


def _definition(kind: str, k: int, empty_users: str) -> str:
    if kind == "recall":
        text = (
            f"Recall@{k} = hits in top-{k} / min({k}, |held-out|) "
            "(Liang et al. 2018; RecPack CalibratedRecallK)"
        )
    elif kind == "recall_heldout":
        text = f"Recall@{k} = hits in top-{k} / |held-out| (RecBole; DiffRec)"
    elif kind == "ndcg":
        text = (
            f"NDCG@{k} = DCG@{k} / IDCG@{k}, binary relevance, "
            f"DCG = sum_(r=1..{k}) rel_r / log2(r+1), "
            f"IDCG = sum_(r=1..min({k}, |held-out|)) 1 / log2(r+1)"
        )
    else:
        text = {
            "precision": f"Precision@{k} = hits in top-{k} / {k}",
            "hit": f"Hit@{k} = 1 if any held-out item is in the top {k}, else 0",
            "map": f"MAP@{k} = mean over users of sum_(hit ranks r <= {k}) Precision@r / min({k}, |held-out|)",
            "mrr": f"MRR@{k} = mean over users of 1 / rank of the first hit in the top {k} (0 if none)",
            "coverage": f"Coverage@{k} = distinct items in the evaluated users' top-{k} lists / all items",
            "popularity": f"Popularity@{k} = mean over users of the mean popularity (share of training users "
                          f"with the item) of their top-{k} items",
        }[kind]
    if kind == "popularity":  # a property of the lists, not of the held-out items
        return (f"{text}; the mean is over the evaluated users with a non-empty list, whatever the "
                "empty_users policy; excluded items are never ranked; equal scores rank the lower item index first")
    if empty_users == "drop":
        policy = "users with an empty held-out set are dropped from the mean"
    else:
        policy = "users with an empty held-out set count as 0 in the mean"
    return (
        f"{text}; {policy}; excluded items are never ranked; "
        "equal scores rank the lower item index first"
    )


def _checked_matrices(input_csr, exclude_csr, target_csr):
    """The three matrices as CSR (the target reduced to its relevant items), of one shape."""
    inputs = _as_csr(input_csr, "input_csr")
    target = _binary_structure(target_csr, "target_csr")
    exclude = None if exclude_csr is None else _as_csr(exclude_csr, "exclude_csr")
    shapes = {"input_csr": inputs.shape, "target_csr": target.shape}
    if exclude is not None:
        shapes["exclude_csr"] = exclude.shape
    if len(set(shapes.values())) != 1:
        detail = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"input, exclude and target matrices must have the same shape; got {detail}")
    return inputs, exclude, target


def _metric_values(parsed, hits: np.ndarray, n_held: np.ndarray) -> dict[str, np.ndarray]:
    """Per-user values of every parsed metric for one batch of users."""
    per_user_metric = {"ndcg": _ndcg_from_hits, "precision": _precision_from_hits, "hit": _hit_from_hits,
                       "map": _map_from_hits, "mrr": _mrr_from_hits}
    out = {}
    for name, kind, k in parsed:
        if kind in LIST_METRICS:
            continue
        if kind in per_user_metric:
            out[name] = per_user_metric[kind](hits, n_held, k)
        else:
            out[name] = _recall_from_hits(hits, n_held, k, "min_k_heldout" if kind == "recall" else "heldout")
    return out


def evaluate_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    input_csr,
    exclude_csr,
    target_csr,
    metrics: Sequence[str],
    batch_size: int = 1024,
    empty_users: str = "drop",
    progress: bool | None = False,
    device: str | torch.device | None = None,
    item_popularity: np.ndarray | None = None,
    report: Callable[[str], None] | None = None,
) -> RankingReport:
    """Stream users through ``score_fn`` and compute full-ranking top-k metrics.

    Args:
        score_fn: maps a float32 (b, n_items) batch of densified input rows to
            (b, n_items) scores (higher is better).  Called under
            ``torch.no_grad()``; it may return its scores on any device.
        input_csr: (n_users, n_items) sparse model input (e.g. training
            interactions, fold-in history).
        exclude_csr: (n_users, n_items) sparse items never to recommend (e.g.
            the training interactions, or train + validation when testing);
            ``None`` excludes nothing.
        target_csr: (n_users, n_items) sparse held-out items.
        metrics: names such as ``"recall@20"`` (hits / min(k, |held-out|)),
            ``"recall_heldout@20"`` (hits / |held-out|), ``"ndcg@100"``, ``"precision@10"``,
            ``"hit@10"``, ``"map@10"``, ``"mrr@10"``, and two of the lists as a whole:
            ``"coverage@10"`` (share of all items in some evaluated user's top 10) and
            ``"popularity@10"`` (mean ``item_popularity`` of the recommended items).
        batch_size: users per ``score_fn`` call; results do not depend on it
            unless ``score_fn`` itself does (one that draws random bits batch after batch).
        empty_users: how users with an empty held-out set enter the mean.

            * ``"drop"``: excluded from the mean (Liang et al. 2018, RecPack).
            * ``"zero"``: count as 0, i.e. the mean is the sum over users with
              held-out items divided by all ``n_users``.  This is what DiffRec
              does: in ``DiffRec/evaluate_utils.py``, ``computeTopNAccuracy``
              skips users with ``len(GroundTruth[i]) == 0`` when summing
              (line 18) but divides every sum by ``len(predictedIndices)``
              (lines 48-51), and ``DiffRec/main.py``'s ``evaluate`` passes one
              ground-truth list and one prediction per row of the full user
              matrix (``e_N = mask_his.shape[0]``), empty lists included.  Its
              Recall is hits / |held-out| (line 44) and its IDCG runs over
              min(k, |held-out|) ranks (lines 24, 36-38), so the DiffRec setup
              is ``["recall_heldout@K", "ndcg@K"]`` with ``empty_users="zero"``.
              (DiffRec also rounds the means to 4 decimals; we do not.)

            Users with an empty held-out set are never passed to ``score_fn``
            under either policy since their scores cannot affect any metric.
        progress: show a tqdm bar over batches (``None``: on a terminal only).
        device: where the batch input tensor is placed before ``score_fn``
            (default CPU).
        item_popularity: (n_items,) popularity of each item (e.g. the share of training
            users with it); needed by ``popularity@K`` only.
        report: called with one line per finished batch (a log where no bar is drawn).

    Raises:
        ValueError: unknown metric name, mismatched matrix shapes, k larger than
            the number of items, bad ``empty_users``/``batch_size``, or a
            ``score_fn`` output of the wrong shape or containing NaN.
    """
    parsed = _parse_metrics(metrics)
    if empty_users not in _EMPTY_POLICIES:
        raise ValueError(f"empty_users must be one of {_EMPTY_POLICIES}, got {empty_users!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    inputs, exclude, target = _checked_matrices(input_csr, exclude_csr, target_csr)
    n_users, n_items = inputs.shape
    k_max = max(k for _, _, k in parsed)
    if k_max > n_items:
        raise ValueError(f"largest cut-off k={k_max} exceeds n_items={n_items}")

    popularity = None
    if any(kind == "popularity" for _, kind, _ in parsed):
        if item_popularity is None or np.shape(item_popularity) != (n_items,):
            raise ValueError(f"popularity@K needs item_popularity, one value for each of the {n_items} items")
        popularity = np.asarray(item_popularity, dtype=np.float64)
    n_heldout_all = _n_heldout(target)
    users = np.flatnonzero(n_heldout_all > 0)
    per_user = {name: np.full(n_users, np.nan, dtype=np.float64) for name, kind, _ in parsed if kind != "coverage"}
    recommended = {name: np.zeros(n_items, dtype=bool) for name, kind, _ in parsed if kind == "coverage"}
    in_device = torch.device("cpu") if device is None else torch.device(device)

    from tqdm.auto import tqdm

    n_batches = -(-users.size // int(batch_size))
    disable = None if progress is None else not progress
    with torch.no_grad(), tqdm(total=n_batches, disable=disable, desc="ranking eval", unit="batch") as bar:
        for batch_number, start in enumerate(range(0, users.size, int(batch_size)), 1):
            rows = users[start : start + int(batch_size)]
            batch = torch.from_numpy(inputs[rows].toarray().astype(np.float32, copy=False))
            scores = torch.as_tensor(score_fn(batch.to(in_device)))
            if tuple(scores.shape) != (rows.size, n_items):
                raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected {(rows.size, n_items)}")
            top = topk_excluding(scores, None if exclude is None else exclude[rows], k_max).cpu().numpy()
            hits = _hits(top, target[rows], k_max)
            for name, values in _metric_values(parsed, hits, n_heldout_all[rows]).items():
                per_user[name][rows] = values
            for name, kind, k in parsed:
                lists = top[:, :k]
                if kind == "coverage":
                    recommended[name][lists[lists >= 0]] = True
                elif kind == "popularity":
                    values = np.where(lists >= 0, popularity[np.maximum(lists, 0)], 0.0)
                    listed = (lists >= 0).sum(axis=1)
                    # a user with every item excluded has no list, so no popularity (not 0)
                    per_user[name][rows] = np.where(listed > 0, values.sum(axis=1) / np.maximum(listed, 1), np.nan)
            bar.update(1)
            if report is not None:
                report(f"ranking: batch {batch_number}/{n_batches} ({min(start + int(batch_size), users.size)} of "
                       f"{users.size} users)")

    return RankingReport(
        per_user=per_user,
        mean=_means(per_user, int(n_users), int(users.size), empty_users, recommended, [name for name, _, _ in parsed]),
        recommended=recommended,
        n_users=int(n_users),
        n_users_evaluated=int(users.size),
        definitions={name: _definition(kind, k, empty_users) for name, kind, k in parsed},
        empty_users=empty_users,
        metrics=[name for name, _, _ in parsed],
    )


def _means(per_user: dict[str, np.ndarray], n_users: int, n_evaluated: int, empty_users: str,
           recommended: dict[str, np.ndarray] | None = None, order: list[str] | None = None) -> dict[str, float]:
    denom = n_evaluated if empty_users == "drop" else n_users
    means = {name: float(np.nansum(values) / denom) if denom else float("nan") for name, values in per_user.items()}
    for name, values in per_user.items():  # popularity describes a list: users without one have no value
        if name.startswith("popularity@"):
            listed = ~np.isnan(values)
            means[name] = float(values[listed].mean()) if listed.any() else float("nan")
    for name, items in (recommended or {}).items():  # a share of the catalogue, not a mean over users
        means[name] = float(items.mean()) if items.size else float("nan")
    return {name: means[name] for name in (order or means)}


def merge_reports(parts: Sequence[RankingReport]) -> RankingReport:
    """One report for users split into consecutive blocks (e.g. one per process), in order.

    The means are taken over the concatenated per-user values, so they equal the report of
    evaluating all users at once.
    """
    if not parts:
        raise ValueError("merge_reports needs at least one report")
    first = parts[0]
    for i, part in enumerate(parts[1:], 1):  # the means would take the first report's policy, or a KeyError
        if list(part.metrics) != list(first.metrics) or part.empty_users != first.empty_users:
            raise ValueError(f"merge_reports: report {i} has metrics {list(part.metrics)} and empty_users="
                             f"{part.empty_users!r}, report 0 has {list(first.metrics)} and {first.empty_users!r}; "
                             "the reports of one evaluation share both")
    per_user = {name: np.concatenate([p.per_user[name] for p in parts]) for name in first.per_user}
    recommended = {name: np.logical_or.reduce([p.recommended[name] for p in parts]) for name in first.recommended}
    n_users = sum(p.n_users for p in parts)
    n_evaluated = sum(p.n_users_evaluated for p in parts)
    return RankingReport(per_user=per_user,
                         mean=_means(per_user, n_users, n_evaluated, first.empty_users, recommended,
                                     list(first.metrics) or None),
                         n_users=n_users, n_users_evaluated=n_evaluated, definitions=dict(first.definitions),
                         empty_users=first.empty_users, metrics=list(first.metrics), recommended=recommended)
