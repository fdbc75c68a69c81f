"""Fold assignment per row and per-fold statistics of a block.

Fold membership must be reproducible from the seed alone, so it is a pure
function of ``(seed, global row index)`` (k-fold; with rows left out, of the
kept rows' numbering within their block, below) or ``(seed, group value)``
(group k-fold), computed with a counter-based hash (SplitMix64) instead of a
stateful random generator:

- **k-fold by row**: rows are taken in consecutive runs of K; each run gets its
  own random permutation of ``0 … K−1`` (hash of ``(seed, run)``, ranked).
  Every row is in each fold with probability 1/K and fold sizes differ by at
  most one row (per run), whatever n is. Rows left out (a missing target,
  ``data.missing: drop``) take no place in a run: a block's kept rows are
  numbered on from its first row (:func:`kept_row_folds`), so they still fill
  whole runs (numbered by the source's rows, 20 rows kept of 83 went to folds
  of 2, 5, 3, 5 and 5 rows, and 8 folds left one empty). Without rows left
  out membership does not depend on how the rows are cut into blocks; with
  them it does (the blocks are a study's record: ``DATA_ATTR`` keeps their
  layout).
- **group k-fold**: all rows of a group land in one fold. The data pass keeps
  one statistics record per group (its rows are never revisited); afterwards
  the groups are dealt to the folds like scikit-learn's ``GroupKFold``, the
  heaviest first to the lightest fold, ties broken by ``hash(seed, group)``,
  so every fold gets a group whenever there are at least K. With more groups
  than a memory budget allows (``units_cap``), groups are pooled into that
  many hash buckets, which are dealt the same way (with many groups the
  buckets are balanced anyway).
"""

from __future__ import annotations

import numpy as np

from collections.abc import Hashable, Mapping

from .errors import DataError
from .solvers import SuffStats, label_stats, merge_all

__all__ = [
    "FOLD_NUMBERING",
    "assign_units",
    "block_fold_stats",
    "group_keys",
    "keyed_hash",
    "kept_row_folds",
    "kfold_folds",
    "merge_units",
    "row_group_folds",
    "splitmix64",
    "stats_per_label",
    "unit_stats",
    "units_cap",
]

FOLD_NUMBERING = "kept-rows"
"""How rows left out are dealt (:func:`kept_row_folds`): named in the retrain cache's keys and in a study's record of
its data, so that neither mixes folds dealt when the kept rows kept their source numbering."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser, vectorised over uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def keyed_hash(seed: int, values: np.ndarray) -> np.ndarray:
    """Hash of ``(seed, value)`` for uint64 values."""
    key = splitmix64(np.asarray(seed & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64))
    with np.errstate(over="ignore"):
        return splitmix64(np.asarray(values, dtype=np.uint64) ^ key)


def kfold_folds(start_row: int, n_rows: int, k: int, seed: int) -> np.ndarray:
    """Fold id (0 … k−1) of global rows ``start_row … start_row + n_rows − 1``."""
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64)
    rows = np.arange(start_row, start_row + n_rows, dtype=np.int64)
    runs = rows // k
    first_run = int(runs[0])
    run_ids = np.arange(first_run, int(runs[-1]) + 1, dtype=np.uint64)
    # hash (seed, run, slot) for every slot of every run, rank within the run
    slots = (run_ids[:, None] * np.uint64(k)) + np.arange(k, dtype=np.uint64)[None, :]
    ranks = np.argsort(keyed_hash(seed, slots), axis=1, kind="stable")
    return ranks[runs - first_run, rows % k].astype(np.int64)


def kept_row_folds(start_row: int, n_rows: int, kept: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Fold id of each kept row of the ``n_rows`` rows from ``start_row`` (``kept``: a mask over them, None for
    all): the kept rows numbered ``start_row, start_row + 1, …`` in their order, dealt by :func:`kfold_folds`.

    Without rows left out this is :func:`kfold_folds`. With them, the kept rows of a block fill whole runs of
    K, so each fold gets ⌊m/K⌋ or ⌈m/K⌉ of the block's m kept rows give or take the runs it shares with its
    neighbours, and still a function of the block alone (what the retrain cache keeps per block). Every pass
    over the same rows must number them by the same blocks (the plan's), whatever pieces it reads them in.
    """
    return kfold_folds(start_row, n_rows if kept is None else int(np.count_nonzero(kept)), k, seed)


def stratified_folds(classes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold ids dealing each class's rows evenly to the ``k`` folds (a binomial target's stratified k-fold).

    The rows of each class, in a seeded random order, are dealt round-robin, each class starting where the
    previous one ended, so every fold gets ⌊n_c/k⌋ or ⌈n_c/k⌉ rows of class c and the fold sizes differ by at
    most one. A pure function of (classes, k, seed): every worker that loads the rows computes the same folds.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    folds = np.empty(classes.shape[0], dtype=np.int64)
    start = 0
    for c in np.unique(classes):
        idx = rng.permutation(np.flatnonzero(classes == c))
        folds[idx] = (start + np.arange(idx.size)) % k
        start = (start + idx.size) % k
    return folds


def group_keys(groups: np.ndarray) -> np.ndarray:
    """Group values as comparable keys: integral numbers as int, other numbers as float, text as str.

    The same group must give the same key in every block, whatever dtype a
    block's parser chose (``3`` and ``3.0`` are one group). Missing groups are
    an error.
    """
    values = np.asarray(groups)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        if np.isnan(values).any():
            raise DataError(_no_group(np.isnan(values)))
        if np.all(values == np.round(values)):
            return values.astype(np.int64)
        return values
    out = values.astype(object)
    missing = np.fromiter((v is None or (isinstance(v, float) and v != v) for v in out), bool, out.size)
    if missing.any():
        raise DataError(_no_group(missing))
    return out.astype(str)


def _no_group(missing: np.ndarray) -> str:
    rows = np.flatnonzero(missing)
    return (f"folds.group: rows have no group (empty or NaN: {rows.size} of the {missing.size} rows read together "
            "here); fill them in the data or leave those rows out of it (data.missing: drop does not apply to the "
            "group column), or use row k-fold (folds.group: null).")


def _key_hash(seed: int, keys: np.ndarray) -> np.ndarray:
    """A hash of each group key. A whole number hashes alike as an int and as a float: :func:`group_keys` keeps
    a block's groups as floats when any is fractional, so 7.0 beside 10.5 must meet 7 of a block of whole
    numbers in the same bucket (they went to two folds)."""
    if keys.dtype.kind == "i":
        codes = keys.view(np.uint64)
    elif keys.dtype.kind == "f":
        whole = (keys == np.round(keys)) & (np.abs(keys) < 2.0**62)
        codes = np.where(whole, np.where(whole, keys, 0.0).astype(np.int64).view(np.uint64), keys.view(np.uint64))
    else:
        from pandas.util import hash_array

        codes = hash_array(keys.astype(object), categorize=False)
    return keyed_hash(seed, codes)


def units_cap(n_features: int, k: int, budget_bytes: int = 64 * 2**20) -> int:
    """How many per-group statistics records a pass may keep (each holds a p×p matrix)."""
    return int(max(4 * k, min(4096, budget_bytes // max(1, 8 * n_features * n_features))))


def _bucket(seed: int, keys: np.ndarray, cap: int) -> np.ndarray:
    return (_key_hash(seed, keys) % np.uint64(cap)).astype(np.int64)


def unit_stats(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, groups: np.ndarray, cap: int, seed: int
) -> dict[Hashable, SuffStats]:
    """Statistics per group of this block (per hash bucket once there are more than ``cap``)."""
    keys = group_keys(groups)
    uniq, inverse = np.unique(keys, return_inverse=True)
    names: list[Hashable] = uniq.tolist()
    if uniq.size > cap:
        buckets, inverse = np.unique(_bucket(seed, keys, cap), return_inverse=True)
        names = [("#bucket", int(b)) for b in buckets]
    return dict(zip(names, stats_per_label(X, y, sample_weight, inverse, len(names)), strict=True))


def merge_units(parts: list[Mapping[Hashable, SuffStats]], cap: int, seed: int) -> dict[Hashable, SuffStats]:
    """Merge per-group records by key; pool them into ``cap`` buckets if there are more, or if a part is pooled
    already: a group kept by its key beside buckets would be dealt to a fold of its own while its rows in a
    pooled block went with their bucket (one group in two folds: a first block of many groups, then a short
    block of one, scored a held-out group's shift of 50 as if it had been trained on)."""
    by_key: dict[Hashable, list[SuffStats]] = {}
    for part in parts:
        for key, st in part.items():
            by_key.setdefault(key, []).append(st)
    if len(by_key) > cap or any(_is_bucket(k) for k in by_key):
        pooled: dict[Hashable, list[SuffStats]] = {}
        raw = [k for k in by_key if not _is_bucket(k)]
        if raw:
            ids = _bucket(seed, group_keys(np.array(raw, dtype=object if isinstance(raw[0], str) else None)), cap)
            for key, b in zip(raw, ids.tolist()):
                pooled.setdefault(("#bucket", b), []).extend(by_key.pop(key))
        for key, sts in by_key.items():
            pooled.setdefault(key, []).extend(sts)
        by_key = pooled
    return {key: merge_all(sts) for key, sts in by_key.items()}


def _is_bucket(key: Hashable) -> bool:
    return isinstance(key, tuple) and bool(key) and key[0] == "#bucket"


def assign_units(weights: Mapping[Hashable, float], k: int, seed: int) -> dict[Hashable, int]:
    """Deal groups (or buckets) to k folds: heaviest first, each to the currently lightest fold.

    Ties (equal weights) are ordered by ``hash(seed, key)``, so the seed
    changes the assignment without unbalancing it.
    """
    keys = list(weights)
    if not keys:
        return {}
    tiebreak = _key_hash(seed, np.array([str(key) for key in keys], dtype=object))
    order = sorted(range(len(keys)), key=lambda i: (-weights[keys[i]], int(tiebreak[i])))
    load = np.zeros(k)
    out: dict[Hashable, int] = {}
    for i in order:
        fold = int(np.argmin(load))
        out[keys[i]] = fold
        load[fold] += weights[keys[i]]
    return out


def row_group_folds(groups: np.ndarray, sample_weight: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Fold of each row under group k-fold, for in-memory data (same rule as the data pass)."""
    keys = group_keys(groups)
    w = np.ones(keys.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    totals = np.bincount(inverse, weights=w)
    fold_of = assign_units({key: float(t) for key, t in zip(uniq.tolist(), totals)}, k, seed)
    return np.array([fold_of[key] for key in uniq.tolist()])[inverse]


def block_fold_stats(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, folds: np.ndarray, k: int
) -> list[SuffStats]:
    """The statistics of this block's rows in each fold (one list entry per fold).

    Folds deal a block's rows at random, so every fold's mean lies close to the block's: one shifted pass
    serves them all (:func:`~pipeline.solvers.label_stats`)."""
    return label_stats(X, y, sample_weight, folds, k)


def stats_per_label(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, labels: np.ndarray, n_labels: int
) -> list[SuffStats]:
    """The statistics of the rows of each label ``0 … n_labels − 1`` (empty for a label without rows).

    The rows are put in label order once (a stable sort: each label's rows keep their order, so every
    label's statistics are computed from exactly the array a per-label mask would give, bit for bit);
    each label is then a slice. One gather of the block instead of a masked copy per label (each a scan
    of the whole mask): a 65,536 × 100 block's five fold records 91 → 76 ms on one BLAS thread (medians
    of 5 processes × 40). It costs one copy of the block at once instead of a fold's share of it.

    For labels whose rows may have very different means (groups); folds take :func:`block_fold_stats`.
    """
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_labels + 1))
    Xs, ys = X[order], y[order]
    ws = None if sample_weight is None else sample_weight[order]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if a == b:
            out.append(SuffStats.empty(X.shape[1]))
            continue
        out.append(SuffStats.from_block(Xs[a:b], ys[a:b], None if ws is None else ws[a:b]))
    return out
