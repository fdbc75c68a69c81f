"""Choosing: the search space holds each penalty's optimum, and the min / 1-SE choices are glmnet's.

The 1-SE rule and the Pareto front are checked on their definitions; the dense
path's CV errors against scikit-learn on the same folds; the search range
against a reference grid, on data whose ridge optimum lies far below the
smallest eigenvalue of the Gram (where the old range started).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from pipeline.candidate import Candidate
from pipeline.config import load_config
from pipeline.cv.fold_models import make_fold_model, score_candidates
from pipeline.cv.passes import BlockPass, finish_pass
from pipeline.cv.path import PathSpec, score_path
from pipeline.folds import block_fold_stats, kfold_folds
from pipeline.selection import PathCurve, best_per_penalty, choose, curve_of, pareto_front, path_strengths
from pipeline.solvers import GramProblem

K = 5


def _row(number, penalty, lam1, lam2, cv, se, nnz, state="COMPLETE"):
    return {"number": number, "state": state, "penalty": penalty, "lambda1": lam1, "lambda2": lam2, "cv_mse": cv,
            "cv_mse_se": se, "train_mse": cv * 0.9, "cv_r2": 0.5, "n_nonzero": nnz}


def _curve(strengths, cv, se, nnz) -> PathCurve:
    m = len(strengths)
    return PathCurve("l1", 1.0, tuple(strengths), tuple(cv), tuple(se), (0.5,) * m, tuple(0.9 * c for c in cv),
                     tuple(nnz))


def test_the_one_se_choice_is_the_largest_strength_within_one_se_of_the_minimum() -> None:
    # strengths largest first, as a path; the minimum (1.0 ± 0.2) is at 0.1
    curve = _curve([10, 3, 1, 0.3, 0.1, 0.03], [5.0, 1.25, 1.1, 1.05, 1.0, 1.02], [0.3, 0.2, 0.2, 0.2, 0.2, 0.2],
                   [0, 2, 3, 4, 5, 6])
    rows = [_row(0, "l1", 0.1, 0.0, 1.0, 0.2, 5), _row(1, "l2", 0.0, 1.0, 1.3, 0.1, 6)]
    choices = choose(rows, curve)
    assert (choices["min"].lambda1, choices["min"].trial) == (0.1, 0)  # ties go to the trial
    assert choices["1se"].lambda1 == 1  # 1.1 ≤ 1.0 + 0.2 < 1.25
    assert choices["1se"].n_nonzero == 3
    # a path point better than every trial becomes the minimum, with its own standard error
    better = _curve([10, 1, 0.1], [5.0, 0.9, 1.0], [0.3, 0.05, 0.2], [0, 3, 5])
    choices = choose(rows, better)
    assert choices["min"].trial is None and choices["min"].lambda1 == 1
    assert choices["1se"].lambda1 == 1  # 5.0 > 0.9 + 0.05


def test_a_path_short_of_the_winning_trial_leaves_both_choices_at_the_trial() -> None:
    """A path cut before it reached the best trial (one noisy fold stopped it: seen on a 34-row Poisson table)
    has no point within one SE of the trial; both choices are the trial (this crashed the sweep before)."""
    curve = _curve([10, 9, 8], [5.0, 4.9, 4.8], [0.3, 0.3, 0.3], [0, 1, 1])
    rows = [_row(7, "l1", 0.5, 0.0, 1.0, 0.2, 5)]
    choices = choose(rows, curve)
    assert choices["min"].trial == choices["1se"].trial == 7
    assert (choices["min"].rule, choices["1se"].rule) == ("min", "1se")
    assert choices["1se"].lambda1 == 0.5 and choices["1se"].cv_mse == 1.0


def test_the_standard_error_keeps_huge_fold_errors_finite() -> None:
    """glmnet's cvsd against the exact rational arithmetic of ``statistics.stdev``: ordinary fold errors, errors
    near 1e160 (a weakly penalized Poisson fold, whose square overflowed) and an infinite one."""
    import statistics
    import warnings

    from pipeline.metrics import standard_error

    folds = np.array([[3.1, 2.5e160, 1.0], [2.9, 7.0e159, 2.0], [3.4, 1.2e160, np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        se = standard_error(folds)
    for j in range(2):
        assert se[j] == pytest.approx(statistics.stdev(folds[:, j]) / math.sqrt(3), rel=1e-14)
    assert se[2] == math.inf
    assert np.isnan(standard_error(np.array([[1.0], [np.nan], [2.0]]))).all()  # a failed fold: unknown, not inf
    assert np.isnan(standard_error(folds[:1])).all()


def test_the_pareto_front_keeps_exactly_the_trials_nothing_beats_in_both() -> None:
    rng = np.random.default_rng(1)
    rows = [_row(i, "l1", 0.1, 0.0, float(rng.uniform(1, 2)), 0.1, int(rng.integers(1, 8))) for i in range(60)]
    rows.append(_row(60, "l1", 0.1, 0.0, 0.5, 0.1, 9, state="FAIL"))
    front = {p["trial"] for p in pareto_front(rows)}
    done = [r for r in rows if r["state"] == "COMPLETE"]
    brute = {r["number"] for r in done if not any(
        (o["cv_mse"] <= r["cv_mse"] and o["n_nonzero"] <= r["n_nonzero"])
        and (o["cv_mse"] < r["cv_mse"] or o["n_nonzero"] < r["n_nonzero"]) for o in done)}
    assert front == brute and 60 not in front
    best = best_per_penalty(rows + [_row(61, "l2", 0.0, 2.0, 0.7, 0.1, 9)])
    assert best["l1"]["trial"] == min(done, key=lambda r: r["cv_mse"])["number"] and best["l2"]["trial"] == 61


def _passes(X, y):
    folds = kfold_folds(0, len(y), K, 0)
    return finish_pass(BlockPass(tuple(block_fold_stats(X, y, None, folds, K)), 1), K, 0), folds


def test_the_dense_path_errors_equal_scikit_learn_on_the_same_folds(diabetes) -> None:
    """Each fold's held-out MSE along an elastic-net path, warm-started point to point, against
    scikit-learn's ElasticNet fitted from scratch on the standardized training rows (tol 1e-12)."""
    from sklearn.linear_model import ElasticNet

    X, y = diabetes
    passes, folds = _passes(X, y)
    models = [make_fold_model(passes, f, fit_intercept=True, standardize=True) for f in range(K)]
    spec = PathSpec("elasticnet", 0.7, path_strengths(20.0, 0.01, include=0.5, n=12))
    result = score_path(models, spec, 1e-12)
    for fold in result:
        tr, te = folds != fold.fold, folds == fold.fold
        mean, scale = X[tr].mean(axis=0), X[tr].std(axis=0)
        for i, s in enumerate(spec.strengths):
            ref = ElasticNet(alpha=s, l1_ratio=0.7, tol=1e-12, max_iter=1_000_000).fit((X[tr] - mean) / scale, y[tr])
            mse = float(np.mean((y[te] - ref.predict((X[te] - mean) / scale)) ** 2))
            # both solvers certify a duality gap ≤ 1e-12 of the objective; held-out MSE follows to ~1e-9
            assert fold.heldout_mse[i] == pytest.approx(mse, rel=1e-8), (fold.fold, s)
    curve = curve_of("elasticnet", 0.7, spec.strengths, [f.__dict__ for f in result])
    mse = np.array([f.heldout_mse for f in result])
    np.testing.assert_allclose(curve.cv_mse, mse.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(curve.cv_mse_se, mse.std(axis=0, ddof=1) / math.sqrt(K), rtol=1e-12)


def _ridge_below_emin_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 rows × 12 equicorrelated (ρ = 0.3) columns, 5 informative, noise σ = 3: every penalty has an
    interior optimum, and ridge's (≈ 0.04) lies far below the smallest eigenvalue of the Gram (≈ 0.47)."""
    rng = np.random.default_rng(seed)
    n, p, rho = 300, 12, 0.3
    z = rng.standard_normal((n, p + 1))
    X = math.sqrt(rho) * z[:, :1] + math.sqrt(1 - rho) * z[:, 1:]
    beta = np.array([1.5, -1.0, 0.8, 0.0, 0.0, 0.6, 0.0, -0.7, 0.0, 0.0, 0.0, 0.0])
    return X * rng.uniform(0.5, 4, p) + rng.uniform(-5, 5, p), X @ beta + 3.0 * rng.standard_normal(n)


def _reference_grid(X, y) -> dict[str, tuple[float, int]]:
    """Each penalty's best CV MSE over 200 log-spaced strengths × [1e-8, 10] × (λ1_max, or e_max for
    ridge), elastic net at l1_ratio 0.1, 0.5, 0.9; with the index of the best point in its grid."""
    passes, _ = _passes(X, y)
    models = [make_fold_model(passes, f, fit_intercept=True, standardize=True) for f in range(K)]
    total = GramProblem.from_stats(passes.total_stats)
    lam1_max, e_max = total.lambda1_max, float(np.linalg.eigvalsh(total.G)[-1])
    out = {}
    for penalty, ratios, scale in (("l1", [1.0], lam1_max), ("l2", [0.0], e_max),
                                   ("elasticnet", [0.1, 0.5, 0.9], lam1_max)):
        best = (math.inf, -1)
        for r in ratios:
            grid = np.geomspace(1e-8, 10, 200) * scale
            cands = [Candidate(i, penalty, r * s, (1 - r) * s) if penalty == "elasticnet"
                     else Candidate(i, penalty, s if penalty == "l1" else 0.0, s if penalty == "l2" else 0.0)
                     for i, s in enumerate(grid)]
            cv = np.mean([[sc.heldout_mse for sc in score_candidates(m, cands, 1e-12)] for m in models], axis=0)
            i = int(np.argmin(cv))
            best = min(best, (float(cv[i]), i))
        out[penalty] = best
    return out


def test_the_search_finds_each_penalty_within_0_1_percent_of_a_dense_reference_grid(tmp_path) -> None:
    from pipeline.sweep import execute_sweep

    X, y = _ridge_below_emin_data()
    total = GramProblem.from_stats(_passes(X, y)[0].total_stats)
    e = np.linalg.eigvalsh(total.G)
    ref = _reference_grid(X, y)
    for penalty, (value, index) in ref.items():
        assert 0 < index < 199, f"{penalty}: the reference grid's best must be interior"
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    cfg = load_config(None, [
        f"data.source={tmp_path / 'X.npy'}", f"data.target={tmp_path / 'y.npy'}", "search.n_trials=100",
        f"search.storage=sqlite:///{tmp_path}/o.db", f"tracking.uri=sqlite:///{tmp_path}/m.db",
        "cluster.dashboard_address=null", "tracking.log_trials=false",
    ])
    summary = execute_sweep(cfg, echo=lambda *_: None, progress=False)
    study = optuna.load_study(study_name=cfg.search.study_name, storage=cfg.search.storage)
    ridge = min((t for t in study.trials if t.params.get("penalty") == "l2"), key=lambda t: t.value)
    assert ridge.params["lambda2"] < e[0] / 5, "this data set's ridge optimum lies below the smallest eigenvalue"
    for penalty, (value, _) in ref.items():
        found = summary["best_per_penalty"][penalty]["cv_metric"]
        assert found <= value * 1.001, (penalty, found, value)


def _edge_summary(family: str, penalty: str, lambda1: float, lambda2: float, cv: float) -> dict:
    return {"family": family, "search_space": {"lambda1": [1e-6, 1.0], "lambda2": [1e-8, 10.0]},
            "best_per_penalty": {penalty: {"trial": 3, "lambda1": lambda1, "lambda2": lambda2, "cv_metric": cv,
                                           "cv_metric_se": 0.1},
                                 "l2": {"trial": 5, "lambda1": 0.0, "lambda2": 0.5, "cv_metric": cv + 1.0,
                                        "cv_metric_se": 0.1}}}


def test_a_best_trial_at_an_end_of_the_searched_range_is_noted() -> None:
    """Separable classes (iris setosa against versicolor) chose λ1 = 6.5e-7 against a floor of 4.9e-7, silently;
    the search cannot look past an end, so the console says which bound to move."""
    from pipeline.console import _edge_lines

    weak = _edge_lines(_edge_summary("binomial", "elasticnet", 1.5e-6, 2e-8, 1e-4))
    assert len(weak) == 2 and "weak end" in weak[0] and "separable" in weak[1]
    assert "lower search.lambda1.low and search.lambda2.low" in weak[0]
    assert len(_edge_lines(_edge_summary("binomial", "elasticnet", 1.5e-6, 2e-8, 0.4))) == 1  # not near 0
    assert len(_edge_lines(_edge_summary("gaussian", "elasticnet", 1.5e-6, 2e-8, 1e-4))) == 1  # not binomial
    strong = _edge_lines(_edge_summary("gaussian", "l1", 0.9, 0.0, 3.0))
    assert len(strong) == 1 and "strong end" in strong[0] and "raise search.lambda1.high" in strong[0]
    assert _edge_lines(_edge_summary("gaussian", "l1", 1e-3, 0.0, 3.0)) == []  # inside the range
    # the elastic net's λ2 alone at its floor, λ1 inside: only λ2 is named
    only = _edge_lines(_edge_summary("gaussian", "elasticnet", 1e-5, 1.2e-8, 3.0))
    assert len(only) == 1 and "search.lambda2.low" in only[0] and "lambda1" not in only[0]
    # ... unless it is a lasso in all but name (λ2 ≤ 1e-3 λ1: a wide probe's λ1 = 0.43, λ2 = 3e-6 was told to
    # lower search.lambda2.low, which changes nothing)
    assert _edge_lines(_edge_summary("gaussian", "elasticnet", 1e-3, 1.2e-8, 3.0)) == []
    assert _edge_lines(_edge_summary("gaussian", "elasticnet", 0.43, 1.2e-8, 3.0)) == []
