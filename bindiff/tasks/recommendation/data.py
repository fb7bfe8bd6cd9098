"""The recommend task's data: recipe ``data`` and ``split`` sections → a ``Split``, and the checks
of a recipe against those data.

The readers, datasets, matrices and splitting protocols are ``bindiff.adapters.interactions``';
this module is the glue a recipe needs, as ``bindiff.tasks.masks.data`` is for masks.
"""

from __future__ import annotations

import dataclasses
import numbers
import os

import numpy as np

from ...adapters.errors import DataError
from ...adapters.interactions import (DatasetSource, Split, build_matrix, describe_source, load_interactions,
                                      load_predefined_split, read_cut_offs, resolve_dataset, strong_generalization,
                                      synthetic_dataset, temporal_split, weak_generalization)


def find_dataset(data_cfg: dict, data_dir: str | os.PathLike | None = None,
                 split_cfg: dict | None = None) -> DatasetSource:
    """The recipe's dataset found (downloaded if it must be and may be), its format keys checked;
    DataError otherwise. ``tune`` and ``compare`` call it before making their folder, so that a
    missing dataset is one error line and leaves no folder named. With ``split_cfg``, a
    ``split.holdout`` the data cannot give (``latest`` without times) is refused here too."""
    if "dataset" not in data_cfg:
        raise DataError("data.dataset is missing: name a dataset (ml-1m, ml-100k) or a file")
    if split_cfg is not None:
        check_holdout(data_cfg, split_cfg)
    source = resolve_dataset(data_cfg["dataset"], data_dir=data_dir, download=bool(data_cfg.get("download", True)))
    _check_file_format_keys(source, data_cfg)
    if split_cfg is not None:
        check_holdout(data_cfg, split_cfg, source)
    return source


# layouts whose files hold each interaction's time (a delimited file's only when data.time_col names it)
_TIMED_LAYOUTS = ("movielens", "ml100k")


def check_holdout(data_cfg: dict, split_cfg: dict, source: DatasetSource | None = None) -> None:
    """DataError for ``split.valid_fraction`` outside a weak or temporal split or beside
    ``split.holdout_items``, for ``split.holdout_items`` with a predefined or temporal split, for
    ``split.test_from``/``split.valid_from`` outside a temporal split (and ``valid_from`` beside
    ``valid_fraction``, or not earlier than ``test_from``, or either not a time), for ``split.pair_time`` where no time is read (or ``latest`` in a temporal
    split), and for a
    split that needs times (``split.holdout: latest``, ``split.kind: temporal``) where it cannot
    apply: a predefined split (already the dataset's own), ``synthetic:`` data (no time), or, once
    ``source`` is known, data without time (a delimited file without ``data.time_col``; DiffRec's,
    BARS's and .npy files). Before any file is read, so nothing is written either."""
    kind = split_cfg.get("kind", "strong")
    if kind not in ("weak", "temporal") and split_cfg.get("valid_fraction") is not None:
        raise DataError(f"split.valid_fraction={split_cfg['valid_fraction']} applies to split.kind weak and temporal "
                        f"only (a {kind} split draws validation otherwise): set it to null")
    if kind in ("predefined", "temporal") and split_cfg.get("holdout_items") is not None:
        holds = ("holds out what its files say" if kind == "predefined"
                 else "holds out a share of all interactions by time (split.holdout_fraction)")
        raise DataError(f"split.holdout_items={split_cfg['holdout_items']} applies to split.kind strong and weak; a "
                        f"{kind} split {holds}: set it to null")
    if split_cfg.get("valid_fraction") is not None and split_cfg.get("holdout_items") is not None:
        raise DataError("split.valid_fraction goes with split.holdout_fraction; with split.holdout_items, validation "
                        "holds out as many items as test: set one of them to null")
    for key in ("test_from", "valid_from"):
        if kind != "temporal" and split_cfg.get(key) is not None:
            raise DataError(f"split.{key}={split_cfg[key]!r} applies to split.kind temporal only (a {kind} split "
                            "places no cut-off in time): set it to null")
    pair_time = split_cfg.get("pair_time")
    if pair_time is not None and kind == "temporal" and pair_time != "earliest":
        raise DataError(f"split.pair_time={pair_time!r} cannot be combined with split.kind 'temporal': a pair chosen "
                        "before a cut-off and again after it would leave training; a temporal split counts a pair "
                        "at its earliest time: set split.pair_time to null")
    if pair_time is not None and kind != "temporal" and (kind == "predefined"
                                                         or split_cfg.get("holdout", "random") != "latest"):
        reader = ("a predefined split (the dataset's own)" if kind == "predefined"
                  else f"a {kind} split with holdout {split_cfg.get('holdout', 'random')!r}")
        raise DataError(f"split.pair_time={pair_time!r} applies to split.holdout 'latest' (and is fixed by split.kind "
                        f"'temporal'); {reader} reads no time: set it to null")
    if split_cfg.get("valid_from") is not None and split_cfg.get("valid_fraction") is not None:
        raise DataError("split.valid_from and split.valid_fraction both place the validation cut-off: set one of "
                        "them to null")
    if kind == "temporal":  # dates that cannot be read, or out of order, before a file is read
        read_cut_offs(split_cfg.get("test_from"), split_cfg.get("valid_from"))
    if kind == "temporal" and split_cfg.get("valid_fraction") is not None and split_cfg.get("test_from") is None \
            and split_cfg["valid_fraction"] + split_cfg.get("holdout_fraction", 0.2) >= 1:
        raise DataError(f"split.valid_fraction={split_cfg['valid_fraction']} must be below 1 - split.holdout_fraction "
                        f"= {1 - split_cfg.get('holdout_fraction', 0.2):g} in a temporal split (both are shares of all "
                        "interactions): nothing would be left to train on")
    if kind == "temporal" and int(data_cfg.get("k_core") or 0) > 1:
        raise DataError(f"data.k_core={data_cfg['k_core']} cannot be combined with split.kind 'temporal': the k-core "
                        "counts the interactions after the cut-offs too, so which past interactions train would "
                        "depend on the future; set k_core to 0")
    if kind == "temporal":
        needs, instead = "split.kind='temporal'", "use split.kind strong or weak"
    elif split_cfg.get("holdout", "random") == "latest":
        if kind == "predefined":
            raise DataError("split.holdout='latest' cannot be combined with split.kind 'predefined': that split is "
                            "already the dataset's own; use split.kind strong or weak, or split.holdout random")
        needs, instead = "split.holdout='latest'", "use split.holdout random"
    else:
        return
    if str(data_cfg.get("dataset", "")).startswith("synthetic:"):
        raise DataError(f"{needs} needs interaction times, and synthetic data ({data_cfg['dataset']}) have none; "
                        f"{instead}")
    if source is None or source.layout in _TIMED_LAYOUTS:
        return
    if source.layout == "delimited":
        if data_cfg.get("time_col") is None:
            raise DataError(f"{needs} needs interaction times: name the time column of "
                            f"{source.paths['ratings']} with data.time_col (now null)")
        return
    raise DataError(f"{needs} needs interaction times, and dataset {source.name!r} (layout "
                    f"{source.layout!r}) has none (data.time_col applies to a delimited file only); {instead}")


def prepare_split(
    data_cfg: dict, split_cfg: dict, seed: int, data_dir: str | os.PathLike | None = None
) -> tuple[Split, DatasetSource]:
    """Resolve, load, filter and split a dataset as the training configuration says."""
    source = find_dataset(data_cfg, data_dir, split_cfg)
    min_rating = data_cfg.get("min_rating")
    k_core = data_cfg.get("k_core")
    if k_core is None:
        k_core = 0
    # int() made 2.5 a 2-core, "3" a 3-core and True a 1-core without a word
    if isinstance(k_core, (bool, np.bool_)) or not isinstance(k_core, numbers.Integral) or k_core < 0:
        raise DataError(f"data.k_core must be an integer >= 0, got {k_core!r}")
    k_core = int(k_core)
    kind = split_cfg.get("kind", "strong")
    holdout = split_cfg.get("holdout", "random")
    # a global cut-off trains on every pair chosen before it, even one chosen again after it
    pair_time = "earliest" if kind == "temporal" else split_cfg.get("pair_time") or "latest"

    if kind == "predefined":
        if k_core > 0:
            raise DataError(
                f"data.k_core={k_core} cannot be combined with split.kind 'predefined': filtering "
                f"would change the split shipped with {source.name!r}; set k_core to 0"
            )
        if source.layout in ("diffrec_pairs", "item_lists"):  # shipped splits: bare pairs, no rating to filter on
            _check_min_rating_applies(source, min_rating, has_ratings=False)  # before any file is read
        split = load_predefined_split(source, n_valid_users=split_cfg.get("n_valid_users"),
                                      holdout_fraction=split_cfg.get("holdout_fraction", 0.2),
                                      min_items_to_split=split_cfg.get("min_items_to_split", 5), seed=seed)
    elif kind in ("strong", "weak", "temporal"):
        if source.layout == "synthetic":  # generated as a matrix: no raw ids to index
            _check_min_rating_applies(source, min_rating, has_ratings=False)
            matrix = synthetic_dataset(source.name, seed=seed, k_core=k_core)
        else:
            raw = load_interactions(
                source,
                sep=data_cfg.get("sep"),
                user_col=data_cfg.get("user_col", "user"),
                item_col=data_cfg.get("item_col", "item"),
                rating_col=data_cfg.get("rating_col"),
                header=data_cfg.get("header", True),
                time_col=data_cfg.get("time_col"),
            )
            if holdout != "latest" and kind != "temporal" and raw.time is not None:
                # read (and checked) but unused: the random split's matrix is built as it always was
                raw = dataclasses.replace(raw, time=None)
            if _check_min_rating_applies(source, min_rating, has_ratings=raw.rating is not None):
                matrix = build_matrix(raw, min_rating=min_rating, k_core=k_core, pair_time=pair_time)
            else:
                matrix = build_matrix(raw, min_rating=None, k_core=k_core, pair_time=pair_time)
        holdout_keys = dict(holdout_fraction=split_cfg.get("holdout_fraction", 0.2),
                            min_items_to_split=split_cfg.get("min_items_to_split", 5), seed=seed, holdout=holdout,
                            holdout_items=split_cfg.get("holdout_items"))
        if kind == "temporal":
            split = temporal_split(matrix, holdout_fraction=holdout_keys["holdout_fraction"],
                                   valid_fraction=split_cfg.get("valid_fraction"),
                                   test_from=split_cfg.get("test_from"), valid_from=split_cfg.get("valid_from"))
        elif kind == "weak":
            split = weak_generalization(matrix, **holdout_keys, valid_fraction=split_cfg.get("valid_fraction"))
        else:
            for key in ("n_valid_users", "n_test_users"):
                if key not in split_cfg:
                    raise DataError(f"split.{key} is missing: a strong-generalisation split needs it")
            split = strong_generalization(matrix, n_valid_users=split_cfg["n_valid_users"],
                                          n_test_users=split_cfg["n_test_users"], **holdout_keys)
        if kind == "temporal" or holdout == "latest":
            split.info["pair_time"] = pair_time  # the time a repeated pair counts at
        split.info["dataset"] = describe_source(source)
        split.info["min_rating"] = None if min_rating is None else float(min_rating)
        split.info["k_core"] = k_core
    else:
        raise DataError(f"split.kind must be 'strong', 'weak', 'temporal' or 'predefined', got {kind!r}")
    return split, source


# how a delimited file is read, with the schema's defaults: a named dataset has a format of its own
_FILE_FORMAT_KEYS = {"sep": None, "header": True, "user_col": "user", "item_col": "item", "rating_col": None,
                     "time_col": None}


def _check_file_format_keys(source: DatasetSource, data_cfg: dict) -> None:
    """DataError for a delimited-file key set on a dataset read in its own format: it would change nothing."""
    if source.layout == "delimited":
        return
    for key, default in _FILE_FORMAT_KEYS.items():
        if data_cfg.get(key, default) != default:
            raise DataError(f"data.{key}={data_cfg[key]!r} applies to a delimited file (.csv, .tsv) only; dataset "
                            f"{source.name!r} (layout {source.layout!r}) is read in its own format: leave it out")


def _check_min_rating_applies(source: DatasetSource, min_rating, has_ratings: bool) -> bool:
    """Whether min_rating still has to be applied; DataError if it cannot be honoured."""
    if min_rating is None:
        return False
    if has_ratings:
        return True
    if source.binarised_at is not None and float(min_rating) == source.binarised_at:
        return False
    already = (
        f"its files keep ratings >= {source.binarised_at:g} only"
        if source.binarised_at is not None
        else "its files hold no ratings"
    )
    files = f" ({', '.join(str(path) for path in source.paths.values())})" if source.paths else ""
    raise DataError(
        f"data.min_rating={min_rating} cannot be applied to {source.name!r}{files}: {already}; "
        "set min_rating to null" + (f" or {source.binarised_at:g}" if source.binarised_at is not None else
                                    ", or name the file's rating column with data.rating_col")
    )


def _weak_hint(split_cfg: dict, split: Split, stage: str) -> str:
    """Why a weak split's stage has nobody to score, from what its info counted."""
    if split.info.get("n_splittable_users", 0) == 0:
        return (f"; no user has split.min_items_to_split = {split_cfg['min_items_to_split']} items or more "
                "(users with fewer are not split), so lower it")
    if split.info.get(f"n_{stage}_users", 0) == 0:  # only validation can be empty so: test always takes one
        share = (f"split.holdout_items = {split_cfg['holdout_items']}" if split_cfg.get("holdout_items") is not None
                 else f"split.holdout_fraction = {split_cfg['holdout_fraction']}")
        return (f"; after the test items ({share}) every splittable user has one item left, which stays in "
                "training: a validation item needs a user with at least 3 items and one test item (lower "
                "that key only where it takes more than one item)")
    return (f"; every held-out item of the {stage} users is one no user trains on "
            f"({split.info.get('n_held_out_interactions_dropped', 0)} held-out pairs dropped with their items)")


def _temporal_hint(split: Split, stage: str) -> str:
    """Why a temporal split's stage has nobody to score, from what its info counted."""
    info = split.info
    new = info.get(f"n_{stage}_users_without_history", 0)
    window = (f"from {info['valid_from']} to before {info['test_from']}" if stage == "valid"
              else f"from {info['test_from']} on")
    others = ""
    if info.get(f"n_{stage}_users", 0):
        others = (f", and the others' held-out items are ones no one trains on "
                  f"({info.get('n_held_out_interactions_dropped', 0)} held-out pairs dropped in all)")
    return (f"; of the users with an interaction {window}, {new} have nothing known before it to read as "
            f"history{others}: move the cut-offs (split.test_from and split.valid_from, or the shares "
            "split.holdout_fraction and split.valid_fraction)")


def check_split_is_usable(config: dict, split: Split) -> None:
    """DataError when validation or test has no user with a held-out item to score."""
    where = (split.info.get("dataset") or {}).get("name") or split.info.get("source") or "data"
    for stage in ("valid", "test"):
        part = getattr(split, stage)
        if part.n_evaluable_users == 0:
            hint = ""
            if split.kind == "strong":
                hint = (f"; users with fewer than split.min_items_to_split = "
                        f"{config['split']['min_items_to_split']} items are not split, so lower it or raise "
                        f"split.n_{stage}_users (now {config['split'][f'n_{stage}_users']})")
            elif split.kind == "weak":
                hint = _weak_hint(config["split"], split, stage)
            elif split.kind == "temporal":
                hint = _temporal_hint(split, stage)
            raise DataError(f"{where}: the {stage} split has no user with a held-out item to score "
                            f"({part.n_users} {stage} users){hint}")
