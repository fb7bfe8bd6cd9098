"""An exponential moving average of the trained weights (``train.ema``), the weights a run
validates, checkpoints and evaluates.

After the n-th optimiser step each average moves toward its parameter,
a ← a + (1 − d_n)(p − a) with d_n = min(decay, n / (n + 9)), so with decay 0.995 the average
spans about the last 200 updates. The ramp of d_n (TensorFlow's ``num_updates``) keeps a short
run's average from clinging to the initial weights (the first update moves it 90 % of the way), and
the nominal decay applies from about the 1,800th update on (for 0.995). Averaging the last updates of
a noisy optimiser is a cheap ensemble of nearby models (Polyak and Juditsky 1992; every image
diffusion model since DDPM evaluates such an average).

The optimiser keeps training the raw weights. While a run validates and saves an epoch,
``evaluated()`` puts the averages into the model (so ``best.pt`` and ``last.pt`` hold the
weights that are evaluated, and everything that loads a checkpoint gets them without knowing
of the average) and puts the trained weights back afterwards. The trained weights travel in
the optimiser's state dict, which only a resumed run reads: ``load_state_dict`` restores the
averages and writes the trained weights back into the model, so a resumed run continues
exactly. Only parameters are averaged; buffers (a prior offset, counts) are the model's own.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class WeightAverage:
    """The moving averages of ``params`` with ``decay`` in (0, 1); see the module docstring."""

    def __init__(self, params: list[torch.Tensor], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must lie in (0, 1), got {decay}")
        self.params = list(params)
        self.decay = float(decay)
        self.averages = [p.detach().clone() for p in self.params]
        self.updates = 0
        self._trained: list[torch.Tensor] | None = None  # the trained weights while the averages are in the model

    @torch.no_grad()
    def update(self) -> None:
        """Move every average toward its parameter (after an optimiser step)."""
        if self._trained is not None:
            raise RuntimeError("the weights were updated while the averages stood in for them")
        self.updates += 1
        decay = min(self.decay, self.updates / (self.updates + 9))
        torch._foreach_lerp_(self.averages, [p.detach() for p in self.params], 1.0 - decay)

    @contextmanager
    def evaluated(self) -> Iterator[None]:
        """The averages in the model for the block's duration; the trained weights back afterwards."""
        with torch.no_grad():
            self._trained = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.averages):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, self._trained):
                    p.copy_(w)
            self._trained = None

    def state_dict(self) -> dict:
        trained = self._trained if self._trained is not None else [p.detach() for p in self.params]
        return {"decay": self.decay, "updates": self.updates, "averages": [a.clone() for a in self.averages],
                "trained": [w.clone() for w in trained]}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore the averages, and the trained weights into the model (which may hold the averages)."""
        if float(state["decay"]) != self.decay:
            raise ValueError(f"the checkpoint averaged its weights with decay {state['decay']}, "
                             f"the recipe says {self.decay}")
        averages, trained = state["averages"], state["trained"]
        if len(averages) != len(self.params) or len(trained) != len(self.params):
            raise ValueError(f"the checkpoint averages {len(averages)} tensors, the model has {len(self.params)}")
        self.updates = int(state["updates"])  # after the checks: a refused load changes nothing
        for p, a, avg, w in zip(self.params, self.averages, averages, trained):
            a.copy_(avg)
            p.copy_(w)
