"""What a sweep prints: the progress of the trials and the outcome."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from .config import SweepConfig
from .metrics import metric_label
from .report import count_text, explained_share, se_distance

__all__ = ["LOCAL_UI", "Progress", "mlflow_ui_command", "print_outcome"]


class Progress:
    """tqdm on a terminal; a plain log line every ~10% otherwise."""

    def __init__(self, total: int, echo: Callable[[str], None], progress: bool | None, metric: str = "mse") -> None:
        self.total = total
        self.metric = metric
        self.echo = echo
        self.tty = sys.stdout.isatty() if progress is None else progress
        self.best = math.inf
        self.done = 0
        self.t0 = time.perf_counter()
        self.bar: Any = None

    def start(self, done: int, best: float | None) -> None:
        """Start from ``done`` complete trials whose best value is ``best`` (a resumed study)."""
        self.done = done
        if best is not None:
            self.best = min(self.best, best)
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, desc="trials", unit="trial")

    def update(self, value: float) -> None:
        self.done += 1
        self.best = min(self.best, value)
        if self.bar is not None:
            self.bar.set_postfix_str(f"best cv_{self.metric}={self.best:.6g}")
            self.bar.update(1)
            return
        step = max(1, self.total // 10)
        if self.done % step == 0 or self.done == self.total:
            el = time.perf_counter() - self.t0
            eta = el / max(1, self.done) * (self.total - self.done)
            self.echo(f"trials {self.done}/{self.total}  best cv_{self.metric}={self.best:.6g}  elapsed {el:.1f}s  "
                      f"eta {eta:.1f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


LOCAL_UI = "http://127.0.0.1:5000"


def mlflow_ui_command(uri: str, url: str) -> str:
    """The command (or address) that shows these results in the MLflow UI; ``url`` is the page to open."""
    if uri.startswith(("http://", "https://")):
        return f"open {url}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   # then open {url}"


def print_outcome(summary: dict[str, Any], cfg: SweepConfig, echo: Callable[[str], None]) -> None:
    """The decision a statistician can check: each penalty's best and its distance from the best in
    standard errors, the ``min`` and ``1se`` choices, the registered model and its features, what MLflow
    missed, and where to look."""
    echo("")
    for line in _penalty_lines(summary) + _edge_lines(summary):
        echo(line)
    for note in summary.get("cv_notes") or []:
        echo(f"  Note: {note}")
    echo("")
    for line in _choice_lines(summary, cfg):
        echo(line)
    if summary["trials_not_logged"] or summary["tracking_incomplete"]:
        what = summary["tracking_incomplete"] + (
            [f"child runs of trials {summary['trials_not_logged']}"] if summary["trials_not_logged"] else [])
        echo(f"WARNING: not logged to MLflow ({cfg.tracking.uri}): {'; '.join(what)}. The Optuna study holds "
             "every result: run `regsweep sync-tracking CONFIG` (same config) once the server is back.")
    if summary.get("trials_logging_in_background"):
        echo(f"MLflow: the last {summary['trials_logging_in_background']} child runs are being written after this "
             f"command returns, within seconds, by process {summary['background_writer_pid']} (to wait for them "
             "instead: tracking.wait_for_child_runs: true). `regsweep sync-tracking CONFIG`, or this sweep run again, "
             "writes any that do not arrive.")
    echo(f"MLflow: {mlflow_ui_command(cfg.tracking.uri, summary['mlflow_ui_url'])}")
    echo("  the parent run holds cv_curve.png, coefficient_path.png, validation_curve.png and coefficients.csv; "
         "one child run per trial")


def _penalty_lines(summary: dict[str, Any]) -> list[str]:
    best = summary["best_per_penalty"]
    if not best:
        return []
    top = min(best.values(), key=lambda b: b["cv_metric"])
    se = top["cv_metric_se"] if top["cv_metric_se"] and math.isfinite(top["cv_metric_se"]) else float("nan")
    lines = [f"Best of each penalty (CV {metric_label(summary['metric'])} ± 1 SE; distance from the best in its SEs):"]
    for pen, b in best.items():
        gap = (b["cv_metric"] - top["cv_metric"]) / se if se > 0 else float("nan")
        where = "best" if b is top else se_distance(gap)
        lines.append(f"  {pen:<10}  trial {b['trial']:<4} {_lambdas(pen, b['lambda1'], b['lambda2']):<34} "
                     f"{b['cv_metric']:>12.6g} ± {b['cv_metric_se']:<9.3g} {where:<10} "
                     f"{count_text(b['n_nonzero'])} non-zero{_multipliers(b)}")
    gaps = [(b["cv_metric"] - top["cv_metric"]) / se for b in best.values()] if se > 0 else []
    if len(best) > 1 and gaps and max(gaps) < 1.0:
        lines.append("  All penalties are within one standard error of the best: the data do not prefer one.")
    return lines


_EDGE = 0.05  # a strength this share of the searched range (on the log scale) from an end is at that end
_NEGLIGIBLE = 1e-3  # an elastic net's λ2 at most this share of its λ1 (mixing ≥ 0.999) makes it a lasso
_SEPARABLE = 0.01  # a binomial CV deviance below this (log-loss 0.005): the classes look separable


def _edge_lines(summary: dict[str, Any]) -> list[str]:
    """A note when the best trial sits at an end of the searched range, where the search could not look past
    it: at the weak end the data may want less penalty (separable classes: the fit keeps improving as it
    falls), at the strong end no feature may help."""
    best, space = summary.get("best_per_penalty") or {}, summary.get("search_space") or {}
    if not best:
        return []
    pen, top = min(best.items(), key=lambda kv: kv[1]["cv_metric"])
    weak, strong = [], []
    for name in {"l1": ("lambda1",), "l2": ("lambda2",)}.get(pen, ("lambda1", "lambda2")):
        low, high = space.get(name, (0.0, 0.0))
        value = top[name]
        if pen == "elasticnet" and name == "lambda2" and value <= _NEGLIGIBLE * top["lambda1"]:
            continue  # a lasso in all but name: a smaller λ2 would change nothing, whatever its bound
        if 0 < low < high and value > 0:
            at = math.log(value / low) / math.log(high / low)
            symbol = "λ1" if name == "lambda1" else "λ2"
            if at <= _EDGE:
                weak.append((f"{symbol} = {value:.4g}, search.{name} from {low:.4g}", f"search.{name}.low"))
            elif at >= 1 - _EDGE:
                strong.append((f"{symbol} = {value:.4g}, search.{name} up to {high:.4g}", f"search.{name}.high"))
    lines = []
    if weak:
        separable = summary.get("family") == "binomial" and top["cv_metric"] < _SEPARABLE
        lines.append(f"  Note: the best trial ({pen}) sits at the weak end of the searched range "
                     f"({'; '.join(w for w, _ in weak)}): the data may want less penalty; lower "
                     f"{' and '.join(k for _, k in weak)} to look further.")
        if separable:
            lines.append("  Its CV deviance is near 0: the classes look separable, so the fit keeps improving as the "
                         "penalty falls, and only the penalty keeps the coefficients finite.")
    if strong:
        lines.append(f"  Note: the best trial ({pen}) sits at the strong end of the searched range "
                     f"({'; '.join(w for w, _ in strong)}): no feature may help much; raise "
                     f"{' and '.join(k for _, k in strong)} to look further.")
    return lines


def _share_text(share: float) -> str:
    """The CV R² (or deviance explained), or why there is none: a held-out fold whose target is constant (a fold
    of one row, on a tiny table) has no R², as scikit-learn's ``r2_score`` has none."""
    return f"{share:.3f}" if math.isfinite(share) else "n/a (a held-out fold's target is constant: lower folds.k)"


def _choice_lines(summary: dict[str, Any], cfg: SweepConfig) -> list[str]:
    sel, choices = summary["selected"], summary.get("choices", {})
    label = metric_label(summary["metric"])
    explained = "R²" if summary["metric"] == "mse" else "deviance explained"
    lines = []
    if choices:
        path = summary.get("path", {})
        lines.append(f"Choices on the dense {path.get('penalty', sel['penalty'])} path "
                     f"({path.get('n_points', '?')} strengths, on the trials' fold models: no extra data pass):")
        for rule, c in choices.items():
            mark = "  ← registered (search.select)" if rule == sel["rule"] else ""
            lines.append(f"  {rule:<4} {_lambdas(c['penalty'], c['lambda1'], c['lambda2']):<34} "
                         f"{count_text(c['n_nonzero']):>5} non-zero   CV {label} {c['cv_metric']:.6g} ± "
                         f"{c['cv_metric_se']:.3g}   {explained} {_share_text(explained_share(c))}{_multipliers(c)}"
                         f"{mark}")
    features = summary.get("selected_features", [])
    version = summary["model_version"]
    registered = (f"{cfg.tracking.registered_model} v{version} (alias candidate)" if version is not None
                  else "not registered yet (see below)")
    lines.append(f"Registered model: {registered}, the {sel['rule']} choice: {count_text(sel['n_nonzero'])} of "
                 f"{count_text(summary['n_features'])} features non-zero")
    if features:
        shown = ", ".join(features[:20]) + (f", … ({len(features) - 20} more)" if len(features) > 20 else "")
        lines.append(f"  {shown}")
    return lines


def _multipliers(entry: dict[str, Any]) -> str:
    """``   mult_serum 0.7036, …`` for an entry with searched group multipliers, else nothing."""
    mult = entry.get("group_multipliers") or {}
    return ("   " + ", ".join(f"mult_{g} {v:.4g}" for g, v in mult.items())) if mult else ""


def _lambdas(penalty: str, lambda1: float, lambda2: float) -> str:
    if penalty == "l1":
        return f"λ1 = {lambda1:.4g}"
    if penalty == "l2":
        return f"λ2 = {lambda2:.4g}"
    return f"λ1 = {lambda1:.4g}, λ2 = {lambda2:.4g}"
