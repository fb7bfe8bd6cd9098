"""Find the cases of a mask data set on disk, and split them by case.

A data set is a name looked up in the data folder (argument, else $BINDIFF_DATA_DIR) or a path
to a folder. Layouts (``auto`` tries them in this order):

- ``msd``: Medical Segmentation Decathlon, ``labels/`` or ``labelsTr/`` holding
  ``<case>.nii.gz`` (macOS ``._*`` debris is skipped); images in ``images/`` or ``imagesTr/``.
- ``brats2015``: one folder per case holding ``OTMultiClass.nii.gz`` and ``brainmask.nii.gz``
  (DeepMedic's copy of BraTS 2015, as in ``shared/data/brats2015_deepmedic``).
- ``brats2021``: one folder per case holding ``<case>_seg.nii.gz`` (BraTS 2018–2021) or
  ``<case>-seg.nii.gz`` (BraTS 2023); the FLAIR image (``_flair`` / ``-t2f``), non-zero inside
  the skull-stripped brain, serves as brain mask.
- ``files``: a folder of label maps (``.nii``, ``.nii.gz``, ``.mha``, ``.nrrd``), one per case.

Splits are drawn once from a seeded generator over the sorted case ids and stored as JSON, so
a run can be re-evaluated on exactly its held-out cases.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Callable

import numpy as np

from ...files import write_json
from ..data_dir import DATA_DIR_ENV, data_root
from ..errors import DataError
from ..shares import round_half_up

__all__ = ["MaskCase", "MaskDataset", "KNOWN_DATASETS", "LAYOUTS", "find_dataset", "split_cases", "load_case_split"]

LAYOUTS = ("msd", "brats2015", "brats2021", "files")
# Registered names -> folder under the data directory.
KNOWN_DATASETS = {"msd_hippocampus": "msd_hippocampus", "brats2015_deepmedic": "brats2015_deepmedic"}
# The label preset each layout implies when a recipe says ``labels.preset: auto``.
DEFAULT_PRESETS = {"msd": "msd_hippocampus", "brats2015": "brats2015", "brats2021": "brats2021", "files": None}
LABEL_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def volumes_by_stem(folder: Path) -> dict[str, list[Path]]:
    """The volume files of a folder (suffixes of LABEL_SUFFIXES in any case; hidden files left
    out) by case name, each name's files sorted; a folder that is not there holds none."""
    index: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            stem = volume_stem(path)
            if stem is not None and path.is_file() and not path.name.startswith("."):
                index.setdefault(stem, []).append(path)
    return index


def find_by_stem(folder: Path, stem: str) -> Path | None:
    """The volume file ``folder/<stem><suffix>`` (a suffix of LABEL_SUFFIXES, in any case), else
    None; a DataError naming both when there are two (``a.nii`` beside ``a.nii.gz``): which one
    is meant is not ours to guess."""
    found = volumes_by_stem(folder).get(stem, [])
    if len(found) > 1:
        raise DataError(f"{found[1]}: a second file for {stem!r} beside {found[0].name}; keep one")
    return found[0] if found else None


def find_channel(folder: Path, name: str, case_id: str) -> Path | None:
    """Image channel ``name`` of a case folder: ``<name>.<suffix>``, else the case-prefixed
    ``<case>_<name>`` or ``<case>-<name>`` of the BraTS 2018–2023 releases, so that one
    ``images.channels`` names the channel of every case."""
    for stem in (name, f"{case_id}_{name}", f"{case_id}-{name}"):
        found = find_by_stem(folder, stem)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class MaskCase:
    case_id: str
    label: Path
    brain: Path | None = None  # a brain mask or skull-stripped image (non-zero = brain)
    image: Path | None = None  # an image on the label's grid, checked for shape only

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, "label": str(self.label),
                "brain": None if self.brain is None else str(self.brain),
                "image": None if self.image is None else str(self.image)}

    @classmethod
    def from_dict(cls, data: dict) -> "MaskCase":
        return cls(data["case_id"], Path(data["label"]), *(None if data.get(k) is None else Path(data[k])
                                                           for k in ("brain", "image")))


@dataclass(frozen=True)
class MaskDataset:
    name: str
    root: Path
    layout: str
    cases: tuple[MaskCase, ...]

    @property
    def default_preset(self) -> str | None:
        return DEFAULT_PRESETS[self.layout]


def volume_stem(path: Path) -> str | None:
    """The file's name without its volume suffix (LABEL_SUFFIXES, any case); None: not a volume file."""
    name = path.name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def refuse_non_file(path: Path, what: str) -> None:
    """A name of a volume file that is not one: skipped, it would change the cases without a word."""
    if not path.is_file():
        kind = "a broken link" if path.is_symlink() and not path.exists() else "not a regular file"
        raise DataError(f"{path}: {kind} where a {what} is expected")


def _msd(root: Path) -> list[MaskCase] | None:
    for labels_dir, images_dir in (("labels", "images"), ("labelsTr", "imagesTr")):
        folder = root / labels_dir
        if folder.is_dir():
            images = volumes_by_stem(root / images_dir)
            cases = []
            for path in sorted(p for p in folder.iterdir() if _visible(p)):
                stem = volume_stem(path)
                if stem is None:
                    continue
                refuse_non_file(path, "label map")
                cases.append(MaskCase(stem, path, image=_image_of(images, stem, path, root / images_dir)))
            _warn_of_unlabelled(images, {case.case_id for case in cases}, root / images_dir)
            return cases
    return None


def _warn_of_unlabelled(images: dict[str, list[Path]], labelled: set[str], folder: Path) -> None:
    """A line naming images that no label map claims (a forgotten export would silently shrink
    the data set and move the split); nnU-Net's channel files ``<case>_0000``... are their case's."""
    def case_of(stem: str) -> str:
        return stem[:-5] if re.fullmatch(r".+_\d{4}", stem) and stem[:-5] in labelled else stem

    unlabelled = sorted(stem for stem in images if case_of(stem) not in labelled)
    if unlabelled:
        from ...progress import warn  # a BindiffWarning: one line from the bindiff command

        shown = ", ".join(unlabelled[:3]) + (f" and {len(unlabelled) - 3} more" if len(unlabelled) > 3 else "")
        warn(f"{folder}: {len(unlabelled)} image(s) with no label map beside them, left out: {shown}")


def _image_of(index: dict[str, list[Path]], stem: str, label: Path, images: Path) -> Path | None:
    """A label map's image: ``<case>`` or nnU-Net's ``<case>_0000``, in any volume file type (an
    image saved as .nii beside a .nii.gz label map is the same case, and so is one in upper case);
    two of one name are refused."""
    rank = {suffix: i for i, suffix in enumerate(LABEL_SUFFIXES)}
    for name in (stem, f"{stem}_0000"):  # a name's files in the order of LABEL_SUFFIXES
        found = sorted(index.get(name, []), key=lambda p: rank[p.name[len(name):].lower()])
        exact = images / label.name
        if len(found) > 1 and exact in found:  # the label's own file type first, as before
            found = [exact]
        if len(found) > 1:
            raise DataError(f"{found[1]}: a second image of case {stem!r} (also {found[0]}); keep one")
        if found:
            return found[0]
    return None


def _brats2015(root: Path) -> list[MaskCase] | None:
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)):
        label = folder / "OTMultiClass.nii.gz"
        if label.is_file():
            brain = folder / "brainmask.nii.gz"
            cases.append(MaskCase(folder.name, label, brain=brain if brain.is_file() else None))
    return cases or None


def _brats2021(root: Path) -> list[MaskCase] | None:
    cases = []
    for label in sorted(p for p in root.rglob("*seg.nii.gz") if _visible(p)):
        name = label.name
        for sep in ("_", "-"):
            if name.endswith(f"{sep}seg.nii.gz"):
                case_id = name[: -len(f"{sep}seg.nii.gz")]
                brain = next((label.parent / f"{case_id}{sep}{m}.nii.gz" for m in ("flair", "t2f")
                              if (label.parent / f"{case_id}{sep}{m}.nii.gz").is_file()), None)
                cases.append(MaskCase(case_id, label, brain=brain))
                break
    return cases or None


def _files(root: Path) -> list[MaskCase] | None:
    cases = [MaskCase(volume_stem(p), p) for p in sorted(root.iterdir())
             if p.is_file() and _visible(p) and volume_stem(p) is not None]
    return cases or None


_FINDERS = {"msd": _msd, "brats2015": _brats2015, "brats2021": _brats2021, "files": _files}


def _resolve_root(dataset: str, data_dir: str | os.PathLike | None) -> Path:
    base = data_root(data_dir)
    if dataset in KNOWN_DATASETS:
        if base is None:
            from ...arguments import argument  # --data-dir from the command, data_dir from Python

            raise DataError(f"data set {dataset!r}: set ${DATA_DIR_ENV} (or {argument('data_dir', '--data-dir')}) to "
                            f"the folder that holds {KNOWN_DATASETS[dataset]}/, or give data.dataset as a path")
        root = base / KNOWN_DATASETS[dataset]
        if not root.is_dir():
            raise DataError(f"{root}: data set {dataset!r} not found there (${DATA_DIR_ENV} is "
                            f"{os.environ.get(DATA_DIR_ENV) or 'unset'})")
        return root
    root = Path(dataset).expanduser()
    if not root.is_absolute() and not root.exists() and base is not None and (base / root).exists():
        root = base / root
    root = Path(os.path.abspath(root))  # a run stores its cases' paths: they must hold from any folder
    if not root.is_dir():
        raise DataError(f"{root}: not a known data set ({', '.join(KNOWN_DATASETS)}) and no such folder")
    return root


def find_dataset(dataset: str, layout: str = "auto", data_dir: str | os.PathLike | None = None) -> MaskDataset:
    """The cases of a data set (name or folder) in the given or the first matching layout."""
    root = _resolve_root(str(dataset), data_dir)
    if layout != "auto" and layout not in _FINDERS:
        raise DataError(f"data.layout must be auto or one of {', '.join(LAYOUTS)}, got {layout!r}")
    for name in (LAYOUTS if layout == "auto" else (layout,)):
        cases = _FINDERS[name](root)
        if cases:
            refuse_repeated_cases([(c.case_id, c.label) for c in cases])  # names both files
            return MaskDataset(str(dataset), root, name, tuple(cases))
    expected = {"msd": "labels/<case>.nii.gz", "brats2015": "<case>/OTMultiClass.nii.gz",
                "brats2021": "<case>/<case>_seg.nii.gz", "files": "<case>.nii.gz|.nii|.mha|.nrrd"}
    wanted = "; ".join(f"{k}: {v}" for k, v in expected.items() if layout in ("auto", k))
    raise DataError(f"{root}: no label maps found (looked for {wanted})")


def case_reader(dataset: str, data_dir: str | os.PathLike | None = None) -> Callable[[dict], MaskCase]:
    """What turns a run's stored case entries back into ``MaskCase``s. A run stores full paths;
    when a stored file is no longer there (the workspace was moved, or the run copied to another
    machine) and the data set is a named one (``msd_hippocampus``), it is read from below where
    ``--data-dir`` or ``$BINDIFF_DATA_DIR`` now finds that data set."""
    if dataset not in KNOWN_DATASETS:
        return MaskCase.from_dict
    folder_name = KNOWN_DATASETS[dataset]

    @functools.cache
    def current_root() -> Path | None:  # looked up once, and only if a stored file is missing
        try:
            return _resolve_root(dataset, data_dir)
        except DataError:  # not found there either: the stored path's own "not found" names it
            return None

    def moved(path: Path | None) -> Path | None:
        if path is None or path.exists():
            return path
        # a run made on Windows stores C:\...\msd_hippocampus\labels\x.nii.gz: one name to POSIX
        parts = PureWindowsPath(str(path)).parts if "\\" in str(path) else path.parts
        at = next((i for i in range(len(parts) - 2, -1, -1) if parts[i] == folder_name), None)
        if at is None or current_root() is None:
            return path
        return current_root().joinpath(*parts[at + 1:])

    def read(entry: dict) -> MaskCase:
        case = MaskCase.from_dict(entry)
        return MaskCase(case.case_id, moved(case.label), moved(case.brain), moved(case.image))

    return read


def _count(value: int | float, n: int, key: str) -> int:
    if isinstance(value, float):
        if not 0 <= value < 1:
            raise DataError(f"split.{key} as a fraction must lie in [0, 1), got {value}")
        return round_half_up(value, n) if value > 0 else 0
    return int(value)


def refuse_repeated_cases(cases: list[tuple[str, Path]]) -> None:
    """DataError naming two files of one case id (``(case_id, file)`` pairs): their outputs,
    named after the case, would overwrite each other. Ids that differ only in case count as one:
    macOS's and Windows' file systems take ``Case1_mask.nii.gz`` and ``case1_mask.nii.gz`` for one file."""
    seen: dict[str, Path] = {}
    for case_id, file in cases:
        key = case_id.casefold()
        if key in seen:
            raise DataError(f"{file}: case {case_id!r} again (also {seen[key]}); their outputs would overwrite "
                            "each other (on macOS and Windows also when only upper and lower case differ): "
                            "rename one")
        seen[key] = file


def split_cases(case_ids: list[str], n_valid: int | float, n_test: int | float, seed: int) -> dict[str, list[str]]:
    """Seeded split by case: counts (int) or fractions (float) of the cases for valid and test."""
    ids = sorted(case_ids)
    n = len(ids)
    v, t = _count(n_valid, n, "n_valid"), _count(n_test, n, "n_test")
    if v < 1 or t < 1 or v + t >= n:
        raise DataError(f"split.n_valid, split.n_test: cannot split {n} cases into {v} validation, {t} test and at "
                        "least one training case; each part needs at least one case")
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda rows: sorted(ids[i] for i in rows)  # noqa: E731
    return {"train": pick(order[v + t:]), "valid": pick(order[:v]), "test": pick(order[v:v + t])}


def save_case_split(path: Path, dataset: MaskDataset, split: dict[str, list[str]], extra: dict | None = None) -> None:
    by_id = {c.case_id: c for c in dataset.cases}
    write_json(path, {"format_version": 1, "dataset": dataset.name, "root": str(dataset.root), "layout": dataset.layout,
                      "split": split, "cases": [by_id[i].to_dict() for part in ("train", "valid", "test")
                                                for i in split[part]], **(extra or {})})


def load_case_split(path: Path, data_dir: str | os.PathLike | None = None) -> dict:
    """A file ``save_case_split`` wrote; its cases read as ``case_reader`` reads a run's (a named
    data set that has moved is found where ``data_dir`` or ``$BINDIFF_DATA_DIR`` now holds it)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: case split not found")
    data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM: PowerShell 5 writes one
    read = case_reader(data["dataset"], data_dir)
    data["cases"] = {c["case_id"]: read(c) for c in data["cases"]}
    return data
