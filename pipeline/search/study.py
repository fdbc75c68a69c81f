"""The Optuna study in RDB storage, with an in-memory mirror for the sampler.

The study lives in RDB storage (SQLite by default), the record of truth. TPE
reads every trial at every suggestion, which through SQLAlchemy costs ~40 ms
per trial (measured: 34 ms ask + 8 ms tell on SQLite against 3 ms in memory),
more than the fits themselves. So :class:`TrialStore` keeps an in-memory
mirror of the study for the sampler and writes each trial through to the RDB
storage: one transaction when it starts (RUNNING, with its parameters), one
when it ends, on Optuna's own tables (:mod:`.trial_sql`: 1 ms per trial,
against 6 ms through Optuna's storage API, which remains the fallback).

Writing a result to the study (:meth:`TrialStore.record`) and teaching it to
the sampler (:meth:`TrialStore.teach`) are separate steps: the scheduler
records results as they arrive and teaches them in trial order, so that what
the sampler knows when it draws a trial does not depend on which worker
finished first.
"""

from __future__ import annotations

import datetime
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..candidate import Candidate
from ..config import SearchConfig
from ..errors import ConfigError, SweepError
from ..locks import sqlite_setup_lock
from ..ownership import DriverId, LeaseKeeper, is_stale
from ..sqlite_wal import wal_for_engine
from ._optuna_internals import (cached_trial_number, incremental_groups, rdb_engine, study_id, study_storage,
                                trial_id)
from .space import SearchSpace
from .trial_sql import trial_writer

if TYPE_CHECKING:
    from optuna import Study
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage, RDBStorage
    from optuna.trial import FrozenTrial, Trial

__all__ = ["OWNER_ATTR", "RETRY_OF_ATTR", "PendingTrial", "StaleTrial", "TrialStore", "open_storage"]

# Keys regsweep keeps in the study (trial and study system attributes).
OWNER_ATTR = "regsweep:driver"
RETRY_OF_ATTR = "regsweep:retry_of"
_LEASE_PREFIX = "regsweep:lease:"
_DEPUTY_PREFIX = "regsweep:deputy:"


def _sampler(seed: int) -> BaseSampler:
    import optuna

    with warnings.catch_warnings():
        # `group` (conditional search spaces for multivariate TPE) is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return incremental_groups(optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        ))


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def check_storage(url: str, timeout_s: float = 3.0) -> None:
    """Fail in one line, naming ``search.storage``, before the cluster starts: a SQLite file whose directory
    does not exist (the lock file beside it failed with a traceback), or a database server that does not
    answer on its port (SQLAlchemy's 54-line traceback, after the workers had started)."""
    import os
    import socket
    from urllib.parse import urlsplit

    from ..sqlite_wal import sqlite_path

    file = sqlite_path(url)
    if file is not None:
        folder = os.path.dirname(file) or "."
        if not os.path.isdir(folder):
            raise ConfigError(f"search.storage {url!r}: directory {folder!r} does not exist; create it first.")
        return
    parts = urlsplit(url)
    dialect = parts.scheme.split("+", 1)[0].lower()
    if dialect not in _DEFAULT_PORTS or not parts.hostname or parts.hostname.startswith("/"):
        return  # a Unix socket, or a database this check does not know: its own errors say what is wrong
    port = parts.port or _DEFAULT_PORTS[dialect]
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        shown = f"{parts.scheme}://{parts.hostname}:{port}{parts.path}"
        raise SweepError(f"search.storage {shown} is unreachable ({e.strerror or e}); start the database, or set "
                         "search.storage to a local file such as sqlite:///regsweep-optuna.db.") from None


def _abandoned_in(attrs: Mapping[str, Any], owner: str | None) -> bool:
    """:meth:`TrialStore.abandoned`, read from the study's attributes ``attrs``."""
    lease = attrs.get(f"{_LEASE_PREFIX}{owner}")
    deputy = attrs.get(f"{_DEPUTY_PREFIX}{owner}")
    return is_stale(owner, float(lease) if isinstance(lease, int | float) else None,
                    deputy=deputy if isinstance(deputy, str) else None)


def open_storage(url: str) -> RDBStorage:
    """Optuna RDB storage; SQLite files in WAL mode (:mod:`pipeline.sqlite_wal`)."""
    import optuna

    storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
    wal_for_engine(storage.engine)
    return storage


@dataclass
class PendingTrial:
    """A trial in flight: its mirror trial, its RDB id and number, its candidate, when it was asked."""

    mirror: Trial
    trial_id: int
    candidate: Candidate
    start: float


@dataclass(frozen=True)
class StaleTrial:
    """A trial left RUNNING by a driver that died, now marked FAIL."""

    number: int
    params: dict[str, object]
    retried: bool  # its parameters are queued to be tried again (once: a retry is not retried)


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
            self.study: Study = optuna.create_study(
                storage=open_storage(cfg.storage), study_name=cfg.study_name, direction="minimize",
                load_if_exists=True,
            )
        self._storage: BaseStorage = study_storage(self.study)
        self._engine = rdb_engine(self._storage)
        self._study_id = study_id(self.study)
        self.driver = DriverId.current()
        self.seconds = 0.0  # driver time in ask/tell (sampler + RDB writes), for the summary's timings
        _check_penalties(self.study.get_trials(deepcopy=False), cfg)  # before anything is written
        self.stale = _fail_stale_trials(self)
        trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)]
        self._writer = trial_writer(self._engine, self._study_id)  # None: Optuna's API writes them
        if self._writer is not None:
            self._writer.check_distributions({}, existing=trials)
        # A resumed study must not replay the random start-up draws of the first run: the
        # sampler's seed moves with the number of trials already there (still reproducible).
        self.mirror = optuna.create_study(direction="minimize", sampler=_sampler(cfg.seed + len(trials)))
        self.mirror.add_trials(finished)
        self._in_mirror = {trial_id(t) for t in finished}  # RDB ids the sampler knows, own trials included
        self._complete_known = sum(t.state == TrialState.COMPLETE for t in finished)  # + own recorded since
        for st in self.stale:
            if st.retried:
                self.mirror.enqueue_trial(st.params, user_attrs={RETRY_OF_ATTR: st.number})

    # ------------------------------------------------------------ study attributes
    def study_attrs(self) -> dict[str, Any]:
        """The study's system attributes (leases, and whatever the layers above keep there)."""
        return dict(self._storage.get_study_system_attrs(self._study_id))

    def set_study_attr(self, key: str, value: Any) -> None:
        self._storage.set_study_system_attr(self._study_id, key, value)

    def abandoned(self, owner: str | None) -> bool:
        """Whether ``owner``'s RUNNING trials and runs are abandoned: the driver is gone (its process, or
        its lease) and so is the deputy it handed its last child runs to (:meth:`record_deputy`)."""
        return _abandoned_in(self.study_attrs() if owner else {}, owner)

    def record_deputy(self, deputy: str) -> None:
        """Record the process that writes this driver's last child runs after it ends (its MLflow process):
        until that process exits, later drivers leave those runs and trials to it (:meth:`abandoned`)."""
        self.set_study_attr(f"{_DEPUTY_PREFIX}{self.driver}", deputy)

    def deputies_gone(self) -> list[str]:
        """Drivers whose deputy (:meth:`record_deputy`) has exited, as they have: whether it wrote every run
        it was left is known only to MLflow, so the next sync looks (and then :meth:`forget_deputies`)."""
        attrs = self.study_attrs()
        owners = [key[len(_DEPUTY_PREFIX):] for key, value in attrs.items()
                  if key.startswith(_DEPUTY_PREFIX) and isinstance(value, str)]
        return [owner for owner in owners if owner != str(self.driver) and _abandoned_in(attrs, owner)]

    def forget_deputies(self, owners: Iterable[str]) -> None:
        """Clear the deputies of ``owners`` once MLflow was brought in step with what they left (a key
        cannot be removed from a study: its value becomes null)."""
        for owner in owners:
            self.set_study_attr(f"{_DEPUTY_PREFIX}{owner}", None)

    def others_at_work(self) -> list[str]:
        """Other drivers whose lease on this study is live (:func:`~pipeline.ownership.is_stale` says not)."""
        attrs = self.study_attrs()
        return [key[len(_LEASE_PREFIX):] for key, value in attrs.items()
                if key.startswith(_LEASE_PREFIX) and key != f"{_LEASE_PREFIX}{self.driver}"
                and isinstance(value, int | float) and not is_stale(key[len(_LEASE_PREFIX):], float(value))]

    def claim(self) -> LeaseKeeper:
        """The lease keeper to run while this driver works on the study."""
        key = f"{_LEASE_PREFIX}{self.driver}"
        return LeaseKeeper(lambda now: self.set_study_attr(key, now))

    # ------------------------------------------------------------ counting
    def has_trials(self) -> bool:
        """Whether the study holds any trial, in any state, by one query (not loading them)."""
        import sqlalchemy

        with self._engine.connect() as con:
            return con.execute(sqlalchemy.text("SELECT 1 FROM trials WHERE study_id = :sid LIMIT 1"),
                               {"sid": self._study_id}).first() is not None

    def n_complete(self) -> int:
        """COMPLETE trials in the study, by one COUNT query (Optuna's ``get_n_trials`` loads every trial)."""
        import sqlalchemy
        from optuna.trial import TrialState

        with self._engine.connect() as con:
            return int(con.execute(
                sqlalchemy.text("SELECT COUNT(*) FROM trials WHERE study_id = :sid AND state = :state"),
                {"sid": self._study_id, "state": TrialState.COMPLETE.name},
            ).scalar_one())

    def absorb_completed_elsewhere(self, n_complete: int) -> int:
        """Give the sampler the trials other drivers completed since; returns how many it got.

        ``n_complete`` is the study's COMPLETE count now (:meth:`n_complete`).
        While it equals what this store knows (its own and those read
        before), as with one driver always, nothing is read; otherwise the
        new trials are read from the study and added to the mirror, so that
        several drivers sharing a study learn from each other's results.
        """
        from optuna.trial import TrialState

        if n_complete <= self._complete_known:
            return 0
        new = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if trial_id(t) not in self._in_mirror]
        self.mirror.add_trials(new)
        self._in_mirror.update(trial_id(t) for t in new)
        self._complete_known += len(new)
        return len(new)

    # ------------------------------------------------------------ trials
    def enqueue(self, params: Mapping[str, Any]) -> None:
        """Have the sampler propose ``params`` next (a warm start); a duplicate of a queued one is skipped."""
        self.mirror.enqueue_trial(dict(params), skip_if_exists=True)

    def ask(self, space: SearchSpace) -> PendingTrial:
        """Sample on the mirror, then insert the RUNNING trial into the RDB study."""
        t0 = time.perf_counter()
        mirror = self.mirror.ask()
        cand = space.suggest(mirror)
        owner = self._ownership(mirror)
        if self._writer is not None:
            tid, number = self._writer.insert_running(mirror.params, mirror.distributions, owner,
                                                      start=datetime.datetime.now())
        else:
            tid, number = self._insert_through_api(mirror, owner)
        self._in_mirror.add(tid)
        self.seconds += time.perf_counter() - t0
        return PendingTrial(mirror, tid, replace(cand, trial=number), time.time())

    def _insert_through_api(self, mirror: Trial, owner: dict[str, object]) -> tuple[int, int]:
        """Optuna's API, when :mod:`.trial_sql` cannot write its tables (returns id and number)."""
        from optuna.trial import FrozenTrial, TrialState

        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
            datetime_complete=None, params=dict(mirror.params), distributions=dict(mirror.distributions),
            user_attrs={}, system_attrs=owner, intermediate_values={}, trial_id=-1,
        )
        tid = self._storage.create_new_trial(self._study_id, template_trial=template)
        number = cached_trial_number(self._storage, tid)
        return tid, number if number is not None else self._storage.get_trial_number_from_id(tid)

    def _ownership(self, mirror: Trial) -> dict[str, object]:
        attrs: dict[str, object] = {OWNER_ATTR: str(self.driver)}
        retry_of = mirror.user_attrs.get(RETRY_OF_ATTR)
        if retry_of is not None:
            attrs[RETRY_OF_ATTR] = retry_of
        return attrs

    def record(self, pending: PendingTrial, value: float, user_attrs: Mapping[str, object]) -> None:
        """Write the trial COMPLETE with ``value`` and ``user_attrs`` to the study (not yet to the sampler)."""
        from optuna.trial import TrialState

        t0 = time.perf_counter()
        if self._writer is not None:
            self._writer.complete(pending.trial_id, value, user_attrs)
        else:
            for key, v in user_attrs.items():
                self._storage.set_trial_user_attr(pending.trial_id, key, v)
            self._storage.set_trial_state_values(pending.trial_id, TrialState.COMPLETE, [value])
        self._complete_known += 1
        self.seconds += time.perf_counter() - t0

    def record_failure(self, pending: PendingTrial, reason: str) -> None:
        """Write the trial FAIL, with its reason, to the study (not yet to the sampler)."""
        from optuna.trial import TrialState

        self._storage.set_trial_system_attr(pending.trial_id, "fail_reason", reason[:2000])
        self._storage.set_trial_state_values(pending.trial_id, TrialState.FAIL)

    def teach(self, pending: PendingTrial, value: float | None) -> None:
        """Tell the sampler the trial's outcome: its value, or None for a failure."""
        from optuna.trial import TrialState

        t0 = time.perf_counter()
        if value is None:
            self.mirror.tell(pending.mirror, state=TrialState.FAIL)
        else:
            self.mirror.tell(pending.mirror, value)
        self.seconds += time.perf_counter() - t0


def _fail_stale_trials(store: TrialStore) -> list[StaleTrial]:
    """Mark FAIL the RUNNING trials whose driver is gone; queue each one's parameters once."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    stale = []
    storage = study_storage(store.study)
    for t in store.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if not store.abandoned(owner):
            continue
        try:
            storage.set_trial_system_attr(
                trial_id(t), "fail_reason", f"stale: driver {owner} stopped before this trial finished"
            )
            storage.set_trial_state_values(trial_id(t), TrialState.FAIL)
        except UpdateFinishedTrialError:  # finished meanwhile by a driver that was alive after all
            continue
        stale.append(StaleTrial(t.number, dict(t.params), retried=RETRY_OF_ATTR not in t.system_attrs))
    return stale


def _check_penalties(trials: Sequence[FrozenTrial], cfg: SearchConfig) -> None:
    """Refuse, naming the fix, a penalty list other than the one the study's trials were drawn from.

    Optuna keeps one categorical distribution per parameter and study: other
    choices, or the same in another order, cannot be asked in the same study.
    """
    dist: Any = next((t.distributions["penalty"] for t in trials if "penalty" in t.distributions), None)
    if dist is not None and list(dist.choices) != list(cfg.penalties):
        raise ConfigError(
            f"search.penalties: study {cfg.study_name!r} (search.storage) was searched over "
            f"penalties {list(dist.choices)} (in this order), this config asks for {list(cfg.penalties)}. "
            f"Set search.penalties to {list(dist.choices)} to go on with that study, or choose a new "
            "search.study_name to start another one."
        )
