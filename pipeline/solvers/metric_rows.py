"""The rows a reference metric's Gram is formed from on tall data: the rows no sample can stand for, and a
uniform sample of the others, reweighted.

A metric of :mod:`.glm_chord` is the weighted Gram ``H = Σᵢ uᵢ x̃ᵢx̃ᵢᵀ / Σw`` at some IRLS weights ``u``. It
need not be exact (the fixed point is set by the exact gradients; the metric sets how fast the steps contract,
at a rate bounded by how far ``H`` is from the Hessian), but it costs ``O(np²)``, about as much as a dozen
of the batch's steps at p = 100. On tall rows it is estimated from a stratified sample instead:

    Ĥ = Σ_{i∈A} uᵢ x̃ᵢx̃ᵢᵀ/Σw + (Σ_{B} v / Σ_{S} v) Σ_{i∈S} uᵢ x̃ᵢx̃ᵢᵀ/Σw

with ``A`` the rows taken whole (every row holding a value more than :data:`_OUTLYING_SD` standard deviations
from its column's mean: the ones of a rare level, a heavy tail; and the rows whose IRLS weight is more than
:data:`_HEAVY_WEIGHT` times the mean: large exposures or sample weights), ``B`` the other rows of the problem
and ``S`` a fixed uniform sample of ``B`` (seeded by the row count: the same rows in every run). Both terms are
positive semi-definite, so ``Ĥ`` is a metric; the rows left to the sample have bounded terms, so its relative
error is about ``√(p/|S|)`` (4% at p = 100 and 2¹⁶ rows): steps still contract at a rate of a few percent. A
rare level that the sample would miss (its column's diagonal 0, steps along it unbounded) is in ``A``.

Measured on one worker's path (three folds and all rows of 10⁶ × 100 AR(1) binomial rows, 15 points, one
BLAS thread): 38.3 → 25.2 s, 296 → 302 steps, the metrics 18.5 → 4.2 s (0.30 s → 40 ms each: the IRLS weights
of every row 11 ms, these rows 8 ms, the sample's Gram 18 ms); objectives equal to 1.6e-15 and held-out
deviances as close to a fit at ``tol = 1e-14`` as the full Gram's (8.5e-9 against 6.6e-9, relative). Below
:data:`_SPARING` times the sample's rows the full Gram is formed: at 10⁵ rows a sample saves too little (a
20,000-row sample of 80,000: 25% more steps; strided samples of 15,000–30,000 rows measured on 2026-12-04 in
``benchmarks/README.md``: no gain).

Memory: the sample's rows are kept once per X (2¹⁶ × p × 8 bytes, 52 MB at p = 100, beside the 800 MB of 10⁶
rows; beyond :data:`_KEPT_BYTES` they are gathered anew for each metric), and a bit per row for ``A``.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

__all__ = ["MetricRows", "metric_rows"]

_ROWS = 2**16  # rows sampled, at least ...
_ROWS_PER_COLUMN = 256  # ... and per kept column (the sample's relative error ≈ √(p/rows))
_SPARING = 4  # a sample only where the problem has this many times its rows (the Gram then costs ≤ ¼)
_OUTLYING_SD = 4.0  # a value this many standard deviations from its column's mean puts its row in A
_HEAVY_WEIGHT = 16.0  # an IRLS weight this many times the mean puts its row in A
_WHOLE_MAX = 0.25  # more than this share of the problem's rows in A: the full Gram (no saving left)
_SCAN_BYTES = 8 * 2**20  # rows of X read at a time when looking for outlying values


@dataclass(frozen=True)
class MetricRows:
    """``Ĥ``'s rows (module docstring) in parts ``(rows of X, their weights)``: the rows of ``A`` with weights
    ``u``, the sample with ``u`` times its scale (0 on sampled rows that joined ``A``); ``u`` the weights on
    every row of X (0 off these rows)."""

    parts: tuple[tuple[np.ndarray, np.ndarray], ...]
    u: np.ndarray


@dataclass(frozen=True)
class _Strata:
    """What is fixed per X: the rows with an outlying value, the uniform sample of the rest and, up to
    :data:`_KEPT_BYTES`, its rows (gathering them from Fortran-ordered X costs three times their Gram)."""

    outlying: np.ndarray  # bool, every row
    sample: np.ndarray  # sorted row indices, none outlying
    rows: np.ndarray | None  # X[sample], Fortran-ordered; None: gathered when needed


_LOCK = threading.Lock()
_STRATA: dict[tuple[int, int], _Strata | None] = {}  # by (id(X), sample size), dropped when X is collected
_KEPT_BYTES = 256 * 2**20


def metric_rows(X: np.ndarray, n_kept: int, v: np.ndarray, u: np.ndarray,
                center: np.ndarray, scale: np.ndarray) -> MetricRows | None:
    """The rows and weights of ``Ĥ`` for a problem with row weights ``v`` (0 off its rows) at IRLS weights ``u``;
    None where the full Gram is to be formed (too few rows to save anything, or too many that a sample cannot
    stand for). ``center``/``scale``: the columns' means and standard deviations (0 for a constant column),
    used once per X to find its outlying rows."""
    size = max(_ROWS, _ROWS_PER_COLUMN * n_kept)
    n_in = int(np.count_nonzero(v))
    if n_in < _SPARING * size:
        return None
    strata = _strata_of(X, size, center, scale)
    if strata is None:
        return None
    whole = strata.outlying | (u > _HEAVY_WEIGHT * (float(u.sum()) / n_in))
    whole &= v > 0
    if np.count_nonzero(whole) > _WHOLE_MAX * n_in:
        return None
    in_sample = ~whole[strata.sample]
    sampled_v = float(v[strata.sample] @ in_sample)
    if not sampled_v > 0:
        return None
    rest_v = float(v.sum()) - float(v[whole].sum())  # Σ_B v: the rows the sample stands for
    whole_rows = np.flatnonzero(whole)
    sample_u = np.where(in_sample, u[strata.sample], 0.0) * (rest_v / sampled_v)
    u_all = np.zeros(u.size)
    u_all[strata.sample] = sample_u  # (0 on the sampled rows that joined A: their weight is set next)
    u_all[whole_rows] = u[whole_rows]
    sample_X = strata.rows if strata.rows is not None else X[strata.sample]
    return MetricRows(((X[whole_rows], u[whole_rows]), (sample_X, sample_u)), u_all)


def _strata_of(X: np.ndarray, size: int, center: np.ndarray, scale: np.ndarray) -> _Strata | None:
    """The strata of X for samples of ``size`` (computed once; None: too many outlying rows to sample)."""
    key = (id(X), size)
    with _LOCK:
        if key in _STRATA:
            return _STRATA[key]
    strata = _find_strata(X, size, center, scale)
    with _LOCK:
        if key not in _STRATA:
            weakref.finalize(X, _STRATA.pop, key, None)
            _STRATA[key] = strata
        return _STRATA[key]


def _find_strata(X: np.ndarray, size: int, center: np.ndarray, scale: np.ndarray) -> _Strata | None:
    """Every row with a value more than :data:`_OUTLYING_SD` standard deviations from its column's mean, and a
    uniform sample of ``size`` of the others (seeded by the row count), read a block of rows at a time."""
    n, p = X.shape
    bound = np.where(scale > 0, _OUTLYING_SD * scale, np.inf)
    outlying = np.zeros(n, dtype=bool)
    step = max(1, _SCAN_BYTES // (8 * max(p, 1)))
    for a in range(0, n, step):
        r = slice(a, min(n, a + step))
        outlying[r] = np.any(np.abs(X[r] - center) > bound, axis=1)
    common = np.flatnonzero(~outlying)
    if common.size < _SPARING * size or n - common.size > _WHOLE_MAX * n:
        return None
    sample = np.sort(np.random.default_rng([n, 7]).choice(common, size, replace=False))
    rows = np.asfortranarray(X[sample]) if 8 * size * p <= _KEPT_BYTES else None
    return _Strata(outlying, sample, rows)
