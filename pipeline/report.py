"""What the user reads: the trials table, the plots, the console summary."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .model import FittedModel

if TYPE_CHECKING:
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

__all__ = [
    "TrialRow", "format_top_table", "largest_in_magnitude", "preload_plotting", "write_plots",
    "write_trials_csv",
]

TrialRow = dict[str, Any]  # number, state, penalty, lambda1, lambda2, cv_mse, cv_mse_se, train_mse, cv_r2, n_nonzero


def write_trials_csv(rows: Sequence[TrialRow], path: Path) -> Path:
    fields = ["number", "state", "penalty", "lambda1", "lambda2", "cv_mse", "cv_mse_se",
              "train_mse", "cv_r2", "n_nonzero", "fold_mse"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def format_top_table(rows: Sequence[TrialRow], top: int = 10) -> str:
    """A plain-text table of the best complete trials."""
    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["cv_mse"])[:top]
    head = f"{'rank':>4} {'trial':>5}  {'penalty':<10} {'lambda1':>10} {'lambda2':>10} {'cv_mse':>12} {'± se':>10} {'train_mse':>12} {'nnz':>6}"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(done, 1):
        lines.append(
            f"{i:>4} {r['number']:>5}  {r['penalty']:<10} {_g(r['lambda1']):>10} {_g(r['lambda2']):>10} "
            f"{r['cv_mse']:>12.6g} {_g(r['cv_mse_se']):>10} {r['train_mse']:>12.6g} {r['n_nonzero']:>6.1f}"
        )
    return "\n".join(lines)


def preload_plotting() -> None:
    """Import matplotlib's Figure and Agg canvas in a background thread (0.3 s), while the caller waits.

    The sweep calls this when its driver starts waiting for the data pass, so
    that :func:`write_plots` at the end of the sweep, on its critical path,
    does not pay the import. The import lock makes a concurrent
    :func:`write_plots` wait for the thread's import rather than repeat it.
    """
    import threading

    def load() -> None:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401

    threading.Thread(target=load, name="regsweep-preload-matplotlib", daemon=True).start()


def _g(v: float) -> str:
    return "-" if not v or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def write_plots(rows: Sequence[TrialRow], model: FittedModel, out: Path) -> list[Path]:
    """Validation curves per penalty, best coefficients, optimisation history (PNG).

    Drawn with matplotlib's object API (no pyplot: no global figure state, and
    its import is skipped) on fixed margins instead of ``tight_layout``, which
    lays every tick label out twice: 1.3 s → 0.5 s for the three plots of a
    100-trial sweep at p = 100; drawing at most 40 coefficients then took it
    to 0.45 s, and keeps the coefficient plot readable at any p.
    """
    from matplotlib.figure import Figure

    done = [r for r in rows if r["state"] == "COMPLETE"]
    paths = []

    penalties = [p for p in ("l1", "elasticnet", "l2") if any(r["penalty"] == p for r in done)]
    if penalties:
        fig = Figure(figsize=(5 * len(penalties), 4))
        axes = fig.subplots(1, len(penalties), squeeze=False)
        for ax, pen in zip(axes[0], penalties):
            sel = [r for r in done if r["penalty"] == pen]
            lam = np.array([_strength(r) for r in sel])
            order = np.argsort(lam)
            cv = np.array([r["cv_mse"] for r in sel])[order]
            se = np.array([r["cv_mse_se"] for r in sel])[order]
            tr = np.array([r["train_mse"] for r in sel])[order]
            if pen == "elasticnet":  # two strengths: points coloured by the l1 share, not a line
                share = np.array([r["lambda1"] / (r["lambda1"] + r["lambda2"]) for r in sel])[order]
                sc = ax.scatter(lam[order], cv, c=share, cmap="viridis", vmin=0, vmax=1, s=14,
                                label="held-out MSE")
                ax.scatter(lam[order], tr, c=share, cmap="viridis", vmin=0, vmax=1, s=14, marker="x",
                           label="training MSE")
                fig.colorbar(sc, ax=ax, label="λ1 / (λ1 + λ2)")
            else:
                ax.errorbar(lam[order], cv, yerr=se, fmt="o-", ms=3, lw=1, capsize=2, label="held-out MSE (± se)")
                ax.plot(lam[order], tr, "s--", ms=3, lw=1, label="training MSE")
            best = int(np.argmin(cv))
            ax.axvline(lam[order][best], color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            _plain_log_labels(ax.xaxis)
            xlabel = {"l1": "λ1", "l2": "λ2", "elasticnet": "λ1 + λ2"}[pen]
            ax.set_xlabel(f"{xlabel}  (← overfits · underfits →)")
            ax.set_ylabel("MSE")
            ax.set_title(f"{pen}: validation curve")
            ax.legend(fontsize=8)
        _margins(fig, left=0.8, bottom=0.6, wspace=0.35)
        paths.append(_save(fig, out / "validation_curve.png"))

    paths.append(_coefficient_plot(model, out / "coefficients.png"))

    if done:
        nums = np.array([r["number"] for r in done])
        vals = np.array([r["cv_mse"] for r in done])
        order = np.argsort(nums)
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot(nums[order], vals[order], "o", ms=3, alpha=0.6, label="trial")
        ax.plot(nums[order], np.minimum.accumulate(vals[order]), "-", color="tab:red", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("cross-validated MSE")
        ax.set_yscale("log")
        _plain_log_labels(ax.yaxis)
        ax.set_title("optimisation history")
        ax.legend()
        _margins(fig, left=0.9, bottom=0.6)
        paths.append(_save(fig, out / "optimization_history.png"))
    return paths


_MAX_BARS = 40  # coefficients drawn; beyond, the largest (a bar chart of 500 labels is unreadable)


def _coefficient_plot(model: FittedModel, path: Path) -> Path:
    """Standardized coefficients of the best model as bars, zeros in grey; the largest 40 if p > 40.

    Coefficients × feature scale are comparable across features. At large p
    only the :data:`_MAX_BARS` largest in magnitude are drawn (in feature
    order): every label is a text artist to lay out and render (0.19 s for
    100 bars), and the model itself holds them all.
    """
    from matplotlib.figure import Figure

    names = list(model.feature_names or [f"x{j}" for j in range(model.n_features)])
    std_coef = model.coef * model.x_scale
    shown = largest_in_magnitude(std_coef, _MAX_BARS)
    values = std_coef[shown]
    labels = [names[j] for j in shown]
    fig = Figure(figsize=(max(6, 0.35 * len(labels)), 4))
    ax = fig.subplots()
    ax.bar(range(len(labels)), values, color=["tab:blue" if c != 0 else "lightgrey" for c in values])
    for j, c in enumerate(values):
        if c == 0:
            ax.text(j, 0, "0", ha="center", va="bottom", fontsize=7, color="grey")
    rotate = len(labels) > 12
    ax.set_xticks(range(len(labels)), labels, rotation=90 if rotate else 0, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("coefficient × feature scale")
    which = "dropped in grey" if len(shown) == len(names) else f"the {len(shown)} largest shown"
    ax.set_title(f"best model ({model.penalty}): {model.n_nonzero}/{len(names)} non-zero; {which}")
    longest = max((len(n) for n in labels), default=1)
    _margins(fig, left=0.8, bottom=0.3 + (0.075 * min(longest, 40) if rotate else 0.15))
    return _save(fig, path)


def largest_in_magnitude(values: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` entries largest in absolute value, in increasing index order (all if fewer)."""
    if len(values) <= limit:
        return np.arange(len(values))
    return np.sort(np.argsort(-np.abs(values), kind="stable")[:limit])


def _plain_log_labels(axis: Axis) -> None:
    """Log-axis tick labels as plain numbers (0.001, 10), minor ones too on a short range, as by
    default: matplotlib's default 10ⁿ labels are mathtext, whose parser costs 0.15 s the first time."""
    from matplotlib.ticker import LogFormatter

    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _margins(fig: Figure, *, left: float, bottom: float, top: float = 0.4, right: float = 0.2,
             wspace: float | None = None) -> None:
    """Fixed margins in inches (what ``tight_layout`` would find, without laying the text out)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=min(bottom / h, 0.6),
                        top=1 - top / h, wspace=wspace)


def _strength(r: TrialRow) -> float:
    return {"l1": r["lambda1"], "l2": r["lambda2"]}.get(r["penalty"], r["lambda1"] + r["lambda2"])


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path
