"""Many GLM fits on the same rows at once: proximal steps in a fixed metric, the weighted Gram of a nearby fit.

A Newton step of :class:`~.glm.GlmProblem` forms the weighted Gram ``X̃ᵀUX̃`` at the current point: ``O(np²)``
flops and several copies of the rows, three quarters of a step's time. In a sweep the fits of one fold differ
by their penalty only, and the IRLS weights ``uᵢ = wᵢV(μᵢ)`` of fits at nearby strengths differ little. So
here every fit of a batch steps in the metric of one *reference* Gram ``H = X̃ᵀU_rX̃/Σw`` (weights ``u_r``
of an earlier fit; the fold model keeps it from batch to batch), with exact gradients:

    (b', β̃') = argmin  ∇f(b, β̃)ᵀδ + ½ δᵀHδ + h(β̃'),     δ = (b' − b, β̃' − β̃),

then the same Armijo line search as the Newton steps (Lee, Sun & Saunders 2014: a proximal quasi-Newton
method with a fixed positive semi-definite metric converges from any start; linearly, at a rate that
``‖H⁻¹∇²f − I‖`` bounds, which is small when the weights are close). The intercept is profiled out as in the
Newton steps: with ``x̄`` the ``u_r``-weighted means of X̃ and ``G = H_ββ − H_βb H_bb⁻¹ H_bβ`` the centred
Gram, the model in β̃' is ``½β̃'ᵀGβ̃' − qᵀβ̃' + h(β̃')`` with ``q = Gβ̃ + c − x̄c₀`` (``c, c₀`` the gradient's
negatives in β̃ and b) and the intercept's step is ``(Σw/Σu_r)c₀ − x̄ᵀδβ̃``; the squared-loss solvers
minimise it exactly (:func:`~.active_set.enet_gram`, the box solver, or ridge by one eigendecomposition of G).

The metric need not be exact: the fixed point is set by the exact gradients, and a metric only sets how fast
the steps contract. So its Gram is formed in float32 (:func:`~.design.dense_weighted_gram` with ``single``; the
sums over row blocks in float64), which differs from the float64 Gram by about 1e-7 of its entries, far below
the weights' own change between fits. On a fold of 10⁶ × 100 Fortran-ordered rows (24 fits of random
strengths, in batches of two) the 26 metrics took 6.7 s against 13.7 s in float64 blocks copied to C order,
the whole batch 28.2 s against 35.1 s, with the same 145 steps and objectives equal to 4e-16.

What makes it cheap: the line-search directions of all fits of a batch are one matrix product ``XΔ`` and their
gradients at the full steps one product ``XᵀR`` (n × m residuals), taken block by block in one pass over the
rows for the whole batch (:func:`_full_steps`), where each Newton step of each fit took one weighted Gram and
two passes. A fit whose iterations contract slowly (the reference was far from it) gets a Gram of its own at
its current point, which becomes the reference for the fits that follow: in the worst case this is Newton's
method with one more pass per step. A fit's first step needs the gradient at its start; a warm start at the
point a fit of the same problem ended (the next point of a path, a trial beside an earlier one) brings it, as the
smooth part's gradient does not depend on the penalty (:func:`_starting_gradients`): on one worker's path at
10⁶ rows, 412 → 332 passes.

A fold's held-out rows weigh 0 in its problem: its fits need nothing of them but, at the end, the linear
predictor the held-out scores read. A worker holds binomial and Poisson rows ordered by fold
(:func:`pipeline.cv.rows.by_fold`), so each fold's held-out rows fill whole blocks of a pass, which the pass
skips for that fold's fits (:func:`_weighted`: no product, no elementwise work; the weighted Grams skip blocks
of weight 0 too), and their linear predictor is formed once, when the fit ends (:func:`_complete_eta`). Rows in
any other order lose nothing: no block is skipped. Whole sweeps of 10⁶ × 100 rows (100 trials, 5 folds, two
workers; rows as loaded, then by fold, one pair after the other): binomial 149.2 → 125.3 s and 146.2 → 134.2 s
(trials 92.4 / 81.3 → 75.7 / 79.1 s, the dense path 46.8 / 54.6 → 41.4 / 47.1 s, the data pass 6.1 / 6.6 →
4.4 / 4.2 s), the same CV choice (CV deviance equal to 2e-10 relative).

Where it stops: the Newton solver's rule (a step's model decrease at most ``tol`` times the null objective, or
the current one where that is smaller: :func:`~.glm.stop_scale`), and then one step more in a Gram formed at
that point, a Newton step. The decrease measures the stiff directions; in the flat ones (correlated columns)
steps that contract linearly leave an error the held-out rows see: on breast cancer's columns 1.5e-7 of the
held-out deviance without that step, 3.5e-9 with it (3.4e-10 for the Newton solver). So each fit forms one
Gram where Newton's method forms one per step (about three from a warm start). The fit then carries its Gram
(``GlmFit.curvature``): a later fit warm-started from it steps in that metric, the nearest there is.

On tall rows (a problem of at least four times 2¹⁶ rows, or 256 per column) every metric is formed from a
stratified row sample instead (:mod:`.metric_rows`: the rows of rare levels, heavy tails and heavy weights
whole, a fixed uniform sample of the others reweighted), at a small fraction of a Gram's cost. Its steps
contract by the sample's few percent rather than to rounding, so a fit there also stops only once its KKT
residual is below :data:`_SAMPLED_KKT` (:func:`_certified`), and a fit that stays slow in a sampled metric of
its own, where the sample stands badly for its rows, gets the exact Gram (one whose steps contract goes on in
it). On 10⁶ × 100 rows, a whole sweep (100 trials and the winner's path; :mod:`.metric_rows` for one worker's
path alone): binomial 300 → 260–269 s, Poisson 247 → 252 s, the same held-out scores to seven digits. The
dense path gains most (129 → 95–99 s); the trials' fits take a quarter more steps (1,997 → 2,472–2,642 in all),
which eat most of what their metrics save.

A sampled metric costs about one fit's share of a batch's pass, so a fit does not stay in one that has grown
stale: once its steps there contract by less than tenfold (:data:`_STALE`; the metric was formed far from where
the fit now is, at the null model for a cold start), it forms a new sampled metric at its current point, where
it went on at that rate (a cold fit on 10⁶ rows: ten steps from KKT 1e-2 to 4e-9). And a fit whose steps in a
sampled metric contract at least that fast stops once within the tolerance and certified, without the Newton
step an exact metric ends with (whose contraction a fresh sample would not better). One worker's fits emulated
on the 10⁶ × 100 binomial rows: its first 16 trials (3 folds) 67 → 50 passes over the rows, 23.5 → 19.7 s; its
path (3 folds and all rows, 49 points) 244 → 220 passes, 905 → 823 steps, 59.0 → 51.9–55.3 s. Held-out
deviances within 2.3e-8 of fits at ``tol = 1e-14`` (the largest of 45 on the path; median 1.2e-9), against
7e-9 before; the trials' within 1.0e-9, as before. The whole sweep: binomial 253 → 222 / 233 s (the trials
149 → 121 / 123 s; the path within its runs' spread), Poisson 266 → 249 s, the same CV choices.

Where it cannot: a Gram that is singular (every level of several categorical columns beside the intercept)
with a tiny λ2 leaves the float32 metric's steps short (no descent direction, or a stop with a KKT residual
far above a converged fit's). Such a fit goes on by the Newton solver's float64 steps from where it stopped
(:data:`_NEWTON_AFTER`); fits that converge never pay for this.

A singular metric also made every step's inner solve slow: the active-set solver walks a singular block one
null direction at a time, a pivoted factorisation and a QR each (on Caravan's 623 one-hot levels, about seven
per solve, two thirds of the fits' time). So every metric gets :data:`_METRIC_RIDGE` of its mean diagonal
added to its diagonal, about ten times the float32 Gram's own rounding: the metric is positive definite and
its blocks factor at once, and, as any positive definite metric, it leaves the fixed point where it was. On
one Caravan fold (24 fits, batches of two): the same 353 steps and objectives to 8e-16, 33.0 → 17.8 s.
Where rows saturate, steps are damped (:mod:`.damping`).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .active_set import FactorCache, cho_solve_lower, cholesky_or_none, enet_gram
from .controls import BoxPenalty
from .damping import Damping
from .design import dense_weighted_gram
from .metric_rows import metric_rows
from .split_gram import sparse_columns
from ._validate import SolverConvergenceWarning
from .glm import _BOX_INNER_TOL, GlmFit, GlmProblem, _inner_tol, _value, largest_kkt, stop_scale
from .penalties import ElasticNet

__all__ = ["Curvature", "solve_many", "solve_together"]

_SLOW = 0.25  # a fit whose model decrease shrank by less than this factor in a step gets its own Gram
_PATIENCE = 2  # ... after this many slow steps in a row (at once when the line search cut the step)
_STALE = 1e-2  # a fit whose decrease shrank by less than this factor (ρ > 0.1) in a sampled metric gets a new one;
#                 one that contracts faster stops in it once within the tolerance and certified (no Newton step)
_FAST = 1e-4  # a fit within the tolerance whose decrease fell this much in a step (ρ ≤ 1e-2) needs no Newton step
_NEWTON_AFTER = 1e-6  # a fit that stops with a KKT residual above this (or 1e4·tol) × max(1, F) goes on by
#                      Newton steps in float64 (GlmProblem.solve): on a singular Gram (every level of several
#                      factors) at a tiny λ the float32 metric's steps stopped 5.7e-7 relative above the optimum
#                      (KKT 3.4e-5), or found no descent at all; converged fits of tall AR(1) rows end ≤ 3.4e-8
_SAMPLED_KKT = 1e-8  # a fit stepping in a sampled metric stops within the tolerance once its KKT residual is
#                       below this × max(1, F) (:func:`_certified`; the exact metric's Newton step ends near 1e-13)
_METRIC_RIDGE = 1e-6  # × the mean diagonal, added to every metric's diagonal (module docstring: "Where it cannot")
_CHOLESKY_MAX = 3  # strengths a metric factors by Cholesky before it takes its eigendecomposition (Curvature.ridge)
_SERIALS = itertools.count()
_PASS_BYTES = 8 * 2**20  # rows of X whose elementwise work a step's pass does at a time (fewer calls per row) ...
_PASS_ROWS_MIN = 1024  # ... at least this many (on wide rows, fewer would cost more in calls than in memory)
_PRODUCT_BYTES = 2**20  # rows of X each of the pass's BLAS calls takes (:func:`_full_steps`: the block sizes)
_PRODUCT_ROWS_MIN = 64  # ... at least this many (wide rows: a call per few rows would cost more in calls)
_GEMV_MAX = 6  # a product XΔ of at most this many fits is one matrix-vector product per fit (:func:`_times`)


@dataclass(eq=False)
class Curvature:
    """The reference metric: the centred weighted Gram ``G`` of the kept columns at weights ``u`` (all rows),
    the ``u``-weighted means ``xbar`` of X̃ and ``Σu/Σw``; a factorisation once a ridge fit needs it."""

    G: np.ndarray
    xbar: np.ndarray
    u: np.ndarray
    su_over_w: float
    sampled: bool = False  # formed from a row sample: its model's constant needs a floor (:meth:`model_floor`)
    serial: int = field(default_factory=lambda: next(_SERIALS))  # which of two metrics was formed later
    _eig: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _chol: tuple[float, np.ndarray | None] | None = field(default=None, repr=False)  # (λ2, factor or None)
    _factored: int = field(default=0, repr=False)  # Cholesky factors formed so far
    _blocks: dict[float, FactorCache] = field(default_factory=dict, repr=False)  # of one damping (active_blocks)
    _factor: np.ndarray | None = field(default=None, repr=False)  # Cholesky factor of G (model_floor)

    @classmethod
    def at(cls, problem: GlmProblem, eta: np.ndarray, *, exact: bool = False) -> Curvature:
        """The weighted Gram at the linear predictor ``eta`` (one pass over the rows, ``O(np²)``); on tall rows
        from the stratified sample of :mod:`.metric_rows` (``O(|sample| p²)``) unless ``exact``."""
        d = problem.base
        u = problem.irls_weights(eta)[2]  # 0 off the problem's rows
        picked = None if exact else metric_rows(d.X, d.cols.size, d.v, u, d.x_center,
                                                np.sqrt(np.maximum(d.x_var, 0.0)))
        parts = picked.parts if picked is not None else ((d.X, u),)
        G, sx = np.zeros((d.cols.size, d.cols.size)), np.zeros(d.cols.size)
        for rows, weights in parts:
            if rows.shape[0]:
                G_part, sx_part, _ = dense_weighted_gram(rows, d.cols, d.x_center[d.cols], d.x_scale[d.cols], weights,
                                                         np.zeros(weights.size), single=True)
                G, sx = G + G_part, sx + sx_part
        if picked is not None:
            u = picked.u
        su = float(u.sum())
        xbar = sx / su if d.fit_intercept else np.zeros(d.cols.size)
        G -= su * np.outer(xbar, xbar)
        G /= d.sum_w
        G[np.diag_indices_from(G)] += _METRIC_RIDGE * max(float(np.mean(np.diag(G))), 0.0)
        return cls(G, xbar, u, su / d.sum_w, sampled=picked is not None)

    def model_floor(self, q: np.ndarray) -> float:
        """``qᵀG⁻¹q``: the least a model's constant ``yy`` can be for ``½yy − qᵀβ + ½βᵀGβ`` to be a least-squares
        problem (its residual ``yy − 2qᵀβ + βᵀGβ`` non-negative at every β), which the inner solvers' duality gaps
        and safe screening assume. With the full Gram ``yy`` is the working response's, consistent by
        construction; with a sampled one it comes from the sampled rows while ``q`` holds the exact gradient,
        so it is held at this floor (it lies far above it: the Pearson residuals' share, about Σw)."""
        if self._factor is None:
            self._factor = cholesky_or_none(self.G)
        if self._factor is None:  # (G has its ridge: positive definite but for rounding)
            return float(q @ np.linalg.lstsq(self.G, q, rcond=None)[0])
        return float(q @ cho_solve_lower(self._factor, q))

    def active_blocks(self, damping: float) -> FactorCache:
        """Factors of the active blocks of this metric plus ``damping`` on its diagonal, for the models its
        steps minimise (of the damping used last only: a factor may be as large as G)."""
        cache = self._blocks.get(damping)
        if cache is None:
            self._blocks = {damping: (cache := FactorCache(extend=False))}  # a fit's bits: not its history's
        return cache

    def ridge(self, q: np.ndarray, lam2: float) -> np.ndarray:
        """``(G + λ2 I)⁻¹ q`` (the pseudo-inverse on G's null space when G + λ2 I is singular).

        A strength gets a Cholesky factor of ``G + λ2 I``, kept for that fit's further steps in this metric;
        after :data:`_CHOLESKY_MAX` factors the eigendecomposition of G, about ten times a factorisation, serves
        every strength (the fits of a batch). Most metrics serve one or two strengths: on a dense path each
        point's fit steps in its predecessor's Gram, then in its own. On Caravan's 623 one-hot levels the
        eigendecompositions had taken a fifth of a sweep's CPU."""
        if self._eig is None:
            if (self._chol is None or self._chol[0] != lam2) and self._factored < _CHOLESKY_MAX:
                H = self.G.copy()
                H[np.diag_indices_from(H)] += lam2
                self._chol, self._factored = (lam2, cholesky_or_none(H)), self._factored + 1
            if self._chol is not None and self._chol[0] == lam2 and self._chol[1] is not None:
                return np.asarray(cho_solve_lower(self._chol[1], q))
            e, V = np.linalg.eigh(self.G)  # (also where G + λ2 I is not numerically positive definite)
            self._eig, self._chol = (np.maximum(e, 0.0), V), None  # one p × p factor kept at a time
        e, V = self._eig
        h = e + lam2
        inv = np.divide(1.0, h, out=np.zeros_like(h), where=h > 1e-12 * max(float(h.max(initial=0.0)), 1e-300))
        return np.asarray(V @ (inv * (V.T @ q)))


@dataclass(eq=False)
class _Fit:
    """One fit's state in the batch."""

    problem: GlmProblem
    pen: BoxPenalty
    penalty: ElasticNet
    b: float
    beta: np.ndarray
    eta: np.ndarray
    F: float
    curv: Curvature
    tol: float
    F_null: float  # the null model's objective
    resid: np.ndarray | None = None  # w(y − μ) at eta, every row (0 off the problem's rows)
    c0: float = 0.0  # Σw(y − μ)/Σw at eta
    n_iter: int = 0
    last_decrease: float = np.inf
    slow: int = 0
    polished: bool = False  # its metric is its own Gram at a point within the tolerance: its next step is final
    own_sampled: bool = False  # its metric is a sampled Gram formed for it: the next one it needs is exact
    damping: Damping = field(default_factory=Damping)  # where its rows' curvature vanishes (:mod:`.damping`)
    done: bool = False
    converged: bool = False
    moved: bool = False  # it took a step: its η comes from the passes (stale where they skipped its rows)

    @property
    def abs_tol(self) -> float:
        """The stopping rule's bound on a step's model decrease (:func:`~.glm.stop_scale`), at the current F."""
        return self.tol * stop_scale(self.F_null, self.F)


def solve_many(problem: GlmProblem, penalties: Sequence[ElasticNet], warms: Sequence[GlmFit | None], *,
               tol: float = 1e-10, max_iter: int = 100, multipliers: Sequence[Mapping[str, float] | None] | None = None,
               curvature: Curvature | None = None) -> tuple[list[GlmFit], Curvature]:
    """Minimise ``F`` of :class:`~.glm.GlmProblem` for every penalty, each from its warm start (module docstring).

    Dense rows only (the Gram route). Returns the fits, in order, and the reference metric to pass to the next
    batch (the last Gram formed, or ``curvature``). Warns as :meth:`~.glm.GlmProblem.solve` for a fit that does
    not converge in ``max_iter`` steps.
    """
    if not penalties:
        return [], _usable(problem, curvature) or Curvature.at(problem, problem.null_model()[1])
    fits, refs = solve_together([problem] * len(penalties), penalties, warms, tol=tol, max_iter=max_iter,
                                multipliers=multipliers, curvatures={id(problem): curvature})
    return fits, refs[id(problem)]


def solve_together(problems: Sequence[GlmProblem], penalties: Sequence[ElasticNet],
                   warms: Sequence[GlmFit | None], *, tol: float = 1e-10, max_iter: int = 100,
                   multipliers: Sequence[Mapping[str, float] | None] | None = None,
                   curvatures: Mapping[int, Curvature | None] | None = None,
                   ) -> tuple[list[GlmFit], dict[int, Curvature]]:
    """:func:`solve_many` for fits of several problems on the same dense rows (the folds of one worker, whose
    problems differ by their weights): fit ``j`` minimises ``problems[j]``'s objective for ``penalties[j]``.

    ``curvatures`` and the returned metrics are keyed by ``id(problem)``.
    """
    X = problems[0].base.X if problems else None
    if any(p.base.sparse or p.base.X is not X for p in problems):
        raise ValueError("solve_together needs problems on the same dense rows; sparse rows take GlmProblem.solve.")
    mults = list(multipliers) if multipliers is not None else [None] * len(penalties)
    given = curvatures or {}
    refs: dict[int, Curvature] = {}
    fits, carried = [], []
    for problem, penalty, warm, m in zip(problems, penalties, warms, mults, strict=True):
        pen = problem.box_penalty(penalty, m)
        b, beta, eta = problem.starting_point(pen, warm)
        carried.append(problem.carried_gradient(warm, eta))
        own = _usable(problem, warm.curvature if warm is not None else None)  # the warm start's: the nearest
        key = id(problem)
        if key not in refs:
            refs[key] = _usable(problem, given.get(key)) or own or Curvature.at(problem, eta)
        fits.append(_Fit(problem, pen, penalty, b, beta, eta, problem.mean_half_deviance(eta) + _value(pen, beta),
                         own or refs[key], tol, problem.null_objective()))
    final: dict[int, tuple[np.ndarray, float]] = {}
    live = list(range(len(fits)))
    grads = _starting_gradients(fits, carried)
    while live:
        batch = [fits[i] for i in live]
        steps = [_model_step(f, *g) for f, g in zip(batch, grads, strict=True)]
        full = _full_steps(batch, steps)
        short = []
        for k, f in enumerate(batch):
            key = id(f.problem)
            refs[key], t = _advance(f, steps[k], full[k], max_iter, refs[key])
            if t == 1.0:  # the pass's gradient is at the new point: the next step's or the end's
                f.resid, f.c0 = full[k].resid, full[k].gradient[1]
                grads[k] = full[k].gradient
            elif t is not None:
                short.append(k)
        for k, g in zip(short, _gradients([batch[k] for k in short]), strict=True):  # shorter steps: a pass of theirs
            grads[k] = g
        for k, i in enumerate(live):
            if fits[i].done:
                final[i] = grads[k]
        keep = [k for k, i in enumerate(live) if not fits[i].done]
        live, grads = [live[k] for k in keep], [grads[k] for k in keep]
    out = []
    for i, f in enumerate(fits):
        _complete_eta(f)
        fit = f.problem._result(f.b, f.beta, f.eta, f.F, f.pen, f.n_iter, f.converged, f.penalty, max_iter,
                                gradient=final[i], warn=False)
        unfinished = not fit.converged or fit.kkt_residual > max(_NEWTON_AFTER, 1e4 * tol) * max(1.0, fit.objective)
        most = max_iter
        if unfinished and f.n_iter < max_iter:  # (at max_iter: no finite minimiser, which Newton steps cannot find)
            with warnings.catch_warnings():  # it counted its own steps only ("after 1 of at most 100"): said below
                warnings.simplefilter("ignore", SolverConvergenceWarning)
                fit = f.problem.solve(f.penalty, fit, tol=tol, max_iter=max_iter, multipliers=mults[i])
            fit, most = replace(fit, n_iter=fit.n_iter + f.n_iter), max_iter + f.n_iter
        f.problem._warn(fit, f.pen, f.penalty, most)
        out.append(replace(fit, curvature=f.curv))
    return out, refs


def _complete_eta(f: _Fit) -> None:
    """The fit's linear predictor ``offset + b + X(β̃/s)`` on the blocks its passes skipped (none of its problem's
    rows: :func:`_weighted`), where its held-out scores and the next warm start read it: one product per run of
    consecutive skipped blocks (a fold's held-out rows lie together, so usually one)."""
    if not f.moved:
        return
    d = f.problem.base
    size = _block_rows(d.X.shape[1])
    skipped = np.flatnonzero(~f.problem.weighted_runs(size))
    for run in np.split(skipped, np.flatnonzero(np.diff(skipped) != 1) + 1) if skipped.size else ():
        r = slice(int(run[0]) * size, min(d.n_rows, (int(run[-1]) + 1) * size))
        f.eta[r] = f.problem.eta(f.b, f.beta, rows=r)


def _usable(problem: GlmProblem, curvature: Curvature | None) -> Curvature | None:
    """``curvature`` if it is a metric of this problem's kept columns."""
    if isinstance(curvature, Curvature) and curvature.G.shape[0] == problem.base.n_kept \
            and curvature.u.size == problem.base.n_rows:
        return curvature
    return None


def _starting_gradients(fits: Sequence[_Fit], carried: Sequence[tuple[np.ndarray, float] | None],
                        ) -> list[tuple[np.ndarray, float]]:
    """The gradient at every fit's starting point. A fit that starts where a fit of its problem ended (a warm
    start whose η it took as it was: the next point of a path, a trial beside an earlier one) carries that fit's
    gradient, the certificate's, and needs only its residuals, elementwise; the others share one pass
    (:func:`_gradients`). On one worker's dense path at 10⁶ rows that pass was one in five of all passes."""
    formed = iter(_gradients([f for f, g in zip(fits, carried, strict=True) if g is None]))
    out = []
    for f, g in zip(fits, carried, strict=True):
        if g is None:
            out.append(next(formed))
        else:
            f.resid, f.c0 = _residual(f, np.empty(f.eta.size)), g[1]
            out.append(g)
    return out


def _residual(f: _Fit, out: np.ndarray) -> np.ndarray:
    """``w(y − μ)`` at the fit's η, on every row (0 off its problem's rows), written into ``out``."""
    np.subtract(f.problem.y, f.problem.family.mean(f.eta), out=out)
    out *= f.problem.base.v  # v = 0 off the problem's rows
    return out


def _gradients(fits: Sequence[_Fit]) -> list[tuple[np.ndarray, float]]:
    """``c_j = X̃ᵀW(y − μ_j)/Σw`` (kept columns) and ``c0_j = Σw(y − μ_j)/Σw`` at every fit's point (whose mean
    ``μ_j`` it keeps), each under its problem's weights and scales: one product ``XᵀR`` over the rows, a block
    at a time (:func:`_row_blocks`)."""
    if not fits:
        return []
    X = fits[0].problem.base.X
    split = sparse_columns(X)
    resids = [_residual(f, np.empty(f.eta.size)) for f in fits]
    raw, sums = np.zeros((X.shape[1], len(fits))), np.zeros(len(fits))
    block = np.empty((min(X.shape[0], _block_rows(X.shape[1])), len(fits)), order="F")
    weighted = _weighted(fits)
    for i, r in enumerate(_row_blocks(*X.shape)):
        R = block[:r.stop - r.start]
        for j, resid in enumerate(resids):
            R[:, j] = resid[r]  # (0 where a fit's problem has no row)
        if split is None:
            _add_transposed_times(X, r, R, raw, _columns(weighted, i))
        else:
            raw += split.transposed_times(X, r, R)
        sums += R.sum(axis=0)
    out = []
    for j, f in enumerate(fits):
        f.resid = resids[j]
        out.append(_gradient_of(f.problem, raw[:, j], float(sums[j])))
        f.c0 = out[-1][1]
    return out


def _block_rows(p: int) -> int:
    """Rows of X whose elementwise work a pass does at a time: :data:`_PASS_BYTES` of them, at least
    :data:`_PASS_ROWS_MIN`, a whole number of product blocks (:func:`_product_rows`)."""
    step = _product_rows(p)
    return -(-max(_PASS_ROWS_MIN, _PASS_BYTES // (8 * max(p, 1))) // step) * step


def _product_rows(p: int) -> int:
    """Rows of X each BLAS call of a pass takes (:data:`_PRODUCT_BYTES`)."""
    return max(_PRODUCT_ROWS_MIN, _PRODUCT_BYTES // (8 * max(p, 1)))


def _row_blocks(n: int, p: int) -> Iterator[slice]:
    """The row blocks of a pass over n rows of p columns (:func:`_block_rows`)."""
    rows = _block_rows(p)
    for a in range(0, n, rows):
        yield slice(a, min(n, a + rows))


def _weighted(fits: Sequence[_Fit]) -> np.ndarray:
    """``(blocks, fits)``: whether pass block ``i`` (:func:`_row_blocks`) holds a row of fit ``j``'s problem
    (:meth:`~.glm.GlmProblem.weighted_runs`). A fold's held-out rows weigh 0 in its fits; on a worker's rows
    ordered by fold they fill whole blocks, which that fold's fits skip: a fifth of each pass of 5-fold CV."""
    X = fits[0].problem.base.X
    size = _block_rows(X.shape[1])
    return np.column_stack([f.problem.weighted_runs(size) for f in fits])


def _columns(weighted: np.ndarray, i: int) -> np.ndarray | None:
    """The fits that block ``i`` concerns (None: all of them)."""
    row = weighted[i]
    return None if row.all() else np.flatnonzero(row)


def _times(X: np.ndarray, r: slice, B: np.ndarray, out: np.ndarray, on: np.ndarray | None = None) -> None:
    """``out = X[r] @ B`` (dense X), :func:`_product_rows` rows per call; for at most :data:`_GEMV_MAX` columns
    of B one matrix-vector product per column (those in ``on`` only, when given)."""
    step = _product_rows(X.shape[1])
    for a in range(r.start, r.stop, step):
        rows, part = slice(a, min(r.stop, a + step)), out[a - r.start:min(r.stop, a + step) - r.start]
        if B.shape[1] <= _GEMV_MAX:
            for j in (range(B.shape[1]) if on is None else on):
                np.matmul(X[rows], B[:, j], out=part[:, j])
        else:
            np.matmul(X[rows], B, out=part)


def _add_transposed_times(X: np.ndarray, r: slice, R: np.ndarray, raw: np.ndarray,
                          on: np.ndarray | None = None) -> None:
    """``raw += X[r]ᵀ R`` (dense X), :func:`_product_rows` rows per call; with ``on``, of those columns of R only
    (the others are 0 on these rows)."""
    step = _product_rows(X.shape[1])
    if on is not None:
        if on.size:
            raw[:, on] += _transposed_times(X, r, np.asfortranarray(R[:, on]), step)
        return
    raw += _transposed_times(X, r, R, step)


def _transposed_times(X: np.ndarray, r: slice, R: np.ndarray, step: int) -> np.ndarray:
    """``X[r]ᵀ R``, ``step`` rows per BLAS call."""
    out = np.zeros((X.shape[1], R.shape[1]))
    for a in range(r.start, r.stop, step):
        out += X[a:min(r.stop, a + step)].T @ R[a - r.start:min(r.stop, a + step) - r.start]
    return out


def _gradient_of(problem: GlmProblem, raw: np.ndarray, total: float) -> tuple[np.ndarray, float]:
    """``(c, c0)`` of :func:`_gradients` from ``raw = Xᵀ(w(y − μ))`` (all columns) and ``total = Σw(y − μ)``.

    A full step far out (Poisson counts of 10⁵–10⁶ on raw populations, R's Migration) can make μ overflow:
    ``total`` is infinite and the gradient NaN, silently, as that step's deviance is infinite too, so the line
    search never takes it and the gradient of the point it does take is formed anew."""
    d = problem.base
    c = raw[d.cols]
    with np.errstate(over="ignore", invalid="ignore"):
        if d.fit_intercept:
            c = c - d.x_center[d.cols] * total
        return c / (d.x_scale[d.cols] * d.sum_w), total / d.sum_w


@dataclass(frozen=True, eq=False)
class _FullStep:
    """What one pass over the rows learns of a fit's full step (t = 1) before its line search."""

    d_eta: np.ndarray  # the step's change of the linear predictor on every row, intercept included
    eta: np.ndarray  # the linear predictor after it
    deviance: float  # the mean half deviance there
    slope: float  # the smooth part's directional derivative Σw(μ − y)d_eta/Σw at the current point
    resid: np.ndarray  # w(y − μ) there (every row)
    gradient: tuple[np.ndarray, float]  # (c, c0) there


def _full_steps(fits: Sequence[_Fit], steps: Sequence[_Step]) -> list[_FullStep]:
    """For every fit of a batch at once: the full step's linear predictor ``η + XΔ``, the mean half deviance
    there, the line search's slope, and the gradient there. One pass over the rows, a block of
    :data:`_PASS_BYTES` at a time: the block's ``XΔ``, the fits' elementwise work and its ``XᵀR`` share it while
    it is in cache, where the products ``XΔ`` and ``XᵀR`` read the rows twice and every elementwise operation
    streamed n values from memory (one fold of 10⁶ × 100 rows, 24 fits in batches of two: 19.7 s against
    22.9 s binomial, 15.5 s against 18.3 s Poisson, the same steps). The line search
    takes most full steps; a shorter one costs its fit a pass of its own for the gradient (:func:`_gradients`).

    Block sizes. A pass's products have few columns (m fits: 1–6 on a worker), where OpenBLAS's GEMM spent more
    time packing a 4 MB block of rows than multiplying (``dgemm_itcopy``/``oncopy``: 37% of one worker's path);
    on blocks of :data:`_PRODUCT_BYTES` it takes its small-matrix kernels, which do not pack, and ``XΔ`` of at most
    :data:`_GEMV_MAX` fits is faster still as one matrix-vector product per fit (2 fits: 51 against 80 ms per 10⁶
    × 100 rows). The elementwise work, about ten NumPy calls per fit and block whose per-call cost exceeds their
    arithmetic on a block that small, takes :data:`_PASS_BYTES` at a time (8 MB: the rows' products then come
    from the last-level cache). One worker's 10⁶ × 100 binomial path (3 folds, 36 points): 47.1 → 33.2 s; its 24
    trials 30.1 → 26.2 s; held-out deviances equal to 3e-16 where the fits took the same steps. Each fit's
    vectors are its own (n each): an n × m array per pass lies above glibc's mmap threshold (32 MB) from m = 5 at
    10⁶ rows, a fresh mapping whose pages fault in at every pass."""
    X = fits[0].problem.base.X
    split = sparse_columns(X)  # many level indicators: the products at the cost of their non-zeros
    (n, p), m = X.shape, len(fits)
    B = np.zeros((p, m), order="F")
    resids: list[np.ndarray] = []  # w(y − μ) at the current points (their gradients were taken)
    for j, (f, st) in enumerate(zip(fits, steps, strict=True)):
        d = f.problem.base
        B[d.cols, j] = (st.beta - f.beta) / d.x_scale[d.cols]
        assert f.resid is not None
        resids.append(f.resid)
    d_etas, etas, new_resids = ([np.empty(n) for _ in fits] for _ in range(3))
    block = np.empty((min(n, _block_rows(p)), m), order="F")
    raw, totals, dev, slope = np.zeros((p, m)), np.zeros(m), np.zeros(m), np.zeros(m)
    weighted = _weighted(fits)
    with np.errstate(invalid="ignore", over="ignore"):  # 0 · ∞ of a held-out row: the total is taken again
        for i, r in enumerate(_row_blocks(n, p)):
            XB = block[:r.stop - r.start]
            on = _columns(weighted, i)
            if split is None:
                _times(X, r, B, XB, on)
            else:
                XB[:] = split.times(X, r, B)
            for j, (f, st) in enumerate(zip(fits, steps, strict=True)):
                problem = f.problem
                if not weighted[i, j]:  # none of its rows: η stays (completed at the end, _complete_eta)
                    d_etas[j][r], new_resids[j][r], XB[:, j] = 0.0, 0.0, 0.0
                    etas[j][r] = f.eta[r]
                    continue
                v, y = problem.base.v[r], problem.y[r]
                d_eta = np.add(XB[:, j], st.d_b, out=d_etas[j][r])
                slope[j] -= resids[j][r] @ d_eta
                eta = np.add(f.eta[r], d_eta, out=etas[j][r])
                terms = problem._terms[:, r] if problem._terms is not None else None
                half_dev, mu = problem.family.half_deviance_and_mean(y, eta, terms)
                dev[j] += v @ half_dev
                resid = np.subtract(y, mu, out=new_resids[j][r])
                np.multiply(resid, v, out=resid)
                XB[:, j] = resid  # the block's residuals (its XΔ is used): the product XᵀR below
            if split is None:
                _add_transposed_times(X, r, XB, raw, on)
            else:
                raw += split.transposed_times(X, r, XB)
            totals += XB.sum(axis=0)
    out = []
    for j, f in enumerate(fits):
        d = f.problem.base
        deviance = float(dev[j]) / d.sum_w
        if not np.isfinite(deviance):
            deviance = f.problem.mean_half_deviance(etas[j])
        out.append(_FullStep(d_etas[j], etas[j], deviance, float(slope[j]) / d.sum_w, new_resids[j],
                             _gradient_of(f.problem, raw[:, j], float(totals[j]))))
    return out


@dataclass(frozen=True, eq=False)
class _Step:
    """A fit's proposed step: the new coefficients and the intercept's change (data scale); ``c`` the gradient
    it was taken from (for the damping's scale)."""

    beta: np.ndarray
    d_b: float
    c: np.ndarray


def _model_step(f: _Fit, c: np.ndarray, c0: float) -> _Step:
    """The minimiser of the quadratic model in the metric ``f.curv`` (module docstring)."""
    problem, abs_tol = f.problem, f.abs_tol
    d = problem.base
    curv = f.curv
    fit_b = d.fit_intercept
    q = curv.G @ f.beta + c - (curv.xbar * c0 if fit_b else 0.0)
    if f.pen.size == 0:
        beta_new = np.zeros(0)
    else:
        plain, delta = problem.controls is None, f.damping.value
        if plain and f.penalty.lambda1 == 0:  # ridge: the metric's factor serves its fits (Curvature.ridge)
            beta_new = curv.ridge(q + delta * f.beta if delta else q, f.penalty.lambda2 + delta)
        else:
            yy = _model_yy(f, curv)
            if curv.sampled:
                yy = max(yy, curv.model_floor(q) * (1.0 + 1e-12))
            G, q, yy = f.damping.apply(curv.G, q, yy, f.beta, copy=True)
            if plain:
                beta_new = enet_gram(G, q, yy, f.penalty.lambda1, f.penalty.lambda2, f.beta,
                                     tol=_inner_tol(abs_tol, yy), factors=curv.active_blocks(delta)).beta
            else:
                from .box_gram import box_gram

                beta_new = box_gram(G, q, yy, f.pen, f.beta, tol=_BOX_INNER_TOL).beta
    if not fit_b:
        return _Step(beta_new, 0.0, c)
    d_beta = beta_new - f.beta
    d_centred = c0 / curv.su_over_w - float(curv.xbar @ d_beta)  # the centred intercept's step
    return _Step(beta_new, d_centred - float(d.x_center[d.cols] @ (d_beta / d.x_scale[d.cols])), c)


def _model_yy(f: _Fit, curv: Curvature) -> float:
    """``Σu_r(z − z̄)²/Σw`` of the model's working response ``z = η − offset + w(y − μ)/u_r``: the constant that
    makes the Gram-form model a least-squares problem (its duality gap needs it)."""
    problem = f.problem
    d = problem.base
    assert f.resid is not None
    z = np.divide(f.resid, curv.u, out=np.zeros(d.n_rows), where=curv.u > 0)  # w(y − μ)/u_r = (y − μ)/V_r
    z += f.eta
    z -= problem.offset
    if d.fit_intercept:  # about the u_r-weighted mean (centred first: no cancellation)
        z -= float(curv.u @ z) / (curv.su_over_w * d.sum_w)
    return float(curv.u @ (z * z)) / d.sum_w


def _advance(f: _Fit, step: _Step, full: _FullStep, max_iter: int, ref: Curvature) -> tuple[Curvature, float | None]:
    """Take ``step`` by the Armijo line search and decide whether ``f`` is done; a fit that contracts slowly gets
    a Gram of its own, which becomes the reference of its problem. Returns the reference and the step length
    taken (None: the fit stayed where it was)."""
    problem, abs_tol = f.problem, f.abs_tol
    f.n_iter += 1
    taken = problem._armijo(f.eta, f.F, f.b, f.beta, step.d_b, step.beta - f.beta, full.d_eta, f.pen, full.slope,
                            (full.eta, full.deviance))
    if taken is None:  # the model's minimiser is the current point (within the inner tolerance): converged
        f.done = f.converged = True  # (unless its KKT residual says otherwise: then solve_together's Newton steps)
        return ref, None
    start, damped = f.beta, f.damping.value > 0.0
    f.b, f.beta, f.eta, f.F, decrease, t = taken
    f.moved = True
    f.damping.after(t, t * float(np.linalg.norm(step.beta - start)),
                    lambda: float(np.linalg.norm(f.pen.kkt_residual(start, step.c))))
    ratio = decrease / f.last_decrease  # ≈ ρ², ρ the contraction of the steps in the metric (0 at the first)
    f.last_decrease = decrease
    if decrease <= abs_tol and damped and f.n_iter < max_iter:  # its small decrease proves little: one
        f.damping.release()                                       # undamped step more
        return ref, t
    fast = f.n_iter > 1 and ratio <= (_STALE if f.curv.sampled else _FAST)  # (a sampled metric's: certified below)
    if decrease <= abs_tol and (f.polished or fast) and _certified(f, full, t):
        f.done = f.converged = True
        return ref, t
    if f.n_iter >= max_iter:
        f.done = True
        return ref, t
    if f.curv.sampled and decrease > abs_tol and t == 1.0 and _STALE < ratio <= _SLOW:
        # a stale sampled metric (formed far from here; ratio is 0 at a metric's first step, so this reads the
        # second on): a new one at this point, where the sample's error sets the rate (module docstring); a
        # stalled step (ratio above _SLOW) takes the route below, to the exact Gram
        f.curv = ref = Curvature.at(problem, f.eta)
        f.own_sampled = f.curv.sampled
        f.slow, f.last_decrease = 0, np.inf
        return ref, t
    if decrease <= abs_tol:  # within the tolerance but contracting slowly: one Newton step more (module docstring)
        again, f.polished = f.polished, True
        if f.own_sampled and (not again or ratio <= _SLOW):  # its metric is a sampled Gram of its own: another
            return ref, t  # would be no nearer; steps that contract go on in it, one that stalls gets the exact Gram
    elif ratio > _SLOW or t < 1.0:
        f.slow += 1
        if f.slow < _PATIENCE and t == 1.0:
            return ref, t
    else:
        f.slow = 0
        return ref, t
    # a Gram of its own: the next step is a Newton step (or nearly, a sampled one; a fit that stays slow in its
    # own sampled metric, where the sample stands badly for its rows, gets the exact Gram)
    f.curv = ref = Curvature.at(problem, f.eta, exact=f.own_sampled)
    f.own_sampled = f.curv.sampled
    f.slow, f.last_decrease = 0, np.inf
    return ref, t


def _certified(f: _Fit, full: _FullStep, t: float) -> bool:
    """Whether a fit within the tolerance may stop: always in an exact metric, whose last step is a Newton step
    (its KKT residual ends near rounding); in a sampled one only once the KKT residual at the new point is below
    :data:`_SAMPLED_KKT` × max(1, F). A sampled metric's last step contracts the error by the sample's few
    percent, not to rounding, and the flat directions it leaves are what the held-out rows see (the module
    docstring); each further step costs the batch's pass, a fraction of a Gram."""
    if not f.curv.sampled:
        return True
    if t != 1.0:  # the gradient at the point taken is not known yet: one step more
        return False
    return largest_kkt(f.pen, f.beta, full.gradient, f.problem.base.fit_intercept)[1] <= _SAMPLED_KKT * max(1.0, f.F)
