"""A sweep on a table with text columns and gaps, end to end: trials, the registered model on the raw frame.

Every trial's CV MSE is checked against scikit-learn's pipeline on the same
folds (the reference of :mod:`tests.test_categorical`), and the model
registered in MLflow, loaded as a pyfunc, predicts the raw frame (text as
text, NaN as NaN) as that pipeline refit on all rows does.
"""

from __future__ import annotations

import shutil

import numpy as np
import optuna
import pytest

from pipeline.candidate import Candidate
from pipeline.folds import kfold_folds
from pipeline.config import load_config
from pipeline.data import plan_data
from pipeline.sweep import execute_sweep

from .test_categorical import K, SEED, TARGET, _folds_of_kept_rows, _reference_pipeline, reference_cv_mse


@pytest.fixture(scope="module")
def categorical_sweep(tmp_path_factory, penguins, mlflow_template):
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


def test_every_trial_matches_the_sklearn_pipeline(categorical_sweep, penguins):
    cfg, summary, _ = categorical_sweep
    data, folds = _folds_of_kept_rows(penguins, plan_data(cfg.data, cfg.folds))
    study = optuna.load_study(study_name="cat", storage=cfg.search.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 8
    for t in complete:
        ref = reference_cv_mse(data, folds, Candidate.from_params(t.number, t.params))
        assert t.value == pytest.approx(ref, rel=1e-8), (t.params, t.system_attrs)


def test_summary_names_levels_gaps_and_dropped_rows(categorical_sweep):
    _, summary, lines = categorical_sweep
    assert summary["categorical_levels"] == {"species": ["Adelie", "Chinstrap", "Gentoo"],
                                             "island": ["Biscoe", "Dream", "Torgersen"],
                                             "sex": ["female", "male", "<NA>"]}
    assert summary["imputed_columns"] == ["bill_length_mm", "flipper_length_mm"]
    assert summary["rows_dropped"] == 2 and summary["rows_dropped_by"] == {"target": 2, "weight": 0, "feature": 0}
    assert summary["n_features"] == 13
    assert any("2 rows with a missing target or weight left out" in line for line in lines)


def test_registered_model_predicts_the_raw_frame(categorical_sweep, penguins):
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


def test_rows_engine_encodes_levels_like_the_gram_engine(tmp_path, penguins, mlflow_template):
    """model.engine: rows on the same table (data.missing: drop: the rows engine does not impute)."""
    penguins.to_csv(tmp_path / "penguins.csv", index=False)
    shutil.copy(mlflow_template, tmp_path / "m.db")
    cfg = load_config(None, [
        f"data.source={tmp_path / 'penguins.csv'}", f"data.target={TARGET}", "data.missing=drop",
        "data.block_rows=90", f"folds.k={K}", f"folds.seed={SEED}", "search.n_trials=5", "model.engine=rows",
        f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=rows", f"tracking.uri=sqlite:///{tmp_path}/m.db",
        # 1e-11: the rows engine's gap stalls near 2e-12 on some of these folds (tests.test_categorical._tol)
        "tracking.registered_model=rows-model", "tracking.log_trials=false", "model.tol=1e-11",
        "cluster.processes=false", "cluster.dashboard_address=null",
    ])
    summary = execute_sweep(cfg, echo=lambda s: None, progress=False)
    assert summary["engine"] == "rows" and summary["categorical_levels"]["sex"] == ["female", "male"]
    kept = penguins.notna().all(axis=1).to_numpy()
    # each block's kept rows numbered on from its first row, dealt in runs of K (pipeline.folds)
    folds = np.concatenate([kfold_folds(b.start_row, int(kept[b.start_row:b.start_row + b.n_rows].sum()), K, SEED)
                            for b in plan_data(cfg.data, cfg.folds).blocks])
    data = penguins[kept].reset_index(drop=True)
    study = optuna.load_study(study_name="rows", storage=cfg.search.storage)
    for t in study.trials:
        ref = reference_cv_mse(data, folds, Candidate.from_params(t.number, t.params))
        assert t.value == pytest.approx(ref, rel=1e-8), (t.params, t.system_attrs)
