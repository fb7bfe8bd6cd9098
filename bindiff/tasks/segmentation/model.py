"""The segmentation models and how they are read: the conditional diffusion whose U-Net reads the
image beside x_t, the deterministic U-Net baseline on the same backbone, and the probability maps
of each (the diffusion's sampled from noise, given the image alone)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from tqdm.auto import tqdm

from ...config import RecipeError
from ...core import build_denoiser
from ...core import unet  # noqa: F401  (registers "unet")
from ...training.builders import build_diffusion, denoiser_key
from .. import base
from ..masks.model import model_config, with_time_mixture
from .unet_baseline import DirectSegmenter


def image_channels(config: dict) -> int:
    """Channels the U-Net reads beside x_t: one per ``images.channels`` entry (one image by default)."""
    return len(config["images"]["channels"] or [None])


def unet_config(config: dict) -> dict:
    """The recipe with the U-Net told its grid and the image's channels."""
    if config["denoiser"]["name"] != "unet":
        raise RecipeError("denoiser.name: segmentation reads the image through the U-Net; use unet")
    conf = copy.deepcopy(model_config(config))
    params, channels = conf["denoiser"]["params"], image_channels(config)
    if params.get("cond_channels", channels) != channels:
        raise RecipeError(f"denoiser.params.cond_channels: leave it out; it is the number of images.channels "
                          f"({channels})")
    params["cond_channels"] = channels
    return conf


def build_segmenter(config: dict, dim: int, training: bool = False):
    """The diffusion over the mask grid whose U-Net reads the image beside x_t; while ``training``,
    its loss draws t from the recipe's mixture of times (``timesteps``), read back to be used uniformly."""
    model = build_diffusion(unet_config(config), dim)
    return with_time_mixture(model, config) if training else model


def build_unet_baseline(config: dict, dim: int, training: bool = False) -> DirectSegmenter:
    """The deterministic baseline: the same U-Net (``denoiser.params``) mapping the image to the mask."""
    try:
        conf = unet_config(config)["denoiser"]
        denoiser = build_denoiser("unet", dim, members=conf.get("members", 1), **conf["params"])
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{denoiser_key(err)}: {err}") from None
    return DirectSegmenter(denoiser, dice_weight=config["baseline"]["dice_weight"])


SEGMENTER = base.ModelKind("binomial", build_segmenter, description="conditional binomial diffusion on the mask grid")
UNET_BASELINE = base.ModelKind("unet", build_unet_baseline, description="deterministic U-Net, image → mask")


def _run_estimates(model, cond: torch.Tensor, cfg: dict, generator: torch.Generator,
                   start_logits: torch.Tensor | None = None) -> torch.Tensor:
    """One reverse run from noise per row of ``cond``: each row's last p̂(x_0) (``cfg["average"]`` =
    "final") or the mean of the p̂(x_0) of all its steps ("trajectory"), float64 (rows, D).
    ``start_logits``: the first call's, computed once for several runs (``_first_call``)."""
    trajectory: list[torch.Tensor] = []
    listen = (lambda t, p: trajectory.append(p.double())) if cfg["average"] == "trajectory" else None
    last = model.sample(len(cond), steps=cfg["steps"], generator=generator, device=cond.device, decode="mean",
                        cond=cond, on_step=listen, start_logits=start_logits)
    return torch.stack(trajectory).mean(0) if trajectory else last.double()


def _first_call(model, cond: torch.Tensor, cfg: dict) -> torch.Tensor | None:
    """The first denoiser call's logits given ``cond``, where every run computes the same ones: the
    denoiser is blind to x_T (it reads the flat posterior, ½ at t = T of "jsd") and there are several
    runs. One call instead of one per run: a quarter of the cost of 8 runs of 4 steps. None otherwise."""
    if cfg["samples"] > 1 and model.blind_at(model.process.num_steps):
        return model.start_logits(cond)
    return None


def sample_probabilities(model, images: torch.Tensor, cfg: dict, generator: torch.Generator,
                         batch_size: int, report=None, disable: bool | None = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance over ``cfg["samples"]`` reverse runs from noise given each image: (n, D) each.

    Each run contributes its last p̂(x_0) (``cfg["average"]`` = "final") or the mean of the p̂(x_0)
    of all its steps ("trajectory"). Under an exact chain every step's p̂(x_0 | x_t, image) has
    the same expectation, p(x_0 | image), so both estimate the same map; the last step's follows
    one sampled mask closely, while the earlier steps' lean less on the sample, so the
    trajectory's mean carries less Monte Carlo noise for the same runs.
    ``report(message)``, when given, hears of each finished run (a log line when piped);
    ``disable`` is tqdm's for the bar of the runs (None: drawn on a terminal only).
    """
    # one float64 (runs, cases, D) array written in place, the variance case by case: a list of runs,
    # their stack, a float64 copy and var's temporary were alive at once (−37 % peak on 50 cases)
    stack = None
    first_calls: dict[int, torch.Tensor | None] = {}  # batch start -> its runs' common first logits
    for run in tqdm(range(cfg["samples"]), desc="segmentation", unit="run", disable=disable):
        for i in range(0, len(images), batch_size):
            cond = images[i:i + batch_size]
            if i not in first_calls:  # the same batch, so the same numbers, as each run's own call
                first = _first_call(model, cond, cfg)
                first_calls[i] = None if first is None else first.cpu()  # a GPU holds one batch's at a time
            first = first_calls[i]
            estimate = _run_estimates(model, cond, cfg, generator,
                                      None if first is None else first.to(cond.device)).cpu().numpy()
            if stack is None:
                stack = np.empty((cfg["samples"], len(images), estimate.shape[1]), dtype=np.float64)
            stack[run, i:i + batch_size] = estimate
        if report is not None:
            report(f"segmentation: sample {run + 1}/{cfg['samples']} of {len(images)} cases")
    return stack.mean(0), np.stack([stack[:, j].var(0) for j in range(len(images))])


def sample_case_probabilities(model, image: torch.Tensor, cfg: dict, generator: torch.Generator,
                              batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``sample_probabilities`` for one image (1, C·D), its runs drawn side by side, ``batch_size``
    runs per denoiser call: (D,) each. One case's runs in one batch cost little more than one run
    (a sixth of the time of eight single runs on two CPU cores). Where every run's first call is the
    same (``_first_call``) it is made once, on the image alone: within a float32 rounding of the
    same call on a batch of copies (the convolutions sum in another order)."""
    first = _first_call(model, image, cfg)
    runs = [_run_estimates(model, image.expand(rows, -1), cfg, generator,
                           None if first is None else first.expand(rows, -1))
            for rows in (min(batch_size, cfg["samples"] - i) for i in range(0, cfg["samples"], batch_size))]
    stack = torch.cat(runs).cpu().numpy().astype(np.float64)
    return stack.mean(0), stack.var(0)


def unet_probabilities(model, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """The deterministic U-Net's probability maps of ``images``, ``batch_size`` at a time: (n, D) float64."""
    return np.concatenate([model.probabilities(images[i:i + batch_size]).cpu().numpy()
                           for i in range(0, len(images), batch_size)]).astype(np.float64)
