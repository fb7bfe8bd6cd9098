"""Downloads against a local HTTP server on 127.0.0.1 that drops connections, ignores ranges or
corrupts bytes: resumed with Range requests, SHA-256 verified, nothing unverified left in the cache."""

import dataclasses
import errno
import hashlib
import http.server
import io
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from bindiff.adapters import DataError
from bindiff.adapters.interactions import DATASETS, load_interactions, resolve_dataset
from bindiff.adapters.interactions import download as download_module

RATINGS = "".join(f"{u}::{i}::{(u * i) % 5 + 1}::97830{u:04d}\n" for u in range(1, 80) for i in range(1, 30))


def make_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-1m/ratings.dat", RATINGS)
        archive.writestr("ml-1m/README", "test archive\n")
    return buffer.getvalue()


class Site:
    """What the server does; tests change it between requests."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.drop_after: list[int] = []  # per request: bytes of the body sent before the connection drops
        self.ignore_range = False
        self.send_length = True  # False: no Content-Length, the body ends when the connection closes
        self.requests: list[str | None] = []  # the Range header of every GET
        self.endless = False  # True: after the payload, zeros without end (no Content-Length then)


class Handler(http.server.BaseHTTPRequestHandler):
    site: Site

    def do_GET(self):  # noqa: N802
        site = self.site
        wanted = self.headers.get("Range")
        site.requests.append(wanted)
        body, start = site.payload, 0
        if wanted and not site.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        if site.send_length:
            self.send_header("Content-Length", str(len(rest)))  # the full length...
        self.end_headers()
        if site.drop_after:
            rest = rest[: site.drop_after.pop(0)]  # ...but the connection may close early
        self.wfile.write(rest)
        self.wfile.flush()
        sent = len(rest)
        while site.endless and sent < 1 << 30:  # stops when the client hangs up (or after 1 GiB)
            try:
                self.wfile.write(bytes(1 << 16))
            except OSError:
                return
            sent += 1 << 16
        site.sent = sent

    def log_message(self, *args):
        pass


@pytest.fixture
def site(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(download_module, "_RETRY_DELAY_S", 0.0)
    state = Site(make_zip())
    handler = type("SiteHandler", (Handler,), {"site": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def fetch(monkeypatch, tmp_path, site: Site, sha256: str | None = None):
    sha256 = sha256 or hashlib.sha256(site.payload).hexdigest()
    monkeypatch.setitem(DATASETS, "ml-1m", dataclasses.replace(DATASETS["ml-1m"], url=site.url, sha256=sha256))
    return resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")


def part_file(tmp_path, site: Site):
    return tmp_path / "cache" / f".ml-1m-{hashlib.sha256(site.payload).hexdigest()[:16]}.zip.part"


def assert_complete(source, tmp_path):
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["ml-1m"]  # no .part, no scratch
    assert len(load_interactions(source)) == RATINGS.count("\n")


def test_a_dropped_connection_is_resumed_with_a_range_request(monkeypatch, tmp_path, site):
    half = len(site.payload) // 2
    site.drop_after = [half]
    source = fetch(monkeypatch, tmp_path, site)
    assert site.requests == [None, f"bytes={half}-"]
    assert_complete(source, tmp_path)


def test_a_transfer_that_keeps_failing_is_kept_and_resumed_by_the_next_call(monkeypatch, tmp_path, site):
    piece = len(site.payload) // 10
    site.drop_after = [piece] * 3  # every attempt of the first call breaks off
    with pytest.raises(DataError, match=rf"could not download {site.url}: .*{3 * piece} bytes received are kept"):
        fetch(monkeypatch, tmp_path, site)
    part = part_file(tmp_path, site)
    assert part.read_bytes() == site.payload[: 3 * piece]  # only the bytes that arrived, in order
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [part.name]  # no dataset from a partial file
    assert site.requests == [None, f"bytes={piece}-", f"bytes={2 * piece}-"]

    source = fetch(monkeypatch, tmp_path, site)  # the network is back
    assert site.requests[3:] == [f"bytes={3 * piece}-"]
    assert_complete(source, tmp_path)


def test_a_corrupted_payload_is_refused_and_nothing_is_left(monkeypatch, tmp_path, site):
    good = hashlib.sha256(site.payload).hexdigest()
    corrupted = bytearray(site.payload)
    corrupted[len(corrupted) // 3] ^= 0x01
    site.payload = bytes(corrupted)
    with pytest.raises(DataError, match=rf"{site.url}: SHA-256 [0-9a-f]{{64}} does not match the pinned {good}"):
        fetch(monkeypatch, tmp_path, site, sha256=good)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_corrupted_resumed_payload_is_refused_and_nothing_is_left(monkeypatch, tmp_path, site):
    good = hashlib.sha256(site.payload).hexdigest()
    corrupted = bytearray(site.payload)
    corrupted[-5] ^= 0x01  # in the part that arrives after the resume
    site.payload = bytes(corrupted)
    site.drop_after = [len(corrupted) // 2]
    with pytest.raises(DataError, match="does not match the pinned"):
        fetch(monkeypatch, tmp_path, site, sha256=good)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_stale_partial_file_is_discarded_and_downloaded_again(monkeypatch, tmp_path, site):
    part = part_file(tmp_path, site)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 100)  # left by an older, different file at the same address
    source = fetch(monkeypatch, tmp_path, site)
    assert site.requests == ["bytes=100-", None]  # resumed, failed the hash, started over once
    assert_complete(source, tmp_path)


def test_a_whole_partial_file_is_verified_without_downloading_again(monkeypatch, tmp_path, site):
    part = part_file(tmp_path, site)
    part.parent.mkdir(parents=True)
    part.write_bytes(site.payload)  # a run that was killed while unpacking
    source = fetch(monkeypatch, tmp_path, site)
    assert site.requests == [f"bytes={len(site.payload)}-"]  # answered 416: nothing more to send
    assert_complete(source, tmp_path)


def test_a_server_that_ignores_ranges_restarts_the_file(monkeypatch, tmp_path, site):
    site.drop_after = [len(site.payload) // 3]
    site.ignore_range = True  # answers every request with 200 and the whole file
    source = fetch(monkeypatch, tmp_path, site)
    assert site.requests == [None, f"bytes={len(site.payload) // 3}-"]
    assert_complete(source, tmp_path)


def test_a_verified_payload_that_is_not_a_zip_leaves_nothing(monkeypatch, tmp_path, site):
    site.payload = b"this is not a zip archive" * 10
    with pytest.raises(DataError, match=rf"{site.url}: not a valid zip archive"):
        fetch(monkeypatch, tmp_path, site)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_body_cut_short_without_a_content_length_is_resumed_not_deleted(monkeypatch, tmp_path, site):
    half = len(site.payload) // 2
    site.send_length = False  # HTTP/1.0: the cut body looks complete, only the hash tells
    site.drop_after = [half]
    source = fetch(monkeypatch, tmp_path, site)
    assert site.requests == [None, f"bytes={half}-"]
    assert_complete(source, tmp_path)


def test_a_wrong_file_without_a_content_length_is_still_refused(monkeypatch, tmp_path, site):
    good = hashlib.sha256(site.payload).hexdigest()
    site.payload = site.payload[:-1] + bytes([site.payload[-1] ^ 1])
    site.send_length = False
    with pytest.raises(DataError, match="does not match the pinned"):
        fetch(monkeypatch, tmp_path, site, sha256=good)
    assert list((tmp_path / "cache").iterdir()) == []
    assert site.requests[:2] == [None, f"bytes={len(site.payload)}-"]  # asked for more, was told 416


def test_a_cache_folder_that_cannot_be_made_is_one_line(monkeypatch, tmp_path, site):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setitem(DATASETS, "ml-1m", dataclasses.replace(DATASETS["ml-1m"], url=site.url,
                                                              sha256=hashlib.sha256(site.payload).hexdigest()))
    with pytest.raises(DataError, match=r"afile/sub: cannot hold the download cache \(.*Not a directory.*\); "
                                        r"set BINDIFF_CACHE_DIR to a writable folder"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "afile" / "sub")
    assert site.requests == []


def test_a_refused_connection_gives_the_systems_reason(monkeypatch, tmp_path, site):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    site.url = f"http://127.0.0.1:{port}/ml-1m.zip"
    with pytest.raises(DataError, match=r"could not download .*: \[Errno 111\] Connection refused"):
        fetch(monkeypatch, tmp_path, site)


def test_a_malformed_pinned_checksum_is_refused_before_downloading(tmp_path):
    with pytest.raises(ValueError, match="the pinned SHA-256 must be 64 hexadecimal digits, got 'abc'"):
        download_module.download_archive("x", "http://127.0.0.1:9/x.zip", "abc", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_a_stalled_transfer_keeps_the_bytes_that_arrived(monkeypatch, tmp_path):
    """A server that sends 600 kB of each answer and then stalls: each call must make progress
    (iter_content's 1 MiB reads dropped everything on the read timeout, so no call ever did)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-1m/ratings.dat", RATINGS)
        archive.writestr("ml-1m/blob.bin", os.urandom(2_500_000))
    payload = buffer.getvalue()

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            wanted = self.headers.get("Range")
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1)) if wanted else 0
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            self.wfile.write(payload[start:start + 600_000])
            self.wfile.flush()
            time.sleep(3)

        def log_message(self, *args):
            pass

    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setattr(download_module, "_RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(download_module, "_DOWNLOAD_TIMEOUT_S", 0.5)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sha = hashlib.sha256(payload).hexdigest()
        cache = tmp_path / "cache"
        url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
        with pytest.raises(DataError, match="timed out; the 1800000 bytes received are kept"):
            download_module.download_archive("ml-1m", url, sha, cache)
        download_module.download_archive("ml-1m", url, sha, cache)  # the next call finishes it
        assert (cache / "ml-1m" / "ratings.dat").read_text() == RATINGS
    finally:
        server.shutdown()
        server.server_close()


def test_a_zip_whose_member_is_corrupt_is_one_data_error(monkeypatch, tmp_path, site):
    corrupt = bytearray(site.payload)
    corrupt[corrupt.find(RATINGS[:40].encode()) + 5] ^= 1
    site.payload = bytes(corrupt)  # pinned as it is: the hash matches, the CRC does not
    with pytest.raises(DataError, match="not a valid zip archive: Bad CRC-32"):
        fetch(monkeypatch, tmp_path, site)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_deflated_member_that_does_not_inflate_is_one_data_error(monkeypatch, tmp_path, site):
    """The real archives are deflated: corrupt compressed bytes break the stream itself (zlib's
    error, not a CRC mismatch), and a stream cut short ends early."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-1m/ratings.dat", RATINGS)
    payload = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(payload))) as archive:
        info = archive.getinfo("ml-1m/ratings.dat")
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(data_start + 10, data_start + min(info.compress_size, 400), 13):
        payload[offset] ^= 0xFF  # scrambled compressed bytes, pinned as served
    site.payload = bytes(payload)
    with pytest.raises(DataError, match="not a valid zip archive"):
        fetch(monkeypatch, tmp_path, site)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_a_cache_that_cannot_take_the_data_is_one_line_naming_it(monkeypatch, tmp_path, site, code):
    import tempfile

    real = tempfile.TemporaryFile

    def refuse(*args, dir=None, **kwargs):  # noqa: A002
        if dir is not None and Path(dir) == tmp_path / "cache" and code != errno.ENOSPC:
            raise OSError(code, os.strerror(code), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    if code == errno.ENOSPC:  # the archive arrives; unpacking it fills the disk
        import pooch

        def full(self, fname, action, pooch_instance):
            raise OSError(code, os.strerror(code))
        monkeypatch.setattr(pooch.Unzip, "__call__", full)
    with pytest.raises(DataError, match=rf"{tmp_path / 'cache'}: cannot hold the download cache .*BINDIFF_CACHE_DIR"):
        fetch(monkeypatch, tmp_path, site)
    assert [p for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".part")] == []


def test_two_processes_on_one_cache_download_once(monkeypatch, tmp_path, site):
    """The second process waits for the lock and then finds the data set: no second download that
    deletes and replaces the folder the first process is reading."""
    script = tmp_path / "client.py"
    sha = hashlib.sha256(site.payload).hexdigest()
    piece = len(site.payload) // 40
    site.drop_after = [piece] * 40  # a slow line: 40 resumed pieces, so the two processes overlap
    script_attempts = "from bindiff.adapters.interactions import download; download._DOWNLOAD_ATTEMPTS = 100; download._RETRY_DELAY_S = 0.002\n"
    script.write_text(
        script_attempts + "import dataclasses, sys\n"
        "from bindiff.adapters.interactions import DATASETS, resolve_dataset\n"
        f"DATASETS['ml-1m'] = dataclasses.replace(DATASETS['ml-1m'], url={site.url!r}, sha256={sha!r})\n"
        f"resolve_dataset('ml-1m', data_dir={str(tmp_path / 'data')!r}, cache_dir={str(tmp_path / 'cache')!r})\n")
    env = {**os.environ, "no_proxy": "*", "NO_PROXY": "*"}
    clients = [subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).resolve().parent.parent, env=env) for _ in range(2)]
    assert [c.wait(timeout=120) for c in clients] == [0, 0]
    assert site.requests.count(None) == 1, site.requests  # one transfer from byte 0, resumed by one process


def test_a_process_waiting_for_the_cache_lock_says_so(tmp_path, capfd):
    """It waited for the whole of another process's download without a word."""
    import time

    from bindiff.adapters.interactions.download import _locked

    cache = tmp_path / "cache"
    cache.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from filelock import FileLock; "
        f"lock = FileLock({str(tmp_path / '.cache.bindiff-lock')!r}); lock.acquire(); "
        "print('held', flush=True); time.sleep(1.5)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with _locked(cache):
        waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert waited > 0.5
    assert capfd.readouterr().err == (f"waiting for another bindiff process that downloads into {cache} "
                                      f"(lock {tmp_path / '.cache.bindiff-lock'})\n")



def test_an_endless_body_is_cut_off_at_the_pinned_size(monkeypatch, tmp_path, site):
    """A server that streams without end and without a length filled the disk (the .part kept "to resume")."""
    size = len(site.payload)
    site.send_length, site.endless = False, True
    monkeypatch.setitem(DATASETS, "ml-1m", dataclasses.replace(
        DATASETS["ml-1m"], url=site.url, sha256=hashlib.sha256(site.payload).hexdigest(), size=size))
    with pytest.raises(DataError, match=f"the server sent more than the archive's {size:,} bytes"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # nothing kept
    assert site.requests == [None]  # refused at once, not retried
