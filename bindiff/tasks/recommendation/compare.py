"""``bindiff compare``: several models on the same splits, over several seeds, in one table.

Each model is the recipe plus that model's overrides (listed under ``compare.models`` in the
recipe, so no hyper-parameter lives in code). For every seed all models see the same split,
because the split depends only on the data and the seed. Per-user test metrics of every run
feed a paired Wilcoxon signed-rank test of each model against the best baseline, the one with the
highest mean validation value of ``eval.select`` (never chosen on test users). That test pools
the users of every seed, so it sees the noise of the held-out users but not that of training; a
paired t-test over the seeds' means, which does see it, is reported beside it.

With ``tune_trials`` (``bindiff compare --tune N``) every model that has a search space under
``compare.spaces`` first gets the same budget: N ``bindiff tune`` trials on the first seed's
validation users. Its best trial's values are added to its overrides for the seeded comparison.
Models without a space are compared as listed (popularity has nothing to tune; EASE searches its
λ grid on validation inside every fit).
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...config import RecipeError, argument, dump_recipe, load_recipe, refuse_one_string, whole_count
from ...config.recipe import override_key
from ...config.schema import FOLDER_NAME_RULE, is_folder_name
from ...files import atomic_path, write_json, write_text
from ...metrics.paired import paired_wilcoxon
from ...progress import log, log_lines
from ...runs import new_output_dir
from ...training.devices import device_of
from .data import find_dataset
from .evaluation import evaluate_part, training_popularity
from ..base import refuse_unread, runs_inside
from .job import TASK, load_run, train_recommender
from .models import BINOMIAL
from .tune import NOT_SEARCHABLE, parse_space, refuse_replaced, run_tuning


@dataclass
class ModelRun:
    model: str
    kind: str  # the run's model.kind: binomial, or a baseline
    seed: int
    run_dir: Path
    test: dict[str, float]
    valid: dict[str, float]  # the run's validation means: what chooses the best baseline
    per_user: dict[str, np.ndarray]
    train_seconds: float
    inference_seconds: float
    users: np.ndarray  # the test users' ids, row by row of per_user: the units of the paired test


# Keys of the shared sections that change how a model runs, not what it is scored on: EASE may
# need smaller evaluation batches than the rest, one model may be logged to tensorboard.
PER_MODEL_KEYS = ("eval.batch_size", "output.progress", "output.logger")


def _model_overrides(config: dict, names: list[str] | None) -> dict[str, list[str]]:
    presets = config["compare"]["models"]
    if not presets:
        raise RecipeError("compare.models is empty: list each model with its overrides in the recipe")
    if names is not None and not names:  # ",".join of no names printed "an empty model name in ''"
        raise RecipeError(f"{argument('models', '--models')}: no model named; the recipe defines {list(presets)}")
    if names is not None and any(not name.strip() for name in names):
        raise RecipeError(f"{argument('models', '--models')}: an empty model name in {','.join(names)!r}; the recipe defines {list(presets)}")
    names = list(presets) if names is None else [name.strip() for name in names]
    unknown = [n for n in names if n not in presets]
    if unknown:
        raise RecipeError(f"compare: unknown model(s) {unknown}; the recipe defines {list(presets)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RecipeError(f"{argument('models', '--models')}: {', '.join(map(repr, twice))} listed twice")
    for name in names:
        if not is_folder_name(name):  # each model's runs go in a folder of its name
            raise RecipeError(f"compare.models: the model name {name!r} {FOLDER_NAME_RULE}")
        if not isinstance(presets[name], list) or not all(isinstance(o, str) for o in presets[name]):
            raise RecipeError(f"compare.models.{name} must be a list of key=value overrides")
        for override in presets[name]:
            # the paired test pairs each user's values across models: every model must see the same
            # split, metric and seed, and get the same tuning
            key = override_key(override)
            section = key.split(".")[0]
            if section in NOT_SEARCHABLE and key not in PER_MODEL_KEYS:
                raise RecipeError(f"compare.models.{name}: '{override}' would give this model its own {section}; "
                                  f"{', '.join(NOT_SEARCHABLE)} are shared by every compared model (set them for "
                                  f"the whole comparison; of them only {', '.join(PER_MODEL_KEYS)} may differ)")
    return {name: list(presets[name]) for name in names}


def _search_spaces(config: dict, recipe: str, overrides: list[str], presets: dict[str, list[str]],
                   tune_trials: int | None) -> dict[str, dict]:
    """The spaces of the compared models, each checked against that model's recipe (before training)."""
    spaces = config["compare"]["spaces"]
    if not isinstance(spaces, dict):
        raise RecipeError(f"{recipe}: compare.spaces must map model names to search spaces, got {spaces!r}")
    unknown = [name for name in spaces if name not in config["compare"]["models"]]
    if unknown:
        raise RecipeError(f"{recipe}: compare.spaces names model(s) {unknown} that compare.models does not list")
    if tune_trials is None:
        return {}
    if tune_trials < 1:
        raise RecipeError(f"{argument('tune_trials', '--tune')} must be >= 1 trial, got {tune_trials}")
    chosen = {name: spaces[name] for name in presets if spaces.get(name)}
    if not chosen:
        raise RecipeError(f"{recipe}: {argument('tune_trials', '--tune')} needs compare.spaces for at least one of {list(presets)}")
    for name, space in chosen.items():
        model_config = load_recipe(recipe, [*overrides, *presets[name]])
        dimensions = parse_space({**model_config, "tune": {**model_config["tune"], "space": space}}, recipe,
                                 f"compare.spaces.{name}")
        refuse_replaced(overrides, [d.key for d in dimensions], f"compare.spaces.{name} searches")
    return chosen


def _names_given(names: str | list[str] | None) -> list[str] | None:
    """Model names as a list: "popularity,ease", as --models takes them, is two (not a list of letters)."""
    if isinstance(names, str):
        return [name.strip() for name in names.split(",") if name.strip()]
    return names


def run_comparison(recipe: str | Path, overrides: Sequence[str] = (), models: list[str] | None = None,
                   seeds: int | None = None, data_dir: str | None = None, tune_trials: int | None = None) -> Path:
    """``bindiff compare``: train every model of ``compare.models`` (or those ``models`` names) on
    the same split for ``seeds`` seeds (default ``compare.seeds``), after ``tune_trials`` trials
    of each model's ``compare.spaces`` on validation when given; returns the comparison folder
    (``compare.json``, ``results.csv``, ``results.md``, ``comparison.png``, the runs)."""
    refuse_one_string(overrides)  # its characters would be read as overrides, one by one
    recipe, overrides = str(recipe), list(overrides)
    seeds, tune_trials = whole_count(seeds, "seeds", "--seeds"), whole_count(tune_trials, "tune_trials", "--tune")
    models = _names_given(models)
    base = load_recipe(recipe, overrides)
    if base["task"] != "recommend":
        raise RecipeError(f"{recipe}: bindiff compare compares recommendation models; this recipe has task "
                          f"{base['task']!r}")
    presets = _model_overrides(base, models)
    n_seeds = base["compare"]["seeds"] if seeds is None else seeds
    if n_seeds < 1:
        raise RecipeError(f"{argument('seeds', '--seeds')} must be at least 1, got {n_seeds}")
    if base["seed"] + n_seeds - 1 >= 2 ** 32:  # seed, seed+1, ...: each must be a seed (a list of 10**20 filled memory)
        given = "compare.seeds" if seeds is None else argument('seeds', '--seeds')
        raise RecipeError(f"{given} {n_seeds} from seed {base['seed']}: the last seed, {base['seed'] + n_seeds - 1}, "
                          "lies beyond 2**32 - 1")
    seed_values = range(base["seed"], base["seed"] + n_seeds)
    # Validate every model's recipe and search space before anything is trained or written.
    from .. import registry

    configs = {}
    for name, extra in presets.items():
        refuse_replaced(overrides, [override_key(o) for o in extra], f"compare.models.{name} sets")
        configs[name] = load_recipe(recipe, [*overrides, *extra])
        refuse_unread(TASK, configs[name], extra, where=f"compare.models.{name}: ")
        registry.check_recipe(configs[name])
    for text in overrides:  # the command line's are shared: refused when no compared model reads them
        key = override_key(text)
        reasons = [TASK.unread_reason(config, key) for config in configs.values()]
        if all(reasons):
            raise RecipeError(f"override {text!r}: {'; '.join(sorted(set(reasons)))}, so it would change nothing")
    spaces = _search_spaces(base, recipe, overrides, presets, tune_trials)
    # A missing dataset is one error line before a folder is named (piped, its name would be printed
    # first); a bad file stops the first run and leaves no comparison that holds only what it was asked.
    find_dataset(base["data"], data_dir, base["split"])
    if any(config["model"]["kind"] == "ease" for config in configs.values()):
        # EASE's dense item × item matrices are checked against the memory here, not after the models
        # listed before it have trained (an hour on Amazon CDs, then a comparison left without results)
        from .baselines.ease import check_ease_fits

        check_ease_fits(TASK.dim(TASK.prepare({**base, "seed": seed_values[0]}, data_dir)))
    # recipe.yaml (and the folder's hash) record what runs: the seeds and models the command line chose
    base = {**base, "compare": {**base["compare"], "seeds": n_seeds,
                                "models": {name: list(extra) for name, extra in presets.items()},
                                "spaces": {n: s for n, s in base["compare"]["spaces"].items() if n in spaces}}}
    if tune_trials is not None:  # --tune N: the trials each searched model had
        base = {**base, "tune": {**base["tune"], "trials": tune_trials}}
    # stopped, a line names the comparison, not a run of it (after an empty folder was removed)
    with runs_inside("comparison") as place, \
            new_output_dir(base, "comparison", folder="compare", preamble=("recipe.yaml", "models.json")) as out:
        place["out"] = out
        write_text(out / "recipe.yaml", dump_recipe(base))
        if log_lines(base):
            log(f"comparison directory: {out}")  # piped output can follow the comparison from its start
        tuning: dict[str, dict] = {}
        for name, space in spaces.items():  # the same number of trials for every model with a space
            # a shared override this model never reads stays out of its search (another model reads it)
            read = [o for o in overrides if TASK.unread_reason(configs[name], override_key(o)) is None]
            # typed=[]: the command line's were checked above; a preset's are the defaults searched
            study_dir = run_tuning(recipe, [*read, *presets[name], f"output.root={out / 'tune' / name}"],
                                   trials=tune_trials, data_dir=data_dir, space=space,
                                   section=f"compare.spaces.{name}", typed=[])
            study = json.loads((study_dir / "study.json").read_text())
            tuning[name] = {"trials": len(study["trials"]), "seconds": study["seconds"], "study": str(study_dir),
                            "best_valid": study["best"]["valid"], "best_overrides": study["best"]["overrides"]}
            presets[name] = [*presets[name], *study["best"]["overrides"]]
        write_json(out / "models.json", presets)  # the overrides compared, tuned values included

        runs: list[ModelRun] = []
        for seed in seed_values:
            for name, extra in presets.items():
                config = load_recipe(recipe, [*overrides, *extra, f"seed={seed}",
                                              f"output.root={out / 'runs' / name}"])
                trained = train_recommender(config, data_dir=data_dir)
                cfg, split, model, _ = load_run(trained.run_dir)
                started = time.perf_counter()
                report = evaluate_part(model, cfg, split.test, device_of(model),
                                       popularity=training_popularity(split.train))  # popularity@K reads it
                runs.append(ModelRun(name, cfg["model"]["kind"], seed, trained.run_dir, report.mean,
                                     trained.metrics["valid"], report.per_user,
                                     trained.metrics["training"]["seconds"], time.perf_counter() - started,
                                     split.test.user_ids))
                if base["output"]["progress"] is not False:  # between the runs' training bars, or their lines
                    select = cfg["eval"]["select"]
                    log(f"compare: run {len(runs)}/{len(seed_values) * len(presets)}, {name} seed {seed}: "
                        f"valid {select} {trained.metrics['valid'][select]:.4f} in {runs[-1].train_seconds:.1f} s")
        table = summarise(runs, base)
        table["tuning"] = {name: tuning.get(name, {"trials": 0}) for name in presets}
        table["one_split"] = draws_no_split(base["split"])
        write_json(out / "compare.json", table)
        write_text(out / "results.csv", _to_csv(table))
        write_text(out / "results.md", _to_markdown(table, recipe, overrides, models, n_seeds, tune_trials))
        plot_comparison(table, out / "comparison.png")
    return out


def summarise(runs: list[ModelRun], config: dict) -> dict:
    metrics = list(runs[0].test)
    select = config["eval"]["select"]
    models = list(dict.fromkeys(r.model for r in runs))
    rows = {}
    for name in models:
        mine = [r for r in runs if r.model == name]
        rows[name] = {
            "seeds": [r.seed for r in mine],
            "mean": {m: float(np.mean([r.test[m] for r in mine])) for m in metrics},
            # over seeds, ddof 1; undefined (NaN, shown as n/a) for a single seed
            "std": {m: float(np.std([r.test[m] for r in mine], ddof=1)) if len(mine) > 1 else float("nan")
                    for m in metrics},
            "train_seconds": float(np.mean([r.train_seconds for r in mine])),
            "inference_seconds": float(np.mean([r.inference_seconds for r in mine])),
            "runs": [str(r.run_dir) for r in mine],
        }
    baselines = [m for m in models if next(r.kind for r in runs if r.model == m) != BINOMIAL]
    # chosen on validation users, never on the test values the table reports
    valid_mean = {m: float(np.mean([r.valid[select] for r in runs if r.model == m])) for m in baselines}
    defined = [m for m in baselines if np.isfinite(valid_mean[m])]  # a NaN mean would win max() when listed first
    best = max(defined, key=lambda m: valid_mean[m]) if defined else None
    for name in models:
        rows[name]["vs_best_baseline"] = None
        if best is None or name == best:
            continue
        mine = [r for r in runs if r.model == name]
        theirs = {r.seed: r for r in runs if r.model == best}
        test = paired_wilcoxon(*per_user_pairs(mine, [theirs[r.seed] for r in mine], select,
                                               empty_as_zero=config["eval"].get("empty_users") == "zero"))
        rows[name]["vs_best_baseline"] = {"baseline": best, "metric": select, "users": test["units"],
                                          "ranked": test["ranked"], "mean_difference": test["mean_difference"],
                                          "wilcoxon_p": test["wilcoxon_p"],
                                          "seeds": len(mine),
                                          "seed_t_p": _seed_t_p([r.test[select] for r in mine],
                                                                [theirs[r.seed].test[select] for r in mine])}
    return {"metrics": metrics, "select": select, "best_baseline": best,
            "best_baseline_chosen_on": f"mean validation {select} over the seeds", "models": rows}


def per_user_pairs(mine: list[ModelRun], theirs: list[ModelRun], select: str,
                   empty_as_zero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One (model, baseline) pair of ``select`` per distinct test user, seed by seed paired.

    A user tested under several seeds (a fixed split such as DiffRec's, a fixed ``split.seed``, or
    strong-generalisation draws that overlap) is averaged over those seeds: counted once per seed,
    a fixed split's users entered the test five times over and its p-values came out far too small.
    With ``empty_as_zero`` (``eval.empty_users: zero``) a user with nothing held out counts as 0,
    as in the table's means; otherwise such users are left out.
    """
    for a, b in zip(mine, theirs):
        if not np.array_equal(a.users, b.users):
            raise ValueError(f"seed {a.seed}: {a.model} and {b.model} were tested on other users")
    ids = np.concatenate([np.asarray(r.users).astype(str) for r in mine])
    ours = np.concatenate([r.per_user[select] for r in mine]).astype(np.float64)
    baseline = np.concatenate([r.per_user[select] for r in theirs]).astype(np.float64)
    if empty_as_zero:
        ours, baseline = np.nan_to_num(ours, nan=0.0), np.nan_to_num(baseline, nan=0.0)
    scored = ~(np.isnan(ours) | np.isnan(baseline))
    _, user = np.unique(ids[scored], return_inverse=True)
    seeds = np.bincount(user)
    return np.bincount(user, ours[scored]) / seeds, np.bincount(user, baseline[scored]) / seeds


def _seed_t_p(mine: list[float], theirs: list[float]) -> float | None:
    """Two-sided paired t-test over the seeds' test means; None below two seeds or when every
    seed gives the same difference (the test is undefined there)."""
    from scipy.stats import ttest_rel

    diff = np.asarray(mine, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)
    if diff.size < 2 or np.all(diff == diff[0]):
        return None
    return float(ttest_rel(mine, theirs).pvalue)


def _sd(value: float, undefined: str) -> str:
    return undefined if np.isnan(value) else f"{value:.4f}"


def _to_csv(table: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metrics = table["metrics"]
    writer.writerow(["model", *[f"{m}_mean" for m in metrics], *[f"{m}_std" for m in metrics],
                     "train_seconds", "inference_seconds", "p_vs_best_baseline", "p_seeds_vs_best_baseline"])
    for name, row in table["models"].items():
        test = row["vs_best_baseline"]
        writer.writerow([name, *[f"{row['mean'][m]:.4f}" for m in metrics], *[_sd(row['std'][m], "") for m in metrics],
                         f"{row['train_seconds']:.1f}", f"{row['inference_seconds']:.2f}",
                         "" if test is None else f"{test['wilcoxon_p']:.3g}",
                         "" if test is None or test["seed_t_p"] is None else f"{test['seed_t_p']:.3g}"])
    return buffer.getvalue()


def draws_no_split(split_cfg: dict) -> bool:
    """Whether every seed gets the same split: a fixed ``split.seed``, a weak split of each user's
    latest items or a temporal split (nothing is drawn). A predefined split's validation users may be
    drawn (BARS files)."""
    return (split_cfg.get("seed") is not None or split_cfg["kind"] == "temporal"
            or (split_cfg["kind"] == "weak" and split_cfg.get("holdout") == "latest"))


def _to_markdown(table: dict, recipe: str, overrides, models, n_seeds: int, tune_trials: int | None = None) -> str:
    metrics = table["metrics"]
    # quoted for a shell: an override such as 'eval.metrics=[hit@10, ndcg@10]' is one word
    command = shlex.join(["bindiff", "compare", recipe, *overrides, *(["--models", ",".join(models)] if models else []),
                          "--seeds", str(n_seeds), *(["--tune", str(tune_trials)] if tune_trials else [])])
    tuned = bool(tune_trials)
    lines = [f"`{command}`", "",
             "| model | " + " | ".join(metrics) + " | train s | inference s | vs best baseline |"
             + (" tuning trials |" if tuned else ""),
             "|---|" + "---|" * (len(metrics) + 3 + tuned)]
    for name, row in table["models"].items():
        cells = [f"{row['mean'][m]:.4f} ± {_sd(row['std'][m], 'n/a')}" for m in metrics]
        test = row["vs_best_baseline"]
        versus = "(best baseline)" if name == table["best_baseline"] else (
            "" if test is None else f"{test['mean_difference']:+.4f}, p {_p_value(test['wilcoxon_p'])}"
            + ("" if test["seed_t_p"] is None else f"; seeds p {_p_value(test['seed_t_p'])}"))
        trials = table.get("tuning", {}).get(name, {}).get("trials", 0)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['train_seconds']:.1f} | "
                     f"{row['inference_seconds']:.2f} | {versus} |" + (f" {trials or 'none'} |" if tuned else ""))
    if n_seeds == 1:
        footnote = "One seed, so no standard deviation (its split shared by all models)"
    elif table.get("one_split"):
        footnote = (f"Mean ± standard deviation over {n_seeds} seeds, all on one split (it draws nothing from the "
                    "seed): the spread is the models' training alone")
    else:
        footnote = f"Mean ± standard deviation over {n_seeds} seeds (each seed's split shared by all models)"
    if table["best_baseline"] is None:
        footnote += "; no model of this comparison is a baseline, so there is no paired test."
    else:
        footnote += (f"; p: two-sided Wilcoxon signed-rank test on per-user test {table['select']}, each distinct "
                     "user once (averaged over the seeds that tested them), "
                     f"against the best baseline ({table['best_baseline']}, the baseline with the highest mean "
                     f"validation {table['select']})" + ("; seeds p: two-sided paired t-test over the seeds' test "
                                                          "means, which also sees how training varies between seeds."
                                                          if n_seeds > 1 else "."))
    lines += ["", footnote]
    return "\n".join(lines) + "\n"


def _p_value(p: float) -> str:
    # scipy returns exactly 0 below the smallest double; "= 0" would overstate it
    return "< 1e-300" if p == 0 else f"= {p:.2g}"


def plot_comparison(table: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    metrics, names = table["metrics"], list(table["models"])
    fig = Figure(figsize=(1.6 + 1.2 * len(names) * len(metrics) / 2, 4))
    ax = fig.subplots()
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        row = table["models"][name]
        xs = np.arange(len(metrics)) + i * width
        ax.bar(xs, [row["mean"][m] for m in metrics], width, yerr=[np.nan_to_num(row["std"][m]) for m in metrics],
               label=name, capsize=2)
    ax.set_xticks(np.arange(len(metrics)) + 0.4 - width / 2, metrics)
    ax.set_ylabel("test value (mean ± std over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
