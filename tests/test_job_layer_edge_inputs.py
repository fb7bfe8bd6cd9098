"""The job layer called as a library with edge inputs (numpy scalars and 0-d values where a number is
meant, booleans, None, text, a path where a mapping is meant, duplicates, existing outputs): each
refusal names the argument in one line before anything is read or written, and nothing the caller
already has is overwritten. Each test is well under a second: no training (a run directory is made
from an untrained model's checkpoint where one is needed)."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import bindiff
from bindiff.adapters import DataError
from bindiff.config import RecipeError, dump_recipe, load_recipe
from bindiff.config.keys import key
from bindiff.tasks import base, registry
from bindiff.tasks.recommendation import job, models
from bindiff.tasks.recommendation.evaluation import write_per_user_csv
from bindiff.tasks.recommendation.models import RecommenderKind, build_model, make_scorer, register_model
from bindiff.training.checkpoint import save_checkpoint
from bindiff.training.optim import WarmupClip

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


def _python_names(err: BaseException, name: str) -> None:
    """The message names the Python argument ``name`` and no command-line option."""
    text = str(err)
    assert re.search(rf"\b{name}\b", text), text
    assert not re.search(r"(^|\s|\()--[a-z]", text), text


def _config(*extra: str) -> dict:
    return load_recipe(RECIPE, ["denoiser.params.hidden=[8]", "output.progress=false", *extra])


def _untrained_run(tmp_path: Path, dim: int = 6) -> Path:
    """A recommendation run directory holding an untrained model's best.pt (enough for load_trained)."""
    config = _config()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_recipe(config))
    save_checkpoint(run / "checkpoints" / "best.pt", config_yaml=dump_recipe(config), model=build_model(config, dim),
                    dim=dim, epoch=1, best={"metric": "ndcg@20", "value": 0.0, "epoch": 1})
    return run


# -- outputs the caller already has are never overwritten ------------------------------------------------------
def test_evaluate_run_refuses_an_existing_per_user_csv_before_reading_the_run(tmp_path):
    # it was overwritten after scoring, whatever it was: a run's own metrics.json became a CSV
    metrics = tmp_path / "metrics.json"
    metrics.write_text('{"test": {}}\n')
    with pytest.raises(FileExistsError) as err:
        bindiff.evaluate_run(tmp_path / "not-read", per_user_csv=metrics)
    _python_names(err.value, "per_user_csv")
    assert metrics.read_text() == '{"test": {}}\n'
    with pytest.raises(ValueError) as err:  # a folder path through a file: said before the scoring, not after
        bindiff.evaluate_run(tmp_path / "not-read", per_user_csv=metrics / "users.csv")
    _python_names(err.value, "per_user_csv")


def test_the_per_user_csv_of_evaluate_run_is_written_without_overwriting(tmp_path):
    from bindiff.metrics.ranking import RankingReport

    path = tmp_path / "users.csv"
    path.write_text("another process's\n")
    empty = RankingReport(metrics=["recall@5"], mean={"recall@5": 0.5}, per_user={"recall@5": np.array([0.5])},
                          n_users=1, n_users_evaluated=1, definitions={})
    with pytest.raises(ValueError, match="another process wrote this file"):
        write_per_user_csv(path, ["u1"], empty, overwrite=False)
    assert path.read_text() == "another process's\n"


def test_evaluate_run_asks_the_scoring_not_to_overwrite_its_per_user_csv(tmp_path, monkeypatch):
    # the check above runs before the scoring; a file another process writes meanwhile is refused by the
    # write itself only if evaluate_run passes overwrite=False (the test above exercises write_per_user_csv alone)
    calls = []
    monkeypatch.setattr(job, "load_run", lambda *args, **kwargs: ({}, "split", "model", {}))
    monkeypatch.setattr(job, "score_run", lambda *args, **kwargs: calls.append((args, kwargs)) or {})
    job.evaluate_run(tmp_path / "run", per_user_csv=str(tmp_path / "users.csv"))
    (args, kwargs), = calls
    assert args[5] == tmp_path / "users.csv" and kwargs == {"overwrite": False}


def test_run_evaluations_checks_every_name_and_folder_before_the_first_evaluation(tmp_path):
    # the first evaluation was written before a second name given twice, or a second folder that
    # exists, was refused (as "already exists", for the name given twice)
    with pytest.raises(RecipeError, match="'denoising' is listed twice"):
        bindiff.run_evaluations(tmp_path / "not-read", ["denoising", "denoising"], out_dir=tmp_path / "out")
    (tmp_path / "out" / "generation").mkdir(parents=True)
    with pytest.raises(FileExistsError) as err:
        bindiff.run_evaluations(tmp_path / "not-read", ["denoising", "generation"], out_dir=tmp_path / "out")
    _python_names(err.value, "out_dir")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["generation"]
    with pytest.raises(TypeError, match="evaluations must be a list of names"):
        bindiff.run_evaluations(tmp_path / "not-read", None)


# -- arguments refused by name ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", [5, torch.device("cuda:7")])
def test_a_device_that_is_not_one_is_refused_naming_device(tmp_path, device):
    run = _untrained_run(tmp_path)
    with pytest.raises(RecipeError) as err:  # an index or torch.device: torch's RuntimeError naming nothing
        base.load_trained(job.TASK, run, device=device)
    _python_names(err.value, "device")
    config, _, model = base.load_trained(job.TASK, run, device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def test_a_cuda_index_is_read_as_torch_reads_it(tmp_path, monkeypatch):
    # model.to(0) is cuda:0: an index was taken before the device check, then refused as "'0' is not a device"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(FileNotFoundError, match="not a bindiff run directory"):  # accepted: the run is read next
        base.load_trained(job.TASK, tmp_path / "not-a-run", device=np.int64(0))
    with pytest.raises(RecipeError, match=r"^device: 'cuda:1' was asked for but this machine has 1 CUDA device"):
        base.load_trained(job.TASK, tmp_path / "not-a-run", device=1)
    with pytest.raises(RecipeError, match=r"^device: 'True' is not a device"):
        base.load_trained(job.TASK, tmp_path / "not-a-run", device=True)


def test_make_scorer_takes_numpy_and_0d_seeds_and_names_a_bad_one():
    config = _config("inference.add_noise=true", "inference.t=3")
    torch.manual_seed(0)
    model = build_model(config, 6).eval()
    x = (torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    with torch.no_grad():
        expected = make_scorer(model, config, seed=3)(x)
        for seed in (np.int64(3), np.uint32(3), np.array(3), torch.tensor(3)):  # "an integer is required"
            assert torch.equal(make_scorer(model, config, seed=seed)(x), expected)
    for seed, kind in ((True, TypeError), (1.5, TypeError), ("3", TypeError), (None, TypeError), (2 ** 64, ValueError)):
        with pytest.raises(kind, match=r"^seed "):
            make_scorer(model, config, seed=seed)


def test_export_run_refuses_overrides_given_as_one_string(tmp_path):
    with pytest.raises(TypeError) as err:  # its letters were listed as overrides outside inference.*
        bindiff.export_run(tmp_path / "not-read", tmp_path / "out", overrides="inference.t=1")
    _python_names(err.value, "overrides")


def test_run_tuning_refuses_typed_given_as_one_string(tmp_path):
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,item\nu1,i1\n")
    with pytest.raises(TypeError) as err:  # "override 'a' is not of the form key=value"
        bindiff.run_tuning("ml1m", [f"data.dataset={csv}", f"output.root={tmp_path}"], typed="train.lr=0.1")
    _python_names(err.value, "typed")
    assert not (tmp_path / "tune").exists()


def test_a_recommender_refuses_duplicate_item_ids_and_a_k_that_is_not_a_number():
    config = _config()
    model = build_model(config, 4).eval()
    # "a" twice: a history of "a" set the second column, and the first, "a" too, was recommended back
    with pytest.raises(ValueError, match="item_ids: 'a' is listed twice"):
        bindiff.Recommender(config, model, ["a", "a", "b", "c"])
    recommender = bindiff.Recommender(config, model, ["a", "b", "c", "d"])
    for k in ("3", None, float("nan"), [3]):
        with pytest.raises(ValueError, match=r"^k must be a positive integer"):  # "'<' not supported ..."
            recommender.recommend([["a"]], k=k)
    (result,) = recommender.recommend([["a"]], k=np.int64(2))
    assert len(result.items) == 2 and "a" not in result.items
    (result,) = recommender.recommend([["a"]], k=torch.tensor(2))  # a 0-d tensor: the number it holds
    assert len(result.items) == 2


def test_panels_that_are_not_a_count_are_refused_naming_panels(tmp_path):
    for panels in (None, "3", True, -1, float("nan")):  # a TypeError naming nothing, or none or one drawn
        with pytest.raises(ValueError) as err:
            bindiff.segment(tmp_path / "not-read", tmp_path, tmp_path / "out", panels=panels)
        _python_names(err.value, "panels")
        with pytest.raises(ValueError) as err:
            bindiff.apply_run(tmp_path / "not-read", "denoising", tmp_path, tmp_path / "out", panels=panels)
        _python_names(err.value, "panels")
    assert not (tmp_path / "out").exists()


def test_train_given_a_recipe_path_names_load_recipe():
    with pytest.raises(RecipeError, match=r"a config is a mapping of sections \(load_recipe\(path\)"):
        bindiff.train(RECIPE)  # "is not a plain YAML value (a numpy number? ...)"
    with pytest.raises(RecipeError, match=r"a config is a mapping of sections"):
        bindiff.train(None)  # read as the default recipe: ML-1M downloaded and trained


def test_score_reads_preset_none_as_binary_and_names_a_bad_preset(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    a = np.zeros((4, 4, 4), np.uint8)
    a[1:3, 1:3, 1:3] = 1
    b = np.zeros((4, 4, 4), np.uint8)
    b[1:3, 1:3, 1:2] = 1
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(tmp_path / "pred" / "c_mask.nii.gz"))
    nib.save(nib.Nifti1Image(b, np.eye(4)), str(tmp_path / "ref" / "c.nii.gz"))
    for kwargs in ({"preset": None}, {"region": None}):  # AttributeError; "binary has no region None"
        summary = bindiff.score(tmp_path / "pred", tmp_path / "ref", **kwargs)
        assert summary["preset"] == "binary" and summary["region"] == "whole"
        assert summary["per_case"][0]["dice"] == pytest.approx(2 * 4 / (8 + 4))  # by hand: 4 shared of 8 and 4
    with pytest.raises(TypeError, match="preset must be a LabelPreset or a preset's name, got 5"):
        bindiff.score(tmp_path / "pred", tmp_path / "ref", preset=5)
    nib.save(nib.Nifti1Image(a * 2, np.eye(4)), str(tmp_path / "pred" / "c_mask.nii.gz"))
    with pytest.raises(DataError) as err:  # it named --preset and --region from Python
        bindiff.score(tmp_path / "pred", tmp_path / "ref")
    _python_names(err.value, "preset")


def test_prepare_split_refuses_a_k_core_that_is_not_a_whole_number(tmp_path):
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,item\n" + "".join(f"u{u},i{i}\n" for u in range(6) for i in range(4)))
    for k_core in (2.5, "3", True, -1):  # int() made 2.5 a 2-core, "3" a 3-core, True a 1-core
        with pytest.raises(DataError, match=r"data\.k_core must be an integer >= 0"):
            bindiff.prepare_split({"dataset": str(csv), "k_core": k_core},
                                  {"kind": "strong", "n_valid_users": 1, "n_test_users": 1}, 0)


class _SGD:
    """Plain gradient descent with an optimiser's param_groups (torch.optim's first import takes seconds)."""

    def __init__(self, params, lr):
        self.param_groups = [{"params": list(params), "lr": lr}]

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p -= group["lr"] * p.grad


def test_warmup_clip_refuses_settings_that_would_climb_the_loss():
    def sgd():
        return _SGD([torch.nn.Parameter(torch.ones(2))], lr=1.0)

    # a negative clip norm or warm-up made every update a step up the loss; zero, no update at all
    for kwargs, name in (({"clip_norm": -1.0}, "clip_norm"), ({"clip_norm": 0}, "clip_norm"),
                         ({"clip_norm": float("nan")}, "clip_norm"), ({"warmup_steps": -2}, "warmup_steps"),
                         ({"warmup_steps": 2.7}, "warmup_steps"), ({"total_steps": -1}, "total_steps")):
        with pytest.raises(ValueError, match=rf"^{name} "):
            WarmupClip(sgd(), **kwargs)
    weight = torch.nn.Parameter(torch.ones(2))
    clipped = WarmupClip(_SGD([weight], lr=1.0), clip_norm=1.0, warmup_steps=np.int64(1))
    weight.grad = torch.tensor([3.0, 4.0])
    clipped.step()
    assert torch.allclose(weight.detach(), torch.tensor([1 - 0.6, 1 - 0.8]))  # the gradient scaled to norm 1
    whole = WarmupClip(sgd(), warmup_steps=2.0, total_steps=np.float64(8.0))  # int() took these before: kept
    assert (whole.warmup_steps, whole.total_steps) == (2, 8) and type(whole.warmup_steps) is int


# -- registrations that would break every later refusal --------------------------------------------------------
def test_register_model_refuses_what_would_break_later_lines(monkeypatch):
    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    build = lambda config, dim, training=False: None  # noqa: E731
    for kind, name in ((RecommenderKind(5, build), "name"), (RecommenderKind("", build), "name"),
                       (RecommenderKind("nob", None), "build"), (RecommenderKind("p5", build, params_of=5), "params_of")):
        with pytest.raises(ValueError, match=name):
            register_model(kind)
    with pytest.raises(RecipeError, match="unknown model 'nope'"):  # a TypeError: "sequence item 7: expected str"
        models.model_kind({"model": {"kind": "nope", "params": {}}})


def test_register_task_refuses_sections_that_are_not_keys(monkeypatch):
    from bindiff.config import schema

    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))
    monkeypatch.setattr(schema, "TASKS", dict(schema.TASKS))

    class Mine(base.Task):
        name = "mine_edge"

    # accepted, it broke every later load_recipe of the task ("'int' object has no attribute 'default'")
    with pytest.raises(ValueError, match=r"data must be a bindiff\.config\.keys\.key"):
        registry.register_task(Mine(), {"eval": {"select": key(str, "loss", "v")}, "data": 5})
    with pytest.raises(ValueError, match=r"data\.rows must be"):
        registry.register_task(Mine(), {"eval": {"select": key(str, "loss", "v")}, "data": {"rows": 64}})
    assert "mine_edge" not in registry.TASKS


def test_overrides_of_none_or_a_number_are_refused_naming_them(tmp_path):
    for overrides in (None, 5):  # "'NoneType' object is not iterable", naming nothing
        with pytest.raises(TypeError, match=r"^overrides must be a list of key=value strings \(empty: none\), got"):
            load_recipe(RECIPE, overrides)
        with pytest.raises(TypeError, match=r"^overrides must be a list"):
            bindiff.train(_config(), overrides)
        with pytest.raises(TypeError, match=r"^overrides must be a list"):
            bindiff.export_run(tmp_path / "not-read", tmp_path / "out", overrides=overrides)
    assert load_recipe(RECIPE, iter(["train.lr=0.5"]))["train"]["lr"] == 0.5  # any iterable of strings is a list


def test_an_empty_list_of_models_and_a_space_that_is_no_mapping_are_named(tmp_path):
    with pytest.raises(RecipeError, match=r"models: no model named; the recipe defines"):  # "an empty model name in ''"
        bindiff.run_comparison("ml1m", [f"output.root={tmp_path}"], models=[])
    with pytest.raises(TypeError, match=r"^space must be a mapping"):  # 'int' object has no attribute 'items'
        bindiff.run_tuning("ml1m", [f"output.root={tmp_path}"], space=5)
    assert not list(tmp_path.iterdir())


def test_overrides_given_as_an_iterator_are_all_read_by_export_and_train(tmp_path, monkeypatch):
    # refuse_one_string takes any iterable; export_run and train read theirs twice, and an iterator was
    # empty the second time: the exported scorer and overrides.txt silently lost every override
    from types import SimpleNamespace

    from bindiff.tasks.recommendation import export, serve

    seen = []

    def rescoring(task, config, overrides, **kwargs):
        seen.append(list(overrides))
        raise RuntimeError("stop")

    monkeypatch.setattr(serve.Recommender, "from_run", classmethod(lambda cls, *a, **k: SimpleNamespace(config={})))
    monkeypatch.setattr(export.base, "rescoring_config", rescoring)
    with pytest.raises(RuntimeError, match="stop"):
        bindiff.export_run(tmp_path / "run", tmp_path / "out", overrides=iter(["inference.t=3"]))
    assert seen == [["inference.t=3"]]

    made = []

    def create_run_dir(config, overrides):
        made.append(overrides)
        raise RuntimeError("stop")

    monkeypatch.setattr(base, "create_run_dir", create_run_dir)
    monkeypatch.setattr(base, "check_recipe", lambda task, config: None)
    monkeypatch.setattr(base, "_build", lambda *args: (None, None, None))
    task = registry.get_task("recommend")
    monkeypatch.setattr(task, "prepare", lambda config, data_dir: None)  # no data read
    monkeypatch.setattr(task, "check", lambda config, data, model: None)
    with pytest.raises(RuntimeError, match="stop"):
        bindiff.train(_config("train.lr=0.5"), iter(["train.lr=0.5"]))
    assert made == [["train.lr=0.5"]]
