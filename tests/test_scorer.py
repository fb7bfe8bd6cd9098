"""The recipe's inference section turned into a scorer: noise, ensembles, refusals."""

import pytest
import torch

from bindiff.config import RecipeError, load_recipe
from bindiff.core import BernoulliProcess, BinomialDiffusion, MLPDenoiser, get_schedule
from bindiff.tasks.recommendation.models import make_scorer

from test_cli_pipeline import RECIPE


def _model() -> BinomialDiffusion:
    torch.manual_seed(0)
    return BinomialDiffusion(MLPDenoiser(10, hidden=[8], time_dim=4),
                             BernoulliProcess(get_schedule("linear", 3, beta_start=0.1, beta_end=0.3))).eval()


def _history() -> torch.Tensor:
    return (torch.rand(5, 10, generator=torch.Generator().manual_seed(1)) < 0.4).float()


def test_one_step_with_noise_denoises_a_noised_history():
    model, x = _model(), _history()
    config = load_recipe(RECIPE, ["inference.add_noise=true", "inference.t=2"])
    scores = make_scorer(model, config, seed=3)(x)
    generator = torch.Generator().manual_seed(3)
    expected = model.predict_x0(model.process.add_noise(x, 2, generator=generator), 2)
    assert torch.equal(scores, expected)


@pytest.mark.parametrize("mode", ["one_step", "reverse"])
def test_an_ensemble_is_the_mean_of_successive_noisy_scores(mode):
    model, x = _model(), _history()
    single = make_scorer(model, load_recipe(RECIPE, [f"inference.mode={mode}", "inference.add_noise=true",
                                                      "inference.t=2"]), seed=4)
    draws = [single(x) for _ in range(3)]  # one generator: each call continues the stream
    assert not torch.equal(draws[0], draws[1])
    ensemble = make_scorer(model, load_recipe(RECIPE, [f"inference.mode={mode}", "inference.add_noise=true",
                                                        "inference.t=2", "inference.ensemble=3"]), seed=4)
    torch.testing.assert_close(ensemble(x), sum(draws) / 3, rtol=0, atol=1e-7)


def test_an_ensemble_of_a_deterministic_scorer_is_refused():
    with pytest.raises(RecipeError, match=r"inference.ensemble = 4 would average identical scores"):
        make_scorer(_model(), load_recipe(RECIPE, ["inference.ensemble=4"]), seed=0)


@pytest.mark.parametrize("visits, random", [(["inference.t=1"], False), (["inference.t=3", "inference.steps=1"], False),
                                            (["inference.t=3", "inference.steps=2"], True), (["inference.t=3"], True)])
def test_a_sampled_reverse_run_is_random_only_when_it_takes_a_step(visits, random):
    """A reverse run that visits one time ends on p̂ without drawing a bit: two seeds give the same
    scores, so it is deterministic (an ensemble of it was accepted, and its export refused)."""
    from bindiff.tasks.recommendation.models import draws_random_bits

    model, x = _model(), _history()
    config = load_recipe(RECIPE, ["inference.mode=reverse", "inference.sample=sample", *visits])
    differ = not torch.equal(make_scorer(model, config, seed=1)(x), make_scorer(model, config, seed=2)(x))
    assert differ is random and draws_random_bits(config) is random
    ensemble = load_recipe(RECIPE, ["inference.mode=reverse", "inference.sample=sample", *visits, "inference.ensemble=2"])
    if random:
        make_scorer(model, ensemble, seed=1)
    else:
        with pytest.raises(RecipeError, match="would average identical scores"):
            make_scorer(model, ensemble, seed=1)
