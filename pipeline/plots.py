"""The plots a sweep logs, each drawn from data a ``*_data`` function prepares (and tests check).

glmnet's ``plot.cv.glmnet`` and coefficient-path plots are the reference:

- ``cv_curve.png``: the cross-validated error along the dense path of the
  winning penalty, with ± 1 SE bars, the ``min`` and ``1se`` choices as
  labelled lines and the number of non-zero coefficients on the top axis;
- ``coefficient_path.png``: the standardized coefficients along the same path;
- ``validation_curve.png``: every trial's held-out (and training) error
  against its strength, one panel per penalty on a shared y-axis zoomed to the
  range around the best (points above it are marked on the top edge);
- ``optimization_history.png``: the trials in order, coloured by penalty;
- ``coefficients.png``: the registered model's standardized coefficients.

A sweep draws them in three parts, each as soon as its data exist (the plots are a fifth of a short sweep's
wall time, and drawing is CPU the driver otherwise leaves idle while it waits): the trials' plots
(:func:`write_trial_plots`) while the dense path runs, the path's (:func:`write_path_plots`) while the model is
refit and MLflow gets ready, and the model's coefficients (:func:`write_model_plot`) at the end.

Drawn with matplotlib's object API (no pyplot: no global figure state) on
fixed margins instead of ``tight_layout`` (which lays every label out twice),
and with plain log-axis labels (mathtext's parser costs 0.15 s the first time).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .model import FittedModel
from .report import TrialRow, count_text
from .selection import Choice, PathCurve, strength_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator

__all__ = [
    "MAX_BARS",
    "PENALTY_COLOURS",
    "coefficient_path_data",
    "cv_curve_data",
    "largest_in_magnitude",
    "preload_plotting",
    "validation_data",
    "write_model_plot",
    "write_path_plots",
    "write_trial_plots",
]

MAX_BARS = 40  # coefficients drawn as bars; beyond, the largest (500 labels are unreadable)
MAX_PATH_LINES = 30  # coefficient paths drawn; beyond, those largest at the weakest penalty
PENALTY_COLOURS = {"l1": "tab:blue", "elasticnet": "tab:purple", "l2": "tab:orange"}
# Titles at a fixed height (y given): matplotlib then skips placing them above the top axis's labels, which
# lays every tick label out once more; the pads of the plots with a top axis leave that room instead. PNG at
# zlib level 1 (files a tenth larger than at level 6). Together: a 100-trial sweep's five plots in 0.71 s
# instead of 0.78 s (median of 15 drawings, 2026-12-04).
_TITLE: dict[str, Any] = {"fontsize": 10, "y": 1.0}
_PNG = {"compress_level": 1}
_AXIS_LABEL = {"l1": "λ1", "l2": "λ2", "elasticnet": "λ1 + λ2"}
MINOR_TICK_DECADES = 3  # log axes spanning more decades have no minor ticks (:func:`_minor_log_locator`)
_ZOOM_SE = 6.0  # validation curves show the best error up to this many of its standard errors above it
_ZOOM_MIN_REL = 0.01  # ... and at least 1% above it


_preloading = False


def preload_plotting(*, lowered: bool = True) -> None:
    """Import matplotlib's Figure and Agg canvas in a background thread (0.3 s), while the caller waits; once
    per process.

    The sweep calls this when its driver waits: during a data pass that lasts,
    or else as its last trials run, so that the plots at the end of
    the sweep, on its critical path, does not pay the import (and the search,
    whose driver holds the GIL half its time, does not share it with the
    import). With ``lowered`` the thread runs at a lowered
    priority (the pass's worker processes come first; see
    :mod:`pipeline.background`); not when the workers are threads of this
    process, which would wait for the GIL of a thread the OS holds back. The
    import lock makes a concurrent first plot wait for the thread's
    import rather than repeat it.
    """
    import threading

    from .background import start_in_background

    global _preloading
    if _preloading:  # started once already (or imported): the import lock would make another thread only wait
        return
    _preloading = True

    def load() -> None:
        from .gc_pause import collector_paused

        with collector_paused():  # 0.36 → 0.24 s of CPU (median of 3, after the driver's imports)
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401

    if lowered:
        start_in_background(load, "regsweep-preload-matplotlib")
    else:
        threading.Thread(target=load, name="regsweep-preload-matplotlib", daemon=True).start()


def write_trial_plots(rows: Sequence[TrialRow], out: Path, metric: str = "mse") -> list[Path]:
    """``validation_curve.png`` and ``optimization_history.png``, which the trials alone decide (each only when
    a trial completed)."""
    from .metrics import metric_label

    label = metric_label(metric)
    paths = []
    data_v = validation_data(rows)
    if data_v["panels"]:
        paths.append(_validation_plot({**data_v, "label": label}, out / "validation_curve.png"))
    if any(r["state"] == "COMPLETE" for r in rows):
        paths.append(_history_plot(rows, out / "optimization_history.png", label))
    return paths


def write_path_plots(curve: PathCurve, choices: Mapping[str, Choice], coefficient_path: np.ndarray | None,
                     names: Sequence[str] | None, out: Path, *, selected: str = "min",
                     metric: str = "mse") -> list[Path]:
    """``cv_curve.png`` and (given the standardized coefficients along the path, one row per feature named in
    ``names``: ``x0``, ``x1``, … when None) ``coefficient_path.png``, which the dense path decides."""
    from .metrics import metric_label

    paths = [_cv_curve_plot({**cv_curve_data(curve, choices, selected), "label": metric_label(metric)},
                            out / "cv_curve.png")]
    if coefficient_path is not None:
        shown = list(names) if names else [f"x{j}" for j in range(coefficient_path.shape[0])]
        data = coefficient_path_data(curve, coefficient_path, shown, choices, selected)
        paths.append(_coefficient_path_plot(data, out / "coefficient_path.png"))
    return paths


def write_model_plot(model: FittedModel, out: Path) -> list[Path]:
    """``coefficients.png``: the model's standardized coefficients."""
    return [_coefficient_plot(model, out / "coefficients.png")]


# ------------------------------------------------------------------ data
def _choice_marks(curve: PathCurve, choices: Mapping[str, Choice], selected: str) -> list[dict[str, Any]]:
    marks = []
    for rule, c in choices.items():
        marks.append({"rule": rule, "x": strength_of(c.penalty, c.lambda1, c.lambda2),
                      "label": f"{rule}: {_AXIS_LABEL[c.penalty]}={_fmt(strength_of(c.penalty, c.lambda1, c.lambda2))}"
                               f", {count_text(c.n_nonzero)} non-zero" + (" (registered)" if rule == selected else ""),
                      "selected": rule == selected, "on_path": c.penalty == curve.penalty})
    return marks


def cv_curve_data(curve: PathCurve, choices: Mapping[str, Choice], selected: str = "min") -> dict[str, Any]:
    """What ``cv_curve.png`` shows: strengths, CV error ± SE, non-zeros, the two choices."""
    x = np.array(curve.strengths)
    order = np.argsort(x)
    return {"penalty": curve.penalty, "l1_share": curve.l1_share, "x": x[order],
            "cv": np.array(curve.cv_mse)[order], "se": np.array(curve.cv_mse_se)[order],
            "n_nonzero": np.array(curve.n_nonzero)[order], "marks": _choice_marks(curve, choices, selected),
            "multipliers": _path_multipliers(choices, selected)}


def _path_multipliers(choices: Mapping[str, Choice], selected: str) -> str:
    """``; mult_serum 0.7036 held`` when the path ran with searched group multipliers (the best trial's)."""
    c = choices.get(selected)
    mult = dict(c.multipliers) if c is not None else {}
    return ("; " + ", ".join(f"mult_{g} {v:.3g}" for g, v in mult.items()) + " held") if mult else ""


def coefficient_path_data(curve: PathCurve, coefs: np.ndarray, names: Sequence[str],
                          choices: Mapping[str, Choice], selected: str = "min") -> dict[str, Any]:
    """What ``coefficient_path.png`` shows: at most :data:`MAX_PATH_LINES` features (those largest at the
    weakest penalty, among those ever non-zero), their standardized coefficients along the path."""
    x = np.array(curve.strengths)
    order = np.argsort(x)
    coefs = np.asarray(coefs)[:, order]
    ever = np.flatnonzero(np.any(coefs != 0, axis=1))
    weakest = np.abs(coefs[ever, 0])
    shown = ever[np.argsort(-weakest, kind="stable")[:MAX_PATH_LINES]]
    return {"penalty": curve.penalty, "x": x[order], "coefs": coefs[shown], "names": [names[j] for j in shown],
            "n_nonzero": np.count_nonzero(coefs, axis=0), "marks": _choice_marks(curve, choices, selected),
            "n_features": len(names), "n_ever": int(ever.size), "multipliers": _path_multipliers(choices, selected)}


def validation_data(rows: Sequence[TrialRow]) -> dict[str, Any]:
    """What ``validation_curve.png`` shows: per penalty the trials' strengths and errors, and the shared
    y-range: from below the lowest error shown to the best CV error plus :data:`_ZOOM_SE` of its standard
    errors (at least 1% above it). Errors beyond the range are marked on its top edge."""
    done = [r for r in rows if r["state"] == "COMPLETE" and math.isfinite(r["cv_mse"])]
    panels = []
    for pen in ("l1", "elasticnet", "l2"):
        sel = [r for r in done if r["penalty"] == pen]
        if not sel:
            continue
        x = np.array([strength_of(pen, r["lambda1"], r["lambda2"]) for r in sel])
        order = np.argsort(x)
        panels.append({
            "penalty": pen, "x": x[order],
            "cv": np.array([r["cv_mse"] for r in sel])[order],
            "se": np.array([r["cv_mse_se"] for r in sel])[order],
            "train": np.array([r["train_mse"] for r in sel])[order],
            "share": np.array([r["lambda1"] / (r["lambda1"] + r["lambda2"]) if pen == "elasticnet" else 1.0
                               for r in sel])[order],
        })
    if not panels:
        return {"panels": [], "ylim": (0.0, 1.0)}
    best = min(done, key=lambda r: r["cv_mse"])
    se = best["cv_mse_se"] if math.isfinite(best["cv_mse_se"]) else 0.0
    top = best["cv_mse"] + max(_ZOOM_SE * se, _ZOOM_MIN_REL * abs(best["cv_mse"]))
    top = min(top, max(float(np.max(p["cv"])) for p in panels))
    shown = np.concatenate([np.concatenate([p["cv"], p["train"]]) for p in panels])
    shown = shown[np.isfinite(shown) & (shown <= top)]
    low = float(shown.min()) if shown.size else best["cv_mse"]
    pad = 0.05 * max(top - low, abs(top) * 1e-3)
    return {"panels": panels, "ylim": (low - pad, top + pad), "best": best["cv_mse"]}


def largest_in_magnitude(values: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` entries largest in absolute value, in increasing index order (all if fewer)."""
    if len(values) <= limit:
        return np.arange(len(values))
    return np.sort(np.argsort(-np.abs(values), kind="stable")[:limit])


# ------------------------------------------------------------------ drawing
def _cv_curve_plot(d: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.errorbar(d["x"], d["cv"], yerr=d["se"], fmt="o", ms=3, color="tab:red", ecolor="lightgrey", elinewidth=1,
                capsize=1.5, label=f"CV {d.get('label', 'MSE')} ± 1 SE")
    _marks(ax, d["marks"])
    ax.set_xscale("log")
    _plain_log_labels(ax.xaxis)
    what = d["penalty"] if d["penalty"] != "elasticnet" else f"elastic net (l1 share {d['l1_share']:.2f})"
    ax.set_xlabel(f"{_AXIS_LABEL[d['penalty']]}  (← less penalty · more penalty →)")
    ax.set_ylabel(f"cross-validated {d.get('label', 'MSE')}")
    _nonzero_axis(ax, d["x"], d["n_nonzero"])
    ax.set_title(f"{what}: dense path, {len(d['x'])} strengths{d.get('multipliers', '')}", **_TITLE, pad=34)
    ax.legend(fontsize=8, loc="upper left")
    _margins(fig, left=0.9, bottom=0.6, top=1.0)
    return _save(fig, path)


def _coefficient_path_plot(d: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    for name, line in zip(d["names"], d["coefs"]):
        ax.plot(d["x"], line, lw=1)
        ax.annotate(name, (d["x"][0], line[0]), xytext=(-3, 0), textcoords="offset points", ha="right",
                    va="center", fontsize=7)
    ax.axhline(0, color="black", lw=0.5)
    _marks(ax, d["marks"])
    ax.set_xscale("log")
    _plain_log_labels(ax.xaxis)
    span = d["x"][-1] / d["x"][0] if d["x"][0] > 0 else 10.0
    ax.set_xlim(d["x"][0] / span ** 0.12, d["x"][-1] * 1.05)  # room for the names on the left
    ax.set_xlabel(f"{_AXIS_LABEL[d['penalty']]}  (← less penalty · more penalty →)")
    ax.set_ylabel("coefficient × feature scale")
    _nonzero_axis(ax, d["x"], d["n_nonzero"])
    more = "" if d["n_ever"] <= len(d["names"]) else f"; {len(d['names'])} of {d['n_ever']} shown"
    ax.set_title(f"coefficient path ({d['n_ever']} of {d['n_features']} features ever non-zero{more})"
                 f"{d.get('multipliers', '')}", **_TITLE, pad=34)
    _margins(fig, left=0.9, bottom=0.6, top=1.0)
    return _save(fig, path)


def _validation_plot(d: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator

    panels = d["panels"]
    fig = Figure(figsize=(4.6 * len(panels) + 0.6, 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    low, top = d["ylim"]
    label = d.get("label", "MSE")
    for ax, p in zip(axes, panels):
        colour = PENALTY_COLOURS[p["penalty"]]
        inside = p["cv"] <= top
        if p["penalty"] == "elasticnet":  # two strengths: points coloured by the l1 share
            sc = ax.scatter(p["x"][inside], p["cv"][inside], c=p["share"][inside], cmap="viridis", vmin=0, vmax=1,
                            s=16, label=f"held-out {label} (colour: l1 share)")
            fig.colorbar(sc, ax=ax, pad=0.02, fraction=0.06).set_label("λ1 / (λ1 + λ2)", fontsize=8)
        else:
            ax.errorbar(p["x"][inside], p["cv"][inside], yerr=p["se"][inside], fmt="o", ms=3, color=colour,
                        ecolor="lightgrey", capsize=1.5, label=f"held-out {label} ± SE")
        train_in = p["train"] <= top
        ax.plot(p["x"][train_in], p["train"][train_in], "x", ms=4, color="grey", label=f"training {label}")
        if (~inside).any():
            ax.plot(p["x"][~inside], np.full(int((~inside).sum()), top), "^", ms=4, color=colour, alpha=0.5,
                    clip_on=False, label="beyond the range shown")
        ax.axhline(d["best"], color="black", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(numticks=5))
        ax.xaxis.set_minor_locator(_minor_log_locator(numticks=5))
        _plain_log_labels(ax.xaxis, minor=False)
        ax.set_ylim(low, top)
        ax.set_xlabel(f"{_AXIS_LABEL[p['penalty']]}  (← less penalty · more →)")
        ax.set_title(f"{p['penalty']}: {len(p['x'])} trials", **_TITLE)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel(f"{label}  (dotted: best CV {label})")
    _margins(fig, left=0.9, bottom=0.6, wspace=0.25)
    return _save(fig, path)


def _history_plot(rows: Sequence[TrialRow], path: Path, label: str = "MSE") -> Path:
    from matplotlib.figure import Figure

    done = sorted((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["number"])
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for pen, colour in PENALTY_COLOURS.items():
        mine = [r for r in done if r["penalty"] == pen]
        if mine:
            ax.plot([r["number"] for r in mine], [r["cv_mse"] for r in mine], "o", ms=3, alpha=0.7, color=colour,
                    label=pen)
    nums = np.array([r["number"] for r in done])
    vals = np.array([r["cv_mse"] for r in done])
    ax.step(nums, np.minimum.accumulate(vals), where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"cross-validated {label}")
    ax.set_yscale("log")
    _plain_log_labels(ax.yaxis)
    ax.set_title("optimisation history", **_TITLE)
    ax.legend(fontsize=8)
    _margins(fig, left=0.9, bottom=0.6)
    return _save(fig, path)


def _coefficient_plot(model: FittedModel, path: Path) -> Path:
    """Standardized coefficients of the model as bars, zeros in grey; the largest 40 if p > 40."""
    from matplotlib.figure import Figure

    names = list(model.feature_names or [f"x{j}" for j in range(model.n_features)])
    std_coef = model.coef * model.x_scale
    shown = largest_in_magnitude(std_coef, MAX_BARS)
    values = std_coef[shown]
    labels = [names[j] for j in shown]
    fig = Figure(figsize=(max(6, 0.35 * len(labels)), 4))
    ax = fig.subplots()
    at_limit = model.at_limit[shown]
    colors = ["tab:orange" if lim else ("tab:blue" if c != 0 else "lightgrey") for c, lim in zip(values, at_limit)]
    bars = ax.bar(range(len(labels)), values, color=colors)
    for bar, lim in zip(bars, at_limit):
        if lim:
            bar.set_hatch("//")
    if model.lower is not None and model.upper is not None:  # the finite limits of the shown features, as ticks
        for j, f in enumerate(shown):
            for limit in (model.lower[f], model.upper[f]):
                if np.isfinite(limit) and limit != 0:
                    ax.plot([j - 0.4, j + 0.4], [limit * model.x_scale[f]] * 2, color="tab:red", lw=1.2)
    unpenalized = model.penalty_factor is not None and bool(np.any(model.penalty_factor[shown] == 0))
    if model.penalty_factor is not None:  # unpenalized features: their names marked
        labels = [f"{n}°" if model.penalty_factor[f] == 0 else n for n, f in zip(labels, shown)]
    for j, c in enumerate(values):
        if c == 0:
            ax.text(j, 0, "0", ha="center", va="bottom", fontsize=7, color="grey")
    rotate = len(labels) > 12
    ax.set_xticks(range(len(labels)), labels, rotation=90 if rotate else 0, fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_ylabel("coefficient × feature scale")
    which = "dropped in grey" if len(shown) == len(names) else f"the {len(shown)} largest shown"
    notes = [("at a limit: hatched, limits in red" if np.any(at_limit) else "limits in red")
             if model.lower is not None else "", "° unpenalized" if unpenalized else ""]
    notes += [f"mult_{g} {v:.3g}" for g, v in (model.group_multipliers or {}).items()]
    second = "; ".join(n for n in notes if n)
    ax.set_title(f"registered model ({model.penalty}): {model.n_nonzero}/{len(names)} non-zero; {which}"
                 + (f"\n{second}" if second else ""), **_TITLE)
    longest = max((len(n) for n in labels), default=1)
    _margins(fig, left=0.8, bottom=0.3 + (0.075 * min(longest, 40) if rotate else 0.15))
    return _save(fig, path)


# ------------------------------------------------------------------ helpers
def _marks(ax: Axes, marks: Sequence[Mapping[str, Any]]) -> None:
    """The min and 1se choices as labelled vertical lines (the registered one solid)."""
    for m in marks:
        if not m["on_path"]:
            continue
        ax.axvline(m["x"], color="black", ls="-" if m["selected"] else ":", lw=1, label=m["label"])


def _nonzero_axis(ax: Axes, x: np.ndarray, n_nonzero: np.ndarray, ticks: int = 7) -> None:
    """The number of non-zero coefficients at a few strengths, on a top axis (as glmnet's plots)."""
    idx = np.unique(np.linspace(0, len(x) - 1, min(ticks, len(x))).round().astype(int))
    top = ax.secondary_xaxis("top")
    top.set_xscale("log")
    top.set_xticks(x[idx], [f"{n:.0f}" for n in n_nonzero[idx]], fontsize=8)
    top.set_xticks([], minor=True)
    top.set_xlabel("non-zero coefficients", fontsize=8)


def _plain_log_labels(axis: Axis, minor: bool = True) -> None:
    """Log-axis tick labels as plain numbers (0.001, 10), minor ones too on a short range: matplotlib's
    default 10ⁿ labels are mathtext, whose parser costs 0.15 s the first time."""
    from matplotlib.ticker import LogFormatter, NullFormatter

    axis.set_major_formatter(LogFormatter())
    axis.set_minor_locator(_minor_log_locator())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)) if minor
                             else NullFormatter())


def _minor_log_locator(numticks: int | None = None) -> LogLocator:
    """matplotlib's minor log ticks (2…9 × 10ⁿ), on an axis that spans at most :data:`MINOR_TICK_DECADES`
    decades only: on a longer one they help little to read it, and they were 190 of the 370 ticks of a
    sweep's five plots, a third of the drawing's work (each tick is three lines and two texts)."""
    return _short_range_minor_locator_class()(subs="auto", numticks=numticks)


@functools.cache
def _short_range_minor_locator_class() -> type[LogLocator]:
    from matplotlib.ticker import LogLocator

    class ShortRangeMinorLocator(LogLocator):
        def tick_values(self, vmin: float, vmax: float) -> Any:
            if vmin > 0 and vmax > 0 and abs(math.log10(vmax / vmin)) > MINOR_TICK_DECADES:
                return np.array([])
            return super().tick_values(vmin, vmax)

    return ShortRangeMinorLocator


def _margins(fig: Figure, *, left: float, bottom: float, top: float = 0.4, right: float = 0.2,
             wspace: float | None = None) -> None:
    """Fixed margins in inches (what ``tight_layout`` would find, without laying the text out)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=min(bottom / h, 0.6), top=1 - top / h,
                        wspace=wspace)


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110, pil_kwargs=_PNG)
    return path
