"""Bad input ends with one message naming the file (and line or key), exit code 2, no traceback,
and nothing written: one test per kind of bad input, through the CLI."""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bindiff.cli import app

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"
runner = CliRunner()

# 59 users x 14 items, ratings 1-5: enough to split 5 + 5 users off and train.
GOOD_DAT = "".join(f"{u}::{i}::{(u + i) % 5 + 1}::9783007{u:02d}\n" for u in range(1, 60) for i in range(1, 15))


def small(root: Path, *extra: str) -> list[str]:
    # a predefined split never reads split.n_test_users: overriding it is refused
    users = [] if "split.kind=predefined" in extra else ["split.n_valid_users=5", "split.n_test_users=5"]
    return ["data.min_rating=4", *users, "denoiser.params.hidden=[8]",
            "train.epochs=1", "eval.metrics=[recall@5]", "eval.select=recall@5", f"output.root={root}",
            "output.progress=false", *extra]


def expect_clean_failure(args: list[str], root: Path, *fragments: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # handled, not an uncaught exception
    output = result.output
    assert output.startswith("error: ") and "Traceback" not in output
    for fragment in fragments:
        assert fragment in output, (fragment, output)
    assert not root.exists(), "a run directory was created"
    return output


def train_on(tmp_path: Path, dataset: Path | str, *extra: str) -> tuple[list[str], Path]:
    root = tmp_path / "runs"
    return ["train", str(RECIPE), f"data.dataset={dataset}", *small(root, *extra)], root


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# --- ratings files --------------------------------------------------------------------------


def test_malformed_line_in_a_ratings_file_names_the_line(tmp_path):
    bad = write(tmp_path / "ratings.dat", GOOD_DAT + "7::3::4\n")
    args, root = train_on(tmp_path, bad)
    line = GOOD_DAT.count("\n") + 1
    expect_clean_failure(args, root, f"ratings.dat:{line}: expected 4 fields", "found 3: '7::3::4'")


def test_malformed_row_in_a_csv_names_the_line(tmp_path):
    bad = write(tmp_path / "log.csv", "user,item,rating\nu1,i1,5\nu2\n")
    args, root = train_on(tmp_path, bad, "data.rating_col=rating")
    expect_clean_failure(args, root, "log.csv:3: expected at least 3 fields", "'u2'")


def test_wrong_delimiter_in_a_movielens_file(tmp_path):
    bad = write(tmp_path / "ratings.dat", "1,2,5,978300760\n")
    args, root = train_on(tmp_path, bad)
    expect_clean_failure(args, root, "ratings.dat:1: expected fields separated by '::'", "looks comma-separated")


def test_wrong_delimiter_in_a_csv(tmp_path):
    bad = write(tmp_path / "log.csv", "user;item;rating\nu1;i1;5\n")
    args, root = train_on(tmp_path, bad, "data.rating_col=rating")
    expect_clean_failure(args, root, "log.csv: column 'user' (user_col) not found",
                         "the header looks semicolon-separated: set data.sep")


def test_non_numeric_rating_names_the_line(tmp_path):
    bad = write(tmp_path / "log.csv", "user,item,rating\nu1,i1,5\nu2,i2,five\n")
    args, root = train_on(tmp_path, bad, "data.rating_col=rating")
    expect_clean_failure(args, root, "log.csv:3: rating 'five' is not a number")
    bad = write(tmp_path / "ratings.dat", "1::2::5::978300760\n1::3::nan::978300761\n")
    args, root = train_on(tmp_path, bad)
    expect_clean_failure(args, root, "ratings.dat:2: rating 'nan' is not a finite number")


@pytest.mark.parametrize("name, text, message", [
    ("ratings.dat", "", "ratings.dat: file is empty"),
    ("ratings.dat", "\n\n", "ratings.dat: file is empty"),
    ("log.csv", "", "log.csv: file is empty (no header row)"),
    ("log.csv", "user,item,rating\n", "log.csv: file has no data rows"),
])
def test_empty_file(tmp_path, name, text, message):
    # a .dat file is read as MovieLens's, whose format has no column keys (refused there)
    columns = ["data.rating_col=rating"] if name.endswith(".csv") else []
    args, root = train_on(tmp_path, write(tmp_path / name, text), *columns)
    expect_clean_failure(args, root, message)


def test_missing_file(tmp_path):
    args, root = train_on(tmp_path, tmp_path / "nope.dat")
    expect_clean_failure(args, root, "nope.dat: not a known dataset", "no such file")


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "flipped header byte", "not gzip"])
def test_corrupt_gzip(tmp_path, damage):
    data = bytearray(gzip.compress(GOOD_DAT.encode()))
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped byte":
        data[len(data) // 2] ^= 0xFF  # caught by the CRC or the deflate decoder
    elif damage == "flipped header byte":
        data[12] ^= 0xFF  # inside the deflate block header: zlib.error
    else:
        data = bytearray(b"plain text, not gzip")
    args, root = train_on(tmp_path, write(tmp_path / "ratings.dat.gz", bytes(data)))
    expect_clean_failure(args, root, "ratings.dat.gz: cannot read")


# --- pair files and splits ------------------------------------------------------------------


def pair_folder(tmp_path: Path, valid: list, test: list) -> Path:
    folder = tmp_path / "pairs"
    folder.mkdir()
    np.save(folder / "train_list.npy", np.array([[0, 0], [1, 1], [2, 2], [0, 1], [1, 2], [2, 0]]))
    np.save(folder / "valid_list.npy", np.array(valid))
    np.save(folder / "test_list.npy", np.array(test))
    return folder


@pytest.mark.parametrize("valid, test, message", [
    ([[0, 2], [9, 1]], [[1, 0]], "valid_list.npy: user id 9 is outside the train file's users 0..2 (row 1)"),
    ([[0, 2]], [[1, 0], [2, 1], [1, 7]], "test_list.npy: item id 7 is outside the train file's items 0..2 (row 2)"),
    ([[0, 2]], [[1, -1]], "test_list.npy: row 0 holds a negative id [1, -1]"),
])
def test_ids_out_of_range_in_pair_files(tmp_path, valid, test, message):
    folder = pair_folder(tmp_path, valid, test)
    args, root = train_on(tmp_path, folder, "split.kind=predefined", "data.min_rating=null", "eval.metrics=[recall@1]",
                          "eval.select=recall@1")
    expect_clean_failure(args, root, message)


@pytest.mark.parametrize("extra, message", [
    (["data.min_rating=6"], "ratings.dat: no interactions left after keeping ratings >= 6 (ratings range from 1 to 5)"),
    (["data.k_core=100"], "ratings.dat: k_core=100 removed every user and item"),
])
def test_empty_matrix_after_filtering(tmp_path, extra, message):
    args, root = train_on(tmp_path, write(tmp_path / "ratings.dat", GOOD_DAT), *extra)
    expect_clean_failure(args, root, message)


@pytest.mark.parametrize("extra, message", [
    (["split.n_valid_users=0"], "key 'split.n_valid_users' must be >= 1, got 0"),
    (["split.n_valid_users=30", "split.n_test_users=29"], "n_valid_users + n_test_users = 59 leaves no train users"),
    (["split.min_items_to_split=100"], "ratings.dat: the valid split has no user with a held-out item to score"),
])
def test_split_with_no_users(tmp_path, extra, message):
    args, root = train_on(tmp_path, write(tmp_path / "ratings.dat", GOOD_DAT), *extra)
    expect_clean_failure(args, root, message)


# --- recipes --------------------------------------------------------------------------------


def recipe_file(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "bad.yaml", text)


@pytest.mark.parametrize("text, message", [
    ("train:\n  lrate: 0.1\n", "bad.yaml: unknown key 'train.lrate' (did you mean 'train.lr'?). Valid keys: train.optimizer, train.lr"),
    ("trian:\n  lr: 0.1\n", "bad.yaml: unknown key 'trian'"),
    ("train:\n  lr: fast\n", "bad.yaml: key 'train.lr' must be of type number, got 'fast'"),
    ("train:\n  epochs: 2.5\n", "bad.yaml: key 'train.epochs' must be of type integer, got 2.5"),
    ("train:\n  lr: -0.001\n", "bad.yaml: key 'train.lr' must be > 0, got -0.001"),
    ("diffusion:\n  steps: 0\n", "bad.yaml: key 'diffusion.steps' must lie in 1..100000"),
    ("diffusion:\n  schedule_params: {beta_start: 0.1, beta_end: 1.5}\n", "outside (0, 1]"),
    ("train: [1, 2]\n", "bad.yaml: section 'train' must be a mapping"),
    ("train:\n  lr: [0.1\n", "bad.yaml: not valid YAML"),
    ("- just\n- a list\n", "bad.yaml: a recipe must be a mapping"),
    ("", "bad.yaml: recipe is empty"),
])
def test_bad_recipe_file(tmp_path, text, message):
    root = tmp_path / "runs"
    data = write(tmp_path / "ratings.dat", GOOD_DAT)
    args = ["train", str(recipe_file(tmp_path, text)), f"data.dataset={data}", *small(root)]
    expect_clean_failure(args, root, message)


@pytest.mark.parametrize("override, message", [
    ("train.lrate=0.1", "override 'train.lrate=0.1': unknown key 'train.lrate'"),
    ("train.lr=abc", "override 'train.lr=abc': key 'train.lr' must be of type number"),
    ("train.lr=-1", "key 'train.lr' must be > 0"),
    ("diffusion.steps=0", "key 'diffusion.steps' must lie in 1..100000"),
    ("diffusion.schedule_params.beta_end=1.5",
     "diffusion.schedule_params: schedule 'quadratic': parameter 'beta_end' = 1.5 is outside (0, 1]"),
    ("diffusion.kernel=sideways", "diffusion.kernel: unknown kernel 'sideways'"),
    ("diffusion.loss=mse", "diffusion.loss: unknown loss 'mse'"),
    ("train.batch_size=true", "key 'train.batch_size' must be of type integer, got True"),
    ("train.epochs", "override 'train.epochs' is not of the form key=value"),
])
def test_bad_override(tmp_path, override, message):
    args, root = train_on(tmp_path, write(tmp_path / "ratings.dat", GOOD_DAT), override)
    expect_clean_failure(args, root, message)


def test_missing_recipe_file(tmp_path):
    root = tmp_path / "runs"
    expect_clean_failure(["train", str(tmp_path / "nope.yaml"), *small(root)], root, "nope.yaml: recipe file not found")


# --- the real command: one line on stderr, exit code 2 -------------------------------------


def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    bad = write(tmp_path / "ratings.dat", "1::2::5::978300760\n1::3::4\n")
    root = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "bindiff", "train", str(RECIPE), f"data.dataset={bad}",
                           *small(root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"error: {bad}:2: expected 4 fields separated by '::' "
                                        "(UserID::MovieID::Rating::Timestamp), found 3: '1::3::4'"]
    assert not root.exists()


def test_usage_errors_are_one_line_too():
    for args, line in ((["train"], "error: bindiff train: Missing argument 'recipe'. (see bindiff train --help)"),
                       (["recommend", "run", "--k", "0"], "error: bindiff recommend: Invalid value for '--k': Input "
                        "should be greater than or equal to 1 (see bindiff recommend --help)"),
                       (["train", "ml1m", "--bogus"], "error: bindiff train: No such option: --bogus "
                        "(see bindiff train --help)"),
                       (["nosuch"], "error: bindiff: No such command 'nosuch'. (see bindiff --help)")):
        proc = subprocess.run([sys.executable, "-m", "bindiff", *args], capture_output=True, text=True, timeout=120)
        assert (proc.returncode, proc.stdout, proc.stderr.splitlines()) == (2, "", [line]), args
    version = subprocess.run([sys.executable, "-m", "bindiff", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("bindiff ")


def test_a_bug_keeps_its_own_traceback(monkeypatch):
    from bindiff import cli
    from bindiff.config import recipe

    def broken():
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(recipe, "shipped_recipes", broken)
    monkeypatch.setattr(sys, "argv", ["bindiff", "recipes"])
    with pytest.raises(ZeroDivisionError, match="a bug"):  # not an error line, not another exception
        cli.main()


# --- masks: `bindiff train` on a `task: masks` recipe -----------------------------------------

MASKS_RECIPE = RECIPE.parent / "hippocampus_masks.yaml"


def mask_folder(root: Path, damage: str) -> Path:
    """An MSD-style folder of six 8x8x8 cases; case2 carries the damage."""
    import nibabel as nib

    (root / "labels").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(6):
        label = np.zeros((8, 8, 8), np.uint8)
        label[2:5, 2:6, 3:6], label[3, 3, 3] = 1, 2
        image = np.zeros((8, 8, 8), np.float32)
        if i == 2 and damage == "unexpected label":
            label[1, 1, 1] = 7
        elif i == 2 and damage == "non-integer":
            label = label.astype(np.float32)
            label[1, 1, 1] = 0.5
        elif i == 2 and damage == "4-D":
            label = np.stack([label, label], axis=-1)
        elif i == 2 and damage == "shape mismatch":
            image = np.zeros((8, 8, 9), np.float32)
        nib.save(nib.Nifti1Image(label, np.eye(4)), str(root / "labels" / f"case{i}.nii.gz"))
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "images" / f"case{i}.nii.gz"))
    path = root / "labels" / "case2.nii.gz"
    data = bytearray(path.read_bytes())
    if damage == "truncated gzip":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "corrupt gzip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    return root


@pytest.mark.parametrize("damage, where, message", [
    ("unexpected label", "labels/case2.nii.gz", "unexpected label value(s) 7 for preset 'msd_hippocampus', which "
     "allows 0, 1, 2; a recipe for another label set names it: labels.preset=custom with labels.allowed and "
     "labels.foreground"),
    ("non-integer", "labels/case2.nii.gz", "label map holds non-integer values (0.5)"),
    ("4-D", "labels/case2.nii.gz", "expected a 3-D label map, got an array of shape (8, 8, 8, 2)"),
    ("shape mismatch", "images/case2.nii.gz", "image has shape (8, 8, 9) but its label map"),
    ("truncated gzip", "labels/case2.nii.gz", "not a readable NIfTI file (corrupt or truncated?)"),
    ("corrupt gzip", "labels/case2.nii.gz", "not a readable NIfTI file (corrupt or truncated?)"),
])
def test_bad_masks(tmp_path, damage, where, message):
    pytest.importorskip("nibabel")
    if not MASKS_RECIPE.is_file():
        pytest.skip("no masks recipe")
    folder = mask_folder(tmp_path / "masks", damage)
    root = tmp_path / "runs"
    args = ["train", str(MASKS_RECIPE), f"data.dataset={folder}", "grid.shape=[8,8,8]", "split.n_valid=1",
            "split.n_test=1", "train.epochs=1", f"output.root={root}", "output.progress=false"]
    expect_clean_failure(args, root, f"{folder / where}: {message}")


@pytest.mark.parametrize("override, shown", [("data.user_col=uid", "data.user_col='uid'"),
                                             ("data.sep=;", "data.sep=';'"), ("data.header=false", "data.header=False"),
                                             ("data.rating_col=stars", "data.rating_col='stars'")])
def test_a_delimited_file_key_on_a_dataset_of_its_own_format_is_refused(tmp_path, override, shown):
    """It was accepted and changed nothing: the synthetic data (as ML-1M's or ML-100K's files) have
    their own format."""
    args, root = train_on(tmp_path, "synthetic:tiny", override)
    expect_clean_failure(args, root, f"error: {shown} applies to a delimited file (.csv, .tsv) only; dataset "
                         "'synthetic:tiny' (layout 'synthetic') is read in its own format: leave it out")


def test_a_missing_file_the_system_reports_is_a_bug_with_its_traceback(tmp_path, monkeypatch):
    """FileNotFoundError is also how bindiff refuses a path (a message alone); one the OS raised,
    with an errno, from deep inside a command is a bug: it was printed as one line, exit 2."""
    from bindiff.tasks import registry

    def opens_a_missing_file(*args, **kwargs):
        open(tmp_path / "no-such-folder" / "curve.png", "rb")

    monkeypatch.setattr(registry, "train", opens_a_missing_file)
    result = runner.invoke(app, ["train", str(RECIPE), "data.dataset=synthetic:tiny", f"output.root={tmp_path}"])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)
    assert not result.output.startswith("error: ")


@pytest.mark.parametrize("recipe", ["ml100k", "hippocampus_masks"])
def test_a_data_dir_that_is_a_file_is_refused_in_one_line(tmp_path, recipe):
    """It was searched as a folder, a download tried, and the help said the variable was unset."""
    a_file = tmp_path / "ratings.csv"
    a_file.write_text("user,item\n1,2\n")
    result = runner.invoke(app, ["train", str(RECIPE.parent / f"{recipe}.yaml"), f"output.root={tmp_path / 'runs'}",
                                 "--data-dir", str(a_file)])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: --data-dir {a_file}: a file, not a folder; give the folder that holds the data sets")
    assert not (tmp_path / "runs").exists()


def test_an_unknown_region_names_the_key():
    result = runner.invoke(app, ["train", str(RECIPE.parent / "hippocampus_masks.yaml"), "labels.region=foo"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: labels.region: label preset 'msd_hippocampus' has no region 'foo'; "
                                     "it has whole, anterior, posterior")
