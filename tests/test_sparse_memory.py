"""Interaction data stay sparse: building the matrix and a split costs memory with the interactions,
never with users x items (a 6000 x 6000 dense float32 matrix alone is 144 MB)."""
import tracemalloc

import numpy as np

from bindiff.adapters.interactions import RawInteractions, build_matrix, strong_generalization


def test_matrix_and_split_memory_grows_with_interactions_not_users_times_items():
    n = 6000
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n), 3)
    items = rng.integers(0, n, users.size)
    raw = RawInteractions(np.array([f"u{u}" for u in users]), np.array([f"i{i}" for i in items]), None, "t")
    tracemalloc.start()
    try:
        im = build_matrix(raw)
        strong_generalization(im, n_valid_users=500, n_test_users=500, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"peak {peak / 2**20:.0f} MiB for {users.size} interactions"


def test_a_scored_checkpoint_is_mapped_not_read_and_loads_the_same(tmp_path):
    """`read_run` maps the checkpoint: the optimiser's moments (two thirds of it) are never read into
    memory by `evaluate` or `recommend`; what is read equals a plain load, and a damaged file is refused alike."""
    import sys

    import pytest
    import torch

    from bindiff.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    model = torch.nn.Linear(50, 50)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(2, 50)).sum().backward()
    optimizer.step()
    path = tmp_path / "best.pt"
    save_checkpoint(path, config_yaml="name: x\n", model=model, dim=50, optimizer=optimizer.state_dict())
    plain, mapped = load_checkpoint(path), load_checkpoint(path, mmap=True)
    assert plain.keys() == mapped.keys()
    assert all(torch.equal(plain["model"][k], mapped["model"][k]) for k in plain["model"])
    assert torch.equal(plain["optimizer"]["state"][0]["exp_avg"], mapped["optimizer"]["state"][0]["exp_avg"])
    if sys.platform.startswith("linux"):
        with open("/proc/self/maps") as maps:
            assert str(path) in maps.read()  # the file is mapped, not copied
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(CheckpointError) as plain_error:
        load_checkpoint(path)
    with pytest.raises(CheckpointError) as mapped_error:
        load_checkpoint(path, mmap=True)
    assert str(mapped_error.value) == str(plain_error.value)
