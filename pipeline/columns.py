"""Column diagnostics from the total statistics of the data pass (no row is read).

Constant columns, identical (duplicate) columns and more features than rows
are not errors: the solver gives constant columns coefficient 0 and the
penalty makes duplicated or underdetermined problems well posed. But the user
should know, so each becomes one line of ``notes`` printed by the sweep and
kept in its summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .solvers import SuffStats
from .solvers.stats import CONSTANT_RTOL, varying_columns

__all__ = ["column_notes", "constant_target", "describe_columns", "far_from_zero_notes", "mostly_missing_notes"]

MOSTLY_MISSING = 0.9  # an imputed column missing in at least this share of the rows used is noted

_SAME_RTOL = 1e-10  # identical columns: equal means, variances and covariance up to rounding
_LISTED = 10
_PASTED = 30  # the most column names a note gives as a data.exclude list to paste


def column_notes(total: SuffStats, feature_names: Sequence[str], dropped_by: Sequence[int] = (0, 0, 0, 0), *,
                 imputing: bool = False, has_offset: bool = False) -> dict[str, Any]:
    """``constant_columns``, ``duplicate_columns`` (pairs) and one-line ``notes`` about the data."""
    n, p = total.n_rows, total.n_features
    var = np.diag(total.cxx) / total.sum_w if total.sum_w > 0 else np.zeros(p)
    mean = total.x_mean
    sd = np.sqrt(np.maximum(var, 0.0))
    constant = ~varying_columns(var, mean)  # the solvers' rule
    duplicates: list[tuple[str, str]] = []
    live = np.flatnonzero(~constant)
    if live.size > 1 and total.sum_w > 0:
        cov = total.cxx[np.ix_(live, live)] / total.sum_w
        s = sd[live]
        same = ((np.abs(cov - np.outer(s, s)) <= _SAME_RTOL * np.outer(s, s))  # correlation 1
                & (np.abs(s[:, None] - s[None, :]) <= _SAME_RTOL * s[:, None])  # same spread
                & (np.abs(mean[live][:, None] - mean[live][None, :])
                   <= _SAME_RTOL * (np.abs(mean[live])[:, None] + s[:, None])))  # same mean
        for a, b in zip(*np.nonzero(np.triu(same, 1))):
            duplicates.append((feature_names[int(live[a])], feature_names[int(live[b])]))
    const_names = [feature_names[int(j)] for j in np.flatnonzero(constant)]
    return describe_columns(n, p, const_names, duplicates, dropped_by, imputing=imputing, has_offset=has_offset,
                            feature_names=feature_names)


def mostly_missing_notes(names: Sequence[str], shares: Sequence[float], indicators: bool = False) -> list[str]:
    """A note naming the imputed columns whose share of missing entries (``shares``, over the rows used) is at
    least :data:`MOSTLY_MISSING`: nearly every row then holds the fill value, and the column carries little."""
    mostly = [(n, s) for n, s in zip(names, shares) if s >= MOSTLY_MISSING]
    if not mostly:
        return []
    shown = ", ".join(f"{n!r} ({100 * s:.0f}%)" for n, s in mostly[:_LISTED]) + (", …" if len(mostly) > _LISTED
                                                                              else "")
    return [f"{len(mostly)} imputed column(s) missing in at least {100 * MOSTLY_MISSING:.0f}% of the rows [{shown}]: "
            "nearly every row holds the fill value, so they say little" + (
                "; their missing indicators keep what the gaps themselves say." if indicators else
                "; leave them out (data.exclude), or set data.missing_indicators: true so that the gaps "
                "themselves can count.")]


def far_from_zero_notes(names: Sequence[str]) -> list[str]:
    """A note naming the columns whose spread is under 10⁻⁸ of their mean, on the rows engine (which loses
    eps·|mean|/sd of each product there; the Gram engine's centred sums do not)."""
    if not names:
        return []
    return [f"{len(names)} column(s) {_listed(names)} vary by less than 10⁻⁸ of their mean: the rows engine loses "
            "digits on them; subtract a constant from them (their minimum, say), or use model.engine: gram where the "
            "features allow it."]


def constant_target(sum_w: float, centred_ss: float, mean: float) -> float | None:
    """The target's value when it is constant over the rows used (``centred_ss``: Σ w (y − ȳ)², by the same rule as
    a constant column), else None: a gaussian sweep has nothing to fit then, and its λ ranges are empty."""
    sd = float(np.sqrt(max(centred_ss, 0.0) / sum_w)) if sum_w > 0 else 0.0
    return float(mean) if not sd > CONSTANT_RTOL * abs(mean) else None


def describe_columns(n: int, p: int, const_names: Sequence[str], duplicates: Sequence[tuple[str, str]],
                     dropped_by: Sequence[int] = (0, 0, 0, 0), *, imputing: bool = False,
                     has_offset: bool = False, feature_names: Sequence[str] = ()) -> dict[str, Any]:
    """The summary fields and notes for what was found, whichever engine found it.

    ``dropped_by``: rows left out for a missing target, weight, feature, offset (the first that was missing).
    ``imputing``: ``data.missing`` is ``impute``, where only rows missing the target, weight or offset are
    left out; otherwise (``drop``) a row with any NaN or inf is. ``has_offset``: the data have an offset (or
    an exposure), and ``rows_dropped_by`` then counts it too.
    """
    rows_dropped = int(sum(dropped_by))
    notes = []
    if rows_dropped and imputing:
        what = "target, weight or offset" if dropped_by[3] else "target or weight"
        notes.append(f"{rows_dropped} rows with a missing {what} left out (these are never imputed); "
                     f"{n} rows used.")
    elif rows_dropped:
        notes.append(f"{rows_dropped} rows with NaN or inf left out (data.missing: drop); {n} rows used.")
    if const_names:
        notes.append(f"{len(const_names)} constant column(s) {_listed(const_names)}: coefficient 0"
                     + _exclude_fix([str(c) for c in const_names], "leave them out", "constant_columns") + ".")
    if duplicates:
        notes.append(f"{len(duplicates)} pair(s) of identical columns {_listed([list(d) for d in duplicates])}: "
                     "the penalty splits the weight between them"
                     + _exclude_fix([*(str(d[1]) for d in duplicates), *_duplicate_sources(duplicates, feature_names)],
                                    "keep one of each", "duplicate_columns", f"the {len(duplicates):,} pairs") + ".")
    if p > n:
        notes.append(f"more features ({p}) than rows ({n}): only penalized fits are determined, and "
                     "small λ overfit.")
    causes = ("target", "weight", "feature", "offset")[: 4 if has_offset else 3]
    return {"constant_columns": list(const_names), "duplicate_columns": [list(d) for d in duplicates],
            "rows_dropped": rows_dropped, "rows_dropped_by": {c: int(v) for c, v in zip(causes, dropped_by)},
            "notes": notes}


def _exclude_fix(names: Sequence[str], verb: str, field: str, listed: str | None = None) -> str:
    """``; leave them out with data.exclude: [a, b]`` for the source columns among ``names`` (a level indicator,
    ``color=red``, is not one: its column's other levels vary): every one, to paste, up to :data:`_PASTED`;
    more (7,258 constant columns of a wide table made a 57 KB line in the terminal and the run's notes) are left
    to the summary's ``field``, which lists ``listed`` (default: all of them; the duplicates' field lists pairs)."""
    from .column_kinds import yaml_list

    columns = list(dict.fromkeys(c for c in names if "=" not in c))  # a column in several pairs: once
    if len(columns) > _PASTED:
        if listed is None:
            return f"; {verb} with data.exclude (the summary's {field} lists all {len(columns):,})"
        return f"; {verb} with data.exclude ({len(columns):,} columns; the summary's {field} lists {listed})"
    return f"; {verb} with data.exclude: {yaml_list(columns)}" if columns else ""


def _duplicate_sources(duplicates: Sequence[tuple[str, str]], feature_names: Sequence[str]) -> list[str]:
    """The categorical columns whose every level indicator (``b=l``, among ``feature_names``) is identical to a
    level of one other column (``a=m``): ``b`` repeats ``a`` whole (R's Car data: type1, type3, type5), and
    leaving out ``b`` is the fix a level pair's own name cannot give."""
    levels: dict[str, int] = {}
    for name in feature_names:
        if "=" in name:
            column = name.split("=", 1)[0]
            levels[column] = levels.get(column, 0) + 1
    paired: dict[tuple[str, str], set[str]] = {}
    for a, b in duplicates:
        if "=" in a and "=" in b:
            ca, cb = a.split("=", 1)[0], b.split("=", 1)[0]
            if ca != cb:
                paired.setdefault((ca, cb), set()).add(b)
    out: list[str] = []
    for (_, cb), hits in paired.items():
        if len(hits) == levels.get(cb, -1) and cb not in out:
            out.append(cb)
    return out


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_LISTED])
    return f"[{shown}{', …' if len(items) > _LISTED else ''}]"
