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
