"""Binomial and Poisson sweeps end to end (embedded two-worker cluster, SQLite), on both engines.

Every checked trial's fold deviance is recomputed from an independent fit of that fold (the L-BFGS-B brute force
of tests/glm_reference.py, on the same stratified folds) and must agree to 1e-6 relative: the two fits agree to
1e-8 in objective, so their coefficients may differ by ~1e-4 of their scale along the flattest direction, which
moves a held-out deviance of these data by at most ~1e-7 (observed 1e-9). The summary, the child runs, the
trials table and the registered pyfunc model must speak the family's language: the metric, the positive class,
probabilities and expected counts.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import mlflow
import optuna
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer

from pipeline.column_kinds import HEAD_ROWS
from pipeline.config import DataConfig, load_config
from pipeline.data import plan_data
from pipeline.errors import ConfigError, DataError
from pipeline.folds import stratified_folds
from pipeline.sweep import execute_sweep
from tests.glm_reference import brute_force, mean_half_deviance

N_TRIALS = 10


def _bc_frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :10].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = np.where(data.target == 1, "benign", "malignant")
    return frame


def _claims_frame(n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, 5))
    exposure = rng.uniform(0.2, 2.0, n)
    mu = exposure * np.exp(-0.5 + X[:, :3] @ np.array([0.5, -0.4, 0.25]))
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)])
    frame["exposure"], frame["claims"] = exposure, rng.poisson(mu)
    return frame


def _config(tmp: Path, name: str, settings: list[str]):
    return load_config(None, [
        f"search.n_trials={N_TRIALS}", f"search.storage=sqlite:///{tmp}/optuna.db", f"search.study_name={name}",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.experiment={name}",
        f"tracking.registered_model={name}-model", "folds.seed=3", "cluster.dashboard_address=null",
        f"retrain.cache={tmp}/statcache", *settings])  # the retrain's lock file beside it, not in the working dir


@pytest.fixture(scope="module", params=["gram", "rows"])
def binomial_sweep(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"binomial-{request.param}")
    _bc_frame().to_csv(tmp / "bc.csv", index=False)
    cfg = _config(tmp, "bc", [f"data.source={tmp}/bc.csv", "data.target=diagnosis", "model.family=binomial",
                              f"model.engine={request.param}"])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    return cfg, summary, optuna.load_study(study_name="bc", storage=cfg.search.storage), lines


@pytest.fixture(scope="module")
def poisson_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("poisson")
    _claims_frame().to_csv(tmp / "claims.csv", index=False)
    cfg = _config(tmp, "claims", [f"data.source={tmp}/claims.csv", "data.target=claims", "data.exposure=exposure",
                                  "model.family=poisson", "model.engine=rows"])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    return cfg, summary, optuna.load_study(study_name="claims", storage=cfg.search.storage), lines


def _fold_deviances(family: str, X: np.ndarray, y: np.ndarray, folds: np.ndarray, params: dict,
                    offset: np.ndarray | None = None, aucs: list[float] | None = None,
                    explained: list[float] | None = None) -> list[float]:
    """Each fold's held-out deviance of the brute force's fit (into ``aucs`` scikit-learn's AUC of it, into
    ``explained`` 1 − its deviance over that of the held-out class share: binomial without offset)."""
    from sklearn.metrics import roc_auc_score

    out = []
    for k in range(int(folds.max()) + 1):
        tr, te = folds != k, folds == k
        _, coef, b = brute_force(family, X[tr], y[tr], params.get("lambda1", 0.0), params.get("lambda2", 0.0),
                                 offset=None if offset is None else offset[tr])
        eta = b + X[te] @ coef + (0.0 if offset is None else offset[te])
        out.append(2.0 * mean_half_deviance(family, y[te], eta, np.ones(int(te.sum()))))
        if aucs is not None:
            aucs.append(roc_auc_score(y[te], eta))
        if explained is not None:
            share = np.full(int(te.sum()), np.log(y[te].mean() / (1 - y[te].mean())))
            explained.append(1 - out[-1] / (2.0 * mean_half_deviance(family, y[te], share, np.ones(share.size))))
    return out


def test_binomial_trials_are_exact_on_stratified_folds(binomial_sweep):
    cfg, summary, study, _ = binomial_sweep
    frame = _bc_frame()
    X, y = frame.drop(columns="diagnosis").to_numpy(), (frame["diagnosis"] == "malignant").to_numpy(float)
    folds = stratified_folds(y, cfg.folds.k, cfg.folds.seed)
    per_fold = np.bincount(folds, weights=y)
    assert per_fold.max() - per_fold.min() <= 1  # every fold holds its share of each class
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == N_TRIALS
    for t in complete[:3]:
        aucs: list[float] = []
        explained: list[float] = []
        expected = _fold_deviances("binomial", X, y, folds, t.params, aucs=aucs, explained=explained)
        np.testing.assert_allclose(t.user_attrs["cv"]["fold_binomial_deviance"], expected, rtol=1e-6)
        assert t.value == pytest.approx(np.mean(expected), rel=1e-6)
        assert t.user_attrs["cv"]["cv_auc"] == pytest.approx(np.mean(aucs), abs=1e-4)  # a near-tie may swap
        assert t.user_attrs["cv"]["cv_deviance_explained"] == pytest.approx(np.mean(explained), rel=1e-6)


def test_binomial_summary_mlflow_and_model(binomial_sweep):
    import mlflow
    from mlflow import MlflowClient

    cfg, summary, study, lines = binomial_sweep
    assert (summary["family"], summary["metric"]) == ("binomial", "binomial_deviance")
    assert summary["best_cv_metric"] == study.best_value and summary["best_cv_mse"] is None
    assert summary["target"]["positive_class"] == "malignant" and summary["target"]["n_positive"] == 212
    assert summary["selected"]["cv_mse"] is None and summary["selected"]["cv_metric"] > 0
    assert any(line.startswith("Target: binomial, positive class 'malignant'") for line in lines)
    assert any("CV binomial deviance" in line for line in lines)

    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name("bc")
    children = [r for r in client.search_runs([exp.experiment_id], max_results=100)
                if r.data.tags.get("mlflow.parentRunId") == summary["mlflow_run_id"]]
    assert len(children) == N_TRIALS
    for run in children:
        m = run.data.metrics
        assert {f"fold_binomial_deviance_{i}" for i in range(5)} <= set(m)
        assert 0.5 < m["cv_auc"] <= 1 and 0.5 < m["cv_accuracy"] <= 1 and 0 < m["cv_brier"] < 0.25
    parent = client.get_run(summary["mlflow_run_id"]).data
    assert parent.params["model.family"] == "binomial"
    assert parent.metrics["best_cv_binomial_deviance"] == pytest.approx(summary["best_cv_metric"])

    trials = list(csv.DictReader(Path(client.download_artifacts(summary["mlflow_run_id"], "trials.csv")).open()))
    assert {"cv_binomial_deviance", "cv_deviance_explained", "cv_auc", "fold_binomial_deviance"} <= set(trials[0])

    mlflow.set_tracking_uri(cfg.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    assert model.metadata.signature.outputs.input_names() == ["probability_malignant"]
    frame = _bc_frame()
    raw = model.get_raw_model()
    X = frame.drop(columns="diagnosis").iloc[::-1]  # the output keeps the rows' index, in their order
    out = model.predict(X)  # what the signature names: one column, the positive class's probability
    assert list(out.columns) == ["probability_malignant"] and out.index.equals(X.index)
    proba = out["probability_malignant"].to_numpy()
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-(X.to_numpy() @ raw.coef + raw.intercept))), rtol=1e-12)
    frame = frame.iloc[::-1]
    assert np.mean((proba > 0.5) == (frame["diagnosis"] == "malignant")) > 0.9


def test_poisson_with_exposure(poisson_sweep):
    import mlflow

    cfg, summary, study, lines = poisson_sweep
    frame = _claims_frame()
    X, y, offset = frame[[f"x{j}" for j in range(5)]].to_numpy(), frame["claims"].to_numpy(float), \
        np.log(frame["exposure"].to_numpy())
    from pipeline.folds import kfold_folds

    folds = kfold_folds(0, len(y), cfg.folds.k, cfg.folds.seed)
    t = [t for t in study.trials if t.state.name == "COMPLETE"][0]
    expected = _fold_deviances("poisson", X, y, folds, t.params, offset)
    np.testing.assert_allclose(t.user_attrs["cv"]["fold_poisson_deviance"], expected, rtol=1e-6)
    assert summary["metric"] == "poisson_deviance" and summary["target"]["offset"] == "exposure"
    mlflow.set_tracking_uri(cfg.tracking.uri)
    model = mlflow.pyfunc.load_model(summary["model_uri"])
    raw = model.get_raw_model()
    counts = model.predict(frame.drop(columns="claims"))["expected_count"]  # the exposure is read by name
    np.testing.assert_allclose(counts, frame["exposure"] * np.exp(X @ raw.coef + raw.intercept), rtol=1e-12)
    assert model.metadata.signature.outputs.input_names() == ["expected_count"]


def test_a_study_keeps_its_family(poisson_sweep):
    cfg, *_ = poisson_sweep
    binary = Path(cfg.data.source).with_name("claimed.csv")  # a binomial target, so that the data pass accepts it
    _claims_frame().assign(claims=lambda f: (f["claims"] > 0).astype(int)).to_csv(binary, index=False)
    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"family": "binomial"}),
                                   "data": cfg.data.model_copy(update={"exposure": None, "source": str(binary)})})
    with pytest.raises(ConfigError, match="was run with model.family poisson"):
        execute_sweep(other, echo=lambda _: None, progress=False)


def test_a_study_that_stopped_before_its_first_trial_takes_the_next_runs_family(tmp_path):
    """A first run refused by its data pass (a third class past the first rows the plan reads) leaves a study
    without trials: the corrected run, another family on another target, is not told that the study belongs to
    the family that scored nothing. Once it has trials, the study keeps its family."""
    n = HEAD_ROWS + 100
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n),
                          "label": rng.choice(["a", "b"], n), "score": rng.normal(size=n)})
    frame.loc[n - 1, "label"] = "c"
    frame.to_csv(tmp_path / "d.csv", index=False)
    common = [f"data.source={tmp_path}/d.csv", "search.n_trials=3"]
    first = _config(tmp_path, "restart", [*common, "data.target=label", "data.exclude=[score]", "model.family=binomial"])
    with pytest.raises(DataError, match="two classes"):
        execute_sweep(first, echo=lambda _: None, progress=False)
    study = optuna.load_study(study_name="restart", storage=first.search.storage)
    assert not study.trials  # the pass refused it, after the study was opened
    second = _config(tmp_path, "restart", [*common, "data.target=score", "data.exclude=[label]"])
    summary = execute_sweep(second, echo=lambda _: None, progress=False)
    assert summary["family"] == "gaussian" and summary["n_trials_complete"] == 3
    study = optuna.load_study(study_name="restart", storage=second.search.storage)
    assert "gaussian" in study.user_attrs.values() and "binomial" not in study.user_attrs.values()
    frame.loc[n - 1, "label"] = "a"
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ConfigError, match="was run with model.family gaussian"):  # now it has scored trials
        execute_sweep(first, echo=lambda _: None, progress=False)


def test_a_study_without_trials_keeps_the_family_of_a_driver_still_at_work(tmp_path):
    """Another driver (a live process, its lease fresh) opened the study as binomial and has no trial yet (its data
    pass can take minutes): a Poisson run on the same study is refused, not allowed to mix the two metrics."""
    import subprocess
    import sys
    import time

    from pipeline.ownership import DriverId
    from pipeline.search.study import TrialStore

    n = 80
    rng = np.random.default_rng(3)
    pd.DataFrame({"x0": rng.normal(size=n), "c": rng.poisson(2.0, n)}).to_csv(tmp_path / "d.csv", index=False)
    cfg = _config(tmp_path, "shared", [f"data.source={tmp_path}/d.csv", "data.target=c", "model.family=poisson"])
    store = TrialStore(cfg.search)
    store.study.set_user_attr("regsweep:family", "binomial")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = DriverId.current()
        lease = DriverId(here.host, other.pid, 0, here.pidns)  # start 0: alive while its PID is
        store.set_study_attr(f"regsweep:lease:{lease}", time.time())
        assert store.others_at_work() == [str(lease)]
        with pytest.raises(ConfigError, match="was run with model.family binomial"):
            execute_sweep(cfg, echo=lambda _: None, progress=False)
    finally:
        other.kill()
        other.wait()
    assert store.others_at_work() == []  # its process is gone: the lease is stale, the study free to take


@pytest.mark.parametrize("at", ["head", "tail"])
@pytest.mark.parametrize("family,column,values,match", [
    ("binomial", "label", ["a", "b", "c"], r"two classes, but data.target 'label'( in \S+d.csv rows 0-59)? has 3"),
    ("poisson", "label", [1.0, -2.0, 3.0], "non-negative counts"),
    ("poisson", "exposure", [1.0, 0.0, 2.0], "data.exposure 'exposure' has 1 value <= 0.*must be positive"),
    ("poisson", "exposure", [1.0, np.nan, 2.0], "has 1 value <= 0 or NaN.*set data.missing: drop"),
])
def test_bad_targets_stop_before_any_trial(tmp_path, family, column, values, match, at):
    """In the first rows (``head``) the plan refuses them before any cluster, study or run exists; further on
    (``tail``, past the rows the plan reads) the pass does, before any trial."""
    n = 60 if at == "head" else HEAD_ROWS + 40
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n),
                          "label": rng.poisson(2.0, n).astype(float), "exposure": np.ones(n)})
    if family == "binomial":
        frame["label"] = np.where(rng.random(n) < 0.5, "a", "b")
    frame[column] = frame[column].astype(object)
    rows = slice(0, 2) if at == "head" else slice(n - 3, n - 1)
    frame.loc[rows, column] = values
    frame.to_csv(tmp_path / "d.csv", index=False)
    extra = ["data.exposure=exposure"] if family == "poisson" else ["data.exclude=[exposure]"]
    cfg = _config(tmp_path, "bad", [f"data.source={tmp_path}/d.csv", "data.target=label", f"model.family={family}",
                                    *extra])
    if at == "head":
        with pytest.raises(DataError, match=match):
            plan_data(cfg.data, cfg.folds, family)
    with pytest.raises(DataError, match=match) as info:
        execute_sweep(cfg, echo=lambda _: None, progress=False)
    assert "\n" not in str(info.value)
    if at == "head":
        assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlflow.db").exists()
    else:
        assert f"rows 0-{HEAD_ROWS - 1}" not in str(info.value)  # the pass's message, not the first rows
        assert not optuna.load_study(study_name="bad", storage=cfg.search.storage).trials


@pytest.mark.parametrize("kind", ["csv", "parquet", "npy"])
def test_the_first_rows_of_every_source_kind_refuse_what_fails_the_whole_table(tmp_path, kind):
    """A third class, a negative count and an exposure of 0 at row 5 stop ``plan_data``, from a CSV, a Parquet
    file or .npy arrays alike; the same values at row 1,500 (past the first rows) are left to the pass."""
    n = 2000
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 2))

    def plan(family, y, exposure=None):
        if kind == "npy":
            np.save(tmp_path / "X.npy", X)
            np.save(tmp_path / "y.npy", y.astype(float))
            settings = {"source": f"{tmp_path}/X.npy", "target": f"{tmp_path}/y.npy"}
            if exposure is not None:
                np.save(tmp_path / "e.npy", exposure)
                settings["exposure"] = f"{tmp_path}/e.npy"
        else:
            frame = pd.DataFrame(X, columns=["x0", "x1"]).assign(y=y)
            if exposure is not None:
                frame["e"] = exposure
            path = tmp_path / f"d.{kind}"
            frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path, row_group_size=700)
            settings = {"source": str(path), "target": "y", **({"exposure": "e"} if exposure is not None else {})}
        cfg = load_config(None, [f"data.{k}={v}" for k, v in settings.items()] + [f"model.family={family}"])
        return plan_data(cfg.data, cfg.folds, family)

    for row, refused in ((5, True), (1500, False)):
        labels = rng.integers(0, 2, n)
        labels[row] = 2
        counts = rng.poisson(2.0, n).astype(float)
        counts[row] = -1.0
        exposure = np.ones(n)
        exposure[row] = 0.0
        for family, y, e, match in (("binomial", labels, None, "two classes, but .* rows 0-999 has 3"),
                                    ("poisson", counts, None, "1 negative value in .* rows 0-999 .*at row 5"),
                                    ("poisson", rng.poisson(2.0, n), exposure, "has 1 value <= 0")):
            if refused:
                with pytest.raises(DataError, match=match):
                    plan(family, y, e)
            else:
                assert plan(family, y, e).n_rows == n


def test_rows_the_pass_leaves_out_do_not_count_on_the_first_rows(tmp_path):
    """Under ``data.missing: drop`` a third class only in a row with a missing feature, and a negative count
    only in a row with a missing weight, are rows the pass leaves out: the plan must not refuse the table, and
    the sweep runs."""
    n = 80
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n), "w": np.ones(n),
                          "label": np.where(rng.random(n) < 0.5, "a", "b")})
    frame.loc[3, ["x0", "label"]] = [np.nan, "c"]
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = _config(tmp_path, "dropped", [f"data.source={tmp_path}/d.csv", "data.target=label", "data.weight=w",
                                        "model.family=binomial", "data.missing=drop", "search.n_trials=3"])
    assert plan_data(cfg.data, cfg.folds, "binomial").n_rows == n
    summary = execute_sweep(cfg, echo=lambda _: None, progress=False)
    assert summary["n_trials_complete"] == 3
    counts = frame.assign(label=rng.poisson(2.0, n).astype(float))
    counts.loc[3, ["x0", "label"]] = [0.5, -4.0]
    counts.loc[3, "w"] = np.nan
    counts.to_csv(tmp_path / "c.csv", index=False)
    cfg = _config(tmp_path, "dropped-w", [f"data.source={tmp_path}/c.csv", "data.target=label", "data.weight=w",
                                          "model.family=poisson", "data.missing=drop"])
    assert plan_data(cfg.data, cfg.folds, "poisson").n_rows == n
    counts.loc[3, "w"] = 1.0
    counts.loc[3, "label"] = -np.inf  # an infinite target leaves its row out under drop, as a missing one does
    counts.to_csv(tmp_path / "c.csv", index=False)
    assert plan_data(cfg.data, cfg.folds, "poisson").n_rows == n
    (tmp_path / "s.csv").write_text("x0, label\n" + "".join(f"{i}, {'ab'[i % 2]}\n" for i in range(40)))
    spaced = _config(tmp_path, "spaced", [f"data.source={tmp_path}/s.csv", "data.target=label", "model.family=binomial"])
    assert plan_data(spaced.data, spaced.folds, "binomial").n_rows == 40  # names stripped, as the header's are


@pytest.mark.parametrize("family,stratify,match", [
    ("binomial", True, r"fold \d's training rows hold one class only \(class 'yes' has 1 row\(s\) of weight > 0"),
    ("binomial", False, r"fold \d's training rows hold one class only \(class 'yes' has 3 row\(s\)"),
    ("poisson", True,
     r"fold \d's training rows hold only zero counts \(1 row\(s\) of weight > 0 count above 0.*whatever folds.k is"),
])
def test_a_fold_that_cannot_be_fitted_stops_the_sweep_before_any_trial(tmp_path, family, stratify, match):
    """A class (or every count above 0) held out entirely by one fold leaves that fold's training rows without a
    finite intercept: every trial would fail there. The data pass finds it: one line, no trial, no run. Stratified
    folds spread a class of 2 rows or more, so it takes a class of one row; unstratified, three rows of the class
    that the row k-fold (seed 3) deals to the same fold."""
    from pipeline.folds import kfold_folds

    n, k = 60, 5
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    if family == "binomial":
        rare = [7] if stratify else list(np.flatnonzero(kfold_folds(0, n, k, 3) == 2)[:3])  # 3 rows of one fold
        frame["label"] = np.where(np.isin(np.arange(n), rare), "yes", "no")
    else:
        frame["label"] = 0.0
        frame.loc[7, "label"] = 4.0
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = _config(tmp_path, "unfit", [f"data.source={tmp_path}/d.csv", "data.target=label", f"model.family={family}",
                                      f"folds.k={k}", f"folds.stratify={str(stratify).lower()}"])
    with pytest.raises(DataError, match=match) as info:
        execute_sweep(cfg, echo=lambda _: None, progress=False)
    assert "\n" not in str(info.value)
    assert not optuna.load_study(study_name="unfit", storage=cfg.search.storage).trials
    assert not mlflow.MlflowClient(cfg.tracking.uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(cfg.tracking.uri).search_experiments()])


@pytest.mark.parametrize("missing", ["drop", "impute"])
def test_rows_missing_their_exposure_are_left_out(tmp_path, missing):
    """Unless ``data.missing`` is ``error``, a missing exposure leaves its row out (never imputed), counted apart:
    under ``drop`` a row missing a feature too is counted once, by its feature; under ``impute`` the feature's
    gap is filled and only the rows missing the exposure go. The sweep runs on the other rows and says so."""
    frame = _claims_frame(400)
    frame.loc[[3, 50, 51], "exposure"] = np.nan
    frame.loc[[50, 99], "x1"] = np.nan
    frame.to_csv(tmp_path / "claims.csv", index=False)
    cfg = _config(tmp_path, "gaps", [f"data.source={tmp_path}/claims.csv", "data.target=claims", "search.n_trials=4",
                                     "data.exposure=exposure", "model.family=poisson", f"data.missing={missing}"])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    if missing == "drop":
        assert summary["rows_dropped"] == 4 and summary["n_rows"] == 396
        assert summary["rows_dropped_by"] == {"target": 0, "weight": 0, "feature": 2, "offset": 2}
    else:
        assert summary["rows_dropped"] == 3 and summary["n_rows"] == 397
        assert summary["rows_dropped_by"] == {"target": 0, "weight": 0, "feature": 0, "offset": 3}
        assert any("3 rows with a missing target, weight or offset left out" in line for line in lines)
    assert summary["n_trials_complete"] == 4


def test_cli_refuses_an_offset_for_gaussian_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipeline", "sweep", "--set", "data.offset=t", "--no-progress"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "data.offset applies to model.family binomial or poisson" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_retrain_compares_held_out_deviance(binomial_sweep):
    """A refit retrain of the binomial model: the challenger is a binomial model trained on the training rows,
    and both scores are the held-out binomial deviance, recomputed here from the rows the retrain held out."""
    import mlflow

    from pipeline.cv.statcache import heldout_rows
    from pipeline.retrain import run_retrain

    cfg, summary, _, _ = binomial_sweep
    lines: list[str] = []
    out = run_retrain(cfg, echo=lines.append)
    assert out["action"] == "promoted" and any("held-out binomial deviance" in line for line in lines)
    # the cache note names why it is unused by this family, whichever engine solved the steps
    assert "not used by model.family binomial" in out["cache_note"] and "rows engine" not in out["cache_note"]
    # one engine named throughout: the one that solved the Newton steps, as the sweep's summary names it
    engine_line = next(line for line in lines if line.startswith("engine: "))
    assert out["engine"] == summary["engine"] == engine_line.split()[1]
    assert not any("(rows engine)" in line for line in lines)
    assert any(line.endswith("its one block read (rows kept in worker memory)") for line in lines)  # not "all 1 blocks"
    frame = _bc_frame()
    X, y = frame.drop(columns="diagnosis").to_numpy(), (frame["diagnosis"] == "malignant").to_numpy(float)
    held = heldout_rows(0, len(y), cfg.retrain.holdout.fraction, cfg.retrain.holdout.seed)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    challenger = mlflow.pyfunc.load_model(f"models:/{cfg.tracking.registered_model}/{out['challenger_version']}")
    raw = challenger.get_raw_model()
    assert raw.family == "binomial" and raw.positive_class == "malignant"
    eta = X[held] @ raw.coef + raw.intercept
    deviance = 2 * mean_half_deviance("binomial", y[held], eta, np.ones(int(held.sum())))
    assert out["challenger_score"] == pytest.approx(deviance, rel=1e-10)


def test_a_wide_binomial_sweep_fits_within_the_workers_memory(tmp_path):
    """40 rows × 2,500 features on workers limited to 1 GiB: the rows engine (no p × p matrix) runs every trial.
    Its fold models declared 33 p × p Grams to Dask (1.65 GB here), which refused every task."""
    rng = np.random.default_rng(5)
    n, p = 40, 2500
    X = rng.standard_normal((n, p))
    y = (X[:, :5].sum(axis=1) + rng.standard_normal(n) > 0).astype(float)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    cfg = _config(tmp_path, "wide", [f"data.source={tmp_path}/X.npy", f"data.target={tmp_path}/y.npy",
                                     "model.family=binomial", "search.n_trials=4", "cluster.memory_limit=1GiB"])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    assert summary["engine"] == "rows" and summary["n_trials_complete"] == 4
    study = optuna.load_study(study_name="wide", storage=cfg.search.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4


def test_nearly_separable_classes_score_alike_on_both_routes(tmp_path):
    """Penguins, Adelie or not (the bundled table, gaps imputed, text columns encoded): nearly separable, so the
    optimum's objective is far below the null model's. The trials' CV deviance of the chord route (gram) and of
    the Newton steps on rows must agree. With a stopping rule relative to the null objective only, one fold's
    held-out deviance differed by 0.4% (0.07220 against 0.07248) and the CV value by 0.3%; relative to the
    current objective (``stop_scale``) they agree to 2.3e-6: where each route stops on so flat an objective (and
    the chord's float32 metric) sets that, so the bound is 1e-4, 30× below the defect."""
    frame = pd.read_csv(Path(__file__).resolve().parents[1] / "pipeline" / "datasets" / "penguins.csv")
    frame["adelie"] = frame.pop("species") == "Adelie"
    frame.to_csv(tmp_path / "penguins.csv", index=False)
    values = {}
    for engine in ("gram", "rows"):
        (tmp_path / engine).mkdir()
        cfg = _config(tmp_path / engine, "p", [f"data.source={tmp_path}/penguins.csv", "data.target=adelie",
                                               "data.missing=impute", "model.family=binomial",
                                               f"model.engine={engine}", "search.n_trials=30", "folds.seed=1"])
        execute_sweep(cfg, echo=lambda _: None, progress=False)
        trials = optuna.load_study(study_name="p", storage=cfg.search.storage).trials
        values[engine] = {tuple(sorted(t.params.items())): t.value for t in trials}
    assert values["gram"].keys() == values["rows"].keys()  # the same trials: the search saw the same values
    worst = max(abs(values["gram"][k] / values["rows"][k] - 1) for k in values["gram"])
    assert worst < 1e-4, worst


def test_a_positive_class_that_is_neither_of_the_first_rows_classes_stops_the_plan(tmp_path):
    """``positive_class: 'Yes'`` for labels ``yes``/``no`` failed after the cluster had started; when the first
    rows hold both classes it now stops the plan. Sorted rows (one class first) leave it to the pass."""
    n = 60
    labels = np.where(np.arange(n) % 2 == 0, "yes", "no")
    pd.DataFrame({"a": np.arange(n, dtype=float), "churn": labels}).to_csv(tmp_path / "mixed.csv", index=False)
    data = DataConfig(source=str(tmp_path / "mixed.csv"), target="churn", positive_class="Yes")
    with pytest.raises(DataError, match=r"`positive_class` 'Yes' is not a label of .* its labels are \['no', 'yes'\]"):
        plan_data(data, family="binomial")
    assert plan_data(data.model_copy(update={"positive_class": "yes"}), family="binomial").n_rows == n
    m = HEAD_ROWS + 200  # the first rows all 'no': whether 'Yes' comes later, only the pass can tell
    pd.DataFrame({"a": np.arange(m, dtype=float), "churn": ["no"] * HEAD_ROWS + ["yes"] * 200}).to_csv(
        tmp_path / "sorted.csv", index=False)
    assert plan_data(data.model_copy(update={"source": str(tmp_path / "sorted.csv")}), family="binomial").n_rows == m


def test_labels_padded_with_blanks_are_the_same_class(tmp_path):
    """Exports pad text: ``'yes '`` beside ``'yes'`` was refused as a third and fourth class (the message spoke of
    multinomial models). Labels are stripped as categorical levels are, in the plan's sample and in every block."""
    from pipeline.data import load_block

    n = 2 * HEAD_ROWS + 50  # past the first rows the plan reads
    labels = np.where(np.arange(n) % 3 == 0, "yes", "no").astype(object)
    labels[::7] = labels[::7] + " "
    labels[::11] = " " + labels[::11]
    pd.DataFrame({"a": np.arange(n, dtype=float), "churn": labels}).to_csv(tmp_path / "padded.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "padded.csv"), target="churn", positive_class="yes",
                                block_rows=HEAD_ROWS), family="binomial")
    read = np.concatenate([load_block(plan, spec).labels for spec in plan.blocks])
    assert set(read) == {"yes", "no"}
    np.testing.assert_array_equal(read == "yes", np.arange(n) % 3 == 0)


@pytest.mark.parametrize("suffix", ["csv", "parquet", "npy", "npz"])
def test_a_true_false_target_has_the_classes_false_and_true(tmp_path, suffix):
    """A true/false target (breast cancer's diagnosis as ``malignant``) was read as 1.0/0.0: the terminal said
    ``positive class 1 … negative 0`` and the model's output was ``probability_1``. Its classes are now False and
    True, as ``pipeline.fit`` names a boolean array's; ``positive_class`` 1, true and ``"True"`` all name True,
    and a champion registered as predicting class 1 is the same class for ``regsweep retrain``."""
    from pipeline import fit
    from pipeline.cv.rows import in_source_order, load_rows
    from pipeline.targets import BinaryLabels, same_label

    frame = _bc_frame().iloc[:, [0, 1, 2, -1]]
    malignant = (frame.pop("diagnosis") == "malignant").to_numpy()
    frame["malignant"] = malignant
    path, target = tmp_path / f"bc.{suffix}", "malignant"
    if suffix == "csv":
        frame.to_csv(path, index=False)
    elif suffix == "parquet":
        frame.to_parquet(path)
    else:  # X in its own file, the boolean target in y.npy
        X = frame.drop(columns="malignant").to_numpy()
        np.save(path, X) if suffix == "npy" else sp.save_npz(path, sp.csr_matrix(X))
        target = str(tmp_path / "y.npy")
        np.save(target, malignant)
    for given, positive in [(None, True), (1, True), (True, True), ("True", True), (False, False)]:
        data = DataConfig(source=str(path), target=target, positive_class=given)
        rows = load_rows(plan_data(data, family="binomial"), 5, 0)
        assert rows.labels == BinaryLabels(negative=not positive, positive=positive), given
        np.testing.assert_array_equal(in_source_order(rows, rows.y), malignant == positive)  # (held by fold)
    model = fit(frame.drop(columns="malignant"), malignant, family="binomial", lambda1=0.01)
    assert (model.positive_class, model.prediction_name) == (True, "probability_True")
    assert same_label(True, 1) and same_label(1, True) and not same_label(True, 0) and not same_label("yes", 1)


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_binomial_and_poisson_rows_are_held_ordered_by_fold(tmp_path, family):
    """A worker holds binomial and Poisson rows ordered by fold (each fold's held-out rows together, which the
    passes of its fits skip): every column, the target, the weights and the offset moved with their rows, the
    folds those of the rows as loaded, and the rows' digest (a resumed study's data check) that of the rows as
    loaded, so a study resumed across the change finds its data unchanged."""
    import dataclasses

    from dask.sizeof import sizeof

    from pipeline.cv.row_models import _fingerprint
    from pipeline.cv.rows import HELD_OUT, in_source_order, load_rows
    from pipeline.config import HoldoutConfig

    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["w"] = rng.uniform(0.5, 2.0, 300)
    frame["exposure"] = rng.uniform(0.5, 2.0, 300)
    frame["y"] = rng.poisson(2.0, 300) if family == "poisson" else rng.integers(0, 2, 300)
    frame.to_csv(tmp_path / "d.csv", index=False)
    extra = ["data.exposure=exposure"] if family == "poisson" else []
    cfg = load_config(None, [f"data.source={tmp_path}/d.csv", "data.target=y", "data.features=[a,b,c]",
                             "data.weight=w", f"model.family={family}", *extra])
    plan = plan_data(cfg.data, cfg.folds, family)
    for holdout in (None, HoldoutConfig(fraction=0.2, seed=1)):
        rows = load_rows(plan, 5, 3, holdout)
        assert np.all(np.diff(rows.fold) >= 0) and rows.source_order is not None
        assert (rows.fold == HELD_OUT).any() == (holdout is not None)
        per_row = (rows.X, rows.y, rows.weight, rows.fold, rows.offset, rows.source_order)  # what Dask weighs
        assert sizeof(rows) >= sum(a.nbytes for a in per_row if a is not None)  # when it places tasks
        loaded = dataclasses.replace(
            rows, X=np.asfortranarray(np.column_stack([in_source_order(rows, rows.X[:, j]) for j in range(3)])),
            **{name: in_source_order(rows, getattr(rows, name)) for name in ("y", "weight", "fold", "offset")
               if getattr(rows, name) is not None},
            source_order=None)
        np.testing.assert_array_equal(loaded.X, frame[["a", "b", "c"]].to_numpy())
        np.testing.assert_array_equal(loaded.weight, frame["w"].to_numpy())
        np.testing.assert_array_equal(loaded.y, frame["y"].to_numpy())
        if family == "poisson":
            np.testing.assert_array_equal(loaded.offset, np.log(frame["exposure"].to_numpy()))
        if holdout is None:  # binomial folds stratified by class, Poisson's those of squared loss (not reordered)
            expected = stratified_folds(frame["y"].to_numpy(), 5, 3) if family == "binomial" else \
                load_rows(plan_data(cfg.data, cfg.folds, "gaussian"), 5, 3).fold
            np.testing.assert_array_equal(loaded.fold, expected)
        assert _fingerprint(rows, ("a", "b", "c")) == _fingerprint(loaded, ("a", "b", "c"))
        assert _fingerprint(rows, ("a", "b", "c")) != _fingerprint(dataclasses.replace(rows, source_order=None),
                                                                   ("a", "b", "c"))


def test_a_fold_without_the_rarer_class_is_told_how_many_folds_fit():
    """3 positives among 40 rows and 5 stratified folds: two folds' held-out rows hold no positive; the note said
    'keep folds.stratify on', which it was. It now names the number of folds the rarer class can fill."""
    from pipeline.cv.glm_models import target_facts
    from pipeline.cv.rows import RowData
    from pipeline.targets import BinaryLabels

    y = np.zeros(40)
    y[[3, 17, 31]] = 1.0
    rows = RowData(X=np.zeros((40, 1), order="F"), y=y, weight=np.ones(40), fold=stratified_folds(y, 5, 0), k=5,
                   family="binomial", labels=BinaryLabels(negative=0, positive=1))
    _, notes = target_facts(rows)
    assert len(notes) == 2 and all("lower folds.k to at most 3, the rarer class's rows" in n for n in notes)


def test_a_poisson_target_of_fractions_is_noted():
    """Rates in a Poisson target fit (the deviance is defined, as in glmnet and scikit-learn), but a rate given
    with an exposure counts the exposure twice: a note says which, and whole counts get none."""
    from pipeline.cv.glm_models import target_facts
    from pipeline.cv.rows import RowData

    def facts(y, offset=None):
        return target_facts(RowData(X=np.zeros((40, 1), order="F"), y=y, weight=np.ones(40),
                                    fold=np.arange(40) % 5, k=5, family="poisson", offset=offset))

    counts = np.arange(40) % 4.0
    (fact, notes) = facts(counts)
    assert notes == [] and fact["summary"]["n_fractional"] == 0 and "poisson counts" in fact["line"]
    (fact, notes) = facts(counts / 3.0)
    assert fact["summary"]["n_fractional"] == 20 and "poisson values" in fact["line"]
    assert len(notes) == 1 and "20 values that are not whole numbers (of 40)" in notes[0]
    assert "give the counts and data.exposure" in notes[0]
    assert "check that it is not a rate already" in facts(counts / 3.0, offset=np.zeros(40))[1][0]


@pytest.mark.parametrize("labels", [("benign", "malignant"), (0, 1)])
def test_the_stratified_folds_do_not_depend_on_which_class_is_positive(tmp_path, labels):
    """The folds deal each class's rows; which class is coded 1 (data.positive_class) must not change them. It
    did (the coded 0 class was dealt first), and with it the CV deviance at the same λ (0.1947 against 0.1735
    on breast cancer, flipping the positive class)."""
    from pipeline.cv.rows import in_source_order, load_rows

    frame = _bc_frame().iloc[:200, [0, 1, 2, -1]].rename(columns={"diagnosis": "target"})
    frame["target"] = np.asarray(labels, dtype=object)[(frame["target"] == "malignant").to_numpy().astype(int)]
    frame.to_csv(tmp_path / "d.csv", index=False)
    folds, coded = {}, {}
    for positive in labels:
        cfg = _config(tmp_path, f"p{positive}", [f"data.source={tmp_path}/d.csv", "data.target=target",
                                                 "model.family=binomial", f"data.positive_class={positive}"])
        rows = load_rows(plan_data(cfg.data, cfg.folds, "binomial"), 5, 3)
        folds[positive], coded[positive] = in_source_order(rows, rows.fold), in_source_order(rows, rows.y)
    np.testing.assert_array_equal(coded[labels[0]], 1.0 - coded[labels[1]])  # the classes swapped their codes
    np.testing.assert_array_equal(folds[labels[0]], folds[labels[1]])  # and the folds stayed
    first = frame["target"].astype(str).to_numpy() == str(labels[0])
    np.testing.assert_array_equal(folds[labels[1]], stratified_folds(1.0 - first, 5, 3))  # the default's folds


def test_the_poisson_target_line_says_weighted_only_under_weights(tmp_path):
    """'Target: poisson counts, weighted mean 2.273' was printed without data.weight (the first probe)."""
    from pipeline.cv.glm_models import target_facts
    from pipeline.cv.rows import load_rows
    from pipeline.report import _target_line

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60), "y": rng.poisson(2.0, 60), "w": rng.uniform(0.5, 2.0, 60)})
    frame.to_csv(tmp_path / "c.csv", index=False)
    for weight, said in ((None, "mean"), ("w", "weighted mean")):
        cfg = load_config(None, [f"data.source={tmp_path}/c.csv", "data.target=y", "data.features=[x]",
                                 "model.family=poisson", *([f"data.weight={weight}"] if weight else [])])
        plan = plan_data(cfg.data, cfg.folds, "poisson")
        facts, _ = target_facts(load_rows(plan, 5, 0))
        w = frame["w"].to_numpy() if weight else np.ones(60)
        mean = float(w @ frame["y"]) / w.sum()
        assert facts["line"].startswith(f"Target: poisson counts, {said} {mean:.4g}, ")
        assert f"({said} {mean:.4g}," in _target_line(facts["summary"])
