"""Mean imputation inside each fold, exactly, from statistics of one pass.

A feature column x with missing entries is read as two statistics columns:
the column filled with a fixed constant ``c`` where it is missing (``x̃``) and
its missing indicator ``m``. Whatever value μ a fold imputes, the imputed
column is linear in these two,

    x_imp = x̃ + (μ − c) · m,

so the imputed design of a fold is ``X = Z A`` for the statistics columns Z
and a matrix A that depends on μ only, and its centred moments are
``Aᵀ C_ZZ A``, ``Aᵀ C_Zy`` and ``Aᵀ z̄`` (:meth:`SuffStats.mapped`): no row is
read again. The mean of the observed training entries (scikit-learn's
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

    def matrix(self, fill: np.ndarray) -> np.ndarray:
        """``A`` with ``X = Z A`` for the fill values ``fill``."""
        q = len(self.value_columns)
        A = np.zeros((self.n_encoded + q, self.n_features))
        A[np.arange(self.n_encoded), np.arange(self.n_encoded)] = 1.0
        masks = np.arange(self.n_encoded, self.n_encoded + q)
        A[masks, np.asarray(self.value_columns, dtype=np.intp)] = np.asarray(fill) - self.centers
        if self.indicators:
            A[masks, self.n_encoded + np.arange(q)] = 1.0
        return A

    def apply(self, train: SuffStats, *others: SuffStats) -> tuple[np.ndarray, list[SuffStats]]:
        """The fill values learnt on ``train``, and ``train`` and ``others`` mapped by them."""
        fill = self.fill_values(train)
        A = self.matrix(fill)
        return fill, [s.mapped(A) for s in (train, *others)]
