"""Verified downloads of registered archives: pooch for the cache, the checksum and the unzip,
a small downloader of our own for what pooch lacks, resuming a broken transfer.

pooch (``pooch.retrieve``) writes the payload to a temporary file beside its target, checks the
pinned SHA-256 and only then renames it into place, so the cache never holds an unverified
archive; ``pooch.Unzip`` unpacks it. pooch restarts a failed transfer from byte 0 in a fresh
temporary file, though, which on a flaky line may never finish a large archive. ``ResumingDownloader``
keeps what arrived in ``<cache>/.<name>-<sha256 prefix>.zip.part`` and asks for the rest with an HTTP
Range request, within a call and across calls.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
import zlib
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import DataError

_DOWNLOAD_TIMEOUT_S = 60
_CHUNK_BYTES = 1 << 20
_DOWNLOAD_ATTEMPTS = 3  # per call; each attempt resumes where the previous one stopped
_RETRY_DELAY_S = 1.0  # times the attempt number
# the cache's file system, not the download: full, read-only or not ours
_CACHE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def download_archive(name: str, url: str, sha256: str, cache: Path, hint: str = "",
                     present: Callable[[], bool] | None = None, size: int | None = None) -> None:
    """Fetch the zip at ``url``, check its SHA-256 and unpack its entries into ``cache``.

    The archive is unpacked into a scratch folder and only its top-level entries are renamed into
    place, so the cache never holds a half-written data set; the archive itself is removed once
    unpacked. The cache folder is locked while this runs: two processes never share a .part file.
    ``present``: asked once the lock is held; True when another process unpacked the data set while
    this one waited for the lock, and there is nothing left to do. ``size``: the archive's bytes,
    pinned with its hash; a server that sends more (an endless body without a length) is cut off.
    """
    import pooch

    sha256 = sha256.lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):  # found out before the download, not after it
        raise ValueError(f"{name}: the pinned SHA-256 must be 64 hexadecimal digits, got {sha256!r}")
    archive_name = f".{name}-{sha256[:16]}.zip"
    part = cache / f"{archive_name}.part"
    archive = cache / archive_name
    scratch: Path | None = None
    with _cache_folder(cache):
        if present is not None and present():
            return
        try:
            pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=archive_name, path=cache,
                           downloader=ResumingDownloader(part, sha256, hint, size))
            _refuse_escaping_members(archive, url)
            scratch = Path(tempfile.mkdtemp(dir=cache, prefix=f".{name}.unpack-"))
            pooch.Unzip(extract_dir=str(scratch))(str(archive), "download", None)
            for entry in sorted(scratch.iterdir()):
                target = cache / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
                os.replace(entry, target)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a member that does not unpack: bad CRC,
            # a broken deflate stream, cut short
            raise DataError(f"{url}: not a valid zip archive: {exc}") from None
        except OSError as exc:
            if exc.errno not in _CACHE_ERRNOS:
                raise
            raise DataError(f"{cache}: cannot hold the download cache ({_short_reason(exc)}); "
                            "set BINDIFF_CACHE_DIR to a writable folder with room") from None
        finally:  # a broken transfer's .part stays, to be resumed
            with suppress(OSError):  # unlink on a read-only file system fails even for a missing file
                archive.unlink(missing_ok=True)
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _cache_folder(cache: Path):
    """The cache folder, made and locked; a folder that cannot be is one DataError naming it."""
    with ExitStack() as held:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            held.enter_context(_locked(cache))
            tempfile.TemporaryFile(dir=cache).close()  # the lock sits beside it: the folder itself may be unwritable
        except OSError as exc:
            raise DataError(f"{cache}: cannot hold the download cache ({_short_reason(exc)}); "
                            "set BINDIFF_CACHE_DIR to a writable folder") from None
        yield


class ResumingDownloader:
    """A pooch downloader that keeps a partial transfer in ``part`` and resumes it.

    Up to _DOWNLOAD_ATTEMPTS requests per call, each a Range request from the bytes already in
    ``part``; if they all break off the partial file stays for the next call. A complete
    ``part`` whose SHA-256 differs from the pinned one is deleted; if it was resumed from an
    earlier call's bytes (which may belong to an older file at the same address) it is fetched
    once more from byte 0 before giving up.
    """

    def __init__(self, part: Path, sha256: str, hint: str = "", size: int | None = None):
        self.part, self.sha256, self.hint, self.size = part, sha256.lower(), hint, size
        self.may_be_cut = False  # the last answer gave no length, so a cut body looks whole

    def __call__(self, url: str, output_file: str, pooch_instance=None) -> None:
        import pooch

        fresh_retry_left = True
        resumes_left = _DOWNLOAD_ATTEMPTS
        while True:
            resumed_from = self._fill(url)
            digest = pooch.file_hash(str(self.part), alg="sha256")
            if digest == self.sha256:
                os.replace(self.part, output_file)  # pooch checks it again and renames it into place
                return
            if self.may_be_cut and resumes_left:
                # no Content-Length: a body cut short looks complete; ask for what follows it
                # (a 416 answer says the file was whole, and then it is really the wrong file)
                resumes_left -= 1
                continue
            self.part.unlink(missing_ok=True)
            if resumed_from and fresh_retry_left:
                fresh_retry_left = False
                continue
            raise DataError(f"{url}: SHA-256 {digest} does not match the pinned {self.sha256}; "
                            f"the download was deleted")

    def _fill(self, url: str) -> int:
        """Make ``part`` hold the whole payload; return how many bytes were there before."""
        import requests
        import urllib3

        before = self.part.stat().st_size if self.part.exists() else 0
        for attempt in range(1, _DOWNLOAD_ATTEMPTS + 1):
            try:
                self._request_rest(url)
                return before
            except (_Interrupted, requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                refused = status is not None and status < 500  # asking again will not help
                if attempt < _DOWNLOAD_ATTEMPTS and not refused:
                    time.sleep(_RETRY_DELAY_S * attempt)
                    continue
                kept = self.part.stat().st_size if self.part.exists() else 0
                reason = f"HTTP {status}" if status is not None else _short_reason(exc)
                if kept == 0:
                    self.part.unlink(missing_ok=True)
                    raise DataError(f"could not download {url}: {reason}{self.hint}") from None
                raise DataError(f"could not download {url}: {reason}; the {kept} bytes received are kept in "
                                f"{self.part} and the next attempt resumes from there{self.hint}") from None
        raise AssertionError("unreachable")

    def _request_rest(self, url: str) -> None:
        """Append the rest of ``url`` to ``part`` (Range request), or rewrite it whole.

        Returns when the server sent the whole body; _Interrupted when fewer bytes arrived than
        it announced.
        """
        import requests
        from tqdm.auto import tqdm

        offset = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with requests.get(url, headers=headers, stream=True, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            if response.status_code == 416 and offset:  # nothing after offset: the kept file is whole (or stale)
                self.may_be_cut = False
                return
            response.raise_for_status()
            mode = "wb"
            if offset and response.status_code == 206:
                content_range = response.headers.get("Content-Range", "").strip()
                found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
                if found is None or int(found.group(1)) != offset:
                    self.part.unlink(missing_ok=True)  # a range we did not ask for: start over
                    raise _Interrupted(f"the server answered a resume with the wrong range {content_range!r}")
                mode = "ab"
            # urllib3 would drop the bytes of a read that the closing connection cut short; we
            # keep them and compare the count with Content-Length ourselves.
            response.raw.enforce_content_length = False
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            # a server that answers a Range request with the whole body cannot resume anyway
            self.may_be_cut = expected is None and not (offset and response.status_code == 200)
            received = 0
            with open(self.part, mode) as out, tqdm(total=expected, unit="B", unit_scale=True, leave=False,
                                                    desc=f"downloading {PurePosixPath(url).name}",
                                                    disable=not sys.stderr.isatty()) as bar:
                try:
                    # read1 returns what has arrived, so a read that times out loses nothing received
                    # (iter_content's 1 MiB reads dropped up to 1 MiB per stall, and a line that stalled
                    # that often never progressed); urllib3 before 2.2 has no read1: whole reads there
                    read = getattr(response.raw, "read1", response.raw.read)
                    while chunk := read(_CHUNK_BYTES, decode_content=True):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                        if self.size is not None and out.tell() > self.size:
                            break
                finally:  # keep what arrived, even when the connection broke
                    out.flush()
                    os.fsync(out.fileno())
        if self.size is not None and self.part.stat().st_size > self.size:
            self.part.unlink()
            raise DataError(f"{url}: the server sent more than the archive's {self.size:,} bytes (its pinned size, "
                            "with its SHA-256); the download was deleted")
        if expected is not None and received < expected:
            raise _Interrupted(f"the connection closed after {received} of {expected} bytes")


class _Interrupted(Exception):
    """A transfer that ended early; what arrived is kept and resumed."""


def _short_reason(exc: BaseException) -> str:
    """The innermost message of an error: a requests error's own text nests urllib3's whole repr,
    the operating system's reason ("[Errno 111] Connection refused") lies at the bottom."""
    innermost, seen = exc, set()
    while id(exc) not in seen:
        seen.add(id(exc))
        if str(exc):
            innermost = exc
        exc = exc.__cause__ or exc.__context__
        if exc is None:
            break
    text = str(innermost) or type(innermost).__name__
    return text.splitlines()[0][:200]


def _refuse_escaping_members(archive: Path, url: str) -> None:
    """zipfile would silently rename such members; refuse the archive instead."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as handle:
            names = handle.namelist()
    except zipfile.BadZipFile as exc:
        raise DataError(f"{url}: not a valid zip archive: {exc}") from None
    for member in names:
        parts = PurePosixPath(member).parts
        if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(f"{url}: archive member {member!r} would unpack outside the cache")


@contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (``filelock``, released by the system if the process dies).

    The lock file sits beside the folder, so the cache holds nothing but data sets (its parent
    must be writable: the refusal names the lock file). A process that has to wait says so,
    rather than hang without a word for a whole download.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder.parent / f".{folder.name}.bindiff-lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another bindiff process that downloads into {folder} (lock {lock.lock_file})",
              file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
