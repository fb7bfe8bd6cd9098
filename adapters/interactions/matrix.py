"""From raw interactions to a binary sparse user x item matrix.

Binarisation (rating threshold), k-core filtering and the id maps that tie
matrix rows and columns back to the raw ids. Everything stays sparse: a dense
users x items array of ML-scale data would not fit a laptop's memory. Interaction
times, where the data have them, ride along as one value per stored entry.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from .readers import RawInteractions

__all__ = ["InteractionMatrix", "build_matrix", "index_ids", "binary_csr"]


@dataclass(frozen=True, eq=False)
class InteractionMatrix:
    """Binary float32 CSR (users x items) with raw ids for its rows and columns.

    time: None, or each stored entry's time, aligned with ``matrix.indices`` (the CSR's
    indices are sorted): nnz values, never users x items.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str = ""
    time: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = self.source or "InteractionMatrix"
        if not sp.issparse(self.matrix) or self.matrix.ndim != 2:
            raise TypeError(f"{where}: matrix must be a 2-D scipy.sparse matrix (users x items), "
                            f"got {type(self.matrix).__name__}")
        for name, n in (("user_ids", self.matrix.shape[0]), ("item_ids", self.matrix.shape[1])):
            if np.ndim(getattr(self, name)) != 1 or len(getattr(self, name)) != n:
                raise ValueError(f"{where}: {name} must hold one id per {'row' if name == 'user_ids' else 'column'} "
                                 f"of the {self.matrix.shape[0]} x {self.matrix.shape[1]} matrix, got shape "
                                 f"{np.shape(getattr(self, name))}")
        matrix = self.matrix
        if not (matrix.format == "csr" and matrix.dtype == np.float32 and matrix.has_canonical_format
                and (matrix.data == 1).all()):
            # every split reads each stored entry as an interaction: a stored zero (or a duplicate) would become
            # one; the binary float32 CSR that build_matrix makes, with duplicates merged and zeros dropped
            if self.time is not None and not (matrix.format == "csr" and matrix.has_canonical_format
                                              and (matrix.data != 0).all()):
                raise ValueError(f"{where}: with time, matrix must be a CSR matrix with sorted indices, no duplicate "
                                 "and no stored zero (time is aligned with its entries)")
            # zeros dropped in the matrix's own dtype: a float64 1e-50 cast first became a float32 0 and was
            # dropped (an interaction lost, or with time a "times for interactions" mismatch)
            matrix = sp.csr_matrix(matrix, copy=True)
            matrix.sum_duplicates()
            matrix.eliminate_zeros()
            matrix = sp.csr_matrix((np.ones(matrix.nnz, np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)
            object.__setattr__(self, "matrix", matrix)
        if self.time is not None and len(self.time) != self.matrix.nnz:
            raise ValueError(f"{self.source}: {len(self.time)} times for {self.matrix.nnz} interactions")

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    @property
    def nnz(self) -> int:
        return self.matrix.nnz


def build_matrix(raw: RawInteractions, min_rating: float | None = None, k_core: int = 0,
                 pair_time: str = "latest") -> InteractionMatrix:
    """Keep interactions with rating >= min_rating, merge duplicates, apply the k-core.

    min_rating=None keeps every row; k_core=0 (or 1) leaves the matrix as it is. A user-item pair
    rated more than once is kept when any of its ratings passes min_rating. When ``raw.time`` is
    given, the matrix carries it (``InteractionMatrix.time``): a pair that occurs more than once
    keeps its LATEST time among the rows that pass min_rating (the last time the user chose the
    item; a user's latest items are those chosen last), or with ``pair_time="earliest"`` its
    earliest (when the user first chose it: a global cut-off in time then trains on every pair
    chosen before it), and the k-core keeps the times of the entries it keeps.
    """
    if pair_time not in ("latest", "earliest"):
        raise ValueError(f"pair_time must be 'latest' or 'earliest', got {pair_time!r}")
    if isinstance(k_core, bool) or not isinstance(k_core, (int, np.integer)) or k_core < 0:
        raise DataError(f"{raw.source}: k_core must be an integer >= 0, got {k_core!r}")
    if len(raw) == 0:
        raise DataError(f"{raw.source}: no interactions")
    users, items, times = raw.user, raw.item, raw.time
    if min_rating is not None and (isinstance(min_rating, bool) or not isinstance(min_rating, numbers.Real)
                                   or not _comparable(min_rating)):
        raise DataError(f"{raw.source}: min_rating must be null or a number, got {min_rating!r}")
    if times is not None:
        times = _numeric_times(np.asarray(times), raw.source)
        if times.dtype.kind not in "iuf" or (times.dtype.kind == "f" and not np.isfinite(times).all()):
            raise DataError(f"{raw.source}: each interaction's time must be a finite number; got "
                            + (f"dtype {times.dtype}" if times.dtype.kind not in "iuf"
                               else f"{float(times[~np.isfinite(times)][0])!r} at row {int(np.flatnonzero(~np.isfinite(times))[0])}"))
    if min_rating is not None:
        if raw.rating is None:
            raise DataError(
                f"{raw.source}: min_rating={min_rating} was given but the data have no ratings "
                "(already implicit feedback); set min_rating to null"
            )
        keep = raw.rating >= min_rating
        if not keep.any():
            raise DataError(
                f"{raw.source}: no interactions left after keeping ratings >= {min_rating} "
                f"(ratings range from {raw.rating.min():g} to {raw.rating.max():g})"
            )
        users, items = users[keep], items[keep]
        times = None if times is None else times[keep]

    user_ids, rows = index_ids(users, "user ids", raw.source)
    item_ids, cols = index_ids(items, "item ids", raw.source)
    matrix = binary_csr(rows, cols, (len(user_ids), len(item_ids)))
    time = None if times is None else _pair_times(rows, cols, np.asarray(times), matrix, pair_time)

    if k_core > 1:
        before = matrix
        matrix, kept_users, kept_items = _k_core(matrix, k_core)
        if matrix.nnz == 0:
            raise DataError(
                f"{raw.source}: k_core={k_core} removed every user and item "
                f"(min_rating={min_rating}); lower k_core"
            )
        user_ids, item_ids = user_ids[kept_users], item_ids[kept_items]
        if time is not None:
            time = time[entry_positions(before, kept_users, kept_items)]
    return InteractionMatrix(matrix, user_ids, item_ids, raw.source, time)


def _numeric_times(times: np.ndarray, source: str) -> np.ndarray:
    """datetime64 times (a pandas column's ``.values``) as Unix seconds, as the readers give ISO dates;
    an object column of numbers as the numbers (both were split before; the number check refused them)."""
    if times.dtype.kind == "M":
        if np.isnat(times).any():
            raise DataError(f"{source}: each interaction's time must be a finite number; got NaT at row "
                            f"{int(np.flatnonzero(np.isnat(times))[0])}")
        micro = times.astype("datetime64[us]").astype(np.int64)
        return micro // 10 ** 6 if (micro % 10 ** 6 == 0).all() else micro / 1e6
    if times.dtype.kind == "O" and all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                       for v in times.tolist()):
        return np.asarray(times.tolist())  # int64, float64, or object again for ints beyond int64
    return times


def _comparable(value) -> bool:
    """A number ratings can be compared with: NaN keeps nothing, 10 ** 400 overflows float64."""
    try:
        return not math.isnan(value)
    except OverflowError:
        return False


def _pair_times(rows: np.ndarray, cols: np.ndarray, times: np.ndarray, matrix: sp.csr_matrix,
                which: str) -> np.ndarray:
    """The latest (or earliest) time of each (row, col) pair, in the order of ``matrix``'s entries
    (row-major, columns sorted, as ``binary_csr`` leaves them): sorted by (row, col, time), each pair's
    last (or first) row wins."""
    order = np.lexsort((times, cols, rows))
    rows, cols = rows[order], cols[order]
    new_pair = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    chosen = np.ones(len(order), dtype=bool)
    if which == "latest":
        chosen[:-1] = new_pair
    else:
        chosen[1:] = new_pair
    if int(chosen.sum()) != matrix.nnz or not np.array_equal(cols[chosen], matrix.indices):
        raise AssertionError("the times do not line up with the matrix entries")  # a bug, never bad input
    return times[order[chosen]]


def entry_positions(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Where each entry of ``matrix[rows][:, cols]`` (indices sorted) sits among ``matrix``'s entries, so that
    per-entry values (times) follow a row and column selection. Sparse: a CSR of entry numbers, sliced
    as the matrix is (numbered from 1, so that no entry is a zero a slice could drop)."""
    matrix = matrix.tocsr()
    numbers = sp.csr_matrix((np.arange(1, matrix.nnz + 1, dtype=np.int64), matrix.indices, matrix.indptr),
                            shape=matrix.shape)
    picked = numbers[np.asarray(rows)][:, np.asarray(cols)].tocsr()
    picked.sort_indices()
    return picked.data - 1


def index_ids(ids: np.ndarray, what: str = "ids", source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Distinct ids and each entry's index into them.

    Integer-looking ids are ordered by value (so "2" < "10", and DiffRec's
    0-based ids land on their own row); other ids in string order. One number written two ways
    ("1" and "01", "3" and "3.0", as a pandas export writes a column that held a NaN) is
    refused, naming ``what`` and ``source``: kept apart, one user's history would be split in two.
    """
    ids = np.asarray(ids)
    if ids.dtype == object:  # long ids (see the readers): distinct ones first, so only they take a fixed width
        first_seen: dict = {}
        code = np.fromiter((first_seen.setdefault(i, len(first_seen)) for i in ids.tolist()), np.int64, len(ids))
        distinct, order = np.unique(np.array(list(first_seen), dtype=str), return_inverse=True)
        inverse = order.ravel()[code]
    else:
        distinct, inverse = np.unique(ids.astype(str), return_inverse=True)
    try:
        values = distinct.astype(np.int64)
    except (ValueError, OverflowError):
        _refuse_two_spellings(distinct, _as_floats(distinct), what, source)
        return distinct, inverse.ravel()
    _refuse_two_spellings(distinct, values, what, source)
    order = np.lexsort((distinct, values))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[inverse.ravel()]


# plain decimal text only: "0e12" and "1e10" are hex hashes as often as numbers, and two of them
# are different ids even where float() reads both as 0
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*")


def _as_floats(distinct: np.ndarray) -> np.ndarray:
    """Each id written as a plain decimal number ("3.0" as 3), NaN for any other id ("u3", "1e5")."""
    return np.array([float(i) if _DECIMAL.fullmatch(i) else math.nan for i in distinct.tolist()], dtype=np.float64)


def _refuse_two_spellings(distinct: np.ndarray, values: np.ndarray, what: str, source: str) -> None:
    """DataError when two distinct ids are the same number (exactly: long numbers a float64 rounds
    together stay apart)."""
    # every number, those beyond float64's range (inf, over ~309 digits) too: Decimal compares them exactly
    numbers = np.flatnonzero(~np.isnan(values)) if values.dtype.kind == "f" else np.arange(len(values))
    if len(numbers) < 2:
        return
    order = numbers[np.argsort(values[numbers], kind="stable")]
    ties = np.flatnonzero(values[order][1:] == values[order][:-1])
    for start in ties[np.r_[True, np.diff(ties) > 1]].tolist() if ties.size else []:  # each run of equal floats
        end = start + 1
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        seen: dict = {}
        for index in order[start:end + 1].tolist():
            exact = Decimal(str(distinct[index]).strip())
            if exact not in seen:
                seen[exact] = distinct[index]
                continue
            a, b = seen[exact], distinct[index]
            raise DataError(f"{source + ': ' if source else ''}{what} {str(a)!r} and {str(b)!r} are one number "
                            "written two ways; write each id one way (they would be two different ids)")


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """Float32 CSR with a 1 at every (row, col), duplicates merged, indices sorted."""
    ones = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((ones, (np.asarray(rows), np.asarray(cols))), shape=shape, dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _k_core(matrix: sp.csr_matrix, k: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Drop users and items with fewer than k interactions until none is left to drop."""
    kept_users = np.arange(matrix.shape[0])
    kept_items = np.arange(matrix.shape[1])
    while True:
        user_ok = np.diff(matrix.indptr) >= k
        item_ok = np.bincount(matrix.indices, minlength=matrix.shape[1]) >= k
        if user_ok.all() and item_ok.all():
            return matrix, kept_users, kept_items
        matrix = matrix[user_ok][:, item_ok].tocsr()
        kept_users, kept_items = kept_users[user_ok], kept_items[item_ok]
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            return matrix, kept_users, kept_items
