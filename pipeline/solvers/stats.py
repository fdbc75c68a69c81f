"""Mergeable sufficient statistics of a weighted least-squares problem.

For squared loss everything a fit needs is a sum over rows: the weight total
``W = Σ wᵢ``, the weighted means ``x̄ = Σ wᵢ xᵢ / W`` and ``ȳ``, and the centred
cross-products

    Cxx = Σ wᵢ (xᵢ − x̄)(xᵢ − x̄)ᵀ      (p × p)
    Cxy = Σ wᵢ (xᵢ − x̄)(yᵢ − ȳ)       (p,)
    Cyy = Σ wᵢ (yᵢ − ȳ)²

The raw sums the design speaks of (Σw, Σx, Σy, XᵀWX, XᵀWy, yᵀWy) follow from
these (see the properties of :class:`SuffStats`), but we never *store* raw
sums: a column with mean 10⁶ and spread 1 has XᵀX ≈ 10¹² · n, and forming the
variance as XᵀX/n − x̄² would cancel twelve of sixteen digits. Centred
moments are instead merged exactly with the pairwise update of Chan, Golub &
LeVeque (1979), for two parts a and b with δ = x̄_b − x̄_a:

    W   = W_a + W_b
    x̄   = x̄_a + δ · W_b / W
    Cxx = Cxx_a + Cxx_b + (W_a W_b / W) · δ δᵀ

and subtracted (train = total − held-out) by solving the same identity for
the missing part. Within a block the moments come from a two-pass centred
computation with a mean correction (Björck's corrected two-pass algorithm).

Means are kept as ``origin + offset``: the origin is a fixed float (the
first-pass mean of some block) and the offset the small remainder, so the
between-block differences δ keep full relative precision even when the mean
itself is 10⁶ (a plain float mean would be rounded to ulp(10⁶) ≈ 1e-10 at
every merge, and δδᵀ would carry that error into Cxx).
"""

from __future__ import annotations

from collections.abc import Iterable
import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["CONSTANT_RTOL", "ROWS_CONSTANT_RTOL", "SuffStats", "from_shifted_products", "label_stats", "merge_all",
           "varying_columns"]

# A column is constant when its standard deviation is at most this share of its mean's magnitude: about 45 units
# in the last place of the mean, which no spread computed from centred sums of a constant column reaches (its
# rounding is a few units), while real data keep their spread (a blood pressure + 10¹⁴, sd/mean 1.4·10⁻¹³, was
# taken for constant at the 10⁻¹² used before). That is the rule of the statistics' solvers (the Gram engine's
# centred moments); the rows engine keeps 10⁻¹² (ROWS_CONSTANT_RTOL): its products centre implicitly,
# Xᵀr − x̄ Σr, which loses eps·|x̄|/sd of each product (2·10⁻⁴ at |x̄|/sd = 10¹²).
CONSTANT_RTOL = 1e-14
ROWS_CONSTANT_RTOL = 1e-12


def varying_columns(var: np.ndarray, mean: np.ndarray, rtol: float = CONSTANT_RTOL) -> np.ndarray:
    """Which columns vary (their standard deviation above ``rtol``·|mean|), from their variance about
    ``mean``; the others get coefficient 0 in every solver and are noted as constant."""
    return (var > 0) & (np.sqrt(np.maximum(var, 0.0)) > rtol * np.abs(mean))


@dataclass(frozen=True, eq=False)
class SuffStats:
    """Centred, weighted moments of a row block (or of any union of blocks).

    Attributes
    ----------
    n_rows : int
        Number of rows (unweighted), including rows of weight zero.
    sum_w : float
        ``W = Σ wᵢ`` (equals ``n_rows`` without sample weights).
    x_origin, x_offset : ndarray of shape (p,)
        Weighted column means ``x̄ = x_origin + x_offset`` kept as a fixed
        origin plus a small offset (see the module docstring); zero when
        ``sum_w == 0``.
    y_origin, y_offset : float
        The same for the target mean ``ȳ``.
    cxx : ndarray of shape (p, p)
        ``Σ wᵢ (xᵢ − x̄)(xᵢ − x̄)ᵀ``.
    cxy : ndarray of shape (p,)
        ``Σ wᵢ (xᵢ − x̄)(yᵢ − ȳ)``.
    cyy : float
        ``Σ wᵢ (yᵢ − ȳ)²``.
    """

    n_rows: int
    sum_w: float
    x_origin: np.ndarray
    x_offset: np.ndarray
    y_origin: float
    y_offset: float
    cxx: np.ndarray
    cxy: np.ndarray
    cyy: float

    @property
    def x_mean(self) -> np.ndarray:
        """Weighted column means ``x̄`` (rounded to float)."""
        return self.x_origin + self.x_offset

    @property
    def y_mean(self) -> float:
        """Weighted target mean ``ȳ``."""
        return self.y_origin + self.y_offset

    # ------------------------------------------------------------------ build
    @classmethod
    def from_block(
        cls, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> SuffStats:
        """Statistics of one row block, by a corrected two-pass computation.

        Cost: one ``XᵀWX`` product, ``O(n p²)``. Inputs are assumed finite and
        shape-consistent (validated at the API boundary, not here, so that
        this kernel can run on every block without repeating the checks).
        """
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        n, p = X.shape
        if sample_weight is None:
            w = None
            sum_w = float(n)
        else:
            w = np.asarray(sample_weight, dtype=np.float64)
            sum_w = float(w.sum())
        if n == 0 or sum_w == 0.0:
            return cls.empty(p, n_rows=n)
        x_origin = _weighted_mean(X, w, sum_w)
        y_origin = float(_weighted_mean(y, w, sum_w))
        Xc = X - x_origin
        yc = y - y_origin
        # Second pass: the rounding left in the first mean becomes the offset (Björck).
        x_offset = _weighted_mean(Xc, w, sum_w)
        y_offset = float(_weighted_mean(yc, w, sum_w))
        if np.any(x_offset) or y_offset:
            Xc -= x_offset
            yc -= y_offset
        WXc = Xc if w is None else Xc * w[:, None]
        Wyc = yc if w is None else yc * w
        cxx = Xc.T @ WXc
        cxx = 0.5 * (cxx + cxx.T)  # exact symmetry, whatever BLAS did
        return cls(
            n_rows=n,
            sum_w=sum_w,
            x_origin=x_origin,
            x_offset=x_offset,
            y_origin=y_origin,
            y_offset=y_offset,
            cxx=cxx,
            cxy=Xc.T @ Wyc,
            cyy=float(yc @ Wyc),
        )

    @classmethod
    def empty(cls, n_features: int, n_rows: int = 0) -> SuffStats:
        """The neutral element of ``+``: no weight, zero moments."""
        p = int(n_features)
        return cls(
            n_rows=n_rows,
            sum_w=0.0,
            x_origin=np.zeros(p),
            x_offset=np.zeros(p),
            y_origin=0.0,
            y_offset=0.0,
            cxx=np.zeros((p, p)),
            cxy=np.zeros(p),
            cyy=0.0,
        )

    # ------------------------------------------------------------ algebra
    @property
    def n_features(self) -> int:
        return int(self.x_origin.shape[0])

    def __add__(self, other: SuffStats) -> SuffStats:
        """Pairwise (Chan–Golub–LeVeque) merge of two disjoint row sets."""
        _check_same_width(self, other)
        if other.sum_w == 0.0:
            return self._with_rows(self.n_rows + other.n_rows)
        if self.sum_w == 0.0:
            return other._with_rows(self.n_rows + other.n_rows)
        W = self.sum_w + other.sum_w
        # δ = x̄_other − x̄_self, formed from origins and offsets without rounding the means
        dx = ((other.x_origin - self.x_origin) + other.x_offset) - self.x_offset
        dy = ((other.y_origin - self.y_origin) + other.y_offset) - self.y_offset
        f = self.sum_w * other.sum_w / W
        return SuffStats(
            n_rows=self.n_rows + other.n_rows,
            sum_w=W,
            x_origin=self.x_origin,
            x_offset=self.x_offset + dx * (other.sum_w / W),
            y_origin=self.y_origin,
            y_offset=self.y_offset + dy * (other.sum_w / W),
            cxx=self.cxx + other.cxx + f * np.outer(dx, dx),
            cxy=self.cxy + other.cxy + f * dx * dy,
            cyy=self.cyy + other.cyy + f * dy * dy,
        )

    def __sub__(self, part: SuffStats) -> SuffStats:
        """The statistics of ``self`` without the rows of ``part``.

        ``part`` must be a subset of the rows summarised by ``self`` (for
        example a held-out fold of the total). Solves the merge identity for
        the remaining set r: with ``W_r = W − W_b``,
        ``x̄_r = x̄ + (x̄ − x̄_b) W_b / W_r`` and
        ``C_r = C − C_b − (W_r W_b / W) δ δᵀ``, ``δ = x̄_b − x̄_r``.
        """
        _check_same_width(self, part)
        n_rows = self.n_rows - part.n_rows
        if n_rows < 0:
            raise ValueError(
                f"cannot remove {part.n_rows} rows from statistics of {self.n_rows} rows; "
                "the subtracted part must be a subset of the total."
            )
        if part.sum_w == 0.0:
            return self._with_rows(n_rows)
        W_r = self.sum_w - part.sum_w
        if W_r <= 1e-12 * self.sum_w:
            return SuffStats.empty(self.n_features, n_rows=n_rows)
        # the part's mean relative to our origin, then the remainder's offset
        part_x = (part.x_origin - self.x_origin) + part.x_offset
        part_y = (part.y_origin - self.y_origin) + part.y_offset
        x_offset = self.x_offset + (self.x_offset - part_x) * (part.sum_w / W_r)
        y_offset = self.y_offset + (self.y_offset - part_y) * (part.sum_w / W_r)
        dx = part_x - x_offset
        dy = part_y - y_offset
        f = W_r * part.sum_w / self.sum_w
        cxx = self.cxx - part.cxx - f * np.outer(dx, dx)
        cxy = self.cxy - part.cxy - f * dx * dy
        # A column constant on the remaining rows (a category seen only in the held-out
        # part) comes out as cancellation noise of the size of the terms it cancelled,
        # not as 0; left in, it would be standardized by ~1e-5 and fit that noise.
        cancelled = 64 * np.finfo(np.float64).eps * (np.diag(self.cxx) + np.diag(part.cxx) + f * dx * dx)
        constant = np.diag(cxx) <= cancelled
        if constant.any():
            cxx[constant, :] = 0.0
            cxx[:, constant] = 0.0
            cxy[constant] = 0.0
        return SuffStats(
            n_rows=n_rows,
            sum_w=W_r,
            x_origin=self.x_origin,
            x_offset=x_offset,
            y_origin=self.y_origin,
            y_offset=y_offset,
            cxx=0.5 * (cxx + cxx.T),
            cxy=cxy,
            cyy=max(self.cyy - part.cyy - f * dy * dy, 0.0),
        )

    def mapped(self, A: np.ndarray) -> SuffStats:
        """The statistics of the columns ``X A`` (p × p' matrix A) of the same rows.

        Moments are linear in the columns: ``x̄' = Aᵀ x̄`` (origin and offset
        mapped separately), ``Cxx' = Aᵀ Cxx A``, ``Cxy' = Aᵀ Cxy``; the target's
        moments are unchanged.
        """
        A = np.asarray(A, dtype=np.float64)
        if A.shape[0] != self.n_features:
            raise ValueError(f"the map has {A.shape[0]} rows but the statistics have {self.n_features} columns.")
        cxx = A.T @ self.cxx @ A
        return dataclasses.replace(self, x_origin=A.T @ self.x_origin, x_offset=A.T @ self.x_offset,
                                   cxx=0.5 * (cxx + cxx.T), cxy=A.T @ self.cxy)

    def _with_rows(self, n_rows: int) -> SuffStats:
        return dataclasses.replace(self, n_rows=n_rows)

    # --------------------------------------------------- raw sums (derived)
    @property
    def sum_x(self) -> np.ndarray:
        """``Σ wᵢ xᵢ``."""
        return self.sum_w * self.x_mean

    @property
    def sum_y(self) -> float:
        """``Σ wᵢ yᵢ``."""
        return self.sum_w * self.y_mean

    @property
    def xtx(self) -> np.ndarray:
        """``XᵀWX = Cxx + W x̄ x̄ᵀ`` (uncentred; for reporting, not for solving)."""
        return self.cxx + self.sum_w * np.outer(self.x_mean, self.x_mean)

    @property
    def xty(self) -> np.ndarray:
        """``XᵀWy = Cxy + W x̄ ȳ``."""
        return self.cxy + self.sum_w * self.x_mean * self.y_mean

    @property
    def yty(self) -> float:
        """``yᵀWy = Cyy + W ȳ²``."""
        return self.cyy + self.sum_w * self.y_mean**2

    # ------------------------------------------------- held-out metrics
    def sse(self, coef: np.ndarray, intercept: float) -> float:
        """Weighted sum of squared errors ``Σ wᵢ (yᵢ − b − xᵢᵀβ)²`` on these rows.

        Exact from the statistics alone: writing each residual as its centred
        part plus the mean residual ``m = ȳ − b − x̄ᵀβ``, the cross term
        vanishes and

            SSE = Cyy − 2 βᵀCxy + βᵀ Cxx β + W m².
        """
        coef = np.asarray(coef, dtype=np.float64)
        mean_residual = self.y_mean - intercept - float(self.x_mean @ coef)
        sse = (
            self.cyy
            - 2.0 * float(coef @ self.cxy)
            + float(coef @ (self.cxx @ coef))
            + self.sum_w * mean_residual**2
        )
        return max(sse, 0.0)

    def mse(self, coef: np.ndarray, intercept: float) -> float:
        """Weighted mean squared error ``SSE / W`` (``nan`` when ``W == 0``)."""
        if self.sum_w == 0.0:
            return float("nan")
        return self.sse(coef, intercept) / self.sum_w

    def r2(self, coef: np.ndarray, intercept: float) -> float:
        """Coefficient of determination ``1 − SSE / Cyy`` against these rows' own mean.

        The same definition as ``sklearn.metrics.r2_score`` (``nan`` when the
        target is constant on these rows).
        """
        if self.cyy == 0.0:
            return float("nan")
        return 1.0 - self.sse(coef, intercept) / self.cyy

    # ------------------------------------------------------ plain data
    def to_arrays(self) -> dict[str, np.ndarray]:
        """A dict of arrays for ``np.savez`` (no pickle)."""
        return {
            "n_rows": np.asarray(self.n_rows, dtype=np.int64),
            "sum_w": np.asarray(self.sum_w),
            "x_origin": self.x_origin,
            "x_offset": self.x_offset,
            "y_origin": np.asarray(self.y_origin),
            "y_offset": np.asarray(self.y_offset),
            "cxx": self.cxx,
            "cxy": self.cxy,
            "cyy": np.asarray(self.cyy),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SuffStats:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            n_rows=int(arrays["n_rows"]),
            sum_w=float(arrays["sum_w"]),
            x_origin=np.asarray(arrays["x_origin"], dtype=np.float64),
            x_offset=np.asarray(arrays["x_offset"], dtype=np.float64),
            y_origin=float(arrays["y_origin"]),
            y_offset=float(arrays["y_offset"]),
            cxx=np.asarray(arrays["cxx"], dtype=np.float64),
            cxy=np.asarray(arrays["cxy"], dtype=np.float64),
            cyy=float(arrays["cyy"]),
        )


def merge_all(parts: Iterable[SuffStats]) -> SuffStats:
    """Merge many statistics by a balanced pairwise tree.

    A balanced tree keeps the rounding error growth at ``O(log m)`` for m
    parts instead of ``O(m)`` for a left fold.
    """
    level = list(parts)
    if not level:
        raise ValueError("merge_all needs at least one SuffStats, got none.")
    while len(level) > 1:
        nxt = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


_CANCELLED = 64 * np.finfo(np.float64).eps  # a corrected moment this small against its shifted one is rounding
_LABEL_CHUNK_BYTES = 1 << 20  # a chunk of Z stays in cache (1,285 rows at p = 100: 1,024–2,048 measured alike)
_LABEL_CHUNK_ROWS_MIN = 256  # a rank-256 update keeps syrk efficient when p is large


def label_stats(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, labels: np.ndarray, n_labels: int
) -> list[SuffStats]:
    """The statistics of the rows of each label ``0 … n_labels − 1`` of one block (empty for a label without rows).

    One shifted pass instead of a two-pass computation per label. With ``m`` the
    block's weighted mean (one pass), each label's rows are taken in chunks of
    :data:`_LABEL_CHUNK_BYTES` into a cache-resident buffer ``Z = [√w (x − m), √w,
    √w (y − ȳ)]``, whose ``ZᵀZ`` (one ``syrk`` per chunk, accumulated) holds the
    label's weight, its shifted sums and its shifted cross-products at once. With
    ``d = Σ w (x − m) / W`` the label's mean offset, Björck's correction gives the
    centred moments ``Cxx = Σ w (x − m)(x − m)ᵀ − W d dᵀ`` (the same for Cxy, Cyy);
    the statistics keep ``m`` as their origin and ``d`` as their offset.

    Accuracy: the rounding error of ``Cxx`` is about ``ε · Σ w (x − m)²`` over the
    label's rows, against ``ε · Cxx`` for a two-pass computation on the label
    alone; the two differ by ``W d²``, which is small when the labels deal the
    block's rows at random (folds: ``W d² ≈ Cxx / n_block``). Merging the
    labels' moments (Chan, Golub & LeVeque) has an error of the same order as
    this, so the shift loses no digit that the pass keeps. A label whose mean drifts
    from the block's (a retrain's time hold-out) loses ``log10(1 + W d² / Cxx)``
    digits; a column constant on a label's rows gets exactly zero moments (the
    correction's rounding is cleared, as :meth:`SuffStats.__sub__` does). Labels
    that group rows with very different means (groups of rows) belong with
    :meth:`SuffStats.from_block` per label instead.

    Cost: the ``syrk`` of ``p + 2`` columns and a read of the block (chunks, no copy
    of the whole block): a 65,536 × 100 block's five fold records took 38 ms against 53 ms for a
    gather and two-pass per fold (one BLAS thread, medians of 15). A CSR block costs its non-zeros
    instead (:mod:`pipeline.solvers.sparse_stats`).
    """
    from scipy.linalg.blas import dsyrk

    if hasattr(X, "indptr"):  # CSR: at the cost of its non-zeros
        from .sparse_stats import sparse_label_stats

        return sparse_label_stats(X, y, sample_weight, labels, n_labels)
    X = np.asarray(X)
    n, p = X.shape
    y, w, order, bounds, sum_w = label_rows(y, sample_weight, labels, n_labels)
    if n == 0 or sum_w == 0.0:
        return without_weight(p, bounds)
    m = X.mean(axis=0, dtype=np.float64) if w is None else (w @ X) / sum_w
    my = float(_weighted_mean(y, w, sum_w))
    q = p + 2
    chunk = max(_LABEL_CHUNK_ROWS_MIN, _LABEL_CHUNK_BYTES // (8 * q))
    buf = np.empty((min(n, chunk), q))
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        g = np.zeros((q, q), order="F")
        for lo in range(a, b, chunk):
            rows = order[lo : min(b, lo + chunk)]
            Z = buf[: rows.shape[0]]
            np.subtract(X[rows], m, out=Z[:, :p])
            Z[:, p] = 1.0
            np.subtract(y[rows], my, out=Z[:, p + 1])
            if w is not None:
                Z *= np.sqrt(w[rows])[:, None]
            g = dsyrk(1.0, Z.T, beta=1.0, c=g, trans=0, lower=0, overwrite_c=1)  # ZᵀZ, upper triangle
        sum_w_label = float(b - a) if w is None else float(w[order[a:b]].sum())  # Σ w, not Σ (√w)²
        out.append(from_shifted_products(g, m, my, int(b - a), sum_w_label))
    return out


def label_rows(y: np.ndarray, sample_weight: np.ndarray | None, labels: np.ndarray, n_labels: int
               ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, float]:
    """A block's target and weights as float64, its rows in label order (a stable sort), where each label
    ``0 … n_labels − 1`` starts and ends in that order, and the block's weight."""
    y = np.asarray(y, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    order = np.argsort(labels, kind="stable")
    return y, w, order, np.searchsorted(labels[order], np.arange(n_labels + 1)), \
        float(y.shape[0]) if w is None else float(w.sum())


def without_weight(p: int, bounds: np.ndarray) -> list[SuffStats]:
    """Empty statistics for each label of a block without rows or weight (the labels' row counts kept)."""
    return [SuffStats.empty(p, n_rows=int(b - a)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def from_shifted_products(g: np.ndarray, m: np.ndarray, my: float, n_rows: int, sum_w: float) -> SuffStats:
    """A label's statistics from the upper triangle of ``ZᵀZ``, ``Z = [√w (x − m), √w, √w (y − ȳ)]``."""
    p = m.shape[0]
    W = float(g[p, p])  # Σ (√w)², consistent with the sums beside it
    if n_rows == 0 or W == 0.0:
        return SuffStats.empty(p, n_rows=n_rows)
    d = g[:p, p] / W
    dy = float(g[p, p + 1]) / W
    G = g[:p, :p]  # syrk wrote the upper triangle; the lower one holds zeros
    shifted = np.diag(G).copy()  # Σ w (x − m)²: the scale the correction cancels against
    cxx = G + np.tril(G.T, -1)  # mirrored (G.T's lower triangle is read in memory order: a 3,000² mirror 79 ms,
    cxx -= W * np.outer(d, d)  # not the 535 ms of a transposed add); exactly symmetric, as d_i d_j = d_j d_i
    cxy = g[:p, p + 1] - W * d * dy
    cyy = float(g[p + 1, p + 1]) - W * dy * dy
    # A column constant on the label's rows (a level seen only on other rows, a time hold-out's new flag) has no
    # spread; the correction leaves cancellation noise of ε · Σ w (x − m)², possibly negative, where a two-pass
    # computation gives 0. Left in, the column would be standardized by that noise and fitted.
    constant = np.diag(cxx) <= _CANCELLED * shifted
    if constant.any():
        cxx[constant, :] = 0.0
        cxx[:, constant] = 0.0
        cxy[constant] = 0.0
    if cyy <= _CANCELLED * float(g[p + 1, p + 1]):  # the target constant on the label's rows
        cyy, cxy = 0.0, np.zeros(p)
    return SuffStats(n_rows=n_rows, sum_w=sum_w, x_origin=m, x_offset=d, y_origin=my, y_offset=dy,
                     cxx=cxx, cxy=cxy, cyy=cyy)


def _weighted_mean(a: np.ndarray, w: np.ndarray | None, sum_w: float) -> np.ndarray:
    if w is None:
        return a.mean(axis=0)
    return (w @ a) / sum_w


def _check_same_width(a: SuffStats, b: SuffStats) -> None:
    if a.n_features != b.n_features:
        raise ValueError(
            f"statistics must have the same number of features to combine, got "
            f"{a.n_features} and {b.n_features}."
        )
