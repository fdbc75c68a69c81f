"""Block records, hold-out membership and block fingerprints of the retrain statistics cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.config import DataConfig, HoldoutConfig
from pipeline.data import plan_data
from pipeline.cv.statcache import (
    BlockRecord,
    DirCache,
    block_fingerprint,
    block_record,
    cache_key,
    heldout_rows,
    record_from_bytes,
    record_to_bytes,
)


def test_heldout_rows_depend_on_the_global_row_only_and_have_the_asked_share():
    whole = heldout_rows(0, 100_000, 0.2, 3)
    parts = np.concatenate([heldout_rows(s, n, 0.2, 3) for s, n in ((0, 777), (777, 50_000), (50_777, 49_223))])
    assert np.array_equal(whole, parts)
    # Binomial(100000, 0.2): sd 126.5 rows; 5 sd
    assert abs(int(whole.sum()) - 20_000) < 5 * np.sqrt(100_000 * 0.2 * 0.8)
    assert not np.array_equal(whole, heldout_rows(0, 100_000, 0.2, 4))  # the seed matters


def test_block_record_matches_numpy_and_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 3)) * [1.0, 10.0, 0.1] + [0.0, 1e6, 5.0]
    y = X @ [1.0, 0.5, -2.0] + rng.standard_normal(1000)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)
    frame.to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", block_rows=400))
    holdout = HoldoutConfig(fraction=0.3, seed=1)
    spec = plan.blocks[1]  # rows 400-799
    rec = block_record(plan, spec, 4, 2, holdout)
    from pipeline.folds import kfold_folds

    rows = slice(400, 800)
    held = heldout_rows(400, 400, 0.3, 1)
    folds = kfold_folds(400, 400, 4, 2)
    Xb, yb = frame[["a", "b", "c"]].to_numpy()[rows], y[rows]
    assert rec.heldout.n_rows == held.sum()
    assert np.allclose(rec.heldout.x_mean, Xb[held].mean(axis=0), rtol=1e-13)
    for f in range(4):
        sel = (folds == f) & ~held
        assert rec.train[f].n_rows == sel.sum()
        xc = Xb[sel] - Xb[sel].mean(axis=0)
        assert np.allclose(rec.train[f].cxx, xc.T @ xc, rtol=1e-10)
        assert rec.train[f].cxy == pytest.approx(xc.T @ (yb[sel] - yb[sel].mean()), rel=1e-10)
    back = record_from_bytes(record_to_bytes(rec))
    assert isinstance(back, BlockRecord)
    for a, b in zip((*rec.train, rec.heldout), (*back.train, back.heldout)):
        for key, arr in a.to_arrays().items():
            assert np.array_equal(arr, b.to_arrays()[key])
    assert record_from_bytes(b"not an npz") is None  # a damaged entry is a cache miss
    cache = DirCache(tmp_path / "cache")
    assert cache.get("k") is None
    cache.put("k", record_to_bytes(rec))
    assert cache.get("k") == record_to_bytes(rec)


@pytest.mark.parametrize("missing", ["drop", "impute"])
def test_block_record_of_a_block_with_rows_left_out_keeps_each_rows_fold_and_hold_out(tmp_path, missing):
    """Rows left out (a NaN feature under drop, a missing target under either) keep the others' hold-out, which
    follows the row's index in the source, and the kept rows are dealt to folds numbered among themselves, as
    the sweep's pass deals them: a retrain of such a table failed with an IndexError (the labels of all rows
    against the kept rows' values)."""
    from pipeline.folds import kfold_folds

    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 3))
    y = X @ [1.0, 0.5, -2.0] + rng.standard_normal(400)
    X[[5, 77, 210], 1] = np.nan
    y[[33, 300]] = np.nan
    pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", missing=missing))
    if missing == "impute":  # the encoding's means, as the scan finds them
        from pipeline.levels import encoding_from_scan, merge_scans, scan_block

        plan = plan.with_encoding(encoding_from_scan(plan, merge_scans([scan_block(plan, b) for b in plan.blocks])))
    rec = block_record(plan, plan.blocks[0], 4, 2, HoldoutConfig(fraction=0.3, seed=1))
    kept = np.isfinite(y) & (np.isfinite(X).all(axis=1) if missing == "drop" else True)
    held, folds = heldout_rows(0, 400, 0.3, 1), np.full(400, -1)
    folds[kept] = kfold_folds(0, int(kept.sum()), 4, 2)  # the block's kept rows numbered 0, 1, ... among themselves
    Xf = np.where(np.isnan(X), np.nanmean(X[np.isfinite(y)], axis=0), X)  # (impute: the kept rows' means)
    assert rec.heldout.n_rows == (held & kept).sum()
    np.testing.assert_allclose(rec.heldout.y_mean, y[held & kept].mean(), rtol=1e-13)
    for f in range(4):
        sel = (folds == f) & ~held & kept
        assert rec.train[f].n_rows == sel.sum()
        np.testing.assert_allclose(rec.train[f].x_mean[:3], Xf[sel].mean(axis=0), rtol=1e-12)  # (then: gap columns)


def test_csv_block_fingerprints_change_only_where_the_bytes_change(tmp_path):
    frame = pd.DataFrame({"a": np.arange(1000.0), "y": np.arange(1000.0) * 2})
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = DataConfig(source=str(tmp_path / "d.csv"), target="y", block_rows=300)
    before = plan_data(cfg)
    fps = [block_fingerprint(before, s) for s in before.blocks]
    assert len(set(fps)) == len(fps) == 4
    frame.loc[450, "a"] = -1.0  # inside block 1 (rows 300-599)
    frame.to_csv(tmp_path / "d.csv", index=False)
    after = plan_data(cfg)
    fps2 = [block_fingerprint(after, s) for s in after.blocks]
    assert [a == b for a, b in zip(fps, fps2)] == [True, False, True, True]
    # the cache key also changes with what the record depends on, not only with the bytes
    h = HoldoutConfig()
    spec = after.blocks[0]
    keys = {cache_key(after, spec, fps2[0], 5, 0, h), cache_key(after, spec, fps2[0], 4, 0, h),
            cache_key(after, spec, fps2[0], 5, 1, h), cache_key(after, spec, fps2[0], 5, 0, HoldoutConfig(seed=1))}
    assert len(keys) == 4
