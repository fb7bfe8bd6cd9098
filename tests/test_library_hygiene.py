"""bindiff imported into someone else's Python process: a refusal names the Python argument the
caller passed (``seeds``, not the command's ``--seeds``), a one-string ``overrides`` is refused as
such by every entry point, numpy integers count as the integers they are, a job given another
task's recipe says so, the model's ``logits`` take one time per row as the rest of the core does,
and a process's config holds plain numbers. Each test is well under a second: no training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import bindiff
from bindiff import BernoulliProcess, BinomialDiffusion, MLPDenoiser, get_schedule
from bindiff.adapters import DataError
from bindiff.config import RecipeError, load_recipe
from bindiff.core import diffusion_loss, vb_terms


def _no_flag(err: BaseException, name: str) -> None:
    """The message names the Python argument ``name`` and no command-line option."""
    text = str(err)
    assert not re.search(r"(^|\s)--[a-z]", text), text
    assert re.search(rf"\b{name}\b", text), text


def _ratings(tmp_path: Path) -> Path:
    """A file whose third line no CSV reader takes: the work stops at its first read of the data."""
    path = tmp_path / "ratings.csv"
    path.write_text('user,item,rating\nu1,i1,5\nu1,"i2,5\n')
    return path


# -- refusals name the Python argument --------------------------------------------------------------
@pytest.mark.parametrize("call", ["evaluate_run", "load_run", "load_masks_run"])
def test_a_bad_checkpoint_name_is_named_as_the_argument(tmp_path, call):
    (tmp_path / "config.yaml").touch()  # read_run checks the name before it reads anything else
    with pytest.raises(RecipeError) as err:
        getattr(bindiff, call)(tmp_path, checkpoint="../x")
    _no_flag(err.value, "checkpoint")


@pytest.mark.parametrize("kwargs, name", [
    ({"models": "popularity", "seeds": 0}, "seeds"),
    ({"models": "popularity,popularity"}, "models"),
    ({"models": "popularity", "tune_trials": 0}, "tune_trials"),
    ({"models": "popularity", "tune_trials": 2}, "tune_trials"),  # no space to search for popularity
])
def test_run_comparison_names_its_arguments(tmp_path, kwargs, name):
    with pytest.raises(RecipeError) as err:
        bindiff.run_comparison("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"], **kwargs)
    _no_flag(err.value, name)
    assert not (tmp_path / "compare").exists()


def test_run_tuning_names_trials(tmp_path):
    with pytest.raises(RecipeError) as err:
        bindiff.run_tuning("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"], trials=0)
    _no_flag(err.value, "trials")


def test_labels_to_score_and_apply_run_name_their_arguments(tmp_path):
    with pytest.raises(RecipeError) as err:
        bindiff.labels_to_score(run=tmp_path, preset="msd_hippocampus")
    _no_flag(err.value, "preset")
    with pytest.raises(RecipeError) as err:
        bindiff.apply_run(tmp_path, "completion", tmp_path / "x.nii.gz", tmp_path / "out")
    _no_flag(err.value, "unknown_label")
    with pytest.raises(RecipeError) as err:
        bindiff.apply_run(tmp_path, "completion", tmp_path / "x.nii.gz", tmp_path / "out", unknown_label=0)
    _no_flag(err.value, "unknown_label")
    with pytest.raises(FileExistsError) as err:
        bindiff.score(tmp_path, tmp_path, out=tmp_path)
    _no_flag(err.value, "out")


# -- counts given as numpy integers, or not as integers -----------------------------------------------
def test_numpy_seeds_count_as_the_integer_they_are(tmp_path):
    """``seeds=np.int64(1)`` went into recipe.yaml as it was: yaml's RepresenterError traceback. As an
    int, the comparison goes on to read the data, whose own error stops it."""
    with pytest.raises(DataError, match="ratings.csv:3"):
        bindiff.run_comparison("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"],
                               models="popularity", seeds=np.int64(1))
    with pytest.raises(TypeError, match=r"\bseeds\b"):
        bindiff.run_comparison("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"],
                               models="popularity", seeds=1.5)


def test_numpy_trials_count_as_the_integer_they_are(tmp_path):
    with pytest.raises(DataError, match="ratings.csv:3"):
        bindiff.run_tuning("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"],
                           trials=np.int64(1), space={"train.lr": {"float": [0.001, 0.01]}})
    with pytest.raises(TypeError, match=r"\btrials\b"):
        bindiff.run_tuning("ml1m", [f"data.dataset={_ratings(tmp_path)}", f"output.root={tmp_path}"], trials=1.5)


# -- one string where a list of overrides is meant -------------------------------------------------------
def test_one_string_of_overrides_is_refused_by_load_recipe_and_train(tmp_path):
    """Read letter by letter, it was "override 't' is not of the form key=value", as run_tuning,
    run_comparison and the rescoring jobs no longer say."""
    with pytest.raises(TypeError, match="not one string"):
        load_recipe("ml1m", "train.epochs=3")
    config = load_recipe("ml1m", [f"output.root={tmp_path}"])
    for train in (bindiff.train, bindiff.train_recommender):
        with pytest.raises(TypeError, match="not one string"):
            train(config, "train.epochs=3")
    assert list(tmp_path.iterdir()) == []


# -- a task's job given another task's recipe ----------------------------------------------------------
@pytest.mark.parametrize("job, recipe", [("train_recommender", "hippocampus_masks"), ("train_masks", "ml1m"),
                                         ("train_segmentation", "hippocampus_masks")])
def test_a_tasks_job_refuses_another_tasks_recipe_by_name(tmp_path, job, recipe):
    config = load_recipe(recipe, [f"output.root={tmp_path}"])
    with pytest.raises(RecipeError, match=rf"task.*{config['task']}"):  # a KeyError ('model', 'labels') before
        getattr(bindiff, job)(config)
    assert list(tmp_path.iterdir()) == []


# -- one time per row, as docs/api.md's conventions say ------------------------------------------------------
def _model() -> BinomialDiffusion:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return BinomialDiffusion(MLPDenoiser(6, hidden=[8], time_dim=4), BernoulliProcess(get_schedule("jsd", 5))).eval()


def test_logits_and_predict_x0_take_one_time_per_row():
    model, x = _model(), torch.tensor([[1., 0, 1, 0, 1, 1], [0, 0, 1, 1, 0, 1], [1, 1, 1, 0, 0, 0]])
    t = torch.tensor([1, 3, 5])
    rows = torch.cat([model.logits(x[i:i + 1], int(t[i])) for i in range(3)])  # one call per row
    for given in (t, t[:, None], t.numpy()):
        assert torch.allclose(model.logits(x, given), rows)
        assert torch.allclose(model.predict_x0(x, given), torch.sigmoid(rows))
    with pytest.raises(ValueError, match=r"^t: "):
        model.logits(x, t[None, :])  # (1, B): refused naming t
    with pytest.raises(ValueError, match=r"^t: "):
        model.logits(x, torch.tensor([1, 2]))


def test_a_column_of_times_counts_as_one_per_row_in_the_losses():
    """``t[:, None]`` counts as (B,) (docs/api.md): the process took it, the losses refused it."""
    model = _model()
    process, x0 = model.process, torch.tensor([[1., 0, 1, 0, 1, 1], [0, 0, 1, 1, 0, 1]])
    t, logits = torch.tensor([2, 4]), torch.tensor([[0.5, -1, 2, 0, 1, -2], [1.5, 0, -1, 1, 0, 2]])
    x_t = torch.tensor([[1., 1, 0, 0, 1, 0], [0, 1, 1, 0, 0, 1]])
    assert torch.equal(vb_terms(process, x0, x_t, t[:, None], logits), vb_terms(process, x0, x_t, t, logits))
    assert torch.equal(diffusion_loss("hybrid", process, x0, x_t, t[:, None], logits)["loss"],
                       diffusion_loss("hybrid", process, x0, x_t, t, logits)["loss"])
    noise = torch.rand(2, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x0, t=t[:, None], noise=noise).loss, model(x0, t=t, noise=noise).loss)


# -- a process's config is plain data ------------------------------------------------------------------------
def test_a_process_config_of_numpy_parameters_holds_plain_numbers():
    process = BernoulliProcess.from_schedule("cosine", 10, offset=np.float64(0.01), max_beta=np.float32(0.5))
    config = process.to_config()
    assert type(config["offset"]) is float and type(config["max_beta"]) is float
    assert json.loads(json.dumps(config)) == config
    again = BernoulliProcess.from_config(yaml.safe_load(yaml.safe_dump(config)))
    assert torch.equal(again.betas, get_schedule("cosine", 10, offset=0.01, max_beta=float(np.float32(0.5))))


# -- a reader's bad separator -------------------------------------------------------------------------------
def test_read_delimited_names_a_separator_longer_than_one_character(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user,item\nu1,i1\n")
    with pytest.raises(ValueError, match=r"\bsep\b"):  # csv's TypeError: "delimiter" must be a 1-character string
        bindiff.read_delimited(path, sep=",,")


def test_a_command_line_of_ones_own_is_told_the_python_argument(tmp_path):
    """Only bindiff's own commands name their options: a typer app of one's own that calls bindiff has
    no --checkpoint, and bindiff's command does."""
    import typer
    from typer.testing import CliRunner

    from bindiff.cli import app as bindiff_app

    (tmp_path / "config.yaml").write_text("task: recommend\n")  # an empty one is a damaged run, refused first
    mine = typer.Typer()

    @mine.command()
    def evaluate(run: str) -> None:
        bindiff.evaluate_run(run, checkpoint="../x")

    said = CliRunner().invoke(mine, [str(tmp_path)])
    assert isinstance(said.exception, RecipeError) and str(said.exception).startswith("checkpoint must be best or last")
    said = CliRunner().invoke(bindiff_app, ["evaluate", str(tmp_path), "--checkpoint", "../x"])
    assert said.exit_code == 2 and "error: --checkpoint must be best or last" in said.output, said.output


# -- warnings are Python warnings; the command prints each as one line ----------------------------------------
def test_a_warning_is_one_a_caller_can_catch_or_make_an_error_and_the_command_prints_it_as_a_line(tmp_path):
    """bindiff's warnings went straight to stderr: a notebook could neither silence nor catch them."""
    import warnings

    from typer.testing import CliRunner

    from bindiff import BindiffWarning
    from bindiff.adapters import read_delimited
    from bindiff.cli import app

    path = tmp_path / "reviews.csv"  # line 3 opens a quote that line 5 closes: u2 and u3 are review text
    path.write_text('user,item,review\nu0,i0,fine\nu1,i1,"good\nu2,i2,ok\nu3,i3,bad"\nu5,i5,x\n', encoding="utf-8")
    with pytest.warns(BindiffWarning, match=r"reviews.csv:3: a quoted field runs over lines 3-5"):
        assert read_delimited(path).user.tolist() == ["u0", "u1", "u5"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", BindiffWarning)
        with pytest.raises(BindiffWarning):
            read_delimited(path)
    # the command: one line, "warning: ...", and the caller's warning settings as they were afterwards
    shown_before, filters_before = warnings.showwarning, list(warnings.filters)
    result = CliRunner().invoke(app, ["train", "ml100k", f"data.dataset={path}", "data.min_rating=null",
                                      "split.n_valid_users=1", "split.n_test_users=1", f"output.root={tmp_path}"])
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert lines == [f"warning: {path}:3: a quoted field runs over lines 3-5 and holds 2 lines that look like rows "
                     "of this file; they were read as that field's text, not as interactions (is a quote left open?)"]
    # the caller's filters still there, bindiff's own gone (filters that modules imported during the
    # command installed, sympy's through torch, stay: warnings.catch_warnings dropped them)
    assert warnings.showwarning is shown_before and all(f in warnings.filters for f in filters_before)
    assert not any(f[2] is BindiffWarning and f[0] == "always" for f in warnings.filters if f not in filters_before)
