"""Time one training epoch and one full-ranking evaluation of a recipe's model.

Reports users/s for training and for top-100 ranking with seen items excluded, and the peak
resident memory of the process. The split is built exactly as `bindiff train` builds it.

    BINDIFF_DATA_DIR=../shared/data python benchmarks/train_epoch.py recipes/ml1m.yaml [key=value ...]

``train.threads=1`` pins torch to one thread, which is what to use while another process
keeps the other core busy: two spinning OpenMP threads on one free core run several times
slower than one.
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


def linear_flops_per_example(model: torch.nn.Module) -> int:
    """Multiply-adds of every Linear layer, ×2 for FLOPs, ×3 for forward + backward.

    Slightly high: autograd skips the input gradient of the first layer (its input is data).
    """
    return sum(6 * m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    """The machine's dense float32 matrix-multiply rate, the ceiling for an MLP step."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main(recipe: str, overrides: list[str]) -> None:
    config = load_recipe(recipe, overrides)
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
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
    achieved = linear_flops_per_example(model) * n / epoch_s
    ceiling = matmul_flops_per_s()
    print(json.dumps({
        "train_users": n, "items": split.train.shape[1], "threads": torch.get_num_threads(),
        "epoch_seconds": round(epoch_s, 2), "train_users_per_s": round(n / epoch_s),
        "train_gflop_per_s": round(achieved / 1e9, 1), "matmul_gflop_per_s": round(ceiling / 1e9, 1),
        "ratio": round(achieved / ceiling, 2),
        "eval_users": part.input.shape[0], "eval_seconds": round(eval_s, 3),
        "eval_users_per_s": round(part.input.shape[0] / eval_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))
    print("command: python benchmarks/train_epoch.py " + " ".join([recipe, *overrides]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
