"""Solver behaviour: warm starts, non-convergence reporting, ridge reuse, degenerate Grams."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

import pipeline
from pipeline.solvers import (
    ElasticNet,
    GramProblem,
    RidgeFactor,
    SolverConvergenceWarning,
    SuffStats,
    enet_duality_gap,
    enet_gram,
)

from ..conftest import correlated_design


@pytest.fixture(scope="module")
def problem() -> GramProblem:
    X, y = correlated_design(400, 60, rho=0.9, seed=11)
    return GramProblem.from_stats(SuffStats.from_block(X, y))


def test_warm_start_from_a_neighbouring_solution_takes_one_newton_step(problem):
    lam = 0.05 * problem.lambda1_max
    cold = enet_gram(problem.G, problem.q, problem.yy, lam, 0.1)
    assert cold.converged and cold.n_iter > 1
    near = enet_gram(problem.G, problem.q, problem.yy, lam * 1.001, 0.1, cold.beta)
    assert near.converged
    assert near.n_iter == 1  # same support and signs: one solve of the active block
    again = enet_gram(problem.G, problem.q, problem.yy, lam, 0.1, cold.beta)
    assert again.n_iter == 1
    assert_allclose(again.beta, cold.beta, rtol=1e-12, atol=1e-14)


def test_warm_start_from_a_bad_point_still_converges(problem):
    lam = 0.01 * problem.lambda1_max
    ref = enet_gram(problem.G, problem.q, problem.yy, lam, 0.0)
    bad = np.random.default_rng(0).standard_normal(problem.q.size)
    res = enet_gram(problem.G, problem.q, problem.yy, lam, 0.0, bad)
    assert res.converged
    assert_allclose(res.beta, ref.beta, rtol=1e-8, atol=1e-10)


def test_sparse_solution_touches_few_coordinates(problem):
    """At a large λ1 the active set stays small: Newton steps ≪ p."""
    res = enet_gram(problem.G, problem.q, problem.yy, 0.5 * problem.lambda1_max, 0.0)
    assert np.count_nonzero(res.beta) <= 5
    assert res.n_iter <= 5


def test_non_convergence_warns_with_gap_and_tolerance_and_flags(problem):
    with pytest.warns(SolverConvergenceWarning, match=r"duality gap .* > tolerance .* after 1 Newton steps"):
        res = problem.solve(ElasticNet(0.001 * problem.lambda1_max, 0.0), max_iter=1)
    assert not res.converged
    assert res.dual_gap > res.gap_tol


def test_reported_gap_is_the_duality_gap(problem):
    lam1 = 0.02 * problem.lambda1_max
    res = enet_gram(problem.G, problem.q, problem.yy, lam1, 0.3)
    assert res.dual_gap == pytest.approx(
        enet_duality_gap(problem.G, problem.q, problem.yy, res.beta, lam1, 0.3), abs=1e-15
    )
    # the gap is a true bound: perturbing β raises the primal above the dual bound
    assert enet_duality_gap(problem.G, problem.q, problem.yy, res.beta * 1.01, lam1, 0.3) > 1e3 * res.gap_tol


def test_ridge_factor_once_equals_fresh_solves(problem):
    factor = RidgeFactor.from_gram(problem.G, problem.q)
    for lam2 in np.logspace(-6, 3, 12):
        fresh = np.linalg.solve(problem.G + lam2 * np.eye(problem.q.size), problem.q)
        assert_allclose(factor.solve(lam2), fresh, rtol=1e-9, atol=1e-12)


def test_reuse_factor_path_matches_one_off_cholesky(problem):
    for lam2 in (1e-3, 0.1, 10.0):
        a = problem.solve(ElasticNet(0.0, lam2), reuse_factor=True)
        b = GramProblem(**{k: getattr(problem, k) for k in (
            "G", "q", "yy", "kept", "x_center", "y_center", "x_scale", "fit_intercept", "standardize")}
        ).solve(ElasticNet(0.0, lam2))
        assert_allclose(a.coef, b.coef, rtol=1e-10, atol=1e-12)
        assert a.converged and b.converged


def test_a_rounding_negative_diagonal_neither_warns_nor_changes_the_solution():
    """A column constant on the weighted rows has a Gram diagonal of 0 that rounding left at -3.5e-10 (seen in
    the chord's float32 Gram of a binomial sweep): the gap-safe screening (p ≥ 256) took the square root of it
    in its sphere radius (NaN, a RuntimeWarning). The column's coefficient stays 0 and the others are the
    lasso's without it."""
    X, y = correlated_design(400, 300, rho=0.5, seed=13)
    small = GramProblem.from_stats(SuffStats.from_block(X, y))
    p = small.q.size
    G = np.zeros((p + 1, p + 1))
    G[:p, :p] = small.G
    G[p, p] = -3.5e-10
    q = np.append(small.q, 0.0)
    lam = 0.1 * small.lambda1_max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = enet_gram(G, q, small.yy, lam, 0.0)
    without = enet_gram(small.G, small.q, small.yy, lam, 0.0)
    assert res.converged and res.beta[p] == 0.0
    assert_allclose(res.beta[:p], without.beta, rtol=1e-9, atol=1e-12)


def test_duplicate_columns_lasso_and_least_squares():
    """Duplicated columns make the Gram singular: the lasso still meets KKT, least
    squares returns the minimum-norm solution (equal split between the copies)."""
    X, y = correlated_design(120, 5, rho=0.2, seed=12)
    X = np.column_stack([X, X[:, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ls = pipeline.fit(X, y, penalty="l2", lambda2=0.0, standardize=False)
        lasso = pipeline.fit(X, y, penalty="l1", lambda1=0.05, standardize=False)
    assert ls.coef[1] == pytest.approx(ls.coef[5], rel=1e-8)
    single = pipeline.fit(X[:, :5], y, penalty="l2", lambda2=0.0, standardize=False)
    assert ls.coef[1] + ls.coef[5] == pytest.approx(single.coef[1], rel=1e-8)
    assert lasso.converged
    single_l = pipeline.fit(X[:, :5], y, penalty="l1", lambda1=0.05, standardize=False)
    # lasso value is shared between copies in any split; their sum matches the single column
    assert lasso.coef[1] + lasso.coef[5] == pytest.approx(single_l.coef[1], rel=1e-8)


@pytest.mark.parametrize("penalty", ["l1", "l2", "elasticnet"])
def test_zero_penalty_is_least_squares_under_any_name(penalty, diabetes):
    from sklearn.linear_model import LinearRegression

    X, y = diabetes
    model = pipeline.fit(X, y, penalty=penalty, lambda1=0.0, lambda2=0.0)
    ref = LinearRegression().fit(X, y)
    assert_allclose(model.coef, ref.coef_, rtol=1e-9)
    assert model.intercept == pytest.approx(ref.intercept_, rel=1e-9)
