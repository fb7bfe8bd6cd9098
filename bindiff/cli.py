"""The ``bindiff`` command: a thin typer layer over the library.

Bad input (a recipe key, a data file, a run directory) ends with one line on stderr naming
what is wrong and exit code 2; tracebacks are kept for bugs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import List, Optional

import typer

from .completion import complete_override, complete_recipe

# rich markup off: help text keeps its brackets ([box], [600]); shell completion on (--install-completion)
app = typer.Typer(add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Bernoulli (binomial) diffusion over binary vectors.")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"bindiff {__version__}")
        raise typer.Exit()


@app.callback()
def _main(context: typer.Context,
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Bernoulli (binomial) diffusion over binary vectors."""
    from .arguments import COMMAND_MARK
    from .progress import warnings_as_lines

    context.meta[COMMAND_MARK] = True  # refusals name options (--seeds), not Python arguments (seeds)
    context.with_resource(warnings_as_lines())  # each BindiffWarning one line, until the command ends
    # denoisers, models and tasks of one's own, before any command reads a recipe or a run
    from .plugins import PluginError, load_plugins

    try:
        load_plugins()
    except PluginError as err:
        _fail(err)

def _user_errors() -> tuple[type[BaseException], ...]:
    from .adapters.errors import DataError
    from .config import RecipeError
    from .files import CheckpointError, OutputError

    # Only what bindiff raises for bad input; anything else is a bug and keeps its traceback.
    return (RecipeError, DataError, CheckpointError, OutputError, FileExistsError, FileNotFoundError)


def _not_empty(value):
    """A path option or argument given as "" or blanks: refused, where it was read as the current folder
    (`resume ""`: ".: not a bindiff run directory"; `output.root`-like folders filled in place)."""
    if isinstance(value, str) and not value.strip():
        raise typer.BadParameter("is empty; name a file or folder")
    return value


# the commands that read a masks or segmentation run's cases again: its named data set may have moved
_DATA_DIR_OF_A_RUN = typer.Option(None, callback=_not_empty, help="where a named data set that has moved since the run now lives "
                                             "(default: $BINDIFF_DATA_DIR)")
# every command that reads a trained run: a run trained on a GPU is used on a laptop with --device cpu
_DEVICE = typer.Option(None, "--device", help="where the model runs: cpu, cuda, cuda:N or auto (default: the "
                                              "run's train.device)")


def _warn_if_unfinished(run_dir: str, checkpoint: str) -> None:
    """A warning line when a run has no metrics.json: still training, or stopped (its checkpoint is
    then that of an unfinished training)."""
    from pathlib import Path

    if not (Path(run_dir) / "metrics.json").is_file():
        typer.echo(f"warning: {run_dir}: no metrics.json, so the run has not finished (still training, or "
                   f"stopped; `bindiff resume` ends it); its {checkpoint}.pt was used as it stands", err=True)


def _fail(err: BaseException) -> None:
    if isinstance(err, (FileExistsError, FileNotFoundError)) and err.errno is not None:
        # the system's own error, not one of bindiff's refusals (those carry a message alone): a bug
        raise err
    message = str(err)
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command()
def train(
    recipe: str = typer.Argument(..., autocompletion=complete_recipe,
                                 callback=_not_empty, help="a shipped recipe's name (ml1m; `bindiff recipes`) or a YAML file"),
    overrides: Optional[List[str]] = typer.Argument(None, autocompletion=complete_override,
                                                    help="key=value overrides, e.g. train.lr=3e-4"),
    data_dir: Optional[str] = typer.Option(None, callback=_not_empty, help="where datasets live (default: $BINDIFF_DATA_DIR)"),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                         callback=_not_empty, help="continue this interrupted run of the same recipe"),
    nproc: int = typer.Option(1, "--nproc", min=1,
                              help="train on this many processes through torchrun (gloo on CPU, NCCL on CUDA)"),
):
    """Train a recipe and evaluate it; prints the run directory and its main metrics."""
    from .config import load_recipe

    try:
        config = load_recipe(recipe, overrides or [])
        # after the recipe: a missing file or a mistyped key is answered without importing torch
        from .tasks import registry
        from .training import distributed

        if nproc > 1 or distributed.launched_by_torchrun():
            registry.check_parallel(config)
        if nproc > 1 and not distributed.launched_by_torchrun():
            registry.check_recipe(config)  # here, in one line, not once per worker inside torchrun
            distributed.check_devices(config["train"]["device"], nproc)
            args = ["train", recipe, *(overrides or []), *(["--data-dir", data_dir] if data_dir else []),
                    *(["--resume", resume] if resume else [])]
            raise typer.Exit(code=distributed.launch(nproc, args))
        if resume is not None:
            run = registry.resume(resume, config=config, recipe=recipe, data_dir=data_dir)
        else:
            run = registry.train(config, overrides or [], data_dir=data_dir)
    except _user_errors() as err:
        _fail(err)
    _print_run(run)
    _end_worker()


@app.command("resume")
def resume_run(
    run_dir: str = typer.Argument(..., callback=_not_empty, help="a run directory whose training was interrupted"),
    data_dir: Optional[str] = typer.Option(None, callback=_not_empty, help="where datasets live (default: $BINDIFF_DATA_DIR)"),
    nproc: int = typer.Option(1, "--nproc", min=1,
                              help="continue on this many processes through torchrun (as `train --nproc`)"),
):
    """Continue an interrupted run from its last checkpoint; ends as an uninterrupted run would."""
    from pathlib import Path

    from .tasks import base, registry
    from .training import distributed

    try:
        if nproc > 1 or distributed.launched_by_torchrun():
            registry.check_parallel(base.read_run_config(Path(run_dir)))
        if nproc > 1 and not distributed.launched_by_torchrun():
            distributed.check_devices(base.read_run_config(Path(run_dir))["train"]["device"], nproc)
            raise typer.Exit(code=distributed.launch(nproc, ["resume", run_dir,
                                                             *(["--data-dir", data_dir] if data_dir else [])]))
        run = registry.resume(run_dir, data_dir=data_dir)
    except _user_errors() as err:
        _fail(err)
    _print_run(run)
    _end_worker()


def _end_worker() -> None:
    """A torchrun worker whose run is complete (files written, process group left) exits here,
    without the interpreter's teardown: gloo's threads can still hold work objects whose tensors
    need the GIL while it is being torn down, and the process then aborts ("terminate called
    without an active exception", exit code 134) after a run that succeeded (pytorch/pytorch#179291)."""
    from .training import distributed

    if distributed.launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _echo_json(data) -> None:
    """Metrics on standard output as the files hold them (an undefined value as null, not NaN)."""
    from .files import json_safe

    typer.echo(json.dumps(json_safe(data), indent=2))


# What `bindiff train` prints of a run's metrics.json, by the metrics' own top-level keys.
_HEADLINE = ("test", "valid", "completion", "denoising", "generation", "training", "seconds_total")


def _print_run(run) -> None:
    from .training import distributed

    if not distributed.is_main_process():  # under torchrun rank 0 reports for all
        return
    typer.echo(f"run directory: {run.run_dir}")
    if "test" in run.metrics and "valid" in run.metrics:  # a recommendation run: its test and validation means
        shown = {k: run.metrics[k] for k in ("test", "valid")}
    else:
        shown = {k: v for k, v in run.metrics.items() if k in _HEADLINE}
    _echo_json(shown)


@app.command()
def evaluate(
    run_dir: str = typer.Argument(..., callback=_not_empty, help="a run directory made by `bindiff train`"),
    overrides: Optional[List[str]] = typer.Argument(
        None, autocompletion=complete_override,
        help="overrides of how the model is scored, e.g. inference.mode=reverse inference.t=3: "
                   "inference.*, eval.metrics, eval.batch_size, eval.empty_users (segmentation runs: "
                   "segmentation.*; masks runs: evaluations.*; both: eval.* but eval.select), and output.progress"),
    checkpoint: str = typer.Option("best", help="best or last"),
    out: Optional[str] = typer.Option(None, "--out", "--output",
                                      callback=_not_empty, help="also write the metrics to OUT/metrics.json (a new folder)"),
    device: Optional[str] = _DEVICE,
    data_dir: Optional[str] = _DATA_DIR_OF_A_RUN,
):
    """Re-evaluate a run's checkpoint on its saved split; prints the metrics.

    Overrides change only how the trained model is scored (inference and metrics), so one
    training run answers questions such as "does multi-step inference help?". A segmentation
    run (overrides of segmentation.*, eval.* but eval.select, output.progress) is scored again into
    OUT/segmentation/, a masks run (evaluations.*, eval.* but eval.select, output.progress) runs its
    recipe's evaluations.run into OUT/<evaluation>/, so
    --out is needed there: a run's own results are never overwritten.
    """
    from pathlib import Path

    from .files import refuse_a_long_name, staged_folder, write_json
    from .tasks.base import read_run_config
    from .tasks.registry import get_task

    try:
        if out is not None:
            refuse_a_long_name(Path(out))  # before exists(), which raises on a name the file system cannot hold
            if Path(out).exists():
                raise FileExistsError(f"{out}: already exists; bindiff never overwrites")
        task = get_task(read_run_config(Path(run_dir))["task"])
        _warn_if_unfinished(run_dir, checkpoint)

        def score(folder: Path | None) -> dict:  # each task's own rescoring (Task.rescore)
            return task.rescore(Path(run_dir), overrides or [], checkpoint, folder, device, data_dir)

        if out is None:
            metrics = score(None)
        else:  # everything goes to a staging folder that becomes OUT once complete: no half-written OUT
            with staged_folder(Path(out)) as staging:
                metrics = score(staging)
                write_json(staging / "metrics.json", metrics)
    except _user_errors() as err:
        _fail(err)
    _echo_json(metrics)


@app.command()
def recommend(
    run_dir: str = typer.Argument(..., help="a run directory made by `bindiff train`"),
    user: Optional[str] = typer.Option(None, help="raw user id of one of the run's users"),
    items: Optional[str] = typer.Option(None, help="a new user's history: raw item ids, comma-separated"),
    input: Optional[str] = typer.Option(None, "--input", help="CSV (tab-separated if named .tsv) of user,item rows "
                                        "in the training data's layout: many new users (rows rated below the run's "
                                        "data.min_rating left out)"),
    output: Optional[str] = typer.Option(None, "--output", "--out",
                                         help="with --input: CSV of user,rank,item,score rows"),
    k: int = typer.Option(20, min=1, help="number of items"),
    checkpoint: str = typer.Option("best", help="best or last"),
    device: Optional[str] = _DEVICE,
):
    """Top-k items a user has not interacted with, as raw item ids (the model is loaded once)."""
    from pathlib import Path

    from .config import RecipeError
    from .tasks.recommendation.serve import Recommender, read_histories, write_recommendations

    try:
        for name, value in (("--user", user), ("--items", items), ("--input", input), ("--output", output)):
            if value is not None and not value.strip():  # was read as not given, or as the current folder
                raise RecipeError(f"recommend: {name} is empty")
        given = [name for name, value in (("--user", user), ("--items", items), ("--input", input)) if value]
        if len(given) != 1:
            raise RecipeError("recommend: give exactly one of --user, --items or --input"
                              + (f" (got {', '.join(given)})" if given else ""))
        if (input is None) != (output is None):
            raise RecipeError("recommend: --input and --output go together")
        if output is not None:  # a name too long, or a file where a folder must be: before any scoring
            from .files import OutputError, refuse_a_file_above, refuse_a_long_name

            try:
                refuse_a_long_name(Path(output))  # before resolve() and is_file(), which raise on it
                refuse_a_file_above(Path(output))
            except OutputError as err:
                raise OutputError(f"--output {err}") from None
        if input is not None and Path(output).resolve() == Path(input).resolve():
            raise RecipeError(f"--output {output}: is the --input file; the histories would be overwritten")
        if output is not None and Path(output).is_file():
            raise RecipeError(f"--output {output}: exists; bindiff never overwrites a file (remove it or name "
                              "another)")
        if output is not None and Path(output).exists():  # a folder or a device: before every history is scored
            raise RecipeError(f"--output {output}: exists and is not a regular file")
        if items is not None:
            users, histories = ["new"], [[i.strip() for i in items.split(",") if i.strip()]]
            if not histories[0]:
                raise RecipeError(f"--items {items!r}: no item ids (give them comma-separated, e.g. --items 50,172)")
        recommender = Recommender.from_run(run_dir, checkpoint=checkpoint, device=device)
        _warn_if_unfinished(run_dir, checkpoint)
        below = 0  # --input's rows rated below the run's data.min_rating
        if input is not None:  # read in the run's layout: its column names, separator and rating threshold
            data = recommender.config["data"]
            users, histories, below = read_histories(input, data, items=recommender.column)
            if below:
                typer.echo(f"{below} row(s) of {input} rate below the run's data.min_rating={data['min_rating']:g} "
                           "and are not interactions, as in training", err=True)
        if user is not None:
            users, histories = [user], [recommender.history_of(user)]
        results = recommender.recommend(histories, k, progress=recommender.config["output"]["progress"])
        empty = [u for u, h in zip(users, histories) if not any(str(i) in recommender.column for i in h)]
        if empty:  # EASE, say, scores an empty history 0 everywhere: its list would be the catalogue's order
            rated = " rated at least data.min_rating" if below else ""
            typer.echo(f"warning: {len(empty)} user(s) have no item{rated} the run knows, so their lists are the "
                       f"model's answer to an empty history, the same for each ({', '.join(map(str, empty[:5]))}"
                       f"{' ...' if len(empty) > 5 else ''})", err=True)
        unknown = {u: r.unknown for u, r in zip(users, results) if r.unknown}
        if unknown:
            shown = "; ".join(f"{u}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
                              for u, ids in list(unknown.items())[:5])
            typer.echo(f"warning: {sum(map(len, unknown.values()))} item id(s) of {len(unknown)} user(s) are not in "
                       f"the run's items and were not used ({shown})", err=True)
        short = [u for u, r in zip(users, results) if len(r.items) < k]
        if short:  # a history that holds (nearly) every item leaves fewer than k to recommend
            typer.echo(f"warning: {len(short)} user(s) got fewer than {k} items, every item they have not seen "
                       f"({', '.join(map(str, short[:5]))}{' ...' if len(short) > 5 else ''})", err=True)
        if output is not None:
            write_recommendations(output, users, results)
    except _user_errors() as err:
        _fail(err)
    if output is not None:
        counts = sorted({len(r.items) for r in results})
        each = f"{counts[0]} items each" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} items each"
        typer.echo(f"{len(users)} users, {each}: {output}")
        return
    for rank, (item, score) in enumerate(zip(results[0].items, results[0].scores), 1):
        typer.echo(f"{rank}\t{item}\t{score:.6f}")


@app.command()
def export(
    run_dir: str = typer.Argument(..., callback=_not_empty, help="a recommendation run directory made by `bindiff train`"),
    overrides: Optional[List[str]] = typer.Argument(
        None, autocompletion=complete_override,
        help="inference.* overrides: how the scorer reads the model, e.g. inference.add_noise=false"),
    output: str = typer.Option(..., "--output", "--out",
                               callback=_not_empty, help="folder to create: scorer.pt2, items.json, config.yaml, README.md"),
    checkpoint: str = typer.Option("best", help="best or last"),
):
    """Write a self-contained scorer of a run (torch.export), loadable with torch alone."""
    from .tasks.recommendation.export import export_run

    try:
        out = export_run(run_dir, output, checkpoint=checkpoint, overrides=overrides or [])
        _warn_if_unfinished(run_dir, checkpoint)
    except _user_errors() as err:
        _fail(err)
    typer.echo(f"exported: {out}")


@app.command()
def compare(
    recipe: str = typer.Argument(..., autocompletion=complete_recipe,
                                 callback=_not_empty, help="a shipped recipe's name or a YAML file whose compare.models lists the "
                                      "models"),
    overrides: Optional[List[str]] = typer.Argument(None, autocompletion=complete_override,
                                                    help="key=value overrides applied to every model, before "
                                                         "its own compare.models overrides"),
    models: Optional[str] = typer.Option(None, help="comma-separated subset of compare.models (default: all)"),
    seeds: Optional[int] = typer.Option(None, help="number of seeds (default: compare.seeds)"),
    tune: Optional[int] = typer.Option(None, "--tune", metavar="TRIALS",
                                       help="first tune every model of compare.spaces with this many trials "
                                            "on validation users, then compare the tuned models"),
    data_dir: Optional[str] = typer.Option(None, callback=_not_empty, help="where datasets live (default: $BINDIFF_DATA_DIR)"),
):
    """Train several models on the same splits over several seeds; write a table and a plot."""
    from .tasks.recommendation.compare import run_comparison

    try:
        chosen = models.split(",") if models is not None else None  # "" is refused, not read as every model
        out = run_comparison(recipe, overrides or [], chosen, seeds, data_dir, tune_trials=tune)
    except _user_errors() as err:
        _fail(err)
    typer.echo(f"comparison directory: {out}")
    typer.echo((out / "results.md").read_text(encoding="utf-8"), nl=False)


@app.command()
def tune(
    recipe: str = typer.Argument(..., autocompletion=complete_recipe,
                                 callback=_not_empty, help="a shipped recommendation recipe's name or a YAML file whose tune.space "
                                      "lists the keys to search"),
    overrides: Optional[List[str]] = typer.Argument(None, autocompletion=complete_override,
                                                    help="key=value overrides applied to every trial"),
    trials: Optional[int] = typer.Option(None, help="number of trials (default: tune.trials)"),
    data_dir: Optional[str] = typer.Option(None, callback=_not_empty, help="where datasets live (default: $BINDIFF_DATA_DIR)"),
):
    """Search tune.space with a seeded sampler, choosing on validation users only."""
    from .tasks.recommendation.tune import run_tuning

    try:
        out = run_tuning(recipe, overrides or [], trials, data_dir)
    except _user_errors() as err:
        _fail(err)
    study = json.loads((out / "study.json").read_text())
    select, best = study["select"], study["best"]
    typer.echo(f"tuning directory: {out}")
    for trial in study["trials"]:  # an undefined value (NaN) is null in the file
        valid = "n/a" if trial["valid"] is None else f"{trial['valid']:.4f}"
        typer.echo(f"trial {trial['number']:3d}  valid {select} {valid}  {trial['seconds']:7.1f} s  "
                   + " ".join(trial["overrides"]))
    typer.echo(f"best: trial {best['number']}, valid {select} = {best['valid']:.4f}: " + " ".join(best["overrides"]))
    typer.echo(f"best recipe: {out / 'best.yaml'}")
    typer.echo("test metrics of the best trial (for information only; never used to choose): "
               + json.dumps(study["best_trial_test_for_information_only"]))
    typer.echo(f"total: {study['seconds']:.1f} s for {len(study['trials'])} trials")


@app.command("recipes")
def list_recipes():
    """List the recipes shipped with bindiff (train one by name: `bindiff train ml100k`)."""
    from .config.recipe import describe_recipe, shipped_recipes

    recipes = shipped_recipes()
    width = max(map(len, recipes))
    for name, path in recipes.items():
        typer.echo(f"{name:<{width}}  {describe_recipe(path)}")


@app.command("show-config")
def show_config(
    recipe: Optional[str] = typer.Argument(None, autocompletion=complete_recipe,
                                           callback=_not_empty, help="a shipped recipe's name or a YAML file; omit it (or start "
                                                "with key=value) for the defaults, e.g. `show-config task=masks`"),
    overrides: Optional[List[str]] = typer.Argument(None, autocompletion=complete_override,
                                                    help="key=value overrides"),
):
    """Print the resolved recipe (validated) as YAML."""
    import re
    from pathlib import Path

    from .config import dump_recipe, load_recipe

    try:
        if recipe is not None and re.match(r"[A-Za-z_][\w.]*=", recipe) and not Path(recipe).exists():
            recipe, overrides = None, [recipe, *(overrides or [])]  # an override, not a file: the defaults with it
        config = load_recipe(recipe, overrides or [])
        from .tasks import registry  # after the recipe, as in `train`
        from .tasks.base import refuse_unread

        registry.check_recipe(config)  # the checks `bindiff train` makes before reading data
        refuse_unread(registry.get_task(config["task"]), config, overrides or [])  # as `train` refuses them
        typer.echo(dump_recipe(config), nl=False)
    except _user_errors() as err:
        _fail(err)


# -- masks: the evaluations on a finished masks run ----------------------------------------------------------
masks_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Mask completion, denoising and generation on a finished masks run, and `apply` "
                             "to your own label maps.")
app.add_typer(masks_app, name="masks")


def _masks_task(task: str, run_dir: str, overrides, checkpoint: str, out, device: str | None = None,
                data_dir: str | None = None) -> None:
    import time
    from pathlib import Path

    from .tasks.base import read_run_config
    from .tasks.masks.job import run_evaluations

    try:
        if out is not None and not out.strip():  # was read as no --out: the results went into the run
            from .config import RecipeError

            raise RecipeError("--out is empty; name a new folder, or leave --out off for RUN_DIR/eval-<time>")
        out_dir = Path(out) if out else Path(run_dir) / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
        read_run_config(Path(run_dir))  # not a run: that line alone, before any warning about it
        _warn_if_unfinished(run_dir, checkpoint)
        metrics = run_evaluations(run_dir, [task], out_dir=out_dir, overrides=overrides or [], checkpoint=checkpoint,
                                  device=device, command=f"masks {task}", data_dir=data_dir)
    except _user_errors() as err:
        _fail(err)
    typer.echo(f"results: {out_dir / task}")
    _echo_json(metrics[task])


_RUN_DIR = typer.Argument(..., callback=_not_empty, help="a run directory made by `bindiff train` on a masks recipe")
_TASK_OVERRIDES = typer.Argument(None, help="overrides of this evaluation's own section (evaluations.<this "
                                            "command>.*), eval.* (but eval.select) or output.progress, e.g. "
                                            "evaluations.completion.hide=[box] for `masks completion`")
_APPLY_OVERRIDES = typer.Argument(None, help="overrides of how the model is run, e.g. evaluations.completion.samples=4 "
                                             "or evaluations.denoising.steps=5 (each --task reads its own section)")
_CHECKPOINT = typer.Option("best", help="best or last")
_OUT = typer.Option(None, "--out", "--output", help="output folder (default: RUN_DIR/eval-<time>); never overwritten")


def _evaluation_command(evaluation: str, doc: str):
    def command(run_dir: str = _RUN_DIR, overrides: Optional[List[str]] = _TASK_OVERRIDES,
                checkpoint: str = _CHECKPOINT, out: Optional[str] = _OUT, device: Optional[str] = _DEVICE,
                data_dir: Optional[str] = _DATA_DIR_OF_A_RUN):
        _masks_task(evaluation, run_dir, overrides, checkpoint, out, device, data_dir)
    command.__doc__ = doc
    return command


# One name per evaluation, as in the recipe keys and the result folders; the verbs of earlier
# versions stay as hidden aliases.
for _name, _verb, _doc in (
        ("completion", "complete", "Hide part of each held-out mask and fill it by inpainting; compare with the baselines."),
        ("denoising", "denoise", "Flip a share of each held-out mask's voxels and recover it; compare with the baselines."),
        ("generation", "generate", "Sample masks from noise and report how plausible they are.")):
    masks_app.command(_name)(_evaluation_command(_name, _doc))
    masks_app.command(_verb, hidden=True)(_evaluation_command(_name, _doc))


@masks_app.command("apply")
def masks_apply(run_dir: str = _RUN_DIR,
                overrides: Optional[List[str]] = _APPLY_OVERRIDES,
                task: str = typer.Option(..., help="completion (fill the unknown voxels) or denoising"),
                input: str = typer.Option(..., "--input", callback=_not_empty, help="a label map, or a folder of them"),
                output: str = typer.Option(..., "--output", "--out", callback=_not_empty, help="folder for <case>.nii.gz and summary.json"),
                unknown: Optional[str] = typer.Option(None, callback=_not_empty, help="complete: a file (or a folder of same-named "
                                                      "files) whose non-zero voxels are unknown"),
                unknown_label: Optional[int] = typer.Option(None, help="complete: the label value marking unknown "
                                                            "voxels in the input itself"),
                checkpoint: str = _CHECKPOINT, device: Optional[str] = _DEVICE,
                panels: int = typer.Option(20, min=0, help="PNG panels (the input and the result in three planes) "
                                           "of the first N files, in panels/; 0: none")):
    """Complete or denoise your own label maps with a trained masks run; NIfTI in each input's geometry."""
    from .tasks.masks.apply import apply_run

    try:
        summary = apply_run(run_dir, task, input, output, unknown=unknown, unknown_label=unknown_label,
                            overrides=overrides or [], checkpoint=checkpoint, device=device, panels=panels)
    except _user_errors() as err:
        _fail(err)
    for case in summary["cases"]:
        typer.echo(f"{case['case_id']}: {case['output']}")


@app.command("segment")
def segment_images(
    run_dir: str = typer.Argument(..., callback=_not_empty, help="a run directory made by `bindiff train` on a segmentation recipe"),
    overrides: Optional[List[str]] = typer.Argument(None, autocompletion=complete_override,
                                                    help="segmentation.* overrides of how the model samples, "
                                                         "e.g. segmentation.samples=16, and eval.batch_size"),
    input: str = typer.Option(..., "--input", callback=_not_empty, help="an image (NIfTI, MHA, NRRD), a folder holding one DICOM series, "
                              "a folder of these, or (several channels) a case folder holding the run's "
                              "images.channels, or a folder of them"),
    output: str = typer.Option(..., "--output", "--out", callback=_not_empty, help="a new (or empty) folder for <case>_mask.nii.gz, "
                               "<case>_uncertainty.nii.gz and summary.json"),
    brain: Optional[str] = typer.Option(None, callback=_not_empty, help="brain mask file, or a folder of <case>.nii.gz brain masks "
                                        "(runs with images.brain only)"),
    model: str = typer.Option("diffusion", help="diffusion (K samples from noise) or unet (the run's baseline)"),
    probabilities: bool = typer.Option(False, "--probabilities", help="also write <case>_probability.nii.gz, the "
                                       "probability map the mask thresholds"),
    panels: int = typer.Option(20, min=0, help="PNG panels (image, mask, uncertainty in three planes) of the first "
                               "N cases, in panels/; 0: none"),
    checkpoint: str = _CHECKPOINT,
    device: Optional[str] = _DEVICE,
):
    """Segment your own scans with a trained segmentation run; no labels are read. NIfTI in each input's geometry."""
    from .tasks.segmentation.segment import segment

    try:
        summary = segment(run_dir, input, output, brain=brain, model=model, overrides=overrides or [],
                          checkpoint=checkpoint, probabilities=probabilities, panels=panels, device=device)
    except _user_errors() as err:
        _fail(err)
    for case in summary["cases"]:
        typer.echo(f"{case['case_id']}: {case['mask']}  ({case['volume_ml']:.2f} ml)")


@app.command("score")
def score_masks(
    prediction: str = typer.Argument(..., callback=_not_empty, help="a mask, or a folder of masks (<case>_mask.nii.gz as `bindiff segment` "
                                     "writes them, or <case>.nii.gz)"),
    reference: str = typer.Argument(..., callback=_not_empty, help="the reference label map, or a folder of <case>.nii.gz label maps"),
    run: Optional[str] = typer.Option(None, "--run", callback=_not_empty, help="a masks or segmentation run: score its labels.preset "
                                      "and labels.region"),
    preset: Optional[str] = typer.Option(None, help="the references' label preset (msd_hippocampus, brats2015, "
                                         "brats2021, brats2023); default: binary, 0/1 masks"),
    region: Optional[str] = typer.Option(None, help="the preset's region (default: the run's, else whole)"),
    out: Optional[str] = typer.Option(None, "--out", "--output",
                                      callback=_not_empty, help="also write the summary (per case and means) to this new JSON file"),
):
    """Score masks against reference label maps (Dice, IoU, HD95, ASSD, surface Dice, volumes), case by case."""
    from .scoring import labels_to_score, score

    try:
        chosen, chosen_region = labels_to_score(run, preset, region)
        summary = score(prediction, reference, chosen, chosen_region, out=out)
    except _user_errors() as err:
        _fail(err)
    for case in summary["per_case"]:
        typer.echo(f"{case['case_id']}: Dice {case['dice']:.4f}  HD95 {case['hd95_mm']:.2f} mm  "
                   f"volume {case['volume_ml']:.2f} ml (reference {case['reference_volume_ml']:.2f} ml)")
    mean = summary["mean"]
    typer.echo(f"mean over {mean['cases']} case(s): Dice {mean['dice']:.4f} ± {mean['dice_std']:.4f}  "
               f"HD95 {mean['hd95_mm']:.2f} mm  |volume error| {mean['abs_volume_error_ml']:.2f} ml")
    if summary["unmatched_references"]:
        typer.echo(f"{len(summary['unmatched_references'])} reference(s) with no prediction, left out: "
                   + ", ".join(summary["unmatched_references"][:5])
                   + (" ..." if len(summary["unmatched_references"]) > 5 else ""))


def _exit_on_signal(signum: int, frame) -> None:
    signal.signal(signum, signal.SIG_IGN)  # once: a second stop must not interrupt the clean-up it started
    raise SystemExit(128 + signum)


def _stop_again(unraisable) -> None:
    """``sys.unraisablehook``: a stop whose exception was raised while the interpreter ran a callback
    of its own (a weakref's, an import lock's, a ``__del__``) is printed as "Exception ignored" and
    dropped: the command ran on to exit 0, and SIGTERM stayed ignored. The stop is sent again, from a
    thread a moment later, so that it is raised in ordinary code (again, should it land in another
    callback); anything else goes to the hook that was there."""
    stop = unraisable.exc_value
    if isinstance(stop, KeyboardInterrupt):
        signum = signal.SIGINT
    elif isinstance(stop, SystemExit) and stop.code == 128 + signal.SIGTERM:
        signum = signal.SIGTERM
        signal.signal(signum, _exit_on_signal)  # it set itself to ignore a second stop; this is the first
    else:
        _unraisable_hook_before(unraisable)
        return
    import threading

    threading.Timer(0.01, signal.raise_signal, (signum,)).start()


_unraisable_hook_before = sys.unraisablehook


def _install_stop_handlers() -> None:
    """A scheduler's stop (SLURM's time limit, scancel, kill) runs the clean-up Ctrl-C runs: staging
    folders and temporaries removed, exit code 128 + 15 (killed outright, it left them behind). Not
    in a torchrun worker: torchrun stops its workers with SIGTERM, and one that unwound while the
    other still waited in a collective made that one fail with a traceback."""
    global _unraisable_hook_before
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        signal.signal(signal.SIGTERM, _exit_on_signal)
    if sys.unraisablehook is not _stop_again:
        _unraisable_hook_before, sys.unraisablehook = sys.unraisablehook, _stop_again


def _run_app():
    try:
        return app(prog_name="bindiff", standalone_mode=False)
    finally:  # the interpreter's shutdown (atexit) is no place for SystemExit: "Exception ignored ... Traceback"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main() -> None:
    """The ``bindiff`` command. A usage error (a missing argument, an unknown option, a value out of
    range) is one line, ``error: <command>: <what is wrong> (see <command> --help)``, exit code 2,
    as bindiff's own refusals are; click would print the usage and a hint around it."""
    try:  # recent typer carries its own copy of click; earlier ones use click itself
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - typer < 0.24
        from click import exceptions as click_errors

    _install_stop_handlers()
    from .allocator import keep_freed_memory

    keep_freed_memory()  # a tenth of a CPU training run's time went to mapping memory afresh every step
    # a stream closed by the caller (`2>&-`, a daemon) is None in Python: progress, log lines and
    # tqdm would fail on it with an AttributeError after the run folder was made
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the life of the process
    # output redirected on Windows is cp1252: an item id or a file name outside it ended `recommend` or
    # `segment` with a UnicodeEncodeError after the work. Files bindiff writes are UTF-8; so is this
    out = sys.stdout
    if hasattr(out, "reconfigure") and not out.isatty() and (out.encoding or "").lower().replace("-", "") != "utf8":
        out.reconfigure(encoding="utf-8")
    try:
        code = _run_app()
    except getattr(click_errors, "NoArgsIsHelpError", ()) as err:  # `bindiff` or `bindiff masks` alone: the help
        err.show()
        sys.exit(err.exit_code)
    except click_errors.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else "bindiff"
        typer.echo(f"error: {where}: {err.format_message()} (see {where} --help)", err=True)
        sys.exit(2)
    except click_errors.ClickException as err:
        typer.echo(f"error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:  # end of input while click waits: what click prints itself
        typer.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    sys.exit(main())
