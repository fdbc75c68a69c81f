"""The fitted model as plain data: predict, save and load without pickle.

A model of the ``binomial`` family predicts the probability of its positive class, ``expit(η)``; one of the
``poisson`` family the expected count ``exp(η)``; ``η = X·coef + intercept + offset`` either way
(:meth:`FittedModel.linear_predictor`). A model fitted with an offset needs one for new rows: passed as
``offset=``, or read from the frame's offset (or exposure) column by name.

On disk a model is a directory with two files:

- ``model.json``: format tag, penalty, λs, flags, intercept, feature names,
  solver diagnostics (human-readable);
- ``arrays.npz``: ``coef``, ``x_mean``, ``x_scale`` (read back with
  ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .encoding import Encoding, input_numbers
from .encoding import from_json as encoding_from_json
from .encoding import to_json as encoding_json
from .errors import DataError
from .solvers import ElasticNet, FitResult
from .solvers.controls import FeatureControls
from .solvers.glm import GlmFit
from .targets import BinaryLabels

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
    n_iter, dual_gap, converged : solver diagnostics.
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
    family, positive_class, negative_class :
        ``gaussian``, ``binomial`` or ``poisson``; the binomial model's labels (coded 1 and 0), else None.
    offset_kind, offset_column : str or None
        ``offset`` or ``exposure`` (the log of a positive column) if the model was fitted with one, and the
        frame column :meth:`predict` reads it from. ``kkt_residual``: a binomial or Poisson fit's certificate.
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
    family: str = "gaussian"
    positive_class: Any = None
    negative_class: Any = None
    offset_kind: str | None = None
    offset_column: str | None = None
    kkt_residual: float | None = None

    @classmethod
    def from_solution(
        cls, problem: Scaling, result: FitResult | GlmFit, penalty: ElasticNet, feature_names: Sequence[str] | None,
        controls: FeatureControls | None = None, multipliers: Mapping[str, float] | None = None,
        family: str = "gaussian", labels: BinaryLabels | None = None, offset_kind: str | None = None,
        offset_column: str | None = None,
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
        if isinstance(result, GlmFit):
            gap, kkt = math.nan, result.kkt_residual
        else:
            gap, kkt = result.dual_gap, None
        return cls(
            coef=coef, intercept=float(result.intercept), penalty=penalty.name, lambda1=penalty.lambda1,
            lambda2=penalty.lambda2, standardize=problem.standardize, fit_intercept=problem.fit_intercept,
            x_mean=problem.x_center, x_scale=problem.x_scale,
            feature_names=tuple(feature_names) if feature_names is not None else None,
            n_iter=result.n_iter, dual_gap=gap, converged=result.converged,
            penalty_factor=factor, lower=lower, upper=upper,
            group_multipliers=dict(multipliers) if multipliers else None,
            family=family, positive_class=None if labels is None else labels.positive,
            negative_class=None if labels is None else labels.negative, offset_kind=offset_kind,
            offset_column=offset_column, kkt_residual=kkt,
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

    @property
    def prediction_name(self) -> str:
        """What :meth:`predict` returns: ``prediction``, ``probability_<positive class>`` or ``expected_count``."""
        if self.family == "binomial":
            return f"probability_{self.positive_class}"
        return "expected_count" if self.family == "poisson" else "prediction"

    def predict(self, X: Any, offset: Any = None) -> np.ndarray:
        """The model's mean for rows X: ``η`` (gaussian), the positive class's probability ``1/(1 + e^−η)``
        (binomial) or the expected count ``e^η`` (poisson), with ``η`` of :meth:`linear_predictor`."""
        eta = self.linear_predictor(X, offset)
        if self.family == "binomial":
            from scipy.special import expit

            return np.asarray(expit(eta))
        return np.exp(eta) if self.family == "poisson" else eta

    def linear_predictor(self, X: Any, offset: Any = None) -> np.ndarray:
        """``η = X · coef + intercept + offset``. A DataFrame is matched to ``feature_names`` by column name.

        A model with an :class:`~pipeline.encoding.Encoding` takes the raw frame (text columns as text,
        missing entries as NaN) and encodes it as in training; an array of the encoded features also works.
        A model fitted with an offset takes ``offset`` (one value per row; for ``exposure`` the exposure itself),
        or reads it from the frame's ``offset_column``. Column names are matched as :func:`_named_as` says.
        """
        return self._linear(X := _named_as(self, _as_rows(self, X))) + _offset_of(self, X, offset)

    def _linear(self, X: Any) -> np.ndarray:
        """``X · coef + intercept`` (the offset apart)."""
        enc = self.encoding
        if enc is not None and hasattr(X, "columns") and _raw_frame(enc, X):
            return enc.features(X) @ self.coef + self.intercept
        _warn_if_taken_by_position(self, X)
        if self.feature_names is not None and hasattr(X, "columns"):
            missing = [c for c in self.feature_names if c not in X.columns]
            if missing:
                raise DataError(f"input lacks the model's feature columns {missing}.")
            X = X[list(self.feature_names)]
        if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse: the product keeps it sparse
            if X.ndim != 2 or X.shape[1] != self.n_features:
                raise DataError(f"X must have shape (n_rows, {self.n_features}) to match the model, got {X.shape}.")
            _refuse_gaps(X, self.feature_names)
            return np.asarray(X @ self.coef).ravel() + self.intercept
        arr = _float_array(X)
        if arr.ndim == 1 and self.n_features == arr.shape[0]:
            arr = arr[None, :]
        if enc is not None and arr.ndim == 2 and arr.shape[1] == self.n_features and np.isnan(arr).any():
            fill = enc.feature_fill()  # encoded features: gaps take the fitted fill values, as in a raw frame
            arr = np.where(np.isnan(arr) & ~np.isnan(fill), fill, arr)
        if arr.ndim != 2 or arr.shape[1] != self.n_features:
            raise DataError(f"X must have shape (n_rows, {self.n_features}) to match the model, got {arr.shape}.")
        _refuse_gaps(arr, self.feature_names)
        return arr @ self.coef + self.intercept

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write ``model.json`` and ``arrays.npz`` into directory ``path`` (created if needed)."""
        path = _directory(Path(path))
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
        if self.family != "gaussian":  # absent: a gaussian model, as every model saved before the families
            meta.update(family=self.family, positive_class=self.positive_class, negative_class=self.negative_class,
                        offset_kind=self.offset_kind, offset_column=self.offset_column,
                        kkt_residual=self.kkt_residual)
        (path / _JSON).write_text(json.dumps(meta, indent=2, default=_plain) + "\n")
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
            family=str(meta.get("family", "gaussian")),
            positive_class=meta.get("positive_class"),
            negative_class=meta.get("negative_class"),
            offset_kind=meta.get("offset_kind"),
            offset_column=meta.get("offset_column"),
            kkt_residual=meta.get("kkt_residual"),
            **extra,
        )


def _offset_of(model: FittedModel, X: Any, offset: Any) -> np.ndarray | float:
    """The offset of rows X: given, from the frame's offset column, or 0 (a one-line error where needed)."""
    if model.offset_kind is None:
        if offset is not None:
            raise DataError("this model was fitted without an offset; predict it without `offset`.")
        return 0.0
    if offset is None and model.offset_column is not None and hasattr(X, "columns") \
            and model.offset_column in X.columns:
        offset = X[model.offset_column]
    if offset is None:
        where = f" or a column {model.offset_column!r}" if model.offset_column else ""
        raise DataError(f"this model was fitted with an {model.offset_kind}; pass `offset=` (one value per "
                        f"row{', the exposure itself' if model.offset_kind == 'exposure' else ''}){where}.")
    from .targets import check_offset

    n = X.shape[0] if hasattr(X, "shape") and len(X.shape) == 2 else 1
    return check_offset(np.asarray(offset, dtype=np.float64).reshape(-1), n,
                        exposure=model.offset_kind == "exposure", name=model.offset_column or "offset")


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


def _plain(value: object) -> object:
    """A NumPy scalar that reached the model's JSON (a solver's ``converged`` flag, a class label read by pandas)
    as the Python value it holds."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _warn_if_taken_by_position(model: FittedModel, X: Any) -> None:
    """A model fitted on an array reads a frame's columns by position: said when they have names (as
    scikit-learn does), since reordered named columns gave other predictions without a word."""
    if model.feature_names is None and hasattr(X, "columns") and any(isinstance(c, str) for c in X.columns):
        warnings.warn("X has column names, but this model was fitted without feature names: its columns are "
                      "taken by position, not by name.", UserWarning, stacklevel=5)


def _directory(path: Path) -> Path:
    """``path`` created as a directory to save a model into; a file there is a one-line error."""
    if path.exists() and not path.is_dir():
        raise DataError(f"cannot save the model into {str(path)!r}: it is a file; give a directory's path.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _as_rows(model: FittedModel, X: Any) -> Any:
    """``X`` as the rows :meth:`FittedModel.predict` reads, or a one-line error naming what is wrong with it.

    A mapping of column names is a frame (of one row when its values are scalars, a JSON record). A pandas
    Series whose text labels name every column the model reads is a one-row frame, matched by name as a frame is
    (its values were taken by position, so a row reordered by its labels predicted −45.0 where 18.3 was right);
    any other Series stays values by position (a frame's column ``df[0]`` of a model whose columns are named
    0, 1, 2 is not a row). A frame may not name a column twice."""
    if X is None:
        raise DataError("X is None; pass the rows to predict: a DataFrame with the model's columns, or an array of "
                        f"its {model.n_features} features.")
    if isinstance(X, Mapping):
        import pandas as pd

        scalars = all(np.ndim(v) == 0 for v in X.values())
        return pd.DataFrame([dict(X)] if scalars else dict(X))
    if hasattr(X, "to_frame") and getattr(X, "ndim", 0) == 1 and hasattr(X, "index"):
        enc = model.encoding
        needed = set(enc.columns) if enc is not None else set(model.feature_names or ())
        labels = list(X.index)
        named = bool(needed) and all(isinstance(k, str) for k in labels) and needed <= {k.strip() for k in labels}
        return X.to_frame().T.infer_objects() if named else X
    if hasattr(X, "columns"):
        seen = Counter(str(c) for c in X.columns)
        twice = [c for c, n in seen.items() if n > 1]
        if twice:
            raise DataError(f"X has the column(s) {twice[:10]} more than once; keep one of each.")
    return X


def _named_as(model: FittedModel, X: Any) -> Any:
    """Frame ``X`` with the columns that differ from a name the model reads only by surrounding blanks or by type
    renamed to it: pandas keeps a header's trailing spaces where regsweep drops them (the model's ``bmi`` is
    pandas' ``bmi ``), and a frame read with ``header=None`` has the integer names 0, 1, … of ``fit``'s features
    ``'0'``, ``'1'``, …. A name two columns would take is left alone; any other input is returned as given."""
    if not hasattr(X, "columns") or not hasattr(X, "rename"):
        return X
    enc = model.encoding
    wanted = {*(model.feature_names or ()), *(enc.columns if enc is not None else ()), model.offset_column} - {None}
    have = set(X.columns)
    keys = [str(c).strip() for c in X.columns]
    once = {k for k, n in Counter(keys).items() if n == 1}
    rename = {c: k for c, k in zip(X.columns, keys) if c not in wanted and k in wanted and k not in have and k in once}
    return X.rename(columns=rename) if rename else X


def _raw_frame(enc: Encoding, frame: Any) -> bool:
    """Whether ``frame`` is read as the training rows were, by ``enc`` (it names what lacks): a raw frame, which
    lacks encoded features, and also a frame of numeric columns only, whose features are its columns (so that
    its ``data.na_values`` mark gaps, text is named and gaps are filled, as in training)."""
    return not set(enc.feature_names) <= set(frame.columns) or enc.feature_names == tuple(enc.columns)


def _refuse_gaps(X: Any, names: Sequence[str] | None) -> None:
    """A missing or infinite entry of rows ``X`` (dense, or scipy.sparse) is an error naming its feature, as a
    text-column model's is: a silent NaN prediction would be scored, served or averaged as if it were a number."""
    sparse = X.tocsr() if hasattr(X, "tocsr") else None
    bad = ~np.isfinite(sparse.data if sparse is not None else X)
    if not bad.any():
        return
    j = int(sparse.indices[np.argmax(bad)]) if sparse is not None else int(np.argmax(bad.any(axis=0)))
    name = names[j] if names is not None else f"x{j}"
    n = int(bad.sum())
    raise DataError(f"input feature {name!r} has {n} missing or infinite {'entry' if n == 1 else 'entries'} "
                    "(NaN, inf), but the model was fitted without data.missing: impute and cannot fill them in; "
                    "fill them in.")


def _float_array(X: Any) -> np.ndarray:
    """``X`` as float64, a frame's gaps as NaN: pandas' nullable columns (Int64, boolean, Arrow types) hold
    ``pd.NA``, which ``float()`` refuses, and MLflow's input check hands them on as object columns."""
    if not (hasattr(X, "columns") and hasattr(X, "astype")):
        try:
            return np.asarray(X, dtype=np.float64)
        except ValueError as e:  # text in an array: only a frame, by its column names, can be encoded
            raise DataError(f"X holds values that are not numbers ({e}); pass a DataFrame with the model's column "
                            "names (its text columns are encoded by name), or numbers.") from None
    try:
        return X.astype(np.float64).to_numpy()
    except (TypeError, ValueError):  # an object column holding pd.NA or None, or text, which is named
        return input_numbers(X)
