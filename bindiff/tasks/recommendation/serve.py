"""Using a trained recommendation run: score and rank histories of raw item ids, for the run's own
users or for new ones (fold-in: a new user is a history, nothing is retrained).

``Recommender.from_run(run_dir)`` loads the model once; ``score`` and ``recommend`` take
histories as lists of raw item ids and work in batches of ``eval.batch_size``. An item id the
run never saw cannot be an input bit: it is reported in ``Recommendation.unknown``, never
dropped silently. A history's scores depend on the history alone: a run that scores with
random bits draws them for each history from the run's seed, so neither the other histories
of a call nor earlier calls change them.
"""

from __future__ import annotations

import csv
import gzip
import io
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Container, Iterable, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.interactions import Split
from ...adapters.interactions.datasets import default_separator
from ...adapters.interactions.readers import header_names, read_delimited
from ...config import argument
from ...core.params import plain
from ...files import OutputError, atomic_path
from ...metrics import topk_excluding
from ...progress import log, piped_lines
from ...training.devices import device_of
from .job import load_run
from .models import draws_random_bits, make_scorer


@dataclass
class Recommendation:
    """The top-k items for one history, best first, and the history's ids the run does not know."""

    items: list[str]
    scores: list[float]
    unknown: list[str] = field(default_factory=list)


class Recommender:
    """A trained run's model, loaded once, scoring histories of raw item ids."""

    def __init__(self, config: dict, model: torch.nn.Module, item_ids: Sequence[str], split: Split | None = None):
        self.config, self.model, self.split = config, model, split
        self.item_ids = np.asarray(item_ids).astype(str)
        self.column = {item: j for j, item in enumerate(self.item_ids.tolist())}
        if len(self.column) != len(self.item_ids):  # a history's item would be read as one column, ranked as another
            seen: set = set()
            twice = next(item for item in self.item_ids.tolist() if item in seen or seen.add(item))
            raise ValueError(f"item_ids: {twice!r} is listed twice; each column is one distinct item")
        self.scorer = make_scorer(model, config, seed=config["seed"])
        self.batch_size = config["eval"]["batch_size"]
        self.random = draws_random_bits(config)

    @classmethod
    def from_run(cls, run_dir: str | Path, checkpoint: str = "best", device=None) -> "Recommender":
        config, split, model, _ = load_run(run_dir, checkpoint=checkpoint, device=device)
        return cls(config, model, split.item_ids, split)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode(self, histories: Sequence[Iterable[str]]) -> tuple[sp.csr_matrix, list[list[str]]]:
        """Histories as binary CSR rows over the run's items, and each history's unknown ids."""
        indptr, indices, unknown = [0], [], []
        if isinstance(histories, str):
            raise TypeError("histories must be a list of histories, each a list of item ids, not a string")
        for history in histories:
            if isinstance(history, str):  # its characters would be read as item ids
                raise TypeError(f"each history must be a list of item ids, got the string {history!r} "
                                f"(write [[{history!r}]] for one history of one item)")
            known, missing = set(), []
            for item in history:
                item = str(item)
                if item in self.column:
                    known.add(self.column[item])
                elif item not in missing:
                    missing.append(item)
            indices += sorted(known)
            indptr.append(len(indices))
            unknown.append(missing)
        data = np.ones(len(indices), dtype=np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(histories), self.n_items)), unknown

    @torch.no_grad()
    def score(self, histories: Sequence[Iterable[str]]) -> np.ndarray:
        """(n, n_items) scores, higher is better; columns in the order of ``item_ids``."""
        rows, _ = self.encode(histories)
        return np.concatenate([batch.numpy() for batch, _ in self._scored(rows)]) if rows.shape[0] else \
            np.zeros((0, self.n_items), dtype=np.float32)

    @torch.no_grad()
    def recommend(self, histories: Sequence[Iterable[str]], k: int = 20,
                  progress: bool | None = False) -> list[Recommendation]:
        """The ``k`` best items of each history that are not in it, as raw ids, best first.
        ``progress`` as ``output.progress``: a bar of the batches (None: on a terminal, else a line
        per batch)."""
        k = plain(k)  # a 0-d array or tensor: the number it holds
        if not isinstance(k, numbers.Real) or not k >= 1:  # "3", None, [3]: a TypeError naming nothing
            raise ValueError(f"k must be a positive integer, got {k!r}")
        rows, unknown = self.encode(histories)
        out: list[Recommendation] = []
        batches = -(-rows.shape[0] // self.batch_size)
        shown = tqdm(self._scored(rows), total=batches, desc="recommend", unit="batch",
                     disable=None if progress is None else not progress)
        lines = piped_lines(progress)
        for batch, (scores, batch_rows) in enumerate(shown, 1):
            if lines:
                log(f"recommend: batch {batch}/{batches} ({min(batch * self.batch_size, rows.shape[0])} of "
                    f"{rows.shape[0]} histories)")
            top = topk_excluding(scores, batch_rows, min(k, self.n_items)).numpy()
            # the listed ids and scores gathered once per batch: read element by element from the
            # tensor they cost twice as long as scoring the batch
            listed_scores = np.take_along_axis(scores.numpy(), np.maximum(top, 0), axis=1)
            for items, values in zip(top, listed_scores):
                listed = items >= 0  # -1 pads a history that leaves fewer than k items
                out.append(Recommendation(self.item_ids[items[listed]].tolist(), values[listed].tolist(),
                                          unknown[len(out)]))
        return out

    def history_of(self, raw_user: str) -> list[str]:
        """The raw item ids the run holds for one of its own users (train, fold-in and held-out)."""
        if self.split is None:
            raise DataError("this recommender was built without its run's split; pass histories instead")
        return [str(self.item_ids[j]) for j in user_history(self.split, str(raw_user)).indices]

    def _scored(self, rows: sp.csr_matrix):
        device = device_of(self.model)
        for start in range(0, rows.shape[0], self.batch_size):
            batch = rows[start:start + self.batch_size]
            x = torch.from_numpy(batch.toarray()).to(device)
            if not self.random:
                scores = self.scorer(x)
            elif self.config["inference"]["mode"] == "one_step":  # the draws one history alone gets, batched
                scores = make_scorer(self.model, self.config, seed=self.config["seed"], per_history=True)(x)
            else:  # a sampled reverse run draws inside the chain: one history at a time
                scores = torch.cat([make_scorer(self.model, self.config, seed=self.config["seed"])(row[None])
                                    for row in x])
            yield scores.float().cpu(), batch


def user_history(split: Split, raw_user: str) -> sp.csr_matrix:
    """Every interaction the run knows for a user, as one CSR row (what a recommendation excludes)."""
    rows = []
    for ids, matrices in ((split.train_user_ids, [split.train]),
                          (split.valid.user_ids, [split.valid.input, split.valid.exclude, split.valid.target]),
                          (split.test.user_ids, [split.test.input, split.test.exclude, split.test.target])):
        hits = np.flatnonzero(ids == raw_user)
        rows += [m[hits] for m in matrices if len(hits)]
    if not rows:
        where = ("has no history in this run's split (a temporal split keeps the users who train or are scored: "
                 "not one whose first items came after the validation cut-off without a test item, nor one only "
                 "after a cut-off or not in its data)" if split.kind == "temporal"
                 else "is not in this run's data")
        instead = argument("Recommender.from_run(run_dir).recommend([items])", "--items ID,ID,... or --input FILE")
        raise DataError(f"user {raw_user!r} {where}; pass the user's items instead ({instead})")
    history = sp.csr_matrix(sum(rows[1:], rows[0]))  # each part holds a user at most once: one row
    history.data[:] = 1.0
    history.sort_indices()
    return history


def recommend(run_dir: str | Path, raw_user: str, k: int = 20) -> list[tuple[str, float]]:
    """Top-k unseen items for one of the run's users, as (raw item id, score), best first."""
    recommender = Recommender.from_run(run_dir)
    (result,) = recommender.recommend([recommender.history_of(raw_user)], k)
    return list(zip(result.items, result.scores))


def _input_remedy(delimiter: str) -> str:
    """What to do with an --input file whose header looks separated by ``delimiter``."""
    if delimiter == "\t":
        return "name the file .tsv"
    if delimiter == ",":
        return "name the file .csv"
    return "--input reads comma-separated .csv and tab-separated .tsv files"


class InputHistories(NamedTuple):
    """What ``read_histories`` read: users in order of first appearance, each one's item ids, and
    how many rows were left out for a rating below the run's ``data.min_rating``."""

    users: list[str]
    histories: list[list[str]]
    below_min_rating: int = 0


def read_histories(path: str | Path, data: dict | None = None, items: Container | None = None) -> InputHistories:
    """Users and their histories from a CSV file (plain or .gz; tab-separated when named .tsv, as
    training data files are) with a header naming a user and an item column; read as training
    data files are, so the same file problems get the same messages (naming what ``--input``
    needs, not recipe keys).

    ``data``: the run's ``data`` section. Its own column names (``user_col``, ``item_col``,
    ``rating_col``, where they are names) are read where the header holds them, else ``user``,
    ``item`` and ``rating``, and its separator (``data.sep``) where the name's does not split the
    header into them, so a file in the training data's layout reads as it stands. For a run trained
    on a file without a header (``data.header: false``), a file whose first row names no user and
    item column is read as that file was: no header, the run's column numbers and separator. With a
    ``data.min_rating``, rows of a rating column below it are not interactions, as in training;
    a user all of whose rows are below it is kept, with an empty history. ``items``: the run's item
    ids; read without a header, a first row whose user has no other row and whose item the run
    lacks is refused as the header it most likely is (``user_id,item_id``), not read as a user."""
    data = data or {}
    # the name's separator, or the run's own (data.sep) where only that one splits out the columns
    separators = list(dict.fromkeys([default_separator(path), data.get("sep") or default_separator(path)]))
    header = True
    for sep in separators:
        try:
            names = header_names(path, sep)
        except DataError:  # quotes that only the other separator reads: the name's message comes below
            continue
        if _column(names, data, "user_col", "user") and _column(names, data, "item_col", "item"):
            break
    else:
        if _headerless(data):  # no header naming the columns, from a run trained on a file without one
            header, sep, names = False, data.get("sep") or default_separator(path), []
        else:  # neither: read with the name's, whose messages say what is missing
            sep = separators[0]
            names = header_names(path, sep)
    if header:
        user_col = _column(names, data, "user_col", "user") or "user"
        item_col = _column(names, data, "item_col", "item") or "item"
        rating_col = _column(names, data, "rating_col", "rating")
    else:  # the run's own column numbers
        rating_col = data.get("rating_col") if isinstance(data.get("rating_col"), int) else None
        user_col, item_col = data["user_col"], data["item_col"]
    # ratings matter only where the run kept some of them: every row is an interaction otherwise
    rating_col = rating_col if data.get("min_rating") is not None else None
    raw = read_delimited(path, sep=sep, user_col=user_col, item_col=item_col, rating_col=rating_col, header=header,
                         keys={"user_col": _label(data, "user_col", "user"), "item_col": _label(data, "item_col", "item"),
                               "rating_col": _label(data, "rating_col", "rating"), "sep": _input_remedy})
    if not header and items is not None and len(raw):
        first_user, first_item = str(raw.user[0]), str(raw.item[0])
        if first_item not in items and int((raw.user == raw.user[0]).sum()) == 1:
            raise DataError(f"{path}:1: {first_user!r},{first_item!r} would be read as a user and an item (the "
                            f"run trained on a file without a header), but the run has no item {first_item!r}: "
                            "a header? Delete that line, or name the columns user and item")
    kept = np.ones(len(raw), dtype=bool) if rating_col is None else raw.rating >= data["min_rating"]
    histories: dict[str, list[str]] = {}
    for user, item, keep in zip(raw.user.tolist(), raw.item.tolist(), kept.tolist()):
        history = histories.setdefault(user, [])
        if keep:
            history.append(item)
    return InputHistories(list(histories), list(histories.values()), int((~kept).sum()))


def _headerless(data: dict) -> bool:
    """Whether the run trained on a delimited file without a header (columns by number)."""
    return data.get("header") is False and all(
        isinstance(data.get(key), int) and not isinstance(data.get(key), bool) for key in ("user_col", "item_col"))


def _column(names: list[str], data: dict, key: str, generic: str) -> str | None:
    """The header's name for a column: the run's own (``data[key]``, where a name) or ``generic``."""
    return next((name for name in (data.get(key), generic) if isinstance(name, str) and name in names), None)


def _label(data: dict, key: str, generic: str) -> str:
    """What a message calls an --input column: the names it may have."""
    own = data.get(key)
    return f"--input's {generic} column" + (f", {own!r} or {generic!r}" if isinstance(own, str) and own != generic
                                             else "")


def write_recommendations(path: str | Path, users: Sequence[str], results: Sequence[Recommendation]) -> None:
    """``user,rank,item,score`` rows with a header, written atomically (tab-separated for a name
    ending in .tsv, gzip-compressed for one ending in .gz, as ``--input`` reads them)."""
    path = Path(path)
    try:
        with atomic_path(path, overwrite=False) as tmp, open(tmp, "wb") as raw:
            # gzip's header names the output, not its temporary, and holds no time: a seed gives the same bytes
            binary = gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else raw
            with io.TextIOWrapper(binary, encoding="utf-8", newline="") as handle:
                writer = csv.writer(handle, delimiter=default_separator(path))
                writer.writerow(["user", "rank", "item", "score"])
                for user, result in zip(users, results):
                    for rank, (item, score) in enumerate(zip(result.items, result.scores), 1):
                        writer.writerow([user, rank, item, f"{score:.6g}"])
    except OutputError as err:
        raise OutputError(f"--output {err}") from None
