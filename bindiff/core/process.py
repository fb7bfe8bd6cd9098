"""The Bernoulli forward process on {0, 1}^D and its exact posterior.

Time convention: x_0 is the data, x_1..x_T are increasingly noisy, t is an integer in 1..T
(t = 0 means "no noise"). The kernel is Sohl-Dickstein's binomial diffusion

    q(x_t | x_{t-1}) = B(x_{t-1} (1 − β_t) + β_t / 2),

whose distance to ½ shrinks by α_t = 1 − β_t per step, hence the closed form

    q(x_t | x_0) = B(ᾱ_t x_0 + (1 − ᾱ_t) / 2),   ᾱ_t = ∏_{s≤t} α_s.

RecFusion's bit flip (flip each bit with probability b_t) is the same family with β_t = 2 b_t;
``kernel="flip"`` takes flip probabilities and converts them, so both share one code path.
All tables are built in float64 and checked once at construction.
"""

from __future__ import annotations

import copy
import numbers
from typing import Any

import torch
import torch.nn.functional as F

from .schedules import get_schedule, validate_betas

KERNELS = ("toward_half", "flip")
# How a denoiser's p̂(x_0 = 1 | x_t) becomes the reverse kernel p_θ(x_s | x_t):
# "mixture" is exact for a denoiser that estimates p(x_0 | x_t) (what the bce loss trains);
# "plugin" is D3PM's x_0-parametrisation, kept for comparison (it counts x_t twice).
REVERSE_KERNELS = ("mixture", "plugin")


def working_dtype(x: torch.Tensor) -> torch.dtype:
    """The float type the process computes in for ``x``: float64 stays, anything else is float32.

    Integer or boolean bits would turn ᾱ_t into 0 or 1, and half precision rounds an ᾱ_t of
    1 − 5e-5 up to 1 (no noise at all) and cannot draw a uniform below 2^-11: both are lifted.
    """
    return torch.promote_types(x.dtype, torch.float32)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its ``working_dtype``: half precision (bf16 autocast) lifted, float64 kept."""
    return x.to(working_dtype(x))


def check_unit_interval(name: str, x: torch.Tensor) -> None:
    """ValueError naming ``name`` unless every value lies in [0, 1] (bits or probabilities; NaN fails).

    Skipped while torch.export traces: a check that depends on the values cannot be part of an
    exported program (an exported scorer checks nothing at run time)."""
    if _tracing() or x.dtype == torch.bool or not x.numel():
        return
    low, high = torch.aminmax(x)  # one pass; NaN comes out as NaN and fails both comparisons
    if not bool((low >= 0) & (high <= 1)):
        outside = ~((x >= 0) & (x <= 1))
        raise ValueError(f"{name}: values must lie in [0, 1] (bits or probabilities), got {x[outside][0].item()!r}")


def check_not_nan(x: torch.Tensor, message: str) -> None:
    """ValueError(``message``) when ``x`` holds NaN (not while tracing, as ``check_unit_interval``)."""
    if not _tracing() and bool(torch.isnan(x).any()):
        raise ValueError(message)


def _tracing() -> bool:
    """True while torch.export traces. ``torch.compile`` still checks: a check breaks its graph
    there and runs eagerly, where skipping it would let NaN or a 2 through without a word."""
    compiler = getattr(torch, "compiler", None)
    if hasattr(compiler, "is_exporting"):  # torch >= 2.7
        return bool(compiler.is_exporting())
    # before 2.7 export traced with dynamo and could not be told from compile
    if hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    from torch import _dynamo  # torch 2.2

    return bool(_dynamo.is_compiling())


def draw_bits(probs: torch.Tensor, generator: torch.Generator | None = None,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """Bits drawn from B(probs) with one uniform per element (``dtype``: the result's, default probs').

    The uniforms are float32 at least: a half-precision uniform is never below 2^-11, so
    B(1e-5) would come out 1 in 4,000 draws instead of 1 in 100,000."""
    uniform = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=working_dtype(probs))
    return (uniform < probs).to(probs.dtype if dtype is None else dtype)


def _gather(table: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """table[t] shaped to broadcast over the feature axes of ``like``."""
    return _shaped_like(table[torch.as_tensor(t, device=table.device)], like)


def _shaped_like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-row values (float64) in ``like``'s working dtype and device, broadcasting over its feature axes."""
    if values.ndim == 2 and like.ndim and values.shape == (like.shape[0], 1):  # t[:, None], a DDPM habit
        values = values.reshape(-1)
    if values.ndim > 1 or (values.ndim == 1 and like.ndim and values.shape[0] not in (1, like.shape[0])):
        # a (1, B) time would be applied per column, and k times on one row give k rows
        raise ValueError(f"t: expected an int or one time per row ({like.shape[0]},), got shape {tuple(values.shape)}")
    values = values.to(device=like.device, dtype=working_dtype(like))
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def _plain_numbers(values: dict) -> dict:
    """numpy's numbers as plain ones (np.float32 is no JSON, np.float64 no YAML), so that a
    process's config is written as it was read; get_schedule refuses what is not a number."""
    return {key: value if isinstance(value, bool) or not isinstance(value, numbers.Real)
            else int(value) if isinstance(value, numbers.Integral) else float(value)
            for key, value in values.items()}


def _rates_of(config: dict) -> tuple[torch.Tensor, str]:
    """The rates (β, or flip probabilities for ``kernel="flip"``) and kernel a process config names."""
    config = dict(config)
    kernel = config.pop("kernel", "toward_half")
    if ("betas" in config) == ("schedule" in config):
        raise ValueError(f"a process config holds either 'betas' or 'schedule' (with 'steps'), got {config}")
    if "betas" in config:
        if set(config) != {"betas"}:
            raise ValueError(f"a config with 'betas' takes only 'kernel' beside them, got {sorted(config)}")
        return torch.tensor(config["betas"], dtype=torch.float64), kernel
    if "steps" not in config:
        raise ValueError(f"a process config with 'schedule' needs 'steps', got {config}")
    return get_schedule(config.pop("schedule"), config.pop("steps"), **config), kernel


class BernoulliProcess:
    """Closed-form marginals, one-step kernels and posteriors of binomial diffusion.

    Not an ``nn.Module``: it has no parameters, only a config that round-trips through
    ``to_config`` / ``from_config`` (the schedule is rebuilt from its name and parameters).
    """

    def __init__(self, betas: torch.Tensor, kernel: str = "toward_half", config: dict | None = None):
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        rates = torch.as_tensor(betas, dtype=torch.float64)
        if kernel == "flip":
            if ((rates <= 0) | (rates > 0.5)).any():
                raise ValueError("flip probabilities must lie in (0, 0.5]; a flip rate b is beta = 2b")
            rates = 2 * rates
        self.kernel = kernel
        self.betas = validate_betas(rates)
        self.alphas = 1 - self.betas
        # alpha_bar[0] = 1 so that index t reads ᾱ_t directly, t = 0..T.
        self.alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(self.alphas, 0)])
        # log ᾱ_t (−inf where a step erases x_0): ratios ᾱ_t / ᾱ_s are taken here, since both
        # may lie below what float32, or even float64, holds while their ratio does not
        self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.log1p(-self.betas), 0)])
        self._config = copy.deepcopy(config) if config is not None else {
            "betas": [float(b) for b in torch.as_tensor(betas, dtype=torch.float64)], "kernel": kernel
        }
        self._check_tables()
        if config is not None:  # a config that does not rebuild these betas would not round-trip
            rates, config_kernel = _rates_of(config)
            if config_kernel != kernel or not torch.equal(rates, torch.as_tensor(betas, dtype=torch.float64)):
                raise ValueError(f"config {config} does not describe these betas (kernel {kernel!r}, "
                                 f"T = {self.num_steps})")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_schedule(cls, schedule: str, steps: int, kernel: str = "toward_half", **params: Any) -> "BernoulliProcess":
        if isinstance(steps, numbers.Integral) and not isinstance(steps, bool):
            steps = int(steps)  # numpy's integers too, kept as a plain int for the config's YAML
        config = {"schedule": schedule, "steps": steps, "kernel": kernel, **_plain_numbers(params)}
        return cls(get_schedule(schedule, steps, **params), kernel=kernel, config=config)

    @classmethod
    def from_config(cls, config: dict) -> "BernoulliProcess":
        rates, kernel = _rates_of(config)
        if "betas" in config:
            return cls(rates, kernel=kernel)
        return cls(rates, kernel=kernel, config=_plain_numbers(config))

    def to_config(self) -> dict:
        """Plain values (YAML-safe) from which ``from_config`` rebuilds this process."""
        return copy.deepcopy(self._config)  # a copy all the way down: editing it leaves the process alone

    def _check_tables(self) -> None:
        # The product form and the log-space sum must agree; a disagreement means the
        # schedule is so extreme that float64 cannot represent ᾱ_t faithfully.
        # Compared in log space where ᾱ_t is a normal float, with the rounding a cumulative sum of
        # T logarithms may carry (T · eps · |log ᾱ_t|; 1e-9 relative at T = 100,000, ᾱ_t ≈ 1e-280).
        normal = self.alpha_bar[1:] > torch.finfo(torch.float64).tiny
        logs = self.log_alpha_bar[1:][normal]
        bound = 4 * self.num_steps * torch.finfo(torch.float64).eps * logs.abs().clamp_min(1)
        assert bool(((torch.log(self.alpha_bar[1:][normal]) - logs).abs() <= bound).all())
        assert (self.alpha_bar >= 0).all() and (self.alpha_bar <= 1).all()

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())

    def _times_per_row(self, t, n: int, low: int = 1) -> torch.Tensor:
        """``t`` as (n,) long times in low..T: one int for all rows, one per row (B,), or a column
        (B, 1) as docs/api.md's conventions allow; any other shape refused naming ``t``."""
        given = torch.as_tensor(t)
        if given.ndim == 2 and given.shape == (n, 1):  # t[:, None], a DDPM habit
            given = given.reshape(-1)
        if given.ndim == 0:
            given = given.expand(n)
        if tuple(given.shape) != (n,):
            raise ValueError(f"t: expected an int or one time per row ({n},), got shape {tuple(given.shape)}")
        return self._check_t(given, low=low)

    def _check_t(self, t: torch.Tensor | int, low: int = 0) -> torch.Tensor:
        if t is None:  # torch.as_tensor's "Could not infer dtype of NoneType" names neither
            raise ValueError("time steps are integers, got None")
        given = torch.as_tensor(t)
        if given.dtype == torch.bool:  # True would be read as time 1, a mask passed for the times
            raise ValueError(f"time steps are integers, got booleans {given.flatten()[:4].tolist()}")
        if given.is_floating_point() and bool(((given != given.round()) | ~torch.isfinite(given)).any()):
            raise ValueError(f"time steps are integers, got {given.flatten()[:4].tolist()}")
        if given.is_floating_point() and given.numel() and (float(given.min()) < low
                                                            or float(given.max()) > self.num_steps):
            # before the cast: 1e30 as a long is -9223372036854775808
            raise ValueError(f"time steps must lie in {low}..{self.num_steps}, got {given.min().item():g}.."
                             f"{given.max().item():g}")
        t = given.to(torch.long)
        if t.numel() and (int(t.min()) < low or int(t.max()) > self.num_steps):
            raise ValueError(f"time steps must lie in {low}..{self.num_steps}, got {t.min().item()}..{t.max().item()}")
        return t

    # -- forward process ------------------------------------------------------------------
    def marginal_probs(self, x0: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """P(x_t = 1 | x_0) = ᾱ_t x_0 + (1 − ᾱ_t) / 2, in float32 or float64 (see ``working_dtype``)."""
        check_unit_interval("x0", x0)
        return self._marginal(x0, t)

    def _marginal(self, x0: torch.Tensor, t) -> torch.Tensor:
        x0 = x0.to(working_dtype(x0))
        t = self._check_t(t)
        a = _gather(self.alpha_bar, t, x0)
        return a * x0 + _shaped_like(self._half_gap(t), x0)

    def flat_posterior(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """P(x_0 = 1 | x_t) when x_0 is ½ a priori: q(x_t | 1) / (q(x_t | 1) + q(x_t | 0)) = ½ + ᾱ_t (x_t − ½).

        What each bit of x_t alone says about x_0: the bit itself at t = 0, ½ where ᾱ_t = 0.
        """
        check_unit_interval("x_t", x_t)
        x_t = x_t.to(working_dtype(x_t))
        a = _gather(self.alpha_bar, self._check_t(t), x_t)
        return 0.5 + a * (x_t - 0.5)

    def alpha_ratio(self, t: torch.Tensor | int, s: torch.Tensor | int) -> torch.Tensor:
        """ᾱ_t / ᾱ_s for s ≤ t in float64, exactly 1 at s = t (also where ᾱ_t = ᾱ_s = 0)."""
        t, s = self._check_t(t), self._check_t(s)
        if bool((s > t).any()):  # a ratio above 1 is no kernel
            raise ValueError("alpha_ratio(t, s) needs s <= t")
        return self._alpha_ratio(t, s)

    def _alpha_ratio(self, t, s) -> torch.Tensor:
        """``alpha_ratio`` for times already checked (the kernels check theirs once)."""
        where = self.log_alpha_bar.device  # the tables stay on the CPU; a time on the GPU is brought here
        t, s = (torch.as_tensor(v, dtype=torch.long).to(where) for v in (t, s))
        ratio = torch.exp(self.log_alpha_bar[t] - self.log_alpha_bar[s])
        return torch.where(t == s, torch.ones_like(ratio), ratio)

    def _half_gap(self, t: torch.Tensor | int, s: torch.Tensor | int = 0) -> torch.Tensor:
        """(1 − ᾱ_t / ᾱ_s) / 2 in float64, without the cancellation of 1 − a where a ≈ 1 (expm1):
        cast to float32 afterwards it keeps its relative precision, where 1 − float32(a) does not."""
        where = self.log_alpha_bar.device
        t, s = (torch.as_tensor(v, dtype=torch.long).to(where) for v in (t, s))
        gap = -torch.expm1(self.log_alpha_bar[t] - self.log_alpha_bar[s]) / 2
        return torch.where(t == s, torch.zeros_like(gap), gap)

    def transition_probs(self, x_s: torch.Tensor, s: torch.Tensor | int, t: torch.Tensor | int) -> torch.Tensor:
        """P(x_t = 1 | x_s) for s ≤ t: the same kernel with ᾱ_t / ᾱ_s in place of α."""
        check_unit_interval("x_s", x_s)
        return self._transition(x_s, s, t)

    def _transition(self, x_s: torch.Tensor, s, t) -> torch.Tensor:
        s, t = self._check_t(s), self._check_t(t)
        if (s > t).any():
            raise ValueError("transition_probs needs s <= t")
        x_s = x_s.to(working_dtype(x_s))
        a = _shaped_like(self._alpha_ratio(t, s), x_s)
        return a * x_s + _shaped_like(self._half_gap(t, s), x_s)

    def add_noise(
        self,
        x0: torch.Tensor,
        t: torch.Tensor | int,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0). ``noise`` (uniform on [0, 1), shape of x0) makes it exact."""
        check_unit_interval("x0", x0)
        return self._noised(x0, t, noise, generator)

    def _noised(self, x0, t, noise=None, generator=None) -> torch.Tensor:
        """``add_noise`` for a state already checked (the reverse loop's known bits, a training batch):
        the loop would otherwise read every value back at every step."""
        probs = self._marginal(x0, t)
        if noise is None:
            noise = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=probs.dtype)
        elif noise.shape != probs.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(probs.shape)}")
        elif not _tracing() and noise.numel():
            low, high = torch.aminmax(noise)  # NaN fails both
            if not bool((low >= 0) & (high < 1)):
                raise ValueError("noise: must be uniform on [0, 1) (x_t = 1 where noise < P(x_t = 1 | x_0)); Gaussian "
                                 f"noise such as torch.randn does not describe a Bernoulli draw (got {low.item():.3g}.."
                                 f"{high.item():.3g})")
        return (noise < probs).to(x0.dtype)

    # -- posterior ------------------------------------------------------------------------
    def posterior_logits(
        self,
        x0: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        s: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """Logit of q(x_s = 1 | x_t, x_0) for s < t (default s = t − 1), by Bayes' rule.

        q(x_s | x_t, x_0) ∝ q(x_t | x_s) q(x_s | x_0). When ``x0`` holds probabilities p̂
        instead of bits the result is Σ_{x_0} q(x_s, x_t | x_0) p̂(x_0) normalised: D3PM's
        plug-in, which is not the reverse kernel of a denoiser that predicts p(x_0 | x_t)
        (see ``reverse_logits``, which sampling and the bound use).
        """
        check_unit_interval("x0", x0)
        check_unit_interval("x_t", x_t)
        return self._posterior_logits(x0, x_t, t, s)

    def _posterior_logits(self, x0, x_t, t, s) -> torch.Tensor:
        t = self._check_t(t, low=1)
        s = t - 1 if s is None else self._check_t(s)
        if (torch.as_tensor(s) >= t).any():
            raise ValueError("posterior needs s < t")
        dtype = torch.promote_types(working_dtype(x0), working_dtype(x_t))
        x0, x_t = x0.to(dtype), x_t.to(dtype)
        # (1 − a) / 2 comes from float64 (expm1): 1 − a in float32 loses up to all of a small β
        a_ts = _shaped_like(self._alpha_ratio(t, s), x_t)
        h_ts = _shaped_like(self._half_gap(t, s), x_t)
        a_s = _gather(self.alpha_bar, s, x0)
        h_s = _shaped_like(self._half_gap(torch.as_tensor(s)), x0)
        like_one = a_ts * x_t + h_ts  # q(x_t | x_s = 1)
        like_zero = a_ts * (1 - x_t) + h_ts  # q(x_t | x_s = 0)
        prior_one = a_s * x0 + h_s  # q(x_s = 1 | x_0)
        prior_zero = a_s * (1 - x0) + h_s  # q(x_s = 0 | x_0), not 1 − prior_one (cancellation)
        tiny = torch.finfo(dtype).tiny
        log_one = torch.log((like_one * prior_one).clamp_min(tiny))
        log_zero = torch.log((like_zero * prior_zero).clamp_min(tiny))
        return log_one - log_zero

    def posterior_probs(self, x0, x_t, t, s=None) -> torch.Tensor:
        """q(x_s = 1 | x_t, x_0), s = t − 1 by default: ``posterior_logits`` through the sigmoid."""
        return torch.sigmoid(self.posterior_logits(x0, x_t, t, s))

    def reverse_logits(
        self,
        x0_logits: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor | int,
        s: torch.Tensor | int | None = None,
        kernel: str = "mixture",
    ) -> torch.Tensor:
        """Logit of the model's reverse kernel p_θ(x_s = 1 | x_t) from the logits of p̂(x_0 = 1 | x_t).

        ``kernel="mixture"`` (the default) marginalises x_0 under p̂:

            p_θ(x_s | x_t) = p̂ · q(x_s | x_t, x_0 = 1) + (1 − p̂) · q(x_s | x_t, x_0 = 0),

        which is the true reverse kernel when p̂ is the true p(x_0 | x_t) of each bit, for any
        s < t (a skip uses ᾱ_t / ᾱ_s). At s = 0 it is p̂ itself. Computed in log space so that
        confident logits keep their precision.

        ``kernel="plugin"`` puts p̂ in place of x_0 in the posterior (D3PM's eq. 4, BerDiff),
        i.e. Σ_{x_0} q(x_s, x_t | x_0) p̂(x_0), which weighs each x_0 by q(x_t | x_0) a second
        time; it equals the mixture only when p̂ is 0 or 1. It is kept for models trained
        through the bound in that parametrisation and to show the difference.
        """
        if kernel not in REVERSE_KERNELS:
            raise ValueError(f"unknown reverse kernel {kernel!r}; choose one of {', '.join(REVERSE_KERNELS)}")
        check_unit_interval("x_t", x_t)
        # NaN < u is False: a NaN p̂ would become a confident 0
        check_not_nan(x0_logits, "x0_logits holds NaN (a denoiser that diverged, or NaN in its input)")
        return self._reverse_logits(x0_logits, x_t, t, s, kernel)

    def _reverse_logits(self, x0_logits, x_t, t, s, kernel) -> torch.Tensor:
        """``reverse_logits`` on arguments already checked (the scheduler's step checks them once)."""
        x0_logits = x0_logits.to(working_dtype(x0_logits))
        if kernel == "plugin":
            return self._posterior_logits(torch.sigmoid(x0_logits), x_t, t, s)
        # q(x_s = 1 | x_t, x_0) for x_0 = 1 and x_0 = 0, as logits (±large where certain)
        given_one = self._posterior_logits(torch.ones_like(x_t, dtype=x0_logits.dtype), x_t, t, s)
        given_zero = self._posterior_logits(torch.zeros_like(x_t, dtype=x0_logits.dtype), x_t, t, s)
        log_p1, log_p0 = F.logsigmoid(x0_logits), F.logsigmoid(-x0_logits)
        log_one = torch.logaddexp(log_p1 + F.logsigmoid(given_one), log_p0 + F.logsigmoid(given_zero))
        log_zero = torch.logaddexp(log_p1 + F.logsigmoid(-given_one), log_p0 + F.logsigmoid(-given_zero))
        mixed = log_one - log_zero
        # at s = 0 the kernel is p̂ itself; the sums above would cap a float32 logit near ±87
        s_index = self._check_t(torch.as_tensor(t) - 1 if s is None else s)
        at_x0 = (s_index == 0).to(mixed.device)
        at_x0 = at_x0.reshape(at_x0.shape + (1,) * (mixed.ndim - at_x0.ndim))
        return torch.where(at_x0, x0_logits.to(mixed.dtype), mixed)

    def reverse_probs(self, x0_logits, x_t, t, s=None, kernel: str = "mixture") -> torch.Tensor:
        """P_θ(x_s = 1 | x_t): the sigmoid of ``reverse_logits``."""
        return torch.sigmoid(self.reverse_logits(x0_logits, x_t, t, s, kernel))

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x_0) ‖ B(½)) summed over features: the bound's prior term.

        KL(B(p) ‖ B(½)) = p log p + (1 − p) log(1 − p) + log 2, written out here so that the
        process does not import the losses (which import the process). With d = 2p − 1 =
        ᾱ_T (2x_0 − 1) it is ½[(1 + d) log(1 + d) + (1 − d) log(1 − d)] = Σ_k d^2k / (2k (2k − 1)),
        computed in float64 from d (the series where |d| is small): the terms of the first form
        cancel to 0, in float32 and even in float64, once ᾱ_T is small (1e-9 read as 0).
        """
        check_unit_interval("x0", x0)
        d = float(self.alpha_bar[-1]) * (2 * x0.to(torch.float64) - 1)
        d2 = d * d
        series = d2 * (1 / 2 + d2 * (1 / 12 + d2 * (1 / 30 + d2 * (1 / 56 + d2 / 90))))  # |d| < 0.01: to 1e-20
        closed = (torch.special.xlog1py(1 + d, d) + torch.special.xlog1py(1 - d, -d)) / 2
        return torch.where(d.abs() < 0.01, series, closed).sum(-1).to(working_dtype(x0))

    def __repr__(self) -> str:
        config = dict(self._config)
        if "betas" in config:  # a thousand rates would fill the screen
            config["betas"] = f"<{self.num_steps} values>"
        return f"BernoulliProcess(T={self.num_steps}, kernel={self.kernel!r}, config={config})"
