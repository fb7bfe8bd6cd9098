"""bindiff extended as a library without editing it: a loop of one's own over the scheduler, a
denoiser or model of one's own, and the messages such extensions meet (an eleventh audit pass)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn

from bindiff.core import BernoulliProcess, BinomialDiffusion, ReverseScheduler


class Linear(nn.Module):
    """A denoiser whose logits are a fixed linear map of what it reads, plus the time."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)))

    def forward(self, x_t, t):
        return x_t @ self.weight + t[:, None].float() / 10


@pytest.mark.parametrize("flat, offset", [(False, True), (True, False), (True, True)])
def test_the_documented_scheduler_loop_reproduces_reverse_for_every_model_option(flat, offset):
    """The loop in docs/api.md called `model.denoiser` directly: off by up to 0.45 with a prior offset."""
    dim = 6
    process = BernoulliProcess.from_schedule("jsd", 4)
    model = BinomialDiffusion(Linear(dim), process, denoiser_input="flat_posterior" if flat else "state",
                              prior_offset_dim=dim if offset else 0).eval()
    if offset:
        model.set_prior_offset(torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 0.3]), 10)
    history = torch.tensor([[1.0, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]])
    # by hand: what the denoiser reads, its output, and the offset added to it
    t = 3
    seen = 0.5 + float(process.alpha_bar[t]) * (history - 0.5) if flat else history
    prior = torch.logit((torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 0.3]) * 10 + 0.5) / 11) if offset else 0
    expected = seen @ model.denoiser.weight.detach() + t / 10 + prior
    assert torch.allclose(model.logits(history, t), expected, atol=1e-5)
    scheduler = ReverseScheduler(process)
    scheduler.set_timesteps(start=4)
    sample = history
    with torch.no_grad():
        for step in scheduler.timesteps:
            out = scheduler.step(model.logits(sample, step), step, sample, mode="mean")
            sample = out.prev_sample
    assert torch.allclose(out.pred_x0, model.reverse(history, start=4, mode="mean"), atol=1e-6)


class ReadsItsEstimate(nn.Module):
    """A denoiser of x_t and (self-conditioning) its previous estimate, each through a fixed map."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(dim, dim, generator=g))
        self.reads = nn.Parameter(3 * torch.randn(dim, dim, generator=g))

    def forward(self, x_t, t, cond):
        return x_t @ self.weight + cond @ self.reads + t[:, None].float() / 10


def test_the_documented_loop_hands_a_self_conditioned_model_its_estimate():
    """Without the previous p̂(x_0) the outline's scores were off by up to 0.39."""
    process = BernoulliProcess.from_schedule("jsd", 4)
    model = BinomialDiffusion(ReadsItsEstimate(6), process, self_condition=True).eval()
    history = torch.tensor([[1.0, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]])
    estimate = torch.full((2, 6), 0.3)  # by hand: the estimate goes in through its own map
    expected = history @ model.denoiser.weight.detach() + estimate @ model.denoiser.reads.detach() + 0.2
    assert torch.allclose(model.logits(history, 2, estimate=estimate), expected, atol=1e-5)
    scheduler = ReverseScheduler(process)
    scheduler.set_timesteps(start=4)
    state, estimate = history, None
    with torch.no_grad():
        for t in scheduler.timesteps:
            out = scheduler.step(model.logits(state, t, None, estimate), t, state, mode="mean")
            state, estimate = out.prev_sample, out.pred_x0
    assert torch.allclose(out.pred_x0, model.reverse(history, start=4, mode="mean"), atol=1e-6)


def test_logits_keep_the_graph_for_a_loss_of_ones_own():
    model = BinomialDiffusion(Linear(3), BernoulliProcess.from_schedule("jsd", 4))
    model.logits(torch.ones(2, 3), 2).sum().backward()
    assert model.denoiser.weight.grad is not None and model.denoiser.weight.grad.abs().sum() > 0


class _Buggy(nn.Module):
    def __init__(self, dim: int, width: int = 4):
        super().__init__()
        self.dim = dim
        self.layer = nn.Linear(dim, width + "x")  # a bug of the user's: a TypeError from inside


class _TakesAnything(nn.Module):
    def __init__(self, dim: int, **options):
        super().__init__()
        self.dim, self.options = dim, options

    def forward(self, x_t, t):
        return x_t


class _Needs(nn.Module):
    def __init__(self, dim: int, width: int):
        super().__init__()
        self.dim = dim


class _WrongShape(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x_t, t):
        return x_t[:, :2]


@pytest.fixture
def registered(monkeypatch):
    from bindiff.core import denoisers

    for name, cls in (("buggy", _Buggy), ("anything", _TakesAnything), ("needs", _Needs), ("wrong", _WrongShape)):
        monkeypatch.setitem(denoisers.DENOISERS, name, cls)


def _recipe(*overrides):
    from bindiff.config import load_recipe

    return load_recipe(None, ["diffusion.steps=2", *overrides])


def test_a_bug_inside_a_denoisers_constructor_keeps_its_traceback(registered):
    """It read as bad input: `error: denoiser.params: unsupported operand type(s)`, exit 2, no traceback."""
    from bindiff.training.builders import build_diffusion

    with pytest.raises(TypeError, match="unsupported operand"):
        build_diffusion(_recipe("denoiser.name=buggy"), 6)


def test_a_denoiser_taking_keyword_arguments_takes_any_name_and_a_missing_one_is_named(registered):
    from bindiff.config import RecipeError
    from bindiff.training.builders import build_diffusion

    model = build_diffusion(_recipe("denoiser.name=anything", "denoiser.params={depth: 3}"), 6)
    assert model.denoiser.options == {"depth": 3}  # was: "has no parameter(s) ['depth']; it takes ['options']"
    with pytest.raises(RecipeError, match=r"denoiser.params: denoiser 'needs' needs the parameter\(s\) \['width'\]"):
        build_diffusion(_recipe("denoiser.name=needs"), 6)


class _OneColumn(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t):
        return x_t[:, :1] + self.bias


@pytest.mark.parametrize("cls, offset, shape", [(_WrongShape, False, "(3, 2)"), (_OneColumn, False, "(3, 1)"),
                                                (_OneColumn, True, "(3, 1)")])
def test_a_denoiser_returning_another_shape_is_named(cls, offset, shape):
    """A prior offset broadcast a (B, 1) output to (B, D): it trained without a word."""
    model = BinomialDiffusion(cls(6), BernoulliProcess.from_schedule("jsd", 4), prior_offset_dim=6 if offset else 0)
    with pytest.raises(ValueError, match=rf"{cls.__name__} returned logits of shape \{shape[:-1]}\) for x_t of "
                                         r"shape \(3, 6\)"):
        model(torch.ones(3, 6))


class _CountsBits(nn.Module):
    """A denoiser whose vector length is not called `dim`: bindiff gives it first, whatever its name."""

    def __init__(self, n_bits: int, width: int = 8):
        super().__init__()
        self.dim, self.width = n_bits, width


def test_the_vector_length_is_the_first_parameter_whatever_its_name(monkeypatch):
    from bindiff.core import denoisers

    monkeypatch.setitem(denoisers.DENOISERS, "bits", _CountsBits)
    assert denoisers.build_denoiser("bits", 6, width=4).width == 4  # was "needs the parameter(s) ['n_bits']"
    with pytest.raises(ValueError, match=r"has no parameter\(s\) \['n_bits'\]; it takes \['width'\]"):
        denoisers.build_denoiser("bits", 6, n_bits=3)


@pytest.mark.parametrize("override", ["denoiser.params.hidden=[1000000000000000000000]",
                                      "model.kind=multvae model.params.latent=100000000000000000000"])
def test_a_width_beyond_what_torch_can_size_is_one_line(override):
    """torch's own TypeError for a size beyond int64 passed through as a traceback."""
    from typer.testing import CliRunner

    from bindiff.cli import app

    done = CliRunner().invoke(app, ["show-config", "ml100k", *override.split()])  # a TypeError escaping is exit 1
    assert done.exit_code == 2 and "Traceback" not in done.stderr, done.exception
    assert "must be an integer in 1..2**63 - 1" in done.stderr


def test_the_first_call_without_a_condition_is_made_where_the_model_is():
    model = BinomialDiffusion(Linear(4), BernoulliProcess.from_schedule("jsd", 4), denoiser_input="flat_posterior")
    model.denoiser.to("meta")  # stands in for a GPU: tensors made on the CPU do not mix with it
    seen = []
    model.logits = lambda x, t, cond=None, estimate=None: seen.append(x.device)  # the state it is handed
    model.start_logits(n=2)
    assert [device.type for device in seen] == ["meta"]  # was the CPU


@pytest.mark.parametrize("kind, param, value, message", [
    ("gaussian", "noise_min", "abc", "noise_min must be a finite number, got 'abc'"),
    ("gaussian", "dims", 5, "dims must list at least one positive width, got 5"),
    ("gaussian", "dropout", None, r"dropout must be a number in \[0, 1\), got None"),
    ("multvae", "anneal_cap", [1], r"anneal_cap must be a finite number, got \[1\]"),
    ("multdae", "hidden", "abc", "hidden must be a list of widths"),
    ("recfusion", "beta_end", None, "beta_end must be a finite number, got None"),
])
def test_a_baselines_parameter_of_the_wrong_type_is_one_line(kind, param, value, message):
    """Their constructors compared or multiplied the value and a TypeError became the message;
    now that constructors' TypeErrors pass through as bugs, each checks its values itself."""
    from bindiff.config import RecipeError
    from bindiff.tasks.recommendation.models import build_model

    config = _recipe(f"model.kind={kind}")
    config["model"]["params"] = {param: value}
    with pytest.raises(RecipeError, match=f"model.params: model '{kind}': {message}"):
        build_model(config, 8)


@pytest.mark.parametrize("params, message", [({"grid": [4, 4.5, 4]}, r"grid\[1\] must be an integer >= 1, got 4.5"),
                                             ({"grid": [64]}, "grid must list 2 or 3 positive sides")])
def test_unet_grids_that_are_not_whole_sides_are_refused(params, message):
    from bindiff.core import build_denoiser

    with pytest.raises(ValueError, match=message):
        build_denoiser("unet", 64, **params)


def _bindiff(*args, env_extra: dict, cwd=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "bindiff", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


PLUGIN = '''
from torch import nn
import bindiff
from bindiff.config.keys import key
from bindiff.tasks.base import Task


class Tiny(nn.Module):
    def __init__(self, dim, width: int = 3, **ignored):
        super().__init__()
        self.dim = dim
        self.layer = nn.Linear(dim, dim)

    def forward(self, x_t, t):
        return self.layer(x_t)


class Toy(Task):
    name = "toy"

    def model_kind(self, config):
        return bindiff.ModelKind("binomial", lambda c, dim, training=False: None)

    def check_recipe(self, config):
        pass


bindiff.register_denoiser("tiny", Tiny)
bindiff.register_task(Toy(), {"eval": {"select": key(str, "loss", "the validation metric")}})
'''


def test_the_command_loads_plugins_named_in_the_environment(tmp_path, monkeypatch):
    """A denoiser or task registered from Python was unknown to `bindiff`: "unknown denoiser 'tiny'"."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    # without the variable, in this process (the command's own code, plugins read as a process reads them):
    # the names are unknown, and the message says how to register them
    from typer.testing import CliRunner

    from bindiff.cli import app

    monkeypatch.delenv("BINDIFF_PLUGINS", raising=False)
    plain = CliRunner().invoke(app, ["show-config", "ml100k", "denoiser.name=tiny"])
    assert plain.exit_code == 2 and "unknown denoiser 'tiny'; choose one of mlp, unet (one of your own is " \
        "registered first: register_denoiser, run by a plugin for the bindiff command)" in plain.stderr
    unknown_task = CliRunner().invoke(app, ["show-config", "task=toy"])
    assert unknown_task.exit_code == 2 and "got 'toy' (one of your own is registered first: register_task" \
        in unknown_task.stderr
    # named in the environment, in a process of its own: the command loads them before it reads the recipe
    env = {"BINDIFF_PLUGINS": " my_plugin ,", "PYTHONPATH": str(tmp_path)}
    shown = _bindiff("show-config", "ml100k", "denoiser.name=tiny", env_extra=env)
    assert shown.returncode == 0, shown.stderr
    assert "name: tiny" in shown.stdout
    toy = _bindiff("show-config", "task=toy", env_extra=env)
    assert toy.returncode == 0 and "task: toy" in toy.stdout and "select: loss" in toy.stdout


@contextmanager
def plugin_imported(where: Path, name: str):
    """``name`` imported from ``where`` in this process, and everything it registered forgotten after."""
    import importlib
    import sys

    from bindiff.config import schema
    from bindiff.core import denoisers
    from bindiff.tasks import registry

    tables = (denoisers.DENOISERS, registry.TASKS, schema.TASKS)
    before = [dict(table) for table in tables]
    sys.path.insert(0, str(where))
    try:
        importlib.import_module(name)
        yield
    finally:
        sys.path.remove(str(where))
        sys.modules.pop(name, None)
        for table, was in zip(tables, before):
            table.clear()
            table.update(was)


def test_a_run_names_the_plugin_its_model_needs(tmp_path):
    """A run trained with a plugin's denoiser, read without the plugin, met an unknown name deep inside;
    its checkpoints now record the module, and reading them without it says which to load."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    env = {"BINDIFF_PLUGINS": "my_plugin", "PYTHONPATH": str(tmp_path)}
    with plugin_imported(tmp_path, "my_plugin"):  # trained here, as `import my_plugin` in a notebook would: a
        # process of its own (4.7 s) would pay torch, dynamo and matplotlib's imports only to train one epoch
        import bindiff
        from bindiff.config import load_recipe

        bindiff.train(load_recipe("ml100k", ["data.dataset=synthetic:tiny", "denoiser.name=tiny", "denoiser.params={}",
                                             "train.epochs=1", "train.threads=1", f"output.root={tmp_path / 'runs'}",
                                             "output.progress=false", "split.n_valid_users=20",
                                             "split.n_test_users=20"]))
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    # without the plugin (another one named, which keeps its place in the advice)
    without = _bindiff("evaluate", str(run_dir), env_extra={"BINDIFF_PLUGINS": "json"})
    assert without.returncode == 2 and "Traceback" not in without.stderr and len(without.stderr.splitlines()) == 1
    assert "unknown denoiser 'tiny'" in without.stderr
    assert without.stderr.strip().endswith("; its model was built by code in 'my_plugin', which this process has not "
                                           "imported: set BINDIFF_PLUGINS=json,my_plugin for the bindiff command (or "
                                           "import it first, from Python)")
    with_plugin = _bindiff("evaluate", str(run_dir), env_extra=env)
    assert with_plugin.returncode == 0, with_plugin.stderr
    # a run stopped before it finished, resumed without the plugin: the same hint (it said only "unknown")
    (run_dir / "metrics.json").unlink()
    resumed = _bindiff("resume", str(run_dir), env_extra={"BINDIFF_PLUGINS": ""})
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr and len(resumed.stderr.splitlines()) == 1
    assert "unknown denoiser 'tiny'" in resumed.stderr and "set BINDIFF_PLUGINS=my_plugin " in resumed.stderr
    # the same module imported under another name registers the same denoiser: the run is read
    package = tmp_path / "pk"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "renamed.py").write_text(PLUGIN)
    moved = _bindiff("evaluate", str(run_dir), env_extra={"BINDIFF_PLUGINS": "pk.renamed", "PYTHONPATH": str(tmp_path)})
    assert moved.returncode == 0, moved.stderr


def test_a_model_of_ones_own_loaded_from_a_file_trains_and_is_read_in_its_process(tmp_path):
    """A class from a module run from its file (not in sys.modules) or from __main__: the run trains
    and is read back (the first version of code_modules refused it after the last epoch)."""
    import importlib.util

    import bindiff

    path = tmp_path / "den_body.py"
    path.write_text(PLUGIN.split("class Toy")[0].replace("import bindiff", "") + "\n")
    spec = importlib.util.spec_from_file_location("den_body_not_in_sys_modules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bindiff.register_denoiser("tiny_from_file", module.Tiny)
    from bindiff.config import load_recipe

    try:
        config = load_recipe("ml100k", ["data.dataset=synthetic:tiny", "denoiser.name=tiny_from_file",
                                      "denoiser.params={}", "train.epochs=1", "train.threads=1",
                                      f"output.root={tmp_path / 'runs'}", "output.progress=false",
                                      "split.n_valid_users=20", "split.n_test_users=20"])
        run = bindiff.train(config)
        assert "test" in run.metrics
    finally:
        from bindiff.core.denoisers import DENOISERS

        DENOISERS.pop("tiny_from_file", None)


def test_a_plugin_that_is_not_there_is_one_line_and_one_that_fails_keeps_its_traceback(tmp_path):
    missing = _bindiff("recipes", env_extra={"BINDIFF_PLUGINS": "no_such_plugin"})
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == ("error: BINDIFF_PLUGINS: no module named 'no_such_plugin' on the path "
                                      "(sys.path; set PYTHONPATH, or install it)")
    relative = _bindiff("recipes", env_extra={"BINDIFF_PLUGINS": ".my_plugin"})
    assert relative.returncode == 2 and relative.stderr.strip() == (
        "error: BINDIFF_PLUGINS: '.my_plugin' is a relative module name; give the module's full name")
    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency\n")
    broken = _bindiff("recipes", env_extra={"BINDIFF_PLUGINS": "broken_plugin", "PYTHONPATH": str(tmp_path)})
    assert broken.returncode == 1 and "No module named 'no_such_dependency'" in broken.stderr


def test_plugins_of_installed_packages_load_through_their_entry_point(tmp_path):
    """An installed package names its module in the group bindiff.plugins."""
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    info = tmp_path / "my_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[bindiff.plugins]\nmine = my_plugin\n")
    shown = _bindiff("show-config", "task=toy", env_extra={"PYTHONPATH": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    assert "task: toy" in shown.stdout


def test_registering_again_replaces_the_same_definition_and_refuses_another(monkeypatch):
    from bindiff.core import denoisers
    from bindiff.core.denoisers import register_denoiser

    monkeypatch.setattr(denoisers, "DENOISERS", dict(denoisers.DENOISERS))
    namespace: dict = {}
    for _ in range(2):  # a notebook cell run twice: a new class object of the same name
        exec("from torch import nn\nclass Resmlp(nn.Module):\n    pass\n", namespace)
        register_denoiser("resmlp", namespace["Resmlp"])
    assert denoisers.DENOISERS["resmlp"] is namespace["Resmlp"]
    with pytest.raises(ValueError, match=r"a denoiser named 'resmlp' is already registered \(Resmlp\)"):
        register_denoiser("resmlp", Linear)


def test_two_different_lambdas_under_one_name_are_not_the_same_definition(monkeypatch):
    """Every lambda of a module has the qualified name `<lambda>`: a second model replaced the first."""
    from bindiff.tasks.recommendation import models
    from bindiff.tasks.recommendation.baselines import EASE, Popularity
    from bindiff.tasks.recommendation.models import RecommenderKind, register_model

    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    register_model(RecommenderKind("mine", lambda c, d, training=False: Popularity(d), fitting="closed_form"))
    with pytest.raises(ValueError, match="a model named 'mine' is already registered"):
        register_model(RecommenderKind("mine", lambda c, d, training=False: EASE(d), fitting="closed_form"))


def test_a_registered_recommendation_model_trains_and_scores_from_a_recipe(monkeypatch, tmp_path):
    """A model of one's own through `register_model`, with the default scorer (its `score`)."""
    from bindiff.config import load_recipe
    from bindiff.tasks import registry
    from bindiff.tasks.recommendation import models
    from bindiff.tasks.recommendation.models import RecommenderKind, register_model
    from test_resume import overrides, write_ratings

    class ItemCounts(nn.Module):
        """Items ranked by how many training users have them; fitted in closed form."""

        def __init__(self, n_items: int, smoothing: float = 0.0):
            super().__init__()
            self.register_buffer("counts", torch.zeros(n_items))
            self.smoothing = smoothing

        def fit_closed_form(self, train, evaluate_valid):
            self.counts.copy_(torch.from_numpy(train.sum(axis=0).A1).float() + self.smoothing)
            return {"valid": evaluate_valid(self)}

        def score(self, x):
            return self.counts.expand(x.shape[0], -1)

    monkeypatch.setattr(models, "MODELS", dict(models.MODELS))
    build = lambda config, dim, training=False: ItemCounts(dim, **config["model"]["params"])  # noqa: E731
    register_model(RecommenderKind("itemcounts", build, fitting="closed_form", params_of=ItemCounts))
    with pytest.raises(ValueError, match="a model named 'itemcounts' is already registered"):
        register_model(RecommenderKind("itemcounts", lambda c, d, training=False: None, params_of=Linear))
    csv = write_ratings(tmp_path / "ratings.csv")
    config = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "ml1m.yaml",
                         [*overrides(csv, tmp_path / "runs"), "model.kind=itemcounts", "model.params={smoothing: 1.0}",
                          "train.epochs=1"])
    run = registry.train(config)
    popularity = registry.train(load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "ml1m.yaml",
                                            [*overrides(csv, tmp_path / "pop"), "model.kind=popularity",
                                             "train.epochs=1"]))
    assert run.metrics["test"] == popularity.metrics["test"]  # the same ranking as bindiff's own popularity


def test_a_task_is_registered_only_with_an_eval_select_and_sections_of_its_own(monkeypatch):
    from bindiff.config import schema
    from bindiff.config.keys import key
    from bindiff.tasks import registry
    from bindiff.tasks.base import Task

    monkeypatch.setattr(schema, "TASKS", dict(schema.TASKS))
    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))

    class Toy(Task):
        name = "toy"

    with pytest.raises(ValueError, match="task 'toy': its sections need an eval section with a select key"):
        registry.register_task(Toy(), {"data": {}})
    select = {"eval": {"select": key(str, "loss", "metric")}}
    with pytest.raises(ValueError, match=r"task 'toy': sections \['train'\] are every task's"):
        registry.register_task(Toy(), {**select, "train": {}})

    class Recommend(Task):
        name = "recommend"

    with pytest.raises(ValueError, match="a task named 'recommend' is already registered"):
        registry.register_task(Recommend(), select)
    registry.register_task(Toy(), select)
    assert registry.get_task("toy").name == "toy" and schema.schema_for("toy")["eval"]["select"].default == "loss"
