"""pipeline.fit against scikit-learn, and KKT conditions checked on the rows.

Mapping (DESIGN.md): ElasticNet ``alpha = λ1 + λ2``, ``l1_ratio = λ1/(λ1+λ2)``;
Lasso ``alpha = λ1``; Ridge ``alpha = Σw · λ2`` (Ridge minimises the
unnormalised ``‖y − Xβ‖² + alpha‖β‖²``). For ``standardize=True`` the
reference gets columns standardized by hand with glmnet's scale (weighted
1/Σw standard deviation; the root mean square without intercept) and its
coefficients are divided by that scale.

Tolerances. scikit-learn runs at ``tol=1e-12`` (gap ≤ 1e-12·‖y‖²), regsweep
at its default (gap ≤ 1e-10·½yy, in practice at rounding level since the
active block is solved exactly). A gap g bounds the coefficient error by
``sqrt(2g/μ)`` (μ = smallest eigenvalue of the active Gram block), so both
sit well inside ``rtol = atol = 1e-7`` on the penalized (standardized) scale,
where coefficients are O(1)–O(100) for these data.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso, LinearRegression, Ridge

import pipeline
from pipeline.solvers import ElasticNet

from ..conftest import correlated_design

RATIOS = [1.0, 0.5, 1e-1, 1e-2, 1e-3, 1e-4]


def _weights(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 3.0, n)


def _reference_scaling(X, w, fit_intercept, standardize):
    """glmnet's centre and scale, computed from the rows (not from regsweep's statistics)."""
    w = np.ones(X.shape[0]) if w is None else w
    W = w.sum()
    mean = (w @ X) / W if fit_intercept else np.zeros(X.shape[1])
    if not standardize:
        return mean, np.ones(X.shape[1])
    scale = np.sqrt((w @ (X - mean) ** 2) / W)
    return mean, scale


def _lambda1_max(X, y, w, fit_intercept, standardize):
    w_ = np.ones(X.shape[0]) if w is None else w
    mean, scale = _reference_scaling(X, w, fit_intercept, standardize)
    y_c = y - (w_ @ y) / w_.sum() if fit_intercept else y
    Xs = (X - mean) / scale
    return np.max(np.abs(Xs.T @ (w_ * y_c))) / w_.sum()


def _sklearn_fit(X, y, w, lam1, lam2, fit_intercept, standardize):
    """scikit-learn's solution for the same objective, on the original scale."""
    mean, scale = _reference_scaling(X, w, fit_intercept, standardize)
    Xs = X / scale  # centring is left to sklearn's own fit_intercept
    if lam1 == 0.0:
        W = X.shape[0] if w is None else w.sum()
        if lam2 == 0.0:
            est = LinearRegression(fit_intercept=fit_intercept)
        else:
            est = Ridge(alpha=W * lam2, fit_intercept=fit_intercept, solver="svd")
    elif lam2 == 0.0:
        est = Lasso(alpha=lam1, fit_intercept=fit_intercept, tol=1e-12, max_iter=1_000_000)
    else:
        est = SkElasticNet(
            alpha=lam1 + lam2,
            l1_ratio=lam1 / (lam1 + lam2),
            fit_intercept=fit_intercept,
            tol=1e-12,
            max_iter=1_000_000,
        )
    est.fit(Xs, y, sample_weight=w)
    return est.coef_ / scale, float(est.intercept_), scale


def _assert_kkt(X, y, w, model, lam1, lam2, fit_intercept, standardize):
    """Optimality checked on the rows: the subdifferential distance is ~0 for every coefficient."""
    w_ = np.ones(X.shape[0]) if w is None else w
    mean, scale = _reference_scaling(X, w, fit_intercept, standardize)
    beta = model.coef * scale  # penalized scale
    resid = y - model.predict(X)
    grad = -((X / scale).T @ (w_ * resid)) / w_.sum()
    dist = ElasticNet(lam1, lam2).subdiff_distance(beta, grad)
    y_scale = np.sqrt((w_ @ (y - y.mean()) ** 2) / w_.sum())
    # Gradient entries are O(y_scale); exact solves leave rounding of ~1e-13 relative.
    assert dist.max() <= 1e-9 * y_scale, f"KKT residual {dist.max():.3g}"
    if fit_intercept:  # the unpenalized intercept: weighted residuals sum to zero
        assert abs(w_ @ resid) / w_.sum() <= 1e-9 * y_scale


def _objective(X, y, w, coef, intercept, lam1, lam2, scale):
    w_ = np.ones(X.shape[0]) if w is None else w
    r = y - X @ coef - intercept
    beta = coef * scale
    return 0.5 * (w_ @ r**2) / w_.sum() + lam1 * np.abs(beta).sum() + 0.5 * lam2 * beta @ beta


def _datasets():
    X_corr, y_corr = correlated_design(150, 25, rho=0.95, seed=1)
    return {
        "diabetes": None,  # filled from the fixture
        "correlated": (X_corr, y_corr, None),
        "weighted": (X_corr, y_corr, _weights(150, 2)),
    }


@pytest.fixture(scope="module", params=["diabetes", "correlated", "weighted", "diabetes-weighted"])
def dataset(request, diabetes):
    X, y = diabetes
    if request.param == "diabetes":
        return X, y, None
    if request.param == "diabetes-weighted":
        return X, y, _weights(X.shape[0], 3)
    return _datasets()[request.param]


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("l1_share", [1.0, 0.5], ids=["lasso", "enet"])
def test_lasso_and_enet_match_sklearn(dataset, fit_intercept, standardize, l1_share):
    X, y, w = dataset
    lam_max = _lambda1_max(X, y, w, fit_intercept, standardize)
    for ratio in RATIOS:
        lam1 = ratio * lam_max
        lam2 = 0.0 if l1_share == 1.0 else lam1 * (1 - l1_share) / l1_share
        penalty = "l1" if lam2 == 0 else "elasticnet"
        model = pipeline.fit(
            X, y, penalty=penalty, lambda1=lam1, lambda2=lam2,
            standardize=standardize, fit_intercept=fit_intercept, sample_weight=w,
        )
        ref_coef, ref_b, scale = _sklearn_fit(X, y, w, lam1, lam2, fit_intercept, standardize)
        # Compare on the penalized scale, where every coefficient is O(1)–O(100).
        assert_allclose(model.coef * scale, ref_coef * scale, rtol=1e-7, atol=1e-7, err_msg=f"ratio={ratio}")
        y_scale = np.std(y)
        assert abs(model.intercept - ref_b) <= 1e-7 * (abs(ref_b) + y_scale)
        if ratio == 1.0:
            assert model.n_nonzero == 0  # λ1 = λ1_max zeroes everything, exactly
        _assert_kkt(X, y, w, model, lam1, lam2, fit_intercept, standardize)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [True, False])
def test_ridge_and_least_squares_match_sklearn(dataset, fit_intercept, standardize):
    X, y, w = dataset
    for lam2 in [0.0, 1e-4, 1e-2, 1.0, 100.0]:
        model = pipeline.fit(
            X, y, penalty="l2", lambda2=lam2,
            standardize=standardize, fit_intercept=fit_intercept, sample_weight=w,
        )
        ref_coef, ref_b, scale = _sklearn_fit(X, y, w, 0.0, lam2, fit_intercept, standardize)
        assert_allclose(model.coef * scale, ref_coef * scale, rtol=1e-7, atol=1e-7, err_msg=f"lam2={lam2}")
        assert abs(model.intercept - ref_b) <= 1e-7 * (abs(ref_b) + np.std(y))
        _assert_kkt(X, y, w, model, 0.0, lam2, fit_intercept, standardize)


@pytest.mark.parametrize("standardize", [True, False])
def test_p_greater_than_n(standardize):
    """p > n. Lasso (λ2 = 0) solutions need not be unique here, so the lasso is
    compared by objective value (and KKT); elastic net and ridge are strictly
    convex and compared by coefficients; least squares by its minimum-norm solution."""
    X, y = correlated_design(40, 100, rho=0.5, seed=7)
    lam_max = _lambda1_max(X, y, None, True, standardize)
    for ratio in RATIOS:
        lam1 = ratio * lam_max
        model = pipeline.fit(X, y, penalty="l1", lambda1=lam1, standardize=standardize)
        ref_coef, ref_b, scale = _sklearn_fit(X, y, None, lam1, 0.0, True, standardize)
        ours = _objective(X, y, None, model.coef, model.intercept, lam1, 0.0, scale)
        theirs = _objective(X, y, None, ref_coef, ref_b, lam1, 0.0, scale)
        assert ours <= theirs + 1e-9 * abs(theirs), (ratio, ours, theirs)
        assert model.n_nonzero <= X.shape[0]
        _assert_kkt(X, y, None, model, lam1, 0.0, True, standardize)

        lam2 = lam1
        model = pipeline.fit(X, y, lambda1=lam1, lambda2=lam2, standardize=standardize)
        ref_coef, ref_b, scale = _sklearn_fit(X, y, None, lam1, lam2, True, standardize)
        assert_allclose(model.coef * scale, ref_coef * scale, rtol=1e-7, atol=1e-7)
        _assert_kkt(X, y, None, model, lam1, lam2, True, standardize)

    model = pipeline.fit(X, y, penalty="l2", lambda2=0.0, standardize=standardize)
    ref_coef, ref_b, scale = _sklearn_fit(X, y, None, 0.0, 0.0, True, standardize)
    assert_allclose(model.coef * scale, ref_coef * scale, rtol=1e-7, atol=1e-7)
    assert_allclose(model.predict(X), y, rtol=0, atol=1e-6 * np.std(y))  # interpolates


@pytest.mark.parametrize("standardize", [True, False])
def test_p_greater_than_n_lasso_converges_on_many_draws(standardize):
    """Near interpolation (λ1 down to 1e-4·λ1_max, support up to rank n − 1) the active
    block can become singular; every draw must still reach the gap tolerance and an
    objective no worse than sklearn's (non-unique solutions: compared by objective)."""
    rng = np.random.default_rng(1)
    for _ in range(12):
        X = rng.normal(size=(30, 80))
        y = X[:, :5] @ np.ones(5) + 0.1 * rng.normal(size=30)
        lam_max = _lambda1_max(X, y, None, True, standardize)
        for ratio in (1e-2, 1e-3, 1e-4):
            lam1 = ratio * lam_max
            model = pipeline.fit(X, y, penalty="l1", lambda1=lam1, standardize=standardize)
            assert model.converged, (ratio, model.dual_gap)
            ref_coef, ref_b, scale = _sklearn_fit(X, y, None, lam1, 0.0, True, standardize)
            ours = _objective(X, y, None, model.coef, model.intercept, lam1, 0.0, scale)
            theirs = _objective(X, y, None, ref_coef, ref_b, lam1, 0.0, scale)
            assert ours <= theirs + 1e-9 * abs(theirs)
