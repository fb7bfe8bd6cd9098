"""The shared plumbing (atomic files, run folders, recipes and overrides, checkpoints, scoring,
the task lifecycle and registry, plugins, verified downloads) against independent truths: each
test kills a mutant of that code which the rest of the suite let survive (a thirteenth audit
pass, by mutation). Each docstring names its mutant as ``file:line before -> after``.

Eight mutants of that pass change nothing observable, so no test here names them:
- files.py ``is_dir() or`` dropped in the output check: a folder already fails ``exists() and not is_file()``;
- files.py ``break`` -> ``continue`` removing made folders: each higher folder holds the one that stayed;
- files.py ``allow_nan=True`` in write_json: ``json_safe`` has turned every non-finite value into null;
- scoring.py ``!= 1`` -> ``> 1`` for a case's predictions: an empty list is refused earlier;
- base.py ``% 2**31`` -> ``% 2**32`` for derived seeds: ``torch.manual_seed`` takes 64 bits (other,
  equally reproducible numbers);
- recipe.py ``.strip()`` of an override's key: a key with spaces is refused either way;
- checkpoint.py the run lock's ``timeout=0`` -> ``1``: the same refusal, a second later;
- checkpoint.py ``lock.release()`` dropped: the lock object's finaliser releases it when the
  context ends (a second process takes it at once).
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest
from bindiff.adapters import DataError
from bindiff.adapters.interactions import download


# ---------------------------------------------------------------------------------------------------
# adapters/interactions/download.py
# ---------------------------------------------------------------------------------------------------
class _Server:
    """A local HTTP server whose answers each test scripts: ``answers`` is a list of callables
    (handler, range_start) -> None, used one per request (the last one repeats)."""

    def __init__(self, payload: bytes):
        self.payload, self.requests, self.answers = payload, [], []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append(wanted)
                start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1)) if wanted else 0
                answer = server.answers[min(len(server.requests), len(server.answers)) - 1] if server.answers \
                    else _honest
                answer(self, start, server.payload)

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/ml-1m.zip"

    def close(self):
        self.http.shutdown()
        self.http.server_close()
        self.thread.join()


def _honest(handler, start, payload, length=True, cut=None):
    if start >= len(payload) and start:
        handler.send_response(416)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    handler.send_response(206 if start else 200)
    if start:
        handler.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
    rest = payload[start:]
    if length:
        handler.send_header("Content-Length", str(len(rest)))
    handler.end_headers()
    handler.wfile.write(rest if cut is None else rest[:cut])


def _status(code):
    def answer(handler, start, payload):
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
    return answer


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


PAYLOAD = _zip({"ml-1m/ratings.dat": b"1::2::3::4\n" * 2000, "ml-1m/README": b"test\n"})


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setattr(download, "_RETRY_DELAY_S", 0.0)
    running = _Server(PAYLOAD)
    yield running
    running.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _part(cache: Path, data: bytes = PAYLOAD) -> Path:
    return cache / f".ml-1m-{_sha(data)[:16]}.zip.part"


def test_an_upper_case_pinned_checksum_is_the_same_checksum(server, tmp_path):
    """download.py:50 `sha256 = sha256.lower()` dropped: an upper-case hex digest (as some sites print
    it) was refused as malformed."""
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD).upper(), tmp_path / "cache")
    assert (tmp_path / "cache" / "ml-1m" / "README").read_bytes() == b"test\n"


def test_a_pinned_checksum_one_digit_short_is_refused_before_any_request(server, tmp_path):
    """download.py:51 `{64}` -> `{63,64}`: a checksum with a digit lost in copying reached the network."""
    with pytest.raises(ValueError, match="must be 64 hexadecimal digits"):
        download.download_archive("ml-1m", server.url, _sha(PAYLOAD)[:63], tmp_path / "cache")
    assert server.requests == []


def test_a_link_in_the_cache_is_replaced_and_what_it_points_at_kept(server, tmp_path):
    """download.py:68 `and not target.is_symlink()` dropped (rmtree refuses a link: OSError) and :70
    `or target.is_symlink()` dropped (a dangling link: rename of a folder onto it fails)."""
    cache, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    cache.mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    (cache / "ml-1m").symlink_to(elsewhere, target_is_directory=True)
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD), cache)
    assert not (cache / "ml-1m").is_symlink() and (cache / "ml-1m" / "README").read_bytes() == b"test\n"
    assert (elsewhere / "keep.txt").read_text() == "mine"  # the link's target untouched

    (cache / "ml-1m").rename(tmp_path / "old")
    (cache / "ml-1m").symlink_to(tmp_path / "nowhere")  # dangling
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD), cache)
    assert (cache / "ml-1m" / "README").read_bytes() == b"test\n"


def test_a_wrong_file_fetched_from_byte_0_is_fetched_once(server, tmp_path):
    """download.py:133 `resumed_from and fresh_retry_left` -> `fresh_retry_left`: a wrong file whose
    transfer began at byte 0 was downloaded a second time before the refusal (only bytes kept from an
    earlier call, perhaps of an older file, earn a fresh try)."""
    with pytest.raises(DataError, match="does not match the pinned"):
        download.download_archive("ml-1m", server.url, _sha(b"another file"), tmp_path / "cache")
    assert server.requests == [None]


def test_a_wrong_file_without_a_length_is_fetched_fresh_once_more_at_most(server, tmp_path):
    """download.py:133 -> `resumed_from`: without a Content-Length every fetch from byte 0 is
    followed by a resume (416: the file was whole); the docstring's rule, one more fetch from byte 0
    after a resumed file fails its check, allows [0, resume, 0, resume] and no more."""
    server.answers = [lambda h, s, p: _honest(h, s, p, length=False)]
    with pytest.raises(DataError, match="does not match the pinned"):
        download.download_archive("ml-1m", server.url, _sha(b"another file"), tmp_path / "cache")
    n = len(PAYLOAD)
    assert server.requests == [None, f"bytes={n}-", None, f"bytes={n}-"]


def test_a_server_error_500_is_asked_again(server, tmp_path):
    """download.py:151 `status < 500` -> `<= 500`: an HTTP 500 (a server's passing fault) was taken
    as a refusal and not retried."""
    server.answers = [_status(500), _honest]
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache")
    assert server.requests == [None, None]
    assert (tmp_path / "cache" / "ml-1m" / "README").read_bytes() == b"test\n"


def test_a_failure_before_any_byte_leaves_no_part_file_and_no_promise_to_resume(server, tmp_path):
    """download.py:157 `if kept == 0:` -> False: an empty .part was left and the message promised
    that '0 bytes received are kept'."""
    server.answers = [_status(404)]
    with pytest.raises(DataError) as caught:
        download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache")
    assert str(caught.value).startswith(f"could not download {server.url}: HTTP 404")
    assert "kept" not in str(caught.value)
    assert not _part(tmp_path / "cache").exists()


def test_a_416_to_a_request_from_byte_0_is_an_http_error(server, tmp_path):
    """download.py:176 `status_code == 416 and offset` -> `== 416`: a 416 to a plain GET was read as
    'the kept file is whole' with no file kept (a FileNotFoundError traceback)."""
    server.answers = [_status(416)]
    with pytest.raises(DataError, match=r"could not download .*: HTTP 416"):
        download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache")


def test_a_resume_answered_with_the_wrong_range_starts_over(server, tmp_path):
    """download.py:184 `int(found.group(1)) != offset` -> False (the wrong bytes appended, the file
    refused) and :185 the .part's unlink dropped (the same wrong offset asked for again)."""
    half = len(PAYLOAD) // 2

    def wrong_range(handler, start, payload):  # says (and sends) bytes from 0, not from `start`
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes 0-{len(payload) - 1}/{len(payload)}")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    server.answers = [lambda h, s, p: _honest(h, s, p, cut=half), wrong_range, _honest]
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache")
    assert server.requests == [None, f"bytes={half}-", None]
    assert (tmp_path / "cache" / "ml-1m" / "README").read_bytes() == b"test\n"


def test_a_whole_body_sent_to_a_range_request_is_not_resumed_again(server, tmp_path):
    """download.py:194 `and not (offset and status == 200)` dropped: a server that answers a Range
    request with the whole body and no length was asked again and again after a mismatch. By the
    docstring's rules: the stale .part is resumed (whole body back, refused), then fetched from 0
    once more, whose length-less body is resumed once (whole body back again, refused)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    wrong = _sha(b"another file")
    _part(cache, b"another file").write_bytes(b"x" * 100)
    server.answers = [lambda h, s, p: _honest(h, 0, p, length=False)]  # ignores Range, no length
    with pytest.raises(DataError, match="does not match the pinned"):
        download.download_archive("ml-1m", server.url, wrong, cache)
    assert server.requests == ["bytes=100-", None, f"bytes={len(PAYLOAD)}-"]


def test_an_archive_of_exactly_its_pinned_size_is_accepted(server, tmp_path):
    """download.py:213 `st_size > self.size` -> `>=`: the right file, of exactly the pinned size, was
    deleted as 'more than the archive's bytes'."""
    download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache", size=len(PAYLOAD))
    assert (tmp_path / "cache" / "ml-1m" / "README").read_bytes() == b"test\n"


def test_the_bytes_that_arrived_are_flushed_to_disk(server, tmp_path, monkeypatch):
    """download.py:212 `os.fsync(out.fileno())` dropped: the kept .part (resumed after a crash or
    power loss) could be a file whose length was written but not its bytes."""
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    piece = len(PAYLOAD) // 4
    server.answers = [lambda h, s, p: _honest(h, s, p, cut=piece)]  # every answer breaks off
    with pytest.raises(DataError, match="bytes received are kept"):
        download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache")
    part = _part(tmp_path / "cache")
    assert part.stat().st_size == 3 * piece
    assert synced.count(str(part)) == 3  # after each of the three attempts


@pytest.mark.parametrize("member", ["../outside.txt", "/etc/outside.txt", "\\outside.txt", "C:outside.txt",
                                    "ml-1m/../../outside.txt"])
def test_an_archive_member_that_would_unpack_outside_the_cache_is_refused(server, tmp_path, member):
    """download.py:251, each condition dropped (`".." in parts`, the leading slash or backslash, a
    drive letter): zipfile renames such members silently; the archive is refused instead."""
    server.payload = _zip({"ml-1m/README": b"x", member: b"y"})
    with pytest.raises(DataError, match=re.escape(f"archive member {member!r} would unpack outside the cache")):
        download.download_archive("ml-1m", server.url, _sha(server.payload), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_body_longer_than_the_pinned_size_is_refused_even_when_it_pauses_at_that_size(server, tmp_path):
    """download.py:208 `out.tell() > self.size` -> `>=`: reading stopped at exactly the pinned size,
    so a server that sends the archive, pauses, then sends more was taken at its word; the rule
    (docstring, message) is that a server sending more than the archive's bytes is refused."""
    import time

    def longer(handler, start, payload):
        handler.send_response(200)
        handler.end_headers()  # no Content-Length: the body ends when the connection closes
        handler.wfile.write(payload)
        handler.wfile.flush()
        time.sleep(0.3)
        handler.wfile.write(b"trailing bytes")

    server.answers = [longer]
    with pytest.raises(DataError, match=f"sent more than the archive's {len(PAYLOAD):,} bytes"):
        download.download_archive("ml-1m", server.url, _sha(PAYLOAD), tmp_path / "cache", size=len(PAYLOAD))


# ---------------------------------------------------------------------------------------------------
# bindiff/config/recipe.py
# ---------------------------------------------------------------------------------------------------
def test_a_key_that_also_takes_text_keeps_number_like_text_as_text():
    """recipe.py:47 `and str not in spec.types` dropped: a key of a registered task typed (str, float)
    read the text 'inf' as infinity (then refused as not finite) and '1e-3' as a number. Only where
    text is not accepted is "1e-3" (a string to YAML 1.1) read as a number."""
    from bindiff.config.keys import key
    from bindiff.config.recipe import _check_value

    either = key((str, float), "x", "text or a number")
    assert _check_value("task.k", either, "inf", "override") == "inf"
    assert _check_value("task.k", either, "1e-3", "override") == "1e-3"
    number = key(float, 1.0, "a number")
    assert _check_value("task.k", number, "1e-3", "override") == 0.001


@pytest.mark.parametrize("text, number", [("1e2", 100.0), ("2.5E4", 25000.0), ("-1e-3", -0.001)])
def test_a_free_section_reads_scientific_numbers_with_or_without_an_exponent_sign(text, number):
    """recipe.py:71 `[eE][+-]?` -> `[eE][+-]`: `1e2` (which YAML 1.1 reads as text) stayed text in a
    free-form section such as diffusion.schedule_params."""
    from bindiff.config import load_recipe

    config = load_recipe(None, [f"diffusion.schedule_params.beta_end={text}"])
    assert config["diffusion"]["schedule_params"]["beta_end"] == number
    assert isinstance(config["diffusion"]["schedule_params"]["beta_end"], float)


@pytest.mark.parametrize("value", ["3", "[1, 2]", "text"])
def test_a_free_section_given_a_value_is_one_line(value):
    """recipe.py:106 `if not isinstance(value, dict):` -> False: `denoiser.params=3` reached
    ``value.items()`` (an AttributeError traceback) instead of a RecipeError naming the key."""
    from bindiff.config import RecipeError, load_recipe

    with pytest.raises(RecipeError, match=r"key 'denoiser.params' must be a mapping, got"):
        load_recipe(None, [f"denoiser.params={value}"])


def test_yaml_merge_keys_merge_as_the_yaml_spec_says(tmp_path):
    """recipe.py:148 the merge key's `continue` dropped: the loader that refuses a key given twice
    constructed `<<` itself (a ConstructorError), so a recipe using anchors with `<<: *name` was
    refused. Merge-key semantics (yaml.org/type/merge): the mapping's own keys win over the merged ones."""
    from bindiff.config import load_recipe
    from bindiff.config.recipe import read_yaml_file

    path = tmp_path / "doc.yaml"
    path.write_text("base: &b {lr: 0.1, epochs: 2}\nmore: &m {patience: 4}\na:\n  <<: [*b, *m]\n  lr: 0.2\n")
    assert read_yaml_file(path)["a"] == {"lr": 0.2, "epochs": 2, "patience": 4}

    recipe = tmp_path / "merged.yaml"
    recipe.write_text("diffusion:\n  schedule_params: &sp {beta_end: 0.02, beta_start: 0.001}\n"
                      "denoiser:\n  params:\n    <<: *sp\n    beta_end: 0.5\n")
    assert load_recipe(recipe)["denoiser"]["params"] == {"beta_end": 0.5, "beta_start": 0.001}


def test_a_recipe_file_without_a_name_is_named_after_the_file(tmp_path):
    """recipe.py:346 `if "name" not in loaded:` -> False: the run was named `run`, not after the file
    (docs/recipes.md: "the file's stem is used")."""
    from bindiff.config import load_recipe

    path = tmp_path / "my_experiment.yaml"
    path.write_text("seed: 3\n")
    assert load_recipe(path)["name"] == "my_experiment"
    path.write_text("name: given\nseed: 3\n")
    assert load_recipe(path)["name"] == "given"


def test_a_bad_name_inside_a_recipe_is_named_as_its_key_not_as_the_files_name(tmp_path):
    """recipe.py:361 `and "name" not in loaded` dropped: a recipe whose `name: exp:1` is unusable was
    told that the *file's* name gave the run name, and to 'set name: in the recipe' (it had)."""
    from bindiff.config import RecipeError, load_recipe

    path = tmp_path / "fine.yaml"
    path.write_text("name: 'exp:1'\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert str(caught.value).startswith(f"{path}: key 'name' must be one folder name")
    assert "file's name" not in str(caught.value)
    bad_file = tmp_path / "CON.yaml"
    bad_file.write_text("seed: 1\n")
    with pytest.raises(RecipeError, match=r"the file's name gives the run name 'CON'"):
        load_recipe(bad_file)


def test_a_resolved_recipe_is_written_in_its_sections_order():
    """recipe.py:418 `sort_keys=False` -> True: config.yaml listed `data`, `denoiser`, `diffusion`, ...
    alphabetically instead of name, seed, task and the sections in the recipe's order."""
    import yaml

    from bindiff.config import dump_recipe, load_recipe

    config = load_recipe(None, ["seed=4"])
    text = dump_recipe(config)
    assert text.splitlines()[:3] == ["name: run", "seed: 4", "task: recommend"]
    assert list(yaml.safe_load(text)) == list(config)
    assert list(yaml.safe_load(text)["train"]) == list(config["train"])


def test_a_stored_config_without_a_task_key_is_a_recommendation_config():
    """recipe.py:434 the stored config's default task "recommend" -> another: a run's config.yaml
    written before `task` existed no longer loaded (the schema's default task is recommend)."""
    from bindiff.config import dump_recipe, load_recipe, recipe_from_text

    config = load_recipe(None, ["seed=5"])
    text = "".join(line + "\n" for line in dump_recipe(config).splitlines() if not line.startswith("task:"))
    assert recipe_from_text(text, source="old/config.yaml") == config


def test_a_stored_config_with_keys_since_renamed_loads_under_the_new_names():
    """recipe.py:457 the emptied old section's deletion dropped: a run stored with
    `optimizer: {warmup_steps: 5}` (before the move to train.warmup_steps) left an empty `optimizer`
    section behind, refused as an unknown key: the old run no longer loaded."""
    from bindiff.config import dump_recipe, load_recipe, recipe_from_text

    config = load_recipe(None, ["train.warmup_steps=5", "train.lr_decay=cosine"])
    text = dump_recipe(config).replace("  warmup_steps: 5\n", "").replace("  lr_decay: cosine\n", "")
    text += "optimizer:\n  warmup_steps: 5\n  decay: cosine\n"
    assert recipe_from_text(text, source="old/config.yaml") == config


def test_a_run_folder_is_named_by_time_and_the_first_8_hex_digits_of_its_config_sha256(tmp_path):
    """recipe.py:463 `[:8]` -> `[:7]` and runs.py:32 `attempt == 1` -> `attempt == 0` (the first run
    of a second got a `-1` suffix): docs/getting-started.md says `<YYYYmmdd-HHMMSS>-<hash>`, the hash
    being the first 8 hex digits of the SHA-256 of the resolved recipe (config.yaml's text)."""
    from bindiff.config import load_recipe
    from bindiff.runs import create_run_dir

    config = load_recipe(None, [f"output.root={tmp_path}", "name=exp"])
    run = create_run_dir(config)
    found = re.fullmatch(r"(\d{8})-(\d{6})-([0-9a-f]{8})", run.name)
    assert found and run.parent == tmp_path / "exp"
    assert found.group(3) == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------------
# bindiff/plugins.py
# ---------------------------------------------------------------------------------------------------
def test_a_plugin_inside_a_package_that_is_not_there_is_one_line(monkeypatch):
    """plugins.py:44 `name == err.name or name.startswith(err.name + ".")` -> `name == err.name`:
    `BINDIFF_PLUGINS=nosuchpkg.plugin` (whose package is missing: the error names `nosuchpkg`) was a
    ModuleNotFoundError traceback instead of the PluginError line."""
    from bindiff.plugins import PluginError, load_plugins

    monkeypatch.setenv("BINDIFF_PLUGINS", "bindiff_no_such_package_x.plugin")
    with pytest.raises(PluginError, match=r"BINDIFF_PLUGINS: no module named 'bindiff_no_such_package_x.plugin'"):
        load_plugins()


def test_load_plugins_returns_the_names_it_imported(monkeypatch):
    """plugins.py:35 `loaded.append(point.value)` and :48 `loaded.append(name)` dropped: the
    docstring's return value ("their names") missed the entry points' modules or the variable's."""
    from importlib.metadata import EntryPoint

    from bindiff import plugins

    point = EntryPoint(name="mine", value="colorsys", group=plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [point] if group == plugins.GROUP else [])
    monkeypatch.setenv("BINDIFF_PLUGINS", " json , ,os.path")
    assert plugins.load_plugins() == ["colorsys", "json", "os.path"]


# ---------------------------------------------------------------------------------------------------
# bindiff/tasks/registry.py
# ---------------------------------------------------------------------------------------------------
def test_a_task_without_a_name_is_not_registered(monkeypatch):
    """registry.py:25 `or not task.name` dropped: a Task subclass that forgot its `name` (the base
    class's "") was registered as the task "" that no recipe can name."""
    from bindiff.config import schema
    from bindiff.config.keys import key
    from bindiff.tasks import registry
    from bindiff.tasks.base import Task

    monkeypatch.setattr(schema, "TASKS", dict(schema.TASKS))
    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))

    class Nameless(Task):
        pass

    with pytest.raises(TypeError, match="register_task takes an instance of bindiff.tasks.base.Task with a name"):
        registry.register_task(Nameless(), {"eval": {"select": key(str, "loss", "metric")}})
    assert "" not in registry.TASKS and "" not in schema.TASKS


def test_an_unknown_task_name_is_a_recipe_error():
    """registry.py:42 `if name not in TASKS:` -> False: an unknown task was a KeyError traceback."""
    from bindiff.config import RecipeError
    from bindiff.tasks import registry

    with pytest.raises(RecipeError, match=r"key 'task' must be one of recommend, masks, segmentation, got 'nope'"):
        registry.get_task("nope")


def test_training_a_hand_made_config_without_a_task_reads_it_as_a_recipe():
    """registry.py:50 `and "task" in config` -> `and True`: a hand-made dict without `task` was a
    KeyError traceback; it is read as a recipe is (here: refused for its unknown key, in one line)."""
    from bindiff.config import RecipeError
    from bindiff.tasks import registry

    with pytest.raises(RecipeError, match=r"config: unknown key 'bogus'"):
        registry.train({"bogus": 1})


# ---------------------------------------------------------------------------------------------------
# bindiff/training/checkpoint.py
# ---------------------------------------------------------------------------------------------------
def test_a_checkpoint_saved_with_a_numpy_dimension_loads_with_weights_only(tmp_path):
    """checkpoint.py:40 `int(dim)` -> `dim`: a dimension given as a numpy integer (a matrix's
    shape[1] read through numpy) was pickled as a numpy scalar, which `weights_only=True` refuses:
    the run's own checkpoint could not be read back."""
    import numpy as np
    import torch

    from bindiff.training.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "best.pt"
    save_checkpoint(path, config_yaml="task: recommend\n", model=torch.nn.Linear(2, 2), dim=np.int64(7))
    payload = load_checkpoint(path)
    assert payload["dim"] == 7 and type(payload["dim"]) is int


def _checkpoint_file(path: Path, **changes) -> Path:
    import torch

    from bindiff.training.checkpoint import save_checkpoint

    save_checkpoint(path, config_yaml="task: recommend\n", model=torch.nn.Linear(3, 2), dim=3)
    if changes:
        payload = torch.load(path, weights_only=True)
        payload.update(changes)
        torch.save(payload, path)
    return path


def test_a_checkpoint_that_is_not_there_is_named_as_missing(tmp_path):
    """checkpoint.py:96 `if not path.is_file():` -> False: a missing best.pt (or a folder of that
    name) was called "not a readable checkpoint (truncated or not a torch file ...)"."""
    from bindiff.files import CheckpointError
    from bindiff.training.checkpoint import load_checkpoint

    for path in (tmp_path / "absent.pt", tmp_path):
        with pytest.raises(CheckpointError, match=re.escape(f"{path}: checkpoint not found")):
            load_checkpoint(path)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's memory map")
def test_a_checkpoint_loaded_with_mmap_stays_mapped_not_read(tmp_path):
    """checkpoint.py:102 `mmap=mmap and ...` -> `mmap=False`: scoring read every tensor of the file
    (the optimiser's moments too) into memory instead of mapping it; the file must show in the
    process's memory map."""
    import gc

    from bindiff.training.checkpoint import load_checkpoint

    path = _checkpoint_file(tmp_path / "mapped.pt")
    payload = load_checkpoint(path, mmap=True)
    assert str(path) in Path("/proc/self/maps").read_text()
    del payload
    gc.collect()
    unmapped = load_checkpoint(path)  # the default reads it
    assert str(path) not in Path("/proc/self/maps").read_text() and unmapped["dim"] == 3


@pytest.mark.parametrize("version", [2, 0, "1"])
def test_a_checkpoint_of_another_format_version_is_refused(tmp_path, version):
    """checkpoint.py:118 `!= FORMAT_VERSION` -> `is None`: a checkpoint of a later format (2) was
    read as if it were of format 1."""
    from bindiff.files import CheckpointError
    from bindiff.training.checkpoint import load_checkpoint

    path = _checkpoint_file(tmp_path / "other.pt", format_version=version)
    with pytest.raises(CheckpointError, match="not a bindiff checkpoint of format 1"):
        load_checkpoint(path)


@pytest.mark.parametrize("key, value, kind", [("dim", "3", "int"), ("dim", None, "int"), ("config_yaml", 5, "str"),
                                              ("config_yaml", None, "str"), ("model", [1], "dict")])
def test_a_checkpoint_whose_keys_have_the_wrong_type_is_named(tmp_path, key, value, kind):
    """checkpoint.py:120 `("dim", int)` or `("config_yaml", str)` dropped from the checks: a damaged
    checkpoint reached the model builder or the YAML reader (a traceback deep inside)."""
    from bindiff.files import CheckpointError
    from bindiff.training.checkpoint import load_checkpoint

    path = _checkpoint_file(tmp_path / "damaged.pt", **{key: value})
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: key '{key}' is missing or not a {kind}")):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------------
# bindiff/files.py
# ---------------------------------------------------------------------------------------------------
def _fd_path(fd: int):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # pragma: no cover - no /proc
        return fd


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names a descriptor through /proc")
@pytest.mark.parametrize("overwrite", [True, False])
def test_an_atomic_write_syncs_the_bytes_before_the_name_and_the_folder_after(tmp_path, monkeypatch, overwrite):
    """files.py:67 `_fsync(tmp)` and :72 `_fsync(path.parent)` dropped: after a power loss the final
    name could hold an empty file (the rename reached the disk before the bytes), or the rename be
    lost. The order that makes a rename durable: fsync(temporary), rename, fsync(folder)."""
    from bindiff import files

    events = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", _fd_path(fd))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("publish", str(a))), real_replace(a, b))[1])
    monkeypatch.setattr(os, "link", lambda a, b: (events.append(("publish", str(a))), real_link(a, b))[1])
    target = tmp_path / "out.txt"
    files.write_text(target, "hello", overwrite=overwrite)
    assert target.read_text() == "hello"
    ((_, tmp),) = [event for event in events if event[0] == "publish"]
    assert events.index(("fsync", tmp)) < events.index(("publish", tmp)) < events.index(("fsync", str(tmp_path)))


def _umask_mode(make) -> int:
    old = os.umask(0o027)
    try:
        return make()
    finally:
        os.umask(old)


def test_written_files_and_folders_get_the_modes_a_plain_open_and_mkdir_give(tmp_path):
    """files.py:61 `0o666` -> `0o600` and :98 `staged_folder`'s `0o777` -> `0o700`: outputs were
    private to their owner where the user's umask shares them (tempfile's modes, not open()'s)."""
    from bindiff.files import staged_folder, write_text

    def make():
        with open(tmp_path / "plain.txt", "w"):
            pass
        (tmp_path / "plain_dir").mkdir()
        write_text(tmp_path / "atomic.txt", "x")
        with staged_folder(tmp_path / "staged") as folder:
            (folder / "f").write_text("y")
        return 0

    _umask_mode(make)
    mode = lambda p: (tmp_path / p).stat().st_mode & 0o777
    assert mode("plain.txt") == 0o640 and mode("plain_dir") == 0o750
    assert mode("atomic.txt") == mode("plain.txt") and mode("staged") == mode("plain_dir")


def test_a_name_of_255_bytes_is_written_and_one_of_256_is_one_line(tmp_path):
    """files.py:171 `_short`'s limit 200 -> 250 (the hidden temporary beside a 255-byte name passed
    the file system's 255) and :167 `> 255` -> `> 256` (a 256-byte name reached the file system):
    255 bytes is the longest name ext4, APFS and NTFS hold."""
    from bindiff.files import OutputError, write_text

    longest = tmp_path / ("é" * 127 + "x")  # 255 bytes in UTF-8
    assert len(os.fsencode(longest.name)) == 255
    write_text(longest, "kept")
    assert longest.read_text() == "kept" and sorted(p.name for p in tmp_path.iterdir()) == [longest.name]
    with pytest.raises(OutputError, match=r"cannot write there \(File name too long\)"):
        write_text(tmp_path / ("x" * 256), "no")


def test_a_path_of_4096_bytes_is_one_line(tmp_path):
    """files.py:167 `>= 4096` -> `> 4096`: Linux's PATH_MAX (4096) counts the closing NUL, so a path
    of 4096 bytes cannot be used; it raised ENAMETOOLONG from a stat, a traceback."""
    from bindiff.files import OutputError, write_text

    base = len(os.fsencode(str(tmp_path)))
    parts, left = [], 4096 - base
    while left > 0:  # "/" + a part of at most 200 bytes, until the path is exactly 4096 bytes
        size = min(200, left - 1)
        if 0 < left - 1 - size < 2:
            size -= 2
        parts.append("d" * size)
        left -= size + 1
    path = tmp_path.joinpath(*parts)
    assert len(os.fsencode(str(path))) == 4096
    with pytest.raises(OutputError, match=r"File name too long"):
        write_text(path, "no")


def test_a_failed_write_leaves_no_temporary_and_a_full_disk_is_one_line(tmp_path):
    """files.py:74 the temporary's unlink dropped and :75 `_raise_if_full` dropped: a block that
    failed left `.<name>.<random>.tmp` behind; a full disk inside the block was a bare OSError."""
    from bindiff.files import OutputError, atomic_path

    with pytest.raises(ZeroDivisionError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise ZeroDivisionError("a bug in the block")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path / 'b.txt'}: cannot write there (No space left")) \
            as caught:
        with atomic_path(tmp_path / "b.txt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_a_staged_folder_replaces_an_empty_folder_and_a_failed_one_leaves_nothing(tmp_path):
    """files.py:105 `if folder.is_dir(): folder.rmdir()` skipped (an empty folder given as --out was
    refused by the rename), :115 the staging's removal dropped, :121 `_raise_if_full` dropped."""
    from bindiff.files import OutputError, staged_folder

    (tmp_path / "out").mkdir()
    with staged_folder(tmp_path / "out") as staging:
        (staging / "r.json").write_text("{}")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "failed") as staging:
        (staging / "half.json").write_text("{")
        raise RuntimeError("a bug")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path / 'full'}: cannot write the output folder (No space")):
        with staged_folder(tmp_path / "full"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_write_that_must_not_overwrite_leaves_only_the_file(tmp_path):
    """files.py:152 `os.unlink(tmp)` dropped: after the hard link that publishes it, the temporary's
    own name stayed beside the file (a second copy of every `score --out` summary)."""
    from bindiff.files import OutputError, write_text

    write_text(tmp_path / "s.json", "1", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    with pytest.raises(OutputError, match="another process wrote this file"):
        write_text(tmp_path / "s.json", "2", overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"] and (tmp_path / "s.json").read_text() == "1"


def test_an_output_whose_folder_is_missing_is_made_and_one_under_a_file_is_one_line(tmp_path):
    """files.py:58/:97 `parents=True` -> False, :52/:92 `refuse_a_file_above` dropped."""
    from bindiff.files import OutputError, staged_folder, write_text

    write_text(tmp_path / "a" / "b" / "c.txt", "deep")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "deep"
    with staged_folder(tmp_path / "x" / "y" / "z") as staging:
        (staging / "f").write_text("1")
    assert (tmp_path / "x" / "y" / "z" / "f").read_text() == "1"
    (tmp_path / "plain").write_text("a file")
    with pytest.raises(OutputError, match=re.escape(f"({tmp_path / 'plain'} is a file, not a folder)")):
        write_text(tmp_path / "plain" / "sub" / "c.txt", "no")
    with pytest.raises(OutputError, match=re.escape(f"({tmp_path / 'plain'} is a file, not a folder)")):
        with staged_folder(tmp_path / "plain" / "sub"):
            pass


@pytest.mark.parametrize("target", ["folder", "fifo"])
def test_an_output_that_is_a_folder_or_a_device_is_refused(tmp_path, target):
    """files.py:49 the folder or not-a-regular-file check dropped: a rename replaced a folder's name
    or a special file (a device such as /dev/null, here a named pipe made for the test) with a plain
    file."""
    from bindiff.files import OutputError, write_text

    path = tmp_path / target
    if target == "folder":
        path.mkdir()
    elif hasattr(os, "mkfifo"):
        os.mkfifo(path)
    else:  # pragma: no cover - Windows
        pytest.skip("no named pipes")
    with pytest.raises(OutputError, match="exists and is not a regular file"):
        write_text(path, "no")
    assert path.is_dir() if target == "folder" else path.is_fifo()


def test_undefined_numbers_inside_tuples_are_written_as_null(tmp_path):
    """files.py:213 `(list, tuple)` -> `(list,)`: a NaN inside a tuple (a metric's interval) made
    json.dumps(allow_nan=False) raise instead of writing null; :210 inverted kept NaN and dropped 1.5."""
    from bindiff.files import write_json

    write_json(tmp_path / "m.json", {"interval": (float("nan"), 1.5), "x": [float("inf"), 2.0]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"interval": [None, 1.5], "x": [None, 2.0]}


def test_a_folder_with_a_temporarys_name_is_left_alone_when_temporaries_are_removed(tmp_path):
    """checkpoint.py:218 `if path.is_file():` -> True: a folder named like a temporary
    (`.cache.tmp/`) in a run being resumed made the resume end with IsADirectoryError."""
    from bindiff.training.checkpoint import remove_stale_temporaries

    (tmp_path / ".cache.tmp").mkdir()
    (tmp_path / ".cache.tmp" / "inside").write_text("mine")
    (tmp_path / ".last.pt.0123456789abcdef.tmp").write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / ".last.pt.0123456789abcdef.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.tmp"]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_a_temporary_that_cannot_be_made_is_one_output_error(tmp_path, monkeypatch, code):
    """files.py:63 `err.errno in _UNWRITABLE` -> `not in`: a read-only, forbidden or full location
    was a bare OSError traceback instead of an OutputError naming the path (root, who runs this
    suite in containers, is never refused by modes: the refusal is simulated)."""
    from bindiff.files import OutputError, write_text

    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(path).startswith(str(tmp_path)):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(OutputError, match=re.escape(f"{tmp_path / 'x.txt'}: cannot write there ({os.strerror(code)})")) \
            as caught:
        write_text(tmp_path / "x.txt", "no")
    assert caught.value.errno == code


def test_a_staged_folder_given_as_a_link_fills_the_folder_it_names_and_keeps_the_link(tmp_path):
    """files.py:88 `if folder.is_symlink():` -> False: `--out` given as a link to an empty scratch
    folder ended in an OSError traceback (rmdir of a link) after the whole job."""
    from bindiff.files import staged_folder

    (tmp_path / "scratch").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "scratch", target_is_directory=True)
    with staged_folder(tmp_path / "out") as staging:
        (staging / "r.json").write_text("{}")
    assert (tmp_path / "out").is_symlink()
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["r.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scratch"]


def test_an_empty_output_folder_is_replaced_where_a_rename_cannot_replace_a_folder(tmp_path, monkeypatch):
    """files.py:105 `if folder.is_dir(): folder.rmdir()` skipped: POSIX rename replaces an empty
    folder by itself, Windows' does not (it raises, read as 'another process wrote this folder').
    Windows' rule is simulated here."""
    from bindiff.files import staged_folder

    real_replace = os.replace

    def windows_replace(src, dst):
        if Path(dst).is_dir():
            raise FileExistsError(errno.EEXIST, "Cannot create a file when that file already exists", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", windows_replace)
    (tmp_path / "out").mkdir()
    with staged_folder(tmp_path / "out") as staging:
        (staging / "r.json").write_text("{}")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.json"]


# ---------------------------------------------------------------------------------------------------
# bindiff/runs.py
# ---------------------------------------------------------------------------------------------------
def _config(tmp_path, *overrides):
    from bindiff.config import load_recipe

    return load_recipe(None, [f"output.root={tmp_path / 'runs'}", "name=exp", *overrides])


def test_a_run_folder_records_its_overrides_one_per_line(tmp_path):
    """runs.py:87 the overrides.txt write dropped: the run no longer said which overrides made it."""
    from bindiff.runs import create_run_dir

    run = create_run_dir(_config(tmp_path), ["train.lr=0.01", "seed=3"])
    assert (run / "overrides.txt").read_text(encoding="utf-8") == "train.lr=0.01\nseed=3\n"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "overrides.txt"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_a_run_folder_whose_files_cannot_be_written_is_removed(tmp_path, monkeypatch, stop):
    """runs.py:89 and :92 `remove_unfinished_run(run_dir)` dropped: a stop (or a write error) while
    config.yaml was written left an empty run folder that looks like a run."""
    from bindiff import runs
    from bindiff.files import OutputError

    calls = []

    def failing(path, text, overwrite=True):
        calls.append(path)
        if len(calls) == 2:
            raise stop(errno.EIO, "I/O error") if stop is OSError else stop()
        Path(path).write_text(text)

    monkeypatch.setattr(runs, "write_text", failing)
    with pytest.raises(KeyboardInterrupt if stop is KeyboardInterrupt else OutputError):
        runs.create_run_dir(_config(tmp_path), ["seed=1"])
    assert list((tmp_path / "runs" / "exp").iterdir()) == []


def test_an_unfinished_run_is_removed_only_while_it_holds_no_checkpoint(tmp_path):
    """runs.py:103 `if not any(...)` inverted, or the glob `*.pt` changed: a run holding a checkpoint
    (even only a companion's) must be kept for `bindiff resume`; one without any removed."""
    from bindiff.runs import remove_unfinished_run

    empty, companion, main = (tmp_path / name for name in ("empty", "companion", "main"))
    (empty / "split").mkdir(parents=True)
    (companion / "checkpoints" / "ease").mkdir(parents=True)
    (companion / "checkpoints" / "ease" / "last.pt").write_bytes(b"x")
    (main / "checkpoints").mkdir(parents=True)
    (main / "checkpoints" / "best.pt").write_bytes(b"x")
    for run in (empty, companion, main):
        remove_unfinished_run(run)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["companion", "main"]


def test_a_search_folder_that_got_no_result_is_removed_with_the_folders_made_for_it(tmp_path):
    """runs.py:72 `top = made or out` -> `top = out` (left an empty <root>/tune/<name>/), :77 either
    test of the preamble inverted, :78 the removal dropped, :54 `first_missing_folder` returning the
    first existing folder instead of the highest missing one."""
    from bindiff.runs import first_missing_folder, new_output_dir

    assert first_missing_folder(tmp_path / "a" / "b" / "c") == tmp_path / "a"
    assert first_missing_folder(tmp_path) is None
    config = _config(tmp_path)
    with pytest.raises(RuntimeError):
        with new_output_dir(config, "search", "tune") as out:
            (out / "recipe.yaml").write_text("name: exp\n")
            raise RuntimeError("the dataset is missing")
    assert not (tmp_path / "runs").exists()  # every folder this call made, not only its own

    (tmp_path / "runs").mkdir()
    with pytest.raises(RuntimeError):
        with new_output_dir(config, "search", "tune") as out:
            (out / "recipe.yaml").write_text("name: exp\n")
            (out / "trial_0").mkdir()
            (out / "trial_0" / "recipe.yaml").write_text("a trial's file")  # not the preamble: kept
            raise RuntimeError("stopped in the first trial")
    assert [p.name for p in (tmp_path / "runs" / "tune" / "exp").iterdir()] == [out.name]

    with pytest.raises(RuntimeError):
        with new_output_dir(config, "search", "tune") as second:
            (second / "trials.json").write_text("[]")  # a result: kept
            raise RuntimeError("stopped later")
    assert second.is_dir() and (second / "trials.json").is_file()


def test_read_run_refuses_a_checkpoint_name_that_is_a_path(tmp_path):
    """runs.py:119 `or any(...)` -> `and any(...)` and `("", ".", "..")` -> `("", ".")`: a companion
    part `..` (``--checkpoint ../best``) read a .pt file outside the run's checkpoints folder."""
    from bindiff.config import RecipeError, dump_recipe
    from bindiff.runs import read_run

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_recipe(_config(tmp_path)))
    _checkpoint_file(run / "best.pt")  # where `checkpoints/../best.pt` leads
    for name in ("../best", "x/../best", "./best", "/best", "best/x"):
        with pytest.raises(RecipeError, match="^checkpoint must be best or last"):  # from Python: the argument
            read_run(run, "recommend", name)


def _run_with_checkpoint(tmp_path, config, stored=None):
    import torch

    from bindiff.config import dump_recipe
    from bindiff.training.checkpoint import save_checkpoint

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_recipe(stored or config))
    save_checkpoint(run / "checkpoints" / "best.pt", config_yaml=dump_recipe(config), model=torch.nn.Linear(2, 2),
                    dim=2)
    return run


def test_read_run_compares_the_checkpoints_config_with_the_runs(tmp_path):
    """runs.py:124 the task comparison inverted; :132 `not key.startswith("output.")` inverted (a run
    moved to another output.root was refused) or `stored.get(key, value)` -> `stored.get(key)` (a key
    added since the run was stored, present in the checkpoint only, was a mismatch)."""
    from bindiff.config import RecipeError
    from bindiff.files import CheckpointError
    from bindiff.runs import read_run

    config = _config(tmp_path)
    run = _run_with_checkpoint(tmp_path, config, stored={**config, "output": {**config["output"], "root": "/moved"}})
    read_config, payload = read_run(run, "recommend")
    assert read_config == config and payload["dim"] == 2
    with pytest.raises(RecipeError, match="a recommend run, not a masks run"):
        read_run(run, "masks")
    edited = (run / "config.yaml").read_text().replace("seed: 0", "seed: 9")
    (run / "config.yaml").write_text(edited)
    with pytest.raises(CheckpointError, match=r"not this run's checkpoint: its seed is 0, the run's config.yaml has 9"):
        read_run(run, "recommend")
    older = "".join(line + "\n" for line in (run / "config.yaml").read_text().replace("seed: 9", "seed: 0")
                    .splitlines() if "dice_weight" not in line)  # written before diffusion.dice_weight existed
    (run / "config.yaml").write_text(older)
    assert read_run(run, "recommend")[0] == config


def test_read_run_refuses_a_checkpoint_whose_free_section_holds_a_key_the_run_lacks(tmp_path):
    """A product bug the mutation pass found: keys were compared only where both configs had them, so
    a checkpoint with denoiser.params.hidden=[8] was read as the run whose config.yaml has none (its
    default width), and used without a word. Both directions are refused now."""
    from bindiff.files import CheckpointError
    from bindiff.runs import read_run

    config = _config(tmp_path)
    params = {**config["denoiser"], "params": {"hidden": [8]}}
    bare = {**config["denoiser"], "params": {}}
    for name, (theirs, ours) in {"extra": (params, bare), "missing": (bare, params)}.items():
        run = _run_with_checkpoint(tmp_path / name, {**config, "denoiser": theirs},
                                   stored={**config, "denoiser": ours})
        shown = ("its denoiser.params.hidden is [8], the run's config.yaml has no denoiser.params.hidden"
                 if name == "extra" else "it has no denoiser.params.hidden, the run's config.yaml has [8]")
        with pytest.raises(CheckpointError, match=re.escape(f"not this run's checkpoint: {shown}")):
            read_run(run, "recommend")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's memory map")
def test_read_run_maps_the_checkpoint_rather_than_reading_it(tmp_path):
    """runs.py:122 `mmap=True` -> False: scoring a run read the optimiser's moments (two thirds of a
    checkpoint) into memory."""
    from bindiff.runs import read_run

    run = _run_with_checkpoint(tmp_path, _config(tmp_path))
    _, payload = read_run(run, "recommend")
    assert str(run / "checkpoints" / "best.pt") in Path("/proc/self/maps").read_text()
    assert payload["dim"] == 2  # the mapping lives as long as the payload


def test_flatten_names_every_value_by_its_whole_dotted_path():
    """runs.py:147 `and value` dropped (an empty mapping vanished from the comparison) and :148 the
    prefix dropped (`a.b.c` flattened to `b.c`)."""
    from bindiff.runs import flatten

    assert flatten({"a": {"b": {"c": 1}, "e": {}}, "f": 2}) == {"a.b.c": 1, "a.e": {}, "f": 2}


# ---------------------------------------------------------------------------------------------------
# bindiff/tasks/base.py
# ---------------------------------------------------------------------------------------------------
def test_derived_seeds_tell_the_named_draws_apart():
    """base.py:179 `"/".join(parts)` -> `"".join(parts)`: the draws ("segment", "ab", "c") and
    ("segment", "a", "bc") -- two cases of a segmentation, a case id with the mode's name -- got
    one seed, the same noise. Each named draw needs its own."""
    from bindiff.tasks.base import derived_seed

    assert derived_seed(0, "segment", "ab", "c") != derived_seed(0, "segment", "a", "bc")
    assert derived_seed(0, "valid1") != derived_seed(0, "valid", "1")
    assert derived_seed(5, "x") == derived_seed(5, "x") and derived_seed(5, "x") != derived_seed(6, "x")


def test_several_processes_are_refused_only_for_what_cannot_train_on_them():
    """base.py:262 `members > 1` -> `>= 1` (every recipe refused with --nproc as an ensemble) and :264
    `if kind.parallel: return` skipped (the binomial model itself refused): docs say the binomial
    model trains on several processes; an ensemble, a baseline and a masks recipe do not."""
    from bindiff.config import RecipeError, load_recipe
    from bindiff.tasks import registry

    registry.check_parallel(load_recipe(None, []))  # the binomial recommender: accepted
    for overrides, message in ((["denoiser.members=2"], "denoiser.members: an ensemble trains in one process"),
                               (["model.kind=ease"], "model.kind: training on several processes is for the binomial"),
                               (["task=masks"], "task: 'masks' recipes train in one process")):
        with pytest.raises(RecipeError, match=re.escape(message)):
            registry.check_parallel(load_recipe(None, overrides))


def test_a_cosine_decay_lasts_as_many_steps_as_the_epochs_have_minibatches():
    """base.py:310 the ceiling `-(-rows // batch_size)` -> the floor: with 5 rows in minibatches of 2
    an epoch takes 3 steps (2, 2, 1), so a cosine decay over 4 epochs must last 12 steps; the floor
    gave 8, and the learning rate reached 0 a third of the run early."""
    import scipy.sparse as sp
    import torch

    from bindiff.config import load_recipe
    from bindiff.tasks.base import ModelKind, Task, _build

    class Rows(Task):
        name = "rows"

        def dim(self, data):
            return 3

        def training_rows(self, data, config):
            return sp.csr_matrix(data)

    config = load_recipe(None, ["train.batch_size=2", "train.epochs=4", "train.lr_decay=cosine"])
    kind = ModelKind("linear", lambda config, dim, training=False: torch.nn.Linear(dim, dim))
    with torch.random.fork_rng(devices=[]):
        _, optimizer, rows = _build(Rows(), kind, config, [[1, 0, 1]] * 5, torch.device("cpu"))
    minibatches = len(range(0, rows.shape[0], 2))
    assert optimizer.total_steps == 4 * minibatches == 12


def test_write_json_indents_its_output():
    """files.py:204 `indent=2` -> None: metrics.json and every summary came out as one long line
    (the docstring: "``data`` as indented JSON")."""
    import tempfile

    from bindiff.files import write_json

    with tempfile.TemporaryDirectory() as folder:
        write_json(Path(folder) / "m.json", {"test": {"ndcg@10": 0.5}, "n": 3})
        text = (Path(folder) / "m.json").read_text()
    assert text.splitlines() == ["{", '  "test": {', '    "ndcg@10": 0.5', "  },", '  "n": 3', "}"]


def test_resuming_a_run_of_another_task_is_refused_before_anything_runs(tmp_path):
    """base.py:370 the task comparison skipped: a recommendation run resumed as a masks run went on
    to build a masks job from a recommendation config (a KeyError deep inside)."""
    from bindiff.config import RecipeError, dump_recipe
    from bindiff.tasks import base, registry

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_recipe(_config(tmp_path)))
    with pytest.raises(RecipeError, match=re.escape(f"{run / 'config.yaml'}: a run of task 'recommend', not a masks run")):
        base.resume(registry.get_task("masks"), run)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]


def test_a_run_killed_while_it_evaluated_resumes_past_its_leftover_result_folders(monkeypatch, tmp_path):
    """base.py:385 `_remove_interrupted_results` skipped (the resumed evaluation met the killed
    attempt's result folder and refused it) and :407 the `.<name>.*.partial` staging folders left
    out of the cleanup (left behind in the finished run)."""
    from test_task_lifecycle import SECTIONS, ParityBitsTask
    from test_task_lifecycle import _config as parity_config

    from bindiff.config import schema as config_schema
    from bindiff.tasks import registry

    class WithResults(ParityBitsTask):
        def result_folders(self, config):
            return ("results",)

        def evaluate(self, run_dir, config, data, device, workers, checkpoint="best"):
            (run_dir / "results").mkdir()  # a task's evaluation refuses a folder that is there
            (run_dir / "results" / "scores.txt").write_text("1\n")
            return super().evaluate(run_dir, config, data, device, workers, checkpoint)

    task = WithResults()
    monkeypatch.setitem(config_schema.TASKS, task.name, SECTIONS)
    monkeypatch.setitem(registry.TASKS, task.name, task)
    finished = registry.train(parity_config(tmp_path, "train.epochs=1"))
    run = finished.run_dir
    (run / "metrics.json").unlink()  # killed after the results were written, before metrics.json
    (run / ".results.k1ll3d.partial" / "half").mkdir(parents=True)  # and one mid-way
    resumed = registry.resume(run)
    assert resumed.metrics["valid"] == finished.metrics["valid"]
    assert (run / "results" / "scores.txt").read_text() == "1\n" and not list(run.glob(".results.*"))


def test_a_closed_form_run_killed_before_its_metrics_resumes_from_its_saved_split(tmp_path):
    """base.py:508 `or optimizer is None` dropped (a closed-form fit's last.pt was loaded into an
    optimiser it does not have: AttributeError) and :492 `workers.broadcast(task.data_saved(folder))`
    -> False (the resume read the data set again instead of the run's split: a data set moved or
    deleted since the run started could no longer finish it)."""
    from test_resume import overrides, write_ratings

    from bindiff.config import load_recipe
    from bindiff.tasks import registry

    csv = write_ratings(tmp_path / "ratings.csv")
    config = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "ml1m.yaml",
                         [*overrides(csv, tmp_path / "runs"), "model.kind=popularity", "train.epochs=1"])
    finished = registry.train(config)
    run = finished.run_dir
    assert (run / "checkpoints" / "last.pt").is_file()
    (run / "metrics.json").unlink()  # killed while it evaluated
    csv.unlink()  # and the data set is gone since
    resumed = registry.resume(run)
    assert resumed.metrics["test"] == finished.metrics["test"]


def test_a_last_checkpoint_of_another_vector_length_is_refused_even_when_its_weights_fit(monkeypatch, tmp_path):
    """base.py:522 `if payload["dim"] != dim:` -> False: a network whose weights do not depend on the
    vector length (a U-Net's convolutions) would resume from a last.pt trained on another grid; the
    weights load, so only this check refuses it."""
    import torch
    from test_task_lifecycle import SECTIONS, ParityBitsTask
    from test_task_lifecycle import _config as parity_config

    from bindiff.config import schema as config_schema
    from bindiff.files import CheckpointError
    from bindiff.tasks import base, registry
    from bindiff.training.optim import build_optimizer

    task = ParityBitsTask()
    monkeypatch.setitem(config_schema.TASKS, task.name, SECTIONS)
    monkeypatch.setitem(registry.TASKS, task.name, task)
    run = registry.train(parity_config(tmp_path, "train.epochs=1")).run_dir
    config = base.read_run_config(run)
    model = task.model_kind(config).build(config, 8)
    optimizer = build_optimizer(config, model, 4)
    assert base._resumable_checkpoint(run / "checkpoints", config, run / "config.yaml", 8, model, optimizer,
                                      torch.device("cpu"))["dim"] == 8
    with pytest.raises(CheckpointError, match=r"last.pt: model of 8 bits, but the saved data have 9"):
        base._resumable_checkpoint(run / "checkpoints", config, run / "config.yaml", 9, model, optimizer,
                                   torch.device("cpu"))


def test_rescoring_takes_a_whole_allowed_section_and_refuses_one_string_of_overrides():
    """base.py:684 `f"{dotted}.".startswith(k)` -> `dotted.startswith(k)`: an override of a whole
    section the task lets a trained run change (`segmentation={steps: 2}`) was refused, though each
    of its keys alone is accepted; :676 `(str, bytes)` -> `(bytes,)`: one string of overrides was
    read character by character ('override 'e' is not of the form key=value')."""
    from bindiff.config import load_recipe
    from bindiff.tasks import base, registry

    task = registry.get_task("segmentation")
    config = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "hippocampus_segmentation.yaml")
    steps = 1 if config["segmentation"]["steps"] != 1 else 2
    whole = base.rescoring_config(task, config, [f"segmentation={{steps: {steps}}}"])
    one = base.rescoring_config(task, config, [f"segmentation.steps={steps}"])
    assert whole == one and whole["segmentation"]["steps"] == steps
    with pytest.raises(TypeError, match=r"overrides must be a list of key=value strings, not one string"):
        base.rescoring_config(task, config, f"segmentation.steps={steps}")


def test_rescoring_overrides_get_the_cross_key_checks_of_a_new_recipe():
    """base.py:692 `if overrides:` -> False: a rescoring override that contradicts the trained run
    (more reverse steps than the diffusion has) reached the sampler instead of the recipe check."""
    from bindiff.config import RecipeError, load_recipe
    from bindiff.tasks import base, registry

    task = registry.get_task("segmentation")
    config = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "hippocampus_segmentation.yaml")
    T = config["diffusion"]["steps"]
    with pytest.raises(RecipeError, match=rf"segmentation.steps = {T + 1} exceeds diffusion.steps = {T}"):
        base.rescoring_config(task, config, [f"segmentation.steps={T + 1}"])


def test_resuming_with_a_recipe_may_differ_only_where_the_run_lives_and_how_it_looks():
    """base.py:706 "output.progress" dropped from the ignored keys: `bindiff train RECIPE --resume RUN`
    with progress bars switched was refused as another recipe (the docstring: "apart from
    output.root and output.progress")."""
    from bindiff.config import RecipeError, load_recipe
    from bindiff.tasks.base import check_same_recipe

    run = load_recipe(None, ["output.root=/a", "output.progress=false"])
    check_same_recipe(load_recipe(None, ["output.root=/b", "output.progress=true"]), run, "r.yaml", Path("c.yaml"))
    with pytest.raises(RecipeError, match=r"r.yaml: key 'seed' is 1 but the run being resumed has 0"):
        check_same_recipe(load_recipe(None, ["seed=1"]), run, "r.yaml", Path("c.yaml"))


# ---------------------------------------------------------------------------------------------------
# bindiff/scoring.py
# ---------------------------------------------------------------------------------------------------
def _volume(path: Path, array, spacing=(1.0, 1.0, 1.0)) -> Path:
    import nibabel as nib
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array, dtype=np.uint8), np.diag([*spacing, 1.0])), str(path))
    return path


def _cube(lo, hi, shape=(6, 6, 6), value=1):
    import numpy as np

    volume = np.zeros(shape, np.uint8)
    volume[lo:hi, lo:hi, lo:hi] = value
    return volume


def test_a_predictions_case_is_its_name_without_the_suffix_and_one_trailing_mask():
    """scoring.py:48 `len(stem) > len(MASK_SUFFIX)` -> `>=`: a file named `_mask.nii.gz` became the
    case "" instead of the case `_mask`."""
    from bindiff.scoring import case_of

    assert case_of(Path("_mask.nii.gz")) == "_mask"
    assert case_of(Path("a_mask.nii.gz")) == "a" and case_of(Path("a.nii.gz")) == "a"
    assert case_of(Path("a_mask_mask.nii")) == "a_mask" and case_of(Path("notes.txt")) is None


def test_hidden_files_beside_the_predictions_are_not_scored(tmp_path):
    """scoring.py:64 `if not p.name.startswith(".")` -> True: macOS's `._b_mask.nii.gz` beside the
    predictions (copied from a Mac) was taken as the case `._b`, and the whole scoring refused."""
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "b_mask.nii.gz", _cube(1, 3))
    (tmp_path / "pred" / "._b_mask.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    _volume(tmp_path / "ref" / "b.nii.gz", _cube(1, 3))
    summary = score(tmp_path / "pred", tmp_path / "ref")
    assert [row["case_id"] for row in summary["per_case"]] == ["b"] and summary["per_case"][0]["dice"] == 1.0


def test_segments_probability_and_uncertainty_maps_beside_the_masks_are_not_scored(tmp_path):
    """scoring.py:66 `("_uncertainty", "_probability")` -> `("_uncertainty",)`: `bindiff segment
    --probabilities` writes `<case>_probability.nii.gz` beside `<case>_mask.nii.gz`; it was taken as
    the prediction of a case `a_probability` (and the scoring refused for want of its reference)."""
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 4))
    _volume(tmp_path / "pred" / "a_probability.nii.gz", _cube(1, 4))
    _volume(tmp_path / "pred" / "a_uncertainty.nii.gz", _cube(0, 6))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 4))
    summary = score(tmp_path / "pred", tmp_path / "ref")
    assert [row["case_id"] for row in summary["per_case"]] == ["a"] and summary["unmatched_references"] == []


def test_two_predictions_of_one_case_are_refused_not_one_dropped(tmp_path):
    """scoring.py:70 `if case in predictions:` -> False: `a.nii.gz` (from `masks apply`) beside
    `a_mask.nii.gz` (from `segment`) are both case `a`; the second silently replaced the first."""
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a.nii.gz", _cube(0, 2))
    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 4))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 4))
    with pytest.raises(DataError, match=r"a_mask.nii.gz: a second prediction for case 'a' \(beside a.nii.gz\)"):
        score(tmp_path / "pred", tmp_path / "ref")


def test_a_reference_that_is_a_broken_link_is_named_not_skipped(tmp_path):
    """scoring.py:84 `and not path.is_file()` -> `and False`: a reference that does not read (a broken
    link, a folder with a volume's name) was skipped, and left out of the unmatched references
    without a word."""
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 4))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 4))
    (tmp_path / "ref" / "c.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    with pytest.raises(DataError, match=r"c.nii.gz: not a readable reference file \(a folder or a broken link\)"):
        score(tmp_path / "pred", tmp_path / "ref")


def test_a_label_map_scored_as_a_0_1_mask_is_told_to_name_its_preset(tmp_path):
    """scoring.py:117 `preset is BINARY` -> `is not`: the hint '; a label map needs --preset or --run'
    went to the wrong refusals: missing where the default 0/1 reading met labels 2, added where a
    named preset met a value it lacks."""
    from bindiff.scoring import score

    _volume(tmp_path / "pred" / "a_mask.nii.gz", _cube(1, 4))
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 4, value=2))
    with pytest.raises(DataError) as caught:
        score(tmp_path / "pred", tmp_path / "ref")
    assert str(caught.value).endswith("; a label map needs preset (a name, or labels_to_score(run=...))")
    _volume(tmp_path / "ref" / "a.nii.gz", _cube(1, 4, value=7))
    with pytest.raises(DataError) as caught:
        score(tmp_path / "pred", tmp_path / "ref", preset="msd_hippocampus")
    assert "unexpected label value(s) 7" in str(caught.value) and "a label map needs" not in str(caught.value)


def test_a_run_and_a_preset_together_are_refused_before_the_run_is_read(tmp_path):
    """scoring.py:128 `if preset is not None:` -> False: `--run` with `--preset` silently used the
    run's labels (here: a run folder that does not exist was read, and refused for that)."""
    from bindiff.config import RecipeError
    from bindiff.scoring import labels_to_score

    with pytest.raises(RecipeError, match=r"^score: give run or preset, not both$"):
        labels_to_score(run=tmp_path / "no_run", preset="msd_hippocampus")


def test_a_region_for_0_1_references_is_refused_with_the_reason(tmp_path):
    """scoring.py:141 `if region not in (None, "whole"):` -> False: `--region anterior` without a
    preset was passed on to the 0/1 reading, which has the region `whole` only."""
    from bindiff.config import RecipeError
    from bindiff.scoring import BINARY, labels_to_score

    assert labels_to_score() == (BINARY, "whole") and labels_to_score(region="whole") == (BINARY, "whole")
    with pytest.raises(RecipeError, match=r"0/1 references have one region, whole; region anterior needs preset"):
        labels_to_score(region="anterior")


def test_an_unknown_region_is_refused_before_any_file_is_read(tmp_path):
    """scoring.py:158 the region check skipped: an unknown region of a preset given as an object was
    found only after every case had been read and scored (here: the missing files spoke first)."""
    from bindiff.adapters.masks import get_preset

    from bindiff.scoring import score

    with pytest.raises(DataError, match="has no region 'nope'"):
        score(tmp_path / "missing_pred", tmp_path / "missing_ref", preset=get_preset("msd_hippocampus"), region="nope")


def test_a_checkpoint_from_before_code_modules_loads_and_a_malformed_list_is_named(tmp_path):
    """Checkpoints written before 2026-12-07 have no ``code_modules``: they load as they did."""
    import torch

    from bindiff.files import CheckpointError
    from bindiff.training.checkpoint import load_checkpoint

    path = _checkpoint_file(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    assert payload.pop("code_modules") == []  # a torch layer: nothing outside bindiff and torch
    torch.save(payload, path)
    assert "code_modules" not in load_checkpoint(path) and load_checkpoint(path)["dim"] == 3
    bad = _checkpoint_file(tmp_path / "bad.pt", code_modules=[1])
    with pytest.raises(CheckpointError, match="key 'code_modules' is not a list of module names"):
        load_checkpoint(bad)
