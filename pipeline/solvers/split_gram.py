"""Weighted Grams of dense rows whose columns are mostly zero (a categorical column's level indicators).

A binomial or Poisson fit forms ``X̃ᵀUX̃`` at its Newton steps (IRLS weights ``u``), and
:func:`~.design.dense_weighted_gram` takes it by a ``syrk`` of all ``p`` columns: ``n p²``
operations. For a table with text columns of many levels most of those columns are
indicators, non-zero on a few rows each: 80,000 rows of 1,060 columns (text columns of 50,
200 and 800 levels beside 10 numbers) took about 3 s per Gram, where the rows hold 14
non-zeros each.

The columns are split as in :mod:`.sparse_stats`: those non-zero on at most half the rows
are kept once as a CSR matrix ``S`` (built the first time the rows are met, and kept
while they live), the others go through the dense ``syrk``. With ``D̃ = √u (X_D − m_D)``
the dense part and ``m_S`` the sparse columns' centres,

    Σ u (s − m_S)(s − m_S)ᵀ = SᵀUS − m_S (Sᵀu)ᵀ − (Sᵀu) m_Sᵀ + (Σu) m_S m_Sᵀ
    Σ u (s − m_S) d̃ᵀ        = SᵀU (X_D − m_D) − m_S (Σ u (x_D − m_D))ᵀ

cost the non-zeros times the dense columns. The shift cancels little: with ``m`` the design's
centre (the sample-weighted mean, of a column zero on at least half the rows) and ``f_u`` the
``u``-weighted share of the column's non-zero rows, ``Σ u s² ≤ 2 Σ u (s − m)² + 2 m² Σ u`` and
``m² Σ u ≤ Σ u (s − m)² / (1 − f_u)``, so a few bits are lost unless the IRLS weights all but
leave out the column's zero rows (then ``log₁₀ 1/(1 − f_u)`` digits); an indicator's
``(1 − m)² ≥ 1/4`` bounds the loss by two bits whatever the weights. Tests hold the result to
1e-13 of numpy's centred products.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["SparseColumns", "sparse_columns", "split_for", "split_weighted_gram"]

_MIN_SPARSE = 32  # fewer mostly-zero columns than this: the dense syrk alone
_MAX_DENSITY = 1 / 8  # the sparse columns' share of non-zeros above which the split does not pay
_CACHE: dict[int, SparseColumns | None] = {}


@dataclass(frozen=True)
class SparseColumns:
    """The mostly-zero columns of a row matrix: which they are, and those columns as CSR."""

    is_sparse: np.ndarray  # per column of X
    position: np.ndarray  # per column of X: its index among the sparse columns (-1: a dense column)
    S: Any  # scipy.sparse.csr_matrix of X[:, is_sparse]
    dense: np.ndarray  # the indices of the other columns

    def times(self, X: np.ndarray, r: slice, B: np.ndarray) -> np.ndarray:
        """``X[r] @ B`` (``B`` of X's width) at the cost of the rows' non-zeros in the sparse columns."""
        return X[r][:, self.dense] @ B[self.dense] + self.S[r] @ B[self.is_sparse]

    def transposed_times(self, X: np.ndarray, r: slice, R: np.ndarray) -> np.ndarray:
        """``X[r]ᵀ @ R`` (``R`` of the rows' height), the same way."""
        out = np.empty((X.shape[1], R.shape[1]))
        out[self.dense] = X[r][:, self.dense].T @ R
        out[self.is_sparse] = np.asarray(self.S[r].T @ R)
        return out


def split_for(X: np.ndarray, cols: np.ndarray) -> SparseColumns | None:
    """The split of ``X``'s columns when the working set ``cols`` holds enough mostly-zero ones to pay."""
    if cols.size < 2 * _MIN_SPARSE:
        return None
    split = sparse_columns(X)
    return split if split is not None and int(split.is_sparse[cols].sum()) >= _MIN_SPARSE else None


def sparse_columns(X: np.ndarray) -> SparseColumns | None:
    """The split of ``X``'s columns, or None when too few are mostly zero (or ``X`` is not a dense array);
    computed once per array."""
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.shape[1] < 2 * _MIN_SPARSE:
        return None
    key = id(X)
    if key not in _CACHE:
        _CACHE[key] = _split(X)
        weakref.finalize(X, _CACHE.pop, key, None)
    return _CACHE[key]


def _split(X: np.ndarray) -> SparseColumns | None:
    from scipy import sparse

    n, p = X.shape
    nonzero = np.count_nonzero(X, axis=0)
    is_sparse = 2 * nonzero <= n
    if is_sparse.sum() < _MIN_SPARSE or nonzero[is_sparse].sum() > _MAX_DENSITY * n * is_sparse.sum():
        return None
    position = np.full(p, -1)
    position[is_sparse] = np.arange(int(is_sparse.sum()))
    S = sparse.csr_matrix(X[:, is_sparse])
    return SparseColumns(is_sparse, position, S, np.flatnonzero(~is_sparse))


def split_weighted_gram(X: np.ndarray, split: SparseColumns, cols: np.ndarray, m: np.ndarray, s: np.ndarray,
                        u: np.ndarray, zc: np.ndarray, dense_gram: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X̃ᵀUX̃``, ``X̃ᵀu`` and ``X̃ᵀ(u∘zc)`` over ``cols`` (X̃ = (X − m)/s), as
    :func:`~.design.dense_weighted_gram` gives them; ``dense_gram`` is that function, for the dense columns."""
    from scipy.linalg.blas import dger

    sp = split.is_sparse[cols]
    id_d, id_s = np.flatnonzero(~sp), np.flatnonzero(sp)
    cd, cs = cols[id_d], cols[id_s]
    G_dd, sx_d, q_d = dense_gram(X, cd, m[id_d], s[id_d], u, zc)
    inv_s = 1.0 / s[id_s]
    S = split.S[:, split.position[cs]].multiply(inv_s[None, :]).tocsr()  # s / s_j: the products come scaled
    Su = S.multiply(u[:, None]).tocsr()  # u s: each product below carries u once
    ms = m[id_s] * inv_s
    sum_u = float(u.sum())
    su1 = np.asarray(Su.sum(axis=0)).ravel()  # Σ u s
    G_ss = np.asarray((S.T @ Su).toarray())
    # − m Σusᵀ − Σus mᵀ + Σu m mᵀ as two rank-one terms, in place (BLAS dger on the array's transpose, which
    # LAPACK reads in its own order: the update is symmetric, so updating the transpose updates the array)
    half = su1 - 0.5 * sum_u * ms
    G_ss = dger(-1.0, ms, half, a=G_ss.T, overwrite_a=1).T  # (f2py returns the array it wrote)
    G_ss = dger(-1.0, half, ms, a=G_ss.T, overwrite_a=1).T
    Xd = (X[:, cd] - m[id_d]) / s[id_d] if cd.size else np.zeros((X.shape[0], 0))
    G_sd = np.asarray(Su.T @ Xd)  # Σ u s x̃_Dᵀ, then shifted by m_S Σ u x̃_Dᵀ
    G_sd -= ms[:, None] * sx_d
    p = cols.size
    G, sx, q = np.empty((p, p)), np.empty(p), np.empty(p)
    G[np.ix_(id_d, id_d)] = G_dd
    if id_s.size and int(id_s[-1]) - int(id_s[0]) + 1 == id_s.size:  # adjacent text columns' levels: a block
        at = slice(int(id_s[0]), int(id_s[-1]) + 1)
        G[at, at] = G_ss
        G[at, id_d] = G_sd  # (a slice beside an index array selects the block, as np.ix_ does)
        G[id_d, at] = G_sd.T
    else:
        G[np.ix_(id_s, id_s)] = G_ss
        G[np.ix_(id_s, id_d)] = G_sd
        G[np.ix_(id_d, id_s)] = G_sd.T
    sx[id_d], sx[id_s] = sx_d, su1 - ms * sum_u
    q[id_d], q[id_s] = q_d, np.asarray(Su.T @ zc).ravel() - ms * float(u @ zc)
    return G, sx, q
