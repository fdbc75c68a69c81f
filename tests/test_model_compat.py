"""A model registered by the layout before the wings (``loader_module="pipeline.tracking"``) still loads
and predicts as it did.

``tests/fixtures/model_v0_1_layout`` is the MLflow model directory that the
code at commit 7fc6ecf wrote for ``pipeline.fit(diabetes, penalty="elasticnet",
lambda1=0.5, lambda2=0.1)`` (``age`` as an integer column), with the
predictions it gave for the first 20 rows. MLflow loads it through the
loader module named in its ``MLmodel``; the predictions must be the same, and
the coefficients must still be what scikit-learn finds for that objective.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "model_v0_1_layout"


def _diabetes_frame():
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True, as_frame=True, scaled=False)
    X["age"] = X["age"].astype("int64")
    return X, y


def test_a_model_directory_written_by_the_previous_layout_loads_and_predicts_identically() -> None:
    import mlflow

    assert "loader_module: pipeline.tracking" in (FIXTURE / "MLmodel").read_text()
    loaded = mlflow.pyfunc.load_model(str(FIXTURE))
    X, _ = _diabetes_frame()
    expected = json.loads((FIXTURE / "expected_predictions.json").read_text())["predictions"]
    # the same arithmetic on the same stored coefficients: equal up to the last bits of a dot product
    np.testing.assert_allclose(loaded.predict(X.head(20)), expected, rtol=1e-13, atol=0)


def test_the_stored_model_is_still_the_elastic_net_scikit_learn_finds() -> None:
    """An independent check of what the fixture holds: glmnet's objective at λ1 = 0.5, λ2 = 0.1 on
    standardized columns is scikit-learn's ElasticNet(alpha=0.6, l1_ratio=5/6) on the same scaling."""
    from sklearn.linear_model import ElasticNet

    from pipeline.model import FittedModel

    model = FittedModel.load(FIXTURE / "data" / "regsweep_model")
    X, y = _diabetes_frame()
    Xf = X.to_numpy(dtype=float)
    mean, scale = Xf.mean(axis=0), Xf.std(axis=0)
    ref = ElasticNet(alpha=0.6, l1_ratio=0.5 / 0.6, tol=1e-14, max_iter=1_000_000).fit((Xf - mean) / scale, y)
    # both solvers stop at a duality gap of ~1e-12 relative; coefficients of order 1-800 agree to 1e-6
    np.testing.assert_allclose(model.coef * scale, ref.coef_, rtol=1e-6, atol=1e-6)
