"""The fitted model as plain data: predict, save and load without pickle.

On disk a model is a directory with two files:

- ``model.json``: format tag, penalty, λs, flags, intercept, feature names,
  solver diagnostics (human-readable);
- ``arrays.npz``: ``coef``, ``x_mean``, ``x_scale`` (read back with
  ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .encoding import Encoding
from .encoding import from_json as encoding_from_json
from .encoding import to_json as encoding_json
from .errors import DataError
from .solvers import ElasticNet, FitResult
from .solvers.controls import FeatureControls

__all__ = ["FORMAT", "SIGNATURE_MAX_COLUMNS", "FittedModel"]

FORMAT = "regsweep-linear-model/1"
SIGNATURE_MAX_COLUMNS = 1000
"""Beyond this many input columns a model is logged without signature and input example: MLflow checks a
signature column by column in Python on every ``predict`` (at 20,000 columns: 5 s per call, 24 s to log),
and the model itself matches a DataFrame's columns by name (:meth:`FittedModel.predict`). The example rows
are then not even read (at 7,000 columns, writing them as Parquet and reading them back took 1.8 s of CPU)."""
_JSON = "model.json"
_ARRAYS = "arrays.npz"


class Scaling(Protocol):
    """How a problem centred and scaled its columns: a :class:`~pipeline.solvers.GramProblem` or a
    :class:`~pipeline.solvers.RowDesign`."""

    standardize: bool
    fit_intercept: bool
    x_center: np.ndarray
    x_scale: np.ndarray


@dataclass(frozen=True, eq=False)
class FittedModel:
    """A linear model ``ŷ = X · coef + intercept`` and how it was fitted.

    Attributes
    ----------
    coef : ndarray of shape (p,)
        Coefficients on the original scale of the features.
    intercept : float
    penalty : str
        ``"l1"``, ``"l2"`` or ``"elasticnet"``.
    lambda1, lambda2 : float
        Penalty strengths (on the standardized scale when ``standardize``).
    standardize, fit_intercept : bool
    x_mean, x_scale : ndarray of shape (p,)
        Centring and scaling the penalty was applied under (``x_scale`` is 1
        for unscaled and degenerate columns).
    feature_names : tuple of str or None
    n_iter, dual_gap, converged :
        Solver diagnostics.
    encoding : Encoding or None
        How a raw frame becomes the features (level indicators, imputed values); None when the
        features are the columns themselves.
    penalty_factor : ndarray of shape (p,) or None
        The effective per-feature penalty factors of the fit (rescaled to sum to p, times the
        searched group multipliers); None for the plain penalty (every factor 1).
    lower, upper : ndarray of shape (p,) or None
        Coefficient limits on the original scale (−inf/+inf: none); None when no feature has one.
    group_multipliers : dict or None
        The searched group multipliers of the fit, ``{group: value}``.
    """

    coef: np.ndarray
    intercept: float
    penalty: str
    lambda1: float
    lambda2: float
    standardize: bool
    fit_intercept: bool
    x_mean: np.ndarray
    x_scale: np.ndarray
    feature_names: tuple[str, ...] | None = None
    n_iter: int = 0
    dual_gap: float = 0.0
    converged: bool = True
    encoding: Encoding | None = None
    penalty_factor: np.ndarray | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    group_multipliers: dict[str, float] | None = None

    @classmethod
    def from_solution(
        cls, problem: Scaling, result: FitResult, penalty: ElasticNet, feature_names: Sequence[str] | None,
        controls: FeatureControls | None = None, multipliers: Mapping[str, float] | None = None,
    ) -> FittedModel:
        """The model of a solved problem: coefficients on the original scale, the scaling and diagnostics.

        The one place a :class:`FittedModel` is built from a solver result
        (``pipeline.fit``, the sweep's refit and the retrain's challenger), whichever engine solved it.
        ``controls`` and the trial's group ``multipliers`` (in group order) are recorded with it.
        """
        factor = lower = upper = None
        if controls is not None and not controls.is_default:
            factor = controls.factors(multipliers)
            if np.any(controls.bounded):
                lower, upper = controls.lower, controls.upper
        coef = result.coef if lower is None or upper is None else _snapped(result.coef, lower, upper)
        return cls(
            coef=coef, intercept=float(result.intercept), penalty=penalty.name, lambda1=penalty.lambda1,
            lambda2=penalty.lambda2, standardize=problem.standardize, fit_intercept=problem.fit_intercept,
            x_mean=problem.x_center, x_scale=problem.x_scale,
            feature_names=tuple(feature_names) if feature_names is not None else None,
            n_iter=result.n_iter, dual_gap=result.dual_gap, converged=result.converged,
            penalty_factor=factor, lower=lower, upper=upper,
            group_multipliers=dict(multipliers) if multipliers else None,
        )

    @property
    def at_limit(self) -> np.ndarray:
        """Which coefficients sit at a finite, non-zero limit (the limit, not the data, decided their value; a
        coefficient held at 0 by ``lower=0`` is not told apart from one the penalty zeroed)."""
        if self.lower is None or self.upper is None:
            return np.zeros(self.n_features, dtype=bool)
        low = np.isfinite(self.lower) & (self.lower < 0) & (self.coef <= self.lower)
        high = np.isfinite(self.upper) & (self.upper > 0) & (self.coef >= self.upper)
        return np.asarray(low | high)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n_nonzero(self) -> int:
        """Number of non-zero coefficients."""
        return int(np.count_nonzero(self.coef))

    def predict(self, X: Any) -> np.ndarray:
        """``X · coef + intercept``. A DataFrame is matched to ``feature_names`` by column name.

        A model with an :class:`~pipeline.encoding.Encoding` takes the raw frame (text columns as text,
        missing entries as NaN) and encodes it as in training; an array of the encoded features also works.
        """
        enc = self.encoding
        if enc is not None and hasattr(X, "columns") and not set(enc.feature_names) <= set(X.columns):
            return enc.features(X) @ self.coef + self.intercept  # the raw frame, as in training (names what lacks)
        if self.feature_names is not None and hasattr(X, "columns"):
            missing = [c for c in self.feature_names if c not in X.columns]
            if missing:
                raise DataError(f"input lacks the model's feature columns {missing}.")
            X = X[list(self.feature_names)]
        if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse: the product keeps it sparse
            if X.ndim != 2 or X.shape[1] != self.n_features:
                raise DataError(f"X must have shape (n_rows, {self.n_features}) to match the model, got {X.shape}.")
            return np.asarray(X @ self.coef).ravel() + self.intercept
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim == 1 and self.n_features == arr.shape[0]:
            arr = arr[None, :]
        if enc is not None and arr.ndim == 2 and arr.shape[1] == self.n_features and np.isnan(arr).any():
            fill = enc.feature_fill()  # encoded features: gaps take the fitted fill values, as in a raw frame
            arr = np.where(np.isnan(arr) & ~np.isnan(fill), fill, arr)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise DataError(
                f"X must have shape (n_rows, {self.n_features}) to match the model, got {arr.shape}."
            )
        return arr @ self.coef + self.intercept

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` into directory ``path`` (created if needed)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "penalty": self.penalty,
            "lambda1": self.lambda1,
            "lambda2": self.lambda2,
            "standardize": self.standardize,
            "fit_intercept": self.fit_intercept,
            "intercept": self.intercept,
            "n_features": self.n_features,
            "n_nonzero": self.n_nonzero,
            "feature_names": list(self.feature_names) if self.feature_names is not None else None,
            "n_iter": self.n_iter,
            "dual_gap": self.dual_gap if math.isfinite(self.dual_gap) else None,
            "converged": self.converged,
        }
        if self.encoding is not None:
            meta["encoding"] = encoding_json(self.encoding)
        if self.group_multipliers:
            meta["group_multipliers"] = dict(self.group_multipliers)
        (path / _JSON).write_text(json.dumps(meta, indent=2) + "\n")
        arrays = {"coef": self.coef, "x_mean": self.x_mean, "x_scale": self.x_scale}
        arrays.update({k: v for k, v in (("penalty_factor", self.penalty_factor), ("lower", self.lower),
                                         ("upper", self.upper)) if v is not None})
        np.savez(path / _ARRAYS, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as the flags
        return path

    @classmethod
    def load(cls, path: str | Path) -> FittedModel:
        """Read a model written by :meth:`save` (no pickle is ever loaded)."""
        path = Path(path)
        try:
            meta = json.loads((path / _JSON).read_text())
        except FileNotFoundError as e:
            raise DataError(f"no regsweep model at {str(path)!r}: {_JSON} is missing.") from e
        if meta.get("format") != FORMAT:
            raise DataError(
                f"{str(path / _JSON)!r} has format {meta.get('format')!r}, expected {FORMAT!r}."
            )
        try:
            with np.load(path / _ARRAYS, allow_pickle=False) as arrays:
                coef, x_mean, x_scale = (np.array(arrays[k]) for k in ("coef", "x_mean", "x_scale"))
                extra = {k: np.array(arrays[k]) for k in ("penalty_factor", "lower", "upper") if k in arrays.files}
        except ValueError as e:  # numpy refuses object arrays: they would need pickle
            raise DataError(
                f"{str(path / _ARRAYS)!r} is not a plain array file ({e}); regsweep never unpickles, "
                "write the model with FittedModel.save."
            ) from e
        names = meta.get("feature_names")
        gap = meta.get("dual_gap")
        return cls(
            coef=coef,
            intercept=float(meta["intercept"]),
            penalty=str(meta["penalty"]),
            lambda1=float(meta["lambda1"]),
            lambda2=float(meta["lambda2"]),
            standardize=bool(meta["standardize"]),
            fit_intercept=bool(meta["fit_intercept"]),
            x_mean=x_mean,
            x_scale=x_scale,
            feature_names=tuple(names) if names is not None else None,
            n_iter=int(meta.get("n_iter", 0)),
            dual_gap=float("nan") if gap is None else float(gap),
            converged=bool(meta.get("converged", True)),
            encoding=encoding_from_json(meta["encoding"]) if meta.get("encoding") else None,
            group_multipliers=meta.get("group_multipliers"),
            **extra,
        )


def _snapped(coef: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Coefficients the solver put at a limit on the penalized scale (``s·l``) are ``(s·l)/s`` here, which may
    land an ulp inside or outside ``l``: clipped, and set exactly to a finite limit within 8 ulps of it."""
    out = np.clip(coef, lower, upper)
    for limit in (lower, upper):
        near = np.isfinite(limit) & (np.abs(out - limit) <= 8 * np.finfo(np.float64).eps * np.abs(limit))
        out = np.where(near, limit, out)
    return out


def feature_names_of(X: object, n_features: int, given: Sequence[str] | None) -> tuple[str, ...] | None:
    """Feature names from ``given``, else from a DataFrame's columns, else None."""
    if given is not None:
        names = tuple(str(c) for c in given)
    elif hasattr(X, "columns"):
        names = tuple(str(c) for c in X.columns)
    else:
        return None
    if len(names) != n_features:
        raise DataError(f"`feature_names` must have {n_features} entries, got {len(names)}.")
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise DataError(f"`feature_names` must be unique, got duplicates {dup}.")
    return names
