"""Fold assignment per row and per-fold statistics of a block.

Fold membership must be reproducible from the seed alone and must not depend
on how the rows are cut into blocks, so it is a pure function of
``(seed, global row index)`` (k-fold) or ``(seed, group value)`` (group
k-fold), computed with a counter-based hash (SplitMix64) instead of a
stateful random generator:

- **k-fold by row**: rows are taken in consecutive runs of K; each run gets its
  own random permutation of ``0 … K−1`` (hash of ``(seed, run)``, ranked).
  Every row is in each fold with probability 1/K and fold sizes differ by at
  most one row (per run), whatever n is.
- **group k-fold**: a group's fold is ``hash(seed, group) mod K``, so all rows
  of a group land in one fold. Fold sizes then vary with the group sizes.
"""

from __future__ import annotations

import numpy as np

from .solvers import SuffStats

__all__ = ["block_fold_stats", "group_folds", "kfold_folds", "splitmix64"]

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


def _keyed(seed: int, values: np.ndarray) -> np.ndarray:
    """Hash of ``(seed, value)`` for uint64 values."""
    key = splitmix64(np.uint64(seed & 0xFFFFFFFFFFFFFFFF))
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
    ranks = np.argsort(_keyed(seed, slots), axis=1, kind="stable")
    return ranks[runs - first_run, rows % k].astype(np.int64)


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id of each row from its group value: ``hash(seed, group) mod k``.

    Integer groups hash their value; anything else (strings, floats) is first
    hashed stably with ``pandas.util.hash_array`` (fixed key), so the same
    group maps to the same fold in every block and every process.
    """
    values = np.asarray(groups)
    if values.dtype.kind in "iu":
        codes = values.astype(np.int64).view(np.uint64)
    else:
        from pandas.util import hash_array

        codes = hash_array(values.astype(object), categorize=False)
    return (_keyed(seed, codes) % np.uint64(k)).astype(np.int64)


def block_fold_stats(
    X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None, folds: np.ndarray, k: int
) -> list[SuffStats]:
    """The statistics of this block's rows in each fold (one list entry per fold)."""
    out = []
    for fold in range(k):
        rows = folds == fold
        if not rows.any():
            out.append(SuffStats.empty(X.shape[1]))
            continue
        w = None if sample_weight is None else sample_weight[rows]
        out.append(SuffStats.from_block(X[rows], y[rows], w))
    return out
