"""Mean imputation inside each fold, exactly, from statistics of one pass.

A feature column x with missing entries is read as two statistics columns:
the column filled with a fixed constant ``c`` where it is missing (``x̃``) and
its missing indicator ``m``. Whatever value μ a fold imputes, the imputed
column is linear in these two,

    x_imp = x̃ + (μ − c) · m,

so the imputed design of a fold is ``X = Z A`` for the statistics columns Z
and a matrix A that depends on μ only, and its centred moments are
``Aᵀ C_ZZ A``, ``Aᵀ C_Zy`` and ``Aᵀ z̄`` (:meth:`MeanImputation.mapped`, which
uses A's structure): no row is read again. The mean of the observed training entries (scikit-learn's
``SimpleImputer(strategy="mean")`` fitted on the training rows; under sample
weights ``Σ w x / Σ w`` over the observed rows) follows from the same
training statistics: with ``z̄`` and ``m̄`` the weighted means of x̃ and m,

    μ − c = (z̄ − c) / (1 − m̄).

The constant ``c`` is any fixed number (the observed mean of the whole source
is used): chosen near μ it keeps ``μ − c`` small, so the moments of a column
with mean 10⁶ do not cancel when the correction is applied. The held-out rows
of a fold are mapped with the *training* μ, as a fitted imputer maps them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .stats import SuffStats

__all__ = ["MeanImputation"]


@dataclass(frozen=True, eq=False)
class MeanImputation:
    """How the statistics columns map to the model's features under mean imputation.

    Attributes
    ----------
    n_encoded : int
        Leading statistics columns that are features (numeric columns, level
        indicators); the remaining ``q`` columns are missing indicators.
    value_columns : tuple of int
        For each missing indicator, the feature column it belongs to.
    centers : ndarray of shape (q,)
        The constant ``c`` written into each column where it is missing.
    indicators : bool
        Whether the missing indicators are also features of the model (after the others).
    """

    n_encoded: int
    value_columns: tuple[int, ...]
    centers: np.ndarray
    indicators: bool = False

    @property
    def n_features(self) -> int:
        """Width of the model's design."""
        return self.n_encoded + (len(self.value_columns) if self.indicators else 0)

    def fill_values(self, train: SuffStats) -> np.ndarray:
        """μ per imputed column: the weighted mean of its observed entries over the rows of ``train``.

        A column with no observed entry in ``train`` is filled with 0: a column of zeros there, which
        every fit leaves out (coefficient 0), as ``SimpleImputer`` drops a column it never saw observed
        (filled with ``c`` it would be a constant acting as a second intercept when none is fitted).
        """
        v = np.asarray(self.value_columns, dtype=np.intp)
        q = v.size
        if q == 0 or train.sum_w == 0.0:
            return np.zeros(q)
        masks = np.arange(self.n_encoded, self.n_encoded + q)
        z_minus_c = (train.x_origin[v] - self.centers) + train.x_offset[v]
        observed = 1.0 - train.x_mean[masks]
        ok = observed > 1e-12
        fill = np.zeros(q)
        fill[ok] = self.centers[ok] + z_minus_c[ok] / observed[ok]
        return fill

    def apply(self, train: SuffStats, *others: SuffStats) -> tuple[np.ndarray, list[SuffStats]]:
        """The fill values learnt on ``train``, and ``train`` and ``others`` mapped by them."""
        fill = self.fill_values(train)
        return fill, [self.mapped(s, fill) for s in (train, *others)]

    def mapped(self, stats: SuffStats, fill: np.ndarray) -> SuffStats:
        """The statistics of the features when each imputed column's gaps hold ``fill``.

        ``X = Z A`` with A the identity on the encoded columns plus ``δ_i = fill_i − c_i`` from mask i to
        its value column v_i; written out, with C the statistics' centred cross-products,

            C'[a, b] = C[a, b] + δ_b C[a, m_b] + δ_a C[m_a, b] + δ_a δ_b C[m_a, m_b]

        (terms present where a or b is imputed): O(p²) where the dense ``Aᵀ C A`` is O(p³), and it is run
        for every fold. The missing indicators, when they are features, keep their own moments.
        """
        p, v = self.n_encoded, np.asarray(self.value_columns, dtype=np.intp)
        delta = np.asarray(fill, dtype=np.float64) - self.centers
        masks = slice(p, p + v.size)
        c = stats.cxx
        cross = c[:p, masks]  # C[a, m_i]
        cxx = c[:p, :p].copy()
        cxx[:, v] += cross * delta
        cxx[v, :] += (cross * delta).T
        cxx[np.ix_(v, v)] += np.outer(delta, delta) * c[masks, masks]

        def features(vec: np.ndarray) -> np.ndarray:
            out = vec[:p].copy()
            out[v] += delta * vec[masks]
            return np.concatenate([out, vec[masks]]) if self.indicators else out

        if self.indicators:
            with_masks = cross.copy()
            with_masks[v, :] += delta[:, None] * c[masks, masks]
            cxx = np.block([[cxx, with_masks], [with_masks.T, c[masks, masks]]])
        return dataclasses.replace(stats, x_origin=features(stats.x_origin), x_offset=features(stats.x_offset),
                                   cxx=0.5 * (cxx + cxx.T), cxy=features(stats.cxy))
