"""Evaluation metrics."""

from bindiff.metrics.ranking import (
    RankingReport,
    evaluate_ranking,
    merge_reports,
    ndcg_at_k,
    recall_at_k,
    topk_excluding,
)

__all__ = [
    "RankingReport",
    "evaluate_ranking",
    "merge_reports",
    "ndcg_at_k",
    "recall_at_k",
    "topk_excluding",
]
