"""A sweep on a table with text columns and gaps, end to end: trials, the registered model on the raw frame.

Every trial's CV MSE is checked against scikit-learn's pipeline on the same
folds (the reference of :mod:`tests.test_categorical`), and the model
registered in MLflow, loaded as a pyfunc, predicts the raw frame (text as
text, NaN as NaN) as that pipeline refit on all rows does.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import optuna
import pytest
from sklearn.model_selection import PredefinedSplit, cross_val_score

from pipeline.candidate import Candidate
from pipeline.config import load_config
from pipeline.sweep import execute_sweep

from .test_categorical import K, SEED, TARGET, _folds_of_kept_rows, _reference_pipeline, penguins  # noqa: F401


@pytest.fixture(scope="module")
def categorical_sweep(tmp_path_factory, penguins, mlflow_template):  # noqa: F811
    tmp = tmp_path_factory.mktemp("cat-sweep")
    penguins.to_csv(tmp / "penguins.csv", index=False)
    shutil.copy(mlflow_template, tmp / "m.db")
    cfg = load_config(None, [
        f"data.source={tmp / 'penguins.csv'}", f"data.target={TARGET}", "data.missing=impute", "data.block_rows=90",
        f"folds.k={K}", f"folds.seed={SEED}", "search.n_trials=8", f"search.storage=sqlite:///{tmp}/o.db",
        "search.study_name=cat", f"tracking.uri=sqlite:///{tmp}/m.db", "tracking.registered_model=cat-model",
        "model.tol=1e-12", "cluster.dashboard_address=null",
    ])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    return cfg, summary, lines


def test_every_trial_matches_the_sklearn_pipeline(categorical_sweep, penguins):  # noqa: F811
    cfg, summary, _ = categorical_sweep
    data, folds = _folds_of_kept_rows(penguins)
    study = optuna.load_study(study_name="cat", storage=cfg.search.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 8
    for t in complete:
        c = Candidate.from_params(t.number, t.params)
        if c.penalty == "l2":
            errs = []
            for f in range(K):
                tr, te = folds != f, folds == f
                est = _reference_pipeline(c, int(tr.sum())).fit(data[tr], data[TARGET][tr])
                errs.append(np.mean((est.predict(data[te]) - data[TARGET][te]) ** 2))
            ref = float(np.mean(errs))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                ref = -cross_val_score(_reference_pipeline(c, len(data)), data, data[TARGET],
                                       cv=PredefinedSplit(folds), scoring="neg_mean_squared_error").mean()
        assert t.value == pytest.approx(ref, rel=1e-8), t.params


def test_summary_names_levels_gaps_and_dropped_rows(categorical_sweep):
    _, summary, lines = categorical_sweep
    assert summary["categorical_levels"] == {"species": ["Adelie", "Chinstrap", "Gentoo"],
                                             "island": ["Biscoe", "Dream", "Torgersen"],
                                             "sex": ["female", "male", "<NA>"]}
    assert summary["imputed_columns"] == ["bill_length_mm", "flipper_length_mm"]
    assert summary["rows_dropped"] == 2 and summary["rows_dropped_by"] == {"target": 2, "weight": 0, "feature": 0}
    assert summary["n_features"] == 13
    assert any("2 rows with a missing target or weight left out" in line for line in lines)


def test_registered_model_predicts_the_raw_frame(categorical_sweep, penguins):  # noqa: F811
    import mlflow

    cfg, summary, _ = categorical_sweep
    mlflow.set_tracking_uri(cfg.tracking.uri)
    loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    sel = summary["selected"]
    c = Candidate(-1, sel["penalty"], sel["lambda1"] or 0.0, sel["lambda2"] or 0.0)
    data, _ = _folds_of_kept_rows(penguins)
    ref = _reference_pipeline(c, len(data)).fit(data, data[TARGET])
    raw = penguins.drop(columns=[TARGET])
    np.testing.assert_allclose(loaded.predict(raw), ref.predict(raw), rtol=1e-8, atol=1e-8 * data[TARGET].std())
    inputs = [col.name for col in loaded.metadata.get_input_schema().inputs]
    assert inputs == list(raw.columns)  # the raw columns, as the model takes them
