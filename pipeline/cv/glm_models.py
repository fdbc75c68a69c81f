"""Fold models of the binomial and Poisson families, and what a sweep computes on all their rows.

For these losses one pass of statistics is not enough (the IRLS weights depend on the coefficients), so
their sweeps always keep the rows in worker memory, as the rows engine does (:mod:`.row_placement`): a
:class:`GlmFoldModel` is one fold's :class:`~pipeline.solvers.glm.GlmProblem` on its worker's rows, the
held-out rows weighted 0, and every trial passes through it, warm-started from the nearest earlier
solution of the fold. ``model.engine`` says how each Newton step's quadratic model is solved: ``gram``, a
weighted p × p Gram formed from the rows; ``rows``, coordinate descent on the rows (no p × p matrix);
``auto`` the Gram when p is at most a fold's rows and 4,000. On the Gram route (dense rows) a batch of
candidates on a worker's folds is solved at once and the points of a path one after the other by
:func:`~pipeline.solvers.glm_chord.solve_together`: steps in the metric of a nearby fit's weighted Gram, the
batch's gradients one product over the rows, one Newton step at the end of each fit.

The held-out scores (:func:`pipeline.metrics.fold_scores`) are exact: the solver returns the linear
predictor on every row. Every function here is module-level and pure in its inputs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np

from ..candidate import Candidate
from ..config import ModelConfig
from ..encoding import Encoding
from ..errors import DataError
from ..metrics import fold_scores, null_deviance
from ..model import FittedModel
from ..solvers.controls import FeatureControls
from ..solvers.families import family_named
from ..solvers.glm import GlmFit, GlmProblem
from ..solvers.glm_chord import Curvature, solve_together
from .path_end import PathEnd
from .refit import bounds_from, group_bounds
from .rows import RowData
from .scoring import FoldPath, FoldScore, PathSpec, PickledCold, WarmStarts, path_stops

__all__ = ["GlmFoldModel", "check_training_folds", "glm_bounds", "glm_coefficient_path", "glm_paths_and_coefficients",
           "glm_problem", "glm_refit", "make_glm_fold_models", "target_facts"]


def glm_problem(rows: RowData, v: np.ndarray, model: ModelConfig, controls: FeatureControls | None) -> GlmProblem:
    """The GLM problem of rows weighted ``v`` (a fold's training rows, or all training rows)."""
    return GlmProblem(rows.features(v), rows.y, v, family_named(model.family), offset=rows.offset,
                      fit_intercept=model.fit_intercept, standardize=model.standardize, controls=controls,
                      inner=model.engine)  # how each Newton step's quadratic model is solved


@dataclass(eq=False)
class GlmFoldModel(PickledCold):
    """One fold's training problem on the worker's rows, and its held-out rows (binomial, poisson)."""

    fold: int
    problem: GlmProblem
    heldout: np.ndarray  # row indices
    y: np.ndarray
    weight: np.ndarray
    family: str
    warm: WarmStarts[GlmFit] = field(default_factory=WarmStarts)
    lock: threading.Lock = field(default_factory=threading.Lock)
    null: float | None = None  # the held-out rows' null deviance, once computed
    curvature: Curvature | None = None  # the last batch's reference metric (Gram route)

    def __sizeof__(self) -> int:
        """Its p- and n-vectors and warm starts (the rows are counted once, as their own task's result)."""
        d = self.problem.base
        entries = sum(len(e) for e in self.warm.entries.values())
        # reference metrics exist on the Gram route only (the rows route forms no p × p matrix)
        metrics = _metrics_kept(d.n_rows, d.n_kept) + 1 if self.problem.batched else 0
        terms = 4 if self.problem._terms is not None else 0  # Poisson's deviance terms: four n-vectors
        return (object.__sizeof__(self) + 8 * (6 * d.n_features + (4 + terms + entries) * d.n_rows)
                + metrics * _metric_bytes(d.n_rows, d.n_kept))

    def score(self, c: Candidate, tol: float) -> FoldScore:
        """Fit ``c`` on this fold (warm-started from the nearest earlier solution) and score its held-out rows."""
        return self.score_many([c], tol)[0]

    def score_many(self, cands: Sequence[Candidate], tol: float) -> list[FoldScore]:
        """Fit every candidate on this fold, each warm-started from the nearest earlier solution, and score them.

        On the Gram route the batch is solved at once (:meth:`score_together` of this fold alone: two passes
        over the rows per iteration for all of them, in the metric of a nearby fit's weighted Gram); on the
        rows route one by one. Each score's ``seconds`` is its share of the batch's time."""
        if self.problem.batched:
            return GlmFoldModel.score_together([self], cands, tol)
        t0 = time.perf_counter()
        with self.lock:
            warms = [self.warm.nearest(c) for c in cands]
            fits = [self.problem.solve(c.penalty_object(), w, tol=tol, multipliers=c.group_multipliers)
                    for c, w in zip(cands, warms, strict=True)]
            for c, fit in zip(cands, fits, strict=True):
                self.warm.remember(c, fit)
            _keep_newest_metrics(self.warm, _metrics_kept(self.problem.base.n_rows, self.problem.base.n_kept))
        share = (time.perf_counter() - t0) / max(len(cands), 1)
        return [self._score(c.trial, fit, share) for c, fit in zip(cands, fits, strict=True)]

    @staticmethod
    def score_together(models: Sequence[GlmFoldModel], cands: Sequence[Candidate], tol: float) -> list[FoldScore]:
        """:meth:`score_many` of every candidate on several fold models of one worker (fold-major), at once.

        On the Gram route the folds share the worker's rows, so all their fits are one batch of
        :func:`~pipeline.solvers.glm_chord.solve_together`: each pass over the rows serves every (fold,
        candidate) pair, where a task per fold read the rows once per fold (one worker's 3 folds of 10⁵ × 100
        rows, the first 60 trials of a sweep in batches of two: 13.1 s against 18.8 s, the same 830 steps).
        Each fit is the one :meth:`score_many` makes: its own problem, penalty and warm start."""
        X = models[0].problem.base.X if models else None
        if not all(m.problem.batched and m.problem.base.X is X for m in models):  # one at a time
            return [s for m in models for s in m.score_many(cands, tol)]
        t0 = time.perf_counter()
        with ExitStack() as stack:
            for m in sorted(models, key=lambda m: m.fold):  # one order for every task: no deadlock
                stack.enter_context(m.lock)
            pairs = [(m, c) for m in models for c in cands]
            fits, refs = solve_together([m.problem for m, _ in pairs], [c.penalty_object() for _, c in pairs],
                                        [m.warm.nearest(c) for m, c in pairs], tol=tol,
                                        multipliers=[c.group_multipliers for _, c in pairs],
                                        curvatures={id(m.problem): m.curvature for m in models})
            for m in models:
                m.curvature = refs.get(id(m.problem), m.curvature)
            for (m, c), fit in zip(pairs, fits, strict=True):
                m.warm.remember(c, fit)
            for m in models:
                _keep_newest_metrics(m.warm, _metrics_kept(m.problem.base.n_rows, m.problem.base.n_kept))
        share = (time.perf_counter() - t0) / max(len(pairs), 1)
        return [m._score(c.trial, fit, share) for (m, c), fit in zip(pairs, fits, strict=True)]

    def _score(self, trial: int, fit: GlmFit, seconds: float, *, extras: bool = True) -> FoldScore:
        h = self.heldout
        if self.null is None:  # the held-out rows' intercept-only deviance: the same for every trial
            self.null = null_deviance(self.family, self.y[h], self.weight[h], self.problem.offset[h])
        dev, explained, extra = fold_scores(self.family, self.y[h], fit.eta[h], self.weight[h], self.null,
                                            extras=extras)
        # the fit's own deviance (its objective less its penalty): one pass over every row less per fit
        train = 2.0 * (fit.deviance if np.isfinite(fit.deviance) else self.problem.mean_half_deviance(fit.eta))
        return FoldScore(trial=trial, fold=self.fold, heldout_mse=dev, heldout_r2=explained, train_mse=train,
                         n_nonzero=fit.n_nonzero, n_iter=fit.n_iter, converged=fit.converged, seconds=seconds,
                         extra=tuple(extra.items()))

    def path(self, spec: PathSpec, tol: float) -> FoldPath:
        """Every point of ``spec``, warm-started along the path (:func:`glm_paths`)."""
        return glm_paths([self], spec, tol)[0]

    @staticmethod
    def paths_together(models: Sequence[GlmFoldModel], spec: PathSpec, tol: float,
                       end: PathEnd | None = None) -> list[FoldPath]:
        """The paths of several fold models on one worker, in step (:func:`glm_paths`)."""
        return glm_paths(models, spec, tol, end)


def glm_paths(models: Sequence[GlmFoldModel], spec: PathSpec, tol: float,
              end: PathEnd | None = None) -> list[FoldPath]:
    """Every point of ``spec`` on each fold model, warm-started along its path, the folds in step: on the Gram
    route the folds of a worker share its rows, so each point is one batch of their fits
    (:func:`~pipeline.solvers.glm_chord.solve_together`: their gradients are one product over the rows).

    A fold's path stops once its training fit explains :data:`~.scoring.PATH_STOP_DEV_RATIO` of the null
    deviance (glmnet's rule, which also ends the path of separable classes), once a point adds almost nothing
    to it (glmnet's ``fdev``, :func:`~.scoring.deviance_levelled`) or once its held-out deviance has turned
    well past its minimum; the others go on, but not past the shortest path of all folds when ``end`` shares it
    (the curve is cut there: :mod:`.path_end`)."""
    return _paths(models, spec, tol, end, None)[0]


def glm_paths_and_coefficients(model_lists: Sequence[Sequence[GlmFoldModel]], spec: PathSpec, tol: float,
                               end: PathEnd | None, rows: RowData, model: ModelConfig,
                               controls: FeatureControls | None) -> tuple[list[FoldPath], np.ndarray]:
    """:func:`glm_paths` of a worker's fold models and, in step with them, the coefficient path on all its rows
    (standardized coefficients, p × points): the problem on all rows shares the folds' rows, so its points join
    their batches (one more column in each product over the rows, where a task of its own read them again).
    It stops with the first of these folds to stop, which the curve's length cannot pass."""
    models = [m for group in model_lists for m in group]
    folds, coefs = _paths(models, spec, tol, end, rows.glm_problem(model, controls))
    assert coefs is not None
    return folds, coefs


def _paths(models: Sequence[GlmFoldModel], spec: PathSpec, tol: float, end: PathEnd | None,
           whole: GlmProblem | None) -> tuple[list[FoldPath], np.ndarray | None]:
    """:func:`glm_paths`, and with ``whole`` its coefficient path (:func:`glm_paths_and_coefficients`)."""
    coefs = np.zeros((whole.base.n_features if whole is not None else 0, len(spec.strengths)))
    whole_fit: GlmFit | None = None
    with ExitStack() as stack:
        for m in sorted(models, key=lambda m: m.fold):  # one order for every task: no deadlock
            stack.enter_context(m.lock)
        runs = [_PathRun(m, spec) for m in models]
        n = 0
        for i in range(len(spec.strengths)):
            going = [r for r in runs if not r.stopped]
            if not going or end is not None and i >= end.limit():
                break
            extra = [whole] if whole is not None and len(going) == len(runs) else []  # until a fold of these stops
            problems = [r.model.problem for r in going] + extra
            fits = _path_points(problems, spec.candidate(i), [r.fit for r in going] + [whole_fit] * len(extra), tol)
            if whole is not None and extra:
                whole_fit = fits.pop()
                coefs[:, i] = whole_fit.coef * whole.base.x_scale
                n = i + 1
            for r, fit in zip(going, fits, strict=True):
                r.add(fit)
                if r.stopped and end is not None:
                    end.reached(len(r.scores))
    return [r.result() for r in runs], (coefs[:, :n] if whole is not None else None)


@dataclass(eq=False)
class _PathRun:
    """One fold's path so far."""

    model: GlmFoldModel
    spec: PathSpec
    fit: GlmFit | None = None
    scores: list[FoldScore] = field(default_factory=list)
    explained: list[float] = field(default_factory=list)
    stopped: bool = False
    null: float = 0.0  # the training rows' null deviance, once

    def __post_init__(self) -> None:
        problem = self.model.problem
        self.null = 2.0 * problem.null_objective()

    def add(self, fit: GlmFit) -> None:
        """The next point; whether the path stops there."""
        self.fit = fit
        self.scores.append(self.model._score(-1, fit, 0.0, extras=False))  # a path's curve: the deviance
        self.explained.append(1.0 - self.scores[-1].train_mse / self.null if self.null > 0 else 1.0)
        self.stopped = path_stops(self.explained, [s.heldout_mse for s in self.scores], self.spec)

    def result(self) -> FoldPath:
        s = self.scores
        return FoldPath(self.model.fold, tuple(x.heldout_mse for x in s), tuple(x.heldout_r2 for x in s),
                        tuple(x.train_mse for x in s), tuple(x.n_nonzero for x in s))


def _path_points(problems: Sequence[GlmProblem], cand: Candidate, previous: Sequence[GlmFit | None],
                 tol: float) -> list[GlmFit]:
    """The next point of each problem's path, warm-started from its previous one. On the Gram route the problems
    on the same rows step together (:func:`~pipeline.solvers.glm_chord.solve_together`: one product over the rows
    per step), each in the metric of its previous point's Gram (neighbouring points' weights differ little); a
    fold whose rows are its own (gaps imputed by its training means) steps alone the same way, one Gram per point
    where Newton's method forms one per step. The rows route takes Newton steps."""
    fits: list[GlmFit | None] = [None] * len(problems)
    same_rows: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        if p.batched:
            same_rows.setdefault(id(p.base.X), []).append(i)
        else:
            fits[i] = p.solve(cand.penalty_object(), previous[i], tol=tol, multipliers=cand.group_multipliers)
    for idx in same_rows.values():
        together = solve_together([problems[i] for i in idx], [cand.penalty_object()] * len(idx),
                                  [previous[i] for i in idx], tol=tol, multipliers=[cand.group_multipliers] * len(idx))
        for i, fit in zip(idx, together[0], strict=True):
            fits[i] = fit
    assert all(f is not None for f in fits)
    return cast(list[GlmFit], fits)


_METRIC_BYTES = 256 * 2**20  # what a fold's warm starts may hold in reference metrics ...
_METRICS = (2, 32)  # ... but at least and at most this many: on 10⁵ × 100 rows keeping every metric rather than the
#                     4 newest took the trials from 63 s to 52 s (a warm start's own metric is the nearest there is)


def _metric_bytes(n_rows: int, n_kept: int) -> int:
    """What one reference metric holds: the n IRLS weights, the p × p Gram of the kept columns and, once a ridge
    fit needed it, one p × p factor (a Cholesky factor, or the Gram's eigenvectors)."""
    return 8 * (n_rows + 2 * n_kept ** 2)


def _metrics_kept(n_rows: int, n_kept: int) -> int:
    """How many reference metrics the warm starts of a fold over ``n_rows`` rows and ``n_kept`` columns keep.

    At 10⁵ × 100 all 32 (31 MB in all); at 4,000 kept columns, where one Gram and its eigenvectors take 256 MB,
    the 2 newest."""
    return max(_METRICS[0], min(_METRICS[1], _METRIC_BYTES // _metric_bytes(n_rows, n_kept)))


def _keep_newest_metrics(warm: WarmStarts[GlmFit], keep: int) -> None:
    """Forget the metric of the warm starts whose Gram is not among the ``keep`` newest (each holds n weights):
    such a warm start then steps in the batch's metric."""
    serials = sorted({f.curvature.serial for entries in warm.entries.values() for *_, f in entries
                      if f.curvature is not None})
    old = set(serials[:-keep]) if keep > 0 else set(serials)
    for entries in warm.entries.values():
        for i, (a, b, f) in enumerate(entries):
            if f.curvature is not None and f.curvature.serial in old:
                entries[i] = (a, b, replace(f, curvature=None))


def make_glm_fold_models(rows: RowData, folds: Sequence[int], model: ModelConfig, controls: FeatureControls | None,
                         warm_size: int) -> list[GlmFoldModel]:
    """The :class:`GlmFoldModel` of each fold in ``folds``, sharing ``rows``."""
    out = []
    for f in folds:
        v = np.where(rows.fold == f, 0.0, rows.training)
        out.append(GlmFoldModel(f, glm_problem(rows, v, model, controls), np.flatnonzero(rows.fold == f), rows.y,
                                rows.weight, model.family, WarmStarts(size=warm_size)))
    return out


# ------------------------------------------------------------------ all rows
def target_facts(rows: RowData) -> tuple[dict[str, Any], list[str]]:
    """What the terminal and the summary say about a binomial or Poisson target (classes and their counts; the
    counts' mean and share of zeros; the offset), and notes (a fold whose held-out rows hold one class)."""
    used = rows.fold >= 0
    y, w = rows.y[used], rows.weight[used]
    offset = (f"; offset: log of {rows.offset_column!r}" if rows.exposure else f"; offset: {rows.offset_column!r}"
              ) if rows.offset is not None and rows.offset_column else ("; with an offset" if rows.offset is not None
                                                                       else "")
    notes = []
    if rows.family == "binomial":
        assert rows.labels is not None
        n_pos = int(np.count_nonzero(y > 0.5))
        summary = {"positive_class": rows.labels.positive, "negative_class": rows.labels.negative,
                   "n_positive": n_pos, "n_negative": int(y.size - n_pos)}
        line = (f"Target: binomial, positive class {rows.labels.positive!r} (coded 1): {n_pos} of {y.size} rows "
                f"({100 * n_pos / max(y.size, 1):.1f}%); negative {rows.labels.negative!r}{offset}")
        rarer = min(n_pos, int(y.size - n_pos))
        if rarer < 2:
            fix = f"add rows of the rarer class (it has {rarer})"
        elif rarer < rows.k:
            fix = (f"lower folds.k to at most {rarer}, the rarer class's rows (with folds.stratify on, as by default, "
                   "every fold then holds both)")
        else:
            fix = "use row folds with folds.stratify on (it gives every fold both classes)"
        for f in range(rows.k):
            held = rows.y[rows.fold == f]
            if held.size and (held.min() == held.max()):
                notes.append(f"fold {f}'s held-out rows hold one class only: its AUC is missing (the trials' AUC is "
                             f"the mean over the other folds); {fix}.")
    else:
        mean = float(w @ y) / float(w.sum())
        zeros = float(np.count_nonzero(y == 0)) / max(y.size, 1)
        fractional = int(np.count_nonzero(y != np.round(y)))
        weighted = bool(w.size and np.ptp(w) > 0)  # (no data.weight: every weight 1)
        summary = {"mean_count": mean, "share_zero": zeros, "n_fractional": fractional, "weighted": weighted}
        line = (f"Target: poisson {'values' if fractional else 'counts'}, {'weighted ' if weighted else ''}mean "
                f"{mean:.4g}, "
                f"{100 * zeros:.1f}% zeros{offset}")
        if fractional:  # glmnet and scikit-learn fit them too (the deviance is defined), but counts are whole
            notes.append(f"the Poisson target holds {fractional} values that are not whole numbers (of {y.size}): "
                         + ("with an exposure or offset the target must be the counts themselves (the model "
                            "multiplies its rate by the exposure); check that it is not a rate already."
                            if rows.offset is not None else
                            "the model fits them as rates of one unit of exposure; if they are counts per exposure, "
                            "give the counts and data.exposure instead, which weights each row by its exposure."))
    summary.update({"family": rows.family, "offset": rows.offset_column if rows.offset is not None else None,
                    "exposure": rows.exposure if rows.offset is not None else None})
    return {"line": line, "summary": summary}, notes


def check_training_folds(rows: RowData) -> None:
    """Stop before any trial when a fold's training rows cannot be fitted: one class only (binomial) or no count
    above 0 (Poisson). The null model's intercept is then infinite and every trial would fail on that fold."""
    used = (rows.fold >= 0) & (rows.weight > 0)
    for f in range(rows.k):
        y = rows.y[used & (rows.fold != f)]
        if y.size == 0:
            raise DataError(f"fold {f}'s training rows are empty (every row of weight > 0 is in fold {f}), so no "
                            "model can be fitted there; add rows or give them weight.")
        if rows.family == "binomial":
            if y.min() != y.max():
                continue
            assert rows.labels is not None
            positive = bool(y[0] > 0.5)  # the class the training rows hold; the other one is missing
            missing = rows.labels.negative if positive else rows.labels.positive
            held = int(np.count_nonzero((rows.y[used] > 0.5) != positive))
            raise DataError(f"fold {f}'s training rows hold one class only (class {missing!r} has {held} row(s) of "
                            f"weight > 0, all in fold {f}), so the logistic model has no finite intercept there; "
                            "add rows of that class, or keep folds.stratify on (it spreads each class over the folds; "
                            "folds.group keeps each group in one fold, so a class that one group holds cannot be "
                            "spread: group by a finer column, or leave folds.group unset).")
        if not np.any(y > 0):
            n_pos = int(np.count_nonzero(rows.y[used] > 0))
            fix = ("add rows with counts above 0 (with one such row, the fold that holds it out cannot be fitted "
                   "whatever folds.k is)" if n_pos < 2 else "add rows with counts above 0, or lower folds.k")
            raise DataError(f"fold {f}'s training rows hold only zero counts ({n_pos} row(s) of weight > 0 count above "
                            f"0, all in fold {f}), so the Poisson model has no finite intercept there; {fix}.")


def glm_bounds(rows: RowData, model: ModelConfig, controls: FeatureControls | None = None) -> dict[str, float]:
    """The search bounds on all training rows: λ1 from the null model's gradient (factors and limits
    respected), λ2 from the largest eigenvalue of the Gram weighted by the null model's IRLS weights (the
    curvature a ridge penalty competes with)."""
    problem = rows.glm_problem(model, controls)
    lam1_max = problem.lambda1_max
    d = problem.base
    mu = problem.family.mean(problem.null_model()[1])
    v_mean = float(d.v @ problem.family.variance(mu, d.rows)) / d.sum_w
    from ..solvers import RowProblem

    e_max = RowProblem(d).largest_eigenvalue() * v_mean
    return {**bounds_from(lam1_max, e_max, d.rows.size, d.n_kept), **group_bounds(problem, controls)}


def glm_refit(rows: RowData, cand: Candidate, feature_names: Sequence[str], model: ModelConfig,
              encoding: Encoding | None = None, controls: FeatureControls | None = None) -> FittedModel:
    """``cand`` fitted on all training rows, as a model of the family (labels and offset recorded)."""
    problem = rows.glm_problem(model, controls)
    penalty = cand.penalty_object()
    result = problem.solve(penalty, tol=model.tol, multipliers=cand.group_multipliers)
    kind = None if rows.offset is None else ("exposure" if rows.exposure else "offset")
    fitted = FittedModel.from_solution(problem.base, result, penalty, feature_names, controls,
                                       cand.group_multipliers, family=model.family, labels=rows.labels,
                                       offset_kind=kind, offset_column=rows.offset_column)
    from .row_models import with_encoding

    return with_encoding(fitted, problem.base, encoding)


def glm_coefficient_path(rows: RowData, spec: PathSpec, model: ModelConfig,
                         controls: FeatureControls | None = None) -> np.ndarray:
    """Standardized coefficients at every point of ``spec`` on all rows: shape (p, m), warm-started."""
    problem = rows.glm_problem(model, controls)
    coefs = np.zeros((rows.n_features, len(spec.strengths)))
    fit: GlmFit | None = None
    for i in range(len(spec.strengths)):
        fit = _path_points([problem], spec.candidate(i), [fit], model.tol)[0]
        coefs[:, i] = fit.coef * problem.base.x_scale
    return coefs
