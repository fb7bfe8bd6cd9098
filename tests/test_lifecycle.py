import torch

from bindiff.progress import progress_disabled
from bindiff.tasks.base import apply_threads


def test_progress_switch_follows_output_progress():
    assert progress_disabled({"output": {"progress": None}}) is None  # tqdm decides: bars on a terminal only
    assert progress_disabled({"output": {"progress": True}}) is False
    assert progress_disabled({"output": {"progress": False}}) is True


def test_threads_are_set_only_when_asked():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # not the 1 the suite runs with (conftest.py), nor the 1 asked for below
        apply_threads({"train": {"threads": None}})
        assert torch.get_num_threads() == 3
        apply_threads({"train": {"threads": 1}})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
