"""glibc's allocator thresholds for the ``bindiff`` command.

torch on a CPU allocates and frees tensors of a few MB at every training step. With glibc's
defaults each of them is mapped fresh from the kernel and unmapped again (or the heap is trimmed
after it), so its pages fault in anew every step: about a tenth of an ML-1M training run's time
on this project's 2-core machine, as system time (docs/benchmarks.md, "Memory allocator").
Raising the mmap and trim thresholds keeps freed memory in the process for the next step; the
numbers a run computes do not change. Only the command does this, never ``import bindiff`` (a
library leaves its caller's process as it found it), and a ``MALLOC_*`` variable in the
environment, or ``GLIBC_TUNABLES`` naming a ``glibc.malloc.`` tunable, means the user has chosen,
so glibc is left as it is. An older glibc (2.30, say) refuses an mmap threshold above
HEAP_MAX_SIZE / 2 (32 MB on 64-bit systems): there the threshold is 32 MB, still above a step's
temporaries.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt's parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# 256 MB: a step's temporaries come from the heap; larger blocks (EASE's item-item matrices) are still mapped
MMAP_THRESHOLD = 256 << 20
# what every glibc takes: HEAP_MAX_SIZE / 2 on 64-bit systems, the most an older glibc (2.30) accepts
MMAP_THRESHOLD_OLD_GLIBC = 32 << 20
# 1 GB of free memory at the top of the heap before it is handed back to the system
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; whether it did (not on another
    system or C library, nor where the environment sets a ``MALLOC_*`` variable)."""
    if not sys.platform.startswith("linux") or any(name.startswith("MALLOC_") for name in os.environ) \
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library: nothing to tune
        return False
    # each set on its own: an older glibc's refusal of 256 MB (mallopt's 0) must not skip the trim threshold
    mapped = any(mallopt(M_MMAP_THRESHOLD, value) for value in (MMAP_THRESHOLD, MMAP_THRESHOLD_OLD_GLIBC))
    trimmed = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return mapped and trimmed
