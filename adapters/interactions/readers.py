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
import numbers
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
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
    """One row per interaction, as read from the source, before any filtering.

    time: each interaction's timestamp (int64, or float64 when a delimited file's time column holds
    fractions), or None when the source has no time: ML-1M's and ML-100K's fourth field, a delimited
    file's ``time_col``. ``split.holdout: latest`` holds out each evaluation user's latest items by it.
    """

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray | None
    source: str
    time: np.ndarray | None = None

    def __post_init__(self) -> None:
        if len(self.user) != len(self.item):
            raise ValueError(f"{self.source}: {len(self.user)} user ids but {len(self.item)} item ids")
        if self.rating is not None and len(self.rating) != len(self.user):
            raise ValueError(f"{self.source}: {len(self.user)} user ids but {len(self.rating)} ratings")
        if self.time is not None and len(self.time) != len(self.user):
            raise ValueError(f"{self.source}: {len(self.user)} user ids but {len(self.time)} timestamps")

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
    *,
    keys: dict | None = None,
    time_col: str | int | None = None,
) -> RawInteractions:
    """A CSV/TSV file (plain or .gz) with the user, item and optional rating and time columns.

    With header=True the columns are named by the first row; without a header
    they are 0-based column numbers. ``keys``: what the messages call the columns and the
    separator's remedy, or a function of the delimiter seen giving it (``user_col``, ``item_col``,
    ``rating_col``, ``time_col``, ``sep``), by default
    the recipe's keys. Times must be numbers (Unix seconds, say): int64 when every one is an integer,
    else float64; or, where the first one starts ``YYYY-MM-DD``, ISO 8601 dates and times, read as
    Unix seconds (int64; UTC unless they carry an offset; a column mixing the two is refused).
    """
    keys = {"user_col": "user_col", "item_col": "item_col", "rating_col": "rating_col", "time_col": "time_col",
            "sep": "set data.sep", **(keys or {})}
    if not isinstance(sep, str) or len(sep) != 1:  # csv's TypeError named its own "delimiter"
        raise ValueError(f"sep must be one character, got {sep!r}")
    if not isinstance(header, (bool, np.bool_)):  # header='no' is truthy: its first row was read as the header
        raise ValueError(f"header must be True or False, got {header!r}")
    header = bool(header)
    path = Path(path)
    text = _read_text(path, encoding="utf-8-sig")
    # strict: text after a closing quote, or a quote never closed, is an error (csv otherwise reads
    # on silently, and an unclosed quote swallows the rest of the file); a quote inside an unquoted
    # field (Bob"s) stays part of it
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    wanted = {"user_col": user_col, "item_col": item_col}
    if rating_col is not None:
        wanted["rating_col"] = rating_col
    if time_col is not None:
        wanted["time_col"] = time_col

    if header:
        names = next((row for row in _rows(reader, path) if row), None)
        if names is None:
            raise DataError(f"{path}: file is empty (no header row)")
        names = [name.strip() for name in names]
        # a header of a million commas makes a message of a million names: show the first ten
        shown = str(names[:10])[:-1] + (f", ... ({len(names)} columns)]" if len(names) > 10 else "]")
        positions = {}
        for key, column in wanted.items():
            if names.count(str(column)) > 1:
                raise DataError(f"{path}: the header names column {str(column)!r} ({keys[key]}) more than once: "
                                f"{shown}")
            if str(column) not in names:
                raise DataError(
                    f"{path}: column {column!r} ({keys[key]}) not found; columns found with "
                    f"separator {sep!r}: {shown}{_other_delimiter_hint(names, sep, keys['sep'])}"
                )
            positions[key] = names.index(str(column))
    else:
        positions = {}
        for key, column in wanted.items():
            try:
                if isinstance(column, (bool, np.bool_)) or (isinstance(column, numbers.Number)
                                                           and not isinstance(column, numbers.Integral)):
                    raise TypeError  # int() would read True as column 1 and 1.7 as column 1
                positions[key] = int(column)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: {keys[key]}={column!r} must be a 0-based column number when header=False"
                ) from None
            if positions[key] < 0:
                raise DataError(f"{path}: {keys[key]}={column!r} must be >= 0")

    for key, other in (("item_col", "user_col"), ("rating_col", "user_col"), ("rating_col", "item_col"),
                       ("time_col", "user_col"), ("time_col", "item_col"), ("time_col", "rating_col")):
        if key in positions and other in positions and positions[key] == positions[other]:
            raise DataError(f"{path}: {key} and {other} name the same column ({wanted[key]!r})")
    needed = max(positions.values()) + 1
    users: list[str] = []
    items: list[str] = []
    ratings: list[str] = []
    times: list[str] = []
    line_of_row: list[int] = []
    ui, ii, ri, ti = positions["user_col"], positions["item_col"], positions.get("rating_col"), positions.get("time_col")
    last_line = reader.line_num
    warned = False
    for row in _rows(reader, path):
        used = [row[k] for k in (ui, ii, ri, ti) if k is not None and k < len(row)]  # other columns may span lines
        if reader.line_num > last_line + 1 and any("\n" in field or "\r" in field for field in used):
            raise DataError(f"{path}:{last_line + 1}: a quoted field runs over lines "
                            f"{last_line + 1}-{reader.line_num}; ids and ratings are one line each (is a quote "
                            "left open?)")
        if reader.line_num > last_line + 1 and not warned:
            warned = _warn_if_rows_swallowed(path, row, last_line + 1, reader.line_num, sep,
                                             len(names) if header else needed)
        last_line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < needed:
            raise DataError(
                f"{path}:{reader.line_num}: expected at least {needed} fields separated by "
                f"{sep!r}, found {len(row)}: {_preview(sep.join(row))}"
            )
        if header and len(row) > len(names) and any(field.strip() for field in row[len(names):]):
            raise DataError(f"{path}:{reader.line_num}: {len(row)} fields but the header names {len(names)}: "
                            f"{_preview(sep.join(row))}; an id holding {sep!r} must be quoted")
        users.append(row[ui].strip())
        items.append(row[ii].strip())
        if ri is not None:
            ratings.append(row[ri].strip())
        if ti is not None:
            times.append(row[ti].strip())
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
    time = None
    if ti is not None:
        time = _parse_times(times, path, lambda row: line_of_row[row], keys["time_col"])
    return RawInteractions(_id_array(users, path, "user", lambda row: line_of_row[row]),
                           _id_array(items, path, "item", lambda row: line_of_row[row]), rating, str(path), time)


def header_names(path: str | Path, sep: str = ",") -> list[str]:
    """The column names of a delimited file's header (its first non-empty row), stripped; for a
    reader that chooses among columns (``recommend --input``: a rating column is optional). Reads
    the file only as far as its header; a file it cannot read gets ``read_delimited``'s line."""
    path = Path(path)
    try:
        opened = gzip.open(path, "rt", encoding="utf-8-sig", newline="") if path.suffix == ".gz" else \
            open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed just below
        with opened as handle:
            names = next((row for row in _rows(csv.reader(handle, delimiter=sep, strict=True), path) if row), None)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):  # not found, a damaged gzip, not UTF-8
        _read_text(path, encoding="utf-8-sig")  # the whole file, for the one line naming what is wrong
        raise
    if names is None:
        raise DataError(f"{path}: file is empty (no header row)")
    return [name.strip() for name in names]


def _rows(reader, path: Path):
    """The reader's rows, its errors (a quote never closed, text after a closing quote, a field
    beyond csv's size limit) as one line naming the line where the bad row starts."""
    start = reader.line_num + 1
    try:
        for row in reader:
            yield row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{start}: not readable as delimited text from this line on ({exc}); "
                        "is a quote left open?") from None


def read_pairs(path: str | Path) -> RawInteractions:
    """A DiffRec `*_list.npy`: int64 array of shape (N, 2) holding (user, item) ids."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        pairs = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as exc:  # MemoryError: a header claiming a vast shape
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
    return RawInteractions(_decimal_ids(pairs[:, 0]), _decimal_ids(pairs[:, 1]), None, str(path))


def _decimal_ids(column: np.ndarray) -> np.ndarray:
    """Non-negative integer ids as decimal strings, as wide as the longest (``astype(str)`` makes every
    int64 21 characters wide: 84 bytes an id, and a slower sort when the ids are indexed)."""
    return column.astype(f"<U{len(str(int(column.max())))}")


def read_item_lists(path: str | Path) -> RawInteractions:
    """One user per line, `user item item ...` separated by whitespace (the BARS/RecZoo layout).

    A user with no items (a line holding only the id) contributes nothing.
    """
    path = Path(path)
    users: list[str] = []
    items: list[str] = []
    for number, line in enumerate(_read_text(path, "utf-8-sig").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        # ASCII digits only: str.isdigit takes '١' and '²', which would be items of their own beside '1'
        if not all(field.isascii() and field.isdigit() for field in fields):
            bad = next(field for field in fields if not (field.isascii() and field.isdigit()))
            raise DataError(f"{path}:{number}: expected `user item item ...` of integer ids, found {bad!r}")
        users += [fields[0]] * (len(fields) - 1)
        items += fields[1:]
    if not users:
        raise DataError(f"{path}: no interactions (expected lines `user item item ...`)")
    return RawInteractions(_id_array(users, path, "user", lambda row: f"interaction {row + 1}"),
                           _id_array(items, path, "item", lambda row: f"interaction {row + 1}"), None, str(path))


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
    # UTF-8 first, so ids such as "José" are kept as written; GroupLens's own files are latin-1
    # (their ids are ASCII), which never fails to decode. Lines end at "\n" only: str.splitlines
    # also breaks at characters such as U+0085, which latin-1 makes of the byte 0x85.
    try:
        text = _read_text(path, encoding="utf-8-sig")
    except DataError as exc:
        if "not valid utf-8" not in str(exc):
            raise
        text = _read_text(path, encoding="latin-1").removeprefix("\xef\xbb\xbf")  # a BOM before latin-1 bytes
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
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
    user_ids, item_ids = (_id_array(users, path, "user", line_number), _id_array(items, path, "item", line_number))
    rating = _parse_ratings(ratings, path, line_number)
    try:
        time = np.array(timestamps, dtype=np.int64)
    except (ValueError, OverflowError):
        row = next(row for row, value in enumerate(timestamps) if not _is_int(value))
        what = "lies beyond 64 bits" if _is_int(timestamps[row], any_size=True) else "is not an integer"
        raise DataError(f"{path}:{line_number(row)}: timestamp {timestamps[row]!r} {what}") from None
    return RawInteractions(user_ids, item_ids, rating, str(path), time)


def _split_fields(lines: list[str], sep: str, n_fields: int) -> list[str] | int:
    """All fields, n_fields per line in order, or the index of the first line that has another count.

    Splitting the joined text at once is several times faster than splitting
    line by line; the per-line separator counts (done on the bytes with numpy)
    guarantee that no short line is made up for by a long one.
    """
    joined = "\n".join(lines)
    # UTF-8 bytes: an ASCII separator or newline byte never occurs inside a multi-byte character
    codes = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    sep_codes = np.frombuffer(sep.encode("utf-8"), dtype=np.uint8)
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


# An id longer than this is a malformed file (a quote left open swallows the lines after it), not an id.
MAX_ID_CHARS = 1000
# numpy stores strings at the width of the longest: one long id among two million short ones
# would cost rows × its length × 4 bytes, so longer ids stay Python strings (an object array).
_FIXED_WIDTH_CHARS = 64


def _id_array(values: list[str], path: Path, name: str, line_number) -> np.ndarray:
    """The ids of one column, checked for length, as compact as their longest allows."""
    if not values:
        return np.array(values, dtype=str)
    longest = max(map(len, values))
    if longest > MAX_ID_CHARS:
        row = next(row for row, value in enumerate(values) if len(value) == longest)
        raise DataError(f"{path}:{line_number(row)}: a {name} id of {longest} characters (at most {MAX_ID_CHARS}): "
                        f"{_preview(values[row])}; is a quote left open?")
    return np.array(values) if longest <= _FIXED_WIDTH_CHARS else np.array(values, dtype=object)


def _parse_ratings(values, path: Path, line_number) -> np.ndarray:
    # float64: float32 would round 0.7 below a float64 threshold of 0.7
    return _finite_numbers(values, path, line_number, "rating")


def _parse_times(values: list[str], path: Path, line_number, key: str) -> np.ndarray:
    """A time column: int64 when every value is an integer (exact beyond 2**53, as nanoseconds need),
    else float64; a column of ISO 8601 dates and times (its first value starting YYYY-MM-DD) as Unix
    seconds. A value that is neither a finite number nor, in a column of dates, a date is refused
    naming its line and ``key``."""
    try:
        return np.array(values, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    if values and _ISO_DATE.match(values[0]):
        return _iso_seconds(values, path, line_number, key)
    return _finite_numbers(values, path, line_number, "time", f" ({key})",
                           or_else=f" (nor an ISO 8601 date and time, {_EXAMPLES})")


# an ISO 8601 calendar date, as a time column's first value: the column is read as dates and times
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# The ISO 8601 bindiff reads, alike on every Python: a calendar date, then optionally a time (hours,
# minutes, seconds, a fraction of any length) after "T", "t" or a space, then optionally "Z" or an
# offset (±HH, ±HHMM, ±HH:MM). fromisoformat alone differs by version (3.10 refuses "Z", fractions of
# other than 3 or 6 digits, ±HHMM; 3.11 reads week dates and basic formats) and takes any character
# between date and time, so "2024-01-15+05:00" became 05:00 UTC.
_ISO_GRAMMAR = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[Tt ](\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?"
                          r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?")
_EXAMPLES = "such as 2024-01-05, 2024-01-05 10:30 or 2024-01-05T10:30:00Z"


def from_iso(value: str) -> datetime:
    """An ISO 8601 date and time as a ``datetime`` (naive without an offset), read alike on every
    Python bindiff supports; a date with an offset and no time is midnight at that offset.
    ValueError for anything else."""
    match = _ISO_GRAMMAR.fullmatch(value)
    if match is None:
        raise ValueError(f"not an ISO 8601 date and time: {value!r}")
    date, hour, minute, second, fraction, utc, sign, offset_hours, offset_minutes = match.groups()
    time = f"{hour or '00'}:{minute or '00'}:{second or '00'}" + (f".{fraction[:6]:0<6}" if fraction else "")
    offset = "+00:00" if utc else f"{sign}{offset_hours}:{offset_minutes or '00'}" if sign else ""
    return datetime.fromisoformat(f"{date}T{time}{offset}")


def _iso_seconds(values: list[str], path: Path, line_number, key: str) -> np.ndarray:
    """ISO 8601 dates and times (2024-01-05, 2024-01-05 10:30, 2024-01-05T10:30:00.25Z, +01:00) as Unix
    seconds: int64 when every one is a whole second, else float64. Times without an offset are read
    as UTC; a column mixing times with and without one is refused, since they cannot be ordered."""
    seconds = np.empty(len(values), dtype=np.float64)
    aware_row = naive_row = None
    for row, value in enumerate(values):
        try:
            moment = from_iso(value)
        except ValueError:
            first = f", as the column's first value, {values[0]!r}, is" if row else ""
            raise DataError(f"{path}:{line_number(row)}: time {value!r} ({key}) is not an ISO 8601 date and time "
                            f"({_EXAMPLES}){first}") from None
        if moment.tzinfo is None:
            naive_row = row if naive_row is None else naive_row
            moment = moment.replace(tzinfo=timezone.utc)
        else:
            aware_row = row if aware_row is None else aware_row
        if aware_row is not None and naive_row is not None:
            raise DataError(f"{path}:{line_number(max(aware_row, naive_row))}: time {value!r} ({key}): the column "
                            f"mixes times with a UTC offset (line {line_number(aware_row)}) and without one (line "
                            f"{line_number(naive_row)}), which cannot be ordered; write every time one way")
        seconds[row] = moment.timestamp()
    if np.all(seconds == np.round(seconds)):
        return seconds.astype(np.int64)
    return seconds


def _finite_numbers(values, path: Path, line_number, what: str, named: str = "", or_else: str = "") -> np.ndarray:
    """``values`` as float64; DataError naming the line of the first that is not a finite number
    (``or_else``: what else the column could have held)."""
    try:
        numbers = np.array(values, dtype=np.float64)
    except (ValueError, OverflowError):
        row = next(row for row, value in enumerate(values) if not _is_float(value))
        raise DataError(f"{path}:{line_number(row)}: {what} {values[row]!r}{named} is not a number{or_else}") from None
    finite = np.isfinite(numbers)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{path}:{line_number(row)}: {what} {values[row]!r}{named} is not a finite number")
    return numbers


def _wrong_delimiter_message(path: Path, line: int, text: str, sep: str, layout: str) -> str:
    expected = _DELIMITER_NAMES.get(sep, repr(sep))
    found = next((name for delimiter, name in _DELIMITER_NAMES.items() if delimiter in text.strip()), None)
    what = f"it looks {found}-separated" if found else "no delimiter was found"
    return (
        f"{path}:{line}: expected fields separated by {expected} ({layout}) but {what}: "
        f"{_preview(text)}"
    )


def _warn_if_rows_swallowed(path: Path, row: list[str], first: int, last: int, sep: str, n_fields: int) -> bool:
    """Warn (once per file) when a field bindiff does not read runs over lines that look like rows.

    Quoted text in an unread column (a review) may hold line breaks, so such a field is read as it
    is; but a quote left open there swallows the rows after it until some later quote closes it,
    and those interactions would be lost without a word. Two or more swallowed lines with a full
    row's separators are taken as that mistake."""
    rows_inside = sum(line.count(sep) >= n_fields - 1 for field in row for line in field.splitlines()[1:])
    if rows_inside < 2:
        return False
    from ...progress import warn  # a BindiffWarning: one line from the bindiff command

    warn(f"{path}:{first}: a quoted field runs over lines {first}-{last} and holds {rows_inside} lines "
        "that look like rows of this file; they were read as that field's text, not as interactions (is a quote "
        "left open?)")
    return True


def _other_delimiter_hint(names: list[str], sep: str, remedy="set data.sep") -> str:
    """A hint when a header that did not split looks separated by another delimiter (a space is
    too common inside a column's name to tell); ``remedy``: the advice, or a function of the
    delimiter found giving it."""
    if len(names) != 1:
        return ""
    found = next((delimiter for delimiter in _DELIMITER_NAMES
                  if delimiter not in (sep, " ") and delimiter in names[0]), None)
    if found is None:
        return ""
    return f"; the header looks {_DELIMITER_NAMES[found]}-separated: {remedy(found) if callable(remedy) else remedy}"


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
