"""The shared task lifecycle: a third task written in this file gets training, run directories,
checkpoints, exact resume and rescoring from bindiff.tasks.base without any other code; every
task package has the same shape; nothing branches on a model's class."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.config import RecipeError, load_recipe
from bindiff.config import schema as config_schema
from bindiff.config.keys import at_least_one, key
from bindiff.tasks import base, registry
from bindiff.training.builders import build_diffusion

ROOT = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """Stands for a killed process in the middle of training."""


class ParityBitsTask(base.Task):
    """A toy task: 8-bit vectors whose second half repeats the first half."""

    name = "parity_bits"
    rescore_keys = ("eval.batch_size",)
    stop_after_validations: int | None = None  # raise Interrupted at this validation (a kill)
    companion_stop_after: int | None = None  # the same, in the companion's validation
    with_companion: bool = False

    def companions(self, config):
        if not self.with_companion:
            return []
        task = self

        def validator(model, data, config, device, workers):
            main = task.validator(model, data, config, device, workers)
            calls = {"n": 0}

            def validate():
                calls["n"] += 1
                if task.companion_stop_after is not None and calls["n"] > task.companion_stop_after:
                    raise Interrupted
                return main()
            return validate
        # a second model of the same kind with a wider hidden layer
        wide = base.ModelKind("wide", lambda c, dim, training=False: build_diffusion(
            {**c, "denoiser": {**c["denoiser"], "params": {"hidden": [32]}}}, dim))
        return [base.Companion("wide", wide, validator)]

    def model_kind(self, config):
        return base.ModelKind("binomial", lambda c, dim, training=False: build_diffusion(c, dim))

    def prepare(self, config, data_dir):
        rng = np.random.default_rng(config["seed"])
        half = rng.integers(0, 2, size=(config["data"]["rows"], 4))
        return np.concatenate([half, half], axis=1).astype(np.float32)

    def dim(self, data):
        return data.shape[1]

    def training_rows(self, data, config):
        return sp.csr_matrix(data[: len(data) // 2])

    def save_data(self, data, folder):
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "bits.npy", data)

    def data_saved(self, folder):
        return (folder / "bits.npy").is_file()

    def load_data(self, folder, data_dir=None):
        return np.load(folder / "bits.npy")

    def validator(self, model, data, config, device, workers):
        valid = torch.from_numpy(data[len(data) // 2:])
        calls = {"n": 0}

        def validate():
            calls["n"] += 1
            if self.stop_after_validations is not None and calls["n"] > self.stop_after_validations:
                raise Interrupted
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                return {"neg_loss": -float(model(valid, generator=g).loss)}
        return validate

    def evaluate(self, run_dir, config, data, device, workers, checkpoint="best"):
        config, payload, model = base.load_trained(self, run_dir, checkpoint)
        valid = torch.from_numpy(data[len(data) // 2:])
        repeats = float(((model.predict_x0(valid, 1) >= 0.5).float() == valid).float().mean())
        return {"valid": {"bit_accuracy": repeats}, "checkpoint_epoch": payload["epoch"]}

    def rescore(self, run_dir, overrides, checkpoint, out_dir, device, data_dir):
        config = base.rescoring_config(self, base.read_run_config(run_dir), overrides)
        metrics = self.evaluate(run_dir, config, self.load_data(run_dir / "split"), device, None, checkpoint)
        return {**metrics, "batch_size": config["eval"]["batch_size"]}


SECTIONS = {
    "data": {"rows": key(int, 64, "vectors drawn", at_least_one)},
    "eval": {"select": key(str, "neg_loss", "validation metric"),
             "batch_size": key(int, 16, "vectors per batch", at_least_one)},
}


@pytest.fixture
def parity_task(monkeypatch):
    task = ParityBitsTask()
    monkeypatch.setitem(config_schema.TASKS, task.name, SECTIONS)
    monkeypatch.setitem(registry.TASKS, task.name, task)
    return task


def _config(tmp_path, *extra):
    return load_recipe(None, ["task=parity_bits", "name=parity", f"output.root={tmp_path}", "train.epochs=4",
                              "train.patience=4", "train.batch_size=8", "diffusion.steps=4",
                              "diffusion.schedule=jsd", "denoiser.params={hidden: [16]}", "output.progress=false",
                              *extra])


def test_a_new_task_gets_the_whole_lifecycle_from_its_own_pieces(parity_task, tmp_path):
    run = registry.train(_config(tmp_path / "a"))
    files = {p.relative_to(run.run_dir).as_posix() for p in run.run_dir.rglob("*") if p.is_file()}
    assert {"config.yaml", "overrides.txt", "split/bits.npy", "checkpoints/best.pt", "checkpoints/last.pt",
            "history.json", "training_curve.png", "metrics.json"} <= files
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert metrics["training"]["epochs_run"] == 4 and metrics["training"]["optimizer_steps"] == 4 * 4
    assert 0.0 <= metrics["valid"]["bit_accuracy"] <= 1.0
    history = json.loads((run.run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    best_epoch = max(history, key=lambda row: row["valid_neg_loss"])["epoch"]  # the first of equal values
    assert metrics["checkpoint_epoch"] == metrics["training"]["best_epoch"] == best_epoch


def test_a_new_task_resumes_exactly(parity_task, tmp_path):
    reference = registry.train(_config(tmp_path / "reference"))
    parity_task.stop_after_validations = 2  # killed while validating epoch 3: last.pt holds epoch 2
    with pytest.raises(Interrupted):
        registry.train(_config(tmp_path / "victim"))
    parity_task.stop_after_validations = None
    (victim,) = (tmp_path / "victim" / "parity").iterdir()
    assert not (victim / "metrics.json").exists()
    assert torch.load(victim / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = registry.resume(victim)
    assert resumed.metrics["valid"] == reference.metrics["valid"]
    assert resumed.metrics["training"]["resumed_from_epoch"] == 2
    a = json.loads((reference.run_dir / "history.json").read_text())
    b = json.loads((victim / "history.json").read_text())
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def test_a_companion_trains_in_the_same_run_and_resumes_exactly(parity_task, tmp_path):
    parity_task.with_companion = True
    reference = registry.train(_config(tmp_path / "reference"))
    files = {p.relative_to(reference.run_dir).as_posix() for p in reference.run_dir.rglob("*") if p.is_file()}
    assert {"checkpoints/wide/best.pt", "checkpoints/wide/last.pt", "history_wide.json",
            "training_curve_wide.png"} <= files
    companion = reference.metrics["training"]["companions"]["wide"]
    assert companion["epochs_run"] == 4 and companion["optimizer_steps"] == 4 * 4
    _, _, wide = base.load_trained(parity_task, reference.run_dir, companion="wide")
    assert wide.denoiser.layers[0].out_features == 32  # the companion's own architecture, not the main model's
    with pytest.raises(RecipeError, match="no 'narrow' model"):
        base.load_trained(parity_task, reference.run_dir, companion="narrow")

    parity_task.companion_stop_after = 2  # the main model finished; killed in the companion's epoch 3
    with pytest.raises(Interrupted):
        registry.train(_config(tmp_path / "victim"))
    parity_task.companion_stop_after = None
    (victim,) = (tmp_path / "victim" / "parity").iterdir()
    assert torch.load(victim / "checkpoints" / "wide" / "last.pt", weights_only=True)["epoch"] == 2
    registry.resume(victim)
    for name in ("best.pt", "wide/best.pt"):
        a = torch.load(reference.run_dir / "checkpoints" / name, weights_only=True)["model"]
        b = torch.load(victim / "checkpoints" / name, weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    a, b = (json.loads((folder / "history_wide.json").read_text()) for folder in (reference.run_dir, victim))
    assert [(r["train_loss"], r["valid_neg_loss"]) for r in a] == [(r["train_loss"], r["valid_neg_loss"]) for r in b]


def test_rescoring_accepts_only_the_keys_the_task_names(parity_task, tmp_path):
    config = _config(tmp_path)
    assert base.rescoring_config(parity_task, config, ["eval.batch_size=4"])["eval"]["batch_size"] == 4
    with pytest.raises(RecipeError, match=r"allowed keys are eval.batch_size$"):
        base.rescoring_config(parity_task, config, ["train.lr=0.1"])
    with pytest.raises(RecipeError, match="in one process"):
        base.check_parallel(parity_task, config)


def test_every_task_package_has_the_same_shape():
    for folder in sorted(p for p in (ROOT / "bindiff" / "tasks").iterdir() if (p / "__init__.py").is_file()):
        names = {p.name for p in folder.glob("*.py")}
        assert {"__init__.py", "schema.py", "data.py", "job.py"} <= names, folder
        tree = ast.parse((folder / "__init__.py").read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], \
            f"{folder}/__init__.py imports: the config package reads schema.py below it"
    assert set(registry.TASKS) == set(config_schema.TASKS)
    for name, task in registry.TASKS.items():
        assert isinstance(task, base.Task) and task.name == name


def test_no_function_outside_the_core_branches_on_a_model_class():
    found = []
    for path in (ROOT / "bindiff").rglob("*.py"):
        if "core" in path.relative_to(ROOT / "bindiff").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and node.args:
                subject = ast.unparse(node.args[0])
                if "model" in subject or "net" == subject:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: isinstance({subject}, ...)")
    assert not found, found


class _RecordingWriter:
    """Stands in for torch's SummaryWriter: keeps what would be written."""

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False

    def add_scalar(self, name, value, step):
        self.scalars.append((name, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_the_tensorboard_logger_gets_every_epochs_row(parity_task, tmp_path, monkeypatch):
    import sys
    import types

    import bindiff.training.loggers as loggers

    writers = []
    monkeypatch.setitem(sys.modules, "tensorboard", types.ModuleType("tensorboard"))
    monkeypatch.setattr(loggers, "_summary_writer", lambda log_dir: writers.append(_RecordingWriter(log_dir))
                        or writers[-1])
    run = registry.train(_config(tmp_path, "output.logger=tensorboard"))
    (writer,) = writers
    assert writer.log_dir == run.run_dir / "tensorboard" and writer.closed
    history = json.loads((run.run_dir / "history.json").read_text())
    expected = [(name.replace("valid_", "valid/"), row[name], row["epoch"]) for row in history
                for name in ("train_loss", "valid_neg_loss", "seconds")]
    assert sorted(writer.scalars, key=lambda s: (s[2], s[0])) == sorted(expected, key=lambda s: (s[2], s[0]))


def test_the_tensorboard_logger_without_its_package_is_refused_before_anything_is_written(parity_task, tmp_path,
                                                                                          monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard raises ImportError
    with pytest.raises(RecipeError, match=r"output.logger: 'tensorboard' needs the tensorboard package; install it "
                                          r"with pip install 'bindiff\[tensorboard\]'"):
        registry.train(_config(tmp_path / "runs", "output.logger=tensorboard"))
    assert not (tmp_path / "runs").exists()


def test_a_selection_metric_the_validation_does_not_report_is_named(parity_task, tmp_path):
    """Was a KeyError from deep in the trainer."""
    with pytest.raises(RecipeError, match=r"eval.select: 'bit_accuracy' is not among the validation metrics neg_loss"):
        registry.train(_config(tmp_path, "eval.select=bit_accuracy"))
    assert not list((tmp_path / "parity").iterdir())  # the run folder, with no checkpoint, is not left behind


def test_a_run_of_a_task_of_ones_own_read_as_another_tasks_is_named(parity_task, tmp_path):
    """`bindiff evaluate` of such a run: a KeyError where the refusal names the commands of its task."""
    from bindiff.runs import read_run

    run = registry.train(_config(tmp_path))
    with pytest.raises(RecipeError, match="a parity_bits run, not a recommend run; parity_bits runs are used with "
                                          "its own task module"):
        read_run(run.run_dir, "recommend")


@pytest.mark.parametrize("saved", ["devices", "old_format"])
def test_a_run_trained_on_a_gpu_is_not_resumed_on_the_cpu(parity_task, tmp_path, saved):
    """Its noise generator's state is a CUDA one (16 bytes): `set_state` failed with a traceback."""
    from bindiff.training.checkpoint import CheckpointError

    parity_task.stop_after_validations = 2
    with pytest.raises(Interrupted):
        registry.train(_config(tmp_path))
    parity_task.stop_after_validations = None
    (victim,) = (tmp_path / "parity").iterdir()
    last = victim / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    assert payload["rng"]["devices"] == {"order": "cpu", "noise": "cpu"}
    if saved == "devices":
        payload["rng"]["devices"]["noise"] = "cuda"
    else:  # before December 2026 no device was recorded: a CUDA generator's state is its seed and offset
        del payload["rng"]["devices"]
        payload["rng"]["noise"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(payload, last)
    with pytest.raises(CheckpointError, match=r"last.pt: trained on cuda, but train.device 'cpu' is cpu here"):
        registry.resume(victim)


def test_bindiff_evaluate_scores_a_new_tasks_run_through_its_rescore_hook(parity_task, tmp_path, monkeypatch):
    """`bindiff evaluate` knows no task by name: a registered task's runs are scored by its own
    ``Task.rescore``, overrides and --checkpoint passed on; a task without one gets one line."""
    from typer.testing import CliRunner

    from bindiff.cli import app

    run = registry.train(_config(tmp_path / "a"))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(run.run_dir), "eval.batch_size=4", "--checkpoint", "last",
                                 "--out", str(tmp_path / "scored")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert scored["batch_size"] == 4 and scored["checkpoint_epoch"] == 4  # last.pt holds the last epoch
    refused = runner.invoke(app, ["evaluate", str(run.run_dir), "train.lr=0.1"])
    assert refused.exit_code == 2 and "allowed keys are eval.batch_size" in refused.output
    monkeypatch.setattr(ParityBitsTask, "rescore", base.Task.rescore)
    refused = runner.invoke(app, ["evaluate", str(run.run_dir), "--out", str(tmp_path / "none")])
    assert refused.exit_code == 2 and refused.output.strip().splitlines()[-1] == (
        f"error: {run.run_dir}: a parity_bits run, whose task defines no rescoring (Task.rescore): `bindiff "
        "evaluate` cannot score it; score it from Python with the task's own code")
    assert not (tmp_path / "none").exists()
