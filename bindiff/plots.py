"""PNG plots of results people look at, drawn on matplotlib Figures (never pyplot), so no caller's
plotting backend is ever switched."""

from __future__ import annotations

from pathlib import Path

from .files import atomic_path


def plot_training_curve(history: list[dict], metric: str, path: str | Path) -> None:
    fig = training_curve_figure(history, metric)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def training_curve_figure(history: list[dict], metric: str):
    """The training loss and the validation metric per epoch (a matplotlib Figure)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    points = {"marker": "o", "markersize": 3} if len(epochs) <= 50 else {}  # one epoch is one point, not a line
    fig = Figure(figsize=(7, 4))
    ax_loss = fig.subplots()
    ax_loss.plot(epochs, [h["train_loss"] for h in history], color="tab:blue", label="training loss", **points)
    ax_loss.set_xlabel("epoch")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole
    ax_loss.set_ylabel("training loss (per training row)", color="tab:blue")  # a user's history, or a mask
    ax_metric = ax_loss.twinx()
    ax_metric.plot(epochs, [h[f"valid_{metric}"] for h in history], color="tab:red", label=f"validation {metric}",
                   **points)
    ax_metric.set_ylabel(f"validation {metric}", color="tab:red")
    ax_loss.set_title("training curve")
    fig.tight_layout()
    return fig
