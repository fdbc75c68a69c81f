"""Metrics formed from a stratified row sample (pipeline.solvers.metric_rows) on tall rows.

The sample's sizes are made small here (a few dozen rows) so that tables of a few hundred rows are sampled,
as 10⁶-row ones are in a sweep. The estimate is checked against the exact weighted Gram (the rows it must
take whole are taken whole: a rare level's diagonal exact to its sampled share; the rest unbiased in scale),
and the fits in sampled metrics against the Newton solver run to 1e-15 and the brute force, with the bars of
tests/solvers/test_glm_chord.py: objectives within 1e-10 relative of the exact ones, held-out deviances
within 1e-6, KKT residuals as a converged fit's.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.solvers import ElasticNet
from pipeline.solvers import metric_rows as mr
from pipeline.solvers.families import BINOMIAL, POISSON
from pipeline.solvers.glm import GlmProblem
from pipeline.solvers.glm_chord import Curvature, solve_many
from tests.glm_reference import brute_force, mean_half_deviance
from tests.solvers.test_glm import _BC_X, BC_Y, DB_X_RAW, DB_Y, rare_levels


@pytest.fixture
def small_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples of 64 rows, taken from problems of at least 256."""
    monkeypatch.setattr(mr, "_ROWS", 64)
    monkeypatch.setattr(mr, "_ROWS_PER_COLUMN", 1)


def _fold(n: int, seed: int = 0) -> np.ndarray:
    return np.where(np.random.default_rng(seed).integers(0, 5, n) == 0, 0.0, 1.0)


def _exact_metric(problem: GlmProblem, eta: np.ndarray) -> np.ndarray:
    """The centred weighted Gram ``X̃ᵀUX̃/Σw`` of all rows, in float64 by its formula."""
    d = problem.base
    u = problem.irls_weights(eta)[2]
    Xt = (d.X[:, d.cols] - d.x_center[d.cols]) / d.x_scale[d.cols]
    xbar = u @ Xt / u.sum()
    C = Xt - xbar
    return (C * u[:, None]).T @ C / d.sum_w


def test_a_rare_level_and_heavy_weights_are_taken_whole(small_sample: None) -> None:
    """One-hot levels of Zipf frequencies (a tail held by a few rows) and sample weights with a few rows 40×
    the others: a uniform 64-row sample of 2,000 would miss most rare levels (their diagonal 0) and the heavy
    rows. Taken whole, the diagonal entry of every level held by less than 1/17 of the rows (outlying at 4
    standard deviations) is within 1% of the exact one (32% of these were beyond 5% in a uniform sample), and
    the whole metric within 35% in Frobenius norm (the sample's error, ≈ √(p/64) for the rows left to it); the
    scale of the sampled part is right (without it the estimate would be ~30× too small)."""
    X, y = rare_levels(3, 2000, 3, 12, 1.3, 0.5, -0.3)
    rng = np.random.default_rng(4)
    w = np.where(rng.random(y.size) < 0.005, 40.0, 1.0) * _fold(y.size)
    problem = GlmProblem(X, y, w, BINOMIAL, inner="gram")
    eta = rng.normal(0.0, 0.5, y.size)
    curv = Curvature.at(problem, eta)
    assert curv.sampled
    exact = _exact_metric(problem, eta)
    rare = X[:, problem.base.cols].mean(axis=0) < 1.0 / 17
    d_est, d_exact = np.diag(curv.G)[rare], np.diag(exact)[rare]
    assert rare.sum() >= 5
    assert np.max(np.abs(d_est - d_exact) / d_exact) < 0.01
    assert np.linalg.norm(curv.G - exact) < 0.35 * np.linalg.norm(exact)
    picked = mr.metric_rows(problem.base.X, problem.base.cols.size, problem.base.v,
                            problem.irls_weights(eta)[2], problem.base.x_center, np.sqrt(problem.base.x_var))
    assert picked is not None
    whole_rows = picked.parts[0][0]
    assert whole_rows.shape[0] >= np.count_nonzero(w == 40.0)  # the heavy rows are among them


def test_too_few_rows_or_too_many_outlying_ones_form_the_full_gram(small_sample: None) -> None:
    """Below four times the sample's rows, and where more than a quarter of the rows hold an outlying value
    (a level of every row rare: nothing left for a sample to stand for), the metric is the exact Gram."""
    few = GlmProblem(_BC_X[:200], BC_Y[:200], np.ones(200), BINOMIAL, inner="gram")
    assert not Curvature.at(few, np.zeros(200)).sampled
    rng = np.random.default_rng(5)
    level = rng.integers(0, 40, 1000)  # 40 levels of 2.5% each: every row outlying in its level's column
    X = np.eye(40)[level]
    y = (rng.random(1000) < 0.4).astype(float)
    problem = GlmProblem(X, y, np.ones(1000), BINOMIAL, inner="gram")
    curv = Curvature.at(problem, np.zeros(1000))
    assert not curv.sampled
    np.testing.assert_allclose(curv.G, _exact_metric(problem, np.zeros(1000)), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rows", [100, 64])
def test_fits_in_sampled_metrics_reach_newtons_optimum(small_sample: None, monkeypatch: pytest.MonkeyPatch,
                                                       rows: int) -> None:
    """Raw breast-cancer columns (heavy tails; scales 1e-3 to 1e3), a fold's held-out rows: a cold batch and
    a warm one against the Newton solver at 1e-15. Samples of 100 or 64 of the 455 rows stand badly for 30
    ill-conditioned columns (an error near 50–70%): some fits end in sampled metrics, with KKT residuals below
    1e-8 (the rule of a sampled metric's stop), others contract slowly in their own sampled metric and get the
    exact Gram (with 64 rows, all of them). All reach the optimum, far from the 100-step cap (9–43 steps here,
    9–25 with exact metrics)."""
    monkeypatch.setattr(mr, "_ROWS", rows)
    v = _fold(len(BC_Y), 2)
    held = v == 0
    problem = GlmProblem(_BC_X, BC_Y, v, BINOMIAL, inner="gram")
    lmax = problem.lambda1_max
    first = [ElasticNet(lmax * 1e-2, 0.0), ElasticNet(0.0, 1e-3), ElasticNet(lmax * 1e-3, lmax * 1e-3)]
    second = [ElasticNet(lmax * 5e-3, 0.0), ElasticNet(0.0, 3e-4), ElasticNet(lmax * 1e-4, 0.0)]
    fits, curv = solve_many(problem, first, [None] * 3)
    fits2, _ = solve_many(problem, second, [fits[0], fits[1], fits[0]], curvature=curv)
    ended_sampled = [f.curvature.sampled for f in fits + fits2]
    assert not all(ended_sampled) and (any(ended_sampled) or rows == 64)
    for pen, fit in zip(first + second, fits + fits2, strict=True):
        exact = problem.solve(pen, tol=1e-15)
        dev = mean_half_deviance("binomial", BC_Y[held], fit.eta[held], np.ones(int(held.sum())))
        ref = mean_half_deviance("binomial", BC_Y[held], exact.eta[held], np.ones(int(held.sum())))
        assert fit.converged and fit.kkt_residual < 1e-8 * max(1.0, fit.objective)
        assert fit.objective <= exact.objective * (1 + 1e-10)
        assert abs(dev - ref) <= 1e-6 * ref
        assert fit.n_iter <= 50


def test_poisson_with_heavy_exposures_in_sampled_metrics_against_brute_force(small_sample: None) -> None:
    """Diabetes progression as counts, exposures spanning 100× (the heaviest rows' IRLS weights many times the
    mean: taken whole) and sample weights: l2, l1 and elastic net against the L-BFGS-B brute force."""
    rng = np.random.default_rng(6)
    offset = rng.uniform(np.log(0.1), np.log(10.0), len(DB_Y))
    w = rng.uniform(0.5, 2.0, len(DB_Y))
    problem = GlmProblem(DB_X_RAW, DB_Y, w, POISSON, offset=offset, inner="gram")
    pens = [(0.0, 0.3), (0.5, 0.0), (0.2, 0.5)]
    assert Curvature.at(problem, problem.null_model()[1]).sampled  # the batch's first metric
    fits, _ = solve_many(problem, [ElasticNet(a, b) for a, b in pens], [None] * 3)
    for (lam1, lam2), fit in zip(pens, fits, strict=True):
        ref_obj, _, _ = brute_force("poisson", DB_X_RAW, DB_Y, lam1, lam2, w=w, offset=offset)
        exact = problem.solve(ElasticNet(lam1, lam2), tol=1e-15)
        assert fit.converged and fit.kkt_residual < 1e-6 * max(1.0, fit.objective)
        assert fit.objective <= min(ref_obj, exact.objective) * (1 + 1e-10)
        assert fit.n_iter <= 30



def test_the_metric_is_the_gram_of_the_weights_it_carries(small_sample: None) -> None:
    """Sample weights with 4% of the rows 40× the others, so that some sampled rows join the rows taken whole:
    the metric's Gram, its weighted means and ``Σu/Σw`` are those of the weights it carries on every row (which
    the model's constant ``yy`` uses), by the formula in float64 (the metric's own Gram is float32, plus its
    ridge of 1e-6 of the mean diagonal)."""
    X, y = rare_levels(7, 2000, 2, 10, 1.0, 0.5, 0.2)
    rng = np.random.default_rng(8)
    heavy = rng.random(y.size) < 0.04
    w = np.where(heavy, 40.0, 1.0)
    problem = GlmProblem(X, y, w, BINOMIAL, inner="gram")
    d = problem.base
    curv = Curvature.at(problem, rng.normal(0.0, 0.5, y.size))
    assert curv.sampled
    sample = mr._STRATA[(id(d.X), 64)].sample  # type: ignore[union-attr]
    assert np.any(heavy[sample])  # a sampled row among the heavy ones, taken whole
    u = curv.u
    Xt = (d.X[:, d.cols] - d.x_center[d.cols]) / d.x_scale[d.cols]
    xbar = u @ Xt / u.sum()
    G = ((Xt - xbar) * u[:, None]).T @ (Xt - xbar) / d.sum_w
    G[np.diag_indices_from(G)] += 1e-6 * np.mean(np.diag(G))
    assert curv.su_over_w == pytest.approx(u.sum() / d.sum_w, rel=1e-12)
    np.testing.assert_allclose(curv.xbar, xbar, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curv.G, G, rtol=1e-4, atol=1e-5 * np.max(np.abs(G)))


def test_a_sampled_metric_far_from_the_fit_is_formed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold batch (the null model's metric) on tall AR(1) rows, samples of 512 of 20,000 rows: a fit whose
    steps in a sampled metric contract by less than tenfold (the metric was formed far from where it now is)
    gets a new sampled metric at once, where it went on at that rate (on 10⁶ rows: 10 such steps, KKT 1e-2 →
    4e-9). Fewer steps in all, and every fit at Newton's optimum."""
    from tests.tall_glm_fold import tall_fold_model
    from pipeline.solvers import glm_chord

    monkeypatch.setattr(mr, "_ROWS", 512)
    monkeypatch.setattr(mr, "_ROWS_PER_COLUMN", 1)
    steps = {}
    for name, stale in (("again", glm_chord._STALE), ("kept", 0.3)):
        monkeypatch.setattr(glm_chord, "_STALE", stale)  # 0.3 > _SLOW: never formed again for contracting slowly
        problem = tall_fold_model("binomial", "gram").problem
        lmax = problem.lambda1_max
        pens = [ElasticNet(0.01 * lmax, 0.0), ElasticNet(0.0, 1e-3), ElasticNet(1e-3 * lmax, 1e-3 * lmax)]
        assert Curvature.at(problem, problem.null_model()[1]).sampled
        fits, _ = solve_many(problem, pens, [None] * 3)
        steps[name] = sum(f.n_iter for f in fits)
        held = problem.base.v == 0
        for pen, fit in zip(pens, fits, strict=True):
            exact = problem.solve(pen, tol=1e-15)
            y = problem.y[held]
            dev = mean_half_deviance("binomial", y, fit.eta[held], np.ones(y.size))
            ref = mean_half_deviance("binomial", y, exact.eta[held], np.ones(y.size))
            assert fit.converged and fit.kkt_residual < 1e-8 * max(1.0, fit.objective)
            assert fit.objective <= exact.objective * (1 + 1e-10)
            assert abs(dev - ref) <= 1e-7 * ref
    assert steps["again"] < 0.8 * steps["kept"]  # seen: 33 against 44
