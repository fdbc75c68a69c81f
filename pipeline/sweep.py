"""``regsweep sweep``: one data pass, an Optuna search over Dask, MLflow tracking.

Order matters for failing early and for never losing results:

1. validate the config (done by the caller) and plan the data from metadata;
2. check MLflow is reachable; open the study; start the tracking process,
   which imports MLflow and creates the experiment once while the driver
3. starts or connects to the cluster;
4. the one data pass: per-block, per-fold statistics merged on the workers
   (it also checks every row: bad data stop the sweep here, before any
   MLflow run or Optuna trial exists);
5. fold models placed on the workers; search bounds from the statistics;
   the MLflow parent run is asked for (the trials start without waiting for it);
6. the ask/tell loop (:class:`~pipeline.search.TrialScheduler`), each finished
   trial recorded in the study and queued to MLflow;
7. the best trial refit on all data, logged and registered as ``candidate``.

The steps live in :class:`_Sweep`; the wings do the work: ``cv`` on the
cluster, ``search`` with Optuna, and MLflow through the bridge's
:class:`~pipeline.bridge.SweepTracking`.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bridge import Publication, SweepTracking, background_writing, sync_tracking
from .candidate import Candidate
from .console import LOCAL_UI, Progress, print_outcome
from .config import ModelConfig, SweepConfig
from .cv import (check_scheduler, cluster_workers, example_rows, integer_columns, open_client, prestart_local_workers,
                 total_threads, wait_done)
from .cv.scan import scan_columns
from .cv.engines import (EngineTasks, choose_sweep_engine, glm_engine, place_engine, tasks_of, worker_preload,
                         workers_died)
from .cv.path import PathSpec, run_path
from .cv.path_end import PathEnd
from .cv.placement import Placement
from .data import DataPlan, check_fold_count, plan_data, without_time_column
from .encoding import describe as describe_encoding
from .encoding import encoding_summary
from .engine import EngineChoice, smallest_training_rows
from .errors import DataError, TrackingError
from .feature_controls import (check_control_names, check_controls_early, check_unpenalized_rows, controls_summary,
                               describe_controls, sweep_controls)
from .gc_pause import collector_paused
from .metrics import METRIC_OF, metric_label
from .model import FittedModel
from .solvers.controls import FeatureControls
from .plots import preload_plotting, write_model_plot, write_path_plots, write_trial_plots
from .report import (TrialRow, describe_decision, dominant_fold_notes, selection_notes, write_coefficients_csv,
                     write_trials_csv)
from .selection import (
    Choice,
    PathCurve,
    best_per_penalty,
    choose,
    curve_of,
    for_metric,
    l1_share,
    pareto_front,
    path_strengths,
    strength_of,
)
from .search import (
    SearchSpace,
    explained_name,
    TrialResult,
    TrialScheduler,
    TrialStore,
    check_storage,
    resolve_space,
    trial_rows,
)
from .search.resume_checks import check_controls, check_data, check_family, check_plan
from .signals import terminate_as_interrupt
from .tracking import Pending, TrackingService, is_http, preflight, runs_url
from .tracking.registry import TARGET_TAG

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["execute_sweep", "sweep_with_model"]

PRELOAD_AFTER_S = 0.2
"""A data pass still running after this long imports matplotlib meanwhile (:meth:`_Sweep._while_passing`)."""


class _Timer:
    """Seconds per phase, for the summary's ``timings_s``."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        """Record the time since the last lap as ``name``."""
        now = time.perf_counter()
        self.marks[name] = round(now - self.t, 4)
        self.t = now

    def add(self, name: str, seconds: float) -> None:
        self.marks[name] = round(self.marks.get(name, 0.0) + seconds, 4)


def execute_sweep(cfg: SweepConfig, *, echo: Callable[[str], None] = print, progress: bool | None = None) -> dict[str, Any]:
    """Run the sweep described by ``cfg``; return the summary (also what ``--summary-json`` writes).

    SIGTERM is handled like Ctrl-C: trials in flight are marked FAIL, the
    parent and their child runs end KILLED, and :class:`~pipeline.errors.Terminated`
    propagates (the CLI exits 143).
    """
    return sweep_with_model(cfg, echo=echo, progress=progress)[0]


def sweep_with_model(cfg: SweepConfig, *, echo: Callable[[str], None] = print,
                     progress: bool | None = None) -> tuple[dict[str, Any], FittedModel | None]:
    """:func:`execute_sweep`, also returning the registered model as fitted here (None when the study
    was finished already and nothing was fitted)."""
    t0 = time.perf_counter()
    timer = _Timer()
    preflight(cfg.tracking.uri)  # seconds, before any data is read, any cluster started, MLflow imported
    check_storage(cfg.search.storage)
    check_scheduler(cfg.cluster)
    plan = without_time_column(plan_data(cfg.data, cfg.folds, cfg.model.family), cfg.data,
                               cfg.retrain.holdout.time_column)
    check_fold_count(plan, cfg.folds.k)
    check_control_names(cfg, plan.raw_features, plan.categorical)
    check_controls_early(cfg, plan.feature_names, plan.n_rows, plan.needs_scan)
    controls = bool(cfg.model.penalty_factor or cfg.model.coef_limits or cfg.search.group_multipliers)
    with collector_paused():  # imports of distributed, SQLAlchemy's ORM and Alembic (pipeline.gc_pause)
        # the workers' imports, while the study opens and MLflow starts
        prestart_local_workers(cfg.cluster, worker_preload(cfg.model.engine, plan, cfg.folds.k, controls))
        store = TrialStore(cfg.search)
    # before a finished study's outcome is reported as this config's, and before any cluster starts
    check_family(store, cfg)
    check_plan(store, cfg, plan)
    finished = _finished(cfg, store, echo)
    if finished is not None:  # nothing to ask: no cluster, no MLflow process, no new parent run
        finished["elapsed_s"] = round(time.perf_counter() - t0, 3)
        return finished, None
    # MLflow lives in a process of its own, which imports it and creates the experiment while the
    # cluster starts and the data pass runs. Forked after the study is open, it starts with
    # SQLAlchemy and alembic imported (~0.4 s of CPU).
    tracking = SweepTracking(cfg, store, TrackingService(cfg.tracking, cfg.search.study_name,
                                                         METRIC_OF[cfg.model.family]), echo)
    status = "FAILED"
    try:
        timer.lap("setup")
        with store.claim(), terminate_as_interrupt(), open_client(cfg.cluster) as client:
            try:
                run = _Sweep(cfg, client, plan, store, tracking, timer, echo)
                summary = run.run(progress)
                status = "FINISHED"
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Terminated)
                status = "KILLED"
                raise
            finally:  # before the cluster closes: under SIGTERM the runs must be ended first, within seconds
                t_drain = time.perf_counter()
                tracking.close(status)
                timer.marks["mlflow_drain"] = round(time.perf_counter() - t_drain, 4)
    finally:  # also when the cluster never started: a live tracking process would block this one's exit
        tracking.tracking.close()
    summary.update(tracking.outcome())
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    print_outcome(summary, cfg, echo)
    return summary, run.model


class _Sweep:
    """Steps 3–7 of the module docstring on a connected client; its state is what the steps hand on."""

    def __init__(self, cfg: SweepConfig, client: Client, plan: DataPlan, store: TrialStore,
                 tracking: SweepTracking, timer: _Timer, echo: Callable[[str], None]) -> None:
        self.cfg, self.client, self.plan, self.store = cfg, client, plan, store
        self.tracking, self.timer, self.echo = tracking, timer, echo
        self.meta: dict[str, Any] = {}
        self.bounds: dict[str, Any] = {}
        self.space: SearchSpace | None = None
        self.placement: Placement | None = None
        self.engine: EngineChoice | None = None
        self.tasks: EngineTasks | None = None
        self.example: Pending | None = None  # the model's input example, read by the tracking process
        self.model: FittedModel | None = None  # the registered (selected) model, once refit
        self.controls: FeatureControls | None = None  # penalty factors, limits, searched groups (by feature)
        self.model_cfg = cfg.model  # binomial, poisson: with model.engine resolved (how the Newton steps solve)
        self.metric, self.asked = METRIC_OF[cfg.model.family], 0

    def run(self, progress: bool | None) -> dict[str, Any]:
        self._announce_cluster()
        self._data_pass()
        self._search(progress)
        return self._refit_and_publish()

    def _announce_cluster(self) -> None:
        threads = total_threads(self.client)
        # an embedded cluster without a dashboard still serves /health on HTTP: no link to show then
        c = self.cfg.cluster
        link = getattr(self.client, "dashboard_link", None) if c.address or c.dashboard_address else None
        self.echo(f"Dask: {len(cluster_workers(self.client))} workers, {threads} threads"
                  + (f"; dashboard {link}" if link else ""))
        self.timer.lap("cluster_start")

    def _data_pass(self) -> None:
        """The engine, the pass (or the rows), its checks and notes, the fold models, the search space, the
        parent run."""
        cfg, client = self.cfg, self.client
        for note in self.plan.notes:
            self.echo(f"Note: {note}")
        self.plan = plan = scan_columns(client, self.plan)  # levels and gaps, when the source has them
        if plan.encoding is not None:
            self.echo(describe_encoding(plan.encoding))
        self.controls = controls = sweep_controls(cfg, plan.feature_names)  # names known: checked before the pass
        check_controls(self.store, controls, cfg)
        check_unpenalized_rows(cfg, controls, plan.feature_names, plan.n_rows)
        if controls is not None:
            self.echo(describe_controls(controls, plan.feature_names))
        engine, self.model_cfg = _resolve_engine(cfg, client, plan)
        self.engine = engine
        self.echo(engine.line())
        self.tasks = tasks = tasks_of(engine.name, cfg.model.family)
        self.placement = placement = place_engine(engine.name, client, plan, cfg.folds, cfg.model, controls=controls)
        passes = placement.current_pass()
        # all at once, and ahead of the fold models (the rows engine builds them on the same workers)
        summary_f = client.submit(tasks.summary, passes, plan.feature_names, plan.missing, pure=False, priority=1)
        bounds_f = client.submit(tasks.bounds, passes, self.model_cfg, controls, pure=False, priority=1)
        integers_f = client.submit(integer_columns, passes, pure=False, priority=1)
        # meanwhile, an experiment error from the tracking process stops the sweep, and a long pass imports
        # matplotlib for the plots (otherwise the trials' end does, see _SweepListener)
        self.meta = meta = _wait_pass(summary_f, self, lambda: _while_passing(self.tracking, self.timer, cfg))
        _check_pass(meta, cfg, plan, engine)
        check_data(self.store, cfg, meta, engine.name, plan)  # a resumed study's trials were scored on these data
        self.bounds = bounds = wait_done(bounds_f)
        self.timer.lap("data_pass")
        self.space = space = resolve_space(cfg.search, bounds)
        self.echo(f"Data: {plan.source}: {meta['n_rows']:,} rows × {plan.n_features:,} features, {cfg.folds.k} folds, "
                  f"fingerprint {meta['fingerprint']}")
        for note in [*meta["notes"], *_range_notes(self.store, space)]:
            self.echo(f"Note: {note}")
        if meta.get("target"):
            self.echo(meta["target"]["line"])
        # The parent run only now: bad data (found by the pass above) leave no run behind.
        self.tracking.open_parent(_parent_params(cfg, plan, meta, space, engine),
                                  {"regsweep.data_fingerprint": meta["fingerprint"]})
        self.example = self.tracking.read_example(plan, wait_done(integers_f))  # while the trials run

    def _search(self, progress: bool | None) -> None:
        """The ask/tell loop."""
        assert self.placement is not None and self.space is not None
        cfg, study = self.cfg, self.store.study
        bar = Progress(cfg.search.n_trials, self.echo, progress, self.metric)
        best = min((t.value for t in study.get_trials(deepcopy=False) if t.value is not None), default=None)
        bar.start(self.store.n_complete(), best)
        threads = total_threads(self.client)
        in_flight = cfg.search.in_flight if cfg.search.in_flight != "auto" else 4 * threads
        # matplotlib for the plots, once every trial left to ask is in flight (unless the data pass imported it)
        preload_at = max(0, cfg.search.n_trials - self.store.n_complete() - in_flight)
        listener = _SweepListener(self.tracking, self.timer, bar, self.echo, preload_at=preload_at)
        scheduler = TrialScheduler(self.client, self.store, self.placement, self.space, cfg.search.n_trials, listener,
                                   in_flight=in_flight, threads=threads, tol=cfg.model.tol, metric=self.metric)
        self.asked = scheduler.run()
        bar.close()
        self.timer.lap("trials")
        self.timer.marks["optuna"] = round(self.store.seconds, 4)

    def _choose(self, rows: list[TrialRow]) -> _Decision:
        """The dense path of the winning penalty on the fold models; the ``min`` and ``1se`` choices.

        Both go into the study (user attributes ``regsweep:path`` and ``regsweep:selection``), the
        record of truth, beside the trials they were chosen from.
        """
        assert self.placement is not None and self.space is not None and self.tasks is not None
        cfg, study = self.cfg, self.store.study
        best = study.best_trial
        cand = Candidate.from_params(best.number, best.params)
        share = l1_share(cand.penalty, cand.lambda1, cand.lambda2)
        high, low = _path_range(cand.penalty, share, self.bounds, self.space, cand.group_multipliers)
        winner = strength_of(cand.penalty, cand.lambda1, cand.lambda2)
        strengths = path_strengths(high, low, include=winner)
        spec = PathSpec(cand.penalty, share, strengths, cand.multipliers, min_points=strengths.index(winner) + 1)
        t_path = time.perf_counter()
        folds, early = _fold_paths(self.client, self.placement, spec, cfg.model.tol, self.tasks,
                                   (self.model_cfg, self.controls))
        self.timer.marks["path"] = round(time.perf_counter() - t_path, 4)
        curve = curve_of(spec.penalty, share, spec.strengths, [asdict(f) for f in folds])
        # the coefficient path on all rows, over the strengths the fold paths reached (on wide data the points
        # past them are the costliest fits); it runs while the choices are made and stored (binomial and
        # Poisson: taken with the fold paths, in step with the folds of one worker)
        shown = PathSpec(spec.penalty, share, spec.strengths[: len(curve.strengths)], cand.multipliers)
        coefs = early[:, : len(shown.strengths)] if early is not None and early.shape[1] >= len(shown.strengths) \
            else self.client.submit(self.tasks.coefficient_path, self.placement.current_pass(), shown, self.model_cfg,
                                    self.controls, pure=False)
        choices = choose(rows, curve, cand.multipliers)
        study.set_user_attr("regsweep:path", curve.as_dict())
        study.set_user_attr(SELECTION_ATTR, {"rule": cfg.search.select,
                                             **{rule: asdict(c) for rule, c in choices.items()}})
        if not isinstance(coefs, np.ndarray):
            coefs = _waited(self.timer, "coefficient_path_wait", coefs)
        return _Decision(best.number, best.value, best.user_attrs.get("cv", {}), rows, curve, choices,
                         choices[cfg.search.select], coefs)

    def _refit_and_publish(self) -> dict[str, Any]:
        """The selected point refit on all rows, logged with the plots and registered; the summary.

        One thread draws the plots, each part as soon as its data exist (:mod:`pipeline.plots`);
        the directory is removed only after that thread has finished, whatever failed."""
        assert self.placement is not None and self.tasks is not None
        cfg, client, m = self.cfg, self.client, self.metric
        with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(1, thread_name_prefix="regsweep-plots") as pen:
            out = Path(tmp)
            rows = trial_rows(self.store.study)
            drawn = [pen.submit(write_trial_plots, rows, out, m)]  # while the dense path runs
            d = self._choose(rows)
            drawn.append(pen.submit(write_path_plots, d.curve, d.choices, d.coefs, self.plan.feature_names, out,
                                    selected=cfg.search.select, metric=m))  # while the refit and MLflow run
            chosen = Candidate(d.selected.trial if d.selected.trial is not None else -1, d.selected.penalty,
                               d.selected.lambda1, d.selected.lambda2, d.selected.multipliers)
            passes = self.placement.current_pass()  # submitted again if lost with its workers after the last trial
            self.model = model = _waited(self.timer, "refit", client.submit(
                self.tasks.refit, passes, chosen, self.plan.feature_names, self.model_cfg, self.plan.encoding,
                self.controls, pure=False))
            drawn.append(pen.submit(write_model_plot, model, out))  # all waited for while the model is logged
            done = sum(r["state"] == "COMPLETE" for r in d.rows)  # the rows just read: not all trials once more
            (out / "config.yaml").write_text(cfg.to_yaml())
            write_trials_csv(d.rows, out / "trials.csv", m)
            write_coefficients_csv(model, out / "coefficients.csv")
            # The parent run only now: the tracking process may still be opening MLflow (at a lowered priority),
            # and the dense path and the refit above ran meanwhile; the last child runs wait behind it.
            _timed(self.timer, "tracking_wait", self.tracking.parent)
            summary = self._summary(d, model, done)
            pub = self._publication(d, model, done, out)
            pub.tags["mlflow.note.content"] = describe_decision(summary, pub.parent_run)
            t_model = time.perf_counter()
            model_uri, version = self.tracking.publish(pub, lambda: _timed(self.timer, "plots", lambda: [
                f.result() for f in drawn]))
            self.timer.marks["log_model"] = round(time.perf_counter() - t_model, 4)
        self.tracking.settle()
        self.timer.lap("refit_and_logging")
        summary.update({"model_uri": model_uri, "model_version": version, "timings_s": self.timer.marks})
        # the study keeps the outcome beside its trials: a run of the finished study reports it again
        self.store.study.set_user_attr(SUMMARY_ATTR, json.loads(json.dumps(
            {k: v for k, v in summary.items() if k != "timings_s"}, default=str)))
        return summary

    def _publication(self, d: _Decision, model: FittedModel, done: int, out: Path) -> Publication:
        cfg, sel, m = self.cfg, d.selected, self.metric
        assert self.example is not None
        return Publication(
            parent_run=self.tracking.parent(), registered_model=cfg.tracking.registered_model, model=model,
            example=_example(self.example, self.client, self.plan, self.placement),
            version_tags={"regsweep.study": cfg.search.study_name, "regsweep.trial": str(d.trial),
                          "regsweep.data_fingerprint": self.meta["fingerprint"], TARGET_TAG: self.plan.target,
                          "regsweep.selected": f"{sel.rule}:{sel.penalty}:{sel.lambda1!r}:{sel.lambda2!r}"},
            params={"best.penalty": d.best_row_penalty, "best.trial": d.trial, "selected.rule": sel.rule,
                    "selected.penalty": sel.penalty, "selected.lambda1": sel.lambda1,
                    "selected.lambda2": sel.lambda2, **{f"selected.mult_{g}": v for g, v in sel.multipliers}},
            metrics={f"best_cv_{m}": d.best_value, f"best_cv_{m}_se": d.best_cv.get(f"cv_{m}_se"),
                     f"selected_cv_{m}": sel.cv_mse, f"selected_cv_{m}_se": sel.cv_mse_se,
                     f"selected_{explained_name(m)}": sel.cv_r2, "selected_n_nonzero": float(model.n_nonzero),
                     "n_trials_complete": float(done)},
            artifacts=out,
        )

    def _summary(self, d: _Decision, model: FittedModel, done: int) -> dict[str, Any]:
        """The summary (``--summary-json``); the model's URI and version are filled in once it is registered."""
        cfg, meta = self.cfg, self.meta
        assert self.space is not None
        best = next(r for r in d.rows if r["number"] == d.trial)
        m = self.metric
        gaussian = m == "mse"
        return {
            "best_params": {"penalty": best["penalty"], "lambda1": best["lambda1"], "lambda2": best["lambda2"],
                            **({"group_multipliers": best["group_multipliers"]}
                               if best.get("group_multipliers") else {})},
            "penalty_controls": controls_summary(self.controls, self.plan.feature_names),
            "best_cv_mse": d.best_value if gaussian else None,
            "best_cv_mse_se": d.best_cv.get("cv_mse_se") if gaussian else None,
            "best_cv_metric": d.best_value,
            "best_cv_metric_se": d.best_cv.get(f"cv_{m}_se"),
            "best_trial": d.trial,
            "family": cfg.model.family,
            "metric": m,
            **({"target": meta["target"]["summary"]} if meta.get("target") else {}),
            "engine": self.engine.name if self.engine else None,
            "engine_reason": self.engine.reason if self.engine else None,
            "selected": for_metric(d.selected.summary(model.n_nonzero), m),
            "choices": {rule: for_metric(c.summary(), m) for rule, c in d.choices.items()},
            "path": {"penalty": d.curve.penalty, "l1_share": d.curve.l1_share, "n_points": len(d.curve.strengths),
                     "strength_max": max(d.curve.strengths), "strength_min": min(d.curve.strengths)},
            "best_per_penalty": {p: for_metric(e, m) for p, e in best_per_penalty(d.rows).items()},
            "pareto": [for_metric(e, m) for e in pareto_front(d.rows)],
            "n_trials": cfg.search.n_trials,
            "n_trials_asked_this_run": self.asked,
            "n_trials_complete": done,
            "study_name": cfg.search.study_name,
            "storage": cfg.search.storage,
            "tracking_uri": cfg.tracking.uri,
            "experiment_id": self.tracking.tracking.experiment_id,
            "mlflow_ui_url": runs_url(cfg.tracking.uri if is_http(cfg.tracking.uri) else LOCAL_UI,
                                      self.tracking.tracking.experiment_id, cfg.search.study_name),
            "mlflow_run_id": self.tracking.parent(),
            "model_uri": None,
            "registered_model": cfg.tracking.registered_model,
            "model_version": None,
            "selected_features": [n for n, c in zip(self.plan.feature_names, model.coef) if c != 0],
            "data_source": self.plan.source,
            "n_rows": meta["n_rows"],
            "n_features": self.plan.n_features,
            "k": cfg.folds.k,
            "data_fingerprint": meta["fingerprint"],
            "rows_dropped": meta["rows_dropped"],
            "rows_dropped_by": meta.get("rows_dropped_by", {}),
            **(encoding_summary(self.plan.encoding) if self.plan.encoding is not None else {}),
            "constant_columns": meta["constant_columns"],
            "duplicate_columns": meta["duplicate_columns"],
            **_notes(self.plan, meta, d, m, self.space.as_dict()),
            "search_space": self.space.as_dict(),
            "timings_s": self.timer.marks,
        }


def _notes(plan: DataPlan, meta: dict[str, Any], d: _Decision, metric: str,
           space: dict[str, Any]) -> dict[str, list[str]]:
    """The summary's ``data_notes`` (the plan's first: columns left out, the separator; then the pass's) and
    ``cv_notes`` (a fold that swamps the others; a selected model that explains nothing or sits at the strong
    end of the range)."""
    return {"data_notes": [*plan.notes, *meta["notes"]],
            "cv_notes": [*dominant_fold_notes(d.rows, metric_label(metric)),
                         *selection_notes(d.selected.summary(), space, metric)]}


def _wait_pass(future: Any, run: _Sweep, meanwhile: Callable[[], None]) -> Any:
    """The data pass's summary; workers killed running it (mostly: past their memory limit) said in words and
    sizes, not as distributed's ``KilledWorker`` traceback."""
    from distributed import KilledWorker

    try:
        return wait_done(future, meanwhile=meanwhile)
    except KilledWorker as e:
        raise workers_died(e, run.client, run.plan, run.cfg.folds.k, run.engine.name if run.engine else "") from None


def _waited(timer: _Timer, mark: str, fut: Any) -> Any:
    """``wait_done(fut)``, timed as ``mark``."""
    return _timed(timer, mark, lambda: wait_done(fut))


def _timed(timer: _Timer, mark: str, step: Callable[[], Any]) -> Any:
    """``step()``, timed as ``mark``."""
    t = time.perf_counter()
    out = step()
    timer.marks[mark] = round(time.perf_counter() - t, 4)
    return out


def _fold_paths(client: Client, placement: Placement, spec: PathSpec, tol: float, tasks: EngineTasks,
                fit: tuple[Any, FeatureControls | None]) -> tuple[list[Any], np.ndarray | None]:
    """The fold paths of ``spec``; binomial and Poisson also the all-rows coefficient path, taken with them.

    Those fold paths share a :class:`PathEnd`: none runs past the shortest, and the end is forgotten
    even when the path fails (``fit`` is the model config and the feature controls of that coefficient path).
    """
    together = tasks.paths_and_coefficients
    if together is None:
        return run_path(placement, spec, tol)
    end = PathEnd.start(client, len(spec.strengths))
    try:
        return run_path(placement, spec, tol, end, (together, *fit))
    finally:
        end.close(client)


@dataclass(frozen=True)
class _Decision:
    """What the search decided: its best trial, the dense path, the two choices and the selected one."""

    trial: int
    best_value: float | None
    best_cv: dict[str, Any]
    rows: list[TrialRow]
    curve: PathCurve
    choices: dict[str, Choice]
    selected: Choice
    coefs: np.ndarray  # standardized coefficients along the path (p × points)

    @property
    def best_row_penalty(self) -> str:
        return str(next(r["penalty"] for r in self.rows if r["number"] == self.trial))


def _resolve_engine(cfg: SweepConfig, client: Client, plan: DataPlan) -> tuple[EngineChoice, ModelConfig]:
    """The engine, and the model config the workers get: a binomial or Poisson sweep keeps the rows in worker
    memory, and the engine's usual choice says how its Newton steps are solved (``model.engine`` resolved)."""
    engine = choose_sweep_engine(cfg.model.engine, client, plan, cfg.folds.k)
    if cfg.model.family == "gaussian":
        return engine, cfg.model
    engine = glm_engine(engine, cfg.model.family)
    return engine, cfg.model.model_copy(update={"engine": engine.name})


def _engine_after_drops(cfg: SweepConfig, engine: EngineChoice, plan: DataPlan, meta: dict[str, Any]) -> list[str]:
    """A note when ``model.engine: auto`` chose Grams for the planned rows and the rows left out (a missing target,
    ``data.missing: drop``) leave a fold fewer training rows than features: the rows engine's case, which the
    choice, made before the rows were read, could not see."""
    n_train = smallest_training_rows(int(meta["n_rows"]), cfg.folds.k)
    if cfg.model.engine != "auto" or engine.name != "gram" or not meta["rows_dropped"] or plan.n_features <= n_train:
        return []  # (p ≤ n as choose_engine judges it, on the rows used)
    return [f"model.engine: auto chose gram for the {plan.n_rows:,} rows planned; with {meta['rows_dropped']:,} left "
            f"out a fold trains on about {n_train:,} rows, fewer than the {plan.n_features:,} features: "
            "model.engine: rows suits such wide data (set it to have it)."]


def _path_range(penalty: str, share: float, bounds: dict[str, Any], space: SearchSpace,
                multipliers: dict[str, float] | None = None) -> tuple[float, float]:
    """From where to where the path of ``penalty`` runs: its λ_max (ridge: the search's upper bound) down to
    the search's lower bound (elastic net: strengths whose λ1 part spans λ1_max down to λ1's lower bound).
    With group multipliers λ1_max is the winner's: each group's λ1_max divided by its multiplier."""
    if penalty == "l2":
        return space.lambda2[1], space.lambda2[0]
    groups = bounds.get("lambda1_max_groups")
    top = bounds["lambda1_max"]
    if groups and multipliers:
        top = max(value / (multipliers.get(g, 1.0) if g else 1.0) for g, value in groups.items())
    lam_max = top if top > 0 else space.lambda1[1]
    return lam_max / share, space.lambda1[0] / share


def _while_passing(tracking: SweepTracking, timer: _Timer, cfg: SweepConfig) -> None:
    """While the driver waits for the data pass: see an experiment error; once the pass has taken
    :data:`PRELOAD_AFTER_S`, import matplotlib (the driver has nothing else to do until it ends).

    A pass shorter than the import (0.25–0.35 s of CPU) would hand it on to the trials, whose driver is busy
    asking Optuna: there the import took 0.2–0.3 s from the search at 10⁴ × 100 (one GIL). Those sweeps import
    it as their last trials run instead (:class:`_SweepListener`).
    """
    tracking.tracking.check_experiment()
    if time.perf_counter() - timer.t > PRELOAD_AFTER_S:
        preload_plotting(lowered=cfg.cluster.processes or bool(cfg.cluster.address))


def _example(example: Pending | None, client: Client, plan: DataPlan, placement: Placement | None) -> bytes:
    """The model's input example as the tracking process read it; if it could not (its MLflow never opened,
    or it is gone), as a worker reads it."""
    assert example is not None and placement is not None
    try:
        return bytes(example.result())
    except TrackingError:
        return bytes(wait_done(client.submit(example_rows, plan, placement.current_pass(), pure=False)))


class _SweepListener:
    """The sweep's :class:`~pipeline.search.TrialListener`: child runs, the progress bar, fit time."""

    def __init__(self, tracking: SweepTracking, timer: _Timer, bar: Progress, echo: Callable[[str], None], *,
                 preload_at: int) -> None:
        self.tracking, self.timer, self.bar, self.echo = tracking, timer, bar, echo
        self.preload_at = preload_at  # after this many results, import matplotlib (the last trials are in flight)
        self.results = 0
        if preload_at == 0:
            preload_plotting(lowered=False)

    def on_result(self, result: TrialResult) -> None:
        self.timer.add("fits", result.fit_seconds)
        self.tracking.log_result(result)
        self.bar.update(result.cv_mse)
        self.results += 1
        if self.results == self.preload_at:  # the driver now mostly waits (for the last fits, then the path)
            preload_plotting(lowered=False)

    def on_failure(self, number: int, candidate: Candidate, reason: str) -> None:
        self.tracking.log_failure(number, candidate, "FAILED")
        self.echo(f"trial {number} failed: {reason}")

    def on_abort(self, number: int, candidate: Candidate, reason: str) -> None:
        self.tracking.log_failure(number, candidate, "KILLED")


SUMMARY_ATTR = "regsweep:summary"
SELECTION_ATTR = "regsweep:selection"  # both rules' choices on the path of the winning penalty


def _finished(cfg: SweepConfig, store: TrialStore, echo: Callable[[str], None]) -> dict[str, Any] | None:
    """The recorded outcome of a study that already holds its trials (None if there is work to do).

    A study whose trials are all complete but whose outcome was never recorded
    (its driver stopped before the model was registered) still runs its end.
    """
    done = store.n_complete()
    recorded = store.study.user_attrs.get(SUMMARY_ATTR)
    if done < cfg.search.n_trials or not isinstance(recorded, dict):
        return None
    echo(f"study {cfg.search.study_name!r} already holds {done}/{cfg.search.n_trials} complete trials; raise "
         "search.n_trials or change search.study_name")
    _sync_after_deputies(cfg, store, echo)
    rule = (recorded.get("selected") or {}).get("rule")
    if rule is not None and rule != cfg.search.select:  # the outcome reported is the recorded rule's, not this one
        other = store.study.user_attrs.get(SELECTION_ATTR, {}).get(cfg.search.select) or {}
        said = ", ".join(f"{k} {other[k]:.4g}" for k in ("lambda1", "lambda2") if isinstance(other.get(k), float))
        echo(f"Note: its registered model was chosen by search.select: {rule}, not {cfg.search.select}"
             + (f" (whose choice on its path is {said})" if said else "") + "; to register that one, run it as "
             "a new study (another search.study_name).")
    return {**recorded, "n_trials": cfg.search.n_trials, "n_trials_asked_this_run": 0, "n_trials_complete": done,
            "stale_trials_failed": [st.number for st in store.stale], "trials_not_logged": [],
            "tracking_incomplete": [], **background_writing(None), "timings_s": {}}


def _sync_after_deputies(cfg: SweepConfig, store: TrialStore, echo: Callable[[str], None]) -> None:
    """A finished study whose last sweep left child runs to a process that has exited since
    (:meth:`~pipeline.search.TrialStore.deputies_gone`): MLflow is brought in step with the study
    (``regsweep sync-tracking``: the runs that process did not write), once. A server that cannot be
    reached is only reported: the study keeps every trial, and the sync can be run later."""
    if not store.deputies_gone():
        return
    echo("Checking that MLflow holds every child run the last sweep left to its MLflow process (which has exited "
         "since), writing any it did not.")
    try:
        sync_tracking(cfg, echo)
    except TrackingError as e:
        echo(f"WARNING: {e} Run `regsweep sync-tracking CONFIG` once MLflow can be reached.")


def _range_notes(store: TrialStore, space: SearchSpace) -> list[str]:
    """A resumed study's λ ranges that differ from those its earlier trials were drawn from (Optuna accepts the
    change and its sampler learns from both; the parent run shows only this run's range)."""
    then: dict[str, tuple[float, float]] = {}
    for t in store.study.get_trials(deepcopy=False):
        for name in ("lambda1", "lambda2"):
            low, high = (getattr(t.distributions.get(name), b, None) for b in ("low", "high"))
            if low is not None and high is not None:  # (a float distribution)
                then[name] = (float(low), float(high))
    out = []
    for name, (lo, hi) in then.items():
        now = getattr(space, name)
        if not np.allclose((lo, hi), now, rtol=1e-9, atol=0.0):
            out.append(f"search.{name}: this run draws from [{now[0]:.4g}, {now[1]:.4g}], the study's earlier trials "
                       f"from [{lo:.4g}, {hi:.4g}]; its sampler learns from both (a new search.study_name keeps them "
                       "apart).")
    return out


def _parent_params(cfg: SweepConfig, plan: DataPlan, meta: dict[str, Any], space: SearchSpace,
                   engine: EngineChoice) -> dict[str, Any]:
    """The parent run's parameters: what a reader compares sweeps by (the whole config is ``config.yaml``)."""
    params: dict[str, Any] = {
        "data.source": plan.source, "data.target": plan.target, "data.weight": cfg.data.weight,
        "folds.k": cfg.folds.k, "folds.seed": cfg.folds.seed, "folds.group": cfg.folds.group,
        "model.family": cfg.model.family, "data.positive_class": cfg.data.positive_class,
        "data.offset": cfg.data.offset, "data.exposure": cfg.data.exposure,
        "model.standardize": cfg.model.standardize, "model.fit_intercept": cfg.model.fit_intercept,
        "model.engine": cfg.model.engine, "engine": engine.name, "engine_reason": engine.reason[:500],
        "search.n_trials": cfg.search.n_trials, "search.penalties": ",".join(cfg.search.penalties),
        "search.select": cfg.search.select, "search.seed": cfg.search.seed, "search.study_name": cfg.search.study_name,
        "lambda1_range": "[{:.4g}, {:.4g}]".format(*space.lambda1), "lambda2_range": "[{:.4g}, {:.4g}]".format(*space.lambda2),
        "n_rows": meta["n_rows"], "n_features": plan.n_features, "data_fingerprint": meta["fingerprint"],
        "data.missing": cfg.data.missing, "rows_dropped": meta["rows_dropped"],
        # penalty controls as configured (the resolved ones: the summary's penalty_controls, model.json)
        "model.penalty_factor": _compact(cfg.model.penalty_factor),
        "model.coef_limits": _compact(cfg.model.coef_limits),
        "search.group_multipliers": _compact({g: {"columns": s.columns, "range": s.range}
                                              for g, s in cfg.search.group_multipliers.items()}),
    }
    enc = plan.encoding
    if enc is not None:  # what a reader needs to read column=level coefficients (all levels: summary, model.json)
        params["data.categorical"] = ", ".join(f"{c} ({len(lv)})" for c, lv in zip(enc.columns, enc.levels)
                                               if lv is not None)[:500] or None
        params["imputed_columns"] = ", ".join(enc.imputed_columns)[:500] or None
    return {k: v for k, v in params.items() if v is not None}


def _compact(mapping: dict[str, Any]) -> str | None:
    """A config mapping as one short line for an MLflow parameter (None when empty: no parameter)."""
    return json.dumps(mapping, separators=(",", ":"))[:500] if mapping else None


def _check_pass(meta: dict[str, Any], cfg: SweepConfig, plan: DataPlan, engine: EngineChoice) -> None:
    """What the data pass found: an error for what no trial could fit (:func:`_check_folds`), and the note of
    :func:`_engine_after_drops` added to the pass's notes."""
    _check_folds(meta, cfg, plan.target)
    meta["notes"] = [*meta["notes"], *_engine_after_drops(cfg, engine, plan, meta)]


def _check_folds(meta: dict[str, Any], cfg: SweepConfig, target: str | None = None) -> None:
    """What the data pass found that no trial could fit: too few rows or groups for the folds, an empty fold, a
    constant target (whose λ ranges are empty)."""
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
    if cfg.data.weight and not sum(meta["fold_weight"]) > 0:  # no fold or seed can help: the weights say so
        raise DataError(f"data.weight {cfg.data.weight!r} sums to 0 over the {meta['n_rows']} rows used: every row "
                        "would count for nothing; check the column, or unset data.weight.")
    empty = [i for i, w in enumerate(meta["fold_weight"]) if not w > 0]
    if empty:
        left_out = (f" ({meta['rows_dropped']} more rows were left out for missing values, each block's kept rows "
                    "dealt among themselves)") if meta["rows_dropped"] else ""
        raise DataError(
            f"folds {empty} received no rows (or zero total weight) out of {meta['n_rows']} rows{left_out}; "
            "lower folds.k or change folds.seed" + (", or read larger blocks (data.block_rows; a Parquet source: "
                                                   "larger row groups)." if left_out else ".")
        )
    if meta.get("constant_target") is not None:
        raise DataError(f"the target {target!r} is constant ({meta['constant_target']:.6g} in all "
                        f"{meta['n_rows']} rows used): there is nothing to fit; check data.target.")
