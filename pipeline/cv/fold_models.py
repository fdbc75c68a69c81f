"""Fold models on the workers, and the scoring of candidates on them.

A :class:`FoldModel` is one fold's training problem (the standardized
training Gram) plus its held-out statistics; it lives in the memory of a
worker. Scoring a candidate on a fold is a p×p solve and an exact held-out
error from statistics: no row is read again.

Every function here is module-level and pure in its inputs (picklable, no
client, no Optuna, no MLflow), so Dask may run it anywhere and twice.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..candidate import Candidate
from ..solvers import GramProblem, SuffStats
from .passes import BlockPass

__all__ = ["FoldModel", "FoldScore", "make_fold_model", "make_fold_models", "score_candidates", "score_folds"]

_WARM_CACHE = 64


@dataclass(frozen=True)
class FoldScore:
    """One candidate on one fold: held-out and training errors from statistics."""

    trial: int
    fold: int
    heldout_mse: float
    heldout_r2: float
    train_mse: float
    n_nonzero: int
    n_iter: int
    converged: bool
    seconds: float


@dataclass(eq=False)
class FoldModel:
    """A fold's training problem and held-out statistics, living on one worker.

    ``warm`` keeps recent solutions per penalty name so that a new candidate
    starts from the nearest previous one (in log λ); ridge candidates reuse one
    eigendecomposition of the fold's Gram.
    """

    fold: int
    problem: GramProblem
    train: SuffStats
    heldout: SuffStats
    warm: dict[str, list[tuple[float, float, np.ndarray]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("lock")
        state["warm"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def nearest_solution(self, c: Candidate) -> np.ndarray | None:
        """The remembered solution of the same penalty nearest to ``c`` in (log λ1, log λ2)."""
        entries = self.warm.get(c.penalty)
        if not entries:
            return None
        key = (_log(c.lambda1), _log(c.lambda2))
        best = min(entries, key=lambda e: abs(_log(e[0]) - key[0]) + abs(_log(e[1]) - key[1]))
        return best[2]

    def remember(self, c: Candidate, beta: np.ndarray) -> None:
        """Keep ``beta`` as a warm start for later candidates (the last :data:`_WARM_CACHE` per penalty)."""
        entries = self.warm.setdefault(c.penalty, [])
        entries.append((c.lambda1, c.lambda2, beta))
        if len(entries) > _WARM_CACHE:
            del entries[0]


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -700.0


def make_fold_model(passes: BlockPass, fold: int, *, fit_intercept: bool, standardize: bool) -> FoldModel:
    """Training statistics = total − held-out; standardization from training rows only."""
    heldout = passes.fold_stats[fold]
    train = passes.total_stats - heldout
    problem = GramProblem.from_stats(train, fit_intercept=fit_intercept, standardize=standardize)
    return FoldModel(fold=fold, problem=problem, train=train, heldout=heldout)


def make_fold_models(
    passes: BlockPass, folds: Sequence[int], *, fit_intercept: bool, standardize: bool
) -> list[FoldModel]:
    """The :class:`FoldModel` of each fold in ``folds`` (one task, one worker)."""
    return [make_fold_model(passes, f, fit_intercept=fit_intercept, standardize=standardize) for f in folds]


def score_folds(models: Sequence[FoldModel], candidates: Sequence[Candidate], tol: float) -> list[FoldScore]:
    """Every candidate on every fold model given (fold-major)."""
    return [s for m in models for s in score_candidates(m, candidates, tol)]


def score_candidates(model: FoldModel, candidates: Sequence[Candidate], tol: float) -> list[FoldScore]:
    """Fit every candidate on this fold and score it on the held-out statistics."""
    out = []
    for c in candidates:
        t0 = time.perf_counter()
        with model.lock:
            beta0 = model.nearest_solution(c) if c.lambda1 > 0 else None
            result = model.problem.solve(c.penalty_object(), beta0, tol=tol, reuse_factor=True)
            if c.lambda1 > 0:
                model.remember(c, result.beta)
        out.append(
            FoldScore(
                trial=c.trial,
                fold=model.fold,
                heldout_mse=model.heldout.mse(result.coef, result.intercept),
                heldout_r2=model.heldout.r2(result.coef, result.intercept),
                train_mse=model.train.mse(result.coef, result.intercept),
                n_nonzero=result.n_nonzero,
                n_iter=result.n_iter,
                converged=result.converged,
                seconds=time.perf_counter() - t0,
            )
        )
    return out
