"""Bulk imports without Python's cyclic garbage collector.

Importing a large library creates objects that all survive (modules,
classes, functions, SQLAlchemy's mappers): hundreds of thousands for MLflow.
The collector is triggered by allocations, so it runs many times along the
way, and each collection of the oldest generation walks everything imported
so far again, to find nothing to free. Measured on this project's two-core
machine (2026-12-04, fresh processes, CPU time): importing MLflow and its SQL
store after Optuna and SQLAlchemy 1.26–1.51 s with the collector, 0.88–1.10 s
without (4 each). In quickstart sweeps, CPU of the process during each
paused step, medians of 4 each way, two sittings: the MLflow process opening
its store 1.40 → 1.03 s and 1.50 → 1.24 s; logging the model (MLflow's first
use of its model modules, at the end of the sweep, where the driver waits for
it) 0.39 → 0.24 s; the driver starting the fork server and opening the
Optuna study 0.77 → 0.68 s; starting the embedded cluster (the scheduler
imports its bokeh dashboard) 0.46 → 0.39 s in one sitting, no difference in
the other. On two cores every process of a sweep shares the same CPU, so
that CPU is a sweep's wall time.

The pause covers only such import-heavy steps, and restores the collector's
previous state after them (a caller that had switched it off keeps it off):
the garbage created meanwhile, if any, is collected at the next collection.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the duration (process-wide), then as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
