"""Atomic file writes: a crash never leaves a truncated file under its final name."""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class CheckpointError(ValueError):
    """A checkpoint or run directory that cannot be used; the message names the file. Here, not
    beside the checkpoint code, so that the CLI's error path does not import torch."""


class OutputError(ValueError):
    """An output location that cannot be written (a file in the way, read-only, full); the message
    names the recipe key or option and the path. ``errno``: the file system's reason, when it gave one."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


# What an output location that cannot be written raises (rather than a bug in bindiff).
# ENOENT: a pseudo file system such as /proc, where a folder made is not there
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
               errno.ENOENT, errno.ENAMETOOLONG)


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    ``overwrite=False``: the temporary is linked to ``path`` instead, which fails when another
    process made ``path`` meanwhile (a check before the work cannot see that). A link is followed:
    the file it names is written and the link kept (as ``staged_folder`` does for a folder)."""
    path = Path(path)
    refuse_a_long_name(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
        if path.is_symlink():  # realpath stops at a loop
            raise OutputError(f"{path}: a link that leads back to itself; give a file")
    if path.is_dir() or (path.exists() and not path.is_file()):
        # A rename would replace a folder's name or a device such as /dev/null with a plain file.
        raise OutputError(f"{path}: exists and is not a regular file")
    refuse_a_file_above(path)
    # named before it is made, inside the try that removes it: a stop (Ctrl-C, SIGTERM) arriving as it
    # is made leaves nothing (tempfile's mkstemp made it before its name could be known)
    tmp = _fresh_name(path.parent, path.name, ".tmp")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # 0o666 less the umask: a plain open()'s mode (mkstemp's 0600 had to be widened, and reading
            # the umask means setting it for a moment)
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as err:
            if err.errno in _UNWRITABLE:
                raise OutputError(f"{path}: cannot write there ({err.strerror})", err.errno) from None
            raise
        yield Path(tmp)
        _fsync(tmp)  # the bytes reach the disk before the name does (power loss, not only kill)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_without_overwriting(Path(tmp), path)
        _fsync(path.parent)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        _raise_if_full(err, f"{path}: cannot write there")
        raise


@contextmanager
def staged_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``folder``; it becomes ``folder`` only when the block
    succeeds (an empty ``folder`` already there is replaced), else it is removed: a failed job
    leaves nothing half-written. A folder that cannot be created is an OutputError naming it."""
    import shutil

    folder = Path(folder)
    refuse_a_long_name(folder)
    if folder.is_symlink():  # a link to a (scratch) folder: fill the folder it names, keep the link
        folder = Path(os.path.realpath(folder))
        if folder.is_symlink():  # realpath stops at a loop
            raise OutputError(f"{folder}: a link that leads back to itself; give a folder")
    refuse_a_file_above(folder)
    staging = Path(_fresh_name(folder.parent, folder.name, ".partial"))  # named first, as in atomic_path
    made = list(itertools.takewhile(lambda parent: not parent.exists(), (folder.parent, *folder.parent.parents)))
    try:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging.mkdir(0o777)  # less the umask: a plain mkdir's mode (mkdtemp makes it 0700)
        except OSError as err:
            if err.errno in _UNWRITABLE:
                raise OutputError(f"{folder}: cannot create the output folder ({err.strerror})") from None
            raise
        yield staging
        try:
            if folder.is_dir():
                folder.rmdir()  # empty: checked by the caller before any work
            os.replace(staging, folder)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # another process (the same command started twice) filled it while this one worked
            raise OutputError(f"{folder}: another process wrote this folder while this one worked; bindiff "
                              "never overwrites (this run's results were discarded)") from None
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for parent in made:  # the folders made to hold it, deepest first, while still empty
            try:
                parent.rmdir()
            except OSError:
                break
        _raise_if_full(err, f"{folder}: cannot write the output folder")
        raise


# A write that fails for want of room: the output's fault whatever the block was doing, unlike
# other OSErrors raised inside it (a file it reads that is missing is not the output's).
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _raise_if_full(err: BaseException, where: str) -> None:
    if isinstance(err, OSError) and err.errno in _FULL:
        raise OutputError(f"{where} ({err.strerror})", err.errno) from None


def _publish_without_overwriting(tmp: Path, path: Path) -> None:
    """``tmp`` renamed to ``path`` unless ``path`` exists by now: a hard link fails on an existing
    name, where a rename would replace it. A file system without hard links gets a check and a
    rename (a window of microseconds instead of the whole work)."""
    taken = f"{path}: another process wrote this file while this one worked; bindiff never overwrites " \
            "(nothing was written)"
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputError(taken) from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EINVAL):  # EINVAL: exFAT
            raise
        if path.exists():
            raise OutputError(taken) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def refuse_a_file_above(path: Path) -> None:
    """OutputError when the nearest existing folder above ``path`` is a file (mkdir would only say
    "File exists")."""
    for above in path.parents:
        if above.exists():
            if not above.is_dir():
                raise OutputError(f"{path}: cannot write there ({above} is a file, not a folder)")
            return


def refuse_a_long_name(path: Path) -> None:
    """OutputError for a name the file system cannot hold (every stat of it raises ENAMETOOLONG)."""
    if any(len(os.fsencode(part)) > 255 for part in path.parts) or len(os.fsencode(path)) >= 4096:
        raise OutputError(f"{str(path)[:80]}...: cannot write there (File name too long)", errno.ENAMETOOLONG)


def _short(name: str, limit: int = 200) -> str:
    """``name`` cut to ``limit`` UTF-8 bytes: a temporary adds about 18 to a name that may be legal at 255."""
    return name.encode("utf-8", "surrogateescape")[:limit].decode("utf-8", "ignore")


def _fresh_name(parent: Path, name: str, suffix: str) -> str:
    """A hidden name beside ``name`` that nothing holds: 64 random bits, as unlikely to meet another
    process's as tempfile's names, so that a temporary is named before it is made."""
    return str(parent / f".{_short(name)}.{secrets.token_hex(8)}{suffix}")


def _fsync(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. folders cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - file systems without fsync
        pass
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str, overwrite: bool = True) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        # the text's own line ends on every system: Windows' text mode turned a CSV's \r\n into \r\r\n
        tmp.write_text(text, encoding="utf-8", newline="")


def write_json(path: str | Path, data, overwrite: bool = True) -> None:
    """``data`` as indented JSON, NaN and infinities as ``null``: strict readers (JavaScript, jq,
    most JSON libraries outside Python) refuse Python's bare ``NaN``. ``overwrite``: as ``atomic_path``'s."""
    write_text(path, json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n", overwrite)


def json_safe(data):
    """``data`` with every non-finite float (an undefined metric: an AUROC without errors) as None, and
    numpy's numbers and 0-d arrays or tensors as the Python numbers they hold (json refused np.float32,
    np.int64 and np.bool_; a float32 NaN passed as it is)."""
    if getattr(data, "ndim", None) == 0 and callable(getattr(data, "item", None)) and not isinstance(data, float):
        data = data.item()  # np.float64 is a float already; numpy's other scalars and 0-d arrays are not
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data
