"""Batches of GLM fits in a fixed metric (pipeline.solvers.glm_chord) against independent references.

The same references and bars as tests/solvers/test_glm.py: scikit-learn's LogisticRegression (tolerance
1e-12) and the L-BFGS-B brute force (tests/glm_reference.py); the objective, evaluated by the reference's
formula, at most 1e-8 relative above the reference's, KKT residuals below 1e-8 (1e-6 for counts).

Held-out predictions are compared with the Newton solver run to a tolerance of 1e-15 (exact to rounding) on
breast cancer's columns, whose correlation matrix has a condition number of 1e5: in its flat directions the
training objective hardly changes while the held-out rows see the difference, so the objective's tolerance
(1e-10 relative, the sweep's) allows the held-out deviance to move by more. Bars: the objective within 1e-10
relative of the exact one, the held-out deviance within 1e-6 (the sweep tests' bar against the brute force).
Observed: at most 1.5e-7 (one warm-started lasso fit; the others at most 3.5e-9), against 3.4e-10 for the
Newton solver, whose last step lands far inside the tolerance.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline.cv.glm_models import _keep_newest_metrics
from pipeline.cv.scoring import WarmStarts
from pipeline.candidate import Candidate
from pipeline.solvers import ElasticNet, SolverConvergenceWarning
from pipeline.solvers.controls import FeatureControls
from pipeline.solvers.families import BINOMIAL, POISSON
from pipeline.solvers.glm import GlmProblem
from pipeline.solvers.glm_chord import Curvature, solve_many
from tests.glm_reference import brute_force, mean_half_deviance, objective, weighted_scale
from tests.solvers.test_glm import _BC_X, BC_X, BC_Y, DB_X_RAW, DB_Y, REL, rare_levels, sk_logistic

PENALTIES = [(0.0, 0.01), (0.01, 0.0), (0.005, 0.01), (0.001, 0.0)]


def _fold(n: int, seed: int = 0) -> np.ndarray:
    """Training weights of one fold of five (held-out rows 0)."""
    return np.where(np.random.default_rng(seed).integers(0, 5, n) == 0, 0.0, 1.0)


def test_a_batch_against_scikit_learn() -> None:
    problem = GlmProblem(BC_X, BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    fits, _ = solve_many(problem, [ElasticNet(a, b) for a, b in PENALTIES], [None] * len(PENALTIES), tol=1e-10)
    for (lam1, lam2), fit in zip(PENALTIES, fits, strict=True):
        ref = sk_logistic(BC_X, BC_Y, lam1, lam2)
        ours = objective("binomial", BC_X, BC_Y, fit.coef, fit.intercept, lam1, lam2)
        theirs = objective("binomial", BC_X, BC_Y, ref.coef_[0], float(ref.intercept_[0]), lam1, lam2)
        assert fit.converged and fit.kkt_residual < 1e-8
        assert ours <= theirs * (1 + REL)
        assert abs(fit.objective - ours) <= 1e-12 * ours
        assert np.max(np.abs(fit.coef - ref.coef_[0])) <= 1e-5 * np.max(np.abs(ref.coef_[0]))


def test_a_warm_start_brings_its_linear_predictor_only_to_its_own_problem() -> None:
    """The η of a fit starts a later fit of the same problem as it is (equal to X̃β + b + offset, to rounding);
    another fold's problem (other scales), a fit from before pickling and a start the limits move compute it."""
    import pickle

    rng = np.random.default_rng(3)
    offset = rng.normal(0.0, 0.3, len(BC_Y))
    problem = GlmProblem(BC_X, BC_Y, _fold(len(BC_Y)), BINOMIAL, offset=offset, inner="gram")
    fit = solve_many(problem, [ElasticNet(0.01, 0.0)], [None])[0][0]
    pen = problem.box_penalty(ElasticNet(0.005, 0.0))
    b, beta, eta = problem.starting_point(pen, fit)
    assert eta is fit.eta
    assert np.max(np.abs(eta - problem.eta(b, beta))) <= 1e-12 * np.max(np.abs(eta))
    other = GlmProblem(BC_X, BC_Y, _fold(len(BC_Y), seed=1), BINOMIAL, offset=offset, inner="gram")
    b, beta, eta = other.starting_point(other.box_penalty(ElasticNet(0.005, 0.0)), fit)
    assert eta is not fit.eta and np.array_equal(eta, other.eta(b, beta))
    assert pickle.loads(pickle.dumps(problem)).starting_point(pen, fit)[2] is fit.eta  # the copy is the problem
    p = BC_X.shape[1]
    capped = FeatureControls.make(p, lower=np.full(p, -1e-3), upper=np.full(p, 1e-3))
    limited = GlmProblem(BC_X, BC_Y, _fold(len(BC_Y)), BINOMIAL, offset=offset, controls=capped, inner="gram")
    moved = replace(fit, origin=limited.token)
    b, beta, eta = limited.starting_point(limited.box_penalty(ElasticNet(0.005, 0.0)), moved)
    assert not np.array_equal(beta, fit.beta) and np.array_equal(eta, limited.eta(b, beta))


def test_poisson_batch_with_weights_offset_and_controls_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, len(DB_Y))
    offset = np.log(rng.uniform(0.5, 4.0, len(DB_Y)))
    p = DB_X_RAW.shape[1]
    factor = np.array([0, 1, 2, 0.5, 1, 1, 3, 1, 1, 1.0])
    lower = np.array([-np.inf, 0, -np.inf, -1, -np.inf, -np.inf, 0, -np.inf, -np.inf, -np.inf]) * 1e-2
    upper = np.array([np.inf, np.inf, 0.5, np.inf, np.inf, np.inf, np.inf, np.inf, 0, np.inf]) * 1e-2
    s = weighted_scale(DB_X_RAW, w)
    for controls in (None, FeatureControls.make(p, factor, lower, upper)):
        problem = GlmProblem(DB_X_RAW, DB_Y, w, POISSON, offset=offset, controls=controls, inner="gram")
        pens = [(0.5, 0.0), (0.2, 0.5), (0.0, 0.3)]
        fits, _ = solve_many(problem, [ElasticNet(a, b) for a, b in pens], [None] * 3)
        for (lam1, lam2), fit in zip(pens, fits, strict=True):
            kw = {} if controls is None else {"factor": controls.factor, "lower": lower, "upper": upper}
            ref_obj, _, _ = brute_force("poisson", DB_X_RAW, DB_Y, lam1, lam2, w=w, offset=offset, **kw)
            ours = objective("poisson", DB_X_RAW, DB_Y, fit.coef, fit.intercept, lam1, lam2, w=w, offset=offset,
                             scale=s, factor=None if controls is None else controls.factor)
            # the stop is on the objective (tol 1e-10): a gradient g in a direction of curvature κ costs g²/2κ,
            # and counts of ~150 make κ large; Newton's last step lands far inside the tolerance, these steps near it
            assert fit.converged and fit.kkt_residual < 1e-6 * max(1.0, fit.objective)
            assert ours <= ref_obj * (1 + REL)
            if controls is not None:
                assert np.all(fit.coef >= lower - 1e-12) and np.all(fit.coef <= upper + 1e-12)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_held_out_predictions_as_exact_as_newtons_on_ill_conditioned_columns(fit_intercept: bool) -> None:
    """Raw breast-cancer columns (scales from 1e-3 to 1e3), a fold's held-out rows, cold and warm batches."""
    v = _fold(len(BC_Y))
    held = v == 0
    problem = GlmProblem(_BC_X, BC_Y, v, BINOMIAL, fit_intercept=fit_intercept, inner="gram")
    lmax = problem.lambda1_max
    first = [ElasticNet(lmax * 1e-2, 0.0), ElasticNet(0.0, 1e-3), ElasticNet(lmax * 1e-3, lmax * 1e-3)]
    second = [ElasticNet(lmax * 5e-3, 0.0), ElasticNet(0.0, 3e-4), ElasticNet(lmax * 1e-4, 0.0)]
    fits, curv = solve_many(problem, first, [None] * 3)
    warm = [fits[0], fits[1], fits[0]]  # the nearest earlier solutions, as the fold models pick them
    fits2, _ = solve_many(problem, second, warm, curvature=curv)
    for pen, fit in zip(first + second, fits + fits2, strict=True):
        exact = problem.solve(pen, tol=1e-15)
        dev = mean_half_deviance("binomial", BC_Y[held], fit.eta[held], np.ones(int(held.sum())))
        ref = mean_half_deviance("binomial", BC_Y[held], exact.eta[held], np.ones(int(held.sum())))
        assert fit.converged
        assert fit.objective <= exact.objective * (1 + 1e-10)
        assert abs(dev - ref) <= 1e-6 * ref


def test_warm_starts_at_the_solutions_take_two_steps_in_the_metric_passed_in() -> None:
    """One step in the metric of the batch before (it finds nothing to do), one Newton step to certify it."""
    problem = GlmProblem(BC_X, BC_Y, _fold(len(BC_Y), 1), BINOMIAL, inner="gram")
    pens = [ElasticNet(a, b) for a, b in PENALTIES]
    fits, curv = solve_many(problem, pens, [None] * len(pens))
    assert all(isinstance(f.curvature, Curvature) for f in fits)
    again, _ = solve_many(problem, pens, list(fits), curvature=curv)
    for a, b in zip(fits, again, strict=True):
        assert b.converged and b.n_iter <= 2
        assert abs(a.objective - b.objective) <= 1e-12 * a.objective
        np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-7 * np.max(np.abs(a.coef)))


def test_a_singular_gram_at_a_tiny_ridge_still_reaches_the_optimum(recwarn: pytest.WarningRecorder) -> None:
    """Counts of a 3 × 4 × 3 × 5 contingency table (R's DanishWelfare layout, where a sweep warned) with one
    indicator per level of every factor beside the intercept: the Gram is singular, so at λ2 ~ 1e-7 the float32
    metric's steps found no descent direction (stopping 6e-6 relative above the optimum) or stopped with a KKT
    residual of 3e-5 (5.7e-7 above). Each fit, warm-started from a lasso fit, is within the module's bar of the
    L-BFGS-B brute force, converged and silent."""
    import itertools

    rng = np.random.default_rng(0)
    levels = (3, 4, 3, 5)
    cells = np.array(list(itertools.product(*[range(n_levels) for n_levels in levels])))
    X = np.hstack([np.eye(n_levels)[cells[:, j]] for j, n_levels in enumerate(levels)])
    eta = 2.5 + sum(rng.normal(0, 1.2, n_levels)[cells[:, j]] for j, n_levels in enumerate(levels))
    y = rng.poisson(np.exp(eta)).astype(float)  # 16% zeros, up to 409
    w = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0)
    problem = GlmProblem(X, y, w, POISSON, inner="gram")
    lasso = problem.solve(ElasticNet(0.05, 0.0))
    s = weighted_scale(X, w)
    for lam2 in (1.67e-7, 5.0e-7, 9.8e-7, 2.46e-6):
        (fit,), _ = solve_many(problem, [ElasticNet(0.0, lam2)], [lasso])
        ref_obj, _, _ = brute_force("poisson", X, y, 0.0, lam2, w=w)
        ours = objective("poisson", X, y, fit.coef, fit.intercept, 0.0, lam2, w=w, scale=s)
        assert fit.converged and ours <= ref_obj * (1 + REL), (lam2, ours / ref_obj - 1)
    assert not [r for r in recwarn if issubclass(r.category, SolverConvergenceWarning)]


def test_every_level_beside_the_intercept_factors_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every level of 22 categorical columns beside the intercept makes the Gram singular (one null direction
    per column); the active-set solver walks a singular block one null direction at a time, a pivoted
    factorisation and a QR each, which made two thirds of a Caravan fold's time. The metric's small ridge
    (``_METRIC_RIDGE``) must spare the batch's inner solves that walk entirely (the Newton steps of a fit that
    did not converge in the metric may still take it), and every fit must reach the brute force's objective."""
    import pipeline.solvers.active_set as active_set

    walks = {"n": 0}
    walk = active_set._singular_direction

    def counted(*args: object) -> object:
        walks["n"] += 1
        return walk(*args)

    X, y = rare_levels(8, 500, 22, 15, 2.87, 0.84, -1.71)
    problem = GlmProblem(X, y, np.ones(len(y)), BINOMIAL, inner="gram")
    top = problem.lambda1_max
    penalties = [ElasticNet(0.1 * top, 0.0), ElasticNet(0.03 * top, 0.0), ElasticNet(0.01 * top, 0.0)]
    lasso = problem.solve(penalties[0])
    monkeypatch.setattr(active_set, "_singular_direction", counted)
    # a fit handed on to Newton's steps could walk legitimately: none may be
    monkeypatch.setattr(GlmProblem, "solve", lambda *a, **k: pytest.fail("a batch fit fell back to Newton's steps"))
    fits, curvature = solve_many(problem, penalties, [lasso] * 3)
    assert walks["n"] == 0
    assert np.linalg.eigvalsh(curvature.G).min() > 0.0
    s = weighted_scale(X, np.ones(len(y)))
    for fit, pen in zip(fits, penalties, strict=True):
        ref_obj, _, _ = brute_force("binomial", X, y, pen.lambda1, 0.0)
        ours = objective("binomial", X, y, fit.coef, fit.intercept, pen.lambda1, 0.0, scale=s)
        assert fit.converged and ours <= ref_obj * (1 + REL), (pen, ours / ref_obj - 1)


def test_a_metric_solves_ridge_steps_by_either_factor() -> None:
    """``Curvature.ridge`` against ``numpy.linalg.solve`` of ``(G + λ2 I) x = q``: three strengths by a Cholesky
    factor each, which serves its repeats; then the eigendecomposition, which serves all."""
    problem = GlmProblem(BC_X, BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    curvature = Curvature.at(problem, problem.null_model()[1])
    G, q = curvature.G, np.random.default_rng(3).normal(size=curvature.G.shape[0])
    steps = [(1e-3, "cholesky"), (1e-3, "cholesky"), (0.2, "cholesky"), (1e-3, "cholesky"), (5.0, "eigen"),
             (0.2, "eigen")]
    for lam2, factor in steps:
        x = curvature.ridge(q, lam2)
        np.testing.assert_allclose(x, np.linalg.solve(G + lam2 * np.eye(len(q)), q), rtol=1e-9)
        assert (curvature._eig is not None) == (factor == "eigen"), (lam2, factor)


def test_an_overflowing_full_step_gives_its_gradient_silently() -> None:
    """The gradient pass at a full step whose μ overflowed (Poisson counts of 10⁵–10⁶ on raw population
    columns, R's Migration, mid-sweep) has a total near ±1e308: its gradient is non-finite and silent (no
    RuntimeWarning to the user), since the line search rejects that step's infinite deviance and forms the
    gradient of the point it takes anew."""
    import warnings

    from pipeline.solvers.glm_chord import _gradient_of

    problem = GlmProblem(DB_X_RAW + 1e3, DB_Y, np.ones(len(DB_Y)), POISSON, inner="gram")  # raw, far from 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c, c0 = _gradient_of(problem, np.full(DB_X_RAW.shape[1], -1e306), -1e307)
    assert c0 < 0 and not np.all(np.isfinite(c))


def test_not_converging_warns_and_sparse_rows_are_refused() -> None:
    problem = GlmProblem(BC_X, BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    with pytest.warns(SolverConvergenceWarning, match="did not converge after 1 of at most 1"):
        fits, _ = solve_many(problem, [ElasticNet(0.001, 0.0)], [None], max_iter=1)
    assert not fits[0].converged
    sparse = GlmProblem(sp.csr_matrix(BC_X), BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    with pytest.raises(ValueError, match="dense rows"):
        solve_many(sparse, [ElasticNet(0.01, 0.0)], [None])


def test_the_warm_starts_keep_only_the_newest_metrics() -> None:
    """Each metric holds n weights: a fold model's warm starts keep those of the four newest Grams only."""
    problem = GlmProblem(BC_X, BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    warm: WarmStarts = WarmStarts(size=20)
    formed: list[Curvature] = []
    for i in range(6):  # cold batches: each forms a metric of its own
        lam = 10.0 ** (-1 - 0.4 * i)
        fits, curv = solve_many(problem, [ElasticNet(lam, 0.0)], [None])
        formed.append(curv)
        warm.remember(Candidate(i, "l1", lam, 0.0), fits[0])
    _keep_newest_metrics(warm, 4)
    kept = {f.curvature.serial for entries in warm.entries.values() for *_, f in entries if f.curvature is not None}
    assert len({c.serial for c in formed}) == 6
    assert kept == {c.serial for c in formed[-4:]}


@pytest.mark.parametrize("order", ["C", "F"])
def test_the_blocked_weighted_gram_against_the_formula(order: str) -> None:
    """The weighted Gram of both memory orders and a column subset, in float64 (to rounding) and as a metric in
    float32 (to float32's rounding over sums of many rows: 1e-5 of the largest entry), against X̃ᵀUX̃ written
    out; columns beyond float32's range (1e-25, 1e22) are formed in float64 instead."""
    from pipeline.solvers import design

    rng = np.random.default_rng(4)
    n, p = 30_000, 7  # several blocks of each order
    for scale in (1.0, 1e-25, 1e22):
        X = np.asarray(rng.standard_normal((n, p)) * scale * np.arange(1, p + 1), order=order)
        cols = np.array([0, 2, 3, 6])
        m, s = X.mean(axis=0)[cols], X.std(axis=0)[cols]
        u = rng.uniform(0.0, 0.25, n) * (rng.random(n) > 0.2)  # held-out rows weigh 0
        zc = rng.standard_normal(n)
        Xt = (X[:, cols] - m) / s
        want = (Xt.T * u) @ Xt, Xt.T @ u, Xt.T @ (u * zc)
        for single, tol in ((False, 1e-12), (True, 1e-5 if scale == 1.0 else 1e-12)):
            got = design.dense_weighted_gram(X, cols, m, s, u, zc, single=single)
            for g, w in zip(got[:2] if single else got, want, strict=False):
                assert np.max(np.abs(g - w)) <= tol * np.max(np.abs(w))


def test_a_fit_carries_its_training_deviance() -> None:
    """The mean half deviance a fit carries (its objective less its penalty, which the fold scores use instead
    of a pass over the rows) is the deviance of its linear predictor, on both solvers' routes."""
    v = _fold(len(BC_Y), 3)
    problem = GlmProblem(_BC_X, BC_Y, v, BINOMIAL, inner="gram")
    pens = [ElasticNet(problem.lambda1_max * 1e-2, 0.0), ElasticNet(0.0, 1e-2)]
    for fit in [*solve_many(problem, pens, [None, None])[0], problem.solve(pens[0])]:
        exact = problem.mean_half_deviance(fit.eta)
        assert abs(fit.deviance - exact) <= 1e-12 * exact


def test_a_warm_start_of_the_same_problem_carries_its_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit carries the gradient at its point (its certificate's), equal to the gradient formed anew by the
    problem's own product ``X̃ᵀ(w(y − μ))``. Fits that start at it take no pass over the rows for their first
    gradient, and end where fits whose warm starts carry none end: the same objectives, KKT residuals below
    the batch solver's bar."""
    from pipeline.solvers import glm_chord

    v = _fold(len(BC_Y), 4)
    problem = GlmProblem(_BC_X, BC_Y, v, BINOMIAL, inner="gram")
    lmax = problem.lambda1_max
    first = solve_many(problem, [ElasticNet(0.05 * lmax, 0.0)], [None])[0][0]
    newton = problem.solve(ElasticNet(0.05 * lmax, 0.0))
    for fit in (first, newton):
        assert fit.gradient is not None
        c, c0 = problem.gradient(fit.eta)
        assert np.max(np.abs(fit.gradient[0] - c)) <= 1e-12 * max(1.0, float(np.max(np.abs(c))))
        assert abs(fit.gradient[1] - c0) <= 1e-12
    formed: list[int] = []
    real = glm_chord._gradients
    monkeypatch.setattr(glm_chord, "_gradients", lambda fits: formed.append(len(fits)) or real(fits))
    pens = [ElasticNet(0.02 * lmax, 0.0), ElasticNet(0.01 * lmax, 1e-3)]
    carried = solve_many(problem, pens, [first, first])[0]
    assert formed[0] == 0  # no fit's starting gradient needed the rows
    formed.clear()
    anew = solve_many(problem, pens, [replace(first, gradient=None)] * 2)[0]
    assert formed[0] == 2
    for a, b in zip(carried, anew, strict=True):
        assert abs(a.objective - b.objective) <= 1e-12 * b.objective
        assert a.kkt_residual <= 1e-8 and b.kkt_residual <= 1e-8


@pytest.mark.parametrize("gemv_max", [0, 6])
def test_passes_over_ragged_row_blocks_against_scikit_learn(monkeypatch: pytest.MonkeyPatch, gemv_max: int) -> None:
    """A pass takes the rows in blocks for its elementwise work, each made of smaller blocks for its BLAS calls
    (``_full_steps``, ``_gradients``). With 120-row blocks of 40-row products, breast cancer's 569 rows end in a
    ragged block of both kinds; the products ``XΔ`` go through one GEMM per product block (``gemv_max`` 0) or one
    GEMV per fit. Four fits with their gradients formed anew, then four warm-started from them: every fit at
    scikit-learn's objective, with the bars of ``test_a_batch_against_scikit_learn``."""
    from pipeline.solvers import glm_chord

    p = BC_X.shape[1]
    for name, value in [("_PASS_BYTES", 96 * 8 * p), ("_PASS_ROWS_MIN", 1), ("_PRODUCT_BYTES", 40 * 8 * p),
                        ("_PRODUCT_ROWS_MIN", 1), ("_GEMV_MAX", gemv_max)]:
        monkeypatch.setattr(glm_chord, name, value)
    assert glm_chord._block_rows(p) == 120 and len(BC_Y) % 120 % 40 != 0
    problem = GlmProblem(BC_X, BC_Y, np.ones(len(BC_Y)), BINOMIAL, inner="gram")
    pens = [ElasticNet(a, b) for a, b in PENALTIES]
    cold = solve_many(problem, pens, [None] * len(pens), tol=1e-10)[0]
    warm = solve_many(problem, pens[::-1], cold, tol=1e-10)[0][::-1]
    for (lam1, lam2), a, b in zip(PENALTIES, cold, warm, strict=True):
        ref = sk_logistic(BC_X, BC_Y, lam1, lam2)
        theirs = objective("binomial", BC_X, BC_Y, ref.coef_[0], float(ref.intercept_[0]), lam1, lam2)
        for fit in (a, b):
            ours = objective("binomial", BC_X, BC_Y, fit.coef, fit.intercept, lam1, lam2)
            assert fit.converged and fit.kkt_residual < 1e-8
            assert ours <= theirs * (1 + REL) and abs(fit.objective - ours) <= 1e-12 * ours


@pytest.mark.parametrize("gemv_max", [0, 6])
def test_folds_whose_held_out_rows_fill_whole_blocks_against_newton(monkeypatch: pytest.MonkeyPatch,
                                                                    gemv_max: int) -> None:
    """Rows ordered by fold (as a worker holds binomial and Poisson rows): each fold's held-out rows fill whole
    40-row blocks, which the passes of that fold's fits skip (``_weighted``), and its linear predictor there is
    completed at the end (``_complete_eta``). Breast cancer's rows in five such folds, with an offset, one fit
    per fold in a batch, cold and then warm-started at other strengths: every fit at the objective of the Newton
    solver run to 1e-13 (bars of the module docstring), and its η, on the held-out rows too, equal to
    ``offset + b + Xβ`` to rounding (a stale block there would be off by the whole step)."""
    from pipeline.solvers import glm_chord
    from pipeline.solvers.glm_chord import solve_together

    p = BC_X.shape[1]
    for name, value in [("_PASS_BYTES", 40 * 8 * p), ("_PASS_ROWS_MIN", 1), ("_PRODUCT_BYTES", 40 * 8 * p),
                        ("_PRODUCT_ROWS_MIN", 1), ("_GEMV_MAX", gemv_max)]:
        monkeypatch.setattr(glm_chord, name, value)
    rng = np.random.default_rng(5)
    fold = rng.integers(0, 5, len(BC_Y))
    order = np.argsort(fold, kind="stable")
    X, y, fold = np.asfortranarray(BC_X[order]), BC_Y[order], fold[order]
    offset = rng.normal(0.0, 0.3, len(y))
    problems = [GlmProblem(X, y, (fold != k).astype(float), BINOMIAL, offset=offset, inner="gram") for k in range(5)]
    assert all((~pr.weighted_runs(40)).any() for pr in problems)  # whole blocks skipped by every fold
    first = [ElasticNet(0.01, 0.0), ElasticNet(0.0, 0.01), ElasticNet(0.005, 0.01), ElasticNet(0.002, 0.0),
             ElasticNet(0.02, 0.001)]
    cold = solve_together(problems, first, [None] * 5, tol=1e-10)[0]
    then = first[1:] + first[:1]
    warm = solve_together(problems, then, cold, tol=1e-10)[0]
    for fits, pens in ((cold, first), (warm, then)):
        for k, (fit, pen) in enumerate(zip(fits, pens, strict=True)):
            ref = problems[k].solve(pen, tol=1e-13)
            held = fold == k
            assert fit.converged and fit.kkt_residual < 1e-8
            assert fit.objective <= ref.objective * (1 + 1e-10), (k, pen, fit.objective / ref.objective - 1)
            exact = problems[k].eta(fit.intercept, fit.beta)
            assert np.max(np.abs(fit.eta - exact)) <= 1e-12 * np.max(np.abs(exact))
            ours = mean_half_deviance("binomial", y[held], fit.eta[held], np.ones(int(held.sum())))
            theirs = mean_half_deviance("binomial", y[held], ref.eta[held], np.ones(int(held.sum())))
            assert abs(ours - theirs) <= 1e-6 * theirs


def test_passes_over_row_blocks_of_one_hot_levels_against_newton(monkeypatch: pytest.MonkeyPatch) -> None:
    """The split route of a pass (mostly-zero level indicators multiplied by their non-zeros,
    :func:`~pipeline.solvers.split_gram.sparse_columns`) over ragged row blocks: 500 rows of 158 one-hot columns in
    blocks of 64 rows. Every fit at the objective of the Newton solver (its own passes, tested against scikit-learn
    and the brute force in tests/solvers/test_glm.py) run to ``tol = 1e-13``."""
    from pipeline.solvers import glm_chord
    from pipeline.solvers.split_gram import sparse_columns

    X, y = rare_levels(8, 500, 22, 15, 2.87, 0.84, -1.71)
    assert sparse_columns(X) is not None
    block = 64 * 8 * X.shape[1]
    for name, value in [("_PASS_BYTES", block), ("_PASS_ROWS_MIN", 1), ("_PRODUCT_BYTES", block),
                        ("_PRODUCT_ROWS_MIN", 1)]:
        monkeypatch.setattr(glm_chord, name, value)
    assert glm_chord._block_rows(X.shape[1]) == 64 and len(y) % 64 != 0
    problem = GlmProblem(X, y, _fold(len(y), 5), BINOMIAL, inner="gram")
    top = problem.lambda1_max
    pens = [ElasticNet(0.1 * top, 0.0), ElasticNet(0.03 * top, 1e-3)]
    refs = [problem.solve(pen, tol=1e-13) for pen in pens]
    # a batch fit whose passes went wrong would be finished by Newton's steps: none may be
    monkeypatch.setattr(GlmProblem, "solve", lambda *a, **k: pytest.fail("a batch fit fell back to Newton's steps"))
    for fit, pen, ref in zip(solve_many(problem, pens, [None, None])[0], pens, refs, strict=True):
        assert fit.converged and fit.kkt_residual < 1e-8
        assert fit.objective <= ref.objective * (1 + REL), (pen, fit.objective / ref.objective - 1)
