"""Recipe sections of the ``recommend`` task: interaction data, the split, inference, metrics,
the model kind, and the settings of ``bindiff compare`` and ``bindiff tune``.

``bindiff.config.schema`` lists them in ``TASKS["recommend"]``, next to the common sections
(diffusion, denoiser, train, output).
"""

from __future__ import annotations

from typing import Any

from ...config.keys import FREE, a_seed, at_least_one, fraction, key, non_negative

def _is_time(value) -> bool:
    """A number, or text that reads as an ISO 8601 date and time (as a time column of dates is read)."""
    if not isinstance(value, str):
        return True
    from ...adapters.interactions.readers import from_iso  # numpy: not for `bindiff --help`

    try:
        from_iso(value.strip())
    except ValueError:
        return False
    return True


_A_TIME = (_is_time, "must be a number or an ISO 8601 date and time (such as 2024-01-05 or 2024-01-05T10:30:00Z)")

SECTIONS: dict[str, Any] = {
    "data": {
        "dataset": key(str, "ml-1m", "a dataset bindiff knows (ml-1m, ml-100k, amazon-electronics), a path to "
                                     "a ratings file, or synthetic:<preset> (benchmarks)"),
        "min_rating": key((float, int, type(None)), None, "keep ratings >= this as interactions; null keeps every row"),
        "k_core": key(int, 0, "drop users and items with fewer interactions, repeatedly; 0 turns it off", non_negative),
        "download": key(bool, True, "download the official archive when the data are not found locally"),
        "sep": key((str, type(None)), None, "field separator of a delimited file (one character); null: from the "
                   "extension", (lambda v: v is None or len(v) == 1, "must be one character, or null")),
        "header": key(bool, True, "whether a delimited file starts with a header line naming its columns"),
        "user_col": key((str, int), "user", "user column of a delimited file: its header name, or its 0-based "
                        "number with header: false"),
        "item_col": key((str, int), "item", "item column of a delimited file (name or number, as user_col)"),
        "rating_col": key((str, int, type(None)), None, "rating column of a delimited file (name or number), or null"),
        "time_col": key((str, int, type(None)), None, "time column of a delimited file (name or number; numeric values "
                        "such as Unix seconds, or ISO 8601 dates and times), or null; ML-1M and ML-100K files have "
                        "theirs"),
    },
    "split": {
        "seed": key((int, type(None)), None, "seeds the split alone; null: the recipe seed (models trained with "
                    "different seeds on one split: an ensemble over seeds); unused by temporal", a_seed),
        "kind": key(str, "strong", "strong (Liang et al. 2018 fold-in users), weak (every user trains; each "
                    "user's held-out items are the targets), temporal (global time cut-offs: the latest "
                    "interactions are the targets; needs time data) or predefined (the dataset's own split)",
                    (lambda v: v in ("strong", "weak", "temporal", "predefined"),
                     "must be 'strong', 'weak', 'temporal' or 'predefined'")),
        "n_valid_users": key(int, 600, "validation users (strong generalisation; a shipped train/test split's "
                             "validation users); unused by weak and temporal", at_least_one),
        "n_test_users": key(int, 600, "test users (strong generalisation); unused by weak, temporal and predefined",
                            at_least_one),
        "holdout_fraction": key(float, 0.2, "share of each evaluation user's items held out (weak: the test share, "
                                "and the same share of the rest for validation; temporal: the same, of all "
                                "interactions by time)", fraction),
        "holdout_items": key((int, type(None)), None, "held-out items per evaluation user instead of "
                             "holdout_fraction (1: leave-one-out; at most n - 1), or null (strong and weak splits)",
                             (lambda v: v is None or v >= 1, "must be null or >= 1")),
        "valid_fraction": key((float, type(None)), None, "weak split: share of each user's items (of all of them) "
                              "held out for validation (temporal: of all interactions); null: holdout_fraction of "
                              "what the test items leave",
                              (lambda v: v is None or 0.0 < v < 1.0, "must be null or in (0, 1)")),
        "holdout": key(str, "random", "which of an evaluation user's items are held out (strong and weak splits): "
                       "random or "
                       "latest (the latest by time; needs time data)",
                       (lambda v: v in ("random", "latest"), "must be 'random' or 'latest'")),
        "test_from": key((int, float, str, type(None)), None, "temporal split: the test cut-off as a time instead of "
                         "holdout_fraction: a number in the time column's unit, or an ISO 8601 date and time "
                         "(2024-01-01, read as Unix seconds, UTC unless it has an offset); null: from the share",
                         _A_TIME),
        "valid_from": key((int, float, str, type(None)), None, "temporal split: the validation cut-off as a time "
                          "(as test_from, earlier), instead of the shares; null: from holdout_fraction or "
                          "valid_fraction", _A_TIME),
        "pair_time": key((str, type(None)), None, "the time of a user-item pair chosen more than once, for "
                         "holdout: latest: latest (its last choice: an item chosen again late can be held out) or "
                         "earliest (its first: held-out items are new to the user); null: latest (a temporal split "
                         "always reads earliest)",
                         (lambda v: v in ("latest", "earliest"), "must be 'latest', 'earliest' or null")),
        "min_items_to_split": key(int, 5, "evaluation users with fewer items keep all as fold-in (weak: train on all "
                                  "and are not scored)",
                                  (lambda v: v >= 2, "must be >= 2 (one item to fold in, one to hold out)")),
    },
    "inference": {
        "mode": key(str, "one_step", "one_step (one denoiser call on the history) or reverse (k posterior steps)",
                    (lambda v: v in ("one_step", "reverse"), "must be 'one_step' or 'reverse'")),
        "t": key(int, 1, "time shown to the denoiser (one_step) or the start time (reverse)", at_least_one),
        "steps": key((int, type(None)), None, "reverse steps from t; null visits every step", at_least_one),
        "sample": key(str, "mean", "reverse states as probabilities (mean) or bits (sample)",
                      (lambda v: v in ("mean", "sample"), "must be 'mean' or 'sample'")),
        "add_noise": key(bool, False, "noise the history to time t first instead of using it as x_t"),
        "ensemble": key(int, 1, "average p̂(x_0) over this many noisy draws (needs add_noise or sample)", at_least_one),
    },
    "eval": {
        "metrics": key(list, ["recall@20", "recall@50", "ndcg@100"], "metrics reported on validation and test: "
                       "recall, recall_heldout, ndcg, precision, hit, map, mrr, coverage or popularity @K"),
        "select": key(str, "ndcg@100", "validation metric for early stopping and the best checkpoint"),
        "batch_size": key(int, 1024, "users scored at once during evaluation", at_least_one),
        "per_user": key(bool, False, "also write per_user_test.csv: each test user's metric values"),
        "empty_users": key(str, "drop", "users with no held-out items: drop (Liang) or zero (count as 0)",
                           (lambda v: v in ("drop", "zero"), "must be 'drop' or 'zero'")),
    },
    "compare": {
        "models": FREE,  # model name -> list of key=value overrides that turn this recipe into it
        "seeds": key(int, 5, "seeds per model in `bindiff compare` (seed, seed+1, ...)", at_least_one),
        "spaces": FREE,  # model name -> a search space like tune.space, used by `bindiff compare --tune N`
    },
    "tune": {
        "trials": key(int, 20, "trials of `bindiff tune`, each one training run", at_least_one),
        "sampler": key(str, "tpe", "optuna sampler: tpe or random",
                       (lambda v: v in ("tpe", "random"), "must be 'tpe' or 'random'")),
        "seed": key((int, type(None)), None, "seeds the sampler; null: the recipe seed", a_seed),
        "space": FREE,  # recipe key -> {float: [low, high], log: bool} | {int: [low, high]} | {choices: [...]}
    },
    "model": {
        "kind": key(str, "binomial", "binomial (the diffusion and denoiser sections) or a baseline: popularity, "
                    "ease, multdae, multvae, gaussian, recfusion (bindiff.tasks.recommendation.models.MODELS)"),
        "params": FREE,
    },
}
