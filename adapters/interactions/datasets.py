"""Known interaction datasets: where to find them, how to fetch them, how to load them.

A dataset name is looked up, in order, in
  1. the data folder (argument, else $BINDIFF_DATA_DIR), in every layout bindiff
     knows for that dataset (e.g. DiffRec's preprocessed pairs before the
     GroupLens zip contents),
  2. the cache folder (argument, else $BINDIFF_CACHE_DIR, else ~/.cache/bindiff),
  3. a download of the official archive into the cache, accepted only if its
     SHA-256 matches the one pinned here.
A path to a file or folder is accepted in place of a name, and ``synthetic:<preset>``
names generated data (see synthetic.py), drawn from the recipe seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data_dir import DATA_DIR_ENV, data_root
from ..errors import DataError
from .download import download_archive
from .readers import (RawInteractions, read_delimited, read_item_lists, read_ml100k, read_movielens_ratings,
                      read_pairs)
from .splits import Split, predefined_split, train_test_split
from .synthetic import SYNTHETIC_PREFIX, synthetic_preset

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DatasetSource",
    "LocalLayout",
    "resolve_dataset",
    "download_dataset",
    "load_interactions",
    "load_predefined_split",
    "describe_source",
]

CACHE_DIR_ENV = "BINDIFF_CACHE_DIR"
_PAIR_FILES = {stage: f"{stage}_list.npy" for stage in ("train", "valid", "test")}


@dataclass(frozen=True)
class LocalLayout:
    """One way a dataset can sit on disk: a layout name and its files, relative to a root.

    binarised_at: the rating threshold already applied to these files, when
    they are implicit feedback made from ratings (DiffRec keeps ratings >= 4).
    """

    layout: str
    files: dict[str, str]
    binarised_at: float | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry. Replace `url`, `sha256` and `size` (dataclasses.replace) to fetch elsewhere."""

    name: str
    description: str
    layouts: tuple[LocalLayout, ...]
    url: str | None = None
    sha256: str | None = None
    size: int | None = None  # the archive's bytes: a server sending more is cut off, not left to fill the disk


@dataclass(frozen=True)
class DatasetSource:
    """A dataset found on disk: which layout, and the path of each of its files."""

    name: str
    layout: str
    paths: dict[str, Path]
    description: str = ""
    binarised_at: float | None = None


def _diffrec_layout(folder: str) -> LocalLayout:
    return LocalLayout(
        "diffrec_pairs", {stage: f"{folder}/{file}" for stage, file in _PAIR_FILES.items()}, binarised_at=4.0
    )


DATASETS: dict[str, DatasetSpec] = {
    "ml-1m": DatasetSpec(
        name="ml-1m",
        description="MovieLens 1M (GroupLens): 6,040 users, 3,706 movies, 1,000,209 ratings 1-5",
        layouts=(
            _diffrec_layout("ml-1m_diffrec/ml-1m_clean"),
            _diffrec_layout("ml-1m_clean"),
            LocalLayout("movielens", {"ratings": "ml-1m/ratings.dat"}),
        ),
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        # Pinned in TensorFlow Datasets' url_checksums/movielens.txt (5,917,549 bytes)
        # and matching the MD5 GroupLens publishes, c4d9eecfca2ab87c1945afe126590906.
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        size=5_917_549,
    ),
    "amazon-electronics": DatasetSpec(
        name="amazon-electronics",
        description="Amazon Electronics, BARS/RecZoo AmazonElectronics_m1 (1,435 users, 1,522 items, "
        "implicit feedback; union of its train and test files)",
        layouts=(LocalLayout("item_lists", {"train": "amazonelectronics_bars_m1/train.txt",
                                            "test": "amazonelectronics_bars_m1/test.txt"}),),
    ),
    "amazon-cds": DatasetSpec(
        name="amazon-cds",
        description="Amazon CDs & Vinyl, BARS/RecZoo AmazonCDs_m1 (43,169 users, 35,648 items, implicit "
        "feedback; union of its train and test files, or those files as a weak-generalisation split)",
        layouts=(LocalLayout("item_lists", {"train": "amazoncds_bars_m1/train.txt",
                                            "test": "amazoncds_bars_m1/test.txt"}),),
    ),
    "ml-100k": DatasetSpec(
        name="ml-100k",
        description="MovieLens 100K (GroupLens): 943 users, 1,682 movies, 100,000 ratings 1-5",
        layouts=(LocalLayout("ml100k", {"ratings": "ml-100k/u.data"}),),
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        # Pinned in TensorFlow Datasets' url_checksums/movielens.txt (4,924,029 bytes).
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        size=4_924_029,
    ),
}


def resolve_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> DatasetSource:
    """Find a registered dataset (see the module doc for the order) or take a path as one."""
    key = str(name)
    if key.startswith(SYNTHETIC_PREFIX):
        # Generated, already binary: it counts as binarised at 4, like the preprocessed
        # data its sizes come from, so MovieLens recipes (min_rating: 4) run unchanged.
        preset = synthetic_preset(key[len(SYNTHETIC_PREFIX):])
        return DatasetSource(key, "synthetic", {}, f"synthetic: {preset.description}", binarised_at=4.0)
    spec = DATASETS.get(key)
    if spec is None:
        return _source_from_path(Path(key).expanduser())

    roots = [root for root in (data_root(data_dir), _cache_dir(cache_dir)) if root is not None]
    for root in roots:
        found = _find_layout(spec, root)
        if found is not None:
            return found
    if not download:
        raise DataError(_not_found_message(spec, roots, "downloading is switched off (data.download: false)",
                                           data_dir))
    cache = _cache_dir(cache_dir)
    download_dataset(spec, cache, not_found_hint=_not_found_message(spec, roots, "the download failed", data_dir),
                     present=lambda: _find_layout(spec, cache) is not None)
    found = _find_layout(spec, cache)
    if found is None:
        raise DataError(
            f"{spec.url}: the archive was unpacked into {cache} but holds none of "
            f"{_expected_files(spec)}"
        )
    return found


def download_dataset(spec: DatasetSpec, cache_dir: str | os.PathLike, not_found_hint: str = "",
                     present=None) -> Path:
    """Fetch spec.url into cache_dir, check its pinned SHA-256, unpack it; return cache_dir.

    See download.py: pooch verifies and unpacks, a broken transfer is resumed with Range requests.
    """
    hint = f"\n{not_found_hint}" if not_found_hint else ""
    if spec.url is None:
        raise DataError(f"dataset {spec.name!r} has no download address.{hint}")
    if spec.sha256 is None:
        raise DataError(
            f"dataset {spec.name!r}: no SHA-256 checksum is pinned for {spec.url}, so bindiff "
            f"refuses to download it unverified. Download and unpack it yourself.{hint}"
        )
    cache = Path(cache_dir).expanduser()
    download_archive(spec.name, spec.url, spec.sha256, cache, hint, present=present, size=spec.size)
    return cache


def load_interactions(
    source: DatasetSource,
    sep: str | None = None,
    user_col: str | int = "user",
    item_col: str | int = "item",
    rating_col: str | int | None = None,
    header: bool = True,
    time_col: str | int | None = None,
) -> RawInteractions:
    """Every interaction of the dataset, for protocols that make their own split.

    For DiffRec pair files this is the union of train, valid and test (already
    binarised, so rating is None). The column options apply to delimited files only.
    Times: ML-1M's and ML-100K's timestamp field, a delimited file's ``time_col``; DiffRec's
    and BARS's files and .npy pairs have none (``time`` is None).
    """
    paths = source.paths
    if source.layout == "diffrec_pairs":
        parts = [read_pairs(paths[stage]) for stage in _PAIR_FILES]
        return RawInteractions(
            user=np.concatenate([part.user for part in parts]),
            item=np.concatenate([part.item for part in parts]),
            rating=None,
            source=str(Path(paths["train"]).parent),
        )
    if source.layout == "item_lists":
        parts = [read_item_lists(paths[role]) for role in ("train", "test")]
        return RawInteractions(
            user=np.concatenate([part.user for part in parts]),
            item=np.concatenate([part.item for part in parts]),
            rating=None,
            source=str(Path(paths["train"]).parent),
        )
    if source.layout == "movielens":
        return read_movielens_ratings(paths["ratings"])
    if source.layout == "ml100k":
        return read_ml100k(paths["ratings"])
    if source.layout == "pairs":
        return read_pairs(paths["pairs"])
    if source.layout == "delimited":
        path = Path(paths["ratings"])
        if sep is None:
            sep = default_separator(path)
        return read_delimited(path, sep=sep, user_col=user_col, item_col=item_col, rating_col=rating_col, header=header,
                              time_col=time_col)
    raise DataError(f"dataset {source.name!r}: unknown layout {source.layout!r}")


def load_predefined_split(source: DatasetSource, n_valid_users: int | None = None, holdout_fraction: float = 0.2,
                          min_items_to_split: int = 5, seed: int | None = None) -> Split:
    """The split shipped with the dataset: DiffRec's train/valid/test pair files as they are, or
    BARS train/test item lists with validation targets held out of ``n_valid_users`` users'
    training items, drawn with ``seed`` (:func:`train_test_split`)."""
    if source.layout == "item_lists":
        if n_valid_users is None:
            raise DataError(f"dataset {source.name!r} ships train and test only: split.n_valid_users is needed "
                            "to hold validation targets out of the training items")
        if seed is None:  # a default seed hid a random draw the caller never chose
            raise ValueError(f"dataset {source.name!r} ships train and test only: a seed is needed to draw "
                             "its validation users")
        split = train_test_split(read_item_lists(source.paths["train"]), read_item_lists(source.paths["test"]),
                                 n_valid_users, holdout_fraction, min_items_to_split, seed)
        split.info["dataset"] = describe_source(source)
        return split
    if source.layout != "diffrec_pairs":
        raise DataError(
            f"dataset {source.name!r} (layout {source.layout!r}) has no predefined split: only "
            "DiffRec folders with train_list.npy, valid_list.npy and test_list.npy and BARS folders with "
            "train.txt and test.txt have one; use split kind 'strong'"
        )
    split = predefined_split(*(read_pairs(source.paths[stage]) for stage in _PAIR_FILES))
    split.info["dataset"] = describe_source(source)
    return split


def _find_layout(spec: DatasetSpec, root: Path) -> DatasetSource | None:
    for layout in spec.layouts:
        paths = {role: root / relative for role, relative in layout.files.items()}
        if all(path.is_file() for path in paths.values()):
            return DatasetSource(spec.name, layout.layout, paths, spec.description, layout.binarised_at)
    return None


def _source_from_path(path: Path) -> DatasetSource:
    known = ", ".join(sorted(DATASETS))
    if path.is_dir():
        pairs = {stage: path / file for stage, file in _PAIR_FILES.items()}
        if all(file.is_file() for file in pairs.values()):
            return DatasetSource(str(path), "diffrec_pairs", pairs, "DiffRec-style pair files")
        for file, layout in (("ratings.dat", "movielens"), ("u.data", "ml100k")):
            if (path / file).is_file():
                return DatasetSource(str(path), layout, {"ratings": path / file}, f"{file} in a folder")
        raise DataError(
            f"{path}: folder holds none of train_list.npy/valid_list.npy/test_list.npy, "
            "ratings.dat or u.data"
        )
    if path.exists() and not path.is_file():  # /dev/zero, a pipe: reading it would never end
        raise DataError(f"{path}: not a regular file or a folder (a device or a pipe?)")
    if not path.is_file():
        raise DataError(f"{path}: not a known dataset ({known}) and no such file or folder")
    suffix = _format_suffix(path)
    base = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    if base == "u.data":
        return DatasetSource(str(path), "ml100k", {"ratings": path}, "ML-100K style u.data")
    if suffix in (".csv", ".tsv"):
        return DatasetSource(str(path), "delimited", {"ratings": path}, f"{suffix[1:].upper()} file")
    if suffix == ".dat":
        return DatasetSource(str(path), "movielens", {"ratings": path}, "UserID::MovieID::Rating::Timestamp file")
    if suffix == ".npy":
        return DatasetSource(str(path), "pairs", {"pairs": path}, "(user, item) pair array")
    raise DataError(
        f"{path}: cannot tell the format from the file name; use .csv or .tsv (named columns), "
        ".dat (UserID::MovieID::Rating::Timestamp), u.data (ML-100K) or .npy (DiffRec pairs), "
        f"or a known dataset name ({known})"
    )


def default_separator(path: str | Path) -> str:
    """The separator of a delimited file that names none (``data.sep: null``): tab for .tsv(.gz), else comma."""
    return "\t" if _format_suffix(Path(path)) == ".tsv" else ","


def _format_suffix(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _cache_dir(argument) -> Path:
    if argument is not None:
        return Path(argument).expanduser()
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "bindiff"


def _expected_files(spec: DatasetSpec) -> str:
    return " or ".join(
        "{" + ", ".join(layout.files.values()) + "}" if len(layout.files) > 1 else next(iter(layout.files.values()))
        for layout in spec.layouts
    )


def _not_found_message(spec: DatasetSpec, searched: list[Path], why: str, data_dir=None) -> str:
    # the folder that was searched, and the setting that named it: --data-dir replaces the variable
    if data_dir is not None:
        from ...arguments import argument  # --data-dir from the command, data_dir from Python

        where = f"the {argument('data_dir', '--data-dir')} folder ({data_root(data_dir)})"
    else:
        where = f"${DATA_DIR_ENV} (now {os.environ.get(DATA_DIR_ENV) or 'unset'})"
    lines = [
        f"dataset {spec.name!r} not found and {why}.",
        f"Searched: {', '.join(str(root) for root in searched) or '(nothing)'}.",
        f"Put one of these layouts under {where} or the cache folder:",
    ]
    for layout in spec.layouts:
        lines.append(f"  {layout.layout}: " + ", ".join(layout.files.values()))
    if spec.url:
        lines.append(f"The GroupLens files come from unzipping {spec.url} there.")
    return "\n".join(lines)


def describe_source(source: DatasetSource) -> dict:
    """Name, layout and files of a resolved dataset, as a run records them."""
    return {
        "name": source.name,
        "layout": source.layout,
        "paths": {role: str(path) for role, path in source.paths.items()},
    }
