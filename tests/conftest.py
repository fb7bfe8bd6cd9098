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

# The CLI tests start bindiff in a few hundred subprocesses. Where PYTHONDONTWRITEBYTECODE is set
# (this project's machines set it) each start compiled bindiff's sources again, about 0.3 s of CPU:
# compiled once here, they are read by every process (the variable stops writing, not reading).
import compileall  # noqa: E402
from pathlib import Path  # noqa: E402

for _package in ("bindiff", "adapters"):
    compileall.compile_dir(Path(__file__).resolve().parent.parent / _package, quiet=2)


import re  # noqa: E402

import pytest  # noqa: E402

# Python 3.10's datetime.fromisoformat grammar (bindiff supports 3.10): any one character between date
# and time, fractions of 3 or 6 digits, offsets as ±HH:MM; no "Z"
_PYTHON_310_ISOFORMAT = re.compile(r"\d{4}-\d{2}-\d{2}(.\d{2}(:\d{2}(:\d{2}(\.\d{3}(\d{3})?)?)?)?([+-]\d{2}:\d{2})?)?")


@pytest.fixture
def python_310_isoformat(monkeypatch):
    """The readers' datetime with Python 3.10's fromisoformat, which refuses what 3.11 reads beyond it."""
    from bindiff.adapters.interactions import readers

    real = readers.datetime

    class Python310(real):
        @classmethod
        def fromisoformat(cls, text):
            if not _PYTHON_310_ISOFORMAT.fullmatch(text):
                raise ValueError(f"Invalid isoformat string: {text!r}")
            return real.fromisoformat(text)

    monkeypatch.setattr(readers, "datetime", Python310)


@pytest.fixture
def warned():
    """A function giving the BindiffWarnings raised since it was last called, as the bindiff command
    prints them: one ``warning: <message>`` line each. Library code warns through Python's warnings
    (a caller may filter them); this reads them in place of the stderr a command would write."""
    import warnings

    from bindiff.progress import BindiffWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BindiffWarning)
        read = 0

        def lines() -> str:
            nonlocal read
            new, read = caught[read:], len(caught)
            return "".join(f"warning: {w.message}\n" for w in new if issubclass(w.category, BindiffWarning))

        yield lines
