"""Readers for user-item interaction files.

Every reader returns RawInteractions with the user and item ids kept as the
strings found in the file, so that an id typed on the command line (`--user 42`)
matches the data without guessing at types.

The line-oriented readers split the whole text at once and check it with numpy,
which reads ML-1M's million lines in about a second; only when that fast path
finds a problem do they scan again line by line to report the first bad line.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = [
    "RawInteractions",
    "read_movielens_ratings",
    "read_ml100k",
    "read_delimited",
    "read_pairs",
    "read_item_lists",
]

_PREVIEW_CHARS = 80

# Names for the delimiters a wrong file is most likely to use instead.
_DELIMITER_NAMES = {"::": "'::'", "\t": "tab", ",": "comma", ";": "semicolon", "|": "'|'", " ": "space"}


@dataclass(frozen=True, eq=False)
class RawInteractions:
    """One row per interaction, as read from the source, before any filtering."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    source: str

    def __post_init__(self) -> None:
        if len(self.user) != len(self.item):
            raise ValueError(f"{self.source}: {len(self.user)} user ids but {len(self.item)} item ids")
        if self.rating is not None and len(self.rating) != len(self.user):
            raise ValueError(f"{self.source}: {len(self.user)} user ids but {len(self.rating)} ratings")

    def __len__(self) -> int:
        return len(self.user)


def read_movielens_ratings(path: str | Path) -> RawInteractions:
    """GroupLens ML-1M style `UserID::MovieID::Rating::Timestamp`, plain or .gz."""
    return _read_fixed_fields(path, sep="::", layout="UserID::MovieID::Rating::Timestamp")


def read_ml100k(path: str | Path) -> RawInteractions:
    """GroupLens ML-100K `u.data`: tab-separated `user item rating timestamp`."""
    return _read_fixed_fields(path, sep="\t", layout="user<TAB>item<TAB>rating<TAB>timestamp")


def read_delimited(
    path: str | Path,
    sep: str = ",",
    user_col: str | int = "user",
    item_col: str | int = "item",
    rating_col: str | int | None = None,
    header: bool = True,
) -> RawInteractions:
    """A CSV/TSV file (plain or .gz) with the user, item and optional rating columns.

    With header=True the columns are named by the first row; without a header
    they are 0-based column numbers.
    """
    path = Path(path)
    text = _read_text(path, encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    wanted = {"user_col": user_col, "item_col": item_col}
    if rating_col is not None:
        wanted["rating_col"] = rating_col

    if header:
        names = next((row for row in reader if row), None)
        if names is None:
            raise DataError(f"{path}: file is empty (no header row)")
        names = [name.strip() for name in names]
        # a header of a million commas makes a message of a million names: show the first ten
        shown = str(names[:10])[:-1] + (f", ... ({len(names)} columns)]" if len(names) > 10 else "]")
        positions = {}
        for key, column in wanted.items():
            if names.count(str(column)) > 1:
                raise DataError(f"{path}: the header names column {str(column)!r} ({key}) more than once: {shown}")
            if str(column) not in names:
                raise DataError(
                    f"{path}: column {column!r} ({key}) not found; columns found with "
                    f"separator {sep!r}: {shown}{_other_delimiter_hint(names, sep)}"
                )
            positions[key] = names.index(str(column))
    else:
        positions = {}
        for key, column in wanted.items():
            try:
                positions[key] = int(column)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: {key}={column!r} must be a 0-based column number when header=False"
                ) from None
            if positions[key] < 0:
                raise DataError(f"{path}: {key}={column!r} must be >= 0")

    for key, other in (("item_col", "user_col"), ("rating_col", "user_col"), ("rating_col", "item_col")):
        if key in positions and positions[key] == positions[other]:
            raise DataError(f"{path}: {key} and {other} name the same column ({wanted[key]!r})")
    needed = max(positions.values()) + 1
    users: list[str] = []
    items: list[str] = []
    ratings: list[str] = []
    line_of_row: list[int] = []
    ui, ii, ri = positions["user_col"], positions["item_col"], positions.get("rating_col")
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < needed:
            raise DataError(
                f"{path}:{reader.line_num}: expected at least {needed} fields separated by "
                f"{sep!r}, found {len(row)}: {_preview(sep.join(row))}"
            )
        users.append(row[ui].strip())
        items.append(row[ii].strip())
        if ri is not None:
            ratings.append(row[ri].strip())
        line_of_row.append(reader.line_num)
    if not users:
        raise DataError(f"{path}: file has no data rows")

    for name, values in (("user", users), ("item", items)):
        if "" in values:
            row = values.index("")
            raise DataError(f"{path}:{line_of_row[row]}: empty {name} id")
    rating = None
    if ri is not None:
        rating = _parse_ratings(ratings, path, lambda row: line_of_row[row])
    return RawInteractions(np.array(users), np.array(items), rating, str(path))


def read_pairs(path: str | Path) -> RawInteractions:
    """A DiffRec `*_list.npy`: int64 array of shape (N, 2) holding (user, item) ids."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        pairs = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array of (user, item) pairs: {exc}") from None
    if not isinstance(pairs, np.ndarray) or pairs.ndim != 2 or pairs.shape[1] != 2:
        shape = getattr(pairs, "shape", None)
        raise DataError(f"{path}: expected an integer array of shape (N, 2), got shape {shape}")
    if pairs.dtype.kind not in "iu":
        raise DataError(f"{path}: expected integer (user, item) ids, got dtype {pairs.dtype}")
    if len(pairs) == 0:
        raise DataError(f"{path}: array holds no (user, item) pairs")
    if pairs.dtype.kind == "i" and (pairs < 0).any():
        row = int(np.flatnonzero((pairs < 0).any(axis=1))[0])
        raise DataError(f"{path}: row {row} holds a negative id {pairs[row].tolist()}")
    return RawInteractions(pairs[:, 0].astype(str), pairs[:, 1].astype(str), None, str(path))


def read_item_lists(path: str | Path) -> RawInteractions:
    """One user per line, `user item item ...` separated by whitespace (the BARS/RecZoo layout).

    A user with no items (a line holding only the id) contributes nothing.
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    for number, line in enumerate(_read_text(path, "utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if not all(field.isdigit() for field in fields):
            bad = next(field for field in fields if not field.isdigit())
            raise DataError(f"{path}:{number}: expected `user item item ...` of integer ids, found {bad!r}")
        users += [fields[0]] * (len(fields) - 1)
        items += fields[1:]
    if not users:
        raise DataError(f"{path}: no interactions (expected lines `user item item ...`)")
    return RawInteractions(np.array(users), np.array(items), None, str(path))


def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: corrupt or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid {encoding.removesuffix('-sig')} text") from None


def _read_fixed_fields(path: str | Path, sep: str, layout: str) -> RawInteractions:
    """Four `sep`-separated fields a line: user, item, rating, integer timestamp."""
    path = Path(path)
    # GroupLens files are latin-1; decoding as latin-1 never fails, and ids are ASCII. A UTF-8
    # byte-order mark (an editor's "save as UTF-8") would otherwise glue itself to the first user id.
    text = _read_text(path, encoding="latin-1")
    lines = text.removeprefix("\xef\xbb\xbf").splitlines()
    line_numbers = None
    if "" in lines:
        line_numbers = [number for number, line in enumerate(lines, 1) if line]
        lines = [lines[number - 1] for number in line_numbers]
    if not lines:
        raise DataError(f"{path}: file is empty (expected lines like {layout})")

    def line_number(row: int) -> int:
        return line_numbers[row] if line_numbers is not None else row + 1

    if sep not in lines[0]:
        raise DataError(_wrong_delimiter_message(path, line_number(0), lines[0], sep, layout))

    fields = _split_fields(lines, sep, 4)
    if isinstance(fields, int):
        row = fields
        raise DataError(
            f"{path}:{line_number(row)}: expected 4 fields separated by "
            f"{_DELIMITER_NAMES.get(sep, repr(sep))} ({layout}), found {len(lines[row].split(sep))}: "
            f"{_preview(lines[row])}"
        )
    users, items, ratings, timestamps = fields[0::4], fields[1::4], fields[2::4], fields[3::4]
    del fields
    # "1 ::10" and "1::11" are one user, as in the CSV reader (ids are stripped there too)
    users, items = [user.strip() for user in users], [item.strip() for item in items]

    for name, values in (("user", users), ("item", items)):
        if "" in values:
            row = values.index("")
            raise DataError(f"{path}:{line_number(row)}: empty {name} id: {_preview(lines[row])}")
    rating = _parse_ratings(ratings, path, line_number)
    try:
        np.array(timestamps, dtype=np.int64)
    except (ValueError, OverflowError):
        row = next(row for row, value in enumerate(timestamps) if not _is_int(value))
        what = "lies beyond 64 bits" if _is_int(timestamps[row], any_size=True) else "is not an integer"
        raise DataError(f"{path}:{line_number(row)}: timestamp {timestamps[row]!r} {what}") from None
    return RawInteractions(np.array(users), np.array(items), rating, str(path))


def _split_fields(lines: list[str], sep: str, n_fields: int) -> list[str] | int:
    """All fields, n_fields per line in order, or the index of the first line that has another count.

    Splitting the joined text at once is several times faster than splitting
    line by line; the per-line separator counts (done on the bytes with numpy)
    guarantee that no short line is made up for by a long one.
    """
    joined = "\n".join(lines)
    codes = np.frombuffer(joined.encode("latin-1"), dtype=np.uint8)
    sep_codes = np.frombuffer(sep.encode("latin-1"), dtype=np.uint8)
    width = max(len(codes) - len(sep_codes) + 1, 0)
    at_sep = np.ones(width, dtype=bool)
    for offset, code in enumerate(sep_codes):
        at_sep &= codes[offset : offset + width] == code
    # Overlapping matches (":::") count twice here, so such a line is flagged
    # whenever str.split would see a different number of fields.
    line_of_sep = np.searchsorted(np.flatnonzero(codes == ord("\n")), np.flatnonzero(at_sep))
    per_line = np.bincount(line_of_sep, minlength=len(lines))
    wrong = np.flatnonzero(per_line != n_fields - 1)
    if wrong.size:
        return int(wrong[0])
    fields = joined.replace(sep, "\n").split("\n")
    if len(fields) != n_fields * len(lines):
        return next(row for row, line in enumerate(lines) if len(line.split(sep)) != n_fields)
    return fields


def _parse_ratings(values, path: Path, line_number) -> np.ndarray:
    try:
        rating = np.array(values, dtype=np.float64)  # float32 would round 0.7 below a float64 threshold of 0.7
    except (ValueError, OverflowError):
        row = next(row for row, value in enumerate(values) if not _is_float(value))
        raise DataError(f"{path}:{line_number(row)}: rating {values[row]!r} is not a number") from None
    finite = np.isfinite(rating)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{path}:{line_number(row)}: rating {values[row]!r} is not a finite number")
    return rating


def _wrong_delimiter_message(path: Path, line: int, text: str, sep: str, layout: str) -> str:
    expected = _DELIMITER_NAMES.get(sep, repr(sep))
    found = next((name for delimiter, name in _DELIMITER_NAMES.items() if delimiter in text.strip()), None)
    what = f"it looks {found}-separated" if found else "no delimiter was found"
    return (
        f"{path}:{line}: expected fields separated by {expected} ({layout}) but {what}: "
        f"{_preview(text)}"
    )


def _other_delimiter_hint(names: list[str], sep: str) -> str:
    """A hint when a header that did not split looks separated by another delimiter."""
    if len(names) != 1:
        return ""
    found = next((name for delimiter, name in _DELIMITER_NAMES.items()
                  if delimiter != sep and delimiter.strip() and delimiter in names[0]), None)
    return f"; the header looks {found}-separated: set data.sep" if found else ""


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_int(value: str, any_size: bool = False) -> bool:
    """An integer that fits int64 (Python's int() alone accepts any size), or of any size."""
    try:
        number = int(value)
    except ValueError:
        return False
    return any_size or -(2**63) <= number < 2**63


def _preview(line: str) -> str:
    if len(line) > _PREVIEW_CHARS:
        line = line[:_PREVIEW_CHARS] + "..."
    return repr(line)
