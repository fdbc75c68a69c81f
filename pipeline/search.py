"""The Optuna study and the ask/tell loop that keeps the cluster busy.

The driver owns the study: it asks for trials, submits their fold fits to
Dask and tells each trial exactly once when all its folds are back. Dask
tasks never touch Optuna. Several trials are in flight at once; their
candidates are batched per fold so that one task fits a few candidates on one
fold's Gram (a fit at p = 100 takes about a millisecond, a Dask round trip
a few), and every task runs on the worker that holds its fold.

The study lives in RDB storage (SQLite by default), the record of truth. TPE
reads every trial at every suggestion, which through SQLAlchemy costs ~40 ms
per trial (measured: 34 ms ask + 8 ms tell on SQLite against 3 ms in memory),
more than the fits themselves. So :class:`TrialStore` keeps an in-memory
mirror of the study for the sampler and writes each trial through to the RDB
storage: one transaction when it starts (RUNNING, with its parameters), one
when it ends, on Optuna's own tables (:mod:`pipeline.trial_sql`: 1 ms per
trial, against 6 ms through Optuna's storage API, which remains the fallback).
"""

from __future__ import annotations

import contextlib
import math
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import SearchConfig
from .errors import ConfigError, SweepError
from .evaluate import Candidate, FoldScore, score_folds
from .locks import sqlite_setup_lock
from .ownership import DriverId, LeaseKeeper, is_stale
from .sqlite_wal import wal_for_engine
from .trial_sql import trial_writer

__all__ = [
    "FoldSlot",
    "PendingTrial",
    "SearchSpace",
    "StaleTrial",
    "TrialResult",
    "TrialStore",
    "open_storage",
    "run_trials",
    "summarize_scores",
]


@dataclass(frozen=True)
class SearchSpace:
    """Penalties and log-uniform λ ranges (resolved: no ``auto`` left)."""

    penalties: tuple[str, ...]
    lambda1: tuple[float, float]
    lambda2: tuple[float, float]

    def suggest(self, trial: object) -> tuple[str, float, float]:
        """Draw one candidate; l1 trials carry no λ2 and l2 trials no λ1 (conditional space)."""
        penalty = trial.suggest_categorical("penalty", list(self.penalties))  # type: ignore[attr-defined]
        lam1 = lam2 = 0.0
        if penalty in ("l1", "elasticnet"):
            lam1 = trial.suggest_float("lambda1", *self.lambda1, log=True)  # type: ignore[attr-defined]
        if penalty in ("l2", "elasticnet"):
            lam2 = trial.suggest_float("lambda2", *self.lambda2, log=True)  # type: ignore[attr-defined]
        return penalty, lam1, lam2

    def as_dict(self) -> dict[str, object]:
        return {"penalties": list(self.penalties), "lambda1": list(self.lambda1), "lambda2": list(self.lambda2)}


@dataclass(frozen=True)
class TrialResult:
    """A trial's cross-validated scores, aggregated over folds."""

    number: int
    candidate: Candidate
    cv_mse: float
    cv_mse_se: float
    fold_mse: tuple[float, ...]
    train_mse: float
    cv_r2: float
    n_nonzero: float
    n_iter: int
    converged: bool
    fit_seconds: float
    start: float
    end: float

    def metrics(self) -> dict[str, float]:
        return {
            "cv_mse": self.cv_mse,
            "cv_mse_se": self.cv_mse_se,
            "train_mse": self.train_mse,
            "cv_r2": self.cv_r2,
            "n_nonzero": self.n_nonzero,
            "n_iter": float(self.n_iter),
            "converged": float(self.converged),
            "fit_seconds": self.fit_seconds,
        }

    def attrs(self) -> dict[str, object]:
        """What the study keeps of the trial besides its value (user attribute ``cv``): every metric
        and the per-fold errors, so MLflow can be re-synced from the study alone."""
        out: dict[str, object] = {k: v for k, v in self.metrics().items() if k != "cv_mse"}
        out["fold_mse"] = list(self.fold_mse)
        return out


def summarize_scores(candidate: Candidate, scores: Sequence[FoldScore], start: float, end: float) -> TrialResult:
    """Mean held-out MSE over folds (the objective), its standard error and the rest."""
    scores = sorted(scores, key=lambda s: s.fold)
    mse = np.array([s.heldout_mse for s in scores])
    k = mse.size
    return TrialResult(
        number=candidate.trial,
        candidate=candidate,
        cv_mse=float(mse.mean()),
        cv_mse_se=float(mse.std(ddof=1) / math.sqrt(k)) if k > 1 else float("nan"),
        fold_mse=tuple(float(v) for v in mse),
        train_mse=float(np.mean([s.train_mse for s in scores])),
        cv_r2=float(np.mean([s.heldout_r2 for s in scores])),
        n_nonzero=float(np.mean([s.n_nonzero for s in scores])),
        n_iter=int(sum(s.n_iter for s in scores)),
        converged=all(s.converged for s in scores),
        fit_seconds=float(sum(s.seconds for s in scores)),
        start=start,
        end=end,
    )


def _sampler(seed: int) -> object:
    import optuna

    with warnings.catch_warnings():
        # `group` (conditional search spaces for multivariate TPE) is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        )


def open_storage(url: str) -> object:
    """Optuna RDB storage; SQLite files in WAL mode (:mod:`pipeline.sqlite_wal`)."""
    import optuna

    storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
    wal_for_engine(storage.engine)
    return storage


@dataclass
class PendingTrial:
    """A trial in flight: its mirror trial, its RDB id and number, its candidate."""

    mirror: object
    trial_id: int
    candidate: Candidate
    start: float


@dataclass(frozen=True)
class StaleTrial:
    """A trial left RUNNING by a driver that died, now marked FAIL."""

    number: int
    params: dict[str, object]
    retried: bool  # its parameters are queued to be tried again (once: a retry is not retried)


# Keys regsweep keeps in the study (trial and study system attributes).
OWNER_ATTR = "regsweep:driver"
PARENT_RUN_ATTR = "regsweep:parent_run"  # per trial, as written before parent runs were kept per driver
_PARENT_OF_PREFIX = "regsweep:parent_run:"  # study attribute: a driver's MLflow parent run
RETRY_OF_ATTR = "regsweep:retry_of"
LAST_PARENT_ATTR = "regsweep:last_parent_run"
_LEASE_PREFIX = "regsweep:lease:"


class TrialStore:
    """The Optuna study in RDB storage, with an in-memory mirror for the sampler.

    Trial numbers are those of the RDB study (what users see in Optuna and
    MLflow); the mirror only decides parameters. Every trial records the
    driver that asked it (:mod:`pipeline.ownership`); on opening, RUNNING
    trials of dead drivers are marked FAIL and their parameters queued once
    more (:attr:`stale`).
    """

    def __init__(self, cfg: SearchConfig) -> None:
        import optuna
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with sqlite_setup_lock(cfg.storage):
            self.study = optuna.create_study(
                storage=open_storage(cfg.storage), study_name=cfg.study_name, direction="minimize",
                load_if_exists=True,
            )
        self._storage = self.study._storage
        self._engine = getattr(self._storage, "_backend", self._storage).engine  # RDB under Optuna's cache
        self._study_id = self.study._study_id
        self.driver = DriverId.current()
        self.parent_run: str | None = None
        self.seconds = 0.0  # driver time in ask/tell (sampler + RDB writes), for the summary's timings
        _check_penalties(self.study.get_trials(deepcopy=False), cfg)  # before anything is written
        self.stale = self._fail_stale_trials()
        trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
        self._writer = trial_writer(self._engine, self._study_id)  # None: Optuna's API writes them
        if self._writer is not None:
            self._writer.check_distributions({}, existing=trials)
        # A resumed study must not replay the random start-up draws of the first run: the
        # sampler's seed moves with the number of trials already there (still reproducible).
        self.mirror = optuna.create_study(direction="minimize", sampler=_sampler(cfg.seed + len(self.study.trials)))
        self.mirror.add_trials(finished)
        self._in_mirror = {t._trial_id for t in finished}  # RDB ids the sampler knows, own trials included
        self._complete_in_mirror = sum(t.state == TrialState.COMPLETE for t in finished)
        for st in self.stale:
            if st.retried:
                self.mirror.enqueue_trial(st.params, user_attrs={RETRY_OF_ATTR: st.number})

    # ------------------------------------------------------------ ownership
    def _fail_stale_trials(self) -> list[StaleTrial]:
        """Mark FAIL the RUNNING trials whose driver is gone; queue each one's parameters once."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        stale = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(OWNER_ATTR)
            if not is_stale(owner, self.lease_of(owner)):
                continue
            try:
                self._storage.set_trial_system_attr(
                    t._trial_id, "fail_reason", f"stale: driver {owner} stopped before this trial finished"
                )
                self._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # finished meanwhile by a driver that was alive after all
                continue
            stale.append(StaleTrial(t.number, dict(t.params), retried=RETRY_OF_ATTR not in t.system_attrs))
        return stale

    def lease_of(self, driver: str | None) -> float | None:
        """When ``driver`` last renewed its lease on this study (epoch seconds), if ever."""
        if not driver:
            return None
        value = self._storage.get_study_system_attrs(self._study_id).get(f"{_LEASE_PREFIX}{driver}")
        return float(value) if isinstance(value, int | float) else None

    def previous_parent_run(self) -> str | None:
        """The MLflow parent run of the last driver that worked on this study, if any."""
        run = self._storage.get_study_system_attrs(self._study_id).get(LAST_PARENT_ATTR)
        return str(run) if run else None

    def record_parent(self, parent_run: str) -> None:
        """This driver's MLflow parent run, remembered by the study (its trials name the driver).

        Kept once per driver rather than on every trial: a trial attribute
        costs a SELECT and an upsert inside the trial's insert (measured: 0.3 s
        of a 100-trial sweep).
        """
        self.parent_run = parent_run
        self._storage.set_study_system_attr(self._study_id, f"{_PARENT_OF_PREFIX}{self.driver}", parent_run)
        self._storage.set_study_system_attr(self._study_id, LAST_PARENT_ATTR, parent_run)

    def parent_of(self) -> Callable[[Any], str | None]:
        """A function giving a finished trial's MLflow parent run (its driver's), read from the study now."""
        attrs = self._storage.get_study_system_attrs(self._study_id)
        parents = {k[len(_PARENT_OF_PREFIX):]: v for k, v in attrs.items() if k.startswith(_PARENT_OF_PREFIX)}

        def parent(trial: Any) -> str | None:
            legacy = trial.system_attrs.get(PARENT_RUN_ATTR)
            return legacy or parents.get(trial.system_attrs.get(OWNER_ATTR))

        return parent

    def claim(self) -> LeaseKeeper:
        """The lease keeper to run while this driver works on the study."""
        key = f"{_LEASE_PREFIX}{self.driver}"
        return LeaseKeeper(lambda now: self._storage.set_study_system_attr(self._study_id, key, now))

    def n_complete(self) -> int:
        from optuna.trial import TrialState

        # one COUNT query (Optuna's get_n_trials loads every trial of the study)
        import sqlalchemy

        with self._engine.connect() as con:
            return int(con.execute(
                sqlalchemy.text("SELECT COUNT(*) FROM trials WHERE study_id = :sid AND state = :state"),
                {"sid": self._study_id, "state": TrialState.COMPLETE.name},
            ).scalar_one())

    def absorb_completed_elsewhere(self, n_complete: int) -> int:
        """Give the sampler the trials other drivers completed since; returns how many it got.

        ``n_complete`` is the study's COMPLETE count now (:meth:`n_complete`).
        While it equals what the sampler knows, as with one driver always,
        nothing is read; otherwise the new trials are read from the study and
        added to the mirror, so that several drivers sharing a study learn
        from each other's results.
        """
        from optuna.trial import TrialState

        if n_complete <= self._complete_in_mirror:
            return 0
        new = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if t._trial_id not in self._in_mirror]
        self.mirror.add_trials(new)
        self._in_mirror.update(t._trial_id for t in new)
        self._complete_in_mirror += len(new)
        return len(new)

    def ask(self, space: SearchSpace) -> PendingTrial:
        """Sample on the mirror, then insert the RUNNING trial into the RDB study."""
        import datetime

        from optuna.trial import FrozenTrial, TrialState

        t0 = time.perf_counter()
        mirror = self.mirror.ask()
        penalty, lam1, lam2 = space.suggest(mirror)
        if self._writer is not None:
            trial_id, number = self._writer.insert_running(
                mirror.params, mirror.distributions, self._ownership(mirror), start=datetime.datetime.now()
            )
        else:
            template = FrozenTrial(
                number=-1, state=TrialState.RUNNING, value=None,
                datetime_start=datetime.datetime.now(), datetime_complete=None,
                params=dict(mirror.params), distributions=dict(mirror.distributions),
                user_attrs={}, system_attrs=self._ownership(mirror), intermediate_values={}, trial_id=-1,
            )
            trial_id = self._storage.create_new_trial(self._study_id, template_trial=template)
            # Optuna's cached storage knows the new trial's number; asking the RDB again costs a
            # SELECT of the whole trial (~6 ms) per trial. Fall back to it if the cache is not there.
            cached = getattr(self._storage, "_trial_id_to_study_id_and_number", {}).get(trial_id)
            number = cached[1] if cached else self._storage.get_trial_number_from_id(trial_id)
        self._in_mirror.add(trial_id)
        self.seconds += time.perf_counter() - t0
        return PendingTrial(mirror, trial_id, Candidate(number, penalty, lam1, lam2), time.time())

    def _ownership(self, mirror: object) -> dict[str, object]:
        attrs: dict[str, object] = {OWNER_ATTR: str(self.driver)}
        retry_of = mirror.user_attrs.get(RETRY_OF_ATTR)  # type: ignore[attr-defined]
        if retry_of is not None:
            attrs[RETRY_OF_ATTR] = retry_of
        return attrs

    def tell(self, pending: PendingTrial, value: float, user_attrs: dict[str, object]) -> None:
        from optuna.trial import TrialState

        t0 = time.perf_counter()
        if self._writer is not None:
            self._writer.complete(pending.trial_id, value, user_attrs)
        else:
            for key, v in user_attrs.items():
                self._storage.set_trial_user_attr(pending.trial_id, key, v)
            self._storage.set_trial_state_values(pending.trial_id, TrialState.COMPLETE, [value])
        self.mirror.tell(pending.mirror, value)
        self._complete_in_mirror += 1
        self.seconds += time.perf_counter() - t0

    def fail(self, pending: PendingTrial, reason: str) -> None:
        from optuna.trial import TrialState

        self._storage.set_trial_system_attr(pending.trial_id, "fail_reason", reason[:2000])
        self._storage.set_trial_state_values(pending.trial_id, TrialState.FAIL)
        self.mirror.tell(pending.mirror, state=TrialState.FAIL)


def _check_penalties(trials: Sequence[Any], cfg: SearchConfig) -> None:
    """Refuse, naming the fix, a penalty list other than the one the study's trials were drawn from.

    Optuna keeps one categorical distribution per parameter and study: other
    choices, or the same in another order, cannot be asked in the same study.
    """
    dist = next((t.distributions["penalty"] for t in trials if "penalty" in t.distributions), None)
    if dist is not None and list(dist.choices) != list(cfg.penalties):
        raise ConfigError(
            f"search.penalties: study {cfg.study_name!r} (search.storage) was searched over "
            f"penalties {list(dist.choices)} (in this order), this config asks for {list(cfg.penalties)}. "
            f"Set search.penalties to {list(dist.choices)} to go on with that study, or choose a new "
            "search.study_name to start another one."
        )


_MAX_REBUILDS = 5
_CONNECTION_LOST = "scheduler-connection-lost"  # distributed's reason for cancelling every future


def _cancel_reason(fut: object) -> str:
    """Why Dask cancelled a future ('' if it was not cancelled or says nothing)."""
    exc = getattr(getattr(fut, "_state", None), "exception", None)
    return str(getattr(exc, "reason", "") or "")


def _scheduler_lost(client: object) -> Exception:
    from .cluster import ClusterError

    address = getattr(getattr(client, "scheduler", None), "address", "the scheduler")
    return ClusterError(
        f"lost the connection to the Dask scheduler at {address}; completed trials are kept in the study. "
        "Run the same command again once a scheduler is up (with cluster.address pointing at it) to finish the study."
    )


@dataclass
class _Batch:
    trials: list[PendingTrial]
    scores: dict[int, list[FoldScore]] = field(default_factory=dict)  # fold -> scores
    failed: str | None = None
    killed_worker: bool = False  # failed because workers died running it (KilledWorker): blame unsure
    alone: bool = False  # sent with nothing else on the cluster: a worker's death is then its own doing


@dataclass(frozen=True)
class FoldSlot:
    """Fold models living on one worker: a future of ``list[FoldModel]`` covering ``folds``."""

    folds: tuple[int, ...]
    models: object  # distributed.Future
    worker: str | None


def run_trials(
    client: object,
    store: TrialStore,
    slots: Sequence[FoldSlot],
    k: int,
    space: SearchSpace,
    n_trials: int,
    *,
    in_flight: int,
    threads: int,
    tol: float,
    on_result: Callable[[TrialResult], None],
    on_failure: Callable[[int, Candidate, str], None],
    on_abort: Callable[[int, Candidate, str], None] | None = None,
    rebuild: Callable[[], Sequence[FoldSlot]] | None = None,
) -> int:
    """Ask/tell until the study holds ``n_trials`` COMPLETE trials; returns how many this call asked.

    Each batch of candidates is scored on every fold. If a slot holds all K
    folds (small Grams, replicated on every worker), a batch is one task sent
    to the least busy such slot; otherwise one task per slot (per fold), each
    run by Dask on the worker holding its fold (elsewhere if that worker dies).

    A batch whose task fails (an exception, or Dask giving up after the task
    killed several workers: ``KilledWorker``) is split and each of its trials
    tried alone once, so one poisoned candidate fails only its own trial.
    ``KilledWorker`` does not say which task killed the worker: Dask blames
    every task the dead worker held, queued ones included. So a trial that
    failed that way is tried once more with nothing else on the cluster, and
    fails only if it kills a worker there too.
    Dask may run a task twice; results are keyed by (batch, fold) and a trial
    is told exactly once.

    Fold models live only in worker memory. When every copy is lost (workers
    died, and with them the data pass they came from), Dask cannot recompute
    them and cancels what depends on them: ``rebuild()`` then redoes the data
    pass and places new fold models, and the cancelled batches are sent again
    (not failed). Losing the scheduler itself raises :class:`ClusterError`. If the loop stops early (an error, SIGINT/SIGTERM),
    the trials in flight are marked FAIL and reported to ``on_abort``.
    """
    from distributed import KilledWorker, as_completed

    done = store.n_complete()
    batch_size = max(1, math.ceil(in_flight / (2 * threads)))
    max_batches = max(2, 2 * threads)
    whole = [i for i, sl in enumerate(slots) if len(sl.folds) == k]
    load = dict.fromkeys(range(len(slots)), 0)
    rebuilds = 0  # also the generation of `slots`: futures sent before a rebuild name old slots
    pending: dict[int, _Batch] = {}
    owner: dict[object, tuple[int, int, tuple[int, ...], int]] = {}  # future -> (batch, slot, folds, generation)
    retry: list[_Batch] = []  # batches to send again: trials split from a failed batch, or cancelled ones
    run = uuid.uuid4().hex[:12]  # unique task keys even with several drivers on one scheduler
    ac = as_completed(loop=client.loop)  # type: ignore[attr-defined]
    asked = 0
    next_batch = 0
    trials_in_flight = 0
    failures_in_a_row = 0
    last_reason = ""
    max_failures = max(10, 2 * in_flight)  # a deterministic fault must not spin forever

    def usable_slots() -> None:
        """Rebuild the fold models if a copy of them is gone for good."""
        nonlocal slots, whole, load, rebuilds
        if not any(sl.models.status in ("cancelled", "error") for sl in slots):  # type: ignore[attr-defined]
            return
        if any(_cancel_reason(sl.models) == _CONNECTION_LOST for sl in slots):
            raise _scheduler_lost(client)
        if rebuild is None or rebuilds >= _MAX_REBUILDS:
            raise SweepError(f"the fold models were lost {rebuilds + 1} times (workers keep dying); "
                             "check the workers' logs and memory limits.")
        rebuilds += 1
        slots = list(rebuild())
        whole = [i for i, sl in enumerate(slots) if len(sl.folds) == k]
        load = dict.fromkeys(range(len(slots)), 0)

    def submit(batch: _Batch, ask: int = 0) -> None:
        """Register ``batch`` (then ask ``ask`` new trials into it) and send it to the workers."""
        nonlocal next_batch, asked, trials_in_flight
        batch_id = next_batch
        next_batch += 1
        pending[batch_id] = batch  # first: if anything below raises, the trials are failed, not left RUNNING
        for _ in range(ask):
            batch.trials.append(store.ask(space))
            asked += 1
            trials_in_flight += 1
        usable_slots()
        cands = [t.candidate for t in batch.trials]
        targets = [min(whole, key=load.__getitem__)] if whole else range(len(slots))
        for i in targets:
            slot = slots[i]
            fut = client.submit(  # type: ignore[attr-defined]
                score_folds, slot.models, cands, tol,  # Dask runs it where slot.models is
                pure=False, key=f"score-{run}-b{batch_id}-s{i}",
            )
            owner[fut] = (batch_id, i, slot.folds, rebuilds)
            load[i] += 1
            ac.add(fut)

    def blocked() -> bool:
        """Whether nothing may be sent now: a batch runs alone, or one waits for the cluster to empty."""
        return any(b.alone for b in pending.values()) or (any(b.alone for b in retry) and bool(pending))

    try:
        while done < n_trials or pending or retry:  # trials already asked are always finished
            while retry and len(pending) < max_batches and not blocked():
                submit(retry[-1])  # registered in `pending` before it leaves `retry`
                retry.pop()
            if len(pending) < max_batches:  # other drivers may complete trials of this study too (~1 ms)
                done = max(done, store.n_complete())
                store.absorb_completed_elsewhere(done)
            while len(pending) < max_batches and done + trials_in_flight < n_trials and not blocked() and not retry:
                submit(_Batch(trials=[]), ask=min(batch_size, n_trials - done - trials_in_flight))
            if not pending:
                break
            fut = next(ac)
            batch_id, i, folds, generation = owner.pop(fut)
            if generation == rebuilds:
                load[i] -= 1
            batch = pending.get(batch_id)
            if batch is None or batch.failed:  # its other folds already failed it
                fut.release()
                continue
            if fut.status == "cancelled":  # a lost dependency (fold models), or the scheduler
                if _cancel_reason(fut) == _CONNECTION_LOST:
                    raise _scheduler_lost(client)
                del pending[batch_id]
                retry.append(_Batch(trials=batch.trials, alone=batch.alone))
                continue
            if fut.status == "error":
                exc = fut.exception()
                batch.failed = f"folds {list(folds)}: {type(exc).__name__}: {exc}"
                batch.killed_worker = isinstance(exc, KilledWorker)
                if batch.killed_worker and batch.alone:
                    batch.failed = f"its task killed the workers that ran it, alone on the cluster ({batch.failed})"
            else:
                for score in fut.result():
                    batch.scores.setdefault(score.fold, []).append(score)
            fut.release()
            if not batch.failed and len(batch.scores) < k:
                continue
            if batch.failed and (len(batch.trials) > 1 or (batch.killed_worker and not batch.alone)):
                # find the culprit: each trial alone, once; alone on the cluster if workers died
                retry.extend(_Batch(trials=[t], alone=batch.killed_worker) for t in batch.trials)
                del pending[batch_id]
                continue
            end = time.time()
            while batch.trials:  # each trial leaves the batch once told: an interruption fails only the rest
                pending_trial = batch.trials[0]
                cand = pending_trial.candidate
                scores = [s for fold_scores in batch.scores.values() for s in fold_scores if s.trial == cand.trial]
                result = None if batch.failed else summarize_scores(cand, scores, pending_trial.start, end)
                if result is None or not math.isfinite(result.cv_mse):
                    # a NaN value must not reach the study: Optuna cannot read a COMPLETE trial without one
                    reason = batch.failed or f"the cross-validated MSE is not finite ({result.cv_mse if result else ''})"
                    store.fail(pending_trial, reason)
                    batch.trials.pop(0)
                    trials_in_flight -= 1
                    on_failure(cand.trial, cand, reason)
                    failures_in_a_row += 1
                    last_reason = reason
                    continue
                failures_in_a_row = 0
                store.tell(pending_trial, result.cv_mse, {"cv": result.attrs()})
                batch.trials.pop(0)
                trials_in_flight -= 1
                done += 1
                on_result(result)
            del pending[batch_id]
            if failures_in_a_row >= max_failures:
                raise SweepError(
                    f"the last {failures_in_a_row} trials all failed; giving up instead of asking for more. "
                    f"Last reason: {last_reason}. Completed trials are kept in the study."
                )
    except BaseException as exc:  # the sweep stops: trials in flight must not stay RUNNING
        reason = f"sweep stopped before this trial finished ({type(exc).__name__}: {exc})"
        for batch in [*pending.values(), *retry]:
            for pending_trial in batch.trials:
                try:
                    store.fail(pending_trial, reason)
                except Exception:  # noqa: BLE001 — the storage may be what failed; the next start cleans up
                    continue
                if on_abort is not None:
                    on_abort(pending_trial.candidate.trial, pending_trial.candidate, reason)
        if not isinstance(exc, KeyboardInterrupt):  # stopping: closing the client releases them, without waiting
            with contextlib.suppress(Exception):  # the client may be closed already: keep the original error
                for fut in owner:
                    fut.cancel()
        raise
    return asked
