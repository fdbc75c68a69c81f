"""``pipeline.fit(family=...)``: targets, offsets, the model's predictions and its file, and one-line errors.

The solver's exactness is tested in tests/solvers/test_glm.py; here the API around it: that the fitted model
is the reference's (scikit-learn's LogisticRegression on standardized columns, to 1e-5 of the largest
coefficient), that it predicts the family's mean, and that what it saves predicts identically.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression

import pipeline
from pipeline.errors import DataError
from pipeline.model import FittedModel

BC = load_breast_cancer(as_frame=True)
BC_X, BC_LABELS = BC.data, np.where(BC.target == 1, "benign", "malignant")
DB_X, DB_Y = load_diabetes(return_X_y=True)


def test_binomial_text_labels_default_positive_class_and_probabilities() -> None:
    model = pipeline.fit(BC_X, BC_LABELS, family="binomial", lambda1=0.004, lambda2=0.002)
    assert (model.positive_class, model.negative_class) == ("malignant", "benign")  # classes_[1] in sorted order
    s = BC_X.std(axis=0, ddof=0).to_numpy()
    lam = 0.006
    ref = LogisticRegression(C=1.0 / (lam * len(BC_X)), l1_ratio=0.004 / lam, solver="saga", tol=1e-12,
                             max_iter=100_000)
    Z = (BC_X - BC_X.mean()) / s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(Z, BC_LABELS)
    assert list(ref.classes_) == ["benign", "malignant"]
    np.testing.assert_allclose(model.coef * s, ref.coef_[0], atol=1e-5 * np.abs(ref.coef_[0]).max())
    proba = model.predict(BC_X)
    np.testing.assert_allclose(proba, ref.predict_proba(Z)[:, 1], atol=1e-6)
    assert model.prediction_name == "probability_malignant"


def test_positive_class_and_booleans() -> None:
    flipped = pipeline.fit(BC_X, BC_LABELS, family="binomial", lambda1=0.01, positive_class="benign")
    default = pipeline.fit(BC_X, BC_LABELS, family="binomial", lambda1=0.01)
    np.testing.assert_allclose(flipped.coef, -default.coef, atol=1e-9)  # the logit's symmetry
    boolean = pipeline.fit(BC_X, BC_LABELS == "malignant", family="binomial", lambda1=0.01)
    assert boolean.positive_class is True
    np.testing.assert_allclose(boolean.coef, default.coef, atol=1e-12)
    for written, positive in (("TRUE", True), ("false", False), ("True", True)):  # as a CSV of TRUE/FALSE says it
        named = pipeline.fit(BC_X, BC_LABELS == "malignant", family="binomial", lambda1=0.01, positive_class=written)
        assert named.positive_class is positive
        np.testing.assert_allclose(named.coef, default.coef if positive else -default.coef, atol=1e-9)


def test_poisson_offset_and_exposure_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(3)
    exposure = rng.uniform(0.5, 3.0, len(DB_Y))
    frame = pd.DataFrame(DB_X, columns=[f"x{j}" for j in range(DB_X.shape[1])])
    model = pipeline.fit(frame, DB_Y, family="poisson", offset=np.log(exposure), lambda1=0.2)
    eta = frame.to_numpy() @ model.coef + model.intercept + np.log(exposure)
    np.testing.assert_allclose(model.predict(frame, offset=np.log(exposure)), np.exp(eta), rtol=1e-12)
    saved = FittedModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(saved.predict(frame, offset=np.log(exposure)), model.predict(frame, offset=np.log(exposure)))
    assert saved.family == "poisson" and saved.offset_kind == "offset"
    with pytest.raises(DataError, match="fitted with an offset; pass `offset=`"):
        model.predict(frame)
    # a frame's offset column by name (the pyfunc model reads it so), an exposure column by its log
    by_column = FittedModel(**{**model.__dict__, "offset_kind": "exposure", "offset_column": "exposure"})
    np.testing.assert_allclose(by_column.predict(frame.assign(exposure=exposure)), np.exp(eta), rtol=1e-12)
    with pytest.raises(DataError, match="must be positive"):
        by_column.predict(frame.assign(exposure=np.where(np.arange(len(frame)) == 3, 0.0, exposure)))


@pytest.mark.parametrize("family,y,kwargs,match", [
    ("binomial", np.arange(len(DB_Y)) % 3, {}, "two classes, but `y` has 3 .* with family gaussian"),
    ("binomial", np.array(["a", "b", "c"])[np.arange(len(DB_Y)) % 3], {},
     "two classes, but `y` has 3 .* one label against the rest .* no multinomial"),  # gaussian refuses text
    ("binomial", np.ones(len(DB_Y)), {}, "two classes, but `y` has 1"),
    ("binomial", np.arange(len(DB_Y)) % 2, {"positive_class": "yes"}, "not a label of `y`"),
    ("poisson", DB_Y - 100, {}, "non-negative counts"),
    ("poisson", np.zeros(len(DB_Y)), {}, "every count on the training rows is 0"),
    ("gaussian", DB_Y, {"offset": np.zeros(len(DB_Y))}, "apply to the binomial and poisson"),
    ("gamma", DB_Y, {}, "must be one of"),
])
def test_bad_targets_are_one_line_errors(family: str, y: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        pipeline.fit(DB_X, y, family=family, lambda1=0.1, **kwargs)
    assert "\n" not in str(info.value)


def test_gaussian_models_save_no_family_and_load_as_before(tmp_path) -> None:
    model = pipeline.fit(DB_X, DB_Y, lambda1=0.1)
    path = model.save(tmp_path / "g")
    assert "family" not in (path / "model.json").read_text()
    assert FittedModel.load(path).family == "gaussian"
