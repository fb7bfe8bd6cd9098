"""Validation candidates of a shipped train/test split, counted by hand."""

import numpy as np

from bindiff.adapters.interactions.readers import RawInteractions
from bindiff.adapters.interactions.splits import train_test_split


def test_users_with_exactly_min_items_to_split_can_be_validation_users():
    # users 0, 1, 2 have exactly 5 training items (= min_items_to_split), user 3 has 2:
    # three candidates, so two validation users are allowed, each holding out round(0.2*5) = 1 item
    users = [u for u in range(3) for _ in range(5)] + [3, 3]
    items = [i for _ in range(3) for i in range(5)] + [0, 1]
    train = RawInteractions(np.array(users), np.array(items), None, "train.txt")
    test = RawInteractions(np.array([0, 3]), np.array([5, 5]), None, "test.txt")
    split = train_test_split(train, test, n_valid_users=2, holdout_fraction=0.2, min_items_to_split=5, seed=0)
    assert split.valid.target.nnz == 2 and set(split.valid.user_ids) <= {"0", "1", "2"}
    assert split.train.nnz == 17 - 2


def test_every_candidate_as_a_validation_user_is_refused():
    # three candidates: at most two may validate (one must stay a plain training user), as the message says
    import pytest

    from bindiff.adapters.errors import DataError

    users = [u for u in range(3) for _ in range(5)]
    items = [i for _ in range(3) for i in range(5)]
    train = RawInteractions(np.array(users), np.array(items), None, "train.txt")
    test = RawInteractions(np.array([0]), np.array([5]), None, "test.txt")
    with pytest.raises(DataError, match=r"n_valid_users = 3 must lie between 1 and the 2 users with at least 5"):
        train_test_split(train, test, n_valid_users=3, holdout_fraction=0.2, min_items_to_split=5, seed=0)
