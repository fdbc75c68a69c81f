"""Child runs written to the tables of a local SQLite MLflow store in one transaction each.

Why. Through ``MlflowClient`` a child run is three calls (create with its
tags, one ``log_batch``, terminate), each an ORM session with its own checks:
18.5 ms of CPU per run on SQLite (7.2 + 7.5 + 3.3), in the tracking process
that shares two cores with the workers and the driver while the trials run
(1.9 s of CPU for 100 trials). The same rows written here in one transaction
cost about a millisecond.

What is written is what the client writes (``tests/test_run_sql.py``
compares every column of every row, and what ``MlflowClient.get_run`` and
``search_runs`` return): a ``runs`` row (``user_id`` ``unknown``,
``source_type`` ``UNKNOWN``, empty source fields, ``lifecycle_stage``
``active``, the artifact URI under the experiment's artifact location), its
tags with ``mlflow.runName``, its parameters, and its metrics both in
``metrics`` and ``latest_metrics`` (finite values only, as the writer sends).

Only for a ``sqlite:///`` store whose five tables have exactly the columns
this module writes (checked once, when the writer is made): anything else
(another MLflow schema, a server, PostgreSQL) returns None from
:func:`sql_child_runs`, and the caller keeps using the client.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping

from ..sqlite_wal import set_wal_pragmas, sqlite_path

__all__ = ["SqlChildRuns", "sql_child_runs"]

_COLUMNS = {
    "runs": ("run_uuid", "name", "source_type", "source_name", "entry_point_name", "user_id", "status",
             "start_time", "end_time", "source_version", "lifecycle_stage", "artifact_uri", "experiment_id",
             "deleted_time"),
    "tags": ("key", "value", "run_uuid"),
    "params": ("key", "value", "run_uuid"),
    "metrics": ("key", "value", "timestamp", "run_uuid", "step", "is_nan"),
    "latest_metrics": ("key", "value", "timestamp", "step", "is_nan", "run_uuid"),
}


class SqlChildRuns:
    """Inserts finished child runs into one SQLite MLflow store (one connection, one transaction per run)."""

    def __init__(self, path: str, experiment_id: str, artifact_location: str) -> None:
        self.experiment_id, self.artifact_location = experiment_id, artifact_location
        self._db = _connect(path)  # kept for the process's life, as the client's pooled connection is

    def write(self, name: str, tags: Mapping[str, str], params: Mapping[str, str], metrics: Mapping[str, float],
              status: str, start_ms: int, end_ms: int) -> str:
        """Insert one finished run; returns its id."""
        run_id = uuid.uuid4().hex
        all_tags = {**tags, "mlflow.runName": name}
        with self._db:  # one transaction: the run appears whole or not at all
            self._db.execute(
                "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
                "VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', ?, ?, ?, '', 'active', ?, ?, NULL)",
                (run_id, name, status, start_ms, end_ms, f"{self.artifact_location}/{run_id}/artifacts",
                 int(self.experiment_id)))
            self._db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                                 [(k, v, run_id) for k, v in all_tags.items()])
            self._db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                                 [(k, v, run_id) for k, v in params.items()])
            rows = [(k, float(v), end_ms, run_id, 0, 0) for k, v in metrics.items()]
            self._db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", [(k, v, t, s, n, r) for k, v, t, r, s, n in rows])
        return run_id


def sql_child_runs(uri: str, experiment_id: str) -> SqlChildRuns | None:
    """A :class:`SqlChildRuns` for the store of ``uri``, or None where the client must write (module docstring)."""
    path = sqlite_path(uri)
    if path is None:
        return None
    try:
        db = _connect(path)
        try:
            for table, columns in _COLUMNS.items():
                found = tuple(row[1] for row in db.execute(f"PRAGMA table_info({table})"))
                if found != columns:
                    return None
            row = db.execute("SELECT artifact_location FROM experiments WHERE experiment_id = ?",
                             (int(experiment_id),)).fetchone()
        finally:
            db.close()
    except (sqlite3.Error, ValueError):
        return None
    if row is None or not row[0]:
        return None
    return SqlChildRuns(path, experiment_id, str(row[0]).rstrip("/"))


def _connect(path: str) -> sqlite3.Connection:
    """A connection with the store's pragmas (:mod:`pipeline.sqlite_wal`): WAL, ``synchronous=NORMAL``, and a
    30 s wait for the write lock that the driver's MLflow client may hold."""
    db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
    set_wal_pragmas(db)
    return db
