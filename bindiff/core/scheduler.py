"""Reverse-time stepping in the diffusers style: ``set_timesteps`` then ``step`` in a loop.

The loop itself stays in the caller (``BinomialDiffusion.run_reverse``), so it can be read,
changed or instrumented. Each ``step`` turns the denoiser's x_0 logits at time t into the
distribution of the next, less noisy state and returns it together with p̂(x_0). The kernel is
the exact mixture over x_0 by default (``BernoulliProcess.reverse_logits``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import params as checks
from .process import REVERSE_KERNELS, BernoulliProcess, check_not_nan, check_unit_interval, draw_bits, working_dtype

STEP_MODES = ("sample", "mean")


@dataclass
class StepOutput:
    prev_sample: torch.Tensor  # the next state: bits ("sample") or probabilities ("mean")
    prev_probs: torch.Tensor  # P(x_prev = 1 | x_t) under the model
    pred_x0: torch.Tensor  # p̂(x_0 = 1 | x_t), the ranking score in recommendation


class ReverseScheduler:
    """Visits descending times t and draws x_s ~ p_θ(x_s | x_t) from the denoiser's x_0 logits.

    ``reverse_kernel`` names how p̂(x_0 | x_t) becomes p_θ(x_s | x_t): ``"mixture"`` (exact for a
    denoiser that estimates p(x_0 | x_t)) or ``"plugin"`` (D3PM's parametrisation, which counts
    x_t twice; see ``BernoulliProcess.reverse_logits``).
    """

    def __init__(self, process: BernoulliProcess, reverse_kernel: str = "mixture"):
        if reverse_kernel not in REVERSE_KERNELS:
            raise ValueError(f"unknown reverse kernel {reverse_kernel!r}; choose one of {', '.join(REVERSE_KERNELS)}")
        self.process = process
        self.reverse_kernel = reverse_kernel
        self.timesteps: list[int] = list(range(process.num_steps, 0, -1))

    def to_config(self) -> dict:
        """Plain values (YAML-safe) from which ``from_config`` builds an equal scheduler."""
        return {"process": self.process.to_config(), "reverse_kernel": self.reverse_kernel,
                "timesteps": list(self.timesteps)}

    @classmethod
    def from_config(cls, config: dict) -> "ReverseScheduler":
        unknown = sorted(set(config) - {"process", "reverse_kernel", "timesteps"})
        if unknown or "process" not in config:  # a misspelt key would otherwise be a default, silently
            raise ValueError("a scheduler config holds 'process' and optionally 'reverse_kernel' and 'timesteps'"
                             + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else "; 'process' is missing"))
        scheduler = cls(BernoulliProcess.from_config(config["process"]), config.get("reverse_kernel", "mixture"))
        if "timesteps" in config:
            scheduler.set_timesteps(timesteps=config["timesteps"])
        return scheduler

    def set_timesteps(self, num_inference_steps: int | None = None, start: int | None = None,
                      timesteps: list[int] | None = None) -> list[int]:
        """Choose the descending times to visit.

        ``timesteps`` gives them explicitly; otherwise ``num_inference_steps`` evenly spaced
        times from ``start`` (default T) down to 1. Skipping times is exact here because
        q(x_t | x_s) is again a binomial-diffusion kernel (with ᾱ_t / ᾱ_s).
        """
        T = self.process.num_steps
        if timesteps is not None and (num_inference_steps is not None or start is not None):
            raise ValueError("give timesteps, or num_inference_steps and start, not both")
        if timesteps is None:
            start = T if start is None else checks.whole_number("start", start)
            if not 1 <= start <= T:
                raise ValueError(f"start must lie in 1..{T}, got {start}")
            n = start if num_inference_steps is None else checks.whole_number("num_inference_steps", num_inference_steps)
            if not 1 <= n <= start:
                raise ValueError(f"num_inference_steps must lie in 1..{start}, got {n}")
            grid = _even_grid(start, n)
            timesteps = sorted(set(grid), reverse=True)
        if isinstance(timesteps, (str, bytes)) or not hasattr(timesteps, "__iter__") or (
                isinstance(timesteps, torch.Tensor) and timesteps.ndim != 1):
            raise ValueError(f"timesteps must list whole numbers, got {timesteps!r}")
        timesteps = [checks.whole_number("timesteps", t) for t in timesteps]
        if not timesteps or any(a <= b for a, b in zip(timesteps, timesteps[1:])):
            raise ValueError(f"timesteps must be strictly descending and non-empty, got {timesteps}")
        if timesteps[0] > T or timesteps[-1] < 1:
            raise ValueError(f"timesteps must lie in 1..{T}, got {timesteps}")
        self.timesteps = timesteps
        return timesteps

    def previous(self, t: int) -> int:
        """The time visited after ``t`` (0 after the last)."""
        if isinstance(t, torch.Tensor) and t.numel() != 1:
            raise ValueError(f"t: one time for the whole batch (every row steps together), got shape {tuple(t.shape)}")
        value = t.item() if isinstance(t, torch.Tensor) else t
        try:  # NaN, inf and None raised int()'s own error, naming no t; True was the time 1
            whole = checks.whole_number("t", value)
        except ValueError:
            whole = None
        if whole is None or whole not in self.timesteps:
            raise ValueError(f"t = {t!r} is not one of this scheduler's timesteps {self.timesteps}")
        i = self.timesteps.index(whole)
        return self.timesteps[i + 1] if i + 1 < len(self.timesteps) else 0

    def step(self, model_output: torch.Tensor, t: int, sample: torch.Tensor,
             generator: torch.Generator | None = None, mode: str = "sample") -> StepOutput:
        """One reverse step from ``sample`` (x_t: bits, or probabilities in mode "mean") at time ``t``,
        one of ``timesteps``, given the denoiser's x_0 logits ``model_output`` (same shape).

        Draws the next state with ``generator`` ("sample") or keeps its probabilities ("mean").
        ValueError for a sample outside [0, 1], NaN logits, or a ``t`` not among the timesteps.
        """
        for name, value in (("model_output", model_output), ("sample", sample)):
            if not isinstance(value, torch.Tensor):  # numpy failed inside torch, naming neither
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        check_unit_interval("sample", sample)
        return self._step(model_output, t, sample, generator, mode)

    def _step(self, model_output, t, sample, generator=None, mode="sample") -> StepOutput:
        """``step`` for the reverse loop, whose state is its own (not read back at every step)."""
        if mode not in STEP_MODES:
            raise ValueError(f"mode must be one of {STEP_MODES}, got {mode!r}")
        if model_output.shape != sample.shape:  # broadcasting would silently pair the wrong rows
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ "
                             "in shape")
        # a NaN p̂ would draw 0 every time, without a word
        check_not_nan(model_output, f"model_output holds NaN at t = {t} (a denoiser that diverged, or NaN in its "
                                    "input)")
        # float32 at least, as every other step's kernel (a bfloat16 p̂ is off by up to 2e-3)
        pred_x0 = torch.sigmoid(model_output.to(working_dtype(model_output)))
        s = self.previous(t)
        if s == 0:
            # The last step is the decoder p_θ(x_0 | x_t) = p̂ itself (what the mixture gives at
            # s = 0, without the round trip through log space).
            probs = pred_x0
        else:
            # the logits are checked above, `sample` by ``step`` (the loop's own state is not)
            probs = torch.sigmoid(self.process._reverse_logits(model_output, sample, t, s, self.reverse_kernel))
        if mode == "mean":
            nxt = probs
        else:
            nxt = draw_bits(probs, generator, sample.dtype)
        return StepOutput(prev_sample=nxt, prev_probs=probs, pred_x0=pred_x0)


def _even_grid(start: int, n: int) -> list[int]:
    """``torch.linspace(start, 1, n, dtype=float64).round()`` as plain ints, point for point: torch's
    two-sided formula (the first half counted from ``start``, the second back from 1) and rounding
    half to even, so every stored run keeps its times; plain Python, because while torch.export
    traces a scorer torch's values are symbolic and cannot be deduplicated."""
    if n == 1:
        return [start]
    step = (1 - start) / (n - 1)
    return [round(start + i * step) if i < n // 2 else round(1 - (n - 1 - i) * step) for i in range(n)]
