"""Sufficient statistics: merging, subtraction, held-out metrics, numerical care."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import mean_squared_error, r2_score

import pipeline
from pipeline.solvers import GramProblem, SuffStats, merge_all

from ..conftest import correlated_design


def _random_split(n: int, n_blocks: int, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, n), n_blocks - 1, replace=False))
    return np.split(np.arange(n), cuts)


def _assert_stats_close(a: SuffStats, b: SuffStats, rtol: float) -> None:
    """Entrywise, relative to the natural scale of each moment (sqrt(Cxx_ii Cxx_jj) etc.)."""
    assert a.n_rows == b.n_rows
    assert math.isclose(a.sum_w, b.sum_w, rel_tol=rtol)
    sx = np.sqrt(np.diag(b.cxx) / b.sum_w)
    sy = math.sqrt(b.cyy / b.sum_w)
    assert np.all(np.abs(a.x_mean - b.x_mean) <= rtol * (np.abs(b.x_mean) + sx))
    assert abs(a.y_mean - b.y_mean) <= rtol * (abs(b.y_mean) + sy)
    assert np.all(np.abs(a.cxx - b.cxx) <= rtol * np.outer(sx, sx) * b.sum_w)
    assert np.all(np.abs(a.cxy - b.cxy) <= rtol * sx * sy * b.sum_w)
    assert abs(a.cyy - b.cyy) <= rtol * b.cyy


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_merge_is_invariant_to_block_split(weighted, seed):
    rng = np.random.default_rng(seed)
    X, y = correlated_design(1000, 12, rho=0.9, seed=seed)
    w = rng.uniform(0, 2, 1000) if weighted else None
    whole = SuffStats.from_block(X, y, w)
    for n_blocks in (2, 7, 50):
        blocks = _random_split(1000, n_blocks, rng)
        parts = [SuffStats.from_block(X[b], y[b], None if w is None else w[b]) for b in blocks]
        _assert_stats_close(merge_all(parts), whole, rtol=1e-12)
        left_fold = parts[0]
        for part in parts[1:]:
            left_fold = left_fold + part
        _assert_stats_close(left_fold, whole, rtol=1e-12)


def test_raw_sums_match_numpy(diabetes):
    X, y = diabetes
    w = np.random.default_rng(0).uniform(0.5, 2, X.shape[0])
    s = SuffStats.from_block(X, y, w)
    assert_allclose(s.sum_x, w @ X, rtol=1e-13)
    assert_allclose(s.sum_y, w @ y, rtol=1e-13)
    assert_allclose(s.xtx, X.T @ (w[:, None] * X), rtol=1e-12)
    assert_allclose(s.xty, X.T @ (w * y), rtol=1e-12)
    assert_allclose(s.yty, y @ (w * y), rtol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_total_minus_heldout_is_the_training_part(weighted):
    X, y = correlated_design(800, 9, rho=0.8, seed=3)
    w = np.random.default_rng(1).uniform(0.1, 2, 800) if weighted else None
    folds = np.random.default_rng(2).integers(0, 5, 800)
    total = SuffStats.from_block(X, y, w)
    for k in range(5):
        held, train = folds == k, folds != k
        sub = lambda m: None if w is None else w[m]  # noqa: E731
        _assert_stats_close(
            total - SuffStats.from_block(X[held], y[held], sub(held)),
            SuffStats.from_block(X[train], y[train], sub(train)),
            rtol=1e-11,  # one subtraction of O(1) terms: a few more ulps than a merge
        )


def test_heldout_metrics_from_statistics_equal_metrics_on_rows(diabetes):
    X, y = diabetes
    rng = np.random.default_rng(4)
    held = rng.random(X.shape[0]) < 0.25
    model = pipeline.fit(X[~held], y[~held], penalty="elasticnet", lambda1=0.5, lambda2=0.1)
    stats = SuffStats.from_block(X[held], y[held])
    pred = model.predict(X[held])
    assert math.isclose(stats.mse(model.coef, model.intercept), mean_squared_error(y[held], pred), rel_tol=1e-10)
    assert math.isclose(stats.r2(model.coef, model.intercept), r2_score(y[held], pred), rel_tol=1e-10)
    w = rng.uniform(0.5, 2, held.sum())
    stats_w = SuffStats.from_block(X[held], y[held], w)
    assert math.isclose(
        stats_w.mse(model.coef, model.intercept),
        mean_squared_error(y[held], pred, sample_weight=w),
        rel_tol=1e-10,
    )
    # merged blocks give the same held-out error as one block
    idx = np.flatnonzero(held)
    merged = merge_all(SuffStats.from_block(X[b], y[b]) for b in np.array_split(idx, 6))
    assert math.isclose(merged.sse(model.coef, model.intercept), stats.sse(model.coef, model.intercept), rel_tol=1e-10)


def test_column_with_mean_1e6_and_spread_1_loses_no_accuracy():
    rng = np.random.default_rng(5)
    n = 10_000
    x = 1e6 + rng.standard_normal(n)  # rounded to ulp(1e6) ≈ 1.2e-10: these floats *are* the data
    # Reference variance: x − 1e6 is exact (Sterbenz), then fsum.
    d = x - 1e6
    mean_d = math.fsum(d) / n
    var_ref = math.fsum((d - mean_d) ** 2) / n
    y = rng.standard_normal(n)
    blocks = np.array_split(np.arange(n), 13)
    stats = merge_all(SuffStats.from_block(x[b, None], y[b]) for b in blocks)
    assert math.isclose(stats.cxx[0, 0] / n, var_ref, rel_tol=1e-12)
    # The naive raw-moment formula this design avoids loses most digits here:
    naive = float(x @ x) / n - (float(x.sum()) / n) ** 2
    assert abs(naive - var_ref) / var_ref > 1e-6


def _exact_least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with intercept in exact rational arithmetic on the float data."""
    n, p = X.shape
    A = [[Fraction(1)] + [Fraction(v) for v in row] for row in X.tolist()]
    b = [Fraction(v) for v in y.tolist()]
    m = p + 1
    M = [[sum(A[k][i] * A[k][j] for k in range(n)) for j in range(m)] for i in range(m)]
    v = [sum(A[k][i] * b[k] for k in range(n)) for i in range(m)]
    for col in range(m):  # Gauss–Jordan, exact
        piv = next(r for r in range(col, m) if M[r][col] != 0)
        M[col], M[piv], v[col], v[piv] = M[piv], M[col], v[piv], v[col]
        for r in range(m):
            if r != col and M[r][col] != 0:
                f = M[r][col] / M[col][col]
                M[r] = [a - f * c for a, c in zip(M[r], M[col])]
                v[r] -= f * v[col]
    return np.array([float(v[i] / M[i][i]) for i in range(1, m)])


def test_badly_conditioned_least_squares_reaches_stable_solver_accuracy():
    """Nearly collinear columns with a 10⁶ offset: the Gram route must be as
    accurate as a QR/SVD least-squares solve on the rows (numpy's lstsq),
    both measured against the exact rational solution of the float data.
    With noisy targets the error of *any* backward-stable solver scales with
    κ(X)²·‖r‖, so the Gram route loses nothing essential as long as the
    offset is removed before squaring (it is: centred moments)."""
    rng = np.random.default_rng(6)
    n = 60
    t = rng.standard_normal(n)
    X = np.column_stack([
        1e6 + t,
        1e6 + t + 1e-4 * rng.standard_normal(n),  # corr(x1, x2) ≈ 1 − 5e-9
        rng.standard_normal(n),
    ])
    y = X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + 0.1 * rng.standard_normal(n)
    exact = _exact_least_squares(X, y)
    ours = pipeline.fit(X, y, penalty="l2", lambda2=0.0, standardize=True).coef
    Xc = np.column_stack([np.ones(n), X])
    lstsq = np.linalg.lstsq(Xc, y, rcond=None)[0][1:]
    err_ours = np.max(np.abs(ours - exact) / np.abs(exact))
    err_lstsq = np.max(np.abs(lstsq - exact) / np.abs(exact))
    assert err_ours <= max(10 * err_lstsq, 1e-9), (err_ours, err_lstsq)
    # Raw uncentred sums, solved naively, are far worse: the offset squares κ.
    G = Xc.T @ Xc
    naive = np.linalg.solve(G, Xc.T @ y)[1:]
    assert np.max(np.abs(naive - exact) / np.abs(exact)) > 100 * err_ours


def test_constant_columns_get_exact_zero_without_warnings():
    X, y = correlated_design(200, 6, rho=0.3, seed=8)
    X[:, 2] = 3.7  # constant
    X[:, 4] = 0.0  # all zero
    import warnings

    for fit_intercept in (True, False):
        for kw in (dict(penalty="l1", lambda1=0.01), dict(penalty="l2", lambda2=0.1), dict(penalty="l2")):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with np.errstate(all="raise"):
                    m = pipeline.fit(X, y, fit_intercept=fit_intercept, **kw)
            assert m.coef[4] == 0.0
            if fit_intercept:
                assert m.coef[2] == 0.0
            assert np.all(np.isfinite(m.coef))


def test_problem_from_stats_uses_training_statistics_only():
    """Standardization comes from the statistics it is given: changing the held-out rows changes nothing."""
    X, y = correlated_design(300, 5, rho=0.5, seed=9)
    train = np.arange(300) < 200
    p1 = GramProblem.from_stats(SuffStats.from_block(X[train], y[train]))
    assert_allclose(p1.x_center, X[train].mean(axis=0), rtol=1e-13)
    assert_allclose(p1.x_scale, X[train].std(axis=0), rtol=1e-12)
