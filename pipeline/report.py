"""What a sweep writes for people besides plots: the trials table and the coefficients table."""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .model import FittedModel


def count_text(x: float) -> str:
    """A count of non-zero coefficients (a mean over folds, so possibly fractional) as people read it:
    ``9.4``, ``78.8``, ``4,833``, ``20,000`` (not ``2e+04``)."""
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"

def se_distance(gap: float) -> str:
    """A distance from the best in standard errors: ``+0.06 SE``; ``+3.63e+13 SE`` when a fold's error is
    astronomical (the columns of the terminal's table stay aligned)."""
    return f"+{gap:.2f} SE" if abs(gap) < 1e3 else f"+{gap:.3g} SE"


__all__ = ["TrialRow", "describe_decision", "dominant_fold_notes", "explained_share", "se_distance", "trial_table",
           "write_coefficients_csv", "write_trials_csv"]

TrialRow = dict[str, Any]  # number, state, penalty, lambda1, lambda2, cv_mse, cv_mse_se, train_mse, cv_r2, n_nonzero

DOMINANT_RATIO = 100.0  # a fold whose held-out error is this many times the other folds' median decides the CV value


def dominant_fold_notes(rows: Sequence[TrialRow], label: str) -> list[str]:
    """A note when one fold's held-out error swamps the others' in at least half the complete trials
    (``fold_mse`` holds the study's metric per fold, space-separated; ``label`` names it). The CV value is a
    mean over folds, so the search then ranks trials by that fold alone: typically a few of its held-out rows
    lie far outside what the models were fitted on (an outlier or a data error, which a log link turns into an
    enormous deviance). Nothing is changed; the note says which fold and how much, so that the user looks."""
    counts: dict[int, int] = {}
    worst: dict[int, float] = {}
    n = 0
    for row in rows:
        folds = [float(v) for v in str(row.get("fold_mse") or "").split()]  # space-separated, as in trials.csv
        if row.get("state") != "COMPLETE" or len(folds) < 3 or not all(math.isfinite(v) and v >= 0 for v in folds):
            continue
        n += 1
        j = max(range(len(folds)), key=folds.__getitem__)
        median = statistics.median(folds[:j] + folds[j + 1:])
        if median > 0 and folds[j] > DOMINANT_RATIO * median:
            counts[j] = counts.get(j, 0) + 1
            worst[j] = max(worst.get(j, 0.0), folds[j] / median)
    what = label.removeprefix("CV ")
    return [f"fold {j}'s held-out {what} is over {DOMINANT_RATIO:.0f}× the other folds' median in {c} of {n} "
            f"trials (up to {worst[j]:.3g}×), so the CV value, and the choice, follow that fold: a few of its "
            "held-out rows lie far from the rows the models were fitted on (outliers or data errors?); look at "
            "them, or leave them out." for j, c in sorted(counts.items()) if 2 * c >= n]


_STRONG_END = 0.95  # a strength this far up the searched range (on the log scale) is at its strong end


def selection_notes(selected: dict[str, Any], space: dict[str, Any], metric: str) -> list[str]:
    """Notes on the selected model (a summary ``selected`` entry) that its line alone does not say: it explains
    less of the held-out data than the intercept alone (a negative share: R² for the MSE), or its strength sits
    at the strong end of the searched range, past which nothing was searched. On a 24-row binomial table the
    registered model had a CV deviance explained of −0.10 at the top of ``search.lambda2`` without a word (the
    best-trial note looks at the best trial, not at the path's choice)."""
    notes = []
    share_name = "R²" if metric == "mse" else "deviance explained"
    share = selected.get("cv_r2", selected.get("cv_deviance_explained"))
    if share is not None and math.isfinite(share) and share < 0:
        notes.append(f"the selected model's CV {share_name} is {share:.3g}: it predicts the held-out rows worse than "
                     "their own mean, as a model without a useful feature does: none helps at the strengths "
                     "searched; check data.target and the features (and whether the rows are too few for the "
                     "folds).")
    names = {"l1": ("lambda1",), "l2": ("lambda2",)}.get(selected.get("penalty", ""), ("lambda1", "lambda2"))
    for name in names:
        low, high = (space.get(name) or (0.0, 0.0))[:2]
        value = selected.get(name) or 0.0
        if 0 < low < high and value > 0 and math.log(value / low) / math.log(high / low) >= _STRONG_END:
            symbol = "λ1" if name == "lambda1" else "λ2"
            notes.append(f"the selected model ({selected.get('rule')}: {symbol} = {value:.4g}) sits at the strong end "
                         f"of the searched range (search.{name} up to {high:.4g}): stronger penalties were not "
                         f"searched; raise search.{name}.high to look further.")
    return notes


TRIAL_FIELDS = ["number", "state", "penalty", "lambda1", "lambda2", "cv_mse", "cv_mse_se", "train_mse", "cv_r2",
                "n_nonzero", "fold_mse"]


def trial_table(rows: Sequence[TrialRow], metric: str = "mse") -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of ``trials.csv`` (and of ``SweepResult.trials``): the error columns named by the
    sweep's ``metric`` (``cv_mse``; ``cv_binomial_deviance``, ``cv_deviance_explained`` and the family's other
    scores, ``cv_auc`` …, for a binomial or Poisson sweep), then one ``mult_<group>`` per searched group."""
    names = {"cv_mse": f"cv_{metric}", "cv_mse_se": f"cv_{metric}_se", "train_mse": f"train_{metric}",
             "cv_r2": "cv_r2" if metric == "mse" else "cv_deviance_explained", "fold_mse": f"fold_{metric}"}
    extra = sorted({name for r in rows for name in r.get("extra", {})})
    groups = sorted({g for r in rows for g in r.get("group_multipliers", {})})
    fields = [names.get(k, k) for k in TRIAL_FIELDS] + [f"cv_{e}" for e in extra] + [f"mult_{g}" for g in groups]
    table = [{**{names.get(k, k): v for k, v in r.items() if names.get(k, k) in fields},
              **{f"cv_{e}": v for e, v in r.get("extra", {}).items()},
              **{f"mult_{g}": v for g, v in r.get("group_multipliers", {}).items()}} for r in rows]
    return fields, table


def write_trials_csv(rows: Sequence[TrialRow], path: Path, metric: str = "mse") -> Path:
    """``trials.csv``: one row per trial of the study, every state (columns: :func:`trial_table`)."""
    fields, table = trial_table(rows, metric)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    return path


def write_coefficients_csv(model: FittedModel, path: Path) -> Path:
    """``coefficients.csv``: each feature's name, standardized coefficient (× its scale, the scale the
    penalty acts on) and original-scale coefficient; with penalty factors or limits also each feature's
    effective factor, its limits (empty: none) and whether it sits at one; the intercept last."""
    names = list(model.feature_names or [f"x{j}" for j in range(model.n_features)])
    factor, lower, upper = model.penalty_factor, model.lower, model.upper
    at_limit = model.at_limit
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["name", "coef_standardized", "coef"]
        head += ["penalty_factor"] if factor is not None else []
        head += ["lower", "upper", "at_limit"] if lower is not None else []
        w.writerow(head)
        for j, (name, coef, scale) in enumerate(zip(names, model.coef, model.x_scale)):
            row = [name, repr(float(coef * scale)), repr(float(coef))]
            row += [repr(float(factor[j]))] if factor is not None else []
            if lower is not None and upper is not None:
                row += [_limit(lower[j]), _limit(upper[j]), str(bool(at_limit[j])).lower()]
            w.writerow(row)
        w.writerow(["(intercept)", "", repr(float(model.intercept))])
    return path


def _limit(x: float) -> str:
    return repr(float(x)) if math.isfinite(x) else ""


def _controls_lines(controls: dict[str, Any] | None, multipliers: dict[str, float]) -> list[str]:
    """The description's paragraph on penalty factors, limits and searched groups (nothing without them)."""
    if not controls:
        return []

    def some(names: list[str]) -> str:
        return ", ".join(names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")

    parts = []
    if controls["unpenalized"]:
        parts.append(f"unpenalized: {some(controls['unpenalized'])}")
    if controls["factors"]:
        parts.append(f"other penalty factors: {some([f'{n} {v:.3g}' for n, v in controls['factors'].items()])}")
    if controls["limits"]:
        shown = [f"{n} [{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
                 for n, (lo, hi) in controls["limits"].items()]
        parts.append(f"limits: {some(shown)}")
    for group, members in controls["groups"].items():
        chosen = f", chosen multiplier {multipliers[group]:.4g}" if group in multipliers else ""
        parts.append(f"group `{group}` ({len(members)} features, `mult_{group}` searched{chosen})")
    return ["", "**Penalty controls:** " + "; ".join(parts) + "."]


def describe_decision(summary: dict[str, Any], run_id: str) -> str:
    """The parent run's description (Markdown, MLflow's ``mlflow.note.content``): the decision, the
    scores, the features and the plots, for a reader who opens the run and nothing else."""
    from .metrics import metric_label

    sel, best = summary["selected"], summary["best_per_penalty"]
    top = min(best.values(), key=lambda b: b["cv_metric"]) if best else None
    label = metric_label(summary.get("metric", "mse"))
    explained = "R²" if summary.get("metric", "mse") == "mse" else "deviance explained"
    lines = [f"**Registered: the `{sel['rule']}` choice** (`search.select: {sel['rule']}`): {sel['penalty']}, "
             f"{_strengths(sel)}: CV {label} {sel['cv_metric']:.6g} ± {sel['cv_metric_se']:.3g}, {explained} "
             f"{explained_share(sel):.3f}, {sel['n_nonzero']} of {summary['n_features']} features non-zero."]
    for note in summary.get("cv_notes", []):  # up front: the choice above follows one fold
        lines.append(f"\n**Note:** {note}")
    if summary.get("target"):
        lines.append(f"\n{_target_line(summary['target'])}")
    for rule, c in summary.get("choices", {}).items():
        if rule != sel["rule"]:
            lines.append(f"\nThe `{rule}` choice: {c['penalty']}, {_strengths(c)}: CV {label} {c['cv_metric']:.6g} "
                         f"± {c['cv_metric_se']:.3g}, {c['n_nonzero']:.3g} non-zero (mean over folds).")
    lines += ["", f"| penalty | best trial | strengths | CV {label} ± SE | from the best | non-zero |",
              "|---|---|---|---|---|---|"]
    for pen, b in best.items():
        assert top is not None
        se = top["cv_metric_se"] or float("nan")
        gap = "best" if b is top else se_distance((b['cv_metric'] - top['cv_metric']) / se)
        lines.append(f"| {pen} | {b['trial']} | {_strengths(b | {'penalty': pen})} | {b['cv_metric']:.6g} ± "
                     f"{b['cv_metric_se']:.3g} | {gap} | {b['n_nonzero']:.3g} |")
    lines += _controls_lines(summary.get("penalty_controls"), sel.get("group_multipliers") or {})
    features = summary.get("selected_features", [])
    lines += ["", f"**Features kept ({len(features)}):** " + (", ".join(features[:50]) or "none")
              + (f", … ({len(features) - 50} more)" if len(features) > 50 else "")]
    lines += ["", f"Data: `{summary.get('data_source', '')}`, {summary['n_rows']} rows × {summary['n_features']} "
              f"features, {summary['k']} folds (fingerprint `{summary['data_fingerprint']}`); "
              f"{summary['n_trials_complete']} trials complete. Every trial is a child run; `coefficients.csv`, "
              "`trials.csv` and `config.yaml` are artifacts of this run."]
    if summary.get("data_notes"):  # what the terminal said as Note: lines (the CV's are up front)
        lines += ["", "**Notes on the data:**", *(f"- {n}" for n in summary["data_notes"])]
    for name, title in (("cv_curve.png", "CV error along the path"), ("coefficient_path.png", "coefficient path"),
                        ("validation_curve.png", "every trial")):
        lines += ["", f"![{title}](get-artifact?path={name}&run_uuid={run_id})"]
    return "\n".join(lines)


def explained_share(entry: dict[str, Any]) -> float:
    """A summary entry's share of the deviance explained (``cv_r2`` for the MSE, ``cv_deviance_explained``)."""
    return float(entry["cv_r2"] if "cv_r2" in entry else entry["cv_deviance_explained"])


def _target_line(target: dict[str, Any]) -> str:
    """The description's sentence on a binomial or Poisson target."""
    offset = ""
    if target.get("offset"):
        column = target["offset"]
        offset = f"; offset: log of `{column}`" if target.get("exposure") else f"; offset: `{column}`"
    if target["family"] == "binomial":
        n = target["n_positive"] + target["n_negative"]
        return (f"**Target:** binomial; the model predicts the probability of `{target['positive_class']}` "
                f"({target['n_positive']} of {n} rows), against `{target['negative_class']}`{offset}.")
    mean = "weighted mean" if target.get("weighted", True) else "mean"
    return (f"**Target:** Poisson counts ({mean} {target['mean_count']:.4g}, "
            f"{100 * target['share_zero']:.1f}% zeros); the model predicts the expected count{offset}.")


def _strengths(c: dict[str, Any]) -> str:
    if c["penalty"] == "l1":
        return f"λ1 = {c['lambda1']:.4g}"
    if c["penalty"] == "l2":
        return f"λ2 = {c['lambda2']:.4g}"
    return f"λ1 = {c['lambda1']:.4g}, λ2 = {c['lambda2']:.4g}"
