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
5. collects the per-block statistics, from the cache where it has the block
   and by loading the block otherwise (:mod:`pipeline.statcache`);
6. trains the challenger on the training rows: ``refit`` (the starting
   model's penalty and λ) or ``resweep`` (a short new Optuna study on the
   training rows' K folds, warm-started by enqueuing the starting model's
   parameters and the previous study's best trials);
7. scores champion and challenger on the same held-out rows, exactly, from
   the held-out statistics (``SuffStats.mse``: the held-out SSE of any linear
   model follows from Σw, Σx, Σy, XᵀX, Xᵀy, yᵀy);
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
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cluster import open_client, total_threads
from .config import SweepConfig
from .data import DataPlan, plan_data
from .errors import DataError, RegsweepError
from .evaluate import BlockPass, Candidate, search_bounds
from .locks import RetrainLockedError, retrain_lock
from .model import FittedModel
from .statcache import (
    BlockRecord,
    DirCache,
    MlflowCache,
    StatCache,
    block_fingerprint,
    block_record,
    cache_key,
    data_fingerprint,
    record_from_bytes,
    record_to_bytes,
    split_record,
)
from .solvers import merge_all
from .tracking import Tracker

__all__ = ["RetrainInputError", "RetrainLockedError", "retrain_lock", "run_retrain"]

CHAMPION = "champion"
CANDIDATE = "candidate"
_TAG = "regsweep."
_WARM_TRIALS = 5  # best trials of the previous study enqueued by a resweep


class RetrainInputError(RegsweepError, ValueError):
    """Nothing to retrain from, or data that do not fit the registered model (exit 2)."""


# ---------------------------------------------------------------- planning
def retrain_plan(cfg: SweepConfig) -> DataPlan:
    """The data plan, with the hold-out time column checked and kept out of the features."""
    if cfg.folds.group is not None:
        raise RetrainInputError(
            "regsweep retrain does not support group k-fold yet (folds.group is set); unset folds.group."
        )
    plan = plan_data(cfg.data, cfg.folds)
    tc = cfg.retrain.holdout.time_column
    if tc is not None:
        if plan.kind not in ("csv", "parquet", "bundled"):
            raise RetrainInputError(
                f"retrain.holdout.time_column {tc!r} needs a tabular source (CSV or Parquet), but data.source "
                f"is {plan.kind}; unset it to hold out a seeded fraction of rows."
            )
        if tc not in plan.columns:
            raise RetrainInputError(f"retrain.holdout.time_column {tc!r} is not a column; columns are {list(plan.columns)}.")
        if tc in (plan.target, plan.weight):
            raise RetrainInputError(f"retrain.holdout.time_column {tc!r} is the target or weight column.")
        if cfg.data.features is not None and tc in cfg.data.features:
            raise RetrainInputError(f"retrain.holdout.time_column {tc!r} must not be in data.features.")
        plan = replace(plan, feature_names=tuple(f for f in plan.feature_names if f != tc))
        if not plan.feature_names:
            raise RetrainInputError("no feature columns are left besides the time column.")
    return plan


def _open_cache(cfg: SweepConfig, tracker: Tracker) -> StatCache | None:
    where = cfg.retrain.cache
    if where is None:
        return None
    if where == "mlflow":
        assert tracker.experiment_id is not None
        return MlflowCache(tracker.client, tracker.experiment_id, cfg.tracking.registered_model)
    return DirCache(where)


# ---------------------------------------------------------------- models
@dataclass(frozen=True)
class _Version:
    version: int
    alias: str | None
    model: FittedModel
    tags: dict[str, str]


def _alias_version(tracker: Tracker, name: str, alias: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return tracker.client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _load_version(tracker: Tracker, name: str, mv: Any, alias: str | None) -> _Version:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(tracker.uri)
        mlflow.set_registry_uri(tracker.uri)
        with contextlib.redirect_stderr(io.StringIO()):  # a progress bar per download
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}",
                                                             dst_path=tmp))
        found = sorted(local.rglob("model.json"))
        if not found:
            raise RetrainInputError(
                f"registered model {name!r} version {mv.version} holds no regsweep model (model.json); "
                "it was not registered by regsweep."
            )
        model = FittedModel.load(found[0].parent)
    return _Version(int(mv.version), alias, model, dict(mv.tags or {}))


def _starting_model(tracker: Tracker, name: str) -> _Version:
    for alias in (CHAMPION, CANDIDATE):
        mv = _alias_version(tracker, name, alias)
        if mv is not None:
            return _load_version(tracker, name, mv, alias)
    raise RetrainInputError(
        f"registered model {name!r} has no '{CHAMPION}' or '{CANDIDATE}' alias in {tracker.uri}; run "
        "`regsweep sweep` with the same config first (it registers the candidate)."
    )


def _versions_with_fingerprint(tracker: Tracker, name: str, fingerprint: str) -> list[Any]:
    """Retrain versions of ``name`` trained on data with this fingerprint and carrying a decision."""
    flt = f"name = '{name}' and tags.`{_TAG}data_fingerprint` = '{fingerprint}'"
    found = tracker.client.search_model_versions(flt)
    return sorted((mv for mv in found if (mv.tags or {}).get(f"{_TAG}kind") == "retrain"
                   and f"{_TAG}decision" in (mv.tags or {})), key=lambda mv: int(mv.version))


# ---------------------------------------------------------------- statistics
@dataclass
class _Stats:
    record: BlockRecord
    blocks_read: int
    blocks_cached: int
    cutoff: float | None


def collect_stats(client: Any, plan: DataPlan, fingerprints: list[str], cfg: SweepConfig,
                  cache: StatCache | None, echo: Callable[[str], None]) -> _Stats:
    """Merged per-fold training and held-out statistics, loading only the blocks the cache lacks."""
    from distributed import as_completed

    k, seed, holdout = cfg.folds.k, cfg.folds.seed, cfg.retrain.holdout
    keys = [cache_key(plan, spec, fp, k, seed, holdout) for spec, fp in zip(plan.blocks, fingerprints)]
    records: dict[int, BlockRecord] = {}
    if cache is not None:
        for i, key in enumerate(keys):
            data = cache.get(key)
            rec = record_from_bytes(data) if data is not None else None
            if rec is not None and len(rec.train) == k and rec.heldout.n_features == plan.n_features:
                records[i] = rec
    missing = [i for i in range(len(plan.blocks)) if i not in records]
    plan_f = client.scatter(plan, broadcast=True, hash=False)
    futs = {client.submit(block_record, plan_f, plan.blocks[i], k, seed, holdout, pure=False): i for i in missing}
    for fut in as_completed(list(futs), loop=client.loop):
        i = futs[fut]
        records[i] = fut.result()
        if cache is not None:
            cache.put(keys[i], record_to_bytes(records[i]))
        fut.release()
    blocks_read = len(missing)
    cutoff = None
    if holdout.time_column:
        t_min = min(r.t_min for r in records.values())
        t_max = max(r.t_max for r in records.values())
        cutoff = t_max - holdout.fraction * (t_max - t_min)
        reload = []
        for i, rec in list(records.items()):
            records[i], again = split_record(rec, plan, plan.blocks[i], k, seed, holdout, cutoff)
            if again:
                reload.append(i)
        futs = {client.submit(block_record, plan_f, plan.blocks[i], k, seed, holdout, cutoff, pure=False): i
                for i in reload}
        for fut in as_completed(list(futs), loop=client.loop):
            records[futs[fut]] = fut.result()
        blocks_read += len(reload)
    merged = records[0]
    for i in range(1, len(plan.blocks)):
        merged = merged + records[i]
    return _Stats(merged, blocks_read, len(plan.blocks) - len(missing), cutoff)


# ---------------------------------------------------------------- challenger
def _fit(train_total: Any, cand: Candidate, plan: DataPlan, cfg: SweepConfig) -> FittedModel:
    from .sweep import refit_best

    m = cfg.model
    passes = BlockPass((), 0, total=train_total)
    return refit_best(passes, cand, plan.feature_names, fit_intercept=m.fit_intercept,
                      standardize=m.standardize, tol=m.tol)


def _resweep(client: Any, stats: _Stats, base: _Version, plan: DataPlan, cfg: SweepConfig, fingerprint: str,
             echo: Callable[[str], None]) -> tuple[Candidate, dict[str, Any]]:
    """A short study on the training rows' K folds, warm-started; returns the best candidate."""
    from optuna.trial import TrialState

    from .search import TrialStore, run_trials
    from .sweep import _place_fold_models, _resolve_space

    k, m = cfg.folds.k, cfg.model
    rec = stats.record
    passes = BlockPass(rec.train, 0, rec.integer_columns, total=merge_all(rec.train))
    bounds = search_bounds(passes, fit_intercept=m.fit_intercept, standardize=m.standardize)
    space = _resolve_space(cfg, bounds)
    study_name = f"{cfg.search.study_name}-retrain-{fingerprint}"
    search_cfg = cfg.search.model_copy(update={"study_name": study_name})
    store = TrialStore(search_cfg)
    if not store.study.trials:
        for params in _warm_params(base.model, cfg, space):
            store.mirror.enqueue_trial(params, skip_if_exists=True)
    passes_f = client.scatter(passes, broadcast=False)
    slots = _place_fold_models(client, passes_f, k, plan.n_features, m.fit_intercept, m.standardize)
    threads = total_threads(client)
    in_flight = cfg.search.in_flight if cfg.search.in_flight != "auto" else 4 * threads
    with store.claim(), warnings.catch_warnings():  # the lease: another host can tell if this driver died
        warnings.simplefilter("ignore", UserWarning)  # enqueued λ outside the new range: Optuna warns, uses it
        run_trials(client, store, slots, k, space, cfg.retrain.n_trials, in_flight=in_flight, threads=threads,
                   tol=m.tol, on_result=lambda r: None,
                   on_failure=lambda n, c, reason: echo(f"resweep trial {n} failed: {reason}"))
    best = store.study.best_trial
    n_complete = len(store.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    cand = Candidate(best.number, best.params["penalty"], best.params.get("lambda1", 0.0),
                     best.params.get("lambda2", 0.0))
    return cand, {"resweep_study": study_name, "resweep_best_cv_mse": best.value,
                  "resweep_trials_complete": n_complete}


def _warm_params(model: FittedModel, cfg: SweepConfig, space: Any) -> list[dict[str, Any]]:
    """The starting model's parameters, then the previous study's best trials (penalties in the space only)."""
    out: list[dict[str, Any]] = []

    def add(penalty: str, lam1: float, lam2: float) -> None:
        if penalty not in space.penalties:
            return
        p: dict[str, Any] = {"penalty": penalty}
        if penalty != "l2":
            p["lambda1"] = float(lam1)
        if penalty != "l1":
            p["lambda2"] = float(lam2)
        if p not in out:
            out.append(p)

    add(model.penalty, model.lambda1, model.lambda2)
    try:
        import optuna
        from optuna.trial import TrialState

        prev = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
        done = sorted(prev.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value)
        for t in done[:_WARM_TRIALS]:
            add(t.params["penalty"], t.params.get("lambda1", 0.0), t.params.get("lambda2", 0.0))
    except KeyError:  # no previous study under that name: the starting model alone
        pass
    return out


def _example(rec: BlockRecord, train_total: Any, plan: DataPlan) -> Any:
    """One input row (the training column means, typed like the source) for the model signature.

    Built from statistics so that no (old) block has to be read for it.
    """
    import pandas as pd

    frame = pd.DataFrame([train_total.x_mean], columns=list(plan.feature_names))
    for name, is_int in zip(plan.feature_names, rec.integer_columns):
        if is_int:
            frame[name] = np.round(frame[name]).astype(np.int64)
    return frame


# ---------------------------------------------------------------- the run
def run_retrain(cfg: SweepConfig, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """One scheduled retrain (module docstring); returns the summary that ``--summary-json`` writes."""
    t0 = time.perf_counter()
    plan = retrain_plan(cfg)
    if plan.n_rows < cfg.folds.k:
        raise DataError(f"folds.k={cfg.folds.k} needs at least {cfg.folds.k} rows, but the data have {plan.n_rows}.")
    tracker = Tracker(cfg.tracking)
    tracker.preflight()
    tracker.ensure_experiment()
    name = cfg.tracking.registered_model
    with retrain_lock(cfg) as lock:
        base = _starting_model(tracker, name)
        if base.model.feature_names is not None and tuple(base.model.feature_names) != plan.feature_names:
            raise RetrainInputError(
                f"the data's features {list(plan.feature_names)} differ from those of {name} v{base.version} "
                f"({list(base.model.feature_names)}); retrain keeps the feature set, run a new sweep to change it."
            )
        echo(f"Retrain {name}: starting from v{base.version} (alias {base.alias}), mode {cfg.retrain.mode}; {lock}")
        with open_client(cfg.cluster) as client:
            plan_f = client.scatter(plan, broadcast=True, hash=False)
            fps = client.gather(client.map(block_fingerprint, [plan_f] * len(plan.blocks), plan.blocks, pure=False))
            fingerprint = data_fingerprint(plan, fps, cfg.retrain.holdout.time_column)
            done = _versions_with_fingerprint(tracker, name, fingerprint)
            if done:
                summary = _up_to_date(tracker, name, fingerprint, done[-1])
                summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
                echo(f"Up to date: {name} v{done[-1].version} was trained on data {fingerprint}; nothing to do.")
                return summary
            cache = _open_cache(cfg, tracker)
            stats = collect_stats(client, plan, fps, cfg, cache, echo)
            rec = stats.record
            train_total = merge_all(rec.train)
            _check_rows(rec, train_total, cfg)
            echo(f"Data: {plan.source}: {train_total.n_rows} training + {rec.heldout.n_rows} held-out rows, "
                 f"fingerprint {fingerprint}; blocks read {stats.blocks_read}, from cache {stats.blocks_cached}"
                 + (f" ({cache.description})" if cache is not None else ""))
            extra: dict[str, Any] = {}
            if cfg.retrain.mode == "resweep":
                cand, extra = _resweep(client, stats, base, plan, cfg, fingerprint, echo)
            else:
                bm = base.model
                cand = Candidate(-1, bm.penalty, bm.lambda1, bm.lambda2)
        challenger = _fit(train_total, cand, plan, cfg)
        champion_score = rec.heldout.mse(base.model.coef, base.model.intercept)
        challenger_score = rec.heldout.mse(challenger.coef, challenger.intercept)
        action, reason = _decide(base, champion_score, challenger_score, cfg.retrain.margin)
        summary = _record(tracker, cfg, plan, base, challenger, champion_score, challenger_score, action, reason,
                          fingerprint, stats, rec, train_total, extra)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 3)
    echo(f"{action.upper()}: challenger v{summary['challenger_version']} held-out MSE {challenger_score:.6g}, "
         f"{base.alias} v{base.version} {champion_score:.6g}; {reason}. Champion: v{summary['champion_version']}")
    return summary


def _check_rows(rec: BlockRecord, train_total: Any, cfg: SweepConfig) -> None:
    if not rec.heldout.sum_w > 0:
        raise DataError(
            "the hold-out has no rows (or zero weight); raise retrain.holdout.fraction or add data."
        )
    empty = [f for f, st in enumerate(rec.train) if not st.sum_w > 0]
    if not train_total.sum_w > 0 or (cfg.retrain.mode == "resweep" and empty):
        raise DataError(
            f"the training rows leave folds {empty} empty; lower retrain.holdout.fraction or folds.k, or add data."
        )


def _decide(base: _Version, champion: float, challenger: float, margin: float) -> tuple[str, str]:
    if base.alias != CHAMPION:
        return "promoted", (f"no champion yet: the first retrain sets it (the {base.alias} v{base.version} it "
                            "started from was fit on all rows, its held-out score is for information)")
    if not math.isfinite(challenger):
        return "kept", "the challenger's held-out error is not finite"
    bar = (1.0 - margin) * champion
    if challenger < bar:
        return "promoted", f"challenger MSE {challenger:.6g} < (1 − {margin:g}) × champion MSE {champion:.6g} = {bar:.6g}"
    return "kept", f"challenger MSE {challenger:.6g} ≥ (1 − {margin:g}) × champion MSE {champion:.6g} = {bar:.6g}"


def _record(tracker: Tracker, cfg: SweepConfig, plan: DataPlan, base: _Version, challenger: FittedModel,
            champion_score: float, challenger_score: float, action: str, reason: str, fingerprint: str,
            stats: _Stats, rec: BlockRecord, train_total: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """Log the retrain run, register the challenger, move the alias, tag the version (decision last)."""
    name = cfg.tracking.registered_model
    run = tracker.start_parent(run_name=f"retrain-{name}", tags={
        f"{_TAG}kind": "retrain", f"{_TAG}data_fingerprint": fingerprint, f"{_TAG}model": name})
    status = "FAILED"
    try:
        version_tags = {f"{_TAG}kind": "retrain", f"{_TAG}data_fingerprint": fingerprint,
                        f"{_TAG}retrain_run": run, f"{_TAG}champion_version": str(base.version)}
        model_uri, version = tracker.log_model(run, challenger, _example(rec, train_total, plan), name,
                                               version_tags, alias=None)
        assert version is not None
        champion_version = version if action == "promoted" else base.version
        if action == "promoted":
            tracker.client.set_registered_model_alias(name, CHAMPION, str(version))
        tracker.log_params(run, {
            "mode": cfg.retrain.mode, "margin": cfg.retrain.margin,
            "holdout": json.dumps(cfg.retrain.holdout.model_dump()), "champion_version": base.version,
            "champion_alias": base.alias, "challenger_version": version, "challenger.penalty": challenger.penalty,
            "challenger.lambda1": challenger.lambda1, "challenger.lambda2": challenger.lambda2,
            "champion_model_uri": f"models:/{name}/{base.version}", "challenger_model_uri": f"models:/{name}/{version}",
            "data_fingerprint": fingerprint, "n_features": plan.n_features,
        })
        tracker.log_metrics(run, {
            "champion_score": champion_score, "challenger_score": challenger_score,
            "n_rows_train": float(train_total.n_rows), "n_rows_heldout": float(rec.heldout.n_rows),
            "blocks_read": float(stats.blocks_read), "blocks_cached": float(stats.blocks_cached),
            **{k: float(v) for k, v in extra.items() if isinstance(v, (int, float))},
        })
        tracker.set_tags(run, {f"{_TAG}decision": action, f"{_TAG}reason": reason,
                               f"{_TAG}champion_version": str(base.version),
                               f"{_TAG}challenger_version": str(version)})
        for key, value in {f"{_TAG}champion_score": repr(champion_score),
                           f"{_TAG}challenger_score": repr(challenger_score), f"{_TAG}reason": reason,
                           f"{_TAG}decision": action}.items():  # decision last: marks the data as trained
            tracker.client.set_model_version_tag(name, str(version), key, value)
        status = "FINISHED"
    finally:
        tracker.end_run(run, status)
    return {
        "action": action,
        "reason": reason,
        "champion_version": champion_version,
        "challenger_version": version,
        "previous_version": base.version,
        "previous_alias": base.alias,
        "champion_score": champion_score,
        "challenger_score": challenger_score,
        "data_fingerprint": fingerprint,
        "mode": cfg.retrain.mode,
        "challenger_params": {"penalty": challenger.penalty, "lambda1": challenger.lambda1,
                              "lambda2": challenger.lambda2},
        "registered_model": name,
        "model_uri": model_uri,
        "mlflow_run_id": run,
        "tracking_uri": cfg.tracking.uri,
        "n_rows_train": train_total.n_rows,
        "n_rows_heldout": rec.heldout.n_rows,
        "time_cutoff": stats.cutoff,
        "blocks_total": len(plan.blocks),
        "blocks_read": stats.blocks_read,
        "blocks_cached": stats.blocks_cached,
        **extra,
    }


def _up_to_date(tracker: Tracker, name: str, fingerprint: str, mv: Any) -> dict[str, Any]:
    champ = _alias_version(tracker, name, CHAMPION)
    tags = mv.tags or {}

    def score(key: str) -> float | None:
        v = tags.get(f"{_TAG}{key}")
        return float(v) if v is not None else None

    return {
        "action": "up_to_date",
        "reason": f"v{mv.version} was already trained on data {fingerprint} (decision: {tags.get(_TAG + 'decision')})",
        "champion_version": int(champ.version) if champ is not None else None,
        "challenger_version": int(mv.version),
        "champion_score": score("champion_score"),
        "challenger_score": score("challenger_score"),
        "data_fingerprint": fingerprint,
        "registered_model": name,
        "tracking_uri": tracker.uri,
    }
