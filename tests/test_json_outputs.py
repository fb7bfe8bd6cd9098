"""Every JSON file bindiff writes is strict JSON: an undefined metric (NaN) or an infinity is null,
which readers outside Python (JavaScript, jq) accept, where Python's bare NaN breaks them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bindiff.files import write_json


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)  # the standard's grammar: no NaN, Infinity


def test_undefined_values_are_written_as_null_and_the_rest_unchanged(tmp_path):
    data = {"mean": {"dice": 0.9, "error_auroc": float("nan")}, "per_case": [{"hd95_mm": float("inf")},
            {"hd95_mm": np.float64(-np.inf), "count": 3}], "pair": (1.5, np.float64("nan")), "name": "NaN"}
    write_json(tmp_path / "summary.json", data)
    assert _strict((tmp_path / "summary.json").read_text()) == {
        "mean": {"dice": 0.9, "error_auroc": None}, "per_case": [{"hd95_mm": None}, {"hd95_mm": None, "count": 3}],
        "pair": [1.5, None], "name": "NaN"}


def test_a_value_json_cannot_hold_is_still_refused(tmp_path):
    with pytest.raises(TypeError):  # a bug in the caller keeps its traceback, and no file is left
        write_json(tmp_path / "bad.json", {"x": object()})
    assert not list(tmp_path.iterdir())


def test_numpy_numbers_and_0d_arrays_are_written_as_the_numbers_they_hold(tmp_path):
    import torch

    data = {"f32": np.float32(0.5), "f32nan": np.float32("nan"), "i64": np.int64(7), "flag": np.bool_(True),
            "zero_d": np.array(2.5), "tensor": torch.tensor(3), "inf16": np.float16("inf")}
    write_json(tmp_path / "numbers.json", data)  # a TypeError for each, but np.float64 (a float)
    assert _strict((tmp_path / "numbers.json").read_text()) == {
        "f32": 0.5, "f32nan": None, "i64": 7, "flag": True, "zero_d": 2.5, "tensor": 3, "inf16": None}
