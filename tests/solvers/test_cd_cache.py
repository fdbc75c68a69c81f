"""The rows engine's compiled kernels are found in numba's disk cache by the next process.

Defined inside a function, they never were: every worker of every sweep compiled them again (0.8–1.1 s).
"""

from __future__ import annotations

import os
import subprocess
import sys

_RUN = "import pipeline.solvers._cd as cd; cd.warm(sparse=False); cd.warm(sparse=True)"


def test_a_second_process_loads_the_kernels_from_the_cache_instead_of_compiling_them(tmp_path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "NUMBA_DEBUG_CACHE": "1"}
    runs = [subprocess.run([sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    first, second = (r.stdout + r.stderr for r in runs)
    assert first.count("data saved") == 2  # both kernels compiled and written once
    assert second.count("data loaded") == 2 and "data saved" not in second
