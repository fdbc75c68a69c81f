"""What a sweep prints: the progress of the trials and the outcome."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .config import SweepConfig
from .report import TrialRow, format_top_table

__all__ = ["Progress", "mlflow_ui_command", "print_outcome"]


class Progress:
    """tqdm on a terminal; a plain log line every ~10% otherwise."""

    def __init__(self, total: int, echo: Callable[[str], None], progress: bool | None) -> None:
        self.total = total
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
            self.bar.set_postfix_str(f"best cv_mse={self.best:.6g}")
            self.bar.update(1)
            return
        step = max(1, self.total // 10)
        if self.done % step == 0 or self.done == self.total:
            el = time.perf_counter() - self.t0
            eta = el / max(1, self.done) * (self.total - self.done)
            self.echo(f"trials {self.done}/{self.total}  best cv_mse={self.best:.6g}  elapsed {el:.1f}s  eta {eta:.1f}s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def mlflow_ui_command(uri: str, experiment_id: str) -> str:
    """The command (or address) that shows these results in the MLflow UI."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri.rstrip('/')}/#/experiments/{experiment_id}"
    return (f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000   "
            f"# then open http://127.0.0.1:5000/#/experiments/{experiment_id}")


def print_outcome(summary: dict[str, Any], rows: Sequence[TrialRow], cfg: SweepConfig,
                  echo: Callable[[str], None]) -> None:
    """The best trials, the registered model, what MLflow missed and where to look."""
    best = summary["best_params"]
    echo("")
    echo(format_top_table(rows))
    echo("")
    echo(f"Best: trial {summary['best_trial']}, {best['penalty']} λ1={best['lambda1']:.4g} λ2={best['lambda2']:.4g}, "
         f"cv MSE {summary['best_cv_mse']:.6g} ± {summary['best_cv_mse_se'] or float('nan'):.3g}; "
         + (f"registered as {cfg.tracking.registered_model} v{summary['model_version']} (alias candidate)"
            if summary["model_version"] is not None else "model not registered yet (see below)"))
    if summary["trials_not_logged"] or summary["tracking_incomplete"]:
        what = summary["tracking_incomplete"] + (
            [f"child runs of trials {summary['trials_not_logged']}"] if summary["trials_not_logged"] else [])
        echo(f"WARNING: not logged to MLflow ({cfg.tracking.uri}): {'; '.join(what)}. The Optuna study holds "
             "every result: run `regsweep sync-tracking CONFIG` (same config) once the server is back.")
    echo(f"MLflow UI: {mlflow_ui_command(cfg.tracking.uri, summary.get('experiment_id') or '0')}")
