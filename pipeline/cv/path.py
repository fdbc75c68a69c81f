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
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ModelConfig
from ..errors import SweepError
from ..solvers import GramProblem
from ..solvers.controls import FeatureControls
from .client import cluster_workers
from .fold_models import score_path, score_paths
from .passes import BlockPass
from .path_end import PathEnd
from .placement import FoldSlot, cover, group_by_worker
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


def run_path(placement: Placement, spec: PathSpec, tol: float, end: PathEnd | None = None,
             coefficients: tuple[Callable[..., tuple[list[FoldPath], np.ndarray]], Any, Any] | None = None,
             ) -> tuple[list[FoldPath], np.ndarray | None]:
    """:func:`score_path` on the cluster: the slots pinned to a worker in as many tasks as it has threads (their
    fold models share its rows: binomial and Poisson paths take their points together), any other slot in a
    task of its own (one in all when a slot holds every fold). ``end`` is shared by the tasks
    (:mod:`.path_end`).

    With ``coefficients = (task, model, controls)`` the pinned task with the fewest folds also computes the
    coefficient path on its worker's rows, in step with its folds: ``task(model lists, spec, tol, end, rows,
    model, controls)`` returns its fold paths and the coefficients (p × points, at least the curve's), which
    come second; else None. The fold models are placed again first if they were lost since the last trial.
    """
    for _ in range(_ATTEMPTS):
        if placement.lost():
            placement.rebuild()
        slots = placement.slots
        chosen = [slots[i] for i in cover(slots, placement.k, dict.fromkeys(range(len(slots)), 0), {})]
        groups = _tasks(placement, chosen)
        carrier = _carrier(placement, groups) if coefficients is not None else None
        futs: list[Any] = []
        for i, group in enumerate(groups):
            models, pinned = [s.models for s in group], placement.pinned(group[0])
            if i == carrier and coefficients is not None:
                task, model, controls = coefficients
                rows = getattr(placement, "rows")[group[0].worker]  # a RowPlacement's (_carrier)
                futs.append(placement.client.submit(task, models, spec, tol, end, rows, model, controls, pure=False,
                                                    **pinned))
            else:
                futs.append(placement.client.submit(score_paths, models, spec, tol, end, pure=False, **pinned))
        results = [result_or_lost(fut, _gone(placement, group[0])) for fut, group in zip(futs, groups, strict=True)]
        if all(r is not LOST for r in results):
            coefs = results[carrier][1] if carrier is not None else None
            folds = [fold for i, r in enumerate(results) for fold in (r[0] if i == carrier else r)]
            return sorted(folds, key=lambda f: f.fold), coefs
        for fut in futs:
            fut.cancel()
    raise SweepError(f"the fold models were lost {_ATTEMPTS} times during the path (workers keep dying); "
                     "check the workers' logs and memory limits.")


def _carrier(placement: Placement, groups: list[list[FoldSlot]]) -> int | None:
    """The task that also takes the coefficient path: of those pinned to a worker whose rows are known, the one
    with the fewest folds (its worker's other tasks have no more); None when there is none."""
    rows = getattr(placement, "rows", {})
    pinned = [i for i, g in enumerate(groups) if g[0].worker in rows and placement.pinned(g[0])]
    return min(pinned, key=lambda i: (sum(len(s.folds) for s in groups[i]), i)) if pinned else None


def _tasks(placement: Placement, chosen: list[FoldSlot]) -> list[list[FoldSlot]]:
    """The chosen slots grouped into the path's tasks (:func:`run_path`)."""
    pinned = [slot for slot in chosen if slot.worker is not None and placement.pinned(slot)]
    out = [[slot] for slot in chosen if not any(slot is s for s in pinned)]
    info = cluster_workers(placement.client) if pinned else {}
    threads = {s.worker: int(info.get(s.worker or "", {}).get("nthreads", 1)) for s in pinned}
    out.extend([pinned[i] for i in group] for group in group_by_worker(pinned, range(len(pinned)), threads))
    return out


_ATTEMPTS = 3


def _gone(placement: Placement, slot: FoldSlot) -> Callable[[], bool]:
    """Whether a task on ``slot`` can no longer run: its pinned worker left (or, unpinned, the models are lost)."""
    pinned = placement.pinned(slot)
    if pinned:
        return lambda: worker_left(placement.client, pinned["workers"][0])
    return placement.lost
