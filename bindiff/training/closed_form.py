"""Fitting a closed-form model (popularity, EASE: ``fit_closed_form``) inside a run directory.

The run directory ends up as a trained model's would: ``checkpoints/best.pt`` and
``last.pt`` (the same weights; loadable with ``weights_only=True``), an empty history,
and the fit's own report (e.g. EASE's chosen λ) for ``metrics.json``'s "training" entry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import scipy.sparse as sp
from torch import nn

from ..progress import log, log_lines
from .checkpoint import capture_rng, save_checkpoint
from .trainer import TrainResult


def fit_closed_form_run(model: nn.Module, train: sp.csr_matrix, *, config: dict, config_yaml: str,
                        evaluate_valid: Callable[[nn.Module], float],
                        checkpoint_dir: Path) -> tuple[TrainResult, dict]:
    """Fit ``model`` on ``train`` (validation through ``evaluate_valid`` only) and checkpoint it."""
    started = time.perf_counter()
    model.eval()
    select = config["eval"]["select"]
    validations: list[float] = []

    def logged(fitted: nn.Module) -> float:  # piped: one line per validation (EASE: one per λ)
        validations.append(evaluate_valid(fitted))
        log(f"closed form: validation {len(validations)}: {select} {validations[-1]:.4f} "
            f"({time.perf_counter() - started:.1f} s)")
        return validations[-1]

    piped = log_lines(config)
    if piped:
        log(f"fitting {type(model).__name__} in closed form on {train.shape[0]:,} training rows")
    report = model.fit_closed_form(train, logged if piped else evaluate_valid)
    value = float(report.get("valid", float("nan")))
    seconds = time.perf_counter() - started
    state = dict(
        config_yaml=config_yaml, model=model, dim=train.shape[1], epoch=0, step=0, optimizer={},
        best={"metric": select, "value": value, "epoch": 0}, epochs_since_best=0,
        done=True, history=[], rng=capture_rng({}), seconds=seconds, closed_form=dict(report),
    )
    save_checkpoint(Path(checkpoint_dir) / "best.pt", **state)
    save_checkpoint(Path(checkpoint_dir) / "last.pt", **state)
    result = TrainResult(best_epoch=0, best_value=value, epochs_run=0, seconds=seconds, history=[])
    return result, {"closed_form": True, **report}
