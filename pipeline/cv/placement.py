"""Where the fold models live on the cluster, and how they are placed again when lost.

A fold model holds three p×p matrices. Up to :data:`REPLICATE_FEATURES`
features (and :data:`REPLICATE_BYTES` for all K of them) every worker builds
its own copy of all folds, and a batch of candidates is one task on any
worker (one round trip instead of K: a round trip costs ~10 ms here, a fold
fit at p = 100 a fraction of a millisecond). Wider Grams live once each,
dealt to the workers in turn, and a batch is one task per fold pinned to the
fold's worker: there a fit costs milliseconds to seconds and starts from the
nearest earlier solution of its fold, so every copy of a fold (a replica, or
one an idle worker took by work stealing, which starts with no solutions at
all) would split the fold's history and fit its trials from further away.
Measured on a 5,000-row table of three text columns (912 features), the
100 trials of a sweep replayed in one process: 5.7 s on one copy per fold,
10.7 s with each fold's trials alternating between two copies; in the sweep,
all folds on both workers (and copies taken by stealing), 16.7 s of CPU in
the fits and 16.1 / 19.7 s of wall, against 10.3 / 10.3 s placed once. On
synthetic Grams with cheap fits the two placements meet between 400 and 600
features (2,000 × 300: 4.8–5.0 s replicated, 5.2–5.4 s once; 2,000 × 700:
9.1–9.3 s against 7.6–8.0 s).

Fold models live only in worker memory. If every copy is lost (workers died,
and with them the data pass they came from), Dask cannot recompute them and
cancels what depends on them; :meth:`FoldPlacement.rebuild` then submits the
pass again (its source is a task, so it has lineage) and places new models.
A fold pinned to a worker that left is placed again on the workers left,
from the pass (which Dask recomputes if it went with that worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ModelConfig
from ..solvers.controls import FeatureControls
from .client import cluster_workers, live_workers
from .fold_models import make_fold_models
from .passes import BlockPass, same

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["REPLICATE_BYTES", "REPLICATE_FEATURES", "FoldPlacement", "FoldSlot", "Placement", "cover",
           "group_by_worker", "place_fold_models", "placement_of_pass", "replicated"]

REPLICATE_BYTES = 256 * 2**20  # all fold models on every worker below this size ...
REPLICATE_FEATURES = 512  # ... and up to this many features: beyond, a fit's warm start saves more than tasks cost
_GONE = ("cancelled", "error")


@dataclass(frozen=True)
class FoldSlot:
    """Fold models living on one worker: a future of ``list[FoldModel]`` covering ``folds``."""

    folds: tuple[int, ...]
    models: Future
    worker: str | None


def cover(slots: Sequence[FoldSlot], k: int, load: Mapping[int, float], sent: Mapping[str | None, int]
          ) -> list[int]:
    """Indices of slots that hold every fold once, for one batch: what a batch's tasks run on.

    A slot holding all folds: the least-loaded one (``load``: tasks in flight per slot). Otherwise the
    slots whose folds no other slot holds, and for each fold held by several slots (a replica that
    evens out folds over workers) the slot whose worker has the fewest tasks in flight, then the fewest
    sent so far (``sent`` per worker): replicas are taken in turn.
    """
    whole = [i for i, sl in enumerate(slots) if len(sl.folds) == k]
    if whole:
        return [min(whole, key=lambda i: (load[i], i))]
    holders: dict[int, list[int]] = {}
    for i, sl in enumerate(slots):
        for f in sl.folds:
            holders.setdefault(f, []).append(i)
    busy: dict[str | None, float] = {}
    for i, sl in enumerate(slots):
        busy[sl.worker] = busy.get(sl.worker, 0.0) + load[i]
    chosen = [i for i, sl in enumerate(slots) if all(len(holders[f]) == 1 for f in sl.folds)]
    covered = {f for i in chosen for f in slots[i].folds}
    for i in chosen:
        busy[slots[i].worker] += 1
    turn = dict(sent)
    for f in sorted(holders):
        if f in covered:
            continue
        fresh = [i for i in holders[f] if covered.isdisjoint(slots[i].folds)] or holders[f]
        i = min(fresh, key=lambda i: (busy[slots[i].worker], turn.get(slots[i].worker, 0), i))
        chosen.append(i)
        covered.update(slots[i].folds)
        busy[slots[i].worker] += 1
        turn[slots[i].worker] = turn.get(slots[i].worker, 0) + 1
    return sorted(chosen)


def group_by_worker(slots: Sequence[FoldSlot], chosen: Sequence[int], threads: Mapping[str | None, int]
                    ) -> list[list[int]]:
    """The slots ``chosen`` for a batch (:func:`cover`), grouped into the tasks that run them: each worker's
    slots dealt in turn to as many tasks as it has threads (one worker thread per task, as with one task per
    slot, but every pass over its rows serves the folds of its task together)."""
    groups: dict[tuple[str | None, int], list[int]] = {}
    seen: dict[str | None, int] = {}  # slots dealt per worker so far; its order is the workers' first appearance
    for i in chosen:
        w = slots[i].worker
        turn = seen.get(w, 0)
        seen[w] = turn + 1
        groups.setdefault((w, turn % max(1, threads.get(w, 1))), []).append(i)
    order = list(seen)
    return [groups[key] for key in sorted(groups, key=lambda key: (order.index(key[0]), key[1]))]  # worker-major


def place_fold_models(client: Client, passes: Future, k: int, p: int, model: ModelConfig,
                      controls: FeatureControls | None = None) -> list[FoldSlot]:
    """Build the fold models on the workers, where the trial tasks will find them.

    Each model is built on its worker (a placement hint), then handed to an
    unrestricted key (:func:`~pipeline.cv.passes.same` runs where the data
    is): Dask never reschedules a task restricted to workers that are all
    gone (it waits in ``no-worker`` even when the restriction is loose).
    Trial tasks on replicated folds go where their fold models are without
    being told; a fold that lives once has its tasks pinned to its worker
    (:meth:`FoldPlacement.pinned`).
    """
    workers = list(live_workers(client))
    if replicated(k, p):
        groups = [(tuple(range(k)), w) for w in workers]
    else:
        groups = [((i,), workers[i % len(workers)]) for i in range(k)]
    return [_place(client, passes, folds, w, model, controls) for folds, w in groups]


def even_out(counts: Mapping[str, float], threads: Mapping[str, int] | None = None) -> list[tuple[str, str]]:
    """Moves ``(from, to)`` of one fold each that even out the folds per thread of ``counts`` (folds per
    worker): from the fullest worker to the emptiest while the move lowers the fullest's share."""
    share = dict(counts)
    per = {w: max(1, (threads or {}).get(w, 1)) for w in share}
    moves: list[tuple[str, str]] = []
    while len(share) > 1:
        full = max(share, key=lambda w: (share[w] / per[w], w))
        empty = min(share, key=lambda w: ((share[w] + 1) / per[w], w))
        if (share[empty] + 1) / per[empty] >= share[full] / per[full]:
            return moves
        share[full] -= 1
        share[empty] += 1
        moves.append((full, empty))
    return moves


def replicated(k: int, p: int) -> bool:
    """Whether every worker holds all K fold models (small Grams, cheap fits), or each fold lives once."""
    return p <= REPLICATE_FEATURES and 3 * k * p * p * 8 <= REPLICATE_BYTES


def _place(client: Client, passes: Future, folds: tuple[int, ...], w: str, model: ModelConfig,
           controls: FeatureControls | None) -> FoldSlot:
    """The fold models of ``folds`` built on worker ``w`` from ``passes``."""
    built = client.submit(make_fold_models, passes, list(folds), fit_intercept=model.fit_intercept,
                          standardize=model.standardize, controls=controls, workers=[w], allow_other_workers=True,
                          pure=False)
    return FoldSlot(folds, client.submit(same, built, pure=False), w)


class Placement(Protocol):
    """Where a search's fold models live, whichever engine built them; what the scheduler and the path use.

    ``slots`` are the futures of fold-model lists; ``generation`` counts the
    placements (futures sent before a rebuild name the slots of an older one);
    ``current_pass()`` is the future of the data the models came from (the
    data pass of the Gram engine, the rows of the rows engine), for the tasks
    that need all rows: bounds, the refit, the coefficient path.
    """

    client: Client
    k: int
    slots: list[FoldSlot]
    generation: int

    def lost(self) -> bool: ...

    def rebuild(self) -> None: ...

    def rebalance(self) -> bool:
        """Give workers that joined since the placement their share of the folds (from the workers holding
        the most); whether the slots changed (a new generation)."""
        ...

    def current_pass(self) -> Future: ...

    def pinned(self, slot: FoldSlot) -> dict[str, Any]:
        """``client.submit`` keywords for a task on ``slot``'s models: ``{}`` lets Dask place (and steal)
        it; a worker restriction keeps it where the models are."""
        ...

    def task_groups(self, chosen: Sequence[int]) -> list[list[int]]:
        """The slots ``chosen`` for a batch, grouped into tasks (each group on one worker): one slot per task,
        or the slots of a worker together where its fold models share their passes over the rows."""
        ...


class FoldPlacement:
    """The current data pass and fold models of a search, rebuilt from their source when lost.

    ``submit_pass()`` submits the computation of the finished
    :class:`~pipeline.cv.passes.BlockPass` (the sweep's data pass, or a
    retrain's training statistics as a task) and returns its future.
    ``generation`` counts the placements: futures sent before a rebuild name
    the slots of an older generation.
    """

    def __init__(self, client: Client, submit_pass: Callable[[], Future], k: int, p: int, model: ModelConfig,
                 passes: Future | None = None, controls: FeatureControls | None = None) -> None:
        self.client, self.k, self.p, self.model, self.controls = client, k, p, model, controls
        self._submit_pass = submit_pass
        self.passes: Future = passes if passes is not None else submit_pass()
        self.slots: list[FoldSlot] = place_fold_models(client, self.passes, k, p, model, controls)
        self.generation = 0

    def lost(self) -> bool:
        """Whether a copy of the fold models is gone for good (cancelled or failed), or a fold's worker left."""
        if any(slot.models.status in _GONE for slot in self.slots):
            return True
        if replicated(self.k, self.p):
            return False
        workers = cluster_workers(self.client)
        return any(slot.worker not in workers for slot in self.slots)

    def rebuild(self) -> None:
        """Place the fold models again (the next generation): after a loss of every copy, from a new pass;
        when only pinned folds' workers left, those folds on the workers left (the others keep their fits'
        history)."""
        workers = list(live_workers(self.client))
        if any(slot.models.status in _GONE for slot in self.slots) or replicated(self.k, self.p):
            self.passes = self._submit_pass()
            self.slots = place_fold_models(self.client, self.passes, self.k, self.p, self.model, self.controls)
        else:
            kept = [slot for slot in self.slots if slot.worker in workers]
            load = {w: sum(slot.worker == w for slot in kept) for w in workers}
            for slot in self.slots:
                if slot.worker not in workers:
                    w = min(workers, key=lambda w: (load[w], w))
                    load[w] += 1
                    kept.append(_place(self.client, self.current_pass(), slot.folds, w, self.model, self.controls))
            self.slots = sorted(kept, key=lambda slot: slot.folds)
        self.generation += 1

    def rebalance(self) -> bool:
        """Folds placed once: a worker that joined since takes folds from the workers holding the most, one at a
        time while that evens them out (a moved fold starts without its fits' history, once). Replicated
        folds: nothing to do, Dask sends their tasks to any worker."""
        if replicated(self.k, self.p):
            return False
        counts = dict.fromkeys(cluster_workers(self.client), 0)
        for slot in self.slots:
            if slot.worker in counts:
                counts[slot.worker] += 1
        moves = even_out(counts) if 0 in counts.values() else []  # (a worker without folds: one that joined)
        if not moves:
            return False
        slots = list(self.slots)
        for source, target in moves:
            i = max(i for i, slot in enumerate(slots) if slot.worker == source)
            slots[i] = _place(self.client, self.current_pass(), slots[i].folds, target, self.model, self.controls)
        self.slots = sorted(slots, key=lambda slot: slot.folds)
        self.generation += 1
        return True

    def current_pass(self) -> Future:
        """The pass's future, submitted again if it was lost after the last placement."""
        if self.passes.status in ("cancelled", "error"):
            self.passes = self._submit_pass()
        return self.passes

    def pinned(self, slot: FoldSlot) -> dict[str, Any]:
        """Replicated folds: nothing (any worker holds them all, a fit costs less than the round trip, and an
        idle worker may take a copy). A fold that lives once: on its worker only (a copy elsewhere starts with
        none of the fold's solutions); if that worker leaves, :meth:`lost` says so."""
        if replicated(self.k, self.p):
            return {}
        return {"workers": [slot.worker], "allow_other_workers": False}

    def task_groups(self, chosen: Sequence[int]) -> list[list[int]]:
        """One slot per task: a Gram fold model's fit reads no rows."""
        return [[i] for i in chosen]


def placement_of_pass(client: Client, passes: BlockPass, k: int, p: int, model: ModelConfig,
                      controls: FeatureControls | None = None) -> FoldPlacement:
    """Fold models of a pass held by the driver (a retrain's training statistics), with lineage.

    The statistics go to the cluster as the input of a task, not as scattered
    data: scattered data have no lineage, so losing every worker that holds
    them would cancel the search; a task's input stays with the scheduler,
    which recomputes it on another worker.
    """
    return FoldPlacement(client, lambda: client.submit(same, passes, pure=False), k, p, model, controls=controls)
