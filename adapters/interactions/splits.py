"""Train / validation / test splits of a binary interaction matrix, and their files.

Four protocols:
- strong generalisation (Liang et al. 2018, "Variational Autoencoders for
  Collaborative Filtering"): whole users are held out; each held-out user shows
  the model part of their items (input) and is scored on the rest (target).
- weak generalisation: every user trains; each user's last (or randomly drawn) items are
  held out as validation and test targets, the others are the training rows and the input.
- temporal: two global time cut-offs; interactions after the later one are the test targets, those
  between the two the validation targets, and everything earlier trains (the users' histories).
- predefined: the dataset's own split, where every user appears in train and the
  targets are other interactions of the same users (weak generalisation): DiffRec's
  time-ordered train/valid/test pair files, or a train/test pair of files (BARS) whose
  validation targets are held out of the training items of some users.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ...files import atomic_path
from ..errors import DataError
from ..shares import round_half_up
from ..values import is_integer as _is_integer, scalar as _scalar
from .matrix import InteractionMatrix, binary_csr, entry_positions
from .readers import RawInteractions, from_iso

__all__ = ["EvalPart", "Split", "strong_generalization", "weak_generalization", "temporal_split", "predefined_split",
           "train_test_split", "holdout_count"]

_FORMAT_VERSION = 1
_MANIFEST = "split.json"
_EVAL_FIELDS = ("input", "exclude", "target")
# How a held-out user's target is chosen (split.holdout), as split.json's info records it.
HOLDOUTS = {
    "random": "a random holdout_fraction of each held-out user's items, drawn with (seed, user row)",
    "latest": "each held-out user's latest holdout_fraction of items by time (a pair seen more than once at its "
              "latest time); equal times: the item with the higher column (later in item id order) counts as later",
}
# The weak split holds out twice from one user: the test targets, then the validation targets
# from what is left (as split.json's info records it).
WEAK_HOLDOUTS = {
    "random": "test: a random holdout_fraction (or holdout_items) of each splittable user's items; validation: "
              "holdout_fraction of the rest (or valid_fraction of all, or holdout_items again), drawn likewise; drawn with (seed, user row) "
              "and (seed, user row, 1)",
    "latest": "test: each splittable user's latest holdout_fraction (or holdout_items) of items by time; "
              "validation: the latest holdout_fraction of the rest (or valid_fraction of all, or holdout_items again); equal times: the item "
              "with the higher column counts as later",
}

# The temporal split's rule, as split.json's info records it.
def temporal_rule(test_from_given: bool = False, valid_from_given: bool = False) -> str:
    """What a temporal split's ``info["holdout_rule"]`` says: how each cut-off was placed."""
    test = "given" if test_from_given else "the time from which the latest holdout_fraction of all interactions lie"
    valid = ("given" if valid_from_given
             else "where the latest holdout_fraction of the earlier ones (or valid_fraction of all) begin")
    shares = "" if test_from_given and valid_from_given else "; shares rounded half up"
    return (f"test: every interaction at or after test_from, {test}; validation: those from valid_from, {valid}; "
            "training: the rest; interactions at one time fall on one side; a pair seen more than once counts at "
            f"its earliest time{shares}")



@dataclass(eq=False)
class EvalPart:
    """The users scored in one evaluation stage.

    input: what the model sees for each user; exclude: items never ranked for
    that user (already known); target: the held-out items to retrieve. All
    three share the shape (len(user_ids), n_items). Rows whose target is empty
    have nothing to evaluate.
    """

    input: sp.csr_matrix
    exclude: sp.csr_matrix
    target: sp.csr_matrix
    user_ids: np.ndarray

    def __post_init__(self) -> None:
        shapes = {name: getattr(self, name).shape for name in _EVAL_FIELDS}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"input, exclude and target must have one shape, got {shapes}")
        if shapes["input"][0] != len(self.user_ids):
            raise ValueError(f"{len(self.user_ids)} user ids for {shapes['input'][0]} rows")

    @property
    def n_users(self) -> int:
        return self.input.shape[0]

    @property
    def n_evaluable_users(self) -> int:
        return int((np.diff(self.target.indptr) > 0).sum())


@dataclass(eq=False)
class Split:
    """Training rows, the two evaluation stages, and the raw ids of every axis."""

    train: sp.csr_matrix
    train_user_ids: np.ndarray
    item_ids: np.ndarray
    valid: EvalPart
    test: EvalPart
    kind: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_items = len(self.item_ids)
        for name, matrix in (("train", self.train), ("valid", self.valid.input), ("test", self.test.input)):
            if matrix.shape[1] != n_items:
                raise ValueError(f"{name} has {matrix.shape[1]} columns for {n_items} item ids")
        if self.train.shape[0] != len(self.train_user_ids):
            raise ValueError(f"{len(self.train_user_ids)} train user ids for {self.train.shape[0]} rows")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def save(self, directory: str | Path) -> None:
        """Write the split to `directory` (created if needed), each file atomically.

        split.json is written last, so a directory with a split.json holds a
        complete split even if an earlier save was interrupted.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / "train.npz", lambda handle: sp.save_npz(handle, self.train))
        _atomic_write(directory / "train_user_ids.npy", _npy_writer(self.train_user_ids))
        _atomic_write(directory / "item_ids.npy", _npy_writer(self.item_ids))
        for stage in ("valid", "test"):
            part: EvalPart = getattr(self, stage)
            for name in _EVAL_FIELDS:
                matrix = getattr(part, name)
                _atomic_write(directory / f"{stage}_{name}.npz", lambda handle, m=matrix: sp.save_npz(handle, m))
            _atomic_write(directory / f"{stage}_user_ids.npy", _npy_writer(part.user_ids))
        manifest = {"format_version": _FORMAT_VERSION, "kind": self.kind, "info": self.info}
        text = json.dumps(manifest, indent=2, sort_keys=True)
        _atomic_write(directory / _MANIFEST, lambda handle: handle.write(text.encode("utf-8")))

    @classmethod
    def load(cls, directory: str | Path) -> "Split":
        directory = Path(directory)
        manifest_path = directory / _MANIFEST
        if not manifest_path.is_file():
            raise DataError(f"{manifest_path}: not found; {directory} holds no saved split")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8-sig"))  # a BOM: PowerShell 5 writes one
        except (OSError, ValueError) as exc:
            raise DataError(f"{manifest_path}: unreadable: {exc}") from None
        if not isinstance(manifest, dict) or "kind" not in manifest:
            raise DataError(f"{manifest_path}: key 'kind' missing")
        if manifest.get("format_version") != _FORMAT_VERSION:
            raise DataError(
                f"{manifest_path}: format_version {manifest.get('format_version')!r} "
                f"is not the supported {_FORMAT_VERSION}"
            )
        parts = {}
        try:  # files that each read well but disagree (one edited or copied from another split)
            for stage in ("valid", "test"):
                matrices = {name: _load_csr(directory / f"{stage}_{name}.npz") for name in _EVAL_FIELDS}
                try:
                    parts[stage] = EvalPart(**matrices, user_ids=_load_ids(directory / f"{stage}_user_ids.npy"))
                except ValueError as err:
                    raise ValueError(f"{stage}_*.npz, {stage}_user_ids.npy: {err}") from None
            return cls(
                train=_load_csr(directory / "train.npz"),
                train_user_ids=_load_ids(directory / "train_user_ids.npy"),
                item_ids=_load_ids(directory / "item_ids.npy"),
                valid=parts["valid"],
                test=parts["test"],
                kind=manifest["kind"],
                info=manifest.get("info", {}),
            )
        except DataError:
            raise
        except ValueError as err:
            raise DataError(f"{directory}: the saved split's files do not fit together: {err}") from None


def strong_generalization(
    im: InteractionMatrix,
    n_valid_users: int,
    n_test_users: int,
    holdout_fraction: float = 0.2,
    min_items_to_split: int = 5,
    *,
    seed: int,
    holdout: str = "random",
    holdout_items: int | None = None,
) -> Split:
    """Hold out whole users, as in Liang et al. 2018.

    Users are permuted with `seed`: the first n_test_users are test users, the
    next n_valid_users validation users, the rest train. Items never seen by a
    train user are dropped from the vocabulary (a model cannot score a column it
    never trained on). A held-out user with at least min_items_to_split items
    has holdout_fraction * n of them, rounded half up (``holdout_count``), (at least 1, at most n - 1) moved to
    the target; users with fewer items keep all of them as input.

    holdout: which items move to the target (``HOLDOUTS``). ``random``: drawn with (seed, user row).
    ``latest``: the user's latest by ``im.time`` (needed), the earlier ones staying the input;
    among equal times the item with the higher column (the later item id, in ``index_ids``' order)
    counts as the later. The count is the same under both. ``holdout_items``: that many items
    (at most n - 1) instead of the fraction; 1 holds out one item per user.
    """
    n_users = im.n_users
    n_valid_users, n_test_users, holdout_fraction, min_items_to_split, seed, holdout_items = (
        _scalar(value) for value in (n_valid_users, n_test_users, holdout_fraction, min_items_to_split, seed,
                                     holdout_items))
    where = _check_holdout_choice(im, holdout)
    for name, value in (("n_valid_users", n_valid_users), ("n_test_users", n_test_users)):
        if not _is_integer(value) or value < 1:
            raise DataError(f"{where}: {name} must be a positive integer (no empty split), got {value!r}")
    # Python ints: two numpy int64 counts near 2**62 add up past int64 and wrap round to a negative sum
    n_valid_users, n_test_users = int(n_valid_users), int(n_test_users)
    if n_valid_users + n_test_users >= n_users:
        raise DataError(
            f"{where}: n_valid_users + n_test_users = {n_valid_users + n_test_users} leaves no train "
            f"users out of {n_users}"
        )
    _check_hold_out(where, holdout_fraction, min_items_to_split, seed, holdout_items)

    order = np.random.default_rng(seed).permutation(n_users)
    test_rows = np.sort(order[:n_test_users])
    valid_rows = np.sort(order[n_test_users : n_test_users + n_valid_users])
    train_rows = np.sort(order[n_test_users + n_valid_users :])

    matrix = im.matrix.tocsr()
    train_all_items = matrix[train_rows]
    vocabulary = np.flatnonzero(np.bincount(train_all_items.indices, minlength=im.n_items))
    train = _sorted(train_all_items[:, vocabulary])

    parts = {}
    for stage, rows in (("valid", valid_rows), ("test", test_rows)):
        known = _sorted(matrix[rows][:, vocabulary])
        time = None
        if holdout == "latest":  # each entry of `known`'s time, in its order
            time = im.time[entry_positions(matrix, rows, vocabulary)]
        input_, target = _hold_out(known, rows, holdout_fraction, min_items_to_split, seed, time=time,
                                   items=holdout_items)
        parts[stage] = EvalPart(input=input_, exclude=input_.copy(), target=target, user_ids=im.user_ids[rows])

    held_out_rows = np.concatenate([valid_rows, test_rows])
    info = {
        "source": im.source,
        "seed": int(seed),
        "n_valid_users": int(n_valid_users),
        "n_test_users": int(n_test_users),
        "holdout_fraction": float(holdout_fraction),
        "holdout_items": None if holdout_items is None else int(holdout_items),
        "holdout": holdout,
        "holdout_rule": HOLDOUTS[holdout],
        "min_items_to_split": int(min_items_to_split),
        "n_users": int(n_users),
        "n_train_users": int(len(train_rows)),
        "n_items_before_vocabulary": int(im.n_items),
        "n_items": int(len(vocabulary)),
        "n_interactions": int(im.nnz),
        "n_train_interactions": int(train.nnz),
        "n_held_out_interactions_dropped": int(
            matrix[held_out_rows].nnz - sum(part.input.nnz + part.target.nnz for part in parts.values())
        ),
    }
    for stage, part in parts.items():
        info[f"n_{stage}_input_interactions"] = int(part.input.nnz)
        info[f"n_{stage}_target_interactions"] = int(part.target.nnz)
        info[f"n_{stage}_evaluable_users"] = part.n_evaluable_users
    return Split(
        train=train,
        train_user_ids=im.user_ids[train_rows],
        item_ids=im.item_ids[vocabulary],
        valid=parts["valid"],
        test=parts["test"],
        kind="strong",
        info=info,
    )


def weak_generalization(
    im: InteractionMatrix,
    holdout_fraction: float = 0.2,
    min_items_to_split: int = 5,
    *,
    seed: int,
    holdout: str = "random",
    holdout_items: int | None = None,
    valid_fraction: float | None = None,
) -> Split:
    """Every user trains; each user's held-out items are the targets (weak generalisation).

    A user with at least min_items_to_split items holds out ``holdout_count(n, holdout_fraction,
    holdout_items)`` of them as test targets, then ``holdout_count`` of the rest by the same rule as
    validation targets (none when one item is left: it stays in training); the remaining items are
    the user's training row. Users with fewer items train on all of them and are not scored.
    ``holdout`` chooses the items as in ``strong_generalization`` (``latest``: the test targets are
    the latest, the validation targets the latest before them). ``holdout_items=1`` is leave-one-out.
    ``valid_fraction``: validation takes that share of *all* the user's items instead (rounded half up,
    at least 1, leaving one for training), so that 0.1 and 0.1 split each user 8:1:1.

    Validation ranks every item but the user's training ones from the training row; test ranks
    every item but the training and validation ones from both (the history known before the test
    items), as a shipped train/test split does here. Items with no training interaction leave the
    vocabulary, as in the strong split; their held-out pairs are dropped and counted. The scored users
    are those with something held out for the stage; one whose every held-out item was dropped so
    stays, with an empty target (``eval.empty_users`` decides how it counts), as in the strong split.
    """
    holdout_fraction, min_items_to_split, seed, holdout_items, valid_fraction = (
        _scalar(value) for value in (holdout_fraction, min_items_to_split, seed, holdout_items, valid_fraction))
    where = _check_holdout_choice(im, holdout)
    _check_hold_out(where, holdout_fraction, min_items_to_split, seed, holdout_items)
    if valid_fraction is not None:
        if not isinstance(valid_fraction, numbers.Real) or not 0.0 < valid_fraction < 1.0:
            raise DataError(f"{where}: valid_fraction must be null or in (0, 1), got {valid_fraction!r}")
        if holdout_items is not None:
            raise DataError(f"{where}: valid_fraction goes with holdout_fraction; with holdout_items, validation "
                            "holds out as many items as test")

    matrix = _sorted(im.matrix.tocsr())
    rows = np.arange(im.n_users)
    time = im.time[entry_positions(im.matrix, rows, np.arange(im.n_items))] if holdout == "latest" else None
    to_test = _holdout_mask(matrix, rows, holdout_fraction, min_items_to_split, seed, time, items=holdout_items)
    rest, test_target = _masked(matrix, ~to_test), _masked(matrix, to_test)
    # the validation targets: the same rule applied to what each splittable user has left (one item left
    # stays in training; min_items 2 says so)
    split_rows = np.flatnonzero(np.diff(matrix.indptr) >= min_items_to_split)
    positions = entry_positions(rest, split_rows, np.arange(im.n_items))  # their entries among rest's
    rest_time = None if time is None else time[~to_test][positions]
    to_valid = np.zeros(rest.nnz, dtype=bool)
    totals = None if valid_fraction is None else np.diff(matrix.indptr)[split_rows]
    to_valid[positions] = _holdout_mask(rest[split_rows], split_rows,
                                        holdout_fraction if valid_fraction is None else valid_fraction, 2, seed,
                                        rest_time, stream=(1,), items=holdout_items, totals=totals)
    train_all, valid_target = _masked(rest, ~to_valid), _masked(rest, to_valid)
    train, vocabulary, parts, counts = _targets_of_known_users(im, train_all, valid_target, test_target)

    info = {
        "source": im.source,
        "seed": int(seed),
        "holdout_fraction": float(holdout_fraction),
        "holdout_items": None if holdout_items is None else int(holdout_items),
        "valid_fraction": None if valid_fraction is None else float(valid_fraction),
        "holdout": holdout,
        "holdout_rule": WEAK_HOLDOUTS[holdout],
        "min_items_to_split": int(min_items_to_split),
        "n_users": int(im.n_users),
        "n_train_users": int(im.n_users),
        "n_splittable_users": int(len(split_rows)),
        **counts,
    }
    return Split(train=train, train_user_ids=im.user_ids.copy(), item_ids=im.item_ids[vocabulary],
                 valid=parts["valid"], test=parts["test"], kind="weak", info=info)


def temporal_split(im: InteractionMatrix, holdout_fraction: float = 0.2, valid_fraction: float | None = None,
                   test_from: float | str | None = None, valid_from: float | str | None = None) -> Split:
    """One global time cut-off for test and an earlier one for validation (a temporal split).

    Test holds the latest ``holdout_fraction`` of all interactions: every interaction at or after
    the time of the one that starts that share (``test_from``), so interactions at one time never
    fall on both sides. Validation holds, by the same rule, the latest ``holdout_fraction`` of the
    interactions before ``test_from`` (or the latest ``valid_fraction`` of all of them), from
    ``valid_from``; training, everything earlier. A pair seen more than once counts at its earliest
    time, when the user first chose it (build ``im`` with ``build_matrix(..., pair_time="earliest")``;
    at its latest, a choice made again after a cut would take the earlier one out of training).
    Nothing is drawn: the split depends on the data alone.

    ``test_from`` and ``valid_from`` give a cut-off as a time instead: a number in the time column's
    unit, or an ISO 8601 date and time (``"2024-01-01"``, read as Unix seconds, UTC unless it has an
    offset, as a time column of dates is). A given ``test_from`` replaces ``holdout_fraction`` for
    test (validation still takes that share of what lies before it, unless ``valid_fraction`` or
    ``valid_from`` says otherwise); a given ``valid_from`` replaces both shares for validation.

    Training rows are the users with an interaction before ``valid_from``. Validation ranks every
    item but a user's training ones from the training row; test reads the training and validation
    items (everything known before ``test_from``) and ranks neither. Users with a target but nothing
    known before it (new users) cannot be scored from a history and are left out, counted. Items with
    no training interaction leave the vocabulary and their held-out pairs are dropped and counted;
    a scored user whose every target was dropped so stays, with an empty target.
    """
    holdout_fraction, valid_fraction, test_from, valid_from = (
        _scalar(value) for value in (holdout_fraction, valid_fraction, test_from, valid_from))
    where = im.source or "interaction matrix"
    if im.time is None:
        raise DataError(f"{where}: a temporal split needs each interaction's time, and these data have none "
                        "(a delimited file names its time column with data.time_col)")
    if not isinstance(holdout_fraction, numbers.Real) or not 0.0 < holdout_fraction < 1.0:  # NaN fails too
        raise DataError(f"{where}: holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    # both shares of all interactions; beside a given test_from, only valid_fraction is
    valid_fraction_limit = 1.0 - holdout_fraction if test_from is None else 1.0
    if valid_fraction is not None and (not isinstance(valid_fraction, numbers.Real)
                                       or not 0.0 < valid_fraction < valid_fraction_limit):
        bound = f"1 - holdout_fraction = {valid_fraction_limit:g}" if test_from is None else "1"
        raise DataError(f"{where}: valid_fraction (split.valid_fraction) must be null or in (0, {bound}), "
                        f"got {valid_fraction!r}")
    if im.nnz == 0:
        raise DataError(f"{where}: no interactions")

    if valid_from is not None and valid_fraction is not None:
        raise DataError(f"{where}: valid_from (split.valid_from) and valid_fraction (split.valid_fraction) both "
                        "place the validation cut-off: set one of them to null")
    given = read_cut_offs(test_from, valid_from, where)
    as_written = {"test_from": test_from, "valid_from": valid_from}
    shown = {name: _as_given(value, given[name]) for name, value in as_written.items()}

    matrix = _sorted(im.matrix.tocsr())
    time = np.asarray(im.time)[entry_positions(im.matrix, np.arange(im.n_users), np.arange(im.n_items))]
    first, last = _plain_number(time.min()), _plain_number(time.max())
    span = f"the interactions' times run from {first!r} to {last!r}"
    if any(isinstance(value, str) for value in as_written.values()):  # cut-offs given as dates: so too the span
        span += f" (Unix seconds: {_utc(first)} to {_utc(last)})"
        if max(abs(first), abs(last)) >= _YEAR_5000:  # milliseconds or finer, read as seconds, lie in year 50000
            span += ("; these times look like milliseconds or finer, not Unix seconds: give the cut-offs as "
                     "numbers in the time column's unit")
    if given["test_from"] is None:
        test_from = _plain_number(_cut_off(time, round_half_up(holdout_fraction, len(time))))
    else:
        test_from = given["test_from"]
        if not (time >= test_from).any():
            raise DataError(f"{where}: no interaction is at or after test_from (split.test_from) "
                            f"{shown['test_from']}: nothing to test; {span}")
    before_test = time[time < test_from]
    if len(before_test) == 0:
        if given["test_from"] is not None:
            raise DataError(f"{where}: no interaction is before test_from (split.test_from) {shown['test_from']}: "
                            f"nothing is left to train on; {span}")
        if test_from == time.max():
            raise DataError(f"{where}: every interaction has the same time, {test_from!r}: a temporal split needs "
                            "interactions at more than one time")
        raise DataError(f"{where}: the test cut-off, {test_from!r}, from which the latest holdout_fraction = "
                        f"{holdout_fraction} of the interactions lie, is their earliest time: nothing is left to "
                        "train on; lower holdout_fraction (split.holdout_fraction)")
    if given["valid_from"] is not None:
        valid_from = given["valid_from"]
        if given["test_from"] is None and valid_from >= test_from:
            dated = f" ({_utc(test_from)})" if isinstance(as_written["valid_from"], str) else ""
            raise DataError(f"{where}: valid_from (split.valid_from) {shown['valid_from']} is not earlier than the test "
                            f"cut-off {test_from!r}{dated} that holdout_fraction (split.holdout_fraction) = "
                            f"{holdout_fraction} places: lower holdout_fraction, or give split.test_from")
        if not (before_test >= valid_from).any():
            raise DataError(f"{where}: no interaction is from valid_from (split.valid_from) {shown['valid_from']} to "
                            f"before the test cut-off {test_from!r}: nothing to validate on; {span}")
        if not (before_test < valid_from).any():
            raise DataError(f"{where}: no interaction is before valid_from (split.valid_from) {shown['valid_from']}: "
                            f"nothing is left to train on; {span}")
    else:
        count = (round_half_up(holdout_fraction, len(before_test)) if valid_fraction is None
                 else round_half_up(valid_fraction, len(time)))
        valid_from = _plain_number(_cut_off(before_test, count))
        if valid_from == before_test.min():
            key = "holdout_fraction (split.holdout_fraction)" if valid_fraction is None else \
                "valid_fraction (split.valid_fraction)"
            instead = "" if given["test_from"] is None else ", or give split.valid_from"
            raise DataError(f"{where}: the validation cut-off, {valid_from!r}, is the earliest time before the test "
                            f"cut-off {shown['test_from'] if given['test_from'] is not None else repr(test_from)}: "
                            f"nothing is left to train on; lower {key}{instead}")
    to_test, to_valid = time >= test_from, (time >= valid_from) & (time < test_from)
    train_all = _masked(matrix, ~(to_test | to_valid))
    valid_target, test_target = _masked(matrix, to_valid), _masked(matrix, to_test)
    train, vocabulary, parts, counts = _targets_of_known_users(im, train_all, valid_target, test_target,
                                                               needs_history=True)
    trains = np.flatnonzero(np.diff(train.indptr) > 0)  # users with nothing before valid_from do not train

    info = {
        "source": im.source,
        "holdout_fraction": float(holdout_fraction),
        "valid_fraction": None if valid_fraction is None else float(valid_fraction),
        "holdout_rule": temporal_rule(given["test_from"] is not None, given["valid_from"] is not None),
        "valid_from": valid_from,
        "test_from": test_from,
        # the cut-offs the recipe gave (a date as written), or null where a share placed them
        "valid_from_given": _plain_number(as_written["valid_from"]),
        "test_from_given": _plain_number(as_written["test_from"]),
        # what the cut-offs took, before the vocabulary: above the shares where times tie at a cut-off
        "n_valid_held_out_interactions": int(to_valid.sum()),
        "n_test_held_out_interactions": int(to_test.sum()),
        "n_users": int(im.n_users),
        "n_train_users": int(len(trains)),
        **counts,
    }
    return Split(train=train[trains], train_user_ids=im.user_ids[trains], item_ids=im.item_ids[vocabulary],
                 valid=parts["valid"], test=parts["test"], kind="temporal", info=info)


def _cut_off(time: np.ndarray, count: int):
    """The time from which the latest ``count`` interactions (at least 1, at most all) lie."""
    count = min(max(count, 1), len(time))
    return np.partition(time, len(time) - count)[len(time) - count]


def _plain_number(value):
    """A time as JSON writes it: an int stays an int."""
    return value.item() if isinstance(value, np.generic) else value


def read_cut_offs(test_from, valid_from, where: str | None = None) -> dict[str, float | int | None]:
    """The temporal split's cut-offs as times (see ``_given_time``), each None where not given;
    DataError when one cannot be read or when ``valid_from`` is not earlier than ``test_from``.
    Needs no data: a recipe's cut-offs are checked before its file is read."""
    test_from, valid_from = _scalar(test_from), _scalar(valid_from)
    given = {"test_from": _given_time(test_from, "test_from", where),
             "valid_from": _given_time(valid_from, "valid_from", where)}
    if given["test_from"] is not None and given["valid_from"] is not None and \
            not given["valid_from"] < given["test_from"]:
        raise DataError(f"{_prefix(where)}valid_from (split.valid_from) {_as_given(valid_from, given['valid_from'])} "
                        f"must be earlier than test_from (split.test_from) {_as_given(test_from, given['test_from'])}")
    return given


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def _given_time(value, name: str, where: str | None):
    """A cut-off given as a time: a finite number as it is, an ISO 8601 date and time as Unix seconds
    (an int when whole), as a time column of dates is read; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = from_iso(value.strip())
        except ValueError:
            raise DataError(f"{_prefix(where)}{name} (split.{name}) {value!r} is neither a number nor an ISO 8601 date and "
                            "time (such as 2024-01-05 or 2024-01-05T10:30:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp()
        return int(seconds) if seconds == int(seconds) else seconds
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite(value):
        raise DataError(f"{_prefix(where)}{name} (split.{name}) must be a time (a number, or an ISO 8601 date and time), "
                        f"got {value!r}")
    value = _plain_number(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value  # 1.7e9 as a whole second


def _finite(value) -> bool:
    """A finite real number; an int beyond float64's range (10 ** 400) is no time either."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


# Unix seconds of about the year 5000: a time column beyond it holds another unit (Unix milliseconds from 1973)
_YEAR_5000 = 1e11


def _utc(seconds) -> str:
    """Unix seconds as an ISO 8601 time in UTC ("?" beyond the years datetime holds)."""
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "?"


def _as_given(value, seconds) -> str:
    """A cut-off as the recipe wrote it, and as Unix seconds where it was a date."""
    return f"{value!r} ({seconds} in Unix seconds)" if isinstance(value, str) else repr(seconds)


def _targets_of_known_users(
    im: InteractionMatrix, train_all: sp.csr_matrix, valid_target: sp.csr_matrix, test_target: sp.csr_matrix,
    needs_history: bool = False,
) -> tuple[sp.csr_matrix, np.ndarray, dict[str, EvalPart], dict]:
    """The weak and temporal splits' stages from each user's (train, valid, test) entries: the vocabulary
    (items with a training interaction), the training rows restricted to it, for each stage the users
    with a target, reading the history known before it (validation: training; test: training and
    validation), and the counts split.json records. ``needs_history``: a user with nothing in that
    history is left out of the stage (counted)."""
    # who is scored, decided before the vocabulary drops any target
    scored_rows = {"valid": np.flatnonzero(np.diff(valid_target.indptr) > 0),
                   "test": np.flatnonzero(np.diff(test_target.indptr) > 0)}
    vocabulary = np.flatnonzero(np.bincount(train_all.indices, minlength=im.n_items))
    train = _sorted(train_all[:, vocabulary])
    valid_target = _sorted(valid_target[:, vocabulary])
    test_target = _sorted(test_target[:, vocabulary])
    known_at_test = _sorted(train + valid_target)
    counts = {
        "n_items_before_vocabulary": int(im.n_items),
        "n_items": int(len(vocabulary)),
        "n_interactions": int(im.nnz),
        "n_train_interactions": int(train.nnz),
        "n_held_out_interactions_dropped": int(im.nnz - train.nnz - valid_target.nnz - test_target.nnz),
    }
    parts = {}
    for stage, history, target in (("valid", train, valid_target), ("test", known_at_test, test_target)):
        scored = scored_rows[stage]
        if needs_history:
            scored = scored[np.diff(history.indptr)[scored] > 0]
            new = np.setdiff1d(scored_rows[stage], scored)
            counts[f"n_{stage}_users_without_history"] = int(len(new))
            counts[f"n_{stage}_target_interactions_of_users_without_history"] = int(target[new].nnz)
        history = history[scored]
        part = parts[stage] = EvalPart(input=history, exclude=history.copy(), target=target[scored],
                                       user_ids=im.user_ids[scored])
        counts[f"n_{stage}_users"] = part.n_users
        counts[f"n_{stage}_input_interactions"] = int(part.input.nnz)
        counts[f"n_{stage}_target_interactions"] = int(part.target.nnz)
        counts[f"n_{stage}_evaluable_users"] = part.n_evaluable_users
    return train, vocabulary, parts, counts


def predefined_split(train: RawInteractions, valid: RawInteractions, test: RawInteractions) -> Split:
    """DiffRec's time-ordered split: every user trains; valid and test are later items.

    Ids are DiffRec's 0-based integers; like DiffRec's loader the matrix has
    max(train user id) + 1 rows and max(train item id) + 1 columns. Validation
    ranks all items but the train ones; test also masks the validation items,
    as DiffRec does.
    """
    pairs = {name: _integer_pairs(raw) for name, raw in (("train", train), ("valid", valid), ("test", test))}
    n_users = int(pairs["train"][0].max()) + 1
    n_items = int(pairs["train"][1].max()) + 1
    for what, ids, n in (("user", pairs["train"][0], n_users), ("item", pairs["train"][1], n_items)):
        distinct = len(np.unique(ids))
        # ids number the rows and columns: refuse before allocating for ids far past the data's size
        if n > 2 * distinct + 1000:
            raise DataError(f"{train.source}: {what} id {n - 1} is far beyond the {distinct} distinct {what}s of the "
                            f"file; DiffRec pair files number {what}s 0..n-1")
    for name in ("valid", "test"):
        users, items = pairs[name]
        source = (valid if name == "valid" else test).source
        for what, ids, bound in (("user", users, n_users), ("item", items, n_items)):
            if ids.max() >= bound:
                row = int(np.flatnonzero(ids >= bound)[0])
                raise DataError(
                    f"{source}: {what} id {int(ids[row])} is outside the train file's "
                    f"{what}s 0..{bound - 1} (row {row})"
                )
    shape = (n_users, n_items)
    matrices = {name: binary_csr(users, items, shape) for name, (users, items) in pairs.items()}
    known_at_test = matrices["train"] + matrices["valid"]
    known_at_test.data[:] = 1.0
    _warn_of_known_targets(matrices["valid"], matrices["train"], valid.source, "the train file's")
    _warn_of_known_targets(matrices["test"], known_at_test, test.source, "the train or valid file's")
    _warn_of_users_without_history(matrices["valid"], matrices["train"], valid.source)
    _warn_of_users_without_history(matrices["test"], matrices["train"], test.source)

    user_ids = np.arange(n_users).astype(str)
    item_ids = np.arange(n_items).astype(str)
    train_matrix = matrices["train"]
    valid_part = EvalPart(
        input=train_matrix, exclude=train_matrix.copy(), target=matrices["valid"], user_ids=user_ids.copy()
    )
    test_part = EvalPart(
        input=train_matrix.copy(), exclude=_sorted(known_at_test), target=matrices["test"], user_ids=user_ids.copy()
    )
    info = {
        "sources": {"train": train.source, "valid": valid.source, "test": test.source},
        "n_users": n_users,
        "n_items": n_items,
        "n_train_interactions": int(train_matrix.nnz),
        "n_valid_interactions": int(matrices["valid"].nnz),
        "n_test_interactions": int(matrices["test"].nnz),
        "n_valid_evaluable_users": valid_part.n_evaluable_users,
        "n_test_evaluable_users": test_part.n_evaluable_users,
    }
    return Split(
        train=train_matrix,
        train_user_ids=user_ids,
        item_ids=item_ids,
        valid=valid_part,
        test=test_part,
        kind="predefined",
        info=info,
    )


def _warn_of_known_targets(target: sp.csr_matrix, known: sp.csr_matrix, source, where: str) -> None:
    """A line when held-out pairs repeat pairs the model is given: they are excluded from its
    ranking, so they can never be hit, yet they count in every user's recall and NDCG."""
    repeated = int(target.multiply(known).nnz)
    if repeated:
        from ...progress import warn  # a BindiffWarning: one line from the bindiff command

        warn(f"{source}: {repeated} of its {target.nnz} pairs are also {where}; they are excluded from the "
            "ranking, so they can never be recommended, yet they count as held-out items in every metric")


def _warn_of_users_without_history(target: sp.csr_matrix, history: sp.csr_matrix, source) -> None:
    """A line when users hold held-out items but no history in the train file: they are ranked
    from an empty input (every model's list for nobody; EASE's is the item order) and count in every metric."""
    n = int(((np.diff(target.indptr) > 0) & (np.diff(history.indptr) == 0)).sum())
    if n:
        from ...progress import warn

        warn(f"{source}: {n} users have held-out items but no history in the train file; they are ranked "
            "from an empty history and count in every metric")


def train_test_split(train: RawInteractions, test: RawInteractions, n_valid_users: int, holdout_fraction: float,
                     min_items_to_split: int, seed: int) -> Split:
    """A shipped train/test split (weak generalisation), with validation carved out of train.

    ``n_valid_users`` users with at least ``min_items_to_split`` training items, drawn with
    ``seed``, give a random ``holdout_fraction`` of their training items as validation targets;
    the model trains on everything else. Test users are every user with test items: their input
    is the whole training file (the held-out validation items included), and those items are
    never ranked. Ids are the files' 0-based integers.
    """
    n_valid_users, holdout_fraction, min_items_to_split, seed = (
        _scalar(value) for value in (n_valid_users, holdout_fraction, min_items_to_split, seed))
    if not _is_integer(n_valid_users) or n_valid_users < 1:
        raise DataError(f"{train.source}: n_valid_users must be a positive integer, got {n_valid_users!r}")
    _check_hold_out(train.source, holdout_fraction, min_items_to_split, seed)
    (train_users, train_items), (test_users, test_items) = _integer_pairs(train), _integer_pairs(test)
    n_users = int(max(train_users.max(), test_users.max())) + 1
    n_items = int(max(train_items.max(), test_items.max())) + 1
    for what, ids, n in (("user", np.concatenate([train_users, test_users]), n_users),
                         ("item", np.concatenate([train_items, test_items]), n_items)):
        distinct = len(np.unique(ids))
        if n > 2 * distinct + 1000:  # ids number the rows and columns
            raise DataError(f"{train.source}: {what} id {n - 1} is far beyond the {distinct} distinct {what}s; "
                            f"the files must number {what}s 0..n-1")
    shape = (n_users, n_items)
    known = binary_csr(train_users, train_items, shape)
    target_test = binary_csr(test_users, test_items, shape)
    _warn_of_known_targets(target_test, known, test.source, "the train file's")
    _warn_of_users_without_history(target_test, known, test.source)
    counts = np.diff(known.indptr)
    candidates = np.flatnonzero(counts >= min_items_to_split)
    if len(candidates) < 2:  # "between 1 and the -1 users"
        who = "no user has" if len(candidates) == 0 else "only 1 user has"
        raise DataError(f"{train.source}: {who} at least {min_items_to_split} training items, and split.n_valid_users "
                        f"= {n_valid_users} validation users need at least {n_valid_users + 1} such users (one stays a "
                        "plain training user); lower split.min_items_to_split")
    if not 0 < n_valid_users < len(candidates):
        raise DataError(f"{train.source}: split.n_valid_users = {n_valid_users} must lie between 1 and the "
                        f"{len(candidates) - 1} users with at least {min_items_to_split} training items")
    rng = np.random.default_rng([int(seed), 0x5EED])
    valid_rows = np.sort(rng.choice(candidates, size=n_valid_users, replace=False))
    valid_input, valid_target = _hold_out(known[valid_rows], valid_rows, holdout_fraction, min_items_to_split, seed)
    rows = np.repeat(valid_rows, np.diff(valid_target.indptr))  # the held-out entries in full-matrix rows
    held_full = binary_csr(rows, valid_target.indices, shape)
    train_fit = _sorted(known - held_full)
    train_fit.eliminate_zeros()

    user_ids = np.arange(n_users).astype(str)
    valid_part = EvalPart(input=valid_input, exclude=valid_input.copy(), target=valid_target,
                          user_ids=user_ids[valid_rows])
    test_part = EvalPart(input=known.copy(), exclude=known.copy(), target=target_test, user_ids=user_ids.copy())
    info = {
        "sources": {"train": train.source, "test": test.source},
        "n_users": n_users,
        "n_items": n_items,
        "n_train_interactions": int(train_fit.nnz),
        "n_valid_interactions": int(valid_target.nnz),
        "n_test_interactions": int(target_test.nnz),
        "n_valid_evaluable_users": valid_part.n_evaluable_users,
        "n_test_evaluable_users": test_part.n_evaluable_users,
        "validation": f"{holdout_fraction} of the training items of {n_valid_users} users (seed {seed})",
    }
    return Split(train=train_fit, train_user_ids=user_ids, item_ids=np.arange(n_items).astype(str),
                 valid=valid_part, test=test_part, kind="predefined", info=info)


def holdout_count(n_items: int, holdout_fraction: float, holdout_items: int | None = None) -> int:
    """Items a splittable user holds out: ``holdout_fraction`` of them rounded half up, or
    ``holdout_items`` when given; at least 1, at most n - 1.

    A splittable user has ``n_items`` >= 2 (every split's ``min_items_to_split`` is at least 2): a
    ValueError for fewer, whose count could not be both at least 1 and at most n - 1, for a
    fraction outside (0, 1) and for ``holdout_items`` other than an integer >= 1."""
    n_items, holdout_fraction, holdout_items = (_scalar(value) for value in (n_items, holdout_fraction, holdout_items))
    if not _is_integer(n_items) or n_items < 2:
        raise ValueError(f"n_items must be an integer >= 2 (a user with fewer items cannot be split), got {n_items!r}")
    if holdout_items is not None:
        if not _is_integer(holdout_items) or holdout_items < 1:
            raise ValueError(f"holdout_items must be None or an integer >= 1, got {holdout_items!r}")
    elif not isinstance(holdout_fraction, numbers.Real) or not 0.0 < holdout_fraction < 1.0:  # NaN fails too
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    return _holdout_count(n_items, holdout_fraction, holdout_items)


def _holdout_count(n_items: int, holdout_fraction: float, holdout_items: int | None = None) -> int:
    """``holdout_count`` of arguments the split has checked (called once per user)."""
    count = holdout_items if holdout_items is not None else round_half_up(holdout_fraction, n_items)
    return int(min(max(count, 1), n_items - 1))


def _hold_out(
    known: sp.csr_matrix, rows: np.ndarray, fraction: float, min_items: int, seed: int,
    time: np.ndarray | None = None, items: int | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each row's items into (input, target): a random draw, or with ``time`` (one value per
    entry of ``known``, whose indices are sorted) each row's latest items, equal times ordered by column;
    ``holdout_count(n, fraction, items)`` of them."""
    to_target = _holdout_mask(known, rows, fraction, min_items, seed, time, items=items)
    return _masked(known, ~to_target), _masked(known, to_target)


def _holdout_mask(
    known: sp.csr_matrix, rows: np.ndarray, fraction: float, min_items: int, seed: int,
    time: np.ndarray | None = None, stream: tuple[int, ...] = (), items: int | None = None,
    totals: np.ndarray | None = None,
) -> np.ndarray:
    """Which entries of ``known`` (indices sorted) ``_hold_out`` moves to the target. ``stream``
    extends the random draw's seed, so that a second hold-out from the same users draws afresh.
    ``totals`` (one per row): the fraction is of that many items, the count still leaving one of the row's."""
    to_target = np.zeros(known.nnz, dtype=bool)
    for position, row in enumerate(rows):
        start, end = known.indptr[position], known.indptr[position + 1]
        n = end - start
        if n < min_items:
            continue
        count = _holdout_count(n, fraction, items) if totals is None else \
            min(_holdout_count(int(totals[position]), fraction), n - 1)
        if time is not None:
            # ascending by (time, column): the last `count` are the latest
            chosen = np.lexsort((known.indices[start:end], time[start:end]))[n - count:]
        else:
            # Seeded by (seed, row in the full matrix), so a user's holdout does not
            # depend on which other users share the stage or in what order they come.
            rng = np.random.default_rng([int(seed), int(row), *stream])
            chosen = rng.choice(n, size=count, replace=False)
        to_target[start + chosen] = True
    return to_target


def _check_holdout_choice(im: InteractionMatrix, holdout: str) -> str:
    """The matrix's name for messages; DataError for an unknown ``holdout`` or ``latest`` without times."""
    where = im.source or "interaction matrix"
    if holdout not in HOLDOUTS:
        raise DataError(f"{where}: holdout must be one of {', '.join(map(repr, HOLDOUTS))}, got {holdout!r}")
    if holdout == "latest" and im.time is None:
        raise DataError(f"{where}: holdout 'latest' needs each interaction's time, and these data have none "
                        "(a delimited file names its time column with data.time_col)")
    return where


def _check_hold_out(where, holdout_fraction, min_items_to_split, seed, holdout_items=None) -> None:
    if not isinstance(holdout_fraction, numbers.Real) or not 0.0 < holdout_fraction < 1.0:  # NaN fails too
        raise DataError(f"{where}: holdout_fraction must be in (0, 1), got {holdout_fraction!r}")
    if holdout_items is not None and (not _is_integer(holdout_items) or holdout_items < 1):
        raise DataError(f"{where}: holdout_items must be null or an integer >= 1, got {holdout_items!r}")
    if not _is_integer(min_items_to_split) or min_items_to_split < 2:
        raise DataError(f"{where}: min_items_to_split must be an integer >= 2, got {min_items_to_split!r}")
    if not _is_integer(seed) or seed < 0:
        raise DataError(f"{where}: seed must be a non-negative integer, got {seed!r}")


def _masked(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    kept = matrix.copy()
    kept.data = keep.astype(np.float32)
    kept.eliminate_zeros()
    return kept


def _sorted(matrix) -> sp.csr_matrix:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    matrix.sort_indices()
    return matrix


def _integer_pairs(raw: RawInteractions) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0:
        raise DataError(f"{raw.source}: no interactions")
    try:
        users, items = (_integer_ids(np.asarray(ids)) for ids in (raw.user, raw.item))
    except (ValueError, OverflowError):
        raise DataError(f"{raw.source}: a predefined split needs integer user and item ids") from None
    if users.min() < 0 or items.min() < 0:
        raise DataError(f"{raw.source}: negative ids are not allowed")
    return users, items


def _integer_ids(ids: np.ndarray) -> np.ndarray:
    """Ids as int64: decimal text or integers. ValueError for floats and booleans, which ``astype`` would
    truncate (user 1.5 read as user 1) or read as 0 and 1."""
    if ids.dtype.kind in "iu":
        return ids.astype(np.int64)
    if ids.dtype.kind not in "UO":
        raise ValueError(f"ids of dtype {ids.dtype}")
    return ids.astype(str).astype(np.int64)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)


def _npy_writer(array: np.ndarray):
    def write(handle) -> None:
        # serialised in memory: np.save to a real file writes through fwrite, whose short write on a
        # full disk is an OSError without errno ("N requested and M written"), not ENOSPC
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        handle.write(buffer.getbuffer())

    return write


def _load_csr(path: Path) -> sp.csr_matrix:
    if not path.is_file():
        raise DataError(f"{path}: missing from the saved split")
    try:
        matrix = sp.load_npz(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError) as exc:  # EOFError: an empty file
        raise DataError(f"{path}: unreadable sparse matrix: {exc}") from None
    return sp.csr_matrix(matrix)


def _load_ids(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: missing from the saved split")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, MemoryError) as exc:  # EOFError: an empty file; MemoryError: a vast header
        raise DataError(f"{path}: unreadable id array: {exc}") from None
