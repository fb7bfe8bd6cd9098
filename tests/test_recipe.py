from pathlib import Path

import pytest
import yaml

from bindiff.config import RecipeError, config_hash, defaults, dump_recipe, load_recipe, recipe_from_text

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.parametrize("name", ["ml1m.yaml", "ml1m_diffrec.yaml"])
def test_shipped_recipes_load_and_round_trip(name):
    config = load_recipe(RECIPES / name)
    assert config["name"] == Path(name).stem
    assert recipe_from_text(dump_recipe(config)) == config


def test_every_recipe_key_is_commented_with_its_type():
    for path in RECIPES.glob("*.yaml"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and not stripped.endswith(":") and ":" in stripped:
                assert "# (" in line, f"{path.name}:{number} has no '(type) meaning' comment: {line!r}"


def test_overrides_are_parsed_as_yaml_and_nested():
    config = load_recipe(RECIPES / "ml1m.yaml", ["train.lr=3e-4", "denoiser.params.hidden=[200, 200]",
                                                "data.min_rating=null", "inference.add_noise=true"])
    assert config["train"]["lr"] == pytest.approx(3e-4)
    assert config["denoiser"]["params"]["hidden"] == [200, 200]
    assert config["data"]["min_rating"] is None and config["inference"]["add_noise"] is True
    free = load_recipe(RECIPES / "ml1m.yaml", ["diffusion.schedule_params.beta_end=2e-2"])
    assert free["diffusion"]["schedule_params"]["beta_end"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrate=1", "unknown key 'train.lrate'. Valid keys: train.optimizer, train.lr,"),
        ("trian.lr=1", "unknown key 'trian'"),
        ("train.lr=-0.1", "key 'train.lr' must be > 0, got -0.1"),
        ("diffusion.steps=0", "key 'diffusion.steps' must lie in 1..100000 (its tables are computed at once), got 0"),
        ("diffusion.steps=2.5", "key 'diffusion.steps' must be of type integer, got 2.5"),
        ("seed=yes", "key 'seed' must be of type integer, got True"),
        ("train.optimizer=sgd", "must be 'adam' or 'adamw'"),
        ("split.holdout_fraction=1.5", "must lie in (0, 1)"),
        ("train.lr", "is not of the form key=value"),
        ("train.lr=[1", "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPES / "ml1m.yaml", [override])
    assert message in str(info.value) and override in str(info.value)


def test_bad_recipe_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: 3\n  warmup: 10\n")
    with pytest.raises(RecipeError, match=r"bad.yaml: unknown key 'train.warmup'"):
        load_recipe(bad)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(RecipeError, match="empty.yaml: recipe is empty"):
        load_recipe(tmp_path / "empty.yaml")
    with pytest.raises(RecipeError, match="missing.yaml: recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "code.yaml").write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "code.yaml")


def test_defaults_and_hash_are_stable():
    assert load_recipe(None) == defaults()
    a = load_recipe(RECIPES / "ml1m.yaml")
    b = load_recipe(RECIPES / "ml1m.yaml")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_recipe(RECIPES / "ml1m.yaml", ["seed=1"]))
    assert yaml.safe_load(dump_recipe(a)) == a
