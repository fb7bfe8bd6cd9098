"""The masks task: a shape prior on binary segmentation masks, trained and evaluated end to end.

``train_masks(config)`` runs a ``task: masks`` recipe; ``run_tasks(run_dir, [...])`` evaluates a
finished run again (completion, denoising, generation). Data handling lives in
``bindiff.adapters.masks``; the diffusion itself is the domain-agnostic core.
"""

from ..runs import read_metrics
from .pipeline import MasksRun, load_masks_run, model_config, run_tasks, train_masks

__all__ = ["MasksRun", "load_masks_run", "model_config", "read_metrics", "run_tasks", "train_masks"]
