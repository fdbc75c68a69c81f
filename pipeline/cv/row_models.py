"""Fold models of the rows engine, and what a sweep computes on all rows: summary, bounds, refit, path.

A :class:`RowFoldModel` is one fold's training problem on the shared rows of
its worker (:class:`~pipeline.cv.rows.RowData`): the same X, with the fold's
held-out rows weighted 0 (:class:`~pipeline.solvers.RowDesign`), so K fold
models cost K sets of p-vectors, not K copies of the rows. The held-out error
is computed exactly from the held-out rows: the solver returns ``X̃β`` on
every row, held-out ones included.

Every function here is module-level and pure in its inputs (picklable, no
client, no Optuna, no MLflow), so Dask may run it anywhere and twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..candidate import Candidate
from ..columns import constant_target, describe_columns, far_from_zero_notes, mostly_missing_notes
from ..config import ModelConfig
from ..encoding import Encoding
from ..model import FittedModel
from ..solvers import RowDesign, RowFit, RowProblem
from ..solvers.families import family_named
from ..solvers.controls import FeatureControls
from .glm_models import GlmFoldModel, check_training_folds, make_glm_fold_models, target_facts
from .refit import bounds_from, group_bounds
from .rows import RowData, in_source_order
from .scoring import FoldPath, FoldScore, PathSpec, PickledCold, WarmStarts, path_stops

__all__ = ["RowFoldModel", "heldout_mse", "make_row_fold_models", "retrain_facts", "row_bounds",
           "row_coefficient_path", "row_refit", "row_summary"]

_WARM_BYTES = 32 * 2**20  # warm starts a fold model keeps per penalty (each holds three p-vectors)


@dataclass(eq=False)
class RowFoldModel(PickledCold):
    """One fold's training problem on the worker's rows, and its held-out rows (the rows engine)."""

    fold: int
    problem: RowProblem
    heldout: np.ndarray  # row indices
    y: np.ndarray
    weight: np.ndarray
    warm: WarmStarts[RowFit] = field(default_factory=WarmStarts)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __sizeof__(self) -> int:
        """What this fold model holds besides the worker's rows (its p-vectors and caches), for Dask's memory
        accounting: the rows are counted once, as their own task's result."""
        d = self.problem.design
        return object.__sizeof__(self) + 8 * (6 * d.n_features + 4 * d.n_rows) + self.problem.cache_bytes

    def score(self, c: Candidate, tol: float) -> FoldScore:
        """Fit ``c`` on this fold (warm-started from the nearest earlier solution) and score its held-out rows."""
        t0 = time.perf_counter()
        with self.lock:
            fit = self.problem.solve(c.penalty_object(), self.warm.nearest(c) if c.lambda1 > 0 else None, tol=tol,
                                     multipliers=c.group_multipliers)
            if c.lambda1 > 0:
                self.warm.remember(c, fit)
        return self._score(c.trial, fit, time.perf_counter() - t0)

    def _score(self, trial: int, fit: RowFit, seconds: float) -> FoldScore:
        d = self.problem.design
        err = self.y - (d.y_center + fit.fitted)
        h, wh = self.heldout, self.weight[self.heldout]
        sse = float(wh @ (err[h] * err[h]))
        yh = self.y[h]
        cyy = float(wh @ (yh - wh @ yh / wh.sum()) ** 2)
        r = fit.result
        return FoldScore(trial=trial, fold=self.fold, heldout_mse=sse / float(wh.sum()),
                         heldout_r2=1.0 - sse / cyy if cyy > 0 else float("nan"),
                         train_mse=float(d.v @ (err * err)) / d.sum_w, n_nonzero=r.n_nonzero, n_iter=fit.rounds,
                         converged=r.converged, seconds=seconds)

    def path(self, spec: PathSpec, tol: float) -> FoldPath:
        """Every point of ``spec``, warm-started along the path, until glmnet's rules end it
        (:func:`~.scoring.path_stops`)."""
        scores: list[FoldScore] = []
        explained: list[float] = []
        fit: RowFit | None = None
        with self.lock:
            for i in range(len(spec.strengths)):
                cand = spec.candidate(i)
                fit = self.problem.solve(cand.penalty_object(), fit if cand.lambda1 > 0 else None, tol=tol,
                                         multipliers=cand.group_multipliers)
                scores.append(self._score(-1, fit, 0.0))
                explained.append(1.0 - scores[-1].train_mse / self.problem.yy if self.problem.yy > 0 else 0.0)
                if path_stops(explained, [s.heldout_mse for s in scores], spec):
                    break
        return FoldPath(self.fold, tuple(s.heldout_mse for s in scores), tuple(s.heldout_r2 for s in scores),
                        tuple(s.train_mse for s in scores), tuple(s.n_nonzero for s in scores))


def make_row_fold_models(rows: RowData, folds: Sequence[int], *, fit_intercept: bool, standardize: bool,
                         controls: FeatureControls | None = None,
                         model: ModelConfig | None = None) -> list[RowFoldModel] | list[GlmFoldModel]:
    """The :class:`RowFoldModel` of each fold in ``folds``, sharing ``rows`` (one task, on the rows' worker); with
    a ``model`` of the binomial or Poisson family, its :class:`~.glm_models.GlmFoldModel`."""
    training = rows.training
    size = int(max(2, min(64, _WARM_BYTES // (24 * max(1, rows.n_features)))))
    if model is not None and model.family != "gaussian":
        return make_glm_fold_models(rows, folds, model, controls, max(2, size // 4))  # they also keep η (n)
    out = []
    for f in folds:
        v = np.where(rows.fold == f, 0.0, training)
        design = RowDesign(rows.features(v), rows.y, v, fit_intercept=fit_intercept, standardize=standardize)
        out.append(RowFoldModel(f, RowProblem(design, controls), np.flatnonzero(rows.fold == f), rows.y, rows.weight,
                                WarmStarts(size=size)))
    return out


# ------------------------------------------------------------------ all rows
_FAR = 1e8  # a column whose |mean| exceeds this many standard deviations is noted (the rows engine loses digits)


def row_summary(rows: RowData, feature_names: tuple[str, ...], missing: str = "error") -> dict[str, Any]:
    """Row counts per fold, group count, column notes and a content fingerprint of the rows (worker side);
    ``missing`` is ``data.missing`` (what the notes say about rows left out)."""
    design = rows.problem(ModelConfig()).design
    used = rows.fold >= 0
    n = int(np.count_nonzero(used))
    const = [feature_names[j] for j in np.flatnonzero(~design.kept)]
    dups = [(feature_names[a], feature_names[b]) for a, b in _identical_columns(design.X, design.cols)]
    columns = describe_columns(n, rows.n_features, const, dups, rows.dropped_by, imputing=missing == "impute",
                               has_offset=rows.offset is not None, feature_names=feature_names)
    far = np.abs(design.x_center) > _FAR * np.sqrt(np.maximum(design.x_var, 0.0))
    # its products centre implicitly (Xᵀr − x̄ Σr): each loses eps·|x̄|/sd
    columns["notes"] = [*columns["notes"], *far_from_zero_notes([feature_names[j] for j in
                                                                 np.flatnonzero(far & design.kept)])]
    imp = rows.imputation
    if imp is not None and imp.value_columns:  # the missing indicators' weighted means over the rows used
        masks = np.asarray(rows.X[:, imp.n_encoded : imp.n_encoded + len(imp.value_columns)]) > 0
        shares = ((design.v @ masks) / design.sum_w).tolist()
        names = [feature_names[j] for j in imp.value_columns]
        columns["notes"] = [*columns["notes"], *mostly_missing_notes(names, shares, imp.indicators)]
    target: dict[str, Any] = {}
    if rows.family == "gaussian":  # the design's own centred target, over the rows used
        target["constant_target"] = constant_target(design.sum_w, float(design.v @ design.y_c ** 2), design.y_center)
    else:
        check_training_folds(rows)  # before any trial: a fold without a finite intercept would fail them all
        facts, notes = target_facts(rows)
        target = {"target": facts}
        columns["notes"] = [*columns["notes"], *notes]
    return {
        "n_rows": n,
        "fold_rows": [int(np.count_nonzero(rows.fold == f)) for f in range(rows.k)],
        "fold_weight": [float(rows.weight[rows.fold == f].sum()) for f in range(rows.k)],
        "n_groups": rows.n_groups,
        "fingerprint": _fingerprint(rows, feature_names),
        **columns,
        **target,
    }


def _identical_columns(X: Any, live: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of live columns with identical values (hashed, then compared exactly)."""
    sparse = hasattr(X, "indptr")
    by_hash: dict[bytes, list[int]] = {}
    for j in live.tolist():
        if sparse:
            a, b = X.indptr[j], X.indptr[j + 1]
            key = hashlib.blake2b(X.indices[a:b].tobytes() + X.data[a:b].tobytes(), digest_size=16).digest()
        else:
            key = hashlib.blake2b(X[:, j], digest_size=16).digest()
        by_hash.setdefault(key, []).append(j)
    pairs = []
    for group in by_hash.values():
        for a, b in itertools.combinations(group, 2):
            same = (X[:, a] != X[:, b]).nnz == 0 if sparse else np.array_equal(X[:, a], X[:, b])
            if same:
                pairs.append((a, b))
    return sorted(pairs)


def _fingerprint(rows: RowData, feature_names: tuple[str, ...]) -> str:
    """A digest of the rows as loaded (binomial and Poisson rows are held ordered by fold, :func:`.rows.by_fold`:
    their digest undoes that, so a study resumed across that change finds its data unchanged)."""
    h = hashlib.sha256()
    X = rows.X
    if hasattr(X, "indptr"):
        for arr in (X.indptr, X.indices, X.data):
            h.update(np.ascontiguousarray(arr).data)
    else:  # a column at a time: the digest of the whole array in Fortran order
        for j in range(X.shape[1]):
            h.update(np.ascontiguousarray(in_source_order(rows, X[:, j])).data)
    for arr in (rows.y, rows.weight, rows.fold, *((rows.offset,) if rows.offset is not None else ())):
        h.update(np.ascontiguousarray(in_source_order(rows, arr)).data)
    h.update("\x1f".join(feature_names).encode())
    return h.hexdigest()[:16]


def row_bounds(rows: RowData, model: ModelConfig, controls: FeatureControls | None = None) -> dict[str, float]:
    """:func:`~pipeline.cv.refit.search_bounds` from the rows: λ1_max = ‖X̃ᵀV y_c‖∞/Σv (factors and limits
    respected), e_max from the kernel."""
    problem = rows.problem(model, controls)
    d = problem.design
    return {**bounds_from(problem.lambda1_max, problem.largest_eigenvalue(), d.rows.size, d.n_kept),
            **group_bounds(problem, controls)}


def row_refit(rows: RowData, cand: Candidate, feature_names: Sequence[str], model: ModelConfig,
              encoding: Encoding | None = None, controls: FeatureControls | None = None) -> FittedModel:
    """``cand`` fitted on all (training) rows; the model keeps ``encoding`` (no column is imputed here)."""
    problem = rows.problem(model, controls)
    penalty = cand.penalty_object()
    result = problem.solve(penalty, tol=model.tol, multipliers=cand.group_multipliers).result
    fitted = FittedModel.from_solution(problem.design, result, penalty, feature_names, controls,
                                       cand.group_multipliers)
    return with_encoding(fitted, problem.design, encoding)


def with_encoding(fitted: FittedModel, design: RowDesign, encoding: Encoding | None) -> FittedModel:
    """A model refit on all rows, with ``encoding`` fitted to them: the means of the filled columns are the values
    filled in (whether centred or not)."""
    if encoding is None:
        return fitted
    means = np.asarray(design.X.T @ design.v).ravel() / design.sum_w
    return dataclasses.replace(fitted, encoding=encoding.fitted(means))


def row_coefficient_path(rows: RowData, spec: PathSpec, model: ModelConfig,
                         controls: FeatureControls | None = None) -> np.ndarray:
    """Standardized coefficients at every point of ``spec`` on all rows: shape (p, m), warm-started."""
    problem = rows.problem(model, controls)
    coefs = np.zeros((rows.n_features, len(spec.strengths)))
    fit: RowFit | None = None
    for i in range(len(spec.strengths)):
        cand = spec.candidate(i)
        fit = problem.solve(cand.penalty_object(), fit if cand.lambda1 > 0 else None, tol=model.tol,
                            multipliers=cand.group_multipliers)
        coefs[:, i] = fit.result.coef * problem.design.x_scale
    return coefs


def heldout_mse(rows: RowData, models: Sequence[tuple[np.ndarray, float, np.ndarray | None]]) -> list[float]:
    """The error of each ``(coef, intercept, fill)`` on the rows held out of every fold (a retrain's): the
    weighted MSE, or for a binomial or Poisson model the weighted mean deviance (offset included); gaps filled
    with ``fill`` (a model's own values), or with the training rows' means when None."""
    held = np.flatnonzero(rows.fold < 0)
    w = rows.weight[held]
    out = []
    for coef, intercept, fill in models:
        X = rows.features(fill=fill)
        linear = np.asarray(X[held] @ coef).ravel() + intercept
        if not w.sum() > 0:
            out.append(float("nan"))
        elif rows.family == "gaussian":
            err = rows.y[held] - linear
            out.append(float(w @ (err * err)) / float(w.sum()))
        else:
            eta = linear + (rows.offset[held] if rows.offset is not None else 0.0)
            half = family_named(rows.family).half_deviance(rows.y[held], eta)
            out.append(2.0 * float(w @ half) / float(w.sum()))
    return out


def retrain_facts(rows: RowData) -> dict[str, Any]:
    """What a retrain reports and checks about its rows: counts and weights of the training rows per fold and
    of the held-out rows, the time cut-off, and the training rows' column means (the model's example row)."""
    training = rows.training
    held = rows.fold < 0
    w_train = float(training.sum())
    mean = np.asarray(rows.features().T @ training).ravel() / w_train if w_train > 0 else np.zeros(rows.n_features)
    return {"n_train": int(np.count_nonzero(rows.fold >= 0)), "n_heldout": int(np.count_nonzero(held)),
            "w_train": w_train, "w_heldout": float(rows.weight[held].sum()),
            "fold_weight": [float(rows.weight[rows.fold == f].sum()) for f in range(rows.k)],
            "x_mean": mean, "integer_columns": rows.integer_columns, "time_cutoff": rows.cutoff,
            "positive_class": rows.labels.positive if rows.labels is not None else None,
            "negative_class": rows.labels.negative if rows.labels is not None else None,
            "y_mean_train": float(rows.y @ training) / w_train if w_train > 0 else 0.0}
