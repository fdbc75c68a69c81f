"""The MLflow store regsweep writes to: SQLite in WAL mode, and a logged model without MLflow's package scan."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pandas as pd
import sqlalchemy

from pipeline.config import TrackingConfig
from pipeline.model import FittedModel
from pipeline.tracking import Tracker


def _journal_mode(path) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA journal_mode").fetchone()[0]


def test_the_tracking_store_is_in_wal_mode_and_other_sqlite_files_are_left_alone(tmp_path) -> None:
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="wal"))
    tracker.ensure_experiment()
    other = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/other.db")
    with other.begin() as con:
        con.execute(sqlalchemy.text("CREATE TABLE t (x INTEGER)"))
    other.dispose()
    assert _journal_mode(tmp_path / "mlflow.db") == "wal"
    assert _journal_mode(tmp_path / "other.db") == "delete"


def test_logging_a_model_does_not_scan_installed_distributions(tmp_path, monkeypatch) -> None:
    from mlflow.utils import requirements_utils

    scans = []  # MLflow swallows errors in its check: count the calls instead of raising
    scan = requirements_utils.importlib_metadata.packages_distributions
    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions",
                        lambda: scans.append(1) or scan())
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    monkeypatch.setattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="scan"))
    run_id = tracker.client.create_run(tracker.ensure_experiment()).info.run_id
    model = FittedModel(np.array([1.0, 0.0, -2.0]), 0.5, "l1", 0.1, 0.0, True, True, np.zeros(3), np.ones(3),
                        ("a", "b", "c"))
    example = pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, 1.0], "c": [3.0, -1.0]})
    uri, _ = tracker.log_model(run_id, model, example, registered_model=None)
    assert scans == []
    assert requirements_utils._MODULES_TO_PACKAGES is None  # put back: other code still builds the full map

    import mlflow

    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    with open(requirements) as f:
        assert any(line.startswith("regsweep==") for line in f)
    loaded = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(loaded.predict(example), example.to_numpy() @ model.coef + 0.5)


def test_the_file_of_an_sqlite_url_as_the_lock_the_wal_listener_and_the_preflight_read_it() -> None:
    from pipeline.sqlite_wal import sqlite_path

    assert sqlite_path("sqlite:///mlflow.db") == "mlflow.db"
    assert sqlite_path("sqlite:////srv/runs/optuna.db?timeout=30") == "/srv/runs/optuna.db"
    for not_a_file in ("sqlite:///:memory:", "sqlite://", "postgresql+psycopg2://u@h/db", "http://127.0.0.1:5000"):
        assert sqlite_path(not_a_file) is None


def test_a_wide_model_is_logged_without_a_per_column_signature_and_still_predicts_by_name(tmp_path) -> None:
    """Above SIGNATURE_MAX_COLUMNS MLflow would check every column in Python on each predict; the model
    is logged without signature, and a DataFrame with its columns shuffled still predicts by name."""
    import mlflow

    from pipeline.tracking.models import SIGNATURE_MAX_COLUMNS

    p = SIGNATURE_MAX_COLUMNS + 1
    names = tuple(f"g{j}" for j in range(p))
    rng = np.random.default_rng(0)
    coef = np.where(rng.random(p) < 0.01, rng.normal(size=p), 0.0)
    model = FittedModel(coef, -0.25, "l1", 0.1, 0.0, True, True, np.zeros(p), np.ones(p), names)
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="wide"))
    run_id = tracker.client.create_run(tracker.ensure_experiment()).info.run_id
    X = rng.normal(size=(3, p))
    uri, _ = tracker.log_model(run_id, model, pd.DataFrame(X, columns=names), registered_model=None)
    loaded = mlflow.pyfunc.load_model(uri)
    assert loaded.metadata.signature is None
    shuffled = pd.DataFrame(X, columns=names)[list(reversed(names))]
    np.testing.assert_allclose(loaded.predict(shuffled), X @ coef - 0.25, rtol=1e-12)
    # as a sweep passes it for such a model: no example rows were read (b"")
    uri, _ = tracker.log_model(run_id, model, b"", registered_model=None)
    loaded = mlflow.pyfunc.load_model(uri)
    assert loaded.metadata.signature is None
    np.testing.assert_allclose(loaded.predict(shuffled), X @ coef - 0.25, rtol=1e-12)


def test_example_rows_are_read_only_for_a_model_narrow_enough_for_a_signature(tmp_path) -> None:
    from types import SimpleNamespace

    from pipeline.config import DataConfig, FoldsConfig
    from pipeline.cv import example_rows
    from pipeline.data import plan_data
    from pipeline.tracking.models import SIGNATURE_MAX_COLUMNS

    X = np.random.default_rng(1).normal(size=(12, SIGNATURE_MAX_COLUMNS + 1))
    np.save(tmp_path / "y.npy", X[:, 0])
    for p, expect_rows in ((SIGNATURE_MAX_COLUMNS, True), (SIGNATURE_MAX_COLUMNS + 1, False)):
        np.save(tmp_path / "X.npy", X[:, :p])
        plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy")), FoldsConfig())
        data = example_rows(plan, SimpleNamespace(integer_columns=(False,) * p))
        if expect_rows:
            np.testing.assert_array_equal(pd.read_parquet(io.BytesIO(data)).to_numpy(), X[:5, :p])
        else:
            assert data == b""


def _store_contents(path) -> tuple:
    """Schema (every table, index and trigger as SQL), Alembic revision, workspaces and experiments of a store."""
    with sqlite3.connect(path) as db:
        # as clauses: Alembic's batch mode rebuilds tables with their constraints in an order that varies from
        # one migration run to the next (measured: the CHECKs of "runs")
        schema = sorted((kind, name, tuple(sorted(line.strip().rstrip(",") for line in (sql or "").splitlines())))
                        for kind, name, sql in db.execute(
                            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        revision = db.execute("SELECT version_num FROM alembic_version").fetchall()
        workspaces = db.execute("SELECT * FROM workspaces").fetchall()
        experiments = db.execute("SELECT experiment_id, name, artifact_location FROM experiments").fetchall()
    return schema, revision, workspaces, experiments


def _migrations(monkeypatch) -> list[int]:
    """Counts MLflow's migration runs in this process (a spy: the migrations still run)."""
    import mlflow.store.db.utils as db_utils

    calls: list[int] = []
    run = db_utils._initialize_tables
    monkeypatch.setattr(db_utils, "_initialize_tables", lambda engine: calls.append(1) or run(engine))
    return calls


def test_a_new_store_seeded_from_the_cached_schema_is_the_store_mlflow_migrates(tmp_path, monkeypatch) -> None:
    from mlflow import MlflowClient

    from pipeline.tracking.schema_cache import schema_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    migrations = _migrations(monkeypatch)
    Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/first.db", experiment="e")).ensure_experiment()
    assert len(migrations) == 1 and schema_file().is_file()  # migrated by MLflow, then cached
    Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/seeded.db", experiment="e")).ensure_experiment()
    assert len(migrations) == 1  # seeded: no migration
    reference = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/reference.db")  # MLflow alone
    reference.create_experiment("e")
    assert len(migrations) == 2
    assert _store_contents(tmp_path / "seeded.db") == _store_contents(tmp_path / "reference.db")
    assert _store_contents(tmp_path / "first.db") == _store_contents(tmp_path / "reference.db")


def test_a_cached_schema_mlflow_refuses_is_replaced_by_a_migration(tmp_path, monkeypatch) -> None:
    from pipeline.tracking.schema_cache import schema_file

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/first.db", experiment="e"))
    with sqlite3.connect(schema_file()) as db:  # as if written by another MLflow with the same version string
        db.execute("UPDATE alembic_version SET version_num = '0000deadbeef'")
    migrations = _migrations(monkeypatch)
    Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/second.db", experiment="e")).ensure_experiment()
    assert len(migrations) == 1
    assert _store_contents(tmp_path / "second.db")[1] == _store_contents(tmp_path / "first.db")[1]
    assert _store_contents(schema_file())[1] == _store_contents(tmp_path / "first.db")[1]  # the cache repaired


def test_params_and_tags_go_in_shared_batches_and_a_parent_runs_artifacts_need_no_read_of_the_run(
        tmp_path, monkeypatch) -> None:
    """``log_params_and_tags``: the store (a server: one request each) gets batches that pair up to 100 params
    with up to 100 tags (MLflow's client splits them so), so 150 params and 120 tags take 2 requests where
    ``log_params`` and ``set_tags`` took 4. The parent run's artifacts go to the location its creation
    returned: no ``get_run`` (a request to a server) to find it."""
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="batch"))
    parent = tracker.start_parent("sweep-s", {"regsweep.kind": "sweep"})
    batches: list[tuple[int, int]] = []
    reads: list[str] = []
    get_run = tracker.client.get_run
    store = tracker.client._tracking_client.store  # what a server's client would send each batch to
    store_batch = store.log_batch
    monkeypatch.setattr(store, "log_batch", lambda run_id, metrics, params, tags: (
        batches.append((len(params), len(tags))), store_batch(run_id, metrics, params, tags))[1])
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    service_get_run = TrackingServiceClient.get_run  # what MlflowClient.log_artifacts reads a run with
    monkeypatch.setattr(TrackingServiceClient, "get_run",
                        lambda self, run_id: reads.append(run_id) or service_get_run(self, run_id))
    params = {f"p{i:03d}": i for i in range(150)}
    tags = {f"t{i:03d}": str(-i) for i in range(120)}
    tracker.log_params_and_tags(parent, params, tags)
    assert batches == [(100, 100), (50, 20)]
    files = tmp_path / "plots"
    files.mkdir()
    (files / "cv_curve.png").write_bytes(b"\x89PNG not really")
    (files / "coefficients.csv").write_text("feature,coef\na,1.5\n")
    tracker.log_artifacts(parent, files)
    assert reads == []
    run = get_run(parent)
    assert run.data.params == {k: str(v) for k, v in params.items()}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("t")} == tags
    assert sorted(a.path for a in tracker.client.list_artifacts(parent)) == ["coefficients.csv", "cv_curve.png"]
    import mlflow

    got = mlflow.artifacts.download_artifacts(run_id=parent, artifact_path="coefficients.csv",
                                              dst_path=str(tmp_path / "back"), tracking_uri=tracker.uri)
    assert open(got).read() == "feature,coef\na,1.5\n"


def test_without_mlflow_3s_repository_signature_a_parents_artifacts_go_through_the_client(tmp_path, monkeypatch):
    """MLflow 2 builds an artifact repository from the URI alone (``mlflow-artifacts:`` then resolves against
    the process's global tracking URI): there the parent's artifacts go through ``MlflowClient``, which reads
    the run for its location, and still arrive."""
    from mlflow.store.artifact import artifact_repository_registry as registry

    from pipeline.tracking._mlflow_internals import artifact_repository

    newer = registry.get_artifact_repository
    monkeypatch.setattr(registry, "get_artifact_repository", lambda artifact_uri: newer(artifact_uri))
    assert artifact_repository(str(tmp_path / "anywhere"), f"sqlite:///{tmp_path}/mlflow.db") is None
    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="old"))
    parent = tracker.start_parent("sweep-s", {"regsweep.kind": "sweep"})
    files = tmp_path / "plots"
    files.mkdir()
    (files / "trials.csv").write_text("trial,cv_mse\n0,1.5\n")
    tracker.log_artifacts(parent, files)
    assert [a.path for a in tracker.client.list_artifacts(parent)] == ["trials.csv"]
