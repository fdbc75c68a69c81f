"""The two engines as the sweep sees them: where the fold models go, and the tasks on all rows.

An engine is a placement (:class:`~pipeline.cv.placement.Placement`: the
fold models on the workers, and the future of the data they came from) and
four worker-side tasks on that data: the summary (row counts, column notes,
fingerprint), the search bounds, the refit and the coefficient path. The
sweep and the retrain call these and never ask which engine they have.

- ``gram``: the one data pass (:mod:`.passes`), K p × p fold problems
  (:mod:`.fold_models`), placed by :class:`~pipeline.cv.placement.FoldPlacement`;
- ``rows``: the rows on every worker (:mod:`.rows`), K fold problems sharing
  them (:mod:`.row_models`), placed by :class:`~pipeline.cv.row_placement.RowPlacement`.

Which one runs is decided by :func:`pipeline.engine.choose_engine`; the
memory it needs is :func:`worker_memory`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..candidate import Candidate
from ..config import FoldsConfig, HoldoutConfig, ModelConfig
from ..data import DataPlan
from ..encoding import Encoding
from ..folds import units_cap
from ..engine import (EngineChoice, available_memory, check_block_memory, choose_engine, human_bytes, killed_in_pass,
                      merge_fan_in, smallest_training_rows, worker_room)
from ..errors import SweepError
from ..model import FittedModel
from ..solvers.controls import FeatureControls
from .client import cluster_workers
from .passes import pass_summary, submit_data_pass
from .path import coefficient_path
from .placement import FoldPlacement, Placement
from .refit import pass_bounds, refit_pass
from .glm_models import glm_bounds, glm_coefficient_path, glm_paths_and_coefficients, glm_refit
from .row_models import row_bounds, row_coefficient_path, row_refit, row_summary
from .row_placement import RowPlacement
from .rows import ROW_ADDRESSABLE, rows_per_chunk
from .scoring import FoldPath, PathSpec

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["EngineTasks", "choose_sweep_engine", "glm_engine", "pass_records", "place_engine", "rows_bytes", "tasks_of",
           "worker_memory", "worker_memory_limit", "worker_preload", "workers_died"]


@dataclass(frozen=True)
class EngineTasks:
    """The worker-side tasks of an engine on its data (the future of :meth:`Placement.current_pass`)."""

    name: str
    summary: Callable[[Any, tuple[str, ...], str], dict[str, Any]]  # (data, feature names, data.missing)
    bounds: Callable[[Any, ModelConfig, FeatureControls | None], dict[str, float]]
    refit: Callable[[Any, Candidate, Sequence[str], ModelConfig, Encoding | None, FeatureControls | None], FittedModel]
    coefficient_path: Callable[[Any, PathSpec, ModelConfig, FeatureControls | None], np.ndarray]
    # fold paths and the coefficient path in step, on one worker's rows (:func:`.path.run_path`), if the engine can
    paths_and_coefficients: Callable[..., tuple[list[FoldPath], np.ndarray]] | None = None


_TASKS = {
    "gram": EngineTasks("gram", pass_summary, pass_bounds, refit_pass, coefficient_path),
    "rows": EngineTasks("rows", row_summary, row_bounds, row_refit, row_coefficient_path),
}
_GLM_TASKS = EngineTasks("rows", row_summary, glm_bounds, glm_refit, glm_coefficient_path,
                         glm_paths_and_coefficients)


def tasks_of(engine: str, family: str = "gaussian") -> EngineTasks:
    """The tasks of ``engine``; a binomial or Poisson sweep's, whichever engine solves its Newton steps, run on
    the rows held by the workers."""
    return _TASKS[engine] if family == "gaussian" else _GLM_TASKS


def glm_engine(choice: EngineChoice, family: str) -> EngineChoice:
    """A binomial or Poisson sweep keeps the rows in worker memory (the IRLS weights change at every Newton
    step: one pass of statistics is not enough); ``choice`` (gram or rows, by the usual rule) decides how each
    step's quadratic model is solved: a weighted p × p Gram formed from the rows, or coordinate descent on them."""
    how = ("a weighted p × p Gram formed from the rows at each Newton step" if choice.name == "gram"
           else "coordinate descent on the rows at each Newton step")
    return EngineChoice(choice.name, f"{family}: the rows stay in worker memory, {how}; {choice.reason}")


def worker_memory(client: Client) -> int:
    """The smallest worker's memory limit in bytes (the available memory here if the workers have none)."""
    limit = worker_memory_limit(client)
    return limit if limit is not None else available_memory()


def worker_memory_limit(client: Client) -> int | None:
    """The smallest worker's memory limit in bytes, or None when no worker has one (``memory_limit: 0``: no
    nanny kills it, and the driver's memory says nothing of theirs)."""
    known = [m for m in (int(w.get("memory_limit") or 0) for w in cluster_workers(client).values()) if m > 0]
    return min(known) if known else None


_READERS = {"csv": ("pandas",), "bundled": ("pandas",), "parquet": ("pandas", "pyarrow.parquet")}
"""What every worker imports to read a source of each kind (pandas: 0.5 s of CPU per process)."""


def worker_preload(requested: str, plan: DataPlan, k: int, controls: bool = False) -> tuple[str, ...]:
    """Modules for the workers to import before they start (once, in the process they are forked from).

    The readers of the source's kind; the rows engine's compiled kernel when that engine is certain before
    the cluster is known (requested, a sparse source, or p above the smallest fold's training rows; a choice
    made by the workers' memory alone is not foreseen, and then each worker loads the kernel at its first
    fit, as without this); with ``controls`` (penalty factors, limits or searched groups configured) the
    compiled sweep on a Gram that every such fit runs."""
    kernel: tuple[str, ...] = ()
    if _choose(requested, plan, k, memory=sys.maxsize, limited=False).name == "rows":  # the rule without the memory test
        kernel = ("pipeline.cv.warm_sparse_kernel" if plan.sparse else "pipeline.cv.warm_dense_kernel",)
    if controls:
        kernel = (*kernel, "pipeline.cv.warm_gram_kernel")
    return (*_READERS.get(plan.kind, ()), *kernel)


def choose_sweep_engine(requested: str, client: Client, plan: DataPlan, k: int, *,
                        heldout_fraction: float = 0.0) -> EngineChoice:
    """:func:`~pipeline.engine.choose_engine` for a sweep (or a retrain's resweep) on the cluster of ``client``,
    and the workers' memory checked for what the engine keeps there (:func:`~pipeline.engine.check_block_memory`;
    not when the workers have no memory limit).

    The smallest fold's training rows are estimated from the planned row count,
    ``n − ⌈n/K⌉`` (row k-fold deals each run of K rows to the K folds), after a
    retrain's hold-out share.
    """
    limit = worker_memory_limit(client)
    if limit is None:  # no nanny kills a worker: the available memory here, as for the workers' first rule
        return _choose(requested, plan, k, memory=available_memory(), limited=False, heldout_fraction=heldout_fraction)
    memory = limit
    choice = _choose(requested, plan, k, memory=memory, limited=True, heldout_fraction=heldout_fraction)
    p, block = plan.n_statistics_columns, max(s.n_rows for s in plan.blocks)
    if choice.name == "gram" and plan.family == "gaussian":
        records = pass_records(plan, k)
        check_block_memory(block, p, memory, records * 8 * p * p,
                           f"the {records} fold Grams" if records == k else f"{records} group Grams")
    elif not plan.sparse:  # the rows engine (and every binomial or Poisson sweep) keeps every row on each worker
        read = min(block, rows_per_chunk(p)) if plan.kind in ROW_ADDRESSABLE else block
        check_block_memory(read, p, memory, rows_bytes(plan), "the rows engine's copy of every row")
    return choice


def workers_died(error: Exception, client: Client, plan: DataPlan, k: int, engine: str,
                 ending: str = "No trial ran.") -> SweepError:
    """The error for distributed's ``KilledWorker`` (workers that died running a task, mostly past their memory
    limit) in words and sizes (:func:`~pipeline.engine.killed_in_pass`): what the engine keeps on each worker
    (the Gram engine its fold Grams; the rows engine, and every binomial or Poisson model, every row)."""
    gram = engine == "gram" and plan.family == "gaussian"
    held = None if gram or plan.sparse else rows_bytes(plan)
    return SweepError(killed_in_pass(str(getattr(error, "task", error)), max(s.n_rows for s in plan.blocks),
                                     plan.n_statistics_columns, k, worker_memory(client), gram=gram, rows_bytes=held,
                                     ending=ending))


def pass_records(plan: DataPlan, k: int) -> int:
    """The p × p records a block's statistics hold: one per fold, or under group k-fold one per group, up to
    :func:`~pipeline.folds.units_cap` (20 at p = 1,500 and K = 5, four times the folds)."""
    return max(k, units_cap(plan.n_statistics_columns, k)) if plan.group is not None else k


def rows_bytes(plan: DataPlan) -> int:
    """What the rows engine keeps of a dense source on each worker: every row, as float64."""
    return 8 * plan.n_statistics_columns * plan.n_rows


def _choose(requested: str, plan: DataPlan, k: int, *, memory: int, limited: bool,
            heldout_fraction: float = 0.0) -> EngineChoice:
    """:func:`~pipeline.engine.choose_engine` on ``memory``: a worker's limit (``limited``: what it leaves for data,
    and the rows engine's copy of every row weighed against it), or memory without a limit."""
    n = int(plan.n_rows * (1.0 - heldout_fraction))
    return choose_engine(requested, sparse=plan.sparse, n_features=plan.n_features,
                         n_train=smallest_training_rows(n, k),
                         k=k, memory=worker_room(memory) if limited else memory,
                         memory_name=(f"what a worker's limit of {human_bytes(memory)} leaves for data" if limited
                                      else "the available memory"),
                         rows_bytes=rows_bytes(plan) if limited and not plan.sparse else None)


def place_engine(engine: str, client: Client, plan: DataPlan, folds: FoldsConfig, model: ModelConfig,
                 holdout: HoldoutConfig | None = None, controls: FeatureControls | None = None) -> Placement:
    """Start the engine's data (the pass, or the rows on every worker) and place its fold models (a binomial or
    Poisson model's always on the rows, ``model.engine`` resolved to ``engine`` for its Newton steps)."""
    if model.family != "gaussian":
        return RowPlacement(client, plan, folds.k, folds.seed, model.model_copy(update={"engine": engine}), holdout,
                            controls)
    if engine == "rows":
        return RowPlacement(client, plan, folds.k, folds.seed, model, holdout, controls)
    fan_in = merge_fan_in(worker_memory(client), pass_records(plan, folds.k), plan.n_statistics_columns)
    return FoldPlacement(client, lambda: submit_data_pass(client, plan, folds.k, folds.seed, fan_in), folds.k,
                         plan.n_features, model, controls=controls)
