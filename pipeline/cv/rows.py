"""The rows engine's data: every row of the source, loaded by a worker and kept in its memory.

Where the Gram engine reduces each block to p × p statistics, the rows engine
keeps the rows themselves: dense as one Fortran-ordered n × p array (coordinate
descent reads a column at a time), sparse as one CSC matrix (an ``.npz``
source stays sparse). A worker loads them from the source itself; nothing is
sent from the client but the plan. Each row carries its fold id, the same
pure function of ``(seed, global row)`` (or of its group; with rows left out,
of the kept rows' numbering in their block) as in the data pass
(:mod:`pipeline.folds`), so both engines cross-validate on the same folds.
Dense binomial and Poisson rows are then held ordered by fold (:func:`by_fold`), so that the passes of a fold's
fits can skip its held-out rows (:mod:`pipeline.solvers.glm_chord`).

For a retrain the rows held out for champion and challenger get fold id −1
(:data:`HELD_OUT`): they belong to no fold's training or held-out rows.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import HoldoutConfig, ModelConfig
from ..solvers.controls import FeatureControls
from ..data import BlockSpec, DataPlan, load_block, time_column_index, with_time_column
from ..errors import DataError
from ..folds import group_keys, kept_row_folds, row_group_folds, stratified_folds
from ..solvers import MeanImputation, RowDesign, RowProblem
from ..solvers.glm import GlmProblem
from ..targets import BinaryLabels, family_target
from .statcache import heldout_rows

__all__ = ["HELD_OUT", "ROW_ADDRESSABLE", "RowData", "by_fold", "in_source_order", "load_rows", "rows_per_chunk"]

HELD_OUT = -1  # fold id of a retrain's held-out rows
_CHUNK_BYTES = 64 * 2**20  # rows read at a time (row-addressable sources): no second full copy while loading
ROW_ADDRESSABLE = ("npy", "npz", "synthetic", "bundled")  # sources read in chunks of rows (:func:`rows_per_chunk`)


@dataclass(eq=False)
class RowData:
    """The rows, their weights and fold ids, and the problem on all (training) rows, cached per scaling."""

    X: Any  # (n, p) float64, Fortran-ordered ndarray or scipy.sparse CSC
    y: np.ndarray
    weight: np.ndarray  # 1 without a weight column
    fold: np.ndarray  # 0 … k−1, or HELD_OUT
    k: int
    integer_columns: tuple[bool, ...] = ()
    dropped_by: tuple[int, int, int, int] = (0, 0, 0, 0)  # rows left out for a missing target, weight, feature,
    #                                                      offset
    n_groups: int | None = None
    time: np.ndarray | None = None  # a retrain's time column
    cutoff: float | None = None  # a retrain's time cut-off: rows at or after it are held out
    imputation: MeanImputation | None = None  # data.missing: impute: X holds the statistics columns
    offset: np.ndarray | None = None  # data.offset, or the log of data.exposure (binomial, poisson)
    labels: BinaryLabels | None = None  # binomial: the classes y codes as 0 and 1
    offset_column: str | None = None  # the offset's (or exposure's) column, for the model to read it by name
    exposure: bool = False
    family: str = "gaussian"
    source_order: np.ndarray | None = None  # row i is the i-th as loaded? None; else loaded row source_order[i]
    _problems: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __getstate__(self) -> dict[str, Any]:  # moved between workers: the rows, not the caches
        state = self.__dict__.copy()
        state["_problems"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __sizeof__(self) -> int:
        """The bytes of the rows: Dask's ``sizeof`` reads it, so that the scheduler knows moving them is costly
        (the default, the size of this small object, would let it ship 800 MB to an idle worker)."""
        X = self.X
        nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if hasattr(X, "indptr") else X.nbytes
        per_row = (self.y, self.weight, self.fold, self.time, self.offset, self.source_order)
        return object.__sizeof__(self) + int(nbytes) + sum(a.nbytes for a in per_row if a is not None)

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_features(self) -> int:
        """Features of the model (the statistics columns less the missing indicators, unless they are features)."""
        return self.imputation.n_features if self.imputation is not None else int(self.X.shape[1])

    def features(self, v: np.ndarray | None = None, fill: np.ndarray | None = None) -> Any:
        """The rows' features, gaps filled: with ``fill`` (one value per imputed column), else with the mean of
        each column's observed entries under row weights ``v`` (a fold's training rows; default all training
        rows), as a fitted ``SimpleImputer`` fills training and held-out rows alike.

        Without imputation this is ``X`` itself; with it, a new Fortran-ordered array: every fold model holds
        its own (folds impute different values), so a worker's memory holds its fold models' copies.
        """
        imp = self.imputation
        if imp is None:
            return self.X
        p, q = imp.n_encoded, len(imp.value_columns)
        masks = np.asarray(self.X[:, p : p + q]) > 0
        if fill is None:
            v = self.training if v is None else v
            observed = v @ ~masks
            values = self.X[:, list(imp.value_columns)]
            sums = v @ np.where(masks, 0.0, values)
            fill = np.where(observed > 0, sums / np.where(observed > 0, observed, 1.0), 0.0)  # as MeanImputation
        out = np.empty((self.n_rows, imp.n_features), order="F")
        out[:, :p] = self.X[:, :p]
        for i, j in enumerate(imp.value_columns):
            out[masks[:, i], j] = fill[i]
        if imp.indicators:
            out[:, p:] = self.X[:, p : p + q]
        return out

    @property
    def training(self) -> np.ndarray:
        """Row weights of the rows every fold is drawn from (a retrain's held-out rows weigh 0)."""
        return np.where(self.fold >= 0, self.weight, 0.0)

    def problem(self, model: ModelConfig, controls: FeatureControls | None = None) -> RowProblem:
        """The problem on all training rows (bounds, refit, coefficient path), built once per scaling and
        controls."""
        key = (model.fit_intercept, model.standardize, controls.key if controls is not None else b"")
        with self._lock:
            if key not in self._problems:
                self._problems[key] = RowProblem(RowDesign(self.features(), self.y, self.training,
                                                           fit_intercept=model.fit_intercept,
                                                           standardize=model.standardize), controls)
            return self._problems[key]

    def glm_problem(self, model: ModelConfig, controls: FeatureControls | None = None) -> GlmProblem:
        """The binomial or Poisson problem on all training rows (bounds, refit, coefficient path), built once per
        family, scaling, engine and controls."""
        from .glm_models import glm_problem

        key = ("glm", model.family, model.engine, model.fit_intercept, model.standardize,
               controls.key if controls is not None else b"")
        with self._lock:
            if key not in self._problems:
                self._problems[key] = glm_problem(self, self.training, model, controls)
            return self._problems[key]


def rows_per_chunk(n_columns: int) -> int:
    """Rows read at a time from a row-addressable source: :data:`_CHUNK_BYTES` of dense rows."""
    return max(1, _CHUNK_BYTES // (8 * max(1, n_columns)))


def _chunks(plan: DataPlan, spec: BlockSpec) -> list[BlockSpec]:
    """A block cut into pieces of at most :data:`_CHUNK_BYTES` of dense rows, where rows can be addressed."""
    if plan.kind not in ROW_ADDRESSABLE:
        return [spec]
    step = rows_per_chunk(plan.n_statistics_columns)
    return [dataclasses.replace(spec, start_row=spec.start_row + a, local_start=spec.local_start + a,
                                n_rows=min(step, spec.n_rows - a)) for a in range(0, spec.n_rows, step)]


@dataclass
class _Loader:
    """Rows appended piece by piece into one preallocated array (dense) or a list of CSR pieces (sparse)."""

    plan: DataPlan
    n_features: int
    dense: np.ndarray | None = None
    pieces: list[Any] = field(default_factory=list)
    filled: int = 0

    def add(self, X: Any) -> None:
        if self.plan.sparse:
            self.pieces.append(X)
        else:
            if self.dense is None:
                self.dense = np.empty((self.plan.n_rows, self.n_features), order="F")
            self.dense[self.filled : self.filled + X.shape[0]] = X
        self.filled += X.shape[0]

    def matrix(self) -> Any:
        if self.plan.sparse:
            import scipy.sparse

            X = scipy.sparse.vstack(self.pieces, format="csc")
            X.sum_duplicates()  # canonical: sorted indices, no duplicates, no stored zeros
            X.eliminate_zeros()
            return X
        assert self.dense is not None
        X = self.dense[: self.filled]
        return X if self.filled == self.plan.n_rows else np.asfortranarray(X)  # rows dropped: one copy


def _family_target(plan: DataPlan, y: np.ndarray, placed: Sequence[tuple[int, int, np.ndarray | None]]
                   ) -> tuple[np.ndarray, BinaryLabels | None]:
    """:func:`~pipeline.targets.family_target` of every row's target; a binomial target's error says where its
    rarest label first is (:func:`_rarest_label`)."""
    try:
        return family_target(plan.family, y, y.shape[0], plan.positive_class, name=f"data.target {plan.target!r}")
    except DataError as e:
        raise DataError(f"{e}{_rarest_label(plan.family, y, placed)}") from None


def _rarest_label(family: str, y: np.ndarray, placed: Sequence[tuple[int, int, np.ndarray | None]]) -> str:
    """Where a binomial target's rarest label first is, when it has more than two (else ""): a third class found
    past the first rows was named without a row, where the same label in the first rows is named with one."""
    if family != "binomial" or y.size == 0:
        return ""
    keys = y.astype(str) if y.dtype.kind in "OUS" else y
    values, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if values.size <= 2:
        return ""
    rarest = int(np.argmin(counts))
    position = int(first[rarest])
    for start, n_rows, kept in placed:  # the kept rows' position → the source's row
        m = n_rows if kept is None else int(np.count_nonzero(kept))
        if position < m:
            row = start + (position if kept is None else int(np.flatnonzero(kept)[position]))
            many = f"{counts[rarest]} row{'s' if counts[rarest] != 1 else ''}"
            return (f" The rarest, {values[rarest].item()!r} ({many}), is first at row {row} (counted from 0, header "
                    "excluded).")
        position -= m
    return ""


def load_rows(plan: DataPlan, k: int, seed: int, holdout: HoldoutConfig | None = None) -> RowData:
    """Every row of the source with its fold id (runs on a worker; checks each row as the data pass does).

    A binomial target's row k-fold is stratified by class (``folds.stratify``, the plan's ``stratify``:
    :func:`~pipeline.folds.stratified_folds`, once every row is read; group k-fold stays by group). The target
    is checked for its family here, on all rows: two classes (labels coded 0/1), non-negative counts, not all 0.

    With ``holdout`` (a retrain) the held-out rows get fold id :data:`HELD_OUT`: by the hash of their global
    row (:func:`~pipeline.cv.statcache.heldout_rows`), or, with a time column, those in the newest share of
    the time span (read as one more column and kept apart from the features).
    """
    tc = holdout.time_column if holdout is not None else None
    source = with_time_column(plan, tc)
    p, at = plan.n_statistics_columns, time_column_index(plan)
    loader = _Loader(source, p)
    ys, ws, gs, folds, held, times, integer, dropped = [], [], [], [], [], [], None, np.zeros(4, dtype=np.int64)
    offsets: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    placed: list[tuple[int, int, np.ndarray | None]] = []  # each piece's first row, rows and kept mask
    for spec in plan.blocks:
        numbered = spec.start_row  # the block's kept rows are numbered on from its first row, across its pieces
        for chunk in _chunks(plan, spec):
            block = load_block(source, chunk, sparse=plan.sparse)
            placed.append((chunk.start_row, chunk.n_rows, block.kept))
            kept = block.kept if block.kept is not None else slice(None)
            loader.add(np.delete(block.X, at, axis=1) if tc else block.X)
            ys.append(block.y)
            ws.append(block.weight if block.weight is not None else np.ones(block.y.shape[0]))
            if block.offset is not None:
                offsets.append(block.offset)
            if block.labels is not None:
                labels.append(block.labels)
            if block.group is not None:
                gs.append(block.group)
            else:
                folds.append(kept_row_folds(numbered, chunk.n_rows, block.kept, k, seed))
                numbered += folds[-1].size
            if holdout is not None and not tc:
                held.append(heldout_rows(chunk.start_row, chunk.n_rows, holdout.fraction, holdout.seed)[kept])
            if tc:
                times.append(np.asarray(block.X[:, at], dtype=np.float64))
            flags = block.integer_columns[:p]
            integer = flags if integer is None else tuple(a and b for a, b in zip(integer, flags))
            dropped += block.dropped_by
    if loader.filled == 0:
        raise DataError(f"data.missing: drop left no rows: all {dropped.sum()} rows hold NaN or inf in a feature, the "
                        "target, the weight or the offset; impute the missing values instead.")
    y, w = np.concatenate(ys), np.concatenate(ws)
    if labels:
        y = np.concatenate(labels)
    elif plan.target_bool and not np.isnan(y).any():  # true/false values read as 1/0: the classes False and True
        y = y == 1.0
    y, classes = _family_target(plan, y, placed)
    if plan.family == "poisson" and not np.any((y > 0) & (w > 0)):
        raise DataError(f"data.target {plan.target!r}: every count is 0, so the Poisson model has no finite intercept; "
                        "check the target column.")
    if gs:
        fold = row_group_folds(np.concatenate(gs), w, k, seed)
    elif plan.stratify:
        fold = stratified_folds(classes.in_label_order(y) if classes is not None else y, k, seed)
    else:
        fold = np.concatenate(folds)
    n_groups = int(np.unique(group_keys(np.concatenate(gs))).size) if gs else None
    time = np.concatenate(times) if tc else None
    fold = fold.astype(np.int32)
    cutoff = None
    if time is not None:  # the rule of pipeline.cv.retrain_pass, over every row at once
        assert holdout is not None
        cutoff = float(time.max() - holdout.fraction * (time.max() - time.min()))
        fold[time >= cutoff] = HELD_OUT
    elif held:
        fold[np.concatenate(held)] = HELD_OUT
    imputation = plan.encoding.imputation() if plan.encoding is not None else None
    by = (int(dropped[0]), int(dropped[1]), int(dropped[2]), int(dropped[3]))
    rows = RowData(loader.matrix(), y, w, fold, k, integer or (), by,
                   n_groups, time, cutoff, imputation, np.concatenate(offsets) if offsets else None, classes,
                   plan.offset_column, plan.exposure, plan.family)
    if plan.family != "gaussian" and not plan.sparse:
        by_fold(rows)
    return rows


def by_fold(rows: RowData) -> None:
    """Reorder ``rows`` in place so that each fold's rows lie together (folds in order, each in source order).

    A binomial or Poisson fold model weighs its held-out rows 0 on all of the worker's rows, and the passes of
    its fits skip the blocks of rows where its problem has none (:mod:`pipeline.solvers.glm_chord`): a fifth of
    every pass of 5-fold CV, once those rows lie together. Nothing a sweep reports depends on the order (fold
    ids travel with their rows; errors that name a row are raised while loading). Dense X is permuted a column
    at a time (one n-vector of temporary memory, not a second copy of the rows)."""
    order = np.argsort(rows.fold, kind="stable")
    if np.array_equal(order, np.arange(order.size)):
        return
    X = rows.X
    for j in range(X.shape[1]):
        X[:, j] = X[order, j]
    for name in ("y", "weight", "fold", "time", "offset"):
        values = getattr(rows, name)
        if values is not None:
            setattr(rows, name, values[order])
    rows.source_order = order


def in_source_order(rows: RowData, values: np.ndarray) -> np.ndarray:
    """``values`` (one per row of ``rows``) in the order the rows were loaded (undoing :func:`by_fold`)."""
    if rows.source_order is None:
        return values
    out = np.empty_like(values)
    out[rows.source_order] = values
    return out
