"""Elastic nets with penalty factors and coefficient limits on a Gram: coordinate descent, then Newton.

Problem (the penalized scale of :class:`~pipeline.solvers.GramProblem`, ``h`` a :class:`.BoxPenalty`):

    P(β) = ½ yy − qᵀβ + ½ βᵀGβ + Σ_j [ a_j |β_j| + ½ m_j β_j² ],    lo ≤ β ≤ hi

Why not the active-set Newton method of :mod:`.active_set`: its sign-consistent steps and gap-safe
screening assume one threshold for every feature and no limits. Here the state of a coordinate is one
of five (zero, positive, negative, at its lower or upper limit), and coordinate descent finds it the
way glmnet does with ``penalty.factor`` and ``lower/upper.limits``: the coordinate's minimizer is
``clip(S(c_j + G_jj β_j, a_j) / (G_jj + m_j), lo_j, hi_j)``, one compiled sweep (:func:`._cd.sweep_gram`,
loaded only by problems that have factors or limits: the plain Gram path never imports numba) costs
``O(p)`` per changed coefficient.

Coordinate descent alone converges linearly, slowly for correlated features. So each round ends in a
**Newton step on the free coordinates** F (neither at 0, where ``a_j > 0`` makes a kink, nor at a limit):
with the others fixed and the signs of F fixed, the objective is the quadratic whose minimizer solves

    (G_FF + diag m_F) β_F = q_F − a_F sign β_F − G_{F,Fᶜ} β_{Fᶜ}.

If that point keeps the signs and the limits, it is taken; otherwise the step goes from β towards it up
to the first coefficient that reaches 0 or a limit (the objective decreases along that segment: it is
the convex quadratic there), which is set exactly there. Once the state of every coordinate is right
(usually after the first round) the step lands on the solution to rounding.

**Certificate.** The duality gap of :func:`.box_duality_gap` at the residual (projected off the
unpenalized, unlimited columns); ``converged`` means ``gap ≤ tol · ½ yy`` as for every other solver.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .active_set import SolverResult
from .controls import BoxPenalty, box_duality_gap, project_free

__all__ = ["box_gap", "box_gap_parts", "box_gram", "box_lambda1_ratios", "free_coordinates", "segment_step",
           "solve_psd"]

_MAX_ROUNDS = 60
_START_THRESHOLD = 1e-8  # of ½yy: coordinate descent's first stopping threshold, on G_jj Δβ_j²
_THRESHOLD_FLOOR = 1e-24
_SWEEPS_PER_ROUND = 100  # coordinate descent finds the state; the Newton steps the digits
_NEWTON_STEPS = 10  # feature-sign steps after one round of coordinate descent


def box_gap(G: np.ndarray, q: np.ndarray, yy: float, beta: np.ndarray, c: np.ndarray, pen: BoxPenalty) -> float:
    """The duality gap at β (c = q − Gβ), with the dual point projected off the free unlimited columns."""
    qb = float(q @ beta)
    r2 = max(yy - qb - float(c @ beta), 0.0)  # yy − 2qᵀβ + βᵀGβ, with Gβ = q − c
    return box_gap_parts(r2, yy - qb, c, beta, pen, lambda U: (G[:, U], q[U]))


def box_gap_parts(r2: float, b_r: float, c: np.ndarray, beta: np.ndarray, pen: BoxPenalty,
         free_columns: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> float:
    """:func:`.box_duality_gap` at the residual, projected off the free unlimited columns U when there are any
    (``free_columns(U)`` gives ``(G[:, U], q[U])``)."""
    free = pen.projected(beta, c)
    if not np.any(free):
        return box_duality_gap(r2, beta, pen, b_r, r2, c)
    for attempt in range(3):  # a column at its limit whose pull the projection turned to the open side joins U
        U = np.flatnonzero(free)
        cols, q_u = free_columns(U)
        c_t, b_t, t2 = project_free(c, b_r, r2, cols, q_u, U)
        more = free | pen.projected(beta, c_t)
        if np.array_equal(more, free) or attempt == 2:
            break
        free = more
    return box_duality_gap(r2, beta, pen, b_t, t2, c_t, free)


def box_gram(G: np.ndarray, q: np.ndarray, yy: float, pen: BoxPenalty, beta0: np.ndarray | None = None, *,
             tol: float = 1e-10) -> SolverResult:
    """Minimise the module's problem; β starts from ``beta0`` clipped into the box (or 0)."""
    from ._cd import sweep_gram  # numba: only problems with factors or limits

    p = q.shape[0]
    scale = max(0.5 * yy, np.finfo(np.float64).tiny)
    gap_tol = tol * scale
    beta = np.zeros(p) if beta0 is None else np.clip(np.array(beta0, dtype=np.float64), pen.lo, pen.hi)
    G = np.ascontiguousarray(G)
    c = q - G @ beta
    everything = np.arange(p, dtype=np.int64)
    threshold = _START_THRESHOLD * scale
    gap = box_gap(G, q, yy, beta, c, pen)
    steps = 0
    if gap > gap_tol and np.any(beta) and _newton_step(G, q, pen, beta):  # a warm start's state may be right
        steps += 1
        c = q - G @ beta
        gap = box_gap(G, q, yy, beta, c, pen)
    for _ in range(_MAX_ROUNDS):
        if gap <= gap_tol:
            break
        for _ in range(_SWEEPS_PER_ROUND):
            if sweep_gram(G, c, beta, everything, pen.a, pen.m, pen.lo, pen.hi) <= threshold:
                break
        if _newton_step(G, q, pen, beta):
            steps += 1
        c = q - G @ beta
        gap = box_gap(G, q, yy, beta, c, pen)
        threshold = max(threshold * 1e-2, _THRESHOLD_FLOOR * scale)
    return SolverResult(beta, steps, gap, gap_tol, gap <= gap_tol)


def free_coordinates(beta: np.ndarray, pen: BoxPenalty) -> np.ndarray:
    """Coordinates strictly inside their limits and off the kink at 0 (every coordinate with ``a_j = 0``
    that is not at a limit)."""
    inside = (beta > pen.lo) & (beta < pen.hi)
    return np.flatnonzero(inside & ((beta != 0) | (pen.a == 0)))


def _newton_step(G: np.ndarray, q: np.ndarray, pen: BoxPenalty, beta: np.ndarray) -> bool:
    """Newton steps on the free coordinates (module docstring), in place; whether β moved.

    A step cut short by coefficients that reach 0 or a limit leaves them there, and the step is solved again
    on the free coordinates that remain (the feature-sign search of :mod:`.active_set`, with limits), at most
    :data:`_NEWTON_STEPS` times: coordinate descent need not run between two such steps.
    """
    moved = False
    for _ in range(_NEWTON_STEPS):
        F = free_coordinates(beta, pen)
        if F.size == 0:
            break
        fixed = np.setdiff1d(np.flatnonzero(beta), F)  # held at a non-zero limit
        H = G[np.ix_(F, F)] + np.diag(pen.m[F])
        rhs = q[F] - pen.a[F] * np.sign(beta[F])
        if fixed.size:
            rhs -= G[np.ix_(F, fixed)] @ beta[fixed]
        target = solve_psd(H, rhs)
        if target is None:
            break
        before = beta.copy()
        if not segment_step(beta, F, target, pen):
            break
        if _objective(G, q, pen, beta) > _objective(G, q, pen, before):  # a singular H's step can go uphill
            beta[:] = before
            break
        moved = True
        if np.array_equal(beta[F], np.clip(target, pen.lo[F], pen.hi[F])):  # the whole step: done
            break
    return moved


def _objective(G: np.ndarray, q: np.ndarray, pen: BoxPenalty, beta: np.ndarray) -> float:
    """``P(β) − ½yy``."""
    return 0.5 * float(beta @ G @ beta) - float(q @ beta) + pen.value(beta)


def segment_step(beta: np.ndarray, F: np.ndarray, target: np.ndarray, pen: BoxPenalty) -> bool:
    """Move ``beta[F]`` towards ``target`` up to the first coordinate that reaches 0 (where ``a_j > 0``) or a
    limit, setting it exactly there (in place); whether β moved."""
    b = beta[F]
    d = target - b
    if not np.any(d):
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        kink = (pen.a[F] > 0) & (b != 0) & (np.sign(target) != np.sign(b))
        t_zero = np.where(kink, -b / d, np.inf)
        t_hi = np.where(d > 0, (pen.hi[F] - b) / d, np.inf)
        t_lo = np.where(d < 0, (pen.lo[F] - b) / d, np.inf)
    t_each = np.minimum(t_zero, np.minimum(t_hi, t_lo))
    t = float(min(1.0, np.min(t_each)))
    if t <= 0.0:
        return False
    new = b + t * d
    if t < 1.0:
        hit = t_each <= t
        new[hit & (t_zero <= t)] = 0.0
        new[hit & (t_hi <= t)] = pen.hi[F][hit & (t_hi <= t)]
        new[hit & (t_lo <= t)] = pen.lo[F][hit & (t_lo <= t)]
    beta[F] = np.clip(new, pen.lo[F], pen.hi[F])
    return True


def solve_psd(H: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``H⁻¹ rhs`` by Cholesky, or None when H is not numerically positive definite (a lasso's free set
    beyond the rank of its columns: coordinate descent then carries on alone; a minimum-norm step there was
    measured to cost more than it saved)."""
    import scipy.linalg

    try:
        cho = scipy.linalg.cho_factor(H, lower=True, check_finite=False)
    except (np.linalg.LinAlgError, ValueError):
        return None
    return scipy.linalg.cho_solve(cho, rhs, check_finite=False)


def box_lambda1_ratios(G_uu: np.ndarray, q_u: np.ndarray, yy: float, factor: np.ndarray, lo: np.ndarray,
                       hi: np.ndarray, free: np.ndarray, c_of: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per feature, the smallest λ1 that keeps it at 0 in the null model (its maximum over the features is
    λ1_max; divided by a group multiplier it is that of the group's features under the multiplier).

    The unpenalized features ``free`` (factor 0) stay in the null model: it is their fit alone
    (limits included; ``G_uu``, ``q_u`` their Gram block and moments), and ``c_of(β_U)`` returns
    ``q − G[:, U] β_U`` over every feature. Then β = 0 on the penalized features is optimal iff
    ``c_j ≤ λ1 f_j`` where β_j may grow (``hi_j > 0``) and ``−c_j ≤ λ1 f_j`` where it may fall
    (``lo_j < 0``), whatever λ2 is (glmnet's rule). The null model does not depend on the multipliers.
    """
    U = np.flatnonzero(free)
    beta_u = np.zeros(U.size)
    if U.size:
        zero = np.zeros(U.size)
        beta_u = box_gram(G_uu, q_u, yy, BoxPenalty(zero, zero, lo[U], hi[U])).beta
    return null_pull_ratios(c_of(beta_u), factor, lo, hi, free)


def null_pull_ratios(c: np.ndarray, factor: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     free: np.ndarray) -> np.ndarray:
    """Per feature, the λ1 that keeps it at 0 given the negative gradient ``c`` of the smooth part at the null
    model: ``pull_j / f_j``, the pull counting only the sides its limits leave open (0 for the unpenalized
    features ``free``). Shared by squared loss and the GLM families."""
    up = np.where(hi > 0, np.maximum(c, 0.0), 0.0)
    down = np.where(lo < 0, np.maximum(-c, 0.0), 0.0)
    pull = np.maximum(up, down)
    penalized = ~free & (factor > 0)
    return np.where(penalized, pull / np.where(penalized, factor, 1.0), 0.0)
