"""The rows engine (no p × p matrix) against scikit-learn on p > n problems, real and synthetic, dense and sparse.

Lasso solutions need not be unique when p > n, so every comparison is by the
objective on the same standardized problem (glmnet's scaling, computed here
from the rows): ours may be at most 1e-8 relative above the reference's.
The references run at ``tol=1e-12`` (ElasticNet, Lasso) or exactly
(``Ridge(solver="svd")``), and every reference's own KKT residual is
asserted ≤ 1e-9 · sd(y) before it is used, so an unconverged reference
cannot make a test pass (nor fail). Ours must also satisfy KKT to 1e-9 · sd(y).

Both ways the sweep uses the engine are checked: a cold fit
(``pipeline.fit(..., engine="rows")``) and a path warm-started from the
previous λ (:class:`~pipeline.solvers.RowProblem` as a fold model uses it).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_diabetes, load_digits
from sklearn.preprocessing import PolynomialFeatures

import pipeline
from pipeline.solvers import ElasticNet, RowDesign, RowProblem

from ..conftest import correlated_design
from .test_against_sklearn import _objective, _reference_scaling, _sklearn_fit, _weights

L1_RATIOS = [1.0, 0.3, 0.1, 3e-2, 1e-2, 3e-3, 1e-3]
RIDGE_RATIOS = [10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
OBJ_RTOL = 1e-8
KKT_RTOL = 1e-9


def _poly_diabetes():
    """Real: 120 patients of the diabetes data, all products of up to three of its 10 measurements (285 > 120)."""
    X, y = load_diabetes(return_X_y=True, scaled=False)
    poly = PolynomialFeatures(degree=3, include_bias=False).fit_transform(X[:120])
    return poly, y[:120], None


def _digits(sparse: bool):
    """Real and naturally sparse: 40 handwritten digits × 64 pixel intensities (half the pixels are 0)."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:40].astype(float), y[:40].astype(float)
    return (sp.csr_matrix(X) if sparse else X), y, None


def _sparse_synthetic():
    rng = np.random.default_rng(5)
    X = sp.random(90, 400, density=0.04, format="csr", random_state=6, data_rvs=lambda k: rng.normal(2.0, 3.0, k))
    beta = np.zeros(400)
    beta[:12] = rng.normal(0, 2, 12)
    y = X @ beta + 3.0 + 0.3 * rng.normal(size=90)
    return X, y, _weights(90, 7)


DATASETS = {
    "poly-diabetes": _poly_diabetes,
    "digits": lambda: _digits(False),
    "digits-sparse": lambda: _digits(True),
    "correlated": lambda: (*correlated_design(60, 300, rho=0.9, seed=3), None),
    "correlated-weighted": lambda: (*correlated_design(60, 300, rho=0.9, seed=3), _weights(60, 4)),
    "sparse-synthetic": _sparse_synthetic,
}


@pytest.fixture(scope="module", params=list(DATASETS))
def data(request):
    return DATASETS[request.param]()


@pytest.fixture
def data_name(request):
    return request.node.callspec.params["data"]


def _dense(X):
    return X.toarray() if sp.issparse(X) else X


def _lambda1_max(X, y, w, fit_intercept, standardize):
    """‖X̃ᵀW y_c‖∞/Σw over the columns that are not constant, from the rows."""
    w_ = np.ones(X.shape[0]) if w is None else w
    mean, scale = _reference_scaling(X, w, fit_intercept, standardize)
    live = scale > 0
    y_c = y - (w_ @ y) / w_.sum() if fit_intercept else y
    return np.max(np.abs(((X[:, live] - mean[live]) / scale[live]).T @ (w_ * y_c))) / w_.sum()


def _kkt_residual(X, y, w, coef, intercept, lam1, lam2, fit_intercept, standardize):
    """max subdifferential distance on the penalized scale, relative to sd(y) (intercept condition included)."""
    w_ = np.ones(X.shape[0]) if w is None else w
    _, scale = _reference_scaling(X, w, fit_intercept, standardize)
    live = scale > 0
    resid = y - X @ coef - intercept
    grad = -((X[:, live] / scale[live]).T @ (w_ * resid)) / w_.sum()
    dist = ElasticNet(lam1, lam2).subdiff_distance(coef[live] * scale[live], grad)
    out = float(dist.max(initial=0.0))
    if fit_intercept:
        out = max(out, abs(w_ @ resid) / w_.sum())
    return out / np.sqrt(np.cov(y, aweights=w_, bias=True))


def _reference(X, y, w, lam1, lam2, fit_intercept, standardize):
    """scikit-learn's solution on the live columns (constant ones get 0), its KKT residual asserted first."""
    _, scale = _reference_scaling(X, w, fit_intercept, standardize)
    live = scale > 1e-12 * np.abs(X).max(axis=0)
    coef = np.zeros(X.shape[1])
    sub, b, _ = _sklearn_fit(X[:, live], y, w, lam1, lam2, fit_intercept, standardize)
    coef[live] = sub
    kkt = _kkt_residual(X, y, w, coef, b, lam1, lam2, fit_intercept, standardize)
    assert kkt <= KKT_RTOL, f"the reference is not converged (KKT {kkt:.3g}); it cannot judge anything"
    return coef, b, scale


def _compare(X, y, w, coef, intercept, lam1, lam2, fit_intercept, standardize, what):
    Xd = _dense(X)
    ref_coef, ref_b, scale = _reference(Xd, y, w, lam1, lam2, fit_intercept, standardize)
    scale = np.where(scale > 0, scale, 1.0)
    ours = _objective(Xd, y, w, coef, intercept, lam1, lam2, scale)
    theirs = _objective(Xd, y, w, ref_coef, ref_b, lam1, lam2, scale)
    assert ours <= theirs + OBJ_RTOL * abs(theirs), f"{what}: objective {ours!r} vs scikit-learn {theirs!r}"
    kkt = _kkt_residual(Xd, y, w, coef, intercept, lam1, lam2, fit_intercept, standardize)
    assert kkt <= KKT_RTOL, f"{what}: KKT residual {kkt:.3g}"


@pytest.mark.parametrize("l1_share", [1.0, 0.5], ids=["lasso", "enet"])
def test_lasso_and_enet_cold_fits_match_sklearn(data, l1_share):
    X, y, w = data
    lam_max = _lambda1_max(_dense(X), y, w, True, True)
    for ratio in L1_RATIOS:
        lam1 = ratio * lam_max
        lam2 = lam1 * (1 - l1_share) / l1_share
        model = pipeline.fit(X, y, penalty="l1" if lam2 == 0 else "elasticnet", lambda1=lam1, lambda2=lam2,
                             sample_weight=w, engine="rows")
        assert model.converged
        _compare(X, y, w, model.coef, model.intercept, lam1, lam2, True, True, f"ratio {ratio}")


@pytest.mark.parametrize("fit_intercept,standardize", [(True, True), (False, True), (True, False)])
def test_warm_started_paths_match_sklearn(data, data_name, fit_intercept, standardize):
    """Descending λ1 with warm starts (as a fold model runs a path), elastic net at mixing 0.7."""
    if data_name == "poly-diabetes" and not standardize:
        pytest.skip("raw cubic products span 1 to 1e6: unstandardized, no reference converges to KKT 1e-9")
    X, y, w = data
    problem = RowProblem(RowDesign(X, y, np.ones(len(y)) if w is None else w, fit_intercept=fit_intercept,
                                   standardize=standardize))
    lam_max = problem.lambda1_max
    assert lam_max == pytest.approx(_lambda1_max(_dense(X), y, w, fit_intercept, standardize), rel=1e-12)
    warm = None
    for ratio in L1_RATIOS:
        lam1 = ratio * lam_max
        warm = problem.solve(ElasticNet(lam1, lam1 * 0.3 / 0.7), warm)
        r = warm.result
        _compare(X, y, w, r.coef, r.intercept, lam1, lam1 * 0.3 / 0.7, fit_intercept, standardize, f"ratio {ratio}")


def _e_max(X, w, fit_intercept, standardize):
    """Largest eigenvalue of the standardized weighted Gram X̃ᵀWX̃/Σw, from an SVD of the rows."""
    w_ = np.ones(X.shape[0]) if w is None else w
    mean, scale = _reference_scaling(X, w, fit_intercept, standardize)
    live = scale > 0
    A = np.sqrt(w_ / w_.sum())[:, None] * (X[:, live] - mean[live]) / scale[live]
    return float(np.linalg.svd(A, compute_uv=False)[0] ** 2)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_e_max_of_tall_correlated_rows_is_exact(fit_intercept):
    """Tall dense rows take e_max from their Gram: exact (1e-12, eigenvalue rounding) against an SVD of the
    weighted rows, also where the top eigenvalues cluster (AR(1) columns, ρ = 0.5: the top five within 0.5%),
    which held the subspace iteration 1e-6 away after its 100 steps; held-out rows weigh 0, Fortran order."""
    rng = np.random.default_rng(11)
    n, p = 4000, 100
    Z = rng.standard_normal((n, p))
    X = np.empty((n, p), order="F")
    X[:, 0] = Z[:, 0]
    for j in range(1, p):
        X[:, j] = 0.5 * X[:, j - 1] + np.sqrt(0.75) * Z[:, j]
    X = X * rng.uniform(0.5, 3.0, p) + rng.uniform(-5, 5, p)
    w = rng.uniform(0.5, 2.0, n) * (np.arange(n) % 5 != 0)
    y = rng.standard_normal(n)
    problem = RowProblem(RowDesign(X, y, w, fit_intercept=fit_intercept))
    keep = w > 0
    assert problem.largest_eigenvalue() == pytest.approx(_e_max(X[keep], w[keep], fit_intercept, True), rel=1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_ridge_matches_sklearn_svd_from_10_emax_to_1e_6_emax(data, fit_intercept):
    X, y, w = data
    Xd = _dense(X)
    e_max = _e_max(Xd, w, fit_intercept, True)
    problem = RowProblem(RowDesign(X, y, np.ones(len(y)) if w is None else w, fit_intercept=fit_intercept))
    assert problem.largest_eigenvalue(rtol=1e-12) == pytest.approx(e_max, rel=1e-10)
    assert problem.largest_eigenvalue() == pytest.approx(e_max, rel=1e-6)  # the default: enough for search bounds
    for ratio in RIDGE_RATIOS:
        lam2 = ratio * e_max
        r = problem.solve(ElasticNet(0.0, lam2)).result
        _compare(X, y, w, r.coef, r.intercept, 0.0, lam2, fit_intercept, True, f"ridge {ratio}·e_max")


def test_a_tiny_ridge_on_repeated_rows_certifies_its_gap(recwarn):
    """Rows that repeat with different targets (replicate measurements) put part of ``b`` in the kernel's null
    space, where the dual solution is ``b ⊘ λ2``: at tiny λ2 that part must not reach β (exactly, Aᵀ maps it
    to 0), or its rounding noise keeps the gap above tolerance. The layout of R's ``Pastes`` table, where a
    sweep warned: 10 batches × 3 casks, 2 replicates each, one indicator per batch, cask and sample (p = 43),
    a third of the rows held out (weight 0), so the rows engine's dual side (40 rows < 43 columns)."""
    batch, cask = np.repeat(np.arange(10), 6), np.tile(np.repeat(np.arange(3), 2), 10)
    X = np.hstack([np.eye(10)[batch], np.eye(3)[cask], np.eye(30)[3 * batch + cask]])
    y = 60.0 + np.random.default_rng(1).normal(0.0, 3.0, 60)
    w = np.where(np.arange(60) % 3 == 0, 0.0, 1.0)
    problem = RowProblem(RowDesign(X, y, w))
    for lam2 in (1e-4, 6e-8, 3e-8, 1e-9):
        r = problem.solve(ElasticNet(0.0, lam2)).result
        assert r.converged and r.dual_gap <= r.gap_tol, (lam2, r.dual_gap, r.gap_tol)
        _compare(X, y, w, r.coef, r.intercept, 0.0, lam2, True, True, f"ridge λ2 = {lam2}")
    assert not [w for w in recwarn if "did not converge" in str(w.message)]


def test_a_tiny_ridge_keeps_a_small_real_eigenvalue_on_the_primal_side():
    """Two columns equal to 1e-7 (a float32 copy of a feature): G's smallest eigenvalue is tiny but real, and
    for λ2 above it the ridge solution's share there is well determined; dropping it (as the dual side drops
    rounding-level directions) missed the tolerance by 8× at λ2 = 1e-8."""
    X0, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(2)
    X = np.column_stack([X0, X0[:, 2] * (1 + 1e-7 * rng.standard_normal(len(y)))])
    problem = RowProblem(RowDesign(X, y, np.ones(len(y))))
    for lam2 in (1e-6, 1e-8):
        r = problem.solve(ElasticNet(0.0, lam2)).result
        assert r.converged and r.dual_gap <= r.gap_tol, (lam2, r.dual_gap, r.gap_tol)


def test_the_engines_agree_on_a_tall_problem(diabetes):
    """Where both apply (p < n), the rows engine and the Gram engine give the same fit."""
    X, y = diabetes
    for kwargs in ({"penalty": "l1", "lambda1": 0.5}, {"lambda1": 0.2, "lambda2": 0.3},
                   {"penalty": "l2", "lambda2": 0.05}):
        gram = pipeline.fit(X, y, engine="gram", **kwargs)
        rows = pipeline.fit(X, y, engine="rows", **kwargs)
        scale = gram.x_scale
        np.testing.assert_allclose(rows.coef * scale, gram.coef * scale, rtol=1e-8, atol=1e-8 * np.std(y))
        assert rows.intercept == pytest.approx(gram.intercept, rel=1e-9)


def test_sparse_input_is_never_densified_by_the_design():
    """The design keeps a sparse matrix sparse; centring enters as a rank-one correction."""
    X, y, w = _sparse_synthetic()
    d = RowDesign(X, y, w)
    assert sp.issparse(d.X) and d.X.nnz == X.nnz
    dense = RowDesign(X.toarray(), y, w)
    r = np.random.default_rng(0).normal(size=X.shape[0])
    np.testing.assert_allclose(d.xt(r), dense.xt(r), rtol=1e-12, atol=1e-12)
    idx = np.arange(0, d.n_kept, 7)
    b = np.random.default_rng(1).normal(size=idx.size)
    np.testing.assert_allclose(d.x(idx, b), dense.x(idx, b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.gram(idx, idx), dense.gram(idx, idx), rtol=1e-10, atol=1e-12)


def test_the_support_operator_is_the_gram_block_of_rows_standardized_by_hand():
    """The sparse copy of a support's columns (its own code path) and the dense ones both apply
    ``X̃_SᵀVX̃_S/Σv``, here formed by hand from the dense rows: centred, scaled and weighted by numpy,
    fold-style zero weights included."""
    X, y, w = _sparse_synthetic()
    v = w.copy()
    v[::5] = 0.0  # a fold's held-out rows
    Xd = X.toarray()
    mean = v @ Xd / v.sum()
    scale = np.sqrt(v @ (Xd - mean) ** 2 / v.sum())
    U = np.random.default_rng(2).normal(size=(40, 3))
    for design in (RowDesign(X, y, v), RowDesign(Xd, y, v)):
        idx = np.flatnonzero(design.kept)[3:43]
        Z = (Xd[:, idx] - mean[idx]) / scale[idx]
        expected = Z.T @ (v[:, None] * (Z @ U)) / v.sum()
        np.testing.assert_allclose(design.support_operator(np.searchsorted(design.cols, idx))(U), expected,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("preconditioner", ["nystrom", "kernel"])
@pytest.mark.parametrize("data_name_", ["sparse-synthetic", "correlated-weighted", "digits-sparse"])
def test_large_working_sets_by_descent_and_newton_steps_match_sklearn(monkeypatch, data_name_, preconditioner):
    """The path for working sets too large for their Gram block (coordinate descent, then one Newton step
    by preconditioned CG per round), forced on small data by lowering the size limit: a warm-started lasso
    and elastic-net path to 1e-3·λ1_max. The preconditioner is a rank-4 Nyström sketch (the row limit of
    the full-rank one lowered to 0) or, on these few rows, the exact one from the n × n kernel."""
    from pipeline.solvers import newton_cg, rows

    monkeypatch.setattr(rows, "NEWTON_MAX", 5)
    if preconditioner == "nystrom":
        monkeypatch.setattr(newton_cg, "_FULL_RANK_ROWS", 0)
        monkeypatch.setattr(newton_cg, "_RANK", 4)
    calls = []
    monkeypatch.setattr(newton_cg, "_kernel_eigen", lambda A, f=newton_cg._kernel_eigen: calls.append(1) or f(A))
    X, y, w = DATASETS[data_name_]()
    problem = RowProblem(RowDesign(X, y, np.ones(len(y)) if w is None else w))
    for share in (1.0, 0.5):
        warm = None
        for ratio in L1_RATIOS:
            lam1 = ratio * problem.lambda1_max
            lam2 = lam1 * (1 - share) / share
            warm = problem.solve(ElasticNet(lam1, lam2), warm)
            assert warm.result.converged
            r = warm.result
            _compare(X, y, w, r.coef, r.intercept, lam1, lam2, True, True, f"share {share}, ratio {ratio}")
    assert bool(calls) == (preconditioner == "kernel")


def test_fit_picks_the_engine_and_checks_sparse_input():
    X, y, _ = _sparse_synthetic()
    model = pipeline.fit(X, y, lambda1=0.05, lambda2=0.05)  # auto: sparse -> rows, and it predicts on sparse rows
    np.testing.assert_allclose(model.predict(X), model.predict(X.toarray()), rtol=1e-12)
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="stored values are NaN or inf"):
        pipeline.fit(bad, y, lambda1=0.1)
    with pytest.raises(ValueError, match="`engine` must be one of 'auto', 'gram', 'rows', got 'fast'"):
        pipeline.fit(X, y, lambda1=0.1, engine="fast")  # fit()'s argument, not the config key


def _counting_dual(monkeypatch):
    """Wrap the rows engine's dual Newton method; returns the list of its results (one per call)."""
    from pipeline.solvers import rows

    results = []

    def counted(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    real = rows.dual_newton
    monkeypatch.setattr(rows, "dual_newton", counted)
    return results


# (λ1 / λ1_max, λ2 / mean eigenvalue of the kernel): solutions that hold most features, as a ridge-like elastic
# net on correlated data has them (the case the dual exists for), down to λ2 at twice the method's lower limit
DENSE_ENET = [(0.3, 50.0), (0.1, 5.0), (0.03, 0.5), (0.01, 0.05), (3e-3, 0.01)]


def _held_out_weights(n: int, seed: int) -> np.ndarray:
    """Sample weights with a fifth of the rows at 0: a fold's training problem (its held-out rows weigh 0)."""
    w = _weights(n, seed)
    w[np.random.default_rng(seed + 1).choice(n, n // 5, replace=False)] = 0.0
    return w


DUAL_DATASETS = {**DATASETS, "correlated-heldout": lambda: (*correlated_design(60, 300, rho=0.9, seed=3),
                                                            _held_out_weights(60, 4))}


@pytest.mark.parametrize("data_name_", ["correlated", "correlated-weighted", "correlated-heldout", "poly-diabetes",
                                        "digits-sparse", "sparse-synthetic"])
@pytest.mark.parametrize("fit_intercept,standardize", [(True, True), (False, True), (True, False)])
def test_dense_elastic_net_solutions_by_the_dual_newton_method_match_sklearn(monkeypatch, data_name_,
                                                                             fit_intercept, standardize):
    """Elastic nets whose solutions hold many features go to the n-dimensional dual (semismooth Newton): each
    penalty cold and warm-started from the previous one's solution, against scikit-learn at tol 1e-12 by
    objective and KKT residual. Every fit whose solution holds more features than the problem has rows
    must have gone to the dual, and the dual must have converged on its own."""
    if data_name_ == "poly-diabetes" and not standardize:
        pytest.skip("raw cubic products span 1 to 1e6: unstandardized, no reference converges to KKT 1e-9")
    X, y, w = DUAL_DATASETS[data_name_]()
    design = RowDesign(X, y, np.ones(len(y)) if w is None else w, fit_intercept=fit_intercept,
                       standardize=standardize)
    problem = RowProblem(design)
    mean_eig = problem._trace_gram / design.rows.size
    results = _counting_dual(monkeypatch)
    warm, dense_fits = None, 0
    for ratio, ridge in DENSE_ENET:
        lam1, lam2 = ratio * problem.lambda1_max, ridge * mean_eig
        for start in ((None, warm) if warm is not None else (None,)):
            calls = len(results)
            fit = problem.solve(ElasticNet(lam1, lam2), start)
            r = fit.result
            assert r.converged
            _compare(X, y, w, r.coef, r.intercept, lam1, lam2, fit_intercept, standardize, f"{ratio}, {ridge}")
            if r.n_nonzero > design.rows.size:
                dense_fits += 1
                assert len(results) > calls, f"{ratio}, {ridge}: {r.n_nonzero} non-zeros without the dual"
        warm = fit
    assert dense_fits >= 2
    assert all(res.converged for res in results)


@pytest.mark.parametrize("ratio,ridge", [(0.03, 0.5), (0.1, 0.02)], ids=["dense-then-descent", "sparse-then-newton"])
def test_a_dual_that_does_not_converge_leaves_the_fit_to_the_working_sets(monkeypatch, ratio, ridge):
    """One Newton step allowed: the dual gives up, is not tried again within the solve, leaves β as it found
    it, and the working-set path still reaches scikit-learn's objective: by coordinate descent (a solution
    holding 214 of 300 features) and by Newton on the working set's Gram block (51 features; that solver
    assumes β = 0 outside the set, which the dual's β(θ) would break)."""
    from pipeline.solvers import dual_newton

    monkeypatch.setattr(dual_newton, "_MAX_STEPS", 1)
    X, y, w = DATASETS["correlated-weighted"]()
    problem = RowProblem(RowDesign(X, y, w))
    results = _counting_dual(monkeypatch)
    lam1, lam2 = ratio * problem.lambda1_max, ridge * problem._trace_gram / len(y)
    r = problem.solve(ElasticNet(lam1, lam2)).result
    assert [res.converged for res in results] == [False]
    assert r.converged
    _compare(X, y, w, r.coef, r.intercept, lam1, lam2, True, True, "after the dual gave up")


def test_a_small_ridge_part_never_goes_to_the_dual(monkeypatch):
    """Below the lower limit on λ2 (β(θ) = S(Aᵀθ)/λ2 is too sensitive there) the working sets solve it."""
    X, y, w = DATASETS["correlated"]()
    problem = RowProblem(RowDesign(X, y, np.ones(len(y))))
    results = _counting_dual(monkeypatch)
    lam1, lam2 = 3e-3 * problem.lambda1_max, 1e-4 * problem._trace_gram / len(y)
    r = problem.solve(ElasticNet(lam1, lam2)).result
    assert results == [] and r.converged
    _compare(X, y, w, r.coef, r.intercept, lam1, lam2, True, True, "small ridge part")


def test_more_rows_than_features_keep_the_primal_systems(monkeypatch):
    """With n ≥ p the dual's n × n system is the larger one: a dense elastic net stays on the working sets."""
    X, y = correlated_design(120, 90, rho=0.9, seed=8)
    problem = RowProblem(RowDesign(sp.csr_matrix(X), y, np.ones(120)))
    results = _counting_dual(monkeypatch)
    lam1, lam2 = 0.01 * problem.lambda1_max, 5.0 * problem._trace_gram / 120
    r = problem.solve(ElasticNet(lam1, lam2)).result
    assert results == [] and r.converged and r.n_nonzero > 60
    _compare(sp.csr_matrix(X), y, None, r.coef, r.intercept, lam1, lam2, True, True, "n > p")


def test_after_a_ridge_fit_the_dual_takes_its_kernel_from_the_eigendecomposition(monkeypatch):
    """``K = U diag(e) Uᵀ`` from ridge's eigendecomposition is the kernel formed from the columns (to rounding),
    and a dense elastic net solved with it still matches scikit-learn."""
    X, y, w = DATASETS["correlated-weighted"]()
    problem = RowProblem(RowDesign(X, y, w))
    problem.solve(ElasticNet(0.0, 1.0))  # ridge: the kernel's eigendecomposition, the kernel itself not kept
    assert problem._K is None
    direct = problem._weighted_rows().kernel()
    np.testing.assert_allclose(problem._kernel(), direct, rtol=0, atol=1e-12 * np.abs(direct).max())
    results = _counting_dual(monkeypatch)
    lam1, lam2 = 0.03 * problem.lambda1_max, 0.5 * problem._trace_gram / len(y)
    r = problem.solve(ElasticNet(lam1, lam2)).result
    assert results and results[-1].converged and r.converged
    _compare(X, y, w, r.coef, r.intercept, lam1, lam2, True, True, "kernel from ridge")


def test_singular_active_blocks_go_to_coordinate_descent_and_match_sklearn(monkeypatch):
    """Sparse 0/1 columns with many exact duplicates (one-hot or text data): near saturation the active block
    is singular. Solved one eigendecomposition per dropped coefficient, a 1,476-feature block took 54 s per
    Newton step; beyond ``SINGULAR_NEWTON_MAX`` features (lowered here to 20) coordinate descent and CG Newton
    steps take over. No larger singular block is eigendecomposed, and the lasso path still matches
    scikit-learn."""
    from pipeline.solvers import active_set, rows

    monkeypatch.setattr(rows, "SINGULAR_NEWTON_MAX", 20)
    sizes: list[int] = []
    original = active_set._singular_direction
    monkeypatch.setattr(active_set, "_singular_direction", lambda H, r: sizes.append(H.shape[0]) or original(H, r))
    rng = np.random.default_rng(4)
    n, p = 120, 400
    base = sp.random(n, p // 2, density=0.02, format="csc", random_state=5, data_rvs=lambda k: np.ones(k))
    X = sp.hstack([base, base[:, rng.permutation(p // 2)]], format="csr")  # every column twice
    keep = np.asarray(X.getnnz(axis=0)) > 0
    X = X[:, np.flatnonzero(keep)]
    y = np.asarray(X[:, :40].sum(axis=1)).ravel() + 0.3 * rng.normal(size=n)
    w = np.ones(n)
    problem = RowProblem(RowDesign(X, y, w))
    warm = None
    for ratio in (0.3, 0.1, 0.03, 0.01, 0.003):
        lam1 = ratio * problem.lambda1_max
        warm = problem.solve(ElasticNet(lam1, 0.0), warm)
        assert warm.result.converged
        _compare(X, y, w, warm.result.coef, warm.result.intercept, lam1, 0.0, True, True, f"ratio {ratio}")
    assert sizes and max(sizes) <= 20 < np.count_nonzero(warm.result.coef)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_sparse_kernel_is_the_dense_one(fit_intercept):
    """``K = AAᵀ`` of sparse rows, centred implicitly (no column densified), against ``A`` formed column by column
    with its means subtracted, on weighted rows some of which weigh 0: to rounding."""
    from pipeline.solvers.rows import _WeightedRows

    rng = np.random.default_rng(0)
    X = sp.random(300, 2000, density=0.01, format="csr", random_state=2)
    v = rng.uniform(0, 2, 300)
    v[::7] = 0.0
    design = RowDesign(X, rng.normal(size=300), v, fit_intercept=fit_intercept)
    rows = _WeightedRows(design)
    A = rows.columns(np.arange(design.n_kept))
    want = A @ A.T
    np.testing.assert_allclose(rows.kernel(), want, rtol=0, atol=1e-13 * np.abs(want).max())



def test_a_stalled_descent_goes_back_to_eigen_steps_for_that_solve_only(monkeypatch):
    """Every column twice on 40 sparse rows, singular blocks above 5 features sent to coordinate descent: near
    interpolation descent stalls, and the solve goes back to exact eigen-steps (the stall rule); the next solve
    of the same problem starts with the limit again. Every fit of the path to 1e-5·λ1_max matches
    scikit-learn."""
    from pipeline.solvers import rows

    monkeypatch.setattr(rows, "SINGULAR_NEWTON_MAX", 5)
    fired: list[float] = []
    original = rows.RowProblem._inner

    def inner(self, W, beta, r, c_smooth, lam1, *args):
        if self._singular_max is None:
            fired.append(lam1)
        return original(self, W, beta, r, c_smooth, lam1, *args)

    monkeypatch.setattr(rows.RowProblem, "_inner", inner)
    base = sp.random(40, 50, density=0.3, format="csc", random_state=3)
    X = sp.hstack([base, base], format="csr")
    y = np.asarray(base[:, :4].sum(axis=1)).ravel() + 0.1 * np.random.default_rng(3).normal(size=40)
    w = np.ones(40)
    problem = RowProblem(RowDesign(X, y, w))
    warm = None
    for ratio in (0.1, 1e-2, 1e-3, 1e-4, 1e-5, 0.1):
        lam1 = ratio * problem.lambda1_max
        warm = problem.solve(ElasticNet(lam1, 0.0), warm)
        assert warm.result.converged, (ratio, warm.result.dual_gap)
        _compare(X, y, w, warm.result.coef, warm.result.intercept, lam1, 0.0, True, True, f"ratio {ratio}")
    assert fired and problem.lambda1_max * 0.1 not in fired


@pytest.mark.parametrize("subset", [False, True])
def test_weighted_grams_of_many_indicator_columns_equal_the_direct_products(subset):
    """Rows with three factors' indicators (3, 40 and 300 levels) beside numbers of mean up to 10⁶: the weighted
    Gram, ``X̃ᵀu`` and ``X̃ᵀ(u∘z)`` of :func:`~pipeline.solvers.dense_weighted_gram`, whose indicator columns go
    the sparse way (:mod:`pipeline.solvers.split_gram`), equal numpy's products of the centred, scaled columns
    to 1e-13 of √(G_ii G_jj), on all columns and on a working set; held-out rows have weight 0."""
    from pipeline.solvers import split_gram
    from pipeline.solvers.design import dense_weighted_gram

    rng = np.random.default_rng(0)
    n = 6_000
    num = rng.normal(size=(n, 6)) * [1, 10, 1e3, 1, 1, 1] + [0, 5, 1e6, -3, 0, 2]
    oh = [np.eye(L)[rng.integers(0, L, n)] for L in (3, 40, 300)]
    X = np.asfortranarray(np.hstack([num[:, :2], oh[0], num[:, 2:4], oh[1], oh[2], num[:, 4:]]))
    assert int(split_gram.sparse_columns(X).is_sparse.sum()) == 343
    m, s = X.mean(axis=0), X.std(axis=0)
    u = rng.random(n) * 0.25
    u[rng.random(n) < 0.2] = 0.0
    z = rng.normal(size=n)
    cols = np.sort(rng.choice(X.shape[1], 150, replace=False)) if subset else np.arange(X.shape[1])
    G, sx, q = dense_weighted_gram(X, cols, m[cols], s[cols], u, z)
    Xt = (X[:, cols] - m[cols]) / s[cols]
    ref_G = Xt.T @ (u[:, None] * Xt)
    scale = np.sqrt(np.diag(ref_G))
    assert np.abs(G - ref_G).max() <= 1e-13 * np.outer(scale, scale).max()
    assert np.all(np.abs(G - ref_G) <= 1e-13 * np.outer(scale, scale) + 1e-300)
    assert np.all(np.abs(sx - Xt.T @ u) <= 1e-13 * scale * np.sqrt(u.sum()))
    assert np.all(np.abs(q - Xt.T @ (u * z)) <= 1e-13 * scale * np.sqrt(u @ z**2))
    split = split_gram.sparse_columns(X)  # the steps' products X[r] B and X[r]ᵀ R the same way
    B, R, r = rng.normal(size=(X.shape[1], 3)), rng.normal(size=(800, 3)), slice(100, 900)
    np.testing.assert_allclose(split.times(X, r, B), X[r] @ B, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(split.transposed_times(X, r, R), X[r].T @ R, rtol=1e-12, atol=1e-9)


def test_e_max_of_rows_with_many_indicator_columns_comes_from_their_gram():
    """1,100 columns, 1,090 of them level indicators: beyond the dense limit of 1,000 columns the Gram still
    costs the non-zeros, so e_max is exact from it (the subspace iteration stops at its ``rtol``)."""
    from pipeline.solvers import split_gram

    rng = np.random.default_rng(5)
    n = 3_000
    X = np.hstack([rng.normal(size=(n, 10)) @ np.triu(np.ones((10, 10))), np.eye(1_090)[rng.integers(0, 1_090, n)]])
    v = rng.uniform(0.5, 2.0, n)
    d = RowDesign(X, rng.normal(size=n), v)
    assert d.n_kept > 1_000 and split_gram.sparse_columns(X) is not None
    Xt = (X[:, d.cols] - d.x_center[d.cols]) / d.x_scale[d.cols]
    exact = np.linalg.eigvalsh(Xt.T @ (v[:, None] * Xt) / v.sum())[-1]
    assert RowProblem(d).largest_eigenvalue(rtol=1e-3) == pytest.approx(exact, rel=1e-12)
