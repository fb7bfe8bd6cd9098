"""The masks job's data: recipe → data set → split by case → grids → training vectors.

A run stores what it used in ``<run>/split/``: ``cases.json`` (data set, layout, label preset,
grid, the split, and per case its files, geometry and grid transform) and ``grids.npz`` (every
case's grid as packed bits). Evaluation re-reads the held-out label files themselves, so
metrics are always computed against the original masks on their original voxel grid.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ...adapters.errors import DataError
from ...adapters.masks import (
    Geometry, GridSpec, GridTransform, LabelPreset, MaskCase, case_reader, find_dataset, get_preset, load_case,
    split_cases, to_vectors,
)
from ...adapters.masks.datasets import DEFAULT_PRESETS, MaskDataset, save_case_split
from ...adapters.masks.labels import CUSTOM_REGIONS
from ...adapters.masks.spacing import mixed_spacing
from ...config import RecipeError
from ...files import atomic_path
from ...progress import log, log_lines, warn


@dataclass
class CaseRecord:
    """One case as the run knows it: files, geometry, grid transform and grid."""

    case: MaskCase
    geometry: Geometry
    transform: GridTransform
    grid: np.ndarray  # uint8, the 3-D grid (slice mode: the slice axis has the window's length)
    outside: int = 0  # mask voxels the grid window does not cover

    @property
    def case_id(self) -> str:
        return self.case.case_id

    def to_dict(self) -> dict:
        return {**self.case.to_dict(), "geometry": self.geometry.to_dict(), "transform": self.transform.to_dict(),
                "outside_voxels": self.outside}


@dataclass
class MaskData:
    dataset: str
    root: str
    layout: str
    preset: LabelPreset
    region: str
    spec: GridSpec
    split: dict[str, list[str]]
    records: dict[str, CaseRecord]

    def part(self, name: str) -> list[CaseRecord]:
        return [self.records[i] for i in self.split[name]]

    @property
    def dim(self) -> int:
        return int(np.prod(self.spec.vector_grid))


def grid_spec(config: dict) -> GridSpec:
    g = config["grid"]
    try:
        return GridSpec(shape=tuple(g["shape"]), mode=g["mode"], crop=g["crop"], margin=g["margin"],
                        slice_axis=g["slice_axis"])
    except ValueError as err:
        raise RecipeError(f"grid: {err}") from None


def resolve_preset(config: dict, layout: str) -> LabelPreset:
    lab = config["labels"]
    name = lab["preset"]
    if name == "auto":
        name = DEFAULT_PRESETS[layout]
        if name is None:
            raise RecipeError(f"labels.preset is 'auto' but layout {layout!r} implies no label convention; "
                              "name a preset (brats2015, brats2021, brats2023, msd_hippocampus or custom)")
    try:
        preset = get_preset(name, lab["allowed"], lab["foreground"])
    except DataError as err:
        raise RecipeError(f"labels: {err}") from None
    if name != "custom":
        try:
            preset.region(lab["region"])
        except DataError as err:
            raise RecipeError(f"labels.region: {err}") from None
    return preset


def check_label_preset(config: dict) -> None:
    """The label preset and region, when the preset is named (``auto`` depends on the data's layout),
    and keys the preset would not read. A recipe check (train, show-config): a stored run is read
    with ``resolve_preset`` alone, so a run trained before these checks still loads."""
    lab = config["labels"]
    if lab["preset"] != "auto":
        resolve_preset(config, layout="files")
    given = [k for k in ("allowed", "foreground") if lab[k] is not None]
    if lab["preset"] != "custom" and given:  # the preset's own labels are used: these would be ignored
        raise RecipeError(f"labels.{given[0]} is read with preset custom only, and the preset is {lab['preset']!r}")
    if lab["preset"] == "custom" and lab["region"] not in CUSTOM_REGIONS:  # its one region: the foreground
        raise RecipeError(f"labels.region {lab['region']!r}: a custom preset has one region, its foreground labels; "
                          "leave labels.region at 'whole'")


def warn_mixed_spacing(spec: GridSpec, spacings: dict, source, remedy: str = "use grid.mode resample, or resample "
                       "the data to one spacing") -> None:
    """A warning line when a grid that never resamples (``grid.mode: pad``) is given cases of
    different voxel sizes: one grid voxel would be a different length in each, so the model
    learns the structure at several scales. Training goes on; ``remedy`` says what avoids it."""
    if spec.mode != "pad" or not spacings:
        return
    problem = mixed_spacing(spacings)
    if problem:
        warn(f"{source}: {problem}; grid.mode pad does not resample, so the model sees their "
            f"structures at different scales ({remedy})")


def warn_outside(spec: GridSpec, outside: dict[str, int], source) -> None:
    """A warning line when the grid window misses label voxels of some cases (``outside_voxels`` in
    the run's ``split/cases.json`` counts them). Both tasks score a held-out case on its own voxels
    against its whole label map, so what the window misses is never learned and is scored as missed."""
    missed = {case_id: n for case_id, n in outside.items() if n}
    if missed:
        worst = max(missed, key=missed.get)
        warn(f"{source}: grid.shape {list(spec.shape)} misses {sum(missed.values())} label voxel(s) of "
            f"{len(missed)} case(s) (most: {worst}, {missed[worst]}); they are not learned, and the held-out cases' "
            "are scored as missed: enlarge grid.shape")


def warn_empty(labels: list, region: str) -> None:
    """A warning line naming label maps that hold no voxel of the region: scored by the empty-mask
    rule, they pull every mean down, and in one's own data they are most often an export mistake."""
    if labels:
        shown = ", ".join(str(p) for p in labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        warn(f"{shown}: no voxel of labels.region {region!r} (an empty mask, learned and scored as one)")


def find_cases(config: dict, data_dir: str | None = None) -> tuple[MaskDataset, list[MaskCase], GridSpec, LabelPreset]:
    """The recipe's data set, its first ``data.max_cases`` cases, the grid and the label preset:
    where the masks and the segmentation tasks both start."""
    d = config["data"]
    dataset = find_dataset(d["dataset"], d["layout"], data_dir=data_dir)
    cases = list(dataset.cases)[: d["max_cases"]] if d["max_cases"] else list(dataset.cases)
    return dataset, cases, grid_spec(config), resolve_preset(config, dataset.layout)


def prepare_data(config: dict, data_dir: str | None = None, disable_progress: bool | None = None) -> MaskData:
    """Find, split and load every case the recipe asks for (raises before anything is written)."""
    dataset, cases, spec, preset = find_cases(config, data_dir)
    records = {}  # every file is read and checked first: a bad file is named before any count is
    if log_lines(config):  # piped: the bar is off, so say what the first minute is spent on
        log(f"reading {len(cases)} label maps from {dataset.root}")
    for case in tqdm(cases, desc="reading masks", unit="case", disable=disable_progress):
        loaded = load_case(case, preset, config["labels"]["region"], spec)
        records[case.case_id] = CaseRecord(case, loaded.geometry, loaded.transform, loaded.grid,
                                           loaded.transform.outside(loaded.truth))
    warn_mixed_spacing(spec, {case_id: r.geometry.spacing for case_id, r in records.items()}, dataset.root)
    warn_outside(spec, {case_id: r.outside for case_id, r in records.items()}, dataset.root)
    warn_empty([r.case.label for r in records.values() if not r.grid.any() and not r.outside],
               config["labels"]["region"])
    split = split_cases([c.case_id for c in cases], config["split"]["n_valid"], config["split"]["n_test"],
                        seed=config["seed"])
    refuse_empty_training([records[i].grid for i in split["train"]], dataset.root, config["labels"]["region"],
                          preset.name)
    return MaskData(dataset.name, str(dataset.root), dataset.layout, preset, config["labels"]["region"], spec,
                    split, records)


def refuse_empty_training(masks: Sequence[np.ndarray], source, region: str, preset: str) -> None:
    """Refuses a split whose training masks are all empty: there would be nothing to learn."""
    if not any(mask.any() for mask in masks):
        raise DataError(f"{source}: every training mask is empty for labels.region {region!r} of preset "
                        f"{preset!r}; nothing to learn (check the region, or labels.foreground of a custom preset)")


def _augmented(grid: np.ndarray, flip_axes: list[int], shifts: int) -> list[np.ndarray]:
    out = [grid]
    for axis in flip_axes:
        out.append(np.flip(grid, axis=axis))
    if shifts:
        base = list(out)
        for g in base:
            for axis in range(3):
                for sign in (-shifts, shifts):
                    moved = np.zeros_like(g)
                    src = [slice(None)] * 3
                    dst = [slice(None)] * 3
                    src[axis] = slice(max(-sign, 0), g.shape[axis] - max(sign, 0))
                    dst[axis] = slice(max(sign, 0), g.shape[axis] - max(-sign, 0))
                    moved[tuple(dst)] = g[tuple(src)]
                    out.append(moved)
    return out


def training_matrix(data: MaskData, config: dict) -> sp.csr_matrix:
    """Every training vector as one CSR row (with the recipe's augmented copies)."""
    aug = config["augment"]
    if aug["flip_axes"]:
        # opt-in only: when every real case has one orientation, mirrored copies teach the model
        # anatomy that never occurs, and generated masks come out mirrored about half the time
        warn(f"augment.flip_axes = {aug['flip_axes']}: training on mirrored copies; generated masks "
            "may come out mirrored (check generation's orientation_share)")
    rows = []
    for record in data.part("train"):
        for grid in _augmented(record.grid, aug["flip_axes"], aug["shifts"]):
            rows.append(sp.csr_matrix(to_vectors(np.ascontiguousarray(grid), data.spec).astype(np.float32)))
    return sp.vstack(rows, format="csr")


def save_data(data: MaskData, folder: Path) -> None:
    from ...adapters.masks.datasets import MaskDataset

    folder.mkdir(parents=True, exist_ok=True)
    ds = MaskDataset(data.dataset, Path(data.root), data.layout, tuple(r.case for r in data.records.values()))
    save_case_split(folder / "cases.json", ds, data.split, extra={
        "preset": data.preset.to_dict(), "region": data.region,
        "grid": {"shape": list(data.spec.shape), "mode": data.spec.mode, "crop": data.spec.crop,
                 "margin": data.spec.margin, "slice_axis": data.spec.slice_axis},
        "records": {i: r.to_dict() for i, r in data.records.items()},
    })
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{f"{i}": np.packbits(r.grid.astype(bool).ravel()) for i, r in data.records.items()})
    with atomic_path(folder / "grids.npz") as tmp:
        tmp.write_bytes(buffer.getvalue())


@contextmanager
def cases_json(folder: Path, kind: str) -> Iterator[dict]:
    """A run's ``split/cases.json``, parsed, for a block that reads its entries: a file damaged
    since the run (not JSON, or lacking an entry the block reads) is one DataError naming it."""
    path = Path(folder) / "cases.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; is {Path(folder).parent} a {kind} run directory?")
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM: PowerShell 5 writes one
    except (OSError, ValueError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{path}: damaged: not readable JSON ({err})") from None
    try:
        yield meta
    except (DataError, RecipeError):
        raise
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as err:
        raise DataError(f"{path}: damaged: an entry is missing or malformed ({type(err).__name__}: {err})") from None


def check_split_drawn(split: dict, config: dict, path: Path) -> None:
    """DataError when a run's stored split is not the one its recipe's seed draws from its cases
    (a split/ folder copied from another run would score the model on its own training cases)."""
    ids = [case_id for part in ("train", "valid", "test") for case_id in split.get(part, [])]
    try:
        drawn = split_cases(ids, config["split"]["n_valid"], config["split"]["n_test"], seed=config["seed"])
    except DataError:
        drawn = None  # the recipe's counts do not even fit these cases
    if drawn is None or {part: sorted(split.get(part, [])) for part in drawn} != drawn:
        raise DataError(f"{path}: its split is not the one seed {config['seed']} draws from its cases; the split "
                        "folder comes from another run")


def load_data(folder: Path, data_dir: str | None = None) -> MaskData:
    with cases_json(folder, "masks") as meta:
        try:
            packed = np.load(Path(folder) / "grids.npz", allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # EOFError: an empty file
            raise DataError(f"{Path(folder) / 'grids.npz'}: missing or damaged ({err or 'empty file'})") from None
        records = {}
        read_case = case_reader(meta["dataset"], data_dir)
        for case_id, rec in meta["records"].items():
            transform = GridTransform.from_dict(rec["transform"])
            n = int(np.prod(transform.grid_shape))
            try:
                bits = np.unpackbits(packed[case_id]) if case_id in packed.files else np.zeros(0, np.uint8)
            except (ValueError, TypeError, OSError, EOFError, zlib.error, zipfile.BadZipFile, MemoryError) as err:
                detail = str(err).splitlines()[0] if str(err) else "no detail"
                raise DataError(f"{Path(folder) / 'grids.npz'}: case {case_id!r} is damaged "
                                f"({type(err).__name__}: {detail})") from None
            if bits.size < n:  # cases.json is readable, so grids.npz is the file that does not match
                raise DataError(f"{Path(folder) / 'grids.npz'}: holds no grid of {n} voxels for case {case_id!r} "
                                "of cases.json; the two files come from different runs")
            grid = bits[:n].reshape(transform.grid_shape).astype(np.uint8)
            records[case_id] = CaseRecord(read_case(rec), Geometry.from_dict(rec["geometry"]), transform,
                                          grid, int(rec.get("outside_voxels", 0)))
        p = meta["preset"]
        preset = LabelPreset(p["name"], frozenset(p["allowed"]), {k: frozenset(v) for k, v in p["regions"].items()},
                             p.get("description", ""))
        g = meta["grid"]
        spec = GridSpec(tuple(g["shape"]), g["mode"], g["crop"], g["margin"], g["slice_axis"])
        return MaskData(meta["dataset"], meta["root"], meta["layout"], preset, meta["region"], spec, meta["split"],
                        records)

