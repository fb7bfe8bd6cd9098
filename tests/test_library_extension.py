"""bindiff extended as a library without editing it: a loop of one's own over the scheduler, a
denoiser or model of one's own, and the messages such extensions meet (an eleventh audit pass)."""

from __future__ import annotations

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


def test_a_denoiser_returning_another_shape_is_named(registered):
    from bindiff.training.builders import build_diffusion

    model = build_diffusion(_recipe("denoiser.name=wrong"), 6)
    with pytest.raises(ValueError, match=r"_WrongShape returned logits of shape \(3, 2\) for x_t of shape \(3, 6\)"):
        model(torch.ones(3, 6))


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
