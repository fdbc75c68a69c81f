"""The rows engine on the cluster's side: the engine choice, the rows and their folds, fold scores, sweeps.

The strongest check is the cross-engine one: on tall data where both engines
apply, every number the sweep uses (held-out and training errors per fold,
the path, the bounds, the refit, the column notes) must agree between the
Gram engine (statistics) and the rows engine (rows), computed independently.
On wide data, where only the rows engine runs, every trial's CV error is
compared with scikit-learn's on the same folds.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import optuna
import pytest
import scipy.sparse as sp
from sklearn.linear_model import ElasticNet, Lasso, Ridge

from pipeline.candidate import Candidate
from pipeline.config import DataConfig, FoldsConfig, HoldoutConfig, ModelConfig, load_config
from pipeline.cv.fold_models import make_fold_models
from pipeline.cv.passes import block_pass, finish_pass, merge_block_passes, pass_summary
from pipeline.cv.path import coefficient_path
from pipeline.cv.refit import pass_bounds, refit_pass
from pipeline.cv.row_models import (
    heldout_mse,
    make_row_fold_models,
    retrain_facts,
    row_bounds,
    row_coefficient_path,
    row_refit,
    row_summary,
)
from pipeline.cv.rows import HELD_OUT, load_rows
from pipeline.cv import scoring
from pipeline.cv.scoring import PathSpec
from pipeline.cv.statcache import heldout_rows
from pipeline.data import plan_data
from pipeline.levels import encoding_from_scan, merge_scans, scan_block
from pipeline.engine import choose_engine
from pipeline.errors import ConfigError, DataError
from pipeline.folds import kfold_folds
from pipeline.sweep import execute_sweep

GiB = 2**30


# ------------------------------------------------------------------ the choice
def test_auto_takes_gram_only_for_dense_tall_data_whose_grams_fit():
    tall = choose_engine("auto", sparse=False, n_features=100, n_train=800_000, k=5, memory=4 * GiB)
    assert tall.name == "gram" and "p = 100 ≤ n = 800,000" in tall.reason
    wide = choose_engine("auto", sparse=False, n_features=20_000, n_train=2_000, k=5, memory=64 * GiB)
    assert wide.line() == "engine: rows (p = 20,000 > n = 2,000; a fold Gram would take 3.2 GB)"
    sparse = choose_engine("auto", sparse=True, n_features=50, n_train=10_000, k=5, memory=4 * GiB)
    assert sparse.name == "rows" and sparse.reason.startswith("the source is sparse")
    # p ≤ n, but 5 Grams of 8,000² take 2.56 GB > ¼ of 8 GiB
    big = choose_engine("auto", sparse=False, n_features=8_000, n_train=1_000_000, k=5, memory=8 * GiB)
    assert big.name == "rows" and "5 fold Grams would take 2.6 GB, more than a quarter" in big.reason
    assert choose_engine("rows", sparse=False, n_features=3, n_train=100, k=5, memory=GiB).name == "rows"
    assert choose_engine("gram", sparse=True, n_features=3, n_train=2, k=5, memory=GiB).name == "gram"


def test_forcing_gram_on_wide_data_says_that_auto_would_choose_the_rows():
    """A 200 × 5,000 binomial sweep with model.engine: gram ran for over 20 minutes (the fifth probe), where auto
    took 21 s; the engine line said only "requested"."""
    wide = choose_engine("gram", sparse=False, n_features=5_000, n_train=160, k=5, memory=64 * GiB)
    assert wide.line() == ("engine: gram (requested; a fold Gram takes 200.0 MB; auto would choose rows here (p = "
                           "5,000 > n = 160), far faster: set model.engine: auto)")
    tall = choose_engine("gram", sparse=False, n_features=100, n_train=800_000, k=5, memory=4 * GiB)
    assert tall.line() == "engine: gram (requested; a fold Gram takes 80.0 KB)"
    rows = choose_engine("rows", sparse=False, n_features=1_000, n_train=40_000, k=5, memory=8 * GiB)
    assert rows.line() == ("engine: rows (requested; auto would choose gram here (p = 1,000 ≤ n = 40,000; 5 fold "
                           "Grams take 40.0 MB), far faster on tall data: set model.engine: auto)")
    assert choose_engine("rows", sparse=False, n_features=5_000, n_train=160, k=5, memory=GiB).line() == (
        "engine: rows (requested)")


def test_forcing_gram_that_cannot_fit_is_refused_naming_the_fix():
    with pytest.raises(ConfigError, match=r"model.engine: gram cannot run: the 5 fold Grams of p = 20,000 features "
                                          r"take 16.0 GB, .* \(48.0 GB\), more than .* use model.engine: rows"):
        choose_engine("gram", sparse=False, n_features=20_000, n_train=2_000, k=5, memory=8 * GiB)
    # 160 MB of Grams in 400 MB workers: the merge's three sets (480 MB) killed them; 3 × 160 MB fits in 500 MB
    with pytest.raises(ConfigError, match=r"3 such sets \(480.0 MB\), more than .* \(400.0 MB\)"):
        choose_engine("gram", sparse=False, n_features=2_000, n_train=16_000, k=5, memory=400_000_000)
    assert choose_engine("gram", sparse=False, n_features=2_000, n_train=16_000, k=5, memory=500_000_000).name == "gram"
    with pytest.raises(ConfigError, match="must be one of auto, gram, rows"):
        choose_engine("fast", sparse=False, n_features=3, n_train=100, k=5, memory=GiB)


def test_auto_takes_the_grams_when_the_rows_would_not_fit_a_worker():
    """10⁷ × 5,000 in 4 GiB workers (3.93 GB left for data): the 5 fold Grams (1 GB) exceed auto's quarter, but
    the rows engine would keep 400 GB on each worker; auto chose rows, and the rows were refused. The Grams it
    is, as long as the pass can hold them; a forced gram no longer advises auto's rows there."""
    room = int(0.95 * 4 * GiB) - 150_000_000
    rows = 8 * 5_000 * 10**7
    auto = choose_engine("auto", sparse=False, n_features=5_000, n_train=8 * 10**6, k=5, memory=room, rows_bytes=rows)
    assert auto.name == "gram"
    assert auto.reason.startswith("the rows engine's copy of every row (400.0 GB) would not fit")
    forced = choose_engine("gram", sparse=False, n_features=5_000, n_train=8 * 10**6, k=5, memory=room,
                           rows_bytes=rows)
    assert "auto would choose rows" not in forced.reason
    assert choose_engine("auto", sparse=False, n_features=5_000, n_train=8 * 10**6, k=5, memory=room,
                         rows_bytes=room).name == "rows"  # rows that fit: as before
    assert choose_engine("auto", sparse=False, n_features=20_000, n_train=8 * 10**6, k=5, memory=room,
                         rows_bytes=rows).name == "rows"  # Grams that cannot be held either: rows, then refused


def test_a_group_pass_holds_a_record_per_group_and_a_killed_rows_worker_names_its_copy():
    from pipeline.cv.engines import pass_records
    from pipeline.engine import killed_in_pass

    plan = plan_data(DataConfig(block_rows=100), FoldsConfig())
    assert pass_records(plan, 5) == 5
    grouped = dataclasses.replace(plan, group="sex")
    assert pass_records(grouped, 5) == 4096  # p = 10: 4,096 group records of 800 B fit units_cap's 64 MB
    said = killed_in_pass("load_rows-x", 100, 2_000, 5, 600_000_000, gram=False, rows_bytes=320_000_000)
    assert said.startswith("the workers running the data pass's task 'load_rows-x' died each time it was tried, "
                           "most likely out of memory (a worker's limit: 600.0 MB; every row, kept on each worker, "
                           "takes 320.0 MB; a block of 100 rows × 2,000 columns takes 1.6 MB); give the workers "
                           "more memory (cluster.memory_limit)"), said


def test_workers_without_a_memory_limit_get_no_memory_check_nor_a_limits_words():
    """memory_limit 0: no nanny kills a worker, and the driver's memory says nothing of theirs. A 2·10⁶ × 2,000
    block (32 GB) is refused for 1 GB workers, passed for unlimited ones, whose engine line speaks of the
    available memory, not of 'a worker's limit'."""
    from distributed import Client, LocalCluster

    from pipeline.cv.engines import choose_sweep_engine

    plan = plan_data(DataConfig(source="synthetic", synthetic=dict(n_rows=2_000_000, n_features=2_000),
                                block_rows=2_000_000))
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, memory_limit=0) as cluster, \
            Client(cluster) as client:
        choice = choose_sweep_engine("auto", client, plan, 5)
        assert choice.name == "gram" and "worker's limit" not in choice.reason
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None, memory_limit="1GB") as cluster, \
            Client(cluster) as client:
        with pytest.raises(ConfigError, match=r"32.0 GB as float64, .* more than the smallest worker's memory limit "
                                              r"\(1.0 GB\) leaves for data \(800.0 MB\); lower data.block_rows to "
                                              r"20,000 or fewer"):
            choose_sweep_engine("auto", client, plan, 5)


def test_a_block_too_big_for_the_workers_is_refused_naming_the_block_rows_that_fit():
    """20,000 × 2,000 (320 MB as float64) with 5 fold Grams of 2,000² (160 MB) in 600 MB workers: killed four
    times over before; now refused with the block size that fits, which passes the same check (and ran: a
    20,000 × 2,000 synthetic sweep on Grams in 600 MB workers with data.block_rows 6,500)."""
    from pipeline.engine import check_block_memory

    grams = 5 * 8 * 2_000 ** 2
    with pytest.raises(ConfigError, match=r"a block of 20,000 rows × 2,000 columns takes 320.0 MB as float64, twice "
                                          r"that while it is read beside the 5 fold Grams \(160.0 MB\): more than "
                                          r".* \(600.0 MB\) leaves for data \(420.0 MB\); lower data.block_rows to "
                                          r"8,100 or fewer"):
        check_block_memory(20_000, 2_000, 600_000_000, grams, "the 5 fold Grams")
    check_block_memory(8_100, 2_000, 600_000_000, grams, "the 5 fold Grams")
    check_block_memory(20_000, 2_000, 600_000_000 + int((2 * 8 * 12_500 * 2_000) / 0.95) + 1, grams, "Grams")
    with pytest.raises(ConfigError, match=r"the rows engine's copy of every row takes 418.0 MB on a worker, more "
                                          r"than .* \(600.0 MB\) leaves for data \(420.0 MB\) beside the rows being "
                                          r"read; give the workers at least 867.4 MB each"):  # not even 100 rows fit
        check_block_memory(8_000, 2_000, 600_000_000, 418_000_000, "the rows engine's copy of every row")
    check_block_memory(8_000, 2_000, 867_400_000, 418_000_000, "the rows engine's copy of every row")  # the least
    check_block_memory(65_536, 10, 200_000_000, 0, "")  # a small table in small workers


def test_the_merge_fan_in_fits_the_workers_memory():
    from pipeline.engine import merge_fan_in

    # K fold Grams at p = 1,500: 90 MB; 1,106 MB workers leave 900 MB for data: 10 sets, merges of 4 (and the sum)
    assert merge_fan_in(600_000_000, 5, 1_500) == 2  # 8 parts (810 MB with the sum) killed 600 MB workers
    assert merge_fan_in(1_106_000_000, 5, 1_500) == 4 and merge_fan_in(64 * GiB, 5, 1_500) == 8
    assert merge_fan_in(100_000_000, 5, 20_000) == 2  # never below a pair


def test_workers_killed_in_the_data_pass_are_said_in_words(tmp_path):
    """A real KilledWorker (a task that ends its worker's process, as the nanny does past the memory limit) on a
    real two-process cluster, seen where the sweep waits for its data pass."""
    import os
    from types import SimpleNamespace

    import dask
    from distributed import Client, LocalCluster

    from pipeline.engine import EngineChoice
    from pipeline.errors import SweepError
    from pipeline.sweep import _wait_pass

    def die():
        os._exit(1)

    plan = plan_data(DataConfig(block_rows=100), FoldsConfig())
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, memory_limit="1GB") as cluster, \
            Client(cluster) as client:
        run = SimpleNamespace(plan=plan, engine=EngineChoice("gram", "test"), cfg=load_config(None, []), client=client)
        with pytest.raises(SweepError) as info:
            _wait_pass(client.submit(die, key="block-0-test", pure=False), run, lambda: None)
    said = str(info.value)
    assert said.startswith("the workers running the data pass's task 'block-0-test' died each time it was tried, "
                           "most likely out of memory (a worker's limit: 1.0 GB; a block of 100 rows × 10 columns "
                           "takes 8.0 KB as float64; its 5 fold Grams take 4.0 KB); lower data.block_rows, use "
                           "model.engine: rows, or give the workers more memory"), said


# ------------------------------------------------------------------ both engines, same numbers
def _both_engines(plan, k, seed):
    passes = finish_pass(merge_block_passes(*[block_pass(plan, s, k, seed) for s in plan.blocks], fold_seed=seed),
                         k, seed)
    return passes, load_rows(plan, k, seed)


@pytest.fixture(scope="module")
def diabetes_both():
    plan = plan_data(DataConfig(block_rows=100), FoldsConfig())  # bundled diabetes, 5 blocks
    return plan, *_both_engines(plan, 5, 3)


def test_the_rows_carry_the_data_pass_folds(diabetes_both, diabetes):
    plan, passes, rows = diabetes_both
    X, y = diabetes
    np.testing.assert_array_equal(rows.fold, kfold_folds(0, len(y), 5, 3))
    np.testing.assert_array_equal(rows.X, X)
    assert rows.X.flags.f_contiguous
    assert [s.n_rows for s in passes.fold_stats] == [int((rows.fold == f).sum()) for f in range(5)]


def test_both_engines_deal_the_kept_rows_alike_when_blocks_are_read_in_pieces(tmp_path, monkeypatch):
    """data.missing: drop, 60-row blocks that the rows engine reads in pieces of 13: both number each block's
    kept rows on from its first row (pipeline.folds.kept_row_folds), whatever pieces they are read in."""
    import pipeline.cv.rows as rows_module

    rng = np.random.default_rng(4)
    n = 230
    X, y = rng.normal(size=(n, 3)), rng.normal(size=n)
    X[rng.random(n) < 0.35, 0] = np.nan
    y[rng.random(n) < 0.1] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), missing="drop",
                                block_rows=60), FoldsConfig())
    monkeypatch.setattr(rows_module, "rows_per_chunk", lambda n_columns: 13)
    passes, rows = _both_engines(plan, 5, 3)
    keep = np.isfinite(X).all(axis=1) & np.isfinite(y)
    expected = np.concatenate([kfold_folds(s, int(keep[s:s + 60].sum()), 5, 3) for s in range(0, n, 60)])
    np.testing.assert_array_equal(rows.fold, expected)
    np.testing.assert_array_equal(rows.y, y[keep])
    assert [s.n_rows for s in passes.fold_stats] == np.bincount(expected, minlength=5).tolist()
    for f, st in enumerate(passes.fold_stats):  # the same rows, not only as many: each fold's target mean
        assert st.y_mean == pytest.approx(y[keep][expected == f].mean(), rel=1e-12)


@pytest.mark.parametrize("model", [ModelConfig(), ModelConfig(standardize=False), ModelConfig(fit_intercept=False)],
                         ids=["standardized", "raw", "no-intercept"])
def test_fold_scores_paths_bounds_and_refit_agree_across_engines(diabetes_both, model):
    plan, passes, rows = diabetes_both
    gram = make_fold_models(passes, range(5), fit_intercept=model.fit_intercept, standardize=model.standardize)
    row = make_row_fold_models(rows, range(5), fit_intercept=model.fit_intercept, standardize=model.standardize)
    gb, rb = pass_bounds(passes, model), row_bounds(rows, model)
    assert rb["lambda1_max"] == pytest.approx(gb["lambda1_max"], rel=1e-12)
    assert rb["e_max"] == pytest.approx(gb["e_max"], rel=1e-9)
    lam = gb["lambda1_max"]
    cands = [Candidate(0, "l1", 0.1 * lam, 0.0), Candidate(1, "elasticnet", 0.01 * lam, 0.05 * lam),
             Candidate(2, "l2", 0.0, 1e-3 * gb["e_max"]), Candidate(3, "l1", 1e-4 * lam, 0.0)]
    for g, r in zip(gram, row):
        for c in cands:
            a, b = g.score(c, 1e-12), r.score(c, 1e-12)
            assert (a.fold, a.n_nonzero) == (b.fold, b.n_nonzero), c
            for key in ("heldout_mse", "heldout_r2", "train_mse"):
                assert getattr(b, key) == pytest.approx(getattr(a, key), rel=1e-8), (c, key)
    spec = PathSpec("elasticnet", 0.5, tuple(np.geomspace(2 * lam, 1e-3 * lam, 12)))
    for g, r in zip(gram, row):
        a, b = g.path(spec, 1e-12), r.path(spec, 1e-12)
        np.testing.assert_allclose(b.heldout_mse, a.heldout_mse, rtol=1e-8)
    np.testing.assert_allclose(row_coefficient_path(rows, spec, model), coefficient_path(passes, spec, model),
                               rtol=1e-7, atol=1e-9 * lam)
    for c in cands:
        ga, ra = refit_pass(passes, c, plan.feature_names, model), row_refit(rows, c, plan.feature_names, model)
        np.testing.assert_allclose(ra.coef * ga.x_scale, ga.coef * ga.x_scale, rtol=1e-8, atol=1e-8)
        assert ra.intercept == pytest.approx(ga.intercept, rel=1e-9)


def test_squared_loss_paths_stop_where_the_training_fit_stops_changing(diabetes_both, monkeypatch):
    """glmnet's ``fdev`` rule ends the l1 path of both engines at the same point on the diabetes data: the first
    point (after glmnet's 5) whose training R² rose by less than 1e-5 of itself (its ``elnet``: ``rsq - rsq0 <
    sml * rsq``). The path run to its end has the same first points and nearly the same held-out minimum."""
    plan, passes, rows = diabetes_both
    gram = make_fold_models(passes, range(5), fit_intercept=True, standardize=True)
    row = make_row_fold_models(rows, range(5), fit_intercept=True, standardize=True)
    lam = pass_bounds(passes, ModelConfig())["lambda1_max"]
    spec = PathSpec("l1", 1.0, tuple(np.geomspace(2 * lam, 2e-6 * lam, 100)))
    cut = [(g.path(spec, 1e-12), r.path(spec, 1e-12)) for g, r in zip(gram, row)]
    monkeypatch.setattr(scoring, "PATH_STOP_FDEV", 0.0)
    for (a, b), g, r in zip(cut, gram, row):
        m = len(a.heldout_mse)
        assert len(b.heldout_mse) == m < 100
        r2 = 1.0 - np.asarray(a.train_mse) / a.train_mse[0]  # the first point (above λ1_max) is the null model
        rises = np.diff(r2) < 1e-5 * r2[1:]  # rises[i]: point i + 1 adds less than 1e-5 of its R²
        assert m - 1 == next(i + 1 for i in range(4, len(rises)) if rises[i])
        full = g.path(spec, 1e-12)
        assert len(full.heldout_mse) > m + 10
        np.testing.assert_allclose(a.heldout_mse, full.heldout_mse[:m], rtol=1e-10)
        # the points past the cut lower a fold's held-out minimum by at most 0.2% here (0.08% and 0.14% on folds 1
        # and 2, where 442 rows leave the minimum near least squares), while the CV MSE's standard error is about
        # 5% of it: as for cv.glmnet, which cuts its paths by the same rule
        assert min(a.heldout_mse) <= min(full.heldout_mse) * (1 + 2e-3)
        longer = r.path(PathSpec("l1", 1.0, spec.strengths, min_points=m + 5), 1e-12)
        assert len(longer.heldout_mse) >= m + 5  # a path examining a later trial reaches its strength


def test_summaries_agree_across_engines(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    X[:, 3] = 2.5  # constant
    X[:, 5] = X[:, 1]  # identical to column 1
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", X[:, 0] + rng.normal(size=300))
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=64))
    passes, rows = _both_engines(plan, 5, 0)
    a, b = pass_summary(passes, plan.feature_names), row_summary(rows, plan.feature_names)
    for key in ("n_rows", "fold_rows", "fold_weight", "n_groups", "constant_columns", "duplicate_columns", "notes"):
        assert a[key] == b[key], key
    assert b["constant_columns"] == ["x3"] and b["duplicate_columns"] == [["x1", "x5"]]


def test_group_folds_and_retrain_holdout_on_rows(tmp_path):
    rng = np.random.default_rng(1)
    n = 200
    np.save(tmp_path / "X.npy", rng.normal(size=(n, 4)))
    np.save(tmp_path / "y.npy", rng.normal(size=n))
    np.save(tmp_path / "g.npy", rng.integers(0, 23, n))
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=50),
                     FoldsConfig(group=str(tmp_path / "g.npy")))
    passes, rows = _both_engines(plan, 4, 2)
    groups = np.load(tmp_path / "g.npy")
    for g in np.unique(groups):  # every group in one fold
        assert np.unique(rows.fold[groups == g]).size == 1
    assert [s.n_rows for s in passes.fold_stats] == [int((rows.fold == f).sum()) for f in range(4)]

    plain = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=50))
    held = load_rows(plain, 4, 2, HoldoutConfig(fraction=0.25, seed=9))
    expect = heldout_rows(0, n, 0.25, 9)
    np.testing.assert_array_equal(held.fold == HELD_OUT, expect)
    facts = retrain_facts(held)
    assert facts["n_heldout"] == expect.sum() and facts["n_train"] == n - expect.sum()
    coef, b = np.arange(4.0), 0.5
    X, y = np.load(tmp_path / "X.npy"), np.load(tmp_path / "y.npy")
    assert heldout_mse(held, [(coef, b, None)])[0] == pytest.approx(np.mean((y[expect] - X[expect] @ coef - b) ** 2),
                                                              rel=1e-12)


# ------------------------------------------------------------------ sparse and wide: sweeps
def _sparse_wide(tmp_path, n=120, p=600):
    """Sparse (10% stored), wide, in general position: at this density no two columns share a pattern of
    one or two entries in a fold's training rows, so even the lasso's solution is unique."""
    rng = np.random.default_rng(4)
    X = sp.random(n, p, density=0.1, format="csr", random_state=5, data_rvs=lambda m: rng.normal(1.0, 2.0, m))
    beta = np.zeros(p)
    beta[:10] = rng.normal(0, 3, 10)
    y = X @ beta + 2.0 + 0.5 * rng.normal(size=n)
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", y)
    return X, y


def _reference_fit(X, y, train, penalty, lam1, lam2):
    """scikit-learn's fit on the rows ``train``, glmnet's standardization from those rows; returns its predictor."""
    mean, sd = X[train].mean(axis=0), X[train].std(axis=0)
    live = sd > 0
    if penalty == "l2":
        est = Ridge(alpha=train.sum() * lam2, solver="svd")
    elif penalty == "l1":
        est = Lasso(alpha=lam1, tol=1e-12, max_iter=1_000_000)
    else:
        est = ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), tol=1e-12, max_iter=1_000_000)
    est.fit((X[train][:, live] - mean[live]) / sd[live], y[train])
    return lambda Z: est.predict((Z[:, live] - mean[live]) / sd[live])


def _reference_cv_mse(X, y, folds, penalty, lam1, lam2):
    """Mean held-out MSE over the folds (scikit-learn fits on each fold's training rows)."""
    errs = []
    for f in np.unique(folds):
        predict = _reference_fit(X, y, folds != f, penalty, lam1, lam2)
        errs.append(np.mean((predict(X[folds == f]) - y[folds == f]) ** 2))
    return float(np.mean(errs))


def _config(tmp_path, *extra):
    return load_config(None, [
        f"data.source={tmp_path}/X.npz", f"data.target={tmp_path}/y.npy", "search.n_trials=10",
        f"search.storage=sqlite:///{tmp_path}/optuna.db", "search.study_name=wide",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=wide",
        "tracking.registered_model=wide-model", "cluster.dashboard_address=null", *extra])


def test_sparse_wide_sweep_runs_on_rows_and_matches_sklearn(tmp_path):
    X, y = _sparse_wide(tmp_path)
    cfg = _config(tmp_path)
    lines: list[str] = []
    summary = execute_sweep(cfg, echo=lines.append, progress=False)
    assert summary["engine"] == "rows" and "the source is sparse" in summary["engine_reason"]
    assert any(line.startswith("engine: rows (the source is sparse; p = 600 > n = 96") for line in lines), lines
    study = optuna.load_study(study_name="wide", storage=cfg.search.storage)
    folds = kfold_folds(0, len(y), 5, 0)
    Xd = X.toarray()
    for t in study.trials:
        p = t.params
        ref = _reference_cv_mse(Xd, y, folds, p["penalty"], p.get("lambda1", 0.0), p.get("lambda2", 0.0))
        assert t.value == pytest.approx(ref, rel=1e-7), (t.number, p)

    import mlflow
    import pandas as pd

    client = mlflow.MlflowClient(cfg.tracking.uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["engine"] == "rows" and run.data.params["model.engine"] == "auto"
    # the registered model is the selected point fitted on all rows: scikit-learn's fit of it predicts the same
    sel = summary["selected"]
    mlflow.set_tracking_uri(cfg.tracking.uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = mlflow.pyfunc.load_model(summary["model_uri"])
    frame = pd.DataFrame(Xd, columns=[f"x{j}" for j in range(Xd.shape[1])])
    ours = np.asarray(loaded.predict(frame))
    everything = np.zeros(len(y))  # one "fold" holding no row: the reference fits all rows
    ref = _reference_fit(Xd, y, everything == 0, sel["penalty"], sel["lambda1"], sel["lambda2"])
    np.testing.assert_allclose(ours, ref(Xd), rtol=1e-6, atol=1e-6 * np.std(y))


def test_forced_gram_that_cannot_fit_fails_before_any_work(tmp_path):
    _sparse_wide(tmp_path, n=60, p=3000)  # 5 Grams of 3000²: 360 MB > a 200 MB worker
    cfg = _config(tmp_path, "model.engine=gram", "cluster.memory_limit=200MB")
    with pytest.raises(ConfigError, match="model.engine: gram cannot run"):
        execute_sweep(cfg, echo=lambda _l: None, progress=False)
    study = optuna.load_study(study_name="wide", storage=cfg.search.storage)
    assert study.trials == []
    import mlflow

    exp = mlflow.MlflowClient(cfg.tracking.uri).get_experiment_by_name("wide")
    assert exp is None or not mlflow.MlflowClient(cfg.tracking.uri).search_runs([exp.experiment_id])


@pytest.mark.parametrize("content,fragment", [
    ("coo", "must hold a CSR or CSC matrix"),
    ("short-y", "must be 1-D with one value per row of X"),
    ("no-target", "data.target must name the y .npy file"),
])
def test_bad_sparse_sources_are_refused_naming_the_fix(tmp_path, content, fragment):
    X = sp.random(20, 30, density=0.2, random_state=0)
    sp.save_npz(tmp_path / "X.npz", X.tocoo() if content == "coo" else X.tocsr())
    np.save(tmp_path / "y.npy", np.ones(19 if content == "short-y" else 20))
    target = None if content == "no-target" else str(tmp_path / "y.npy")
    with pytest.raises(DataError, match=fragment):
        plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=target))


def test_a_tall_sparse_sources_statistics_pass_matches_sklearn(tmp_path):
    """A tall sparse ``.npz`` (p ≤ n: the Gram engine) is reduced block by block as CSR, at the cost of its
    non-zeros (:mod:`pipeline.solvers.sparse_stats`); every fold's held-out MSE equals scikit-learn's fit on
    the fold's rows, for the three penalties. Columns of 5% to 90% stored entries, some with mean 100: both
    sides of the dense/sparse split."""
    rng = np.random.default_rng(6)
    n, p = 900, 24
    density = np.linspace(0.05, 0.9, p)
    X = np.where(rng.random((n, p)) < density, rng.normal(1.0, 2.0, (n, p)) + 100.0 * (np.arange(p) % 3 == 0), 0.0)
    y = X[:, :6] @ rng.normal(0, 1, 6) + rng.normal(size=n)
    sp.save_npz(tmp_path / "X.npz", sp.csr_matrix(X))
    np.save(tmp_path / "y.npy", y)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=str(tmp_path / "y.npy"), block_rows=256))
    assert plan.sparse and len(plan.blocks) == 4
    passes = finish_pass(merge_block_passes(*(block_pass(plan, b, 5, 0) for b in plan.blocks)), 5, 0)
    models = make_fold_models(passes, range(5), fit_intercept=True, standardize=True)
    folds = kfold_folds(0, n, 5, 0)
    for penalty, lam1, lam2 in (("l1", 0.05, 0.0), ("l2", 0.0, 0.01), ("elasticnet", 0.03, 0.02)):
        c = Candidate(0, penalty, lam1, lam2)
        ours = np.mean([m.score(c, 1e-12).heldout_mse for m in models])
        assert ours == pytest.approx(_reference_cv_mse(X, y, folds, penalty, lam1, lam2), rel=1e-8), penalty


@pytest.mark.parametrize("missing", ["error", "drop"])
def test_a_nan_stored_in_a_sparse_source_names_its_row_or_drops_it(tmp_path, missing):
    """A non-finite stored value marks its row, as a NaN does in a dense block: refused naming the row, or
    (data.missing: drop) the row is left out and the others kept as they are, still sparse."""
    from pipeline.data import load_block

    X = sp.random(12, 30, density=0.3, random_state=1, format="csr")
    X.data[X.indptr[7]] = np.nan  # the first stored value of row 7
    sp.save_npz(tmp_path / "X.npz", X)
    np.save(tmp_path / "y.npy", np.arange(12.0))
    column = f"x{X.indices[X.indptr[7]]}"
    if missing == "error":  # found in the first rows by the plan (check-config too), naming the column
        with pytest.raises(DataError, match=rf"NaN or inf in column '{column}' at row 7 \(rows counted from 0\)"):
            plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=str(tmp_path / "y.npy")))
        # past the first rows, by the block that holds it: the rows and, from the stored values, the column
        plan = dataclasses.replace(plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=str(tmp_path / "y.npy"),
                                                        missing="drop")), missing="error")
        with pytest.raises(DataError, match=rf"NaN or inf in rows 7 \(rows counted from 0\), column\(s\) "
                                            rf"\['{column}'\]"):
            load_block(plan, plan.blocks[0], sparse=True)
        return
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=str(tmp_path / "y.npy"), missing=missing))
    block = load_block(plan, plan.blocks[0], sparse=True)
    assert sp.issparse(block.X) and block.X.shape == (11, 30)
    np.testing.assert_array_equal(block.y, np.delete(np.arange(12.0), 7))
    np.testing.assert_array_equal(block.X.toarray(), np.delete(X.toarray(), 7, axis=0))


def test_a_fold_path_stops_once_its_heldout_error_has_turned_and_keeps_the_minimum(tmp_path, monkeypatch):
    """On wide sparse data a lasso path down to 1e-3·λ1_max overfits: each fold's path stops once its
    held-out MSE is 10% above its lowest, and what it computed is the uncut path's beginning (same
    numbers), holding the uncut mean curve's minimum."""
    from pipeline.cv import scoring
    from pipeline.cv.rows import load_rows

    _sparse_wide(tmp_path)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npz"), target=str(tmp_path / "y.npy")), FoldsConfig())
    rows = load_rows(plan, 5, 0)
    spec = PathSpec("l1", 1.0, tuple(np.geomspace(1.0, 1e-3, 60) * row_bounds(rows, ModelConfig())["lambda1_max"]))
    cut = [m.path(spec, 1e-10) for m in make_row_fold_models(rows, range(5), fit_intercept=True, standardize=True)]
    monkeypatch.setattr(scoring, "PATH_STOP_RISE", float("inf"))
    full = [m.path(spec, 1e-10) for m in make_row_fold_models(rows, range(5), fit_intercept=True, standardize=True)]
    assert sum(len(c.heldout_mse) for c in cut) < sum(len(f.heldout_mse) for f in full)  # (full: saturation only)
    for c, f in zip(cut, full):
        m = len(c.heldout_mse)
        np.testing.assert_allclose(c.heldout_mse, f.heldout_mse[:m], rtol=1e-9)
        assert c.heldout_mse[-1] > 1.1 * min(c.heldout_mse) or m == len(f.heldout_mse)
    shortest, common = min(len(c.heldout_mse) for c in cut), min(len(f.heldout_mse) for f in full)
    mean_full = np.mean([f.heldout_mse[:common] for f in full], axis=0)
    assert int(np.argmin(mean_full)) < shortest


@pytest.mark.parametrize("missing", ["drop", "impute"])
def test_the_note_on_rows_left_out_names_the_missing_mode_on_both_engines(tmp_path, missing):
    """Rows missing only their target are left out under drop and under impute; the note says which rule did it
    (a drop-mode note once read "never imputed" whenever no feature was missing)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 3))
    y = X[:, 0] + rng.normal(size=120)
    y[[5, 77]] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=50,
                                missing=missing))
    if plan.needs_scan:  # impute: the gaps are found by the scan, as a sweep finds them
        plan = plan.with_encoding(encoding_from_scan(plan, merge_scans([scan_block(plan, s) for s in plan.blocks])))
    passes, rows = _both_engines(plan, 4, 0)
    expected = ("2 rows with a missing target or weight left out (these are never imputed); 118 rows used."
                if missing == "impute" else "2 rows with NaN or inf left out (data.missing: drop); 118 rows used.")
    for summary in (pass_summary(passes, plan.feature_names, missing), row_summary(rows, plan.feature_names, missing)):
        assert summary["rows_dropped"] == 2 and summary["n_rows"] == 118
        assert summary["notes"] == [expected]


def test_a_column_far_from_zero_is_noted_on_the_rows_engine():
    """The rows engine centres its products implicitly (Xᵀr − x̄ Σr), losing eps·|x̄|/sd: a column whose mean is
    10¹⁰ times its spread is noted with the fix; an ordinary one is not."""
    from pipeline.cv.rows import RowData

    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.normal(size=(60, 3)))
    X[:, 1] += 1e10
    rows = RowData(X=X, y=rng.normal(size=60), weight=np.ones(60), fold=np.arange(60) % 5, k=5)
    notes = row_summary(rows, ("a", "far", "c"))["notes"]
    assert len(notes) == 1 and "1 column(s) ['far'] vary by less than 10⁻⁸ of their mean" in notes[0]
    assert "subtract a constant" in notes[0]
    X[:, 1] -= 1e10
    near = RowData(X=X, y=rows.y, weight=rows.weight, fold=rows.fold, k=5)
    assert row_summary(near, ("a", "far", "c"))["notes"] == []


@pytest.mark.parametrize("indicators", [False, True])
def test_a_mostly_missing_imputed_column_is_noted_alike_on_both_engines(tmp_path, indicators):
    """A column missing in 95% of the rows, imputed by the mean, says little; both engines name it with its share
    (the Gram engine from its missing indicator's mean, the rows engine from the rows), a column 40% missing not."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 3))
    X[rng.permutation(200)[:190], 1] = np.nan  # 95% missing
    X[rng.permutation(200)[:80], 2] = np.nan  # 40%
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.nan_to_num(X[:, 0]) + rng.normal(size=200))
    plan = plan_data(DataConfig(source=str(tmp_path / "X.npy"), target=str(tmp_path / "y.npy"), block_rows=64,
                                missing="impute", missing_indicators=indicators))
    plan = plan.with_encoding(encoding_from_scan(plan, merge_scans([scan_block(plan, s) for s in plan.blocks])))
    passes, rows = _both_engines(plan, 4, 0)
    for summary in (pass_summary(passes, plan.feature_names, "impute"),
                    row_summary(rows, plan.feature_names, "impute")):
        notes = [n for n in summary["notes"] if "imputed column(s)" in n]
        assert len(notes) == 1 and f"['{plan.feature_names[1]}' (95%)]" in notes[0]
        assert ("missing indicators keep" in notes[0]) == indicators


def test_a_note_says_when_rows_left_out_make_auto_gram_choice_a_wide_problem(tmp_path):
    """auto chooses the engine from the planned rows, before any is read: 120 rows of 64 features is tall (a fold
    trains on 96), but with 70 targets missing a fold trains on 40 (the fifth probe's digits table)."""
    from pipeline.engine import EngineChoice
    from pipeline.sweep import _engine_after_drops

    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.normal(size=(120, 64)))
    np.save(tmp_path / "y.npy", rng.normal(size=120))
    cfg = load_config(None, [f"data.source={tmp_path / 'X.npy'}", f"data.target={tmp_path / 'y.npy'}"])
    plan = plan_data(cfg.data, cfg.folds)
    gram = EngineChoice("gram", "p = 64 ≤ n = 96")
    notes = _engine_after_drops(cfg, gram, plan, {"n_rows": 50, "rows_dropped": 70})
    assert notes == ["model.engine: auto chose gram for the 120 rows planned; with 70 left out a fold trains on "
                     "about 40 rows, fewer than the 64 features: model.engine: rows suits such wide data (set it to "
                     "have it)."]
    assert _engine_after_drops(cfg, gram, plan, {"n_rows": 90, "rows_dropped": 30}) == []  # 72 rows: still tall
    assert _engine_after_drops(cfg, gram, plan, {"n_rows": 120, "rows_dropped": 0}) == []
    assert _engine_after_drops(cfg, EngineChoice("rows", "p > n"), plan, {"n_rows": 50, "rows_dropped": 70}) == []
    requested = load_config(None, [f"data.source={tmp_path / 'X.npy'}", f"data.target={tmp_path / 'y.npy'}",
                                   "model.engine=gram"])
    assert _engine_after_drops(requested, gram, plan, {"n_rows": 50, "rows_dropped": 70}) == []  # the user's choice


def test_a_third_class_past_the_first_rows_is_named_with_its_row(tmp_path):
    """The plan checks the first rows' classes (and names the row there); a third label further down was named
    without one (the retrain probe): the rows engine now says where the rarest label first is, in the file's rows
    (rows without a target before it left out)."""
    rng = np.random.default_rng(3)
    n = 1500
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                       "y": np.where(rng.random(n) < 0.4, "yes", "no").astype(object)})
    df.loc[100:109, "y"] = None
    df.loc[1300, "y"] = "maybe"
    df.to_csv(tmp_path / "d.csv", index=False)
    plan = plan_data(DataConfig(source=str(tmp_path / "d.csv"), target="y", block_rows=512, missing="drop"),
                     FoldsConfig(), family="binomial")
    with pytest.raises(DataError, match=r"has 3 \('maybe', 'no', 'yes'\).* The rarest, 'maybe' \(1 row\), is first "
                                        r"at row 1300 \(counted from 0, header excluded\)\.$"):
        load_rows(plan, 5, 0)


def test_the_empty_fold_error_names_the_rows_left_out_and_bigger_blocks():
    """With few kept rows per block a fold can still stay empty (each block deals its own kept rows): the error
    says rows were left out and that larger blocks help, which it does not say when none were."""
    from pipeline.sweep import _check_folds

    cfg = load_config(None, ["folds.k=5"])
    meta = {"rows_dropped": 45, "n_rows": 5, "n_groups": None, "fold_weight": [2.0, 0.0, 1.0, 1.0, 1.0],
            "constant_target": None}
    with pytest.raises(DataError, match=r"folds \[1\] received no rows \(or zero total weight\) out of 5 rows \(45 "
                                        r"more rows were left out for missing values, .*\); lower folds.k or change "
                                        r"folds.seed, or read larger blocks \(data.block_rows"):
        _check_folds(meta, cfg)
    with pytest.raises(DataError, match=r"out of 5 rows; lower folds.k or change folds.seed\.$"):
        _check_folds({**meta, "rows_dropped": 0}, cfg)
