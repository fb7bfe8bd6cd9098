"""Denoisers: networks that map (x_t, t) to logits of p̂(x_0 = 1 | x_t).

Recipes name a denoiser through ``DENOISERS``; ``build_denoiser`` refuses unknown names and
unknown parameters with the valid ones listed. Every denoiser takes ``dim`` (the vector
length) first and is called as ``denoiser(x_t, t)`` with x_t of shape (B, D) and t of shape (B,).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from .dropout import ShardableDropout
from . import params as checks
from .process import at_least_float32

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer time steps: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    angles = t.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


class MLPDenoiser(nn.Module):
    """D → hidden[0] → … → hidden[-1] → D, predicting x_0 logits.

    ``input_dropout`` drops input bits during training, as Mult-DAE does, which matters for
    sparse data; ``input_norm="l2"`` scales each input row to unit length, so users with long
    histories do not saturate the first layer. With ``time_dim > 0`` a sinusoidal embedding of
    t is projected and added to the first hidden layer; with 0 the network never sees t, which
    is how RecFusion's three-layer network (hidden=[200, 200], activation=prelu) is built.
    """

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (600,),
        activation: str = "tanh",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        input_norm: str = "none",
        time_dim: int = 0,
    ):
        super().__init__()
        if not isinstance(activation, str) or activation not in ACTIVATIONS:  # a list is unhashable
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if input_norm not in ("none", "l2"):
            raise ValueError(f"input_norm must be 'none' or 'l2', got {input_norm!r}")
        dim = checks.whole("dim", dim, low=1)  # 0 built a network of no inputs; 2.5 or -1 failed inside torch
        hidden = checks.widths("hidden", hidden)
        dropout, input_dropout = checks.rate("dropout", dropout), checks.rate("input_dropout", input_dropout)
        time_dim = checks.whole("time_dim", time_dim)
        self.dim, self.input_norm, self.time_dim = dim, input_norm, time_dim
        self.input_dropout = ShardableDropout(input_dropout)
        widths = [dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activations = nn.ModuleList(ACTIVATIONS[activation]() for _ in hidden)
        self.dropout = ShardableDropout(dropout)
        self.out = nn.Linear(hidden[-1], dim)
        self.time_proj = nn.Linear(time_dim, hidden[0]) if time_dim > 0 else None

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = x_t
        if self.input_norm == "l2":
            h = nn.functional.normalize(h, dim=-1)
        h = self.input_dropout(h)
        for i, (layer, act) in enumerate(zip(self.layers, self.activations)):
            h = layer(h)
            if i == 0 and self.time_proj is not None:
                h = h + self.time_proj(sinusoidal_embedding(t, self.time_dim).to(h.dtype))
            h = self.dropout(act(h)) if i < len(self.layers) - 1 else act(h)
        return self.out(h)


class DenoiserEnsemble(nn.Module):
    """Several denoisers of one kind, trained side by side as if each were trained alone.

    Called as a denoiser it returns the logits of the members' mean probability,
    logit((1/M) Σ_m σ(l_m)), so every inference path (one step, reverse, export) sees one
    denoiser. Training reads ``block_logits`` instead: a training batch of M·b rows holds one
    block of b rows per member, member m predicts block m only, and the loss (the mean over
    rows) is the mean of the members' own losses. No member's gradient depends on another's,
    and the trainer fills each member's blocks in an order of its own, so the mean is a true
    ensemble (the members differ in initialisation, data order, noise and dropout masks), not
    one wider network trained through the average.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        dims = {getattr(m, "dim", None) for m in members}
        if len(dims) != 1:
            raise ValueError(f"the members denoise vectors of different lengths: {sorted(map(str, dims))}")
        self.members = nn.ModuleList(members)
        self.dim = dims.pop()

    def block_logits(self, x_t: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        """x_0 logits of a training batch of M equal blocks of rows, block m from member m: (M·b, D)."""
        m = len(self.members)
        if x_t.shape[0] % m:
            raise ValueError(f"an ensemble of {m} members trains on batches of {m} equal blocks of rows, "
                             f"got {x_t.shape[0]} rows")
        b = x_t.shape[0] // m
        return torch.cat([member(x_t[k * b:(k + 1) * b], t[k * b:(k + 1) * b], *(c[k * b:(k + 1) * b] for c in cond))
                          for k, member in enumerate(self.members)])

    def member_logits(self, x_t: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        """Each member's x_0 logits for every row, stacked: (M, B, D)."""
        return torch.stack([member(x_t, t, *cond) for member in self.members])

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        return self.mean_logits(self.member_logits(x_t, t, *cond))

    @staticmethod
    def mean_logits(member_logits: torch.Tensor) -> torch.Tensor:
        """logit of the mean probability over the first dimension, (M, B, D) -> (B, D)."""
        logits = at_least_float32(member_logits)
        # log of the mean of σ(l) and of σ(−l), each through logsumexp: exact where σ saturates
        # (the 1/M of both means cancels in the difference)
        log_p = torch.logsumexp(nn.functional.logsigmoid(logits), dim=0)
        log_q = torch.logsumexp(nn.functional.logsigmoid(-logits), dim=0)
        return log_p - log_q


DENOISERS: dict[str, type[nn.Module]] = {"mlp": MLPDenoiser}


def same_definition(a: object, b: object) -> bool:
    """Whether ``b`` is ``a`` or the same definition made again: the same module and qualified name (a
    notebook cell run twice makes a new class object; registering it again replaces the first)."""
    if a is b:
        return True
    name = (getattr(a, "__module__", None), getattr(a, "__qualname__", None))
    if name[1] is None or name != (getattr(b, "__module__", None), getattr(b, "__qualname__", None)):
        return False
    # functions: every lambda of a module, and every function a factory makes, share one name; the
    # place of their code tells a cell run again from another definition
    code_a, code_b = getattr(a, "__code__", None), getattr(b, "__code__", None)
    return code_a is None or code_b is None or (code_a.co_filename, code_a.co_firstlineno) == (
        code_b.co_filename, code_b.co_firstlineno)


def register_denoiser(name: str, cls: type[nn.Module]) -> None:
    """Make a denoiser available to recipes under ``name`` (adapters add spatial ones). Registering
    the same class again (a re-run notebook cell) replaces it; another class under a taken name is refused."""
    if not isinstance(name, str) or not name:  # a name of 5 broke every later "unknown denoiser" line (a TypeError)
        raise ValueError(f"a denoiser's name is a non-empty string, got {name!r}")
    if not callable(cls):
        raise ValueError(f"register_denoiser({name!r}, ...) needs a class (or a function) that builds the denoiser, "
                         f"got {cls!r}")
    if name in DENOISERS and not same_definition(DENOISERS[name], cls):
        taken = getattr(DENOISERS[name], "__qualname__", repr(DENOISERS[name]))  # a functools.partial has none
        raise ValueError(f"a denoiser named {name!r} is already registered ({taken})")
    DENOISERS[name] = cls


def build_denoiser(name: str, dim: int, members: int = 1, **params) -> nn.Module:
    """The registered denoiser ``name`` for vectors of ``dim`` bits, built with ``params``;
    with ``members`` > 1, a ``DenoiserEnsemble`` of that many, each initialised in turn from the
    global generator.

    Raises ``ValueError`` naming the registered denoisers for an unknown name, and the accepted
    parameters for an unknown or missing one. What the constructor raises passes through.
    """
    if name not in DENOISERS:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {', '.join(DENOISERS)} (one of your own is "
                         "registered first: register_denoiser, run by a plugin for the bindiff command)")
    cls = DENOISERS[name]
    checks.check_params(f"denoiser {name!r}", cls, params)
    members = checks.whole("members", members, low=1)
    nets = [cls(dim, **params) for _ in range(members)]  # an error raised inside is the class's: a bug, or its
    # own refusal of a value (ValueError)
    if getattr(nets[0], "dim", None) != dim:  # sample() and the trainers read the vector length here
        raise ValueError(f"denoiser {name!r} must set `self.dim = dim`")
    return nets[0] if members == 1 else DenoiserEnsemble(nets)
