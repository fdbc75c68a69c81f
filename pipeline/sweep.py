"""``regsweep sweep``: one data pass, an Optuna search over Dask, MLflow tracking.

Order matters for failing early and for never losing results:

1. validate the config (done by the caller) and plan the data from metadata;
2. check MLflow is reachable; start the tracking process, which imports MLflow
   and creates the experiment once while the driver opens the study and
   3. starts or connects to the cluster;
4. the one data pass: per-block, per-fold statistics merged on the workers
   (it also checks every row: bad data stop the sweep here, before any
   MLflow run or Optuna trial exists);
5. fold problems placed on the workers; search bounds from the statistics;
   the MLflow parent run is asked for (the trials start without waiting for it);
6. the ask/tell loop, each finished trial told to Optuna and queued to MLflow;
7. the best trial refit on all data, logged and registered as ``candidate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cluster import check_scheduler, open_client, total_threads
from .columns import column_notes
from .config import SweepConfig
from .data import DataPlan, plan_data, read_example
from .errors import DataError
from .evaluate import (
    BlockPass,
    Candidate,
    block_pass,
    finish_pass,
    make_fold_models,
    merge_block_passes,
    search_bounds,
)
from .model import FittedModel
from .report import format_top_table, preload_plotting, trial_rows, write_plots, write_trials_csv
from .search import FoldSlot, SearchSpace, TrialResult, TrialStore, run_trials
from .solvers import GramProblem
from .signals import terminate_as_interrupt
from .sync import Publication, replay_missing, trial_params, unpublished_dir
from .tracking import TrialRecord, is_unreachable, preflight
from .tracking_service import TrackingService

__all__ = ["run_sweep"]

_MERGE_FAN_IN = 8
_OUTAGE_WAIT_S = 30.0  # at the end of a sweep, how long to wait for a tracking server that is away
_STOP_DEADLINE_S = 4.0  # when stopping (SIGTERM, error): the most spent writing the last child runs
_REPLICATE_BYTES = 256 * 2**20  # all fold models on every worker below this size


# ----------------------------------------------------------- worker tasks
def pass_summary(passes: BlockPass, feature_names: tuple[str, ...]) -> dict[str, Any]:
    """Row counts per fold, group count and a content fingerprint of the data (worker side)."""
    total = passes.total
    h = hashlib.sha256()
    for name, arr in sorted(total.to_arrays().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\x1f".join(feature_names).encode())
    return {
        "n_rows": total.n_rows,
        "fold_rows": [s.n_rows for s in passes.fold_stats],
        "fold_weight": [s.sum_w for s in passes.fold_stats],
        "n_groups": passes.n_groups,
        "fingerprint": h.hexdigest()[:16],
        **column_notes(total, feature_names, passes.n_dropped),
    }


def refit_best(
    passes: BlockPass, cand: Candidate, feature_names: tuple[str, ...], *, fit_intercept: bool, standardize: bool, tol: float
) -> FittedModel:
    """The best candidate refit on all rows, from the total statistics (worker side)."""
    problem = GramProblem.from_stats(passes.total, fit_intercept=fit_intercept, standardize=standardize)
    pen = cand.penalty_object()
    res = problem.solve(pen, tol=tol)
    return FittedModel(
        coef=res.coef, intercept=float(res.intercept), penalty=pen.name, lambda1=pen.lambda1,
        lambda2=pen.lambda2, standardize=standardize, fit_intercept=fit_intercept,
        x_mean=problem.x_center, x_scale=problem.x_scale, feature_names=feature_names,
        n_iter=res.n_iter, dual_gap=res.dual_gap, converged=res.converged,
    )


def example_rows(plan: DataPlan, passes: BlockPass, n: int = 5) -> bytes:
    """A few rows with the source's column types, for the model's signature, as Parquet bytes
    (worker side): the driver passes them on without importing pandas (0.3 s at its busiest moment)."""
    import io

    buf = io.BytesIO()
    read_example(plan, passes.integer_columns, n).to_parquet(buf, index=False)
    return buf.getvalue()


# ----------------------------------------------------------- orchestration
@dataclass
class _Timer:
    marks: dict[str, float]

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.marks[name] = round(now - since, 4)
        return now


def _same(value: Any) -> Any:
    return value


def _data_pass(client: Any, plan: DataPlan, k: int, seed: int) -> Any:
    run = uuid.uuid4().hex[:12]  # unique keys: several drivers may share one scheduler
    # A task, not scattered data: if every worker holding the plan dies, Dask recomputes
    # it (scattered data has no lineage, and the lost block passes could not be redone).
    plan_f = client.submit(_same, plan, pure=False, key=f"plan-{run}")
    futs = [client.submit(block_pass, plan_f, spec, k, seed, pure=False, key=f"block-{spec.index}-{run}")
            for spec in plan.blocks]
    while len(futs) > 1:
        futs = [client.submit(merge_block_passes, *futs[i : i + _MERGE_FAN_IN], fold_seed=seed, pure=False)
                for i in range(0, len(futs), _MERGE_FAN_IN)]
    return client.submit(finish_pass, futs[0], k, seed, pure=False)


def _place_fold_models(
    client: Any, passes: Any, k: int, p: int, fit_intercept: bool, standardize: bool
) -> list[FoldSlot]:
    """Put the fold models on the workers, where the trial tasks will find them.

    A fold model holds three p×p matrices. When all K of them fit in
    :data:`_REPLICATE_BYTES` every worker builds its own copy of all folds, and
    a batch of candidates is one task on any worker (one round trip instead of
    K: a round trip costs ~10 ms here, a fold fit at p = 100 a fraction of a
    millisecond). Larger Grams live once each, spread over the workers.

    Each model is built on its worker (a placement hint), then handed to an
    unrestricted key (:func:`_same` runs where the data is): Dask never
    reschedules a task restricted to workers that are all gone (it waits in
    ``no-worker`` even when the restriction is loose), and trial tasks go where
    their fold model is without being told.
    """
    workers = sorted(client.scheduler_info()["workers"])
    if 3 * k * p * p * 8 <= _REPLICATE_BYTES:
        groups = [(tuple(range(k)), w) for w in workers]
    else:
        groups = [((i,), workers[i % len(workers)]) for i in range(k)]
    slots = []
    for folds, w in groups:
        built = client.submit(make_fold_models, passes, list(folds), fit_intercept=fit_intercept,
                              standardize=standardize, workers=[w], allow_other_workers=True, pure=False)
        slots.append(FoldSlot(folds, client.submit(_same, built, pure=False), w))
    return slots


def _resolve_space(cfg: SweepConfig, bounds: dict[str, float]) -> SearchSpace:
    s = cfg.search
    lo1 = bounds["lambda1_low"] if s.lambda1.low == "auto" else float(s.lambda1.low)
    hi1 = bounds["lambda1_high"] if s.lambda1.high == "auto" else float(s.lambda1.high)
    lo2 = bounds["lambda2_low"] if s.lambda2.low == "auto" else float(s.lambda2.low)
    hi2 = bounds["lambda2_high"] if s.lambda2.high == "auto" else float(s.lambda2.high)
    for name, lo, hi in (("lambda1", lo1, hi1), ("lambda2", lo2, hi2)):
        if not (0 < lo < hi):
            raise DataError(
                f"search.{name}: the resolved range [{lo:.4g}, {hi:.4g}] is empty (an 'auto' bound comes "
                "from the data: λ1_max is 0 when the target is constant); set both bounds explicitly."
            )
    return SearchSpace(tuple(s.penalties), (lo1, hi1), (lo2, hi2))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def mlflow_ui_command(uri: str, experiment_id: str) -> str:
    """The command (or address) that shows these results in the MLflow UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/#/experiments/{experiment_id}"
    return (f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   "
            f"# then open http://127.0.0.1:5000/#/experiments/{experiment_id}")


def run_sweep(cfg: SweepConfig, *, echo: Callable[[str], None] = print, progress: bool | None = None) -> dict[str, Any]:
    """Run the sweep described by ``cfg``; return the summary (also what ``--summary-json`` writes).

    SIGTERM is handled like Ctrl-C: trials in flight are marked FAIL, the
    parent and their child runs end KILLED, and :class:`~pipeline.errors.Terminated`
    propagates (the CLI exits 143).
    """
    t0 = time.perf_counter()
    timer = _Timer({})
    preflight(cfg.tracking.uri)  # seconds, before any data is read, any cluster started, MLflow imported
    check_scheduler(cfg.cluster)
    plan = plan_data(cfg.data, cfg.folds)
    if plan.n_rows < cfg.folds.k:
        raise DataError(
            f"folds.k={cfg.folds.k} needs at least {cfg.folds.k} rows, but the data have {plan.n_rows}; lower folds.k."
        )
    store = TrialStore(cfg.search)
    # MLflow lives in a process of its own, which imports it and creates the experiment while the
    # cluster starts and the data pass runs; the trials do not wait for it (TrackingService, _ParentRun).
    # Forked after the study is open, it starts with SQLAlchemy and alembic imported (~0.4 s of CPU).
    tracker = TrackingService(cfg.tracking, cfg.search.study_name)
    status = "FAILED"
    try:
        t_cluster = timer.lap("setup", t0)
        with store.claim(), terminate_as_interrupt(), open_client(cfg.cluster) as client:
            try:
                summary = _sweep_on_cluster(cfg, client, plan, store, tracker, timer, t_cluster, echo, progress)
                status = "FINISHED"
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Terminated)
                status = "KILLED"
                raise
            finally:  # before the cluster closes: under SIGTERM the runs must be ended first, within seconds
                t_drain = time.perf_counter()
                _close_tracking(tracker, store, status)
                timer.marks["mlflow_drain"] = round(time.perf_counter() - t_drain, 4)
    finally:  # also when the cluster never started: a live writer would block this process's exit
        tracker.abandon_trial_logging()
    tracker.not_logged += [msg for n, msg in tracker.failed if n < 0]
    summary["stale_trials_failed"] = [st.number for st in store.stale]
    summary["trials_not_logged"] = sorted(n for n, _ in tracker.failed if n >= 0)
    summary["tracking_incomplete"] = list(tracker.not_logged)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    _print_outcome(summary, store, cfg, echo, tracker)
    return summary


def _close_tracking(tracker: TrackingService, store: TrialStore, status: str) -> None:
    """Flush the child runs, replay what an outage dropped if the server is back, end the parent run.

    Stopping (``status`` KILLED) waits at most a few seconds in all; a SIGTERM
    arriving during a normal drain still ends the parent run, as KILLED.
    """
    stop_by = time.monotonic() + _STOP_DEADLINE_S
    parent = tracker.settle_parent(_STOP_DEADLINE_S / 2)
    try:
        if status == "FINISHED":
            tracker.finish_trial_logging(timeout=_OUTAGE_WAIT_S + 10)
            if tracker.failed and tracker.reachable(wait=_OUTAGE_WAIT_S):
                tracker.failed.clear()  # the server came back: write what it missed now
                replay_missing(tracker, store)
                tracker.finish_trial_logging(timeout=_OUTAGE_WAIT_S + 10)
        else:
            tracker.finish_trial_logging(timeout=3, deadline=_STOP_DEADLINE_S)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if parent is not None:  # None: stopped before the data pass finished, no run was started
            try:  # stopping: within what is left of the deadline (else the next start closes it)
                tracker.end_run(parent, status,
                                deadline_s=None if status == "FINISHED" else max(0.5, stop_by - time.monotonic()))
            except Exception as e:  # noqa: BLE001 — the server may be gone; the next start closes it
                if status == "FINISHED":
                    tracker.not_logged.append(f"parent run status ({type(e).__name__})")
        tracker.abandon_trial_logging()


class _ParentRun:
    """The sweep's MLflow parent run, linked to the previous driver's, set up while the trials run.

    The tracking process needs 2–3 s from the start to import MLflow and open
    the store, about what the cluster start and a data pass of 10⁶ rows take;
    the trials need nothing from MLflow (their child runs queue up behind the
    parent run's creation). So the creation is sent and the trials start
    (with a tracking *server* they wait for it: see ``_sweep_on_cluster``).
    Once it is answered (looked at after every trial, never waited for) the
    parent is recorded in the study and the sweep's params are sent. After
    the last trial, :meth:`finish` closes what a dead driver left: its runs
    left RUNNING end KILLED, and the finished trials MLflow lacks (its
    unwritten child runs) are replayed from the study. An error (a deleted
    experiment) stops the sweep as soon as it is seen.
    """

    def __init__(self, cfg: SweepConfig, store: TrialStore, tracker: TrackingService, echo: Callable[[str], None],
                 params: dict[str, Any], tags: dict[str, str]) -> None:
        self.cfg, self.store, self.tracker, self.echo = cfg, store, tracker, echo
        self.params, self.tags = params, tags
        run_tags = {"regsweep.kind": "sweep", "regsweep.study": cfg.search.study_name}
        previous = store.previous_parent_run()
        if previous:
            run_tags["regsweep.resumed_from"] = previous
        self._created = tracker.send("start_parent", f"sweep-{cfg.search.study_name}", run_tags)
        self._logged: list[Any] = []
        self.run_id: str | None = None

    def poll(self) -> None:
        """Take the run once the tracking process has created it (never waits for it)."""
        if self.run_id is None and self._created.ready():
            self._take()

    def _take(self) -> None:
        self.tracker.experiment_id  # noqa: B018 — its own error (a deleted experiment) rather than the run's
        parent = self.run_id = self._created.result()
        self.tracker.use_parent(parent)
        self.store.record_parent(parent)
        self._logged = [self.tracker.send("log_params", parent, self.params),
                        self.tracker.send("set_tags", parent, self.tags)]

    def wait(self) -> str:
        """The run id, waiting for it if need be."""
        if self.run_id is None:
            self._take()
        assert self.run_id is not None
        return self.run_id

    def finish(self) -> None:
        """Check the params were logged; close what dead drivers left (after the model is logged:
        the answers wait behind every child run queued before them)."""
        self.wait()
        tracker, store, study = self.tracker, self.store, self.cfg.search.study_name
        # The server may have gone away meanwhile: a sweep does not need MLflow to go on (the study
        # is the record), and the next start or `regsweep sync-tracking` does what is missed.
        try:
            for call in self._logged:
                call.result()
        except Exception as e:  # noqa: BLE001
            if not is_unreachable(e):
                raise
            tracker.not_logged.append("the sweep's config params and data fingerprint tag")
        closed: list[str] = []
        replayed = 0
        try:
            closed = tracker.close_stale_runs(study, store.lease_of)
            replayed = replay_missing(tracker, store, own=False)
        except Exception as e:  # noqa: BLE001
            if not is_unreachable(e):
                raise
            tracker.not_logged.append("ending a stopped driver's runs and replaying its child runs")
        if store.stale or closed or replayed:
            retried = sum(st.retried for st in store.stale)
            self.echo(f"Resumed study {study!r}: {len(store.stale)} trials of a stopped driver marked FAIL "
                      f"({retried} queued again), {len(closed)} MLflow runs it left open ended KILLED, "
                      f"{replayed} child runs replayed from the study.")


def _wait_for_pass(future: Any, tracker: TrackingService) -> Any:
    """The data pass's result; meanwhile, an experiment error from the tracking process stops the sweep."""
    while True:
        tracker.check_experiment()
        try:
            return future.result(timeout=0.25)
        except TimeoutError:
            continue


def _sweep_on_cluster(
    cfg: SweepConfig, client: Any, plan: DataPlan, store: TrialStore, tracker: TrackingService,
    timer: _Timer, t: float, echo: Callable[[str], None], progress: bool | None,
) -> dict[str, Any]:
    """Steps 3–7 of the module docstring, with a connected client (``t``: when the cluster start began)."""
    k, m, study = cfg.folds.k, cfg.model, store.study
    threads = total_threads(client)
    # an embedded cluster without a dashboard still serves /health on HTTP: no link to show then
    link = getattr(client, "dashboard_link", None) if cfg.cluster.address or cfg.cluster.dashboard_address else None
    echo(f"Dask: {len(client.scheduler_info()['workers'])} workers, {threads} threads"
         + (f"; dashboard {link}" if link else ""))
    t = timer.lap("cluster_start", t)

    passes = _data_pass(client, plan, k, cfg.folds.seed)
    preload_plotting()  # while the driver waits for the workers
    meta = _wait_for_pass(client.submit(pass_summary, passes, plan.feature_names, pure=False), tracker)
    _check_folds(meta, cfg)
    bounds = client.submit(search_bounds, passes, fit_intercept=m.fit_intercept, standardize=m.standardize,
                           pure=False).result()
    t = timer.lap("data_pass", t)
    slots = _place_fold_models(client, passes, k, plan.n_features, m.fit_intercept, m.standardize)
    # read by an idle worker while the trials run (its first use of pandas costs ~0.3 s)
    example_f = client.submit(example_rows, plan, passes, pure=False)
    space = _resolve_space(cfg, bounds)
    echo(f"Data: {plan.source}: {meta['n_rows']} rows × {plan.n_features} features, {k} folds, "
         f"fingerprint {meta['fingerprint']}")
    for note in meta["notes"]:
        echo(f"Note: {note}")
    # The parent run only now: bad data (found by the pass above) leave no run behind.
    params = {f"config.{key}": v for key, v in _flatten(cfg.model_dump(mode="json")).items()}
    params.update({"n_rows": meta["n_rows"], "n_features": plan.n_features, "k": k,
                   "data_fingerprint": meta["fingerprint"], "search_space": json.dumps(space.as_dict())})
    parent_run = _ParentRun(cfg, store, tracker, echo, params, {"regsweep.data_fingerprint": meta["fingerprint"]})
    if cfg.tracking.uri.startswith(("http://", "https://")):
        # A server can go away mid-sweep, and child runs need their parent to ride that out: the
        # trials start once it exists (a REST client starts in well under the cluster's time).
        # A local store file cannot go away, so the trials need not wait for it.
        parent_run.wait()

    bar = _Progress(cfg.search.n_trials, echo, progress)
    in_flight = cfg.search.in_flight if cfg.search.in_flight != "auto" else 4 * threads

    def on_result(r: TrialResult) -> None:
        timer.marks["fits"] = round(timer.marks.get("fits", 0.0) + r.fit_seconds, 4)
        tracker.log_trial(_record(r))
        bar.update(r.cv_mse)
        parent_run.poll()

    def on_failure(number: int, cand: Candidate, reason: str) -> None:
        now = int(time.time() * 1000)
        tracker.log_trial(TrialRecord(number, _params(cand), {}, {}, now, now, status="FAILED"))
        echo(f"trial {number} failed: {reason}")

    def on_abort(number: int, cand: Candidate, reason: str) -> None:
        now = int(time.time() * 1000)
        tracker.log_trial(TrialRecord(number, _params(cand), {}, {}, now, now, status="KILLED"))

    bar.start(study)
    current = {"passes": passes}

    def rebuild() -> list[FoldSlot]:
        echo("Workers died and took every copy of the fold statistics with them: redoing the data pass.")
        current["passes"] = _data_pass(client, plan, k, cfg.folds.seed)
        return _place_fold_models(client, current["passes"], k, plan.n_features, m.fit_intercept, m.standardize)

    asked = run_trials(client, store, slots, k, space, cfg.search.n_trials, rebuild=rebuild,
                       in_flight=in_flight, threads=threads, tol=m.tol, on_result=on_result, on_failure=on_failure,
                       on_abort=on_abort)
    bar.close()
    t_wait = time.perf_counter()
    parent = parent_run.wait()
    timer.marks["tracking_wait"] = round(time.perf_counter() - t_wait, 4)
    t = timer.lap("trials", t)
    timer.marks["optuna"] = round(store.seconds, 4)

    passes = current["passes"]
    if passes.status in ("cancelled", "error"):  # lost with its workers after the last trial
        passes = _data_pass(client, plan, k, cfg.folds.seed)
    best = study.best_trial
    cand = Candidate(best.number, best.params["penalty"], best.params.get("lambda1", 0.0),
                     best.params.get("lambda2", 0.0))
    model = client.submit(refit_best, passes, cand, plan.feature_names, fit_intercept=m.fit_intercept,
                          standardize=m.standardize, tol=m.tol, pure=False).result()
    if example_f.status in ("cancelled", "error"):  # lost with its worker: read again
        example_f = client.submit(example_rows, plan, passes, pure=False)
    example = example_f.result()
    version_tags = {"regsweep.study": cfg.search.study_name, "regsweep.trial": str(best.number),
                    "regsweep.data_fingerprint": meta["fingerprint"]}
    rows = trial_rows(study)
    cv = best.user_attrs.get("cv", {})
    n_complete = _n_complete(study)
    model_uri, version = None, None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "config.yaml").write_text(cfg.to_yaml())
        write_trials_csv(rows, out / "trials.csv")
        drawn: list[Path] = []
        pub = Publication(
            parent_run=parent, registered_model=cfg.tracking.registered_model, model=model, example=example,
            version_tags=version_tags,
            params={"best.penalty": cand.penalty, "best.lambda1": cand.lambda1, "best.lambda2": cand.lambda2,
                    "best.trial": best.number},
            metrics={"best_cv_mse": best.value, "best_cv_mse_se": cv.get("cv_mse_se"),
                     "best_n_nonzero": float(model.n_nonzero), "n_trials_complete": float(n_complete)},
            artifacts=out,
        )
        try:
            tracker.reachable(wait=_OUTAGE_WAIT_S)  # a server being restarted: give it a moment
            t_model = time.perf_counter()
            def draw() -> None:  # while the tracking process logs the model
                t_plots = time.perf_counter()
                drawn.extend(write_plots(rows, model, out))
                timer.marks["plots"] = round(time.perf_counter() - t_plots, 4)

            model_uri, version = pub.publish(tracker, meanwhile=draw)
            timer.marks["log_model"] = round(time.perf_counter() - t_model, 4)
            # an older sweep's results still waiting for the server are superseded: never publish them now
            shutil.rmtree(unpublished_dir(cfg.search.study_name), ignore_errors=True)
        except Exception as e:  # noqa: BLE001 — the study holds the results; keep the rest for later
            if not is_unreachable(e):
                raise
            if not drawn:
                write_plots(rows, model, out)
            where = pub.save(unpublished_dir(cfg.search.study_name))
            tracker.not_logged.append(f"best model, parent params, metrics and plots (saved in {where})")
    parent_run.finish()
    timer.lap("refit_and_logging", t)
    return {
        "best_params": {"penalty": cand.penalty, "lambda1": cand.lambda1, "lambda2": cand.lambda2},
        "best_cv_mse": best.value,
        "best_cv_mse_se": cv.get("cv_mse_se"),
        "best_trial": best.number,
        "n_trials": cfg.search.n_trials,
        "n_trials_asked_this_run": asked,
        "n_trials_complete": n_complete,
        "study_name": cfg.search.study_name,
        "storage": cfg.search.storage,
        "tracking_uri": cfg.tracking.uri,
        "experiment_id": tracker.experiment_id,
        "mlflow_run_id": parent,
        "model_uri": model_uri,
        "registered_model": cfg.tracking.registered_model,
        "model_version": version,
        "n_rows": meta["n_rows"],
        "n_features": plan.n_features,
        "k": k,
        "data_fingerprint": meta["fingerprint"],
        "rows_dropped": meta["rows_dropped"],
        "constant_columns": meta["constant_columns"],
        "duplicate_columns": meta["duplicate_columns"],
        "data_notes": meta["notes"],
        "search_space": space.as_dict(),
        "timings_s": timer.marks,
    }


def _print_outcome(summary: dict[str, Any], store: TrialStore, cfg: SweepConfig, echo: Callable[[str], None],
                   tracker: TrackingService) -> None:
    best = summary["best_params"]
    echo("")
    echo(format_top_table(trial_rows(store.study)))
    echo("")
    echo(f"Best: trial {summary['best_trial']}, {best['penalty']} λ1={best['lambda1']:.4g} λ2={best['lambda2']:.4g}, "
         f"cv MSE {summary['best_cv_mse']:.6g} ± {summary['best_cv_mse_se'] or float('nan'):.3g}; "
         + (f"registered as {cfg.tracking.registered_model} v{summary['model_version']} (alias candidate)"
            if summary["model_version"] is not None else "model not registered yet (see below)"))
    if summary["trials_not_logged"] or summary["tracking_incomplete"]:
        what = summary["tracking_incomplete"] + (
            [f"child runs of trials {summary['trials_not_logged']}"] if summary["trials_not_logged"] else [])
        echo(f"WARNING: not logged to MLflow ({cfg.tracking.uri}): {'; '.join(what)}. The Optuna study holds "
             "every result: run `regsweep sync-tracking CONFIG` (same config) once the server is back.")
    echo(f"MLflow UI: {mlflow_ui_command(cfg.tracking.uri, tracker.experiment_id or '0')}")


def _n_complete(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _check_folds(meta: dict[str, Any], cfg: SweepConfig) -> None:
    k = cfg.folds.k
    if meta["rows_dropped"] and meta["n_rows"] < k:
        raise DataError(
            f"data.missing: drop left {meta['n_rows']} of {meta['n_rows'] + meta['rows_dropped']} rows (the others "
            f"hold NaN or inf), fewer than folds.k={k}; impute the missing values instead."
        )
    if meta["n_groups"] is not None and meta["n_groups"] < k:
        raise DataError(
            f"folds.group {cfg.folds.group!r} has {meta['n_groups']} distinct groups, fewer than folds.k={k}; "
            "lower folds.k or use row k-fold (folds.group: null)."
        )
    empty = [i for i, w in enumerate(meta["fold_weight"]) if not w > 0]
    if empty:
        raise DataError(
            f"folds {empty} received no rows (or zero total weight) out of {meta['n_rows']} rows; "
            "lower folds.k or change folds.seed."
        )


def _params(c: Candidate) -> dict[str, Any]:
    p: dict[str, Any] = {"penalty": c.penalty}
    if c.penalty != "l2":
        p["lambda1"] = c.lambda1
    if c.penalty != "l1":
        p["lambda2"] = c.lambda2
    return p


def _record(r: TrialResult) -> TrialRecord:
    return TrialRecord(
        number=r.number,
        params=_params(r.candidate),
        metrics=r.metrics(),
        fold_metrics={"fold_mse": r.fold_mse},
        start_ms=int(r.start * 1000),
        end_ms=int(r.end * 1000),
    )


class _Progress:
    """tqdm on a terminal; a plain log line every ~10% otherwise."""

    def __init__(self, total: int, echo: Callable[[str], None], progress: bool | None) -> None:
        self.total = total
        self.echo = echo
        self.tty = sys.stdout.isatty() if progress is None else progress
        self.best = math.inf
        self.done = 0
        self.t0 = time.perf_counter()
        self.bar: Any = None

    def start(self, study: Any) -> None:
        self.done = _n_complete(study)
        try:
            self.best = min(self.best, study.best_value)
        except ValueError:
            pass
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc="trials", unit="trial")

    def update(self, value: float) -> None:
        self.done += 1
        self.best = min(self.best, value)
        if self.bar is not None:
            self.bar.set_postfix_str(f"best cv_mse={self.best:.6g}")
            self.bar.update(1)
            return
        step = max(1, self.total // 10)
        if self.done % step == 0 or self.done == self.total:
            el = time.perf_counter() - self.t0
            eta = el / max(1, self.done) * (self.total - self.done)
            self.echo(f"trials {self.done}/{self.total}  best cv_mse={self.best:.6g}  elapsed {el:.1f}s  eta {eta:.1f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
