"""Seeded synthetic interaction matrices shaped like real recommendation data, for benchmarks.

Two ingredients make the data look like MovieLens, Netflix or the Million Song Dataset:

- item popularity follows a Zipf-Mandelbrot law: the item of popularity rank r has sampling
  weight (r + item_offset)^(-item_exponent). The offset flattens the head: with plain Zipf
  (offset 0) the most popular item lands in 97 % of ML-1M-sized histories, against 48 % in
  the real data; the defaults (offset 30, exponent 1.2) give 53 % and the real top-20 %
  share of interactions (67 % against 66 %). Ranks are assigned to columns by a random
  permutation, so a column's index says nothing about its popularity (as in real data);
- user activity is heavy-tailed: a user's item count is log-normal (σ = activity_sigma),
  scaled so that the counts add up to exactly n_interactions, and clipped to
  [min_items, n_items].

Each user's items are a weighted sample without replacement ("successive sampling", what
``numpy.random.Generator.choice(n_items, k, replace=False, p=p)`` draws): the first item
with probability p, the next among those left with probability proportional to p, and so
on. Two exact methods draw it, chosen by how much of the catalogue a user takes:

- most users: draw items with replacement and keep the first k distinct ones, which is
  successive sampling by definition. Draws are made for many users at once, oversampled so
  that a few rounds suffice;
- users who take more than an eighth of the catalogue (with replacement, they would wait
  long for the rare items): exponential races. Item i finishes at E_i / p_i with E_i ~ Exp(1)
  and the first k finishers are a successive sample (Efraimidis and Spirakis 2006). This
  needs a dense row of n_items numbers, at most eight times the user's own item count.

Users are processed in chunks of about _CHUNK_INTERACTIONS interactions, so memory grows
with the number of interactions, never with users × items. One ``numpy.random.default_rng``
is the only source of randomness: the same arguments and seed give the same matrix.

Named presets carry the sizes of the preprocessed data sets in Liang et al. 2018
("Variational Autoencoders for Collaborative Filtering", table 1) and of DiffRec's ML-1M.
A recipe asks for one with ``data.dataset: synthetic:<preset>`` (or
``synthetic:<users>x<items>x<interactions>``); see :func:`synthetic_dataset`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from ..values import is_integer, scalar
from .matrix import InteractionMatrix, _k_core

__all__ = [
    "SYNTHETIC_PREFIX",
    "SYNTHETIC_PRESETS",
    "SyntheticPreset",
    "synthetic_dataset",
    "synthetic_interactions",
    "synthetic_preset",
    "weighted_sample_without_replacement",
]

SYNTHETIC_PREFIX = "synthetic:"

# Interactions generated at once. Changing it changes the matrix a seed gives (the random
# stream is consumed chunk by chunk), so it is a fixed constant, not a tuning knob.
_CHUNK_INTERACTIONS = 1 << 19
# Users taking more than this share of the items are drawn by exponential races.
_DENSE_ABOVE_SHARE = 1 / 8
# Draws per missing item in a round: 1 / (probability mass not yet taken), times this.
_OVERSAMPLE = 1.1


@dataclass(frozen=True)
class SyntheticPreset:
    n_users: int
    n_items: int
    n_interactions: int
    min_items: int
    description: str


SYNTHETIC_PRESETS: dict[str, SyntheticPreset] = {
    "tiny": SyntheticPreset(400, 300, 8_000, 5, "tiny, for tests: 400 users, 300 items, 8,000 interactions"),
    "ml-1m": SyntheticPreset(5_949, 2_810, 571_531, 10,
                             "the size of DiffRec's ML-1M (ratings >= 4), which recipes/ml1m.yaml reads"),
    "ml-1m-ratings": SyntheticPreset(6_040, 3_706, 1_000_209, 20,
                                     "the size of GroupLens' ML-1M with every rating kept"),
    "ml-20m": SyntheticPreset(136_677, 20_108, 10_000_000, 5,
                              "the size of ML-20M as preprocessed by Liang et al. 2018"),
    "netflix": SyntheticPreset(463_435, 17_769, 56_900_000, 5,
                               "the size of the Netflix Prize data as preprocessed by Liang et al. 2018"),
    "msd": SyntheticPreset(571_355, 41_140, 33_600_000, 20,
                           "the size of the Million Song Dataset as preprocessed by Liang et al. 2018"),
}

_SIZE_SPEC = re.compile(r"(\d+)x(\d+)x(\d+)")
_DEFAULT_MIN_ITEMS = 5


def synthetic_interactions(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    seed,
    item_exponent: float = 1.2,
    item_offset: float = 30.0,
    activity_sigma: float = 1.0,
    min_items: int = _DEFAULT_MIN_ITEMS,
) -> sp.csr_matrix:
    """A binary float32 CSR matrix (n_users × n_items) holding exactly n_interactions ones.

    seed: anything ``numpy.random.default_rng`` takes (an int, a SeedSequence).
    item_exponent, item_offset: rank r has sampling weight (r + item_offset)^-item_exponent.
    activity_sigma: σ of the log-normal user item counts before clipping.
    min_items: the fewest items a user has (real data sets drop users below a threshold).
    ValueError when the sizes are impossible.
    """
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_interactions", n_interactions),
                        ("min_items", min_items)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if min_items > n_items:
        raise ValueError(f"min_items={min_items} exceeds n_items={n_items}")
    if not n_users * min_items <= n_interactions <= n_users * n_items:
        raise ValueError(
            f"n_interactions={n_interactions} is impossible for {n_users} users with {min_items} to {n_items} "
            f"items each: it must lie in [{n_users * min_items}, {n_users * n_items}]"
        )
    if not item_exponent >= 0 or not activity_sigma >= 0 or not item_offset >= 0:
        raise ValueError(f"item_exponent, item_offset and activity_sigma must be >= 0, got {item_exponent!r}, "
                         f"{item_offset!r}, {activity_sigma!r}")

    rng = np.random.default_rng(seed)
    rank_weights = (np.arange(1, n_items + 1, dtype=np.float64) + float(item_offset)) ** -float(item_exponent)
    probabilities = np.empty(n_items)
    probabilities[rng.permutation(n_items)] = rank_weights / rank_weights.sum()
    activity = np.exp(activity_sigma * rng.standard_normal(n_users))
    counts = _counts_adding_up_to(activity, n_interactions, min_items, n_items)
    return weighted_sample_without_replacement(counts, probabilities, rng)


def _counts_adding_up_to(activity: np.ndarray, total: int, low: int, high: int) -> np.ndarray:
    """Integer counts ∝ activity, clipped to [low, high], summing to exactly ``total``.

    The scale s is found by bisection on sum(clip(s · activity)), which grows with s; the
    real-valued counts are then rounded by largest remainder, so they hit the total exactly.
    """
    def clipped(scale: float) -> np.ndarray:
        return np.clip(scale * activity, low, high)

    lo, hi = 0.0, float(high) / activity.min()  # clipped(hi) is all `high`: sum >= total
    for _ in range(200):  # far more than float64 needs; stops early once the sum is exact enough
        mid = 0.5 * (lo + hi)
        current = clipped(mid).sum()
        if abs(current - total) < 0.5 or hi - lo <= 1e-12 * hi:
            break
        lo, hi = (mid, hi) if current < total else (lo, mid)
    real = clipped(mid)
    counts = np.floor(real).astype(np.int64)
    missing = total - int(counts.sum())
    fractions = real - counts
    if missing > 0:  # round up the largest fractional parts among those below the cap
        room = np.flatnonzero(counts < high)
        counts[room[np.argsort(-fractions[room], kind="stable")[:missing]]] += 1
    elif missing < 0:  # round down the smallest fractional parts among those above the floor
        room = np.flatnonzero(counts > low)
        counts[room[np.argsort(fractions[room], kind="stable")[:-missing]]] -= 1
    return counts


def weighted_sample_without_replacement(counts: np.ndarray, probabilities: np.ndarray,
                                        rng: np.random.Generator) -> sp.csr_matrix:
    """Row u holds counts[u] distinct columns, a successive sample with these probabilities.

    Returns a float32 CSR matrix (len(counts) × len(probabilities)) with sorted indices.
    Every probability must be > 0 (an item of weight 0 could not fill a full row).
    """
    counts = np.asarray(counts, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_items = len(probabilities)
    if not (probabilities > 0).all():
        raise ValueError("every probability must be > 0")
    if counts.size and (counts.min() < 0 or counts.max() > n_items):
        raise ValueError(f"counts must lie in [0, {n_items}]")
    probabilities = probabilities / probabilities.sum()
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]

    nnz = int(counts.sum())
    # The index type scipy would pick itself, so that building the matrix copies nothing.
    index_dtype = np.int32 if max(nnz, n_items) <= np.iinfo(np.int32).max else np.int64
    indptr = np.zeros(len(counts) + 1, dtype=index_dtype)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(nnz, dtype=index_dtype)
    dense = counts > _DENSE_ABOVE_SHARE * n_items

    row_ends = np.cumsum(counts)
    chunk_starts = np.searchsorted(row_ends, np.arange(0, nnz, _CHUNK_INTERACTIONS), side="right")
    boundaries = np.unique(np.concatenate([chunk_starts, [len(counts)]]))
    for first, stop in zip(boundaries[:-1], boundaries[1:]):
        # Keys row * n_items + item, with rows local to the chunk: sorting them orders the
        # chunk by row and then by item, exactly the CSR layout of these rows.
        local_rows = np.arange(stop - first)
        chunk_counts, chunk_dense = counts[first:stop], dense[first:stop]
        keys = np.concatenate([
            _by_repeated_draws(local_rows[~chunk_dense], chunk_counts[~chunk_dense], cdf, probabilities, rng),
            _by_exponential_races(local_rows[chunk_dense], chunk_counts[chunk_dense], probabilities, rng),
        ])
        keys.sort(kind="stable")  # two runs, one of them already sorted
        indices[indptr[first]:indptr[stop]] = keys % n_items
    data = np.ones(nnz, dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(counts), n_items))


def _by_repeated_draws(rows: np.ndarray, counts: np.ndarray, cdf: np.ndarray, probabilities: np.ndarray,
                       rng: np.random.Generator) -> np.ndarray:
    """Keys row * n_items + item: each row's first counts[row] distinct items of i.i.d. draws.

    Each round draws, for every row still short of items, about (items missing) / (mass not
    yet taken) items; of those, the distinct items not taken before are kept in draw order
    until the row is full. Keeping the first ones in draw order (not any of them) is what
    makes this exactly successive sampling.

    A row that would need more draws than there are items has taken nearly all the
    probability mass (a very steep popularity); exponential races over the items it lacks
    finish it instead. That is still exact: what follows the first j items of a successive
    sample is a successive sample of the items left.
    """
    n_items = len(cdf)
    taken = np.empty(0, dtype=np.int64)  # sorted keys
    missing = counts.astype(np.int64).copy()
    mass_taken = np.zeros(len(rows))
    while (short := np.flatnonzero(missing > 0)).size:
        mass_left = np.maximum(1.0 - mass_taken[short], 1e-12)
        n_draws = np.ceil(_OVERSAMPLE * missing[short] / mass_left).astype(np.int64) + 2
        costly = n_draws > n_items
        if costly.any():
            finishing = short[costly]
            raced = _by_exponential_races(rows[finishing], missing[finishing], probabilities, rng, exclude=taken)
            taken = np.sort(np.concatenate([taken, raced]))
            missing[finishing] = 0
            short, n_draws = short[~costly], n_draws[~costly]
        owner = np.repeat(short, n_draws)  # draws grouped by row, in draw order
        items = np.searchsorted(cdf, rng.random(owner.size), side="right")
        np.minimum(items, n_items - 1, out=items)  # a draw of exactly cdf[-1] after rounding
        keys = rows[owner] * n_items + items
        # The first draw of each distinct key: a stable sort keeps equal keys in draw order.
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        is_first = np.ones(keys.size, dtype=bool)
        is_first[1:] = sorted_keys[1:] != sorted_keys[:-1]
        first_draw = np.zeros(keys.size, dtype=bool)
        first_draw[order[is_first]] = True
        new = np.flatnonzero(first_draw)  # in draw order
        if taken.size:
            where = np.minimum(np.searchsorted(taken, keys[new]), taken.size - 1)
            new = new[taken[where] != keys[new]]
        new_owner = owner[new]  # nondecreasing: draws are grouped by row
        rank_in_row = np.arange(new.size) - _run_starts(new_owner)
        keep = new[rank_in_row < missing[new_owner]]
        kept_owner = owner[keep]
        missing -= np.bincount(kept_owner, minlength=len(rows))
        mass_taken += np.bincount(kept_owner, weights=probabilities[items[keep]], minlength=len(rows))
        # Two sorted runs: the stable sort (timsort) merges them in linear time.
        taken = np.sort(np.concatenate([taken, keys[keep]]), kind="stable")
    return taken


def _run_starts(values: np.ndarray) -> np.ndarray:
    """For each position of a nondecreasing array, the position where its run of equal values starts."""
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    return np.repeat(starts, np.diff(np.append(starts, values.size)))


def _by_exponential_races(rows: np.ndarray, counts: np.ndarray, probabilities: np.ndarray,
                          rng: np.random.Generator, exclude: np.ndarray | None = None) -> np.ndarray:
    """Keys row * n_items + item: each row's counts[row] first finishers of E_i / p_i.

    exclude: sorted keys (row * n_items + item) of items a row already has; they do not run.
    Rows are raced in blocks of at most 8 × _CHUNK_INTERACTIONS entries.
    """
    n_items = len(probabilities)
    rows = rows.astype(np.int64)
    block = max(1, (8 * _CHUNK_INTERACTIONS) // n_items)
    out = []
    for start in range(0, rows.size, block):
        block_rows, block_counts = rows[start:start + block], counts[start:start + block]
        finish = rng.standard_exponential((block_rows.size, n_items)) / probabilities
        if exclude is not None and exclude.size:
            excluded = exclude[np.isin(exclude // n_items, block_rows)]
            finish[np.searchsorted(block_rows, excluded // n_items), excluded % n_items] = np.inf
        order = np.argsort(finish, axis=1)
        chosen = order[np.arange(n_items)[None, :] < block_counts[:, None]]  # row-major: row by row
        out.append(np.repeat(block_rows, block_counts) * n_items + chosen)
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def synthetic_preset(name: str) -> SyntheticPreset:
    """The preset called ``name``, or a size spec ``<users>x<items>x<interactions>``."""
    if name in SYNTHETIC_PRESETS:
        return SYNTHETIC_PRESETS[name]
    sizes = _SIZE_SPEC.fullmatch(name)
    if sizes:
        users, items, interactions = (int(value) for value in sizes.groups())
        return SyntheticPreset(users, items, interactions, min(_DEFAULT_MIN_ITEMS, items),
                               f"{users} users, {items} items, {interactions} interactions")
    raise DataError(
        f"data.dataset: unknown synthetic preset {SYNTHETIC_PREFIX + name!r}; choose one of "
        + ", ".join(SYNTHETIC_PREFIX + preset for preset in SYNTHETIC_PRESETS)
        + f", or give sizes as {SYNTHETIC_PREFIX}<users>x<items>x<interactions>"
    )


def synthetic_dataset(name: str, seed: int, k_core: int = 0) -> InteractionMatrix:
    """The matrix that ``data.dataset: <name>`` (``synthetic:<preset>``) stands for.

    Drawn from a child of the recipe seed (``SeedSequence(seed).spawn``), so it is
    independent of the split's draws, which use ``default_rng(seed)`` itself. Row and column
    ids are the indices as strings. DataError names data.dataset when the sizes are impossible, and
    the name when ``seed`` or ``k_core`` is not an integer >= 0.
    """
    if not name.startswith(SYNTHETIC_PREFIX):
        raise DataError(f"data.dataset: {name!r} is not a synthetic dataset (they start with {SYNTHETIC_PREFIX!r})")
    preset = synthetic_preset(name[len(SYNTHETIC_PREFIX):])
    # a 0-d array as the number it holds, as the splits read one; int(1.7) drew seed 1's data, int(True) seed 1's
    seed, k_core = scalar(seed), scalar(k_core)
    if not is_integer(seed) or seed < 0:
        raise DataError(f"{name}: seed must be an integer >= 0, got {seed!r}")
    if not is_integer(k_core) or k_core < 0:  # as build_matrix: 2.5 was a 3-core, -1 none, '3' a TypeError
        raise DataError(f"{name}: k_core must be an integer >= 0, got {k_core!r}")
    stream = np.random.SeedSequence(int(seed)).spawn(1)[0]
    try:
        matrix = synthetic_interactions(preset.n_users, preset.n_items, preset.n_interactions,
                                        seed=stream, min_items=preset.min_items)
    except ValueError as err:
        raise DataError(f"data.dataset {name!r}: {err}") from None
    user_ids, item_ids = np.arange(matrix.shape[0]).astype(str), np.arange(matrix.shape[1]).astype(str)
    if k_core > 1:
        matrix, kept_users, kept_items = _k_core(matrix, k_core)
        if matrix.nnz == 0:
            raise DataError(f"data.dataset {name!r}: k_core={k_core} removed every user and item; lower k_core")
        user_ids, item_ids = user_ids[kept_users], item_ids[kept_items]
    return InteractionMatrix(matrix, user_ids, item_ids, source=name)
