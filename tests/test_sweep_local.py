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
from pipeline.sweep import execute_sweep

SUMMARY_FIELDS = {
    "best_params", "best_cv_mse", "best_cv_mse_se", "n_trials", "n_trials_complete", "study_name", "storage",
    "tracking_uri", "mlflow_run_id", "model_uri", "n_rows", "n_features", "elapsed_s", "metric", "selected",
    "best_per_penalty", "pareto", "mlflow_ui_url",
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
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
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
    cfg, summary, study, lines = sweep_result
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["n_trials_complete"] == 12 and summary["n_rows"] == 442 and summary["n_features"] == 10
    text = "\n".join(lines)
    assert "trials 12/12" in text and "mlflow ui --backend-store-uri" in text
    assert summary["mlflow_ui_url"] in text and "workflowType=machine_learning" in summary["mlflow_ui_url"]
    # the decision, not ten near-identical rows: each penalty's best with its distance in standard errors
    assert "rank trial" not in text and "Best of each penalty" in text
    best = summary["best_per_penalty"]
    top = min(best.values(), key=lambda b: b["cv_metric"])
    for pen, b in best.items():
        distance = "best" if b is top else f"+{(b['cv_metric'] - top['cv_metric']) / top['cv_metric_se']:.2f} SE"
        assert any(line.strip().startswith(pen) and f"trial {b['trial']}" in line and distance in line
                   for line in lines), (pen, distance)
    for rule, c in summary["choices"].items():
        assert any(line.strip().startswith(rule) and f"{c['cv_mse']:.6g}" in line for line in lines), rule
    features = ", ".join(summary["selected_features"])
    assert any(line.strip() == features for line in lines)


def test_selection_fields_follow_their_definitions(sweep_result):
    """best_per_penalty, pareto and selected, recomputed from the study's trials and its stored path."""
    from pipeline.selection import PathCurve

    cfg, summary, study, _ = sweep_result
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    for pen, b in summary["best_per_penalty"].items():
        best = min((t for t in done if t.params["penalty"] == pen), key=lambda t: t.value)
        assert (b["trial"], b["cv_metric"], b["cv_mse"]) == (best.number, best.value, best.value)
        assert b["cv_metric_se"] == best.user_attrs["cv"]["cv_mse_se"]
    points = [(t.value, t.user_attrs["cv"]["n_nonzero"], t.number) for t in done]
    front = {n for v, k, n in points if not any(v2 <= v and k2 <= k and (v2 < v or k2 < k) for v2, k2, _ in points)}
    assert {p["trial"] for p in summary["pareto"]} == front
    curve = PathCurve.from_dict(study.user_attrs["regsweep:path"])  # the study keeps the path, the record of truth
    stored = study.user_attrs["regsweep:selection"]
    sel = summary["selected"]
    assert stored["rule"] == sel["rule"] == cfg.search.select == "min"
    lowest = min([*(t.value for t in done), *curve.cv_mse])
    assert sel["cv_metric"] == sel["cv_mse"] == lowest
    one_se = stored["1se"]
    bar = lowest + stored["min"]["cv_mse_se"]
    assert one_se["cv_mse"] <= bar and all(v > bar for s, v in zip(curve.strengths, curve.cv_mse)
                                           if s > one_se["lambda1"] + one_se["lambda2"])
    winner = summary["best_params"]
    reached = winner.get("lambda1", 0.0) + winner.get("lambda2", 0.0)  # the winning trial's strength
    assert 5 <= len(curve.strengths) <= 101 and min(curve.strengths) <= reached * (1 + 1e-12)
    assert summary["metric"] == "mse"


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
    for run in children:  # folds are metrics of their own (not steps), both strengths are parameters
        trial = study.trials[int(run.data.tags["regsweep.trial"])]
        fold = trial.user_attrs["cv"]["fold_mse"]
        assert [run.data.metrics[f"fold_mse_{i}"] for i in range(5)] == pytest.approx(fold, rel=1e-15)
        lam1, lam2 = trial.params.get("lambda1", 0.0), trial.params.get("lambda2", 0.0)
        assert (float(run.data.params["lambda1"]), float(run.data.params["lambda2"])) == (lam1, lam2)
        assert ("log10_lambda1" in run.data.metrics) == (lam1 > 0) and ("log10_lambda2" in run.data.metrics) == (lam2 > 0)
        if lam1 > 0:
            assert run.data.metrics["log10_lambda1"] == pytest.approx(np.log10(lam1), rel=1e-12)
    parent = parents[0]
    assert 10 <= len(parent.data.params) <= 30  # the parameters that matter; the whole config is config.yaml
    assert "**Registered: the `min` choice**" in parent.data.tags["mlflow.note.content"]
    # the terminal's Note: lines reach the run's description too (none here: the data are clean)
    from pipeline.report import describe_decision

    assert "Note" not in parent.data.tags["mlflow.note.content"] and not summary["cv_notes"]
    noted = describe_decision({**summary, "data_notes": ["column 'x' is constant"], "cv_notes": ["fold 2 swamps"]},
                              parent.info.run_id).split("\n\n")
    assert noted[1] == "**Note:** fold 2 swamps"  # under the registered choice, which it qualifies
    assert "**Notes on the data:**\n- column 'x' is constant" in noted
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "config.yaml", "validation_curve.png", "coefficients.png", "coefficients.csv",
            "optimization_history.png", "cv_curve.png", "coefficient_path.png"} <= artifacts
    logged = client.search_logged_models(experiment_ids=[exp.experiment_id])  # the sweep's experiment, not Default
    assert [m.source_run_id for m in logged] == [parent.info.run_id]
    # the parent's metrics, on the run and on the logged model's page (linked as they are logged, in one request)
    assert {m.key: m.value for m in logged[0].metrics} == parent.data.metrics
    assert parent.data.metrics["best_cv_mse"] == summary["best_cv_mse"]
    assert parent.data.metrics["selected_n_nonzero"] == len(summary["selected_features"])
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
    # a linear model takes integers and floats alike for every numeric column
    as_int = df.round().astype("int64")
    np.testing.assert_allclose(np.asarray(loaded.predict(as_int)), as_int.to_numpy(float) @ model.coef + model.intercept,
                               rtol=1e-13)
    np.testing.assert_allclose(np.asarray(loaded.predict(df.astype("float32"))), pred, rtol=1e-6)
    # the input example (read by the tracking process): the source's first rows, with its integer columns
    from mlflow.models import Model

    example = Model.load(local).load_input_example(local)
    pd.testing.assert_frame_equal(example, df.head(5))
    assert (example.dtypes == np.int64).sum() >= 2  # age and sex at least: the test would not see a lost type


def test_the_example_is_read_by_a_worker_when_the_tracking_process_cannot(tmp_path, monkeypatch, diabetes):
    """The tracking process reads the model's input example; if that fails (here: its read raises, in the forked
    process that inherits the patch), a worker reads it and the model is logged with the same example."""
    import mlflow
    import pandas as pd
    from mlflow.models import Model

    import pipeline.tracking.tracker

    def refuse(self, plan, integer_columns):
        raise OSError("example source unreadable here")

    monkeypatch.setattr(pipeline.tracking.tracker.Tracker, "example_parquet", refuse)
    cfg = load_config(None, [
        "search.n_trials=3", f"search.storage=sqlite:///{tmp_path}/optuna.db", "search.study_name=fallback",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.registered_model=fallback-model",
        "cluster.dashboard_address=null",
    ])
    summary = execute_sweep(cfg, echo=lambda _: None, progress=False)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    local = mlflow.artifacts.download_artifacts(summary["model_uri"])
    import importlib.resources

    df = pd.read_csv(importlib.resources.files("pipeline.datasets") / "diabetes.csv").drop(columns="progression")
    pd.testing.assert_frame_equal(Model.load(local).load_input_example(local), df.head(5))


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
    summary = execute_sweep(cfg, echo=lambda *_: None, progress=False)
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
        execute_sweep(cfg, echo=lambda *_: None, progress=False)
    study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
    states = [t.state.name for t in study.trials]
    assert set(states) == {"FAIL"} and 10 <= len(states) <= 30
    assert "poisoned fold" in study.trials[0].system_attrs["fail_reason"]


def test_rerunning_a_finished_sweep_says_so_in_one_line_and_creates_nothing(sweep_result):
    """The study's recorded outcome comes back with n_trials_asked_this_run 0; no parent run is added."""
    from mlflow import MlflowClient

    cfg, first, _, _ = sweep_result
    lines: list[str] = []
    again = execute_sweep(cfg, echo=lines.append, progress=False)
    assert lines == ["study 'e2e' already holds 12/12 complete trials; raise search.n_trials or change "
                     "search.study_name"]
    assert again["n_trials_asked_this_run"] == 0 and again["n_trials_complete"] == 12
    for key in ("model_version", "model_uri", "best_cv_mse", "selected", "best_per_penalty", "pareto", "mlflow_run_id"):
        assert again[key] == first[key], key
    runs = MlflowClient(tracking_uri=cfg.tracking.uri).search_runs(
        [first["experiment_id"]], "tags.`regsweep.kind` = 'sweep'")
    assert len(runs) == 1
    # another selection rule on the finished study: its outcome is still the recorded rule's, and it says so,
    # with the other rule's choice on the path (probe F: it came back silently)
    other = "1se" if cfg.search.select == "min" else "min"
    lines.clear()
    again = execute_sweep(cfg.model_copy(update={"search": cfg.search.model_copy(update={"select": other})}),
                          echo=lines.append, progress=False)
    assert again["selected"] == first["selected"] and len(lines) == 2
    choice = first["choices"][other]
    assert lines[1].startswith(f"Note: its registered model was chosen by search.select: {cfg.search.select}, not "
                               f"{other} (whose choice on its path is lambda1 {choice['lambda1']:.4g}, lambda2 "
                               f"{choice['lambda2']:.4g}); to register that one"), lines


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
        execute_sweep(cfg, echo=lambda *_: None, progress=False)
        study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
        runs.append(sorted(study.trials, key=lambda t: t.number))
    first, second = runs
    assert [t.params for t in first] == [t.params for t in second]
    np.testing.assert_allclose([t.value for t in first], [t.value for t in second], rtol=1e-12, atol=0)


def test_a_tiny_table_says_why_it_has_no_cv_r2(tmp_path):
    """8 rows in 5 folds: a held-out fold of one row has a constant target and no R² (as r2_score); the choices'
    line said 'R² nan'."""
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,3\n2,1,4\n3,5,2\n4,3,6\n5,8,5\n6,2,7\n7,9,8\n8,4,9\n")
    cfg = load_config(None, [
        f"data.source={tmp_path / 't.csv'}", "data.target=y", "search.n_trials=4",
        f"search.storage=sqlite:///{tmp_path}/o.db", f"tracking.uri=sqlite:///{tmp_path}/m.db",
        "cluster.processes=false", "cluster.dashboard_address=null",
    ])
    lines: list[str] = []
    execute_sweep(cfg, echo=lines.append, progress=False)
    text = "\n".join(map(str, lines))
    assert "R² n/a (a held-out fold's target is constant: lower folds.k)" in text and "R² nan" not in text
