"""End to end: ``regsweep sweep`` against a real Dask scheduler and a real MLflow server.

The CLI runs as a subprocess (as a user would run it); the results are then
read back independently: the Optuna study from its storage, the runs and the
registered model from the MLflow server, and the logged model both through
``mlflow.pyfunc`` and from its raw artifacts.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from .conftest import _no_proxy, run_regsweep

pytestmark = pytest.mark.integration

CLI_TIMEOUT_S = 180.0
K = 5  # folds.k default
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle")

Sweep = tuple[Path, dict[str, str], dict[str, Any]]  # working directory, names, summary


# ------------------------------------------------------------------ helpers
def _names(tag: str) -> dict[str, str]:
    u = f"{tag}-{uuid.uuid4().hex[:8]}"
    return {"study": f"study-{u}", "experiment": f"exp-{u}", "model": f"model-{u}"}


def _sweep(tmp_path: Path, dask_address: str, mlflow_uri: str, names: dict[str, str], n_trials: int,
           summary_name: str) -> dict[str, Any]:
    """Run the CLI once; assert it succeeded; return the summary JSON."""
    config = tmp_path / "sweep.yaml"
    config.touch()  # empty: every default (bundled:diabetes)
    summary_path = tmp_path / summary_name
    proc = run_regsweep(
        ["sweep", config,
         "--set", f"cluster.address={dask_address}",
         "--set", f"tracking.uri={mlflow_uri}",
         "--set", f"tracking.experiment={names['experiment']}",
         "--set", f"tracking.registered_model={names['model']}",
         "--set", f"search.storage={_storage(tmp_path)}",
         "--set", f"search.study_name={names['study']}",
         "--set", f"search.n_trials={n_trials}",
         "--no-progress", "--debug",
         "--summary-json", summary_path],
        cwd=tmp_path, timeout=CLI_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"regsweep sweep exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(summary_path.read_text())


def _storage(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'optuna.db'}"


def _complete_trials(storage: str, study_name: str) -> list[Any]:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), f"duplicate trial numbers in the study: {sorted(numbers)}"
    return [t for t in trials if t.state == TrialState.COMPLETE]


def _runs(client: Any, experiment_name: str) -> list[Any]:
    exp = client.get_experiment_by_name(experiment_name)
    assert exp is not None, f"experiment {experiment_name!r} was not created"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert len(runs) < 1000
    return runs


def _check_child(client: Any, run: Any, trial_value: float) -> None:
    """A trial's child run: cv_mse once (equal to the Optuna value) and one fold_mse_<i> metric per fold."""
    cv = client.get_metric_history(run.info.run_id, "cv_mse")
    assert len(cv) == 1, cv
    np.testing.assert_allclose(cv[0].value, trial_value, rtol=1e-12)
    folds = [client.get_metric_history(run.info.run_id, f"fold_mse_{i}") for i in range(K)]
    assert all(len(f) == 1 and f[0].step == 0 for f in folds), folds  # a column per fold, not steps
    assert f"fold_mse_{K}" not in run.data.metrics
    np.testing.assert_allclose(np.mean([f[0].value for f in folds]), trial_value, rtol=1e-9)
    assert run.data.tags.get("regsweep.kind") == "trial"
    assert run.info.status == "FINISHED"


def _diabetes() -> tuple[Any, np.ndarray]:
    import pandas as pd

    with importlib.resources.as_file(importlib.resources.files("pipeline.datasets") / "diabetes.csv") as path:
        df = pd.read_csv(path)
    X = df.drop(columns=["progression"])
    return X, df["progression"].to_numpy(dtype=np.float64)


@pytest.fixture
def mlflow_uri(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The server URI, set as this process's tracking/registry URI for the test, and unset after.

    ``mlflow.set_registry_uri(previous)`` would not restore the state before: it
    sets explicitly the URI that was only derived from the tracking URI, and
    exports it (``MLFLOW_REGISTRY_URI``) to every later test and its subprocesses;
    so the module globals and variables MLflow's setters write are patched, and
    put back as they were."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    for key, value in _no_proxy({k: os.environ[k] for k in ("NO_PROXY", "no_proxy") if k in os.environ}).items():
        monkeypatch.setenv(key, value)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.setenv(name, mlflow_server)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", mlflow_server)
    monkeypatch.setattr(registry_utils, "_registry_uri", mlflow_server)
    yield mlflow_server


# ------------------------------------------------------------------ a 20-trial sweep, checked from every side
@pytest.fixture(scope="module")
def sweep20(tmp_path_factory: pytest.TempPathFactory, dask_cluster: str, mlflow_server: str
            ) -> Sweep:
    """One 20-trial sweep on the real cluster and server: (its working directory, names, summary)."""
    tmp = tmp_path_factory.mktemp("sweep20")
    names = _names("sweep")
    return tmp, names, _sweep(tmp, dask_cluster, mlflow_server, names, 20, "summary.json")


def test_sweep_summary_and_study_hold_exactly_the_requested_trials(sweep20: Sweep, mlflow_uri: str) -> None:
    tmp, names, summary = sweep20
    assert summary["n_trials_complete"] == 20
    assert summary["n_trials_asked_this_run"] == 20
    assert summary["trials_not_logged"] == []
    assert summary["study_name"] == names["study"]
    assert summary["storage"] == _storage(tmp)
    assert summary["tracking_uri"] == mlflow_uri

    complete = _complete_trials(_storage(tmp), names["study"])  # also: trial numbers unique
    assert len(complete) == 20
    assert sorted(t.number for t in complete) == list(range(20))
    best = min(complete, key=lambda t: t.value)
    assert summary["best_cv_mse"] == best.value
    assert summary["best_trial"] == best.number


def test_sweep_logs_one_parent_run_and_one_child_run_per_trial(sweep20: Sweep, mlflow_uri: str) -> None:
    from mlflow import MlflowClient

    tmp, names, summary = sweep20
    value_of = {t.number: t.value for t in _complete_trials(_storage(tmp), names["study"])}

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    runs = _runs(client, names["experiment"])
    parents = [r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"]
    assert len(parents) == 1, [r.data.tags for r in parents]
    parent = parents[0]
    assert parent.info.run_id == summary["mlflow_run_id"]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 20
    assert len(runs) == 21, "runs other than the parent and its children in the experiment"
    assert sorted(int(r.data.tags["regsweep.trial"]) for r in children) == list(range(20))
    for r in children:
        _check_child(client, r, value_of[int(r.data.tags["regsweep.trial"])])


def test_the_parent_runs_plots_and_tables_reach_the_servers_artifact_store(sweep20: Sweep, mlflow_uri: str) -> None:
    """Written to the location ``runs/create`` returned (``mlflow-artifacts:`` on a server that proxies them),
    without reading the run again: the files arrive, and the coefficients table is the registered model's."""
    import mlflow
    import pandas as pd
    import yaml
    from mlflow import MlflowClient

    import pipeline

    tmp, names, summary = sweep20
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")
    listed = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"coefficients.csv", "coefficients.png", "cv_curve.png", "trials.csv", "config.yaml"} <= listed, listed
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="coefficients.csv",
                                                            dst_path=str(tmp / "parent")))
    model_dir = Path(mlflow.artifacts.download_artifacts(summary["model_uri"], dst_path=str(tmp / "parent-model")))
    data = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]["data"]
    fitted = pipeline.FittedModel.load(model_dir / data)
    coef = table.set_index("name")["coef"]
    assert sorted(coef.index) == sorted([*fitted.feature_names, "(intercept)"])
    np.testing.assert_allclose(coef[list(fitted.feature_names)].to_numpy(), fitted.coef, rtol=1e-12)
    np.testing.assert_allclose(coef["(intercept)"], fitted.intercept, rtol=1e-12)
    trials = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="trials.csv",
                                                             dst_path=str(tmp / "parent")))
    assert len(trials) == 20


def test_sweep_registers_a_pickle_free_model_that_predicts_x_coef_plus_intercept(
    sweep20: Sweep, mlflow_uri: str
) -> None:
    import mlflow
    import yaml
    from mlflow import MlflowClient

    import pipeline

    tmp, names, summary = sweep20
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    assert summary["registered_model"] == names["model"]
    mv = client.get_model_version_by_alias(names["model"], "candidate")
    assert int(mv.version) == int(summary["model_version"])

    # the raw artifacts: plain data, no pickle anywhere
    local = Path(mlflow.artifacts.download_artifacts(summary["model_uri"], dst_path=str(tmp / "model")))
    pickles = [p for p in local.rglob("*") if p.name.lower().endswith(PICKLE_SUFFIXES)]
    assert pickles == [], f"pickled files in the logged model: {pickles}"
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    pyfunc_flavor = mlmodel["flavors"]["python_function"]
    assert pyfunc_flavor["loader_module"] == "pipeline.tracking"
    fitted = pipeline.FittedModel.load(local / pyfunc_flavor["data"])

    X, _ = _diabetes()
    assert fitted.feature_names == tuple(X.columns)
    assert fitted.penalty == summary["best_params"]["penalty"]
    expected = X.to_numpy(dtype=np.float64) @ fitted.coef + fitted.intercept

    loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    pred = np.asarray(loaded.predict(X), dtype=np.float64)  # the CSV as read: the signature has its dtypes
    assert pred.shape == (len(X),)
    np.testing.assert_allclose(pred, expected, rtol=1e-12)


def test_registered_model_predicts_on_the_bundled_csv_as_read(sweep20: Sweep, mlflow_uri: str) -> None:
    import mlflow

    _, _, summary = sweep20
    X, _ = _diabetes()
    loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    signature = loaded.metadata.get_input_schema()
    # the signature names every feature column and takes any number in it: ints and floats alike
    assert signature.input_names() == list(X.columns) and all(str(t) == "Any" for t in signature.input_types())
    pred = np.asarray(loaded.predict(X), dtype=np.float64)
    assert np.all(np.isfinite(pred)) and pred.shape == (len(X),)
    np.testing.assert_allclose(np.asarray(loaded.predict(X.astype("float64")), dtype=np.float64), pred, rtol=1e-15)


# ------------------------------------------------------------------ resume
def test_sweep_resumes_a_study_without_repeating_trials(
    tmp_path: Path, dask_cluster: str, mlflow_uri: str
) -> None:
    from mlflow import MlflowClient

    names = _names("resume")
    first = _sweep(tmp_path, dask_cluster, mlflow_uri, names, 10, "summary-1.json")
    assert first["n_trials_complete"] == 10
    assert len(_complete_trials(_storage(tmp_path), names["study"])) == 10

    second = _sweep(tmp_path, dask_cluster, mlflow_uri, names, 20, "summary-2.json")
    assert second["n_trials_complete"] == 20
    assert second["n_trials_asked_this_run"] == 10
    assert second["mlflow_run_id"] != first["mlflow_run_id"]

    complete = _complete_trials(_storage(tmp_path), names["study"])
    assert len(complete) == 20
    assert sorted(t.number for t in complete) == list(range(20))
    value_of = {t.number: t.value for t in complete}

    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    runs = _runs(client, names["experiment"])
    parents = {r.info.run_id for r in runs if r.data.tags.get("regsweep.kind") == "sweep"}
    assert parents == {first["mlflow_run_id"], second["mlflow_run_id"]}
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in parents]
    assert len(children) == 20
    assert len(runs) == 22
    by_parent = {p: sorted(int(r.data.tags["regsweep.trial"]) for r in children
                           if r.data.tags["mlflow.parentRunId"] == p) for p in parents}
    assert by_parent[first["mlflow_run_id"]] == list(range(10))
    assert by_parent[second["mlflow_run_id"]] == list(range(10, 20))
    for r in children:
        _check_child(client, r, value_of[int(r.data.tags["regsweep.trial"])])

    # the alias follows the latest sweep; a new version only when its selected model differs
    mv = client.get_model_version_by_alias(names["model"], "candidate")
    assert int(mv.version) == int(second["model_version"])
    assert (int(second["model_version"]) != int(first["model_version"])) == (second["selected"] != first["selected"])


def test_resumed_sweep_does_not_reevaluate_the_same_candidates(
    tmp_path: Path, dask_cluster: str, mlflow_uri: str
) -> None:
    names = _names("redraw")
    _sweep(tmp_path, dask_cluster, mlflow_uri, names, 5, "summary-1.json")
    _sweep(tmp_path, dask_cluster, mlflow_uri, names, 10, "summary-2.json")

    complete = sorted(_complete_trials(_storage(tmp_path), names["study"]), key=lambda t: t.number)
    assert len(complete) == 10
    first = [tuple(sorted(t.params.items())) for t in complete[:5]]
    second = [tuple(sorted(t.params.items())) for t in complete[5:]]
    assert set(first).isdisjoint(second), f"the resumed run repeated {sorted(set(first) & set(second))}"
