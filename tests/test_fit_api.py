"""The public one-fit API: names, prediction, persistence without pickle, bad input."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_allclose

import pipeline
from pipeline.errors import DataError, DataTypeError, RegsweepError


def test_public_names():
    assert callable(pipeline.fit)
    assert pipeline.FittedModel.__name__ == "FittedModel"


def test_predict_is_coef_dot_x_plus_intercept(diabetes):
    X, y = diabetes
    m = pipeline.fit(X, y, penalty="l1", lambda1=1.0)
    assert m.coef.shape == (10,)
    assert isinstance(m.intercept, float)
    assert_allclose(m.predict(X), X @ m.coef + m.intercept, rtol=1e-14)
    assert m.n_nonzero == np.count_nonzero(m.coef)
    assert 0 < m.n_nonzero < 10


def test_save_load_roundtrip_is_plain_data(tmp_path, diabetes):
    X, y = diabetes
    names = [f"f{i}" for i in range(10)]
    m = pipeline.fit(X, y, penalty="elasticnet", lambda1=0.5, lambda2=0.2, feature_names=names)
    m.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["arrays.npz", "model.json"]
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["penalty"] == "elasticnet" and meta["feature_names"] == names
    with zipfile.ZipFile(tmp_path / "model" / "arrays.npz") as z:  # npy entries only, no pickled objects
        assert sorted(z.namelist()) == ["coef.npy", "x_mean.npy", "x_scale.npy"]
    loaded = pipeline.FittedModel.load(tmp_path / "model")
    assert_allclose(loaded.coef, m.coef, rtol=0, atol=0)
    assert loaded.intercept == m.intercept
    assert loaded.feature_names == tuple(names)
    assert_allclose(loaded.predict(X), m.predict(X), rtol=0, atol=0)


@pytest.mark.parametrize("penalty", [{"penalty": "l1", "lambda1": 0.1}, {"penalty": "l2", "lambda2": 0.1},
                                     {"penalty": "elasticnet", "lambda1": 0.1, "lambda2": 0.1}])
def test_a_constant_target_fits_its_mean_and_saves(tmp_path, penalty):
    """The minimiser for y = c is β = 0, intercept c (closed form); its solve's flags reached the model's JSON as
    NumPy booleans, and saving it failed."""
    m = pipeline.fit(_X(), np.full(20, 5.0), **penalty)
    assert_allclose(m.coef, 0.0, atol=0) and m.intercept == 5.0
    loaded = pipeline.FittedModel.load(m.save(tmp_path / "model"))
    assert json.loads((tmp_path / "model" / "model.json").read_text())["converged"] is True
    assert_allclose(loaded.predict(_X()), 5.0, rtol=0, atol=0)


def test_predict_reads_pandas_nullable_columns_and_refuses_their_gaps(diabetes):
    """Int64 / boolean / Arrow columns hold pd.NA (and MLflow's input check passes them on as object columns):
    their numbers predict as the float frame's (np.asarray(frame, float) raised TypeError), and a gap is an
    error naming its feature, as for a float NaN, an inf and a sparse NaN, and as a text-column model's is
    (a NaN prediction was returned before, to be scored or served as if it were a number)."""
    import pandas as pd
    import scipy.sparse as sp

    X, y = diabetes
    names = [f"f{i}" for i in range(10)]
    m = pipeline.fit(X, y, penalty="l2", lambda2=0.1, feature_names=names)
    frame = pd.DataFrame(np.round(X[:6] * 1000), columns=names)
    expected = m.predict(frame.to_numpy())
    nullable = frame.astype({"f0": "Int64", "f1": "Float64"})
    as_object = frame.astype({"f1": object})
    for df in (nullable, as_object, frame.convert_dtypes(dtype_backend="pyarrow")):
        assert_allclose(m.predict(df), expected, rtol=1e-15)
    nullable.loc[2, "f0"] = pd.NA
    as_object.loc[4, "f1"] = pd.NA
    with_inf = frame.to_numpy().copy()
    with_inf[1, 3] = np.inf
    sparse = sp.csr_matrix(frame.to_numpy())
    sparse.data[sparse.indices == 7] = np.nan
    for bad, name, count in ((nullable, "f0", 1), (as_object, "f1", 1), (with_inf, "f3", 1), (sparse, "f7", 6)):
        with pytest.raises(DataError, match=rf"input feature '{name}' has {count} missing or infinite "
                                                     rf"entr.*fill them in"):
            m.predict(bad)


def test_load_rejects_a_foreign_directory(tmp_path):
    with pytest.raises(DataError, match="model.json is missing"):
        pipeline.FittedModel.load(tmp_path)


def _X():
    return np.random.default_rng(0).standard_normal((20, 3))


def _X_with(value, cells):
    X = _X()
    for i, j in cells:
        X[i, j] = value
    return X


BAD_INPUTS = [
    # (description, kwargs overriding a valid call, exception, message fragment)
    ("nan in X", dict(X=_X_with(np.nan, [(4, 0)])), DataError, r"1 values are NaN or inf \(column 0: 1\)"),
    ("inf in X col 2", dict(X=_X_with(np.inf, [(0, 2), (5, 2), (7, 1)])), DataError,
     r"3 values are NaN or inf \(column 1: 1, column 2: 2\)"),
    ("nan in y", dict(y=np.r_[np.nan, np.zeros(19)]), DataError, r"`y` must be finite.*first at row 0"),
    ("shape mismatch", dict(y=np.zeros(19)), DataError, r"one value per row of X \(20 rows\), got 19"),
    ("1-D X", dict(X=np.zeros(20)), DataError, r"2-dimensional .* got shape \(20,\)"),
    ("one row", dict(X=np.zeros((1, 3)), y=np.zeros(1)), DataError, r"at least 2 rows to fit, got 1"),
    ("no columns", dict(X=np.zeros((20, 0))), DataError, r"at least 1 column"),
    ("text X", dict(X=np.array([["a", "b", "c"]] * 20)), DataTypeError, r"must hold real numbers, got dtype <U1"),
    ("negative lambda1", dict(lambda1=-0.1), ValueError, r"`lambda1` must be finite and >= 0, got lambda1=-0.1"),
    ("negative lambda2", dict(lambda2=-2.0), ValueError, r"`lambda2` must be finite and >= 0"),
    ("negative weight", dict(sample_weight=np.r_[-1.0, np.ones(19)]), DataError,
     r"must be >= 0, got 1 negative weights \(first: -1.0 at row 0\)"),
    ("zero weights", dict(sample_weight=np.zeros(20)), DataError, r"positive sum, got all weights zero"),
    ("weights length", dict(sample_weight=np.ones(5)), DataError, r"one value per row of X \(20 rows\), got 5"),
    ("unknown penalty", dict(penalty="ridge"), ValueError, r"must be one of \('l1', 'l2', 'elasticnet'\), got 'ridge'"),
    ("l2 with lambda1", dict(penalty="l2", lambda1=0.3), ValueError, r"'l2' must have lambda1 == 0, got lambda1=0.3"),
    ("l1 with lambda2", dict(penalty="l1", lambda2=0.3), ValueError, r"'l1' must have lambda2 == 0, got lambda2=0.3"),
    ("unknown engine", dict(engine="gpu"), DataError, r"`engine` must be one of 'auto', 'gram', 'rows', got 'gpu'"),
    ("one name for categorical", dict(categorical="x0"), DataError,  # was taken for "auto", silently
     r"`categorical` must be 'auto' or a list of column names, got 'x0'; for one column pass categorical=\['x0'\]"),
]


@pytest.mark.parametrize(("case", "override", "exc", "fragment"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(case, override, exc, fragment):
    args = dict(X=_X(), y=np.zeros(20), penalty="elasticnet", lambda1=0.1, lambda2=0.0)
    args.update(override)
    X, y = args.pop("X"), args.pop("y")
    with pytest.raises(exc, match=fragment):
        pipeline.fit(X, y, **args)


def test_data_errors_are_regsweep_errors_and_standard_exceptions():
    with pytest.raises(RegsweepError):
        pipeline.fit(np.zeros((1, 2)), np.zeros(1))
    assert issubclass(DataError, ValueError) and issubclass(DataTypeError, TypeError)


def test_bad_input_is_rejected_before_any_work(monkeypatch):
    """Validation precedes computing statistics: the statistics kernel is never reached."""
    from pipeline.solvers import SuffStats

    def boom(*a, **k):
        raise AssertionError("statistics computed before validation")

    monkeypatch.setattr(SuffStats, "from_block", classmethod(boom))
    with pytest.raises(DataError):
        pipeline.fit(np.r_[[[np.nan, 1.0]], np.ones((5, 2))], np.ones(6))


def test_dataframe_names_and_column_order():
    pd = pytest.importorskip("pandas")
    X = _X()
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    m = pipeline.fit(df, y, penalty="l2", lambda2=0.0)
    assert m.feature_names == ("a", "b", "c")
    assert_allclose(m.predict(df[["c", "a", "b"]]), y, atol=1e-10)  # matched by name


def test_frames_as_pandas_reads_real_files(diabetes):
    """The third probe: an all-numeric frame read with dtype_backend='pyarrow' was refused as "not real numbers",
    a nullable column's gap was blamed on its dtype, and numbers stored as text ('?' among numbers, '1,570',
    '12') or ISO dates were one-hot encoded into one level per value (173, 150 and 40 features), where a sweep
    refuses such a file."""
    import pandas as pd

    X, y = diabetes
    names = [f"f{i}" for i in range(10)]
    frame = pd.DataFrame(np.round(X * 1000), columns=names)
    reference = pipeline.fit(frame.to_numpy(), y, lambda1=0.05, penalty="l1", feature_names=names)
    arrow = frame.convert_dtypes(dtype_backend="pyarrow")
    nullable = frame.astype({"f0": "Int64"})
    for df in (arrow, nullable):
        got = pipeline.fit(df, y, lambda1=0.05, penalty="l1")
        assert got.feature_names == tuple(names)
        assert_allclose(got.coef, reference.coef, rtol=1e-12, atol=1e-12)
    nullable.loc[3, "f0"] = pd.NA
    with pytest.raises(DataError, match=r"`X` must be finite, but 1 values are NaN or inf \(column 0 \('f0'\): 1\)"):
        pipeline.fit(nullable, y, lambda1=0.05, penalty="l1")
    text = frame.astype({"f2": object, "f3": object})
    text.loc[[3, 9], "f2"] = "?"
    text["f3"] = [f"{v:,.0f}" for v in frame["f3"] * 1000]
    with pytest.raises(DataError, match=r"X column 'f2' holds numbers and '\?' \(2 of its first 442 values\): as "
                                        r"levels it would become one level per number; pass numbers \(pd.read_csv\("
                                        r"path, na_values=\['\?'\]\)"):
        pipeline.fit(text, y, lambda1=0.05, penalty="l1")
    with pytest.raises(DataError, match=r"X column 'f3' holds numbers written as text \(e.g. '[-\d,]+'\)"):
        pipeline.fit(text.drop(columns="f2"), y, lambda1=0.05, penalty="l1")
    with pytest.raises(DataError, match=r"X column 'f4' holds numbers stored as text \(e.g. '-?\d+.0'\): .*"
                                        r"pd.to_numeric\(X\['f4'\]\)"):
        pipeline.fit(frame.astype({"f4": str}), y, lambda1=0.05, penalty="l1")
    ints = frame.assign(f4=pd.Series([int(v * 100) for v in frame["f4"]], dtype=object))
    ints.loc[5, "f4"] = None  # Python ints beside a None: an object column, but no text (probe E)
    with pytest.raises(DataError, match=r"X column 'f4' holds numbers stored in an object-typed column \(e.g. -?\d+\)"):
        pipeline.fit(ints, y, lambda1=0.05, penalty="l1")
    dates = frame.assign(visit=pd.date_range("2020-01-01", periods=len(frame)).strftime("%Y-%m-%d"))
    with pytest.raises(DataError, match="column 'visit' of X holds dates or times"):
        pipeline.fit(dates, y, lambda1=0.05, penalty="l1")
    kept = pipeline.fit(text.drop(columns="f3"), y, lambda1=0.05, penalty="l1", categorical=["f2"])  # when asked
    assert sum(n.startswith("f2=") for n in kept.feature_names) > 100


def test_a_text_column_model_names_a_gap_or_an_inf_alike(diabetes):
    """Fitted without imputation, a model with text columns called an inf "missing values" (the fourth probe)."""
    import pandas as pd

    X, y = diabetes
    frame = pd.DataFrame(X[:, :3], columns=["a", "b", "c"]).assign(kind=np.where(X[:, 3] > 0, "hi", "lo"))
    model = pipeline.fit(frame, y, lambda2=0.1, penalty="l2")
    for bad in (np.nan, np.inf):
        new = frame.head(4).copy()
        new.loc[1, "b"] = bad
        with pytest.raises(DataError, match=r"input column 'b' has missing or infinite values \(NaN, inf\), but the "
                                            r"model was fitted without data.missing: impute"):
            model.predict(new)


def test_a_series_is_one_row_matched_by_its_labels(diabetes):
    """A pandas Series naming the model's columns is matched by name, as a one-row frame is: its values were
    taken by position, so the same row with its labels reordered predicted −45.0 for 18.3 (probe E). A Series
    naming none of them is still a row of values by position."""
    pd = pytest.importorskip("pandas")
    X, y = diabetes
    frame = pd.DataFrame(X[:, :3], columns=["bmi", "bp", "s5"])
    m = pipeline.fit(frame, y, lambda1=0.1)
    row = frame.iloc[4]
    expected = X[4, :3] @ m.coef + m.intercept
    assert_allclose(m.predict(row), [expected], rtol=1e-14)
    assert_allclose(m.predict(row[["s5", "bp", "bmi"]]), [expected], rtol=1e-14)
    assert_allclose(m.predict(pd.Series(X[4, :3])), [expected], rtol=1e-14)  # unnamed: by position
    # integer labels stay positional (review G): a header=None frame's column is not a row of a model whose
    # columns are named 0, 1, 2, and labels 0, 1, 2 against features '1', '2', '3' are no names
    numbered = pipeline.fit(pd.DataFrame(X[:, :3]), y, lambda1=0.1)
    with pytest.raises(DataError, match=r"X must have shape \(n_rows, 3\) to match the model, got \(442,\)"):
        numbered.predict(pd.DataFrame(X[:, :3])[0])
    shifted = pipeline.fit(pd.DataFrame(X[:, :3], columns=["1", "2", "3"]), y, lambda1=0.1)
    assert_allclose(shifted.predict(pd.Series(X[4, :3])), [X[4, :3] @ shifted.coef + shifted.intercept], rtol=1e-14)


def test_a_model_without_names_warns_that_named_columns_go_by_position(diabetes):
    pd = pytest.importorskip("pandas")
    X, y = diabetes
    m = pipeline.fit(X[:, :3], y, lambda1=0.1)
    frame = pd.DataFrame(X[:2, :3], columns=["bmi", "bp", "s5"])
    with pytest.warns(UserWarning, match="fitted without feature names: its columns are taken by position"):
        assert_allclose(m.predict(frame), X[:2, :3] @ m.coef + m.intercept, rtol=1e-14)


def test_a_gap_in_a_category_is_refused_under_missing_error_as_a_sweep_refuses_it():
    """It became zero indicators, with a warning that the training rows never had a gap (probe E); under
    ``missing='impute'`` it is the level ``<NA>``."""
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"wt": np.linspace(1.0, 5.0, 20), "cyl": pd.Categorical([4, 6, 8, 4] * 5)})
    X.loc[3, "cyl"] = np.nan
    y = np.linspace(0.0, 3.0, 20)
    with pytest.raises(DataError, match=r"missing values in columns \['cyl'\]; pass missing='impute' .* a "
                                        r"category's the level '<NA>'"):
        pipeline.fit(X, y, lambda1=0.01)
    m = pipeline.fit(X, y, lambda1=0.01, missing="impute")
    assert m.feature_names == ("wt", "cyl=4", "cyl=6", "cyl=8", "cyl=<NA>")


def test_a_date_column_of_x_is_named_with_a_fix_for_x():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"x": np.linspace(1.0, 5.0, 20), "d": pd.date_range("2020-01-01", periods=20)})
    with pytest.raises(DataError, match=r"column 'd' of X holds dates or times; .* or drop it from X\."):
        pipeline.fit(X, np.linspace(0.0, 3.0, 20), lambda1=0.01)


def test_predict_reads_a_mapping_and_names_what_it_cannot_read(tmp_path, diabetes):
    """A dict is a frame (one row of scalars, a JSON record); None, a column named twice, text in an array and
    a file's path to save into are one-line errors that name the fix (they were bare TypeErrors, ``got ()``,
    ``got (32, 4)``, a ValueError of float() and a FileExistsError: probe E)."""
    pd = pytest.importorskip("pandas")
    X, y = diabetes
    frame = pd.DataFrame(X[:, :2], columns=["bmi", "bp"]).assign(
        sex=np.where(X[:, 2] > 0, "m", "f"))
    m = pipeline.fit(frame, y, lambda1=0.1)
    expected = m.predict(frame.iloc[:2])
    assert len(set(np.round(expected, 6))) == 2  # two different rows, two different predictions
    assert_allclose(m.predict({c: frame[c].iloc[0] for c in frame.columns}), expected[:1], rtol=1e-14)
    assert_allclose(m.predict({c: list(frame[c].iloc[:2]) for c in frame.columns}), expected, rtol=1e-14)
    with pytest.raises(DataError, match=r"X is None; pass the rows to predict"):
        m.predict(None)
    with pytest.raises(DataError, match=r"X has the column\(s\) \['bmi'\] more than once; keep one of each"):
        m.predict(pd.concat([frame, frame[["bmi"]]], axis=1))
    with pytest.raises(DataError, match=r"X holds values that are not numbers .*; pass a DataFrame with the model's "
                                        r"column names"):
        m.predict(frame.to_numpy())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DataError, match=r"cannot save the model into .*a_file': it is a file; give a directory"):
        m.save(tmp_path / "a_file")
