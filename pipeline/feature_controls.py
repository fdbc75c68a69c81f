"""Penalty factors, coefficient limits and searched groups by column name: config → :class:`FeatureControls`.

``model.penalty_factor: {pattern: factor}``, ``model.coef_limits: {pattern: [lower, upper]}`` and
``search.group_multipliers: {group: {columns: [patterns], range: [low, high]}}`` name features by pattern:

- an exact feature name (``age``; a categorical level is ``column=level``, as the encoding names it);
- a glob (``bmi_*``, ``color=*`` for every level of ``color``, ``*`` for everything);
- a categorical column's bare name (``color``), meaning every one of its levels.

Every pattern must match at least one feature (an error names the closest names otherwise), and no
feature may be matched by two patterns of the same mapping or be in two groups (the error names both):
a silent precedence rule would make a typo or an overlap change a model without a word.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError
from .solvers.controls import FeatureControls

if TYPE_CHECKING:
    from .config import SweepConfig

__all__ = ["check_control_names", "check_controls_early", "check_unpenalized_rows", "controls_from_config",
           "controls_summary", "describe_controls", "match_features", "sweep_controls", "unpenalized_fit_all_rows"]


def match_features(pattern: str, names: Sequence[str]) -> list[int]:
    """Indices of the features ``pattern`` names (module docstring)."""
    level_prefix = f"{pattern}="
    return [j for j, n in enumerate(names)
            if n == pattern or n.startswith(level_prefix) or fnmatch.fnmatchcase(n, pattern)]


def _resolve(patterns: Sequence[str], names: Sequence[str], key: str) -> list[list[int]]:
    """The features of each pattern, refusing unknown patterns and features matched twice."""
    owner: dict[int, str] = {}
    out = []
    for pattern in patterns:
        hits = match_features(pattern, names)
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.5)
            hint = f"; closest: {close}" if close else ""
            raise ConfigError(f"{key}: {pattern!r} matches no feature{hint}. Features are named as columns, "
                              "categorical levels as column=level; globs (bmi_*, color=*) are allowed.")
        for j in hits:
            if j in owner:
                raise ConfigError(f"{key}: feature {names[j]!r} is matched by both {owner[j]!r} and {pattern!r}; "
                                  "make the patterns disjoint.")
            owner[j] = pattern
        out.append(hits)
    return out


def controls_from_config(names: Sequence[str], penalty_factor: Mapping[str, float],
                         coef_limits: Mapping[str, Sequence[float]],
                         group_columns: Mapping[str, Sequence[str]]) -> FeatureControls | None:
    """The checked controls of a sweep's features, or None when nothing is configured.

    Raises :class:`~pipeline.errors.ConfigError` (one line, before any work) for an unknown name, an
    overlap, or factors that leave nothing penalized.
    """
    if not penalty_factor and not coef_limits and not group_columns:
        return None
    p = len(names)
    factor = np.ones(p)
    for hits, value in zip(_resolve(list(penalty_factor), names, "model.penalty_factor"), penalty_factor.values()):
        factor[hits] = float(value)
    lower, upper = np.full(p, -np.inf), np.full(p, np.inf)
    for hits, (lo, hi) in zip(_resolve(list(coef_limits), names, "model.coef_limits"), coef_limits.values()):
        lower[hits], upper[hits] = float(lo), float(hi)
    groups = np.full(p, -1, dtype=np.intp)
    owner: dict[int, str] = {}
    for g, (group, patterns) in enumerate(group_columns.items()):
        for hits in _resolve(list(patterns), names, f"search.group_multipliers.{group}.columns"):
            for j in hits:
                if j in owner and owner[j] != group:
                    raise ConfigError(f"search.group_multipliers: feature {names[j]!r} is in both groups "
                                      f"{owner[j]!r} and {group!r}; a feature may be in one group only.")
                owner[j] = group
                groups[j] = g
    if not np.any(factor > 0):
        raise ConfigError("model.penalty_factor is 0 for every feature, so nothing is penalized; give the features "
                          "to penalize a positive factor.")
    try:
        return FeatureControls.make(p, factor, lower, upper, groups, tuple(group_columns))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def check_control_names(cfg: SweepConfig, columns: Sequence[str], categorical: Sequence[str]) -> None:
    """The patterns of the controls checked against the table's feature columns before the cluster starts: an
    exact name (no glob) that names no column, nor a level of a categorical one, is a typo (it was found only
    once the levels were known, after the cluster, the study and the MLflow experiment were set up). Globs and
    level names wait for the levels (:func:`controls_from_config`)."""
    named = [("model.penalty_factor", p) for p in cfg.model.penalty_factor]
    named += [("model.coef_limits", p) for p in cfg.model.coef_limits]
    named += [(f"search.group_multipliers.{g}.columns", p) for g, spec in cfg.search.group_multipliers.items()
              for p in spec.columns]
    for key, pattern in named:
        if pattern in columns or any(ch in pattern for ch in "*?["):
            continue
        column = pattern.split("=", 1)[0]
        if "=" in pattern and column in categorical:
            continue
        close = difflib.get_close_matches(column, columns, n=3, cutoff=0.5)
        numeric = f"; {column!r} is numeric: it has no levels" if "=" in pattern and column in columns else ""
        hint = f"; closest: {close}" if close and not numeric else ""
        raise ConfigError(f"{key}: {pattern!r} matches no feature{numeric}{hint}. Features are named as columns, "
                          "categorical levels as column=level; globs (bmi_*, color=*) are allowed.")


def sweep_controls(cfg: SweepConfig, names: Sequence[str]) -> FeatureControls | None:
    """The controls a sweep's config asks for on its features (``model.penalty_factor``, ``model.coef_limits``,
    ``search.group_multipliers``), or None."""
    groups = {g: spec.columns for g, spec in cfg.search.group_multipliers.items()}
    return controls_from_config(names, cfg.model.penalty_factor, cfg.model.coef_limits, groups)


def unpenalized_fit_all_rows(controls: FeatureControls | None, names: Sequence[str], n_train: int,
                             fit_intercept: bool = True) -> str | None:
    """Why a fit on ``n_train`` rows cannot be made when the features of factor 0 (and the intercept) are at
    least as many as the rows, or None. Those columns alone then fit every training row exactly: the
    penalty on the others has nothing left to do, the coefficients are not unique, and a binomial or Poisson
    fit has no finite solution at all (its Newton steps ran for minutes: a 50 × 200 Poisson lasso with 100
    unpenalized features took 456 s on the rows engine before it gave up). The caller names the key."""
    if controls is None:
        return None
    free = [str(names[int(j)]) for j in np.flatnonzero(controls.factor == 0)]
    if len(free) + int(fit_intercept) < n_train:
        return None
    shown = ", ".join(repr(n) for n in free[:5]) + (f", … ({len(free)})" if len(free) > 5 else "")
    with_intercept = " with the intercept" if fit_intercept else ""
    return (f"is 0 for {len(free)} features ({shown}), but a fit has {n_train:,} training rows:{with_intercept} "
            "those features alone can fit every row exactly, so the penalty on the others has nothing left to do "
            "(binomial, Poisson: there is no finite fit, and its solver runs for minutes); give fewer features "
            "factor 0 (a small factor, say 0.01, keeps them nearly unpenalized), or fit on more rows.")


def check_controls_early(cfg: SweepConfig, names: Sequence[str], n_rows: int, levels_pending: bool) -> None:
    """The whole controls checked before the cluster starts when the features' names are already known (no
    categorical levels or missing indicators to find, ``levels_pending`` false): factors 0 for every feature
    (``{'*': 0}``), overlapping patterns, more unpenalized features than a fold's rows. ``check-config`` said OK
    to these, and a sweep found them after the cluster had started."""
    if not levels_pending:
        check_unpenalized_rows(cfg, sweep_controls(cfg, names), names, n_rows)


def check_unpenalized_rows(cfg: SweepConfig, controls: FeatureControls | None, names: Sequence[str],
                           n_rows: int) -> None:
    """A sweep's :func:`unpenalized_fit_all_rows` rule on a fold's training rows (about n − n/K: row k-fold),
    before the data pass."""
    n_train = n_rows - -(-n_rows // cfg.folds.k)
    why = unpenalized_fit_all_rows(controls, names, n_train, cfg.model.fit_intercept)
    if why is not None:
        raise ConfigError(f"model.penalty_factor {why}")


def controls_summary(controls: FeatureControls | None, names: Sequence[str]) -> dict[str, Any] | None:
    """The summary's ``penalty_controls``: unpenalized features, the other factors ≠ 1 (rescaled), the limits
    and each group's features."""
    if controls is None:
        return None
    f = controls.factor
    values, counts = np.unique(f[f > 0], return_counts=True)
    usual = values[np.argmax(counts)] if values.size else 1.0  # the factor most features have (1 before rescaling)
    return {
        "unpenalized": [names[int(j)] for j in np.flatnonzero(f == 0)],
        "factors": {names[int(j)]: float(f[j]) for j in np.flatnonzero((f > 0) & (f != usual))},
        "factor_of_the_rest": float(usual),
        "limits": {names[int(j)]: [_finite_or_none(controls.lower[j]), _finite_or_none(controls.upper[j])]
                   for j in np.flatnonzero(controls.bounded)},  # null: no limit on that side (JSON has no inf)
        "groups": {g: [names[int(j)] for j in np.flatnonzero(controls.groups == i)]
                   for i, g in enumerate(controls.group_names)},
    }


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def describe_controls(controls: FeatureControls, names: Sequence[str]) -> str:
    """One line for the terminal: what the penalty controls do to which features."""
    s = controls_summary(controls, names)
    assert s is not None
    parts = []

    def some(items: Sequence[str]) -> str:
        return ", ".join(items[:4]) + (f", … ({len(items)})" if len(items) > 4 else "")

    if s["unpenalized"]:
        parts.append(f"unpenalized {some(s['unpenalized'])}")
    if s["factors"]:
        parts.append(f"{len(s['factors'])} other factors")
    if s["limits"]:
        nonneg = [n for n, (lo, hi) in s["limits"].items() if lo == 0 and hi is None]
        parts.append(f"limits on {len(s['limits'])} coefficients"
                     + (f" ({len(nonneg)} non-negative)" if nonneg else ""))
    for g, members in s["groups"].items():
        parts.append(f"group {g}: {len(members)} features (multiplier mult_{g} searched)")
    return "Penalty: " + "; ".join(parts) + "."
