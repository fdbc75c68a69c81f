"""Faults with real processes: workers, drivers, schedulers and MLflow servers killed mid-sweep.

Every test runs the ``regsweep`` CLI as a subprocess against processes it
started itself on 127.0.0.1, kills one by PID with the named signal, and then
reads back the Optuna study and the MLflow runs independently. Each wait is
bounded. What is checked is the issue's pass criterion for each fault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import stop_processes
from .faults import (
    Driver,
    MlflowServer,
    by_state,
    check_folds_counted_once,
    check_one_child_run_per_trial,
    mlflow_runs,
    n_complete,
    read_summary,
    start_cluster,
    study_trials,
    sweep_args,
    wait_until,
)

pytestmark = pytest.mark.integration

SWEEP_TIMEOUT_S = 240.0


def _names(tag: str) -> dict[str, str]:
    u = f"{tag}-{uuid.uuid4().hex[:8]}"
    return {"study": f"study-{u}", "experiment": f"exp-{u}", "model": f"model-{u}"}


def _config(tmp: Path) -> Path:
    path = tmp / "sweep.yaml"
    path.write_text("search:\n  in_flight: 4\n")  # bundled diabetes; small batches: many round trips
    return path


def _storage(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'optuna.db'}"


def _sqlite_ok(path: Path) -> None:
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path


# ------------------------------------------------------------------ 1. a worker dies
def test_sigkill_of_a_worker_mid_sweep_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    _, trials, runs = _kill_a_worker_mid_sweep(tmp_path, _config(tmp_path), "wkill", n_trials=80, after=20)
    check_folds_counted_once(trials)
    check_one_child_run_per_trial(trials, runs)


def _kill_a_worker_mid_sweep(tmp_path: Path, config: Path, tag: str, n_trials: int = 60,
                             after: int = 15) -> tuple[dict, list, list]:
    """Run ``config`` on a two-worker cluster without nannies (no nanny: the worker stays dead), SIGKILL one
    worker after ``after`` complete trials, and return the summary, the trials and the MLflow runs once the
    driver has finished (exit 0 required)."""
    cluster = start_cluster(tmp_path / "dask", 2, nanny=False)
    names, storage = _names(tag), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        driver = Driver(sweep_args(config, address=cluster.address, tracking=tracking, storage=storage,
                                   names=names, n_trials=n_trials, summary=tmp_path / "s.json"), tmp_path)
        wait_until(lambda: n_complete(storage, names["study"]) >= after, 120, f"{after} complete trials", driver)
        cluster.workers[0].signal_group(signal.SIGKILL)
        assert driver.wait(SWEEP_TIMEOUT_S) == 0, driver.output()
    finally:
        stop_processes(cluster.procs())
    trials = study_trials(storage, names["study"])
    assert len(by_state(trials, "COMPLETE")) == n_trials
    assert by_state(trials, "RUNNING") == []
    return read_summary(tmp_path / "s.json"), trials, mlflow_runs(tracking, names["experiment"])


def test_sigkill_of_a_worker_mid_sweep_with_folds_pinned_to_workers_loses_nothing(tmp_path: Path) -> None:
    """A Gram wider than ``REPLICATE_FEATURES``: each fold lives once, its tasks pinned to its worker. The dead
    worker's folds are placed again on the survivor (from the pass, which Dask recomputes if it went too)."""
    from pipeline.cv.placement import REPLICATE_FEATURES

    assert _kill_a_worker_mid_npy_sweep(tmp_path, 3000, REPLICATE_FEATURES + 40, "pkill")["engine"] == "gram"


def test_sigkill_of_a_worker_mid_sweep_on_the_rows_engine_loses_nothing(tmp_path: Path) -> None:
    """Wide data (the rows engine): the dead worker's rows and fold models are gone with it; the sweep goes on
    with the survivor's, and the path, the refit and the model come from rows reloaded where needed."""
    assert _kill_a_worker_mid_npy_sweep(tmp_path, 100, 1500, "rkill")["engine"] == "rows"


def _kill_a_worker_mid_npy_sweep(tmp_path: Path, n: int, p: int, tag: str) -> dict:
    """:func:`_kill_a_worker_mid_sweep` on ``n × p`` standard normal rows (ten true effects) from ``X.npy``; every
    trial's folds counted once and one child run per trial. Returns the summary."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, p))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X[:, :10] @ rng.normal(size=10) + rng.normal(size=n))
    config = tmp_path / f"{tag}.yaml"
    config.write_text(f"data:\n  source: {tmp_path / 'X.npy'}\n  target: {tmp_path / 'y.npy'}\n"
                      "search:\n  in_flight: 4\n")
    summary, trials, runs = _kill_a_worker_mid_sweep(tmp_path, config, tag)
    check_folds_counted_once(trials)
    check_one_child_run_per_trial(trials, runs)
    return summary


def test_sigkill_of_a_worker_mid_binomial_sweep_loses_nothing(tmp_path: Path) -> None:
    """A logistic sweep keeps its rows and fold models on the workers (as the rows engine): the dead worker's are
    gone with it, the survivor's carry on, and every trial still has its K exact fold deviances."""
    import numpy as np

    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 30))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", (rng.random(4000) < 1 / (1 + np.exp(-X[:, :5].sum(axis=1)))).astype(float))
    config = tmp_path / "logistic.yaml"
    config.write_text(f"data:\n  source: {tmp_path / 'X.npy'}\n  target: {tmp_path / 'y.npy'}\n"
                      "model:\n  family: binomial\nsearch:\n  in_flight: 4\n")
    summary, trials, runs = _kill_a_worker_mid_sweep(tmp_path, config, "gkill")
    assert summary["family"] == "binomial" and summary["best_cv_metric"] > 0
    check_folds_counted_once(trials, "binomial_deviance")
    check_one_child_run_per_trial(trials, runs, "binomial_deviance")


# ------------------------------------------------------------------ 2. a poisoned task
POISON = textwrap.dedent('''
    """Worker preload for the tests: scoring trial {trial} kills the worker process, every time.

    It dies after 0.5 s, so that other trials' tasks are queued on the worker
    by then: Dask blames those too (KilledWorker), and only the trial that
    kills a worker while alone on the cluster may fail.
    """
    import os
    import time

    import pipeline.cv.fold_models as evaluate

    _score_folds = getattr(evaluate.score_folds, "unpoisoned", evaluate.score_folds)  # preloaded twice: wrap once

    def score_folds(models, candidates, tol):
        if any(c.trial == {trial} for c in candidates):
            time.sleep(0.5)
            os._exit(17)
        return _score_folds(models, candidates, tol)

    score_folds.__module__, score_folds.__qualname__ = "pipeline.cv.fold_models", "score_folds"
    score_folds.unpoisoned = _score_folds
    evaluate.score_folds = score_folds  # what a task naming pipeline.cv.fold_models.score_folds now finds
''')


def test_a_task_that_kills_its_worker_every_time_fails_only_its_trial(tmp_path: Path) -> None:
    poisoned = 3
    preload = tmp_path / "poison.py"
    preload.write_text(POISON.format(trial=poisoned))
    # Dask gives up on a task after it was running on 2 workers that died (default: 4)
    cluster = start_cluster(tmp_path / "dask", 2, preload=preload,
                            scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    names, storage = _names("poison"), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    try:
        driver = Driver(sweep_args(_config(tmp_path), address=cluster.address, tracking=tracking, storage=storage,
                                   names=names, n_trials=30), tmp_path)
        rc = driver.wait(SWEEP_TIMEOUT_S)
        assert rc == 0, driver.output()
        deaths = sum("exited with status 17" in p.log.read_text(errors="replace")
                     or "exit code 17" in p.log.read_text(errors="replace") for p in cluster.workers)
    finally:
        stop_processes(cluster.procs())
    trials = study_trials(storage, names["study"])
    assert len(by_state(trials, "COMPLETE")) == 30
    failed = by_state(trials, "FAIL")
    assert [t.number for t in failed] == [poisoned], [t.number for t in failed]
    assert "KilledWorker" in failed[0].system_attrs["fail_reason"], failed[0].system_attrs
    assert deaths >= 1, "the poisoned task never ran (the preload did not take effect)"
    runs = check_one_child_run_per_trial(trials, mlflow_runs(tracking, names["experiment"]))
    assert runs[poisoned].info.status == "FAILED"
    assert f"trial {poisoned} failed" in driver.out.read_text()


# ------------------------------------------------------------------ 3. the driver dies
def test_sigkill_of_the_driver_then_rerun_resumes_and_retries_the_stale_trials(
    tmp_path: Path, dask_cluster: str, mlflow_server: str
) -> None:
    names, storage = _names("dkill"), _storage(tmp_path)
    args = sweep_args(_config(tmp_path), address=dask_cluster, tracking=mlflow_server, storage=storage,
                      names=names, n_trials=120, summary=tmp_path / "s.json")
    first = Driver(args, tmp_path, "first")

    def running_after_some() -> bool:
        trials = study_trials(storage, names["study"])
        return len(by_state(trials, "COMPLETE")) >= 30 and bool(by_state(trials, "RUNNING"))

    wait_until(running_after_some, 120, "30 complete trials and one running", first, poll=0.02)
    children = first.children()
    first.popen.send_signal(signal.SIGKILL)
    first.wait(10)
    stale = {t.number: t.params for t in by_state(study_trials(storage, names["study"]), "RUNNING")}
    assert stale
    # the MLflow writer notices its driver is gone and exits on its own
    wait_until(lambda: not [p for p in children if Path(f"/proc/{p}").exists()], 30, "the writer to exit")
    first_parent = [r for r in mlflow_runs(mlflow_server, names["experiment"])
                    if r.data.tags.get("regsweep.kind") == "sweep"]
    assert [r.info.status for r in first_parent] == ["RUNNING"]  # what a SIGKILL leaves behind

    second = Driver(args, tmp_path, "second")
    assert second.wait(SWEEP_TIMEOUT_S) == 0, second.output()
    assert "marked FAIL" in second.out.read_text()

    trials = study_trials(storage, names["study"])
    assert len(by_state(trials, "COMPLETE")) == 120
    assert by_state(trials, "RUNNING") == []
    check_folds_counted_once(trials)
    by_number = {t.number: t for t in trials}
    for number, params in stale.items():
        t = by_number[number]
        assert t.state.name == "FAIL" and t.system_attrs["fail_reason"].startswith("stale"), t
        retries = [r for r in trials if r.system_attrs.get("regsweep:retry_of") == number]
        assert len(retries) == 1 and retries[0].params == params, (number, retries)
    runs = mlflow_runs(mlflow_server, names["experiment"])
    check_one_child_run_per_trial(trials, runs)
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"}
    old = parents.pop(first_parent[0].info.run_id)
    (new,) = parents.values()
    assert old.info.status == "KILLED"
    assert new.info.status == "FINISHED"
    assert new.data.tags["regsweep.resumed_from"] == old.info.run_id
    assert read_summary(tmp_path / "s.json")["stale_trials_failed"] == sorted(stale)


# ------------------------------------------------------------------ 4. SIGTERM
def _stop_with_sigterm(driver: Driver, ready: Any, what: str) -> None:
    """Once ``ready()``, SIGTERM the driver: it exits 143 within 10 s saying why, and its children after it."""
    try:
        wait_until(ready, 120, what, driver)
        children = driver.children()
        t0 = time.monotonic()
        driver.popen.send_signal(signal.SIGTERM)
        rc = driver.wait(10.0)
        elapsed = time.monotonic() - t0
    finally:
        driver.kill_group()
    assert rc == 143, driver.output()
    assert elapsed < 10.0
    assert "stopped (received signal SIGTERM)" in driver.err.read_text()
    wait_until(lambda: not [p for p in children if Path(f"/proc/{p}").exists()], 10, "the driver's children to exit")


@pytest.mark.parametrize("after", [20, 1])  # 1: stopped before MLflow's process has (or the driver took) the parent
def test_sigterm_ends_runs_killed_fails_running_trials_and_exits_within_10_s(tmp_path: Path, after: int) -> None:
    names, storage = _names("term"), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = Driver(sweep_args(_config(tmp_path), address=None, tracking=tracking, storage=storage, names=names,
                               n_trials=5000), tmp_path)  # the embedded LocalCluster, as users run it
    _stop_with_sigterm(driver, lambda: n_complete(storage, names["study"]) >= after, f"{after} complete trials")
    trials = study_trials(storage, names["study"])
    assert by_state(trials, "RUNNING") == []
    assert after <= len(by_state(trials, "COMPLETE")) < 5000
    runs = mlflow_runs(tracking, names["experiment"])
    (parent,) = [r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"]
    assert parent.info.status == "KILLED"
    check_one_child_run_per_trial(trials, runs)
    killed = [t for t in by_state(trials, "FAIL") if "Terminated" in t.system_attrs["fail_reason"]]
    assert killed, "no trial was in flight when SIGTERM arrived"
    _sqlite_ok(tmp_path / "optuna.db")
    _sqlite_ok(tmp_path / "mlflow.db")


def _retrain_study(storage: str, sweep_study: str) -> str | None:
    """The name of the resweep study a retrain of ``sweep_study`` opened, once it exists."""
    path = storage.removeprefix("sqlite:///")
    if not Path(path).exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(path)) as con:
            row = con.execute("SELECT study_name FROM studies WHERE study_name LIKE ?",
                              (f"{sweep_study}-retrain-%",)).fetchone()
    except sqlite3.OperationalError:  # the schema is being created
        return None
    return None if row is None else str(row[0])


def test_sigterm_stops_a_retrain_within_10_s_releasing_its_lock_and_leaving_nothing_running(tmp_path: Path) -> None:
    """A scheduler's timeout (SIGTERM) mid-resweep: exit 143, the cluster and MLflow's process gone, no trial
    RUNNING, no retrain run left open, the lock free for the next scheduled run."""
    import fcntl

    names, storage = _names("rterm"), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = _config(tmp_path)
    lock = tmp_path / "retrain.lock"
    sweep = Driver(sweep_args(config, address=None, tracking=tracking, storage=storage, names=names, n_trials=10),
                   tmp_path, name="sweep")
    assert sweep.wait(SWEEP_TIMEOUT_S) == 0, sweep.output()
    args = ["retrain", str(config), "--debug", *[a for kv in (
        f"tracking.uri={tracking}", f"tracking.experiment={names['experiment']}",
        f"tracking.registered_model={names['model']}", f"search.storage={storage}",
        f"search.study_name={names['study']}", "retrain.mode=resweep", "retrain.n_trials=5000",
        f"retrain.lock={lock}") for a in ("--set", kv)]]
    driver = Driver(args, tmp_path, name="retrain")  # the embedded LocalCluster, as a CronJob runs it
    try:
        study = wait_until(lambda: _retrain_study(storage, names["study"]), 120, "the resweep study", driver)
    except BaseException:
        driver.kill_group()
        raise
    _stop_with_sigterm(driver, lambda: n_complete(storage, study) >= 3, "3 complete resweep trials")
    assert "Traceback" not in driver.err.read_text()
    trials = study_trials(storage, study)
    assert by_state(trials, "RUNNING") == []
    assert 3 <= len(by_state(trials, "COMPLETE")) < 5000
    runs = mlflow_runs(tracking, names["experiment"])
    assert [r.info.status for r in runs if r.data.tags.get("regsweep.kind") == "retrain"] == []  # stopped before step 8
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if anything still held it
    finally:
        os.close(fd)
    _sqlite_ok(tmp_path / "optuna.db")
    _sqlite_ok(tmp_path / "mlflow.db")


# ------------------------------------------------------------------ 5. the MLflow server goes away
def test_mlflow_server_killed_for_seconds_and_restarted_loses_no_child_run(tmp_path: Path, dask_cluster: str) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    names, storage = _names("mlbounce"), _storage(tmp_path)
    try:
        driver = Driver(sweep_args(_config(tmp_path), address=dask_cluster, tracking=server.uri, storage=storage,
                                   names=names, n_trials=100, summary=tmp_path / "s.json"), tmp_path)
        wait_until(lambda: n_complete(storage, names["study"]) >= 20, 120, "20 complete trials", driver)
        server.kill()
        time.sleep(3.0)
        server.start()
        assert driver.wait(SWEEP_TIMEOUT_S) == 0, driver.output()
        trials = study_trials(storage, names["study"])
        assert len(by_state(trials, "COMPLETE")) == 100
        check_one_child_run_per_trial(trials, mlflow_runs(server.uri, names["experiment"]))
        summary = read_summary(tmp_path / "s.json")
        assert summary["trials_not_logged"] == [] and summary["tracking_incomplete"] == []
        assert summary["model_version"] == 1
    finally:
        if server.proc is not None:
            stop_processes([server.proc])


def test_mlflow_server_gone_for_good_sweep_finishes_and_sync_tracking_replays_it(
    tmp_path: Path, dask_cluster: str
) -> None:
    server = MlflowServer(tmp_path / "mlflow")
    server.start()
    names, storage = _names("mlgone"), _storage(tmp_path)
    config = _config(tmp_path)
    common = dict(address=dask_cluster, tracking=server.uri, storage=storage, names=names, n_trials=60)
    try:
        driver = Driver(sweep_args(config, summary=tmp_path / "s.json", **common), tmp_path)
        wait_until(lambda: n_complete(storage, names["study"]) >= 20, 120, "20 complete trials", driver)
        server.kill()
        assert driver.wait(SWEEP_TIMEOUT_S) == 0, driver.output()
        out = driver.out.read_text()
        assert "not logged to MLflow" in out and "regsweep sync-tracking" in out, out
        summary = read_summary(tmp_path / "s.json")
        assert summary["trials_not_logged"], summary
        assert summary["model_version"] is None
        assert (tmp_path / ".regsweep" / "unpublished" / names["study"] / "publication.json").exists()

        server.start()
        sets = sweep_args(config, **common)
        sync = Driver(["sync-tracking", str(config), *sets[2 : sets.index("--no-progress")]], tmp_path, "sync")
        assert sync.wait(120) == 0, sync.output()
        trials = study_trials(storage, names["study"])
        assert len(by_state(trials, "COMPLETE")) == 60
        runs = mlflow_runs(server.uri, names["experiment"])
        check_one_child_run_per_trial(trials, runs)
        (parent,) = [r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"]
        best = min(by_state(trials, "COMPLETE"), key=lambda t: t.value)
        assert parent.data.metrics["best_cv_mse"] == best.value
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)  # not a registry an earlier test set
        version = client.get_model_version_by_alias(names["model"], "candidate")
        assert version.tags["regsweep.trial"] == str(best.number)
        assert not (tmp_path / ".regsweep" / "unpublished" / names["study"]).exists()
    finally:
        if server.proc is not None:
            stop_processes([server.proc])


# ------------------------------------------------------------------ 6. the scheduler
def test_unreachable_scheduler_fails_within_10_s_naming_the_address(tmp_path: Path) -> None:
    from .conftest import free_port

    names, storage = _names("nosched"), _storage(tmp_path)
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    driver = Driver(sweep_args(_config(tmp_path), address=address, tracking=f"sqlite:///{tmp_path / 'm.db'}",
                               storage=storage, names=names, n_trials=5, debug=False), tmp_path)
    rc = driver.wait(30)
    assert time.monotonic() - t0 < 10.0
    assert rc == 1, driver.output()
    err = driver.err.read_text()
    assert f"cannot reach the Dask scheduler at {address}" in err and "Traceback" not in err, err
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "optuna.db").exists()


def test_scheduler_killed_mid_sweep_exits_nonzero_and_a_new_scheduler_completes_the_study(tmp_path: Path) -> None:
    names, storage = _names("skill"), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cluster = start_cluster(tmp_path / "dask1", 2)
    try:
        driver = Driver(sweep_args(_config(tmp_path), address=cluster.address, tracking=tracking, storage=storage,
                                   names=names, n_trials=80), tmp_path, "first")
        wait_until(lambda: n_complete(storage, names["study"]) >= 20, 120, "20 complete trials", driver)
        cluster.scheduler.signal_group(signal.SIGKILL)
        rc = driver.wait(90)
    finally:
        stop_processes(cluster.procs())
    assert rc != 0, driver.output()
    assert "scheduler" in driver.err.read_text().lower(), driver.output()
    assert by_state(study_trials(storage, names["study"]), "RUNNING") == []

    cluster = start_cluster(tmp_path / "dask2", 2)
    try:
        again = Driver(sweep_args(_config(tmp_path), address=cluster.address, tracking=tracking, storage=storage,
                                  names=names, n_trials=80), tmp_path, "second")
        assert again.wait(SWEEP_TIMEOUT_S) == 0, again.output()
    finally:
        stop_processes(cluster.procs())
    trials = study_trials(storage, names["study"])
    assert len(by_state(trials, "COMPLETE")) == 80
    check_folds_counted_once(trials)
    check_one_child_run_per_trial(trials, mlflow_runs(tracking, names["experiment"]))


# ------------------------------------------------------------------ 7. two drivers, one SQLite study
def test_two_drivers_started_at_once_on_new_sqlite_files_both_land_in_the_experiment(
    tmp_path: Path, dask_cluster: str
) -> None:
    names, storage = _names("twin"), _storage(tmp_path)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = sweep_args(_config(tmp_path), address=dask_cluster, tracking=tracking, storage=storage, names=names,
                      n_trials=40)
    drivers = [Driver(args, tmp_path, f"driver{i}") for i in range(2)]
    for d in drivers:
        assert d.wait(SWEEP_TIMEOUT_S) == 0, d.output()
    trials = study_trials(storage, names["study"])
    assert by_state(trials, "RUNNING") == []
    # both ask until the study holds 40, then finish what they asked: at most both's trials in flight more
    assert 40 <= len(by_state(trials, "COMPLETE")) <= 40 + 2 * 4
    runs = mlflow_runs(tracking, names["experiment"])
    assert len([r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"]) == 2
    check_one_child_run_per_trial(trials, runs)
    from mlflow import MlflowClient

    default = MlflowClient(tracking_uri=tracking).search_runs(["0"])
    assert default == [], "runs landed in MLflow's Default experiment"
    _sqlite_ok(tmp_path / "optuna.db")
    _sqlite_ok(tmp_path / "mlflow.db")
