"""Fold models of the Gram engine on the workers, and the scoring of candidates on any fold model.

A :class:`FoldModel` is one fold's training problem (the standardized
training Gram) plus its held-out statistics; it lives in the memory of a
worker. Scoring a candidate on a fold is a p×p solve and an exact held-out
error from statistics: no row is read again. The rows engine's fold models
(:mod:`.rows`) offer the same two methods, so the functions below serve both.

Every function here is module-level and pure in its inputs (picklable, no
client, no Optuna, no MLflow), so Dask may run it anywhere and twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..candidate import Candidate
from ..solvers import FitResult, GramProblem, SuffStats
from ..solvers.controls import FeatureControls
from .passes import BlockPass
from .path_end import PathEnd
from .scoring import FoldPath, FoldScore, PathSpec, WarmStarts, path_stops

__all__ = ["FoldModel", "FoldScore", "Scorable", "make_fold_model", "make_fold_models", "score_candidates",
           "score_folds", "score_path", "score_paths", "score_slots"]


class Scorable(Protocol):
    """A fold model of either engine."""

    fold: int

    def score(self, c: Candidate, tol: float) -> FoldScore: ...

    def path(self, spec: PathSpec, tol: float) -> FoldPath: ...


@dataclass(eq=False)
class FoldModel:
    """A fold's training problem and held-out statistics (Gram engine), living on one worker.

    ``warm`` keeps recent solutions per penalty name so that a new candidate
    starts from the nearest previous one (in log λ); ridge candidates reuse one
    eigendecomposition of the fold's Gram.
    """

    fold: int
    problem: GramProblem
    train: SuffStats
    heldout: SuffStats
    warm: WarmStarts[np.ndarray] = field(default_factory=WarmStarts)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("lock")
        state["warm"] = WarmStarts()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def __sizeof__(self) -> int:
        """Its three p × p matrices (Gram, training and held-out statistics), for Dask's ``sizeof``."""
        p = self.problem.n_features
        return object.__sizeof__(self) + 3 * 8 * p * p

    def score(self, c: Candidate, tol: float) -> FoldScore:
        """Fit ``c`` on this fold (warm-started) and score it on the held-out statistics."""
        t0 = time.perf_counter()
        with self.lock:
            beta0 = self.warm.nearest(c, self.problem.lambda1_max) if c.lambda1 > 0 else None
            result = self.problem.solve(c.penalty_object(), beta0, tol=tol, reuse_factor=True,
                                        multipliers=c.group_multipliers)
            if c.lambda1 > 0:
                self.warm.remember(c, result.beta)
        return self._score(c.trial, result, time.perf_counter() - t0)

    def _score(self, trial: int, result: FitResult, seconds: float) -> FoldScore:
        return FoldScore(trial=trial, fold=self.fold, heldout_mse=self.heldout.mse(result.coef, result.intercept),
                         heldout_r2=self.heldout.r2(result.coef, result.intercept),
                         train_mse=self.train.mse(result.coef, result.intercept), n_nonzero=result.n_nonzero,
                         n_iter=result.n_iter, converged=result.converged, seconds=seconds)

    def path(self, spec: PathSpec, tol: float) -> FoldPath:
        """Every point of ``spec``, warm-started along the path, until glmnet's rules end it
        (:func:`~.scoring.path_stops`)."""
        scores: list[FoldScore] = []
        explained: list[float] = []
        beta: np.ndarray | None = None
        with self.lock:
            for i in range(len(spec.strengths)):
                cand = spec.candidate(i)
                result = self.problem.solve(cand.penalty_object(), beta if cand.lambda1 > 0 else None, tol=tol,
                                            reuse_factor=True, multipliers=cand.group_multipliers)
                beta = result.beta
                scores.append(self._score(-1, result, 0.0))
                explained.append(_r2(scores[-1].train_mse, self.train))
                if path_stops(explained, [s.heldout_mse for s in scores], spec):
                    break
        return _fold_path(self.fold, scores)


def _r2(train_mse: float, train: SuffStats) -> float:
    """The training fit's share of the (weighted) deviance explained; 0 for a constant target."""
    return 1.0 - train_mse * train.sum_w / train.cyy if train.cyy > 0 else 0.0


def _fold_path(fold: int, scores: Sequence[FoldScore]) -> FoldPath:
    return FoldPath(fold, tuple(s.heldout_mse for s in scores), tuple(s.heldout_r2 for s in scores),
                    tuple(s.train_mse for s in scores), tuple(s.n_nonzero for s in scores))


def make_fold_model(passes: BlockPass, fold: int, *, fit_intercept: bool, standardize: bool,
                    controls: FeatureControls | None = None) -> FoldModel:
    """Training statistics = total − held-out; standardization (and imputation) from training rows only;
    ``controls``: the sweep's penalty factors, limits and searched groups."""
    train, heldout = passes.fold_split(fold)
    problem = GramProblem.from_stats(train, fit_intercept=fit_intercept, standardize=standardize, controls=controls)
    return FoldModel(fold=fold, problem=problem, train=train, heldout=heldout)


def make_fold_models(
    passes: BlockPass, folds: Sequence[int], *, fit_intercept: bool, standardize: bool,
    controls: FeatureControls | None = None,
) -> list[FoldModel]:
    """The :class:`FoldModel` of each fold in ``folds`` (one task, one worker)."""
    return [make_fold_model(passes, f, fit_intercept=fit_intercept, standardize=standardize, controls=controls)
            for f in folds]


def score_folds(models: Sequence[Scorable], candidates: Sequence[Candidate], tol: float) -> list[FoldScore]:
    """Every candidate on every fold model given (fold-major): at once, for fold models that share their
    passes over the rows (``score_together``, the binomial and Poisson fold models of one worker)."""
    together = getattr(models[0], "score_together", None) if len(models) > 1 else None
    if together is not None and all(type(m) is type(models[0]) for m in models):
        return list(together(models, candidates, tol))
    return [s for m in models for s in score_candidates(m, candidates, tol)]


def score_slots(score: Callable[[Sequence[Scorable], Sequence[Candidate], float], list[FoldScore]],
                model_lists: Sequence[Sequence[Scorable]], candidates: Sequence[Candidate],
                tol: float) -> list[FoldScore]:
    """``score`` (:func:`score_folds`, or a test's) on the fold models of several slots of one worker, as one
    task: the trial tasks of a placement that groups its slots (:meth:`~.placement.Placement.task_groups`)."""
    return score([m for models in model_lists for m in models], candidates, tol)


def score_candidates(model: Scorable, candidates: Sequence[Candidate], tol: float) -> list[FoldScore]:
    """Fit every candidate on this fold and score it on its held-out rows (at once, for a fold model that solves
    batches: ``score_many``, the binomial and Poisson fold models)."""
    many = getattr(model, "score_many", None)
    if many is not None:
        return list(many(candidates, tol))
    return [model.score(c, tol) for c in candidates]


def score_paths(model_lists: Sequence[Sequence[Scorable]], spec: PathSpec, tol: float,
                end: PathEnd | None = None) -> list[FoldPath]:
    """:func:`score_path` on the fold models of several slots of one worker, together."""
    return score_path([m for models in model_lists for m in models], spec, tol, end)


def score_path(models: Sequence[Scorable], spec: PathSpec, tol: float, end: PathEnd | None = None) -> list[FoldPath]:
    """Every point of ``spec`` on every fold model given, each fold warm-started along the path (in step, for
    fold models that batch their paths: ``paths_together``, the binomial and Poisson fold models, which also
    stop at the shortest fold path of all tasks that share ``end``: :mod:`.path_end`)."""
    together = getattr(models[0], "paths_together", None)
    if together is not None:
        return list(together(models, spec, tol, end))
    return [m.path(spec, tol) for m in models]
