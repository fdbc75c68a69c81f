"""Fold assignment: reproducible, disjoint, covering, balanced, groups intact, block-size independent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from pipeline.errors import DataError
from pipeline.folds import block_fold_stats, group_keys, kept_row_folds, kfold_folds, row_group_folds
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


def test_kept_rows_fill_whole_runs_so_folds_stay_balanced_after_rows_are_left_out():
    """83 rows of which 20 are kept (a mammal table after data.missing: drop): numbered by the source's rows the
    kept rows went to folds of 2, 5, 3, 5 and 5, and with 8 folds one fold got none; numbered among the kept
    rows every fold gets 20 // k or one more."""
    rng = np.random.default_rng(0)
    kept = np.zeros(83, dtype=bool)
    kept[rng.choice(83, 20, replace=False)] = True
    for k in (5, 8, 20):
        f = kept_row_folds(0, 83, kept, k, seed=0)
        assert f.shape == (20,)
        counts = np.bincount(f, minlength=k)
        assert counts.min() >= 20 // k and counts.max() <= -(-20 // k), (k, counts)
    by_source = np.bincount(kfold_folds(0, 83, 8, seed=0)[kept], minlength=8)
    assert by_source.min() == 0  # what the old numbering did here: a fold without rows


@pytest.mark.parametrize("block", [7, 50, 1000])
def test_each_blocks_kept_rows_are_spread_over_the_folds(block):
    """A block's m kept rows are numbered as a range from its first row: whole runs of k hold each fold once, the
    partial runs at its two ends at most once more, so within a block the folds' counts differ by at most 2
    (numbered by the source's rows, a block of 50 rows with 24 kept had folds of 4, 0, 6, 7 and 7 rows; of
    1,000 with 330 kept, 53 to 78)."""
    rng = np.random.default_rng(1)
    n, k = 5_000, 5
    kept = rng.random(n) < 0.3
    spread, old_spread = [], []
    for s in range(0, n, block):
        m = kept[s:s + block]
        f = kept_row_folds(s, m.size, m, k, seed=2)
        assert f.size == m.sum()
        counts = np.bincount(f, minlength=k)
        spread.append(counts.max() - counts.min())
        old = np.bincount(kfold_folds(s, m.size, k, seed=2)[m], minlength=k)
        old_spread.append(old.max() - old.min())
    assert max(spread) <= 2 and max(old_spread) > 2, (max(spread), max(old_spread))


def _group_pass(X, y, w, groups, k, seed, block, cap=None):
    """The data-pass path for group k-fold: per-block group records, merged, then dealt to folds."""
    from pipeline.cv.passes import BlockPass, finish_pass, merge_block_passes
    from pipeline.folds import unit_stats, units_cap

    cap = cap or units_cap(X.shape[1], k)
    parts = [
        BlockPass((), 1, units=unit_stats(X[i:i + block], y[i:i + block], None if w is None else w[i:i + block],
                                          groups[i:i + block], cap, seed), units_cap=cap)
        for i in range(0, len(y), block)
    ]
    return finish_pass(merge_block_passes(*parts, fold_seed=seed), k, seed)


@pytest.mark.parametrize("n_groups", [5, 6, 10, 40])
@pytest.mark.parametrize("seed", range(6))
def test_group_folds_keep_groups_whole_and_fill_every_fold(n_groups, seed):
    """Any number of groups ≥ k fills every fold (hash-mod-k left folds empty for 5–20 groups)."""
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.repeat(np.arange(n_groups), rng.integers(5, 40, n_groups)))
    X, y = rng.standard_normal((groups.size, 3)), rng.standard_normal(groups.size)
    f = row_group_folds(groups, None, 5, seed)
    for g in np.unique(groups):
        assert len(np.unique(f[groups == g])) == 1
    assert set(np.unique(f)) == set(range(5))
    # the data pass builds exactly these folds, whatever the block size
    for block in (7, 100, groups.size):
        passes = _group_pass(X, y, None, groups, 5, seed, block)
        assert [st.n_rows for st in passes.fold_stats] == list(np.bincount(f, minlength=5))
        np.testing.assert_allclose(passes.fold_stats[2].cxy, SuffStats.from_block(X[f == 2], y[f == 2]).cxy,
                                   rtol=1e-10, atol=1e-12)


def test_a_group_stays_in_one_fold_when_one_block_pools_groups_into_buckets_and_another_does_not():
    """A first block of more groups than the cap is pooled into hash buckets; a short last block of one group
    kept that group by its key, which was dealt to a fold of its own: one group in two folds (probe F: a CV MSE
    of 0.99 where every other block size gave 500, the held-out group's shift being seen in training)."""
    k, seed, cap = 5, 0, 40
    # 45 groups and 50 rows of group 0: more than the cap, pooled into the ~30 of the 40 buckets they hit
    groups = np.concatenate([np.arange(1, 46), np.zeros(50, dtype=np.int64), np.zeros(30, dtype=np.int64)])
    rng = np.random.default_rng(1)
    zero = (groups == 0).astype(float)  # a feature marking group 0's rows: its sum per fold shows where they went
    X = np.column_stack([rng.standard_normal(groups.size), zero])
    y = rng.standard_normal(groups.size)
    for block in (95, 60, groups.size):  # 95: the last block (30 rows of group 0) is below the cap, alone
        passes = _group_pass(X, y, None, groups, k, seed, block, cap=cap)
        zeros_per_fold = [st.sum_w * (st.x_origin[1] + st.x_offset[1]) for st in passes.fold_stats]
        assert sum(st.n_rows for st in passes.fold_stats) == groups.size
        assert sorted(np.round(zeros_per_fold, 9))[:-1] == [0.0] * (k - 1), (block, zeros_per_fold)
        assert max(zeros_per_fold) == pytest.approx(80.0)


def test_group_folds_balance_by_weight():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 200, 20_000)
    f = row_group_folds(groups, None, 5, 0)
    counts = np.bincount(f, minlength=5)
    assert counts.max() - counts.min() <= np.bincount(groups).max()  # greedy: within one group's size


def test_group_keys_are_the_same_for_int_float_and_text():
    assert list(row_group_folds(np.array([3, 7, 3, 9, 11, 7]), None, 2, 1)) == list(
        row_group_folds(np.array([3.0, 7.0, 3.0, 9.0, 11.0, 7.0]), None, 2, 1))
    sites = np.array([f"site-{i % 13}" for i in range(1300)], dtype=object)
    f = row_group_folds(sites, None, 4, 0)
    for g in set(sites):
        assert len(np.unique(f[sites == g])) == 1
    with pytest.raises(DataError, match="have no group"):
        row_group_folds(np.array([1.0, np.nan]), None, 2, 0)


def test_many_groups_are_pooled_into_buckets_that_stay_whole():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 5000, 30_000)
    X, y = rng.standard_normal((30_000, 2)), rng.standard_normal(30_000)
    passes = _group_pass(X, y, None, groups, 5, 0, 4096, cap=64)
    assert passes.n_groups <= 64  # pooled into at most cap buckets
    assert all(st.n_rows > 0 for st in passes.fold_stats)
    assert sum(st.n_rows for st in passes.fold_stats) == 30_000


@pytest.mark.parametrize("weighted", [False, True])
def test_each_folds_statistics_are_those_of_its_rows(weighted):
    """The one shifted pass gives every fold the moments a two-pass computation on that fold's rows alone
    gives (``from_block`` on the rows taken by mask; a fold without rows: empty). Large means (10⁶, spread
    10³) are where the centring matters; both computations round at ~ε · Σ w (x − x̄)², so entries agree to
    1e-12 of √(Cxx_ii Cxx_jj)."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5_000, 37)) * 1e3 + 1e6
    y = rng.standard_normal(5_000) + 50.0
    w = rng.uniform(0.0, 3.0, 5_000) if weighted else None
    folds = kfold_folds(0, 5_000, 4, seed=5)  # labels 0..3 of 5: fold 4 has no rows here
    parts = block_fold_stats(X, y, w, folds, 5)
    for fold in range(5):
        rows = folds == fold
        ref = SuffStats.from_block(X[rows], y[rows], None if w is None else w[rows]) if rows.any() \
            else SuffStats.empty(37)
        got = parts[fold]
        assert got.n_rows == ref.n_rows
        if not rows.any():
            assert got.sum_w == 0.0 and not got.cxx.any()
            continue
        assert got.sum_w == pytest.approx(ref.sum_w, rel=1e-15)
        np.testing.assert_allclose(got.x_mean, ref.x_mean, rtol=1e-15, atol=0)
        scale = np.sqrt(np.diag(ref.cxx))
        assert np.abs(got.cxx - ref.cxx).max() <= 1e-12 * np.outer(scale, scale).min()
        assert np.abs(got.cxy - ref.cxy).max() <= 1e-12 * scale.min() * np.sqrt(ref.cyy)
        assert got.y_mean == pytest.approx(ref.y_mean, rel=1e-15) and got.cyy == pytest.approx(ref.cyy, rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_fold_moments_agree_with_exact_rational_arithmetic(weighted):
    """Against the exact moments (fractions) of every fold's rows: columns with mean 10⁶ and spreads from
    10⁻² to 10³, folds of 1 to ~50 rows, so that the mean correction ``W d dᵀ`` is far above the tolerance
    (dropping it fails). Error ≤ 1e-13 · √(S_ii S_jj), S the fold's exact centred sums of squares."""
    from fractions import Fraction

    rng = np.random.default_rng(11)
    n = 161
    X = 1e6 + rng.standard_normal((n, 3)) * np.array([1e-2, 1.0, 1e3])
    y = 3.0 + rng.standard_normal(n)
    w = rng.choice([0.0, 0.5, 1.0, 2.0, 7.25], n) if weighted else np.ones(n)
    labels = np.minimum(kfold_folds(0, n, 4, seed=2), 3)
    labels[7] = 4  # a fold of a single row
    parts = block_fold_stats(X, y, w if weighted else None, labels, 5)
    for f, got in enumerate(parts):
        rows = np.flatnonzero(labels == f)
        W = sum(Fraction(w[i]) for i in rows)
        if W == 0:
            assert got.sum_w == 0.0
            continue
        Z = [[Fraction(X[i, j]) for j in range(3)] + [Fraction(y[i])] for i in rows]
        mean = [sum(Fraction(w[i]) * z[j] for i, z in zip(rows, Z)) / W for j in range(4)]
        C = [[sum(Fraction(w[i]) * (z[a] - mean[a]) * (z[b] - mean[b]) for i, z in zip(rows, Z)) for b in range(4)]
             for a in range(4)]
        full = np.block([[got.cxx, got.cxy[:, None]], [got.cxy[None, :], np.array([[got.cyy]])]])
        exact = np.array([[float(c) for c in row] for row in C])
        bound = 1e-13 * np.sqrt(np.outer(np.diag(exact), np.diag(exact))) + 1e-300
        if len(rows) > 1:
            assert np.all(np.abs(full - exact) <= bound), (f, np.abs(full - exact) / bound)
        else:  # one row: no spread, the moments are rounding of zero
            assert np.abs(full).max() <= 1e-9
        assert got.sum_w == float(W)
        np.testing.assert_allclose(np.append(got.x_mean, got.y_mean), [float(v) for v in mean], rtol=1e-15)


@pytest.mark.parametrize("as_csr", [False, True])
def test_a_column_constant_on_a_folds_rows_has_no_spread_there(as_csr):
    """A column constant on one label's rows but not on the block's (a level met only elsewhere; a flag that
    starts after a time hold-out's cut-off) gets exactly zero moments on that label, as a two-pass computation
    gives, not the shifted pass's cancellation noise (which could be negative and would be standardized and
    fitted); the same for a target constant on a label's rows."""
    rng = np.random.default_rng(8)
    n = 3_000
    labels = kfold_folds(0, n, 3, seed=1)
    X = rng.standard_normal((n, 4)) + 5.0
    X[:, 1] = np.where(labels == 2, rng.integers(0, 2, n), 0.0)  # 0 on labels 0 and 1: a level only label 2 has
    X[:, 3] = np.where(labels == 2, rng.standard_normal(n), 1.0)  # constant 1 outside label 2
    y = np.where(labels == 0, 3.0, rng.standard_normal(n))  # the target constant on label 0
    for w in (None, rng.uniform(0.5, 2.0, n)):
        parts = block_fold_stats(sparse.csr_matrix(X) if as_csr else X, y, w, labels, 3)  # column 1 sparse there
        for f in (0, 1):
            for j in (1, 3):
                assert not parts[f].cxx[j].any() and not parts[f].cxx[:, j].any() and parts[f].cxy[j] == 0.0
            # the means to the rounding of a sum of ~1,000 shifted entries (the block's means are ≈ 0.17 and 0.67)
            assert abs(parts[f].x_mean[1]) <= 1e-14 and parts[f].x_mean[3] == pytest.approx(1.0, rel=1e-14, abs=0)
        assert parts[0].cyy == 0.0 and not parts[0].cxy.any()
        assert parts[2].cxx[1, 1] > 0 and parts[2].cxx[3, 3] > 0 and parts[1].cyy > 0
        for f in range(3):  # the other entries as before: against the two-pass computation on the label's rows
            rows = labels == f
            ref = SuffStats.from_block(X[rows], y[rows], None if w is None else w[rows])
            np.testing.assert_allclose(parts[f].cxx, ref.cxx, rtol=1e-11, atol=1e-9)
            np.testing.assert_allclose(parts[f].cxy, ref.cxy, rtol=1e-11, atol=1e-9)


@pytest.mark.parametrize("as_csr", [False, True])
def test_labels_spanning_many_chunks_sum_them_all(as_csr):
    """At p = 400 a chunk holds 326 rows, so each fold's ~1,000 rows take four chunks: the accumulated ``ZᵀZ``
    must equal the two-pass statistics of all of them (a loop that kept one chunk per label fails here). As
    CSR, with a 300-level factor beside: its products with the dense columns are summed chunk by chunk too."""
    rng = np.random.default_rng(9)
    n, p = 4_000, 400
    X = rng.standard_normal((n, p)) * 2.0 + np.linspace(-3.0, 3.0, p)
    if as_csr:
        X = np.hstack([X, np.eye(300)[rng.integers(0, 300, n)]])
    y = X[:, :5].sum(axis=1) + rng.standard_normal(n)
    w = rng.uniform(0.0, 2.0, n)
    labels = kfold_folds(0, n, 4, seed=3)
    parts = block_fold_stats(sparse.csr_matrix(X) if as_csr else X, y, w, labels, 4)
    for f in range(4):
        rows = labels == f
        ref = SuffStats.from_block(X[rows], y[rows], w[rows])
        assert parts[f].sum_w == pytest.approx(ref.sum_w, rel=1e-14)
        scale = np.sqrt(np.diag(ref.cxx))
        assert np.abs(parts[f].cxx - ref.cxx).max() <= 1e-12 * scale.max() ** 2
        np.testing.assert_allclose(parts[f].x_mean, ref.x_mean, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(parts[f].cxy, ref.cxy, rtol=1e-11, atol=1e-9 * np.sqrt(ref.cyy) * scale.max())


@pytest.mark.parametrize("weighted", [False, True])
def test_a_sparse_blocks_fold_moments_agree_with_exact_rational_arithmetic(weighted):
    """A CSR block (a categorical column's indicators, a sparse column, an empty one beside dense columns with
    mean 10⁶) against the exact moments (fractions) of every fold's rows: its mostly-zero columns' products are
    shifted after the sums (:mod:`pipeline.solvers.sparse_stats`), its dense ones before. Error ≤ 1e-13 ·
    √(S_ii S_jj); a level absent from a fold, and the empty column, get exactly zero moments there."""
    from fractions import Fraction

    rng = np.random.default_rng(12)
    n = 181
    levels = rng.integers(0, 4, n)
    labels = np.minimum(kfold_folds(0, n, 4, seed=2), 3)
    levels[(labels == 1) & (levels == 3)] = 0  # level 3 never on fold 1's rows
    X = np.column_stack([1e6 + rng.standard_normal(n), np.eye(4)[levels], 1e3 * (rng.random(n) < 0.3),
                         np.zeros(n), 2.0 + rng.standard_normal(n)])
    p = X.shape[1]
    y = 3.0 + rng.standard_normal(n)
    w = rng.choice([0.0, 0.5, 1.0, 2.0, 7.25], n) if weighted else np.ones(n)
    labels[7] = 4  # a fold of a single row
    parts = block_fold_stats(sparse.csr_matrix(X), y, w if weighted else None, labels, 5)
    for f, got in enumerate(parts):
        rows = np.flatnonzero(labels == f)
        assert got.n_rows == rows.size
        W = sum(Fraction(w[i]) for i in rows)
        if W == 0:
            assert got.sum_w == 0.0
            continue
        Z = [[Fraction(X[i, j]) for j in range(p)] + [Fraction(y[i])] for i in rows]
        mean = [sum(Fraction(w[i]) * z[j] for i, z in zip(rows, Z)) / W for j in range(p + 1)]
        C = [[sum(Fraction(w[i]) * (z[a] - mean[a]) * (z[b] - mean[b]) for i, z in zip(rows, Z))
              for b in range(p + 1)] for a in range(p + 1)]
        full = np.block([[got.cxx, got.cxy[:, None]], [got.cxy[None, :], np.array([[got.cyy]])]])
        exact = np.array([[float(c) for c in row] for row in C])
        bound = 1e-13 * np.sqrt(np.outer(np.diag(exact), np.diag(exact)))
        if len(rows) > 1:
            assert np.all(np.abs(full - exact) <= bound), (f, np.abs(full - exact) / (bound + 1e-300))
        else:
            assert np.abs(full).max() <= 1e-9
        assert got.sum_w == float(W)
        np.testing.assert_allclose(np.append(got.x_mean, got.y_mean), [float(v) for v in mean], rtol=1e-15,
                                   atol=1e-15)
    assert not parts[1].cxx[4].any() and parts[1].cxy[4] == 0.0  # level 3 (column 4) on fold 1
    assert all(not part.cxx[6].any() for part in parts)  # the empty column


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
    from pipeline.cv.fold_models import make_fold_model
    from pipeline.cv.passes import BlockPass, finish_pass, merge_block_passes
    from pipeline.solvers import GramProblem, make_penalty

    rng = np.random.default_rng(0)
    n, p, k = 200, 5, 5
    X = rng.normal(size=(n, p))
    y = X @ np.arange(1, p + 1) + rng.normal(size=n)
    folds = kfold_folds(0, n, k, 0)
    X[:, 4] = 0.0
    X[folds == 0, 4] = rng.normal(size=(folds == 0).sum()) * 3 + 1e3
    X[:, 3] = 0.1  # constant everywhere, not exactly representable
    passes = finish_pass(merge_block_passes(*(
        BlockPass(tuple(block_fold_stats(X[s:s + 37], y[s:s + 37], None, folds[s:s + 37], k)), 1)
        for s in range(0, n, 37)
    )), k, 0)
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


@pytest.mark.parametrize("groups", [np.array([1.0, np.nan, 2.0, np.nan]),
                                    np.array(["a", None, "b", None], dtype=object)])
def test_rows_without_a_group_are_counted_and_told_what_helps(groups):
    """data.missing: drop does not leave such rows out (the message had told to 'fill or drop them')."""
    with pytest.raises(DataError, match=r"empty or NaN: 2 of the 4 rows .*data.missing: drop does not apply"):
        group_keys(groups)


def test_a_whole_number_group_beside_fractional_ones_meets_its_own_rows_in_one_bucket():
    """A block with a fractional group keeps its groups as floats (group_keys), a block of whole numbers as ints:
    group 7 was hashed two ways, 7.0 into one bucket and 7 into another (review G: 50 and 30 of its 80 rows in
    two folds)."""
    k, seed, cap = 5, 0, 40
    groups = np.concatenate([np.arange(45) + 10.5, np.full(50, 7.0), np.full(30, 7.0)])
    rng = np.random.default_rng(2)
    seven = (groups == 7.0).astype(float)
    X = np.column_stack([rng.standard_normal(groups.size), seven])
    y = rng.standard_normal(groups.size)
    for block in (95, 60, groups.size):
        passes = _group_pass(X, y, None, groups, k, seed, block, cap=cap)
        per_fold = [st.sum_w * (st.x_origin[1] + st.x_offset[1]) for st in passes.fold_stats]
        assert sorted(np.round(per_fold, 9))[:-1] == [0.0] * (k - 1), (block, per_fold)


def test_a_sparse_fit_far_above_the_remembered_solutions_starts_from_zero():
    """``WarmStarts.nearest`` with the fold's λ1_max: a solution is the start unless zero (the solution at λ1_max) is
    nearer in log λ1. On 1,623 one-hot features an l1 trial 1.5 decades above the only remembered l1 solution took
    1,027 active-set iterations from it (37 s) where a start beside it took 91."""
    from pipeline.candidate import Candidate
    from pipeline.cv.scoring import WarmStarts

    warm: WarmStarts[str] = WarmStarts()
    warm.remember(Candidate(0, "l1", 0.00237, 0.0), "dense")
    sparse = Candidate(1, "l1", 0.0703, 0.0)
    assert warm.nearest(sparse) == "dense"  # without λ1_max: the nearest remembered, as before
    assert warm.nearest(sparse, 0.5) is None  # zero is 0.85 decades away, the dense solution 1.47
    assert warm.nearest(sparse, 100.0) == "dense"  # zero is 3.2 decades away
    assert warm.nearest(Candidate(2, "l1", 0.9, 0.0), 0.5) is None  # above λ1_max the solution is zero
    warm.remember(Candidate(3, "l1", 0.0767, 0.0), "beside")
    assert warm.nearest(sparse, 0.5) == "beside"
    assert warm.nearest(Candidate(4, "l2", 0.0, 1.0), 0.5) is None  # nothing remembered for l2
