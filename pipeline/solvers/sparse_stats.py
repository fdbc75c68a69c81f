"""The statistics of each label's rows of a sparse (CSR) block, at the cost of its non-zeros.

A block whose columns are mostly zero (a categorical column's level indicators, a sparse
``.npz`` source) would otherwise be densified and put through a ``syrk`` of all ``p``
columns: ``n p²`` operations where ``n r²`` suffice (``r`` non-zeros per row). A
65,536-row block of a table with three text columns of 50, 200 and 800 levels (1,061
columns, 4 non-zeros per row besides its numbers) took 1.2 s that way.

The columns are split by their share of non-zero rows in the block:

- a *dense* column (non-zero in more than half the rows) is shifted by the block's
  weighted mean ``m`` and goes through the chunked ``syrk`` of
  :func:`~pipeline.solvers.stats.label_stats`, in ``Z = [√w (x − m), √w, √w (y − ȳ)]``;
- a *sparse* column ``s`` is kept as it is, and its products are shifted afterwards:

      Σ w (s − mₛ) z̃ᵀ        = Sᵀ W Z̃ − mₛ (Σ w z̃)ᵀ
      Σ w (s − mₛ)(s − mₛ)ᵀ  = Sᵀ W S − mₛ Σ w sᵀ − Σ w s mₛᵀ + W mₛ mₛᵀ

  where ``z̃`` is a row of ``Z`` without its ``√w`` and ``Σ w z̃``, ``Σ w s``, ``W`` are
  the sums against the ``√w`` column. ``SᵀWS`` and ``SᵀWZ̃`` cost the non-zeros times
  the number of dense columns.

The shifted products of all columns then go through the same Björck correction as a
dense block's (:func:`~pipeline.solvers.stats.from_shifted_products`), so both give the
same statistics up to rounding. No digit is lost to the sparse columns' late shift: a
column non-zero in a share ``f ≤ 1/2`` of the rows has ``Σ w s² ≤ Σ w (s − mₛ)² / (1 − f)``,
so forming its spread from raw products cancels at most one bit (a one-hot indicator's
raw products are exact counts when the rows are unweighted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .stats import SuffStats, from_shifted_products, label_rows, without_weight

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

__all__ = ["sparse_label_stats"]

_CHUNK_BYTES = 1 << 20  # a chunk of the dense columns' Z stays in cache, as in label_stats
_CHUNK_ROWS_MIN = 256


def sparse_label_stats(X: csr_matrix, y: np.ndarray, sample_weight: np.ndarray | None, labels: np.ndarray,
                       n_labels: int) -> list[SuffStats]:
    """The statistics of the rows of each label ``0 … n_labels − 1`` of a CSR block ``X`` (empty for a label
    without rows), equal to :func:`~pipeline.solvers.stats.label_stats` of ``X.toarray()`` up to rounding."""
    from scipy import sparse

    X = sparse.csr_matrix(X, dtype=np.float64)
    n, p = X.shape
    y, w, order, bounds, sum_w = label_rows(y, sample_weight, labels, n_labels)
    if n == 0 or sum_w == 0.0:
        return without_weight(p, bounds)
    m = np.asarray(X.sum(axis=0)).ravel() / n if w is None else np.asarray(X.T @ w).ravel() / sum_w
    my = float(y.mean() if w is None else (w @ y) / sum_w)
    dense_cols = np.flatnonzero(2 * np.bincount(X.indices, minlength=p) > n)
    sparse_cols = np.setdiff1d(np.arange(p), dense_cols, assume_unique=True)
    D = X[:, dense_cols].toarray() if dense_cols.size else np.empty((n, 0))
    S = X[:, sparse_cols].tocsr()
    layout = np.concatenate([dense_cols, [p, p + 1], sparse_cols])  # where Z's columns, then S's, go in g
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[a:b]
        gz, raw_sz, raw_ss = _label_products(D, m[dense_cols], S[rows], y, my, rows, w)
        upper = np.zeros((p + 2, p + 2))
        upper[np.ix_(layout, layout)] = _shifted(gz, raw_sz, raw_ss, m[sparse_cols])
        sum_w_label = float(b - a) if w is None else float(w[rows].sum())
        out.append(from_shifted_products(np.triu(upper), m, my, int(b - a), sum_w_label))
    return out


def _label_products(D: np.ndarray, m_dense: np.ndarray, S: csr_matrix, y: np.ndarray, my: float, rows: np.ndarray,
                    w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One label's raw products: ``ZᵀZ`` (symmetric), ``Sᵀ W Z̃`` and ``Sᵀ W S``, from the block's dense columns
    ``D`` and target ``y`` (the label's ``rows`` gathered a cache-sized chunk at a time) and the label's sparse
    rows ``S``."""
    from scipy.linalg.blas import dsyrk

    q = m_dense.size + 2
    if w is not None:
        S = S.multiply(np.sqrt(w[rows])[:, None]).tocsr()  # √w s: the products with √w z̃ carry w once
    chunk = max(_CHUNK_ROWS_MIN, _CHUNK_BYTES // (8 * q))
    buf = np.empty((min(rows.size, chunk), q))
    gz = np.zeros((q, q), order="F")
    sz = np.zeros((S.shape[1], q))
    for lo in range(0, rows.size, chunk):
        part = rows[lo : lo + chunk]
        Z = buf[: part.size]
        np.subtract(D[part], m_dense, out=Z[:, : q - 2])
        Z[:, q - 2] = 1.0
        np.subtract(y[part], my, out=Z[:, q - 1])
        if w is not None:
            Z *= np.sqrt(w[part])[:, None]
        gz = dsyrk(1.0, Z.T, beta=1.0, c=gz, trans=0, lower=0, overwrite_c=1)  # upper triangle of ZᵀZ
        sz += S[lo : lo + part.size].T @ Z
    gz = gz + np.triu(gz, 1).T
    return gz, sz, np.asarray((S.T @ S).toarray())


def _shifted(gz: np.ndarray, raw_sz: np.ndarray, raw_ss: np.ndarray, m_sparse: np.ndarray) -> np.ndarray:
    """The products of ``[Z̃, S − mₛ]`` in that order (symmetric), from the raw ones (module docstring)."""
    q = gz.shape[0]
    sum_wz = gz[q - 2]  # Σ w z̃ (the √w column against Z)
    sum_ws = raw_sz[:, q - 2]  # Σ w s
    weight = float(gz[q - 2, q - 2])
    sz = raw_sz - np.outer(m_sparse, sum_wz)
    ss = raw_ss - np.outer(m_sparse, sum_ws)
    ss -= np.outer(sum_ws, m_sparse)
    ss += weight * np.outer(m_sparse, m_sparse)
    return np.block([[gz, sz.T], [sz, ss]])
