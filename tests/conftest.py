"""Settings for the whole suite, read before any test module (and so before torch starts its threads).

One torch thread per test process: pytest-xdist runs one process per core, and each one's torch
would otherwise start a thread per core too; on a 2-core machine beside other work the heavy
sampling tests then took five times as long. Tests that are about threads set them themselves.
Subprocesses (the CLI tests) inherit the setting. Hypothesis draws the same examples on every
machine and run, so that a failure found once is found again.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from hypothesis import settings  # noqa: E402  (after the thread settings, which torch reads at import)

settings.register_profile("bindiff", derandomize=True)
settings.load_profile("bindiff")
