"""A child run written by the bare REST calls is, on a real ``mlflow server``, the run MLflow's client writes."""

from __future__ import annotations

import math
import os
import uuid

import pytest

from pipeline.tracking.child_runs import ChildRunWriter
from pipeline.tracking.records import TrialRecord

from .conftest import _no_proxy

pytestmark = pytest.mark.integration


def test_a_child_run_by_the_bare_calls_is_the_run_the_client_writes(mlflow_server, monkeypatch) -> None:
    from mlflow import MlflowClient

    for key, value in _no_proxy({k: os.environ[k] for k in ("NO_PROXY", "no_proxy") if k in os.environ}).items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(mlflow_server)
    exp = client.create_experiment(f"rest-{uuid.uuid4().hex[:8]}")
    parent = client.create_run(exp).info.run_id
    rec = TrialRecord(number=7, params={"penalty": "elasticnet", "lambda1": 0.12345678901234, "lambda2": 1e-5},
                      metrics={"cv_mse": 1.5, "cv_mse_se": 0.1, "n_nonzero": 3.0, "cv_r2": math.nan},
                      start_ms=1_700_000_000_000, end_ms=1_700_000_000_250, status="FAILED")
    by_rest = ChildRunWriter(client, mlflow_server, exp, parent, "s'q", "driver-1")
    by_client = ChildRunWriter(client, mlflow_server, exp, parent, "s'q", "driver-1")
    by_client._rest = None
    assert by_rest._rest is not None
    assert by_rest.write(rec) is None and by_client.write(rec) is None
    assert by_rest._rest is not None  # written by the bare calls, not handed to MLflow's client
    runs = client.search_runs([exp], "tags.`regsweep.trial` = '7'")
    assert len(runs) == 2
    a, b = (client.get_run(r.info.run_id) for r in runs)
    assert (a.data.params, a.data.metrics, a.data.tags) == (b.data.params, b.data.metrics, b.data.tags)
    assert a.data.metrics == {"cv_mse": 1.5, "cv_mse_se": 0.1, "n_nonzero": 3.0}
    assert a.data.tags["mlflow.parentRunId"] == parent
    assert (a.info.status, a.info.start_time, a.info.end_time, a.info.run_name, a.info.lifecycle_stage,
            a.info.user_id) == (b.info.status, b.info.start_time, b.info.end_time, b.info.run_name,
                                b.info.lifecycle_stage, b.info.user_id) == \
        ("FAILED", rec.start_ms, rec.end_ms, "trial-0007", "active", "unknown")
    history = [client.get_metric_history(r.info.run_id, "cv_mse")[0] for r in (a, b)]
    assert [(m.value, m.timestamp, m.step) for m in history] == [(1.5, rec.end_ms, 0)] * 2
