"""Where the rows engine's fold models live: the K folds dealt to the workers, each with the rows.

Wide data have few rows: n × p is what one worker can hold (1,000 × 100,000
dense doubles: 800 MB), and the fold problems on a worker share its copy. So
each worker that holds folds loads the rows from the source itself
(:func:`~pipeline.cv.rows.load_rows`; the client sends the plan only), and the
K folds are dealt to the workers by threads (5 folds on 2 single-threaded
workers: 3 and 2; on one worker with 2 threads: all 5, run two at a time).
Every fold model then lives once: its set-up (the ridge kernel, the Gram
blocks of its working sets) is paid once, and every trial passes through it,
so each fit starts from the nearest of all earlier solutions of its fold. A
batch of candidates is one task per fold, pinned to the fold's worker: an
idle worker that took a copy would carry the rows over and start cold.
Binomial and Poisson fits pass over the rows at every step, so there a
batch is one task per worker thread, holding that worker's folds: each pass
serves all of them (:meth:`RowPlacement.task_groups`).

A worker that dies takes its rows and fold models with it. The load is a task
handed to an unrestricted key (:func:`~pipeline.cv.passes.same`), as in the
Gram engine's placement; :meth:`RowPlacement.rebuild` deals the lost folds to
the workers that are left (on the rows they hold, or loaded again from the
source) and keeps the slots that survived.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..config import HoldoutConfig, ModelConfig
from ..data import DataPlan
from .client import cluster_workers, live_workers
from .passes import same
from .placement import FoldSlot, even_out, group_by_worker
from ..solvers.controls import FeatureControls
from .row_models import make_row_fold_models
from .rows import load_rows

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["RowPlacement"]

_GONE = ("cancelled", "error")


class RowPlacement:
    """The rows and the fold models of a search on the workers (a :class:`~pipeline.cv.placement.Placement`)."""

    def __init__(self, client: Client, plan: DataPlan, k: int, seed: int, model: ModelConfig,
                 holdout: HoldoutConfig | None = None, controls: FeatureControls | None = None) -> None:
        self.client, self.plan, self.k, self.seed, self.model, self.holdout = client, plan, k, seed, model, holdout
        self.controls = controls
        self.slots: list[FoldSlot] = []
        self.rows: dict[str, Future] = {}  # worker -> its rows
        self.threads: dict[str | None, int] = {}  # worker -> its threads, as last placed
        self.generation = 0
        self._place()

    def _place(self) -> None:
        """Deal the folds no slot holds to the workers, one slot per fold, each to the worker with the fewest
        folds per thread (round-robin at the start); a worker's slots share its rows."""
        info = live_workers(self.client)
        workers = list(info)
        threads = {w: max(1, int(info[w].get("nthreads", 1))) for w in workers}
        self.threads = {w: t for w, t in threads.items()}
        held = {f for slot in self.slots for f in slot.folds}
        load = {w: sum(len(s.folds) for s in self.slots if s.worker == w) for w in workers}
        for f in range(self.k):
            if f in held:
                continue
            w = min(workers, key=lambda w: ((load[w] + 1) / threads[w], workers.index(w)))
            load[w] += 1
            if w not in self.rows:
                loaded = self.client.submit(load_rows, self.plan, self.k, self.seed, self.holdout, workers=[w],
                                            allow_other_workers=True, pure=False)
                self.rows[w] = self.client.submit(same, loaded, pure=False)
            models = self.client.submit(make_row_fold_models, self.rows[w], [f], workers=[w],
                                        fit_intercept=self.model.fit_intercept, standardize=self.model.standardize,
                                        controls=self.controls, model=self.model,
                                        pure=False)  # pinned like its tasks: built elsewhere, it would copy the rows
            self.slots.append(FoldSlot((f,), models, w))
        self._replicate(workers, threads)
        self.slots.sort(key=lambda slot: (slot.folds, slot.worker or ""))

    def _replicate(self, workers: list[str], threads: dict[str, int]) -> None:
        """Even out the folds per thread with replicas: a worker with fewer folds than the fullest gets a
        copy of a fold of the fullest (on its own rows), and the batches take the copies in turn
        (:func:`~pipeline.cv.placement.cover`). 5 folds on 2 workers: 3 + 3 with fold 4 on both, each
        worker fitting 2.5 folds per batch instead of 3 and 2."""
        while True:
            per = {w: [s for s in self.slots if s.worker == w] for w in workers}
            full = max(workers, key=lambda w: (len(per[w]) / threads[w], w))
            light = min(workers, key=lambda w: ((len(per[w]) + 1) / threads[w], w))
            if light not in self.rows or (len(per[light]) + 1) / threads[light] > len(per[full]) / threads[full]:
                return
            mine = {f for s in per[light] for f in s.folds}
            counts = {f: sum(f in s.folds for s in self.slots) for s in per[full] for f in s.folds}
            spare = [f for f in sorted(counts, key=lambda f: (counts[f], -f)) if f not in mine]
            if not spare:
                return
            f = spare[0]
            models = self.client.submit(make_row_fold_models, self.rows[light], [f], workers=[light],
                                        fit_intercept=self.model.fit_intercept, standardize=self.model.standardize,
                                        controls=self.controls, model=self.model,
                                        pure=False)
            self.slots.append(FoldSlot((f,), models, light))

    def pinned(self, slot: FoldSlot) -> dict[str, Any]:
        """On the slot's worker only: a copy elsewhere would carry the rows over and start cold. If the
        worker leaves, the task waits for no worker; :meth:`lost` then says so."""
        return {"workers": [slot.worker], "allow_other_workers": False}

    def task_groups(self, chosen: Sequence[int]) -> list[list[int]]:
        """Binomial and Poisson: a worker's slots together, one task per worker thread
        (:func:`~pipeline.cv.placement.group_by_worker`), as each pass of their fits over the rows serves all
        folds of a task (:meth:`~pipeline.cv.glm_models.GlmFoldModel.score_together`). Squared loss on rows:
        one slot per task (its fits share nothing)."""
        if self.model.family == "gaussian":
            return [[i] for i in chosen]
        return group_by_worker(self.slots, chosen, self.threads)

    def lost(self) -> bool:
        """Whether a slot's fold models are gone for good (cancelled or failed) or its worker left."""
        workers = cluster_workers(self.client)
        return any(slot.models.status in _GONE or slot.worker not in workers for slot in self.slots)

    def rebuild(self) -> None:
        """Keep the live slots; deal the folds of the lost ones to the workers left (the next generation)."""
        workers = set(live_workers(self.client))
        self.rows = {w: f for w, f in self.rows.items() if w in workers and f.status not in _GONE}
        self.slots = [s for s in self.slots if s.models.status not in _GONE and s.worker in self.rows]
        self._place()
        self.generation += 1

    def rebalance(self) -> bool:
        """A worker that joined since the placement takes folds from the workers holding the most per thread
        (it reads the rows once; a moved fold starts without its fits' history); the replicas are then dealt
        again. Whether the slots changed (a new generation)."""
        info = cluster_workers(self.client)
        if all(w in self.rows for w in info):
            return False
        threads = {w: max(1, int(info[w].get("nthreads", 1))) for w in info}
        kept: list[FoldSlot] = []
        for slot in self.slots:  # one slot per fold: replicas are dealt again by _place
            if slot.worker in info and not any(s.folds == slot.folds for s in kept):
                kept.append(slot)
        moves = even_out({w: sum(s.worker == w for s in kept) for w in info}, threads)
        if not moves:
            return False
        for source, _ in moves:  # the worker's last fold goes; _place deals it to the emptiest worker
            kept.remove(max((s for s in kept if s.worker == source), key=lambda s: s.folds))
        self.slots = kept
        self._place()
        self.generation += 1
        return True

    def current_pass(self) -> Future:
        """Rows of a live worker, the one holding the fewest folds (for the tasks on all rows: summary,
        bounds, refit and coefficient path, which then run beside the fewest fold tasks)."""
        live = {w: f for w, f in self.rows.items() if f.status not in _GONE}
        if not live:
            self.rebuild()
            live = self.rows
        folds = {w: sum(len(s.folds) for s in self.slots if s.worker == w) for w in live}
        return live[min(live, key=lambda w: (folds[w], w))]
