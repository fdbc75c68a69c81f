"""Child runs written straight into a SQLite MLflow store (:mod:`pipeline.tracking.run_sql`) against the client."""

from __future__ import annotations

import math
import sqlite3

from pipeline.config import TrackingConfig
from pipeline.tracking import Tracker
from pipeline.tracking.child_runs import ChildRunWriter
from pipeline.tracking.records import TrialRecord
from pipeline.tracking.run_sql import sql_child_runs

_TABLES = ("runs", "tags", "params", "metrics", "latest_metrics")


def _rows(path, run_id: str) -> dict[str, list[tuple]]:
    """Every row of the run in MLflow's run tables, its id written as <run> (sorted: order is not meaning)."""
    with sqlite3.connect(path) as db:
        return {t: sorted(tuple(str(v).replace(run_id, "<run>") for v in row)
                          for row in db.execute(f"SELECT * FROM {t} WHERE run_uuid = ?", (run_id,)))
                for t in _TABLES}


def test_a_child_run_written_in_sql_is_the_run_the_client_writes(tmp_path) -> None:
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="e"), study_name="s'q")
    exp = tracker.ensure_experiment()
    parent = tracker.client.create_run(exp).info.run_id
    rec = TrialRecord(number=7, params={"penalty": "elasticnet", "lambda1": 0.12345678901234, "lambda2": 1e-5},
                      metrics={"cv_mse": 1.5, "cv_mse_se": 0.1, "n_nonzero": 3.0, "cv_r2": math.nan},
                      start_ms=1_700_000_000_000, end_ms=1_700_000_000_250, status="FAILED")
    by_sql = ChildRunWriter(tracker.client, tracker.uri, exp, parent, "s'q", "driver-1")
    by_client = ChildRunWriter(tracker.client, tracker.uri, exp, parent, "s'q", "driver-1")
    by_client._sql = None
    assert by_sql._sql is not None
    assert by_client.write(rec) is None and by_sql.write(rec) is None
    runs = tracker.client.search_runs([exp], "tags.`regsweep.trial` = '7'")
    assert len(runs) == 2
    first, second = (r.info.run_id for r in sorted(runs, key=lambda r: r.info.run_id))
    assert _rows(tmp_path / "mlflow.db", first) == _rows(tmp_path / "mlflow.db", second)
    assert len(_rows(tmp_path / "mlflow.db", first)["metrics"]) == 3  # the NaN left out by both
    a, b = (tracker.client.get_run(r) for r in (first, second))  # as the UI and search read them
    assert (a.data.params, a.data.metrics, a.data.tags) == (b.data.params, b.data.metrics, b.data.tags)
    assert (a.info.status, a.info.start_time, a.info.end_time, a.info.run_name, a.info.lifecycle_stage) == \
        (b.info.status, b.info.start_time, b.info.end_time, b.info.run_name, b.info.lifecycle_stage)
    assert a.info.artifact_uri.replace(first, "") == b.info.artifact_uri.replace(second, "")


def test_the_client_writes_where_the_store_is_not_the_one_this_was_written_for(tmp_path) -> None:
    assert sql_child_runs("http://127.0.0.1:5000", "1") is None
    assert sql_child_runs("postgresql://u@127.0.0.1/db", "1") is None
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="e"))
    exp = tracker.ensure_experiment()
    assert sql_child_runs(tracker.uri, exp) is not None
    assert sql_child_runs(tracker.uri, "999") is None  # no such experiment
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # as if a later MLflow had added a column
        db.execute("ALTER TABLE params ADD COLUMN origin TEXT")
    assert sql_child_runs(tracker.uri, exp) is None
