"""The plots a sweep logs: at large p, the coefficient plot shows the largest coefficients only."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.model import FittedModel
from pipeline.report import _MAX_BARS, largest_in_magnitude, write_plots


def test_largest_in_magnitude_keeps_the_largest_in_feature_order() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=200) * (rng.random(200) < 0.4)  # many exact zeros, signs mixed
    kept = largest_in_magnitude(values, 40)
    assert len(kept) == 40 and np.all(np.diff(kept) > 0)
    dropped = np.setdiff1d(np.arange(200), kept)
    assert np.abs(values[kept]).min() >= np.abs(values[dropped]).max()
    np.testing.assert_array_equal(largest_in_magnitude(values[:30], 40), np.arange(30))


def test_the_coefficient_plot_stays_readable_at_p_500(tmp_path) -> None:
    p = 500
    coef = np.zeros(p)
    coef[[3, 77, 400]] = [2.0, -5.0, 0.5]
    model = FittedModel(coef, 0.0, "l1", 0.1, 0.0, True, True, np.zeros(p), np.ones(p))
    rows = [{"number": i, "state": "COMPLETE", "penalty": "l1", "lambda1": 10.0 ** -i, "lambda2": 0.0,
             "cv_mse": 1.0 + i, "cv_mse_se": 0.1, "train_mse": 0.9 + i} for i in range(4)]
    paths = {path.name: path for path in write_plots(rows, model, tmp_path)}
    width, _ = Image.open(paths["coefficients.png"]).size
    assert width <= 0.35 * _MAX_BARS * 110 + 1  # 40 bars at 0.35 in and 110 dpi, not 500
