"""BinomialDiffusion: a denoiser plus a Bernoulli process; ``model(x0)`` returns the loss."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import params as checks
from .count import tilt_to_count
from .denoisers import DenoiserEnsemble
from .losses import LOSSES, diffusion_loss
from .process import (REVERSE_KERNELS, BernoulliProcess, at_least_float32, check_unit_interval, draw_bits,
                      working_dtype)
from .scheduler import STEP_MODES, ReverseScheduler

DECODES = ("sample", "mean", "threshold")
DENOISER_INPUTS = ("state", "flat_posterior")


def _takes_condition(denoiser: nn.Module) -> bool:
    """Whether ``denoiser(x_t, t, cond)`` is a call its forward accepts (an ensemble: its members')."""
    if isinstance(denoiser, DenoiserEnsemble):
        denoiser = denoiser.members[0]
    params = inspect.signature(denoiser.forward).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar: batch mean of the per-example loss
    terms: dict[str, torch.Tensor]  # per-example terms ("bce", "vb", "dice" as the recipe asks, and "loss")
    t: torch.Tensor | None  # the time step drawn for each example; None for a model without one (Mult-VAE)


class BinomialDiffusion(nn.Module):
    """Training loss and every inference mode of binomial diffusion over (B, D) bits.

    Inference modes:
    - ``predict_x0(x, t)``: one denoiser call on an observed vector (RecFusion's inference);
    - ``reverse(x, start, steps)``: treat x as x_start (or noise it first) and run reverse steps;
    - ``inpaint(known, mask)``: reverse from noise (or a warm start) holding known bits fixed;
    - ``sample(n)``: reverse from x_T ~ B(½) or a given prior.
    All of them run the one loop ``run_reverse``; its kernel is ``reverse_kernel``.
    """

    def __init__(self, denoiser: nn.Module, process: BernoulliProcess, loss: str = "bce",
                 hybrid_coeff: float = 0.01, train_t_max: int | None = None, reverse_kernel: str = "mixture",
                 dice_weight: float = 0.0, self_condition: bool = False, prior_offset_dim: int = 0,
                 denoiser_input: str = "state"):
        super().__init__()
        # What the denoiser reads of x_t. "state": the bits themselves. "flat_posterior":
        # P(x_0 = 1 | x_t) under a uniform prior on x_0, which is ½ + ᾱ_t (x_t − ½) for either
        # kernel: each bit scaled by how much it still says about x_0. At t = T of a schedule
        # that ends at ᾱ_T = 0 the network then reads a constant ½ instead of pure noise it
        # would have to learn to ignore, and at small t it reads almost x_t.
        if denoiser_input not in DENOISER_INPUTS:
            raise ValueError(f"unknown denoiser input {denoiser_input!r}; choose one of {', '.join(DENOISER_INPUTS)}")
        self.denoiser_input = denoiser_input
        # Prior offset: the denoiser's logits are added to logit P(x_0 = 1) of each bit in the
        # training data (``set_prior_offset``), so it learns what x_t says beyond the data's
        # marginal. Where x_t says almost nothing (high t, where sampling from noise starts) the
        # exact p(x_0 | x_t) is that marginal, and a network left to learn it from the few
        # examples it sees there gets the level of a mask's volume wrong. 0: no offset.
        if prior_offset_dim:
            self.register_buffer("prior_logits", torch.zeros(int(prior_offset_dim)))
        else:
            self.prior_logits = None
        # Self-conditioning (Chen et al. 2022, "Analog Bits"): the denoiser also reads its own
        # previous estimate of p̂(x_0), as one more condition channel after ``cond``. Training
        # feeds it for a random half of the examples (zeros for the rest); the reverse loop feeds
        # each step the estimate of the step before (zeros at the first).
        self.self_condition = bool(self_condition)
        if self.self_condition and not _takes_condition(denoiser):
            raise ValueError(f"self_condition=True hands the denoiser its own estimate as a condition; "
                             f"{type(denoiser).__name__}.forward(x_t, t) takes none")
        if not dice_weight >= 0:
            raise ValueError(f"dice_weight must be >= 0, got {dice_weight}")
        self.dice_weight = float(dice_weight)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if reverse_kernel not in REVERSE_KERNELS:
            raise ValueError(f"unknown reverse kernel {reverse_kernel!r}; choose one of {', '.join(REVERSE_KERNELS)}")
        # The kernel sampling runs and the bound trains (one setting for both, see process.reverse_logits).
        self.reverse_kernel = reverse_kernel
        self.denoiser = denoiser
        self.process = process
        self.loss_kind = loss
        if not hybrid_coeff >= 0:  # NaN fails too; a negative weight would maximise the cross-entropy
            raise ValueError(f"hybrid_coeff must be >= 0, got {hybrid_coeff}")
        self.hybrid_coeff = float(hybrid_coeff)
        # Recommenders only ever denoise lightly corrupted histories; training on the first
        # few steps only concentrates capacity there. None trains on every step.
        if train_t_max is not None and not checks.is_whole_number(train_t_max):
            raise ValueError(f"train_t_max must be a whole number of steps, got {train_t_max!r}")
        self.train_t_max = process.num_steps if train_t_max is None else int(train_t_max)
        if not 1 <= self.train_t_max <= process.num_steps:
            raise ValueError(f"train_t_max must lie in 1..{process.num_steps}, got {train_t_max}")
        self.low_time_share, self.low_time_max, self.top_time_share = 0.0, 1, 0.0  # uniform; see set_time_mixture

    def set_prior_offset(self, frequency: torch.Tensor, n: int) -> None:
        """Set the offset from each bit's share of 1s among ``n`` training rows, smoothed as
        (ones + ½) / (n + 1) so that a bit never seen on keeps a finite logit."""
        if self.prior_logits is None:
            raise ValueError("this model was built without a prior offset (prior_offset_dim=0)")
        frequency = torch.as_tensor(frequency, dtype=torch.float64).reshape(-1)
        if frequency.shape != self.prior_logits.shape:
            raise ValueError(f"the prior offset needs {self.prior_logits.numel()} frequencies, got {frequency.numel()}")
        if n < 1 or bool(((frequency < 0) | (frequency > 1)).any()):
            raise ValueError("the prior offset needs frequencies in [0, 1] over at least one row")
        smoothed = (frequency * n + 0.5) / (n + 1)
        self.prior_logits.copy_(torch.logit(smoothed).to(self.prior_logits.dtype))

    def set_time_mixture(self, share: float, low_max: int, top_share: float = 0.0) -> None:
        """Train on a mixture of times: with probability ``share`` t is drawn from 1..low_max, with
        probability ``top_share`` it is train_t_max, otherwise it is drawn from 1..train_t_max as before.

        Denoising a lightly damaged vector and the last steps of every reverse run happen at
        small t, so a small training budget is better spent there. Sampling from noise is the
        other way round: its first call, at t = T, is the one that must find the whole mask from
        the condition alone (x_T says nothing), and every later step only refines it. With both
        shares summing below 1 every t keeps a positive probability, so sampling from noise still
        sees every step. A training choice only: it is not part of the weights, and a model read
        back from a checkpoint draws uniformly.
        """
        for name, value in (("low-time share", share), ("top-time share", top_share)):
            if not 0 <= value <= 1:
                raise ValueError(f"the {name} must lie in [0, 1], got {value}")
        if share + top_share > 1:
            raise ValueError(f"the low-time and top-time shares sum to {share + top_share}, more than 1")
        if not checks.is_whole_number(checks.plain(low_max)) or checks.plain(low_max) < 1:
            raise ValueError(f"low_max must be an integer >= 1, got {low_max!r}")
        self.low_time_share, self.low_time_max = float(share), min(int(checks.plain(low_max)), self.train_t_max)
        self.top_time_share = float(top_share)

    def sample_timesteps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``n`` training times in 1..train_t_max: uniform, or the mixture ``set_time_mixture`` set."""
        t = torch.randint(1, self.train_t_max + 1, (n,), generator=generator, device=device)
        if self.low_time_share <= 0 and self.top_time_share <= 0:
            return t
        # one uniform per example picks its component: [0, low) low times, [low, low + top) t = T
        low = torch.randint(1, self.low_time_max + 1, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device)
        t = torch.where(pick < self.low_time_share, low, t)
        top = (pick >= self.low_time_share) & (pick < self.low_time_share + self.top_time_share)
        return torch.where(top, torch.full_like(t, self.train_t_max), t)

    def draw_noise(self, n: int, dim: int, generator: torch.Generator | None = None, device=None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The time steps and uniform noise ``forward`` draws for n examples, in the same order.

        Data-parallel training draws them for the whole batch on every process and keeps its
        own rows, so that N processes use exactly the numbers one process would.
        """
        t = self.sample_timesteps(n, generator, device)
        return t, torch.rand((n, dim), generator=generator, device=device, dtype=dtype)

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None,
                t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> LossOutput:
        """The training loss of a batch of bit vectors ``x0`` (B, D): times drawn (or ``t``), x_0
        noised to x_t (with ``noise``, or from ``generator``), the recipe's loss on the denoiser.

        ``cond`` (one row per example) is handed to the denoiser beside x_t: the model learns
        p(x_0 | x_t, cond). Raises ``ValueError`` naming ``x0`` when it is not a (B, D) batch of
        0s and 1s.
        """
        x0 = self._batch("x0", x0, bits=True)
        if x0.shape[0] == 0:
            raise ValueError("x0: an empty batch (0 rows) has no loss")
        if t is None:
            t = self.sample_timesteps(x0.shape[0], generator, x0.device)
        else:  # an int for the whole batch, or one time per row, each in 1..T
            t = self.process._times_per_row(t, x0.shape[0], low=1).to(x0.device)
        x_t = self.process._noised(x0, t, noise=noise, generator=generator)  # x0 checked by _batch
        estimate = None
        if self.self_condition:
            if generator is None:
                raise ValueError("self-conditioning draws which examples see their own estimate: pass a generator "
                                 "(it trains in one process)")
            use = torch.rand(x0.shape[0], 1, generator=generator, device=x0.device) < 0.5
            with torch.no_grad():
                first = torch.sigmoid(at_least_float32(self._denoise(x_t, t, cond, blocks=self.is_ensemble)))
            estimate = torch.where(use, first, torch.zeros_like(first))
        # float32 logits at least, even when the denoiser ran under bf16 autocast: the losses need
        # the range (a float64 model keeps float64). An ensemble: block m of the batch is member
        # m's alone (see DenoiserEnsemble), so the mean over rows is the mean of the members' losses
        logits = at_least_float32(self._denoise(x_t, t, cond, estimate, blocks=self.is_ensemble))
        terms = diffusion_loss(self.loss_kind, self.process, x0, x_t, t, logits, self.hybrid_coeff,
                               self.reverse_kernel, self.dice_weight)
        return LossOutput(loss=terms["loss"].mean(), terms=terms, t=t)

    def extra_repr(self) -> str:
        return (f"process={self.process!r}, loss={self.loss_kind!r}, reverse_kernel={self.reverse_kernel!r}, "
                f"train_t_max={self.train_t_max}")

    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.denoiser, DenoiserEnsemble)

    def _denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None,
                 estimate: torch.Tensor | None = None, blocks: bool = False) -> torch.Tensor:
        """The denoiser's x_0 logits; a condition, when there is one, goes beside x_t, followed
        (self-conditioning) by the previous estimate of p̂(x_0), zeros when there is none.
        ``blocks``: an ensemble's training logits, block m of the rows from member m."""
        if cond is not None and cond.shape[0] != x_t.shape[0]:
            raise ValueError(f"cond has {cond.shape[0]} rows but the batch has {x_t.shape[0]}")
        if self.self_condition:
            estimate = torch.zeros_like(x_t) if estimate is None else estimate.to(x_t.dtype)
            cond = estimate if cond is None else torch.cat([cond.to(x_t.dtype), estimate], dim=1)
        if self.denoiser_input == "flat_posterior":
            x_t = self.process.flat_posterior(x_t, t)
        weight = self._first_weight()
        if weight is not None and weight.is_floating_point() and x_t.dtype != weight.dtype:
            # the loop's own states (probabilities fed forward, the flat posterior) are float32 or
            # wider: a bfloat16 or float16 model reads them in its own type, as it reads its inputs
            x_t = x_t.to(weight.dtype)
            cond = cond.to(weight.dtype) if cond is not None and cond.is_floating_point() else cond
        averaged = self.is_ensemble and not blocks
        if blocks:
            call = self.denoiser.block_logits
        elif averaged:  # the mean is taken below, after the prior offset
            call = self.denoiser.member_logits
        else:
            call = self.denoiser
        logits = call(x_t, t) if cond is None else call(x_t, t, cond)
        if logits.shape[-2:] != x_t.shape:  # before the offset, which would broadcast a (B, 1) to (B, D)
            raise ValueError(f"the denoiser {type(self.denoiser).__name__} returned logits of shape "
                             f"{tuple(logits.shape)} for x_t of shape {tuple(x_t.shape)}: a denoiser returns (B, D)")
        if self.prior_logits is not None:  # on each member's logits, before their mean
            logits = at_least_float32(logits) + self.prior_logits
        return DenoiserEnsemble.mean_logits(logits) if averaged else logits

    def _first_weight(self) -> torch.Tensor | None:
        """The denoiser's first parameter: its dtype and device are the model's (None: it has none)."""
        return next(self.denoiser.parameters(), None)

    def _batch(self, name: str, x: torch.Tensor, bits: bool = False) -> torch.Tensor:
        """``x`` as a (B, D) batch in the denoiser's dtype; ValueError naming ``name`` when its
        shape does not fit the denoiser (or, with ``bits``, when a value is not 0 or 1)."""
        x = torch.as_tensor(x)
        dim = getattr(self.denoiser, "dim", None)
        if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
            wanted = f"(B, {dim})" if dim is not None else "(B, D)"
            raise ValueError(f"{name}: expected a batch of vectors {wanted}, got shape {tuple(x.shape)}")
        if bits:
            wrong = (x != 0) & (x != 1)
            if bool(wrong.any()):
                raise ValueError(f"{name}: must hold bits (0 or 1), got the value {x[wrong][0].item()!r}")
        else:
            check_unit_interval(name, x)
        weight = self._first_weight()  # bits and bools become the weights' float type
        return x.to(weight.dtype if weight is not None else working_dtype(x))

    def _times(self, n: int, t: int, device) -> torch.Tensor:
        return torch.full((n,), int(t), dtype=torch.long, device=device)

    def _check_time(self, t: int) -> int:
        # int() of an infinity or a NaN raises an error naming neither t nor its range
        value = checks.plain(t)
        if not checks.is_whole_number(value) or not 1 <= int(value) <= self.process.num_steps:
            raise ValueError(f"t must be an integer in 1..{self.process.num_steps}, got {t!r}")
        return int(value)

    def scheduler(self, steps: int | None = None, start: int | None = None) -> ReverseScheduler:
        """A scheduler over this model's process and reverse kernel, its times already set."""
        scheduler = ReverseScheduler(self.process, self.reverse_kernel)
        scheduler.set_timesteps(steps, start=start)
        return scheduler

    def prior_from_data(self, x0: torch.Tensor) -> torch.Tensor:
        """P(x_T = 1) of each bit under the data: ᾱ_T · mean(x_0) + (1 − ᾱ_T) / 2, shape (D,).

        The product of these marginals is the exact start of the reverse chain for data with
        independent bits, and a better one than B(½) whenever ᾱ_T is not near 0.
        """
        return self.process.marginal_probs(at_least_float32(x0).mean(0), self.process.num_steps)  # float64 stays

    @torch.no_grad()
    def predict_x0(self, x: torch.Tensor, t: int = 1, cond: torch.Tensor | None = None) -> torch.Tensor:
        """p̂(x_0 = 1 | x_t = x[, cond]) from a single denoiser call."""
        return torch.sigmoid(self.logits(x, t, cond))

    def logits(self, x: torch.Tensor, t: int, cond: torch.Tensor | None = None,
               estimate: torch.Tensor | None = None) -> torch.Tensor:
        """The x_0 logits the reverse loop hands ``scheduler.step`` for x_t = ``x`` at time ``t``: the
        denoiser's output after what the model adds around it (the flat-posterior input, the prior
        offset, an ensemble's mean, the condition and, self-conditioned, the previous ``estimate``
        of p̂(x_0), zeros at the first step). A loop written with the scheduler calls this, not
        ``model.denoiser``, which lacks them."""
        x = self._batch("x", x)
        if isinstance(t, (list, tuple)) or getattr(t, "ndim", 0) > 0:  # one time per row, as docs/api.md allows
            return self._denoise(x, self.process._times_per_row(t, x.shape[0]).to(x.device), cond, estimate)
        t = self._check_time(t)
        return self._denoise(x, self._times(x.shape[0], t, x.device), cond, estimate)

    def blind_at(self, t: int) -> bool:
        """Whether the denoiser reads nothing of x_t at time ``t``: it reads the flat posterior
        (``denoiser_input="flat_posterior"``) and ᾱ_t = 0 (t = T of "jsd"), where that is a constant
        ½. Its logits there depend on the condition alone (see ``start_logits``)."""
        return self.denoiser_input == "flat_posterior" and float(self.process.alpha_bar[self._check_time(t)]) == 0.0

    @torch.no_grad()
    def start_logits(self, cond: torch.Tensor | None = None, n: int | None = None,
                     t: int | None = None) -> torch.Tensor:
        """The denoiser's logits at time ``t`` (default T) for each row of ``cond`` (or ``n`` rows
        without one), where it is blind to x_t (``blind_at``): the first call of every reverse run
        from noise at ``t``. Several runs given the same ``cond`` (segmentation's samples of one
        image) can compute it once and hand it to ``run_reverse``, ``inpaint`` or ``sample`` as
        ``start_logits``: bit for bit what each run would compute on the same rows. ValueError
        where the denoiser reads x_t at ``t``, where the logits would depend on each run's noise."""
        t = self.process.num_steps if t is None else self._check_time(t)
        if not self.blind_at(t):
            raise ValueError(f"the denoiser reads x_t at t = {t} (denoiser_input={self.denoiser_input!r}, "
                             f"ᾱ_t = {float(self.process.alpha_bar[t]):.3g}): its first logits depend on each run's "
                             "noise")
        if (cond is None) == (n is None):
            raise ValueError("give cond (one row per run) or n (the number of rows without a condition), not both")
        rows = cond.shape[0] if cond is not None else int(n)
        weight = self._first_weight()  # without a condition, where the model is
        device = cond.device if cond is not None else (weight.device if weight is not None else None)
        # the state's value is not read at ᾱ_t = 0 (½ + 0·(x − ½) is ½)
        return self.logits(torch.zeros((rows, self.denoiser.dim), device=device), t, cond)

    @torch.no_grad()
    def run_reverse(self, sample: torch.Tensor, scheduler: ReverseScheduler, mode: str = "sample",
                    decode: str | None = None, known: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                    generator: torch.Generator | None = None, resample: int = 1,
                    cond: torch.Tensor | None = None,
                    ones: torch.Tensor | None = None,
                    on_step: Callable[[int, torch.Tensor], None] | None = None,
                    start_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The reverse loop, the only one in bindiff: step from ``sample`` at scheduler.timesteps[0] to t = 0.

        ``mode`` "sample" draws bits at every step, "mean" feeds probabilities forward.
        ``decode`` turns the last step's p̂(x_0) into the result: "sample" (draw bits), "mean"
        (keep p̂) or "threshold" (p̂ ≥ ½); by default it follows ``mode``. Where ``mask`` is
        True the state is replaced after every step by a fresh draw of q(x_s | x_0 = known)
        (``known`` itself at s = 0): RePaint. ``resample`` > 1 adds RePaint's resampling: each
        step to s > 0 is taken ``resample`` times, going back to t by a fresh draw of
        q(x_t | x_s) in between, so that the free bits can agree with the known ones (the
        forward draw keeps an exact chain exact). ``cond`` goes to every denoiser call
        (conditional generation, e.g. a mask given its image). ``ones`` (one count per row) tilts
        every p̂(x_0) to that expected number of ones (``tilt_to_count``). ``on_step(t, p̂)``, when
        given, hears p̂(x_0) of every denoiser call (diffusers' step callback). ``start_logits``
        (``start_logits()``) stands for the denoiser's calls at the first time, where it is blind
        to x_t. Returns the final state and p̂(x_0) of the last denoiser call.
        """
        decode = decode or mode
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        if isinstance(resample, bool) or int(resample) != resample or resample < 1:
            raise ValueError(f"resample must be an integer >= 1, got {resample!r}")
        if (known is None) != (mask is None):  # known without a mask would be ignored without a word
            raise ValueError("known and mask go together: known holds the bits, mask says which are known")
        check_unit_interval("sample", sample)  # the start; the loop's own states are not read back
        if ones is not None and mask is not None and bool(mask.any()):
            # the tilt counts every bit, the known ones included, whose p̂ the loop then discards
            raise ValueError("ones holds the count of a whole sample; it cannot be combined with known bits")
        first = scheduler.timesteps[0]
        if start_logits is not None:
            if not self.blind_at(first):
                raise ValueError(f"start_logits stand for the denoiser's first call, but it reads x_t at t = {first}")
            if start_logits.shape != sample.shape:
                raise ValueError(f"start_logits {tuple(start_logits.shape)} and sample {tuple(sample.shape)} differ "
                                 "in shape")
        pred_x0 = sample
        estimate = None  # self-conditioning: the previous step's p̂(x_0)
        n = sample.shape[0]
        for t in scheduler.timesteps:
            s = scheduler.previous(t)
            for again in range(int(resample) if s > 0 else 1):
                if again:  # back to time t: x_t ~ q(x_t | x_s)
                    back = self.process._transition(sample, s, t)  # the loop's own state
                    sample = back if mode == "mean" else draw_bits(back, generator, sample.dtype)
                if start_logits is not None and t == first and not again:  # blind, and no estimate yet
                    logits = start_logits
                else:
                    logits = self._denoise(sample, self._times(n, t, sample.device), cond, estimate)
                if ones is not None:
                    logits = tilt_to_count(logits, ones)
                step_mode = mode if s > 0 else ("sample" if decode == "sample" else "mean")
                out = scheduler._step(logits, t, sample, generator=generator, mode=step_mode)
                sample, pred_x0 = out.prev_sample, out.pred_x0
                estimate = pred_x0
                if on_step is not None:
                    on_step(int(t), pred_x0)
                if s == 0 and decode == "threshold":
                    sample = (out.pred_x0 >= 0.5).to(sample.dtype)
                if mask is not None:
                    # known was checked once by inpaint; not read back at every step
                    context = self.process._noised(known, s, generator=generator) if s > 0 else known
                    sample = torch.where(mask, context.to(sample.dtype), sample)
        return sample, pred_x0

    @torch.no_grad()
    def reverse(self, x: torch.Tensor, start: int, steps: int | None = None, mode: str = "mean",
                add_noise: bool = False, generator: torch.Generator | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        """Run reverse steps from time ``start``; return p̂(x_0) of the last denoiser call.

        ``add_noise=False`` treats the observation itself as x_start (as DiffRec does with a
        user's history); ``True`` first draws x_start ~ q(x_start | x). ``mode="mean"`` feeds
        probabilities forward, ``"sample"`` draws bits at every step.
        """
        if mode not in STEP_MODES:  # run_reverse would not look at it when one step is left
            raise ValueError(f"mode must be one of {STEP_MODES}, got {mode!r}")
        scheduler = self.scheduler(steps, start=self._check_time(start))
        x = self._batch("x", x)
        sample = self.process.add_noise(x, start, generator=generator) if add_noise else x
        return self.run_reverse(sample, scheduler, mode=mode, decode="mean", generator=generator, cond=cond)[1]

    def _start_state(self, shape, start: int, init: torch.Tensor | None, prior: torch.Tensor | float | None,
                     generator: torch.Generator | None, device, dtype) -> torch.Tensor:
        if init is not None:
            return self.process.add_noise(init, start, generator=generator)
        if start != self.process.num_steps:
            raise ValueError(f"starting at t = {start} < T = {self.process.num_steps} needs an initial guess (init)")
        probs = torch.as_tensor(0.5 if prior is None else prior, device=device, dtype=dtype)
        try:
            probs = probs.expand(shape)
        except RuntimeError:
            raise ValueError(f"prior: shape {tuple(probs.shape)} does not fit samples of shape {tuple(shape)} "
                             "(give one probability per bit, or one for all)") from None
        if not bool(((probs >= 0) & (probs <= 1)).all()):  # NaN fails too
            raise ValueError("prior holds probabilities of x_T = 1: every value must lie in [0, 1]")
        return draw_bits(probs, generator)

    @torch.no_grad()
    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                generator: torch.Generator | None = None, mode: str = "sample", *,
                init: torch.Tensor | None = None, start: int | None = None,
                prior: torch.Tensor | float | None = None, decode: str | None = None,
                resample: int = 1, cond: torch.Tensor | None = None,
                ones: torch.Tensor | None = None,
                on_step: Callable[[int, torch.Tensor], None] | None = None,
                start_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Fill the bits where ``mask`` is False, holding those where it is True at ``known``.

        At every time the known bits are replaced by a fresh draw of q(x_s | x_0 = known), so
        the unknown bits are always denoised next to correctly noised context (RePaint without
        resampling). The unknown bits start at x_T from ``prior`` (P(x_T = 1) per bit; default
        B(½), exact when ᾱ_T = 0, see ``prior_from_data`` otherwise), or, given ``init`` and
        ``start``, from x_start ~ q(x_start | init): SDEdit's warm start. Returns bits or
        probabilities (``decode``, see ``run_reverse``) with the known bits copied through.
        ``resample`` > 1 is RePaint's resampling (see ``run_reverse``); ``ones`` holds the
        count of each row (see ``sample``), only where nothing is known. ``steps`` beyond
        ``start`` (T by default) are clipped to it: a warm start may begin low. ``known`` (and
        ``init``) must hold bits, ``mask`` booleans (or 0 and 1). ``start_logits``: see ``start_logits()``.
        """
        if known.shape != mask.shape:
            raise ValueError(f"known {tuple(known.shape)} and mask {tuple(mask.shape)} differ in shape")
        if init is not None and init.shape != known.shape:
            raise ValueError(f"init {tuple(init.shape)} and known {tuple(known.shape)} differ in shape")
        known = self._batch("known", known, bits=True)
        if init is not None:
            init = self._batch("init", init, bits=True)
        if mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("mask: must be boolean (True where a bit is known) or hold only 0 and 1")
        mask = mask.bool()
        if init is not None and prior is not None:  # the warm start replaces the draw from the prior
            raise ValueError("prior is where x_T is drawn from noise, and init replaces that draw: give one of them")
        start = self.process.num_steps if start is None else self._check_time(start)
        scheduler = self.scheduler(None if steps is None else min(steps, start), start=start)
        free = self._start_state(known.shape, start, init, prior, generator, known.device, known.dtype)
        sample = torch.where(mask, self.process.add_noise(known, start, generator=generator), free)
        return self.run_reverse(sample, scheduler, mode=mode, decode=decode, known=known, mask=mask,
                                generator=generator, resample=resample, cond=cond, ones=ones, on_step=on_step,
                                start_logits=start_logits)[0]

    @torch.no_grad()
    def sample(self, n: int, steps: int | None = None, generator: torch.Generator | None = None,
               device=None, *, prior: torch.Tensor | float | None = None, decode: str = "sample",
               cond: torch.Tensor | None = None, resample: int = 1,
               ones: torch.Tensor | None = None,
               on_step: Callable[[int, torch.Tensor], None] | None = None,
               start_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Bits from x_T ~ ``prior`` (default B(½), exact when ᾱ_T = 0, e.g. "jsd"); with ``cond``
        (n rows) each sample is drawn given its row: p(x_0 | cond).

        ``resample`` > 1 takes each step that many times, going back by q(x_t | x_s) in between
        (see ``run_reverse``): a corrector that undoes part of what drawing every bit
        independently loses, such as the spread of a whole-vector statistic over few steps.

        ``decode="threshold"`` ends on the most likely x_0 instead of a draw from p̂ (masks
        without the isolated voxels that independent draws at p̂ ≈ 0.1 would sprinkle).

        ``ones`` (n counts) holds each sample's expected number of ones: every step's p̂(x_0) is
        tilted to it by one logit shift per row, the product of Bernoullis closest to p̂ in KL
        with that count (``tilt_to_count``). Drawing the counts from the data's own gives a
        two-stage model, p(count) from the data and the shape from the chain, for a chain that
        drifts in the count (docs/masks.md). The draw is exact in the count's mean, not a
        conditional p(x_0 | count).

        ``start_logits`` (``start_logits(cond)``): the first denoiser call's logits where it is
        blind to x_T, computed once for several draws given the same ``cond``.
        """
        n = checks.whole("n", checks.plain(n))  # torch's own refusal of 2.0 names a size argument, not n
        nothing_known = torch.zeros((n, self.denoiser.dim), device=device)
        return self.inpaint(nothing_known, nothing_known.bool(), steps=steps, generator=generator,
                            prior=prior, decode=decode, cond=cond, resample=resample, ones=ones, on_step=on_step,
                            start_logits=start_logits)
