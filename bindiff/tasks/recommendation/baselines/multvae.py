"""Mult-DAE and Mult-VAE (Liang, Krishnan, Hoffman, Jebara 2018) as one module.

Both read a user's history, l2-normalise it, drop input entries with probability
``dropout`` (training only), encode it through ``[I → hidden... → latent]`` with tanh, decode
through the mirror image ``[latent → reversed(hidden)... → I]`` (tanh between layers, none
on the output) and are trained on the multinomial log-likelihood of the history under
``softmax(logits)``:

    nll(x) = −Σ_i x_i · log softmax(logits)_i.

``variational=False`` (Mult-DAE): the bottleneck is tanh(encoder output) and the loss is nll.

``variational=True`` (Mult-VAE): the encoder's last layer emits (μ, log σ²) of a diagonal
Gaussian q(z|x); training draws z = μ + σ·ε with ε from the generator ``fit`` passes, and the
loss is nll + β·KL(q(z|x) ‖ N(0, I)) with

    KL = ½ Σ_k (−log σ²_k + σ²_k + μ²_k − 1),
    β  = min(anneal_cap, updates / total_anneal_steps)

where ``updates`` counts the training updates made before this one (a buffer, so a resumed
run continues the schedule). With ``total_anneal_steps = 0`` β is ``anneal_cap`` from the
start. Scores are the decoder logits of μ (no sampling at evaluation).

Defaults follow the paper's [I-600-200-600-I] architecture with input dropout 0.5 and
β annealed to 0.2 over 200,000 updates. Liang et al.'s public notebook trains the Mult-DAE
as [I-200-I] (``hidden=[]``) with an l2 penalty on the weights (``train.weight_decay``).
Weights are Xavier-uniform, biases N(0, 0.001²), as in that notebook.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ....core import LossOutput
from ....core.params import number, rate, whole


class MultVAE(nn.Module):
    def __init__(self, n_items: int, variational: bool = True, hidden: Sequence[int] = (600,), latent: int = 200,
                 dropout: float = 0.5, anneal_cap: float = 0.2, total_anneal_steps: int = 200000):
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"hidden must be a list of widths (empty: none), got {hidden!r}")
        hidden = [whole(f"hidden[{i}]", h, low=1) for i, h in enumerate(hidden)]  # may be empty
        latent = whole("latent", latent, low=1)
        dropout = rate("dropout", dropout)
        if number("anneal_cap", anneal_cap) < 0:
            raise ValueError(f"anneal_cap must be >= 0, got {anneal_cap}")
        total_anneal_steps = whole("total_anneal_steps", total_anneal_steps)
        self.dim, self.variational, self.latent = int(n_items), bool(variational), latent
        self.anneal_cap, self.total_anneal_steps = float(anneal_cap), total_anneal_steps
        enc = [self.dim, *hidden, latent]
        dec = [latent, *reversed(hidden), self.dim]
        out_last = 2 * latent if self.variational else latent
        self.encoder = nn.ModuleList(
            nn.Linear(a, out_last if i == len(enc) - 2 else b) for i, (a, b) in enumerate(zip(enc[:-1], enc[1:])))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec[:-1], dec[1:]))
        self.drop = nn.Dropout(dropout)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        for layer in (*self.encoder, *self.decoder):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)

    def anneal(self) -> float:
        """β of the next training update."""
        if self.total_anneal_steps == 0:
            return self.anneal_cap
        return min(self.anneal_cap, int(self.updates) / self.total_anneal_steps)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(μ, log σ²) for Mult-VAE, (tanh bottleneck, None) for Mult-DAE."""
        h = self.drop(F.normalize(x, dim=-1))
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < len(self.encoder) - 1:
                h = torch.tanh(h)
        if not self.variational:
            return torch.tanh(h), None
        return h[:, :self.latent], h[:, self.latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, layer in enumerate(self.decoder):
            h = layer(h)
            if i < len(self.decoder) - 1:
                h = torch.tanh(h)
        return h

    def forward(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> LossOutput:
        mu, logvar = self.encode(x0)
        if logvar is None:
            z, kl = mu, torch.zeros(x0.shape[0], device=x0.device)
        else:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            z = mu + eps * torch.exp(0.5 * logvar) if self.training else mu
            kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1)
        nll = -(F.log_softmax(self.decode(z), dim=1) * x0).sum(dim=1)
        beta = self.anneal() if self.variational else 0.0
        loss = nll + beta * kl
        if self.training and torch.is_grad_enabled():
            self.updates += 1
        return LossOutput(loss=loss.mean(), terms={"nll": nll, "kl": kl, "loss": loss}, t=None)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encode(x)
        return self.decode(mu)
