"""``pipeline.fit``: one penalized fit on in-memory data.

The same path the distributed sweep takes, on one block, with the same
choice of engine (:mod:`pipeline.engine`): either statistics of the rows
(:class:`~pipeline.solvers.SuffStats`) and the Gram problem
(:class:`~pipeline.solvers.GramProblem`), or the rows themselves
(:class:`~pipeline.solvers.RowProblem`, dense or sparse, for wide data);
then the coefficients mapped back to the original scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .engine import available_memory, choose_engine
from .errors import DataError
from .model import FittedModel, feature_names_of
from .solvers import GramProblem, RowDesign, RowProblem, SuffStats, is_sparse, make_penalty
from .validation import check_features, check_sample_weight, check_sparse_features, check_target

__all__ = ["fit"]


def fit(
    X: object,
    y: object,
    *,
    penalty: str = "elasticnet",
    lambda1: float = 0.0,
    lambda2: float = 0.0,
    standardize: bool = True,
    fit_intercept: bool = True,
    sample_weight: object | None = None,
    feature_names: Sequence[str] | None = None,
    tol: float = 1e-10,
    engine: str = "auto",
) -> FittedModel:
    """Fit ``min 1/(2Σw) Σ wᵢ(yᵢ − b − xᵢᵀβ)² + λ1‖β‖₁ + (λ2/2)‖β‖²``.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (n, p)
        Features (a DataFrame's column names become ``feature_names``). A
        sparse CSR/CSC matrix stays sparse (the rows engine; centring and
        scaling are applied without densifying).
    y : array-like of shape (n,)
        Target.
    penalty : {"elasticnet", "l1", "l2"}, default "elasticnet"
        ``l1`` requires ``lambda2 == 0``, ``l2`` requires ``lambda1 == 0``.
    lambda1, lambda2 : float, default 0
        Penalty strengths, ≥ 0. Both 0 is least squares (minimum-norm when
        the Gram is singular). In scikit-learn's terms ``alpha = λ1 + λ2``,
        ``l1_ratio = λ1 / (λ1 + λ2)``.
    standardize : bool, default True
        Penalize standardized columns (glmnet); coefficients are reported on
        the original scale.
    fit_intercept : bool, default True
        Fit an unpenalized intercept.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights with a positive sum.
    feature_names : sequence of str, optional
    tol : float, default 1e-10
        Duality-gap tolerance relative to the objective at β = 0.
    engine : {"auto", "gram", "rows"}, default "auto"
        ``gram`` solves on the p × p Gram (tall data), ``rows`` on the rows
        (wide or sparse data, no p × p matrix). ``auto`` takes ``gram`` iff X
        is dense, p ≤ n and the Gram takes at most a quarter of the available
        memory (:mod:`pipeline.engine`).

    Returns
    -------
    FittedModel

    Raises
    ------
    ValueError, TypeError
        (as :class:`~pipeline.errors.DataError` / ``DataTypeError``) for bad
        input, before any computation.
    """
    pen = make_penalty(penalty, lambda1, lambda2)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise DataError(f"`tol` must be a number in (0, 1), got {tol!r}.")
    sparse = is_sparse(X)
    X_arr: Any = check_sparse_features(X) if sparse else check_features(X, feature_names)
    n, p = X_arr.shape
    names = feature_names_of(X, p, feature_names)
    y_arr = check_target(y, n)
    w = None if sample_weight is None else check_sample_weight(sample_weight, n)
    choice = choose_engine(engine, sparse=sparse, n_features=p, n_train=n, k=1, memory=available_memory(),
                           memory_name="the available memory")

    if choice.name == "rows":
        design = RowDesign(X_arr, y_arr, np.ones(n) if w is None else w, fit_intercept=fit_intercept,
                           standardize=standardize)
        return FittedModel.from_solution(design, RowProblem(design).solve(pen, tol=tol).result, pen, names)
    dense = X_arr.toarray() if sparse else X_arr
    stats = SuffStats.from_block(dense, y_arr, w)
    problem = GramProblem.from_stats(stats, fit_intercept=fit_intercept, standardize=standardize)
    return FittedModel.from_solution(problem, problem.solve(pen, tol=tol), pen, names)
