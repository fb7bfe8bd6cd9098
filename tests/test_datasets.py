"""Dataset lookup, verified download, loading, and the prepare_split entry point."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import threading
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bindiff.adapters import DataError
from bindiff.tasks.recommendation.data import prepare_split
from bindiff.adapters.interactions import (
    DATASETS,
    build_matrix,
    load_interactions,
    resolve_dataset,
)

# Read before the autouse fixture below clears the variable for the synthetic tests.
REAL_DATA = Path(os.path.abspath(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data")))  # as runs store it


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """No real data folder and an empty cache unless a test asks for them."""
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    monkeypatch.setenv("BINDIFF_CACHE_DIR", str(tmp_path / "env-cache"))


def ratings_dat(n_users: int = 40, n_items: int = 30, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for user in range(1, n_users + 1):
        for item in rng.choice(n_items, size=int(rng.integers(6, 15)), replace=False):
            lines.append(f"{user}::{item + 1}::{int(rng.integers(1, 6))}::{978300000 + len(lines)}")
    return "\n".join(lines) + "\n"


def make_grouplens_ml1m(root: Path) -> Path:
    path = root / "ml-1m" / "ratings.dat"
    path.parent.mkdir(parents=True)
    path.write_text(ratings_dat())
    return path


def make_diffrec(folder: Path) -> Path:
    folder.mkdir(parents=True)
    # User u has items u..u+7 (mod 15): every item is somebody's train item.
    pairs = np.array([(user, (user + offset) % 15) for user in range(20) for offset in range(8)])
    stage = np.tile(["train"] * 6 + ["valid"] + ["test"], 20)
    for name in ("train", "valid", "test"):
        np.save(folder / f"{name}_list.npy", pairs[stage == name].astype(np.int64))
    return folder


# --- lookup ----------------------------------------------------------------------------


def test_registry_pins_sha256_for_known_datasets():
    for name in ("ml-1m", "ml-100k"):
        spec = DATASETS[name]
        assert spec.url.startswith("https://files.grouplens.org/datasets/movielens/")
        assert len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0


def test_grouplens_layout_in_data_dir(tmp_path):
    ratings = make_grouplens_ml1m(tmp_path / "data")
    source = resolve_dataset("ml-1m", data_dir=tmp_path / "data", download=False)
    assert (source.name, source.layout, source.paths) == ("ml-1m", "movielens", {"ratings": ratings})
    assert source.binarised_at is None


def test_diffrec_layout_wins_over_grouplens(tmp_path, monkeypatch):
    make_grouplens_ml1m(tmp_path / "data")
    folder = make_diffrec(tmp_path / "data" / "ml-1m_diffrec" / "ml-1m_clean")
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(tmp_path / "data"))
    source = resolve_dataset("ml-1m", download=False)
    assert source.layout == "diffrec_pairs"
    assert source.paths == {stage: folder / f"{stage}_list.npy" for stage in ("train", "valid", "test")}
    assert source.binarised_at == 4.0


def test_diffrec_clean_folder_directly_under_data_dir(tmp_path):
    folder = make_diffrec(tmp_path / "ml-1m_clean")
    source = resolve_dataset("ml-1m", data_dir=tmp_path, download=False)
    assert source.layout == "diffrec_pairs" and source.paths["train"] == folder / "train_list.npy"


def test_cache_dir_is_searched_after_data_dir(tmp_path):
    ratings = make_grouplens_ml1m(tmp_path / "env-cache")
    source = resolve_dataset("ml-1m", data_dir=tmp_path / "empty", download=False)
    assert source.paths["ratings"] == ratings


def test_not_found_without_download_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError) as caught:
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", download=False)
    message = str(caught.value)
    assert "dataset 'ml-1m' not found and downloading is switched off" in message
    # the folder searched, named by the setting that gave it: data_dir (--data-dir) replaces the variable
    assert f"Put one of these layouts under the data_dir folder ({tmp_path / 'data'})" in message
    assert "elsewhere" not in message
    assert "ml-1m_diffrec/ml-1m_clean/train_list.npy" in message
    assert "ml-1m_clean/train_list.npy" in message
    assert "ml-1m/ratings.dat" in message
    assert str(tmp_path / "data") in message and str(tmp_path / "env-cache") in message


def test_ml100k_layout(tmp_path):
    path = tmp_path / "ml-100k" / "u.data"
    path.parent.mkdir()
    path.write_text("1\t2\t5\t0\n")
    source = resolve_dataset("ml-100k", data_dir=tmp_path, download=False)
    assert source.layout == "ml100k"
    assert load_interactions(source).item.tolist() == ["2"]


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("log.csv", "delimited"),
        ("log.tsv.gz", "delimited"),
        ("ratings.dat", "movielens"),
        ("u.data", "ml100k"),
        ("pairs.npy", "pairs"),
    ],
)
def test_a_path_is_a_dataset_by_its_extension(tmp_path, name, layout):
    path = tmp_path / name
    path.write_bytes(b"")
    source = resolve_dataset(str(path))
    assert source.layout == layout and list(source.paths.values()) == [path]


def test_a_folder_path_is_a_dataset_by_its_files(tmp_path):
    folder = make_diffrec(tmp_path / "ml-1m_noisy")
    assert resolve_dataset(str(folder)).layout == "diffrec_pairs"
    assert resolve_dataset(str(make_grouplens_ml1m(tmp_path).parent)).layout == "movielens"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: folder holds none of"):
        resolve_dataset(str(tmp_path / "empty"))


def test_unknown_names_and_formats(tmp_path):
    with pytest.raises(DataError, match=r"ml-2m: not a known dataset \(amazon-cds, amazon-electronics, ml-100k, ml-1m\) and no such file"):
        resolve_dataset("ml-2m")
    odd = tmp_path / "ratings.parquet"
    odd.write_bytes(b"")
    with pytest.raises(DataError, match=r"ratings\.parquet: cannot tell the format"):
        resolve_dataset(str(odd))


# --- download --------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A zip like GroupLens' ml-1m.zip, served over HTTP on 127.0.0.1."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    site = tmp_path / "site"
    site.mkdir()
    archive = site / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("ml-1m/ratings.dat", ratings_dat())
        handle.writestr("ml-1m/README", "test archive\n")
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/ml-1m.zip"
    yield url, hashlib.sha256(archive.read_bytes()).hexdigest()
    server.shutdown()
    server.server_close()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def use_registry_entry(monkeypatch, **changes):
    monkeypatch.setitem(DATASETS, "ml-1m", dataclasses.replace(DATASETS["ml-1m"], **changes))


def test_download_with_the_right_hash_extracts_and_resolves(tmp_path, monkeypatch, served):
    url, sha256 = served
    use_registry_entry(monkeypatch, url=url, sha256=sha256)
    cache = tmp_path / "cache"
    source = resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=cache)
    assert source.layout == "movielens"
    assert source.paths["ratings"] == cache / "ml-1m" / "ratings.dat"
    assert sorted(path.name for path in cache.iterdir()) == ["ml-1m"]  # no .part or scratch left
    assert len(load_interactions(source)) == ratings_dat().count("\n")
    # Found in the cache the second time, without the server.
    use_registry_entry(monkeypatch, url="http://127.0.0.1:9/unreachable.zip", sha256=sha256)
    assert resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=cache) == source


def test_download_with_a_wrong_hash_leaves_nothing(tmp_path, monkeypatch, served):
    url, sha256 = served
    use_registry_entry(monkeypatch, url=url, sha256="0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=rf"{url}: SHA-256 {sha256} does not match the pinned 0{{64}}"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_download_without_a_pinned_hash_is_refused(tmp_path, monkeypatch, served):
    url, _ = served
    use_registry_entry(monkeypatch, url=url, sha256=None)
    with pytest.raises(DataError, match=r"no SHA-256 checksum is pinned.*refuses to download"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_unreachable_server_says_where_to_put_files(tmp_path, monkeypatch, served):
    url, sha256 = served
    use_registry_entry(monkeypatch, url=url.replace("ml-1m.zip", "missing.zip"), sha256=sha256)
    with pytest.raises(DataError, match=r"could not download .*missing\.zip(.|\n)*ml-1m/ratings\.dat"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_archive_escaping_the_cache_is_refused(tmp_path, monkeypatch, served):
    url, _ = served
    site_zip = tmp_path / "site" / "ml-1m.zip"  # replaces the served archive
    with zipfile.ZipFile(site_zip, "w") as handle:
        handle.writestr("../escaped.txt", "x")
    use_registry_entry(monkeypatch, url=url, sha256=hashlib.sha256(site_zip.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=r"would unpack outside the cache"):
        resolve_dataset("ml-1m", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escaped.txt").exists()
    assert list((tmp_path / "cache").iterdir()) == []


# --- loading and prepare_split ---------------------------------------------------------


def test_load_interactions_diffrec_union_has_no_ratings(tmp_path):
    make_diffrec(tmp_path / "ml-1m_clean")
    raw = load_interactions(resolve_dataset("ml-1m", data_dir=tmp_path, download=False))
    assert raw.rating is None and len(raw) == 20 * 8


def test_load_interactions_delimited_columns(tmp_path):
    path = tmp_path / "log.tsv"
    path.write_text("uid\tiid\tstars\na\tx\t5\n")
    raw = load_interactions(resolve_dataset(str(path)), user_col="uid", item_col="iid", rating_col="stars")
    assert (raw.user.tolist(), raw.item.tolist(), raw.rating.tolist()) == (["a"], ["x"], [5.0])


def test_prepare_strong_split_from_grouplens_files(tmp_path):
    make_grouplens_ml1m(tmp_path)
    data_cfg = {"dataset": "ml-1m", "min_rating": 3, "k_core": 2, "download": False}
    split_cfg = {"kind": "strong", "n_valid_users": 5, "n_test_users": 6}
    split, source = prepare_split(data_cfg, split_cfg, seed=4, data_dir=tmp_path)
    assert source.layout == "movielens" and split.kind == "strong"
    assert (len(split.valid.user_ids), len(split.test.user_ids)) == (5, 6)
    assert split.info["min_rating"] == 3.0 and split.info["k_core"] == 2 and split.info["seed"] == 4
    raw = load_interactions(source)
    # the count by hand: distinct (user, item) pairs rated >= 3, then users and items with >= 2 of
    # them, repeated until nothing changes (the k-core)
    pairs = {(u, i) for u, i, r in zip(raw.user.tolist(), raw.item.tolist(), raw.rating.tolist()) if r >= 3}
    while True:
        per_user, per_item = Counter(u for u, _ in pairs), Counter(i for _, i in pairs)
        kept = {(u, i) for u, i in pairs if per_user[u] >= 2 and per_item[i] >= 2}
        if kept == pairs:
            break
        pairs = kept
    assert split.info["n_interactions"] == len(pairs)
    again, _ = prepare_split(data_cfg, split_cfg, seed=4, data_dir=tmp_path)
    assert np.array_equal(again.test.target.indices, split.test.target.indices)


def test_prepare_predefined_split_from_diffrec_files(tmp_path):
    make_diffrec(tmp_path / "ml-1m_diffrec" / "ml-1m_clean")
    data_cfg = {"dataset": "ml-1m", "min_rating": 4, "k_core": 0, "download": False}
    split, source = prepare_split(data_cfg, {"kind": "predefined"}, seed=0, data_dir=tmp_path)
    assert source.layout == "diffrec_pairs"
    assert split.kind == "predefined" and split.train.shape == (20, 15)
    assert split.info["dataset"]["layout"] == "diffrec_pairs"


@pytest.mark.parametrize(
    ("data_cfg", "split_cfg", "message"),
    [
        ({"min_rating": 4, "k_core": 0}, {"kind": "predefined"}, r"layout 'movielens'\) has no predefined split"),
        ({"min_rating": None, "k_core": 5}, {"kind": "predefined"}, r"data\.k_core=5 cannot be combined"),
        ({"min_rating": None}, {"kind": "random"}, r"split\.kind must be 'strong', 'weak', 'temporal' or 'predefined'"),
        ({"min_rating": 4}, {"kind": "strong"}, r"split\.n_valid_users is missing"),
    ],
)
def test_prepare_split_refuses_impossible_combinations(tmp_path, data_cfg, split_cfg, message):
    make_grouplens_ml1m(tmp_path)
    with pytest.raises(DataError, match=message):
        prepare_split({"dataset": "ml-1m", "download": False, **data_cfg}, split_cfg, seed=0, data_dir=tmp_path)


def test_prepare_split_refuses_a_threshold_diffrec_files_cannot_honour(tmp_path):
    make_diffrec(tmp_path / "ml-1m_clean")
    split_cfg = {"kind": "strong", "n_valid_users": 2, "n_test_users": 2}
    def data_cfg(min_rating):
        return {"dataset": "ml-1m", "min_rating": min_rating, "download": False}

    with pytest.raises(DataError, match=r"data\.min_rating=3 cannot be applied.*keep ratings >= 4 only"):
        prepare_split(data_cfg(3), split_cfg, seed=0, data_dir=tmp_path)
    split, _ = prepare_split(data_cfg(4), split_cfg, seed=0, data_dir=tmp_path)
    assert split.info["n_interactions"] == 20 * 8


# --- real data (skipped where absent) --------------------------------------------------


def real_data_dir() -> Path:
    if not (REAL_DATA / "ml-1m_diffrec" / "ml-1m_clean" / "train_list.npy").is_file():
        pytest.skip(f"{REAL_DATA}/ml-1m_diffrec not present")
    return REAL_DATA


def test_real_ml1m_resolves_to_the_diffrec_copy(monkeypatch):
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(real_data_dir()))
    source = resolve_dataset("ml-1m", download=False)
    assert source.layout == "diffrec_pairs"
    assert source.paths["train"] == REAL_DATA / "ml-1m_diffrec" / "ml-1m_clean" / "train_list.npy"
    im = build_matrix(load_interactions(source))
    assert (im.n_users, im.n_items, im.nnz) == (5_949, 2_810, 571_531)


def test_real_ml1m_prepare_split_strong_600_600():
    data_cfg = {"dataset": "ml-1m", "min_rating": 4, "k_core": 0, "download": False}
    split_cfg = {"kind": "strong", "n_valid_users": 600, "n_test_users": 600, "holdout_fraction": 0.2}
    split, source = prepare_split(data_cfg, split_cfg, seed=0, data_dir=real_data_dir())
    assert source.layout == "diffrec_pairs"
    assert (len(split.train_user_ids), len(split.valid.user_ids), len(split.test.user_ids)) == (4_749, 600, 600)
    assert split.info["n_interactions"] == 571_531


def test_real_ml100k_resolves():
    data_dir = real_data_dir()
    if not (data_dir / "ml-100k" / "u.data").is_file():
        pytest.skip("ml-100k not present")
    source = resolve_dataset("ml-100k", data_dir=data_dir, download=False)
    im = build_matrix(load_interactions(source))
    assert (im.n_users, im.n_items, im.nnz) == (943, 1_682, 100_000)


def test_not_found_names_the_variable_when_it_gave_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BINDIFF_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError, match=rf"under \$BINDIFF_DATA_DIR \(now {tmp_path / 'data'}\)"):
        resolve_dataset("ml-1m", download=False)
