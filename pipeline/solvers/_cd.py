"""Coordinate descent on the columns of a working set: the compiled kernel of the rows engine.

Why compiled. On wide data the support of a lasso or elastic net at small λ
reaches thousands of features (n = 1,600, p = 20,000: 1,370 for the lasso and
10,608 for an elastic net at 1e-3·λ1_max). An exact active-set Newton method
then factors blocks of that size, O(|A|³): one elastic-net fit took 213 s.
Coordinate descent with residual ("naive") updates costs O(n) per coordinate,
which is glmnet's choice for p > n (Friedman, Hastie & Tibshirani 2010), but
it is a sequential loop that NumPy cannot vectorize: 3 µs per coordinate in
Python against ~2 µs per n = 2,000 coordinate in compiled code. So this one
kernel is compiled with numba and cached on disk. This module imports numba
and is itself imported only where the rows engine runs coordinate descent
(:class:`~pipeline.solvers.rows.RowProblem`, lazily): the Gram engine and
the driver never import numba. The kernels are module-level functions: numba
cannot find cached code for functions defined inside a function (it compiled
them anew in every process, 0.6–0.9 s each).

One update of coordinate j (column x_j of X, mean m_j, inverse scale
``t_j = 1/s_j``, ``xv_j = Σv x̃_j²/Σv``), on the residual ``r = y_c − X̃β``:

    g_j = t_j (Σ vᵢ x_ij rᵢ − m_j Σ vᵢ rᵢ) / Σv
    β_j ← clip(S(g_j + xv_j β_j, a_j) / (xv_j + m_j), lo_j, hi_j)   (S: soft threshold)
    r   ← r − Δ t_j (x_j − m_j)                         (Δ: the change of β_j)

For sparse columns the centring term enters through a scalar offset
``o`` (``r = r_stored + o``), so an update touches the column's non-zeros
only. Rows of weight 0 (a fold's held-out rows) are updated too: their
residual then gives the held-out predictions for free.

The penalty is per coordinate (``a_j = λ1 f_j``, ``m_j = λ2 f_j`` with penalty factors f, and limits
``lo_j ≤ 0 ≤ hi_j``: :mod:`.controls`); the plain penalty passes ``f = 1`` and infinite limits. The
same update on a Gram (:func:`sweep_gram`, glmnet's "covariance" updates) serves problems with
penalty factors or limits on the Gram engine, and on a working set's Gram block of the rows engine.
"""

from __future__ import annotations

from typing import Any

from numba import njit

__all__ = ["kernels", "sweep_dense", "sweep_gram", "sweep_sparse", "warm", "warm_gram"]


@njit(cache=True, nogil=True, inline="always")
def _coordinate(g: float, old: float, xv_k: float, a: float, m: float, lo: float,
                hi: float) -> float:  # pragma: no cover
    """The coordinate's minimizer: ``clip(S(g + xv_k·old, a) / (xv_k + m), lo, hi)`` (S the soft threshold),
    g the smooth part's negative gradient at ``old``; 0 is inside every box (lo ≤ 0 ≤ hi)."""
    z = g + xv_k * old
    t = abs(z) - a
    if t <= 0.0:
        return 0.0
    b = (t if z > 0.0 else -t) / (xv_k + m)
    return hi if b > hi else (lo if b < lo else b)


@njit(cache=True, nogil=True)
def sweep_dense(X: Any, cols: Any, mean: Any, inv_scale: Any, xv: Any, v: Any, sum_w: float, svr: float,
                r: Any, beta: Any, order: Any, a: Any, m2: Any, lo: Any, hi: Any) -> float:  # pragma: no cover
    n = r.shape[0]
    biggest = 0.0
    for k in order:
        j = cols[k]
        t = inv_scale[j]
        m = mean[j]
        dot = 0.0
        for i in range(n):
            dot += v[i] * X[i, j] * r[i]
        old = beta[k]
        new = _coordinate(t * (dot - m * svr) / sum_w, old, xv[k], a[k], m2[k], lo[k], hi[k])
        if new != old:
            delta = new - old
            beta[k] = new
            f = delta * t
            for i in range(n):
                r[i] -= f * (X[i, j] - m)
            change = xv[k] * delta * delta
            if change > biggest:
                biggest = change
    return biggest


@njit(cache=True, nogil=True)
def sweep_sparse(data: Any, indices: Any, indptr: Any, cols: Any, mean: Any, inv_scale: Any, vx: Any, xv: Any,
                 v: Any, sum_w: float, svr: float, r: Any, offset: Any, beta: Any, order: Any, a: Any, m2: Any,
                 lo: Any, hi: Any) -> float:  # pragma: no cover
    biggest = 0.0
    for k in order:
        j = cols[k]
        t = inv_scale[j]
        m = mean[j]
        dot = offset[0] * vx[j]  # Σ v x (r_stored + o) over the non-zeros
        for p in range(indptr[j], indptr[j + 1]):
            i = indices[p]
            dot += v[i] * data[p] * r[i]
        old = beta[k]
        new = _coordinate(t * (dot - m * svr) / sum_w, old, xv[k], a[k], m2[k], lo[k], hi[k])
        if new != old:
            delta = new - old
            beta[k] = new
            f = delta * t
            for p in range(indptr[j], indptr[j + 1]):
                r[indices[p]] -= f * data[p]
            offset[0] += f * m
            change = xv[k] * delta * delta
            if change > biggest:
                biggest = change
    return biggest


@njit(cache=True, nogil=True)
def sweep_gram(G: Any, c: Any, beta: Any, order: Any, a: Any, m2: Any, lo: Any,
               hi: Any) -> float:  # pragma: no cover
    """One sweep over ``order`` on a Gram: ``c = q − Gβ`` (the smooth part's negative gradient without the
    ``m`` term) is kept current, ``O(p)`` per change. Returns the largest ``G_jj Δβ_j²``."""
    p = c.shape[0]
    biggest = 0.0
    for j in order:
        old = beta[j]
        d = G[j, j]
        new = _coordinate(c[j], old, d, a[j], m2[j], lo[j], hi[j])
        if new != old:
            delta = new - old
            beta[j] = new
            for i in range(p):
                c[i] -= G[i, j] * delta
            change = d * delta * delta
            if change > biggest:
                biggest = change
    return biggest


def kernels() -> tuple[Any, Any]:
    """``(sweep_dense, sweep_sparse)``: compiled at their first call in a process, or loaded from numba's cache."""
    return sweep_dense, sweep_sparse


def warm_gram() -> None:
    """Load (or compile) :func:`sweep_gram` for the argument types :mod:`.box_gram` passes (C-ordered float64
    Gram, int64 order): problems with penalty factors or limits, on either engine."""
    import numpy as np

    p = 2
    sweep_gram(np.eye(p), np.ones(p), np.zeros(p), np.arange(p, dtype=np.int64), np.zeros(p), np.zeros(p),
               np.full(p, -np.inf), np.full(p, np.inf))


def warm(sparse: bool) -> None:
    """Load (or compile) the kernel for the argument types :class:`~pipeline.solvers.rows.RowProblem` passes.

    Loading a kernel from numba's cache costs ~0.8 s at its first call in a
    process (~0.3 s for each further signature). A process that forks
    workers calls this once so that no worker pays it: the dense kernel for
    a Fortran-ordered float64 matrix, the sparse one for CSC arrays with
    int32 indices (scipy's default below 2³¹ non-zeros).
    """
    import numpy as np

    sweep_dense, sweep_sparse = kernels()
    one, ints, zero = np.ones(2), np.arange(2, dtype=np.int64), np.zeros(2)
    box = (zero, zero, np.full(2, -np.inf), np.full(2, np.inf))
    if sparse:
        idx = np.arange(2, dtype=np.int32)
        sweep_sparse(one.copy(), idx, np.arange(3, dtype=np.int32), ints, one, one, one, one, one, 2.0, 0.0,
                     one.copy(), np.zeros(1), np.zeros(2), ints, *box)
    else:
        sweep_dense(np.asfortranarray(np.eye(2)), ints, one, one, one, one, 2.0, 0.0, one.copy(), np.zeros(2), ints,
                    *box)
