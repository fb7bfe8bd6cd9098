"""The recipe schema: every key, its type, its default and what it means.

One table drives validation, defaults and documentation (``bindiff show-config``), so a key
cannot exist in one place and not the others. A section marked ``FREE`` accepts any keys: its
contents are passed to a callee that validates them itself (a denoiser's or a schedule's
parameters) and names the accepted ones when it refuses.
"""

from __future__ import annotations

from typing import Any

from .keys import FREE, Key, at_least_one, fraction, key, non_negative, positive  # noqa: F401  (re-exported)
from .masks_schema import MASKS


# Sections every task shares: what is diffused, by which network, trained how, written where.
COMMON: dict[str, Any] = {
    "name": key(str, "run", "run folder name under output.root"),
    "seed": key(int, 0, "seeds the split, initialisation, data order and diffusion noise", non_negative),
    "task": key(str, "recommend", "which job the recipe describes; selects the task sections below"),
    "diffusion": {
        "schedule": key(str, "quadratic", "noise schedule: linear, quadratic, cosine, jsd, constant"),
        "steps": key(int, 3, "number of diffusion steps T", at_least_one),
        "kernel": key(str, "toward_half", "toward_half (β moves a bit toward ½) or flip (β is a flip probability)"),
        "schedule_params": FREE,
        "loss": key(str, "bce", "bce (x_0 cross-entropy), vb (variational bound) or hybrid"),
        "hybrid_coeff": key((float, int), 0.01, "weight of the x_0 cross-entropy in the hybrid loss", non_negative),
        "train_t_max": key((int, type(None)), None, "train on t in 1..train_t_max only; null uses every step"),
        "reverse_kernel": key(str, "mixture", "reverse step from p̂(x_0 | x_t): mixture (exact) or plugin "
                              "(D3PM's, counts x_t twice); sampling and the vb loss use the same one",
                              (lambda v: v in ("mixture", "plugin"), "must be 'mixture' or 'plugin'")),
    },
    "denoiser": {
        "name": key(str, "mlp", "a registered denoiser"),
        "params": FREE,
    },
    "train": {
        "optimizer": key(str, "adam", "adam or adamw", (lambda v: v in ("adam", "adamw"), "must be 'adam' or 'adamw'")),
        "lr": key((float, int), 1e-3, "learning rate", positive),
        "weight_decay": key((float, int), 0.0, "weight decay", non_negative),
        "batch_size": key(int, 200, "training users per minibatch", at_least_one),
        "epochs": key(int, 100, "maximum number of epochs", at_least_one),
        "patience": key(int, 10, "stop after this many epochs without a better validation metric", at_least_one),
        "device": key(str, "cpu", "cpu, cuda or auto", (lambda v: v in ("cpu", "cuda", "auto"), "must be cpu, cuda or auto")),
        "threads": key((int, type(None)), None, "torch CPU threads; null keeps torch's default", at_least_one),
        "precision": key(str, "auto", "auto (bf16 autocast on CUDA, float32 on CPU), fp32 or bf16",
                         (lambda v: v in ("auto", "fp32", "bf16"), "must be auto, fp32 or bf16")),
    },
    "output": {
        "root": key(str, "runs", "folder that holds run directories"),
        "progress": key((bool, type(None)), None, "progress bars: true, false, or null for only on a terminal"),
    },
}


# Sections of the recommendation task.
RECOMMEND: dict[str, Any] = {
    "data": {
        "dataset": key(str, "ml-1m", "a dataset bindiff knows (ml-1m, ml-100k, amazon-electronics), a path to "
                                     "a ratings file, or synthetic:<preset> (benchmarks)"),
        "min_rating": key((float, int, type(None)), None, "keep ratings >= this as interactions; null keeps every row"),
        "k_core": key(int, 0, "drop users and items with fewer interactions, repeatedly; 0 turns it off", non_negative),
        "download": key(bool, True, "download the official archive when the data are not found locally"),
        "sep": key((str, type(None)), None, "field separator of a delimited file; null: from the extension"),
        "header": key(bool, True, "whether a delimited file starts with a header line naming its columns"),
        "user_col": key(str, "user", "user column of a delimited file"),
        "item_col": key(str, "item", "item column of a delimited file"),
        "rating_col": key((str, type(None)), None, "rating column of a delimited file, or null"),
    },
    "split": {
        "kind": key(str, "strong", "strong (Liang et al. 2018 fold-in users) or predefined (the dataset's pair files)",
                    (lambda v: v in ("strong", "predefined"), "must be 'strong' or 'predefined'")),
        "n_valid_users": key(int, 600, "validation users (strong generalisation)", at_least_one),
        "n_test_users": key(int, 600, "test users (strong generalisation)", at_least_one),
        "holdout_fraction": key(float, 0.2, "share of each evaluation user's items held out", fraction),
        "min_items_to_split": key(int, 5, "evaluation users with fewer items keep all as fold-in",
                                  (lambda v: v >= 2, "must be >= 2 (one item to fold in, one to hold out)")),
    },
    "inference": {
        "mode": key(str, "one_step", "one_step (one denoiser call on the history) or reverse (k posterior steps)",
                    (lambda v: v in ("one_step", "reverse"), "must be 'one_step' or 'reverse'")),
        "t": key(int, 1, "time shown to the denoiser (one_step) or the start time (reverse)", at_least_one),
        "steps": key((int, type(None)), None, "reverse steps from t; null visits every step", at_least_one),
        "sample": key(str, "mean", "reverse states as probabilities (mean) or bits (sample)",
                      (lambda v: v in ("mean", "sample"), "must be 'mean' or 'sample'")),
        "add_noise": key(bool, False, "noise the history to time t first instead of using it as x_t"),
        "ensemble": key(int, 1, "average p̂(x_0) over this many noisy draws (needs add_noise or sample)", at_least_one),
    },
    "eval": {
        "metrics": key(list, ["recall@20", "recall@50", "ndcg@100"], "metrics reported on validation and test"),
        "select": key(str, "ndcg@100", "validation metric for early stopping and the best checkpoint"),
        "batch_size": key(int, 1024, "users scored at once during evaluation", at_least_one),
        "empty_users": key(str, "drop", "users with no held-out items: drop (Liang) or zero (count as 0)",
                           (lambda v: v in ("drop", "zero"), "must be 'drop' or 'zero'")),
    },
    "compare": {
        "models": FREE,  # model name -> list of key=value overrides that turn this recipe into it
        "seeds": key(int, 5, "seeds per model in `bindiff compare` (seed, seed+1, ...)", at_least_one),
    },
    "tune": {
        "trials": key(int, 20, "trials of `bindiff tune`, each one training run", at_least_one),
        "sampler": key(str, "tpe", "optuna sampler: tpe or random",
                       (lambda v: v in ("tpe", "random"), "must be 'tpe' or 'random'")),
        "seed": key((int, type(None)), None, "seeds the sampler; null: the recipe seed", non_negative),
        "space": FREE,  # recipe key -> {float: [low, high], log: bool} | {int: [low, high]} | {choices: [...]}
    },
    "model": {
        "kind": key(str, "binomial", "binomial (the diffusion and denoiser sections) or a baseline: popularity, "
                    "ease, multdae, multvae, gaussian, recfusion (bindiff.baselines.MODELS)"),
        "params": FREE,
    },
}

# Task name -> the sections only that task has.
TASKS: dict[str, dict[str, Any]] = {"recommend": RECOMMEND, "masks": MASKS}


def schema_for(task: str) -> dict[str, Any]:
    return {**COMMON, **TASKS[task]}


def defaults(schema: dict | None = None) -> dict:
    schema = schema_for("recommend") if schema is None else schema
    out: dict = {}
    for name, spec in schema.items():
        if spec is FREE:
            out[name] = {}
        elif isinstance(spec, dict):
            out[name] = defaults(spec)
        else:
            out[name] = list(spec.default) if isinstance(spec.default, list) else spec.default
    return out

