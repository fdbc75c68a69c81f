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


def test_kept_active_block_factors_give_the_same_solutions_bit_for_bit(problem, monkeypatch):
    """A FactorCache serves a block it has seen (same Gram, λ2 and support) without factoring it again, and
    only that: a chord step's new linear term on the same support, then another λ2 from the same support, each
    equal to a solve without the cache to the last bit."""
    from pipeline.solvers import FactorCache, active_set

    factored = []
    real = active_set.cholesky_or_none
    monkeypatch.setattr(active_set, "cholesky_or_none", lambda H: factored.append(H.shape[0]) or real(H))
    monkeypatch.setattr(active_set, "_CACHED_BLOCK", 1)  # this problem's blocks are small: cache them all the same
    G, q, yy = problem.G, problem.q, problem.yy
    lam = 0.05 * problem.lambda1_max
    cache = FactorCache()
    first = enet_gram(G, q, yy, lam, 0.1, factors=cache)  # its last block may have lost features since
    first = enet_gram(G, q, yy, lam, 0.1, first.beta, factors=cache)  # the solution's support, factored
    q2 = q * (1 + 1e-4 * np.cos(np.arange(q.size)))  # the next step's model: the support and signs stay
    n = len(factored)
    again = enet_gram(G, q2, yy, lam, 0.1, first.beta, factors=cache)
    assert len(factored) == n  # its block came from the cache
    assert np.array_equal(again.beta, enet_gram(G, q2, yy, lam, 0.1, first.beta).beta)
    assert not np.array_equal(again.beta, first.beta)
    n = len(factored)
    other = enet_gram(G, q2, yy, lam, 0.2, first.beta, factors=cache)
    assert len(factored) > n  # another λ2 is another block
    assert np.array_equal(other.beta, enet_gram(G, q2, yy, lam, 0.2, first.beta).beta)


def test_a_cache_that_does_not_extend_gives_the_bits_of_a_solve_without_it(monkeypatch):
    """``FactorCache(extend=False)`` (a GLM metric's): whatever it saw before, a solve through it equals the solve
    without it to the last bit (its factors are new factorizations only; extensions stay in the call). p = 400:
    cold solves grow their working sets over several passes, extending factors."""
    from pipeline.solvers import FactorCache, active_set

    monkeypatch.setattr(active_set, "_CACHED_BLOCK", 1)
    X, y = correlated_design(1500, 400, rho=0.5, seed=7)
    problem = GramProblem.from_stats(SuffStats.from_block(X, y))
    G, q, yy = problem.G, problem.q, problem.yy
    lmax = problem.lambda1_max
    cache = FactorCache(extend=False)
    for lam in (0.01, 0.003, 0.001):  # a history of cold solves through the cache
        enet_gram(G, q, yy, lam * lmax, 0.0, factors=cache)
    for lam, start in ((0.001, None), (0.003, 0.001), (0.0005, 0.003)):
        warm = None if start is None else enet_gram(G, q, yy, start * lmax, 0.0).beta
        assert np.array_equal(enet_gram(G, q, yy, lam * lmax, 0.0, warm, factors=cache).beta,
                              enet_gram(G, q, yy, lam * lmax, 0.0, warm).beta)
    entries = list(cache._entries.values())
    assert entries
    for order, factor in entries:  # each a new factorization of its block, bit for bit
        fresh = active_set.cholesky_or_none(G[np.ix_(order, order)])
        assert np.array_equal(np.tril(factor), np.tril(fresh))


def test_a_factor_cache_keeps_the_newest_factors_within_its_bytes(monkeypatch):
    from pipeline.solvers import FactorCache, active_set

    monkeypatch.setattr(active_set, "_FACTOR_BYTES", 3 * 8 * 10 * 10)
    cache = FactorCache()
    for i in range(2 * active_set._FACTORS_KEPT):  # tiny factors: at most _FACTORS_KEPT of them
        cache.put(float(i), np.arange(1), np.ones((1, 1)))
    assert sum(cache.get(float(i), np.arange(1)) is not None for i in range(16)) == active_set._FACTORS_KEPT
    for i in range(5):
        cache.put(0.1 * i, np.arange(10), np.full((10, 10), float(i)))
    assert [cache.get(0.1 * i, np.arange(10)) is not None for i in range(5)] == [False, False, True, True, True]
    cache.put(1.0, np.arange(50), np.zeros((50, 50)))  # larger than the budget alone: still the last one kept
    assert cache.get(1.0, np.arange(50)) is not None and cache.get(0.4, np.arange(10)) is None
    kept = FactorCache(keep_large=False)  # one kept across fits: such a factor is not kept at all
    kept.put(0.0, np.arange(10), np.eye(10))
    kept.put(1.0, np.arange(50), np.zeros((50, 50)))
    assert kept.get(1.0, np.arange(50)) is None and kept.get(0.0, np.arange(10)) is not None


def test_the_block_objective_from_the_factor_is_the_quadratic_form(problem):
    """The ratio test's ``½βᵀHβ − rhsᵀβ`` read from H's Cholesky factor, whose upper triangle LAPACK leaves
    holding H's entries (clean=0), equals the form computed from H itself."""
    from pipeline.solvers.active_set import _active_block, _block_objective, cholesky_or_none

    A = np.array([2, 7, 11, 30, 41, 55])
    H = _active_block(problem.G, A, 0.1)
    L = cholesky_or_none(H)
    assert not np.allclose(np.triu(L, 1), 0.0)  # the upper triangle is not zeroed: it must not be read
    rng = np.random.default_rng(4)
    for _ in range(3):
        beta, rhs = rng.normal(size=A.size), rng.normal(size=A.size)
        assert_allclose(_block_objective(L, rhs, beta), 0.5 * beta @ H @ beta - rhs @ beta, rtol=1e-13)


def test_a_pickled_problem_leaves_its_block_factors_behind():
    """A Gram fold model copied to another worker does not carry its active-block factors (up to 32 MB)."""
    import pickle

    from pipeline.solvers import active_set

    X, y = correlated_design(1500, 300, rho=0.5, seed=3)
    wide = GramProblem.from_stats(SuffStats.from_block(X, y))
    fit = wide.solve(ElasticNet(1e-4 * wide.lambda1_max, 0.0), reuse_factor=True)
    assert wide._blocks is not None and wide._blocks._entries  # supports beyond _CACHED_BLOCK were kept
    assert fit.n_nonzero >= active_set._CACHED_BLOCK
    copy = pickle.loads(pickle.dumps(wide))
    assert copy._blocks is None and wide._blocks is not None
    again = copy.solve(ElasticNet(1e-4 * wide.lambda1_max, 0.0), reuse_factor=True)
    assert_allclose(again.coef, fit.coef, rtol=1e-10, atol=1e-12)


def test_an_extended_factor_is_the_factor_of_the_whole_block():
    """Features added to a factored block: the extended factor equals a new Cholesky factorization of the
    block in that order (to rounding), and a block made singular by a duplicated column gives None."""
    from pipeline.solvers.active_set import cholesky_or_none, _extended_factor

    X, _ = correlated_design(300, 40, rho=0.8, seed=5)
    G = X.T @ X / 300
    old, new = np.array([3, 17, 5, 30, 8]), np.array([1, 22, 39])
    A = np.concatenate([old, new])
    H = G[np.ix_(old, old)] + 0.1 * np.eye(old.size)
    L = cholesky_or_none(H)
    ext = _extended_factor(L, G, A, old.size, 0.1)
    fresh = np.linalg.cholesky(G[np.ix_(A, A)] + 0.1 * np.eye(A.size))
    assert_allclose(np.tril(ext), fresh, rtol=0, atol=1e-13)
    Gd = np.zeros((41, 41))
    Gd[:40, :40] = G
    Gd[40, :40] = Gd[:40, 40] = G[3]
    Gd[40, 40] = G[3, 3]  # column 40 duplicates column 3
    assert _extended_factor(cholesky_or_none(G[np.ix_(old, old)]), Gd, np.concatenate([old, [40]]), old.size, 0.0) is None


def test_working_sets_grown_by_extended_factors_reach_the_certified_solution(monkeypatch):
    """p > 256, a cold lasso: the working set grows over several passes, each block's factor extended from the
    last; the duality gap certifies the result, and it equals scikit-learn's to its tolerance."""
    from sklearn.linear_model import Lasso

    from pipeline.solvers import active_set

    X, y = correlated_design(1500, 400, rho=0.5, seed=7)
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    G, q, yy = Xc.T @ Xc / 1500, Xc.T @ yc / 1500, float(yc @ yc / 1500)
    lam = 0.002 * float(np.max(np.abs(q)))
    calls = []
    real = active_set._extended_factor
    monkeypatch.setattr(active_set, "_extended_factor", lambda *a: calls.append(a[3]) or real(*a))
    monkeypatch.setattr(active_set, "_CACHED_BLOCK", 1)
    res = enet_gram(G, q, yy, lam, 0.0, tol=1e-12)
    assert res.converged and calls  # extended at least once
    ref = Lasso(alpha=lam, fit_intercept=False, tol=1e-14, max_iter=100_000).fit(Xc, yc)
    assert_allclose(res.beta, ref.coef_, atol=1e-7 * float(np.max(np.abs(ref.coef_))))


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


def test_the_singular_step_is_the_pseudo_inverse_step_or_the_null_ray():
    """A singular block's step (pivoted Cholesky): the minimum-norm Newton step ``H⁺r`` when r lies in H's range,
    else r's projection on the null space as a ray. References: numpy's SVD pseudo-inverse and the null basis
    the matrix was built from (spectra with a clear gap: nonzero eigenvalues from 1e-4 to 1 of the largest)."""
    from pipeline.solvers.active_set import _singular_direction

    rng = np.random.default_rng(1)
    for trial in range(60):
        m = int(rng.integers(3, 120))
        k = int(rng.integers(1, min(8, m)))
        Q = np.linalg.qr(rng.standard_normal((m, m)))[0]
        e = np.concatenate([np.zeros(k), np.geomspace(1e-4, 1.0, m - k) * rng.uniform(0.1, 100.0)])
        H = (Q * e) @ Q.T
        H = (H + H.T) / 2
        null = Q[:, :k]
        if trial % 2:
            r = H @ rng.standard_normal(m)
            x, length = _singular_direction(H, r)
            assert length == 1.0
            assert_allclose(x, np.linalg.pinv(H, rcond=1e-9) @ r, rtol=0, atol=1e-9 * np.linalg.norm(x))
        else:
            r = rng.standard_normal(m)
            x, length = _singular_direction(H, r)
            assert length == np.inf
            assert_allclose(x, null @ (null.T @ r), rtol=0, atol=1e-9 * np.linalg.norm(r))
    r = rng.standard_normal(4)  # H = 0 (rank 0): the eigendecomposition's answer, the whole of r as the ray
    x, length = _singular_direction(np.zeros((4, 4)), r)
    assert length == np.inf and np.array_equal(x, r)


def test_lasso_on_every_level_of_a_factor_beside_the_intercept_matches_sklearn():
    """One indicator per level (they sum to the intercept's column): at a small λ the active block holds every
    level and is singular (the pivoted-Cholesky steps). Checked by the KKT conditions computed here and by the
    objective against scikit-learn's coordinate descent (which does not reach its tolerance at λ = 1e-6 on this
    singular design, so its objective is only an upper bound there)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(3)
    n, levels = 600, 40
    codes = rng.integers(0, levels, n)
    X = np.column_stack([np.eye(levels)[codes], rng.standard_normal((n, 2))])
    y = rng.standard_normal(levels)[codes] + X[:, -2] + 0.5 * rng.standard_normal(n)
    for lam in (1e-2, 1e-4, 1e-6):
        ours = pipeline.fit(X, y, penalty="l1", lambda1=lam, standardize=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref = Lasso(alpha=lam, tol=1e-10, max_iter=100_000).fit(X, y)

        def objective(coef: np.ndarray, b: float) -> float:
            return 0.5 * float(np.mean((y - X @ coef - b) ** 2)) + lam * float(np.abs(coef).sum())

        resid = y - X @ ours.coef - ours.intercept
        grad = X.T @ resid / n  # −∂(½ mean r²)/∂β
        on = ours.coef != 0
        assert ours.converged and abs(resid.mean()) < 1e-12
        assert np.max(np.abs(grad[on] - lam * np.sign(ours.coef[on])), initial=0.0) < 1e-8 * max(lam, 1e-4)
        assert np.max(np.abs(grad[~on]), initial=0.0) <= lam * (1 + 1e-6)
        assert objective(ours.coef, ours.intercept) <= objective(ref.coef_, ref.intercept_) * (1 + 1e-9)
