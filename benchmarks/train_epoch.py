"""Time one training epoch and one full-ranking evaluation of a recipe's model.

Reports users/s for training and for top-100 ranking with seen items excluded, and the peak
resident memory of the process. The split is built exactly as `bindiff train` builds it.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/train_epoch.py recipes/ml1m.yaml [key=value ...]
"""

from __future__ import annotations

import json
import resource
import sys
import time

import torch

from bindiff.adapters.interactions import prepare_split
from bindiff.config import load_recipe
from bindiff.metrics import evaluate_ranking
from bindiff.training.builders import build_model, build_optimizer, make_scorer
from bindiff.training.trainer import dense_batch


def main(recipe: str, overrides: list[str]) -> None:
    config = load_recipe(recipe, overrides)
    split, _ = prepare_split(config["data"], config["split"], seed=config["seed"])
    torch.manual_seed(config["seed"])
    model = build_model(config, dim=split.train.shape[1])
    optimizer = build_optimizer(config, model)
    noise, order = torch.Generator().manual_seed(1), torch.Generator().manual_seed(0)
    n, batch = split.train.shape[0], config["train"]["batch_size"]
    model.train()
    start = time.perf_counter()
    perm = torch.randperm(n, generator=order).numpy()
    for i in range(0, n, batch):
        loss = model(dense_batch(split.train, perm[i:i + batch], torch.device("cpu")), generator=noise).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    epoch_s = time.perf_counter() - start
    model.eval()
    scorer = make_scorer(model, config, seed=0)
    part = split.test
    start = time.perf_counter()
    evaluate_ranking(scorer, part.input, part.exclude, part.target, ["ndcg@100"])
    eval_s = time.perf_counter() - start
    print(json.dumps({
        "train_users": n, "items": split.train.shape[1], "threads": torch.get_num_threads(),
        "epoch_seconds": round(epoch_s, 2), "train_users_per_s": round(n / epoch_s),
        "eval_users": part.input.shape[0], "eval_seconds": round(eval_s, 3),
        "eval_users_per_s": round(part.input.shape[0] / eval_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))
    print("command: python benchmarks/train_epoch.py " + " ".join([recipe, *overrides]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
