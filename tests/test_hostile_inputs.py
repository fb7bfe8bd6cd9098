"""Files a user downloaded or was sent, malformed on purpose or by accident: a YAML alias bomb,
headers that claim vast arrays, a checkpoint that would run code or does not fit its model, an
image header that reads its voxels from elsewhere. Each is one clear error, at once."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import torch

from bindiff.adapters.errors import DataError
from bindiff.config import RecipeError, load_recipe
from bindiff.config.recipe import recipe_from_text


def _laughs(levels: int) -> str:
    """A recipe whose denoiser.params expand to 10**levels entries through nested aliases."""
    lines = ["task: recommend", "denoiser:", "  params:", "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(_laughs(9))
    # a0 holds 1 + 10 entries, a_i 1 + 10 a_(i-1): 11, 111, ..., 1,111,111,111 for a0..a8, which sum to
    # 1,234,567,899; with params, denoiser, the whole recipe and task's value, 1,234,567,903
    with pytest.raises(RecipeError, match=r"laughs.yaml: YAML aliases expand the recipe to 1,234,567,903 entries"):
        load_recipe(bomb)
    with pytest.raises(RecipeError, match="checkpoint: YAML aliases expand"):  # a run's config.yaml, a checkpoint
        recipe_from_text(_laughs(9))
    small = tmp_path / "small.yaml"  # aliases of aliases that expand to a few hundred entries still load
    small.write_text(_laughs(2))
    params = load_recipe(small)["denoiser"]["params"]
    assert len(params["a0"]) + sum(len(inner) for inner in params["a1"]) == 10 + 100


@pytest.mark.parametrize("text, message", [
    ("denoiser:\n  params:\n    1: 3\n", "key 'denoiser.params' has a name that is not text: 1"),
    ("seed: " + "[" * 3000 + "]" * 3000 + "\n", "values nested too deeply"),
    ("seed: " + "9" * 5000 + "\n", "line 1: an integer of 5000 digits"),
])
def test_values_beyond_what_python_parses_are_one_line(tmp_path, text, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe)


@pytest.mark.parametrize("override, message", [
    ("train.threads=99999999999999999999", "key 'train.threads' must lie in 1..4096"),  # torch: an overflow traceback
    ("denoiser.members=99999999999", "key 'denoiser.members' must lie in 1..64"),  # built until memory ran out
])
def test_counts_that_would_exhaust_the_machine_are_refused(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(None, [override])


def _header_only(path, shape):
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    with open(path, "wb") as out:
        out.write(header.binaryblock + b"\0" * 4)  # the header, its extension flag, and no voxel at all


def test_a_nifti_header_claiming_a_vast_volume_is_refused_before_reading(tmp_path):
    from bindiff.adapters.masks import read_label_map

    plain = tmp_path / "huge.nii"
    _header_only(plain, (30000, 30000, 30000))
    with pytest.raises(DataError, match=r"huge.nii: its header gives shape \(30000, 30000, 30000\) "
                                        r"\(27,000,000,000,000 bytes of voxels from byte 352: 27,000,000,000,352 in "
                                        r"all\) but the file holds 352 bytes"):
        read_label_map(plain)
    import gzip  # compressed, the size is unknown until read: nibabel's allocation fails and is named
    zipped = tmp_path / "huge.nii.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(DataError, match=r"huge.nii.gz: .*\(30000, 30000, 30000\)"):
        read_label_map(zipped)


def test_a_nifti_header_nibabel_refuses_is_one_line(tmp_path):
    from bindiff.adapters.masks import read_label_map

    path = tmp_path / "bad.nii"
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[40:42] = np.int16(9).tobytes()  # dim[0] = 9: more dimensions than NIfTI has
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="bad.nii: not a readable NIfTI file"):
        read_label_map(path)


def test_an_npy_header_claiming_a_vast_array_is_one_line(tmp_path):
    from bindiff.adapters.interactions.readers import read_pairs

    path = tmp_path / "train_list.npy"
    with open(path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "<i8", "fortran_order": False, "shape": (10 ** 12, 2)})
        out.write(b"\0" * 1024)
    with pytest.raises(DataError, match="train_list.npy: not a readable .npy array"):
        read_pairs(path)


class _RunsAShell:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_a_checkpoint_that_would_run_code_is_refused_and_named(tmp_path):
    from bindiff.training.checkpoint import CheckpointError, load_checkpoint

    path = tmp_path / "best.pt"
    torch.save({"format_version": 1, "payload": _RunsAShell()}, path)
    with pytest.raises(CheckpointError, match=r"best.pt: refused: .*\(a pickled posix.system\)"):
        load_checkpoint(path)


def _itk_header(folder, name, data_file):
    folder.mkdir(parents=True, exist_ok=True)
    header = folder / name
    header.write_text("ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\n"
                      f"ElementDataFile = {data_file}\n")
    return header


def test_an_image_header_that_reads_its_voxels_from_elsewhere_is_refused(tmp_path):
    from bindiff.adapters.masks import read_label_map

    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes([0, 1, 0, 1, 0, 1, 0, 1]))
    case = tmp_path / "cases" / "a"
    for name in (str(secret), "../../secret.raw"):
        header = _itk_header(case, "x.mha", name)
        with pytest.raises(DataError, match=f"x.mha: its header reads the voxels from {name}, outside"):
            read_label_map(header)
    nrrd = case / "y.nhdr"  # a detached NRRD header the same
    nrrd.write_text(f"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: {secret}\n")
    with pytest.raises(DataError, match="y.nhdr: its header reads the voxels from"):
        read_label_map(nrrd)
    padded = case / "z.nhdr"  # the key pushed past a short read of the header by 70 KB of comments
    padded.write_text("NRRD0004\n" + "# " + "c" * 998 + "\n" * 1 + ("# " + "c" * 998 + "\n") * 69
                      + f"type: uchar\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: {secret}\n")
    with pytest.raises(DataError, match="z.nhdr: its header reads the voxels from"):
        read_label_map(padded)
    (case / "x.raw").write_bytes(secret.read_bytes())  # beside its header: read
    assert read_label_map(_itk_header(case, "x.mhd", "x.raw")).data.sum() == 4
    assert read_label_map(_itk_header(case, "w.mhd", str(case / "x.raw"))).data.sum() == 4  # named in full too
    store = tmp_path / "annex" / "KEY"  # a data file kept as a link (git-annex, DataLad): read too
    store.parent.mkdir()
    store.write_bytes(secret.read_bytes())
    (case / "y.raw").symlink_to(store)
    assert read_label_map(_itk_header(case, "y.mhd", "y.raw")).data.sum() == 4


def test_a_stored_config_with_a_vast_integer_is_one_line():
    with pytest.raises(RecipeError, match=r"run/config.yaml: line 1: an integer of 5000 digits \(at most 1000\)"):
        recipe_from_text("seed: " + "9" * 5000 + "\n", source="run/config.yaml")


def test_a_refused_schedule_parameter_names_its_key_whatever_else_is_wrong():
    from pathlib import Path

    from bindiff.training.builders import build_process

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ml100k.yaml"
    config = load_recipe(recipe, ["diffusion.loss=bogus", "diffusion.schedule_params.foo=1"])
    with pytest.raises(RecipeError, match=r"^diffusion.schedule_params: schedule 'quadratic' has no parameter"):
        build_process(config)
