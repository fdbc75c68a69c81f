"""A fold of tall GLM rows for the solver and path tests: the benchmark generator's AR(1) columns at a size a
test can afford, so that the batched solver, its sampled metrics and the paths meet the rows they are built for."""

from __future__ import annotations

import numpy as np

from pipeline.cv.glm_models import GlmFoldModel
from pipeline.solvers.families import family_named
from pipeline.solvers.glm import GlmProblem


def tall_fold_model(family: str, inner: str) -> GlmFoldModel:
    """A fold of tall data from the benchmark's generator (AR(1) columns, ten true effects), 20% held out."""
    rng = np.random.default_rng(3)
    n, p = 20_000, 30
    X = np.empty((n, p))
    X[:, 0] = rng.standard_normal(n)
    for j in range(1, p):
        X[:, j] = 0.5 * X[:, j - 1] + np.sqrt(0.75) * rng.standard_normal(n)
    eta = X[:, :10] @ np.linspace(-0.8, 0.8, 10)
    y = ((rng.random(n) < 1 / (1 + np.exp(-eta))) if family == "binomial" else rng.poisson(np.exp(0.3 * eta)))
    v = np.where(rng.integers(0, 5, n) == 0, 0.0, 1.0)
    problem = GlmProblem(X, y.astype(float), v, family_named(family), inner=inner)
    return GlmFoldModel(0, problem, np.flatnonzero(v == 0), y.astype(float), np.ones(n), family)
