"""Review of the library-hygiene, warnings and allocator changes: tests that the earlier ones could not fail."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_importing_bindiff_calls_no_mallopt():
    """test_allocator patched keep_freed_memory after `import bindiff.allocator` had run bindiff's
    __init__: a call made at import time went unseen. Here libc's mallopt is intercepted first."""
    probe = ("import ctypes\ncalls = []\nreal = ctypes.CDLL\n"
             "class Libc:\n    def mallopt(self, parameter, value):\n"
             "        calls.append(parameter)\n        return 1\n"
             "ctypes.CDLL = lambda name, *a, **k: Libc() if name == 'libc.so.6' else real(name, *a, **k)\n"
             "import bindiff, bindiff.cli\nprint(len(calls))\n"
             "import sys\nsys.argv = ['bindiff', '--version']\n"
             "try:\n    bindiff.cli.main()\nexcept SystemExit:\n    pass\nprint(len(calls))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "0" and lines[-1] == "2", done.stdout


def test_the_trim_threshold_is_set_even_where_glibc_refuses_the_mmap_threshold(monkeypatch):
    """glibc before the cap was lifted (2.30's do_set_mmap_threshold: value <= HEAP_MAX_SIZE / 2,
    32 MB on 64-bit) returns 0 for 256 MB; the `and` then skipped the trim threshold too, and the
    command ran on glibc's defaults without a word."""
    import ctypes

    from bindiff import allocator

    calls = []

    class OldGlibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 0 if parameter == -3 and value > 32 << 20 else 1

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: OldGlibc())
    for name in [n for n in os.environ if n.startswith("MALLOC_") or n == "GLIBC_TUNABLES"]:
        monkeypatch.delenv(name)
    allocator.keep_freed_memory()
    assert (-1, allocator.TRIM_THRESHOLD) in calls, calls  # the trim threshold, whatever mmap's answer
    assert any(p == -3 and v <= 32 << 20 for p, v in calls), calls  # a threshold every glibc takes


def test_glibc_tunables_of_the_users_leave_glibc_alone(monkeypatch):
    """GLIBC_TUNABLES=glibc.malloc.* is glibc's own way to choose these thresholds (the MALLOC_*
    variables are its older aliases): mallopt afterwards overrode the user's choice."""
    import ctypes

    from bindiff import allocator

    calls = []

    class Libc:
        def mallopt(self, parameter, value):
            calls.append(parameter)
            return 1

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    for name in [n for n in os.environ if n.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
    assert allocator.keep_freed_memory() is False and calls == []


def test_the_command_prints_the_same_warning_each_time_it_is_raised(capsys):
    """warnings_as_lines promises each BindiffWarning, not once per place; Python's default action
    shows a text once per place, so without its "always" the second went unseen (no test read it)."""
    from bindiff.progress import warn, warnings_as_lines

    with warnings.catch_warnings():
        warnings.resetwarnings()  # Python's own defaults, as in a fresh process (pytest's aside)
        with warnings_as_lines():
            for _ in range(2):
                warn("the same text")
    assert capsys.readouterr().err == "warning: the same text\n" * 2


def test_an_unoriented_nifti_made_an_error_is_an_error_on_every_read(tmp_path):
    """docs/api.md: a BindiffWarning can be made an error. The unoriented-NIfTI warning marked its
    path as warned before warning: raised as an error once, the second read went on silently."""
    nib = pytest.importorskip("nibabel")
    import numpy as np

    from bindiff import BindiffWarning
    from bindiff.adapters.masks.io import read_label_map

    image = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.uint8), None)  # neither qform nor sform
    image.header.set_qform(None, code=0)
    image.header.set_sform(None, code=0)
    path = tmp_path / "unoriented.nii.gz"
    nib.save(image, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BindiffWarning)
        for _ in range(2):
            with pytest.raises(BindiffWarning, match="no orientation"):
                read_label_map(path)


def test_an_input_header_of_other_names_is_not_read_as_a_user(tmp_path):
    """A run trained without a header read --input's first row as data whenever it named no
    user/item column: `user_id,item_id` became a user 'user_id' with the item 'item_id', and the
    output held a list for it (exit 0). Before, such a file was refused naming the missing column."""
    from bindiff.adapters import DataError
    from bindiff.tasks.recommendation.serve import read_histories

    data = {"header": False, "sep": None, "user_col": 0, "item_col": 1, "rating_col": None, "min_rating": None}
    run_items = {"1", "3", "7"}
    path = tmp_path / "new.csv"
    path.write_text("user_id,item_id\nanna,1\nbob,3\n")
    with pytest.raises(DataError, match=r"new.csv:1: 'user_id','item_id' .*a header\?"):
        read_histories(path, data, items=run_items)
    # a real first row whose item is new to the run, of a user with more rows, still reads
    path.write_text("anna,99\nanna,1\nbob,3\n")
    assert read_histories(path, data, items=run_items) == (["anna", "bob"], [["99", "1"], ["3"]], 0)


@pytest.mark.parametrize("variant, patch, argv, wanted", [
    ("emphasis", "patch_emphasis", ["--weight", "4", "--kept", "0.5"], (4.0, 0.5)),
    ("multinomial", "patch_multinomial", ["--weight", "3"], (3.0,)),
])
def test_the_variants_script_patches_with_the_weights_it_is_given(monkeypatch, variant, patch, argv, wanted):
    """The trimmed test_benchmarks checks patch_emphasis/patch_multinomial themselves; the end-to-end
    runs it replaced also checked that main() hands them --weight (and --kept). Here main() runs in
    process up to its first training, which a stand-in stops."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository first
    spec = importlib.util.spec_from_file_location("ml1m_variants_review", root / "benchmarks" / "ml1m_variants.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    given = []
    monkeypatch.setattr(script, patch, lambda *args: given.append(args))

    class Stop(Exception):
        pass

    def stop(config):
        raise Stop

    monkeypatch.setattr("bindiff.tasks.recommendation.job.train_recommender", stop)
    monkeypatch.setattr(sys, "argv", ["ml1m_variants.py", variant, "--recipe", str(root / "recipes" / "ml1m.yaml"),
                                      "--seeds", "0", *argv])
    with pytest.raises(Stop):
        script.main()
    assert given == [wanted]


def test_a_data_dir_named_from_python_is_named_as_the_argument(tmp_path):
    """docs/api.md: the jobs' refusals name the Python argument; data_dir's still said --data-dir."""
    import bindiff
    from bindiff.adapters import DataError
    from bindiff.config import load_recipe

    afile = tmp_path / "a_file"
    afile.write_text("")
    config = load_recipe("hippocampus_masks", [f"output.root={tmp_path / 'runs'}"])
    with pytest.raises(DataError) as err:
        bindiff.train(config, data_dir=afile)
    assert str(err.value).startswith(f"data_dir {afile}: a file") and "--data-dir" not in str(err.value)


def test_filters_that_modules_install_during_a_command_outlive_it(monkeypatch):
    """warnings_as_lines was warnings.catch_warnings: leaving, it put back the whole filter list, so a
    filter installed during the command (torch's at its import, in a command that imported it
    first: 'torch::jit::fuser::cuda', TracerWarning) was gone for the rest of the process."""
    from typer.testing import CliRunner

    import bindiff.plugins
    from bindiff.cli import app

    def plugin_import():  # as a module imported during the command does at its import
        warnings.filterwarnings("ignore", message="aud_rev: a library's own filter")
        return []

    monkeypatch.setattr(warnings, "filters", list(warnings.filters))  # the test's filters put back after
    monkeypatch.setattr(bindiff.plugins, "load_plugins", plugin_import)
    shown_before = warnings.showwarning
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    assert any(f[1] is not None and f[1].pattern == "aud_rev: a library's own filter" for f in warnings.filters)
    assert not any(f[0] == "always" and f[2].__name__ == "BindiffWarning" for f in warnings.filters)
    assert warnings.showwarning is shown_before


def test_times_given_as_a_list_or_as_booleans():
    """logits(x, [1, 3, 5]) raised a bare TypeError where forward and the losses take the list; a bool
    tensor passed for the times was read as times 0 and 1."""
    import torch

    from bindiff import BernoulliProcess, BinomialDiffusion, MLPDenoiser

    torch.manual_seed(0)
    model = BinomialDiffusion(MLPDenoiser(6, hidden=[8], time_dim=4), BernoulliProcess.from_schedule("linear", 5))
    x = (torch.rand(3, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    rows = torch.cat([model.logits(x[i:i + 1], t) for i, t in enumerate((1, 3, 5))])
    torch.testing.assert_close(model.logits(x, [1, 3, 5]), rows, rtol=0, atol=1e-6)  # a batch of 3 vs rows of 1
    with pytest.raises(ValueError, match="time steps are integers, got booleans"):
        model.logits(x, torch.tensor([True, True, True]))
    with pytest.raises(ValueError, match="booleans"):
        model(x, t=torch.tensor([True, False, True]))


def test_under_torchrun_only_the_first_process_prints_a_warning(monkeypatch, capsys):
    """Each worker of `--nproc 2` reads the same data and warned alike: every warning came twice."""
    from bindiff.progress import warn, warnings_as_lines

    for rank, lines in (("1", ""), ("0", "warning: the same data, read by every worker\n")):
        monkeypatch.setenv("RANK", rank)
        with warnings_as_lines():
            warn("the same data, read by every worker")
        assert capsys.readouterr().err == lines
