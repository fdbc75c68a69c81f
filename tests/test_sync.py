"""What MLflow replays from the study equals what the sweep logged live."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from pipeline.candidate import Candidate
from pipeline.search import TrialResult
from pipeline.bridge import record_from_trial
from pipeline.bridge.replay import child_record


def test_a_replayed_child_run_carries_the_live_metrics_params_and_fold_errors() -> None:
    result = TrialResult(
        number=0, candidate=Candidate(0, "elasticnet", 0.3, 0.02), cv_mse=2.5, cv_mse_se=0.125,
        fold_mse=(2.0, 2.5, 3.0), train_mse=2.25, cv_r2=0.4, n_nonzero=4.0, n_iter=17, converged=True,
        fit_seconds=0.01, start=1000.0, end=1001.5,
    )
    study = optuna.create_study()
    trial = optuna.trial.create_trial(
        params={"penalty": "elasticnet", "lambda1": 0.3, "lambda2": 0.02},
        distributions={"penalty": CategoricalDistribution(["l1", "l2", "elasticnet"]),
                       "lambda1": FloatDistribution(1e-3, 1.0, log=True),
                       "lambda2": FloatDistribution(1e-3, 1.0, log=True)},
        value=result.cv_mse, user_attrs={"cv": result.attrs()},
    )
    study.add_trial(trial)
    rec = record_from_trial(study.trials[0])
    live = child_record(result.number, result.candidate, result.metrics(), result.fold_mse,
                        int(result.start * 1000), int(result.end * 1000))
    assert dict(rec.metrics) == dict(live.metrics)
    assert {k: v for k, v in rec.metrics.items() if k.startswith("fold_mse_")} == {
        f"fold_mse_{i}": v for i, v in enumerate(result.fold_mse)}
    assert rec.metrics["log10_lambda1"] == pytest.approx(math.log10(0.3), rel=1e-15)
    assert dict(rec.params) == dict(live.params) == {"penalty": "elasticnet", "lambda1": 0.3, "lambda2": 0.02}
    assert rec.status == "FINISHED"


def test_a_failed_trial_replays_as_a_failed_run_without_metrics() -> None:
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(
        params={"penalty": "l1", "lambda1": 0.1},
        distributions={"penalty": CategoricalDistribution(["l1"]), "lambda1": FloatDistribution(1e-3, 1.0)},
        state=optuna.trial.TrialState.FAIL,
    ))
    rec = record_from_trial(study.trials[0])
    assert rec.status == "FAILED" and dict(rec.params) == {"penalty": "l1", "lambda1": 0.1, "lambda2": 0.0}
    assert dict(rec.metrics) == {"log10_lambda1": pytest.approx(-1.0, rel=1e-15)}  # no scores: only the strength


def test_replay_puts_each_trial_under_its_own_drivers_parent_run_and_skips_this_drivers_on_request(tmp_path):
    """Parent runs are kept once per driver in the study (bridge.record_parent); a replayed child
    run goes under the parent of the driver that ran the trial (or the per-trial attribute of older
    studies), and ``own=False`` leaves this driver's trials alone (their child runs are queued live)."""
    import os
    import socket

    from pipeline.config import load_config
    from pipeline.ownership import DriverId
    from pipeline.bridge import record_parent, replay_missing
    from pipeline.bridge.study_links import PARENT_RUN_ATTR
    from pipeline.search import OWNER_ATTR, TrialStore

    cfg = load_config(None, [f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=s"])
    dead = str(DriverId(socket.gethostname(), os.getpid(), 1))  # this PID with another start time: gone
    earlier = TrialStore(cfg.search)
    earlier.driver = DriverId.parse(dead)
    record_parent(earlier, "parent-of-dead")
    store = TrialStore(cfg.search)
    record_parent(store, "parent-of-this")
    dist = {"penalty": CategoricalDistribution(["l1"]), "lambda1": FloatDistribution(1e-3, 1.0)}
    for number, attrs in enumerate([{OWNER_ATTR: dead}, {OWNER_ATTR: dead, PARENT_RUN_ATTR: "legacy-parent"},
                                    {OWNER_ATTR: str(store.driver)}]):
        store.study.add_trial(optuna.trial.create_trial(params={"penalty": "l1", "lambda1": 0.1 + number / 10},
                                                        distributions=dist, value=1.0, system_attrs=attrs))

    class Recorder:
        def __init__(self) -> None:
            self.records = []

        def child_runs(self, study_name):
            return {}

        def log_trials(self, recs):
            self.records.extend(recs)

    others, everyone = Recorder(), Recorder()
    assert replay_missing(others, store, own=False) == 2
    assert replay_missing(everyone, store) == 3
    assert {r.number: r.parent for r in others.records} == {0: "parent-of-dead", 1: "legacy-parent"}
    assert {r.number: r.parent for r in everyone.records} == {0: "parent-of-dead", 1: "legacy-parent",
                                                              2: "parent-of-this"}


def test_the_end_of_a_sweep_that_ran_every_trial_itself_does_not_search_mlflow(tmp_path):
    """``replay_missing(own=False)`` (a sweep's settle step) on a study whose finished trials are all this
    driver's has nothing to replay: it must not ask MLflow for every child run of the study to find that out
    (that search loads each run with its params, metrics and tags); with own=True it asks, and replays."""
    from pipeline.bridge import record_parent, replay_missing
    from pipeline.config import load_config
    from pipeline.search import OWNER_ATTR, TrialStore

    cfg = load_config(None, [f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=s"])
    store = TrialStore(cfg.search)
    record_parent(store, "parent-of-this")
    dist = {"penalty": CategoricalDistribution(["l1"]), "lambda1": FloatDistribution(1e-3, 1.0)}
    for number in range(3):
        store.study.add_trial(optuna.trial.create_trial(params={"penalty": "l1", "lambda1": 0.1 + number / 10},
                                                        distributions=dist, value=1.0,
                                                        system_attrs={OWNER_ATTR: str(store.driver)}))

    class Tracking:
        def __init__(self) -> None:
            self.searches, self.records = 0, []

        def child_runs(self, study_name):
            self.searches += 1
            return {}

        def log_trials(self, recs):
            self.records.extend(recs)

    settle, rerun = Tracking(), Tracking()
    assert replay_missing(settle, store, own=False) == 0 and settle.searches == 0 and not settle.records
    assert replay_missing(rerun, store) == 3 and rerun.searches == 1


def test_sync_opens_a_killed_described_parent_for_trials_whose_driver_never_opened_one(tmp_path, monkeypatch):
    """A driver killed before MLflow had opened its parent run leaves trials and no parent: sync-tracking's
    parent for them was FINISHED and empty on a study 16 of 40 trials in (probe F). It now ends KILLED while
    the study is short of search.n_trials, says what it is, holds the child runs, and is the parent the next
    sweep's links to (regsweep.resumed_from)."""
    from mlflow import MlflowClient

    from pipeline.bridge.study_links import previous_parent_run
    from pipeline.bridge.sync import sync_tracking
    from pipeline.config import load_config
    from pipeline.search import TrialStore

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=k", "search.n_trials=10",
                             "search.penalties=[l1]", f"tracking.uri=sqlite:///{tmp_path}/m.db",
                             "tracking.experiment=k"])
    store = TrialStore(cfg.search)
    dist = {"penalty": CategoricalDistribution(["l1"]), "lambda1": FloatDistribution(1e-3, 1.0)}
    for number in range(3):
        store.study.add_trial(optuna.trial.create_trial(params={"penalty": "l1", "lambda1": 0.1 + number / 10},
                                                        distributions=dist, value=1.0 + number))
    summary = sync_tracking(cfg, echo=lambda _: None)
    run = MlflowClient(cfg.tracking.uri).get_run(summary["parent_run"])
    assert run.info.status == "KILLED"
    assert "stopped before MLflow had opened its parent run. Its 3 complete trial(s)" in \
        run.data.tags["mlflow.note.content"] and "of the 10 asked" in run.data.tags["mlflow.note.content"]
    children = MlflowClient(cfg.tracking.uri).search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(children) == summary["child_runs_replayed"] == 3
    assert previous_parent_run(TrialStore(cfg.search)) == run.info.run_id


def test_an_exited_deputy_of_a_dead_driver_is_looked_at_until_forgotten(tmp_path):
    """``deputies_gone`` names the drivers whose deputy (the process left to write their last child runs) has
    exited, as they have: not one whose deputy still runs, nor this driver; ``forget_deputies`` clears them, so
    a finished study's next sweep looks for the runs they left once (``sweep._sync_after_deputies``)."""
    import os
    import subprocess
    import sys

    from pipeline.config import load_config
    from pipeline.ownership import DriverId, _process_start_ticks
    from pipeline.search import TrialStore

    cfg = load_config(None, [f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=s"])
    here = DriverId.current()
    gone = [str(DriverId(here.host, os.getpid(), start, here.pidns)) for start in (1, 2, 3)]  # this PID, other starts
    dead_driver, dead_deputy, other_dead_driver = gone
    store = TrialStore(cfg.search)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_deputy = str(DriverId(here.host, live.pid, _process_start_ticks(live.pid) or 0, here.pidns))
        for owner, deputy in ((dead_driver, dead_deputy), (other_dead_driver, live_deputy)):
            earlier = TrialStore(cfg.search)
            earlier.driver = DriverId.parse(owner)
            earlier.record_deputy(deputy)
        store.record_deputy(dead_deputy)  # this driver's own: not gone while it runs
        assert store.deputies_gone() == [dead_driver]
        store.forget_deputies([dead_driver])
        assert store.deputies_gone() == []
        assert not store.abandoned(other_dead_driver)
    finally:
        live.kill()
        live.wait()
    assert store.deputies_gone() == [other_dead_driver] and store.abandoned(other_dead_driver)
