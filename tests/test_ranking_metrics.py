"""Full-ranking top-k metrics checked against a slow, obviously-correct reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from bindiff.tasks.recommendation.baselines import popularity_scores
from bindiff.metrics import (
    RankingReport,
    evaluate_ranking,
    merge_reports,
    ndcg_at_k,
    recall_at_k,
    topk_excluding,
)

# --------------------------------------------------------------------------- reference


def ref_rank(scores_row, excluded: set[int], k: int) -> list[int]:
    """Explicit rule: higher score first, then lower item index; pad with -1."""
    candidates = [j for j in range(len(scores_row)) if j not in excluded]
    ranked = sorted(candidates, key=lambda j: (-float(scores_row[j]), j))[:k]
    return ranked + [-1] * (k - len(ranked))


def ref_recall(ranked, target: set[int], k: int, denominator: str) -> float:
    if not target:
        return math.nan
    hits = sum(1 for j in ranked[:k] if j in target)
    denom = min(k, len(target)) if denominator == "min_k_heldout" else len(target)
    return hits / denom


def ref_ndcg(ranked, target: set[int], k: int) -> float:
    if not target:
        return math.nan
    dcg = sum(1.0 / math.log2(r + 2) for r, j in enumerate(ranked[:k]) if j in target)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(target))))
    return dcg / idcg


def row_set(csr: sp.csr_matrix, i: int) -> set[int]:
    lo, hi = csr.indptr[i], csr.indptr[i + 1]
    return {int(j) for j, v in zip(csr.indices[lo:hi], csr.data[lo:hi]) if v != 0}


def random_binary(rng, n_users, n_items, density) -> sp.csr_matrix:
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float64))


def make_problem(seed: int, n_users: int = 53, n_items: int = 31):
    """Random split with ties, short and empty targets, and crowded exclusions."""
    rng = np.random.default_rng(seed)
    train = random_binary(rng, n_users, n_items, 0.25)
    # a few users have almost everything excluded, so top-k must pad with -1
    dense_train = train.toarray()
    dense_train[:3, : n_items - 2] = 1.0
    train = sp.csr_matrix(dense_train)
    dense_target = (rng.random((n_users, n_items)) < 0.12) * (1 - dense_train)
    dense_target[rng.choice(n_users, size=8, replace=False)] = 0  # empty held-out sets
    target = sp.csr_matrix(dense_target)
    # small integer weights make integer scores with many ties
    weights = rng.integers(0, 3, size=(n_items, n_items)).astype(np.float32)
    return train, target, weights


def ref_report(scores, exclude, target, metrics, empty_users):
    n_users = scores.shape[0]
    out = {}
    for name in metrics:
        kind, k = name.split("@")
        k = int(k)
        vals = []
        for i in range(n_users):
            ranked = ref_rank(scores[i], row_set(exclude, i), k)
            t = row_set(target, i)
            if kind == "ndcg":
                vals.append(ref_ndcg(ranked, t, k))
            else:
                denom = "min_k_heldout" if kind == "recall" else "heldout"
                vals.append(ref_recall(ranked, t, k, denom))
        vals = np.array(vals)
        finite = vals[~np.isnan(vals)]
        if empty_users == "drop":
            mean = finite.mean() if finite.size else math.nan
        else:
            mean = finite.sum() / n_users
        out[name] = (vals, mean)
    return out


# --------------------------------------------------------------------------- top-k


def test_topk_tie_rule_by_hand():
    scores = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    assert topk_excluding(scores, None, 3).tolist() == [[1, 2, 4]]
    excl = sp.csr_matrix(np.array([[0, 0, 1, 0, 0]]))
    assert topk_excluding(scores, excl, 3).tolist() == [[1, 4, 3]]
    assert topk_excluding(scores, excl, 4).tolist() == [[1, 4, 3, 0]]


def test_topk_all_tied_large_catalogue():
    # thousands of equal scores: torch.topk alone gives no order guarantee here
    scores = torch.zeros((4, 5000))
    scores[2, 4000] = 1.0
    out = topk_excluding(scores, sp.csr_matrix((4, 5000)), 6)
    assert out[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert out[2].tolist() == [4000, 0, 1, 2, 3, 4]


def test_topk_pads_when_too_few_eligible_and_keeps_model_neg_inf():
    scores = torch.tensor([[-math.inf, 0.5, -math.inf, 2.0]])
    excl = sp.csr_matrix(np.array([[0, 0, 0, 1]]))
    # model -inf items are eligible and outrank nothing but padding
    assert topk_excluding(scores, excl, 3).tolist() == [[1, 0, 2]]
    excl = sp.csr_matrix(np.array([[1, 0, 1, 1]]))
    assert topk_excluding(scores, excl, 3).tolist() == [[1, -1, -1]]


def test_topk_orders_ties_inside_the_cut():
    # the tie at 9 lies wholly inside the top 3, so only its order needs fixing
    scores = torch.tensor([[0.0, 9.0, 9.0, 1.0], [9.0, 0.0, 9.0, 9.0]])
    assert topk_excluding(scores, None, 3).tolist() == [[1, 2, 3], [0, 2, 3]]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("score_range", [4, 200])
def test_topk_matches_reference(seed, score_range):
    # range 4: ties at the cut in nearly every row; range 200: mostly ties elsewhere
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 25
    scores = rng.integers(0, score_range, size=(n_users, n_items)).astype(np.float64)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    dense_exclude = (rng.random((n_users, n_items)) < 0.3).astype(np.float64)
    dense_exclude[0, :] = 1.0  # nothing eligible
    dense_exclude[1, :-2] = 1.0  # two eligible items
    exclude = sp.csr_matrix(dense_exclude)
    for k in (1, 5, n_items):
        got = topk_excluding(torch.from_numpy(scores), exclude, k).numpy()
        want = np.array([ref_rank(scores[i], row_set(exclude, i), k) for i in range(n_users)])
        np.testing.assert_array_equal(got, want)
        for i in range(n_users):
            assert not (set(got[i].tolist()) & row_set(exclude, i))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_topk_same_on_cuda():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 5, size=(300, 4000)).astype(np.float32))
    scores[:, ::7] = torch.from_numpy(rng.standard_normal((300, 572)).astype(np.float32))
    dense_exclude = (rng.random((300, 4000)) < 0.05).astype(np.float64)
    dense_exclude[5] = 1.0
    exclude = sp.csr_matrix(dense_exclude)
    for k in (1, 50, 4000):
        cpu = topk_excluding(scores, exclude, k)
        gpu = topk_excluding(scores.cuda(), exclude, k)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu)


def test_topk_integer_scores_and_no_mutation():
    scores = torch.tensor([[5, 1, 5, 7]], dtype=torch.int64)
    assert topk_excluding(scores, sp.csr_matrix(np.array([[0, 0, 0, 1]])), 2).tolist() == [[0, 2]]
    f = torch.tensor([[0.1, 0.2, 0.3]])
    topk_excluding(f, sp.csr_matrix(np.array([[1, 0, 0]])), 1)
    assert f.tolist() == [[pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3)]]


def test_topk_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        topk_excluding(torch.tensor([[0.0, math.nan]]), None, 1)
    with pytest.raises(ValueError, match="exceeds"):
        topk_excluding(torch.zeros((1, 3)), None, 4)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        topk_excluding(torch.zeros((1, 3)), sp.csr_matrix((2, 3)), 1)


# --------------------------------------------------------------------------- per-user metrics


def test_hand_computed_single_user():
    # ranking by score: items 0, 2, 4, 3, 1; relevant items {2, 3} sit at ranks 2 and 4
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.3, 0.5]])
    target = sp.csr_matrix(np.array([[0, 0, 1, 1, 0]]))
    top = topk_excluding(scores, None, 5)
    assert top.tolist() == [[0, 2, 4, 3, 1]]

    ndcg3 = (1 / math.log2(3)) / (1 / math.log2(2) + 1 / math.log2(3))
    ndcg5 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 / math.log2(2) + 1 / math.log2(3))
    assert ndcg_at_k(top, target, 3)[0] == pytest.approx(ndcg3, abs=1e-15)
    assert ndcg_at_k(top, target, 5)[0] == pytest.approx(ndcg5, abs=1e-15)
    assert recall_at_k(top, target, 3)[0] == 0.5
    assert recall_at_k(top, target, 5)[0] == 1.0
    assert ndcg_at_k(top, target, 1)[0] == 0.0


def test_a_ranking_that_lists_an_item_twice_is_refused():
    target = sp.csr_matrix(np.array([[0, 0, 1, 1]], dtype=float))
    # [2, 2, 2] would count item 2 three times: recall 3 / min(3, 2) = 1.5
    with pytest.raises(ValueError, match="row 0 lists item 2 more than once"):
        recall_at_k([[2, 2, 2]], target, 3)
    assert recall_at_k([[2, -1, -1]], target, 3)[0] == pytest.approx(1 / 2)  # -1 pads a short list, once or more


def test_recall_denominators_differ_when_heldout_exceeds_k():
    top = np.array([[0, 1]])
    target = sp.csr_matrix(np.array([[1, 1, 1, 1, 0]]))
    assert recall_at_k(top, target, 2)[0] == 1.0
    assert recall_at_k(top, target, 2, denominator="heldout")[0] == 0.5
    assert ndcg_at_k(top, target, 2)[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="denominator"):
        recall_at_k(top, target, 2, denominator="k")


def test_empty_target_is_nan_and_padding_never_hits():
    top = np.array([[-1, -1], [4, -1]])
    target = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]))
    assert np.isnan(recall_at_k(top, target, 2)[0])
    assert np.isnan(ndcg_at_k(top, target, 2)[0])
    assert recall_at_k(top, target, 2)[1] == 1.0
    # index -1 must not wrap around to the last item
    target_last = sp.csr_matrix(np.array([[0, 0, 0, 0, 1], [0, 0, 0, 0, 1]]))
    assert recall_at_k(top, target_last, 2)[0] == 0.0
    assert recall_at_k(top, target, 2).dtype == np.float64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_functions_match_reference(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, 20
    dense_target = (rng.random((n_users, n_items)) < 0.15).astype(np.float64)
    dense_target[:3] = 0
    target = sp.csr_matrix(dense_target)
    top = np.array([rng.permutation(n_items)[:10] for _ in range(n_users)])
    for k in (1, 3, 10):
        want_r = [ref_recall(list(top[i]), row_set(target, i), k, "min_k_heldout") for i in range(n_users)]
        want_h = [ref_recall(list(top[i]), row_set(target, i), k, "heldout") for i in range(n_users)]
        want_n = [ref_ndcg(list(top[i]), row_set(target, i), k) for i in range(n_users)]
        np.testing.assert_allclose(recall_at_k(top, target, k), want_r, rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            recall_at_k(torch.from_numpy(top), target, k, "heldout"), want_h, rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(ndcg_at_k(top, target, k), want_n, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- evaluator

METRICS = ["recall@1", "recall@5", "recall_heldout@5", "ndcg@5", "ndcg@12", "recall@12"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("empty_users", ["drop", "zero"])
def test_evaluator_matches_reference_for_every_batch_size(seed, empty_users):
    train, target, weights = make_problem(seed)
    w = torch.from_numpy(weights)
    full_scores = train.toarray() @ weights.astype(np.float64)
    want = ref_report(full_scores, train, target, METRICS, empty_users)

    n_users = train.shape[0]
    n_empty = int((np.diff(target.indptr) == 0).sum())
    for batch_size in (1, 7, n_users):
        report = evaluate_ranking(
            lambda x: x @ w, train, train, target, METRICS,
            batch_size=batch_size, empty_users=empty_users,
        )
        assert isinstance(report, RankingReport)
        assert report.n_users == n_users
        assert report.n_users_evaluated == n_users - n_empty
        for name in METRICS:
            vals, mean = want[name]
            np.testing.assert_allclose(report.per_user[name], vals, rtol=0, atol=1e-12)
            assert report.mean[name] == pytest.approx(mean, abs=1e-12)


def test_policies_differ_exactly_by_empty_user_share():
    train, target, weights = make_problem(5)
    w = torch.from_numpy(weights)
    drop = evaluate_ranking(lambda x: x @ w, train, train, target, ["ndcg@10"], empty_users="drop")
    zero = evaluate_ranking(lambda x: x @ w, train, train, target, ["ndcg@10"], empty_users="zero")
    share = drop.n_users_evaluated / drop.n_users
    assert share < 1
    assert zero.mean["ndcg@10"] == pytest.approx(drop.mean["ndcg@10"] * share, abs=1e-12)
    assert "dropped" in drop.definitions["ndcg@10"]
    assert "count as 0" in zero.definitions["ndcg@10"]


def test_score_fn_sees_float32_batches_of_nonempty_users_only():
    train, target, weights = make_problem(7)
    seen = []

    def score_fn(x):
        assert x.dtype == torch.float32
        seen.append(x.shape[0])
        return x @ torch.from_numpy(weights)

    report = evaluate_ranking(score_fn, train, train, target, ["recall@3"], batch_size=10)
    assert max(seen) <= 10
    assert sum(seen) == report.n_users_evaluated


def test_excluded_items_never_recommended_through_evaluator():
    # scores favour exactly the excluded items; any leak would show up as hits
    n_users, n_items = 12, 9
    exclude = sp.csr_matrix(np.eye(n_users, n_items))
    target = exclude.copy()
    report = evaluate_ranking(
        lambda x: x * 100.0, sp.csr_matrix(exclude), exclude, target, ["recall@8"], batch_size=5
    )
    assert np.all(report.per_user["recall@8"][: n_items] == 0.0)


def test_all_targets_empty():
    train = sp.csr_matrix(np.ones((3, 4)))
    target = sp.csr_matrix((3, 4))
    drop = evaluate_ranking(lambda x: x, train, None, target, ["recall@2"], empty_users="drop")
    zero = evaluate_ranking(lambda x: x, train, None, target, ["recall@2"], empty_users="zero")
    assert math.isnan(drop.mean["recall@2"]) and zero.mean["recall@2"] == 0.0
    assert drop.n_users_evaluated == 0
    assert json.dumps(drop.to_dict(), allow_nan=False)


def test_popularity_baseline_and_report_json():
    rng = np.random.default_rng(11)
    n_users, n_items = 80, 30
    # item popularity falls with the index, so the popularity ranking is informative
    probs = np.linspace(0.6, 0.02, n_items)
    data = sp.csr_matrix((rng.random((n_users, n_items)) < probs).astype(np.float64))
    mask = rng.random(data.shape) < 0.2
    target = sp.csr_matrix(data.multiply(mask))
    train = sp.csr_matrix(data - target)

    pop = popularity_scores(train)
    assert pop.dtype == np.float64 and pop.shape == (n_items,)
    np.testing.assert_array_equal(pop, train.toarray().astype(bool).sum(axis=0))

    pop_t = torch.from_numpy(pop)
    report = evaluate_ranking(
        lambda x: pop_t.expand(x.shape[0], -1), train, train, target,
        ["recall@5", "ndcg@5"], batch_size=16, progress=False,
    )
    want = ref_report(np.tile(pop, (n_users, 1)), train, target, ["recall@5", "ndcg@5"], "drop")
    for name in ("recall@5", "ndcg@5"):
        assert report.mean[name] == pytest.approx(want[name][1], abs=1e-12)

    # a scorer that ranks by ascending popularity must do worse
    worst = evaluate_ranking(
        lambda x: -pop_t.expand(x.shape[0], -1), train, train, target, ["recall@5"]
    )
    assert report.mean["recall@5"] > worst.mean["recall@5"]

    d = report.to_dict()
    assert set(d) >= {"mean", "definitions", "n_users", "n_users_evaluated"}
    assert "per_user" not in d
    d_full = json.loads(json.dumps(report.to_dict(include_per_user=True), allow_nan=False))
    assert len(d_full["per_user"]["recall@5"]) == n_users
    assert "min(5, |held-out|)" in d["definitions"]["recall@5"]


def test_evaluator_validation_errors():
    a = sp.csr_matrix((4, 6))
    with pytest.raises(ValueError, match="recall_heldout@K"):
        evaluate_ranking(lambda x: x, a, a, a, ["f1@5"])
    with pytest.raises(ValueError, match="valid forms"):
        evaluate_ranking(lambda x: x, a, a, a, ["ndcg@0"])
    with pytest.raises(ValueError, match=r"\(4, 7\)"):
        evaluate_ranking(lambda x: x, a, a, sp.csr_matrix((4, 7)), ["ndcg@5"])
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        evaluate_ranking(lambda x: x, a, sp.csr_matrix((5, 6)), a, ["ndcg@5"])
    with pytest.raises(ValueError, match="exceeds"):
        evaluate_ranking(lambda x: x, a, a, a, ["ndcg@7"])
    with pytest.raises(ValueError, match="empty_users"):
        evaluate_ranking(lambda x: x, a, a, a, ["ndcg@5"], empty_users="nan")
    t = sp.csr_matrix(np.ones((4, 6)))
    with pytest.raises(ValueError, match="score_fn returned shape"):
        evaluate_ranking(lambda x: x[:, :3], t, None, t, ["ndcg@2"])


# -- precision, hit, MAP, MRR, coverage, popularity ------------------------------------------------------------
def _brute_force(scores: np.ndarray, exclude: np.ndarray, target: np.ndarray, k: int, popularity: np.ndarray):
    """Each metric per user from a plain Python ranking (lower index first among equal scores)."""
    rows = {m: [] for m in ("precision", "hit", "map", "mrr", "popularity")}
    covered = set()
    for s, ex, tg in zip(scores, exclude, target):
        if not tg.any():
            continue
        order = [j for j in sorted(range(len(s)), key=lambda j: (-s[j], j)) if not ex[j]][:k]
        covered.update(order)
        rel = [bool(tg[j]) for j in order]
        rows["precision"].append(sum(rel) / k)
        rows["hit"].append(float(any(rel)))
        ap = sum(sum(rel[:r + 1]) / (r + 1) for r in range(len(rel)) if rel[r])
        rows["map"].append(ap / min(k, int(tg.sum())))
        rows["mrr"].append(next((1 / (r + 1) for r in range(len(rel)) if rel[r]), 0.0))
        rows["popularity"].append(float(np.mean([popularity[j] for j in order])))
    means = {m: float(np.mean(v)) for m, v in rows.items()}
    means["coverage"] = len(covered) / scores.shape[1]
    return means


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_list_and_rank_metrics_equal_a_brute_force_ranking(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k = 30, 25, 5
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(np.float32)  # many ties
    exclude = rng.random((n_users, n_items)) < 0.2
    target = (rng.random((n_users, n_items)) < 0.15) & ~exclude
    popularity = rng.random(n_items)
    names = [f"{m}@{k}" for m in ("precision", "hit", "map", "mrr", "coverage", "popularity")]
    report = evaluate_ranking(lambda x: torch.from_numpy(scores[x.long()[:, 0]]), 
                              sp.csr_matrix(np.arange(n_users)[:, None] * np.ones((1, n_items))),
                              sp.csr_matrix(exclude.astype(float)), sp.csr_matrix(target.astype(float)), names,
                              batch_size=7, item_popularity=popularity)
    expected = _brute_force(scores, exclude, target, k, popularity)
    for name in names:
        assert report.mean[name] == pytest.approx(expected[name.split("@")[0]], abs=1e-12), name


def test_coverage_and_popularity_merge_over_blocks_of_users():
    rng = np.random.default_rng(5)
    scores = rng.random((40, 12)).astype(np.float32)
    target = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(float))
    popularity = rng.random(12)
    inputs = sp.csr_matrix(np.arange(40)[:, None] * np.ones((1, 12)))
    names = ["coverage@2", "popularity@2", "map@3"]
    fn = lambda x: torch.from_numpy(scores[x.long()[:, 0]])  # noqa: E731
    whole = evaluate_ranking(fn, inputs, None, target, names, item_popularity=popularity)
    parts = [evaluate_ranking(fn, inputs[lo:hi], None, target[lo:hi], names, item_popularity=popularity)
             for lo, hi in ((0, 13), (13, 40))]
    merged = merge_reports(parts)
    assert merged.mean == pytest.approx(whole.mean)
    with pytest.raises(ValueError, match="popularity@K needs item_popularity"):
        evaluate_ranking(fn, inputs, None, target, ["popularity@2"])


def test_popularity_is_a_mean_over_the_lists_whatever_the_empty_user_policy():
    # items scored 3 > 2 > 1 with popularity 0.9, 0.5, 0.1: every top-2 list is items 0 and 1
    fn = lambda x: torch.tensor([[3.0, 2.0, 1.0]]).expand(x.shape[0], -1)  # noqa: E731
    inputs = sp.csr_matrix(np.zeros((3, 3)))
    target = sp.csr_matrix(np.array([[0, 0, 1], [0, 0, 0], [0, 0, 1]], dtype=float))  # user 1 holds nothing out
    exclude = sp.csr_matrix(np.array([[0, 0, 0], [0, 0, 0], [1, 1, 0]], dtype=float))  # user 2: only item 2 left
    popularity = np.array([0.9, 0.5, 0.1])
    for policy in ("drop", "zero"):
        report = evaluate_ranking(fn, inputs, exclude, target, ["popularity@2", "recall@2"], empty_users=policy,
                                  item_popularity=popularity)
        # user 0 lists (0.9 + 0.5) / 2 = 0.7, user 2 lists item 2 alone: 0.1; user 1 is not evaluated
        assert report.mean["popularity@2"] == pytest.approx((0.7 + 0.1) / 2), policy
    assert report.mean["recall@2"] == pytest.approx((0 + 0 + 1) / 3)  # the zero policy still counts user 1 for recall
    everything_excluded = sp.csr_matrix(np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=float))
    report = evaluate_ranking(fn, inputs, everything_excluded, target, ["popularity@2"], item_popularity=popularity)
    assert np.isnan(report.per_user["popularity@2"][2])  # no list, no popularity (it was 0)
    assert report.mean["popularity@2"] == pytest.approx(0.7)


def test_rank_metrics_equal_torchmetrics_on_random_data():
    tm = pytest.importorskip("torchmetrics.functional.retrieval")
    rng = np.random.default_rng(3)
    scores = rng.random((20, 30)).astype(np.float32)
    target = rng.random((20, 30)) < 0.2
    target[:, 0] = True  # every user has a held-out item
    k = 7
    report = evaluate_ranking(lambda x: torch.from_numpy(scores[x.long()[:, 0]]),
                              sp.csr_matrix(np.arange(20)[:, None] * np.ones((1, 30))), None,
                              sp.csr_matrix(target.astype(float)), [f"precision@{k}", f"hit@{k}", f"mrr@{k}"])
    for name, fn in ((f"precision@{k}", tm.retrieval_precision), (f"hit@{k}", tm.retrieval_hit_rate),
                     (f"mrr@{k}", tm.retrieval_reciprocal_rank)):
        theirs = np.mean([float(fn(torch.from_numpy(s), torch.from_numpy(t), top_k=k)) for s, t in zip(scores, target)])
        assert report.mean[name] == pytest.approx(theirs, abs=1e-6), name


def test_training_popularity_is_the_share_of_training_users_holding_each_item():
    """popularity@K's denominator: users, not interactions (by hand on four users and three items)."""
    from bindiff.tasks.recommendation.evaluation import training_popularity

    train = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(training_popularity(train), [0.75, 0.0, 0.5])
