"""The plots and tables a sweep logs, checked on the data each one draws (and the PNGs they make).

Each plot is drawn from a ``*_data`` function; the tests check that data
against its definition: glmnet's CV curve with the min and 1-SE marks on the
path, a coefficient path that is the fit on all rows, validation curves on one
y-range around the best, and a coefficient table that reproduces the model.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from pipeline.cv.passes import BlockPass, finish_pass
from pipeline.cv.path import PathSpec, coefficient_path
from pipeline.config import ModelConfig
from pipeline.folds import block_fold_stats, kfold_folds
from pipeline.model import FittedModel
from pipeline.plots import (MAX_BARS, MINOR_TICK_DECADES, coefficient_path_data, cv_curve_data, largest_in_magnitude,
                            validation_data, write_model_plot, write_path_plots, write_trial_plots)
from pipeline.report import write_coefficients_csv
from pipeline.selection import Choice, PathCurve, path_strengths


def test_largest_in_magnitude_keeps_the_largest_in_feature_order() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=200) * (rng.random(200) < 0.4)  # many exact zeros, signs mixed
    kept = largest_in_magnitude(values, 40)
    assert len(kept) == 40 and np.all(np.diff(kept) > 0)
    dropped = np.setdiff1d(np.arange(200), kept)
    assert np.abs(values[kept]).min() >= np.abs(values[dropped]).max()
    np.testing.assert_array_equal(largest_in_magnitude(values[:30], 40), np.arange(30))


def _rows():
    out = []
    for i, (pen, l1, l2, cv) in enumerate([("l1", 0.1, 0.0, 1.0), ("l1", 1.0, 0.0, 1.3), ("l1", 30.0, 0.0, 9.0),
                                          ("l2", 0.0, 0.5, 1.1), ("l2", 0.0, 100.0, 7.5),
                                          ("elasticnet", 0.2, 0.2, 1.05)]):
        out.append({"number": i, "state": "COMPLETE", "penalty": pen, "lambda1": l1, "lambda2": l2, "cv_mse": cv,
                    "cv_mse_se": 0.05, "train_mse": 0.9 * cv, "cv_r2": 0.5, "n_nonzero": 3})
    return out + [{"number": 6, "state": "FAIL", "penalty": "l1", "lambda1": 0.5, "lambda2": 0.0,
                   "cv_mse": float("nan"), "cv_mse_se": float("nan"), "train_mse": float("nan")}]


def test_the_validation_curves_share_one_range_zoomed_on_the_best() -> None:
    data = validation_data(_rows())
    assert [p["penalty"] for p in data["panels"]] == ["l1", "elasticnet", "l2"]  # failed trials left out
    low, top = data["ylim"]
    # best 1.0 ± 0.05: the range reaches 6 SE above it (1.3), so 9.0 and 7.5 are marked on the top edge
    assert top == pytest.approx(1.3 + 0.05 * (1.3 - 0.9), rel=1e-12)
    assert low < 0.9 and low > 0.8  # the lowest training error shown (0.9) with a margin
    l1 = data["panels"][0]
    np.testing.assert_array_equal(l1["x"], [0.1, 1.0, 30.0])  # sorted by strength
    assert (l1["cv"] > top - 0.05 * 0.4).tolist() == [False, False, True]


def _curve_and_choices():
    strengths = path_strengths(10.0, 0.01, include=0.2, n=20)
    cv = [1.0 + 0.1 * abs(np.log10(s) - np.log10(0.2)) for s in strengths]
    curve = PathCurve("l1", 1.0, strengths, tuple(cv), (0.05,) * len(cv), (0.5,) * len(cv),
                      tuple(0.9 * c for c in cv), tuple(float(i % 5) for i in range(len(cv))))
    choices = {"min": Choice("min", "l1", 0.2, 0.0, 1.0, 0.05, 0.5, 4.0, 3),
               "1se": Choice("1se", "l1", 0.6, 0.0, 1.04, 0.05, 0.5, 2.0)}
    return curve, choices


def test_the_cv_curve_marks_the_min_and_1se_choices_on_the_path() -> None:
    curve, choices = _curve_and_choices()
    data = cv_curve_data(curve, choices, "1se")
    assert np.all(np.diff(data["x"]) > 0) and len(data["x"]) == 21  # 20 grid points + the winning trial
    i = int(np.argmin(data["cv"]))
    assert data["x"][i] == 0.2  # the minimum of the curve is the trial's strength
    marks = {m["rule"]: m for m in data["marks"]}
    assert (marks["min"]["x"], marks["1se"]["x"]) == (0.2, 0.6)
    assert marks["1se"]["selected"] and "(registered)" in marks["1se"]["label"] and not marks["min"]["selected"]
    assert "4 non-zero" in marks["min"]["label"]


def test_the_coefficient_path_is_the_fit_on_all_rows_along_the_path(diabetes) -> None:
    X, y = diabetes
    passes = finish_pass(BlockPass(tuple(block_fold_stats(X, y, None, kfold_folds(0, len(y), 5, 0), 5)), 1), 5, 0)
    spec = PathSpec("l1", 1.0, path_strengths(40.0, 0.05, include=1.0, n=8))
    coefs = coefficient_path(passes, spec, ModelConfig())
    from sklearn.linear_model import Lasso

    mean, scale = X.mean(axis=0), X.std(axis=0)
    for i in (0, 4, 8):
        ref = Lasso(alpha=spec.strengths[i], tol=1e-12, max_iter=1_000_000).fit((X - mean) / scale, y)
        np.testing.assert_allclose(coefs[:, i], ref.coef_, rtol=1e-6, atol=1e-6)  # standardized scale
    curve = PathCurve("l1", 1.0, spec.strengths, *(((1.0,) * 9,) * 4), tuple(float(n) for n in
                                                                              np.count_nonzero(coefs, axis=0)))
    names = [f"f{j}" for j in range(10)]
    data = coefficient_path_data(curve, coefs, names, {}, "min")
    assert np.all(np.diff(data["x"]) > 0)
    np.testing.assert_array_equal(data["n_nonzero"], np.count_nonzero(coefs, axis=0)[::-1])
    weakest = np.abs(coefs[:, -1])  # the last strength of the path (largest first) is the weakest
    assert data["names"][0] == names[int(np.argmax(weakest))]


def test_the_coefficient_table_reproduces_the_model(tmp_path) -> None:
    model = FittedModel(np.array([2.0, 0.0, -0.5]), 1.25, "l1", 0.1, 0.0, True, True, np.zeros(3),
                        np.array([3.0, 1.0, 0.5]), ("a", "b", "c"))
    with open(write_coefficients_csv(model, tmp_path / "coefficients.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["a", "b", "c", "(intercept)"]
    np.testing.assert_array_equal([float(r["coef"]) for r in rows[:3]], model.coef)
    np.testing.assert_array_equal([float(r["coef_standardized"]) for r in rows[:3]], model.coef * model.x_scale)
    assert float(rows[3]["coef"]) == model.intercept


def test_every_plot_is_drawn_and_the_coefficient_plot_stays_readable_at_p_500(tmp_path) -> None:
    p = 500
    coef = np.zeros(p)
    coef[[3, 77, 400]] = [2.0, -5.0, 0.5]
    model = FittedModel(coef, 0.0, "l1", 0.1, 0.0, True, True, np.zeros(p), np.ones(p))
    curve, choices = _curve_and_choices()
    coefs = np.zeros((p, len(curve.strengths)))
    coefs[:40] = np.linspace(0, 1, len(curve.strengths))
    drawn = [*write_trial_plots(_rows(), tmp_path), *write_path_plots(curve, choices, coefs, None, tmp_path),
             *write_model_plot(model, tmp_path)]
    paths = {path.name: path for path in drawn}
    assert set(paths) == {"cv_curve.png", "coefficient_path.png", "validation_curve.png", "coefficients.png",
                          "optimization_history.png"}
    width, _ = Image.open(paths["coefficients.png"]).size
    assert width <= 0.35 * MAX_BARS * 110 + 1  # 40 bars at 0.35 in and 110 dpi, not 500


def test_each_part_of_the_plots_writes_its_own_files_only(tmp_path) -> None:
    """A sweep draws the plots in three parts, one thread after another, each once its data exist (the trials',
    the dense path's, the refit model's; pipeline.sweep): together they are every plot, and no file is written
    by two parts. A study whose trials all failed has no trial plots; a path without coefficients no
    coefficient path."""
    model = FittedModel(np.array([1.5, 0.0, -0.25, 0.75]), 0.5, "l1", 0.1, 0.0, True, True, np.zeros(4),
                        np.array([2.0, 1.0, 0.5, 1.0]), ("age", "bmi", "bp", "s1"))
    curve, choices = _curve_and_choices()
    coefs = np.outer([1.0, -0.5, 0.25, 2.0], np.linspace(0, 1, len(curve.strengths)))
    parts = [write_trial_plots(_rows(), tmp_path, "mse"),
             write_path_plots(curve, choices, coefs, model.feature_names, tmp_path, metric="mse"),
             write_model_plot(model, tmp_path)]
    assert [sorted(p.name for p in part) for part in parts] == [
        ["optimization_history.png", "validation_curve.png"], ["coefficient_path.png", "cv_curve.png"],
        ["coefficients.png"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for part in parts for p in part)
    for path in (p for part in parts for p in part):
        assert Image.open(path).size[0] > 300, path.name  # a drawn PNG
    failed = [{**r, "state": "FAIL"} for r in _rows()]
    assert write_trial_plots(failed, tmp_path / "none") == []
    assert [p.name for p in write_path_plots(curve, choices, None, None, tmp_path)] == ["cv_curve.png"]


def test_log_axes_have_minor_ticks_on_short_ranges_only(tmp_path) -> None:
    """The plots' log axes: minor ticks (2…9 × 10ⁿ) where they help to read a value (a few decades), none on
    a long range, where they cost a third of the drawing."""
    from matplotlib.figure import Figure

    from pipeline.plots import _plain_log_labels

    def minor_ticks(low: float, high: float) -> np.ndarray:
        fig = Figure()
        ax = fig.subplots()
        ax.set_xscale("log")
        _plain_log_labels(ax.xaxis)
        ax.set_xlim(low, high)
        locs = ax.xaxis.get_minorticklocs()
        return locs[(locs >= low) & (locs <= high)]  # the locator places a decade more on each side

    np.testing.assert_allclose(minor_ticks(0.1, 10.0), [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 2, 3, 4, 5, 6, 7, 8, 9])
    assert len(minor_ticks(1.0, 10.0 ** MINOR_TICK_DECADES)) == 8 * MINOR_TICK_DECADES
    assert len(minor_ticks(1e-6, 10.0)) == 0


def test_counts_of_non_zero_coefficients_read_as_numbers_on_wide_data() -> None:
    """Fold means of non-zero counts: small ones keep their fraction, large ones are whole and grouped."""
    from pipeline.report import count_text

    assert [count_text(x) for x in (0.0, 9.4, 78.8, 99.96, 4833.2, 20000.0)] == \
        ["0", "9.4", "78.8", "100", "4,833", "20,000"]


def test_a_fold_that_swamps_the_others_is_noted():
    """A Poisson sweep of a public table (diamonds, data errors in its x/y/z columns) had one fold's held-out
    deviance at 1e16–1e21 in most trials, against ~100 for the others: the CV mean, and so the choice, followed
    that fold without a word. Noted when one fold is over 100× the others' median in at least half the trials."""
    from pipeline.report import dominant_fold_notes

    def row(*folds: float, state: str = "COMPLETE") -> dict:
        return {"state": state, "fold_mse": " ".join(f"{v:.10g}" for v in folds)}

    swamped = [row(90, 2e19, 118, 150, 82), row(95, 4e6, 120, 148, 80), row(2100, 2150, 2130, 2140, 2135),
               row(96, 7e8, 119, 151, 83), row(1, 2, 3, state="FAIL")]
    (note,) = dominant_fold_notes(swamped, "CV poisson deviance")
    assert note.startswith("fold 1's held-out poisson deviance is over 100× the other folds' median in 3 of 4 "
                           "trials (up to 1.92e+17×)")  # 2e19 / median(90, 118, 150, 82) = 2e19 / 104
    assert dominant_fold_notes([row(90, 8000, 118, 150, 82)] * 3, "CV MSE") == []  # 67× the median: not noted
    assert dominant_fold_notes(swamped[1:3] + [swamped[2]] * 2, "CV MSE") == []  # 1 trial of 4: not noted
    # such a fold puts a penalty's best 3.6e13 SEs from the best: the terminal's column stays readable
    from pipeline.report import se_distance

    assert (se_distance(0.0634), se_distance(999.4), se_distance(36329254841522.47)) == (
        "+0.06 SE", "+999.40 SE", "+3.63e+13 SE")


def test_a_selected_model_that_explains_nothing_or_sits_at_the_strong_end_gets_notes() -> None:
    """The probe's 24-row binomial table: the path's min choice at the top of search.lambda2 with a CV deviance
    explained of −0.102 printed no note (the best-trial note looked at the best trial, λ2 = 1.853)."""
    from pipeline.report import selection_notes

    space = {"penalties": ["l2"], "lambda1": [1e-4, 10.0], "lambda2": [1e-5, 5.832]}
    bad = Choice("min", "l2", 0.0, 5.832, 1.2, 0.1, -0.102, 3.0).summary()
    notes = selection_notes({k: v for k, v in bad.items() if k != "cv_r2"} | {"cv_deviance_explained": -0.102},
                            space, "binomial_deviance")
    assert notes == [
        "the selected model's CV deviance explained is -0.102: it predicts the held-out rows worse than their own "
        "mean, as a model without a useful feature does: none helps at the strengths searched; check data.target "
        "and the features (and whether the rows are too few for the folds).",
        "the selected model (min: λ2 = 5.832) sits at the strong end of the searched range (search.lambda2 up to "
        "5.832): stronger penalties were not searched; raise search.lambda2.high to look further."]
    # an elastic net well inside the range that explains something: nothing to say; a lasso's λ2 is not looked at
    good = Choice("1se", "elasticnet", 0.01, 0.001, 3000.0, 20.0, 0.45, 8.0).summary()
    assert selection_notes(good, space, "mse") == []
    lasso = Choice("min", "l1", 9.9, 5.832, 3000.0, 20.0, 0.01, 1.0).summary()
    assert selection_notes(lasso, space, "mse") == [
        "the selected model (min: λ1 = 9.9) sits at the strong end of the searched range (search.lambda1 up to 10): "
        "stronger penalties were not searched; raise search.lambda1.high to look further."]
