"""Shell completion (`bindiff --install-completion`): recipe names and files, and recipe keys, through
the protocol bash uses (click's `_BINDIFF_COMPLETE`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _complete(words: str, cwd=None) -> list[str]:
    env = {**os.environ, "_BINDIFF_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    done = subprocess.run([sys.executable, "-m", "bindiff"], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_recipe_completes_to_shipped_names_and_yaml_files(tmp_path):
    (tmp_path / "ml_local.yaml").write_text("seed: 1\n")
    (tmp_path / "ml_notes.txt").write_text("")
    (tmp_path / "mlruns").mkdir()
    assert _complete("bindiff train ml1m_", cwd=tmp_path) == ["ml1m_diffrec", "ml1m_recfusion"]
    assert _complete("bindiff train ml_", cwd=tmp_path) == ["ml_local.yaml"]  # not the .txt
    assert _complete("bindiff compare mlr", cwd=tmp_path) == ["mlruns/"]


@pytest.mark.parametrize("words, expected", [
    ("bindiff train ml1m train.l", ["train.lr=", "train.lr_decay="]),
    ("bindiff train ml1m denoiser.p", ["denoiser.params."]),  # free-form: its keys are the denoiser's
    ("bindiff train hippocampus_segmentation segmentation.s", ["segmentation.samples=", "segmentation.steps="]),
    ("bindiff show-config task=masks evaluations.denoising.f", ["evaluations.denoising.flip="]),
    ("bindiff train ml1m train.lr=", []),  # a value is being typed
])
def test_an_override_completes_to_the_keys_of_the_recipes_task(words, expected):
    assert _complete(words) == expected


def test_a_runs_overrides_complete_to_its_tasks_keys(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: segmentation\n")
    assert _complete(f"bindiff evaluate {run} segmentation.sa") == ["segmentation.samples="]
    assert _complete("bindiff train no_such_recipe.yaml train.pat") == ["train.patience="]  # unreadable: defaults
    (tmp_path / "plugin.yaml").write_text("task: parity_bits\n")  # a plugin's task: not the recommender's keys
    assert _complete(f"bindiff train {tmp_path / 'plugin.yaml'} data.") == []
