"""Data sources: each reads the same rows, block by block, with clear errors."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from pipeline.config import DataConfig, FoldsConfig
from pipeline.data import (SYNTH_CHUNK, _read_frame, check_fold_count, check_head, load_block, plan_data,
                           synthetic_coef)
from pipeline.errors import DataError


def _read_all(plan):
    blocks = [load_block(plan, s) for s in plan.blocks]
    for s, b in zip(plan.blocks, blocks):
        assert b.X.shape[0] == s.n_rows and b.start_row == s.start_row
    return np.vstack([b.X for b in blocks]), np.concatenate([b.y for b in blocks])


def test_bundled_diabetes_is_sklearns_copy(diabetes):
    X_ref, y_ref = diabetes
    plan = plan_data(DataConfig(block_rows=100))
    assert plan.n_rows == 442 and plan.n_features == 10 and len(plan.blocks) == 5
    assert plan.feature_names == ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
    X, y = _read_all(plan)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)


@pytest.fixture
def frame(diabetes):
    X, y = diabetes
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(10)])
    df["y"] = y
    df["w"] = np.linspace(0.5, 2, len(y))
    return df


def test_csv_byte_range_blocks(tmp_path, frame, diabetes):
    p = tmp_path / "d.csv"
    frame.to_csv(p, index=False)
    for block_rows in (1, 50, 441, 442, 10_000):
        plan = plan_data(DataConfig(source=str(p), target="y", weight="w", block_rows=block_rows))
        assert plan.feature_names == tuple(f"f{i}" for i in range(10))
        X, y = _read_all(plan)
        np.testing.assert_allclose(X, diabetes[0], rtol=1e-15)
        np.testing.assert_allclose(y, diabetes[1])
        w = np.concatenate([load_block(plan, s).weight for s in plan.blocks])
        np.testing.assert_allclose(w, frame["w"].to_numpy())


def test_csv_without_trailing_newline(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,y\n1,2,3\n4,5,6\n7,8,9")
    plan = plan_data(DataConfig(source=str(p), target="y", block_rows=2))
    X, y = _read_all(plan)
    np.testing.assert_array_equal(y, [3, 6, 9])


def test_parquet_file_directory_and_glob(tmp_path, frame, diabetes):
    d = tmp_path / "parts"
    d.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(442), 3)):
        frame.iloc[chunk].to_parquet(d / f"part-{i}.parquet", row_group_size=40)
    for source in (str(d), str(d / "*.parquet")):
        plan = plan_data(DataConfig(source=source, target="y", features=[f"f{i}" for i in range(10)], block_rows=100))
        X, y = _read_all(plan)
        np.testing.assert_array_equal(X, diabetes[0])
        assert plan.n_rows == 442


def test_npy_pair(tmp_path, diabetes):
    np.save(tmp_path / "X.npy", diabetes[0])
    np.save(tmp_path / "y.npy", diabetes[1])
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=128))
    X, y = _read_all(plan)
    np.testing.assert_array_equal(X, diabetes[0])


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_array_source_leaves_out_the_excluded_columns(tmp_path, diabetes, kind):
    """data.exclude names an array source's columns by their feature names (x0, x1, …): the
    blocks, the names and the example rows a model is logged with hold only the others, in order."""
    import scipy.sparse as sp

    X_ref, y_ref = diabetes
    source = tmp_path / f"X.{kind}"
    np.save(tmp_path / "X.npy", X_ref) if kind == "npy" else sp.save_npz(source, sp.csr_matrix(X_ref))
    np.save(tmp_path / "y.npy", y_ref)
    kept = [0, 1, 3, 4, 5, 6, 8, 9]
    plan = plan_data(DataConfig(source=str(source), target=str(tmp_path / "y.npy"), exclude=["x2", "x7"],
                                block_rows=128))
    assert plan.feature_names == tuple(f"x{j}" for j in kept)
    X, y = _read_all(plan)
    np.testing.assert_array_equal(X, X_ref[:, kept])
    np.testing.assert_array_equal(y, y_ref)
    with pytest.raises(DataError, match=r"data.exclude 'X2' is not a column .*'x2'"):
        plan_data(DataConfig(source=str(source), target=str(tmp_path / "y.npy"), exclude=["X2"]))
    with pytest.raises(DataError, match="leaves out every column"):
        plan_data(DataConfig(source=str(source), target=str(tmp_path / "y.npy"), exclude=[f"x{j}" for j in range(10)]))


def test_parquet_decimal_columns_are_numbers(tmp_path):
    """A decimal column (databases' NUMERIC, Spark's DecimalType) was refused as 'a type regsweep cannot use';
    it is read as the nearest float64, in the blocks, the head check and a model's example rows, and
    :func:`pipeline.fit` takes a frame of ``Decimal`` objects (``pd.read_parquet``) as numbers too."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    import pipeline
    from pipeline.data import read_example

    rng = np.random.default_rng(3)
    money = [decimal.Decimal(f"{v:.2f}") for v in rng.normal(50, 20, 200)]
    money[7] = None
    x = rng.standard_normal(200)
    y = [decimal.Decimal(f"{v:.3f}") for v in 0.1 * np.array([float(m or 0) for m in money]) + x]
    pq.write_table(pa.table({"money": pa.array(money, pa.decimal128(9, 2)), "x": x,
                             "y": pa.array(y, pa.decimal128(12, 3))}), tmp_path / "d.parquet")
    plan = plan_data(DataConfig(source=str(tmp_path / "d.parquet"), target="y", missing="drop"))
    assert plan.feature_names == ("money", "x") and check_head(plan) == 0
    blocks = [load_block(plan, spec) for spec in plan.blocks]  # (the dropped row: not _read_all's row count)
    X, got_y = np.vstack([b.X for b in blocks]), np.concatenate([b.y for b in blocks])
    expected = np.array([float(m) for m in money if m is not None])
    np.testing.assert_array_equal(X[:, 0], expected)
    np.testing.assert_array_equal(got_y, [float(v) for v, m in zip(y, money) if m is not None])
    assert read_example(plan).dtypes["money"] == np.float64
    frame = pd.read_parquet(tmp_path / "d.parquet").dropna()
    assert frame["money"].dtype == object  # Decimal objects
    as_floats = frame.astype(float)
    ours = pipeline.fit(frame[["money", "x"]], frame["y"].astype(float), penalty="l2", lambda2=0.01)
    ref = pipeline.fit(as_floats[["money", "x"]], as_floats["y"], penalty="l2", lambda2=0.01)
    np.testing.assert_array_equal(ours.coef, ref.coef)


def test_npy_source_under_imputation_reads_the_kept_columns(tmp_path, diabetes):
    """With gaps imputed the npy blocks go through the encoding, which names the raw columns: the excluded
    column's gaps must not reach it (it is not read at all)."""
    from pipeline.data import read_example

    X = diabetes[0].copy()
    X[::7, 4] = np.nan  # gaps only in the excluded column: nothing to impute in the kept ones
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", diabetes[1])
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), exclude=["x4"]))
    got = _read_all(plan)[0]
    np.testing.assert_array_equal(got, np.delete(diabetes[0], 4, axis=1))
    example = read_example(plan, n=3)
    assert list(example.columns) == [f"x{j}" for j in range(10) if j != 4]


def test_synthetic_rows_do_not_depend_on_the_block_size():
    cfg = dict(source="synthetic")
    syn = dict(n_rows=3 * SYNTH_CHUNK + 17, n_features=6, n_informative=3, correlation=0.6, noise=0.1, seed=4)
    a = _read_all(plan_data(DataConfig(**cfg, synthetic=syn, block_rows=1000)))
    b = _read_all(plan_data(DataConfig(**cfg, synthetic=syn, block_rows=SYNTH_CHUNK * 2)))
    np.testing.assert_array_equal(a[0], b[0])
    X, y = a
    beta = synthetic_coef(6, 3, 4)
    assert np.count_nonzero(beta) == 3
    assert np.std(y - X @ beta) == pytest.approx(0.1, rel=0.05)
    c = np.corrcoef(X.T)
    assert np.abs(c[np.triu_indices(6, 1)] - 0.6).max() < 0.05


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        (dict(source="nope.csv"), "does not exist"),
        (dict(source="bundled:iris"), "unknown bundled dataset 'iris'"),
        (dict(source="bundled:diabetes", target="nope"), "data.target 'nope' is not a column"),
        (dict(source="bundled:diabetes", features=["age", "zzz"]), "data.features 'zzz' is not a column"),
        (dict(source="bundled:diabetes", features=["age", "progression"]), "must not include the target"),
    ],
)
def test_plan_errors(cfg, fragment):
    with pytest.raises(DataError) as info:
        plan_data(DataConfig(**cfg))
    assert fragment in str(info.value)


def test_empty_and_header_only_csv(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        plan_data(DataConfig(source=str(empty), target="y"))
    header = tmp_path / "h.csv"
    header.write_text("a,y\n")
    with pytest.raises(DataError, match="zero data rows"):
        plan_data(DataConfig(source=str(header), target="y"))


def test_block_errors_name_file_column_and_rows(tmp_path, frame):
    frame = frame.copy()
    frame.loc[5, "f3"] = np.nan
    frame["txt"] = "a"
    p = tmp_path / "bad.csv"
    frame.to_csv(p, index=False)
    cfg = DataConfig(source=str(p), target="y", features=[f"f{i}" for i in range(10)], block_rows=100)
    with pytest.raises(DataError, match=r"bad.csv rows 0-99: NaN or inf in column 'f3' at row 5 .*data.missing: drop"):
        plan_data(cfg)  # the rows the plan reads: refused before any cluster, in the words of the pass ...
    plan = dataclasses.replace(plan_data(cfg.model_copy(update={"missing": "drop"})), missing="error")
    with pytest.raises(DataError, match=r"bad.csv rows 0-99: NaN or inf in column 'f3' at row 5 .*data.missing: drop"):
        load_block(plan, plan.blocks[0])  # ... which finds it in the block too
    plan2 = plan_data(DataConfig(source=str(p), target="y", block_rows=100, missing="drop"))
    assert plan2.categorical == ("txt",) and plan2.needs_scan  # a text column is categorical: levels come first


def test_parquet_schema_mismatch(tmp_path, frame):
    frame.iloc[:100].to_parquet(tmp_path / "a.parquet")
    frame.iloc[100:].rename(columns={"f1": "g1"}).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match="must share one schema"):
        plan_data(DataConfig(source=str(tmp_path), target="y"))


def test_parquet_deliveries_whose_numbers_or_text_are_stored_differently_are_one_source(tmp_path):
    """pandas writes an integer column as int64 until a delivery has a gap in it, then as double: a directory of
    both was refused ("rewrite them with the same columns and types"), also by a retrain on the new file. Numbers
    are numbers and text is text (a category column in one file, str in another); a boolean beside numbers (read
    as levels True/False) is still refused, as a renamed column is (test_parquet_schema_mismatch)."""
    import dataclasses

    from pipeline.levels import encoding_from_scan, merge_scans, scan_block

    rng = np.random.default_rng(3)
    old = pd.DataFrame({"age": rng.integers(20, 70, 60), "town": rng.choice(["a", "b"], 60), "y": rng.normal(size=60)})
    new = old.assign(age=old["age"].astype(float), town=old["town"].astype("category"))
    new.loc[[2, 9], "age"] = np.nan
    old.to_parquet(tmp_path / "part-0.parquet")
    new.to_parquet(tmp_path / "part-1.parquet")
    plan = plan_data(DataConfig(source=str(tmp_path), target="y", missing="impute"))
    if plan.needs_scan:
        enc = encoding_from_scan(plan, merge_scans([scan_block(plan, b) for b in plan.blocks]))
        plan = dataclasses.replace(plan, encoding=enc, feature_names=enc.feature_names)
    assert plan.n_rows == 120 and plan.encoding is not None and plan.encoding.levels[1] == ("a", "b")
    X = np.vstack([load_block(plan, b).X for b in plan.blocks])
    ages = pd.concat([old["age"].astype(float), new["age"]]).to_numpy()
    gaps = np.isnan(ages)
    np.testing.assert_array_equal(X[~gaps, 0], ages[~gaps])  # both files' values (the gaps are imputation's)
    old.assign(age=old["age"] > 40).to_parquet(tmp_path / "part-0.parquet")
    with pytest.raises(DataError, match="column 'age' is bool in .* but double in"):
        plan_data(DataConfig(source=str(tmp_path), target="y", missing="impute"))


def test_parquet_deliveries_with_their_columns_in_another_order_are_one_source(tmp_path):
    """A delivery written with the same columns in another order was refused ("the columns are in a different
    order"; probe H): every block reader asks for its columns by name. Its rows read as the first file orders
    them, for the Gram pass's blocks and the rows engine's alike (load_block, dense or as rows)."""
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=90), "town": rng.choice(["x", "y"], 90), "b": rng.normal(size=90),
                          "y": rng.normal(size=90)})
    frame.iloc[:50].to_parquet(tmp_path / "part-0.parquet")
    frame.iloc[50:][["y", "b", "town", "a"]].to_parquet(tmp_path / "part-1.parquet")
    plan = plan_data(DataConfig(source=str(tmp_path), target="y", features=["a", "b"]))
    assert plan.raw_features == ("a", "b") and plan.n_rows == 90
    X = np.vstack([load_block(plan, b).X for b in plan.blocks])
    y = np.concatenate([load_block(plan, b).y for b in plan.blocks])
    np.testing.assert_array_equal(X, frame[["a", "b"]].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())


def test_the_all_null_footer_check_of_a_wide_parquet_file_finds_its_empty_column(tmp_path):
    """The footer check and the column kinds looked each column up by name across all columns: 10,000 columns
    took 38 s to plan (194 s at 20,000; 0.19 s now, measured, not timed here). Done once per file, the check
    still finds the all-null column among 3,000 and lets the others through."""
    p = 3000
    frame = pd.DataFrame(np.ones((4, p)), columns=[f"g{j}" for j in range(p)]).assign(y=1.0, empty=np.nan)
    frame.to_parquet(tmp_path / "w.parquet")
    with pytest.raises(DataError, match="'empty'"):  # the all-null column is still found
        plan_data(DataConfig(source=str(tmp_path / "w.parquet"), target="y"))
    plan = plan_data(DataConfig(source=str(tmp_path / "w.parquet"), target="y", exclude=["empty"]))
    assert plan.n_features == p


def test_group_column_must_exist():
    with pytest.raises(DataError, match="folds.group 'clinic' is not a column"):
        plan_data(DataConfig(), FoldsConfig(group="clinic"))


def test_example_rows_are_typed_as_the_whole_source(tmp_path):
    """A CSV column with whole numbers in its first block but fractions later is float."""
    from pipeline.data import read_example

    p = tmp_path / "t.csv"
    p.write_text("a,b,y\n" + "".join(f"{i},{i},{i}\n" for i in range(10)) + "1,2.5,3\n")
    plan = plan_data(DataConfig(source=str(p), target="y", block_rows=4))
    blocks = [load_block(plan, s) for s in plan.blocks]
    integer = tuple(all(f) for f in zip(*(b.integer_columns for b in blocks)))
    assert blocks[0].integer_columns == (True, True) and integer == (True, False)
    ex = read_example(plan, integer, n=3)
    assert list(ex.dtypes.astype(str)) == ["int64", "float64"] and len(ex) == 3


def test_example_rows_are_rows_the_model_was_fitted_on(tmp_path):
    """Rows without a target are left out of the fit, so their levels may be unknown to the model: the logged
    example skips them (R's OldMaps: a level only on such rows made model logging warn mid-sweep)."""
    from pipeline.data import read_example
    from pipeline.levels import encoding_from_scan, merge_scans, scan_block

    p = tmp_path / "m.csv"
    p.write_text("name,x,y\n" + "Actual,1,\n" * 3 + "".join(f"{'ab'[i % 2]},{i},{i}\n" for i in range(8)))
    plan = plan_data(DataConfig(source=str(p), target="y", missing="impute"))
    plan = plan.with_encoding(encoding_from_scan(plan, merge_scans([scan_block(plan, s) for s in plan.blocks])))
    ex = read_example(plan, n=5)
    assert list(ex["name"]) == ["a", "b", "a", "b", "a"] and list(ex["x"]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("a,b,y\n1,2,3\n4,5,6\n\n", 2),            # trailing blank line
        ("a,b,y\r\n1,2,3\r\n4,5,6\r\n\r\n\r\n", 2),  # CRLF with trailing blank lines
        ("\ufeffa,b,y\n1,2,3\n4,5,6\n7,8,9", 3),      # UTF-8 byte-order mark, no final newline
    ],
    ids=["trailing-blank", "crlf", "bom"],
)
def test_csv_line_ending_variants(tmp_path, text, rows):
    p = tmp_path / "v.csv"
    p.write_bytes(text.encode("utf-8"))
    for block_rows in (1, 2, 10):
        plan = plan_data(DataConfig(source=str(p), target="y", block_rows=block_rows))
        assert plan.columns == ("a", "b", "y") and plan.n_rows == rows
        X, y = _read_all(plan)
        assert X.shape == (rows, 2) and y[0] == 3.0


def test_csv_empty_lines_inside_the_data_are_skipped_as_pandas_does(tmp_path):
    """Two files joined leave an empty line (LF or CRLF), or one of spaces and tabs; pandas skips them, and so
    does the plan's row count (the block holding one failed on a worker), in the line scan and in the record
    scan (a quoted newline). A line ``""`` is a row for pandas (of gaps), and stays one."""
    for eol in ("\n", "\r\n"):
        p = tmp_path / "mid.csv"
        p.write_bytes(eol.join(["a,y", "", "1,2", "", "  \t ", "3,4", "5,6", "\t", "7,8"]).encode())
        for block_rows in (1, 2, 3, 10):
            plan = plan_data(DataConfig(source=str(p), target="y", block_rows=block_rows))
            assert plan.n_rows == 4
            np.testing.assert_array_equal(_read_all(plan)[1], [2, 4, 6, 8])
        q = tmp_path / "quoted.csv"  # the record scan (a quoted newline)
        q.write_bytes(eol.join(["a,t,y", '1,"x', 'z",2', "", " \t", "3,w,4", '""', "5,v,6"]).encode())
        for block_rows in (2, 10):  # (a block of the row '""' alone: pandas' usecols refuses its one field)
            plan = plan_data(DataConfig(source=str(q), target="y", features=["a"], block_rows=block_rows,
                                        missing="drop"))
            assert plan.n_rows == 4 == len(pd.read_csv(q, skipinitialspace=True))
            frame = pd.concat([_read_frame(plan, s) for s in plan.blocks], ignore_index=True)
            assert frame["y"].tolist()[:2] == [2, 4] and frame["y"].isna().tolist() == [False, False, True, False]


def test_the_head_check_reads_rows_as_pandas_does_without_pandas(tmp_path):
    """:func:`csv_head_values` (the gap check before the cluster starts) against ``pandas.read_csv`` on the
    same rows: empty lines (LF, CRLF), a quoted newline, a short row, NA markers, ``inf``, a decimal comma."""
    from pipeline.column_kinds import PANDAS_NA_VALUES, csv_head_values

    for eol in ("\n", "\r\n"):
        p = tmp_path / "h.csv"
        p.write_bytes(eol.join(["a,t,y", "1,x,2", "", 'NA,"two' + eol + 'lines",inf', " 3, ,-4.5", "5", "-inf,z,NaN",
                                "1e3,None,7"]).encode())
        got = csv_head_values(str(p), ["a", "t", "y"], ["a", "t", "y"], 1000, PANDAS_NA_VALUES, numbers=["a", "y"])
        ref = pd.read_csv(p, skipinitialspace=True)
        assert len(ref) == got["a"][0].size == 6
        for c in ("a", "t", "y"):
            np.testing.assert_array_equal(got[c][0], ref[c].isna().to_numpy(), err_msg=c)
        for c in ("a", "y"):
            np.testing.assert_array_equal(got[c][1], pd.to_numeric(ref[c], errors="coerce").to_numpy(), err_msg=c)
        inf_only = csv_head_values(str(p), ["a", "t", "y"], ["a", "y"], 1000, PANDAS_NA_VALUES)  # no numbers parsed
        for c in ("a", "y"):
            values = pd.to_numeric(ref[c], errors="coerce").to_numpy()
            np.testing.assert_array_equal(inf_only[c][1], np.where(np.isinf(values), values, np.nan), err_msg=c)
    q = tmp_path / "semi.csv"
    q.write_text("a;y\n3,5;1\n;2\n")
    got = csv_head_values(str(q), ["a", "y"], ["a"], 1000, PANDAS_NA_VALUES, ";", ",", numbers=["a"])
    np.testing.assert_array_equal(got["a"][1], [3.5, np.nan])
    np.testing.assert_array_equal(got["a"][0], [False, True])
    r = tmp_path / "blank.csv"  # a line of spaces (skipped) or '""' (a row of gaps): the rows before it only
    r.write_text('a,y\n1,2\n""\n3,\n')
    assert csv_head_values(str(r), ["a", "y"], ["y"], 1000, PANDAS_NA_VALUES)["y"][0].tolist() == [False]


def test_quoted_fields_spanning_lines_are_one_row_each(tmp_path):
    """Free text with newlines, commas and doubled quotes inside quoted fields (pandas' to_csv writes them so):
    the rows are records, not lines, whatever the block size; a CRLF file too."""
    rng = np.random.default_rng(0)
    n = 60
    notes = ["first line\nsecond, with a comma" if i % 7 == 0 else 'he said ""hi""' if i % 5 == 0 else "plain"
             for i in range(n)]
    df = pd.DataFrame({"a": rng.normal(size=n), "note": notes, "y": rng.normal(size=n)})
    for name, eol in (("lf.csv", "\n"), ("crlf.csv", "\r\n")):
        p = tmp_path / name
        df.to_csv(p, index=False, lineterminator=eol)
        assert p.read_bytes().count(b"\n") > n + 1  # lines outnumber rows
        for block_rows in (1, 7, n - 1, n, 1000):
            plan = plan_data(DataConfig(source=str(p), target="y", features=["a"], block_rows=block_rows))
            assert plan.n_rows == n and len(plan.blocks) == -(-n // block_rows)
            X, y = _read_all(plan)
            np.testing.assert_array_equal(y, df["y"].to_numpy())
            np.testing.assert_array_equal(X[:, 0], df["a"].to_numpy())


def test_check_config_reads_a_header_with_spaces_after_its_commas(tmp_path):
    """UCI's adult.data style (``age, workclass, ...``): the plan strips the names, and so does the head check
    of check-config (it read the file's own header, and pandas then found none of the stripped names)."""
    p = tmp_path / "spaced.csv"
    p.write_text("a, b, y\n1, 2, 3\n4, 5, 6\n")
    plan = plan_data(DataConfig(source=str(p), target="y"))
    assert plan.feature_names == ("a", "b") and check_head(plan) == 2


def test_a_stray_quote_inside_a_field_stays_a_literal(tmp_path):
    """``55" TV`` (a quote inside an unquoted field) is a literal for pandas, and for the plan's row split."""
    p = tmp_path / "stray.csv"
    p.write_text('a,t,y\n1,55" TV,2\n3,x,4\n5,"q,r",6\n7,"two\nlines",8\n')
    plan = plan_data(DataConfig(source=str(p), target="y", features=["a"], block_rows=1))
    assert plan.n_rows == 4
    np.testing.assert_array_equal(_read_all(plan)[1], [2, 4, 6, 8])


def test_rows_the_line_scan_cannot_see_are_found_by_the_record_scan(tmp_path):
    """A stray quote and then a quoted newline on the last line (no newline after it, so no newline sees the odd
    count), and a quoted field longer than the csv module's 128 KiB limit."""
    p = tmp_path / "last.csv"
    p.write_text('a,t,u,y\n1,x,w,2\n3,55" TV,"great\nset",4\n')
    assert plan_data(DataConfig(source=str(p), target="y", features=["a"], block_rows=1)).n_rows == 2
    p.write_text("a,t,y\n" + "".join(f'{i},"{"w" * 150_000}\nmore",{i}\n' for i in range(3)))
    plan = plan_data(DataConfig(source=str(p), target="y", features=["a"], block_rows=2))
    assert plan.n_rows == 3
    np.testing.assert_array_equal(_read_all(plan)[1], [0, 1, 2])


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_huge_finite_values_are_not_missing_values(tmp_path, missing):
    """A clean block is told by its column sums; an overflowing sum of finite values (1e308 + 1e308) must still
    leave every row in (and under ``drop`` a real NaN leaves exactly its own row out)."""
    X = np.ones((40, 3))
    X[:, 1] = 1e308
    y = np.arange(40.0)
    if missing == "drop":
        X[5, 2] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), missing=missing),
                     FoldsConfig(k=2))
    block = load_block(plan, plan.blocks[0])
    assert block.X.shape[0] == (39 if missing == "drop" else 40)
    assert block.dropped_by == ((0, 0, 1, 0) if missing == "drop" else (0, 0, 0, 0))
    assert np.all(block.X[:, 1] == 1e308)


def test_booleans_with_gaps_read_as_the_same_column_without_gaps(tmp_path):
    """pandas reads ``True``/``False`` with empty entries as objects: such a target is 0/1 with its gaps missing,
    as it is without gaps (it was refused as not numeric, its example a gap)."""
    p = tmp_path / "b.csv"
    p.write_text("x,y\n1.5,True\n2.5,False\n3.5,\n4.5,TRUE\n,false\n")
    plan = plan_data(DataConfig(source=str(p), target="y", missing="drop"), FoldsConfig(k=2), "binomial")
    block = load_block(plan, plan.blocks[0])
    np.testing.assert_array_equal(block.y, [1.0, 0.0, 1.0])  # rows 2 (no target) and 4 (no x) left out
    np.testing.assert_array_equal(block.X[:, 0], [1.5, 2.5, 4.5])
    assert block.dropped_by == (1, 0, 1, 0)


def test_a_text_value_past_the_head_is_named_not_a_gap(tmp_path):
    """The block error's example of a column the head misjudged is its text value, not one of its gaps."""
    x = [""] + [str(i) for i in range(1, 1100)]
    x[1050] = "abc"
    p = tmp_path / "late.csv"
    p.write_text("x,y\n" + "".join(f"{v},{i}\n" for i, v in enumerate(x)))
    plan = plan_data(DataConfig(source=str(p), target="y", missing="drop"), FoldsConfig(k=2))
    with pytest.raises(DataError, match=r"columns \['x'\] are not numeric \(e.g. \{'x': \['abc'\]\} at row 1050\)"):
        load_block(plan, plan.blocks[0])  # the row, not only its block (the third probe)


def test_a_quoted_header_name_may_hold_commas(tmp_path):
    """``"x,2"`` is one column, as pandas and every spreadsheet read it (the header was split at every comma:
    one column too many, and every later name shifted onto its neighbour's values)."""
    frame = pd.DataFrame({"a b": [1.0, 2.0, 3.0, 4.0], "x,2": [5.0, 6.0, 7.0, 9.0],
                          "größe (cm)": [0.5, 0.25, 1.0, 2.0], "y": [1.0, 0.0, 2.0, 3.0]})
    p = tmp_path / "q.csv"
    frame.to_csv(p, index=False)
    assert p.read_text().startswith('a b,"x,2",größe (cm),y\n')
    plan = plan_data(DataConfig(source=str(p), target="y"), FoldsConfig(k=2))
    assert plan.feature_names == ("a b", "x,2", "größe (cm)")
    X, y = _read_all(plan)
    np.testing.assert_array_equal(X, frame[["a b", "x,2", "größe (cm)"]].to_numpy())
    np.testing.assert_array_equal(y, frame["y"].to_numpy())


def test_header_names_keep_doubled_quotes_and_a_model_reads_pandas_trailing_spaces(tmp_path):
    """A quoted header name with doubled quotes is the name 'BP "mean"' (its closing quote was dropped), and a
    model whose feature is 'bmi' predicts the frame pandas reads from the same file, where the name is 'bmi ' (the third
    probe: "input lacks the model's feature columns ['bmi', 'BP \"mean']")."""
    import pipeline

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = X @ [1.0, 2.0, 3.0] + 0.1 * rng.standard_normal(60)
    p = tmp_path / "h.csv"
    rows = "".join(",".join(repr(float(v)) for v in [*r, t]) + "\n" for r, t in zip(X, y))
    p.write_text('age,bmi ,"BP ""mean""",y\n' + rows)
    plan = plan_data(DataConfig(source=str(p), target="y"), FoldsConfig(k=2))
    assert plan.feature_names == ("age", "bmi", 'BP "mean"')
    np.testing.assert_array_equal(_read_all(plan)[0], X)
    frame = pd.read_csv(p, skipinitialspace=True).drop(columns="y")
    assert list(frame.columns) == ["age", "bmi ", 'BP "mean"']
    model = pipeline.fit(X, y, lambda2=0.01, penalty="l2", feature_names=plan.feature_names)
    np.testing.assert_allclose(model.predict(frame), model.predict(X), rtol=1e-13, atol=1e-13)  # layout only
    unnamed = pipeline.fit(pd.DataFrame(X), y, lambda2=0.01, penalty="l2")  # header=None: names 0, 1, 2
    assert unnamed.feature_names == ("0", "1", "2")
    np.testing.assert_allclose(unnamed.predict(pd.DataFrame(X)), model.predict(X), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("head", "needle"), [
    ("\ufeffa\tb\ty\r\n1\t2\t3\r\n".encode("utf-16"), "is UTF-16 text (as Excel's 'Unicode Text' saves it); save it "
                                                         "as 'CSV UTF-8'"),
    (b"sep=;\r\na;b;y\r\n1;2;3\r\n", "starts with Excel's separator line 'sep=;'; delete that first line"),
])
def test_excel_file_forms_are_named(tmp_path, head, needle):
    """Excel's 'Unicode Text' was refused as "CR-only line endings" and its 'sep=;' line as a row with too
    many fields (the third probe)."""
    p = tmp_path / "x.csv"
    p.write_bytes(head)
    with pytest.raises(DataError, match=re.escape(needle)):
        plan_data(DataConfig(source=str(p), target="y"))


_BODY = "".join(f"{i},{i % 7 * 1.5},{2 * i + 1}\n" for i in range(40))


@pytest.mark.parametrize(("text", "needle"), [
    ("Population by county, 2020\n\na,b,y\n" + _BODY,
     "the first line has 2 fields and row 0 below it 3, all names: is the first line a title above the table? "
     "delete the lines above the header"),
    ("a,b,y\n" + _BODY + "Total,,1640\n",
     "the line 'Total,,1640' at the end of the file is not a row of the table (a total or a note below it; column "
     "'a' reads numbers and 'Total' (1 of its first 41 values)); delete it"),
    ("a,b,y\n" + _BODY + "Source: a survey\nNote: in thousands\n", "the line 'Source: a survey' at the end"),
])
def test_lines_around_the_table_are_named(tmp_path, text, needle):
    """A portal's title above the header was "a value holds the separator unquoted", and a total or note below
    the table "if 'Total' marks a missing value, name it in data.na_values", which trained on the total."""
    p = tmp_path / "t.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=re.escape(needle)):
        plan_data(DataConfig(source=str(p), target="y"))


@pytest.mark.parametrize(("column", "needle"), [
    (["3", "?", "1"] * 10, "holds numbers and '?' (10 of its first 30 values): if '?' marks a missing value, name it "
                           "in data.na_values"),
    (["1.5", "-", "2.5"] * 10, "holds numbers and '-'"),
    (['"1,234"', "56", '"7,890"'] * 10, "holds numbers written as text (e.g. '1,234')"),
    (["$12", "$3", "$45"] * 10, "numbers written as text (e.g. '$12')"),
    (["12%", "3%", "7%"] * 10, "numbers written as text (e.g. '12%')"),
    ([str(0.5 * i) for i in range(20)] + ["abc"] + [str(i) for i in range(40)],  # a stray word among 60 numbers
     "holds numbers and 'abc' (1 of its first 61 values), not a number: fix it in the file, or if 'abc' marks"),
    # the third probe's forms, each read as one level per number (a 150-feature model, exit 0) before:
    (['"1.570,50"', '"2.001,25"', '"57,5"'] * 10, "numbers written as text (e.g. '1.570,50')"),  # European thousands
    (['"101,00 €"', '"99,50 €"', '"7,00 €"'] * 10, "numbers written as text (e.g. '101,00 €'): save them as plain "
                                                   "numbers, with a decimal point and no thousands separators, "
                                                   "currency or percent signs (in the spreadsheet"),
    (["USD 101.00", "USD 12.5", "3"] * 10, "numbers written as text (e.g. 'USD 101.00')"),
    (["0.5", "(0.20)", "1.5"] * 10, "(e.g. '(0.20)'): save them as plain numbers, with a decimal point and no "
                                    "thousands separators, currency or percent signs (in the spreadsheet, format the "
                                    "column as a plain number and export it again, an accounting negative"),
    (["1 570", "2 310", "12"] * 10, "numbers written as text (e.g. '1 570')"),
    (["1'570", "2'310", "12"] * 10, "numbers written as text (e.g. \"1'570\")"),
    (["0.5", "−0.50", "1.5"] * 10, "(e.g. '−0.50'): save them as plain numbers"),
    (["12", "<5", "31", "40", "7"] * 10, "holds numbers and '<5' (10 of its first 50 values): '<5' is a bound (a value "
                                         "suppressed or top-coded), not a number: write a number in its place"),
    (["12", "31", ">79", "40", "7"] * 10, "holds numbers and '>79'"),
    (["1.5", "NAN", "2.5"] * 10, "holds numbers and 'NAN' (10 of its first 30 values): if 'NAN' marks a missing"),
    (["1_000", "2", "3"] * 10, "numbers written as text (e.g. '1_000')"),
])
def test_numbers_in_disguise_are_refused_with_the_fix_at_plan_time(tmp_path, column, needle):
    """UCI's gap marker '?' (auto-mpg's horsepower, breast cancer's bare nuclei) or formatted numbers made a
    numeric column text: one level per number (or free text refused after the cluster started)."""
    p = tmp_path / "m.csv"
    p.write_text("a,hp,y\n" + "".join(f"{i},{v},{i % 3}\n" for i, v in enumerate(column)))
    with pytest.raises(DataError, match=re.escape(needle)):
        plan_data(DataConfig(source=str(p), target="y"))
    with pytest.raises(DataError, match=re.escape(needle)):
        plan_data(DataConfig(source=str(p), target="hp"))  # a target too
    plan = plan_data(DataConfig(source=str(p), target="y", categorical=["hp"]))  # kept as levels when asked
    assert plan.categorical == ("hp",)


def test_a_marker_named_in_na_values_is_a_gap_also_after_a_space(tmp_path):
    """``a, b`` files (UCI adult): spaces after the commas are skipped, so ``, ?`` is the marker ``?``, a text
    level ``, Private`` is ``Private``, and an empty field stays a gap when data.na_values replaces pandas'."""
    p = tmp_path / "adult.csv"
    lines = [f"{30 + i}, {'?' if i % 4 == 0 else 40 + i}, {'' if i % 5 == 0 else ' Private' if i % 2 else 'State'}, "
             f"{i % 2}" for i in range(40)]
    p.write_text("age, hours, work, y\n" + "\n".join(lines) + "\n")
    plan = plan_data(DataConfig(source=str(p), target="y", na_values=["?"], missing="impute", block_rows=7))
    assert plan.feature_names == ("age", "hours", "work") and plan.categorical == ("work",)
    frame = pd.concat([_read_frame(plan, s) for s in plan.blocks], ignore_index=True)
    assert frame["hours"].isna().to_numpy().tolist() == [i % 4 == 0 for i in range(40)]
    assert frame["work"].isna().to_numpy().tolist() == [i % 5 == 0 for i in range(40)]
    assert set(frame["work"].dropna()) == {"Private", "State"}


def test_a_text_column_whose_head_is_all_gaps_is_read_further(tmp_path):
    p = tmp_path / "late.csv"
    p.write_text("a,grp,y\n" + "".join(f"{i},{'' if i < 1200 else 'ab'[i % 2]},{i % 3}\n" for i in range(1300)))
    plan = plan_data(DataConfig(source=str(p), target="y", missing="impute"))
    assert plan.categorical == ("grp",)


def test_a_headerless_file_is_named_so(tmp_path):
    """UCI's ``.data`` files have no header: the first row's values became the column names (and a repeated
    value a duplicate-name error)."""
    p = tmp_path / "wdbc.csv"
    p.write_text("1000025,5,1,1,2\n1002945,5,4,4,2\n")
    with pytest.raises(DataError, match="holds numbers only .*'1000025', '5', '1', '1', '2'.*no header line"):
        plan_data(DataConfig(source=str(p), target="y"))
    q = tmp_path / "numbered.csv"  # numbers as names, the target among them: a header
    q.write_text("1,2,3\n0.5,1.5,2\n0.1,0.2,0.3\n")
    assert plan_data(DataConfig(source=str(q), target="3")).feature_names == ("1", "2")


def test_row_labels_and_counters(tmp_path):
    """A first column 'Unnamed: 0' of unique values (an index saved twice by pandas) is left out as an unnamed
    one is; a feature of distinct, close whole numbers (an identifier) is kept with a note naming the fix."""
    rng = np.random.default_rng(0)
    n = 150  # (a counter needs 100 distinct values: a small yearly table's years are distinct too)
    df = pd.DataFrame({"Unnamed: 0": np.arange(n), "customer_id": rng.permutation(np.arange(1000, 3000))[:n],
                       "income": rng.integers(10_000, 90_000_000, n), "y": rng.normal(size=n)})
    df.to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y"))
    assert plan.feature_names == ("customer_id", "income")
    assert any("named 'Unnamed: 0'" in n and "left out" in n for n in plan.notes)
    ids = [n for n in plan.notes if "identifier" in n]
    assert len(ids) == 1 and "data.exclude: [customer_id]" in ids[0]


def test_a_small_tables_groups_are_counted_before_the_cluster(tmp_path):
    """24 rows in 6 departments with folds.k = 12: check-config said OK, and the sweep refused it only after the
    cluster started. A small table's (at most 1,000 rows) group column is counted here (a gap in it is refused
    with the first rows, as the pass refuses it)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"Dept": np.repeat(list("ABCDEF"), 4), "x": rng.standard_normal(24),
                          "y": rng.standard_normal(24)})
    frame.to_csv(tmp_path / "g.csv", index=False)
    frame.to_parquet(tmp_path / "g.parquet")
    np.save(tmp_path / "X.npy", frame[["x"]].to_numpy())
    np.save(tmp_path / "y.npy", frame["y"].to_numpy())
    np.save(tmp_path / "g.npy", np.repeat(np.arange(6.0), 4))
    for source, target, group in [("g.csv", "y", "Dept"), ("g.parquet", "y", "Dept"),
                                  ("X.npy", str(tmp_path / "y.npy"), str(tmp_path / "g.npy"))]:
        plan = plan_data(DataConfig(source=str(tmp_path / source), target=target), FoldsConfig(group=group))
        check_fold_count(plan, 6)
        with pytest.raises(DataError, match=r"has 6 distinct groups, fewer than folds.k=7; lower folds.k or use row "
                                            r"k-fold \(folds.group: null\)"):
            check_fold_count(plan, 7)


def test_an_unnamed_first_column_that_repeats_is_refused_with_the_fix(tmp_path):
    """An index written by to_csv(index=True) of a frame indexed by a non-unique key (Ecdat's Males: a person id
    of 8 rows each) became the numeric feature 'Unnamed: 0' with a slope. Refused, naming the exclude; excluded,
    or unique (row labels), it is left out."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.standard_normal(40), "y": rng.standard_normal(40)},
                         index=pd.Index(np.repeat(np.arange(5), 8), name=None))
    frame.to_csv(tmp_path / "d.csv")
    with pytest.raises(DataError, match=r"the first column has no header and its values repeat: .* leave it out with "
                                        r"data.exclude: \[\"Unnamed: 0\"\], or give it a header"):
        plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y"))
    assert plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y",
                                exclude=["Unnamed: 0"])).feature_names == ("x",)
    frame.reset_index(drop=True).to_csv(tmp_path / "u.csv")
    assert plan_data(DataConfig(source=str(tmp_path / "u.csv"), target="y")).feature_names == ("x",)


def test_codes_written_with_leading_zeros_get_a_note(tmp_path):
    """COUNT::medpar's provider numbers ('030001') read as numbers became a linear feature without a word; a code
    column gets a note naming the fix, a count column with a zero or two does not, nor a listed categorical."""
    from pipeline.column_kinds import zero_padded_code

    rng = np.random.default_rng(0)
    n = 60
    codes = [f"{v:06d}" for v in rng.choice([30001, 30002, 100007, 450023], n)]
    (tmp_path / "d.csv").write_text("provnum,visits,y\n" + "".join(
        f'"{c}",{v},{y:.3f}\n' for c, v, y in zip(codes, rng.integers(0, 12, n), rng.normal(size=n))))
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y"))
    said = [n for n in plan.notes if "leading zeros" in n]
    assert len(said) == 1 and "column 'provnum'" in said[0] and "(e.g. '0300" in said[0]
    assert "data.categorical" in said[0] and "data.exclude: [provnum]" in said[0]
    listed = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", categorical=["provnum"]))
    assert not any("leading zeros" in n for n in listed.notes)
    assert zero_padded_code(["02134", "10001", "00501"] * 4) == "02134"
    assert zero_padded_code(["0", "3", "12", "7"] * 5) is None  # counts: no padding, widths differ
    assert zero_padded_code(["0.5", "1.5"] * 10) is None
    assert zero_padded_code(["10001", "10002", "20001", "01000"] + ["30000"] * 40) is None  # 1 in 44: a fluke


@pytest.mark.parametrize(("word", "levels", "fix"), [
    ("None", ["None", "Driver only", "Driver & Passenger"], ["NA"]),
    ("NA", ["NA", "EU", "AS"], ["NULL"]),  # North America, as continent codes write it (the third probe)
])
def test_a_level_pandas_reads_as_a_gap_in_a_text_column_gets_a_note(tmp_path, word, levels, fix):
    """MASS::Cars93's AirBags says 'None' for no airbags, and continent codes 'NA' for North America, which
    pandas reads as a gap: a note says so, and the fix it names (data.na_values) makes the word a level."""
    from pipeline.levels import encoding_from_scan, merge_scans, scan_block

    rng = np.random.default_rng(0)
    n = 40
    bags = rng.choice(levels, n)
    (tmp_path / "c.csv").write_text("AirBags,size,y\n" + "".join(
        f"{b},{s:.2f},{y:.3f}\n" for b, s, y in zip(bags, rng.normal(size=n), rng.normal(size=n))))
    plan = plan_data(DataConfig(source=str(tmp_path / "c.csv"), target="y", missing="impute"))
    said = [m for m in plan.notes if f"{word!r}" in m]
    assert len(said) == 1 and f"{word!r} ({int((bags == word).sum())} of its first rows)" in said[0]
    assert f"data.na_values: [{fix[0]}]" in said[0]
    fixed = plan_data(DataConfig(source=str(tmp_path / "c.csv"), target="y", na_values=fix))
    assert not any(f"{word!r}" in m for m in fixed.notes)
    enc = encoding_from_scan(fixed, merge_scans([scan_block(fixed, b) for b in fixed.blocks]))
    assert word in enc.levels[fixed.raw_features.index("AirBags")]
    with pytest.raises(DataError, match=re.escape("NaN or inf in column 'AirBags' at rows") + ".*" + re.escape(
            f"Note: column 'AirBags': {word!r} (")):
        plan_data(DataConfig(source=str(tmp_path / "c.csv"), target="y"))  # data.missing: error


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_a_feature_without_any_value_is_named_at_plan_time(tmp_path, missing):
    """It failed after the cluster started: under drop as 'drop left 0 of 60 rows' without naming the column."""
    p = tmp_path / "e.csv"
    p.write_text("a,empty,y\n" + "".join(f"{i},,{i % 3}\n" for i in range(60)))
    with pytest.raises(DataError, match=re.escape("feature column(s) ['empty'] hold no value in any row, so "
                                                  f"data.missing: {missing}")):
        plan_data(DataConfig(source=str(p), target="y", missing=missing))
    assert plan_data(DataConfig(source=str(p), target="y", missing="impute")).feature_names == ("a", "empty")


@pytest.mark.parametrize("name, sep, decimal", [("wine.csv", ";", "."), ("air.csv", ";", ","), ("d.tsv", "\t", "."),
                                                ("eu.tsv", "\t", ","), ("d.txt", "|", "."), ("d.csv", ",", ".")])
def test_the_separator_is_read_from_the_header(tmp_path, name, sep, decimal):
    """UCI's wine quality and bank marketing files are separated by ``;`` (as European spreadsheets export),
    ``.tsv`` files by tabs: they were refused ("save it with commas"). The header says which separator splits
    it; a quoted field may hold it, a row may span lines, and every block reads as pandas reads the file. A
    ``;`` file whose numbers are written ``3,14`` (UCI's air quality data) is read with decimal commas."""
    rng = np.random.default_rng(1)
    n = 300
    frame = pd.DataFrame({"fixed acidity": rng.normal(7, 1, n).round(2), "town": rng.choice(["a;b", "c|d", "e"], n),
                          "price (€, excl. VAT)" if sep == ";" else "price": rng.normal(size=n).round(3),
                          "note": np.where(np.arange(n) % 50 == 0, "two\nlines", "one"),
                          "quality": rng.integers(3, 9, n)})
    frame.to_csv(tmp_path / name, sep=sep, decimal=decimal, index=False)
    import dataclasses

    from pipeline.levels import encoding_from_scan, merge_scans, scan_block

    plan = plan_data(DataConfig(source=str(tmp_path / name), target="quality", block_rows=64, categorical=["note"]))
    if plan.needs_scan:  # a table this small is scanned by the plan itself
        enc = encoding_from_scan(plan, merge_scans([scan_block(plan, b) for b in plan.blocks]))
        plan = dataclasses.replace(plan, encoding=enc, feature_names=enc.feature_names)
    assert plan.delimiter == sep and plan.decimal == decimal and plan.n_rows == n
    assert plan.raw_features == ("fixed acidity", "town", frame.columns[2], "note")  # a name may hold a comma
    assert any(n.startswith("read as") for n in plan.notes) == (sep != ",")
    y = np.concatenate([load_block(plan, b).y for b in plan.blocks])
    np.testing.assert_array_equal(y, pd.read_csv(tmp_path / name, sep=sep, decimal=decimal)["quality"].to_numpy(float))
    X = np.vstack([load_block(plan, b).X for b in plan.blocks])
    np.testing.assert_array_equal(X[:, 0], frame["fixed acidity"].to_numpy())
    np.testing.assert_array_equal(X[:, 1], frame["town"] == "a;b")  # town=a;b, the first level's indicator
    np.testing.assert_array_equal(X[:, 4], frame.iloc[:, 2].to_numpy())
    assert plan.encoding is not None and plan.encoding.levels[1] == ("a;b", "c|d", "e")


def test_several_text_tables_are_told_to_become_one(tmp_path):
    for name in ("a.tsv", "b.tsv"):
        (tmp_path / name).write_text("a\ty\n1\t2\n")
    with pytest.raises(DataError, match=r"matched 2 file\(s\) of type\(s\) \['\.tsv'\]; use one \.csv file \(or \.tsv, "
                                        r"\.txt.*several text tables: concatenate them"):
        plan_data(DataConfig(source=str(tmp_path / "*.tsv"), target="y"))


@pytest.mark.parametrize("name, fix", [("t.csv.gz", r"decompress it first \(gunzip -k, unzip\)"),
                                       ("t.zip", r"decompress it first"),
                                       ("t.xlsx", r"save the sheet as CSV, or as Parquet"),
                                       ("t.json", r"Parquet file\(s\)\.$")])
def test_a_compressed_table_or_a_spreadsheet_is_told_its_fix(tmp_path, name, fix):
    """The two forms public tables come in most often besides CSV and Parquet are refused with the way to read
    them; another type gets the list of readable ones only."""
    import gzip

    (tmp_path / name).write_bytes(gzip.compress(b"a,y\n1,2\n"))
    with pytest.raises(DataError, match=r"matched 1 file\(s\) of type\(s\) .*" + fix):
        plan_data(DataConfig(source=str(tmp_path / name), target="y"))


def test_the_named_marker_is_the_one_pandas_reads(tmp_path):
    """``1 , ? , 2`` (spaces on both sides): pandas skips the leading space only, so the marker is '? ', and the
    fix names it so; following the fix, the column reads with its gaps."""
    p = tmp_path / "sp.csv"
    p.write_text("a, b, y\n" + "".join(f"{i}, {'?' if i % 5 == 0 else i * 2} , {i % 3}\n" for i in range(30)))
    with pytest.raises(DataError, match=re.escape("holds numbers and '? ' (6 of its first 30 values)")):
        plan_data(DataConfig(source=str(p), target="y"))
    plan = plan_data(DataConfig(source=str(p), target="y", na_values=["? ", "NA"], missing="impute"))
    frame = pd.concat([_read_frame(plan, s) for s in plan.blocks])
    assert frame["b"].isna().tolist() == [i % 5 == 0 for i in range(30)]


def test_the_fixes_named_fit_the_config(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("a,price,e,y\n" + "".join(f"{i},${i}.50,,{i % 3}\n" for i in range(30)))
    with pytest.raises(DataError, match=re.escape("str.replace(r'[$€£¥%,]', '', regex=True)")):
        plan_data(DataConfig(source=str(p), target="y", exclude=["e"]))
    with pytest.raises(DataError, match=re.escape("hold no value in any row, so data.missing: error refuses every "
                                                  "row; remove them from data.features")):
        plan_data(DataConfig(source=str(p), target="y", features=["a", "e"]))


def test_parquet_as_pandas_writes_it(tmp_path):
    """A filtered frame's ``to_parquet`` stores its index ('__index_level_0__'): it was a feature the blocks then
    lacked (pandas' metadata made it the index), failing after the cluster started; it is row labels, left out
    with a note (an explicit exclude still works). Integer column names ('0'…'3' in the file) failed the same
    way. An all-null feature is refused from the footers under data.missing: drop."""
    rng = np.random.default_rng(5)
    d = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    d["y"] = d.a - d.b
    d[d.a > -1.0].to_parquet(tmp_path / "f.parquet")
    kept = int((d.a > -1.0).sum())
    plan = plan_data(DataConfig(source=str(tmp_path / "f.parquet"), target="y", block_rows=50))
    assert plan.feature_names == ("a", "b", "c") and any("'__index_level_0__'" in n for n in plan.notes)
    X, y = _read_all(plan)
    np.testing.assert_array_equal(y, d.y[d.a > -1.0].to_numpy())
    assert X.shape == (kept, 3)
    excluded = plan_data(DataConfig(source=str(tmp_path / "f.parquet"), target="y", exclude=["__index_level_0__"]))
    assert excluded.feature_names == ("a", "b", "c")

    ints = pd.DataFrame(rng.normal(size=(100, 4)))
    ints[4] = 2 * ints[0]
    ints.to_parquet(tmp_path / "i.parquet")
    plan = plan_data(DataConfig(source=str(tmp_path / "i.parquet"), target="4"))
    X, y = _read_all(plan)
    np.testing.assert_array_equal(y, 2 * X[:, 0])

    d.assign(empty=np.nan).to_parquet(tmp_path / "e.parquet", index=False)
    with pytest.raises(DataError, match=re.escape("feature column(s) ['empty'] hold no value in any row, so "
                                                  "data.missing: drop would leave out every row")):
        plan_data(DataConfig(source=str(tmp_path / "e.parquet"), target="y", missing="drop"))


def test_a_partitioned_parquet_folder_is_told_which_glob_reads_it(tmp_path):
    d = pd.DataFrame({"a": np.arange(20.0), "y": np.arange(20.0) * 2})
    for year in (2020, 2021):
        (tmp_path / "sales" / f"year={year}").mkdir(parents=True)
        d.to_parquet(tmp_path / "sales" / f"year={year}" / "part-0.parquet", index=False)
    source = str(tmp_path / "sales")
    with pytest.raises(DataError, match=re.escape("its subfolders hold some (year=2020, year=2021: a partitioned "
                                                  "dataset?), which a glob reads, e.g. data.source: "
                                                  f"'{source}/*/*.parquet'")):
        plan_data(DataConfig(source=source, target="y"))
    assert plan_data(DataConfig(source=f"{source}/*/*.parquet", target="y")).n_rows == 40


def test_a_blank_line_right_after_the_head_does_not_stop_the_look_further(tmp_path):
    """The head scan skips blank lines as pandas does; one at the first line past the head met the look-further
    state before it existed (a NameError), for a column whose head is all gaps."""
    from pipeline.column_kinds import csv_head_kinds

    p = tmp_path / "late.csv"
    p.write_text("a,grp,y\n1,,2\n2,,3\n   \n3,x,4\n4,y,5\n")
    head = csv_head_kinds(str(p), ["a", "grp", "y"], None, n_rows=2)
    assert head.kinds == {"a": "numeric", "grp": "text", "y": "numeric"} and head.empty == ()


_SPELLINGS = ["7", "-1.5e3", ".5", "1.", "+2", "1E+05", " 1", "1 ", "inf", "-Infinity", "1_000", "\uff11\uff12", "1e",
              "e5", "-", "+.e1", "0x10", "1,5", "1\n2", "١٢", "1.2.3", "--1", "1e5.0", "NAN", "Nan"]


@pytest.mark.parametrize("value", _SPELLINGS)
def test_a_head_value_is_numeric_exactly_when_pandas_reads_it_as_a_number(tmp_path, value):
    """The head's kinds (a regular expression over the joined values for plain numbers, one by one otherwise)
    against pandas' CSV reader, which the workers use: a column of the value and a 1 is numeric to both or to
    neither (a text value beside numbers makes pandas' column object)."""
    from pipeline.column_kinds import kind_of_strings

    p = tmp_path / "v.csv"
    pd.DataFrame({"a": [value, "1"]}).to_csv(p, index=False)
    read = pd.read_csv(p, skipinitialspace=True)["a"]
    assert (kind_of_strings([value.strip(" "), "1"]) == "numeric") == (read.dtype.kind in "if"), read.tolist()


def test_a_column_of_numbers_ending_in_a_word_is_told_without_backtracking():
    """The joined-numbers expression first read each number two ways ([0-9]+ \\.? [0-9]*), so a failing match
    (whole numbers, then 'Total') backtracked through every split of every number: minutes on a 1,000-row head
    (a CI run stalled in it). With one parse per number this returns at once; before, it did not return."""
    from pipeline.column_kinds import kind_of_strings

    assert kind_of_strings(["123456"] * 3000 + ["Total"]) == "text"
    assert kind_of_strings(["12.5"] * 3000 + ["1.2.3"]) == "text"
    assert kind_of_strings(["7", "-1.5e3", ".5", "1.", "+2", "1E+05"] * 500) == "numeric"


def test_a_wide_tables_head_is_read_for_at_most_two_million_fields(tmp_path):
    """1,000 rows of 2,500 columns: check-config's type check reads 800 of them (2·10⁶ fields); 100 at least
    (a 500 × 20,000 table's check took 16 s on its 10⁷ fields)."""
    from pipeline.column_kinds import head_rows

    p = tmp_path / "wide.csv"
    width = 2499  # and the target: 2,500 columns
    p.write_text(",".join([*(f"x{j}" for j in range(width)), "y"]) + "\n"
                 + ("0," * width + "1\n") * 1000)
    plan = plan_data(DataConfig(source=str(p), target="y"))
    assert plan.n_features == width and check_head(plan) == 800
    assert head_rows(20_000) == 100 and head_rows(50) == 1000


def test_an_unknown_column_name_gets_the_one_meant_and_a_wide_table_a_short_list() -> None:
    from pipeline.column_kinds import unknown_columns

    said = unknown_columns("data.exclude", ["Departement", "LOTTERY", "zzz"], ["Department", "Lottery", "Crime"],
                           "g.csv")
    assert said == ("data.exclude ['Departement', 'LOTTERY', 'zzz'] are not columns of g.csv; did you mean "
                    "'Department' for 'Departement', 'Lottery' for 'LOTTERY'? Columns are ['Department', 'Lottery', "
                    "'Crime'].")
    wide = [f"gene_{i}" for i in range(20_000)]
    said = unknown_columns("data.target", ["outcome"], wide, "X.parquet")
    assert said.startswith("data.target 'outcome' is not a column of X.parquet; columns are ['gene_0', ")
    assert said.endswith("'gene_29', … (20000 in all)].") and len(said) < 600


def test_a_row_with_more_fields_than_the_header_is_refused_not_shifted(tmp_path):
    """The second probe's row '-0.3801,1,234,-0.2935' (an unquoted '1,234') was read as x2 = 1, y = 234 without a
    word: pandas drops extra fields when it reads some columns only. Refused in the rows the plan reads (before the
    cluster) and in a block past them; a quoted separator and a separator ending every line are not extra fields."""
    rng = np.random.default_rng(0)
    lines = [f"{a:.4f},{b:.4f},{a - b:.4f}" for a, b in rng.normal(size=(1500, 2))]
    for row in (50, 1200):
        bad = lines.copy()
        bad[row] = "-0.3801,1,234,-0.2935"
        (tmp_path / "d.csv").write_text("x1,x2,y\n" + "\n".join(bad) + "\n")
        said = rf"d.csv: row {row} \(counted from 0, header excluded\) has 4 fields, the header 3: .*unquoted"
        if row < 1000:
            with pytest.raises(DataError, match=said):
                plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y"))
        else:
            for features in (None, ["x1"]):  # every column read (pandas refuses the row), or some (counted here)
                plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", features=features,
                                            block_rows=1024))
                load_block(plan, plan.blocks[0])
                with pytest.raises(DataError, match=said):
                    load_block(plan, plan.blocks[1])
    quoted = tmp_path / "q.csv"
    quoted.write_text('x1,town,y\n1,"Paris, France",2\n3,Lyon,4\n' + "".join(f'{i},"a, b",{i}\n' for i in range(1500)))
    plan = plan_data(DataConfig(source=str(quoted), target="y", exclude=["town"], block_rows=1024))
    assert sum(load_block(plan, b).y.size for b in plan.blocks) == 1502
    trailing = tmp_path / "t.csv"
    trailing.write_text("x1,y\n" + "".join(f"{i},{2 * i},\n" for i in range(30)))
    plan = plan_data(DataConfig(source=str(trailing), target="y"))
    np.testing.assert_array_equal(load_block(plan, plan.blocks[0]).y, 2.0 * np.arange(30))


def test_a_table_of_one_row_is_refused_with_a_fix_that_can_be_made(tmp_path):
    """It said "lower folds.k", which is at least 2 (the third probe)."""
    p = tmp_path / "one.csv"
    p.write_text("a,y\n1,2\n")
    with pytest.raises(DataError, match=re.escape("the data have 1 row, and cross-validation needs at least 2 "
                                                  "(folds.k ≥ 2), many more for a useful model; add rows.")):
        check_fold_count(plan_data(DataConfig(source=str(p), target="y"), FoldsConfig(k=2)), 2)


@pytest.mark.parametrize(("data", "group", "key"), [({"weight": "progression"}, None, "data.weight"),
                                                    ({}, "progression", "folds.group"),
                                                    ({"offset": "progression"}, None, "data.offset")])
def test_the_target_cannot_also_be_the_weight_group_or_offset(data, group, key):
    """They were accepted (the fourth probe): the target fitted with itself as its weight or offset."""
    with pytest.raises(DataError, match=re.escape(f"{key} 'progression' is the target column (data.target); name "
                                                  f"another column, or unset {key}.")):
        plan_data(DataConfig(source="bundled:diabetes", **data), FoldsConfig(group=group))


def test_text_in_a_numeric_column_is_named_at_its_row_when_rows_without_a_target_come_before_it(tmp_path):
    """The level scan sets aside rows without a target before it reads the columns; the row it names is still
    the row in the file (counted among the kept rows it named one 10 rows above, a clean row)."""
    from pipeline.levels import scan_block

    rng = np.random.default_rng(0)
    n = 1500  # (the plan reads the first 1,000 rows itself, and would name the text there)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n).astype(object), "y": rng.normal(size=n)})
    df.loc[1210:1219, "y"] = np.nan
    df.loc[1300, "b"] = "oops"
    df.to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", missing="impute", block_rows=500))
    with pytest.raises(DataError, match=r"rows 1000-1499: column 'b' is numeric elsewhere but holds text here "
                                        r"\(e.g. 'oops' at row 1300\)"):
        scan_block(plan, plan.blocks[2])


def test_a_row_with_an_extra_field_is_one_error_without_pandas_warning_first(tmp_path):
    """Reading every column, pandas warned ('Length of header or names does not match ...', two lines on
    stderr before the one-line error of a retrain) and dropped the extra field; now the field count's error
    alone."""
    import warnings

    rng = np.random.default_rng(0)
    lines = pd.DataFrame(rng.normal(size=(1200, 4)), columns=["a", "b", "c", "y"]).to_csv(index=False).splitlines()
    for row in range(1024, 1200):  # appended rows of one more field, from the block's first line on
        lines[row + 1] += ",x"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", block_rows=1024))
    with warnings.catch_warnings(record=True) as seen, pytest.raises(DataError, match=r"row 1024 \(counted from 0, "
                                                                      r"header excluded\) has 5 fields, the header 4"):
        warnings.simplefilter("always")
        _read_frame(plan, plan.blocks[1])
    assert [str(w.message) for w in seen] == []


def test_lines_ending_in_blank_fields_are_read_as_before(tmp_path):
    """A line ending ',,' (blank fields past the header's, as some exports write) is the same row: pandas warns and
    reads it; the warning turned into the field count's error must not refuse it (the review)."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(1200, 4)), columns=["a", "b", "c", "y"])
    lines = df.to_csv(index=False).splitlines()
    for row in range(1024, 1200):
        lines[row + 1] += ",,"
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", block_rows=1024))
    frame = _read_frame(plan, plan.blocks[1])
    np.testing.assert_allclose(frame[["a", "b", "c", "y"]].to_numpy(), df.iloc[1024:].to_numpy(), rtol=1e-15)
