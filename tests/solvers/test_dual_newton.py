"""The semismooth Newton method on the elastic net's dual (:mod:`pipeline.solvers.dual_newton`), on its own.

References: scikit-learn's ElasticNet without intercept at tol 1e-12 on ``X = √n A``, ``y = √n b`` (its
objective ``‖y − Xw‖²/2n + α ρ‖w‖₁ + α(1 − ρ)‖w‖²/2`` is then ours with λ1 = αρ, λ2 = α(1 − ρ)), and the
Newton matrix against ``A_J A_Jᵀ`` formed directly.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet as SkElasticNet

from pipeline.solvers import dual_newton as dn

from ..conftest import correlated_design


def _problem(n: int = 40, p: int = 300, seed: int = 0):
    X, y = correlated_design(n, p, rho=0.8, seed=seed)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    A, b = X / np.sqrt(n), (y - y.mean()) / np.sqrt(n)
    return A, b


def _operators(A: np.ndarray, kernel_calls: list[int] | None = None) -> dn.DualOperators:
    def kernel() -> np.ndarray:
        if kernel_calls is not None:
            kernel_calls.append(1)
        return A @ A.T

    return dn.DualOperators(at=lambda u: A.T @ u, a=lambda idx, x: A[:, idx] @ x,
                            columns=lambda idx: A[:, idx].copy(), kernel=kernel)


def _primal(A, b, beta, lam1, lam2):
    r = b - A @ beta
    return 0.5 * r @ r + lam1 * np.abs(beta).sum() + 0.5 * lam2 * beta @ beta


@pytest.mark.parametrize("lam1_ratio,lam2", [(0.5, 1.0), (0.1, 10.0), (0.05, 0.1), (0.01, 0.02), (1.2, 1.0)])
def test_the_dual_newton_method_reaches_sklearns_objective_with_a_true_duality_gap(lam1_ratio, lam2):
    A, b = _problem()
    n = A.shape[0]
    lam1 = lam1_ratio * np.max(np.abs(A.T @ b))
    res = dn.dual_newton(_operators(A), b, b.copy(), A.T @ b, lam1, lam2, gap_tol=1e-13)
    assert res.converged and res.gap <= 1e-13
    ref = SkElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), fit_intercept=False, tol=1e-12,
                       max_iter=1_000_000).fit(np.sqrt(n) * A, np.sqrt(n) * b)
    ours, theirs = _primal(A, b, res.beta, lam1, lam2), _primal(A, b, ref.coef_, lam1, lam2)
    assert ours <= theirs * (1 + 1e-10) + 1e-15
    # the gap, recomputed here from θ: weak duality holds against scikit-learn's point (a wrong dual formula
    # would overshoot it), and P(β) − D(θ) is what the method reported
    s = np.sign(A.T @ res.theta) * np.maximum(np.abs(A.T @ res.theta) - lam1, 0.0)
    dual = b @ res.theta - 0.5 * res.theta @ res.theta - 0.5 * (s @ s) / lam2
    assert dual <= theirs + 1e-13 * max(theirs, 1e-300)
    assert abs((ours - dual) - res.gap) <= 1e-12 * theirs + 1e-15
    np.testing.assert_allclose(res.z, A.T @ res.theta, rtol=1e-9, atol=1e-12)  # the updated Aᵀθ stayed exact


def test_a_warm_start_near_the_solution_takes_fewer_steps():
    A, b = _problem(seed=1)
    lam1, lam2 = 0.05 * np.max(np.abs(A.T @ b)), 0.5
    cold = dn.dual_newton(_operators(A), b, b.copy(), A.T @ b, lam1, lam2, gap_tol=1e-13)
    nearby = dn.dual_newton(_operators(A), b, cold.theta, cold.z, lam1 * 1.05, lam2, gap_tol=1e-13)
    assert nearby.converged and cold.converged
    assert 0 < nearby.steps < cold.steps


def test_the_newton_matrix_is_kept_equal_to_the_gram_of_the_set_by_every_route():
    """Built directly (J small), from the kernel (J most of p), and updated by the features that change."""
    A, _ = _problem(n=30, p=120, seed=2)
    calls: list[int] = []
    gram = dn._JointGram(_operators(A, calls), 30, 120)
    rng = np.random.default_rng(3)
    mask = rng.random(120) < 0.1
    for share_flip, share in [(None, 0.1), (None, 0.9), (0.02, None), (0.05, None), (None, 0.3), (0.01, None)]:
        if share is not None:
            mask = rng.random(120) < share
        else:
            mask = mask ^ (rng.random(120) < share_flip)
        M = gram.for_set(mask.copy())
        np.testing.assert_allclose(M, A[:, mask] @ A[:, mask].T, rtol=0, atol=1e-11 * np.abs(A @ A.T).max())
    assert calls, "the kernel route was never taken"


def test_the_lasso_is_refused():
    A, b = _problem()
    with pytest.raises(ValueError, match="lambda2 > 0"):
        dn.dual_newton(_operators(A), b, b, A.T @ b, 0.1, 0.0, gap_tol=1e-12)
