"""Checks of :mod:`pipeline.trial_sql` against Optuna's own API, for any storage URL.

Shared by ``tests/test_trial_sql.py`` (SQLite) and the PostgreSQL
integration test. The reference is always Optuna's ``RDBStorage`` API on the
same study: every row our writer leaves must be the row Optuna would have
left.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

import optuna
import sqlalchemy
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from pipeline.search import open_storage
from pipeline.search.trial_sql import TrialWriter, trial_writer

DISTRIBUTIONS = {
    "penalty": CategoricalDistribution(["l1", "l2", "elasticnet"]),
    "lambda1": FloatDistribution(1e-5, 10.0, log=True),
    "lambda2": FloatDistribution(1e-5, 10.0, log=True),
}
PARAMS = {"penalty": "elasticnet", "lambda1": 0.0123, "lambda2": 4.5}
SYSTEM_ATTRS = {"regsweep:driver": "host/123/456", "regsweep:retry_of": 7}
USER_ATTRS = {"cv": {"cv_mse_se": 0.125, "fold_mse": [1.0, 2.5, 3.0], "converged": True}}
TABLES = ("trials", "trial_params", "trial_system_attributes", "trial_user_attributes", "trial_values")
_IDS = {"trial_id", "param_id", "trial_system_attribute_id", "trial_user_attribute_id", "trial_value_id"}


def new_study(url: str, name: str) -> tuple[optuna.Study, TrialWriter]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=open_storage(url), study_name=name)
    storage = study._storage
    engine = getattr(storage, "_backend", storage).engine
    writer = trial_writer(engine, study._study_id)
    assert writer is not None, "Optuna's models are not what pipeline.trial_sql expects"
    return study, writer


def via_optuna_api(study: optuna.Study, value: float) -> int:
    """What regsweep did before pipeline.trial_sql: the trial through Optuna's storage API."""
    storage = study._storage
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.datetime.now(),
        datetime_complete=None, params=dict(PARAMS), distributions=dict(DISTRIBUTIONS), user_attrs={},
        system_attrs=dict(SYSTEM_ATTRS), intermediate_values={}, trial_id=-1,
    )
    trial_id = storage.create_new_trial(study._study_id, template_trial=template)
    for key, v in USER_ATTRS.items():
        storage.set_trial_user_attr(trial_id, key, v)
    storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])
    return trial_id


def via_writer(writer: TrialWriter, value: float) -> int:
    trial_id, _ = writer.insert_running(PARAMS, DISTRIBUTIONS, SYSTEM_ATTRS, start=datetime.datetime.now())
    writer.complete(trial_id, value, USER_ATTRS)
    return trial_id


def rows_of(engine: Any, trial_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of the trial in each trial table, ids left out, sorted (comparable across trials)."""
    from optuna.storages._rdb.models import BaseModel

    out = {}
    with engine.connect() as con:
        for name in TABLES:
            table = BaseModel.metadata.tables[name]  # typed columns: datetimes and enums come back as such
            rows = con.execute(sqlalchemy.select(table).where(table.c.trial_id == trial_id))
            clean = [{k: v for k, v in r._mapping.items() if k not in _IDS} for r in rows]
            out[name] = sorted(clean, key=repr)
    return out


def check_rows_match_optuna_api(url: str, name: str) -> None:
    """Our rows equal Optuna's, column by column (times: within seconds of each other and of now)."""
    study, writer = new_study(url, name)
    engine = writer.engine
    before = datetime.datetime.now()
    ref_id = via_optuna_api(study, 0.75)
    our_id = via_writer(writer, 0.75)
    after = datetime.datetime.now()
    ref, ours = rows_of(engine, ref_id), rows_of(engine, our_id)
    for col in ("datetime_start", "datetime_complete"):  # stored as Optuna stores them (naive UTC in Optuna 5)
        stored_ref, stored_ours = ref["trials"][0].pop(col), ours["trials"][0].pop(col)
        assert abs(stored_ours - stored_ref) < datetime.timedelta(seconds=5), (col, stored_ours, stored_ref)
    assert (ref["trials"][0].pop("number"), ours["trials"][0].pop("number")) == (0, 1)
    assert ours == ref
    ref_trial, our_trial = study.trials
    # read back through Optuna: the same trial, numbered next, at local times of this run
    assert (ref_trial.number, our_trial.number) == (0, 1)
    for field in ("state", "params", "distributions", "user_attrs", "system_attrs", "value"):
        assert getattr(our_trial, field) == getattr(ref_trial, field), field
    slack = datetime.timedelta(seconds=5)
    for t in (ref_trial, our_trial):
        assert before - slack <= t.datetime_start <= t.datetime_complete <= after + slack


def check_numbers_unique_under_concurrent_writers(url: str, name: str, per_writer: int = 25) -> None:
    """Two writers on two engines insert at once: numbers are 0..n-1, each once, as Optuna numbers them."""
    study, first = new_study(url, name)
    second = trial_writer(sqlalchemy.create_engine(url), first.study_id)
    assert second is not None
    errors: list[BaseException] = []

    def insert(writer: TrialWriter) -> None:
        try:
            for _ in range(per_writer):
                writer.insert_running(PARAMS, DISTRIBUTIONS, SYSTEM_ATTRS, start=datetime.datetime.now())
        except BaseException as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=insert, args=(w,)) for w in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    numbers = sorted(t.number for t in study.get_trials(deepcopy=False))
    assert numbers == list(range(2 * per_writer))
    second.engine.dispose()
