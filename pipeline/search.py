"""The Optuna study and the ask/tell loop that keeps the cluster busy.

The driver owns the study: it asks for trials, submits their fold fits to
Dask and tells each trial exactly once when all its folds are back. Dask
tasks never touch Optuna. Several trials are in flight at once; their
candidates are batched per fold so that one task fits a few candidates on one
fold's Gram (a fit at p = 100 takes about a millisecond, a Dask round trip
a few), and every task runs on the worker that holds its fold.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import SearchConfig
from .evaluate import Candidate, FoldScore, score_candidates

__all__ = ["SearchSpace", "TrialResult", "open_study", "run_trials", "summarize_scores"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSpace:
    """Penalties and log-uniform λ ranges (resolved: no ``auto`` left)."""

    penalties: tuple[str, ...]
    lambda1: tuple[float, float]
    lambda2: tuple[float, float]

    def suggest(self, trial: object) -> Candidate:
        """Draw one candidate; l1 trials carry no λ2 and l2 trials no λ1 (conditional space)."""
        penalty = trial.suggest_categorical("penalty", list(self.penalties))  # type: ignore[attr-defined]
        lam1 = lam2 = 0.0
        if penalty in ("l1", "elasticnet"):
            lam1 = trial.suggest_float("lambda1", *self.lambda1, log=True)  # type: ignore[attr-defined]
        if penalty in ("l2", "elasticnet"):
            lam2 = trial.suggest_float("lambda2", *self.lambda2, log=True)  # type: ignore[attr-defined]
        return Candidate(trial.number, penalty, lam1, lam2)  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, object]:
        return {"penalties": list(self.penalties), "lambda1": list(self.lambda1), "lambda2": list(self.lambda2)}


@dataclass(frozen=True)
class TrialResult:
    """A trial's cross-validated scores, aggregated over folds."""

    number: int
    candidate: Candidate
    cv_mse: float
    cv_mse_se: float
    fold_mse: tuple[float, ...]
    train_mse: float
    cv_r2: float
    n_nonzero: float
    n_iter: int
    converged: bool
    fit_seconds: float
    start: float
    end: float

    def metrics(self) -> dict[str, float]:
        return {
            "cv_mse": self.cv_mse,
            "cv_mse_se": self.cv_mse_se,
            "train_mse": self.train_mse,
            "cv_r2": self.cv_r2,
            "n_nonzero": self.n_nonzero,
            "n_iter": float(self.n_iter),
            "converged": float(self.converged),
            "fit_seconds": self.fit_seconds,
        }


def summarize_scores(candidate: Candidate, scores: Sequence[FoldScore], start: float, end: float) -> TrialResult:
    """Mean held-out MSE over folds (the objective), its standard error and the rest."""
    scores = sorted(scores, key=lambda s: s.fold)
    mse = np.array([s.heldout_mse for s in scores])
    k = mse.size
    return TrialResult(
        number=candidate.trial,
        candidate=candidate,
        cv_mse=float(mse.mean()),
        cv_mse_se=float(mse.std(ddof=1) / math.sqrt(k)) if k > 1 else float("nan"),
        fold_mse=tuple(float(v) for v in mse),
        train_mse=float(np.mean([s.train_mse for s in scores])),
        cv_r2=float(np.mean([s.heldout_r2 for s in scores])),
        n_nonzero=float(np.mean([s.n_nonzero for s in scores])),
        n_iter=int(sum(s.n_iter for s in scores)),
        converged=all(s.converged for s in scores),
        fit_seconds=float(sum(s.seconds for s in scores)),
        start=start,
        end=end,
    )


def open_study(cfg: SearchConfig) -> object:
    """Create or load the study (RDB storage); TPE with a constant liar for batches in flight."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        # `group` (conditional search spaces for multivariate TPE) is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=cfg.seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        )
    return optuna.create_study(
        storage=cfg.storage,
        study_name=cfg.study_name,
        direction="minimize",
        sampler=sampler,
        load_if_exists=True,
    )


@dataclass
class _Batch:
    trials: list[tuple[object, Candidate, float]]  # (optuna trial, candidate, start time)
    scores: dict[int, list[FoldScore]] = field(default_factory=dict)  # fold -> scores
    failed: str | None = None


def run_trials(
    client: object,
    study: object,
    fold_models: Sequence[object],
    fold_workers: Sequence[str | None],
    space: SearchSpace,
    n_trials: int,
    *,
    in_flight: int,
    threads: int,
    tol: float,
    on_result: Callable[[TrialResult], None],
    on_failure: Callable[[int, Candidate, str], None],
) -> int:
    """Ask/tell until the study holds ``n_trials`` COMPLETE trials; returns how many this call asked.

    ``fold_models`` are futures of :class:`~pipeline.evaluate.FoldModel`;
    ``fold_workers`` the worker each lives on (tasks are pinned there, and may
    move if it dies).
    """
    from distributed import as_completed
    from optuna.trial import TrialState

    def n_complete() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))  # type: ignore[attr-defined]

    k = len(fold_models)
    done = n_complete()
    batch_size = max(1, math.ceil(in_flight / (2 * threads)))
    max_batches = max(2, 2 * threads)
    pending: dict[int, _Batch] = {}
    owner: dict[object, tuple[int, int]] = {}
    ac = as_completed(loop=client.loop)  # type: ignore[attr-defined]
    asked = 0
    next_batch = 0
    trials_in_flight = 0

    while done < n_trials:
        while len(pending) < max_batches and done + trials_in_flight < n_trials:
            size = min(batch_size, n_trials - done - trials_in_flight)
            batch = _Batch(trials=[])
            for _ in range(size):
                trial = study.ask()  # type: ignore[attr-defined]
                batch.trials.append((trial, space.suggest(trial), time.time()))
            asked += size
            trials_in_flight += size
            cands = [c for _, c, _ in batch.trials]
            for fold in range(k):
                fut = client.submit(  # type: ignore[attr-defined]
                    score_candidates,
                    fold_models[fold],
                    cands,
                    tol,
                    pure=False,
                    workers=[fold_workers[fold]] if fold_workers[fold] else None,
                    allow_other_workers=True,
                    key=f"score-b{next_batch}-f{fold}-{id(batch)}",
                )
                owner[fut] = (next_batch, fold)
                ac.add(fut)
            pending[next_batch] = batch
            next_batch += 1
        if not pending:
            break
        fut = next(ac)
        batch_id, fold = owner.pop(fut)
        batch = pending.get(batch_id)
        if batch is None:
            continue
        if fut.status == "error":
            exc = fut.exception()
            batch.failed = f"fold {fold}: {type(exc).__name__}: {exc}"
            batch.scores[fold] = []
        else:
            batch.scores[fold] = fut.result()
        fut.release()
        if len(batch.scores) < k:
            continue
        del pending[batch_id]
        trials_in_flight -= len(batch.trials)
        end = time.time()
        for trial, cand, start in batch.trials:
            if batch.failed:
                study.tell(trial, state=TrialState.FAIL)  # type: ignore[attr-defined]
                on_failure(cand.trial, cand, batch.failed)
                continue
            scores = [s for fold_scores in batch.scores.values() for s in fold_scores if s.trial == cand.trial]
            result = summarize_scores(cand, scores, start, end)
            trial.set_user_attr("cv", {  # type: ignore[attr-defined]
                "fold_mse": list(result.fold_mse), "cv_mse_se": result.cv_mse_se,
                "train_mse": result.train_mse, "cv_r2": result.cv_r2, "n_nonzero": result.n_nonzero,
            })
            study.tell(trial, result.cv_mse)  # type: ignore[attr-defined]
            done += 1
            on_result(result)
    return asked
