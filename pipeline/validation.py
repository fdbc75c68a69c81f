"""Checks of in-memory inputs, run once at the boundary before any work.

Messages follow one pattern: what is wrong, the rule, the offending value,
and the fix. Column problems name the column (index, or name when known).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import DataError, DataTypeError

__all__ = ["check_features", "check_sample_weight", "check_sparse_features", "check_target"]

_MAX_LISTED = 5


def _column_label(j: int, feature_names: Sequence[str] | None) -> str:
    if feature_names is not None and j < len(feature_names):
        return f"column {j} ({feature_names[j]!r})"
    return f"column {j}"


def _as_float_array(a: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as e:  # ragged lists and the like
        raise DataTypeError(f"`{name}` must be an array of numbers, got {type(a).__name__}: {e}") from e
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise DataTypeError(
            f"`{name}` must hold real numbers, got dtype {arr.dtype}; "
            "encode categorical or text columns as numbers first."
        )
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DataTypeError(f"`{name}` must hold real numbers, got complex dtype {arr.dtype}.")
    return arr.astype(np.float64, copy=False)


def check_features(X: object, feature_names: Sequence[str] | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a float64 matrix with ≥ 2 rows, ≥ 1 column, all finite."""
    arr = _as_float_array(X, name)
    if arr.ndim != 2:
        raise DataError(
            f"`{name}` must be 2-dimensional (rows × features), got shape {arr.shape}; "
            "reshape a single feature with X.reshape(-1, 1)."
        )
    n, p = arr.shape
    if p == 0:
        raise DataError(f"`{name}` must have at least 1 column, got shape {arr.shape}.")
    if n < 2:
        raise DataError(f"`{name}` must have at least 2 rows to fit, got {n}.")
    finite = np.isfinite(arr)
    if not finite.all():
        bad_per_col = (~finite).sum(axis=0)
        cols = np.flatnonzero(bad_per_col)
        listed = ", ".join(
            f"{_column_label(int(j), feature_names)}: {int(bad_per_col[j])}" for j in cols[:_MAX_LISTED]
        )
        more = f" and {cols.size - _MAX_LISTED} more columns" if cols.size > _MAX_LISTED else ""
        raise DataError(
            f"`{name}` must be finite, but {int(bad_per_col.sum())} values are NaN or inf "
            f"({listed}{more}); drop or impute those rows first."
        )
    return arr


def check_sparse_features(X: Any, name: str = "X") -> Any:
    """Return a ``scipy.sparse`` ``X`` as a float64 CSC matrix with ≥ 2 rows, ≥ 1 column, all stored values finite.

    CSC because the rows engine reads one column at a time; the implicit zeros
    stay implicit.
    """
    shape: tuple[int, ...] = tuple(getattr(X, "shape", ()))
    if len(shape) != 2:
        raise DataError(f"`{name}` must be a 2-dimensional sparse matrix, got shape {shape}.")
    dtype = np.dtype(getattr(X, "dtype", object))
    if dtype == bool or not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise DataTypeError(f"`{name}` must hold real numbers, got dtype {dtype}.")
    n, p = shape
    if p == 0:
        raise DataError(f"`{name}` must have at least 1 column, got shape {shape}.")
    if n < 2:
        raise DataError(f"`{name}` must have at least 2 rows to fit, got {n}.")
    csc = X.tocsc().astype(np.float64)
    csc.sum_duplicates()
    bad = ~np.isfinite(csc.data)
    if bad.any():
        cols = np.unique(np.repeat(np.arange(p), np.diff(csc.indptr))[bad])
        listed = ", ".join(f"column {int(j)}" for j in cols[:_MAX_LISTED])
        raise DataError(f"`{name}` must be finite, but {int(bad.sum())} stored values are NaN or inf ({listed}"
                        f"{' and more' if cols.size > _MAX_LISTED else ''}); drop or impute those rows first.")
    return csc


def check_target(y: object, n_rows: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite float64 vector of length ``n_rows``."""
    arr = _as_float_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"`{name}` must be 1-dimensional, got shape {arr.shape}.")
    if arr.shape[0] != n_rows:
        raise DataError(
            f"`{name}` must have one value per row of X ({n_rows} rows), got {arr.shape[0]} values."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DataError(
            f"`{name}` must be finite, but {rows.size} values are NaN or inf "
            f"(first at row {int(rows[0])}); drop those rows first."
        )
    return arr


def check_sample_weight(w: object, n_rows: int, name: str = "sample_weight") -> np.ndarray:
    """Return non-negative, finite weights of length ``n_rows`` with a positive sum."""
    arr = check_target(w, n_rows, name=name)
    if (arr < 0).any():
        j = int(np.flatnonzero(arr < 0)[0])
        raise DataError(
            f"`{name}` must be >= 0, got {int((arr < 0).sum())} negative weights "
            f"(first: {float(arr[j])!r} at row {j})."
        )
    if not arr.sum() > 0:
        raise DataError(f"`{name}` must have a positive sum, got all weights zero.")
    return arr
