"""Scoring masks against reference label maps, file to file or folder to folder: the check a team
runs after ``bindiff segment`` (or ``bindiff masks apply``) on scans it has labels for, as
nnU-Net's evaluate-folder does after its predictions.

A prediction is a 0/1 mask; its case is its name without the volume suffix and without a trailing
``_mask`` (``segment`` writes ``<case>_mask.nii.gz``, ``masks apply`` ``<case>.nii.gz``). Its
reference is ``<case>.<suffix>`` in the reference folder, binarised with a label preset and
region (a run's own, or one named; by default the reference must itself be a 0/1 mask). Both
must lie on one voxel grid. The metrics are ``bindiff.metrics.segmentation``'s, in mm from the
reference's voxel size. A prediction without a reference is refused; references without a
prediction are listed in the summary and left out of the means.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .adapters.errors import DataError
from .adapters.masks import LabelPreset, binarize, get_preset, read_label_map
from .adapters.masks.datasets import LABEL_SUFFIXES, volume_stem, volumes_by_stem
from .adapters.masks.io import require_one_grid
from .config import RecipeError, argument
from .files import OutputError, refuse_a_file_above, refuse_a_long_name, write_json
from .metrics.segmentation import DEFINITIONS, EMPTY_RULE, segmentation_metrics, summarize
from .tasks.base import read_run_config
from .tasks.masks.data import cases_json, resolve_preset

MASK_SUFFIX = "_mask"  # what `bindiff segment` adds to a case's name
BINARY = LabelPreset("binary", frozenset({0, 1}), {"whole": frozenset({1})}, "0/1 masks")  # the default reference


@dataclass(frozen=True)
class ScoredPair:
    case_id: str
    prediction: Path
    reference: Path


def case_of(prediction: Path) -> str | None:
    """A prediction file's case: its name without the volume suffix and a trailing ``_mask``."""
    stem = volume_stem(prediction)
    if stem is None:
        return None
    return stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) and len(stem) > len(MASK_SUFFIX) else stem


def pair_files(prediction: Path, reference: Path) -> tuple[list[ScoredPair], list[str]]:
    """Each prediction with its reference, by case; also the reference cases nothing predicted."""
    prediction, reference = Path(prediction), Path(reference)
    for path, what in ((prediction, "prediction"), (reference, "reference")):
        if not path.exists():
            raise DataError(f"{path}: no such {what} file or folder")
    if prediction.is_file():
        case = case_of(prediction)
        if case is None:
            raise DataError(f"{prediction}: not a mask file (expected one of {', '.join(LABEL_SUFFIXES)})")
        predictions = {case: prediction}
    else:
        predictions = {}
        for path in sorted(p for p in prediction.iterdir() if not p.name.startswith(".")):
            case = case_of(path)
            if case is None or (volume_stem(path) or "").endswith(("_uncertainty", "_probability")):
                continue  # segment's other maps, summary.json and the like
            if not path.is_file():  # left out, it would change the mean without a word
                raise DataError(f"{path}: not a readable mask file (a folder or a broken link)")
            if case in predictions:
                raise DataError(f"{path}: a second prediction for case {case!r} (beside {predictions[case].name})")
            predictions[case] = path
        if not predictions:
            raise DataError(f"{prediction}: no mask files ({', '.join(LABEL_SUFFIXES)}) in this folder")
    if reference.is_file():
        if len(predictions) != 1:
            raise DataError(f"{reference}: one reference file for {len(predictions)} predictions; give a folder of "
                            "<case> label maps")
        ((case, path),) = predictions.items()
        if os.path.samefile(path, reference):
            raise DataError(f"{path}: is its own reference; give the reference label map")
        return [ScoredPair(case, path, reference)], []
    for path in reference.iterdir():  # left out, a reference would move the unmatched list without a word
        if volume_stem(path) and not path.name.startswith(".") and not path.is_file():
            raise DataError(f"{path}: not a readable reference file (a folder or a broken link)")
    references = volumes_by_stem(reference)
    pairs = []
    for case, path in predictions.items():
        if case not in references:
            raise DataError(f"{path}: no reference {case}.nii.gz (or another volume format) in {reference}")
        first, *others = references[case]
        if others:  # a.nii beside a.nii.gz: which one is the truth is not ours to guess
            raise DataError(f"{others[0]}: a second reference for case {case!r} (beside {first.name})")
        if os.path.samefile(first, path):
            raise DataError(f"{path}: is its own reference; give the reference label maps")
        pairs.append(ScoredPair(case, path, first))
    return pairs, sorted(set(references) - set(predictions))


def _prediction_mask(path: Path) -> tuple[np.ndarray, object]:
    volume = read_label_map(path)
    values = np.unique(volume.data)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(str(v) for v in values[:8])
        raise DataError(f"{path}: not a 0/1 mask (it holds {shown}); a prediction is the region's 0/1 mask "
                        f"({argument('preset', '--preset')} and {argument('region', '--region')} read the "
                        "references' labels)")
    return volume.data.astype(bool), volume.geometry


def score_pair(pair: ScoredPair, preset: LabelPreset, region: str) -> dict:
    pred, pred_geometry = _prediction_mask(pair.prediction)
    reference = read_label_map(pair.reference)
    require_one_grid(reference.geometry, pred_geometry, f"its reference {pair.reference}", pair.prediction)
    try:
        truth = binarize(reference.data, preset, region, source=pair.reference)
    except DataError as err:
        wanted = argument("preset (a name, or labels_to_score(run=...))", "--preset or --run")
        hint = f"; a label map needs {wanted}" if preset is BINARY else ""
        raise DataError(f"{err}{hint}") from None
    return {"case_id": pair.case_id, "prediction": str(pair.prediction), "reference": str(pair.reference),
            **segmentation_metrics(pred, truth, reference.geometry.spacing)}


def labels_to_score(run: str | Path | None = None, preset: str | None = None,
                    region: str | None = None) -> tuple[LabelPreset, str]:
    """The references' label preset and region: named, or a run's own (``labels.*`` of a masks or
    segmentation run), else 0/1 masks (``binary``)."""
    if region is not None and not region.strip():  # was read as no --region: the run's, or whole
        raise RecipeError(f"score: {argument('region', '--region')} is empty")
    if run is not None:
        if preset is not None:
            raise RecipeError(f"score: give {argument('run', '--run')} or {argument('preset', '--preset')}, not both")
        config = read_run_config(Path(run))
        if config.get("task") not in ("masks", "segmentation"):
            raise RecipeError(f"{run}: a {config.get('task')} run has no label preset; give "
                              f"{argument('preset', '--preset')}")
        layout = "files"
        if (Path(run) / "split" / "cases.json").is_file():
            with cases_json(Path(run) / "split", config["task"]) as meta:
                layout = meta["layout"]
        return resolve_preset(config, layout), region or config["labels"]["region"]
    if preset == "custom":  # its labels.foreground is a recipe key: only a run carries one
        raise RecipeError(f"score: the custom preset's labels come from a run; give {argument('run', '--run RUN_DIR')} "
                          "of a run that used it")
    if preset is None or preset == "binary":
        if region not in (None, "whole"):
            raise RecipeError(f"score: 0/1 references have one region, whole; {argument('region', '--region')} "
                              f"{region} needs {argument('preset', '--preset')}")
        return BINARY, "whole"
    try:
        chosen = get_preset(preset)
        chosen.region(region or "whole")
    except DataError as err:
        raise RecipeError(f"score: {err}") from None
    return chosen, region or "whole"


def score(prediction: str | Path, reference: str | Path, preset: LabelPreset | str = BINARY, region: str = "whole",
          out: str | Path | None = None) -> dict:
    """Every prediction scored against its reference; the summary is written to ``out`` (JSON) when given.
    ``preset``: a ``LabelPreset`` or a preset's name (``"msd_hippocampus"``; ``"binary"`` for 0/1 masks)."""
    if preset is None or isinstance(preset, str):  # None: 0/1 references, as labels_to_score reads it
        preset, region = labels_to_score(preset=preset, region=region)
    elif not isinstance(preset, LabelPreset):
        raise TypeError(f"preset must be a LabelPreset or a preset's name, got {preset!r}")
    elif region is None:  # as labels_to_score reads it
        region = "whole"
    if preset.name != "custom":
        preset.region(region)  # an unknown region is refused before any file is read
    if out is not None:
        refuse_a_long_name(Path(out))  # before exists(), which raises on a name the file system cannot hold
        if Path(out).exists():  # it might even be one of the files scored
            raise FileExistsError(f"{argument('out', '--out')} {out}: already exists; bindiff never overwrites")
        # a folder path through a file: said before every case is read and scored
        try:
            refuse_a_file_above(Path(out))
        except OutputError as err:
            raise OutputError(f"{argument('out', '--out')} {err}") from None
    pairs, unmatched = pair_files(Path(prediction), Path(reference))
    rows = [score_pair(pair, preset, region) for pair in pairs]
    summary = {"prediction": str(prediction), "reference": str(reference),
               "preset": preset.name,
               "region": region if preset.name != "custom" else "custom",
               "foreground_labels": sorted(preset.regions["custom"] if preset.name == "custom"
                                           else preset.region(region)),
               "mean": summarize(rows), "definitions": DEFINITIONS, "empty_rule": EMPTY_RULE,
               "unmatched_references": unmatched, "per_case": rows}
    if out is not None:
        try:
            write_json(out, summary, overwrite=False)  # checked above, but another process may write it meanwhile
        except OutputError as err:  # names the path and why
            raise OutputError(f"{argument('out', '--out')} {err}") from None
        except OSError as err:
            raise OutputError(f"{argument('out', '--out')} {out}: cannot write the summary "
                              f"({err.strerror or err})") from None
    return summary
