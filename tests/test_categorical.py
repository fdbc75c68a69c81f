"""Text columns and missing values: every fold's error equals scikit-learn's pipeline on the same folds.

The data are the bundled Palmer penguins (real: three text columns, a missing
sex for 9 birds, 2 birds without measurements), with further gaps punched into
two numeric columns so that each fold imputes different means. The reference
is ``Pipeline(ColumnTransformer(OneHotEncoder(handle_unknown="ignore"),
SimpleImputer(strategy="mean")), StandardScaler, ElasticNet)`` under
``cross_val_score`` on the same folds; regsweep computes the same numbers from
one pass of statistics (no row is read per fold). Tolerance 1e-8 relative:
both sides converge to a relative duality gap far below it (scikit-learn at
``tol=1e-12``), and the statistics are exact up to rounding.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.model_selection import PredefinedSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from pipeline.candidate import Candidate
from pipeline.config import DataConfig
from pipeline.cv.fold_models import make_fold_model
from pipeline.cv.passes import block_pass, finish_pass, merge_block_passes
from pipeline.cv.refit import refit_pass
from pipeline.cv.row_models import make_row_fold_models
from pipeline.cv.rows import load_rows
from pipeline.config import ModelConfig
from pipeline.data import plan_data
from pipeline.errors import DataError
from pipeline.folds import kfold_folds
from pipeline.levels import encoding_from_scan, merge_scans, scan_block
from pipeline.model import FittedModel

TEXT = ["species", "island", "sex"]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year"]
TARGET = "body_mass_g"
K, SEED = 5, 4
CANDIDATES = [Candidate(0, "l1", 3.0, 0.0), Candidate(1, "l1", 40.0, 0.0), Candidate(2, "l2", 0.0, 0.05),
              Candidate(3, "elasticnet", 8.0, 0.3), Candidate(4, "elasticnet", 0.5, 0.01)]


def _scanned(plan):
    return plan.with_encoding(encoding_from_scan(plan, merge_scans([scan_block(plan, b) for b in plan.blocks])))


def _pass(plan):
    """The sweep's pass, in this process: scan, encode, reduce every block, merge, finish."""
    plan = _scanned(plan)
    parts = [block_pass(plan, b, K, SEED) for b in plan.blocks]
    return plan, finish_pass(merge_block_passes(*parts, fold_seed=SEED), K, SEED)


def _fold_models(plan, engine):
    """Both engines' fold models, in this process: the Gram engine's from the pass, the rows engine's from
    the rows themselves (each fold filling its own copy of the gappy columns)."""
    if engine == "gram":
        plan, passes = _pass(plan)
        return [make_fold_model(passes, f, fit_intercept=True, standardize=True) for f in range(K)]
    rows = load_rows(_scanned(plan), K, SEED)
    return make_row_fold_models(rows, range(K), fit_intercept=True, standardize=True)


def _tol(engine: str) -> float:
    """The fits' tolerance: the rows engine's duality gap stalls at about 2e-12 of ½·mean(y_c²) on two of these
    folds (float64 rounding in the gap's sums; its held-out errors at 1e-11 and at the stall agree to 1e-17),
    and it warns rather than claim 1e-12."""
    return 1e-12 if engine == "gram" else 1e-11


def _plan(tmp_path, df, fmt="csv", **data):
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False, row_group_size=60)
    return plan_data(DataConfig(source=str(path), target=TARGET, missing="impute", block_rows=70, **data))


def _reference_pipeline(c: Candidate, n_train: int):
    if c.penalty == "l2":
        reg = Ridge(alpha=n_train * c.lambda2, solver="svd")
    elif c.penalty == "l1":
        reg = Lasso(alpha=c.lambda1, tol=1e-12, max_iter=1_000_000)
    else:
        reg = ElasticNet(alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), tol=1e-12,
                         max_iter=1_000_000)
    encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), TEXT),
                                ("numbers", SimpleImputer(strategy="mean"), NUMERIC)])
    return Pipeline([("encode", encode), ("scale", StandardScaler()), ("fit", reg)])


def _folds_of_kept_rows(df, plan=None):
    """The rows with a target, and (given the plan) their folds: each block's kept rows numbered on from its
    first row and dealt in runs of K, as pipeline.folds documents."""
    kept = df[TARGET].notna().to_numpy()
    if plan is None:
        return df[kept].reset_index(drop=True), None
    folds = np.concatenate([kfold_folds(b.start_row, int(kept[b.start_row:b.start_row + b.n_rows].sum()), K, SEED)
                            for b in plan.blocks])
    return df[kept].reset_index(drop=True), folds


@pytest.mark.parametrize("fmt, engine, levels", [("csv", "gram", "dense"), ("parquet", "gram", "dense"),
                                                  ("csv", "gram", "sparse"), ("parquet", "gram", "sparse"),
                                                  ("csv", "rows", "dense")])
def test_every_fold_matches_sklearn_pipeline(tmp_path, penguins, monkeypatch, fmt, engine, levels):
    """Both engines; the Gram engine's pass with the level indicators in dense blocks (as the penguins' 9
    levels beside 6 other columns are) and in sparse ones (as a table with many levels has them)."""
    monkeypatch.setattr("pipeline.cv.passes.sparse_levels_pay", lambda plan: levels == "sparse")
    plan = _plan(tmp_path, penguins, fmt)
    assert set(plan.categorical) == set(TEXT)
    data, folds = _folds_of_kept_rows(penguins, plan)
    models = _fold_models(plan, engine)
    for c in CANDIDATES:
        ours = np.mean([m.score(c, _tol(engine)).heldout_mse for m in models])
        assert ours == pytest.approx(reference_cv_mse(data, folds, c), rel=1e-8), c


def reference_cv_mse(data: pd.DataFrame, folds: np.ndarray, c: Candidate) -> float:
    """scikit-learn's pipeline under ``cross_val_score`` on the same folds (Ridge per fold: its alpha scales
    with each fold's training rows)."""
    if c.penalty == "l2":
        errs = []
        for f in np.unique(folds):
            tr, te = folds != f, folds == f
            est = _reference_pipeline(c, int(tr.sum())).fit(data[tr], data[TARGET][tr])
            errs.append(np.mean((est.predict(data[te]) - data[TARGET][te]) ** 2))
        return float(np.mean(errs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # levels unseen in a training fold
        return float(-cross_val_score(_reference_pipeline(c, len(data)), data, data[TARGET], cv=PredefinedSplit(folds),
                                      scoring="neg_mean_squared_error").mean())


@pytest.mark.parametrize("engine", ["gram", "gram-sparse", "rows"])
def test_weighted_imputation_matches_a_weighted_reference(tmp_path, penguins, monkeypatch, engine):
    """Weights: the imputed value is Σw·x/Σw over observed training rows; scaler, fit and score weighted."""
    sparse_levels = engine == "gram-sparse"
    monkeypatch.setattr("pipeline.cv.passes.sparse_levels_pay", lambda plan: sparse_levels)
    engine = engine.split("-")[0]
    df = penguins.copy()
    df["w"] = np.random.default_rng(5).uniform(0.2, 3.0, len(df))
    plan = _plan(tmp_path, df, weight="w")
    data, folds = _folds_of_kept_rows(df, plan)
    c = Candidate(0, "elasticnet", 6.0, 0.2)
    ours = [m.score(c, _tol(engine)).heldout_mse for m in _fold_models(plan, engine)]
    for f in range(K):
        tr, te = data[folds != f], data[folds == f]
        means = {col: np.average(tr[col][tr[col].notna()], weights=tr["w"][tr[col].notna()]) for col in NUMERIC}
        onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(tr[TEXT])

        def design(part):
            return np.hstack([onehot.transform(part[TEXT]), part[NUMERIC].fillna(means).to_numpy()])

        scaler = StandardScaler().fit(design(tr), sample_weight=tr["w"])
        reg = ElasticNet(alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), tol=1e-12,
                         max_iter=1_000_000).fit(scaler.transform(design(tr)), tr[TARGET], sample_weight=tr["w"])
        pred = reg.predict(scaler.transform(design(te)))
        ref = np.average((pred - te[TARGET]) ** 2, weights=te["w"])
        assert ours[f] == pytest.approx(ref, rel=1e-8), f


def test_model_encodes_the_raw_frame_like_the_refit_pipeline(tmp_path, penguins):
    plan, passes = _pass(_plan(tmp_path, penguins))
    assert passes.dropped_by == (2, 0, 0, 0) and passes.total_stats.n_rows == penguins[TARGET].notna().sum()
    c = Candidate(0, "elasticnet", 2.0, 0.1)
    model = refit_pass(passes, c, plan.feature_names, ModelConfig(tol=1e-12), plan.encoding)
    data, _ = _folds_of_kept_rows(penguins)
    ref = _reference_pipeline(c, len(data)).fit(data, data[TARGET])
    raw = penguins.drop(columns=[TARGET])  # also the rows whose target was missing: the model imputes them
    np.testing.assert_allclose(model.predict(raw), ref.predict(raw), rtol=1e-8, atol=1e-8 * data[TARGET].std())
    # saved and loaded, it still takes the raw frame; names are column=level
    loaded = FittedModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.predict(raw), model.predict(raw))
    assert "species=Gentoo" in loaded.feature_names and "sex=<NA>" in loaded.feature_names


def test_unseen_level_gives_zeros_and_one_warning(tmp_path, penguins):
    plan, passes = _pass(_plan(tmp_path, penguins))
    model = refit_pass(passes, Candidate(0, "l2", 0.0, 0.01), plan.feature_names, ModelConfig(), plan.encoding)
    rows = penguins.drop(columns=[TARGET]).iloc[:3].copy()
    base = model.predict(rows)
    rows["island"] = ["Atlantis", "Atlantis", "Biscoe"]
    j = {n: i for i, n in enumerate(model.feature_names)}
    with pytest.warns(UserWarning, match="'island'.*Atlantis") as record:
        got = model.predict(rows)
    assert len(record) == 1
    old = model.coef[j["island=Torgersen"]]  # the first rows are from Torgersen
    np.testing.assert_allclose(got[:2], base[:2] - old, rtol=1e-12)
    np.testing.assert_allclose(got[2], base[2] - old + model.coef[j["island=Biscoe"]], rtol=1e-12)
    rows["island"] = [None, "Biscoe", None]  # island had no gap in training: warned as an unseen level is
    with pytest.warns(UserWarning, match="'island' has 2 missing value.*training rows never had") as record:
        got = model.predict(rows)
    assert len(record) == 1
    np.testing.assert_allclose(got[[0, 2]], base[[0, 2]] - old, rtol=1e-12)


def test_missing_indicators_and_integer_coded_categories(tmp_path, penguins):
    plan, passes = _pass(_plan(tmp_path, penguins, categorical=["year"], missing_indicators=True))
    assert "year=2007" in plan.feature_names and "year" not in plan.feature_names
    assert plan.feature_names[-2:] == ("bill_length_mm=<NA>", "flipper_length_mm=<NA>")
    # the indicator is the fraction of gaps in the column, over the rows kept
    data, _ = _folds_of_kept_rows(penguins)
    j = plan.feature_names.index("bill_length_mm=<NA>")
    assert passes.total_stats.x_mean[j] == pytest.approx(data["bill_length_mm"].isna().mean(), rel=1e-12)


def test_exclude_and_row_labels(tmp_path, penguins):
    df = penguins.copy()
    df.index = [f"bird {i}" for i in range(len(df))]
    df.to_csv(tmp_path / "r.csv")  # as R's write.csv: an unnamed first column of row names
    plan = plan_data(DataConfig(source=str(tmp_path / "r.csv"), target=TARGET, exclude=["year", "island"],
                                missing="impute"))
    assert plan.raw_features == ("species", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "sex")
    assert any("row labels" in n for n in plan.notes)


def test_unnamed_columns(tmp_path, penguins):
    """pandas' ``to_csv`` writes its integer index as an unnamed first column: row labels, left out. Any other
    unnamed column is named as pandas names it (an empty name failed in MLflow's signature, after the sweep),
    and left out when it holds no value (lines ending in separators, as spreadsheets export them)."""
    penguins.to_csv(tmp_path / "indexed.csv")
    plan = plan_data(DataConfig(source=str(tmp_path / "indexed.csv"), target=TARGET, missing="impute"))
    assert "" not in plan.raw_features and plan.raw_features[0] == "species"
    assert any("row labels" in n for n in plan.notes)
    df = penguins.copy()
    df.insert(2, "", df["year"])
    df.to_csv(tmp_path / "gap.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "gap.csv"), target=TARGET, missing="impute"))
    assert plan.raw_features[2] == "Unnamed: 2" == pd.read_csv(tmp_path / "gap.csv").columns[2]
    assert "column 3 has no header: it is the feature 'Unnamed: 2', as pandas names it; name it in the file, or " \
           "leave it out with data.exclude: [\"Unnamed: 2\"]." in plan.notes
    plan = plan_data(DataConfig(source=str(tmp_path / "gap.csv"), target=TARGET, missing="impute", exclude=[""]))
    assert "Unnamed: 2" not in plan.raw_features and len(plan.raw_features) == len(df.columns) - 2  # "" as before
    # every line ending in a comma (a spreadsheet's export): an unnamed, empty last column, left out with a note
    df.drop(columns="").to_csv(tmp_path / "plain.csv", index=False)
    lines = (tmp_path / "plain.csv").read_text().splitlines()
    (tmp_path / "trailing.csv").write_text("".join(line + ",\n" for line in lines))
    plan = plan_data(DataConfig(source=str(tmp_path / "trailing.csv"), target=TARGET, missing="impute"))
    assert "" not in plan.raw_features and plan.raw_features[-1] == "year"
    assert any(n.startswith(f"column {len(df.columns)} has no header and no value in any row") for n in plan.notes)
    (tmp_path / "trailing.csv").write_text("".join(line + ",,\n" for line in lines))  # two of them
    plan = plan_data(DataConfig(source=str(tmp_path / "trailing.csv"), target=TARGET, missing="impute"))
    assert plan.raw_features[-1] == "year"
    n = len(df.columns)
    assert any(note.startswith(f"columns {n}, {n + 1} have no header and no value") for note in plan.notes)


@pytest.mark.parametrize("change, message", [
    (lambda df: df.assign(when=pd.date_range("2020-01-01", periods=len(df)).strftime("%Y-%m-%d")),
     "column 'when' .* holds dates or times; convert them to numbers"),
    (lambda df: df.assign(when=pd.date_range("2020-01-01", periods=len(df)).strftime("%d-%b-%Y")),  # 05-Jan-2021
     "column 'when' .* holds dates or times; convert them to numbers"),
    (lambda df: df.assign(name=[f"bird number {i}" for i in range(len(df))]),
     "column 'name' looks like free text: 342 distinct values in 342 rows; .*data.exclude: \\[name\\]"),
])
def test_dates_and_free_text_are_refused(tmp_path, penguins, change, message):
    with pytest.raises(DataError, match=message):
        _pass(_plan(tmp_path, change(penguins)))


def test_a_small_table_is_judged_on_the_rows_the_scan_keeps(tmp_path):
    """The plan scans a small CSV itself (free text is refused before the cluster starts) with the scan's own
    rules: rows without a target do not count, and ``1``, ``1.0`` and ``01`` are one level."""
    df = pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6] + [np.nan] * 6, "x": np.arange(12.0),
                       "c": ["a", "a", "1", "1.0", "01", "b"] + [f"n{i}" for i in range(6)]})
    df.to_csv(tmp_path / "small.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "small.csv"), target="y", missing="impute"))
    assert plan.text_columns == ("c",)
    df.assign(c=[f"n{i}" for i in range(12)]).to_csv(tmp_path / "free.csv", index=False)
    df.assign(c=[f"n{i}" for i in range(12)]).to_parquet(tmp_path / "free.parquet")
    for name in ("free.csv", "free.parquet"):
        with pytest.raises(DataError, match="column 'c' looks like free text: 6 distinct values in 6 rows"):
            plan_data(DataConfig(source=str(tmp_path / name), target="y", missing="impute"))


def test_every_free_text_column_is_named_at_once_in_a_fix_yaml_reads_back(tmp_path):
    """A table with several free-text columns was refused one column per run. All are named at once, and the
    suggested ``data.exclude`` is YAML that reads back as those names (``yes`` would be a boolean, ``Note: 1`` a
    mapping), as is the identifier note's."""
    import yaml

    n = 12
    df = pd.DataFrame({"y": np.arange(n, dtype=float), "name": [f"n{i}" for i in range(n)], "x": np.ones(n),
                       "yes": [f"c{i}" for i in range(n)], "Note: 1": [f"t{i}" for i in range(n)],
                       "level": ["a", "b"] * (n // 2)})
    df.to_csv(tmp_path / "free.csv", index=False)
    with pytest.raises(DataError, match=r"3 columns look like free text \('name': 12 distinct values in 12 rows; "
                       r"'yes': .*'Note: 1': .*\); leave them out with data.exclude: ") as e:
        plan_data(DataConfig(source=str(tmp_path / "free.csv"), target="y"))
    fix = str(e.value).split("data.exclude: ", 1)[1].split("], ", 1)[0] + "]"
    assert yaml.safe_load(fix) == ["name", "yes", "Note: 1"]
    m = 150  # an identifier column named as pandas names an index it wrote, not first
    pd.DataFrame({"y": np.zeros(m), "x": np.arange(m) % 7, "Unnamed: 0": np.arange(m) + 1000}).to_csv(
        tmp_path / "ids.csv", index=False)
    notes = plan_data(DataConfig(source=str(tmp_path / "ids.csv"), target="y")).notes
    note = next(n for n in notes if "identifier" in n)
    assert yaml.safe_load(note.split("data.exclude: ", 1)[1].split(" if ", 1)[0]) == ["Unnamed: 0"]


def test_too_many_levels_and_text_target(tmp_path, penguins):
    with pytest.raises(DataError, match="column 'species' has 3 levels, more than data.max_levels = 2"):
        _pass(_plan(tmp_path, penguins, max_levels=2))
    df = penguins.assign(body_mass_g=penguins["species"])
    with pytest.raises(DataError, match="data.target 'body_mass_g' .* holds text, not numbers"):
        _plan(tmp_path, df)


def test_text_in_a_numeric_column_further_down_is_named(tmp_path, penguins):
    big = pd.concat([penguins] * 4, ignore_index=True)
    big["bill_depth_mm"] = big["bill_depth_mm"].astype(object)
    big.loc[1200, "bill_depth_mm"] = "deep"  # beyond the 1,000 lines the plan reads
    with pytest.raises(DataError, match="column 'bill_depth_mm' is numeric elsewhere but holds text here .*'deep' "
                                        "at row 1200\\)"):
        _pass(_plan(tmp_path, big))


def test_group_kfold_folds_match_sklearn_on_the_same_groups(tmp_path, penguins):
    """folds.group: whole groups (here the study year × island) per fold, levels and gaps as before."""
    from pipeline.config import FoldsConfig
    from pipeline.folds import assign_units

    df = penguins.assign(site=penguins["island"] + "-" + penguins["year"].astype(str))
    df.to_csv(tmp_path / "g.csv", index=False)
    cfg = DataConfig(source=str(tmp_path / "g.csv"), target=TARGET, missing="impute", block_rows=70)
    plan, passes = _pass(plan_data(cfg, FoldsConfig(k=K, seed=SEED, group="site")))
    kept = df[df[TARGET].notna()].reset_index(drop=True)
    fold_of = assign_units(kept.groupby("site").size().astype(float).to_dict(), K, SEED)
    folds = kept["site"].map(fold_of).to_numpy()
    assert passes.n_groups == kept["site"].nunique() == 9
    c = Candidate(0, "elasticnet", 5.0, 0.1)
    models = [make_fold_model(passes, f, fit_intercept=True, standardize=True) for f in range(K)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = -cross_val_score(_reference_pipeline(c, len(kept)), kept, kept[TARGET], cv=PredefinedSplit(folds),
                               scoring="neg_mean_squared_error")
    np.testing.assert_allclose([m.score(c, 1e-12).heldout_mse for m in models], ref, rtol=1e-8)


def test_imputation_keeps_precision_for_columns_far_from_zero(tmp_path, diabetes):
    """An .npy source with gaps, one column shifted by 10⁶: imputing by the fold means stays exact."""
    X, y = diabetes
    X = X.copy()
    X[:, 2] += 1e6
    rng = np.random.default_rng(2)
    X[rng.random(X.shape) < 0.05] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), missing="impute",
                                block_rows=100))
    plan, passes = _pass(plan)
    folds = kfold_folds(0, len(y), K, SEED)
    c = Candidate(0, "elasticnet", 0.5, 0.05)
    ours = [make_fold_model(passes, f, fit_intercept=True, standardize=True).score(c, 1e-12).heldout_mse
            for f in range(K)]
    reg = ElasticNet(alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), tol=1e-12,
                     max_iter=1_000_000)
    pipe = Pipeline([("impute", SimpleImputer(strategy="mean")), ("scale", StandardScaler()), ("fit", reg)])
    ref = -cross_val_score(pipe, X, y, cv=PredefinedSplit(folds), scoring="neg_mean_squared_error")
    np.testing.assert_allclose(ours, ref, rtol=1e-8)


def test_kinds_from_parquet_types_and_csv_na_values(tmp_path, penguins):
    """A pandas category is categorical, a dictionary-*encoded* numeric column is not; '?' can mark a gap."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = penguins.assign(year=penguins["year"].astype("category"))
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, tmp_path / "k.parquet", use_dictionary=True)  # every column dictionary-encoded on disk
    plan = plan_data(DataConfig(source=str(tmp_path / "k.parquet"), target=TARGET, missing="impute"))
    assert set(plan.categorical) == {*TEXT, "year"} and "bill_depth_mm" not in plan.categorical
    marked = penguins.astype(object).where(penguins.notna(), "?")
    marked.to_csv(tmp_path / "q.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "q.csv"), target=TARGET, missing="impute", na_values=["?"]))
    assert set(plan.categorical) == set(TEXT)
    plan, passes = _pass(plan)
    assert plan.encoding.imputed_centers.keys() == {"bill_length_mm", "flipper_length_mm"}
    assert passes.dropped_by == (2, 0, 0, 0)


@pytest.mark.parametrize("levels", ["dense", "sparse"])
def test_missing_category_under_error_names_the_column(tmp_path, penguins, monkeypatch, levels):
    """A gap in a text column without a ``<NA>`` level is refused naming the column (under ``drop``, its rows
    are left out, and the rest agree to rounding), whether the indicators are dense or sparse."""
    monkeypatch.setattr("pipeline.cv.passes.sparse_levels_pay", lambda plan: levels == "sparse")
    df = penguins.dropna(subset=NUMERIC + [TARGET])
    df.to_csv(tmp_path / "e.csv", index=False)
    cfg = DataConfig(source=str(tmp_path / "e.csv"), target=TARGET, block_rows=1000)
    gaps = r"NaN or inf in column 'sex' at rows 7, 8, 9, 41, 164 and 3 more .*data.missing: drop"
    with pytest.raises(DataError, match=gaps):
        plan_data(cfg)  # the plan's head holds them: before the cluster starts
    with pytest.raises(DataError, match=gaps):  # the pass's own check
        _pass(dataclasses.replace(plan_data(cfg.model_copy(update={"missing": "drop"})), missing="error"))
    plan, passes = _pass(plan_data(DataConfig(source=str(tmp_path / "e.csv"), target=TARGET, missing="drop")))
    kept = df.dropna(subset=["sex"])
    assert passes.dropped_by == (0, 0, 8, 0) and passes.total_stats.n_rows == len(kept)
    ref = np.column_stack([(kept[name.split("=")[0]] == name.split("=")[1]) if "=" in name else kept[name]
                           for name in plan.feature_names]).astype(float)
    np.testing.assert_allclose(passes.total_stats.cxx, np.cov(ref.T, bias=True) * len(kept), rtol=1e-9, atol=1e-7)


def test_sparse_levels_are_chosen_where_they_pay(tmp_path, penguins):
    """The rule of :func:`pipeline.cv.passes.sparse_levels_pay`: the penguins' 9 levels beside 6 other columns
    stay dense; a 200-level column beside them is sparse."""
    from pipeline.cv.passes import sparse_levels_pay

    assert not sparse_levels_pay(_scanned(_plan(tmp_path, penguins)))
    many = penguins.assign(site=[f"s{i % 200}" for i in range(len(penguins))])
    plan = _scanned(_plan(tmp_path, many, categorical=[*TEXT, "site"]))
    assert plan.encoding.n_levels == 3 + 3 + 3 + 200 and sparse_levels_pay(plan)  # sex: female, male, <NA>


def test_rows_engine_refit_imputes_and_encodes_like_the_pipeline(tmp_path, penguins):
    from pipeline.cv.row_models import row_refit

    plan = _scanned(_plan(tmp_path, penguins, missing_indicators=True))
    rows = load_rows(plan, K, SEED)
    c = Candidate(0, "elasticnet", 2.0, 0.1)
    model = row_refit(rows, c, plan.feature_names, ModelConfig(tol=1e-12), plan.encoding)
    data, _ = _folds_of_kept_rows(penguins)
    ref = _reference_pipeline(c, len(data))
    ref.set_params(encode__numbers=SimpleImputer(strategy="mean", add_indicator=True)).fit(data, data[TARGET])
    raw = penguins.drop(columns=[TARGET])
    np.testing.assert_allclose(model.predict(raw), ref.predict(raw), rtol=1e-8, atol=1e-8 * data[TARGET].std())


@pytest.mark.parametrize("engine", ["gram", "rows"])
def test_fit_takes_a_raw_frame_like_the_pipeline(penguins, engine):
    """pipeline.fit on a DataFrame with text columns and gaps: encoded and imputed as a sweep does."""
    import pipeline

    data = penguins[penguins[TARGET].notna()].reset_index(drop=True)
    w = np.random.default_rng(8).uniform(0.5, 2.0, len(data))
    c = Candidate(0, "elasticnet", 3.0, 0.2)
    model = pipeline.fit(data.drop(columns=[TARGET]), data[TARGET], penalty="elasticnet", lambda1=c.lambda1,
                         lambda2=c.lambda2, missing="impute", sample_weight=w, tol=1e-12, engine=engine)
    assert "species=Gentoo" in model.feature_names and "sex=<NA>" in model.feature_names
    # the reference: weighted means filled by hand, weights routed to the scaler and the fit
    means = {col: np.average(data[col][data[col].notna()], weights=w[data[col].notna()]) for col in NUMERIC}
    onehot = OneHotEncoder(sparse_output=False).fit(data[TEXT].astype(object).where(data[TEXT].notna(), "<NA>"))

    def design(part):
        text = part[TEXT].astype(object).where(part[TEXT].notna(), "<NA>")
        return np.hstack([onehot.transform(text), part[NUMERIC].fillna(means).to_numpy()])

    scaler = StandardScaler().fit(design(data), sample_weight=w)
    reg = ElasticNet(alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), tol=1e-12,
                     max_iter=1_000_000).fit(scaler.transform(design(data)), data[TARGET], sample_weight=w)
    raw = penguins.drop(columns=[TARGET])
    np.testing.assert_allclose(model.predict(raw), reg.predict(scaler.transform(design(raw))), rtol=1e-8)
    with pytest.raises(DataError, match="missing values in columns .*missing='impute'"):
        pipeline.fit(data.drop(columns=[TARGET]), data[TARGET], penalty="l2", lambda2=0.1)


# ---------------------------------------------------------------- found in review
def test_a_numeric_table_with_gaps_is_filled_at_predict_time(tmp_path, diabetes):
    """No text column: the feature names are the raw names, and gaps (frame or array) still take the fill."""
    X, y = diabetes
    X = X.copy()
    X[np.random.default_rng(4).random(X.shape) < 0.1] = np.nan
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame.assign(y=y).to_csv(tmp_path / "n.csv", index=False)
    plan, passes = _pass(plan_data(DataConfig(source=str(tmp_path / "n.csv"), target="y", missing="impute")))
    c = Candidate(0, "elasticnet", 0.5, 0.1)
    model = refit_pass(passes, c, plan.feature_names, ModelConfig(tol=1e-12), plan.encoding)
    reg = ElasticNet(alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), tol=1e-12,
                     max_iter=1_000_000)
    ref = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()), ("fit", reg)]).fit(frame, y)
    np.testing.assert_allclose(model.predict(frame), ref.predict(frame), rtol=1e-8)
    np.testing.assert_allclose(model.predict(X), ref.predict(frame), rtol=1e-8)


@pytest.mark.parametrize("words", [("True", "False"), ("true", "false"), ("TRUE", "FALSE")])
def test_levels_read_from_csv_text_match_what_pandas_reads_later(tmp_path, words):
    """Integer codes written as 2007.0 (a gap made the column float) and any spelling of true/false: the
    levels are named by value, so a frame read later by pandas.read_csv predicts as in training."""
    rng = np.random.default_rng(1)
    n = 120
    df = pd.DataFrame({"x": rng.normal(size=n), "flag": rng.random(n) < 0.5,
                       "year": rng.choice([2007, 2008, 2009], n).astype(float)})
    df["y"] = df.x + 3 * df.flag + (df.year - 2008) + rng.normal(0, 0.1, n)
    df.loc[[3, 50], "year"] = np.nan
    df = df.assign(flag=df.flag.map({True: words[0], False: words[1]}))
    df.to_csv(tmp_path / "l.csv", index=False)
    plan, passes = _pass(plan_data(DataConfig(source=str(tmp_path / "l.csv"), target="y", missing="impute",
                                              categorical=["flag", "year"], block_rows=50)))
    assert dict(zip(plan.encoding.columns, plan.encoding.levels)) == {
        "x": None, "flag": ("False", "True"), "year": ("2007", "2008", "2009", "<NA>")}
    model = refit_pass(passes, Candidate(0, "l2", 0.0, 1e-4), plan.feature_names, ModelConfig(), plan.encoding)
    as_read = pd.read_csv(tmp_path / "l.csv").drop(columns=["y"])  # bool and float columns now
    as_text = pd.read_csv(tmp_path / "l.csv", dtype=str).drop(columns=["y"]).assign(x=as_read.x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no level may look unseen
        np.testing.assert_allclose(model.predict(as_read), model.predict(as_text), rtol=1e-12)


def test_a_column_never_observed_in_a_fold_is_left_out_without_an_intercept(tmp_path):
    """SimpleImputer drops a column with no observed training value; filled with 0 it is a zero column here
    (filled with the source's mean it would act as an intercept when none is fitted)."""
    rng = np.random.default_rng(2)
    n = 300
    df = pd.DataFrame({"a": rng.normal(5, 1, n), "b": rng.normal(-3, 2, n), "c": rng.normal(10, 1, n)})
    df["y"] = 2 * df.a - df.b + rng.normal(0, 0.5, n)
    folds = kfold_folds(0, n, K, SEED)
    df.loc[folds != 0, "c"] = np.nan  # c observed only in fold 0: never in fold 0's training rows
    df.to_csv(tmp_path / "c.csv", index=False)
    plan = _plan(tmp_path, df.rename(columns={"y": TARGET}))
    c = Candidate(0, "elasticnet", 0.05, 0.01)
    for engine in ("gram", "rows"):
        if engine == "gram":
            plan_e, passes = _pass(plan)
            models = [make_fold_model(passes, f, fit_intercept=False, standardize=False) for f in range(K)]
        else:
            models = make_row_fold_models(load_rows(_scanned(plan), K, SEED), range(K), fit_intercept=False,
                                          standardize=False)
        for f, m in enumerate(models):
            tr, te = df[folds != f], df[folds == f]
            pipe = Pipeline([("impute", SimpleImputer()), ("fit", ElasticNet(
                alpha=c.lambda1 + c.lambda2, l1_ratio=c.lambda1 / (c.lambda1 + c.lambda2), fit_intercept=False,
                tol=1e-12, max_iter=1_000_000))])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the imputer drops c in fold 0
                pipe.fit(tr[["a", "b", "c"]], tr["y"])
                ref = float(np.mean((pipe.predict(te[["a", "b", "c"]]) - te["y"]) ** 2))
            assert m.score(c, 1e-12).heldout_mse == pytest.approx(ref, rel=1e-8), (engine, f)


def test_a_listed_column_is_kept_whatever_its_level_count(tmp_path, penguins):
    df = penguins.assign(code=[f"S{i % 300:03d}" for i in range(len(penguins))])
    with pytest.raises(DataError, match="looks like free text.*or list it in data.categorical"):
        _pass(_plan(tmp_path, df))
    plan, _ = _pass(_plan(tmp_path, df, categorical=["code"]))
    kept = df[df[TARGET].notna()]  # a level only on rows without a target is no level
    assert sum(name.startswith("code=") for name in plan.feature_names) == kept["code"].nunique() == 299


def test_sources_without_gaps_or_text_are_never_scanned(tmp_path):
    """data.missing: impute on generated rows (which have no gaps) reads them as before: no scan, no encoding."""
    from pipeline.config import SyntheticConfig
    from pipeline.data import load_block

    plan = plan_data(DataConfig(source="synthetic", missing="impute", synthetic=SyntheticConfig(n_rows=50)))
    assert not plan.needs_scan and plan.encoding is None
    assert load_block(plan, plan.blocks[0]).X.shape == (50, 20)


def test_the_columns_line_names_at_most_ten_columns_of_a_wide_table() -> None:
    """2,000 imputed columns made one 13 KB console line; the summary keeps them all."""
    from pipeline.encoding import Encoding, describe, encoding_summary

    names = tuple(f"gene_{j}" for j in range(2000))
    enc = Encoding(names, (None,) * 2000, imputed=(True,) * 2000, centers=(0.0,) * 2000, impute=True)
    line = describe(enc)
    assert "gene_9," not in line and "gene_9 and 1990 more (the summary's imputed_columns lists all)" in line
    assert "gene_10" not in line and len(line) < 300
    assert encoding_summary(enc)["imputed_columns"] == list(names)
    few = Encoding(names[:3], (None,) * 3, imputed=(True,) * 3, centers=(0.0,) * 3, impute=True)
    assert describe(few).endswith("gaps (NaN or inf) imputed by each fold's training means: gene_0, gene_1, gene_2.")


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_model_reads_its_csv_na_values_at_predict_time(tmp_path, kind) -> None:
    """A model trained on a CSV with ``data.na_values: ['?']`` and imputation failed with a bare "could not convert
    string to float: '?'" on the same file read by ``pd.read_csv`` without them. It keeps its na_values (in
    model.json), so the raw frame predicts as the frame read with them; other text is named, not a bare error."""
    import dataclasses

    rng = np.random.default_rng(2)
    n = 40
    frame = pd.DataFrame({"x": rng.normal(size=n).round(3).astype(object), "y": rng.normal(size=n)})
    frame.loc[[3, 17], "x"] = "?"
    if kind == "categorical":
        frame["c"] = rng.choice(["a", "b", "?"], n)
    frame.to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", na_values=["?"], missing="impute"))
    enc = encoding_from_scan(plan, merge_scans([scan_block(plan, spec) for spec in plan.blocks]))
    assert enc.na_values == ("?",) and enc.imputed[0]
    p = len(enc.feature_names)
    enc = enc.fitted(np.full(p, 0.25))
    model = FittedModel(np.linspace(1.0, 2.0, p), 0.5, "l2", 0.0, 1.0, True, True, np.zeros(p), np.ones(p),
                        enc.feature_names, encoding=enc)
    loaded = FittedModel.load(model.save(tmp_path / "m"))
    assert loaded.encoding is not None and loaded.encoding.na_values == ("?",)
    raw = pd.read_csv(tmp_path / "d.csv").drop(columns="y")  # '?' stays text
    marked = pd.read_csv(tmp_path / "d.csv", na_values=["?"]).drop(columns="y")
    np.testing.assert_array_equal(loaded.predict(raw), loaded.predict(marked))
    assert np.isfinite(loaded.predict(raw)).all()
    raw.loc[5, "x"] = "n/a?"
    with pytest.raises(DataError, match=r"input column 'x' holds text \(e.g. 'n/a\?'\) where the model takes numbers"):
        loaded.predict(raw)
    plain = dataclasses.replace(loaded, encoding=None)  # without an encoding: the column is named too
    with pytest.raises(DataError, match="input column 'x' holds text"):
        plain.predict(raw[["x"]] if kind == "numeric" else raw[["x"]].assign(**{n: 0.0 for n in enc.feature_names[1:]}))


def test_a_column_named_like_another_columns_level_is_refused(tmp_path) -> None:
    """Column ``color=red`` beside column ``color`` with level ``red`` made two features of one name (the
    coefficients table listed it twice, a penalty factor for it was ambiguous)."""
    rng = np.random.default_rng(4)
    n = 30
    pd.DataFrame({"color": rng.choice(["red", "blue"], n), "color=red": rng.normal(size=n),
                  "y": rng.normal(size=n)}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="level 'red' of column 'color' and column 'color=red' would both be the "
                                        "feature 'color=red'; rename the column"):
        plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y"))  # a small table: scanned here
        encoding_from_scan(plan, merge_scans([scan_block(plan, spec) for spec in plan.blocks]))
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", exclude=["color=red"]))
    assert encoding_from_scan(plan, merge_scans([scan_block(plan, s) for s in plan.blocks])).feature_names == (
        "color=blue", "color=red")


def test_level_names_are_the_same_whatever_type_a_reader_gave_the_values():
    """Each distinct value is named once and the names spread to its rows: numbers by value, true/false words
    as True/False, text stripped, gaps (None, NaN, pd.NA) missing, in every dtype a reader gives."""
    from pipeline.encoding import level_strings

    mixed = pd.Series(["2007", 2007, 2007.0, "2007.0", " a ", "a", None, np.nan, "TRUE", True, "false", 1.5, "x"] * 3)
    expected = ["2007", "2007", "2007", "2007", "a", "a", None, None, "True", "True", "False", "1.5", "x"] * 3
    assert level_strings(mixed).tolist() == expected
    assert level_strings(pd.Series([True, False, True])).tolist() == ["True", "False", "True"]
    assert level_strings(pd.Series([3.0, np.nan, 0.25, 3.0])).tolist() == ["3", None, "0.25", "3"]
    assert level_strings(pd.Series(pd.array([1, None, 1], dtype="Int64"))).tolist() == ["1", None, "1"]
    assert level_strings(pd.Series(pd.array(["b ", None, "b"], dtype="string"))).tolist() == ["b", None, "b"]
    assert level_strings(pd.Series(pd.array([True, None], dtype="boolean"))).tolist() == ["True", None]
    assert level_strings(pd.Series(["u", "v"], index=[10, 20])).index.tolist() == [10, 20]


def test_numbers_beside_booleans_in_one_column_keep_their_own_names():
    """pandas factorizes ``1`` and ``True`` (``0`` and ``False``) as one value: a served model's JSON sending
    ``1`` in one row and ``true`` in the others named every row by whichever came first (probe E)."""
    from pipeline.encoding import level_strings

    assert level_strings(pd.Series([1, True, True], dtype=object)).tolist() == ["1", "True", "True"]
    assert level_strings(pd.Series([True, 1, 0, False], dtype=object)).tolist() == ["True", "1", "0", "False"]
    assert level_strings(pd.Series([1.0, True, None], dtype=object)).tolist() == ["1", "True", None]


def test_a_true_false_column_reads_one_and_zero_as_true_and_false():
    """A model fitted on a boolean column predicts the same from 1/0 (an integer flag) as from True/False, row by
    row whatever the other rows hold, with no warning of unseen levels; another column's 1/0 stay levels."""
    import warnings

    import pipeline

    rng = np.random.default_rng(3)
    flag = rng.random(60) < 0.5
    x = rng.standard_normal(60)
    y = 2.0 * flag + x + 0.1 * rng.standard_normal(60)
    model = pipeline.fit(pd.DataFrame({"flag": flag, "x": x}), y, lambda1=0.01)
    rows = pd.DataFrame({"flag": [True, False, True], "x": [0.3, -1.0, 2.0]})
    expected = rows["x"].to_numpy() * model.coef[list(model.feature_names).index("x")] + model.intercept
    expected += np.array([model.coef[list(model.feature_names).index(f"flag={v}")] for v in ("True", "False", "True")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unseen level would warn
        np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-13)
        np.testing.assert_allclose(model.predict(rows.assign(flag=[1, 0, 1])), expected, rtol=1e-13)
        np.testing.assert_allclose(model.predict(rows.assign(flag=pd.Series([1, False, True], dtype=object))),
                                   expected, rtol=1e-13)
