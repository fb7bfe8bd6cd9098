"""The optimiser every task trains with: Adam or AdamW from ``train.*``, wrapped for warm-up,
cosine decay, gradient clipping, skipping non-finite updates and the moving average of the
weights (``train.ema``, :mod:`bindiff.training.averaging`).

``fit`` calls ``optimizer.step()`` once per minibatch and checkpoints ``state_dict()``; the
schedule lives here, so the trainer stays one loop and exact resume still holds (the step
count travels in the state dict). With the defaults (no warm-up, no decay, no clipping) an
update is the bare optimiser's, bit for bit: the learning rate is multiplied by 1 and the
gradients by 1.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from ..core import params as checks
from .averaging import WeightAverage


def build_optimizer(config: dict, model: torch.nn.Module, steps_per_epoch: int) -> "WarmupClip | None":
    """The recipe's optimiser for ``model``; None for a model without trainable parameters
    (one fitted in closed form). ``steps_per_epoch`` sets the length of a cosine decay."""
    t = config["train"]
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    cls = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    total = t["epochs"] * steps_per_epoch if t["lr_decay"] == "cosine" else None
    return WarmupClip(cls(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"]), t["warmup_steps"],
                      t["clip_grad_norm"], total_steps=total, average_decay=t["ema"])


def _step_count(name: str, value) -> int:
    """A whole number of optimiser steps >= 0: 2.0 as 2 (``int()`` took it before), 2.7 and -2 refused by name."""
    steps = checks.whole_number(name, value)
    if steps < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return steps


class WarmupClip:
    """Wrap an optimiser: scale the learning rate by min(1, step / warmup_steps) and, given
    ``total_steps``, by a cosine decay ½(1 + cos(π·step / total_steps)); clip the gradients'
    global norm to ``clip_norm`` (None: no clipping); skip any update whose gradient is not
    finite; with ``average_decay`` > 0, keep the weights' moving average (``evaluated()``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, clip_norm: float | None = None,
                 total_steps: int | None = None, average_decay: float = 0.0):
        self.optimizer = optimizer
        # a negative or zero clip norm, or a negative warm-up, turned every update into a step up the loss
        # (or none at all) without a word; a fractional warm-up was cut to an integer
        self.warmup_steps = _step_count("warmup_steps", warmup_steps)
        self.total_steps = None if total_steps is None else _step_count("total_steps", total_steps)
        if clip_norm is not None and checks.number("clip_norm", clip_norm) <= 0:
            raise ValueError(f"clip_norm must be > 0 (None: no clipping), got {clip_norm!r}")
        self.clip_norm = clip_norm
        self.steps_done = 0
        self.skipped = 0  # updates skipped for a non-finite gradient
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        self.average = WeightAverage(params, average_decay) if average_decay else None

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip_norm if self.clip_norm is not None else float("inf"))
        if not torch.isfinite(norm):
            # a non-finite gradient (as mixed precision can produce) would poison every weight:
            # skip this update, as torch.amp.GradScaler does, and count it
            self.skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            return None
        self.steps_done += 1
        scale = min(1.0, self.steps_done / self.warmup_steps) if self.warmup_steps else 1.0
        if self.total_steps:
            scale *= 0.5 * (1 + math.cos(math.pi * min(1.0, (self.steps_done - 1) / self.total_steps)))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * scale
        result = self.optimizer.step(closure)
        if self.average is not None:
            self.average.update()
        return result

    def skipped_warning(self, model_name: str) -> str | None:
        """A warning's message when updates were skipped for a non-finite gradient, else None:
        a run that skips many has trained on far fewer updates than its recipe says."""
        if not self.skipped:
            return None
        total = self.skipped + self.steps_done
        return (f"the {model_name} skipped {self.skipped} of {total} updates for a non-finite gradient "
                f"(metrics.json: training.skipped_steps)")

    def evaluated(self):
        """A context in which the model holds the weights to validate and save: the moving
        average with ``train.ema``, else the trained weights themselves."""
        return self.average.evaluated() if self.average is not None else nullcontext()

    def state_dict(self) -> dict:
        state = {**self.optimizer.state_dict(),
                 "warmup_clip": {"steps_done": self.steps_done, "skipped": self.skipped}}
        if self.average is not None:
            state["weight_average"] = self.average.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        extra = state.pop("warmup_clip", {})
        average = state.pop("weight_average", None)
        if (average is None) != (self.average is None):
            raise ValueError("train.ema differs from the run's: " + (
                "the checkpoint holds no weight average" if average is None else "the checkpoint holds a weight average"))
        self.steps_done, self.skipped = int(extra.get("steps_done", 0)), int(extra.get("skipped", 0))
        self.optimizer.load_state_dict(state)
        if average is not None:
            self.average.load_state_dict(average)  # last: it writes the trained weights into the model
