"""An optional experiment logger, off by default: ``output.logger: tensorboard`` writes every
epoch's training loss and validation metrics as TensorBoard scalars in ``<run>/tensorboard/``.

The writer is torch's own (``torch.utils.tensorboard``); it needs the ``tensorboard`` package,
installed with ``pip install 'bindiff[tensorboard]'``. Asking for it without the package is
refused before anything is read or written.
"""

from __future__ import annotations

from pathlib import Path

from ..config import RecipeError


def _summary_writer(log_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


def check_logger(config: dict) -> None:
    if config["output"]["logger"] != "tensorboard":
        return
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise RecipeError("output.logger: 'tensorboard' needs the tensorboard package; install it with "
                          "pip install 'bindiff[tensorboard]', or set output.logger=none") from None


class EpochLogger:
    """Each epoch's history row (``epoch``, ``train_loss``, ``valid_*``) as scalars at step = epoch."""

    def __init__(self, log_dir: Path):
        self.writer = _summary_writer(log_dir)

    def __call__(self, row: dict) -> None:
        for name, value in row.items():
            if name != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(name.replace("valid_", "valid/", 1), float(value), int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_logger(config: dict, run_dir: Path) -> EpochLogger | None:
    """The recipe's logger for a run directory; None when ``output.logger`` is none."""
    if config["output"]["logger"] == "none":
        return None
    check_logger(config)
    return EpochLogger(Path(run_dir) / "tensorboard")
