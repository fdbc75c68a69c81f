"""``pipeline.fit``: one penalized fit on in-memory data.

The same path the distributed sweep takes, on one block, with the same
choice of engine (:mod:`pipeline.engine`): either statistics of the rows
(:class:`~pipeline.solvers.SuffStats`) and the Gram problem
(:class:`~pipeline.solvers.GramProblem`), or the rows themselves
(:class:`~pipeline.solvers.RowProblem`, dense or sparse, for wide data);
then the coefficients mapped back to the original scale.

The objective is glmnet's: ``ηᵢ = b + xᵢᵀβ (+ offsetᵢ)`` and ``½d`` the family's half deviance, ``½(y − η)²``
(gaussian: least squares), ``log(1 + e^η) − yη`` (binomial, y ∈ {0, 1}: the negative log-likelihood),
``e^η − yη`` up to a constant (poisson). In scikit-learn's terms, on standardized columns:
``ElasticNet(alpha, l1_ratio)`` is ``λ1 = alpha·l1_ratio``, ``λ2 = alpha·(1 − l1_ratio)``;
``LogisticRegression(C, l1_ratio)`` is ``λ1 = l1_ratio/(C·Σw)``, ``λ2 = (1 − l1_ratio)/(C·Σw)``;
``PoissonRegressor(alpha)`` is ``λ2 = alpha``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .column_kinds import (HEAD_ROWS, categorical_columns, free_text_candidates, kind_of_strings,
                           numbers_in_disguise, unknown_columns)
from .encoding import Encoding, is_missing
from .engine import ENGINES, available_memory, choose_engine
from .errors import ConfigError, DataError
from .feature_controls import controls_from_config, unpenalized_fit_all_rows
from .levels import FrameColumns, encoding_from_scan, scan_frame
from .model import FittedModel, feature_names_of
from .solvers import ElasticNet, GramProblem, RowDesign, RowProblem, SuffStats, is_sparse, make_penalty
from .solvers.controls import FeatureControls
from .targets import check_family, check_offset, family_target
from .validation import check_features, check_sample_weight, check_sparse_features, check_target

__all__ = ["fit"]


def fit(X: object, y: object, *, penalty: str = "elasticnet", lambda1: float = 0.0, lambda2: float = 0.0,
        standardize: bool = True, fit_intercept: bool = True, sample_weight: object | None = None,
        feature_names: Sequence[str] | None = None, tol: float = 1e-10, engine: str = "auto",
        categorical: str | Sequence[str] = "auto", missing: str = "error", missing_indicators: bool = False,
        penalty_factor: object | None = None, lower: object | None = None, upper: object | None = None,
        family: str = "gaussian", offset: object | None = None, positive_class: object | None = None,
        ) -> FittedModel:
    """Fit ``min Σ wᵢ ½d(yᵢ, ηᵢ)/Σw + Σ_j f_j (λ1|β_j| + (λ2/2)β_j²)`` with ``lower ≤ β ≤ upper`` (module
    docstring: ``η`` and the families' ``½d``, and the mapping to scikit-learn's parameters).

    Parameters
    ----------
    X : array-like or scipy.sparse matrix of shape (n, p)
        Features (a DataFrame's column names become ``feature_names``). A sparse CSR/CSC matrix stays sparse
        (the rows engine; centring and scaling are applied without densifying).
    y : array-like of shape (n,)
        Target.
    penalty : {"elasticnet", "l1", "l2"}, default "elasticnet"
        ``l1`` requires ``lambda2 == 0``, ``l2`` requires ``lambda1 == 0``.
    lambda1, lambda2 : float, default 0
        Penalty strengths, ≥ 0. Both 0 is least squares (minimum-norm when the Gram is singular). In
        scikit-learn's terms ``alpha = λ1 + λ2``, ``l1_ratio = λ1 / (λ1 + λ2)``.
    standardize : bool, default True
        Penalize standardized columns (glmnet); coefficients are reported on the original scale.
    fit_intercept : bool, default True
        Fit an unpenalized intercept.
    sample_weight : array-like of shape (n,), optional
        Non-negative weights with a positive sum.
    feature_names : sequence of str, optional
    tol : float, default 1e-10
        Duality gap over the objective at β = 0 (binomial, poisson: Newton decrement over the lesser of it and F).
    engine : {"auto", "gram", "rows"}, default "auto"
        ``gram`` solves on the p × p Gram (tall data), ``rows`` on the rows (wide or sparse data, no p × p
        matrix). ``auto`` takes ``gram`` iff X is dense, p ≤ n and the Gram takes at most a quarter of the
        available memory (:mod:`pipeline.engine`).
    categorical : "auto" or sequence of str, default "auto"
        For a DataFrame X: its text, boolean and ``category`` columns (and the ones listed) become one
        indicator per level, ``column=level``, as in a sweep (``data.categorical``). The model then takes the
        raw frame.
    missing : {"error", "impute"}, default "error"
        ``impute``: a DataFrame's missing entries take their column's mean over the rows (weighted), a missing
        category is the level ``<NA>``; the model fills new rows the same way (``data.missing: impute``).
    missing_indicators : bool, default False
        Under ``impute``: one 0/1 feature per numeric column with gaps.
    penalty_factor : array-like of shape (p,), scalar or mapping, optional
        glmnet's ``penalty.factor``: a factor ``f_j ≥ 0`` per feature multiplying both parts of its
        penalty (0 leaves it unpenalized), rescaled once to sum to p (so only ratios matter). A mapping
        ``{name or glob: factor}`` names features as ``model.penalty_factor`` does (others get 1).
    lower, upper : scalar, array-like of shape (p,) or mapping, optional
        glmnet's ``lower.limits``/``upper.limits``: limits of the coefficients on the data's scale,
        ``lower ≤ 0 ≤ upper`` (−inf/+inf for none; ``lower=0`` gives non-negative coefficients, as
        scikit-learn's ``positive=True``); a mapping ``{name or glob: limit}`` as ``model.coef_limits``.
    family, offset, positive_class :
        ``binomial``: y holds two classes (0/1, booleans or two labels; the label coded 1 is ``positive_class``,
        by default 1 / True or the second in sorted order), the model predicts its probability; ``poisson``:
        counts ≥ 0, it predicts the expected count. ``offset``: a known term of η (counts over an exposure t:
        ``log t``); the model then needs one to predict (``model.predict(X, offset=...)``).

    Returns
    -------
    FittedModel

    Raises
    ------
    ValueError, TypeError
        (as :class:`~pipeline.errors.DataError` / ``DataTypeError``) for bad input, before any computation.
    """
    pen = make_penalty(penalty, lambda1, lambda2)
    family = _check_options(tol, missing, family, offset, positive_class, engine, categorical)
    X, feature_names, encoding = _features(X, feature_names, sample_weight, categorical, missing, missing_indicators)
    limits = (penalty_factor, lower, upper)
    if family == "gaussian":
        model = _solve(X, y, sample_weight, feature_names, pen, standardize, fit_intercept, tol, engine, limits)
    else:
        model = _solve_glm(X, y, sample_weight, feature_names, pen, (standardize, fit_intercept), tol, engine,
                           limits, (family, offset, positive_class))
    return model if encoding is None else dataclasses.replace(model, encoding=encoding)


def _features(X: Any, names: Sequence[str] | None, sample_weight: object | None, categorical: str | Sequence[str],
              missing: str, indicators: bool) -> tuple[Any, Sequence[str] | None, Encoding | None]:
    """A DataFrame's features, names and encoding (a frame with text, boolean or listed columns, or with
    imputation, is encoded); a frame of numbers as a float64 array, pandas' nullable and Arrow types too, their
    gaps NaN for the checks to name (``np.asarray`` gave an object array, refused as "not real numbers")."""
    if hasattr(X, "columns") and hasattr(X, "dtypes"):
        X = _decimal_objects_as_floats(X)
    if hasattr(X, "columns") and hasattr(X, "dtypes") and _needs_encoding(X, categorical, missing):
        X, encoding = _encoded(X, sample_weight, categorical, missing, indicators)
        return X, encoding.feature_names, encoding
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        return X.to_numpy(dtype=np.float64, na_value=np.nan), feature_names_of(X, len(X.columns), names), None
    return X, names, None


def _check_options(tol: float, missing: str, family: str, offset: object | None, positive_class: object | None,
                   engine: str = "auto", categorical: str | Sequence[str] = "auto") -> str:
    """One-line errors for bad options; the checked family."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise DataError(f"`tol` must be a number in (0, 1), got {tol!r}.")
    if missing not in ("error", "impute"):
        raise DataError(f"`missing` must be 'error' or 'impute', got {missing!r}.")
    if engine not in ENGINES:  # (choose_engine names the config key model.engine)
        raise DataError(f"`engine` must be one of {', '.join(map(repr, ENGINES))}, got {engine!r}.")
    if isinstance(categorical, str) and categorical != "auto":  # one name, not a list: it was taken for "auto"
        raise DataError(f"`categorical` must be 'auto' or a list of column names, got {categorical!r}; for one "
                        f"column pass categorical=[{categorical!r}].")
    family = check_family(family)
    if family == "gaussian" and (offset is not None or positive_class is not None):
        raise DataError("`offset` and `positive_class` apply to the binomial and poisson families; pass "
                        "family='binomial' or 'poisson', or leave them out.")
    return family


def _solve_glm(X: object, y: object, sample_weight: object | None, feature_names: Sequence[str] | None,
               pen: ElasticNet, flags: tuple[bool, bool], tol: float, engine: str,
               limits: tuple[object, object, object], glm: tuple[str, object, object]) -> FittedModel:
    """A binomial or Poisson fit (:class:`~pipeline.solvers.glm.GlmProblem`): the engine's choice decides how
    each Newton step's quadratic model is solved (weighted Gram or rows)."""
    from .solvers.families import family_named
    from .solvers.glm import GlmProblem

    family, offset, positive_class = glm
    standardize, fit_intercept = flags
    sparse = is_sparse(X)
    X_arr: Any = check_sparse_features(X) if sparse else check_features(X, feature_names)
    n, p = X_arr.shape
    names = feature_names_of(X, p, feature_names)
    controls = _controls(limits, p, names, n, fit_intercept)
    y_arr, labels = family_target(family, y, n, positive_class)
    off = None if offset is None else check_offset(offset, n)
    w = np.ones(n) if sample_weight is None else check_sample_weight(sample_weight, n)
    choice = choose_engine(engine, sparse=sparse, n_features=p, n_train=n, k=1, memory=available_memory(),
                           memory_name="the available memory")
    problem = GlmProblem(X_arr, y_arr, w, family_named(family), offset=off, fit_intercept=fit_intercept,
                         standardize=standardize, controls=controls, inner=choice.name)
    try:
        result = problem.solve(pen, tol=tol)
    except ValueError as e:  # no finite intercept: one class, all counts 0
        raise DataError(str(e)) from None
    return FittedModel.from_solution(problem.base, result, pen, names, controls, family=family, labels=labels,
                                     offset_kind=None if off is None else "offset")


def _controls(limits: tuple[object, object, object], p: int, names: Sequence[str] | None, n_rows: int,
              fit_intercept: bool) -> FeatureControls | None:
    """The checked :class:`FeatureControls` of ``(penalty_factor, lower, upper)`` (None when all are None); more
    unpenalized features than rows are refused (:func:`~pipeline.feature_controls.unpenalized_fit_all_rows`)."""
    factor, lower, upper = limits
    if factor is None and lower is None and upper is None:
        return None
    factor, lower, upper = (_by_name(v, key, names) for v, key in zip(limits, ("penalty_factor", "lower", "upper")))
    try:
        controls = FeatureControls.make(p, factor, lower, upper)
    except ValueError as e:
        raise DataError(str(e)) from None
    why = unpenalized_fit_all_rows(controls, names or [f"x{j}" for j in range(p)], n_rows, fit_intercept)
    if why is not None:
        raise DataError(f"`penalty_factor` {why}")
    return controls


def _by_name(value: object, key: str, names: Sequence[str] | None) -> object:
    """``penalty_factor``, ``lower`` or ``upper`` given by name (``{"bmi": 0}``: patterns as the config's
    ``model.penalty_factor`` and ``model.coef_limits``) as one value per feature (1, −inf or +inf elsewhere);
    anything else as given."""
    if not isinstance(value, Mapping):
        return value
    if names is None:
        raise DataError(f"`{key}` names features, but X has no feature names; pass feature_names= or a DataFrame, or "
                        "give an array of one value per column.")
    given = {str(k): float(v) for k, v in value.items()}
    try:
        if key == "penalty_factor":
            controls = controls_from_config(names, given, {}, {})
        else:
            controls = controls_from_config(names, {}, {k: [v, np.inf] if key == "lower" else [-np.inf, v]
                                                         for k, v in given.items()}, {})
    except ConfigError as e:
        raise DataError(re.sub(r"model\.(penalty_factor|coef_limits)", f"`{key}`", str(e))) from None
    assert controls is not None
    return {"penalty_factor": controls.factor, "lower": controls.lower, "upper": controls.upper}[key]


def _solve(X: object, y: object, sample_weight: object | None, feature_names: Sequence[str] | None,
           pen: ElasticNet, standardize: bool, fit_intercept: bool, tol: float, engine: str,
           limits: tuple[object, object, object] = (None, None, None)) -> FittedModel:
    """The checked numeric problem solved on the engine :func:`~pipeline.engine.choose_engine` picks."""
    sparse = is_sparse(X)
    X_arr: Any = check_sparse_features(X) if sparse else check_features(X, feature_names)
    n, p = X_arr.shape
    names = feature_names_of(X, p, feature_names)
    controls = _controls(limits, p, names, n, fit_intercept)
    y_arr = check_target(y, n)
    w = None if sample_weight is None else check_sample_weight(sample_weight, n)
    choice = choose_engine(engine, sparse=sparse, n_features=p, n_train=n, k=1, memory=available_memory(),
                           memory_name="the available memory")
    if choice.name == "rows":
        design = RowDesign(X_arr, y_arr, np.ones(n) if w is None else w, fit_intercept=fit_intercept,
                           standardize=standardize)
        result = RowProblem(design, controls).solve(pen, tol=tol).result
        return FittedModel.from_solution(design, result, pen, names, controls)
    dense = X_arr.toarray() if sparse else X_arr
    problem = GramProblem.from_stats(SuffStats.from_block(dense, y_arr, w), fit_intercept=fit_intercept,
                                     standardize=standardize, controls=controls)
    return FittedModel.from_solution(problem, problem.solve(pen, tol=tol), pen, names, controls)


def _decimal_objects_as_floats(frame: Any) -> Any:
    """``frame`` with its columns of Python ``Decimal`` values (``pd.read_parquet`` of a database's or Spark's
    decimal columns, ``read_sql`` of NUMERIC) as float64, as a sweep reads them from Parquet: they are numbers,
    not text to refuse or make levels of. A text column is passed over at its first value."""
    from decimal import Decimal

    cols = [c for c, t in zip(frame.columns, frame.dtypes) if t == object
            and (present := frame[c].dropna()).size and isinstance(present.iloc[0], Decimal)
            and present.map(type).eq(Decimal).all()]
    return frame.astype({c: np.float64 for c in cols}) if cols else frame


def _needs_encoding(frame: Any, categorical: str | Sequence[str], missing: str) -> bool:
    """Whether a DataFrame has columns to encode (text, boolean, category, or listed) or gaps to impute."""
    import pandas as pd

    listed = not isinstance(categorical, str) and len(categorical) > 0
    kinds = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in frame.dtypes]
    return listed or missing == "impute" or not all(kinds)


def _text_kind(col: Any, name: str, listed: bool) -> str:
    """An object or string column's kind from its first 1,000 values, as a sweep reads a CSV's head: dates are
    ``date`` (refused), and numbers stored as text (``'12'``, ``'1,570'``, ``'?'`` among numbers), which would
    become one level per number, an error naming the fix, unless the column is listed in ``categorical``."""
    values = [str(v).strip() for v in col.dropna().iloc[:HEAD_ROWS]]
    if listed or not values:
        return "text"
    kind = kind_of_strings(values)
    if kind == "date":
        return kind
    why = numbers_in_disguise(values) if kind == "text" else None
    if kind != "numeric" and why is None:
        return "text"
    if why is None:
        first = col.dropna().iloc[0]  # text, or a number of an object-typed column (ints beside a None)
        stored = "as text" if isinstance(first, str) else "in an object-typed column"
        said, fix = f"numbers stored {stored} (e.g. {first!r})", f"pd.to_numeric(X[{name!r}])"
    elif why.markers:
        marks = list(why.markers)
        said, fix = str(why), f"pd.read_csv(path, na_values={marks}) if they mark gaps, and missing='impute'"
    else:
        said, fix = str(why), "pd.read_csv(path, thousands=',') or decimal=',', or strip the signs before pd.to_numeric"
    raise DataError(f"X column {name!r} holds {said}: as levels it would become one level per number; pass numbers "
                    f"({fix}), or list it in categorical= to keep its values as levels.")


def _encoded(frame: Any, sample_weight: object | None, categorical: str | Sequence[str], missing: str,
             indicators: bool) -> tuple[np.ndarray, Encoding]:
    """A raw frame's features and the fitted encoding a sweep would build (levels, fill values: the weighted
    means of the observed entries)."""
    import pandas as pd

    names = tuple(str(c) for c in frame.columns)
    frame = frame.set_axis(list(names), axis=1)
    listed = () if isinstance(categorical, str) else tuple(str(c) for c in categorical)
    unknown = [c for c in listed if c not in names]
    if unknown:
        raise DataError(unknown_columns("`categorical`", unknown, list(names), "X"))
    kinds = {}
    for c in names:
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col):
            kinds[c] = "date"
        elif isinstance(col.dtype, pd.CategoricalDtype):
            kinds[c] = "dictionary"
        elif pd.api.types.is_bool_dtype(col):
            kinds[c] = "bool"
        elif pd.api.types.is_numeric_dtype(col):
            kinds[c] = "numeric"
        else:
            kinds[c] = _text_kind(col, c, c in listed)
    cats = categorical_columns(kinds, names, "", None, categorical if isinstance(categorical, str) else listed,
                               "X")
    columns = FrameColumns(names, cats, free_text_candidates(cats, kinds, categorical), missing, indicators)
    if missing == "error":  # a category's gap too, as a sweep refuses it (encoded, it became zero indicators)
        gaps = [c for c in names if is_missing(frame[c]).any()]
        if gaps:
            raise DataError(f"X has missing values in columns {gaps}; pass missing='impute' (a number's gaps take "
                            "the column mean, a category's the level '<NA>'), or fill them in.")
    encoding = encoding_from_scan(columns, scan_frame(columns, frame, "X"))
    Z = encoding.statistics_columns(frame, "X")
    w = np.ones(len(frame)) if sample_weight is None else check_sample_weight(sample_weight, len(frame))
    means = (w @ Z) / w.sum()  # of the statistics columns: an imputed column's observed mean follows (O(np))
    imputation = encoding.imputation()
    if imputation is not None:
        v = np.asarray(imputation.value_columns, dtype=np.intp)
        observed = 1.0 - means[imputation.n_encoded : imputation.n_encoded + v.size]
        safe = np.where(observed > 1e-12, observed, 1.0)
        means[v] = np.where(observed > 1e-12, imputation.centers + (means[v] - imputation.centers) / safe, 0.0)
    fitted = encoding.fitted(means)
    return fitted.features(frame), fitted
