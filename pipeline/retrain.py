"""``regsweep retrain``: scheduled retraining with a champion and a challenger.

Meant for cron, a Kubernetes CronJob or Airflow. One run:

1. validates the config and plans the data (metadata only); checks MLflow;
2. takes the retrain lock of the registered model (:mod:`pipeline.locks`): a
   second retrain of the same model fails at once with exit code 1 instead
   of waiting, so scheduled runs never pile up behind a slow one;
3. finds the starting model: alias ``champion``, else the newest
   ``candidate`` (the sweep's best), else stops (exit 2: run a sweep first);
4. fingerprints every block's raw content on the cluster; if a version of
   the model already carries this data fingerprint and a decision, stops:
   ``up_to_date`` (exit 0);
5. chooses the engine as a sweep does (:mod:`pipeline.engine`); the Gram
   engine collects the per-block statistics, from the cache where it has the
   block and by loading the block otherwise (:mod:`pipeline.statcache`); the
   rows engine (wide data) loads the rows on the workers instead: its p × p
   block statistics would not fit, so the cache is not used and the output
   says so;
6. trains the challenger on the training rows: ``refit`` (the starting
   model's penalty and λ) or ``resweep`` (a short new Optuna study on the
   training rows' K folds, warm-started by enqueuing the starting model's
   parameters and the previous study's best trials);
7. scores champion and challenger on the same held-out rows, exactly: from
   the held-out statistics (``SuffStats.mse``: the held-out SSE of any linear
   model follows from Σw, Σx, Σy, XᵀX, Xᵀy, yᵀy), or, in the rows engine,
   from the held-out rows themselves (the same rows: membership is the same
   hash of the global row, or the same time cut-off);
8. registers the challenger (always), moves ``champion`` to it when
   ``challenger_mse < (1 − margin) · champion_mse``, and records both scores,
   the decision and its reason on a retrain run and on the new version.

**The challenger is trained on the training rows only, and registered as
such.** Held-out membership is a pure function of ``(seed, global row)`` (or
of time), so rows held out now were held out by every earlier retrain too:
no retrained champion has seen the rows it is scored on, and the comparison
stays fair run after run. The price is that the served model does not use the
held-out share of the rows. (The sweep's ``candidate`` was refit on all rows,
so when it is the baseline its held-out score is optimistic; the first
retrain therefore sets ``champion`` to its challenger without a contest, and
reports the candidate's score for information.)

**Idempotency**: a version counts as "this data trained" only once its
``regsweep.decision`` tag is written, the last step; a run that died earlier
is simply redone (its orphan version stays, without a decision tag).

**Stopping**: SIGTERM (what cron's, Kubernetes' and Airflow's timeouts send)
is handled like Ctrl-C, as in a sweep: the cluster closes, a resweep's trials
in flight are marked FAIL, the lock is released and the command exits 143.
Step 8 is not split: a stop that arrives while it runs waits for its end (a
few MLflow calls), so no retrain run is left RUNNING and no alias moves
without its decision, within the 8 s that every stop is given
(:mod:`pipeline.signals`); a registration slower than that is cut as SIGKILL
would cut it, and the next run redoes it (see Idempotency).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .candidate import Candidate
from .config import SweepConfig
from .cv import (
    BlockPass,
    DirCache,
    StatCache,
    RetrainColumns,
    block_fingerprints,
    collect_stats,
    data_fingerprint,
    open_client,
    placement_of_pass,
    refit,
    retrain_columns,
    search_bounds,
    total_threads,
    wait_done,
)
from .cv.engines import choose_sweep_engine, glm_engine, tasks_of, workers_died
from .cv.placement import Placement
from .cv.row_models import heldout_mse, retrain_facts
from .metrics import METRIC_OF, metric_label
from .cv.row_placement import RowPlacement
from .cv.rows import load_rows
from .data import BlockSpec, DataPlan, check_fold_count, plan_data, read_example, without_time_column
from .encoding import NA_LEVEL, Encoding, describe as describe_encoding
from .errors import DataError, RetrainInputError
from .feature_controls import sweep_controls
from .solvers.controls import FeatureControls
from .locks import retrain_lock
from .model import FittedModel
from .recoding import coefficients_by_name, incumbent_fill, incumbent_map, new_levels
from .search import SearchSpace, TrialResult, TrialScheduler, TrialStore, check_storage, resolve_space
from .signals import terminate_as_interrupt, uninterrupted
from .solvers import merge_all
from .sqlite_wal import sqlite_path
from .targets import same_label
from .tracking import MlflowCache, RegisteredVersion, Tracker
from .tracking.registry import (TAG, TARGET_TAG, alias_version, load_version, recorded_champion, set_alias,
                                tag_version, versions_with_fingerprint)

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["retrain_plan", "run_retrain"]

CHAMPION = "champion"
CANDIDATE = "candidate"
_WARM_TRIALS = 5  # best trials of the previous study enqueued by a resweep


# ---------------------------------------------------------------- planning
def retrain_plan(cfg: SweepConfig) -> DataPlan:
    """The data plan, with the hold-out time column checked and kept out of the features."""
    if cfg.folds.group is not None:
        raise RetrainInputError(
            "regsweep retrain does not support group k-fold yet (folds.group is set); unset folds.group."
        )
    return without_time_column(plan_data(cfg.data, cfg.folds, cfg.model.family), cfg.data,
                               cfg.retrain.holdout.time_column)


def _open_cache(cfg: SweepConfig, tracker: Tracker) -> StatCache | None:
    where = cfg.retrain.cache
    if where is None:
        return None
    if where == "mlflow":
        return MlflowCache(tracker.client, tracker.experiment_id, cfg.tracking.registered_model)
    return DirCache(where)


def _check_store_exists(cfg: SweepConfig) -> None:
    """A ``sqlite:///`` store that does not exist holds no model to retrain: refused before opening it, which
    would leave an empty ``mlflow.db`` (and the retrain lock beside it) in a directory that had none."""
    path = sqlite_path(cfg.tracking.uri)
    if path is not None and not os.path.exists(path):
        raise RetrainInputError(
            f"tracking.uri {cfg.tracking.uri} names no file ({os.path.abspath(path)!r} does not exist), so it holds "
            f"no registered model {cfg.tracking.registered_model!r} to retrain; run `regsweep retrain` where "
            "`regsweep sweep` ran with the same config, or set tracking.uri to its store."
        )


def _starting_model(tracker: Tracker, name: str) -> tuple[RegisteredVersion, tuple[int, int] | None]:
    """The champion, else the candidate; and, when the champion alias was deleted by hand, the champion the
    latest retrain recorded and that retrain's version (the start then, given back its alias by
    :func:`_restore_champion` once the data are checked).

    Without it a retrain started from the candidate: on data a retrain had settled against the candidate it said
    "up to date" with a reason that never happened and a champion no alias named, run after run; on other data
    it ran a contest against the candidate as if no retrain had ever run (the retrain probe, its review)."""
    if alias_version(tracker.client, name, CHAMPION) is None:
        recorded = recorded_champion(tracker.client, name)
        if recorded is not None:
            mv = tracker.client.get_model_version(name, str(recorded[0]))
            return load_version(tracker.client, tracker.uri, name, mv, CHAMPION), recorded
    for alias in (CHAMPION, CANDIDATE):
        mv = alias_version(tracker.client, name, alias)
        if mv is not None:
            return load_version(tracker.client, tracker.uri, name, mv, alias), None
    raise RetrainInputError(
        f"registered model {name!r} has no '{CHAMPION}' or '{CANDIDATE}' alias in {tracker.uri}; run "
        "`regsweep sweep` with the same config first (it registers the candidate)."
    )


def _restore_champion(tracker: Tracker, name: str, recorded: tuple[int, int], echo: Callable[[str], None]) -> int:
    """Give the champion alias back to the recorded champion (:func:`_starting_model`); its version."""
    champion, latest = recorded
    set_alias(tracker.client, name, CHAMPION, champion)
    echo(f"Note: {name} had no '{CHAMPION}' alias (deleted since); set again on v{champion}, the champion its latest "
         f"retrain (v{latest}) recorded. To start over from another version, set the alias on it instead.")
    return champion


# ---------------------------------------------------------------- challenger
def _resweep(client: Client, placement: Placement, bounds: dict[str, float], base: RegisteredVersion,
             cfg: SweepConfig, fingerprint: str, echo: Callable[[str], None]) -> tuple[Candidate, dict[str, Any]]:
    """A short study on the training rows' K folds (fold models of either engine), warm-started; returns the
    best candidate."""
    space = resolve_space(cfg.search, bounds)
    study_name = f"{cfg.search.study_name}-retrain-{fingerprint}"
    store = TrialStore(cfg.search.model_copy(update={"study_name": study_name}))
    if not store.study.trials:
        for params in _warm_params(base.model, cfg, space):
            store.enqueue(params)
    threads = total_threads(client)
    in_flight = cfg.search.in_flight if cfg.search.in_flight != "auto" else 4 * threads
    scheduler = TrialScheduler(client, store, placement, space, cfg.retrain.n_trials, _ResweepListener(echo),
                               in_flight=in_flight, threads=threads, tol=cfg.model.tol,
                               metric=METRIC_OF[cfg.model.family])
    with store.claim(), warnings.catch_warnings():  # the lease: another host can tell if this driver died
        warnings.simplefilter("ignore", UserWarning)  # enqueued λ outside the new range: Optuna warns, uses it
        scheduler.run()
    best = store.study.best_trial
    return Candidate.from_params(best.number, best.params), {
        "resweep_study": study_name, f"resweep_best_cv_{METRIC_OF[cfg.model.family]}": best.value,
        "resweep_trials_complete": store.n_complete()}


class _ResweepListener:
    """A resweep's :class:`~pipeline.search.TrialListener`: it only says what failed."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo

    def on_result(self, result: TrialResult) -> None:
        pass

    def on_failure(self, number: int, candidate: Candidate, reason: str) -> None:
        self.echo(f"resweep trial {number} failed: {reason}")

    def on_abort(self, number: int, candidate: Candidate, reason: str) -> None:
        pass


def base_candidate(model: FittedModel, groups: FeatureControls | tuple[tuple[str, tuple[float, float]], ...] | None,
                   ) -> Candidate:
    """The incumbent's penalty as a candidate, with its group multipliers for the groups the config still has
    (``groups``: the controls or the search space's groups; a group the model lacks keeps multiplier 1)."""
    if groups is None:
        names: tuple[str, ...] = ()
    elif isinstance(groups, FeatureControls):
        names = groups.group_names
    else:
        names = tuple(g for g, _ in groups)
    mult = tuple((g, float(v)) for g, v in (model.group_multipliers or {}).items() if g in names)
    return Candidate(-1, model.penalty, model.lambda1, model.lambda2, mult)


def _warm_params(model: FittedModel, cfg: SweepConfig, space: SearchSpace) -> list[dict[str, Any]]:
    """The starting model's parameters, then the previous study's best trials (penalties in the space only)."""
    found = [base_candidate(model, space.multipliers)]
    try:
        import optuna
        from optuna.trial import TrialState

        prev = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
        done = sorted(prev.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                      key=lambda t: t.value if t.value is not None else math.inf)
        found += [Candidate.from_params(t.number, t.params) for t in done[:_WARM_TRIALS]]
    except KeyError:  # no previous study under that name: the starting model alone
        pass
    out: list[dict[str, Any]] = []
    for cand in found:
        params = cand.params()
        if cand.penalty in space.penalties and params not in out:
            out.append(params)
    return out


def _example(x_mean: np.ndarray, integer_columns: tuple[bool, ...], plan: DataPlan) -> Any:
    """One input row (the training column means, typed like the source) for the model signature.

    Built from statistics so that no (old) block has to be read for it.
    """
    import pandas as pd

    frame = pd.DataFrame([x_mean], columns=list(plan.feature_names))
    for name, is_int in zip(plan.feature_names, integer_columns):
        if is_int:
            frame[name] = np.round(frame[name]).astype(np.int64)
    if plan.offset_column is not None:  # the model reads its offset column by name
        frame[plan.offset_column] = 1.0 if plan.exposure else 0.0
    return frame


@dataclass(frozen=True)
class _Evidence:
    """What the challenger was trained and scored on, as the record reports it (either engine)."""

    n_train: int
    n_heldout: int
    blocks_read: int
    blocks_cached: int
    cutoff: float | None
    example: Any  # one input row (pandas)
    engine: str
    cache_note: str | None = None


# ---------------------------------------------------------------- the run
def run_retrain(cfg: SweepConfig, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """One scheduled retrain (module docstring); returns the summary that ``--summary-json`` writes."""
    t0 = time.perf_counter()
    plan = retrain_plan(cfg)
    check_fold_count(plan, cfg.folds.k)
    _check_store_exists(cfg)
    if cfg.retrain.mode == "resweep":
        check_storage(cfg.search.storage)
    tracker = Tracker(cfg.tracking)
    tracker.preflight()
    tracker.ensure_experiment()
    name = cfg.tracking.registered_model
    with retrain_lock(cfg) as lock, terminate_as_interrupt():
        base, recorded = _starting_model(tracker, name)
        _check_target(base, plan.target, name)
        theirs = base.model.encoding.columns if base.model.encoding is not None else base.model.feature_names
        if theirs is not None and tuple(theirs) != plan.raw_features:
            raise RetrainInputError(_features_differ(list(theirs), list(plan.raw_features), f"{name} v{base.version}",
                                                     cfg.retrain.holdout.time_column))
        _check_comparable(base, cfg, plan)
        restored = _restore_champion(tracker, name, recorded, echo) if recorded is not None else None
        echo(f"Retrain {name}: starting from v{base.version} (alias {base.alias}), mode {cfg.retrain.mode}; {lock}")
        summary = _retrain_on_cluster(cfg, plan, tracker, base, echo)
    summary["champion_restored"] = restored
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    if summary["action"] != "up_to_date":
        echo(f"{summary['action'].upper()}: challenger v{summary['challenger_version']} held-out "
             f"{metric_label(METRIC_OF[cfg.model.family])} "
             f"{summary['challenger_score']:.6g}, incumbent ({base.alias}) v{base.version} "
             f"{summary['incumbent_score']:.6g}; {summary['reason']}. Champion now: v{summary['champion_version']}")
    return summary


def _retrain_on_cluster(cfg: SweepConfig, plan: DataPlan, tracker: Tracker, base: RegisteredVersion,
                        echo: Callable[[str], None]) -> dict[str, Any]:
    """Fingerprint, the engine, the challenger and both held-out scores, the decision and its record."""
    name = cfg.tracking.registered_model
    with open_client(cfg.cluster) as client:
        fps = block_fingerprints(client, plan)
        twice = _copied_blocks(plan, fps)
        if twice:
            echo(f"Note: {twice}")
        fingerprint = data_fingerprint(plan, fps, cfg.retrain.holdout.time_column)
        done = versions_with_fingerprint(tracker.client, name, fingerprint)
        settled = [mv for mv in done if _settles(mv, base)]
        if settled:
            echo(f"Up to date: {name} v{settled[-1].version} was trained on data {fingerprint}; nothing to do.")
            return _up_to_date(tracker, name, fingerprint, settled[-1], base)
        if done:  # the champion moved since (a later retrain on other data, or by hand): a contest against it
            echo(f"Note: v{done[-1].version} was trained on this data ({fingerprint}) against another incumbent; "
                 f"the {base.alias} is now v{base.version}, so a new challenger meets it.")
        cache = _open_cache(cfg, tracker)
        columns = retrain_columns(client, plan, fps, cfg, cache)  # levels and gaps, cached blocks not read
        plan = columns.plan
        engine = choose_sweep_engine(cfg.model.engine, client, plan, cfg.folds.k,
                                     heldout_fraction=cfg.retrain.holdout.fraction)
        glm = cfg.model.family != "gaussian"
        if glm:  # the rows engine, its Newton steps solved as the usual rule says
            engine = glm_engine(engine, cfg.model.family)
            cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"engine": engine.name})})
        echo(engine.line())
        if plan.encoding is not None:
            echo(describe_encoding(plan.encoding))
        from distributed import KilledWorker

        try:
            if engine.name == "rows" or glm:
                challenger, scores, evidence, extra = _challenge_on_rows(client, cfg, plan, base, fingerprint, echo)
            else:
                challenger, scores, evidence, extra = _challenge_on_stats(client, cfg, columns, cache, base, fps,
                                                                          fingerprint, echo)
        except KilledWorker as e:  # (mostly: past their memory limit) in words and sizes, as a sweep says it
            raise workers_died(e, client, plan, cfg.folds.k, engine.name,
                               "No model was registered; the champion is unchanged.") from None
    extra["rows_left_out"] = _rows_left_out(plan, evidence, cfg, echo)
    if plan.encoding is not None:
        extra["new_levels"] = new_levels(base.model.encoding, plan.encoding)
        if extra["new_levels"]:
            echo(f"New levels since v{base.version}: {extra['new_levels']} (the incumbent scores them as zeros)")
    action, reason = _decide(base, *scores, cfg.retrain.margin, metric_label(METRIC_OF[cfg.model.family]),
                             evidence.n_heldout, _holdout_changed(base, cfg))
    return _record(tracker, cfg, plan, base, challenger, scores, (action, reason), fingerprint, evidence, extra)


_Challenge = tuple[FittedModel, tuple[float, float], _Evidence, dict[str, Any]]


def _challenge_on_stats(client: Client, cfg: SweepConfig, columns: RetrainColumns, cache: StatCache | None,
                        base: RegisteredVersion, fps: list[str], fingerprint: str,
                        echo: Callable[[str], None]) -> _Challenge:
    """The Gram engine: block statistics (cached where possible), the challenger, both held-out scores.

    With levels or gaps the statistics are in the statistics columns: the challenger imputes by its training
    rows' means, the incumbent is scored through its own encoding and fill values (:mod:`pipeline.recoding`).
    """
    plan = columns.plan
    controls = sweep_controls(cfg, plan.feature_names)  # the config's factors and limits, as a sweep's
    stats = collect_stats(client, columns, fps, cfg, cache)
    rec = stats.record
    raw_train = merge_all(rec.train)
    imputation = plan.encoding.imputation() if plan.encoding is not None else None
    train_total, heldout = raw_train, rec.heldout
    if imputation is not None:
        train_total, heldout = imputation.apply(raw_train, rec.heldout)[1]
    _check_rows(rec.heldout.sum_w, train_total.sum_w, [st.sum_w for st in rec.train], cfg)
    echo(f"Data: {plan.source}: {train_total.n_rows} training + {rec.heldout.n_rows} held-out rows, "
         f"fingerprint {fingerprint} (of the blocks' raw bytes, so that cached blocks need not be parsed; a "
         f"sweep's fingerprint hashes the parsed statistics and differs); blocks read {stats.blocks_read}, "
         f"from cache {stats.blocks_cached}" + (f" ({cache.description})" if cache is not None else ""))
    extra: dict[str, Any] = {}
    if cfg.retrain.mode == "resweep":
        # the training statistics go to the cluster as a task's input, not as scattered data: if the workers
        # holding them die, Dask recomputes them elsewhere, as a sweep's data pass
        passes = BlockPass(rec.train, 0, rec.integer_columns, total=raw_train, imputation=imputation)
        placement = placement_of_pass(client, passes, cfg.folds.k, plan.n_features, cfg.model, controls)
        cand, extra = _resweep(client, placement, search_bounds(train_total, cfg.model, controls), base, cfg,
                               fingerprint, echo)
    else:
        cand = base_candidate(base.model, controls)
    challenger = refit(train_total, cand, plan.feature_names, cfg.model, controls)
    incumbent_heldout = rec.heldout
    if plan.encoding is not None:
        challenger = replace(challenger, encoding=plan.encoding.fitted(train_total.x_mean))
        incumbent_heldout = rec.heldout.mapped(incumbent_map(plan.encoding, base.model.feature_names or (),
                                                             base.model.encoding))
    scores = (incumbent_heldout.mse(base.model.coef, base.model.intercept),  # the incumbent's, then the challenger's
              heldout.mse(challenger.coef, challenger.intercept))
    example = (read_example(plan) if plan.encoding is not None
               else _example(train_total.x_mean, rec.integer_columns, plan))
    evidence = _Evidence(train_total.n_rows, rec.heldout.n_rows, stats.blocks_read, stats.blocks_cached, stats.cutoff,
                         example, "gram")
    return challenger, scores, evidence, extra


def _check_positive_class(base: RegisteredVersion, facts: dict[str, Any], cfg: SweepConfig,
                          echo: Callable[[str], None]) -> None:
    """The data's positive class must be the one ``base`` predicts; the same class named otherwise (``True``
    where a model registered before true/false targets kept their classes named it ``1``) is noted, as the
    challenger's prediction column takes the new name. When the data's labels no longer hold that class (the
    target was recoded, ``yes``/``no`` to 1/0), choosing a positive class cannot help: the error says so."""
    positive, old = facts["positive_class"], base.model.positive_class
    if not same_label(positive, old):
        labels = [v for v in (facts.get("negative_class"), positive) if v is not None]
        name = f"{cfg.tracking.registered_model} v{base.version}"
        if not any(same_label(v, old) for v in labels):
            was = [v for v in (base.model.negative_class, old) if v is not None]
            raise RetrainInputError(
                f"the target's labels changed: {name} was trained on the labels {was} (positive {old!r}), the "
                f"data's are {labels}; recode the target to its old labels, or run a new sweep.")
        quoted = " (quoted, as YAML reads a bare yes/no/on/off as true/false)" if isinstance(old, str) else ""
        raise RetrainInputError(
            f"{name} predicts the class {old!r}, but the data's positive class is {positive!r}; set "
            f"data.positive_class to {old!r}{quoted}, or run a new sweep.")
    if repr(positive) != repr(old):
        echo(f"Note: v{base.version} names its positive class {old!r}, the data "
             f"{positive!r}: the same class; a challenger's prediction column is probability_{positive}.")


def _challenge_on_rows(client: Client, cfg: SweepConfig, plan: DataPlan, base: RegisteredVersion, fingerprint: str,
                       echo: Callable[[str], None]) -> _Challenge:
    """The rows engine: the rows on the workers (held-out ones marked), the challenger, both held-out scores.

    The block-statistics cache holds p × p matrices per block, which this engine cannot use: every block is
    read, and the output says so rather than skipping the cache silently.
    """
    note = None
    if cfg.retrain.cache is not None:
        why = ("the rows engine: it stores p × p statistics per block" if cfg.model.family == "gaussian" else
               f"model.family {cfg.model.family}, whose fits keep the rows in worker memory (a Newton step's "
               "weights change with the coefficients)")
        note = f"retrain.cache ({cfg.retrain.cache}) is not used by {why}; {_every_block(plan)} read"
        echo(f"Note: {note}.")
    k, seed, holdout = cfg.folds.k, cfg.folds.seed, cfg.retrain.holdout
    controls = sweep_controls(cfg, plan.feature_names)
    placement = (RowPlacement(client, plan, k, seed, cfg.model, holdout, controls) if cfg.retrain.mode == "resweep"
                 else None)
    rows = placement.current_pass() if placement else client.submit(load_rows, plan, k, seed, holdout, pure=False)
    facts = wait_done(client.submit(retrain_facts, rows, pure=False))
    if base.model.family == "binomial":
        _check_positive_class(base, facts, cfg, echo)
    _check_rows(facts["w_heldout"], facts["w_train"], facts["fold_weight"], cfg)
    _check_two_classes(facts, cfg)
    # a GLM keeps its rows in worker memory whichever engine solves its Newton steps (cfg.model.engine)
    held = "rows engine" if cfg.model.family == "gaussian" else "rows kept in worker memory"
    echo(f"Data: {plan.source}: {facts['n_train']} training + {facts['n_heldout']} held-out rows, fingerprint "
         f"{fingerprint}; {_every_block(plan)} read ({held})")
    extra: dict[str, Any] = {}
    tasks = tasks_of("rows", cfg.model.family)
    if placement is not None:
        bounds = wait_done(client.submit(tasks.bounds, rows, cfg.model, controls, pure=False))
        cand, extra = _resweep(client, placement, bounds, base, cfg, fingerprint, echo)
        rows = placement.current_pass()  # placed again if lost during the resweep
    else:
        cand = base_candidate(base.model, controls)
    challenger = wait_done(client.submit(tasks.refit, rows, cand, plan.feature_names, cfg.model, plan.encoding,
                                         controls, pure=False))
    # the incumbent's coefficients on today's features: a level it never saw counts as zero, as at predict time
    incumbent = coefficients_by_name(base.model.coef, base.model.feature_names or plan.feature_names,
                                     plan.feature_names)
    inc_fill = incumbent_fill(plan.encoding, base.model.encoding) if plan.encoding is not None else None
    inc, ch = wait_done(client.submit(heldout_mse, rows, [(incumbent, base.model.intercept, inc_fill),
                                                          (challenger.coef, challenger.intercept, None)], pure=False))
    example = (read_example(plan) if plan.encoding is not None
               else _example(facts["x_mean"], facts["integer_columns"], plan))
    evidence = _Evidence(facts["n_train"], facts["n_heldout"], len(plan.blocks), 0, facts["time_cutoff"],
                         example, "rows" if cfg.model.family == "gaussian" else cfg.model.engine, note)
    return challenger, (inc, ch), evidence, extra


def _rows_left_out(plan: DataPlan, ev: _Evidence, cfg: SweepConfig, echo: Callable[[str], None]) -> int:
    """Rows of the source neither trained on nor held out, said in a note: a missing target or weight, a
    missing time value (neither older nor newer than the cut-off), under ``data.missing: drop`` a missing
    feature. A time column with gaps under imputation lost them without a word (23 of 442 rows)."""
    left = plan.n_rows - ev.n_train - ev.n_heldout
    if left > 0:
        tc = cfg.retrain.holdout.time_column
        offset = ("exposure" if plan.exposure else "offset") if plan.offset else None
        causes = ["target", *(["weight"] if plan.weight else []), *([f"time value ({tc!r})"] if tc else []),
                  *([f"{offset} ({plan.offset_column!r})"] if offset else []),
                  *(["feature (data.missing: drop)"] if plan.missing == "drop" else [])]
        said = ", ".join(causes[:-1]) + f" or {causes[-1]}" if len(causes) > 1 else causes[0]
        echo(f"Note: {left:,} of {plan.n_rows:,} rows left out, for a missing {said}.")
    return max(left, 0)


def _features_differ(theirs: list[str], ours: list[str], model: str, time_column: str | None) -> str:
    """Which features the data lack and which they add against the model's (at most 10 of each named: a wide
    table's lists were thousands of names), and why when the time column is one of the model's features."""
    missing, new = [c for c in theirs if c not in ours], [c for c in ours if c not in theirs]

    def few(names: list[str]) -> str:
        return str(names[:10])[:-1] + (f", … ({len(names)} in all)]" if len(names) > 10 else "]")

    said = " and ".join([*([f"the data lack {few(missing)}"] if missing else []),
                         *([f"add {few(new)}"] if new else [])])
    why = (f" (retrain.holdout.time_column {time_column!r} is read apart from the features, but {model} has it as "
           "one: hold out by another column, or by row fraction)" if time_column in missing else "")
    if missing:
        fix = "retrain keeps the feature set (new levels are fine): restore the missing columns, or run a new sweep"
    elif new:  # data.exclude keeps them out (data.features, which would too, is not set: they would not show)
        fix = f"leave the new columns out with data.exclude (add {few(new)} to it), or run a new sweep to use them"
    else:
        listed = f": {theirs}" if len(theirs) <= _LISTED_COLUMNS else " (the version's input columns)"
        fix = f"list the model's columns in its order with data.features{listed}, or run a new sweep"
    return f"the data's features differ from those of {model}: {said or 'in their order'}{why}; {fix}."


_LISTED_COLUMNS = 30  # a message lists a model's columns to paste up to this many


def _check_target(base: RegisteredVersion, target: str, name: str) -> None:
    """The champion's target column (tagged on versions registered since it was) must be the config's: a
    changed ``data.target`` was reported as changed features, the old target now among them."""
    theirs = base.tags.get(TARGET_TAG)
    if theirs is not None and theirs != target:
        raise RetrainInputError(
            f"{name} v{base.version} predicts {theirs!r}, but data.target is {target!r}; retrain keeps the target: "
            f"set data.target to {theirs!r}, or run a new sweep (with another tracking.registered_model) for "
            f"{target!r}.")


def _check_comparable(base: RegisteredVersion, cfg: SweepConfig, plan: DataPlan) -> None:
    """Champion and challenger are scored on one held-out deviance: the incumbent must be of the config's family
    and take the same kind of offset (a one-line error before any row is read otherwise)."""
    model, name = base.model, cfg.tracking.registered_model
    if model.family != cfg.model.family:
        raise RetrainInputError(
            f"{name} v{base.version} is a {model.family} model, but model.family is {cfg.model.family}; retrain "
            "keeps the family: run a new sweep to change it.")
    kind = None if plan.offset is None else ("exposure" if plan.exposure else "offset")
    if model.offset_kind != kind:
        raise RetrainInputError(
            f"{name} v{base.version} was fitted with {model.offset_kind or 'no offset'}, but the config gives "
            f"{kind or 'none'} (data.offset / data.exposure); give the same, or run a new sweep.")
    _check_column_kinds(model.encoding, plan, f"{name} v{base.version}")


def _check_column_kinds(encoding: Encoding | None, plan: DataPlan, model: str) -> None:
    """Each feature is read as the incumbent read it, numbers or levels: a numeric column that holds text now
    would otherwise become level indicators in the challenger (and the clients sending numbers get zeros), a
    categorical one read as numbers a single slope."""
    was = {c: lv for c, lv in zip(encoding.columns, encoding.levels)} if encoding is not None else {}
    for c in plan.raw_features:
        levels, now_text = was.get(c), c in plan.categorical
        if levels is None and now_text:
            raise RetrainInputError(
                f"column {c!r} was numeric when {model} was fitted and is read as text now; retrain keeps the model's "
                "features as they were: fix the column (a word that marks a gap goes in data.na_values), or run a "
                "new sweep to make it categorical.")
        if levels is not None and not now_text:
            real = [v for v in levels if v != NA_LEVEL]
            shown = ", ".join(repr(v) for v in real[:5]) + (", …" if len(real) > 5 else "")
            raise RetrainInputError(
                f"column {c!r} was categorical when {model} was fitted (levels {shown}) and is read as numbers now; "
                f"list it in data.categorical to keep reading it as levels, or run a new sweep.")


def _every_block(plan: DataPlan) -> str:
    """``all 7 blocks`` (``its one block`` for a source of one)."""
    return "its one block" if len(plan.blocks) == 1 else f"all {len(plan.blocks)} blocks"


def _check_rows(w_heldout: float, w_train: float, fold_weight: list[float], cfg: SweepConfig) -> None:
    if not w_heldout > 0:
        raise DataError(
            "the hold-out has no rows (or zero weight); raise retrain.holdout.fraction or add data."
        )
    empty = [f for f, w in enumerate(fold_weight) if not w > 0]
    if not w_train > 0 or (cfg.retrain.mode == "resweep" and empty):
        raise DataError(
            f"the training rows leave folds {empty} empty; lower retrain.holdout.fraction or folds.k, or add data."
        )


def _copied_blocks(plan: DataPlan, fingerprints: Sequence[str]) -> str | None:
    """A note when blocks of two different files hold the same bytes (one delivery copied in twice, the fourth
    probe's ``part-003`` = ``part-002``): its rows would count twice, in training and in the hold-out, without a
    word; a block repeated within one file is left alone (a table may repeat rows)."""
    first: dict[str, BlockSpec] = {}
    for spec, fp in zip(plan.blocks, fingerprints):
        seen = first.setdefault(fp, spec)
        if seen.path != spec.path and seen.path and spec.path:
            return (f"{os.path.basename(spec.path)!r} holds the same rows as {os.path.basename(seen.path)!r} "
                    f"({spec.n_rows} rows, byte for byte): the same delivery twice? Its rows count twice, in training "
                    "and in the hold-out; remove the copy.")
    return None


def _check_two_classes(facts: dict[str, Any], cfg: SweepConfig) -> None:
    """A binomial challenger needs both classes among the training rows (those outside the hold-out): a time
    hold-out may leave one (a class that only the newest rows hold), where the fit raised a traceback."""
    if cfg.model.family != "binomial" or 0.0 < facts["y_mean_train"] < 1.0:
        return
    how = ("hold out fewer of the newest rows (lower retrain.holdout.fraction), or by row fraction (unset "
           "retrain.holdout.time_column)" if cfg.retrain.holdout.time_column else "lower retrain.holdout.fraction")
    raise RetrainInputError(f"the retrain's training rows (those outside the hold-out) hold one class only, so no "
                            f"logistic model can be fitted on them; {how}, or add rows of the other class.")


MIN_HELDOUT_ROWS = 30  # held-out rows a contest needs: fewer cannot tell two models apart (3 rows decided one)


def _holdout_rule(cfg: SweepConfig) -> str:
    """The hold-out rule as a retrain version records it (``regsweep.holdout``): what decides which rows are held
    out."""
    return json.dumps(cfg.retrain.holdout.model_dump(), sort_keys=True)


def _holdout_changed(base: RegisteredVersion, cfg: SweepConfig) -> str | None:
    """How the hold-out rule changed since ``base`` was trained by a retrain, where the change can put rows
    ``base`` was trained on among today's held-out ones (None: it cannot, or no rule was recorded). With another
    ``retrain.holdout.seed`` 851 of 1,155 held-out rows were its training rows (the retrain probe), and such a
    contest kept it silently. What cannot: a lower fraction (a row is held out when its hash is below it, or when
    it lies in the newest share of the time span: fewer of the same rows), the seed beside a time column (unused),
    a setting the recorded rule predates (its default then)."""
    from .config import HoldoutConfig

    then = base.tags.get(f"{TAG}holdout")
    if then is None:
        return None
    old, new = HoldoutConfig.model_validate(json.loads(then)), cfg.retrain.holdout
    changed = []
    if old.time_column != new.time_column:
        changed.append(f"time_column {old.time_column!r} → {new.time_column!r}")
    elif new.time_column is None and old.seed != new.seed:
        changed.append(f"seed {old.seed} → {new.seed}")
    if new.fraction > old.fraction:
        changed.append(f"fraction {old.fraction:g} → {new.fraction:g}")
    return ", ".join(changed) or None


def _decide(base: RegisteredVersion, incumbent: float, challenger: float, margin: float,
            label: str = "MSE", n_heldout: int = MIN_HELDOUT_ROWS, holdout_changed: str | None = None
            ) -> tuple[str, str]:
    """Promote or keep, and why, on the held-out ``label`` (the MSE, or a binomial or Poisson deviance), scored
    on ``n_heldout`` rows: a champion is not replaced on fewer than :data:`MIN_HELDOUT_ROWS`. A champion trained
    under another hold-out rule (``holdout_changed``) may have seen today's held-out rows: as a first retrain's
    candidate, which saw all of its sweep's rows, it meets no contest."""
    if not math.isfinite(challenger):
        return "kept", "the challenger's held-out error is not finite"
    if base.alias == CHAMPION and holdout_changed:
        return "promoted", (f"retrain.holdout changed since v{base.version} was trained ({holdout_changed}): its "
                            f"training rows may hold today's held-out ones, so the challenger becomes champion "
                            f"without a contest (v{base.version}'s held-out {label} {incumbent:.6g} is only "
                            "reported); set the old rule back to compare them")
    if base.alias == CHAMPION and n_heldout < MIN_HELDOUT_ROWS:
        return "kept", (f"the hold-out holds {n_heldout} rows, too few to tell two models apart (at least "
                        f"{MIN_HELDOUT_ROWS}): add rows, or raise retrain.holdout.fraction")
    if base.alias != CHAMPION:
        reason = (f"first retrain: there is no champion yet, so the challenger becomes it without a contest (the "
                  f"{base.alias} v{base.version} it started from was fit on all of its sweep's rows, which may hold "
                  f"held-out ones, so its held-out {label} {incumbent:.6g} is only reported)")
        if math.isfinite(incumbent) and not challenger <= incumbent:  # (said: a promotion the numbers question)
            reason += (f"; v{base.version} scores better on this hold-out ({incumbent:.6g} against {challenger:.6g}): "
                       "if its sweep never saw these rows (they arrived since), it is the better model: set the alias "
                       f"'champion' on v{base.version} in MLflow to keep it instead")
        return "promoted", reason
    bar = (1.0 - margin) * incumbent
    if challenger < bar:
        return "promoted", (f"challenger {label} {challenger:.6g} < (1 − {margin:g}) × incumbent {label} "
                            f"{incumbent:.6g} = {bar:.6g}")
    return "kept", (f"challenger {label} {challenger:.6g} ≥ (1 − {margin:g}) × incumbent {label} {incumbent:.6g} "
                    f"= {bar:.6g}")


def _outcome(base: RegisteredVersion, version: int, scores: tuple[float, float], action: str) -> dict[str, Any]:
    """Incumbent (the version the retrain started from) and champion (after the decision), version and
    held-out score alike; ``previous_version`` / ``previous_alias`` are the incumbent's, as before."""
    incumbent_score, challenger_score = scores
    promoted = action == "promoted"
    return {"incumbent_version": base.version, "incumbent_score": incumbent_score,
            "champion_version": version if promoted else base.version,
            "champion_score": challenger_score if promoted else incumbent_score,
            "challenger_version": version, "challenger_score": challenger_score,
            "previous_version": base.version, "previous_alias": base.alias}


def _record(tracker: Tracker, cfg: SweepConfig, plan: DataPlan, base: RegisteredVersion, challenger: FittedModel,
            scores: tuple[float, float], decision: tuple[str, str], fingerprint: str, ev: _Evidence,
            extra: dict[str, Any]) -> dict[str, Any]:
    """Log the retrain run, register the challenger, move the alias, tag the version (decision last)."""
    with uninterrupted():  # a stop waits: the run ends, the decision is written whole (module docstring)
        return _record_run(tracker, cfg, plan, base, challenger, scores, decision, fingerprint, ev, extra)


def _record_run(tracker: Tracker, cfg: SweepConfig, plan: DataPlan, base: RegisteredVersion, challenger: FittedModel,
                scores: tuple[float, float], decision: tuple[str, str], fingerprint: str, ev: _Evidence,
                extra: dict[str, Any]) -> dict[str, Any]:
    name = cfg.tracking.registered_model
    action, reason = decision
    run = tracker.start_parent(run_name=f"retrain-{name}", tags={
        f"{TAG}kind": "retrain", f"{TAG}data_fingerprint": fingerprint, f"{TAG}model": name})
    status = "FAILED"
    try:
        version_tags = {f"{TAG}kind": "retrain", f"{TAG}data_fingerprint": fingerprint, TARGET_TAG: plan.target,
                        f"{TAG}retrain_run": run, f"{TAG}incumbent_version": str(base.version),
                        f"{TAG}incumbent_alias": str(base.alias), f"{TAG}holdout": _holdout_rule(cfg)}
        model_uri, version = tracker.log_model(run, challenger, ev.example, name,
                                               version_tags, alias=None)
        assert version is not None
        out = _outcome(base, version, scores, action)
        if action == "promoted":
            set_alias(tracker.client, name, CHAMPION, version)
        tracker.log_params(run, {
            "mode": cfg.retrain.mode, "margin": cfg.retrain.margin,
            "holdout": json.dumps(cfg.retrain.holdout.model_dump()), "incumbent_version": base.version,
            "incumbent_alias": base.alias, "challenger_version": version, "challenger.penalty": challenger.penalty,
            "challenger.lambda1": challenger.lambda1, "challenger.lambda2": challenger.lambda2,
            "incumbent_model_uri": f"models:/{name}/{base.version}", "challenger_model_uri": f"models:/{name}/{version}",
            "data_fingerprint": fingerprint, "n_features": plan.n_features, "engine": ev.engine,
        })
        tracker.log_metrics(run, {
            "incumbent_score": out["incumbent_score"], "champion_score": out["champion_score"],
            "challenger_score": out["challenger_score"], "champion_version": float(out["champion_version"]),
            "n_rows_train": float(ev.n_train), "n_rows_heldout": float(ev.n_heldout),
            "blocks_read": float(ev.blocks_read), "blocks_cached": float(ev.blocks_cached),
            **{k: float(v) for k, v in extra.items() if isinstance(v, (int, float))},
        })
        outcome_tags = {f"{TAG}{k}": (repr(v) if k.endswith("_score") else str(v)) for k, v in out.items()
                        if k not in ("previous_version", "previous_alias")}
        tracker.set_tags(run, {f"{TAG}decision": action, f"{TAG}reason": reason, **outcome_tags})
        tag_version(tracker.client, name, version, {  # decision last: marks the data as trained
            **outcome_tags, f"{TAG}reason": reason, f"{TAG}decision": action})
        status = "FINISHED"
    finally:
        tracker.end_run(run, status)
    return {
        "action": action, "reason": reason, **out, "data_fingerprint": fingerprint, "mode": cfg.retrain.mode,
        "challenger_params": {"penalty": challenger.penalty, "lambda1": challenger.lambda1,
                              "lambda2": challenger.lambda2},
        "registered_model": name, "model_uri": model_uri, "mlflow_run_id": run, "tracking_uri": cfg.tracking.uri,
        "n_rows_train": ev.n_train, "n_rows_heldout": ev.n_heldout, "time_cutoff": ev.cutoff,
        "blocks_total": len(plan.blocks), "blocks_read": ev.blocks_read, "blocks_cached": ev.blocks_cached,
        "engine": ev.engine, "cache_note": ev.cache_note,
        **extra,
    }


def _recorded(mv: Any, *keys: str) -> str | None:
    """The first of the retrain tags ``keys`` that version ``mv`` carries (versions tagged before the incumbent
    fields existed name the incumbent ``champion_version`` / ``champion_score``)."""
    tags = mv.tags or {}
    return next((tags[f"{TAG}{k}"] for k in keys if f"{TAG}{k}" in tags), None)


def _recorded_number(mv: Any, *keys: str, kind: type = float) -> Any:
    v = _recorded(mv, *keys)
    return kind(float(v)) if v is not None else None


def _settles(mv: Any, base: RegisteredVersion) -> bool:
    """Whether retrain version ``mv`` (trained on today's data) settles today's contest: it is the incumbent
    itself (promoted), or it met the incumbent (it lost; or it won, and the alias was moved back to the
    incumbent by hand since, a rollback that is left as set). Not when the incumbent took no part in that
    contest (a retrain on other data promoted another version and the data came back, or the alias was moved
    by hand to a third version): reported as up to date, such a retrain named a champion the alias did not
    hold."""
    return int(mv.version) == base.version \
        or _recorded_number(mv, "incumbent_version", "champion_version", kind=int) == base.version


def _up_to_date(tracker: Tracker, name: str, fingerprint: str, mv: Any, base: RegisteredVersion) -> dict[str, Any]:
    """The outcome recorded on the version already trained on this data, whose contest was against ``base``
    (:func:`_settles`): ``base`` is the champion either way."""
    incumbent_version = _recorded_number(mv, "incumbent_version", "champion_version", kind=int)
    incumbent_score = _recorded_number(mv, "incumbent_score", "champion_score")
    challenger_score = _recorded_number(mv, "challenger_score")
    decision = _recorded(mv, "decision")
    reason = f"v{mv.version} was already trained on data {fingerprint} (decision: {decision})"
    if decision == "promoted" and int(mv.version) != base.version:
        reason += f"; the alias {base.alias} was moved back to v{base.version} since, and is left as set"
    return {
        "action": "up_to_date",
        "reason": reason,
        "incumbent_version": incumbent_version, "incumbent_score": incumbent_score,
        "champion_version": base.version,
        "champion_score": challenger_score if int(mv.version) == base.version else incumbent_score,
        "challenger_version": int(mv.version), "challenger_score": challenger_score,
        "previous_version": incumbent_version, "previous_alias": _recorded(mv, "incumbent_alias"),
        "data_fingerprint": fingerprint, "registered_model": name, "tracking_uri": tracker.uri,
    }
