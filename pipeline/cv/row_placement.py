"""Where the rows engine's fold models live: every worker loads the rows and holds all K folds.

Wide data have few rows: n × p is what one worker can hold (1,000 × 100,000
dense doubles: 800 MB), and the K fold problems share it. So each worker
loads the rows from the source itself (:func:`~pipeline.cv.rows.load_rows`;
the client sends the plan only) and builds all K fold models on them; a batch
of candidates is then one task on any worker, as with replicated Gram fold
models.

A worker that dies takes its rows and fold models with it. Every key here has
lineage (the load is a task, handed to an unrestricted key by
:func:`~pipeline.cv.passes.same`), so Dask reloads the rows from the source
where it needs them; :meth:`RowPlacement.rebuild` places new slots on the
workers that have none and keeps the slots that survived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import HoldoutConfig, ModelConfig
from ..data import DataPlan
from .passes import same
from .placement import FoldSlot
from .row_models import make_row_fold_models
from .rows import load_rows

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["RowPlacement"]

_GONE = ("cancelled", "error")


class RowPlacement:
    """The rows and fold models of a search on every worker (satisfies :class:`~pipeline.cv.placement.Placement`)."""

    def __init__(self, client: Client, plan: DataPlan, k: int, seed: int, model: ModelConfig,
                 holdout: HoldoutConfig | None = None) -> None:
        self.client, self.plan, self.k, self.seed, self.model, self.holdout = client, plan, k, seed, model, holdout
        self.slots: list[FoldSlot] = []
        self.rows: dict[str, Future] = {}  # worker -> its rows
        self.generation = 0
        self._place()

    def _place(self) -> None:
        """A slot on every worker that has none."""
        workers = sorted(self.client.scheduler_info()["workers"])
        for w in workers:
            if w in self.rows:
                continue
            loaded = self.client.submit(load_rows, self.plan, self.k, self.seed, self.holdout, workers=[w],
                                        allow_other_workers=True, pure=False)
            rows = self.client.submit(same, loaded, pure=False)
            models = self.client.submit(make_row_fold_models, rows, list(range(self.k)),
                                        fit_intercept=self.model.fit_intercept, standardize=self.model.standardize,
                                        pure=False)
            self.rows[w] = rows
            self.slots.append(FoldSlot(tuple(range(self.k)), models, w))

    def lost(self) -> bool:
        """Whether a slot's fold models are gone for good (cancelled or failed)."""
        return any(slot.models.status in _GONE for slot in self.slots)

    def rebuild(self) -> None:
        """Drop the lost slots, place slots on the workers without one (the next generation)."""
        workers = set(self.client.scheduler_info()["workers"])
        keep = [s for s in self.slots if s.models.status not in _GONE and s.worker in workers]
        self.rows = {s.worker: self.rows[s.worker] for s in keep if s.worker is not None}
        self.slots = keep
        self._place()
        self.generation += 1

    def current_pass(self) -> Future:
        """The rows of a live slot (for the tasks on all rows: summary, bounds, refit, coefficient path)."""
        for slot in self.slots:
            if slot.worker is not None and self.rows[slot.worker].status not in _GONE:
                return self.rows[slot.worker]
        self.rebuild()
        return next(iter(self.rows.values()))
