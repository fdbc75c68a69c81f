"""The one data pass: every block reduced to per-fold statistics, merged on the workers.

Each block yields one :class:`~pipeline.solvers.SuffStats` per fold (its rows
in that fold); the per-fold lists are merged in a tree of fixed shape
(:data:`MERGE_FAN_IN` parts per merge, fewer when the workers' memory asks:
:func:`~pipeline.engine.merge_fan_in`; in block order), so the same data give
bitwise the same statistics whichever worker finishes first. From the K
held-out statistics a fold's training statistics are ``total − held-out``.

The task functions are module-level and pure in their inputs (picklable, no
client, no Optuna, no MLflow): Dask may run them anywhere and twice.
:func:`submit_data_pass` builds the graph.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..columns import column_notes, constant_target, mostly_missing_notes
from ..data import BlockSpec, DataPlan, load_block
from ..errors import DataError
from ..folds import assign_units, block_fold_stats, kept_row_folds, merge_units, unit_stats, units_cap
from ..solvers import MeanImputation, SuffStats, merge_all

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    from distributed import Client, Future

__all__ = [
    "MERGE_FAN_IN",
    "BlockPass",
    "block_pass",
    "finish_pass",
    "merge_block_passes",
    "pass_summary",
    "same",
    "submit_data_pass",
]

MERGE_FAN_IN = 8
_T = TypeVar("_T")


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
    units: dict[Hashable, SuffStats] | None = None  # group (or hash bucket) -> stats, group k-fold only
    units_cap: int = 0
    total: SuffStats | None = None  # all rows, after finish_pass
    n_groups: int | None = None  # distinct groups (or buckets) under group k-fold, after finish_pass
    dropped_by: tuple[int, int, int, int] = (0, 0, 0, 0)  # rows left out for a missing target, weight, feature, offset
    imputation: MeanImputation | None = None  # data.missing: impute: statistics columns -> features

    @property
    def n_dropped(self) -> int:
        """Rows left out (a missing target or weight; under data.missing: drop, any missing entry)."""
        return sum(self.dropped_by)

    @property
    def raw_total(self) -> SuffStats:
        """The statistics of all rows in the statistics columns (a finished pass always has them)."""
        if self.total is None:
            raise ValueError("this block pass is not finished: call finish_pass first")
        return self.total

    @property
    def total_stats(self) -> SuffStats:
        """The statistics of all rows' features (imputed by the means over all rows)."""
        if self.imputation is None:
            return self.raw_total
        return self.imputation.apply(self.raw_total)[1][0]

    def fold_split(self, fold: int) -> tuple[SuffStats, SuffStats]:
        """A fold's training and held-out statistics of the features; imputed by the training rows' means."""
        heldout = self.fold_stats[fold]
        train = self.raw_total - heldout
        if self.imputation is None:
            return train, heldout
        train, heldout = self.imputation.apply(train, heldout)[1]
        return train, heldout


def block_pass(plan: DataPlan, spec: BlockSpec, k: int, fold_seed: int) -> BlockPass:
    """Load one block and reduce it to one statistics record per fold (per group under group k-fold)."""
    block = load_block(plan, spec, sparse=plan.sparse and plan.group is None,
                       sparse_levels=plan.group is None and sparse_levels_pay(plan))
    imputation = plan.encoding.imputation() if plan.encoding is not None else None
    if block.group is not None:
        cap = units_cap(plan.n_statistics_columns, k)
        units = unit_stats(block.X, block.y, block.weight, block.group, cap, fold_seed)
        return BlockPass((), 1, block.integer_columns, units=units, units_cap=cap, dropped_by=block.dropped_by,
                         imputation=imputation)
    # a kept row's fold depends on its place among its block's kept rows: no other block's rows move it
    folds = kept_row_folds(block.start_row, spec.n_rows, block.kept, k, fold_seed)
    stats = block_fold_stats(block.X, block.y, block.weight, folds, k)
    return BlockPass(tuple(stats), 1, block.integer_columns, dropped_by=block.dropped_by, imputation=imputation)


def sparse_levels_pay(plan: DataPlan) -> bool:
    """Whether a table's level indicators are worth a sparse block: when there are at least twice as many as
    other columns, and 32 more.

    A sparse block's statistics cost its non-zeros times its dense columns, a dense block's all columns
    squared (:mod:`pipeline.solvers.sparse_stats`), but each number column takes a round trip through the
    sparse matrix (about 3 ms per 65,536 rows). One 65,536-row block's pass (parse, encode, five fold records;
    one BLAS thread, medians of 5), dense → sparse: 10 numbers and 16 levels 0.17 → 0.19 s, 100 numbers and
    3 levels 0.55 → 0.88 s (both stay dense); 6 numbers and 101 levels 0.32 → 0.23 s; 20 and 150
    0.25 → 0.21 s; 5 and 1,050 1.78 → 0.19 s."""
    if plan.encoding is None:
        return False
    levels = plan.encoding.n_levels
    return levels >= 2 * (plan.encoding.n_statistics_columns - levels) + 32


def merge_block_passes(*parts: BlockPass, fold_seed: int = 0) -> BlockPass:
    """Merge several block passes fold by fold (or group by group), in the order given."""
    integer = tuple(all(flags) for flags in zip(*(p.integer_columns for p in parts)))
    n_blocks = sum(p.n_blocks for p in parts)
    dropped = _sum_dropped(parts)
    imputation = parts[0].imputation
    if parts[0].units is not None:
        cap = parts[0].units_cap
        units = merge_units([p.units or {} for p in parts], cap, fold_seed)
        return BlockPass((), n_blocks, integer, units=units, units_cap=cap, dropped_by=dropped, imputation=imputation)
    k = len(parts[0].fold_stats)
    merged = tuple(merge_all(p.fold_stats[i] for p in parts) for i in range(k))
    return BlockPass(merged, n_blocks, integer, dropped_by=dropped, imputation=imputation)


def _sum_dropped(parts: Sequence[BlockPass]) -> tuple[int, int, int, int]:
    t, w, f, o = (sum(p.dropped_by[i] for p in parts) for i in range(4))
    return t, w, f, o


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
    return BlockPass(fold_stats, passes.n_blocks, passes.integer_columns, total=merge_all(fold_stats),
                     n_groups=n_groups, dropped_by=passes.dropped_by, imputation=passes.imputation)


def pass_summary(passes: BlockPass, feature_names: tuple[str, ...], missing: str = "error") -> dict[str, Any]:
    """Row counts per fold, group count, column notes and a content fingerprint of the data (worker side);
    ``missing`` is ``data.missing`` (what the notes say about rows left out)."""
    total = passes.raw_total
    h = hashlib.sha256()
    for name, arr in sorted(total.to_arrays().items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\x1f".join(feature_names).encode())
    stats = passes.total_stats  # (with imputation, each access imputes the statistics anew)
    out = {
        "n_rows": total.n_rows,
        "fold_rows": [s.n_rows for s in passes.fold_stats],
        "fold_weight": [s.sum_w for s in passes.fold_stats],
        "n_groups": passes.n_groups,
        "fingerprint": h.hexdigest()[:16],
        "moments": data_moments(total),
        **column_notes(stats, feature_names, passes.dropped_by, imputing=missing == "impute"),
        "constant_target": constant_target(stats.sum_w, stats.cyy, stats.y_mean),
    }
    imp = passes.imputation
    if imp is not None and imp.value_columns:  # the missing indicators' means are the columns' missing shares
        shares = total.x_mean[imp.n_encoded : imp.n_encoded + len(imp.value_columns)].tolist()
        names = [feature_names[j] for j in imp.value_columns]
        out["notes"] = [*out["notes"], *mostly_missing_notes(names, shares, imp.indicators)]
    return out


def data_moments(total: SuffStats) -> list[list[float]]:
    """Moments of the data as ``[value, scale]`` pairs, which a resumed study compares to a relative 1e-8
    (:mod:`pipeline.search.resume_checks`): unlike the fingerprint, they do not depend on the last bits of the
    summation. First the five a study recorded before this list grew (Σw, ȳ, the target's variance, two seeded
    random combinations of the column means and variances, each with the sum of its terms' magnitudes as its
    scale); then, per column (the first :data:`MOMENT_COLUMNS`), its mean, variance and covariance with the
    target, each on the scale of the column's values (|mean| + sd), and two seeded quadratic forms of the
    centred Gram. The five alone missed a column whose values were shuffled (means and variances unchanged: a
    study resumed on Boston with its two strongest predictors permuted kept its stale best trial) and a change
    of 0.001 in one value, diluted by the largest column's mean."""
    w = total.sum_w
    if w <= 0:
        return []
    p = total.n_features
    r = np.random.default_rng(20261204).standard_normal(p)
    mean, var = total.x_mean * r, np.diag(total.cxx) / w * r
    y_var = total.cyy / w
    out = [[w, w], [total.y_mean, abs(total.y_mean) + y_var**0.5], [y_var, y_var],
           [float(mean.sum()), float(np.abs(mean).sum())], [float(var.sum()), float(np.abs(var).sum())]]
    var_j = np.maximum(np.diag(total.cxx) / w, 0.0)
    sd_j, sd_y = np.sqrt(var_j), max(y_var, 0.0) ** 0.5
    cov_y = np.asarray(total.cxy) / w
    # each column on the scale of its values: a constant column's moments are rounding of 0 set by the order
    # of summation. Per column the pairs [mean, z], [variance, z²], [covariance, z·sd_y], with z = |mean| + sd
    k = min(p, MOMENT_COLUMNS)
    size = np.abs(total.x_mean) + sd_j
    z = size[:k]
    out += np.column_stack([total.x_mean[:k], z, var_j[:k], z * z, cov_y[:k], z * sd_y]).reshape(-1, 2).tolist()
    for q in np.random.default_rng(20261205).standard_normal((2, p)):  # the columns' cross-moments
        out.append([float(q @ (total.cxx @ q)) / w, float(np.abs(q) @ size) ** 2])
    return out


MOMENT_COLUMNS = 400
"""Columns whose own moments a study records (:func:`data_moments`; 3 pairs each, about 130 bytes: 52 KB in
all, within the 64 KB of a MySQL TEXT column, where Optuna keeps a study's attributes); further columns count
in the pooled and cross-moments only."""
LEGACY_MOMENTS = 5
"""How many moments a study recorded before the per-column ones: compared alone when that is all it has."""


def same(value: _T) -> _T:
    """The identity, as a task: a value handed to a key Dask can recompute (unlike scattered data)."""
    return value


def submit_data_pass(client: Client, plan: DataPlan, k: int, seed: int, fan_in: int = MERGE_FAN_IN) -> Future:
    """Submit the data pass; returns the future of the finished :class:`BlockPass`.

    The plan is a task, not scattered data: if every worker holding it dies,
    Dask recomputes it (scattered data has no lineage, and the lost block
    passes could not be redone). Keys are unique per call, since several
    drivers may share one scheduler. Merges take ``fan_in`` (at most
    :data:`MERGE_FAN_IN`: :func:`~pipeline.engine.merge_fan_in` fits it to the
    workers' memory) consecutive parts, so the tree (and with it every
    rounding) is fixed for a given fan-in.
    """
    run = uuid.uuid4().hex[:12]
    plan_f = client.submit(same, plan, pure=False, key=f"plan-{run}")
    futs = [client.submit(block_pass, plan_f, spec, k, seed, pure=False, key=f"block-{spec.index}-{run}")
            for spec in plan.blocks]
    while len(futs) > 1:
        futs = [client.submit(merge_block_passes, *futs[i : i + fan_in], fold_seed=seed, pure=False)
                for i in range(0, len(futs), fan_in)]
    return client.submit(finish_pass, futs[0], k, seed, pure=False)
