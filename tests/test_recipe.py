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
        ("train.lrate=1", "unknown key 'train.lrate' (did you mean 'train.lr'?). Valid keys: train.optimizer, train.lr,"),
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


def test_a_missing_file_in_a_projects_recipes_folder_is_not_swapped_for_a_shipped_one(tmp_path, monkeypatch):
    from bindiff.config.recipe import find_recipe

    with pytest.raises(RecipeError, match="recipes/ml1m.yaml: recipe file not found"):
        find_recipe(tmp_path / "project" / "recipes" / "ml1m.yaml")
    monkeypatch.chdir(tmp_path)  # the README's `recipes/ml1m.yaml`, from a folder without one, is ours
    assert find_recipe("recipes/ml1m.yaml").read_text() == (RECIPES / "ml1m.yaml").read_text()
    assert find_recipe("ml1m").read_text() == (RECIPES / "ml1m.yaml").read_text()


def test_defaults_and_hash_are_stable():
    assert load_recipe(None) == defaults()
    a = load_recipe(RECIPES / "ml1m.yaml")
    b = load_recipe(RECIPES / "ml1m.yaml")
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_recipe(RECIPES / "ml1m.yaml", ["seed=1"]))
    assert yaml.safe_load(dump_recipe(a)) == a


@pytest.mark.parametrize("override, message", [
    ("seed=010", "key 'seed' must be of type integer, got '010'"),  # YAML 1.1: octal 8
    ("train.epochs=1:30", "key 'train.epochs' must be of type integer, got '1:30'"),  # YAML 1.1: base 60, 90
    ("train.lr=0x10", "key 'train.lr' must be of type number, got '0x10'"),  # YAML 1.1: 16
    ("denoiser.params.hidden=!!binary aGk=", "YAML tags are not read"),  # an MLP of widths [104, 105]
])
def test_yaml_1_1_number_spellings_and_tags_are_not_read_as_numbers(override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(RECIPES / "ml1m.yaml", [override])


def test_one_character_values_that_are_yaml_syntax_mean_the_character():
    for sep in "#|!&*":  # a comment gave null; `|` an empty block, refused as ''
        assert load_recipe(RECIPES / "ml1m.yaml", [f"data.sep={sep}"])["data"]["sep"] == sep
    assert load_recipe(RECIPES / "ml1m.yaml", ["data.min_rating=~"])["data"]["min_rating"] is None
    assert load_recipe(RECIPES / "ml1m.yaml", ["train.epochs=1_000", "seed=0"])["train"]["epochs"] == 1000


def test_a_deep_override_of_a_free_section_keeps_its_other_entries():
    base = load_recipe(RECIPES / "ml1m.yaml")["compare"]["spaces"]["binomial"]
    config = load_recipe(RECIPES / "ml1m.yaml", ["compare.spaces.binomial.train.lr.float=[0.001, 0.002]"])
    space = config["compare"]["spaces"]["binomial"]
    assert {k: v for k, v in space.items() if k != "train"} == base  # the other entries, unchanged
    assert space["train"] == {"lr": {"float": [0.001, 0.002]}}  # and the new one (it replaces train.lr)


def test_the_value_at_the_end_of_an_override_replaces_the_entry_there():
    from bindiff.tasks.recommendation.tune import parse_space

    lr_of = lambda config: {d.key: d for d in parse_space(config, "r.yaml")}["train.lr"]  # noqa: E731
    twice = load_recipe(RECIPES / "ml1m.yaml", ["tune.space.train.lr={float: [0.0003, 0.01], log: true}",
                                                "tune.space.train.lr={float: [0.001, 0.003]}"])
    assert (lr_of(twice).low, lr_of(twice).high, lr_of(twice).log) == (0.001, 0.003, False)  # not merged: no log
    whole = load_recipe(RECIPES / "ml1m.yaml", ["tune.space={train.lr: {choices: [0.001, 0.01]}}"])
    assert lr_of(whole).choices == (0.001, 0.01) and lr_of(whole).kind == "choices"
    assert {d.key for d in parse_space(whole, "r.yaml")} == {d.key for d in parse_space(
        load_recipe(RECIPES / "ml1m.yaml"), "r.yaml")}  # a mapping at the section: entry by entry


@pytest.mark.parametrize("override, message", [
    ("eval.select=NDCG@100", "eval.select: write 'NDCG@100' as 'ndcg@100'"),  # a KeyError after epoch 1
    ("eval.metrics=[recall@20, ndcg@0100]", "eval.metrics: write 'ndcg@0100' as 'ndcg@100'"),
])
def test_metric_names_are_refused_unless_written_as_reports_name_them(override, message):
    from bindiff.tasks.registry import check_recipe

    with pytest.raises(RecipeError, match=message):
        check_recipe(load_recipe(RECIPES / "ml1m.yaml", [override]))


@pytest.mark.parametrize("recipe, overrides, message", [
    ("ml1m.yaml", ["task=[masks]"], "key 'task' must be one of recommend, masks, segmentation, got ['masks']"),
    ("ml1m.yaml", ["tune.seed=4294967296"], "key 'tune.seed' must lie in 0 .. 2**32 - 1"),  # optuna's traceback
    ("hippocampus_masks.yaml", ["augment.flip_axes=[1.0]"], "must list distinct axes among 0, 1, 2"),
    ("hippocampus_masks.yaml", ["augment.flip_axes=[0, 0]"], "must list distinct axes among 0, 1, 2"),
    # no state of the process flips more than half the voxels: 0.6 settled on t = T without a word
    ("hippocampus_masks.yaml", ["evaluations.denoising.flip=0.6"], "key 'evaluations.denoising.flip' must lie in (0, 0.5]"),
    ("hippocampus_masks.yaml", ["diffusion.schedule=bogus"], "diffusion.schedule: unknown schedule 'bogus'"),
    ("hippocampus_masks.yaml", ["denoiser.params.bogus=1"], "denoiser 'unet' has no parameter(s) ['bogus']"),
    ("hippocampus_masks.yaml", ["labels.foreground=[3]"], "labels.foreground is read with preset custom only"),
    ("hippocampus_masks.yaml", ["labels.preset=custom", "labels.foreground=[1]", "labels.region=anterior"],
     "labels.region 'anterior': a custom preset has one region"),
    ("hippocampus_segmentation.yaml", ["denoiser.params.channels=[8.5]"], "channels[0] must be an integer >= 1"),
    ("hippocampus_segmentation.yaml", ["denoiser.params.coords=yes please"], "coords must be true or false"),
])
def test_show_config_refuses_what_train_would_refuse_after_reading_the_data(recipe, overrides, message):
    from typer.testing import CliRunner

    from bindiff.cli import app

    result = CliRunner().invoke(app, ["show-config", str(RECIPES / recipe), *overrides])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_config_edited_in_python_is_checked_before_training(tmp_path):
    import numpy as np

    from bindiff.tasks.recommendation.job import train_recommender

    config = load_recipe(RECIPES / "ml1m.yaml", ["data.dataset=synthetic:tiny", f"output.root={tmp_path}"])
    for key, value, message in [("epochs", 1.0, "key 'train.epochs' must be of type integer, got 1.0"),
                                ("typo", 3, "unknown key 'train.typo'"),
                                ("lr", np.float64(0.01), "is not a plain YAML value")]:
        edited = {**config, "train": {**config["train"], key: value}}
        with pytest.raises(RecipeError, match=message):
            train_recommender(edited)
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_a_stored_masks_run_with_a_flip_rate_above_a_half_still_loads(tmp_path):
    """The (0, 0.5] bound on evaluations.denoising.flip is a recipe check: a run stored when 0.6
    was accepted reads back (and its other evaluations run), while a recipe or an override asking
    for it is refused."""
    from bindiff.config import dump_recipe, load_recipe
    from bindiff.tasks.base import read_run_config
    from bindiff.tasks.masks.job import TASK

    config = load_recipe(str(RECIPES / "hippocampus_masks.yaml"), [])
    stored = dump_recipe(config).replace("flip: 0.05", "flip: 0.6")
    assert "flip: 0.6" in stored
    (tmp_path / "config.yaml").write_text(stored)
    read = read_run_config(tmp_path)
    assert read["evaluations"]["denoising"]["flip"] == 0.6
    with pytest.raises(RecipeError, match=r"evaluations.denoising.flip' must lie in \(0, 0.5\].*got 0.6"):
        TASK.check_recipe(read)


@pytest.mark.parametrize("override, message", [
    ("train.lr.x=1", "key 'train.lr' is a value, not a section: 'train.lr.x' does not exist"),  # an object's repr
    ("eval.metrics.0=recall@5", "key 'eval.metrics' is a value, not a section: 'eval.metrics.0' does not exist"),
    ("trian.lr=1", "unknown key 'trian' (did you mean 'train'?). Valid keys: name, seed, task,"),
    ("denoiser.param.x=1", "unknown key 'denoiser.param' (did you mean 'denoiser.params'?)"),
    ("train.foo=1", "unknown key 'train.foo'. Valid keys: train.optimizer,"),  # nothing near enough: no guess
    ("output.r=1", "unknown key 'output.r' (did you mean 'output.root'?)"),  # a key of its section, not 'output'
    ("evaluations.denoisng.flip=0.1", "unknown key 'evaluations.denoisng' (did you mean 'evaluations.denoising'?)"),
])
def test_a_path_past_a_value_and_a_typo_are_named(override, message):
    recipe = "hippocampus_masks.yaml" if override.startswith("evaluations") else "ml1m.yaml"
    with pytest.raises(RecipeError) as refused:
        load_recipe(RECIPES / recipe, [override])
    assert message in str(refused.value)


def test_text_after_a_yaml_comment_mark_is_not_dropped_without_a_word():
    with pytest.raises(RecipeError, match="' #' starts a YAML comment"):
        load_recipe(RECIPES / "ml1m.yaml", ["output.root=/tmp/runs #2"])  # was /tmp/runs
    assert load_recipe(RECIPES / "ml1m.yaml", ["output.root='/tmp/runs #2'"])["output"]["root"] == "/tmp/runs #2"
    assert load_recipe(RECIPES / "ml1m.yaml", ["name=x#y"])["name"] == "x#y"
    models = load_recipe(RECIPES / "ml1m.yaml", ['compare.models.x=[model.kind=ease, "a #b"]'])["compare"]["models"]
    assert models["x"] == ["model.kind=ease", "a #b"]  # a # inside quotes is text
    # a date stays text (YAML 1.1 made it a date object, refused by every key)
    assert load_recipe(RECIPES / "ml1m.yaml", ["name=2024-01-01"])["name"] == "2024-01-01"
    for value, read in (("no", "False"), ("[a, b]", r"\['a', 'b'\]")):
        with pytest.raises(RecipeError, match=rf"must be of type string, got {read} \(quote the value to mean it "
                                              r"as text\)"):
            load_recipe(RECIPES / "ml1m.yaml", [f"name={value}"])
    assert load_recipe(RECIPES / "ml1m.yaml", ["name='2024-01-01'"])["name"] == "2024-01-01"
