"""The level scan: categorical levels and missing entries, found on the workers before the statistics pass.

Each block is read once more (only when the source has categorical columns or
``data.missing: impute``): :func:`scan_block` returns its levels per
categorical column and, per numeric column, how many entries are missing and
the sum of the observed ones. The driver merges the scans and decides the
:class:`~pipeline.encoding.Encoding` with :func:`encoding_from_scan`, which is
also where too many levels and free-text columns are refused, before any
trial. Rows the pass will leave out (a missing target or weight; under
``data.missing: drop`` any missing entry) are left out of the scan too, so no
level exists only in rows that are never fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .column_kinds import is_free_text, refuse_free_text
from .encoding import NA_LEVEL, Encoding, is_missing, level_strings, numeric_column
from .errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from .data import BlockSpec, DataPlan

__all__ = ["ColumnScan", "FrameColumns", "TableColumns", "encoding_from_scan", "merge_scans", "scan_block", "scan_frame",
           "scan_from_json", "scan_to_json"]

_LEVELS_KEPT = 100_000  # per column and block: enough to say "too many" without holding a free-text column


@dataclass
class ColumnScan:
    """What one or more blocks hold, per raw feature column."""

    levels: dict[str, set[str]] = field(default_factory=dict)  # categorical: levels seen (NA_LEVEL for missing)
    present: dict[str, int] = field(default_factory=dict)  # categorical: non-missing entries
    missing: dict[str, int] = field(default_factory=dict)  # numeric: missing entries
    observed_sum: dict[str, float] = field(default_factory=dict)  # numeric: Σ of the observed entries
    observed: dict[str, int] = field(default_factory=dict)  # numeric: observed entries


class TableColumns(Protocol):
    """What the scan and the encoding need to know of a table's columns (a :class:`~pipeline.data.DataPlan`,
    or :class:`FrameColumns` for an in-memory frame)."""

    @property
    def raw_features(self) -> tuple[str, ...]: ...

    @property
    def categorical(self) -> tuple[str, ...]: ...

    @property
    def text_columns(self) -> tuple[str, ...]: ...

    @property
    def missing(self) -> str: ...

    @property
    def missing_indicators(self) -> bool: ...

    @property
    def max_levels(self) -> int: ...


@dataclass(frozen=True)
class FrameColumns:
    """The columns of an in-memory frame (``pipeline.fit``)."""

    raw_features: tuple[str, ...]
    categorical: tuple[str, ...]
    text_columns: tuple[str, ...]
    missing: str
    missing_indicators: bool = False
    max_levels: int = 1000


def scan_block(plan: DataPlan, spec: BlockSpec) -> ColumnScan:
    """Levels and missing entries of one block's kept rows (runs on a worker)."""
    from .data import raw_block_frame

    frame, y, w, where = raw_block_frame(plan, spec)
    kept = np.isfinite(y) & (np.isfinite(w) if w is not None else True)
    return scan_frame(plan, frame[kept], where)


def scan_frame(columns: TableColumns, frame: pd.DataFrame, where: str) -> ColumnScan:
    """Levels and missing entries of a frame's rows (under ``data.missing: drop``, of its complete rows)."""
    plan = columns
    if plan.missing == "drop":
        complete = np.ones(len(frame), dtype=bool)
        for c in plan.raw_features:
            complete &= ~is_missing(frame[c])
        frame = frame[complete]
    scan = ColumnScan()
    for c in plan.raw_features:
        if c in plan.categorical:
            text = level_strings(frame[c])
            absent = text.isna()
            seen = set(text[~absent].unique()[:_LEVELS_KEPT])
            if absent.any() and plan.missing == "impute":
                seen.add(NA_LEVEL)
            scan.levels[c] = seen
            scan.present[c] = int((~absent).sum())
        else:
            values = numeric_column(frame[c], c, where)
            finite = np.isfinite(values)
            scan.missing[c] = int((~finite).sum())
            scan.observed_sum[c] = float(values[finite].sum())
            scan.observed[c] = int(finite.sum())
    return scan


def scan_to_json(scan: ColumnScan) -> dict[str, Any]:
    """Plain JSON of a scan (kept with a retrain's cached block record)."""
    return {"levels": {c: sorted(v) for c, v in scan.levels.items()}, "present": scan.present,
            "missing": scan.missing, "observed_sum": scan.observed_sum, "observed": scan.observed}


def scan_from_json(d: dict[str, Any]) -> ColumnScan:
    """Inverse of :func:`scan_to_json`."""
    return ColumnScan({c: set(v) for c, v in d["levels"].items()}, dict(d["present"]), dict(d["missing"]),
                      {c: float(x) for c, x in d["observed_sum"].items()}, dict(d["observed"]))


def merge_scans(scans: list[ColumnScan]) -> ColumnScan:
    """The scan of all the blocks scanned."""
    out = ColumnScan()
    for s in scans:
        for c, lv in s.levels.items():
            out.levels.setdefault(c, set()).update(lv)
        for target, source in ((out.present, s.present), (out.missing, s.missing), (out.observed, s.observed)):
            for c, v in source.items():
                target[c] = target.get(c, 0) + v
        for c, x in s.observed_sum.items():
            out.observed_sum[c] = out.observed_sum.get(c, 0.0) + x
    return out


def encoding_from_scan(plan: TableColumns, scan: ColumnScan) -> Encoding:
    """The encoding of ``plan``'s columns; free text and too many levels are one-line errors."""
    levels: list[tuple[str, ...] | None] = []
    imputed, centers = [], []
    free_text = [(c, len(scan.levels.get(c, set()) - {NA_LEVEL}), scan.present.get(c, 0)) for c in plan.raw_features
                 if c in plan.categorical and c in plan.text_columns]
    refuse_free_text([f for f in free_text if is_free_text(f[1], f[2])])
    for c in plan.raw_features:
        if c in plan.categorical:
            found = scan.levels.get(c, set())
            if len(found) > plan.max_levels:
                raise DataError(f"column {c!r} has {len(found)} levels, more than data.max_levels = "
                                f"{plan.max_levels}; raise data.max_levels or leave it out with data.exclude.")
            levels.append(_sorted_levels(found))
            imputed.append(False)
            centers.append(0.0)
        else:
            levels.append(None)
            gaps = plan.missing == "impute" and scan.missing.get(c, 0) > 0
            imputed.append(gaps)
            n_obs = scan.observed.get(c, 0)
            centers.append(scan.observed_sum[c] / n_obs if gaps and n_obs else 0.0)
    enc = Encoding(plan.raw_features, tuple(levels), tuple(imputed), tuple(centers), plan.missing_indicators,
                   impute=plan.missing == "impute", na_values=_csv_na_values(plan))
    _refuse_clashing_names(enc)
    return enc


def _refuse_clashing_names(enc: Encoding) -> None:
    """A feature name made twice (a column named ``color=red`` beside column ``color`` with level ``red``) would
    make the coefficients, ``model.penalty_factor`` and a predict-time frame ambiguous: one line naming both."""
    seen: dict[str, str] = {}
    for col, lv in zip(enc.columns, enc.levels):
        for name, what in ([(col, f"column {col!r}")] if lv is None else
                           [(f"{col}={v}", f"level {v!r} of column {col!r}") for v in lv]):
            if name in seen:
                raise DataError(f"{seen[name]} and {what} would both be the feature {name!r}; rename the column "
                                "(or leave one out with data.exclude) so that every feature has its own name.")
            seen[name] = what


def _csv_na_values(plan: TableColumns) -> tuple[str, ...] | None:
    """A CSV source's ``data.na_values`` (kept by the model: :attr:`Encoding.na_values`); None for others."""
    return getattr(plan, "na_values", None) if getattr(plan, "kind", None) == "csv" else None


def _sorted_levels(found: set[str]) -> tuple[str, ...]:
    """Levels in order: numerically when all are numbers (``2``, ``10``), else as text; ``<NA>`` last."""
    real = [v for v in found if v != NA_LEVEL]
    try:
        ordered = sorted(real, key=float)
    except ValueError:
        ordered = sorted(real)
    return tuple(ordered + ([NA_LEVEL] if NA_LEVEL in found else []))
