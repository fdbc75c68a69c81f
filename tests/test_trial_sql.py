"""Trials written by pipeline.trial_sql are the rows Optuna's own API writes (SQLite here, PostgreSQL in
tests/integration/test_trial_sql_postgres.py)."""

from __future__ import annotations

import datetime
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from pipeline.search import trial_sql
from pipeline.config import SearchConfig
from pipeline.search import SearchSpace, TrialStore

from .trial_sql_checks import (
    DISTRIBUTIONS, PARAMS, SYSTEM_ATTRS, check_numbers_unique_under_concurrent_writers,
    check_rows_match_optuna_api, new_study, rows_of,
)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch):
    """Local time 5 h 30 min ahead of UTC: a datetime stored in the wrong zone is hours off."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    assert datetime.datetime.now().astimezone().utcoffset() == datetime.timedelta(hours=5, minutes=30)
    yield
    monkeypatch.undo()
    time.tzset()


def test_rows_equal_those_of_optunas_api_in_a_time_zone_far_from_utc(tmp_path, far_from_utc) -> None:
    check_rows_match_optuna_api(f"sqlite:///{tmp_path}/s.db", "parity")


def test_two_writers_at_once_number_trials_0_to_n_minus_1(tmp_path) -> None:
    check_numbers_unique_under_concurrent_writers(f"sqlite:///{tmp_path}/s.db", "numbers")


def test_an_infinite_value_reads_back_as_infinite(tmp_path) -> None:
    study, writer = new_study(f"sqlite:///{tmp_path}/s.db", "inf")
    trial_id, _ = writer.insert_running(PARAMS, DISTRIBUTIONS, SYSTEM_ATTRS, start=datetime.datetime.now())
    writer.complete(trial_id, float("inf"), {})
    assert study.trials[0].value == float("inf")


def test_completing_a_trial_another_process_finished_raises_and_writes_nothing(tmp_path) -> None:
    study, writer = new_study(f"sqlite:///{tmp_path}/s.db", "stale")
    trial_id, _ = writer.insert_running(PARAMS, DISTRIBUTIONS, SYSTEM_ATTRS, start=datetime.datetime.now())
    study._storage.set_trial_state_values(trial_id, TrialState.FAIL)  # e.g. declared stale by another driver
    with pytest.raises(UpdateFinishedTrialError):
        writer.complete(trial_id, 1.0, {"cv": {"cv_mse_se": 0.1}})
    rows = rows_of(writer.engine, trial_id)
    assert rows["trial_values"] == [] and rows["trial_user_attributes"] == []
    assert study.trials[0].state == TrialState.FAIL


def test_a_distribution_conflicting_with_the_studys_is_refused_before_anything_is_written(tmp_path) -> None:
    study, writer = new_study(f"sqlite:///{tmp_path}/s.db", "conflict")
    writer.insert_running(PARAMS, DISTRIBUTIONS, SYSTEM_ATTRS, start=datetime.datetime.now())
    fresh = trial_sql.trial_writer(writer.engine, writer.study_id)  # another driver, later, other penalties
    fresh.check_distributions({}, existing=study.get_trials(deepcopy=False))
    narrower = {**DISTRIBUTIONS, "penalty": CategoricalDistribution(["l1"])}
    with pytest.raises(ValueError, match="dynamic value space"):
        fresh.insert_running({**PARAMS, "penalty": "l1"}, narrower, SYSTEM_ATTRS, start=datetime.datetime.now())
    assert len(study.get_trials(deepcopy=False)) == 1


def test_unexpected_optuna_models_make_the_store_fall_back_to_optunas_api(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(trial_sql._COLUMNS, "TrialModel", trial_sql._COLUMNS["TrialModel"] | {"renamed_column"})
    cfg = SearchConfig(storage=f"sqlite:///{tmp_path}/s.db", study_name="fallback")
    store = TrialStore(cfg)
    assert store._writer is None
    pending = store.ask(SearchSpace(("l1", "l2"), (1e-4, 1.0), (1e-4, 1.0)))
    store.record(pending, 0.5, {"cv": {"cv_mse_se": 0.01}})
    store.teach(pending, 0.5)
    trial = optuna.load_study(study_name="fallback", storage=cfg.storage).trials[0]
    assert (trial.number, trial.state, trial.value) == (pending.candidate.trial, TrialState.COMPLETE, 0.5)
    assert trial.user_attrs == {"cv": {"cv_mse_se": 0.01}}


def test_the_store_writes_through_the_fast_path_what_optuna_reads(tmp_path) -> None:
    cfg = SearchConfig(storage=f"sqlite:///{tmp_path}/s.db", study_name="store")
    store = TrialStore(cfg)
    assert store._writer is not None
    space = SearchSpace(("l1", "l2", "elasticnet"), (1e-4, 1.0), (1e-4, 1.0))
    asked = [store.ask(space) for _ in range(3)]
    for i, pending in enumerate(asked):
        store.record(pending, 1.0 + i, {"cv": {"fold": i}})
        store.teach(pending, 1.0 + i)
    trials = optuna.load_study(study_name="store", storage=cfg.storage).trials
    assert [t.number for t in trials] == [p.candidate.trial for p in asked] == [0, 1, 2]
    for t, pending in zip(trials, asked):
        assert t.params == pending.mirror.params and t.state == TrialState.COMPLETE
        assert t.system_attrs["regsweep:driver"] == str(store.driver)
    assert [t.value for t in trials] == [1.0, 2.0, 3.0]


def test_a_driver_gives_its_sampler_the_trials_another_driver_completes(tmp_path) -> None:
    cfg = SearchConfig(storage=f"sqlite:///{tmp_path}/s.db", study_name="shared")
    space = SearchSpace(("l1", "l2", "elasticnet"), (1e-4, 1.0), (1e-4, 1.0))
    first, second = TrialStore(cfg), TrialStore(cfg)  # two drivers on one study
    mine = second.ask(space)
    second.record(mine, 9.0, {})
    second.teach(mine, 9.0)
    assert second.absorb_completed_elsewhere(second.n_complete()) == 0  # only its own trial: nothing read
    theirs = [first.ask(space) for _ in range(4)]
    for i, pending in enumerate(theirs):
        first.record(pending, 1.0 + i, {})
        first.teach(pending, 1.0 + i)
    assert second.absorb_completed_elsewhere(second.n_complete()) == 4
    known = sorted((t.value, t.params["penalty"]) for t in second.mirror.trials)
    assert known == sorted([(9.0, mine.mirror.params["penalty"])]
                           + [(1.0 + i, p.mirror.params["penalty"]) for i, p in enumerate(theirs)])
    assert second.absorb_completed_elsewhere(second.n_complete()) == 0  # each trial once
