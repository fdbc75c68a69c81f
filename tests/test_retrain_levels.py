"""``regsweep retrain`` on a table with a text column and gaps: new levels and new gaps in a new delivery.

The old blocks' cached statistics are widened to the new levels, not read
again (their recorded scans give the levels); the incumbent is scored through
its own encoding (a level it never saw counts as zeros, gaps take its own fill
values), checked against its predictions on the raw held-out rows; the
challenger against scikit-learn's pipeline fitted on the training rows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import pipeline.cv.statcache as statcache
import pipeline.data as data_module
from pipeline.config import load_config
from pipeline.cv.statcache import heldout_rows
from pipeline.model import FittedModel
from pipeline.retrain import run_retrain
from pipeline.sweep import execute_sweep

NUMERIC = ["x0", "x1", "x2"]
EFFECT = {"a": 0.0, "b": 2.0, "c": -1.0, "d": 4.0}


def _part(directory: Path, index: int, n: int, levels: list[str], gaps: dict[str, float], seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1.0, 3.0, 0.5] + [0.0, 100.0, 2.0]
    site = rng.choice(levels, n)
    y = X @ [1.5, -0.5, 2.0] + np.array([EFFECT[s] for s in site]) + rng.standard_normal(n)
    frame = pd.DataFrame(X, columns=NUMERIC).assign(site=site, y=y)
    for col, share in gaps.items():
        frame.loc[rng.random(n) < share, col] = np.nan
    frame.to_parquet(directory / f"part-{index:03d}.parquet", row_group_size=250, index=False)


def _frame(directory: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(directory.glob("*.parquet"))], ignore_index=True)


def _challenger_reference(train: pd.DataFrame, params: dict) -> Pipeline:
    lam1, lam2 = params["lambda1"] or 0.0, params["lambda2"] or 0.0
    if params["penalty"] == "l2":
        reg = Ridge(alpha=len(train) * lam2, solver="svd")
    elif params["penalty"] == "l1":
        reg = Lasso(alpha=lam1, tol=1e-12, max_iter=1_000_000)
    else:
        reg = ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), tol=1e-12, max_iter=1_000_000)
    encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), ["site"]),
                                ("numbers", SimpleImputer(strategy="mean"), NUMERIC)])
    return Pipeline([("encode", encode), ("scale", StandardScaler()), ("fit", reg)]).fit(train, train["y"])


@pytest.mark.parametrize("engine", ["gram", "rows"])
def test_new_levels_and_gaps_widen_the_cache_and_score_exactly(tmp_path, monkeypatch, engine):
    data = tmp_path / "data"
    data.mkdir()
    _part(data, 0, 1000, ["a", "b", "c"], {"x0": 0.1}, seed=1)
    overrides = [
        f"data.source={data}", "data.target=y", "data.block_rows=500", "data.missing=impute",
        f"search.storage=sqlite:///{tmp_path}/o.db", "search.study_name=lv", "search.n_trials=6",
        f"tracking.uri=sqlite:///{tmp_path}/m.db", "tracking.registered_model=lv-model", "model.tol=1e-12",
        "cluster.processes=false", "cluster.dashboard_address=null", f"model.engine={engine}",
        f"retrain.cache={tmp_path}/cache", "retrain.holdout.fraction=0.25", "retrain.holdout.seed=3",
    ]
    monkeypatch.chdir(tmp_path)
    execute_sweep(load_config(None, overrides), echo=lambda s: None, progress=False)
    first = run_retrain(load_config(None, overrides), echo=lambda s: None)
    assert first["action"] == "promoted" and first["new_levels"] == {}

    # a new delivery: a new level 'd', and the first gaps in x2
    _part(data, 1, 1000, ["a", "b", "c", "d"], {"x0": 0.1, "x2": 0.2}, seed=2)
    loads, scans = [], []
    real_load, real_read = statcache.load_block, data_module.raw_block_frame  # thread workers: same process
    monkeypatch.setattr(statcache, "load_block", lambda plan, spec: loads.append(spec.index) or real_load(plan, spec))
    monkeypatch.setattr(data_module, "raw_block_frame",
                        lambda plan, spec: scans.append(spec.index) or real_read(plan, spec))
    cfg = load_config(None, overrides)
    lines: list[str] = []
    second = run_retrain(cfg, echo=lines.append)
    if engine == "gram":  # the old blocks came from the cache (the rows engine reads every block, and says so)
        assert sorted(loads) == [2, 3] and sorted(scans) == [2, 3], (loads, scans, lines)
    else:
        assert second["engine"] == "rows" and "is not used by the rows engine" in second["cache_note"]
    assert second["new_levels"] == {"site": ["d"]}
    assert any("New levels since" in line for line in lines)

    frame = _frame(data)
    held = heldout_rows(0, len(frame), cfg.retrain.holdout.fraction, cfg.retrain.holdout.seed)
    test, train = frame[held], frame[~held]
    from mlflow import MlflowClient

    from pipeline.tracking import Tracker
    from pipeline.tracking.registry import load_version

    tracker = Tracker(cfg.tracking)

    def model(version: int) -> FittedModel:
        mv = MlflowClient(cfg.tracking.uri).get_model_version("lv-model", str(version))
        return load_version(tracker.client, tracker.uri, "lv-model", mv, None).model

    incumbent = model(first["challenger_version"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the incumbent never saw 'd'
        inc_pred = incumbent.predict(test.drop(columns=["y"]))
    assert second["incumbent_score"] == pytest.approx(float(np.mean((inc_pred - test["y"]) ** 2)), rel=1e-9)
    ref = _challenger_reference(train, second["challenger_params"])
    assert second["challenger_score"] == pytest.approx(float(np.mean((ref.predict(test) - test["y"]) ** 2)), rel=1e-8)
    challenger = model(second["challenger_version"])
    assert "site=d" in challenger.feature_names
    np.testing.assert_allclose(challenger.predict(test.drop(columns=["y"])), ref.predict(test), rtol=1e-8)
    assert second["action"] == "promoted"  # the incumbent cannot use 'd' (an effect of 4)


def test_a_feature_whose_kind_changed_is_refused_before_the_cluster_starts(tmp_path, mlflow_template):
    """A numeric column that holds text in the new delivery became level indicators in a promoted challenger
    (the second probe); a categorical one read as numbers now was refused as 'now has missing values'. Both are
    refused naming the column, exit 2, and nothing is registered."""
    import shutil
    import sqlite3

    from tests.integration.conftest import run_regsweep
    from tests.test_bad_input import _one_line_error

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "color": rng.choice(["red", "blue"], n)})
    frame["y"] = frame.x1 - frame.x2 + (frame.color == "red") + rng.normal(size=n)
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.assign(x2=rng.choice(["high", "low"], n)).to_csv(tmp_path / "x2_text.csv", index=False)
    frame.assign(color=rng.integers(1, 4, n)).to_csv(tmp_path / "color_num.csv", index=False)
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    (tmp_path / "c.yaml").write_text("data: {source: train.csv, target: y}\nsearch: {n_trials: 4}\n"
                                     "cluster: {processes: false}\n")
    swept = run_regsweep(["sweep", "c.yaml"], cwd=tmp_path, timeout=120)
    assert swept.returncode == 0, swept.stderr
    for source, fragments in (("x2_text.csv", ["column 'x2' was numeric when regsweep-model v1 was fitted and is "
                                               "read as text now", "data.na_values", "run a new sweep"]),
                              ("color_num.csv", ["column 'color' was categorical when regsweep-model v1 was fitted "
                                                 "(levels 'blue', 'red') and is read as numbers now",
                                                 "list it in data.categorical"])):
        proc = run_regsweep(["retrain", "c.yaml", "--set", f"data.source={source}"], cwd=tmp_path, timeout=60)
        _one_line_error(proc, fragments)
        assert "Dask:" not in proc.stdout
    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        assert db.execute("select count(*) from model_versions").fetchone() == (1,)
