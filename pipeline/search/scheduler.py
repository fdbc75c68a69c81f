"""The ask/tell loop that keeps the cluster busy: :class:`TrialScheduler`.

The driver owns the study: it asks for trials, submits their fold fits to
Dask and records each trial exactly once when all its folds are back. Dask
tasks never touch Optuna. Several trials are in flight at once; their
candidates are batched so that one task fits a few candidates on the fold
models of a slot (a fit at p = 100 takes about a millisecond, a Dask round
trip a few), and every task runs on the worker that holds its folds. Where
the fold models of a worker share its passes over the rows (binomial and
Poisson), one task takes several slots of that worker
(:meth:`~pipeline.cv.Placement.task_groups`).

Policy and mechanism are apart: the scheduler decides what to send and when;
what happens to a finished trial (a child run, a progress bar) is the
caller's :class:`TrialListener`; the fold models and their rebuilding are the
:class:`~pipeline.cv.Placement`'s; the sampler is taught in ask order
(:mod:`.ordering`).

Faults, each handled here:

- a batch whose task fails (an exception, or Dask giving up after the task
  killed several workers: ``KilledWorker``) is split and each trial tried
  alone once, so one poisoned candidate fails only its own trial.
  ``KilledWorker`` blames every task the dead worker held, queued ones
  included, so a trial that failed that way is tried once more with nothing
  else on the cluster, and fails only if it kills a worker there too;
- a task whose error cannot be sent back (its traceback cannot be pickled:
  the scheduler marks it ``erred`` but the client never hears) is found by a
  watchdog that asks the scheduler after :attr:`watch_s` seconds without any
  result, and fails like any other error;
- every copy of the fold models lost: the placement is rebuilt from its
  source and the cancelled batches sent again (at most :data:`MAX_REBUILDS`
  times); losing the scheduler raises :class:`~pipeline.errors.ClusterError`;
- a pinned placement (:meth:`~pipeline.cv.Placement.pinned`: the rows engine, whose slots hold the
  rows, warm starts and kernels an idle worker must not copy away) sends each
  task to its slot's worker only; when that worker leaves, its tasks wait for
  no worker, the watchdog finds them, and they are sent again to the slots the
  rebuilt placement deals;
- Dask may run a task twice: results are keyed by (batch, fold), a trial is
  recorded once;
- the loop stopping early (an error, SIGINT/SIGTERM): the trials in flight
  are marked FAIL and reported to :meth:`TrialListener.on_abort`.
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..candidate import Candidate
from ..cv import (CONNECTION_LOST, LOST, FoldScore, Placement, Scorable, cancel_reason, cluster_workers, cover,
                  next_ready, result_or_lost, score_folds, score_slots, worker_left)
from ..cv._dask_internals import scheduler_task_states
from ..errors import ClusterError, SweepError
from ..metrics import metric_label
from ..signals import uninterrupted
from .ordering import TeachInOrder
from .results import TrialResult, summarize_scores
from .space import SearchSpace
from .study import PendingTrial, TrialStore

if TYPE_CHECKING:
    from distributed import Client, Future, as_completed

__all__ = ["MAX_REBUILDS", "ScoreFn", "TrialListener", "TrialScheduler"]

MAX_REBUILDS = 5
REBALANCE_EVERY_S = 1.0  # how often the scheduler looks for workers that joined (one round trip to the scheduler)
ScoreFn = Callable[[Sequence[Scorable], Sequence[Candidate], float], list[FoldScore]]


class TrialListener(Protocol):
    """What the caller does with trials as they end (a sweep logs child runs; a retrain prints)."""

    def on_result(self, result: TrialResult) -> None:
        """A trial completed; it is recorded in the study."""

    def on_failure(self, number: int, candidate: Candidate, reason: str) -> None:
        """A trial failed; it is recorded FAIL with ``reason``."""

    def on_abort(self, number: int, candidate: Candidate, reason: str) -> None:
        """The loop stopped while the trial was in flight; it is recorded FAIL."""


@dataclass
class _Batch:
    trials: list[PendingTrial]
    scores: dict[int, list[FoldScore]] = field(default_factory=dict)  # fold -> scores
    failed: str | None = None
    killed_worker: bool = False  # failed because workers died running it (KilledWorker): blame unsure
    alone: bool = False  # sent with nothing else on the cluster: a worker's death is then its own doing


@dataclass(frozen=True)
class _Sent:
    """What one future computes: a batch on the fold models of one or more slots of a worker (of one placement
    generation)."""

    batch: int
    slots: tuple[int, ...]
    folds: tuple[int, ...]
    generation: int
    worker: str | None = None  # the worker it is pinned to (None: Dask may run it anywhere)


@dataclass
class _PlacementKeeper:
    """Keeps the fold models usable before each batch: placed again when a copy of them is gone for good (at
    most :data:`MAX_REBUILDS` times), and dealt to workers that joined the cluster
    (:meth:`~pipeline.cv.Placement.rebalance`). It looks for those at most every :data:`REBALANCE_EVERY_S`
    (a round trip to the scheduler), and only while more trials are left than the batches in flight hold: a
    fold moved near the end would cost more than it saves."""

    client: Client
    placement: Placement
    rebuilds: int = 0
    looked_at: float = field(default_factory=time.monotonic)

    def keep(self, left: int, in_flight: int) -> bool:
        """Whether the slots changed (a new generation): ``left`` trials not yet asked, ``in_flight`` per round."""
        if not self.placement.lost():
            now = time.monotonic()
            if now - self.looked_at < REBALANCE_EVERY_S or left <= in_flight:
                return False
            self.looked_at = now
            return self.placement.rebalance()
        if any(cancel_reason(sl.models) == CONNECTION_LOST for sl in self.placement.slots):
            raise _scheduler_lost(self.client)
        if self.rebuilds >= MAX_REBUILDS:
            raise SweepError(f"the fold models were lost {self.rebuilds + 1} times (workers keep dying); "
                             "check the workers' logs and memory limits.")
        self.rebuilds += 1
        self.placement.rebuild()
        return True


class TrialScheduler:
    """Ask and score trials until the study holds ``n_trials`` COMPLETE ones (module docstring)."""

    def __init__(self, client: Client, store: TrialStore, placement: Placement, space: SearchSpace,
                 n_trials: int, listener: TrialListener, *, in_flight: int, threads: int, tol: float,
                 score: ScoreFn | None = None, watch_s: float = 10.0, metric: str = "mse") -> None:
        self.client, self.store, self.placement, self.space = client, store, placement, space
        self.metric = metric  # what the trials' values are (pipeline.metrics)
        self.n_trials, self.listener, self.tol, self.watch_s = n_trials, listener, tol, watch_s
        self.score: ScoreFn = score or score_folds  # looked up now: a test may replace the module's
        self.batch_size = max(1, math.ceil(in_flight / (2 * threads)))
        self.max_batches = max(2, 2 * threads)
        self.max_failures = max(10, 2 * in_flight)  # a deterministic fault must not spin forever
        # one batch more than in flight: two batches run at once and end in either order (see .ordering)
        self.order = TeachInOrder(store, self.batch_size * (self.max_batches + 1))
        self.asked = 0
        self.done = 0
        self.failures_in_a_row = 0
        self.last_reason = ""
        self.pending: dict[int, _Batch] = {}
        self.sent: dict[Future, _Sent] = {}
        self.retry: list[_Batch] = []  # to send again: trials split from a failed batch, or cancelled batches
        self.load = dict.fromkeys(range(len(placement.slots)), 0)
        self.sent_to: dict[str | None, int] = {}  # slots sent per worker, to take fold replicas in turn
        self._next_batch = 0
        self._keeper = _PlacementKeeper(client, placement)
        self._run = uuid.uuid4().hex[:12]  # unique task keys even with several drivers on one scheduler
        self._ac: as_completed | None = None

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        """Run until done; returns how many trials this call asked."""
        self.done = self.store.n_complete()
        self._ac = _results_as_they_finish(self.client)
        try:
            while self.done < self.n_trials or self.pending or self.retry:  # asked trials always finish
                self._fill()
                if not self.pending:
                    break
                ready = next_ready(self._ac, self.watch_s)
                if ready is None:
                    self._check_stalled()
                else:
                    self._receive(*ready)
        except BaseException as exc:  # the sweep stops: trials in flight must not stay RUNNING
            self._abort(exc)
            raise
        self.order.teach_all()
        return self.asked

    def _fill(self) -> None:
        """Send what may be sent: batches to retry, then new batches of newly asked trials."""
        while self.retry and len(self.pending) < self.max_batches and not self._blocked():
            self._submit(self.retry[-1])  # registered in `pending` before it leaves `retry`
            self.retry.pop()
        if len(self.pending) < self.max_batches:  # other drivers may complete trials of this study too (~1 ms)
            self.done = max(self.done, self.store.n_complete())
            self.store.absorb_completed_elsewhere(self.done)
        while len(self.pending) < self.max_batches and not self._blocked() and not self.retry:
            want = min(self.batch_size, self.n_trials - self.done - self._trials_in_flight())
            if want <= 0 or not self._submit(_Batch(trials=[]), ask=want):
                break

    def _trials_in_flight(self) -> int:
        return sum(len(b.trials) for b in (*self.pending.values(), *self.retry))

    def _blocked(self) -> bool:
        """Whether nothing may be sent now: a batch runs alone, or one waits for the cluster to empty."""
        return any(b.alone for b in self.pending.values()) or (any(b.alone for b in self.retry)
                                                               and bool(self.pending))

    def _submit(self, batch: _Batch, ask: int = 0) -> bool:
        """Register ``batch`` (asking up to ``ask`` new trials into it) and send it; False if it stayed empty."""
        batch_id = self._next_batch
        self._next_batch += 1
        self.pending[batch_id] = batch  # first: if anything below raises, the trials are failed, not left RUNNING
        while ask > 0 and self.order.may_ask():
            with uninterrupted():  # asked (RUNNING) but not in the batch, a stop would leave it RUNNING
                pending = self.store.ask(self.space)
                self.order.asked(pending)
                batch.trials.append(pending)
            self.asked += 1
            ask -= 1
        if not batch.trials:
            del self.pending[batch_id]
            return False
        self._usable_placement()
        cands = [t.candidate for t in batch.trials]
        slots = self.placement.slots
        for group in self.placement.task_groups(cover(slots, self.placement.k, self.load, self.sent_to)):
            first = slots[group[0]]  # every slot of a group is on its worker
            self.sent_to[first.worker] = self.sent_to.get(first.worker, 0) + len(group)  # slots: the turns of replicas
            pinned = self.placement.pinned(first)
            fut = self.client.submit(score_slots, self.score, [slots[i].models for i in group], cands, self.tol,
                                     pure=False, key=f"score-{self._run}-b{batch_id}-s{group[0]}",
                                     **pinned)  # runs where the models are
            self.sent[fut] = _Sent(batch_id, tuple(group), tuple(f for i in group for f in slots[i].folds),
                                   self.placement.generation, pinned["workers"][0] if pinned else None)
            for i in group:
                self.load[i] += 1
            assert self._ac is not None
            self._ac.add(fut)
        return True

    def _usable_placement(self) -> None:
        """The fold models rebuilt if lost, or dealt to workers that joined (:class:`_PlacementKeeper`)."""
        if self._keeper.keep(self.n_trials - self.done - self._trials_in_flight(), self.batch_size * self.max_batches):
            self.load = dict.fromkeys(range(len(self.placement.slots)), 0)

    # ------------------------------------------------------------------ results
    def _receive(self, fut: Future, value: object = None) -> None:
        """File one finished future (``value``: its scores, if fetched) into its batch; finish the batch once
        every fold is in."""
        sent = self.sent.pop(fut, None)
        if sent is None:  # settled by the watchdog already (cancelled, its batch sent again)
            return
        self._unload(sent)
        batch = self.pending.get(sent.batch)
        if batch is None or batch.failed:  # its other folds already failed it
            fut.release()
            return
        if fut.status == "cancelled":  # a lost dependency (fold models), or the scheduler
            if cancel_reason(fut) == CONNECTION_LOST:
                raise _scheduler_lost(self.client)
            self._send_again(sent.batch, batch)
            return
        if fut.status == "error":
            self._fail_batch(batch, sent, fut.exception())
        else:
            # its worker may die before the result is fetched: the task then waits for no worker
            scores = value if isinstance(value, list) else result_or_lost(fut, _lost_check(self.client,
                                                                                         self.placement, sent))
            if scores is LOST:
                self._send_again(sent.batch, batch)
                return
            for score in scores:
                batch.scores.setdefault(score.fold, []).append(score)
        fut.release()
        if batch.failed or len(batch.scores) >= self.placement.k:
            self._finish_batch(sent.batch, batch)

    def _unload(self, sent: _Sent) -> None:
        """A task settled: its slots have one task fewer in flight (if they are still the current ones)."""
        if sent.generation == self.placement.generation:
            for i in sent.slots:
                self.load[i] -= 1

    def _send_again(self, batch_id: int, batch: _Batch) -> None:
        """Queue the trials of a batch whose task was lost (not failed) to be sent again."""
        self.retry.append(_Batch(trials=batch.trials, alone=batch.alone))  # before it leaves `pending`: a stop
        del self.pending[batch_id]  # in between must find its trials in one of them, to fail them

    def _fail_batch(self, batch: _Batch, sent: _Sent, exc: BaseException | None) -> None:
        from distributed import KilledWorker

        batch.failed = f"folds {list(sent.folds)}: {type(exc).__name__}: {exc}"
        batch.killed_worker = isinstance(exc, KilledWorker)
        if batch.killed_worker and batch.alone:
            batch.failed = f"its task killed the workers that ran it, alone on the cluster ({batch.failed})"

    def _finish_batch(self, batch_id: int, batch: _Batch) -> None:
        """Record every trial of a complete (or failed) batch; a failed batch of several is split first."""
        if batch.failed and (len(batch.trials) > 1 or (batch.killed_worker and not batch.alone)):
            # find the culprit: each trial alone, once; alone on the cluster if workers died
            self.retry.extend([_Batch(trials=[t], alone=batch.killed_worker) for t in batch.trials])
            del self.pending[batch_id]  # only now (see _send_again)
            return
        end = time.time()
        while batch.trials:  # each trial leaves the batch once recorded: an interruption fails only the rest
            pending = batch.trials[0]
            cand = pending.candidate
            scores = [s for fold in batch.scores.values() for s in fold if s.trial == cand.trial]
            result = None if batch.failed else summarize_scores(cand, scores, pending.start, end, self.metric)
            with uninterrupted():  # recorded, out of the batch and told (its child run), or none of these
                if result is None or not math.isfinite(result.cv_mse):
                    # a NaN value must not reach the study: Optuna cannot read a COMPLETE trial without one
                    reason = batch.failed or (f"the cross-validated {metric_label(self.metric)} is not finite "
                                              f"({result.cv_mse if result else ''})")
                    self.store.record_failure(pending, reason)
                    batch.trials.pop(0)
                    self._failed(pending, reason)
                else:
                    self.store.record(pending, result.cv_mse, {"cv": result.attrs()})
                    batch.trials.pop(0)
                    self._completed(pending, result)
        del self.pending[batch_id]
        if self.failures_in_a_row >= self.max_failures:
            raise SweepError(
                f"the last {self.failures_in_a_row} trials all failed; giving up instead of asking for more. "
                f"Last reason: {self.last_reason}. Completed trials are kept in the study."
            )

    def _completed(self, pending: PendingTrial, result: TrialResult) -> None:
        """Bookkeeping of a trial recorded COMPLETE (the study holds it already)."""
        self.order.finished(pending, result.cv_mse)
        self.failures_in_a_row = 0
        self.done += 1
        self.listener.on_result(result)

    def _failed(self, pending: PendingTrial, reason: str) -> None:
        """Bookkeeping of a trial recorded FAIL (the study holds it already)."""
        self.order.finished(pending, None)
        self.failures_in_a_row += 1
        self.last_reason = reason
        self.listener.on_failure(pending.candidate.trial, pending.candidate, reason)

    # ------------------------------------------------------------------ faults
    def _check_stalled(self) -> None:
        """No result for :attr:`watch_s` s: take finished tasks never yielded; fail those the scheduler says erred."""
        for fut in [f for f in self.sent if f.done() and f.status == "finished"]:
            self._receive(fut)
        for fut, state in _stalled(self.client, self.sent).items():
            sent = self.sent.pop(fut)
            batch = self.pending.get(sent.batch)
            self._unload(sent)
            if batch is None or batch.failed:
                continue
            if state == "no-worker":  # pinned to a worker that left: send the batch again once placed anew
                fut.cancel()
                self._send_again(sent.batch, batch)
                continue
            what = "failed on a worker" if state == "erred" else "was lost by the scheduler"
            batch.failed = (f"folds {list(sent.folds)}: its task {what}, but no error reached the driver after "
                            f"{self.watch_s:g} s (an error that cannot be pickled, e.g. a RecursionError); "
                            "see the worker's log")
            self._finish_batch(sent.batch, batch)

    def _abort(self, exc: BaseException) -> None:
        """Mark FAIL every trial in flight and tell the listener; cancel the tasks unless interrupted."""
        reason = f"sweep stopped before this trial finished ({type(exc).__name__}: {exc})"
        with uninterrupted():  # a second Ctrl-C must neither split a failure from its child run nor leave the rest
            for batch in [*self.pending.values(), *self.retry]:
                for pending in batch.trials:
                    try:
                        self.store.record_failure(pending, reason)
                    except Exception:  # noqa: BLE001 — the storage may be what failed; the next start cleans up
                        continue
                    self.listener.on_abort(pending.candidate.trial, pending.candidate, reason)
        if not isinstance(exc, KeyboardInterrupt):  # stopping: closing the client releases them, without waiting
            with contextlib.suppress(Exception):  # the client may be closed already: keep the original error
                for fut in self.sent:
                    fut.cancel()


def _results_as_they_finish(client: Client) -> as_completed:
    """An ``as_completed`` whose event loop fetches each result as its task finishes, while the driver asks
    Optuna. Fetched on demand (a round trip through the scheduler, behind the GIL the search holds) they took
    0.3 s of a 100-trial sweep's 1.3 s at 10⁴ × 100. It yields ``(future, result)``; errors are not raised."""
    from distributed import as_completed

    return as_completed(loop=client.loop, with_results=True, raise_errors=False)


def _scheduler_lost(client: Client) -> ClusterError:
    address = getattr(getattr(client, "scheduler", None), "address", "the scheduler")
    return ClusterError(
        f"lost the connection to the Dask scheduler at {address}; completed trials are kept in the study. "
        "Run the same command again once a scheduler is up (with cluster.address pointing at it) to finish "
        "the study."
    )


def _lost_check(client: Client, placement: Placement, sent: _Sent) -> Callable[[], bool]:
    """Whether the task of ``sent`` can no longer run: its pinned worker left, or the models are lost."""
    worker = sent.worker
    if worker is None:
        return placement.lost
    return lambda: worker_left(client, worker)


def _stalled(client: Client, sent: dict[Future, _Sent]) -> dict[Future, str | None]:
    """The unfinished futures the scheduler says erred, forgot (None) or cannot run (``no-worker``, or pinned
    to a worker that left); {} if the scheduler does not answer (ask again later)."""
    waiting = {str(fut.key): fut for fut in sent if not fut.done()}
    try:
        states = scheduler_task_states(client, list(waiting))
        live = set(cluster_workers(client))
    except Exception:  # noqa: BLE001 — an unanswered question: keep waiting, ask again later
        return {}
    out: dict[Future, str | None] = {}
    for key, state in states.items():
        worker = sent[waiting[key]].worker
        if worker is not None and worker not in live:  # waiting for its lost models, or for no worker
            state = "no-worker"
        if state in ("erred", "no-worker", None):
            out[waiting[key]] = state
    return out
