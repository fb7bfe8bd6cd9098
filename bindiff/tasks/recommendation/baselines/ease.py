"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data")."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ....adapters.errors import DataError
from ....training.devices import physical_memory_bytes

# 31 log-spaced values, 10 to 10^4, ten per decade (neighbours 1.26× apart): the validation
# optimum moves with the data (about 600-800 on ML-1M, between two points of a coarse grid).
DEFAULT_LAMBDAS = tuple(float(f"{10 ** (1 + k / 10):.4g}") for k in range(31))


# Dense item × item float64 matrices alive at once while fitting: at most the eigenvectors, V
# scaled for one λ and P (which becomes B in place), and two float32 ones (the weights scored and
# the best so far): 4 measured (`python benchmarks/ease_memory.py`), and half of one to spare.
_DENSE_MATRICES = 4.5


def check_ease_fits(n_items: int) -> None:
    """DataError, before anything is allocated, when EASE's dense matrices exceed the memory."""
    need = _DENSE_MATRICES * 8 * n_items ** 2
    have = physical_memory_bytes()
    if have is not None and need > have:
        raise DataError(f"EASE on {n_items:,} items needs about {need / 2**30:.0f} GiB (dense {n_items:,} × "
                        f"{n_items:,} float64 matrices: eigenvectors, the scaled eigenvectors and P, "
                        f"{8 * n_items ** 2 / 2**30:.1f} GiB each); this machine has {have / 2**30:.0f} GiB. "
                        f"Its memory grows with the square of the items: use a model that grows with the items")


class EaseSolver:
    """The closed form for many λ from one eigendecomposition of the Gram matrix.

    XᵀX = V diag(e) Vᵀ, so P = (XᵀX + λI)⁻¹ = V diag(1 / (e + λ)) Vᵀ: one ``eigh`` (float64)
    for the whole grid, then one matrix product per λ instead of one inverse per λ. The Gram
    matrix comes from the sparse user rows; only the item × item matrices are dense.
    """

    def __init__(self, train_csr):
        from scipy.linalg import eigh

        x = train_csr.astype(np.float64)
        product = x.T @ x  # sparse, and nearly dense on real data: gone before the dense work
        gram = product.toarray()
        del product
        # Divide and conquer (LAPACK's syevd, as numpy's eigh), in place: the symmetric Gram matrix
        # read in Fortran order is no copy, and its memory becomes the eigenvectors (numpy's eigh holds
        # the matrix, its copy, the eigenvectors and syevd's workspace of two matrices at once).
        self.eigenvalues, self.eigenvectors = eigh(gram.T, overwrite_a=True, check_finite=False, driver="evd")
        del gram
        np.clip(self.eigenvalues, 0.0, None, out=self.eigenvalues)  # XᵀX is PSD; drop round-off below 0

    def weights(self, lam: float) -> np.ndarray:
        """B = I − P / diag(P), float64, diagonal exactly zero (Steck's eq. 8: B_ij = −P_ij / P_jj)."""
        v = self.eigenvectors
        scaled = v / (self.eigenvalues + lam)[None, :]
        precision = scaled @ v.T
        del scaled
        precision /= -np.diag(precision)[None, :]  # in place: B's memory is P's
        np.fill_diagonal(precision, 0.0)
        return precision


def ease_weights(train_csr, lam: float) -> np.ndarray:
    """EASE's B for one λ (see :class:`EaseSolver`)."""
    return EaseSolver(train_csr).weights(lam)


class EASE(nn.Module):
    """Item-item linear model: score(x) = x · B, B from the closed form of :func:`ease_weights`.

    λ is tuned over ``lambdas`` on the validation users only: ``fit_closed_form`` calls
    ``evaluate_valid`` once per λ and keeps the weights of the best (the first, i.e. the
    smallest λ of the grid order, on a tie). The weights are stored as a float32 buffer
    ``weights`` (D × D) and the chosen λ as ``chosen_lambda``.
    """

    def __init__(self, n_items: int, lambdas: Sequence[float] = DEFAULT_LAMBDAS):
        super().__init__()
        if isinstance(lambdas, (int, float)) and not isinstance(lambdas, bool):
            lambdas = [lambdas]
        if (not isinstance(lambdas, (list, tuple)) or not lambdas
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in lambdas)):
            raise ValueError(f"lambdas must be a non-empty list of numbers > 0, got {lambdas!r}")
        self.lambdas = [float(v) for v in lambdas]
        n = int(n_items)
        check_ease_fits(n)
        self.register_buffer("weights", torch.zeros(n, n, dtype=torch.float32))
        self.register_buffer("chosen_lambda", torch.tensor(math.nan, dtype=torch.float64))

    def fit_closed_form(self, train_csr, evaluate_valid: Callable[[nn.Module], float]) -> dict:
        if train_csr.shape[1] != self.weights.shape[0]:
            raise ValueError(f"training matrix has {train_csr.shape[1]} items, the model {self.weights.shape[0]}")
        solver = EaseSolver(train_csr)
        best_rank, best_value, best_lam, best_weights, grid = -math.inf, math.nan, None, None, []
        for lam in self.lambdas:
            self.weights.copy_(torch.from_numpy(solver.weights(lam)))  # float64 to float32 without a third copy
            value = float(evaluate_valid(self))
            grid.append({"lambda": lam, "valid": value})
            rank = -math.inf if math.isnan(value) else value  # a NaN value never beats a number
            if best_lam is None or rank > best_rank:
                best_rank, best_value, best_lam, best_weights = rank, value, lam, self.weights.clone()
        self.weights.copy_(best_weights)
        self.chosen_lambda.fill_(best_lam)
        return {"lambda": best_lam, "valid": best_value, "grid": grid}

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weights.dtype) @ self.weights
