"""End to end on the embedded LocalCluster: every trial's CV error equals scikit-learn's on the same folds."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.model_selection import PredefinedSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.config import load_config
from pipeline.folds import kfold_folds
from pipeline.sweep import run_sweep

SUMMARY_FIELDS = {
    "best_params", "best_cv_mse", "best_cv_mse_se", "n_trials", "n_trials_complete", "study_name", "storage",
    "tracking_uri", "mlflow_run_id", "model_uri", "n_rows", "n_features", "elapsed_s",
}


@pytest.fixture(scope="module")
def sweep_result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    cfg = load_config(None, [
        "search.n_trials=12", f"search.storage=sqlite:///{tmp}/optuna.db", "search.study_name=e2e",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", "tracking.experiment=e2e", "tracking.registered_model=e2e-model",
        "folds.seed=3", "data.block_rows=100", "cluster.dashboard_address=null",
    ])
    lines: list[str] = []
    summary = run_sweep(cfg, echo=lines.append, progress=False)
    study = optuna.load_study(study_name="e2e", storage=cfg.search.storage)
    return cfg, summary, study, lines


def _sklearn_cv_mse(X, y, folds, penalty, lam1, lam2):
    """Mean held-out MSE over the same folds, standardizing inside each training fold."""
    if penalty == "l2":
        errs = []
        for k in np.unique(folds):
            tr, te = folds != k, folds == k
            est = make_pipeline(StandardScaler(), Ridge(alpha=tr.sum() * lam2, solver="svd")).fit(X[tr], y[tr])
            errs.append(np.mean((est.predict(X[te]) - y[te]) ** 2))
        return float(np.mean(errs))
    if penalty == "l1":
        reg = Lasso(alpha=lam1, tol=1e-12, max_iter=1_000_000)
    else:
        reg = ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), tol=1e-12, max_iter=1_000_000)
    scores = cross_val_score(make_pipeline(StandardScaler(), reg), X, y, cv=PredefinedSplit(folds),
                             scoring="neg_mean_squared_error")
    return float(-scores.mean())


def test_every_trial_matches_sklearn_cross_val_score(sweep_result, diabetes):
    cfg, summary, study, _ = sweep_result
    X, y = diabetes
    folds = kfold_folds(0, len(y), cfg.folds.k, cfg.folds.seed)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 12
    seen = set()
    for t in complete:
        p = t.params
        seen.add(p["penalty"])
        ref = _sklearn_cv_mse(X, y, folds, p["penalty"], p.get("lambda1", 0.0), p.get("lambda2", 0.0))
        # exact statistics vs sklearn at tol=1e-12: agreement to ~1e-10, asserted at 1e-8
        assert t.value == pytest.approx(ref, rel=1e-8), (t.number, p)
        fold_mse = t.user_attrs["cv"]["fold_mse"]
        assert np.mean(fold_mse) == pytest.approx(t.value, rel=1e-14)
        assert t.user_attrs["cv"]["cv_mse_se"] == pytest.approx(np.std(fold_mse, ddof=1) / np.sqrt(5), rel=1e-12)
    assert seen == {"l1", "l2", "elasticnet"}  # the space is explored (TPE startup is random)
    best = min(complete, key=lambda t: t.value)
    assert summary["best_cv_mse"] == best.value
    assert summary["best_params"]["penalty"] == best.params["penalty"]


def test_conditional_search_space(sweep_result):
    _, summary, study, _ = sweep_result
    lo1, hi1 = summary["search_space"]["lambda1"]
    for t in study.trials:
        pen = t.params["penalty"]
        assert ("lambda1" in t.params) == (pen != "l2")
        assert ("lambda2" in t.params) == (pen != "l1")
        if "lambda1" in t.params:
            assert lo1 <= t.params["lambda1"] <= hi1


def test_summary_and_console_output(sweep_result):
    cfg, summary, _, lines = sweep_result
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["n_trials_complete"] == 12 and summary["n_rows"] == 442 and summary["n_features"] == 10
    text = "\n".join(lines)
    assert "rank trial" in text and "mlflow ui --backend-store-uri" in text
    assert "trials 12/12" in text


def test_mlflow_holds_parent_children_and_a_loadable_model(sweep_result, diabetes):
    import mlflow
    from mlflow import MlflowClient

    cfg, summary, study, _ = sweep_result
    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("regsweep.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary["mlflow_run_id"]]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(int(r.data.tags["regsweep.trial"]) for r in children) == list(range(12))
    assert all(r.info.status == "FINISHED" for r in children)
    one = children[0]
    assert len(client.get_metric_history(one.info.run_id, "fold_mse")) == 5
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"trials.csv", "config.yaml", "validation_curve.png", "coefficients.png",
            "optimization_history.png"} <= artifacts
    alias = client.get_model_version_by_alias("e2e-model", "candidate")
    assert alias.version == summary["model_version"]

    mlflow.set_tracking_uri(cfg.tracking.uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    import importlib.resources

    import pandas as pd

    # the rows as the source holds them (the signature keeps its column types)
    df = pd.read_csv(importlib.resources.files("pipeline.datasets") / "diabetes.csv").drop(columns="progression")
    X = df.to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(X, diabetes[0])
    pred = np.asarray(loaded.predict(df))
    # the reference coefficients come from the plain-data files of the logged model
    from pipeline import FittedModel

    local = mlflow.artifacts.download_artifacts(summary["model_uri"])
    data_dirs = [p.parent for p in Path(local).rglob("model.json")]
    assert len(data_dirs) == 1
    assert not [p for p in Path(local).rglob("*") if p.suffix in (".pkl", ".pickle", ".cloudpickle")]
    model = FittedModel.load(data_dirs[0])
    np.testing.assert_allclose(pred, X @ model.coef + model.intercept, rtol=1e-13)


def test_weighted_group_folds_from_parquet_match_a_by_hand_reference(tmp_path, diabetes, monkeypatch):
    """Parquet source, sample weights and group k-fold together: each trial's CV error equals
    a fold-by-fold scikit-learn fit with weights and weighted standardization done by hand.
    Run with one fold model per task (the placement used for large Grams)."""
    import pandas as pd

    import pipeline.cv.placement

    monkeypatch.setattr(pipeline.cv.placement, "REPLICATE_BYTES", 0)

    from pipeline.folds import row_group_folds

    X, y = diabetes
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 3.0, len(y))
    clinic = rng.integers(0, 23, len(y))
    names = [f"f{i}" for i in range(10)]
    df = pd.DataFrame(X, columns=names).assign(y=y, w=w, clinic=clinic)
    d = tmp_path / "data"
    d.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(y)), 3)):
        df.iloc[part].to_parquet(d / f"part-{i}.parquet", row_group_size=50)
    cfg = load_config(None, [
        f"data.source={d}", "data.target=y", "data.weight=w", f"data.features={names}", "folds.group=clinic",
        "folds.k=4", "search.n_trials=6", "search.penalties=[l1, elasticnet]", f"search.storage=sqlite:///{tmp_path}/o.db",
        f"tracking.uri=sqlite:///{tmp_path}/m.db", "cluster.dashboard_address=null", "tracking.log_trials=false",
    ])
    summary = run_sweep(cfg, echo=lambda *_: None, progress=False)
    assert summary["n_trials_complete"] == 6
    from mlflow import MlflowClient

    runs = MlflowClient(tracking_uri=cfg.tracking.uri).search_runs([summary["experiment_id"]])
    assert [r.data.tags.get("regsweep.kind") for r in runs] == ["sweep"]  # log_trials=false: no child runs
    folds = row_group_folds(clinic, w, 4, cfg.folds.seed)
    study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
    for t in study.trials:
        lam1, lam2 = t.params["lambda1"], t.params.get("lambda2", 0.0)
        errs = []
        for k in range(4):
            tr, te = folds != k, folds == k
            mean = np.average(X[tr], axis=0, weights=w[tr])
            scale = np.sqrt(np.average((X[tr] - mean) ** 2, axis=0, weights=w[tr]))
            reg = (Lasso(alpha=lam1, tol=1e-12, max_iter=1_000_000) if lam2 == 0 else
                   ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), tol=1e-12, max_iter=1_000_000))
            reg.fit((X[tr] - mean) / scale, y[tr], sample_weight=w[tr])
            pred = reg.predict((X[te] - mean) / scale)
            errs.append(np.average((y[te] - pred) ** 2, weights=w[te]))
        assert t.value == pytest.approx(np.mean(errs), rel=1e-8), t.params


def _always_fails(models, candidates, tol):
    raise RuntimeError("poisoned fold")


def test_a_sweep_whose_every_trial_fails_stops_with_a_clear_error(tmp_path, monkeypatch):
    """Deterministic task failures end the sweep (SweepError naming the reason) instead of
    asking for new trials forever; the failed trials are recorded as FAIL."""
    import pipeline.search.scheduler
    from pipeline.errors import SweepError

    monkeypatch.setattr(pipeline.search.scheduler, "score_folds", _always_fails)
    cfg = load_config(None, [
        "search.n_trials=5", f"search.storage=sqlite:///{tmp_path}/o.db", f"tracking.uri=sqlite:///{tmp_path}/m.db",
        "cluster.processes=false", "cluster.dashboard_address=null",
    ])
    with pytest.raises(SweepError, match="poisoned fold"):
        run_sweep(cfg, echo=lambda *_: None, progress=False)
    study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
    states = [t.state.name for t in study.trials]
    assert set(states) == {"FAIL"} and 10 <= len(states) <= 30
    assert "poisoned fold" in study.trials[0].system_attrs["fail_reason"]


def test_rerunning_a_finished_sweep_asks_nothing_and_registers_nothing_new(sweep_result):
    """Runs last among the sweep_result tests: it adds a second parent run."""
    cfg, first, _, _ = sweep_result
    again = run_sweep(cfg, echo=lambda *_: None, progress=False)
    assert again["n_trials_asked_this_run"] == 0 and again["n_trials_complete"] == 12
    assert again["model_version"] == first["model_version"]
    assert again["best_cv_mse"] == first["best_cv_mse"]


def test_the_same_config_and_seed_give_the_same_trials_in_fresh_directories(tmp_path):
    """One driver, no failed trial, the same resolved in_flight: two sweeps in fresh directories ask
    bitwise the same parameters, and their values agree to 1e-12 relative (fold statistics merged
    in a fixed tree; results taught to the sampler in ask order). The values are not bitwise: a
    fold's warm start depends on which earlier trials that worker's copy of the fold saw, and the
    solver stops at a duality gap of 1e-10 (relative), far above 1e-12 on the held-out MSE only
    when a fit is badly conditioned, which the diabetes folds are not."""
    runs = []
    for name in ("first", "second"):
        d = tmp_path / name
        d.mkdir()
        cfg = load_config(None, [
            "search.n_trials=40", "search.in_flight=8", f"search.storage=sqlite:///{d}/o.db",
            f"tracking.uri=sqlite:///{d}/m.db", "cluster.dashboard_address=null", "tracking.log_trials=false",
        ])
        run_sweep(cfg, echo=lambda *_: None, progress=False)
        study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
        runs.append(sorted(study.trials, key=lambda t: t.number))
    first, second = runs
    assert [t.params for t in first] == [t.params for t in second]
    np.testing.assert_allclose([t.value for t in first], [t.value for t in second], rtol=1e-12, atol=0)
