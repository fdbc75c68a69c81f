"""Mean imputation from statistics: the map equals the statistics of the rows imputed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.solvers import MeanImputation, SuffStats


@pytest.mark.parametrize("indicators", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_imputed_statistics_equal_those_of_the_imputed_rows(indicators, weighted):
    rng = np.random.default_rng(3)
    n, p = 400, 6
    X = rng.normal(size=(n, p)) * [1, 2, 3, 1, 1, 5] + [0, 1e6, -3, 2, 0, 10]  # one column far from 0
    y = X @ rng.normal(size=p) + rng.normal(size=n)
    w = rng.uniform(0.1, 2.0, n) if weighted else None
    gappy = [1, 3, 4]
    M = rng.random((n, len(gappy))) < [0.1, 0.3, 0.05]
    centers = np.array([1e6 + 0.7, 1.5, -0.2])  # any constants: near the mean keeps precision
    Z = X.copy()
    for i, j in enumerate(gappy):
        Z[M[:, i], j] = centers[i]
    imp = MeanImputation(p, tuple(gappy), centers, indicators)
    fill, (got,) = imp.apply(SuffStats.from_block(np.hstack([Z, M.astype(float)]), y, w))
    # the reference: each gap filled with the (weighted) mean of its column's observed rows, then statistics
    wt = np.ones(n) if w is None else w
    filled = X.copy()
    for i, j in enumerate(gappy):
        mean = np.average(X[~M[:, i], j], weights=wt[~M[:, i]])
        assert fill[i] == pytest.approx(mean, rel=1e-12)
        filled[M[:, i], j] = mean
    if indicators:
        filled = np.hstack([filled, M.astype(float)])
    ref = SuffStats.from_block(filled, y, w)
    np.testing.assert_allclose(got.x_mean, ref.x_mean, rtol=1e-12)
    scale = np.sqrt(np.outer(np.diag(ref.cxx), np.diag(ref.cxx)))
    np.testing.assert_allclose(got.cxx / scale, ref.cxx / scale, atol=1e-10)
    np.testing.assert_allclose(got.cxy, ref.cxy, rtol=1e-9, atol=1e-9 * np.abs(ref.cxy).max())
