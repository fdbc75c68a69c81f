"""The standardized design of a problem held as rows: products with X̃ without forming X̃ or XᵀX.

For wide data (p ≫ n) no p × p matrix can exist. The rows are kept as they
are, dense or ``scipy.sparse``, and every quantity a solver needs is a product:

    X̃ = (X − 1 x̄ᵀ) S⁻¹          (centred if an intercept is fitted, scaled if standardized)
    X̃ᵀ V r / Σv = S⁻¹ (Xᵀ(v∘r) − x̄ Σ(v∘r)) / Σv
    X̃ β        = X (S⁻¹β) − 1 (x̄ᵀ S⁻¹β)

with row weights v (the sample weights on the problem's rows, 0 elsewhere: a
fold's training problem is the whole row set with its held-out rows weighted
0, so no row is copied). Centring never densifies a sparse X: it enters as the
rank-one correction above, as glmnet does. The means and scales are the
weighted ones of :class:`~pipeline.solvers.GramProblem` (glmnet's
semantics): ``s_j`` is the weighted standard deviation (root mean square
without an intercept); degenerate columns (constant, or all zero) are left
out of the problem and get coefficient 0.

Gram blocks ``X̃_Aᵀ V X̃_B / Σv`` of a few columns are formed from centred
columns for dense X (no cancellation however large the means); for sparse X
from ``X_AᵀVX_B − Σv x̄_A x̄_Bᵀ`` (sparse columns have small means).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from .split_gram import split_for, split_weighted_gram
from .stats import ROWS_CONSTANT_RTOL, varying_columns

__all__ = ["RowDesign", "dense_weighted_gram", "is_sparse"]

OPERATOR_BLOCK_BYTES = 256 * 2**20  # largest copy of columns a support operator keeps
_BLOCK_BYTES = 2**20  # rows of C-ordered X̃ copied at a time when forming a weighted Gram (kept in cache) ...
_BLOCK_BYTES_F = 8 * 2**20  # ... and of Fortran-ordered X̃ (each column's piece a contiguous run)
_SINGLE_TINY = 1e-28  # a float32 Gram with a diagonal entry below this (float32's normal range ends at 1e-38) is
#                       formed again in float64, as is one that overflowed


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a ``scipy.sparse`` matrix or array (checked without importing scipy)."""
    return hasattr(X, "tocsr") and hasattr(X, "nnz")


class RowDesign:
    """A weighted, centred and scaled view of rows ``X`` (n × p, dense or sparse); see the module docstring.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of shape (n, p)
        The rows, kept as given (a sparse matrix is used in CSR form).
    y : ndarray of shape (n,)
    v : ndarray of shape (n,)
        Row weights of the problem: the sample weights, 0 for rows that are
        not part of it (a fold's held-out rows). Their sum must be positive.
    fit_intercept, standardize : bool
    scale : ndarray of shape (p,), optional
        Column scales fixed by the caller instead of the weighted standard deviations (a GLM's quadratic
        models keep the scale of the sample weights while their IRLS weights change; columns with scale 0
        are left out).
    """

    def __init__(self, X: Any, y: np.ndarray, v: np.ndarray, *, fit_intercept: bool = True,
                 standardize: bool = True, scale: np.ndarray | None = None) -> None:
        self.sparse = is_sparse(X)
        # columns contiguous: coordinate descent reads one column at a time, and Xᵀr is as fast either way
        self.X: Any = X.tocsc() if self.sparse else np.asfortranarray(X, dtype=np.float64)
        self.v = np.asarray(v, dtype=np.float64)
        self.sum_w = float(self.v.sum())
        if not self.sum_w > 0:
            raise ValueError("the problem's rows must have a positive total weight; check the weights and folds.")
        self.fit_intercept, self.standardize = fit_intercept, standardize
        n, p = self.X.shape
        self.n_rows, self.n_features = n, p
        self.rows = np.flatnonzero(self.v > 0)
        y = np.asarray(y, dtype=np.float64)
        self.y_center = float(self.v @ y / self.sum_w) if fit_intercept else 0.0
        self.y_c = np.where(self.v > 0, y - self.y_center, 0.0)
        mean = self._xt_raw(self.v) / self.sum_w if fit_intercept else np.zeros(p)
        var = self._column_variance(mean, centred=fit_intercept)
        if fit_intercept:
            kept = varying_columns(var, mean, ROWS_CONSTANT_RTOL)  # implicit centring: see the constant
        else:
            kept = var > 0
        if scale is not None:
            kept &= np.asarray(scale) > 0
        self.x_center = mean
        self.x_var = var
        self.kept = kept
        self.cols = np.flatnonzero(kept)
        self.x_scale = np.ones(p)
        if scale is not None:
            self.x_scale[self.cols] = np.asarray(scale, dtype=np.float64)[self.cols]
        elif standardize:
            self.x_scale[self.cols] = np.sqrt(var[self.cols])

    # ------------------------------------------------------------ set-up
    def _xt_raw(self, r: np.ndarray) -> np.ndarray:
        """``Xᵀ r`` (raw X, all columns)."""
        return np.asarray(self.X.T @ r).ravel()

    def _column_variance(self, mean: np.ndarray, *, centred: bool) -> np.ndarray:
        """Weighted variance of each column about ``mean``, the columns' weighted means when ``centred`` (else
        0: the mean square)."""
        if self.sparse:
            ex2 = self._xt_raw_squared(self.v) / self.sum_w
            return np.maximum(ex2 - mean * mean, 0.0)
        var = np.zeros(self.n_features)
        step = max(1, 2**22 // max(1, self.n_rows))  # columns at a time: no n × p temporary
        for a in range(0, self.n_features, step):
            d = self.X[:, a : a + step] - mean[a : a + step]
            # Björck's corrected two-pass sum: the rounding of ``mean`` (δ) adds Σv δ² to Σv d², which the
            # correction (Σv d)²/Σv takes out again; a constant column then has variance 0 up to rounding
            var[a : a + step] = self.v @ (d * d) - ((self.v @ d) ** 2 / self.sum_w if centred else 0.0)
        return np.maximum(var, 0.0) / self.sum_w

    def _xt_raw_squared(self, r: np.ndarray) -> np.ndarray:
        """``(X∘X)ᵀ r`` for sparse X."""
        sq = self.X.multiply(self.X)
        return np.asarray(sq.T @ r).ravel()

    # ------------------------------------------------------------ products
    @property
    def n_kept(self) -> int:
        return int(self.cols.size)

    def xt(self, r: np.ndarray) -> np.ndarray:
        """``X̃ᵀ V r / Σv`` over the kept columns: shape (n_kept,). One pass over X."""
        vr = self.v * r
        g = self._xt_raw(vr)[self.cols]
        if self.fit_intercept:
            g -= self.x_center[self.cols] * float(vr.sum())
        return g / (self.x_scale[self.cols] * self.sum_w)

    def x(self, idx: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``X̃[:, idx] β`` for kept-column positions ``idx``: shape (n,)."""
        if idx.size == 0:
            return np.zeros(self.n_rows)
        cols = self.cols[idx]
        b = beta / self.x_scale[cols]
        if 4 * cols.size > self.n_features:  # many columns: one pass over X, no copy of them
            full = np.zeros(self.n_features)
            full[cols] = b
            out = np.asarray(self.X @ full).ravel()
        else:
            out = np.asarray(self.X[:, cols] @ b).ravel()
        if self.fit_intercept:
            out -= float(self.x_center[cols] @ b)
        return out

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``X̃_aᵀ V X̃_b / Σv`` for kept-column positions ``a`` and ``b``: shape (|a|, |b|)."""
        ca, cb = self.cols[a], self.cols[b]
        if self.sparse:
            Xa = self.X[:, ca]
            Xb = self.X[:, cb]
            block = np.asarray((Xa.T @ Xb.multiply(self.v[:, None]).tocsc()).todense())
            if self.fit_intercept:
                block -= self.sum_w * np.outer(self.x_center[ca], self.x_center[cb])
        else:
            rows = self.rows
            Xa = self.X[np.ix_(rows, ca)] - self.x_center[ca]
            Xb = Xa if a is b else self.X[np.ix_(rows, cb)] - self.x_center[cb]
            block = Xa.T @ (self.v[rows, None] * Xb)
        return block / (np.outer(self.x_scale[ca], self.x_scale[cb]) * self.sum_w)

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """``X̃[rows, idx]`` as a dense array (the problem's rows only): shape (n_rows_in_problem, |idx|)."""
        cols = self.cols[idx]
        if self.sparse:
            block = np.asarray(self.X[:, cols][self.rows].todense())
        else:
            block = self.X[np.ix_(self.rows, cols)]
        if self.fit_intercept:
            block -= self.x_center[cols]
        block /= self.x_scale[cols]
        return block

    def weighted_columns(self, idx: np.ndarray) -> np.ndarray | None:
        """``A = V^{1/2} X̃[rows, idx] / √Σv`` as a dense array (``AᵀA`` is the Gram block of ``idx``), or None
        when it would take more than :data:`OPERATOR_BLOCK_BYTES`."""
        if self.rows.size * idx.size * 8 > OPERATOR_BLOCK_BYTES:
            return None
        A = self.columns(idx)
        A *= np.sqrt(self.v[self.rows] / self.sum_w)[:, None]
        return A

    def support_operator(self, idx: np.ndarray, copy: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        """``U ↦ X̃_idxᵀ V X̃_idx U / Σv`` for (|idx|, k) blocks U: the Gram block of ``idx`` as an operator.

        With ``copy`` the weighted columns are copied once when they are at most half of X and take at most
        :data:`OPERATOR_BLOCK_BYTES` (every product is then two BLAS calls on them); otherwise each product
        is two passes over all of X (about as fast when ``idx`` is most of the columns, and nothing to copy).
        Sparse columns are always copied with ``copy`` (their non-zeros on the problem's rows, still sparse):
        a product then costs the support's non-zeros, not all of X's (n = 10⁴, p = 10⁵ at 1%: a support of
        5,000 columns, 0.6 ms against 15 ms).
        """
        if copy and self.sparse:
            return self._sparse_support_operator(idx)
        B = self.weighted_columns(idx) if copy and 2 * idx.size <= self.n_features else None
        if B is not None:
            return lambda U: B.T @ (B @ U)
        cols = self.cols[idx]
        scale = self.x_scale[cols]

        def apply(U: np.ndarray) -> np.ndarray:
            full = np.zeros((self.n_features, U.shape[1]))
            full[cols] = U / scale[:, None]
            XU = np.asarray(self.X @ full)
            if self.fit_intercept:
                XU = XU - self.x_center @ full
            W = self.v[:, None] * XU
            XtW = np.asarray(self.X.T @ W)[cols]
            if self.fit_intercept:
                XtW = XtW - np.outer(self.x_center[cols], W.sum(axis=0))
            return XtW / (scale[:, None] * self.sum_w)

        return apply

    def _sparse_support_operator(self, idx: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`support_operator` on a sparse copy of the columns ``idx`` on the problem's rows.

        With ``B = V^{1/2} X[rows, idx] / √Σv`` (raw, still sparse), the columns' weighted means m and
        scales s: ``X̃ᵀVX̃/Σv = S⁻¹(BᵀB − m mᵀ)S⁻¹`` (since ``XᵀV1 = Σv·m``), so ``G U = S⁻¹(Bᵀ(Bu) − m(mᵀu))``
        with ``u = S⁻¹U``: centring never fills B in, as in the full-X product.
        """
        cols = self.cols[idx]
        scale = self.x_scale[cols]
        sqrt_v = np.sqrt(self.v[self.rows] / self.sum_w)
        B = self.X[:, cols][self.rows].multiply(sqrt_v[:, None]).tocsr()
        Bt = B.T.tocsr()
        mean = self.x_center[cols] if self.fit_intercept else None

        def apply(U: np.ndarray) -> np.ndarray:
            u = U / scale[:, None]
            out = np.asarray(Bt @ np.asarray(B @ u))
            if mean is not None:
                out = out - np.outer(mean, mean @ u)
            return out / scale[:, None]

        return apply

    def kept_gram(self) -> np.ndarray:
        """``X̃ᵀVX̃/Σv`` over every kept column of dense X (n_kept × n_kept): one blocked pass over the rows."""
        assert not self.sparse
        m = self.x_center[self.cols] if self.fit_intercept else np.zeros(self.n_kept)
        G, _, _ = dense_weighted_gram(self.X, self.cols, m, self.x_scale[self.cols], self.v, np.zeros(self.n_rows))
        return G / self.sum_w

    def to_original_scale(self, beta: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients (all p, 0 for left-out columns) and intercept on the scale of the data."""
        coef = np.zeros(self.n_features)
        coef[self.cols] = beta / self.x_scale[self.cols]
        intercept = self.y_center - float(self.x_center @ coef) if self.fit_intercept else 0.0
        return coef, intercept


def dense_weighted_gram(X: np.ndarray, cols: np.ndarray, m: np.ndarray, s: np.ndarray, u: np.ndarray,
                        zc: np.ndarray, single: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X̃ᵀUX̃``, ``X̃ᵀu`` and ``X̃ᵀ(u∘zc)`` of dense X (X̃ = (X − m)/s on ``cols``), in row blocks.

    Each block is copied once as ``A = √u ∘ (X − m)`` into a buffer of X's memory order (rows of weight 0, a
    fold's held-out rows, are zero there: no gather of the fold's rows) and its Gram taken by BLAS ``syrk``
    (AᵀA: half the products of a general matrix product; a Fortran-ordered A directly, a C-ordered one as its
    transpose, so no copy); the two vectors are one product with the block still in cache, and the scales
    ``1/s`` are applied to the p × p results. ``single``: the block and its Gram in float32 (a metric, not a
    model: :mod:`.glm_chord`), half the memory traffic and twice the flops per cycle; the sums over blocks stay
    float64. Measured on 10⁶ × 100 rows in Fortran order (a sweep's rows), one core: 0.30 s per Gram with
    8 MiB blocks (0.21 s in float32), against 0.43 s for 1 MiB blocks copied to C order; C-ordered X is
    fastest with 1 MiB blocks."""
    from scipy.linalg.blas import dsyrk, ssyrk

    split = split_for(X, cols)  # many mostly-zero columns (level indicators): at the cost of their non-zeros
    if split is not None:
        return split_weighted_gram(X, split, cols, m, s, u, zc, functools.partial(dense_weighted_gram, single=single))
    n, p = X.shape[0], cols.size
    full = p == X.shape[1] and bool(np.all(cols == np.arange(p)))
    G, sq = np.zeros((p, p)), np.zeros((p, 2))
    if p == 0:  # an empty working set: nothing to multiply (BLAS refuses a 0 × 0 result)
        return G, np.zeros(0), np.zeros(0)
    dtype, syrk = (np.float32, ssyrk) if single else (np.float64, dsyrk)
    fortran = bool(X.flags.f_contiguous) and not X.flags.c_contiguous
    root = np.sqrt(u).astype(dtype, copy=False)
    step = max(1, (_BLOCK_BYTES_F if fortran else _BLOCK_BYTES) // (np.dtype(dtype).itemsize * p))
    buf = np.empty((min(step, n), p), dtype=dtype, order="F" if fortran else "C")
    for a in range(0, n, step):
        r = slice(a, min(n, a + step))
        if not np.any(root[r]):
            continue
        A = buf[: r.stop - a]
        np.subtract(X[r] if full else X[r, cols], m, out=A, casting="same_kind")
        A *= root[r, None]
        G += syrk(1.0, A, trans=1) if fortran else syrk(1.0, A.T, trans=0)  # fills the upper triangle
        sq += A.T @ np.column_stack((root[r], root[r] * zc[r])).astype(dtype, copy=False)
    if single and not (np.all(np.isfinite(G)) and float(np.min(np.diag(G))) > _SINGLE_TINY):
        return dense_weighted_gram(X, cols, m, s, u, zc)  # beyond float32's range (huge or tiny raw values)
    inv_s = 1.0 / s
    G = (G + np.triu(G, 1).T) * np.outer(inv_s, inv_s)
    return G, sq[:, 0] * inv_s, sq[:, 1] * inv_s
