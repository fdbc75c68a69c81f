"""Fold assignment: reproducible, disjoint, covering, balanced, groups intact, block-size independent."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.folds import block_fold_stats, group_folds, kfold_folds
from pipeline.solvers import SuffStats, merge_all


@pytest.mark.parametrize("k", [2, 5, 7])
def test_kfold_is_reproducible_balanced_and_covering(k):
    n = 10_003
    f = kfold_folds(0, n, k, seed=42)
    assert f.shape == (n,) and f.min() == 0 and f.max() == k - 1
    counts = np.bincount(f, minlength=k)
    assert counts.max() - counts.min() <= 1  # consecutive runs of k hold each fold once
    np.testing.assert_array_equal(f, kfold_folds(0, n, k, seed=42))
    assert (f != kfold_folds(0, n, k, seed=43)).mean() > 0.5  # the seed matters


@pytest.mark.parametrize("block", [1, 3, 64, 1000, 4099])
def test_kfold_is_independent_of_block_size(block):
    n, k = 9_000, 5
    whole = kfold_folds(0, n, k, seed=7)
    pieces = np.concatenate([kfold_folds(s, min(block, n - s), k, seed=7) for s in range(0, n, block)])
    np.testing.assert_array_equal(pieces, whole)


def test_kfold_is_not_a_fixed_pattern():
    """Each run of k rows is a fresh permutation: fold of row i is not a function of i mod k."""
    f = kfold_folds(0, 5000, 5, seed=1).reshape(-1, 5)
    assert len({tuple(r) for r in f}) > 50


def test_group_folds_keep_groups_together_in_any_block():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 40, 5000)
    f = group_folds(groups, 5, seed=3)
    for g in np.unique(groups):
        assert len(np.unique(f[groups == g])) == 1
    np.testing.assert_array_equal(np.concatenate([group_folds(groups[i:i + 333], 5, 3) for i in range(0, 5000, 333)]), f)
    assert set(np.unique(f)) == set(range(5))  # 40 groups spread over all 5 folds


def test_group_folds_accept_strings():
    groups = np.array([f"site-{i % 13}" for i in range(1300)], dtype=object)
    f = group_folds(groups, 4, seed=0)
    for g in set(groups):
        assert len(np.unique(f[groups == g])) == 1
    np.testing.assert_array_equal(f, group_folds(groups.astype(str), 4, seed=0))


def test_block_fold_stats_partition_the_rows():
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((600, 4)), rng.standard_normal(600)
    f = kfold_folds(0, 600, 3, seed=0)
    parts = block_fold_stats(X, y, None, f, 3)
    assert [p.n_rows for p in parts] == list(np.bincount(f))
    total = merge_all(parts)
    ref = SuffStats.from_block(X, y)
    np.testing.assert_allclose(total.cxx, ref.cxx, rtol=1e-12)
    rows = f == 1  # fold 1's moments against numpy on its rows
    Xc, yc = X[rows] - X[rows].mean(axis=0), y[rows] - y[rows].mean()
    np.testing.assert_allclose(parts[1].cxx, Xc.T @ Xc, rtol=1e-12)
    np.testing.assert_allclose(parts[1].cxy, Xc.T @ yc, rtol=1e-12)


def test_a_column_constant_in_the_training_rows_is_dropped_on_the_fold_path():
    """A dummy column that is non-zero only in fold 0's rows is constant (zero) in fold 0's
    training rows. The fold model, built as total − held-out, must treat it exactly as the
    training rows themselves do (coefficient 0), and give the same held-out error."""
    from pipeline.evaluate import BlockPass, make_fold_model, merge_block_passes
    from pipeline.solvers import GramProblem, make_penalty

    rng = np.random.default_rng(0)
    n, p, k = 200, 5, 5
    X = rng.normal(size=(n, p))
    y = X @ np.arange(1, p + 1) + rng.normal(size=n)
    folds = kfold_folds(0, n, k, 0)
    X[:, 4] = 0.0
    X[folds == 0, 4] = rng.normal(size=(folds == 0).sum()) * 3 + 1e3
    X[:, 3] = 0.1  # constant everywhere, not exactly representable
    passes = merge_block_passes(*(
        BlockPass(tuple(block_fold_stats(X[s:s + 37], y[s:s + 37], None, folds[s:s + 37], k)), 1)
        for s in range(0, n, 37)
    ))
    fold = make_fold_model(passes, 0, fit_intercept=True, standardize=True)
    train = folds != 0
    direct = GramProblem.from_stats(SuffStats.from_block(X[train], y[train]))
    np.testing.assert_array_equal(fold.problem.kept, direct.kept)
    assert not fold.problem.kept[3] and not fold.problem.kept[4]
    for pen in (make_penalty("l1", 0.01), make_penalty("l2", lambda2=1e-3)):
        a, b = fold.problem.solve(pen), direct.solve(pen)
        assert a.coef[4] == 0.0
        np.testing.assert_allclose(a.coef, b.coef, rtol=1e-9, atol=1e-12)
        held = SuffStats.from_block(X[~train], y[~train])
        assert fold.heldout.mse(a.coef, a.intercept) == pytest.approx(held.mse(b.coef, b.intercept), rel=1e-9)
