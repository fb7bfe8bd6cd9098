"""Conventions users of the field's tools expect: every documented name importable from `bindiff`,
shipped recipes found by name from any folder, library plots that leave the caller's backend alone."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import bindiff

ROOT = Path(__file__).resolve().parent.parent
# The modules whose public module-level names docs/api.md documents.
PUBLIC_MODULES = [
    "bindiff.core", "bindiff.core.schedules", "bindiff.core.process", "bindiff.core.losses", "bindiff.core.denoisers",
    "bindiff.core.scheduler", "bindiff.core.diffusion", "bindiff.metrics", "bindiff.metrics.ranking",
    "bindiff.metrics.segmentation", "bindiff.adapters", "bindiff.adapters.interactions", "bindiff.adapters.masks",
    "bindiff.config", "bindiff.tasks.registry", "bindiff.tasks.recommendation.job", "bindiff.tasks.recommendation.serve",
    "bindiff.tasks.recommendation.data", "bindiff.tasks.recommendation.models", "bindiff.tasks.recommendation.export",
    "bindiff.tasks.recommendation.compare", "bindiff.tasks.recommendation.tune",
    "bindiff.tasks.masks.job", "bindiff.tasks.masks.apply", "bindiff.tasks.segmentation.job",
    "bindiff.tasks.segmentation.segment", "bindiff.metrics.paired", "bindiff.metrics.calibration", "bindiff.scoring",
]


def documented_names() -> dict[str, str]:
    """Every backticked identifier of docs/api.md that is a public module-level name of a public
    module (methods, arguments and keys are not), with the module that defines it."""
    from bindiff.core import DENOISERS, LOSSES, SCHEDULES

    registry_keys = set(SCHEDULES) | set(DENOISERS) | set(LOSSES)  # names given as strings, not imports
    tokens = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", (ROOT / "docs" / "api.md").read_text(encoding="utf-8")))
    found = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in tokens - registry_keys:
            if not attr.startswith("_") and hasattr(module, attr) and \
                    not isinstance(getattr(module, attr), type(importlib)):
                found.setdefault(attr, name)
    return found


def test_every_name_the_api_page_documents_imports_from_bindiff():
    names = documented_names()
    assert len(names) >= 70  # the page documents the library, not a handful of names
    missing = sorted(f"{n} (from {m})" for n, m in names.items() if not hasattr(bindiff, n))
    assert not missing, f"documented in docs/api.md but not importable from bindiff: {missing}"
    for name in ("RankingReport", "EvalPart", "LossOutput", "RawInteractions", "diffusion_loss", "read_pairs",
                 "load_interactions", "DENOISERS", "DATASETS", "read_label_map", "write_mask", "hd95",
                 "load_masks_run", "Recommender"):
        assert name in names and getattr(bindiff, name) is getattr(importlib.import_module(names[name]), name)


def test_a_shipped_recipe_trains_by_name_from_another_folder(tmp_path):
    data = Path(os.environ.get("BINDIFF_DATA_DIR", str(ROOT.parent / "shared" / "data"))).resolve()
    env = {**os.environ, "BINDIFF_DATA_DIR": str(data)}  # absolute: the command runs in another folder
    if not (Path(env["BINDIFF_DATA_DIR"]) / "ml-100k").exists():
        import pytest

        pytest.skip("ML-100K not found")
    bindiff_cli = [sys.executable, "-m", "bindiff"]
    listed = subprocess.run([*bindiff_cli, "recipes"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    trained = subprocess.run([*bindiff_cli, "train", "ml100k", "train.epochs=1", "output.progress=false"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert list((tmp_path / "runs" / "ml100k").glob("*/metrics.json"))


def test_library_plots_leave_the_callers_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('pdf'); from bindiff.plots import plot_training_curve; "
            f"plot_training_curve([{{'epoch': 1, 'train_loss': 1.0, 'valid_m': 0.5}}], 'm', {str(tmp_path / 'c.png')!r}); "
            "print(matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pdf" and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_short_training_curve_shows_its_points_on_whole_epochs():
    """One epoch is one point: drawn as a bare line it left the plot blank; and epochs are whole
    numbers (the axis read 1.25, 1.75)."""
    from bindiff.plots import training_curve_figure

    for epochs in (1, 3):
        history = [{"epoch": e, "train_loss": 1.0 / e, "valid_m": 0.1 * e} for e in range(1, epochs + 1)]
        fig = training_curve_figure(history, "m")
        fig.canvas.draw()
        loss_axis, metric_axis = fig.axes
        for axis in (loss_axis, metric_axis):
            (line,) = axis.get_lines()
            assert line.get_marker() not in (None, "None", "", " ") and line.get_markersize() > 0
        shown = [t.get_position()[0] for t in loss_axis.get_xticklabels() if t.get_text()]
        assert shown and all(float(x).is_integer() for x in shown), shown


def test_help_keeps_its_brackets_and_the_version_prints():
    help_text = subprocess.run([sys.executable, "-m", "bindiff", "masks", "completion", "--help"],
                               capture_output=True, text=True).stdout
    assert "evaluations.completion.hide=[box]" in help_text


def test_every_function_and_class_of_the_flat_api_says_what_it_does():
    import inspect

    import bindiff

    objects = {name: getattr(bindiff, name) for name in bindiff.__all__}
    missing = [name for name, obj in objects.items()
               if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj)]
    assert missing == []


def test_every_task_names_the_scored_checkpoint_the_same_way():
    from bindiff.tasks.base import checkpoint_entry

    # last.pt of a run whose best epoch was 2 of 5: the entry keeps both (the best's epoch once
    # overwrote the checkpoint's own in the masks task)
    payload = {"epoch": 5, "best": {"metric": "dice", "value": 0.8, "epoch": 2}}
    assert checkpoint_entry(payload, "last") == {"file": "checkpoints/last.pt", "epoch": 5, "selected_by": "dice",
                                                 "best_value": 0.8, "best_epoch": 2}
    assert checkpoint_entry(payload, "best", "unet")["file"] == "checkpoints/unet/best.pt"
