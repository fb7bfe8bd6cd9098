"""Speed and memory of a recipe's model: one training epoch, one full ranking, and EASE.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/train_epoch.py RECIPE [key=value ...] [options]

Any recipe works with its overrides, including generated data sets
(``data.dataset=synthetic:netflix``; see adapters/interactions/synthetic.py). Three phases:

train  one epoch of minibatches exactly as ``fit`` runs them (same data order and noise
       generators, ``dense_batch``, forward, backward, optimiser step), without validation or
       checkpoints: seconds, users/s, and the FLOP/s of the Linear layers' forward and
       backward (6 × in × out per user) against a square matrix multiply timed in the same
       process on the same device, in the precision training used (train.precision).
       ``--max-batches N`` times only the first N batches and extrapolates the epoch from
       them; the output then says "extrapolated".
eval   full-ranking top-100 (NDCG@100) of the recipe's test users with their fold-in
       items excluded, with the recipe's scorer and eval.batch_size: seconds, users/s.
       The model is untrained (weights do not change the cost).
ease   EASE as the pipeline fits it (``model.kind=ease``: the closed form for each λ of
       ``--ease-lambdas``, each scored on the validation users), then the test ranking.
       EASE needs dense items × items float64 matrices; its memory is estimated first
       (EASE_BYTES_PER_GRAM_ENTRY × items²) and the phase is skipped, with the reason, when
       the estimate exceeds ``--ease-limit-gb``.

Memory. Each phase runs in a fresh Python process (a worker of this script), so no phase
inherits memory another phase left allocated. A worker first prepares the split as
``bindiff train`` does (read or generate, filter, split) and reports the peak resident
memory of that step (VmHWM) and what stays resident afterwards (VmRSS). It then resets the
kernel's high-water mark to the current RSS (``/proc/self/clear_refs``) and reports the
phase's own peak, which therefore includes the resident split but not the transient peak
of building it. Where the reset is unavailable the phase peak is the process's maximum
and is labelled so. The CSR bytes of the split and, for contrast, the bytes of a dense
float32 users × items matrix are printed alongside.

``train.threads=N`` also caps the BLAS threads of numpy (EASE's eigendecomposition) in the workers:
on a machine shared with another busy process, use ``train.threads=1``.

Options: --max-batches N, --phases train,eval,ease, --ease-lambdas 500[,1000...],
--ease-limit-gb 16.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("train", "eval", "ease")
# EASE's peak, in bytes per item × item entry: the 4.5 float64 matrices its own guard counts
# (baselines/ease.py, measured by benchmarks/ease_memory.py). The measured peak is printed next to it.
EASE_BYTES_PER_GRAM_ENTRY = 36
MB = 1 << 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="time only the first N training batches and extrapolate the epoch")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of train,eval,ease")
    parser.add_argument("--ease-lambdas", default="500", help="comma-separated λ values EASE is fitted with")
    parser.add_argument("--ease-limit-gb", type=float, default=16.0,
                        help="skip EASE when its estimated memory exceeds this many GiB")
    parser.add_argument("--worker", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args(argv)
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown phase(s) {unknown}; choose from {', '.join(PHASES)}")
    if args.max_batches is not None and args.max_batches < 1:
        parser.error(f"--max-batches must be >= 1, got {args.max_batches}")
    args.ease_lambdas = [float(value) for value in args.ease_lambdas.split(",")]
    return args


# ---------------------------------------------------------------- memory of this process


def _proc_status_kb(field: str) -> int | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _max_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


def resident_mb() -> float | None:
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_mb() -> float:
    kb = _proc_status_kb("VmHWM")
    return _max_rss_mb() if kb is None else kb / 1024


def reset_peak() -> bool:
    """Set the high-water mark (VmHWM) to the current RSS; False where Linux does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


# ---------------------------------------------------------------- measurements (worker side)


def linear_flops_per_example(model) -> int:
    """Multiply-adds of every Linear layer, ×2 for FLOPs, ×3 for forward + backward.

    Slightly high: autograd skips the input gradient of the first layer (its input is data).
    """
    import torch

    return sum(6 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_flops_per_s(device, dtype=None, n: int = 2048, repeats: int = 5) -> float:
    """The device's dense matrix-multiply rate in ``dtype`` (float32 when None), the ceiling for an MLP step."""
    import torch

    dtype = dtype or torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def csr_bytes(matrix) -> int:
    return matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes


def prepare(args):
    """The recipe, its split (built as `bindiff train` builds it), the device, and a data report."""
    import torch

    from bindiff.tasks.recommendation.data import prepare_split
    from bindiff.config import load_recipe
    from bindiff.training.devices import resolve_device

    config = load_recipe(args.recipe, args.overrides)
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    device = resolve_device(config["train"]["device"])
    rss_before = resident_mb()
    start = time.perf_counter()
    split, source = prepare_split(config["data"], config["split"], seed=config["seed"])
    seconds = time.perf_counter() - start
    parts = [split.train] + [getattr(getattr(split, stage), name)
                             for stage in ("valid", "test") for name in ("input", "exclude", "target")]
    n_users = split.train.shape[0] + split.valid.n_users + split.test.n_users
    report = {
        "dataset": source.name, "users": n_users, "train_users": split.train.shape[0], "items": split.n_items,
        "interactions": int(split.info.get("n_interactions", split.train.nnz)),
        "train_interactions": int(split.train.nnz),
        "split_csr_mb": round(sum(csr_bytes(m) for m in parts) / MB, 1),
        "dense_float32_mb": round(n_users * split.n_items * 4 / MB, 1),
        "seconds": round(seconds, 2),
        "rss_before_mb": None if rss_before is None else round(rss_before),
        "peak_rss_mb": round(peak_mb()),
        "rss_after_mb": None if resident_mb() is None else round(resident_mb()),
    }
    return config, split, device, report


class PhaseMemory:
    """The peak resident memory of a phase, counted from the moment the split is ready."""

    def __init__(self) -> None:
        self.resident_at_start = resident_mb()
        self.reset_done = reset_peak()

    def report(self) -> dict:
        peak = peak_mb()
        if not self.reset_done:
            return {"peak_rss_mb": round(peak), "peak_includes": "data preparation (high-water mark not resettable)"}
        return {"peak_rss_mb": round(peak), "peak_above_split_mb": round(peak - self.resident_at_start)}


def measure_train(args, config, split, device, memory: PhaseMemory) -> dict:
    import torch

    from bindiff.tasks.recommendation.models import build_model
    from bindiff.training.optim import build_optimizer
    from bindiff.training.steps import dense_batch
    from bindiff.training.trainer import autocast_dtype

    torch.manual_seed(config["seed"])
    model = build_model(config, dim=split.n_items).to(device)
    optimizer = build_optimizer(config, model, steps_per_epoch=-(-split.train.shape[0] // config["train"]["batch_size"]))
    if optimizer is None:
        kind = (config.get("model") or {}).get("kind")
        return {"skipped": f"model.kind {kind!r} is fitted in closed form: it has no training epoch"}
    n_users, batch_size = split.train.shape[0], config["train"]["batch_size"]
    batches_per_epoch = math.ceil(n_users / batch_size)
    batches = min(batches_per_epoch, args.max_batches or batches_per_epoch)
    # The generators fit() uses, so the batches timed are the ones training sees.
    order = torch.Generator().manual_seed(config["seed"])
    noise = torch.Generator(device=device).manual_seed(config["seed"] + 1)
    low_precision = autocast_dtype(config, device)  # train.precision, as fit() applies it
    model.train()
    synchronize(device)
    start = time.perf_counter()
    permutation = torch.randperm(n_users, generator=order).numpy()
    users, loss_sum = 0, 0.0
    for first in range(0, batches * batch_size, batch_size):
        rows = permutation[first:first + batch_size]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=low_precision, enabled=low_precision is not None):
            loss = model(dense_batch(split.train, rows, device), generator=noise).loss
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(rows)  # fit() reads the loss every batch too
        users += len(rows)
    synchronize(device)
    seconds = time.perf_counter() - start
    if not math.isfinite(loss_sum):
        raise RuntimeError(f"the training loss is {loss_sum}: the timing is meaningless")
    phase_memory = memory.report()  # before the matmul below allocates its own matrices
    achieved = linear_flops_per_example(model) * users / seconds
    ceiling = matmul_flops_per_s(device, low_precision)
    return {
        "batch_size": batch_size, "batches_timed": batches, "batches_per_epoch": batches_per_epoch,
        "users_timed": users, "seconds_timed": round(seconds, 3), "users_per_s": round(users / seconds),
        "epoch_seconds": round(seconds * n_users / users, 2), "epoch_extrapolated": batches < batches_per_epoch,
        "train_gflop_per_s": round(achieved / 1e9, 1), "matmul_gflop_per_s": round(ceiling / 1e9, 1),
        "ratio": round(achieved / ceiling, 2), "parameters": sum(p.numel() for p in model.parameters()),
        "precision": str(low_precision or torch.float32).removeprefix("torch."),
        **phase_memory,
    }


def measure_eval(args, config, split, device, memory: PhaseMemory) -> dict:
    import torch

    from bindiff.metrics import evaluate_ranking
    from bindiff.tasks.recommendation.models import build_model, make_scorer

    torch.manual_seed(config["seed"])
    model = build_model(config, dim=split.n_items).to(device).eval()
    scorer = make_scorer(model, config, seed=config["seed"])
    part = split.test
    start = time.perf_counter()
    evaluate_ranking(scorer, part.input, part.exclude, part.target, ["ndcg@100"],
                     batch_size=config["eval"]["batch_size"], device=device)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"eval_users": part.n_users, "batch_size": config["eval"]["batch_size"], "top_k": 100,
            "seconds": round(seconds, 3), "users_per_s": round(part.n_users / seconds), **memory.report()}


def ease_estimate_mb(n_items: int) -> float:
    return EASE_BYTES_PER_GRAM_ENTRY * n_items**2 / MB


def measure_ease(args, config, split, device, memory: PhaseMemory) -> dict:
    import copy

    from bindiff.metrics import evaluate_ranking
    from bindiff.tasks.recommendation.evaluation import evaluate_part
    from bindiff.tasks.recommendation.models import build_model

    estimate = ease_estimate_mb(split.n_items)
    if estimate > args.ease_limit_gb * 1024:
        return {"skipped": f"EASE needs about {estimate / 1024:.1f} GiB ({EASE_BYTES_PER_GRAM_ENTRY} bytes × "
                           f"{split.n_items:,}² item pairs), over --ease-limit-gb {args.ease_limit_gb:g} GiB",
                "estimate_mb": round(estimate)}
    ease_config = copy.deepcopy(config)
    ease_config["model"] = {"kind": "ease", "params": {"lambdas": args.ease_lambdas}}
    model = build_model(ease_config, dim=split.n_items).to(device)
    select = ease_config["eval"]["select"]
    validation_seconds = 0.0

    def evaluate_valid(candidate) -> float:  # what the pipeline passes to fit_closed_form
        nonlocal validation_seconds
        start = time.perf_counter()
        value = evaluate_part(candidate, ease_config, split.valid, device).mean[select]
        validation_seconds += time.perf_counter() - start
        return value

    start = time.perf_counter()
    report = model.fit_closed_form(split.train, evaluate_valid)
    fit_seconds = time.perf_counter() - start
    part = split.test
    start = time.perf_counter()
    evaluate_ranking(model.score, part.input, part.exclude, part.target, ["ndcg@100"],
                     batch_size=config["eval"]["batch_size"], device=device)
    eval_seconds = time.perf_counter() - start
    n_lambdas = len(args.ease_lambdas)
    return {
        "lambdas": args.ease_lambdas, "chosen_lambda": report["lambda"], "estimate_mb": round(estimate),
        "fit_seconds": round(fit_seconds, 2),
        "closed_form_seconds_per_lambda": round((fit_seconds - validation_seconds) / n_lambdas, 2),
        "validation_seconds": round(validation_seconds, 2),
        "eval_users": part.n_users, "eval_seconds": round(eval_seconds, 3),
        "eval_users_per_s": round(part.n_users / eval_seconds), **memory.report(),
    }


MEASURE = {"train": measure_train, "eval": measure_eval, "ease": measure_ease}


def run_worker(args) -> None:
    config, split, device, data = prepare(args)
    result = MEASURE[args.worker](args, config, split, device, PhaseMemory())
    result["threads"] = __import__("torch").get_num_threads()
    print(json.dumps({"phase": args.worker, "data": data, "result": result}))


# ---------------------------------------------------------------- the parent process


def worker_environment(config: dict) -> dict:
    env = dict(os.environ)
    threads = config["train"]["threads"]
    if threads:  # numpy's BLAS (EASE) reads these when it loads, i.e. before the worker starts
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def run_phase(phase: str, argv: list[str], env: dict) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", phase]
    finished = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the {phase} worker failed (exit {finished.returncode}); its error is above")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def describe(phase: str, result: dict) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    memory = f"peak RSS {result['peak_rss_mb']:,} MB"
    if "peak_above_split_mb" in result:
        memory += f" ({result['peak_above_split_mb']:+,} MB over the resident split)"
    else:
        memory += f" (includes {result['peak_includes']})"
    if phase == "train":
        epoch = f"epoch {result['epoch_seconds']:,} s"
        if result["epoch_extrapolated"]:
            epoch = (f"EXTRAPOLATED epoch {result['epoch_seconds']:,} s from {result['batches_timed']} of "
                     f"{result['batches_per_epoch']:,} batches")
        return (f"{result['users_timed']:,} users in {result['seconds_timed']} s, {result['users_per_s']:,} users/s; "
                f"{epoch}; {result['train_gflop_per_s']} GFLOP/s vs matmul {result['matmul_gflop_per_s']} GFLOP/s "
                f"(ratio {result['ratio']}); {memory}")
    if phase == "eval":
        return (f"top-{result['top_k']} of {result['eval_users']:,} users in {result['seconds']} s, "
                f"{result['users_per_s']:,} users/s; {memory}")
    return (f"λ {result['lambdas']}: fit {result['fit_seconds']} s ({result['closed_form_seconds_per_lambda']} s "
            f"closed form per λ, {result['validation_seconds']} s validation); test top-100 of "
            f"{result['eval_users']:,} users in {result['eval_seconds']} s, {result['eval_users_per_s']:,} users/s; "
            f"{memory}, estimated {result['estimate_mb']:,} MB")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return
    from bindiff.config import load_recipe

    config = load_recipe(args.recipe, args.overrides)  # refuses a bad recipe before any worker starts
    env = worker_environment(config)
    passed = [args.recipe, *args.overrides, "--ease-lambdas", ",".join(f"{v:g}" for v in args.ease_lambdas),
              "--ease-limit-gb", f"{args.ease_limit_gb:g}"]
    if args.max_batches:
        passed += ["--max-batches", str(args.max_batches)]
    reports = {}
    for phase in args.phases:
        reports[phase] = run_phase(phase, passed, env)
    data = next(iter(reports.values()))["data"]
    print(f"data   {data['dataset']}: {data['users']:,} users × {data['items']:,} items, "
          f"{data['interactions']:,} interactions ({data['train_users']:,} training users); split CSR "
          f"{data['split_csr_mb']:,} MB, a dense float32 users × items matrix would be "
          f"{data['dense_float32_mb']:,} MB; "
          f"prepared in {data['seconds']} s, peak RSS {data['peak_rss_mb']:,} MB, resident after "
          f"{data['rss_after_mb']} MB (before: {data['rss_before_mb']} MB)")
    for phase, report in reports.items():
        print(f"{phase:<6} {describe(phase, report['result'])}")
    print(json.dumps({phase: report["result"] for phase, report in reports.items()} | {"data": data}))
    data_dir = os.environ.get("BINDIFF_DATA_DIR")
    prefix = f"BINDIFF_DATA_DIR={shlex.quote(data_dir)} " if data_dir else ""
    print(f"command: {prefix}python {shlex.join([sys.argv[0], *argv])}")


if __name__ == "__main__":
    main(sys.argv[1:])
