"""What differs on macOS and Windows, reproduced on Linux: file systems that ignore case, text
mode's line ends, no SIGHUP or preexec_fn, no sysconf, a cp1252 stdout, names Windows cannot
create, runs whose stored paths are Windows paths, JSON files with PowerShell's byte-order mark."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from cli_checks import error_line

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()


def test_case_ids_differing_only_in_case_are_one_case():
    from bindiff.adapters.errors import DataError
    from bindiff.adapters.masks.datasets import refuse_repeated_cases

    # Case1_mask.nii.gz and case1_mask.nii.gz are one file on macOS's and Windows' file systems
    with pytest.raises(DataError, match=r"a/case1.mha: case 'case1' again \(also a/Case1.nii.gz\)"):
        refuse_repeated_cases([("Case1", Path("a/Case1.nii.gz")), ("case1", Path("a/case1.mha"))])
    refuse_repeated_cases([("case1", Path("a/case1.nii.gz")), ("case2", Path("a/case2.nii.gz"))])


def test_written_text_keeps_its_own_line_ends_under_windows_text_mode(tmp_path, monkeypatch):
    from bindiff.files import write_text

    plain = pathlib.Path.write_text

    def windows_text_mode(self, data, encoding=None, errors=None, newline=None):
        if newline is None:  # what Windows' text mode does to each "\n"
            data = data.replace("\n", "\r\n")
        return plain(self, data, encoding=encoding, errors=errors, newline="")

    monkeypatch.setattr(pathlib.Path, "write_text", windows_text_mode)
    write_text(tmp_path / "per_user.csv", "user,ndcg\r\n5,0.13\r\n")  # csv.writer's own \r\n
    assert (tmp_path / "per_user.csv").read_bytes() == b"user,ndcg\r\n5,0.13\r\n"  # was \r\r\n: blank rows


def test_launching_processes_without_sighup_or_preexec_fn(monkeypatch):
    from bindiff.training import distributed

    calls = []

    class Child:
        def wait(self):
            return 0

        def poll(self):
            return 0

    def popen(command, **kwargs):
        calls.append(kwargs)
        return Child()

    monkeypatch.delattr(signal, "SIGHUP")  # Windows has none
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(subprocess, "Popen", popen)
    assert distributed.launch(2, ["train", "x.yaml"]) == 0
    assert calls[0]["preexec_fn"] is None  # Windows refuses any preexec_fn

    def refused(command, **kwargs):
        raise ValueError("preexec_fn is not supported on Windows platforms")

    monkeypatch.setattr(subprocess, "Popen", refused)
    before = set(Path(tempfile.gettempdir()).glob("bindiff-torchrun-*"))
    with pytest.raises(ValueError):
        distributed.launch(2, ["train", "x.yaml"])
    assert set(Path(tempfile.gettempdir()).glob("bindiff-torchrun-*")) == before  # its log folder was left


def test_the_memory_guard_reads_windows_memory(monkeypatch):
    import ctypes
    import types

    from bindiff.training import devices

    def global_memory_status(reference):
        reference._obj.ullTotalPhys = 8 * 2 ** 30
        return 1

    monkeypatch.delattr(os, "sysconf")  # Windows has no sysconf: the guard accepted everything
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", types.SimpleNamespace(
        kernel32=types.SimpleNamespace(GlobalMemoryStatusEx=global_memory_status)), raising=False)
    assert devices.physical_memory_bytes() == 8 * 2 ** 30
    from bindiff.tasks.recommendation.baselines.ease import check_ease_fits
    from bindiff.adapters.errors import DataError

    with pytest.raises(DataError, match="this machine has 8 GiB"):
        check_ease_fits(20_000)  # 4.5 × 8 × 20,000² bytes = 13.4 GiB


def test_output_redirected_in_a_cp1252_locale_is_written_as_utf8(tmp_path):
    import nibabel as nib

    mask = np.zeros((8, 8, 8), np.uint8)
    mask[2:5, 2:5, 2:5] = 1
    for folder in ("pred", "ref"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(mask, np.eye(4)), str(tmp_path / folder / "東京.nii.gz"))
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}  # Windows' encoding for redirected output
    done = subprocess.run([sys.executable, "-m", "bindiff", "score", str(tmp_path / "pred"), str(tmp_path / "ref"),
                           "--out", str(tmp_path / "s.json")], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")  # a UnicodeEncodeError after the scoring
    assert done.stdout.decode("utf-8").startswith("東京: Dice 1.0000")


@pytest.mark.parametrize("name", ["exp:1", "CON", "nul.txt", "run.", "a*b"])
def test_names_windows_cannot_create_are_refused(name, tmp_path):
    line = error_line(runner.invoke(app, ["show-config", str(RECIPE), f"name={name}"]))
    assert "name" in line and "every system can hold" in line
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", name, f"output.root={tmp_path}",
                                          f"compare.models={{{json.dumps(name)}: [model.kind=popularity]}}"]))
    assert f"the model name {name!r}" in line
    assert not any(tmp_path.iterdir())


def test_a_model_name_cannot_leave_the_comparison_folder(tmp_path):
    line = error_line(runner.invoke(app, ["compare", str(RECIPE), "--models", "../../escape",
                                          f"output.root={tmp_path / 'runs'}",
                                          'compare.models={"../../escape": [model.kind=popularity]}']))
    assert "the model name '../../escape'" in line  # its runs were written outside the comparison
    assert not (tmp_path / "runs").exists()


def test_a_case_split_written_on_windows_with_a_bom_reads_on_linux(tmp_path, monkeypatch):
    from bindiff.adapters.masks import find_dataset, load_case_split, split_cases
    from bindiff.adapters.masks.datasets import save_case_split

    data = Path(os.path.abspath(os.environ.get("BINDIFF_DATA_DIR", "../shared/data")))
    if not (data / "msd_hippocampus").is_dir():
        pytest.skip("the MSD hippocampus data set is not here")
    dataset = find_dataset("msd_hippocampus", data_dir=data)
    save_case_split(tmp_path / "cases.json", dataset, split_cases([c.case_id for c in dataset.cases], 2, 2, seed=0))
    stored = json.loads((tmp_path / "cases.json").read_text())
    root = str(dataset.root)

    def windows(path):  # C:\Users\ana\data\msd_hippocampus\labels\hippocampus_006.nii.gz
        return None if path is None else "C:\\Users\\ana\\data\\msd_hippocampus" + path[len(root):].replace("/", "\\")

    stored["cases"] = [{k: windows(v) if k in ("label", "image", "brain") else v for k, v in case.items()}
                       for case in stored["cases"]]
    assert stored["cases"][0]["label"].startswith("C:\\Users")
    (tmp_path / "cases.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(stored).encode())  # PowerShell 5's BOM
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    moved = load_case_split(tmp_path / "cases.json", data_dir=data)
    assert moved["cases"] == {c.case_id: c for c in dataset.cases}  # "label map file not found"


def test_a_run_stored_under_a_name_now_refused_still_loads_and_a_files_stem_is_checked(tmp_path):
    from bindiff.config import RecipeError, dump_recipe, load_recipe, recipe_from_text

    # a run made before the rule (its config.yaml says exp:1) is evaluated, resumed, exported as before
    text = dump_recipe(load_recipe(RECIPE)).replace("name: ml1m", "name: 'exp:1'", 1)
    assert recipe_from_text(text)["name"] == "exp:1"
    recipe = tmp_path / "aux.yaml"  # no name: in it, so the file's stem names the run
    recipe.write_text("task: recommend\n")
    with pytest.raises(RecipeError, match=r"aux.yaml: the file's name gives the run name 'aux'"):
        load_recipe(recipe)
    from bindiff.runs import create_output_dir

    config = load_recipe(RECIPE, [f"output.root={tmp_path}"])
    with pytest.raises(RecipeError, match=r"name: must be one folder name that every system can hold"):
        create_output_dir({**config, "name": "CON"})  # a config built in Python
    assert not (tmp_path / "CON").exists()


def test_ctrl_c_reaches_the_workers_on_windows(monkeypatch):
    from bindiff.training import distributed

    events = []

    class Child:
        def wait(self):
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # Ctrl-C while torchrun runs
            return 1

        def poll(self):
            return 1

        def send_signal(self, number):  # Windows' Popen.send_signal takes no SIGINT
            raise ValueError(f"Unsupported signal: {number}")

        def terminate(self):
            events.append("terminate")

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kwargs: Child())
    assert distributed.launch(2, ["train", "x.yaml"]) == 128 + signal.SIGINT
    assert events == ["terminate"]
