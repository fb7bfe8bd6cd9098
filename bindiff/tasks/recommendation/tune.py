"""``bindiff tune``: a small, seeded hyper-parameter search that chooses on validation users only.

The search space lives in the recipe (``tune.space``): each entry maps a recipe key, dotted as
on the command line, to a range or a list of choices. A trial is the recipe plus that trial's
values as overrides, trained by ``train_recommender`` in a run directory of its own inside the
tuning directory. Its value is the validation value of ``eval.select`` at the run's best
checkpoint. Test metrics are never read while the search runs; the chosen trial's are read
once it has ended and reported for information only.

Layout of a tuning directory (``<output.root>/tune/<name>/<time>-<hash>/``):
    recipe.yaml      the resolved recipe the trials start from
    trials/NNN/      each trial's run directory (``<name>/<time>-<hash>/`` below it)
    trials.csv       trial, values, validation value, run directory, seconds; rewritten after each trial
    study.json       the space, sampler, every trial, the best one and its test metrics (information only)
    best.yaml        the best trial's resolved recipe, runnable with ``bindiff train``; its overrides on top
    tuning.png       validation value per trial and the best so far
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from ...config import RecipeError, argument, dump_recipe, load_recipe, refuse_one_string, whole_count
from ...config.recipe import override_key, with_key
from ...config.schema import FREE, schema_for
from ...files import atomic_path, write_json, write_text
from ...progress import log, log_lines
from ...runs import new_output_dir, read_metrics
from .data import find_dataset
from ..base import refuse_unread, runs_inside
from .job import TASK, train_recommender
from .models import build_model, check_model_params, make_scorer, model_kind, unread_sections

SPEC_KINDS = ("float", "int", "choices")
SPEC_FIELDS = (*SPEC_KINDS, "log")
SPEC_FORMS = "{float: [low, high]}, {int: [low, high]} (either with log: true) or {choices: [a, b, ...]}"
# Sections and keys that decide which users are measured and how, or where output goes. Trials
# that differed in them would not be scored on the same validation users with the same metric,
# and searching the seed would only search for a lucky split.
NOT_SEARCHABLE = ("seed", "task", "name", "data", "split", "eval", "output", "tune", "compare")
# Items of the throw-away model built to check each searched value before anything trains; the
# builders refuse bad values whatever the number of items.
PROBE_ITEMS = 8


@dataclass(frozen=True)
class Dimension:
    """One searched recipe key: a float or int range (optionally log-scaled) or a list of choices."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def values_to_check(self) -> list:
        return list(self.choices) if self.kind == "choices" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log)
        if self.kind == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        # optuna's categorical values must be scalars; a choice such as [600] (hidden widths)
        # is offered by its YAML text and mapped back, so every choice is handled alike.
        labels = [yaml_text(choice) for choice in self.choices]
        return self.choices[labels.index(trial.suggest_categorical(self.key, labels))]

    def as_spec(self) -> dict:
        if self.kind == "choices":
            return {"choices": list(self.choices)}
        return {self.kind: [self.low, self.high], "log": self.log}


@dataclass
class TrialRecord:
    number: int
    params: dict[str, Any]
    overrides: list[str]
    valid: float
    run_dir: Path
    seconds: float


def yaml_text(value: Any) -> str:
    """The value as one line of YAML that ``yaml.safe_load`` reads back unchanged (floats exactly)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n...\n").strip()  # a bare scalar ends with YAML's document-end marker


def override_text(key: str, value: Any) -> str:
    return f"{key}={yaml_text(value)}"


def parse_space(config: dict, source: str, section: str = "tune.space") -> list[Dimension]:
    """The recipe's ``tune.space`` as dimensions, each checked against the schema and the builders.

    Every refusal is a RecipeError naming ``tune.space.<key>``. Each range end and each choice
    is applied to the recipe as an override and used to build a small model, so an unknown key,
    a value of the wrong type, or a denoiser parameter that does not exist is refused here,
    before anything trains.
    """
    schema = schema_for(config["task"])
    entries = _flatten_space(config["tune"]["space"], schema)
    if not entries:
        raise RecipeError(f"{source}: {section} is empty; map each recipe key to search to {SPEC_FORMS}, "
                          "e.g. train.lr: {float: [0.0001, 0.01], log: true}")
    dimensions = []
    kind = model_kind(config)
    for key, spec in entries.items():
        where = f"{source}: {section}.{key}"
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise RecipeError(f"{where}: '{key}' cannot be searched: {', '.join(NOT_SEARCHABLE)} (and their "
                              "sections' keys) decide the validation users, the metric or the output, which every "
                              "trial must share")
        if key.split(".")[0] in unread_sections(kind):
            raise RecipeError(f"{where}: model {kind.name!r} does not read the {key.split('.')[0]} section, so "
                              "every trial would be the same model")
        dimension = _parse_spec(key, spec, where)
        _check_values(config, dimension, where)
        dimensions.append(dimension)
    return dimensions


def _flatten_space(space: dict, schema: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> spec. ``train.lr: {...}`` and ``train: {lr: {...}}`` (what the override
    ``tune.space.train.lr=...`` makes) name the same key; a later entry replaces an earlier one."""
    flat: dict[str, Any] = {}
    for name, spec in space.items():
        dotted = f"{prefix}{name}"
        if isinstance(spec, dict) and _names_section(schema, dotted):
            flat.update(_flatten_space(spec, schema, f"{dotted}."))
        else:
            flat[dotted] = spec
    return flat


def _names_section(schema: dict, dotted: str) -> bool:
    node: Any = schema
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict) or node is FREE


def _parse_spec(key: str, spec: Any, where: str) -> Dimension:
    if not isinstance(spec, dict):
        raise RecipeError(f"{where}: must be a mapping, one of {SPEC_FORMS}; got {spec!r}")
    unknown = [str(field) for field in spec if field not in SPEC_FIELDS]
    if unknown:
        raise RecipeError(f"{where}: unknown field(s) {unknown}; a spec is one of {SPEC_FORMS}")
    kinds = [kind for kind in SPEC_KINDS if kind in spec]
    if len(kinds) != 1:
        raise RecipeError(f"{where}: give exactly one of float, int or choices, got {kinds or 'none'}")
    kind, log = kinds[0], spec.get("log", False)
    if not isinstance(log, bool):
        raise RecipeError(f"{where}: log must be true or false, got {log!r}")
    if kind == "choices":
        if "log" in spec:
            raise RecipeError(f"{where}: log applies to float and int ranges, not to choices")
        choices = spec["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise RecipeError(f"{where}: choices must be a list of at least two values, got {choices!r}")
        texts = [yaml_text(choice) for choice in choices]
        if len(set(texts)) != len(texts):
            raise RecipeError(f"{where}: choices list a value twice: {choices!r}")
        return Dimension(key, kind, choices=tuple(choices))
    bounds = spec[kind]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise RecipeError(f"{where}: {kind} must be a list [low, high], got {bounds!r}")
    numeric = (int,) if kind == "int" else (int, float)
    if not all(isinstance(b, numeric) and not isinstance(b, bool) for b in bounds):
        raise RecipeError(f"{where}: {kind} bounds must be {'integers' if kind == 'int' else 'numbers'}, "
                          f"got {bounds!r}")
    low, high = (float(b) for b in bounds) if kind == "float" else bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        raise RecipeError(f"{where}: bounds must be finite, got {bounds!r}")
    if low >= high:
        raise RecipeError(f"{where}: low must be < high, got [{low}, {high}]")
    if log and low <= 0:
        raise RecipeError(f"{where}: log: true needs low > 0, got low = {low}")
    return Dimension(key, kind, low=low, high=high, log=log)


def _check_values(config: dict, dimension: Dimension, where: str) -> None:
    """Each range end and choice must pass as an override and build a model with the recipe."""
    import torch

    for value in dimension.values_to_check():
        candidate = with_key(config, dimension.key, value, where)  # names unknown keys and bad types
        try:
            with torch.random.fork_rng(devices=[]):  # the probes must not move the global generator
                check_model_params(candidate)
                model = build_model(candidate, dim=PROBE_ITEMS)
            make_scorer(model, candidate, seed=candidate["seed"])
        except RecipeError as err:
            raise RecipeError(f"{where} = {yaml_text(value)}: {err}") from None


def refuse_replaced(typed: list[str], keys: list[str], replacer: str) -> None:
    """RecipeError when an override the user typed sets a key (or a section holding it, or a key
    inside it) that ``replacer`` (who sets them again, with its verb: "tune.space searches") sets
    afterwards: the command line would be overruled without a word, and a table headed by the
    command as typed would describe settings never used."""
    for text in typed:
        dotted = override_key(text)
        for key in keys:
            if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
                raise RecipeError(f"override {text!r}: {replacer} {key} itself, which would overrule it; "
                                  "set it there, or leave it off the command line")


def run_tuning(recipe: str | Path, overrides: Sequence[str] = (), trials: int | None = None,
               data_dir: str | None = None, space: dict | None = None, section: str = "tune.space",
               typed: list[str] | None = None) -> Path:
    """Search ``tune.space`` (or ``space``, named ``section`` in errors: one of ``compare.spaces``)
    with a seeded optuna sampler; returns the tuning directory. ``typed``: the overrides the user
    gave (default: all of ``overrides``), refused where the space searches their keys."""
    refuse_one_string(overrides)  # its characters would be read as overrides, one by one
    overrides = list(overrides)
    trials = whole_count(trials, "trials", "--trials")
    base = load_recipe(recipe, overrides)
    source = str(recipe)
    if space is not None:
        if not isinstance(space, dict):  # 5: an AttributeError ('int' object has no attribute 'items')
            raise TypeError(f"space must be a mapping of recipe keys to ranges or choices, got {space!r}")
        base = {**base, "tune": {**base["tune"], "space": space}}
    if base["task"] != "recommend":
        raise RecipeError(f"{source}: bindiff tune searches recommendation recipes; this one has task "
                          f"{base['task']!r}")
    from .. import registry

    registry.check_recipe(base)  # what `bindiff train` refuses before reading data, before any trial or folder
    dimensions = parse_space(base, source, section)
    if typed is not None:
        refuse_one_string(typed, "typed")  # read letter by letter: "override 'a' is not of the form key=value"
        typed = list(typed)  # read twice below (the searched keys, the unread ones)
    typed = overrides if typed is None else typed
    refuse_replaced(typed, [d.key for d in dimensions], f"{section} searches")
    if "model.kind" not in {d.key for d in dimensions}:  # else each trial's kind reads what it reads
        refuse_unread(TASK, base, typed)  # here, not at trial 0 after the data were read
    n_trials = base["tune"]["trials"] if trials is None else trials
    if n_trials < 1:
        raise RecipeError(f"{argument('trials', '--trials')} must be >= 1, got {n_trials}")
    base = {**base, "tune": {**base["tune"], "trials": n_trials}}  # recipe.yaml records what runs
    select = base["eval"]["select"]
    sampler_seed = base["seed"] if base["tune"]["seed"] is None else base["tune"]["seed"]

    import optuna

    sampler = (optuna.samplers.TPESampler(seed=sampler_seed) if base["tune"]["sampler"] == "tpe"
               else optuna.samplers.RandomSampler(seed=sampler_seed))

    records: list[TrialRecord] = []

    def objective(trial) -> float:  # runs inside `with new_output_dir(...) as out` below
        params = {d.key: d.suggest(trial) for d in dimensions}
        trial_overrides = [override_text(key, value) for key, value in params.items()]
        config = _apply(base, params, source)
        # Each trial gets its own root: two trials drawing the same values in the same second
        # would otherwise ask for the same run directory.
        config = with_key(config, "output.root", str(out / "trials" / f"{trial.number:03d}"), source)
        trial_started = time.perf_counter()
        try:
            # a search over model.kind: each trial's model is given (and records) the overrides it reads
            read = [o for o in overrides if TASK.unread_reason(config, override_key(o)) is None]
            trained = train_recommender(config, [*read, *trial_overrides], data_dir=data_dir)
        except RecipeError as err:
            raise RecipeError(f"tune trial {trial.number} ({' '.join(trial_overrides)}): {err}") from None
        value = float(trained.metrics["valid"][select])  # validation users only
        records.append(TrialRecord(trial.number, params, trial_overrides, value, trained.run_dir,
                                   round(time.perf_counter() - trial_started, 2)))
        write_text(out / "trials.csv", _trials_csv(records, dimensions, select))  # a killed search keeps these
        return value

    find_dataset(base["data"], data_dir, base["split"])  # a missing dataset: one error line, before a folder is named
    with runs_inside("search") as place, new_output_dir(base, "tuning", folder="tune") as out, \
            _optuna_warnings_only():
        place["out"] = out
        study = optuna.create_study(direction="maximize", sampler=sampler, study_name=base["name"])
        write_text(out / "recipe.yaml", dump_recipe(base))
        if log_lines(base):
            log(f"tuning directory: {out}")  # piped output can follow the search from its start
        started = time.perf_counter()
        # One trial after another (the same seed gives the same trials), through ask and tell rather
        # than study.optimize: optimize logs a failed trial's traceback, and a refused value must end
        # the search with the one-line error the CLI prints for every user error.
        for _ in range(n_trials):
            trial = study.ask()
            try:
                value = objective(trial)
            except BaseException:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            study.tell(trial, value)
            if base["output"]["progress"] is not False:  # between the trials' training bars, or their lines
                log(_trial_line(records, n_trials, select))
    seconds = round(time.perf_counter() - started, 2)

    _write_results(out, base, source, overrides, records, dimensions, sampler_seed, seconds, optuna.__version__)
    plot_tuning(records, base["eval"]["select"], out / "tuning.png")
    return out


@contextmanager
def _optuna_warnings_only() -> Iterator[None]:
    """optuna's INFO lines (a study made, each trial told) are ours to print, one per trial; the
    caller's optuna verbosity is set back afterwards."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _trial_line(records: list[TrialRecord], n_trials: int, select: str) -> str:
    """One line for the trial just finished, with the best so far (as the CLI's table reads them)."""
    last = records[-1]
    valid = "n/a" if math.isnan(last.valid) else f"{last.valid:.4f}"  # undefined
    best = (f"best so far trial {best_trial(records).number}" if any(not math.isnan(r.valid) for r in records)
            else "no defined value yet")
    # named by its number, as trials/NNN and "best so far" name it; the count says how far the search is
    return (f"tune: trial {last.number} ({len(records)} of {n_trials}) valid {select} {valid} "
            f"in {last.seconds:.1f} s ({' '.join(last.overrides)}); {best}")


def _write_results(out: Path, base: dict, source: str, overrides: list[str], records: list[TrialRecord],
                   dimensions: list[Dimension], sampler_seed: int, seconds: float, optuna_version: str) -> None:
    """best.yaml (the chosen trial's recipe, runnable) and study.json (every trial, the choice)."""
    select = base["eval"]["select"]
    best = best_trial(records)
    best_config = _apply(base, best.params, source)
    text = (f"# Best of {len(records)} trials of `bindiff tune {source}`: trial {best.number}, validation "
            f"{select} = {best.valid!r}.\n"
            + "".join(f"# Command-line override of the search: {o}\n" for o in overrides)
            + "# The best trial's values, as overrides on top of those:\n"
            + "".join(f"#   {o}\n" for o in best.overrides)
            + "# The resolved recipe below includes all of them; train it with `bindiff train THIS_FILE`.\n")
    write_text(out / "best.yaml", text + dump_recipe(best_config))
    write_json(out / "study.json", {
        "recipe": source,
        "overrides": list(overrides),
        "select": select,
        "direction": "maximize",
        "chosen_on": "validation users: the value of eval.select at each run's best checkpoint",
        "sampler": base["tune"]["sampler"],
        "sampler_seed": sampler_seed,
        "optuna": optuna_version,
        "space": {d.key: d.as_spec() for d in dimensions},
        "seconds": seconds,
        "trials": [_record_json(r) for r in records],
        "best": _record_json(best),
        # Read after the search has ended, from the chosen run: it played no part in choosing.
        "best_trial_test_for_information_only": read_metrics(best.run_dir)["test"],
    })


def best_trial(records: list[TrialRecord]) -> TrialRecord:
    """The highest validation value; a tie goes to the earlier trial, NaN never wins."""
    finite = [r for r in records if not math.isnan(r.valid)]
    if not finite:
        raise RecipeError("tune: no trial produced a validation value")
    return max(finite, key=lambda r: r.valid)  # max keeps the first of equal values


def _apply(config: dict, params: dict[str, Any], source: str) -> dict:
    for key, value in params.items():
        config = with_key(config, key, value, f"{source}: tune.space.{key}")
    return config


def _record_json(record: TrialRecord) -> dict:
    return {"number": record.number, "params": record.params, "overrides": record.overrides,
            "valid": record.valid, "run_dir": str(record.run_dir), "seconds": record.seconds}


def _trials_csv(records: list[TrialRecord], dimensions: list[Dimension], select: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["trial", *[d.key for d in dimensions], f"valid_{select}", "run_dir", "seconds"])
    for r in records:
        writer.writerow([r.number, *[yaml_text(r.params[d.key]) for d in dimensions], repr(r.valid),
                         str(r.run_dir), f"{r.seconds:.2f}"])
    return buffer.getvalue()


def plot_tuning(records: list[TrialRecord], select: str, path: Path) -> None:
    from matplotlib.figure import Figure
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    numbers = [r.number for r in records]
    values = np.array([r.valid for r in records], dtype=float)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.scatter(numbers, values, color="tab:blue", label="trial")
    ax.step(numbers, np.fmax.accumulate(values), where="post", color="tab:red", label="best so far")
    chosen = best_trial(records)
    ax.scatter([chosen.number], [chosen.valid], s=120, facecolors="none", edgecolors="tab:red", label="chosen")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {select}")
    ax.set_title("hyper-parameter search (validation users only)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
