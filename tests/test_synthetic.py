"""The synthetic interaction generator: exact sampling, exact sizes, realistic shape, recipes."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from bindiff.adapters.errors import DataError
from bindiff.adapters.interactions import SYNTHETIC_PRESETS, synthetic_dataset, synthetic_interactions
from bindiff.tasks.recommendation.data import prepare_split
from bindiff.adapters.interactions.synthetic import weighted_sample_without_replacement
from bindiff.cli import app

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "ml1m.yaml"


def row_sets(matrix: sp.csr_matrix) -> list[tuple[int, ...]]:
    return [tuple(matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]]) for r in range(matrix.shape[0])]


def successive_sampling_set_probabilities(p: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """Exact P(the k items drawn one by one, each ∝ p among those left, form this set)."""
    states = {(): 1.0}
    for _ in range(k):
        following: dict[tuple[int, ...], float] = {}
        for taken, prob in states.items():
            left = 1.0 - p[list(taken)].sum()
            for item in range(len(p)):
                if item not in taken:
                    key = tuple(sorted(taken + (item,)))
                    following[key] = following.get(key, 0.0) + prob * p[item] / left
        states = following
    return states


@pytest.mark.parametrize("n_items, k, exponent", [(16, 2, 1.0), (6, 2, 1.0), (16, 2, 4.0)])
def test_rows_are_exact_successive_samples(n_items, k, exponent):
    # (16, 2) takes an eighth of the catalogue: the repeated-draws path; (6, 2) takes a third:
    # the exponential-races path; with exponent 4 the first item holds 92% of the mass, so
    # rows holding it are finished by races over the other items. Every path must give
    # numpy's choice(replace=False, p=p) distribution over sets.
    p = np.arange(1, n_items + 1, dtype=float) ** -exponent
    p /= p.sum()
    n_rows = 30_000
    matrix = weighted_sample_without_replacement(np.full(n_rows, k), p, np.random.default_rng(0))
    observed = Counter(row_sets(matrix))
    expected = successive_sampling_set_probabilities(p, k)
    assert set(observed) <= set(expected)
    # Pearson's chi-square, with the sets expected fewer than 5 times pooled into one cell
    small = [s for s, q in expected.items() if n_rows * q < 5]
    cells = [(observed.get(s, 0), n_rows * q) for s, q in expected.items() if n_rows * q >= 5]
    if small:
        cells.append((sum(observed.get(s, 0) for s in small), n_rows * sum(expected[s] for s in small)))
    chi2 = sum((seen - wanted) ** 2 / wanted for seen, wanted in cells)
    degrees = len(cells) - 1
    # a chi-square variable with d degrees of freedom exceeds d + 5√(2d) with probability < 1e-4
    assert chi2 < degrees + 5 * np.sqrt(2 * degrees)


def test_sampler_mixes_both_paths_within_one_matrix():
    # counts 1 (repeated draws) and 20 of 40 items (exponential races) interleaved: each
    # row must still get exactly its count of distinct, sorted columns
    counts = np.tile([1, 20, 3, 40, 0], 50)
    matrix = weighted_sample_without_replacement(counts, np.linspace(1, 2, 40), np.random.default_rng(1))
    assert np.array_equal(np.diff(matrix.indptr), counts)
    for row in row_sets(matrix):
        assert list(row) == sorted(set(row))
    assert np.array_equal(matrix[3::5].toarray(), np.ones((50, 40)))


def test_same_seed_same_matrix_and_another_seed_another():
    a = synthetic_interactions(500, 300, 10_000, seed=7)
    b = synthetic_interactions(500, 300, 10_000, seed=7)
    c = synthetic_interactions(500, 300, 10_000, seed=8)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert (a != c).nnz > 0


@pytest.mark.parametrize("n_users, n_items, n_interactions, min_items", [
    (500, 300, 10_000, 5), (1_000, 2_000, 33_333, 3), (200, 40, 4_000, 5), (64, 700, 20_000, 10),
])
def test_sizes_values_and_no_duplicates(n_users, n_items, n_interactions, min_items):
    matrix = synthetic_interactions(n_users, n_items, n_interactions, seed=0, min_items=min_items)
    assert isinstance(matrix, sp.csr_matrix) and matrix.shape == (n_users, n_items)
    assert matrix.nnz == n_interactions  # exact, far inside the ±5% asked of a generator
    assert matrix.dtype == np.float32 and np.all(matrix.data == 1.0)
    assert matrix.indices.dtype == np.int32 and matrix.indptr.dtype == np.int32
    counts = np.diff(matrix.indptr)
    assert counts.min() >= min_items and counts.max() <= n_items
    # (row, column) strictly increasing: every row sorted, and no item twice in a row
    cells = np.repeat(np.arange(n_users, dtype=np.int64), counts) * n_items + matrix.indices
    assert np.all(np.diff(cells) > 0)
    canonical = matrix.copy()
    canonical.sum_duplicates()
    assert canonical.nnz == n_interactions


def test_extreme_totals_are_hit_exactly():
    assert np.all(np.diff(synthetic_interactions(50, 30, 250, seed=0, min_items=5).indptr) == 5)
    assert np.array_equal(synthetic_interactions(50, 30, 1_500, seed=0).toarray(), np.ones((50, 30)))
    # σ = 0: every user equally active, 2,000 / 100 = 20 items each
    flat = synthetic_interactions(100, 50, 2_000, seed=0, activity_sigma=0.0)
    assert np.all(np.diff(flat.indptr) == 20)


def test_item_popularity_is_power_law_like():
    matrix = synthetic_interactions(3_000, 1_000, 90_000, seed=0, item_exponent=1.0, item_offset=0.0)
    ranked = np.sort(np.bincount(matrix.indices, minlength=1_000))[::-1]
    assert ranked[:100].sum() > 0.4 * matrix.nnz  # the top 10% of items hold over 40%, not 10%
    ranks = np.arange(1, 1_001)
    # between ranks 10 and 500, far below saturation, counts fall like rank^-1, the exponent
    slope = np.polyfit(np.log(ranks[9:500]), np.log(ranked[9:500]), 1)[0]
    assert -1.15 < slope < -0.85
    steeper = synthetic_interactions(3_000, 1_000, 90_000, seed=0, item_exponent=1.5, item_offset=0.0)
    steeper_ranked = np.sort(np.bincount(steeper.indices, minlength=1_000))[::-1]
    assert np.polyfit(np.log(ranks[9:500]), np.log(steeper_ranked[9:500]), 1)[0] < slope - 0.3
    uniform = synthetic_interactions(3_000, 1_000, 90_000, seed=0, item_exponent=0.0)
    uniform_ranked = np.sort(np.bincount(uniform.indices, minlength=1_000))[::-1]
    assert uniform_ranked[:100].sum() < 0.12 * uniform.nnz


def test_popularity_is_not_tied_to_the_column_index():
    matrix = synthetic_interactions(2_000, 500, 40_000, seed=0)
    popularity = np.bincount(matrix.indices, minlength=500)
    # ranks are shuffled over columns: the first ten columns are not the ten most popular
    assert set(np.argsort(-popularity)[:10]) != set(range(10))
    assert abs(np.corrcoef(popularity, np.arange(500))[0, 1]) < 0.2


def test_user_activity_is_heavy_tailed():
    matrix = synthetic_interactions(5_000, 3_000, 500_000, seed=0, min_items=10)
    counts = np.diff(matrix.indptr)
    assert 0.85 < np.log(counts).std() < 1.1  # log-normal with σ = 1, a little clipped at 10
    assert counts.max() > 10 * np.median(counts)
    assert np.sort(counts)[::-1][:500].sum() > 0.3 * matrix.nnz  # top 10% of users: over 30%


def test_memory_follows_interactions_not_users_times_items():
    # 20,000 × 50,000 dense float32 would take 4 GB; 200,000 interactions need a few MB
    tracemalloc.start()
    try:
        matrix = synthetic_interactions(20_000, 50_000, 200_000, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert matrix.nnz == 200_000
    # bytes: about twenty temporary 8-byte arrays the length of a round's draws, nothing per cell
    assert peak < 200 * matrix.nnz <= 0.01 * 20_000 * 50_000 * 4  # under 1% of dense


@pytest.mark.parametrize("sizes, message", [
    ((10, 5, 20), r"n_interactions=20 is impossible for 10 users with 5 to 5 items each: it must lie in \[50, 50\]"),
    ((10, 5, 51), r"must lie in \[50, 50\]"),
    ((0, 5, 20), "n_users must be a positive integer, got 0"),
])
def test_impossible_sizes_are_refused(sizes, message):
    with pytest.raises(ValueError, match=message):
        synthetic_interactions(*sizes, seed=0)


SPLIT = {"kind": "strong", "n_valid_users": 40, "n_test_users": 40}


def test_a_recipe_dataset_name_yields_the_seeded_matrix():
    split, source = prepare_split({"dataset": "synthetic:tiny", "min_rating": 4}, SPLIT, seed=3)
    assert source.layout == "synthetic"
    full = synthetic_dataset("synthetic:tiny", seed=3)
    preset = SYNTHETIC_PRESETS["tiny"]
    assert full.matrix.shape == (preset.n_users, preset.n_items) and full.nnz == preset.n_interactions
    assert split.info["n_interactions"] == preset.n_interactions
    # the split's training rows are the generated rows of its users, over its vocabulary
    rows, columns = split.train_user_ids.astype(int), split.item_ids.astype(int)
    assert np.array_equal(split.train.toarray(), full.matrix[rows][:, columns].toarray())
    again, _ = prepare_split({"dataset": "synthetic:tiny"}, SPLIT, seed=3)
    other, _ = prepare_split({"dataset": "synthetic:tiny"}, SPLIT, seed=4)
    assert (again.train != split.train).nnz == 0
    assert other.train.shape != split.train.shape or (other.train != split.train).nnz > 0


def test_the_data_stream_is_not_the_split_stream():
    # the split permutes users with default_rng(seed); the data must come from another stream
    assert (synthetic_dataset("synthetic:tiny", seed=3).matrix
            != synthetic_interactions(400, 300, 8_000, seed=3)).nnz > 0


def test_k_core_keeps_the_generated_rows_and_columns_it_names():
    full = synthetic_dataset("synthetic:tiny", seed=0)
    core = synthetic_dataset("synthetic:tiny", seed=0, k_core=10)
    assert np.diff(core.matrix.indptr).min() >= 10
    assert np.bincount(core.matrix.indices, minlength=core.n_items).min() >= 10
    assert 0 < core.n_users < full.n_users
    rows, columns = core.user_ids.astype(int), core.item_ids.astype(int)
    assert np.array_equal(core.matrix.toarray(), full.matrix[rows][:, columns].toarray())


def test_sizes_can_be_given_in_the_name():
    matrix = synthetic_dataset("synthetic:300x200x6000", seed=0).matrix
    assert matrix.shape == (300, 200) and matrix.nnz == 6_000


def test_unknown_preset_names_every_preset():
    with pytest.raises(DataError) as caught:
        prepare_split({"dataset": "synthetic:netflx"}, SPLIT, seed=0)
    message = str(caught.value)
    assert "unknown synthetic preset 'synthetic:netflx'" in message
    for name in ("tiny", "ml-1m", "ml-20m", "netflix", "msd"):
        assert f"synthetic:{name}" in message
    assert "synthetic:<users>x<items>x<interactions>" in message


@pytest.mark.parametrize("dataset, min_rating, kind, message", [
    ("synthetic:10x5x20", None, "strong", r"data.dataset 'synthetic:10x5x20': n_interactions=20 is impossible"),
    ("synthetic:tiny", 3, "strong",
     r"data.min_rating=3 cannot be applied to 'synthetic:tiny': .*set min_rating to null or 4"),
    ("synthetic:tiny", None, "predefined", r"'synthetic:tiny' \(layout 'synthetic'\) has no predefined split"),
])
def test_unusable_synthetic_requests_name_the_key(dataset, min_rating, kind, message):
    with pytest.raises(DataError, match=message):
        prepare_split({"dataset": dataset, "min_rating": min_rating}, {**SPLIT, "kind": kind}, seed=0)


def test_train_on_a_synthetic_preset_through_the_cli(tmp_path):
    args = ["train", str(RECIPE), "data.dataset=synthetic:tiny", "split.n_valid_users=40", "split.n_test_users=40",
            "denoiser.params.hidden=[32]", "train.epochs=2", "train.threads=1", f"output.root={tmp_path}",
            "output.progress=false"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "ml1m").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["training"]["dataset"] == "synthetic:tiny" and metrics["training"]["layout"] == "synthetic"
    assert metrics["training"]["epochs_run"] == 2
    split_info = json.loads((run_dir / "split" / "split.json").read_text())["info"]
    assert split_info["n_interactions"] == 8_000 and split_info["n_train_users"] == 320


def test_cli_reports_an_unknown_preset_as_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["train", str(RECIPE), "data.dataset=synthetic:nope", "train.threads=1",
                                      f"output.root={tmp_path}"])
    assert result.exit_code == 2
    assert "unknown synthetic preset 'synthetic:nope'" in result.output
    assert not (tmp_path / "ml1m").exists()


def test_the_default_head_matches_movielens_1m():
    """Calibrated on DiffRec's ML-1M: the top item is in 48 % of histories, the top 20 % of items hold 66 %."""
    matrix = synthetic_interactions(5_949, 2_810, 571_531, seed=0)
    ranked = np.sort(np.bincount(matrix.indices, minlength=2_810))[::-1]
    assert 0.45 < ranked[0] / 5_949 < 0.60
    assert 0.62 < ranked[:562].sum() / matrix.nnz < 0.71
    plain = synthetic_interactions(5_949, 2_810, 571_531, seed=0, item_exponent=1.0, item_offset=0.0)
    assert np.bincount(plain.indices).max() / 5_949 > 0.9  # what the offset is for
