"""What a study's trials were scored on, recorded by its first run and checked by every run that resumes it.

A study's trial values are comparable only if every trial was scored the same way: the same family's metric,
the same penalty controls, and the same data in the same folds. The first run of a study records each of these
in the study's user attributes; a later run under the same ``search.study_name`` with another of them stops
with a :class:`~pipeline.errors.ConfigError` (exit 2) before it asks a trial, so it never mixes, reports or
registers scores of other data (a re-run after editing ``data.target`` would otherwise have resumed the old
study and registered a model chosen by the old target's scores).

Three checks, each as early as what it compares is known:

- :func:`check_family` and :func:`check_plan` from the config and the data plan (metadata only), before a
  finished study's recorded outcome is returned and before any cluster starts: the target, the feature
  columns, the source's row count, the weight, offset, folds, missing-value rule and standardization;
- :func:`check_controls` once the feature names are known (penalty factors, limits, searched groups);
- :func:`check_data` after the data pass, from its summary: the rows used per fold, then the content. The
  rows engine's fingerprint hashes the parsed rows, exact on any machine; the Gram engine's hashes the
  merged statistics, whose last bits may differ between CPUs (another BLAS kernel), so a differing Gram
  fingerprint is settled by moments of the data compared to a relative 1e-8 (each column's mean, variance
  and covariance with the target, and cross-moments: rounding is ~1e-15, a changed value moves them far
  more). A study resumed on the other engine is compared by rows alone.

A study with no trials yet has scored nothing, so a run takes it over and records its own values (a run
that stopped before its first trial must not bind the study), unless another driver is at work on it. A
study with trials from before an attribute existed is not checked for it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from ..config import SweepConfig
from ..data import DataPlan
from ..errors import ConfigError
from ..folds import FOLD_NUMBERING
from ..solvers.controls import FeatureControls
from .rows import FAMILY_ATTR
from .study import TrialStore

__all__ = ["CONTROLS_ATTR", "DATA_ATTR", "PLAN_ATTR", "check_controls", "check_data", "check_family",
           "check_plan", "plan_identity"]

CONTROLS_ATTR = "regsweep:controls"
PLAN_ATTR = "regsweep:data_plan"
DATA_ATTR = "regsweep:data"
MOMENTS_RTOL = 1e-8  # moments of the same data agree to ~1e-15 across summation orders; a changed value moves them
_LISTED_FEATURES = 200  # feature names kept in the record up to this many (more: their count and a digest)


def _recorded(store: TrialStore, attr: str, value: str, before: str | None) -> str | None:
    """What the study records under ``attr``: ``before`` for a study with trials from before the attribute
    existed. A study without trials takes ``value`` (module docstring), unless another driver is still at
    work on it (its data pass can take minutes before its first trial), whose value stands."""
    study = store.study
    seen = study.user_attrs.get(attr)
    if not store.has_trials() and (seen is None or (seen != value and not store.others_at_work())):
        if seen != value:
            study.set_user_attr(attr, value)
        return value
    return str(seen) if seen is not None else before


def _redo(cfg: SweepConfig) -> str:
    return (f"use a new search.study_name to sweep these data (or delete study {cfg.search.study_name!r}), or "
            "the config it was run with.")


def check_family(store: TrialStore, cfg: SweepConfig) -> None:
    """A study's trial values are one family's metric: resuming it under another family would compare an MSE
    with a deviance."""
    family = cfg.model.family
    seen = _recorded(store, FAMILY_ATTR, family, before="gaussian")
    if seen != family:
        raise ConfigError(
            f"search.study_name {cfg.search.study_name!r} was run with model.family {seen} and its trials hold that "
            f"family's metric; use a new search.study_name for model.family {family}.")


def check_controls(store: TrialStore, controls: FeatureControls | None, cfg: SweepConfig) -> None:
    """A study's trials were scored under one set of penalty controls: resuming it under others would mix them
    (and a removed group's ``mult_<group>`` would name nothing). A study from before the controls existed
    counts as having none."""
    key = controls.key.hex() if controls is not None else ""
    if _recorded(store, CONTROLS_ATTR, key, before="") != key:
        raise ConfigError(
            f"search.study_name {cfg.search.study_name!r} was run with other penalty controls (model.penalty_factor, "
            "model.coef_limits, search.group_multipliers) and its trials were scored under them; use a new "
            "search.study_name, or the controls it was run with.")


# ------------------------------------------------------------------ the plan
def plan_identity(cfg: SweepConfig, plan: DataPlan) -> dict[str, Any]:
    """What the trials' scores depend on that the config and the source's metadata already say."""
    features = list(plan.raw_features)
    listed: Any = features if len(features) <= _LISTED_FEATURES else {
        "count": len(features), "sha256": hashlib.sha256("\x1f".join(features).encode()).hexdigest()[:16]}
    f = cfg.folds
    return {  # keyed by the config's names, which the refusal shows
        "data.target": plan.target, "features": listed, "n_rows": plan.n_rows, "data.weight": plan.weight,
        "data.offset": None if plan.exposure else plan.offset, "data.exposure": plan.offset if plan.exposure else None,
        "folds.k": f.k, "folds.seed": f.seed, "folds.group": f.group, "folds.stratify": plan.stratify,
        "data.missing": plan.missing, "data.missing_indicators": plan.missing_indicators,
        "data.na_values": None if plan.na_values is None else list(plan.na_values),
        "model.standardize": cfg.model.standardize, "model.fit_intercept": cfg.model.fit_intercept,
    }


def check_plan(store: TrialStore, cfg: SweepConfig, plan: DataPlan) -> None:
    """Refuse to resume a study whose trials were scored on another target, other columns, another row count of
    the source, or other folds, weights, offsets or missing-value rules."""
    mine = plan_identity(cfg, plan)
    seen = _recorded(store, PLAN_ATTR, json.dumps(mine, sort_keys=True, default=str), before=None)
    if seen is None:
        return
    theirs = json.loads(seen)
    # a key added later is not in older records; the features last: a column that became or ceased to be the
    # weight, offset or target changes them too, and that key names the cause (not "new 'w'")
    for key in sorted((k for k in mine if k in theirs), key=lambda k: k == "features"):
        then, now = theirs.get(key), json.loads(json.dumps(mine.get(key), default=str))
        if now != then:
            raise ConfigError(f"search.study_name {cfg.search.study_name!r} was run on other data ("
                              f"{_difference(key, then, now)}): its trials were scored on those; {_redo(cfg)}")


def _difference(key: str, then: Any, now: Any) -> str:
    """One line on what changed in ``key`` of :func:`plan_identity`."""
    if key == "features":
        return _feature_difference(then, now)
    if key == "n_rows":
        return f"data.source held {then} rows then and holds {now} now"
    return f"{key} was {_shown(then)}, is {_shown(now)} now"


def _feature_difference(then: Any, now: Any) -> str:
    if isinstance(then, list) and isinstance(now, list):
        gone = [c for c in then if c not in now]
        new = [c for c in now if c not in then]
        parts = [f"no longer {_names(gone)}" if gone else "", f"new {_names(new)}" if new else ""]
        said = "; ".join(p for p in parts if p) or "the same names in another order"
        return f"its feature columns were {len(then)}, these are {len(now)} ({said})"
    n_then = len(then) if isinstance(then, list) else then.get("count")
    n_now = len(now) if isinstance(now, list) else now.get("count")
    return f"its {n_then} feature columns differ from these {n_now}"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _shown(value: Any) -> str:
    return "unset" if value is None else repr(value) if isinstance(value, str) else json.dumps(value)


# ------------------------------------------------------------------ the data
def check_data(store: TrialStore, cfg: SweepConfig, meta: dict[str, Any], engine: str, plan: DataPlan) -> None:
    """After the data pass: refuse to resume a study whose trials were scored on other rows or other values, or
    on the same rows dealt to other folds (module docstring). ``meta`` is the pass's summary (``fold_rows``,
    ``fingerprint``, the Gram engine's ``moments``, ``rows_dropped``).

    With rows left out a row's fold depends on the blocks it was read in (:func:`~pipeline.folds.kept_row_folds`),
    so the record then keeps the blocks' layout, and how kept rows are numbered."""
    mine = {"engine": engine, "fold_rows": [int(n) for n in meta["fold_rows"]], "fingerprint": meta["fingerprint"],
            "moments": meta.get("moments"), "numbering": FOLD_NUMBERING,
            "layout": _layout(plan) if meta["rows_dropped"] else None}
    seen = _recorded(store, DATA_ATTR, json.dumps(mine, sort_keys=True), before=None)
    if seen is None:
        return
    theirs = json.loads(seen)
    dealt = _dealt_otherwise(theirs, mine)
    if theirs.get("fold_rows") != mine["fold_rows"]:
        what = (f"{sum(theirs.get('fold_rows') or [])} rows used then (per fold {theirs.get('fold_rows')}), "
                f"{sum(mine['fold_rows'])} now (per fold {mine['fold_rows']})" + (f"; {dealt}" if dealt else ""))
    elif dealt:
        what = dealt
    elif theirs.get("engine") != engine or theirs.get("fingerprint") == mine["fingerprint"] or \
            _close(theirs.get("moments"), mine["moments"]):
        return
    else:
        what = (f"the same rows with other values (fingerprint {theirs.get('fingerprint')} then, "
                f"{mine['fingerprint']} now: data.source was changed since)")
    raise ConfigError(f"search.study_name {cfg.search.study_name!r} holds trials scored on other data: {what}; "
                      f"{_redo(cfg)}")


def _layout(plan: DataPlan) -> str:
    """A digest of the plan's blocks (first row and row count of each): the unit rows left out are dealt by."""
    return hashlib.sha256(repr([(b.start_row, b.n_rows) for b in plan.blocks]).encode()).hexdigest()[:16]


def _dealt_otherwise(theirs: dict[str, Any], mine: dict[str, Any]) -> str | None:
    """Why the same rows sit in other folds than when the study was scored, if they do: rows are left out now
    and the study was scored before they were numbered among the kept rows, or in other blocks."""
    if mine["layout"] is None:  # nothing left out: a row's fold is a function of its index alone, as it was
        return None
    if theirs.get("numbering") == mine["numbering"] and theirs.get("layout") is None:
        return None  # nothing was left out then: other data (the caller's other checks say how)
    if theirs.get("numbering") != mine["numbering"]:
        return ("the rows kept beside rows left out are dealt to other folds than when the study was scored "
                "(regsweep now numbers them among themselves, which keeps the folds balanced)")
    if theirs.get("layout") != mine["layout"]:
        return ("with rows left out, the folds follow the blocks the rows are read in, and these differ from "
                "then: set data.block_rows back (a Parquet source: its files and row groups)")
    return None


def _close(then: Any, now: Any) -> bool:
    """Whether two lists of ``[value, scale]`` moments agree to :data:`MOMENTS_RTOL` of their scales (a study
    recorded before the per-column moments: its five, against the same five now)."""
    from ..cv.passes import LEGACY_MOMENTS

    if isinstance(then, list) and isinstance(now, list) and len(then) == LEGACY_MOMENTS < len(now):
        now = now[:LEGACY_MOMENTS]
    if not isinstance(then, list) or not isinstance(now, list) or len(then) != len(now):
        return False
    return all(a == b or (a != a and b != b) or abs(a - b) <= MOMENTS_RTOL * max(sa, sb, abs(a), abs(b), 1e-300)
               for (a, sa), (b, sb) in zip(then, now, strict=True))  # NaN beside NaN: the same (not-a-)moment
