"""What the workers run: the one data pass, fold problems, and candidate scoring.

Every function here is module-level and pure in its inputs (picklable, no
client, no Optuna, no MLflow), so Dask may run it anywhere and twice.

The data pass: each block yields one :class:`~pipeline.solvers.SuffStats` per
fold (its rows in that fold); the per-fold lists are merged pairwise in a
tree on the workers. From the K held-out statistics a fold's training
statistics are ``total − held-out``, and its :class:`FoldModel` (the
standardized training Gram plus the held-out statistics) stays in the
memory of one worker. Scoring a candidate on a fold is then a p×p solve and
an exact held-out error from statistics: no row is read again.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import BlockSpec, DataPlan, load_block
from .errors import DataError
from .folds import assign_units, block_fold_stats, kfold_folds, merge_units, unit_stats, units_cap
from .solvers import ElasticNet, GramProblem, SuffStats, make_penalty, merge_all

__all__ = [
    "BlockPass",
    "Candidate",
    "FoldModel",
    "FoldScore",
    "block_pass",
    "finish_pass",
    "make_fold_model",
    "make_fold_models",
    "merge_block_passes",
    "score_candidates",
    "score_folds",
]

_WARM_CACHE = 64


@dataclass(frozen=True)
class BlockPass:
    """The per-fold statistics of some blocks, and what was seen in them.

    Under group k-fold the pass first keeps per-group records (``units``).
    :func:`finish_pass` then deals the groups to folds, fills ``fold_stats``,
    drops the per-group records (they need not travel to the fold models) and
    computes ``total`` once for everything downstream.
    """

    fold_stats: tuple[SuffStats, ...]
    n_blocks: int
    integer_columns: tuple[bool, ...] = ()  # per feature: integer-typed in every block
    units: dict | None = None  # group (or hash bucket) -> SuffStats, group k-fold only, until finished
    units_cap: int = 0
    total: SuffStats | None = None  # all rows, after finish_pass
    n_groups: int | None = None  # distinct groups (or buckets) under group k-fold, after finish_pass
    n_dropped: int = 0  # rows left out for NaN/inf under data.missing: drop


def block_pass(plan: DataPlan, spec: BlockSpec, k: int, fold_seed: int) -> BlockPass:
    """Load one block and reduce it to one statistics record per fold (per group under group k-fold)."""
    block = load_block(plan, spec)
    if block.group is not None:
        cap = units_cap(plan.n_features, k)
        units = unit_stats(block.X, block.y, block.weight, block.group, cap, fold_seed)
        return BlockPass((), 1, block.integer_columns, units=units, units_cap=cap, n_dropped=block.n_dropped)
    # a row's fold depends on its index in the source, so dropping a row moves no other row
    folds = kfold_folds(block.start_row, spec.n_rows, k, fold_seed)
    if block.kept is not None:
        folds = folds[block.kept]
    stats = block_fold_stats(block.X, block.y, block.weight, folds, k)
    return BlockPass(tuple(stats), 1, block.integer_columns, n_dropped=block.n_dropped)


def merge_block_passes(*parts: BlockPass, fold_seed: int = 0) -> BlockPass:
    """Merge several block passes fold by fold (or group by group), pairwise trees inside."""
    integer = tuple(all(flags) for flags in zip(*(p.integer_columns for p in parts)))
    n_blocks = sum(p.n_blocks for p in parts)
    dropped = sum(p.n_dropped for p in parts)
    if parts[0].units is not None:
        cap = parts[0].units_cap
        units = merge_units([p.units or {} for p in parts], cap, fold_seed)
        return BlockPass((), n_blocks, integer, units=units, units_cap=cap, n_dropped=dropped)
    k = len(parts[0].fold_stats)
    merged = tuple(merge_all(p.fold_stats[i] for p in parts) for i in range(k))
    return BlockPass(merged, n_blocks, integer, n_dropped=dropped)


def finish_pass(passes: BlockPass, k: int, fold_seed: int) -> BlockPass:
    """Complete a merged pass: deal groups to folds (group k-fold) and compute the total once."""
    n_groups = None
    fold_stats = passes.fold_stats
    if passes.units is not None:
        if not passes.units:  # every row was dropped (the plan refuses files without rows)
            raise DataError(f"data.missing: drop left no rows: all {passes.n_dropped} rows hold NaN or inf in a "
                            "feature, the target or the weight; impute the missing values instead.")
        fold_of = assign_units({key: st.sum_w for key, st in passes.units.items()}, k, fold_seed)
        p = next(iter(passes.units.values())).n_features
        fold_stats = tuple(
            merge_all([st for key, st in passes.units.items() if fold_of[key] == f] or [SuffStats.empty(p)])
            for f in range(k)
        )
        n_groups = len(passes.units)
    return BlockPass(fold_stats, passes.n_blocks, passes.integer_columns,
                     total=merge_all(fold_stats), n_groups=n_groups, n_dropped=passes.n_dropped)


@dataclass(frozen=True)
class Candidate:
    """One trial's parameters."""

    trial: int
    penalty: str
    lambda1: float
    lambda2: float

    def penalty_object(self) -> ElasticNet:
        return make_penalty(self.penalty, self.lambda1, self.lambda2)


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

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("lock")
        state["warm"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def nearest_solution(self, c: Candidate) -> np.ndarray | None:
        entries = self.warm.get(c.penalty)
        if not entries:
            return None
        key = (_log(c.lambda1), _log(c.lambda2))
        best = min(entries, key=lambda e: abs(_log(e[0]) - key[0]) + abs(_log(e[1]) - key[1]))
        return best[2]

    def remember(self, c: Candidate, beta: np.ndarray) -> None:
        entries = self.warm.setdefault(c.penalty, [])
        entries.append((c.lambda1, c.lambda2, beta))
        if len(entries) > _WARM_CACHE:
            del entries[0]


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -700.0


def make_fold_model(
    passes: BlockPass, fold: int, *, fit_intercept: bool, standardize: bool
) -> FoldModel:
    """Training statistics = total − held-out; standardization from training rows only."""
    heldout = passes.fold_stats[fold]
    train = passes.total - heldout
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


def search_bounds(passes: BlockPass, *, fit_intercept: bool, standardize: bool) -> dict[str, float]:
    """Data-derived λ ranges from the total statistics (runs on a worker).

    λ1: ``[1e-4 · λ1_max, λ1_max]`` (λ1_max zeroes every coefficient).
    λ2: from the spectrum of the standardized Gram, ``[max(e_min, 1e-6 e_max), 10 e_max]``:
    far below the smallest eigenvalue ridge is least squares, far above the
    largest it shrinks everything.
    """
    problem = GramProblem.from_stats(passes.total, fit_intercept=fit_intercept, standardize=standardize)
    e = np.linalg.eigvalsh(problem.G) if problem.G.size else np.zeros(1)
    e_max = float(max(e[-1], np.finfo(float).tiny))
    positive = e[e > e_max * e.size * np.finfo(float).eps]
    e_min = float(positive[0]) if positive.size else e_max
    lam1_max = problem.lambda1_max
    return {
        "lambda1_low": 1e-4 * lam1_max,
        "lambda1_high": lam1_max,
        "lambda2_low": max(e_min, 1e-6 * e_max),
        "lambda2_high": 10.0 * e_max,
        "lambda1_max": lam1_max,
        "n_kept": int(problem.kept.sum()),
    }
