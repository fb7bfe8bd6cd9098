"""Recipe validation at its edges, the command line's wiring, progress and shell completion: tests
that kill the mutants a scripted mutation pass left alive in bindiff/config/keys.py,
bindiff/config/schema.py, the three task schemas (bindiff/tasks/*/schema.py), bindiff/cli.py,
bindiff/progress.py and bindiff/completion.py. Each expected value is written by hand from the
documented rule (a key's doc string, docs/recipes.md) or is what the command line was given; none is
read back from the code under test. Each test's docstring names the mutants it kills as file:line
(before -> after); file names are under bindiff/. The command line's tests replace the library modules
behind each command by recorders, so the file imports no torch and runs in about a second.

Equivalent mutants (no input tells them apart from the code):

- config/schema.py:28 `value not in ("", ".", "..")` -> `value not in ("", ".")`: ".." (and ".") end
  in a dot, which `value[-1] not in ". "` on the next line refuses anyway.
- cli.py:304 `f"{counts[0]} items each"` -> `f"{counts[-1]} ..."`: that branch runs only when
  `len(counts) == 1`, where the first value is the last.
- cli.py:654 `sys.exit(err.exit_code)` -> `sys.exit(2)` for a ClickException that is not a UsageError:
  every error click or typer raises for bindiff's commands is a UsageError (a missing, unknown or invalid
  argument or option, NoArgsIsHelpError), handled on the lines before with exit code 2; the other
  ClickExceptions (click's FileError) come from click.File / click.Path parameters that open or check
  files, which no bindiff command declares, and typer.Abort is handled on its own.
- completion.py:18 `if name.startswith(incomplete)` dropped and completion.py:81
  `if key.startswith(incomplete)` dropped: typer's completion wrapper keeps only the values that start
  with what was typed, so `bindiff <Tab>` offers the same list (checked through click's bash protocol,
  `_BINDIFF_COMPLETE=complete_bash`, with each mutant). The in-process tests below still catch both,
  as they check the functions' own documented contract.
"""

from __future__ import annotations

import pytest

from bindiff.config import RecipeError, load_recipe


def _refusal(overrides: list[str]) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(None, overrides)
    return str(caught.value)


def _value(config: dict, dotted: str):
    for part in dotted.split("."):
        config = config[part]
    return config


# -- values at the edge of each key's range: accepted as given ----------------------------------------------
ACCEPTED = [
    # (task, override, the value the resolved recipe holds)
    ("recommend", "seed=0", 0),
    ("recommend", "seed=4294967295", 2 ** 32 - 1),
    ("recommend", "split.seed=4294967295", 2 ** 32 - 1),
    ("recommend", "tune.seed=4294967295", 2 ** 32 - 1),
    ("recommend", "train.lr=1e-9", 1e-9),
    ("recommend", "train.weight_decay=0", 0),
    ("recommend", "train.batch_size=1", 1),
    ("recommend", "diffusion.steps=1", 1),
    ("recommend", "diffusion.steps=100000", 100_000),
    ("recommend", "diffusion.hybrid_coeff=0", 0),
    ("recommend", "diffusion.dice_weight=0", 0),
    ("recommend", "diffusion.denoiser_input=flat_posterior", "flat_posterior"),
    ("recommend", "diffusion.train_t_max=null", None),
    ("recommend", "diffusion.reverse_kernel=plugin", "plugin"),
    ("recommend", "denoiser.members=1", 1),
    ("recommend", "denoiser.members=64", 64),
    ("recommend", "train.optimizer=adamw", "adamw"),
    ("recommend", "train.device=auto", "auto"),
    ("recommend", "train.threads=1", 1),
    ("recommend", "train.threads=4096", 4096),
    ("recommend", "train.threads=null", None),
    ("recommend", "train.precision=bf16", "bf16"),
    ("recommend", "train.warmup_steps=0", 0),
    ("recommend", "train.lr_decay=cosine", "cosine"),
    ("recommend", "train.clip_grad_norm=null", None),
    ("recommend", "train.clip_grad_norm=0.5", 0.5),
    ("recommend", "train.ema=0", 0),
    ("recommend", "train.ema=0.999", 0.999),
    ("recommend", "output.progress=null", None),
    ("recommend", "output.progress=true", True),
    ("recommend", "output.logger=tensorboard", "tensorboard"),
    ("recommend", "data.k_core=0", 0),
    ("recommend", "data.sep=;", ";"),
    ("recommend", "data.user_col=0", 0),
    ("recommend", "split.kind=predefined", "predefined"),
    ("recommend", "split.n_valid_users=1", 1),
    ("recommend", "split.holdout_items=1", 1),
    ("recommend", "split.valid_fraction=0.1", 0.1),
    ("recommend", "split.holdout=latest", "latest"),
    ("recommend", "split.min_items_to_split=2", 2),
    ("recommend", "inference.mode=reverse", "reverse"),
    ("recommend", "inference.t=1", 1),
    ("recommend", "inference.steps=1", 1),
    ("recommend", "inference.sample=sample", "sample"),
    ("recommend", "eval.empty_users=zero", "zero"),
    ("recommend", "tune.sampler=random", "random"),
    ("masks", "data.layout=files", "files"),
    ("masks", "labels.preset=custom", "custom"),
    ("masks", "labels.allowed=[1, 2]", [1, 2]),
    ("masks", "grid.shape=[8, 8]", [8, 8]),  # 2-D slices
    ("masks", "grid.shape=[1, 1, 1]", [1, 1, 1]),
    ("masks", "grid.mode=resample", "resample"),
    ("masks", "grid.margin=0", 0),
    ("masks", "grid.slice_axis=2", 2),
    ("masks", "split.n_valid=1", 1),
    ("masks", "split.n_valid=0.2", 0.2),
    ("masks", "augment.flip_axes=[0, 2]", [0, 2]),
    ("masks", "timesteps.low_share=1", 1),
    ("masks", "timesteps.low_share=0", 0),
    ("masks", "timesteps.top_share=0", 0),
    ("masks", "timesteps.top_share=1", 1),
    ("masks", "eval.select=neg_loss", "neg_loss"),
    ("masks", "eval.part=valid", "valid"),
    ("masks", "eval.panels=0", 0),
    ("masks", "evaluations.run=[generation]", ["generation"]),
    ("masks", "evaluations.completion.hide=[random_slices, box]", ["random_slices", "box"]),
    ("masks", "evaluations.completion.box_position=random", "random"),
    ("masks", "evaluations.denoising.median_size=1", 1),
    ("masks", "evaluations.denoising.median_size=15", 15),
    ("masks", "evaluations.generation.volume=training", "training"),
    ("masks", "evaluations.generation.mirror_axis=0", 0),
    ("segmentation", "images.channels=[Flair_subtrMeanDivStd, T1c]", ["Flair_subtrMeanDivStd", "T1c"]),
    ("segmentation", "images.spacing=median", "median"),
    ("segmentation", "images.spacing=[1, 1.5, 2]", [1, 1.5, 2]),
    ("segmentation", "eval.part=valid", "valid"),
    ("segmentation", "eval.panels=0", 0),
    ("segmentation", "baseline.dice_weight=0", 0.0),
    ("segmentation", "segmentation.average=trajectory", "trajectory"),
    ("segmentation", "segmentation.decision=expected_dice", "expected_dice"),
    ("segmentation", "segmentation.uncertainty=variance", "variance"),
]


@pytest.mark.parametrize("task, override, expected", ACCEPTED, ids=[a[1] for a in ACCEPTED])
def test_a_value_at_the_edge_of_its_range_is_accepted_as_given(task, override, expected):
    """A valid value refused is as wrong as a wrong one accepted. Kills:
    config/schema.py:45 `1 <= v <= 100_000` -> `1 <= v < 100_000` and -> `1 < v <= 100_000`;
    config/schema.py:49 hybrid_coeff `non_negative` -> `positive`; config/schema.py:69 `1 <= v <= 64` ->
    `1 <= v < 64`; config/schema.py:79 `("cpu", "cuda", "auto")` -> `("cpu", "cuda")`; config/schema.py:81
    `1 <= v <= 4096` -> `1 <= v < 4096`; tasks/recommendation/schema.py:39 user_col `(str, int)` -> `(str,)`;
    :72 `("random", "latest")` -> `("random",)`; :91 `("one_step", "reverse")` -> `("one_step",)`; :95
    `("mean", "sample")` -> `("mean",)`; :116 `("tpe", "random")` -> `("tpe",)`; tasks/masks/schema.py:23
    `len(v) in (2, 3)` -> `len(v) in (3,)`; :56 margin `non_negative` -> `at_least_one`; :60 n_valid
    `(int, float)` -> `(int,)`; :71 low_share `0 <= v <= 1` -> `0 <= v < 1`; :116 `1 <= v <= 15` ->
    `1 <= v < 15` and -> `1 < v <= 15`; tasks/segmentation/schema.py:34 `v == "median" or` dropped; :45
    `("test", "valid")` -> `("test",)`; :49 panels `v >= 0` -> `v > 0`; :53 baseline.dice_weight `v >= 0` ->
    `v > 0`; :65 `v in DECISIONS` -> `v == "threshold"`."""
    config = load_recipe(None, [f"task={task}", override])
    got = _value(config, override.split("=", 1)[0])
    assert got == expected and type(got) is type(expected)


# -- values just past each key's range: one line naming the key, its rule and the value ------------------------
_CHANNELS = ("must be null or a non-empty list of distinct file names without folder or suffix "
             "(Flair_subtrMeanDivStd, not ../x/Flair or Flair.nii.gz), got ")
_SPACING = "must be null, 'median' or three positive numbers [x, y, z] in mm, got "
REFUSED = [
    # (task, override, what the line says after "key '<key>' ")
    ("recommend", "seed=4294967296", "must lie in 0 .. 2**32 - 1, got 4294967296"),
    ("recommend", "seed=-1", "must lie in 0 .. 2**32 - 1, got -1"),
    ("recommend", "split.seed=4294967296", "must lie in 0 .. 2**32 - 1, got 4294967296"),
    ("recommend", "tune.seed=4294967296", "must lie in 0 .. 2**32 - 1, got 4294967296"),
    ("recommend", "train.lr=0", "must be > 0, got 0"),
    ("recommend", "train.weight_decay=-0.5", "must be >= 0, got -0.5"),
    ("recommend", "train.batch_size=0", "must be >= 1, got 0"),
    ("recommend", "train.epochs=0", "must be >= 1, got 0"),
    ("recommend", "train.patience=0", "must be >= 1, got 0"),
    ("recommend", "diffusion.steps=0", "must lie in 1..100000 (its tables are computed at once), got 0"),
    ("recommend", "diffusion.steps=100001", "must lie in 1..100000 (its tables are computed at once), got 100001"),
    ("recommend", "diffusion.hybrid_coeff=-1", "must be >= 0, got -1"),
    ("recommend", "diffusion.denoiser_input=bits", "must be 'state' or 'flat_posterior', got 'bits'"),
    ("recommend", "denoiser.members=0", "must lie in 1..64, got 0"),
    ("recommend", "denoiser.members=65", "must lie in 1..64, got 65"),
    ("recommend", "train.threads=0", "must lie in 1..4096, got 0"),
    ("recommend", "train.threads=4097", "must lie in 1..4096, got 4097"),
    ("recommend", "train.warmup_steps=-1", "must be >= 0, got -1"),
    ("recommend", "train.clip_grad_norm=0", "must be > 0, got 0"),
    ("recommend", "train.ema=1", "must lie in [0, 1), got 1"),
    ("recommend", "data.k_core=-1", "must be >= 0, got -1"),
    ("recommend", "data.sep=ab", "must be one character, or null, got 'ab'"),
    ("recommend", "split.n_valid_users=0", "must be >= 1, got 0"),
    ("recommend", "split.n_test_users=0", "must be >= 1, got 0"),
    ("recommend", "split.holdout_fraction=0.0", "must lie in (0, 1), got 0.0"),
    ("recommend", "split.holdout_fraction=1.0", "must lie in (0, 1), got 1.0"),
    ("recommend", "split.holdout_items=0", "must be null or >= 1, got 0"),
    ("recommend", "split.valid_fraction=0.0", "must be null or in (0, 1), got 0.0"),
    ("recommend", "split.valid_fraction=1.0", "must be null or in (0, 1), got 1.0"),
    ("recommend", "split.min_items_to_split=1", "must be >= 2 (one item to fold in, one to hold out), got 1"),
    ("recommend", "inference.t=0", "must be >= 1, got 0"),
    ("recommend", "inference.steps=0", "must be >= 1, got 0"),
    ("recommend", "inference.ensemble=0", "must be >= 1, got 0"),
    ("recommend", "eval.batch_size=0", "must be >= 1, got 0"),
    ("recommend", "compare.seeds=0", "must be >= 1, got 0"),
    ("recommend", "tune.trials=0", "must be >= 1, got 0"),
    ("masks", "data.layout=nifti", "must be one of auto, msd, brats2015, brats2021, files, got 'nifti'"),
    ("masks", "data.max_cases=0", "must be >= 1, got 0"),
    ("masks", "labels.allowed=[1, true]", "must list integers, got [1, True]"),
    ("masks", "labels.foreground=[a]", "must list integers, got ['a']"),
    ("masks", "grid.shape=[8]", "must list 2 or 3 positive integers, got [8]"),
    ("masks", "grid.shape=[8, 8, 8, 8]", "must list 2 or 3 positive integers, got [8, 8, 8, 8]"),
    ("masks", "grid.shape=[0, 8, 8]", "must list 2 or 3 positive integers, got [0, 8, 8]"),
    ("masks", "grid.shape=[true, 8, 8]", "must list 2 or 3 positive integers, got [True, 8, 8]"),
    ("masks", "grid.margin=-1", "must be >= 0, got -1"),
    ("masks", "grid.slice_axis=3", "must be one of 0, 1, 2, got 3"),
    ("masks", "split.n_valid=0", "must be a count >= 1 or a fraction in (0, 1), got 0"),
    ("masks", "split.n_valid=1.0", "must be a count >= 1 or a fraction in (0, 1), got 1.0"),
    ("masks", "split.n_test=0.0", "must be a count >= 1 or a fraction in (0, 1), got 0.0"),
    ("masks", "augment.flip_axes=[true]", "must list distinct axes among 0, 1, 2, got [True]"),
    ("masks", "augment.flip_axes=[1.0]", "must list distinct axes among 0, 1, 2, got [1.0]"),
    ("masks", "augment.flip_axes=[0, 0]", "must list distinct axes among 0, 1, 2, got [0, 0]"),
    ("masks", "augment.flip_axes=[3]", "must list distinct axes among 0, 1, 2, got [3]"),
    ("masks", "augment.shifts=-1", "must be >= 0, got -1"),
    ("masks", "timesteps.low_share=1.5", "must lie in [0, 1], got 1.5"),
    ("masks", "timesteps.top_share=-0.1", "must lie in [0, 1], got -0.1"),
    ("masks", "timesteps.low_max=0", "must be >= 1, got 0"),
    ("masks", "eval.panels=-1", "must be >= 0, got -1"),
    ("masks", "evaluations.run=[completion, completion]",
     "must list distinct values among completion, denoising, generation, got ['completion', 'completion']"),
    ("masks", "evaluations.run=[completion, painting]",
     "must list distinct values among completion, denoising, generation, got ['completion', 'painting']"),
    ("masks", "evaluations.completion.box_fraction=1.0", "must lie in (0, 1), got 1.0"),
    ("masks", "evaluations.completion.warm_t=0", "must be >= 1, got 0"),
    ("masks", "evaluations.completion.samples=0", "must be >= 1, got 0"),
    ("masks", "evaluations.completion.closing_radius=0", "must be >= 1, got 0"),
    ("masks", "evaluations.denoising.flip=1.0", "must lie in (0, 1), got 1.0"),
    ("masks", "evaluations.denoising.median_size=0", "must lie in 1..15 (a side in voxels), got 0"),
    ("masks", "evaluations.denoising.median_size=16", "must lie in 1..15 (a side in voxels), got 16"),
    ("masks", "evaluations.generation.samples=0", "must be >= 1, got 0"),
    ("masks", "evaluations.generation.mirror_axis=3", "must be one of 0, 1, 2, got 3"),
    ("segmentation", "images.channels=[]", _CHANNELS),
    ("segmentation", "images.channels=[T1, T1]", _CHANNELS),
    ("segmentation", "images.channels=[.T1]", _CHANNELS),
    ("segmentation", "images.channels=[x/T1]", _CHANNELS),
    ("segmentation", "images.channels=[T1.NII.GZ]", _CHANNELS),
    ("segmentation", "images.spacing=[1, 1]", _SPACING),
    ("segmentation", "images.spacing=[1, 1, 0]", _SPACING),
    ("segmentation", "images.spacing=[true, 1, 1]", _SPACING),
    ("segmentation", "images.spacing=mean", _SPACING),
    ("segmentation", "eval.select=neg_loss", "must be 'dice', got 'neg_loss'"),
    ("segmentation", "eval.panels=-1", "must be >= 0, got -1"),
    ("segmentation", "baseline.dice_weight=-1.0", "must be >= 0, got -1.0"),
    ("segmentation", "segmentation.samples=0", "must be >= 1, got 0"),
    ("segmentation", "segmentation.threshold=1.0", "must lie in (0, 1), got 1.0"),
    ("segmentation", "segmentation.calibration_bins=0", "must be >= 1, got 0"),
    ("segmentation", "segmentation.decision=mode", "must be 'threshold' or 'expected_dice', got 'mode'"),
]


@pytest.mark.parametrize("task, override, says", REFUSED, ids=[r[1] for r in REFUSED])
def test_a_value_past_its_range_is_refused_in_one_line_naming_the_key(task, override, says):
    """A wrong value accepted silently, or refused in words that name the wrong rule. Kills:
    config/keys.py:24 `v > 0` -> `v >= 0` (train.lr=0); config/keys.py:28 `0 < v < 1` -> `0 <= v < 1` and ->
    `0 < v <= 1`; config/schema.py:40 seed `a_seed` -> `non_negative`; :49 hybrid_coeff `non_negative` ->
    `positive` (-1 named as "must be > 0"); :75 weight_decay rule dropped; :76 batch_size `at_least_one` ->
    `non_negative`; :78 patience rule dropped; :85 warmup_steps rule dropped; :89 clip_grad_norm `positive`
    -> `non_negative`; :93 ema `0 <= v < 1` -> `0 <= v <= 1`; tasks/recommendation/schema.py:34 k_core
    rule dropped; :37 sep `len(v) == 1` -> `len(v) >= 1`; :64 holdout_items `v >= 1` -> `v >= 0`; :68
    valid_fraction `0.0 < v` -> `0.0 <= v`; :87 min_items_to_split `v >= 2` -> `v >= 1`;
    tasks/masks/schema.py:15 "must be one of " -> "must be "; :19 `and len(set(v)) == len(v)` dropped; :23
    `not isinstance(s, bool)` dropped and `s >= 1` -> `s >= 0`; :27 `not isinstance(x, bool)` dropped; :28
    `v >= 1` -> `v >= 0` and `0 < v < 1` -> `0 < v <= 1`; :46 labels.allowed rule dropped; :56 margin
    `non_negative` -> `at_least_one` (-1 named as "must be >= 1"); :66 shifts rule dropped;
    tasks/segmentation/schema.py:15 `not name.startswith(".")` dropped and `"/" not in name` dropped; :16
    `name.lower().endswith` -> `name.endswith`; :28 `bool(v)` dropped and `len(set(v)) == len(v)` dropped;
    :34 `len(v) == 3` -> `len(v) >= 2`; :35 `x > 0` -> `x >= 0` and `not isinstance(x, bool)` dropped; :42
    `v == "dice"` -> `True`; :66 threshold `fraction` -> `v > 0`."""
    key = override.split("=", 1)[0]
    value = override.split("=", 1)[1]
    message = _refusal([f"task={task}", override])
    expected = f"override '{override}': key '{key}' {says}"
    if says.endswith("got "):  # a list value: its Python spelling after "got"
        assert message.startswith(expected), message
    else:
        assert message == expected, (message, value)


# -- defaults and types as docs/recipes.md states them -------------------------------------------------------
def _documented_rows() -> dict[str, list[tuple[str, str, str]]]:
    """docs/recipes.md's key tables by task ('common' for the shared sections): (key, type, default)."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "recipes.md").read_text(encoding="utf-8")
    body = text.split("## Sections and keys", 1)[1].split("## Free-form sections", 1)[0]
    parts = re.split(r"^## Sections of the `(\w+)` task", body, flags=re.MULTILINE)
    regions = {"common": parts[0], **{parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}}
    return {region: re.findall(r"^\|\s*`([a-z_.]+)`\s*\|([^|]*)\|\s*([^|]*?)\s*\|", text, re.MULTILINE)
            for region, text in regions.items()}


_TYPE_WORDS = {"string": str, "integer": int, "number": float, "boolean": bool, "true/false": bool, "list": list,
               "null": type(None)}


@pytest.mark.parametrize("task", ["recommend", "masks", "segmentation"])
def test_every_default_and_type_is_the_one_docs_recipes_md_states(task):
    """docs/recipes.md is the independent record of each key's default and type. Kills:
    config/schema.py:44 diffusion.steps default 3 -> 4; :77 train.epochs 100 -> 50; :97 output.progress
    default null -> false (bars hidden on a terminal unless asked for); tasks/recommendation/schema.py:35
    data.download true -> false; :39 user_col `(str, int)` -> `(str,)`; :99 eval.metrics default shortened;
    :102 eval.select ndcg@100 -> recall@20; :110 compare.seeds 5 -> 3; tasks/masks/schema.py:60 split.n_valid
    `(int, float)` -> `(int,)`."""
    import re

    import yaml

    from bindiff.config.schema import FREE, schema_for

    config, schema = load_recipe(None, [f"task={task}"]), schema_for(task)
    regions = _documented_rows()
    if task == "segmentation":  # the masks task's data, labels, grid, split and timesteps, and its own sections
        shared = ("data.", "labels.", "grid.", "split.", "timesteps.")
        rows = regions["common"] + [row for row in regions["masks"] if row[0].startswith(shared)]
        rows += regions["segmentation"]
    else:
        rows = regions["common"] + regions[task]
    rows = [row for row in rows if row[0] != "task"]
    assert len(rows) > 40
    for key, kind, default in rows:
        spec, value = schema, config
        for part in key.split("."):
            spec, value = spec[part], value[part]
        if spec is FREE:
            continue
        if key == "denoiser.name":  # "`mlp` (`unet` in segmentation)"
            assert value == ("unet" if task == "segmentation" else "mlp"), (key, value)
        else:
            documented = yaml.safe_load(re.fullmatch(r"`([^`]*)`", default).group(1))
            assert value == documented and (type(value) is type(documented) or float in spec.types), \
                (task, key, value, documented)
        words = set(re.findall(r"[a-z/]+", kind)) - {"or", "of", "strings"}
        types = {_TYPE_WORDS[w] for w in words}
        held = set(spec.types) - ({int} if float in spec.types else set())
        assert held == types, (task, key, kind, spec.types)


# -- run names ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, holds", [
    ("..", False), (".", False), ("", False),
    ("a:b", False), ("a*b", False), ('a"b', False), ("a|b", False), ("a\\b", False), ("a/b", False),
    ("tab\there", False),
    ("my run", True),  # a space inside is fine
    ("run ", False), ("run.", False),  # Windows drops a trailing space or dot
    ("con", False), ("CON", False), ("Con.txt", False), ("nul.tar.gz", False), ("com1", False), ("COM9", False),
    ("lpt9", False), ("COM¹", False), ("lpt³", False), ("com0", False), ("nul .txt", False),  # Windows' rules
    ("com10", True), ("a.con", True), ("console", True), ("ml1m-ease", True), ("run.v2", True),
])
def test_a_folder_name_every_system_can_hold(name, holds):
    """Kills config/schema.py:29 `ord(c) >= 32` -> `ord(c) > 32` (a space inside refused) and
    `value[-1] not in ". "` -> `not in "."` (a trailing space, which Windows drops, allowed); :30
    `value.split(".")[0]` -> `value.split(".")[-1]` ('a.con' refused, 'Con.txt' allowed); :20
    `range(1, 10)` -> `range(1, 9)` (COM9 and LPT9 allowed)."""
    from bindiff.config.schema import is_folder_name

    assert is_folder_name(name) is holds


@pytest.mark.parametrize("name", ["a/b", "..", "x\\y"])
def test_a_stored_run_named_with_a_path_is_refused_naming_the_key(name):
    """Kills config/schema.py:38 `and "/" not in v` dropped from `name`'s rule: a stored config.yaml
    is held to the schema's rule alone (older runs keep their names), so a name holding a path was read
    as a run's name, and a folder made from it lands outside output.root."""
    from bindiff.config.recipe import recipe_from_text

    with pytest.raises(RecipeError) as caught:
        recipe_from_text(f"name: '{name}'\n", "run/config.yaml")
    assert str(caught.value) == f"run/config.yaml: key 'name' must be one folder name, not a path, got {name!r}"


# -- renamed keys -------------------------------------------------------------------------------------------
def test_a_renamed_key_is_named_with_its_new_name_in_a_recipe_and_moved_in_a_stored_run():
    """Kills config/schema.py:111 `"tasks": "evaluations"` dropped from RENAMED: a masks recipe
    written before the rename got "unknown key 'tasks'" instead of its new name, and a run stored under
    the old name no longer loaded."""
    from bindiff.config.recipe import recipe_from_text

    assert _refusal(["optimizer.decay=cosine"]) == (
        "override 'optimizer.decay=cosine': key 'optimizer' was renamed: 'optimizer.warmup_steps' is now "
        "'train.warmup_steps'; 'optimizer.decay' is now 'train.lr_decay'; 'optimizer.clip_grad_norm' is now "
        "'train.clip_grad_norm'")
    assert _refusal(["task=masks", "tasks.run=[denoising]"]) == (
        "override 'tasks.run=[denoising]': key 'tasks' was renamed: 'tasks' is now 'evaluations'")
    stored = recipe_from_text("optimizer:\n  decay: cosine\n  warmup_steps: 7\n", "old/config.yaml")
    assert stored["train"]["lr_decay"] == "cosine" and stored["train"]["warmup_steps"] == 7
    stored = recipe_from_text("task: masks\ntasks:\n  run: [denoising]\n", "old/config.yaml")
    assert stored["evaluations"]["run"] == ["denoising"]


# -- a resolved recipe is the caller's own ---------------------------------------------------------------------
def test_a_resolved_recipes_lists_are_its_own():
    """Kills config/schema.py:144 `list(spec.default)` -> `spec.default`: a list in a resolved
    recipe was the schema's default itself, so appending a metric to one recipe (compare and tune resolve
    many in one process; a library user edits the dict) changed the defaults of every later one."""
    first = load_recipe(None, [])
    first["eval"]["metrics"].append("hit@5")
    masks = load_recipe(None, ["task=masks"])
    masks["evaluations"]["run"].remove("generation")
    assert load_recipe(None, [])["eval"]["metrics"] == ["recall@20", "recall@50", "ndcg@100"]
    assert load_recipe(None, ["task=masks"])["evaluations"]["run"] == ["completion", "denoising", "generation"]


# -- progress: bars on a terminal, log lines when piped, nothing when false ------------------------------------
class _Stream:
    """A text stream that says whether it is a terminal, and keeps what is written to it."""

    def __init__(self, tty: bool):
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("progress, stderr_tty, stdout_tty, lines", [
    (None, False, True, True),    # piped stderr, whatever stdout is: one line per epoch
    (None, False, False, True),
    (None, True, False, False),   # a terminal: tqdm's bar instead
    (None, True, True, False),
    (False, False, False, False),  # switched off: nothing at all
    (True, False, False, False),   # bars asked for: tqdm draws them, no extra lines
])
def test_log_lines_follow_output_progress_and_whether_stderr_is_a_terminal(monkeypatch, progress, stderr_tty,
                                                                           stdout_tty, lines):
    """Kills progress.py:22 `progress is None and not sys.stderr.isatty()` -> `not sys.stdout.isatty()
    and progress is None`: whether to log lines was decided by stdout, so `bindiff evaluate RUN > out.json`
    on a terminal printed log lines between the bars, and `2> log` with a terminal stdout logged
    nothing."""
    from bindiff import progress as module

    monkeypatch.setattr(module.sys, "stderr", _Stream(stderr_tty))
    monkeypatch.setattr(module.sys, "stdout", _Stream(stdout_tty))
    assert module.piped_lines(progress) is lines
    assert module.log_lines({"output": {"progress": progress}}) is lines


# -- shell completion, in process ------------------------------------------------------------------------------
def _shipped_names() -> list[str]:
    """The recipe files installed with bindiff, listed from their folder (not through the code under test)."""
    from pathlib import Path

    import bindiff.recipes

    return sorted(p.stem for p in Path(bindiff.recipes.__file__).parent.glob("*.yaml"))


def test_a_recipe_completes_to_matching_names_folders_and_yaml_files_only(tmp_path, monkeypatch):
    """Kills completion.py:26 `or (entry.name.startswith(".") and not stem.startswith("."))` dropped
    (hidden files offered when nothing was typed) and completion.py:11 `(".yaml", ".yml")` -> `(".yaml",)`
    (.yml recipes not offered). It also pins completion.py:18's filter by what is typed (equivalent for
    the command: see the module docstring)."""
    from bindiff.completion import complete_recipe

    for name in ("zz_a.yaml", "zz_b.yml", "zz_c.txt", ".zz_hidden.yaml"):
        (tmp_path / name).write_text("seed: 1\n")
    (tmp_path / "zz_dir").mkdir()
    (tmp_path / "zz_dir" / "inner.yaml").write_text("seed: 1\n")
    (tmp_path / "zz_dir" / ".secret.yaml").write_text("seed: 1\n")
    monkeypatch.chdir(tmp_path)
    assert complete_recipe("zz") == ["zz_a.yaml", "zz_b.yml", "zz_dir/"]
    assert complete_recipe("zz_dir/") == ["zz_dir/inner.yaml"]
    assert complete_recipe("zz_dir/.") == ["zz_dir/.secret.yaml"]
    assert complete_recipe(".zz") == [".zz_hidden.yaml"]
    assert complete_recipe("") == _shipped_names() + ["zz_a.yaml", "zz_b.yml", "zz_dir/"]


def test_a_recipe_completes_from_the_root_folder_and_names_the_shipped_recipes_where_the_folder_is_unreadable(
        tmp_path, monkeypatch):
    """Kills completion.py:20 `Path(folder + slash or ".")` -> `Path(folder or ".")` (a path typed
    from "/" completed against the working folder: `/t` offered `/tzz_here/`, which does not exist) and
    completion.py:23 `return found` -> `return []` (a working folder it may not list lost the shipped
    names too; completion "never fails")."""
    import pathlib

    from bindiff.completion import complete_recipe

    (tmp_path / "tzz_here").mkdir()
    monkeypatch.chdir(tmp_path)
    root = sorted(pathlib.Path("/").iterdir())
    expected = [f"/{p.name}/" for p in root if p.name.startswith("t") and p.is_dir()]
    assert complete_recipe("/t") == expected  # /tmp/ here; never the working folder's /tzz_here/

    iterdir = pathlib.Path.iterdir

    def unreadable_here(self):  # the working folder cannot be listed (a folder of mode 311, say)
        if str(self) == ".":
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", unreadable_here)
    assert complete_recipe("") == _shipped_names()


def _ctx(**params):
    from types import SimpleNamespace

    return SimpleNamespace(params=params)


def test_an_override_completes_to_the_keys_of_the_last_task_given(tmp_path):
    """Kills completion.py:64 `given[-1]` -> `given[0]`: of two `task=` overrides the first chose the
    keys offered, while the recipe is resolved with the last. It also pins completion.py:81's filter by
    what is typed (equivalent for the command: see the module docstring)."""
    from bindiff.completion import complete_override

    assert complete_override(_ctx(recipe="ml1m", overrides=["task=masks", "task=segmentation"]), [],
                             "segmentation.sa") == ["segmentation.samples="]
    assert complete_override(_ctx(recipe="task=masks", overrides=[]), [], "grid.sl") == ["grid.slice_axis="]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: masks\n")
    assert complete_override(_ctx(run_dir=str(run), overrides=[]), [], "evaluations.denoising.me") == [
        "evaluations.denoising.median_size="]
    (tmp_path / "plugin.yaml").write_text("task: parity_bits\n")
    assert complete_override(_ctx(recipe=str(tmp_path / "plugin.yaml"), overrides=[]), [], "") == []
    assert complete_override(_ctx(recipe="ml1m", overrides=[]), [], "train.lr=") == []
    assert complete_override(_ctx(recipe="ml1m", overrides=[]), [], "denoiser.") == [
        "denoiser.name=", "denoiser.members=", "denoiser.params."]


# -- the command line's wiring: what a command is given reaches the library -----------------------------------
# The library modules behind each command are replaced by recorders (no torch, no training): the
# command line is a thin layer, and these tests check that it passes on what the user typed.
class _Recorder:
    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def record(self, name, result=None):
        def function(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return result(*args, **kwargs) if callable(result) else result
        return function

    def only(self, name):
        (call,) = [(args, kwargs) for called, args, kwargs in self.calls if called == name]
        return call


def _fake_module(monkeypatch, dotted: str, **functions):
    """Install ``dotted`` as a module holding ``functions``, in sys.modules and on its package."""
    import importlib
    import sys
    import types

    module = types.ModuleType(dotted)
    module.__spec__ = importlib.machinery.ModuleSpec(dotted, None)  # bindiff's lazy attributes look it up
    for name, value in functions.items():
        setattr(module, name, value)
    package, _, leaf = dotted.rpartition(".")
    monkeypatch.setitem(sys.modules, dotted, module)
    monkeypatch.setattr(importlib.import_module(package), leaf, module, raising=False)
    return module


@pytest.fixture
def cli(monkeypatch):
    """bindiff's app with plugins and the torch-side modules replaced; ``cli.calls`` records the calls."""
    from typer.testing import CliRunner

    from bindiff import cli as module

    recorder = _Recorder()
    monkeypatch.setattr("bindiff.plugins.load_plugins", lambda: None)
    _fake_module(monkeypatch, "bindiff.training.distributed", launched_by_torchrun=lambda: False,
                 is_main_process=lambda: True, check_devices=recorder.record("check_devices"),
                 launch=recorder.record("launch", 0))
    recorder.runner = CliRunner()
    recorder.app = module.app
    recorder.invoke = lambda args: recorder.runner.invoke(module.app, args)
    return recorder


def _run(run_dir, metrics=True):
    run_dir.mkdir()
    if metrics:
        (run_dir / "metrics.json").write_text("{}")
    return run_dir


def _one_error(result, code: int = 2) -> str:
    """The single `error:` line of a refused command (exit code 2, no traceback)."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_train_passes_its_overrides_data_dir_and_resume_on(cli, monkeypatch, tmp_path):
    """Kills cli.py:112 `registry.train(config, overrides or [], ...)` -> `registry.train(config, [],
    ...)` (the run records no overrides, and refuse_unread never sees them); cli.py:176 `"test" in
    run.metrics and "valid" in run.metrics` -> `or` (a segmentation run, whose metrics hold "test" but no
    "valid", ended in a KeyError after training); cli.py:167 "generation" dropped from _HEADLINE (a masks
    run's generation results not printed)."""
    from types import SimpleNamespace

    # a segmentation run's metrics name the scored part ("test") alone; a masks run's, its evaluations
    metrics = {"recipe": "x", "test": {"dice": 0.5}, "generation": {"plausible": 0.75}, "seconds_total": 2.0}
    run = SimpleNamespace(run_dir=tmp_path / "run", metrics=metrics)
    _fake_module(monkeypatch, "bindiff.tasks.registry", check_parallel=cli.record("check_parallel"),
                 check_recipe=cli.record("check_recipe"), train=cli.record("train", run),
                 resume=cli.record("resume", run))
    result = cli.invoke(["train", "ml1m", "train.epochs=3", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    args, kwargs = cli.only("train")
    assert args[1] == ["train.epochs=3"] and kwargs == {"data_dir": str(tmp_path / "data")}
    assert args[0]["train"]["epochs"] == 3
    shown = result.output.split("\n", 1)[1]
    import json

    assert json.loads(shown) == {"test": {"dice": 0.5}, "generation": {"plausible": 0.75}, "seconds_total": 2.0}
    cli.calls.clear()
    result = cli.invoke(["train", "ml1m", "train.epochs=4", "--resume", str(tmp_path / "old"), "--data-dir", "d"])
    assert result.exit_code == 0, result.output
    args, kwargs = cli.only("resume")
    assert args == (str(tmp_path / "old"),) and kwargs["recipe"] == "ml1m" and kwargs["data_dir"] == "d"
    assert kwargs["config"]["train"]["epochs"] == 4


def test_train_on_several_processes_checks_the_recipe_first_and_passes_every_option_to_the_workers(cli, monkeypatch,
                                                                                                     tmp_path):
    """Kills cli.py:104 `registry.check_recipe(config)` dropped before torchrun starts: a recipe
    the task refuses started every worker, each to refuse it in its own words."""
    _fake_module(monkeypatch, "bindiff.tasks.registry", check_parallel=cli.record("check_parallel"),
                 check_recipe=cli.record("check_recipe"))
    result = cli.invoke(["train", "ml1m", "seed=3", "--nproc", "2", "--data-dir", "d", "--resume", "r"])
    assert result.exit_code == 0, result.output
    assert cli.only("check_recipe")[0][0]["seed"] == 3
    assert cli.only("launch")[0] == (2, ["train", "ml1m", "seed=3", "--data-dir", "d", "--resume", "r"])


def test_evaluate_passes_checkpoint_device_data_dir_and_overrides_on_and_writes_out(cli, monkeypatch, tmp_path):
    """Kills cli.py:215-216 the `Path(out).exists()` refusal dropped (an existing empty OUT was
    taken over: staged_folder replaces an empty folder); cli.py:221 `checkpoint` -> `"best"`, `device` ->
    `None`, `data_dir` -> `None` in `task.rescore(...)`; cli.py:228 `write_json(staging / "metrics.json",
    ...)` dropped; cli.py:218 `_warn_if_unfinished(...)` dropped from evaluate."""
    import json

    task = type("Task", (), {"rescore": lambda self, *args: cli.record("rescore", {"test": {"ndcg@10": 0.25}})(*args)})()
    _fake_module(monkeypatch, "bindiff.tasks.registry", get_task=lambda name: task)
    _fake_module(monkeypatch, "bindiff.tasks.base", read_run_config=lambda path: {"task": "recommend"})
    run = _run(tmp_path / "run", metrics=False)
    out = tmp_path / "scored"
    result = cli.invoke(["evaluate", str(run), "inference.t=2", "--checkpoint", "last", "--device", "cuda:1",
                         "--data-dir", "moved", "--out", str(out)])
    assert result.exit_code == 0, result.output
    args, _ = cli.only("rescore")
    assert (args[0], args[1], args[2], args[4], args[5]) == (run, ["inference.t=2"], "last", "cuda:1", "moved")
    assert json.loads((out / "metrics.json").read_text()) == {"test": {"ndcg@10": 0.25}}
    assert f"warning: {run}: no metrics.json" in result.output
    (tmp_path / "empty").mkdir()
    line = _one_error(cli.invoke(["evaluate", str(run), "--out", str(tmp_path / "empty")]))
    assert line == f"error: {tmp_path / 'empty'}: already exists; bindiff never overwrites"


class _Result:
    def __init__(self, items, scores, unknown=()):
        self.items, self.scores, self.unknown = items, scores, list(unknown)


def _fake_recommender(cli, monkeypatch, lists):
    """serve.Recommender answering each history with the next of ``lists`` (items, scores)."""
    class Recommender:
        def __init__(self):
            self.column = {"i1": 0, "i2": 1, "i3": 2}
            self.config = {"output": {"progress": None}, "data": {"min_rating": None}}

        @classmethod
        def from_run(cls, run_dir, checkpoint="best", device=None):
            cli.calls.append(("from_run", (run_dir,), {"checkpoint": checkpoint, "device": device}))
            return cls()

        def history_of(self, user):
            return ["i1"]

        def recommend(self, histories, k=20, progress=None):
            cli.calls.append(("recommend", (histories, k), {"progress": progress}))
            return [_Result(*lists[n]) for n in range(len(histories))]

    _fake_module(monkeypatch, "bindiff.tasks.recommendation.serve", Recommender=Recommender,
                 read_histories=lambda path, data=None: (["u1", "u2"], [["i1"], ["i2"]], 0),
                 write_recommendations=cli.record("write_recommendations"))
    _fake_module(monkeypatch, "bindiff.tasks.base", read_run_config=lambda path: {"data": {}})


def test_recommend_passes_k_checkpoint_device_and_progress_on_and_ranks_from_one(cli, monkeypatch, tmp_path):
    """Kills cli.py:270 `Recommender.from_run(..., checkpoint=checkpoint, ...)` -> `checkpoint="best"`
    (--checkpoint last ignored); cli.py:281 `progress=recommender.config["output"]["progress"]` ->
    `progress=False`; cli.py:267 `i.strip()` dropped (" i1 " looked up as an item id with spaces)."""
    _fake_recommender(cli, monkeypatch, [(["i2", "i3"], [0.9, 0.5])])
    run = _run(tmp_path / "run")
    result = cli.invoke(["recommend", str(run), "--items", " i1 , x9", "--k", "2", "--checkpoint", "last",
                         "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert cli.only("from_run") == ((str(run),), {"checkpoint": "last", "device": "cpu"})
    assert cli.only("recommend") == (([["i1", "x9"]], 2), {"progress": None})
    assert result.output == "1\ti2\t0.900000\n2\ti3\t0.500000\n"


@pytest.mark.parametrize("args, message", [
    ([], "error: recommend: give exactly one of --user, --items or --input"),
    (["--user", "u1", "--items", "i1"], ("error: recommend: give exactly one of --user, --items or --input (got --user, "
                                         "--items)")),
    (["--items", " , "], "error: --items ' , ': no item ids (give them comma-separated, e.g. --items 50,172)"),
    (["--items", "i1", "--output", "out.csv"], "error: recommend: --input and --output go together"),
    (["--input", "h.csv"], "error: recommend: --input and --output go together"),
    (["--input", "h.csv", "--output", "h.csv"], ("error: --output h.csv: is the --input file; the histories would be "
                                                 "overwritten")),
    (["--input", "h.csv", "--output", "taken.csv"], ("error: --output taken.csv: exists; bindiff never overwrites a "
                                                     "file (remove it or name another)")),
    (["--user", "u1", "--k", "0"], None),
])
def test_recommend_refuses_conflicting_or_empty_options_in_one_line(cli, monkeypatch, tmp_path, args, message):
    """Kills cli.py:256 `len(given) != 1` -> `len(given) > 1`: `bindiff recommend RUN` with none of
    --user, --items, --input went on to an UnboundLocalError traceback instead of one line; also cli.py:267
    (" , " read as one empty item id)."""
    _fake_recommender(cli, monkeypatch, [([], [])])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.csv").write_text("user,item\nu1,i1\n")
    (tmp_path / "taken.csv").write_text("")
    run = _run(tmp_path / "run")
    result = cli.invoke(["recommend", str(run), *args])
    if message is None:  # a usage error, click's own words
        assert result.exit_code == 2 and "--k" in result.output and not cli.calls, result.output
    else:
        assert _one_error(result) == message
    assert not [c for c in cli.calls if c[0] == "write_recommendations"]


def test_export_compare_and_tune_pass_their_options_on(cli, monkeypatch, tmp_path):
    """Kills cli.py:325 `export_run(..., checkpoint=checkpoint, ...)` -> `checkpoint="best"` and
    cli.py:373 `run_tuning(recipe, overrides or [], trials, data_dir)` -> `(..., None, ...)` (--trials
    ignored). The other assertions pin wiring the existing tests already check."""
    import json

    out = tmp_path / "made"
    out.mkdir()
    (out / "results.md").write_text("| model |\n")
    (out / "study.json").write_text(json.dumps({
        "select": "ndcg@100", "seconds": 1.0, "best_trial_test_for_information_only": {},
        "best": {"number": 0, "valid": 0.5, "overrides": ["train.lr=0.01"]},
        "trials": [{"number": 0, "valid": 0.5, "seconds": 1.0, "overrides": ["train.lr=0.01"]},
                   {"number": 1, "valid": 0.0, "seconds": 1.0, "overrides": ["train.lr=0.1"]},
                   {"number": 2, "valid": None, "seconds": 1.0, "overrides": ["train.lr=1.0"]}]}))
    _fake_module(monkeypatch, "bindiff.tasks.recommendation.export", export_run=cli.record("export_run", out))
    _fake_module(monkeypatch, "bindiff.tasks.recommendation.compare", run_comparison=cli.record("run_comparison", out))
    _fake_module(monkeypatch, "bindiff.tasks.recommendation.tune", run_tuning=cli.record("run_tuning", out))
    run = _run(tmp_path / "run")
    result = cli.invoke(["export", str(run), "inference.add_noise=false", "--out", "x", "--checkpoint", "last"])
    assert result.exit_code == 0, result.output
    assert cli.only("export_run") == ((str(run), "x"), {"checkpoint": "last", "overrides": ["inference.add_noise=false"]})
    result = cli.invoke(["compare", "ml1m", "seed=2", "--models", "", "--seeds", "3", "--tune", "4", "--data-dir", "d"])
    assert result.exit_code == 0, result.output
    assert cli.only("run_comparison") == (("ml1m", ["seed=2"], [""], 3, "d"), {"tune_trials": 4})
    result = cli.invoke(["tune", "ml1m", "seed=2", "--trials", "7", "--data-dir", "d"])
    assert result.exit_code == 0, result.output
    assert cli.only("run_tuning") == (("ml1m", ["seed=2"], 7, "d"), {})
    trial_lines = [line.split()[4] for line in result.output.splitlines() if line.startswith("trial")]
    assert trial_lines == ["0.5000", "0.0000", "n/a"]  # a score of 0 is a score, not a missing one


def test_show_config_reads_a_leading_override_and_refuses_what_train_refuses(cli, monkeypatch, tmp_path):
    """Kills cli.py:416 `and not Path(recipe).exists()` dropped (a recipe file named `a=b.yaml` read
    as an override) and `[A-Za-z_][\\w.]*=` -> `[A-Za-z_]\\w*=` (`show-config train.lr=0.5` read as a file
    name); cli.py:423 `refuse_unread(...)` dropped (show-config passed overrides train refuses)."""
    def refuse(config):
        if config["train"]["epochs"] == 7:
            from bindiff.config import RecipeError

            raise RecipeError("key 'train.epochs' refused by the task")

    _fake_module(monkeypatch, "bindiff.tasks.registry", check_recipe=refuse, get_task=lambda name: name)
    _fake_module(monkeypatch, "bindiff.tasks.base", refuse_unread=lambda task, config, overrides: (
        cli.calls.append(("refuse_unread", (task, overrides), {}))))
    result = cli.invoke(["show-config", "train.lr=0.5", "seed=4"])
    assert result.exit_code == 0, result.output
    import yaml

    shown = yaml.safe_load(result.output)
    assert (shown["train"]["lr"], shown["seed"]) == (0.5, 4)
    assert cli.only("refuse_unread") == (("recommend", ["train.lr=0.5", "seed=4"]), {})
    assert _one_error(cli.invoke(["show-config", "train.epochs=7"])) == "error: key 'train.epochs' refused by the task"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a=b.yaml").write_text("seed: 9\n")
    result = cli.invoke(["show-config", "a=b.yaml"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["seed"] == 9


def test_the_masks_commands_pass_their_options_on(cli, monkeypatch, tmp_path):
    """Kills cli.py:446 `read_run_config(Path(run_dir))` dropped from _masks_task: a folder that is
    not a run got a warning about an unfinished run before (or, with the evaluations replaced by a
    recorder as here, instead of) the one line naming it. The other assertions pin wiring the existing
    tests already check."""
    from bindiff.config import RecipeError

    def read_run_config(path):
        if not (path / "config.yaml").is_file():
            raise RecipeError(f"{path}: not a run directory (no config.yaml)")
        return {"task": "masks"}

    _fake_module(monkeypatch, "bindiff.tasks.base", read_run_config=read_run_config)
    _fake_module(monkeypatch, "bindiff.tasks.masks.job",
                 run_evaluations=cli.record("run_evaluations", {"denoising": {"dice": 0.5}}))
    _fake_module(monkeypatch, "bindiff.tasks.masks.apply", apply_run=cli.record("apply_run", {"cases": []}))
    run = _run(tmp_path / "run", metrics=False)
    (run / "config.yaml").write_text("task: masks\n")
    for verb in ("denoising", "denoise"):
        cli.calls.clear()
        result = cli.invoke(["masks", verb, str(run), "evaluations.denoising.steps=2", "--checkpoint", "last",
                             "--out", str(tmp_path / "o"), "--device", "cuda:1", "--data-dir", "moved"])
        assert result.exit_code == 0, result.output
        args, kwargs = cli.only("run_evaluations")
        assert args == (str(run), ["denoising"])
        assert kwargs == {"out_dir": tmp_path / "o", "overrides": ["evaluations.denoising.steps=2"],
                          "checkpoint": "last", "device": "cuda:1", "command": "masks denoising",
                          "data_dir": "moved"}
        assert result.output.splitlines()[1] == f"results: {tmp_path / 'o' / 'denoising'}"
    result = cli.invoke(["masks", "generation", str(tmp_path / "nothing")])
    assert _one_error(result) == f"error: {tmp_path / 'nothing'}: not a run directory (no config.yaml)"
    assert "warning" not in result.output
    result = cli.invoke(["masks", "apply", str(run), "evaluations.completion.samples=2", "--task", "completion",
                         "--input", "in", "--output", "out", "--unknown-label", "9", "--checkpoint", "last",
                         "--panels", "0"])
    assert result.exit_code == 0, result.output
    assert cli.only("apply_run") == ((str(run), "completion", "in", "out"), {
        "unknown": None, "unknown_label": 9, "overrides": ["evaluations.completion.samples=2"],
        "checkpoint": "last", "device": None, "panels": 0})


def _raising(error):
    def function(*args, **kwargs):
        raise error
    return function


def test_a_plugin_that_fails_to_load_is_one_line(cli, monkeypatch):
    """Kills cli.py:41-42 `_fail(err)` -> `raise` for a PluginError: a broken plugin of one's own is
    bad input, one line with exit code 2 whatever command was asked for, not a traceback."""
    from bindiff.plugins import PluginError

    monkeypatch.setattr("bindiff.plugins.load_plugins", _raising(PluginError("plugin 'mine': no module named x")))
    assert _one_error(cli.invoke(["recipes"])) == "error: plugin 'mine': no module named x"


def _main(monkeypatch, capsys, args):
    """``bindiff ARGS`` through cli.main, in this process: its exit code, stdout and stderr."""
    import signal
    import sys

    from bindiff import cli

    monkeypatch.setattr(sys, "argv", ["bindiff", *args])
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # main installs its own; put back after
    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main()
    finally:
        signal.signal(signal.SIGTERM, before)
    captured = capsys.readouterr()
    return stopped.value.code, captured.out, captured.err


def test_a_closed_stderr_is_replaced_by_a_stream_progress_can_ask(cli, monkeypatch, capsys):
    """Kills cli.py:636-637 the closed-stream guard dropped: Python sets a closed stderr (`2>&-`)
    to None, and the first progress check (`sys.stderr.isatty()`) ended the run with an AttributeError."""
    import sys

    from bindiff.progress import piped_lines

    monkeypatch.setattr(sys, "stderr", None)
    assert _main(monkeypatch, capsys, ["recipes"])[0] == 0
    assert piped_lines(None) is True  # stderr now /dev/null: not a terminal, so log lines (to nowhere)
    sys.stderr.close()  # main opened it for the life of the process; this test's process goes on


def test_a_stop_signal_exits_with_128_plus_its_number_and_ignores_a_second(monkeypatch):
    """Kills cli.py:578 `SystemExit(128 + signum)` -> `SystemExit(1)`: a scheduler's SIGTERM must
    end the command with 143, as a killed process would, after its clean-up."""
    import signal

    from bindiff.cli import _exit_on_signal

    before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            _exit_on_signal(signal.SIGTERM, None)
        assert stopped.value.code == 128 + 15
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)
