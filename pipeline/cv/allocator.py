"""NumPy's temporaries from the heap on the workers: glibc's mmap threshold and top pad raised to 32 MB.

Why. Dask starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), so
that freed memory goes back to the system. Setting any of glibc's malloc parameters turns off its *dynamic* mmap
threshold, which otherwise rises to the size of the blocks a process frees: it stays at 128 KB, and every NumPy
array above it (a row block's residuals at 40,960 rows, a fold's linear predictor) is a fresh ``mmap`` whose pages
fault in, zeroed by the kernel, and go back at ``free``; and an array below it freed at the top of a heap is
trimmed away at once, to fault in again at the next. The binomial and Poisson fits make several such arrays per
pass over the rows. One worker's dense binomial path on 254,654 × 13 rows (73 points, 198 passes, one process):
5.6 s with glibc's defaults, 14.2 s with the workers' setting, 6.8 s with it and the mmap threshold raised, 5.7 s
with the top pad raised too (10⁶ × 100 rows, 14 points: 18.3 s with the defaults, 23.3 s with the workers'
setting, 19.1 s with the threshold raised). A whole binomial sweep of those 254,654 rows (20 trials): trials
4.7 → 2.5 s, the dense path 15.0 → 6.7 s.

So every worker sets ``M_MMAP_THRESHOLD`` and ``M_TOP_PAD`` to 32 MB (the threshold's largest on 64-bit) through
:class:`HeapTemporaries`, a worker plugin the client registers, which reaches remote workers and those that join
later as well as the embedded ones. Trimming stays on: free memory beyond 32 MB at the top of a heap still goes
back to the system, and arrays above 32 MB (the rows themselves) are still mapped and unmapped. Elsewhere than
glibc (macOS, musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["HeapTemporaries", "MMAP_THRESHOLD", "heap_temporaries"]

MMAP_THRESHOLD = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit; also the top pad kept at a trim
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # mallopt's parameter numbers (malloc.h)


def heap_temporaries() -> bool:
    """Raise this process's mmap threshold and top pad to :data:`MMAP_THRESHOLD`; whether they were (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TOP_PAD, MMAP_THRESHOLD))


class HeapTemporaries(WorkerPlugin):
    """A Dask worker plugin: :func:`heap_temporaries` in every worker process as it joins."""

    name = "regsweep-heap-temporaries"

    def setup(self, worker: Any) -> None:
        heap_temporaries()
