"""The second reliability pass: each hostile input or failure gets one clean line (exit code 2 from
the CLI), and nothing half-made is left behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app
from bindiff.config import RecipeError
from cli_checks import error_line
from test_cli_pipeline import ratings_csv, small_args  # noqa: F401  (the fixture is reused)

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "ml100k.yaml"
DATA = Path(os.environ.get("BINDIFF_DATA_DIR", "/work/shared/data"))
runner = CliRunner()


# -- recipes ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("name: a\ntrain:\n  lr: 0.1\ntrain:\n  epochs: 2\n", "line 4: key 'train' appears twice in the same section "
                                                          "(first on line 2)"),
    ("name: a\ntrain:\n  lr: 0.1\n  lr: 0.2\n", "line 4: key 'lr' appears twice in the same section (first on line 3)"),
    ("name: a\ntrain: [1,\n", "not valid YAML at line 3, column 1"),
    ("name: !!python/object:os.system x\n", "not valid YAML at line 1, column 7: could not determine a constructor"),
    # an anchor holding an alias of itself: a value without end (a RecursionError of 3,000 lines before)
    ("denoiser:\n  params: &p\n    hidden: *p\n", "a value refers to itself through a YAML anchor"),
])
def test_bad_recipe_files_are_one_line(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    assert error_line(runner.invoke(app, ["show-config", str(path)])).startswith(f"error: {path}: {message}")


def test_a_recipe_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    assert error_line(runner.invoke(app, ["show-config", str(path)])) == \
        f"error: {path}: not UTF-8 text (byte 0xe9 at offset 9)"


@pytest.mark.parametrize("override, message", [
    ("seed=1180591620717411303424", "key 'seed' must lie in 0 .. 2**32 - 1"),
    ("train.lr=.inf", "key 'train.lr' must be a finite number, got inf"),
    ("train.lr=.nan", "key 'train.lr' must be a finite number, got nan"),
    ("diffusion.hybrid_coeff=-.inf", "key 'diffusion.hybrid_coeff' must be a finite number"),
    ("denoiser.params={a: &x [*x]}", "a value refers to itself through a YAML anchor"),
    # 800 GB of tables or weights: the allocator's traceback before
    ("diffusion.steps=100000000000", "key 'diffusion.steps' must lie in 1..100000"),
    ("denoiser.params.hidden=[100000000000]", "the model this recipe describes does not fit in memory"),
])
def test_values_beyond_limits_are_refused(override, message):
    assert message in error_line(runner.invoke(app, ["show-config", str(RECIPE), override]))


def test_an_unparsable_run_config_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: [1,\n")
    line = error_line(runner.invoke(app, ["resume", str(run)]))
    assert line.startswith(f"error: {run / 'config.yaml'}: not valid YAML at line 2")


# -- output folders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["is_a_file", "below_a_file"])
def test_an_output_root_that_cannot_hold_folders_is_refused(ratings_csv, tmp_path, where):  # noqa: F811
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    root = blocker if where == "is_a_file" else blocker / "runs"
    line = error_line(runner.invoke(app, small_args(ratings_csv, root)))
    assert line.startswith("error: output.root: cannot create the run directory")
    assert blocker.read_text() == "x"


def test_a_full_disk_before_the_first_checkpoint_leaves_nothing(ratings_csv, tmp_path, monkeypatch):  # noqa: F811
    import bindiff.tasks.base as base

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base, "fit", full)
    line = error_line(runner.invoke(app, small_args(ratings_csv, tmp_path / "runs")))
    assert "cannot write (No space left on device); removed it (no checkpoint yet)" in line
    assert list((tmp_path / "runs" / "ml1m").iterdir()) == []


def test_a_full_disk_after_a_checkpoint_keeps_the_run_for_resume(ratings_csv, tmp_path, monkeypatch):  # noqa: F811
    import bindiff.tasks.base as base

    real_fit = base.fit

    def fills_up(*args, **kwargs):
        real_fit(*args, **kwargs)  # every checkpoint written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base, "fit", fills_up)
    line = error_line(runner.invoke(app, small_args(ratings_csv, tmp_path / "runs", "train.epochs=2")))
    (run,) = (tmp_path / "runs" / "ml1m").iterdir()
    assert f"kept it: free space and continue with `bindiff resume {run}`" in line
    assert (run / "checkpoints" / "last.pt").is_file() and not (run / "metrics.json").exists()


def test_two_runs_of_one_recipe_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    import time

    from bindiff.config import load_recipe
    from bindiff.runs import create_run_dir

    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20260101-000000")
    config = load_recipe(RECIPE, [f"output.root={tmp_path}"])
    first, second = create_run_dir(config), create_run_dir(config)
    assert second == first.with_name(first.name + "-2") and (second / "config.yaml").is_file()


def test_a_run_folder_killed_while_it_was_made_is_named_as_such(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.yaml.abc123.tmp").write_text("name: x\n")
    line = error_line(runner.invoke(app, ["resume", str(run)]))
    assert "killed while its folder was being created" in line and "delete the folder" in line


def test_a_checkpoint_of_random_bytes_is_unreadable_not_pickled(tmp_path):
    from bindiff.training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "last.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as caught:
        load_checkpoint(path)
    assert "pickled" not in str(caught.value)


# -- data ---------------------------------------------------------------------------------------------------
def test_pair_ids_far_beyond_the_data_are_refused_before_allocating(tmp_path):
    from bindiff.adapters import DataError
    from bindiff.adapters.interactions import read_pairs
    from bindiff.adapters.interactions.splits import predefined_split

    pairs = np.array([[0, 0], [0, 1], [1, 10 ** 10], [2, 2]], dtype=np.int64)
    for name in ("train", "valid", "test"):
        np.save(tmp_path / f"{name}_list.npy", pairs[:2] if name != "train" else pairs)
    with pytest.raises(DataError, match=r"item id 10000000000 is far beyond the 4 distinct items"):
        predefined_split(*(read_pairs(tmp_path / f"{n}_list.npy") for n in ("train", "valid", "test")))


def _write_label(path: Path, labels: np.ndarray) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), str(path))


def test_a_bad_mask_file_is_named_before_the_split_is_counted(tmp_path):
    from bindiff.config import load_recipe
    from bindiff.tasks.masks.job import train_masks
    from bindiff.adapters import DataError

    folder = tmp_path / "masks"
    folder.mkdir()
    good = np.zeros((8, 8, 8))
    good[2:5, 2:5, 2:5] = 1
    bad = good.copy()
    bad[0, 0, 0] = 7
    _write_label(folder / "a.nii.gz", good)
    _write_label(folder / "b.nii.gz", bad)
    config = load_recipe(ROOT / "recipes" / "hippocampus_masks.yaml",
                         [f"data.dataset={folder}", "data.layout=files", "grid.shape=[8,8,8]",
                          f"output.root={tmp_path / 'runs'}"])
    with pytest.raises(DataError) as caught:
        train_masks(config)
    assert str(folder / "b.nii.gz") in str(caught.value) and "7" in str(caught.value)
    assert not (tmp_path / "runs").exists()


def test_masks_that_are_all_empty_are_refused(tmp_path):
    from bindiff.config import load_recipe
    from bindiff.tasks.masks.job import train_masks
    from bindiff.adapters import DataError

    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(6):
        _write_label(folder / f"c{i}.nii.gz", np.zeros((8, 8, 8)))
    config = load_recipe(ROOT / "recipes" / "hippocampus_masks.yaml",
                         [f"data.dataset={folder}", "data.layout=files", "grid.shape=[8,8,8]", "grid.crop=none",
                          "split.n_valid=1", "split.n_test=1", f"output.root={tmp_path / 'runs'}"])
    with pytest.raises(DataError, match="every training mask is empty"):
        train_masks(config)
    assert not (tmp_path / "runs").exists()


def test_aliases_of_aliases_are_checked_once_each(tmp_path, monkeypatch):
    """Eight levels of ten aliases each are 10^8 paths but 9 containers: the cycle check looks at
    each container's items once (walking every path took 26 s for seven levels)."""
    from bindiff.config import recipe

    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    path = tmp_path / "aliases.yaml"
    path.write_text("\n".join(lines) + "\n")
    calls = []
    checked = recipe._acyclic
    monkeypatch.setattr(recipe, "_acyclic", lambda *args: calls.append(1) or checked(*args))
    # expanded, a0 holds 2 entries and a_i 1 + 10 a_(i-1): 2 + 21 + ... + 211,111,111 = 234,567,900, and the
    # mapping 1: far beyond a recipe's size, so refused (a ninth pass: the next reading expanded them all)
    with pytest.raises(RecipeError, match="aliases.yaml: YAML aliases expand the recipe to 234,567,901 entries"):
        recipe.read_yaml_file(path)
    assert len(calls) <= 1 + 9 + 9 * 10 + 1  # the mapping, its 9 lists and their items: not 10^8
