"""Property tests (hypothesis): adapters round-trip, the process's probabilities are probabilities
and compose as they must, ranking metrics lie in [0, 1] and equal a brute-force computation,
and checkpoints round-trip every random state."""

import csv
import math
import random

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bindiff.adapters.interactions import (
    RawInteractions,
    Split,
    build_matrix,
    read_delimited,
    read_movielens_ratings,
    read_pairs,
    strong_generalization,
)
from bindiff.adapters.interactions.matrix import index_ids
from bindiff.core import BernoulliProcess
from bindiff.metrics import evaluate_ranking, ndcg_at_k, recall_at_k, topk_excluding
from bindiff.training.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=8)
ratings = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


# --- adapters ---------------------------------------------------------------------------------


@SETTINGS
@given(rows=st.lists(st.tuples(ids, ids, ratings), min_size=1, max_size=30),
       sep=st.sampled_from([",", "\t", ";", "|"]))
def test_delimited_file_round_trip(tmp_path, rows, sep):
    path = tmp_path / "log.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow(["user", "item", "rating"])
        writer.writerows([(u, i, repr(r)) for u, i, r in rows])
    raw = read_delimited(path, sep=sep, rating_col="rating")
    assert raw.user.tolist() == [u for u, _, _ in rows]
    assert raw.item.tolist() == [i for _, i, _ in rows]
    assert np.array_equal(raw.rating, np.array([r for _, _, r in rows], dtype=np.float32))


@SETTINGS
@given(rows=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(1, 5),
                               st.integers(0, 2**40)), min_size=1, max_size=30),
       gz=st.booleans())
def test_movielens_file_round_trip(tmp_path, rows, gz):
    import gzip

    text = "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows).encode("latin-1")
    path = tmp_path / ("ratings.dat.gz" if gz else "ratings.dat")
    path.write_bytes(gzip.compress(text) if gz else text)
    raw = read_movielens_ratings(path)
    assert raw.user.tolist() == [str(u) for u, _, _, _ in rows]
    assert raw.item.tolist() == [str(i) for _, i, _, _ in rows]
    assert raw.rating.tolist() == [float(r) for _, _, r, _ in rows]


@SETTINGS
@given(pairs=st.lists(st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)), min_size=1, max_size=30))
def test_pair_file_round_trip(tmp_path, pairs):
    np.save(tmp_path / "pairs.npy", np.array(pairs, dtype=np.int64))
    raw = read_pairs(tmp_path / "pairs.npy")
    assert list(zip(raw.user.astype(np.int64).tolist(), raw.item.astype(np.int64).tolist())) == pairs


@SETTINGS
@given(values=st.lists(st.one_of(ids, st.integers(-10**6, 10**6).map(str)), min_size=1, max_size=40))
def test_index_ids_round_trip(values):
    distinct, index = index_ids(np.array(values))
    assert distinct[index].tolist() == values
    assert len(set(distinct.tolist())) == len(distinct) == len(set(values))


@SETTINGS
@given(pairs=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 9)), min_size=1, max_size=60),
       k_core=st.integers(0, 3))
def test_matrix_holds_exactly_the_distinct_pairs(pairs, k_core):
    raw = RawInteractions(np.array([f"u{u}" for u, _ in pairs]), np.array([f"i{i}" for _, i in pairs]), None, "t")
    try:
        im = build_matrix(raw, k_core=k_core)
    except Exception as err:  # an emptied k-core is refused, never returned
        assert k_core > 1 and "removed every user and item" in str(err)
        return
    coo = im.matrix.tocoo()
    got = {(im.user_ids[r], im.item_ids[c]) for r, c in zip(coo.row, coo.col)}
    assert set(im.matrix.data.tolist()) <= {1.0}
    if k_core <= 1:
        assert got == {(f"u{u}", f"i{i}") for u, i in pairs}
    else:
        assert got <= {(f"u{u}", f"i{i}") for u, i in pairs}
        assert (np.diff(im.matrix.indptr) >= k_core).all()
        assert (np.bincount(im.matrix.indices, minlength=im.n_items) >= k_core).all()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), density=st.floats(0.2, 0.8))
def test_split_save_load_round_trip(tmp_path_factory, seed, density):
    rng = np.random.default_rng(seed)
    dense = (rng.random((30, 12)) < density).astype(np.float32)
    dense[0, :] = 1.0  # every item is seen by some user
    matrix = sp.csr_matrix(dense)
    raw_rows, raw_cols = matrix.nonzero()
    raw = RawInteractions(np.array([f"u{r}" for r in raw_rows]), np.array([f"i{c}" for c in raw_cols]), None, "t")
    split = strong_generalization(build_matrix(raw), n_valid_users=4, n_test_users=4, seed=seed)
    folder = tmp_path_factory.mktemp("split")
    split.save(folder)
    loaded = Split.load(folder)
    assert loaded.kind == split.kind and loaded.info == split.info
    for a, b in ((loaded.train, split.train), *((getattr(getattr(loaded, s), f), getattr(getattr(split, s), f))
                                                 for s in ("valid", "test") for f in ("input", "exclude", "target"))):
        assert a.shape == b.shape and (a != b).nnz == 0
    assert np.array_equal(loaded.item_ids, split.item_ids) and np.array_equal(loaded.train_user_ids, split.train_user_ids)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), draws=st.integers(0, 50))
def test_checkpoint_round_trips_the_random_states_training_draws_from(tmp_path_factory, seed, draws):
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    gens = {"order": torch.Generator().manual_seed(seed), "noise": torch.Generator().manual_seed(seed + 1)}
    for _ in range(draws):  # move every state somewhere arbitrary
        torch.rand(1), np.random.rand(), np.random.randn(), random.random(), random.gauss(0, 1)
        torch.rand(1, generator=gens["order"]), torch.rand(1, generator=gens["noise"])
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    save_checkpoint(path, config_yaml="name: x\n", model=torch.nn.Linear(2, 2), dim=2, rng=capture_rng(gens))

    def sample():  # the states training draws from: torch's global one (dropout) and its own generators
        return (torch.rand(3).tolist(), torch.rand(3, generator=gens["order"]).tolist(),
                torch.randperm(10, generator=gens["noise"]).tolist())

    expected = sample()
    np.random.rand(2), random.random()  # the caller moves numpy's and Python's states after the save
    before = np.random.get_state()[1].copy(), random.getstate()
    restore_rng(load_checkpoint(path)["rng"], gens)  # loads with weights_only=True
    assert sample() == expected
    # the caller's numpy and Python states are theirs: a restore leaves them where they were
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]


# --- the Bernoulli process --------------------------------------------------------------------


@st.composite
def processes(draw):
    kernel = draw(st.sampled_from(["toward_half", "flip"]))
    top = 1.0 if kernel == "toward_half" else 0.5
    betas = draw(st.lists(st.floats(1e-4, 0.999 * top), min_size=1, max_size=8))
    if draw(st.booleans()):
        betas[-1] = top  # only the last step may erase x_0 completely
    return BernoulliProcess(torch.tensor(betas, dtype=torch.float64), kernel=kernel)


def bits_or_probs(draw_from, n):
    return torch.tensor(draw_from(st.lists(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)),
                                           min_size=n, max_size=n)), dtype=torch.float64)[None]


@SETTINGS
@given(process=processes(), data=st.data())
def test_process_probabilities_lie_in_unit_interval(process, data):
    T = process.num_steps
    x0 = bits_or_probs(data.draw, 6)
    t = data.draw(st.integers(1, T))
    s = data.draw(st.integers(0, t - 1))
    x_t = torch.tensor(data.draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=6, max_size=6)),
                       dtype=torch.float64)[None]
    for probs in (process.marginal_probs(x0, t), process.transition_probs(x0, s, t),
                  process.posterior_probs(x0, x_t, t, s)):
        assert torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    assert torch.equal(process.marginal_probs(x0, 0), x0)  # t = 0 is the data itself
    assert (process.alpha_bar[1:] <= process.alpha_bar[:-1]).all()  # noise only grows


@SETTINGS
@given(process=processes(), data=st.data())
def test_process_marginals_compose_and_posteriors_marginalise(process, data):
    """Chapman-Kolmogorov and Bayes: the probabilities sum as a joint distribution must."""
    T = process.num_steps
    t = data.draw(st.integers(1, T))
    s = data.draw(st.integers(0, t - 1))
    one, zero = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    for x0 in (zero, one):
        p_s = process.marginal_probs(x0, s)  # q(x_s = 1 | x_0)
        via_s = process.transition_probs(one, s, t) * p_s + process.transition_probs(zero, s, t) * (1 - p_s)
        assert torch.allclose(via_s, process.marginal_probs(x0, t), rtol=0, atol=1e-12)
        if s == 0:
            continue
        # Σ_{x_t} q(x_s = 1 | x_t, x_0) q(x_t | x_0) = q(x_s = 1 | x_0)
        p_t = process.marginal_probs(x0, t)
        mixed = process.posterior_probs(x0, one, t, s) * p_t + process.posterior_probs(x0, zero, t, s) * (1 - p_t)
        assert torch.allclose(mixed, p_s, rtol=0, atol=1e-9)
    # with p̂(x_0) in place of bits, the posterior is the p̂-mixture of the joint, normalised
    p_hat = data.draw(st.floats(0, 1))
    x_t = data.draw(st.sampled_from([0.0, 1.0]))
    if s >= 1:
        def joint(x0v, xsv):
            q_s = process.marginal_probs(torch.full((1, 1), x0v, dtype=torch.float64), s).item()
            q_t = process.transition_probs(torch.full((1, 1), xsv, dtype=torch.float64), s, t).item()
            return (q_s if xsv else 1 - q_s) * (q_t if x_t else 1 - q_t)

        num = p_hat * joint(1.0, 1.0) + (1 - p_hat) * joint(0.0, 1.0)
        den = num + p_hat * joint(1.0, 0.0) + (1 - p_hat) * joint(0.0, 0.0)
        got = process.posterior_probs(torch.full((1, 1), p_hat, dtype=torch.float64),
                                      torch.full((1, 1), x_t, dtype=torch.float64), t, s).item()
        assert got == pytest.approx(num / den, abs=1e-9)


# --- ranking metrics --------------------------------------------------------------------------


@st.composite
def ranking_cases(draw):
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(1, 10))
    cell = st.integers(0, 3)  # few distinct scores: many ties
    scores = torch.tensor(draw(st.lists(st.lists(cell, min_size=n_items, max_size=n_items),
                                        min_size=n_users, max_size=n_users)), dtype=torch.float32)
    mask = lambda: sp.csr_matrix(np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_items,  # noqa: E731
                                                                                max_size=n_items),
                                                                       min_size=n_users, max_size=n_users)),
                                                     dtype=np.float32))
    exclude, target = mask(), mask()
    k = draw(st.integers(1, n_items))
    return scores, exclude, target, k


def brute_force(scores, exclude, target, k):
    """Rank with plain Python: highest score first, lower item index on ties, excluded never."""
    ex, tg = exclude.toarray() > 0, target.toarray() > 0
    recalls, ndcgs, tops = [], [], []
    for u in range(scores.shape[0]):
        order = sorted((i for i in range(scores.shape[1]) if not ex[u, i]), key=lambda i: (-float(scores[u, i]), i))
        top = order[:k] + [-1] * (k - len(order[:k]))
        tops.append(top)
        held = int(tg[u].sum())
        hits = [i >= 0 and bool(tg[u, i]) for i in top]
        if held == 0:
            recalls.append(math.nan)
            ndcgs.append(math.nan)
            continue
        recalls.append(sum(hits) / min(k, held))
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        ndcgs.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(k, held))))
    return tops, np.array(recalls), np.array(ndcgs)


@settings(max_examples=80, deadline=None)
@given(case=ranking_cases())
def test_metrics_lie_in_unit_interval_and_equal_brute_force(case):
    scores, exclude, target, k = case
    tops, recalls, ndcgs = brute_force(scores, exclude, target, k)
    top = topk_excluding(scores, exclude, k)
    assert top.tolist() == tops
    got_recall, got_ndcg = recall_at_k(top, target, k), ndcg_at_k(top, target, k)
    for got, want in ((got_recall, recalls), (got_ndcg, ndcgs)):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        finite = ~np.isnan(got)
        assert ((got[finite] >= 0) & (got[finite] <= 1 + 1e-12)).all()
        assert np.allclose(got[finite], want[finite], rtol=0, atol=1e-12)
    rows = np.flatnonzero(np.diff(target.indptr) > 0)
    lookup = {}

    def score_fn(batch):  # evaluate_ranking scores only users with held-out items, in order
        out = scores[rows[lookup.setdefault("n", 0): lookup["n"] + batch.shape[0]]]
        lookup["n"] += batch.shape[0]
        return out

    report = evaluate_ranking(score_fn, exclude, exclude, target, [f"recall@{k}", f"ndcg@{k}"], batch_size=2)
    for name, want in ((f"recall@{k}", recalls), (f"ndcg@{k}", ndcgs)):
        mean = report.mean[name]
        if rows.size:
            assert 0 <= mean <= 1 + 1e-12 and mean == pytest.approx(np.nanmean(want), abs=1e-12)
        else:
            assert math.isnan(mean)
