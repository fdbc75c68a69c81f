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
previous state after them (a caller that had switched it off keeps it off).

At the end of each step everything alive is frozen (``gc.freeze``: moved to
a permanent generation that collections skip). Without it the imported
objects were walked again later, by the collections the sweep's own work
triggers: traced in a 10⁴ × 100 sweep (``gc.callbacks``, thread CPU time),
about 0.8 s of collections in the driver and 0.5 s in the MLflow process,
each freeing a few hundred to a few thousand objects; a single collection of
the oldest generation took 0.12–0.21 s, and one landed in the middle of
logging the parent run's metrics (7 metrics, 0.16 s). With the freeze one
collection of 22–34 ms remained. Medians of 6 sweeps each way, alternating
(2026-12-04, load 0.8–2.4): CPU of all processes 6.85 → 6.16 s on the
quickstart and 7.64 → 6.80 s at 10⁴ × 100; wall 4.06 → 3.85 s and 4.48 →
4.24 s.

Freezing also keeps out of every later collection whatever else was alive
then, and what of it becomes garbage is never freed. That is harmless in a
process that ends with its sweep (the ``regsweep`` command, which leaves
with ``os._exit``, and the sweep's MLflow process), so only those freeze
(:func:`freeze_after_steps`); a notebook that runs sweeps one after another
in its own process keeps its collector as it was.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["collector_paused", "freeze_after_steps"]

_freeze = False  # set by processes that end with their sweep (freeze_after_steps)


def freeze_after_steps() -> None:
    """From now on, in this process (and the processes it forks), each paused step ends by freezing."""
    global _freeze
    _freeze = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the duration (process-wide), then everything alive frozen (in a
    process that ends with its sweep: :func:`freeze_after_steps`) and the collector as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
