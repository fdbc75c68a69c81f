"""What a sweep or a retrain computes from the total statistics: search bounds, the refit, an example.

Worker-side functions, pure in their inputs. The refit takes statistics and a
candidate, nothing of how they were obtained: the sweep passes the total of
its data pass, a retrain the total of its training rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..candidate import Candidate
from ..config import ModelConfig
from ..data import DataPlan, example_parquet
from ..encoding import Encoding
from ..model import FittedModel
from ..solvers import GramProblem, RowProblem, SuffStats
from ..solvers.controls import FeatureControls
from ..solvers.glm import GlmProblem
from .passes import BlockPass
from .rows import RowData

__all__ = ["example_rows", "group_bounds", "integer_columns", "pass_bounds", "refit", "refit_pass", "search_bounds"]


def refit(total: SuffStats, cand: Candidate, feature_names: Sequence[str], model: ModelConfig,
          controls: FeatureControls | None = None) -> FittedModel:
    """``cand`` fitted on the rows of ``total`` (all of them: no fold is held out)."""
    problem = GramProblem.from_stats(total, fit_intercept=model.fit_intercept, standardize=model.standardize,
                                     controls=controls)
    penalty = cand.penalty_object()
    result = problem.solve(penalty, tol=model.tol, multipliers=cand.group_multipliers)
    return FittedModel.from_solution(problem, result, penalty, feature_names, controls, cand.group_multipliers)


def refit_pass(passes: BlockPass, cand: Candidate, feature_names: Sequence[str], model: ModelConfig,
               encoding: Encoding | None = None, controls: FeatureControls | None = None) -> FittedModel:
    """:func:`refit` on a finished data pass (a task: the pass stays on the workers); the model keeps
    ``encoding`` with the values it imputes (the means over all rows)."""
    total = passes.total_stats
    fitted = refit(total, cand, feature_names, model, controls)
    return fitted if encoding is None else dataclasses.replace(fitted, encoding=encoding.fitted(total.x_mean))


def search_bounds(total: SuffStats, model: ModelConfig, controls: FeatureControls | None = None) -> dict[str, float]:
    """Data-derived λ ranges from the total statistics.

    λ1: ``[r · λ1_max, λ1_max]`` (λ1_max zeroes every coefficient), with
    ``r = 1e-6`` when there are more rows than features (the lasso then reaches
    least squares well inside the range) and ``1e-2`` otherwise (glmnet's
    ``lambda.min.ratio`` for n < p: below it a fit nearly interpolates the
    training rows, and its support approaches n).

    λ2: ``[1e-8 · e_max, 10 · e_max]`` from the largest eigenvalue e_max of the
    standardized Gram. Far above e_max ridge shrinks everything; at 1e-8 · e_max
    it is least squares (minimum-norm when the Gram is singular) to about eight
    digits. The range does not stop at the smallest eigenvalue: with many rows
    and little noise the ridge optimum lies far below it (``σ²/(n‖β‖²)`` for an
    orthogonal design), and a range starting there cut it off (0.4% worse CV
    MSE than RidgeCV on a public 20,190-row survey).
    """
    problem = GramProblem.from_stats(total, fit_intercept=model.fit_intercept, standardize=model.standardize,
                                     controls=controls)  # λ1_max with the factors and limits
    e = np.linalg.eigvalsh(problem.G) if problem.G.size else np.zeros(1)
    return {**bounds_from(problem.lambda1_max, float(e[-1]), total.n_rows, int(problem.kept.sum())),
            "e_min": float(e[0]), **group_bounds(problem, controls)}


def bounds_from(lam1_max: float, e_max: float, n_rows: int, n_kept: int) -> dict[str, float]:
    """The ranges of :func:`search_bounds` from λ1_max and the largest eigenvalue e_max (every engine and family:
    the Gram, the rows, a GLM's Gram weighted at the null model)."""
    e_max = float(max(e_max, np.finfo(float).tiny))
    ratio = 1e-6 if n_rows > n_kept else 1e-2
    return {"lambda1_low": ratio * lam1_max, "lambda1_high": lam1_max, "lambda2_low": 1e-8 * e_max,
            "lambda2_high": 10.0 * e_max, "lambda1_max": lam1_max, "e_max": e_max, "n_kept": n_kept}


def group_bounds(problem: GramProblem | RowProblem | GlmProblem, controls: FeatureControls | None) -> dict[str, Any]:
    """``lambda1_max_groups`` when the search has group multipliers: the λ1_max of each group's features and of
    the rest (``""``), from which a trial's λ1_max under its multipliers follows (the dense path's top)."""
    if controls is None or not controls.group_names or problem.controls is None:
        return {}
    if isinstance(problem, GramProblem):
        kept = problem.kept
    else:
        kept = problem.design.cols if isinstance(problem, RowProblem) else problem.base.cols
    return {"lambda1_max_groups": controls.lambda1_max_by_group(problem.lambda1_ratios(), kept)}


def pass_bounds(passes: BlockPass, model: ModelConfig, controls: FeatureControls | None = None) -> dict[str, float]:
    """:func:`search_bounds` of a finished data pass (a task)."""
    return search_bounds(passes.total_stats, model, controls)


def example_rows(plan: DataPlan, passes: BlockPass | RowData, n: int = 5) -> bytes:
    """A few rows with the source's column types, for the model's signature, as Parquet bytes (a task).

    ``passes`` is the engine's data (either engine records which columns are
    integers in every block). A sweep reads its example in its MLflow process
    (:meth:`~pipeline.tracking.Tracker.example_parquet`), which has pandas
    imported with MLflow; this task is the fallback when that process cannot.
    """
    return example_parquet(plan, passes.integer_columns, n)


def integer_columns(passes: BlockPass | RowData) -> tuple[bool, ...]:
    """Which features are integers in every block of the engine's data (a task; for the example's types)."""
    return tuple(passes.integer_columns)
