"""Penalty factors, coefficient limits and searched group multipliers through a whole sweep (embedded cluster),
on both engines.

Every trial's CV MSE is checked fold by fold against the brute-force minimiser of the box-constrained problem
(:mod:`tests.box_reference`, L-BFGS-B: nothing shared with regsweep's solvers) on the same folds, with the
trial's own multiplier; the summary, MLflow and the registered model must carry the factors, limits and
multipliers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.feature_controls import controls_from_config
from pipeline.folds import kfold_folds
from pipeline.sweep import execute_sweep
from tests.box_reference import brute_force
from tests.solvers.test_controls import objective

NAMES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
SETTINGS = [
    "model.penalty_factor={age: 0, sex: 2}",
    "model.coef_limits={bmi: [0, .inf], bp: [0, 0.5]}",
    "search.group_multipliers={serum: {columns: ['s?'], range: [0.1, 10]}}",
]


@pytest.fixture(scope="module", params=["gram", "rows"])
def controlled_sweep(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"controls-{request.param}")
    cfg = load_config(None, [
        "search.n_trials=14", f"search.storage=sqlite:///{tmp}/optuna.db", "search.study_name=ctl",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", "tracking.experiment=ctl", "tracking.registered_model=ctl-model",
        "folds.seed=3", "cluster.dashboard_address=null", f"model.engine={request.param}", *SETTINGS,
    ])
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    study = optuna.load_study(study_name="ctl", storage=cfg.search.storage)
    return cfg, summary, study, lines


def _factors(mult: float) -> np.ndarray:
    """The effective factors of a trial: age 0, sex 2, the rest 1, rescaled to sum to 10; then × mult on s1–s6."""
    f = np.array([0, 2, 1, 1, 1, 1, 1, 1, 1, 1.0])
    f *= 10 / f.sum()
    f[4:] *= mult
    return f


def test_every_trial_matches_the_brute_force_on_its_folds(controlled_sweep, diabetes):
    """Each fold's fit reaches the brute force's objective (at most 1e-8 relative above: on nearly
    unregularized folds of these collinear columns L-BFGS-B stops a few 1e-10 above regsweep's point, so
    its held-out MSE is not a reference to 1e-7), and the trial's CV MSE is the held-out MSE of exactly
    those fits (fitted in one process by ``pipeline.fit`` with the trial's effective factors)."""
    import pipeline

    cfg, summary, study, _ = controlled_sweep
    X, y = diabetes
    folds = kfold_folds(0, len(y), cfg.folds.k, cfg.folds.seed)
    lower = np.array([-np.inf, -np.inf, 0, 0] + [-np.inf] * 6)
    upper = np.array([np.inf, np.inf, np.inf, 0.5] + [np.inf] * 6)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 14
    for t in complete[:6]:  # the brute force takes ~0.1 s per fold
        p = t.params
        assert 0.1 <= p["mult_serum"] <= 10
        lam1, lam2 = p.get("lambda1", 0.0), p.get("lambda2", 0.0)
        factors = _factors(p["mult_serum"])
        errs = []
        for k in range(cfg.folds.k):
            tr, te = folds != k, folds == k
            f_ref, coef_ref, b_ref = brute_force(X[tr], y[tr], lam1, lam2, factors, lower, upper)
            c = len(factors) / factors.sum()  # fit rescales factors to sum to p: the same penalty with λ / c
            fit = pipeline.fit(X[tr], y[tr], penalty=p["penalty"], lambda1=lam1 / c, lambda2=lam2 / c,
                               penalty_factor=factors, lower=lower, upper=upper)
            ours, ref = (objective(X[tr], y[tr], c, b, lam1, lam2, factors)
                         for c, b in ((fit.coef, fit.intercept), (coef_ref, b_ref)))
            assert ours <= ref * (1 + 1e-8), (t.number, k, ours, ref)
            errs.append(np.mean((y[te] - fit.predict(X[te])) ** 2))
        assert t.value == pytest.approx(np.mean(errs), rel=1e-9), (t.number, p)


def test_summary_mlflow_and_model_carry_the_controls(controlled_sweep):
    import mlflow
    from mlflow import MlflowClient

    from pipeline import FittedModel

    cfg, summary, study, lines = controlled_sweep
    by_number = {t.number: t for t in study.trials}
    best = study.best_trial
    assert summary["best_params"]["group_multipliers"] == {"serum": best.params["mult_serum"]}
    for entry in [*summary["best_per_penalty"].values(), *summary["pareto"]]:
        assert entry["group_multipliers"] == {"serum": by_number[entry["trial"]].params["mult_serum"]}
    assert summary["selected"]["group_multipliers"] == {"serum": best.params["mult_serum"]}
    controls = summary["penalty_controls"]
    assert controls["unpenalized"] == ["age"]
    assert controls["limits"] == {"bmi": [0.0, None], "bp": [0.0, 0.5]}
    assert controls["groups"] == {"serum": ["s1", "s2", "s3", "s4", "s5", "s6"]}
    assert any(line.startswith("Penalty: unpenalized age") for line in lines)

    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name("ctl")
    children = [r for r in client.search_runs([exp.experiment_id], max_results=100)
                if r.data.tags.get("mlflow.parentRunId") == summary["mlflow_run_id"]]
    assert len(children) == 14
    for run in children:
        trial = by_number[int(run.data.tags["regsweep.trial"])]
        assert float(run.data.params["mult_serum"]) == trial.params["mult_serum"]
    parent = client.get_run(summary["mlflow_run_id"]).data.params
    assert parent["model.penalty_factor"] == '{"age":0.0,"sex":2.0}'
    assert json.loads(parent["search.group_multipliers"]) == {"serum": {"columns": ["s?"], "range": [0.1, 10.0]}}
    assert float(parent["selected.mult_serum"]) == summary["selected"]["group_multipliers"]["serum"]
    note = client.get_run(summary["mlflow_run_id"]).data.tags["mlflow.note.content"]
    assert "**Penalty controls:** unpenalized: age; other penalty factors: sex 2; limits: bmi [0, inf], " \
           "bp [0, 0.5]; group `serum` (6 features, `mult_serum` searched, chosen multiplier" in note

    mlflow.set_tracking_uri(cfg.tracking.uri)
    local = mlflow.artifacts.download_artifacts(summary["model_uri"])
    model = FittedModel.load(next(Path(local).rglob("model.json")).parent)
    np.testing.assert_allclose(model.penalty_factor, _factors(summary["selected"]["group_multipliers"]["serum"]),
                               rtol=1e-12)
    assert model.group_multipliers == summary["selected"]["group_multipliers"]
    assert model.coef[2] >= 0 and 0 <= model.coef[3] <= 0.5
    np.testing.assert_array_equal(model.lower, [-np.inf, -np.inf, 0, 0] + [-np.inf] * 6)

    parent = summary["mlflow_run_id"]
    table = Path(client.download_artifacts(parent, "coefficients.csv", str(Path(local).parent)))
    rows = list(csv.DictReader(table.open()))
    assert [r["name"] for r in rows[:-1]] == NAMES
    assert rows[0]["penalty_factor"] == "0.0" and rows[3]["upper"] == "0.5" and rows[0]["lower"] == ""
    assert rows[3]["at_limit"] == str(bool(model.at_limit[3])).lower()


@pytest.mark.parametrize("mapping,key,message", [
    ({"penalty_factor": {"agee": 0}}, "penalty", "'agee' matches no feature; closest: ['age']"),
    ({"coef_limits": {"s*": [0, 1], "s1": [-1, 1]}}, "limits", "'s1' is matched by both 's*' and 's1'"),
    ({"groups": {"a": ["s1"], "b": ["s?"]}}, "groups", "'s1' is in both groups 'a' and 'b'"),
    ({"penalty_factor": {"*": 0}}, "penalty", "nothing is penalized"),
])
def test_bad_names_are_one_line_config_errors(mapping, key, message):
    with pytest.raises(ConfigError) as info:
        controls_from_config(NAMES, mapping.get("penalty_factor", {}), mapping.get("coef_limits", {}),
                             mapping.get("groups", {}))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_name_stops_the_sweep_before_any_run(tmp_path):
    cfg = load_config(None, [
        f"search.storage=sqlite:///{tmp_path}/optuna.db", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "cluster.dashboard_address=null", "model.penalty_factor={bmii: 0}",
    ])
    with pytest.raises(ConfigError, match="closest: \\['bmi'\\]"):
        execute_sweep(cfg, echo=lambda _line: None, progress=False)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


def test_more_unpenalized_features_than_training_rows_stop_the_sweep_before_any_run(tmp_path):
    """33 features of factor 0 against about 24 training rows per fold: the unpenalized columns alone fit every
    row, so no trial's fit is unique (a GLM's has no finite solution, and took minutes to give up)."""
    cfg = load_config(None, [
        f"search.storage=sqlite:///{tmp_path}/optuna.db", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "cluster.dashboard_address=null", "data.source=synthetic", "data.synthetic.n_rows=30",
        "data.synthetic.n_features=40", "model.penalty_factor={'x[1-3]*': 0}",
    ])
    with pytest.raises(ConfigError, match=r"model.penalty_factor is 0 for 33 features \('x1', .* 24 training rows"):
        execute_sweep(cfg, echo=lambda _line: None, progress=False)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    assert all(not client.search_runs([e.experiment_id]) for e in client.search_experiments())


def test_fit_refuses_more_unpenalized_features_than_rows():
    """The same rule in :func:`pipeline.fit` (50 rows, 49 unpenalized features and the intercept: refused; 48:
    fitted, and then the unpenalized least squares is unique)."""
    import pipeline
    from pipeline.errors import DataError

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 80)), rng.standard_normal(50)
    with pytest.raises(DataError, match=r"`penalty_factor` is 0 for 49 features .* 50 training rows"):
        pipeline.fit(X, y, penalty="l1", lambda1=0.1, penalty_factor=np.r_[np.zeros(49), np.ones(31)])
    model = pipeline.fit(X, y, penalty="l1", lambda1=0.1, penalty_factor=np.r_[np.zeros(48), np.ones(32)])
    assert np.count_nonzero(model.coef[:48]) == 48


def test_categorical_levels_are_named_column_equals_level():
    names = ["bmi", "color=blue", "color=red", "size"]
    c = controls_from_config(names, {"color": 0}, {"color=red": [0, np.inf]}, {})
    assert c is not None
    assert list(c.factor == 0) == [False, True, True, False]
    assert list(np.isfinite(c.lower)) == [False, False, True, False]


@pytest.mark.parametrize("setting,fragments", [
    ("model.coef_limits={bmi: [0.5, 2]}", ["model.coef_limits", "lower <= 0 <= upper", "[0, .inf]"]),
    ("model.penalty_factor={bmi: -1}", ["model.penalty_factor", ">= 0"]),
    ("model.penalty_factor={bmii: 0}", ["'bmii' matches no feature", "closest: ['bmi']"]),
])
def test_the_command_line_refuses_bad_controls_in_one_line_before_any_run(tmp_path, setting, fragments):
    from tests.integration.conftest import run_regsweep
    from tests.test_bad_input import _one_line_error

    proc = run_regsweep(["sweep", "--set", setting, "--set", "cluster.dashboard_address=null"], cwd=tmp_path)
    _one_line_error(proc, fragments)


@pytest.mark.parametrize("setting,fragment", [
    ("model.penalty_factor={'*': 0}", "is 0 for every feature, so nothing is penalized"),
    ("model.penalty_factor={'s?': 0, s1: 2}", "matched by both"),
])
def test_check_config_refuses_what_the_sweep_would(tmp_path, setting, fragment):
    """check-config said OK to controls that the sweep refused once its cluster had started; on a table without
    levels to find, both now refuse them before any cluster."""
    from tests.integration.conftest import run_regsweep
    from tests.test_bad_input import _one_line_error

    (tmp_path / "c.yaml").write_text("search: {n_trials: 3}\n")
    for command in ("check-config", "sweep"):
        proc = run_regsweep([command, "c.yaml", "--set", setting, "--set", "cluster.dashboard_address=null"],
                            cwd=tmp_path)
        _one_line_error(proc, [fragment])
        assert "Dask:" not in proc.stdout


def test_candidate_parameters_round_trip_with_two_groups():
    from pipeline.candidate import Candidate

    c = Candidate(7, "elasticnet", 0.1, 0.2, (("serum", 0.5), ("demo", 3.0)))
    params = c.params()
    assert params == {"penalty": "elasticnet", "lambda1": 0.1, "lambda2": 0.2, "mult_serum": 0.5, "mult_demo": 3.0}
    assert Candidate.from_params(7, params).group_multipliers == {"serum": 0.5, "demo": 3.0}


def test_a_study_resumed_with_other_controls_is_refused(tmp_path):
    base = [f"search.storage=sqlite:///{tmp_path}/optuna.db", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "cluster.dashboard_address=null", "search.n_trials=4"]
    execute_sweep(load_config(None, [*base, "model.penalty_factor={age: 0}"]), echo=lambda _l: None, progress=False)
    with pytest.raises(ConfigError, match="was run with other penalty controls"):
        execute_sweep(load_config(None, [*base, "search.n_trials=6", "model.penalty_factor={age: 0, sex: 0}"]),
                      echo=lambda _l: None, progress=False)
