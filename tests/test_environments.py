"""Unusual but legitimate environments: long names, `~`, a byte-order mark, a caller's numeric
locale, a closed stderr, a run evaluated from another folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bindiff.files import OutputError, atomic_path, staged_folder, write_text


def test_a_legal_long_output_name_is_written(tmp_path):
    name = "r" * 250 + ".csv"  # 254 bytes: legal; the temporary beside it must be too
    write_text(tmp_path / name, "x\n")
    assert (tmp_path / name).read_text() == "x\n"
    with staged_folder(tmp_path / ("d" * 250)) as staging:
        (staging / "f").write_text("y")
    assert (tmp_path / ("d" * 250) / "f").is_file()


def test_a_name_beyond_the_file_system_limit_is_one_line(tmp_path):
    with pytest.raises(OutputError, match="File name too long"):
        with atomic_path(tmp_path / ("r" * 300)):
            pass


def test_output_root_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
    from bindiff.config import load_recipe
    from bindiff.runs import create_output_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    out = create_output_dir(load_recipe(None, ["output.root=~/runs"]))
    assert out.is_relative_to(tmp_path / "home" / "runs") and not (tmp_path / "~").exists()


def test_item_lists_with_a_byte_order_mark(tmp_path):
    from bindiff.adapters.interactions.readers import read_item_lists

    (tmp_path / "a.txt").write_text("0 1 2\n1 2\n")
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbf0 1 2\r\n1 2\r\n")
    a, b = read_item_lists(tmp_path / "a.txt"), read_item_lists(tmp_path / "b.txt")
    assert list(a.user) == list(b.user) and list(a.item) == list(b.item)


_READ_NRRD = """
import locale, sys
import numpy as np
from bindiff.adapters.masks.io import read_label_map
locale.setlocale(locale.LC_ALL, "")  # what a Qt application does: LC_NUMERIC from the environment
assert locale.localeconv()["decimal_point"] == ",", locale.localeconv()["decimal_point"]
print(tuple(read_label_map(sys.argv[1]).geometry.spacing), locale.setlocale(locale.LC_NUMERIC))
# several threads at once: one's switch back to the comma locale must not land inside another's read
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    spacings = set(pool.map(lambda _: tuple(read_label_map(sys.argv[1]).geometry.spacing), range(400)))
print(sorted(spacings))
"""


def test_nrrd_spacing_does_not_depend_on_the_callers_numeric_locale(tmp_path):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((4, 5, 6), np.uint8))
    image.SetSpacing((1.5, 1.25, 2.5))
    sitk.WriteImage(image, str(tmp_path / "m.nrrd"))
    # a German locale of our own (the machine may have none installed): built beside the test
    (tmp_path / "loc").mkdir()
    built = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "loc" / "de_DE.UTF-8")],
                           capture_output=True) if shutil.which("localedef") else None
    if built is None or not (tmp_path / "loc" / "de_DE.UTF-8").exists():
        pytest.skip("cannot build a de_DE.UTF-8 locale here (no localedef or no locale sources)")
    env = {**os.environ, "LOCPATH": str(tmp_path / "loc"), "LC_ALL": "de_DE.UTF-8"}
    done = subprocess.run([sys.executable, "-c", _READ_NRRD, str(tmp_path / "m.nrrd")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the voxel sizes, not 1, 1, 2; and the caller's locale as it was
    assert done.stdout.split() == ["(1.5,", "1.25,", "2.5)", "de_DE.UTF-8", "[(1.5,", "1.25,", "2.5)]"], done.stdout


def test_train_with_stderr_closed_finishes(tmp_path):
    rows = "".join(f"u{u},i{(u * 7 + k) % 30}\n" for u in range(40) for k in range(8))
    (tmp_path / "d.csv").write_text("user,item\n" + rows)
    cmd = [sys.executable, "-m", "bindiff", "train", "ml100k", f"data.dataset={tmp_path / 'd.csv'}", "data.min_rating=null",
           "train.epochs=1", "train.threads=1", "split.n_valid_users=5", "split.n_test_users=5",
           "eval.metrics=[recall@10]", "eval.select=recall@10", f"output.root={tmp_path / 'runs'}"]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=None, close_fds=True,
                          preexec_fn=lambda: os.close(2), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0
    assert list((tmp_path / "runs").rglob("metrics.json"))


def test_a_relative_data_folder_is_found_again_from_another_folder(tmp_path, monkeypatch):
    """A run stores the paths of the files it read (masks and segmentation read them again to
    evaluate or resume): given as ``../shared/data`` they must still name them from elsewhere."""
    from bindiff.adapters.masks import find_dataset

    data = Path(os.environ.get("BINDIFF_DATA_DIR", "../shared/data")).absolute()
    if not (data / "msd_hippocampus").is_dir():
        pytest.skip("the MSD hippocampus data set is not here")
    monkeypatch.chdir(data.parent)
    for data_dir, dataset in ((data.name, "msd_hippocampus"), (None, str(Path(data.name) / "msd_hippocampus"))):
        monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
        case = find_dataset(dataset, data_dir=data_dir).cases[0]
        monkeypatch.chdir(tmp_path)  # another folder: the stored path still names the file
        assert case.label.is_absolute() and case.label.is_file(), case.label
        monkeypatch.chdir(data.parent)


def test_compare_prints_its_table_in_a_latin1_locale(tmp_path):
    """results.md is UTF-8 (± in its cells); reading it back in the locale's encoding failed."""
    rows = "".join(f"u{u},i{(u * 7 + k) % 30}\n" for u in range(40) for k in range(8))
    (tmp_path / "d.csv").write_text("user,item\n" + rows)
    cmd = [sys.executable, "-m", "bindiff", "compare", "ml100k", "--models", "popularity", "--seeds", "2",
           f"data.dataset={tmp_path / 'd.csv'}", "data.min_rating=null", "split.n_valid_users=5",
           "split.n_test_users=5", "eval.metrics=[recall@10]", "eval.select=recall@10",
           f"output.root={tmp_path / 'runs'}"]
    done = subprocess.run(cmd, capture_output=True, env={**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C",
                                                          "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr.decode()[-600:]
    assert "±".encode() in done.stdout


_HELP_WITHOUT_TORCH = """
import sys
from bindiff.cli import main
sys.argv = ["bindiff", "--help"]
try:
    main()
except SystemExit:
    pass
import bindiff
assert "torch" not in sys.modules, "bindiff --help imported torch"
print(bindiff.core.BernoulliProcess.__name__, bindiff.BinomialDiffusion.__name__)  # still there when asked for
"""


def test_help_does_not_import_torch():
    """`bindiff --help`, `--version` and tab completion answer in a fraction of a second (torch: 2 s)."""
    done = subprocess.run([sys.executable, "-c", _HELP_WITHOUT_TORCH], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert "Usage" in done.stdout and done.stdout.split()[-2:] == ["BernoulliProcess", "BinomialDiffusion"]


_REFUSAL_WITHOUT_TORCH = """
import sys
from bindiff.cli import main
sys.argv = ["bindiff", *sys.argv[1:]]
try:
    main()
except SystemExit as stop:
    assert stop.code == 2, stop.code
assert "torch" not in sys.modules, "a refused recipe imported torch"
"""


@pytest.mark.parametrize("args", [["train", "nope.yaml"], ["train", "ml100k", "train.lrate=1"],
                                  ["show-config", "ml100k", "train.lrate=1"]])
def test_a_refused_recipe_is_answered_without_importing_torch(args):
    """A mistyped file or key is one line in a second, not after torch's import (2 to 9 s)."""
    done = subprocess.run([sys.executable, "-c", _REFUSAL_WITHOUT_TORCH, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-800:]
    assert done.stderr.startswith("error: ")


def test_an_output_name_beyond_the_file_system_limit_is_one_line_from_evaluate_and_score(tmp_path):
    from typer.testing import CliRunner

    from bindiff.cli import app

    label = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data")) / "msd_hippocampus/labels/hippocampus_001.nii.gz"
    if not label.is_file():
        pytest.skip("the MSD hippocampus data set is not here")
    long = tmp_path / ("a" * 300 + ".json")
    for args in (["score", str(label), str(label), "--preset", "msd_hippocampus", "--out", str(long)],
                 ["evaluate", str(tmp_path), "--out", str(long)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "cannot write there (File name too long)" in result.output, result.output


_READ_WITHOUT_STDERR = """
import sys
import SimpleITK as sitk, numpy as np
from bindiff.adapters.masks import read_label_map
sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 2, 2), np.uint8)), sys.argv[1])
assert sys.stderr is None
sys.stdout.write(str(int(read_label_map(sys.argv[1]).data.sum())))
"""


def test_a_library_read_works_without_a_stderr(tmp_path):
    """bindiff inside a process started with `2>&-` (a daemon): the CLI replaces the closed stream, a
    library call must cope with it itself."""
    done = subprocess.run([sys.executable, "-c", _READ_WITHOUT_STDERR, str(tmp_path / "m.mha")],
                          stdout=subprocess.PIPE, stderr=None, preexec_fn=lambda: os.close(2), text=True)
    assert done.returncode == 0 and done.stdout == "8"


def test_a_saved_case_split_round_trips_and_follows_a_moved_data_set(tmp_path, monkeypatch):
    from bindiff.adapters.masks import find_dataset, load_case_split, split_cases
    from bindiff.adapters.masks.datasets import save_case_split

    data = Path(os.path.abspath(os.environ.get("BINDIFF_DATA_DIR", "../shared/data")))
    if not (data / "msd_hippocampus").is_dir():
        pytest.skip("the MSD hippocampus data set is not here")
    dataset = find_dataset("msd_hippocampus", data_dir=data)
    ids = [c.case_id for c in dataset.cases]
    split = split_cases(ids, 2, 2, seed=0)
    save_case_split(tmp_path / "cases.json", dataset, split)
    loaded = load_case_split(tmp_path / "cases.json")
    by_id = {c.case_id: c for c in dataset.cases}
    assert loaded["split"] == split and loaded["cases"] == by_id
    text = (tmp_path / "cases.json").read_text()
    (tmp_path / "cases.json").write_text(text.replace(str(dataset.root), "/gone/data/msd_hippocampus"))
    monkeypatch.delenv("BINDIFF_DATA_DIR", raising=False)
    moved = load_case_split(tmp_path / "cases.json", data_dir=data)
    assert moved["cases"] == by_id
