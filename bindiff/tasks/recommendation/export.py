"""``bindiff export``: a trained recommendation run as a self-contained scorer folder.

The folder holds ``scorer.pt2`` (a ``torch.export`` program: the run's scorer with its weights,
loaded by ``torch.export.load`` alone, without bindiff, for any number of users), ``items.json`` (the raw item id of every input and
output column), ``config.yaml`` (the resolved recipe) and ``README.md`` (how to call it).

``torch.export`` rather than ONNX or TorchScript: it needs nothing but torch on either side (ONNX
export needs the ``onnx``/``onnxscript`` packages, and running it ``onnxruntime``), TorchScript is
deprecated, and it keeps the model's float32 arithmetic, so the exported scores equal the run's.
The scorer is captured as a graph, so only scorers that draw no random bits can be exported
(``draws_random_bits``: one-step inference, reverse inference with ``inference.sample: mean`` and
no added noise, or a sampled reverse run that visits one time only): a captured random draw would
repeat one draw forever.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn

from ...config import RecipeError, dump_recipe, refuse_one_string
from ...files import refuse_a_long_name, staged_folder, write_text
from .. import base
from .job import TASK
from .models import draws_random_bits
from .serve import Recommender

README = """# Exported bindiff scorer: {name}

    import json, torch
    scorer = torch.export.load("scorer.pt2").module()
    items = json.load(open("items.json"))          # raw item id of each column
    column = {{item: j for j, item in enumerate(items)}}
    x = torch.zeros(1, len(items))                 # one user's history as bits
    for item in ["..."]:
        x[0, column[item]] = 1.0
    scores = scorer(x)                             # (users, items), higher is better

Rank the items a user has not seen by `scores`. The scores are those of the run
`{run_dir}` (checkpoint `{checkpoint}.pt`, inference `{inference}`); `config.yaml` is its recipe.
"""


class _Scoring(nn.Module):
    """The run's scorer as a module, so the export sees the weights as parameters, not constants."""

    def __init__(self, model: nn.Module, scorer):
        super().__init__()
        self.model = model
        self._scorer = scorer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scorer(x)


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "best", overrides: list[str] = ()) -> Path:
    """Write the scorer folder for a finished run; returns it. The folder must not exist yet.

    ``overrides`` (``inference.*``, as for ``bindiff evaluate``) choose how the exported scorer
    reads the trained model, e.g. a deterministic mode for a run that scored with random bits.
    """
    refuse_one_string(overrides)  # its letters were refused one by one as overrides outside inference.*
    overrides = list(overrides)  # read twice below: an iterator was empty by the time the config was built
    out_dir = Path(out_dir)
    refuse_a_long_name(out_dir)  # before exists(), which raises on a name the file system cannot hold
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists; bindiff never overwrites")
    recommender = Recommender.from_run(run_dir, checkpoint=checkpoint, device="cpu")
    if any(not text.startswith("inference.") for text in overrides):
        raise RecipeError(f"export: only inference.* overrides choose how the scorer reads the model, got "
                          f"{[text for text in overrides if not text.startswith('inference.')]}")
    config = base.rescoring_config(TASK, recommender.config, list(overrides))
    if draws_random_bits(config):
        ensemble = " inference.ensemble=1" if config["inference"]["ensemble"] > 1 else ""
        raise RecipeError(f"{run_dir}: its inference draws random bits (inference.add_noise or inference.sample: "
                          "sample); export traces the scorer, so give a deterministic one, e.g. `bindiff export "
                          f"RUN_DIR --output DIR inference.add_noise=false inference.sample=mean{ensemble}`")
    recommender = Recommender(config, recommender.model, recommender.item_ids, recommender.split)
    module = _Scoring(recommender.model, recommender.scorer).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    example = torch.zeros(3, recommender.n_items)
    users = torch.export.Dim("users", min=1)
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: users},))
    # The folder is built under a hidden name and renamed once complete: a failure leaves nothing
    # half-written, and the archive keeps its .pt2 name (torch warns on any other).
    archive = io.BytesIO()  # written by Python: torch's own file writer aborts the process on a full disk
    torch.export.save(program, archive)
    with staged_folder(out_dir) as staging:
        (staging / "scorer.pt2").write_bytes(archive.getbuffer())  # a view, not a second copy
        write_text(staging / "items.json", json.dumps(recommender.item_ids.tolist()) + "\n")
        write_text(staging / "config.yaml", dump_recipe(config))
        write_text(staging / "README.md", README.format(name=config["name"], run_dir=run_dir, checkpoint=checkpoint,
                                                        inference=json.dumps(config["inference"])))
    return out_dir
