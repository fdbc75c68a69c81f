"""Statistics of one encoding seen through another: a retrain's old blocks and its incumbent model.

Levels and gaps change between deliveries: a new level appears, a column gets
its first missing entry. Statistics are linear in their columns, so moving
them to another layout is one matrix ``A`` (:meth:`SuffStats.mapped`), never
a new read of the rows:

- :func:`widening_map` takes a cached block's statistics to the columns of
  today's encoding: a level the block never held is a column of zeros there;
  a gappy column written with an older centre ``c_old`` becomes
  ``x̃ + (c_new − c_old)·m``.
- :func:`incumbent_map` takes statistics in today's columns to an earlier
  model's features, imputed by *its* fill values: a level it never saw has no
  feature (its indicators count as zeros, as at predict time), a level it knew
  and the data lack is a zero column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .encoding import NA_LEVEL, Encoding
from .errors import DataError

__all__ = ["coefficients_by_name", "incumbent_fill", "incumbent_map", "new_levels", "widening_map"]


def widening_map(old_names: Sequence[str], old_centers: Mapping[str, float], new: Encoding) -> np.ndarray:
    """``A`` (old columns × today's statistics columns) for a block's statistics written under older levels."""
    index = {name: i for i, name in enumerate(old_names)}
    names = new.statistics_names
    A = np.zeros((len(old_names), len(names)))
    for j, name in enumerate(names):
        if name in index:
            A[index[name], j] = 1.0
    centers = new.imputed_centers
    position = {name: j for j, name in reversed(list(enumerate(names)))}
    for col, c_new in centers.items():
        mask = index.get(f"{col}={NA_LEVEL}")
        if mask is not None and col in index:
            A[mask, position[col]] += c_new - old_centers.get(col, c_new)
    return A


def incumbent_map(today: Encoding, feature_names: Sequence[str], incumbent: Encoding | None) -> np.ndarray:
    """``A`` (today's statistics columns × the incumbent's features): its encoding, its fill values."""
    index = {name: i for i, name in enumerate(today.statistics_names)}
    fills = dict(zip(today.imputed_centers, incumbent_fill(today, incumbent)))
    A = np.zeros((len(index), len(feature_names)))
    for j, name in enumerate(feature_names):
        if name in index:
            A[index[name], j] = 1.0
        mask = index.get(f"{name}={NA_LEVEL}")
        if name in today.imputed_centers and mask is not None:  # a gappy numeric feature of the incumbent
            A[mask, j] += fills[name] - today.imputed_centers[name]
    return A


def incumbent_fill(today: Encoding, incumbent: Encoding | None) -> np.ndarray:
    """The incumbent's fill value for each of today's imputed columns (the rows engine fills rows with them)."""
    fill = dict(zip(incumbent.columns, incumbent.fill)) if incumbent is not None and incumbent.fill else {}
    out = []
    for col in today.imputed_centers:
        value = fill.get(col, float("nan"))
        if not np.isfinite(value):
            raise DataError(f"column {col!r} now has missing values, but the incumbent model was fitted "
                            "without data.missing: impute and cannot fill them in; run a new sweep.")
        out.append(value)
    return np.asarray(out)


def new_levels(old: Encoding | None, new: Encoding) -> dict[str, list[str]]:
    """Levels of today's categorical columns that ``old`` did not have (``{}`` when nothing is new)."""
    known = {c: set(lv) for c, lv in zip(old.columns, old.levels) if lv is not None} if old is not None else {}
    out = {}
    for c, lv in zip(new.columns, new.levels):
        if lv is not None:
            fresh = [v for v in lv if v not in known.get(c, set())]
            if fresh:
                out[c] = fresh
    return out


def coefficients_by_name(coef: np.ndarray, names: Sequence[str], target: Sequence[str]) -> np.ndarray:
    """``coef`` (named ``names``) on the features ``target``: 0 where a name is new."""
    by_name = dict(zip(names, coef))
    return np.array([by_name.get(n, 0.0) for n in target])
