"""Penalties: prox against a brute-force 1-D minimiser, KKT residual, λ1_max, name checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import pipeline
from pipeline.solvers import L1, L2, ElasticNet, make_penalty

PENALTIES = [L1(0.7), L2(1.3), ElasticNet(0.4, 0.9), ElasticNet(0.0, 0.0)]


def _brute_prox(penalty: ElasticNet, v: float, step: float) -> float:
    """argmin_x ½(x − v)² + step·Ω(x) by bounded scalar search, then a fine grid polish."""
    f = lambda x: 0.5 * (x - v) ** 2 + step * penalty.value(np.array([x]))  # noqa: E731
    res = minimize_scalar(f, bounds=(-abs(v) - 1, abs(v) + 1), method="bounded", options={"xatol": 1e-12})
    grid = res.x + np.linspace(-1e-6, 1e-6, 2001)
    grid = np.append(grid, 0.0)  # the kink is a candidate
    return float(grid[np.argmin([f(x) for x in grid])])


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: f"{p.name}-{p.lambda1}-{p.lambda2}")
@pytest.mark.parametrize("v", [-3.2, -0.5, -0.1, 0.0, 0.2, 0.69, 2.5])
@pytest.mark.parametrize("step", [0.3, 1.0, 2.0])
def test_prox_matches_brute_force(penalty, v, step):
    """Near its minimum the 1-D objective is flat to second order, so a float search
    can only place the argmin to ~sqrt(eps)·scale ≈ 1e-8: compare within 1e-7, and
    require the prox point to be at least as good as the brute-force one."""
    x_prox = float(penalty.prox(v, step))
    x_brute = _brute_prox(penalty, v, step)
    assert abs(x_prox - x_brute) <= 1e-7
    f = lambda x: 0.5 * (x - v) ** 2 + step * penalty.value(np.array([x]))  # noqa: E731
    assert f(x_prox) <= f(x_brute) * (1 + 4 * np.finfo(float).eps)  # equal up to rounding of f


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: f"{p.name}-{p.lambda1}-{p.lambda2}")
def test_subdiff_distance_zero_exactly_at_the_1d_optimum(penalty):
    """For ½(x − v)² + Ω(x) the gradient of the smooth part is x − v; the prox point is optimal."""
    for v in np.linspace(-3, 3, 25):
        x = penalty.prox(np.array([v]), 1.0)
        assert penalty.subdiff_distance(x, x - v)[0] <= 1e-12
        # a point off the optimum has a positive residual
        x_off = x + 0.05
        assert penalty.subdiff_distance(x_off, x_off - v)[0] > 1e-3


def test_value():
    beta = np.array([1.0, -2.0, 0.0])
    assert ElasticNet(0.5, 2.0).value(beta) == pytest.approx(0.5 * 3 + 0.5 * 2.0 * 5)
    assert L1(1.0).value(beta) == 3.0
    assert L2(2.0).value(beta) == 5.0


def test_lambda1_max_is_the_exact_threshold(diabetes):
    X, y = diabetes
    Xs = (X - X.mean(0)) / X.std(0)
    lam_max = np.max(np.abs(Xs.T @ (y - y.mean()))) / len(y)
    for lam2 in (0.0, 0.5):
        pen = "l1" if lam2 == 0 else "elasticnet"
        assert pipeline.fit(X, y, penalty=pen, lambda1=lam_max * (1 + 1e-12), lambda2=lam2).n_nonzero == 0
        assert pipeline.fit(X, y, penalty=pen, lambda1=lam_max * (1 - 1e-6), lambda2=lam2).n_nonzero == 1


@pytest.mark.parametrize(
    ("args", "exc", "fragment"),
    [
        (("lasso", 1.0, 0.0), ValueError, "must be one of"),
        ((None, 1.0, 0.0), TypeError, "must be a string"),
        (("l1", 1.0, 0.5), ValueError, "penalty 'l1' must have lambda2 == 0, got lambda2=0.5"),
        (("l2", 0.5, 1.0), ValueError, "penalty 'l2' must have lambda1 == 0, got lambda1=0.5"),
        (("elasticnet", -1.0, 0.0), ValueError, "`lambda1` must be finite and >= 0, got lambda1=-1.0"),
        (("elasticnet", 0.0, float("nan")), ValueError, "`lambda2` must be finite and >= 0"),
        (("elasticnet", "1", 0.0), TypeError, "`lambda1` must be a real number"),
    ],
)
def test_make_penalty_rejects_bad_names_and_strengths(args, exc, fragment):
    with pytest.raises(exc, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        make_penalty(*args)


def test_make_penalty_accepts_case_and_builds_the_right_kind():
    assert make_penalty("L1", 0.3).name == "l1"
    assert make_penalty("l2", lambda2=0.3).lambda1 == 0.0
    pen = make_penalty("elasticnet", 0.1, 0.2)
    assert (pen.lambda1, pen.lambda2) == (0.1, 0.2)
