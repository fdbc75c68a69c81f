"""Where the fold models live on the cluster, and how they are placed again when lost.

A fold model holds three p×p matrices. When all K of them fit in
:data:`REPLICATE_BYTES` every worker builds its own copy of all folds, and a
batch of candidates is one task on any worker (one round trip instead of K:
a round trip costs ~10 ms here, a fold fit at p = 100 a fraction of a
millisecond). Larger Grams live once each, spread over the workers.

Fold models live only in worker memory. If every copy is lost (workers died,
and with them the data pass they came from), Dask cannot recompute them and
cancels what depends on them; :meth:`FoldPlacement.rebuild` then submits the
pass again (its source is a task, so it has lineage) and places new models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..config import ModelConfig
from .fold_models import make_fold_models
from .passes import BlockPass, same

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["REPLICATE_BYTES", "FoldPlacement", "FoldSlot", "Placement", "place_fold_models", "placement_of_pass"]

REPLICATE_BYTES = 256 * 2**20  # all fold models on every worker below this size


@dataclass(frozen=True)
class FoldSlot:
    """Fold models living on one worker: a future of ``list[FoldModel]`` covering ``folds``."""

    folds: tuple[int, ...]
    models: Future
    worker: str | None


def place_fold_models(client: Client, passes: Future, k: int, p: int, model: ModelConfig) -> list[FoldSlot]:
    """Build the fold models on the workers, where the trial tasks will find them.

    Each model is built on its worker (a placement hint), then handed to an
    unrestricted key (:func:`~pipeline.cv.passes.same` runs where the data
    is): Dask never reschedules a task restricted to workers that are all
    gone (it waits in ``no-worker`` even when the restriction is loose), and
    trial tasks go where their fold model is without being told.
    """
    workers = sorted(client.scheduler_info()["workers"])
    if 3 * k * p * p * 8 <= REPLICATE_BYTES:
        groups = [(tuple(range(k)), w) for w in workers]
    else:
        groups = [((i,), workers[i % len(workers)]) for i in range(k)]
    slots = []
    for folds, w in groups:
        built = client.submit(make_fold_models, passes, list(folds), fit_intercept=model.fit_intercept,
                              standardize=model.standardize, workers=[w], allow_other_workers=True, pure=False)
        slots.append(FoldSlot(folds, client.submit(same, built, pure=False), w))
    return slots


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

    def current_pass(self) -> Future: ...


class FoldPlacement:
    """The current data pass and fold models of a search, rebuilt from their source when lost.

    ``submit_pass()`` submits the computation of the finished
    :class:`~pipeline.cv.passes.BlockPass` (the sweep's data pass, or a
    retrain's training statistics as a task) and returns its future.
    ``generation`` counts the placements: futures sent before a rebuild name
    the slots of an older generation.
    """

    def __init__(self, client: Client, submit_pass: Callable[[], Future], k: int, p: int, model: ModelConfig,
                 passes: Future | None = None) -> None:
        self.client, self.k, self.p, self.model = client, k, p, model
        self._submit_pass = submit_pass
        self.passes: Future = passes if passes is not None else submit_pass()
        self.slots: list[FoldSlot] = place_fold_models(client, self.passes, k, p, model)
        self.generation = 0

    def lost(self) -> bool:
        """Whether a copy of the fold models is gone for good (cancelled or failed)."""
        return any(slot.models.status in ("cancelled", "error") for slot in self.slots)

    def rebuild(self) -> None:
        """Submit the pass again and place new fold models (the next generation)."""
        self.passes = self._submit_pass()
        self.slots = place_fold_models(self.client, self.passes, self.k, self.p, self.model)
        self.generation += 1

    def current_pass(self) -> Future:
        """The pass's future, submitted again if it was lost after the last placement."""
        if self.passes.status in ("cancelled", "error"):
            self.passes = self._submit_pass()
        return self.passes


def placement_of_pass(client: Client, passes: BlockPass, k: int, p: int, model: ModelConfig) -> FoldPlacement:
    """Fold models of a pass held by the driver (a retrain's training statistics), with lineage.

    The statistics go to the cluster as the input of a task, not as scattered
    data: scattered data have no lineage, so losing every worker that holds
    them would cancel the search; a task's input stays with the scheduler,
    which recomputes it on another worker.
    """
    return FoldPlacement(client, lambda: client.submit(same, passes, pure=False), k, p, model)
