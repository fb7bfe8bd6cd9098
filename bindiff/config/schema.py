"""The recipe schema: every key, its type, its default and what it means.

One table drives validation, defaults and documentation (``bindiff show-config``), so a key
cannot exist in one place and not the others. A section marked ``FREE`` accepts any keys: its
contents are passed to a callee that validates them itself (a denoiser's or a schedule's
parameters) and names the accepted ones when it refuses.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .keys import FREE, Key, a_seed, at_least_one, fraction, key, non_negative, positive  # noqa: F401  (re-exported)
from ..tasks.masks.schema import SECTIONS as MASKS
from ..tasks.recommendation.schema import SECTIONS as RECOMMEND
from ..tasks.segmentation.schema import COMMON_DEFAULTS as SEGMENTATION_DEFAULTS, SECTIONS as SEGMENTATION


# Windows' device names (its naming rules list the superscript digits too), refused even before an extension
_RESERVED = {"con", "prn", "aux", "nul", *(f"{d}{i}" for d in ("com", "lpt") for i in "0123456789¹²³")}
FOLDER_NAME_RULE = ("must be one folder name that every system can hold: not a path, none of : * ? \" < > | "
                    "or control characters, no trailing dot or space, not a name Windows reserves (CON, NUL, COM1, ...)")


def is_folder_name(value: str) -> bool:
    """Whether ``value`` names one folder on Linux, macOS and Windows alike: a run made on one and
    copied to another keeps its name (``exp:1`` cannot be created on Windows, ``CON`` is a device)."""
    return (value not in ("", ".", "..") and not any(c in value for c in '/\\:*?"<>|')
            and all(ord(c) >= 32 for c in value) and value[-1] not in ". "
            and value.split(".")[0].rstrip(" ").casefold() not in _RESERVED)


# Sections every task shares: what is diffused, by which network, trained how, written where.
COMMON: dict[str, Any] = {
    # a stored run keeps loading under the names earlier versions allowed; a new run's name is held to
    # FOLDER_NAME_RULE where it is made (load_recipe, create_output_dir)
    "name": key(str, "run", "run folder name under output.root (one folder name, no path)",
                (lambda v: v not in ("", ".", "..") and "/" not in v and "\\" not in v,
                 "must be one folder name, not a path")),
    "seed": key(int, 0, "seeds the split, initialisation, data order and diffusion noise", a_seed),
    "task": key(str, "recommend", "which job the recipe describes; selects the task sections below"),
    "diffusion": {
        "schedule": key(str, "quadratic", "noise schedule: linear, quadratic, cosine, jsd, constant"),
        "steps": key(int, 3, "number of diffusion steps T",
                     (lambda v: 1 <= v <= 100_000, "must lie in 1..100000 (its tables are computed at once)")),
        "kernel": key(str, "toward_half", "toward_half (β moves a bit toward ½) or flip (β is a flip probability)"),
        "schedule_params": FREE,
        "loss": key(str, "bce", "bce (x_0 cross-entropy), vb (variational bound) or hybrid"),
        "hybrid_coeff": key((float, int), 0.01, "weight of the x_0 cross-entropy in the hybrid loss", non_negative),
        "self_condition": key(bool, False, "the denoiser also reads its previous estimate of p̂(x_0) (self-"
                              "conditioning; unet only, one process)"),
        "dice_weight": key((float, int), 0.0, "weight of a soft-Dice term on p̂(x_0) beside the loss (in the "
                           "per-bit units of the cross-entropy); 0: off", non_negative),
        "prior_offset": key(bool, False, "add the training data's logit P(x_0 = 1) of each bit to the denoiser's "
                            "output: it learns what x_t adds to the data's marginal"),
        "denoiser_input": key(str, "state", "what the denoiser reads of x_t: state (the bits) or flat_posterior "
                              "(½ + ᾱ_t (x_t − ½): P(x_0 = 1 | x_t) under a uniform prior, ½ at ᾱ_t = 0)",
                              (lambda v: v in ("state", "flat_posterior"), "must be 'state' or 'flat_posterior'")),
        "train_t_max": key((int, type(None)), None, "train on t in 1..train_t_max only; null uses every step"),
        "reverse_kernel": key(str, "mixture", "reverse step from p̂(x_0 | x_t): mixture (exact) or plugin "
                              "(D3PM's, counts x_t twice); sampling and the vb loss use the same one",
                              (lambda v: v in ("mixture", "plugin"), "must be 'mixture' or 'plugin'")),
    },
    "denoiser": {
        "name": key(str, "mlp", "a registered denoiser"),
        "members": key(int, 1, "denoisers trained side by side as if alone (each its own rows, order and loss); "
                       "predictions average their p̂(x_0): a seed ensemble in one run, members times the cost "
                       "(at most 64: each member is a whole network in memory)",
                       (lambda v: 1 <= v <= 64, "must lie in 1..64")),
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
        "threads": key((int, type(None)), None, "torch CPU threads; null keeps torch's default",
                       (lambda v: 1 <= v <= 4096, "must lie in 1..4096")),
        "precision": key(str, "auto", "auto (bf16 autocast on a GPU that computes it, Ampere or later; float32 "
                         "elsewhere), fp32 or bf16",
                         (lambda v: v in ("auto", "fp32", "bf16"), "must be auto, fp32 or bf16")),
        "warmup_steps": key(int, 0, "raise the learning rate linearly over this many first optimiser steps; 0: off",
                            non_negative),
        "lr_decay": key(str, "none", "learning rate over the run: none (constant) or cosine (to 0 at the last "
                        "epoch's end)", (lambda v: v in ("none", "cosine"), "must be 'none' or 'cosine'")),
        "clip_grad_norm": key((float, int, type(None)), None, "clip the gradients' global norm to this; null: off",
                              positive),
        "ema": key((float, int), 0.0, "validate, save and evaluate a moving average of the weights with this "
                   "decay per optimiser step (0.995: about the last 200 updates); 0: the trained weights",
                   (lambda v: 0 <= v < 1, "must lie in [0, 1)")),
    },
    "output": {
        "root": key(str, "runs", "folder that holds run directories",
                    (lambda v: bool(v.strip()), "must name a folder (empty: the current folder, filled in place)")),
        "progress": key((bool, type(None)), None, "progress bars: true, false, or null for only on a terminal"),
        "logger": key(str, "none", "none, or tensorboard: every epoch's loss and validation metrics as scalars in "
                      "<run>/tensorboard/ (needs pip install 'bindiff[tensorboard]')",
                      (lambda v: v in ("none", "tensorboard"), "must be 'none' or 'tensorboard'")),
    },
}


# Keys that moved, old dotted name -> new one. A recipe or override using an old name is refused
# with the new name; a run directory's stored config is translated, so older runs still load.
RENAMED: dict[str, str] = {
    "optimizer.warmup_steps": "train.warmup_steps",
    "optimizer.decay": "train.lr_decay",
    "optimizer.clip_grad_norm": "train.clip_grad_norm",
    "tasks": "evaluations",  # masks: "task" is the recipe's job; completion, denoising, generation evaluate it
}

# Task name -> the sections only that task has.
TASKS: dict[str, dict[str, Any]] = {"recommend": RECOMMEND, "masks": MASKS, "segmentation": SEGMENTATION}


# Task name -> shared keys whose default differs for that task, dotted key -> default (segmentation reads
# its image through the U-Net, so the MLP default would refuse `show-config task=segmentation`).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {"segmentation": SEGMENTATION_DEFAULTS}


def schema_for(task: str) -> dict[str, Any]:
    schema = {**COMMON, **TASKS[task]}
    for dotted, default in TASK_DEFAULTS.get(task, {}).items():
        *sections, name = dotted.split(".")
        node = schema
        for section in sections:  # copy the path, so COMMON keeps the shared default
            node[section] = dict(node[section])
            node = node[section]
        node[name] = replace(node[name], default=default)
    return schema


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

