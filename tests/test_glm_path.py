"""The binomial and Poisson fold paths: glmnet's ``fdev`` rule ends them where the last decades of strengths
refit the unpenalized fit, and the batch solver's paths agree with the Newton solver's."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.candidate import Candidate
from pipeline.cv import score_folds, scoring
from pipeline.cv import glm_models
from pipeline.cv.glm_models import GlmFoldModel, glm_paths_and_coefficients
from pipeline.cv.scoring import PathSpec, deviance_levelled
from pipeline.solvers.families import family_named
from pipeline.solvers.glm import GlmProblem
from tests.tall_glm_fold import tall_fold_model


def test_deviance_levelled_is_glmnets_rule() -> None:
    assert not deviance_levelled([0.1, 0.2, 0.3, 0.4])  # fewer than glmnet's mnlam = 5 points
    assert not deviance_levelled([0.1, 0.2, 0.3, 0.4, 0.5])
    assert deviance_levelled([0.1, 0.2, 0.3, 0.4, 0.4 + 3.9e-6])  # 3.9e-6 < 1e-5 × 0.4
    assert not deviance_levelled([0.1, 0.2, 0.3, 0.4, 0.4 + 4.1e-6])


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_the_path_stops_where_the_fit_stops_changing(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tall_fold_model(family, "gram")
    lmax = model.problem.lambda1_max
    spec = PathSpec("elasticnet", 0.5, tuple(np.geomspace(2 * lmax, 2e-6 * lmax, 100)))
    cut = model.path(spec, 1e-10)
    m = len(cut.heldout_mse)
    explained = list(1.0 - np.asarray(cut.train_mse) / cut.train_mse[0])  # the first point is the null model
    assert deviance_levelled(explained) and not any(deviance_levelled(explained[:i]) for i in range(m))
    monkeypatch.setattr(scoring, "PATH_STOP_FDEV", 0.0)
    full = tall_fold_model(family, "gram").path(spec, 1e-10)
    assert m < 80 and len(full.heldout_mse) == 100  # on tall data nothing else ends the path
    np.testing.assert_allclose(cut.heldout_mse, full.heldout_mse[:m], rtol=1e-8)
    # what the cut leaves out moves the held-out deviance by less than a part in 10⁴
    assert min(cut.heldout_mse) <= min(full.heldout_mse) * (1 + 1e-4)


def test_no_early_stop_before_the_winning_trials_strength(monkeypatch: pytest.MonkeyPatch) -> None:
    """A path run to examine a trial reaches that trial's strength: the ``fdev``, held-out and saturation rules
    wait for ``min_points``. Saturation did not: on nearly exact data (the fourth probe's fertility rates, R²
    0.9999 at every strength) it cut the paths 2.5 decades short of the winner, and the ``1se`` choice fell on
    the winner itself. Here every point counts as saturated."""
    lmax = tall_fold_model("poisson", "gram").problem.lambda1_max
    strengths = tuple(np.geomspace(2 * lmax, 2e-6 * lmax, 100))
    m = len(tall_fold_model("poisson", "gram").path(PathSpec("elasticnet", 0.5, strengths), 1e-10).heldout_mse)
    longer = tall_fold_model("poisson", "gram").path(PathSpec("elasticnet", 0.5, strengths, min_points=m + 7), 1e-10)
    assert m < 80 and len(longer.heldout_mse) == m + 7  # it stops at once where it may
    monkeypatch.setattr(scoring, "PATH_STOP_DEV_RATIO", 1e-12)  # every fit "explains 99.9%"
    saturated = tall_fold_model("poisson", "gram").path(PathSpec("elasticnet", 0.5, strengths, min_points=30), 1e-10)
    assert len(saturated.heldout_mse) == 30


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_batched_and_newton_paths_agree(family: str) -> None:
    model, newton = tall_fold_model(family, "gram"), tall_fold_model(family, "gram")
    newton.problem.inner = "rows"  # the Newton solver, each step solved on the rows: an independent route
    lmax = model.problem.lambda1_max
    spec = PathSpec("l1", 1.0, tuple(np.geomspace(lmax, 1e-3 * lmax, 30)))
    a, b = model.path(spec, 1e-10), newton.path(spec, 1e-10)
    m = min(len(a.heldout_mse), len(b.heldout_mse))
    np.testing.assert_allclose(a.heldout_mse[:m], b.heldout_mse[:m], rtol=1e-6)
    np.testing.assert_allclose(a.train_mse[:m], b.train_mse[:m], rtol=1e-9)


def test_the_folds_of_a_worker_take_their_paths_together() -> None:
    """Three folds on the same rows in step (one product over the rows per step for all three) give each fold's
    own path: the same points, stopped where it stops alone."""
    base = tall_fold_model("binomial", "gram")
    X, y = base.problem.base.X, base.y
    folds = np.random.default_rng(5).integers(0, 5, len(y))

    def model(k: int) -> GlmFoldModel:
        v = np.where(folds == k, 0.0, 1.0)
        problem = GlmProblem(X, y, v, family_named("binomial"), inner="gram")
        return GlmFoldModel(k, problem, np.flatnonzero(folds == k), y, np.ones(len(y)), "binomial")

    lmax = model(0).problem.lambda1_max
    spec = PathSpec("l1", 1.0, tuple(np.geomspace(lmax, 1e-6 * lmax, 100)))
    together = GlmFoldModel.paths_together([model(k) for k in range(3)], spec, 1e-10)
    for k, path in enumerate(together):
        alone = model(k).path(spec, 1e-10)
        assert path.fold == k and len(path.heldout_mse) == len(alone.heldout_mse) < 100
        np.testing.assert_allclose(path.heldout_mse, alone.heldout_mse, rtol=1e-9)
        assert path.n_nonzero == alone.n_nonzero


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_the_folds_of_a_worker_score_a_batch_together(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial tasks of a worker: three folds and a batch of candidates in one solve (one product over the
    rows per step for all pairs) give each fold the fits it makes alone, batch after batch (warm starts and
    reference metrics carried)."""
    base = tall_fold_model(family, "gram")
    X, y = base.problem.base.X, base.y
    folds = np.random.default_rng(5).integers(0, 5, len(y))

    def model(k: int) -> GlmFoldModel:
        v = np.where(folds == k, 0.0, 1.0)
        problem = GlmProblem(X, y, v, family_named(family), inner="gram")
        return GlmFoldModel(k, problem, np.flatnonzero(folds == k), y, np.ones(len(y)), family)

    lmax = base.problem.lambda1_max
    batches = [[Candidate(0, "l1", 0.1 * lmax, 0.0), Candidate(1, "elasticnet", 0.02 * lmax, 0.05)],
               [Candidate(2, "l1", 0.01 * lmax, 0.0), Candidate(3, "l2", 0.0, 0.3)],
               [Candidate(4, "l1", 0.03 * lmax, 0.0), Candidate(5, "elasticnet", 0.005 * lmax, 0.01)]]
    together, alone = [model(k) for k in range(3)], [model(k) for k in range(3)]
    calls: list[int] = []  # the folds in each solve: 3 for the worker's task, then 1 for each fold alone
    joint_solve = glm_models.solve_together
    monkeypatch.setattr(glm_models, "solve_together", lambda problems, *a, **kw: (
        calls.append(len({id(p) for p in problems})), joint_solve(problems, *a, **kw))[1])
    for cands in batches:
        joint = score_folds(together, cands, 1e-10)
        single = [s for m in alone for s in m.score_many(cands, 1e-10)]
        assert [(s.fold, s.trial) for s in joint] == [(s.fold, s.trial) for s in single]
        # the same steps: the fits differ only by the rounding of a wider product over the rows (seen: 2e-16)
        assert [s.n_iter for s in joint] == [s.n_iter for s in single]
        np.testing.assert_allclose([s.train_mse for s in joint], [s.train_mse for s in single], rtol=1e-12)
        np.testing.assert_allclose([s.heldout_mse for s in joint], [s.heldout_mse for s in single], rtol=1e-12)
        assert [s.n_nonzero for s in joint] == [s.n_nonzero for s in single]
        assert all(s.converged for s in joint)
    assert calls == [3, 1, 1, 1] * 3 and all(m.curvature is not None for m in together)


class _AllRows:
    """What :func:`glm_paths_and_coefficients` reads of a worker's rows: the problem on all of them."""

    def __init__(self, problem: GlmProblem) -> None:
        self.problem = problem

    def glm_problem(self, model: object, controls: object) -> GlmProblem:
        return self.problem


def test_the_coefficient_path_joins_the_fold_paths_of_its_worker() -> None:
    """The coefficient path on all rows, taken in step with three folds' paths, equals the path of the problem
    on all rows alone, point by point, up to where the first of those folds stopped; the folds' paths are
    unchanged by it."""
    base = tall_fold_model("binomial", "gram")
    X, y = base.problem.base.X, base.y
    folds = np.random.default_rng(5).integers(0, 5, len(y))

    def model(k: int) -> GlmFoldModel:
        v = np.where(folds == k, 0.0, 1.0)
        return GlmFoldModel(k, GlmProblem(X, y, v, family_named("binomial"), inner="gram"),
                            np.flatnonzero(folds == k), y, np.ones(len(y)), "binomial")

    whole = GlmProblem(X, y, np.ones(len(y)), family_named("binomial"), inner="gram")
    lmax = whole.lambda1_max
    spec = PathSpec("elasticnet", 0.7, tuple(np.geomspace(lmax / 0.7, 1e-6 * lmax, 100)))
    paths, coefs = glm_paths_and_coefficients([[model(0)], [model(1), model(2)]], spec, 1e-10, None,
                                              _AllRows(whole), None, None)  # type: ignore[arg-type]
    shortest = min(len(p.heldout_mse) for p in paths)
    assert shortest <= coefs.shape[1] < 100
    fit = None
    for i in range(coefs.shape[1]):
        fit = whole.solve(spec.candidate(i).penalty_object(), fit, tol=1e-12)  # Newton's method, alone
        # both stop within 1e-10 of the objective, so coefficients agree to about its square root
        np.testing.assert_allclose(coefs[:, i], fit.coef * whole.base.x_scale, rtol=1e-5, atol=1e-7)
    for k, path in enumerate(paths):
        np.testing.assert_allclose(path.heldout_mse, model(k).path(spec, 1e-10).heldout_mse, rtol=1e-9)


def test_a_path_end_is_shared_and_only_falls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks share the shortest fold path through the scheduler: a copy sent to another task reads what one
    task published, and a longer length published later does not raise it (more points are only wasted)."""
    import pickle

    from distributed import Client

    from pipeline.cv import path_end
    from pipeline.cv.path_end import PathEnd

    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        end = PathEnd.start(client, 100)
        other = pickle.loads(pickle.dumps(end))
        assert other.limit() == 100
        end.reached(40)
        assert end.limit() == 40
        monkeypatch.setattr(path_end, "_READ_EVERY", 0.0)
        assert other.limit() == 40
        other.reached(45)
        assert pickle.loads(pickle.dumps(end)).limit() == 40
        end.close(client)


def test_the_memory_a_fold_declares_to_dask_is_what_it_can_hold() -> None:
    """Dask refuses a task whose inputs' ``sizeof`` exceeds a worker's memory limit. A fold on the rows route
    forms no p × p matrix, so at p = 8,000 it declares megabytes (it declared 33 Grams, 16.9 GB, and every
    trial of a 72 × 7,129 binomial sweep failed). On the Gram route each kept reference metric holds a Gram and
    its eigenvectors: the fold keeps as many as 256 MiB allow (at least 2), and declares them."""
    from dask.sizeof import sizeof

    from pipeline.cv.glm_models import _metric_bytes, _metrics_kept

    rng = np.random.default_rng(0)
    n, p = 60, 8000
    X = rng.standard_normal((n, p))
    y = (rng.random(n) < 0.5).astype(float)
    v = np.where(np.arange(n) % 5 == 0, 0.0, 1.0)
    wide = GlmFoldModel(0, GlmProblem(X, y, v, family_named("binomial"), inner="auto"), np.flatnonzero(v == 0), y,
                        np.ones(n), "binomial")
    assert not wide.problem.batched
    assert sizeof(wide) < 2**20  # its n- and p-vectors: the rows are counted with their own task
    tall = tall_fold_model("binomial", "gram")
    assert tall.problem.batched
    d = tall.problem.base
    assert _metrics_kept(d.n_rows, d.n_kept) == 32
    assert sizeof(tall) >= 33 * 8 * d.n_kept ** 2
    assert _metrics_kept(5000, 4000) == 2 and _metrics_kept(10**5, 100) == 32
    assert 2 * _metric_bytes(5000, 4000) > 2**28 > 32 * _metric_bytes(10**5, 100)


def test_folds_with_rows_of_their_own_step_alone_in_their_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folds whose rows are their own (gaps imputed by each fold's training means: a copy of the rows per fold)
    take their path points by the metric steps one fold at a time, not Newton's method (one Gram per step);
    their paths are Newton's, point by point (the rows route's steps: an independent solver)."""
    base = tall_fold_model("binomial", "gram")
    X, y = base.problem.base.X, base.y
    folds = np.random.default_rng(5).integers(0, 5, len(y))

    def model(k: int, inner: str) -> GlmFoldModel:
        v = np.where(folds == k, 0.0, 1.0)
        problem = GlmProblem(X.copy(), y, v, family_named("binomial"), inner=inner)  # rows of its own
        return GlmFoldModel(k, problem, np.flatnonzero(folds == k), y, np.ones(len(y)), "binomial")

    calls: list[int] = []
    joint_solve = glm_models.solve_together
    monkeypatch.setattr(glm_models, "solve_together", lambda problems, *a, **kw: (
        calls.append(len(problems)), joint_solve(problems, *a, **kw))[1])
    lmax = model(0, "gram").problem.lambda1_max
    spec = PathSpec("elasticnet", 0.5, tuple(np.geomspace(2 * lmax, 1e-3 * lmax, 30)))
    paths = GlmFoldModel.paths_together([model(k, "gram") for k in range(2)], spec, 1e-10)
    assert calls and set(calls) == {1}  # every point of each fold by the metric steps, alone
    for k, path in enumerate(paths):
        newton = model(k, "rows").path(spec, 1e-10)
        m = min(len(path.heldout_mse), len(newton.heldout_mse))
        assert m >= 20
        np.testing.assert_allclose(path.heldout_mse[:m], newton.heldout_mse[:m], rtol=1e-6)
        np.testing.assert_allclose(path.train_mse[:m], newton.train_mse[:m], rtol=1e-9)
