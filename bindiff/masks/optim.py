"""An optimiser wrapper with linear warm-up and gradient-norm clipping, for the shared trainer.

``fit`` calls ``optimizer.step()`` once per minibatch and checkpoints ``state_dict()``; both
behaviours live here, so the trainer stays as it is and exact resume still holds (the step
count is kept in the state dict).
"""

from __future__ import annotations

import math

import torch


class WarmupClip:
    """Wrap an optimiser: scale the learning rate by min(1, step / warmup_steps) and, given
    ``total_steps``, by a cosine decay ½(1 + cos(π·step / total_steps)); clip the gradients'
    global norm to ``clip_norm`` (None: no clipping); skip any update whose gradient is not
    finite."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int = 0, clip_norm: float | None = None,
                 total_steps: int | None = None):
        self.optimizer = optimizer
        self.warmup_steps = int(warmup_steps)
        self.total_steps = total_steps
        self.clip_norm = clip_norm
        self.steps_done = 0
        self.skipped = 0  # updates skipped for a non-finite gradient
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

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
        return self.optimizer.step(closure)

    def state_dict(self) -> dict:
        return {**self.optimizer.state_dict(),
                "warmup_clip": {"steps_done": self.steps_done, "skipped": self.skipped}}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        extra = state.pop("warmup_clip", {})
        self.steps_done, self.skipped = int(extra.get("steps_done", 0)), int(extra.get("skipped", 0))
        self.optimizer.load_state_dict(state)
