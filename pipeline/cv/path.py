"""A dense path of one penalty on the fold models: glmnet's ``cv.glmnet`` curve, from the folds already placed.

After the search, the winning penalty (at its mixing ``λ1/(λ1+λ2)`` for the
elastic net) is fitted along a grid of strengths ``s`` from the largest down
(``λ1 = share·s``, ``λ2 = (1 − share)·s``), on every fold, warm-started from
the previous point as glmnet does, and stopped once a fold's training fit is
nearly exact (glmnet's rule; the curve is cut at the shortest fold). The fold
models are the ones the trials used, so no row is read again.
:func:`coefficient_path` fits the same grid on all rows, for the coefficient
path plot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..config import ModelConfig
from ..errors import SweepError
from ..solvers import GramProblem
from ..solvers.controls import FeatureControls
from .fold_models import score_path, score_paths
from .passes import BlockPass
from .placement import FoldSlot, cover
from .scoring import FoldPath, PathSpec
from .waiting import LOST, result_or_lost, worker_left

if TYPE_CHECKING:
    from .placement import Placement

__all__ = ["FoldPath", "PathSpec", "coefficient_path", "run_path", "score_path"]


def coefficient_path(passes: BlockPass, spec: PathSpec, model: ModelConfig,
                     controls: FeatureControls | None = None) -> np.ndarray:
    """Standardized coefficients (``coef × x_scale``) at every point of ``spec`` on all rows: shape (p, m)."""
    problem = GramProblem.from_stats(passes.total_stats, fit_intercept=model.fit_intercept,
                                     standardize=model.standardize, controls=controls)
    coefs = np.zeros((problem.n_features, len(spec.strengths)))
    beta: np.ndarray | None = None
    for i in range(len(spec.strengths)):
        cand = spec.candidate(i)
        result = problem.solve(cand.penalty_object(), beta if cand.lambda1 > 0 else None, tol=model.tol,
                               reuse_factor=True, multipliers=cand.group_multipliers)
        beta = result.beta
        coefs[:, i] = result.coef * problem.x_scale
    return coefs


def run_path(placement: Placement, spec: PathSpec, tol: float) -> list[FoldPath]:
    """:func:`score_path` on the cluster: the slots pinned to a worker in as many tasks as it has threads (their
    fold models share its rows: binomial and Poisson paths take their points together), any other slot in a
    task of its own (one in all when a slot holds every fold).

    The fold models are placed again first if they were lost since the last trial.
    """
    for _ in range(_ATTEMPTS):
        if placement.lost():
            placement.rebuild()
        slots = placement.slots
        chosen = [slots[i] for i in cover(slots, placement.k, dict.fromkeys(range(len(slots)), 0), {})]
        groups = _tasks(placement, chosen)
        futs = [placement.client.submit(score_paths, [s.models for s in group], spec, tol, pure=False,
                                        **placement.pinned(group[0])) for group in groups]
        results = [result_or_lost(fut, _gone(placement, group[0])) for fut, group in zip(futs, groups, strict=True)]
        if all(r is not LOST for r in results):
            return sorted((fold for r in results for fold in r), key=lambda f: f.fold)
        for fut in futs:
            fut.cancel()
    raise SweepError(f"the fold models were lost {_ATTEMPTS} times during the path (workers keep dying); "
                     "check the workers' logs and memory limits.")


def _tasks(placement: Placement, chosen: list[FoldSlot]) -> list[list[FoldSlot]]:
    """The chosen slots grouped into the path's tasks (:func:`run_path`)."""
    pinned: dict[str, list[FoldSlot]] = {}
    out: list[list[FoldSlot]] = []
    for slot in chosen:
        if slot.worker is not None and placement.pinned(slot):
            pinned.setdefault(slot.worker, []).append(slot)
        else:
            out.append([slot])
    info = placement.client.scheduler_info()["workers"] if pinned else {}
    for worker, held in pinned.items():
        n = max(1, min(len(held), int(info.get(worker, {}).get("nthreads", 1))))
        out.extend(held[i::n] for i in range(n))
    return out


_ATTEMPTS = 3


def _gone(placement: Placement, slot: FoldSlot) -> Callable[[], bool]:
    """Whether a task on ``slot`` can no longer run: its pinned worker left (or, unpinned, the models are lost)."""
    pinned = placement.pinned(slot)
    if pinned:
        return lambda: worker_left(placement.client, pinned["workers"][0])
    return placement.lost
