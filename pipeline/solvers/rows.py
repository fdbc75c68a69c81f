"""Lasso, elastic net and ridge on a problem held as rows (:class:`RowDesign`): no p × p matrix.

The objective is the same as :class:`~pipeline.solvers.GramProblem`'s, on the
standardized design ``X̃`` with row weights ``v``:

    P(β) = 1/(2Σv) Σ vᵢ (y_cᵢ − x̃ᵢᵀβ)² + λ1‖β‖₁ + (λ2/2)‖β‖²

**Lasso and elastic net: working sets over an exact inner solver** (glmnet's
strong rules and KKT checks, Tibshirani et al. 2012; the working-set outer loop
of celer and skglm). Let ``c = X̃ᵀV(y_c − X̃β)/Σv − λ2β`` be the negative
gradient of the smooth part; β is optimal iff ``c_j = λ1 sign β_j`` on the
support and ``|c_j| ≤ λ1`` off it.

1. Start from the nearest previous solution β' (at λ1') with its ``c'``
   (cached: for the new λ2 it is ``c' + (λ2' − λ2)β'``, no product needed),
   or from β = 0 (``c = q``). The working set W is β's support plus the
   sequential strong set ``{j : |c_j| ≥ 2λ1 − λ1'}`` (glmnet's rule; it can
   only miss a feature, which step 3 catches).
2. Solve the problem restricted to W exactly: the Gram block ``G_WW`` is
   formed from |W| columns (and kept: a fold's later fits reuse the block of
   every feature seen so far), and :func:`~pipeline.solvers.enet_gram`'s
   active-set Newton solves it to the duality-gap tolerance.
3. One product ``X̃ᵀV r`` gives c over all p. Features outside W with
   ``|c_j| > λ1`` join W (the largest violations first, at most as many as W
   holds), and 2 repeats; otherwise β is optimal over all p.

**Dense solutions: the dual.** Once a working set holds more than
:data:`DUAL_FROM` × n features and λ2 is not small against the kernel's
spectrum, the problem is solved over all p at once on its n-dimensional dual
by a semismooth Newton method (:mod:`.dual_newton`): its Newton system is n × n
whatever the support, maintained from the kernel ``K = AAᵀ`` below (rebuilt
from ridge's eigendecomposition when there is one). On a 1,600 × 20,000 equicorrelated fold this takes an elastic net that
holds 19,854 features from 1.2–3.5 s to 0.4 s, and one that holds 4,832 from
2.2 s to 1.8 s (cold starts, one thread). Should it not converge, the working
sets take over for the rest of the solve.

The duality gap is then computed over all p from the same c (the dual point is
the scaled residual, as in :func:`~pipeline.solvers.enet_duality_gap`), and
held to ``tol · ½ yy``: convergence is certified on the whole problem. A fit
costs about one pass over X per round, and warm-started fits usually need
one round.

**Ridge** has the closed form ``β = (G + λ2 I)⁻¹ q`` with ``G = AᵀA``,
``q = Aᵀb``, ``A = V^{1/2}X̃/√Σv``, ``b = V^{1/2}y_c/√Σv``. For p > n it is
computed through the n × n kernel (push-through identity)
``β = Aᵀ(AAᵀ + λ2 I)⁻¹ b``. Whichever side is smaller (the kernel ``K = AAᵀ``
for p > n, the Gram block ``G = AᵀA`` otherwise) is eigendecomposed once per
problem when it has at most :data:`KERNEL_EIGH_MAX` rows: then every λ2 costs
a product, ridge is exact, and λ2 = 0 is the minimum-norm least-squares
solution. Larger problems share one Lanczos basis over every λ2
(:class:`~pipeline.solvers.krylov.ShiftedLanczos`) on the smaller side.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ._validate import SolverConvergenceWarning
from .active_set import SingularBlock, enet_gram
from .controls import BoxPenalty, FeatureControls
from .design import RowDesign
from .dual_newton import DualOperators, dual_newton
from .krylov import ShiftedLanczos
from .newton_cg import support_newton
from .penalties import ElasticNet
from .split_gram import split_for
from .problem import FitResult

__all__ = ["KERNEL_EIGH_MAX", "RowFit", "RowProblem"]

KERNEL_EIGH_MAX = 3000  # rows up to which ridge eigendecomposes the n × n kernel (eigh of 3000²: ~6 s)
_MAX_ROUNDS = 50
NEWTON_MAX = 2500  # working sets up to this size are solved exactly by the active-set Newton method
_STALL_RATIO, _STALL_ROUNDS = 0.5, 20  # a gap not halved in 20 rounds: singular blocks of any size go back to
#                                       eigen-steps (coordinate descent cannot finish a lasso whose support reaches
#                                       the rank: 50 rounds at a gap of ~3 on 40 × 100 rows)
SINGULAR_NEWTON_MAX = 200  # a singular active block beyond this size goes to coordinate descent: one eigen-step per
#                            dropped coefficient took 54 s per fit's Newton step on a 1,476-feature block (sparse
#                            2,000 × 30,000, λ1 = 0.004, binomial)
_GRAM_EIGEN_FEATURES = 1000  # e_max from the Gram up to this many kept columns (8 MB; n p² flops)
_SPLIT_GRAM_EIGEN_FEATURES = 2500  # ... and of rows with many level indicators, whose Gram costs their non-zeros
#                                    (pipeline.solvers.split_gram): then the p³ eigenvalues dominate (~1 s at 2,500)
_CACHE_MAX = 2500  # features whose Gram block a problem keeps (2500² doubles: 50 MB)
ANDERSON_K = 5  # coordinate-descent iterates per Anderson extrapolation
_THRESHOLD_FLOOR = 1e-16  # coordinate descent's stopping threshold is not tightened below this × yy
_CD_SWEEPS = 20_000  # sweeps of one coordinate-descent call at most
_POLISH_STEPS = 10  # feature-sign steps of one polish on a large support
CD_BUDGET = 100  # coordinate-descent sweeps on a large working set before a Newton step polishes it
_RIDGE_RTOL = 1e-12
DUAL_FROM = 0.5  # working sets above this × the rows go to the dual Newton method (when it applies)
DUAL_MIN_LAMBDA2 = 5e-3  # ... and λ2 at least this × the mean eigenvalue of the kernel (trace G / n)


@dataclass(frozen=True, eq=False)
class RowFit:
    """A solution with what a warm start and the held-out score need besides :class:`FitResult`."""

    result: FitResult
    c_smooth: np.ndarray  # X̃ᵀV r / Σv at the solution (the smooth part's negative gradient, λ2 term apart)
    fitted: np.ndarray  # X̃β on every row (held-out rows included)
    lambda1: float
    rounds: int


@dataclass(eq=False)
class _GramCache:
    """Gram blocks of the features seen so far: ``G[F, F]`` grown as features join (bounded: see ``sub``)."""

    features: list[int] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    block: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def sub(self, design: RowDesign, W: np.ndarray) -> np.ndarray:
        """``G[W, W]``, computing only the rows and columns of features not seen before."""
        if len(self.features) + W.size > _CACHE_MAX:  # bounded memory: start again from this set
            self.features, self.position, self.block = [], {}, np.zeros((0, 0))
        new = np.array([j for j in W if j not in self.position], dtype=np.intp)
        if new.size:
            old = np.array(self.features, dtype=np.intp)
            cross = design.gram(new, old) if old.size else np.zeros((new.size, 0))
            corner = design.gram(new, new)
            m = old.size
            grown = np.empty((m + new.size, m + new.size))
            grown[:m, :m] = self.block
            grown[m:, :m] = cross
            grown[:m, m:] = cross.T
            grown[m:, m:] = corner
            self.block = grown
            for j in new:
                self.position[int(j)] = len(self.features)
                self.features.append(int(j))
        idx = np.array([self.position[int(j)] for j in W], dtype=np.intp)
        return self.block[np.ix_(idx, idx)]


class RowProblem:
    """The penalized least-squares problem of a :class:`RowDesign`; solve it for any penalty (module docstring)."""

    def __init__(self, design: RowDesign, controls: FeatureControls | None = None, *, once: bool = False) -> None:
        """``once``: the problem is solved for one penalty only (a GLM's Newton step), so ridge factors
        ``G + λ2 I`` or ``K + λ2 I`` by Cholesky (a tenth of an eigendecomposition's time) rather than
        eigendecomposing ``G`` or ``K`` for every λ2 to come."""
        self.design = design
        self.once = once
        self.controls = None if controls is None or controls.is_default else controls
        self._l1_ratios: np.ndarray | None = None  # box_lambda1_ratios, once
        self._free_cols: dict[int, np.ndarray] = {}  # X̃ᵀVx̃_u/Σv of unpenalized features u: the box gap's projection
        self.q = design.xt(design.y_c)
        self.yy = float(design.v @ (design.y_c * design.y_c)) / design.sum_w
        self._cd: _Descent | None = None
        self._cache = _GramCache()
        self._ridge: _Ridge | None = None
        self._weighted: _WeightedRows | None = None
        self._K: np.ndarray | None = None
        self._dual_failed = False
        # set by each _enet: the size from which a working set's Gram block was found singular (at first the
        # rows: no larger set has a regular one), and the limit above which singular blocks go to descent
        self._singular_from = design.rows.size
        self._singular_max: int | None = SINGULAR_NEWTON_MAX  # None: singular blocks of any size by eigen-steps
        kept = design.cols
        self._trace_gram = float(np.sum(design.x_var[kept] / design.x_scale[kept] ** 2))  # Σ G_jj = trace K

    @property
    def cache_bytes(self) -> int:
        """Bytes held by the Gram-block cache and ridge's eigendecomposition."""
        eig = self._ridge._eig if self._ridge is not None else None
        kernel = self._K.nbytes if self._K is not None else 0
        return int(self._cache.block.nbytes + (eig[1].nbytes if eig is not None else 0) + kernel)

    @property
    def lambda1_max(self) -> float:
        """Smallest λ1 that zeroes every (penalized) coefficient (on the penalized scale), factors and limits
        respected (:func:`~pipeline.solvers.box_gram.box_lambda1_max`)."""
        if self.controls is None:
            return float(np.max(np.abs(self.q))) if self.q.size else 0.0
        return float(np.max(self.lambda1_ratios(), initial=0.0))

    def lambda1_ratios(self) -> np.ndarray:
        """Per kept feature, the λ1 that keeps it at 0 in the null model (factors and limits respected;
        :func:`~pipeline.solvers.box_gram.box_lambda1_ratios`), computed once (a pass over X); with controls."""
        if self._l1_ratios is None:
            from .box_gram import box_lambda1_ratios

            d = self.design
            unit = self.box_penalty(ElasticNet(1.0, 0.0))
            free = unit.a == 0
            U = np.flatnonzero(free)

            def c_of(beta_u: np.ndarray) -> np.ndarray:
                return d.xt(d.y_c - d.x(U, beta_u))

            self._l1_ratios = box_lambda1_ratios(d.gram(U, U), self.q[U], self.yy, unit.a, unit.lo, unit.hi, free,
                                                 c_of)
        return self._l1_ratios

    def box_penalty(self, penalty: ElasticNet, multipliers: Mapping[str, float] | None = None) -> BoxPenalty:
        """The penalty with this problem's controls on its kept columns and penalized scale."""
        d = self.design
        controls = self.controls if self.controls is not None else FeatureControls.make(d.n_features)
        return controls.on_problem(d.cols, d.x_scale, penalty.lambda1, penalty.lambda2, multipliers)

    def largest_eigenvalue(self, rtol: float = 1e-8) -> float:
        """e_max of the standardized Gram ``G = X̃ᵀVX̃/Σv`` (for ridge's search bounds), to ``rtol``.

        Exact from ridge's eigendecomposition once it exists. Else, on dense rows with at most
        :data:`_GRAM_EIGEN_FEATURES` kept columns (:data:`_SPLIT_GRAM_EIGEN_FEATURES` when most are level
        indicators) and at least as many rows, exact from the kept columns' Gram, one blocked pass (``n p²``
        flops, where a step of the subspace iteration costs ``16 n p`` and clustered top eigenvalues, as of
        correlated columns, take it 100 steps short of ``rtol``: 45 s against 0.4 s at 10⁶ × 100). Else by that subspace iteration with a few vectors (each step two
        passes over X as matrix products), which needs no n × n kernel: the bounds need e_max long before
        (and often without) any ridge fit.
        """
        if self._ridge is not None:
            return self._ridge.largest_eigenvalue()
        d = self.design
        if not d.sparse and 0 < d.n_kept <= d.rows.size and (d.n_kept <= _GRAM_EIGEN_FEATURES or (
                d.n_kept <= _SPLIT_GRAM_EIGEN_FEATURES and split_for(d.X, d.cols) is not None)):
            return float(np.linalg.eigvalsh(d.kept_gram())[-1])
        apply = d.support_operator(np.arange(d.n_kept), copy=False)
        return _top_eigenvalue(apply, d.n_kept, rtol)

    def solve(self, penalty: ElasticNet, warm: RowFit | None = None, *, tol: float = 1e-10,
              multipliers: Mapping[str, float] | None = None, quiet: bool = False) -> RowFit:
        """The solution for ``penalty``, warm-started from ``warm`` (a fit of the same problem); ``multipliers``
        are a trial's group multipliers when the problem has controls. ``quiet``: no warning when the gap
        tolerance is not met (a caller that certifies the result itself, as the GLM solver does)."""
        if self.controls is not None:
            fit = self._box(self.box_penalty(penalty, multipliers), penalty.lambda1, warm, tol)
        elif penalty.lambda1 > 0:
            fit = self._enet(penalty.lambda1, penalty.lambda2, warm, tol)
        else:
            fit = self._ridge_fit(penalty.lambda2, tol)
        if not fit.result.converged and not quiet:
            warnings.warn(
                f"{penalty.name} solve with lambda1={penalty.lambda1:.6g}, lambda2={penalty.lambda2:.6g} on rows did "
                f"not converge: duality gap {fit.result.dual_gap:.3g} > tolerance {fit.result.gap_tol:.3g} after "
                f"{fit.rounds} rounds.", SolverConvergenceWarning, stacklevel=2)
        return fit

    # ------------------------------------------------------------ lasso / elastic net
    def _start(self, lam1: float, warm: RowFit | None) -> tuple[np.ndarray, np.ndarray, float]:
        """β, the smooth gradient at β, and the λ1 they belong to (for the strong rule)."""
        p = self.q.size
        if warm is None or warm.result.beta.size != p:
            return np.zeros(p), self.q.copy(), max(self.lambda1_max, lam1)
        return warm.result.beta.copy(), warm.c_smooth.copy(), warm.lambda1

    def _enet(self, lam1: float, lam2: float, warm: RowFit | None, tol: float) -> RowFit:
        d = self.design
        gap_tol = tol * max(0.5 * self.yy, np.finfo(np.float64).tiny)
        slack = 1e-12 * max(self.lambda1_max, lam1)
        beta, c_smooth, lam_prev = self._start(lam1, warm)
        self._dual_failed = False
        c = c_smooth - lam2 * beta
        W = _working_set(beta, c, lam1, lam_prev)
        if self._cd is None:
            self._cd = _Descent(d)
        r = d.y_c - d.x(np.flatnonzero(beta), beta[beta != 0])
        threshold = 1e-8 * self.yy  # on xv·Δβ²: tightened until the gap holds
        rounds = 0
        gaps: list[float] = []
        # what one hard λ learnt about singular blocks must not slow the fold's later fits (the stall rule)
        self._singular_from, self._singular_max = d.rows.size, SINGULAR_NEWTON_MAX
        previous_gap = np.inf
        gap = _enet_gap(self.q, self.yy, beta, c, d.v @ (r * r) / d.sum_w, lam1, lam2)
        while rounds < _MAX_ROUNDS:
            W, out = _grow(W, np.abs(c) - lam1, slack)
            if out.size == 0 and gap <= gap_tol:
                break
            if out.size == 0 and rounds and threshold <= _THRESHOLD_FLOOR * self.yy and gap > 0.5 * previous_gap:
                break  # stalled: neither a tighter threshold nor the last round helps; the caller says so
            if rounds and out.size <= W.size // 100:  # W (nearly) complete: the inner solve must go further
                threshold = max(threshold * 1e-2, _THRESHOLD_FLOOR * self.yy)
            gaps.append(gap)
            if (self._singular_max is not None and len(gaps) > _STALL_ROUNDS
                    and gap > _STALL_RATIO * gaps[-1 - _STALL_ROUNDS]):
                # coordinate descent stalls near interpolation (the support at the rank): exact eigen-steps
                self._singular_max = None
            rounds += 1
            previous_gap = gap
            W = self._inner(W, beta, r, c_smooth, lam1, lam2, threshold, tol)
            support = np.flatnonzero(beta)
            r = d.y_c - d.x(support, beta[support])  # exact again: no drift from the updates
            c_smooth = d.xt(r)
            c = c_smooth - lam2 * beta
            gap = _enet_gap(self.q, self.yy, beta, c, d.v @ (r * r) / d.sum_w, lam1, lam2)
        coef, intercept = d.to_original_scale(beta)
        result = FitResult(coef, intercept, beta, rounds, float(gap), gap_tol, bool(gap <= gap_tol))
        return RowFit(result, c_smooth, d.y_c - r, lam1, rounds)

    def _inner(self, W: np.ndarray, beta: np.ndarray, r: np.ndarray, c_smooth: np.ndarray, lam1: float, lam2: float,
               threshold: float, tol: float) -> np.ndarray:
        """Solve the problem restricted to W (β updated in place; r, the residual of β on entry, is spent: the
        caller recomputes it, and c_smooth is ``X̃ᵀVr/Σv``); returns the set the solution is certified on.

        Up to :data:`NEWTON_MAX` features (unless :meth:`_low_rank`: with λ2 > 0 and far more features than
        rows, ``G_WW + λ2 I`` is a low-rank matrix plus a shift, which conjugate gradients solve in a few
        steps once the preconditioner holds that rank): exactly, by the active-set Newton method on ``G_WW`` (kept in a
        cache across the fits of this problem). Beyond: coordinate descent on W to ``threshold`` finds the
        support (at most :data:`CD_BUDGET` sweeps), then Newton steps on the support polish it (an
        ill-conditioned W, such as equicorrelated features, slows coordinate descent down, not Newton): on
        its Gram block if it is small enough, otherwise one step by preconditioned conjugate gradients
        without the block (:mod:`.newton_cg`). One step per round, because each further step is a whole
        CG solve, and near saturation (a lasso support of 7,000 on 8,000 sparse rows) hundreds of
        coefficients flip sign: the next round's coordinate descent repairs them for the cost of a sweep
        (measured on sparse 10⁴ × 10⁵ data, 30 fits of one fold: 35 s with up to 50 steps, 25 s with one;
        equicorrelated 2,000 × 20,000: 14.7 s and 13.2 s). The result is certified on that support; the
        caller checks every feature.
        """
        if W.size > DUAL_FROM * self.design.rows.size and self._dual_applies(lam2):
            if self._dual(beta, r, c_smooth, lam1, lam2, tol):
                return np.arange(beta.size)
        if W.size <= NEWTON_MAX and not self._low_rank(W.size, lam2) and self._newton(W, beta, lam1, lam2, tol):
            return W
        assert self._cd is not None
        self._cd.solve(W, beta, r, BoxPenalty.uniform(W.size, lam1, lam2), threshold, max_sweeps=CD_BUDGET)
        support = np.flatnonzero(beta)
        if (support.size <= NEWTON_MAX and not self._low_rank(support.size, lam2)
                and self._newton(support, beta, lam1, lam2, tol)):
            return support
        return support_newton(self.design.support_operator, self.q, support, beta, lam1, lam2,
                              self.design.rows.size, max_steps=1, columns=self.design.weighted_columns)

    def _low_rank(self, size: int, lam2: float) -> bool:
        """Whether ``G_WW + λ2 I`` of ``size`` features is better left to CG: its Gram part has rank at most the
        rows, and its Cholesky factor (size³/3 flops) costs more than CG with a full-rank preconditioner."""
        return lam2 > 0 and size > 2 * self.design.rows.size

    def _dual_applies(self, lam2: float) -> bool:
        """Whether the dual Newton method is the one to try: fewer rows than features (else the primal systems
        are the smaller ones), a kernel small enough to factor (n ≤ :data:`KERNEL_EIGH_MAX`), no failure earlier in
        this solve, and λ2 not small against the kernel's spectrum. β(θ) = S(Aᵀθ)/λ2 turns ever more
        sensitive as λ2 falls, and the Newton steps with it:
        measured on a 1,600 × 20,000 fold from cold starts, 4–8 steps for λ2 ≥ 0.1 (0.8 % of the mean
        eigenvalue, trace G / n = 12.5), 13 at 0.01, 36 at 10⁻³ and no convergence in 60 at 10⁻⁴, where
        the working-set path takes 1–7 s."""
        d = self.design
        return (lam2 > 0 and d.rows.size <= KERNEL_EIGH_MAX and d.rows.size < d.n_kept and not self._dual_failed
                and lam2 >= DUAL_MIN_LAMBDA2 * self._trace_gram / d.rows.size)

    def _dual(self, beta: np.ndarray, r: np.ndarray, c_smooth: np.ndarray, lam1: float, lam2: float,
              tol: float) -> bool:
        """Solve over all p on the n-dimensional dual (:mod:`.dual_newton`) from the residual r of β (whose
        ``Aᵀθ`` is ``c_smooth``, already at hand); whether both gaps met ``0.1 · tol · ½yy`` (the caller
        recomputes the residual and certifies the result over all p with the primal gap, as for every other
        step). Only then is β replaced by the dual's β(θ)."""
        rows = self._weighted_rows()
        d = self.design
        theta = rows.sqrt_v * r[d.rows] / rows.root_w

        def certify(b: np.ndarray, residual: np.ndarray) -> float:  # the gap _enet holds β to (residual: b − Aβ)
            c = rows.at(residual) - lam2 * b
            return _enet_gap(self.q, self.yy, b, c, float(residual @ residual), lam1, lam2)

        result = dual_newton(self._dual_operators(), rows.b, theta, c_smooth, lam1, lam2,
                             0.1 * tol * max(0.5 * self.yy, np.finfo(np.float64).tiny), certify)
        self._dual_failed = not result.converged
        if self._dual_failed:  # β stays as it came: the working-set solvers assume β = 0 outside W
            return False
        beta[:] = result.beta
        return True

    def _weighted_rows(self) -> _WeightedRows:
        if self._weighted is None:
            self._weighted = _WeightedRows(self.design)
        return self._weighted

    def _kernel(self) -> np.ndarray:
        """``K = AAᵀ`` of the problem's rows for the dual Newton method, kept once asked for: rebuilt from
        ridge's eigendecomposition when there is one (``U diag(e) Uᵀ``, 2n³ flops: 0.4 s at n = 1,600, a
        quarter of forming it from the columns), else formed from the columns (``2n²p``)."""
        if self._K is None:
            ridge = self._ridge
            if ridge is not None and ridge.dual and ridge._eig is not None:
                e, U = ridge._eig
                self._K = (U * e) @ U.T
            else:
                self._K = self._weighted_rows().kernel()
        return self._K

    def _kernel_for_ridge(self) -> np.ndarray:
        """A kernel ridge may overwrite: a copy of the kept one, or a new one (not kept: a sweep without dense
        elastic nets never holds K besides its eigenvectors)."""
        return self._K.copy() if self._K is not None else self._weighted_rows().kernel()

    def _dual_operators(self) -> DualOperators:
        rows = self._weighted_rows()
        return DualOperators(rows.at, rows.a, rows.columns, self._kernel)

    def _newton(self, W: np.ndarray, beta: np.ndarray, lam1: float, lam2: float, tol: float) -> bool:
        """Solve on W by the active-set Newton method (β updated in place); False, β untouched, when an active
        block of more than :data:`SINGULAR_NEWTON_MAX` features is singular (more of them than rows, or
        duplicated columns, as in sparse one-hot or text data): coordinate descent is then the inner solver.

        A set beyond that size and as large as one found singular before in this solve (or as the rows, with
        λ2 = 0) is not tried again: each try costs Cholesky factors of its growing blocks (45% of a wide sparse
        binomial fit's time when every round tried)."""
        limit = self._singular_max
        if limit is not None and lam2 == 0.0 and W.size >= self._singular_from and W.size > limit:
            return False
        try:
            sub = enet_gram(self._cache.sub(self.design, W), self.q[W], self.yy, lam1, lam2, beta[W], tol=0.1 * tol,
                            singular_max=limit)
        except SingularBlock as e:
            self._singular_from = min(self._singular_from, e.size)
            return False
        beta[W] = sub.beta
        return True

    # ------------------------------------------------------------ penalty factors and limits
    def _box(self, pen: BoxPenalty, lam1: float, warm: RowFit | None, tol: float) -> RowFit:
        """Working sets as in :meth:`_enet` with the per-feature penalty ``pen`` (factors, limits): the KKT
        check is :meth:`BoxPenalty.kkt_residual`, the inner solver :func:`~pipeline.solvers.box_gram.box_gram`
        on the set's Gram block (coordinate descent with the limits, then coordinate descent on the rows
        beyond :data:`NEWTON_MAX` features), the certificate :func:`~pipeline.solvers.controls.box_duality_gap`
        over all p. The unpenalized features are always in the set."""
        from .box_gram import box_gram

        d = self.design
        p = self.q.size
        gap_tol = tol * max(0.5 * self.yy, np.finfo(np.float64).tiny)
        slack = 1e-12 * max(float(np.max(np.abs(self.q), initial=0.0)), lam1)
        if warm is not None and warm.result.beta.size == p:
            beta = np.clip(warm.result.beta, pen.lo, pen.hi)
            lam_prev = warm.lambda1
        else:
            beta, lam_prev = np.zeros(p), (max(self.lambda1_max, lam1) if lam1 > 0 else 0.0)
        support = np.flatnonzero(beta)
        r = d.y_c - d.x(support, beta[support])
        c_smooth = d.xt(r)
        factor = pen.a / lam1 if lam1 > 0 else np.zeros(p)
        strong = np.abs(c_smooth - pen.m * beta) >= (2.0 * lam1 - lam_prev) * factor
        W = np.union1d(support, np.flatnonzero((pen.a == 0) | (strong & (factor > 0))))
        if self._cd is None:
            self._cd = _Descent(d)
        threshold = 1e-8 * self.yy
        rounds = 0
        gap = self._box_gap(beta, r, c_smooth, pen)
        while rounds < _MAX_ROUNDS:
            W, out = _grow(W, pen.kkt_residual(beta, c_smooth), slack)
            if out.size == 0 and gap <= gap_tol:
                break
            if rounds and out.size <= W.size // 100:
                threshold = max(threshold * 1e-2, _THRESHOLD_FLOOR * self.yy)
            rounds += 1
            low_rank = self._low_rank(W.size, float(np.max(pen.m, initial=0.0)))
            if W.size <= NEWTON_MAX and not low_rank:
                sub = box_gram(self._cache.sub(d, W), self.q[W], self.yy, pen.take(W), beta[W], tol=0.1 * tol)
                beta[W] = sub.beta
            else:
                if lam1 == 0.0:  # ridge: every coefficient is free but the limited ones; Newton first, CD repairs
                    self._box_polish(beta, r, pen)
                self._cd.solve(W, beta, r, pen.take(W), threshold, max_sweeps=CD_BUDGET)  # the support, roughly
                S = np.union1d(np.flatnonzero(beta), np.flatnonzero(pen.a == 0))
                if S.size <= NEWTON_MAX and not self._low_rank(S.size, float(np.max(pen.m, initial=0.0))):
                    # solved exactly on the support's block; the KKT check adds the rest
                    beta[S] = box_gram(self._cache.sub(d, S), self.q[S], self.yy, pen.take(S), beta[S],
                                       tol=0.1 * tol).beta
                else:
                    self._box_polish(beta, r, pen)
            support = np.flatnonzero(beta)
            r = d.y_c - d.x(support, beta[support])
            c_smooth = d.xt(r)
            gap = self._box_gap(beta, r, c_smooth, pen)
        coef, intercept = d.to_original_scale(beta)
        result = FitResult(coef, intercept, beta, rounds, float(gap), gap_tol, bool(gap <= gap_tol))
        return RowFit(result, c_smooth, d.y_c - r, lam1, rounds)

    def _box_polish(self, beta: np.ndarray, r: np.ndarray, pen: BoxPenalty) -> None:
        """After coordinate descent on a support too large for its Gram block: the Newton steps of
        :mod:`.box_gram` on the free coordinates F, ``(G_FF + diag m_F) β_F = q_F − a_F sign β_F − G_{F,B} β_B``
        (B: the coefficients held at a non-zero limit), by preconditioned conjugate gradients on the rows
        (:func:`~.newton_cg.shifted_gram_solver`); a step cut short drops the coefficients that reached 0 or a
        limit and is solved again, at most :data:`_POLISH_STEPS` times. Kept only if the objective falls
        (β and the residual r of β are updated in place)."""
        from .box_gram import free_coordinates, segment_step
        from .newton_cg import shifted_gram_solver

        d = self.design
        F0 = free_coordinates(beta, pen)
        if F0.size == 0:
            return
        before, objective = beta.copy(), 0.5 * float(d.v @ (r * r)) / d.sum_w + pen.value(beta)
        solve = shifted_gram_solver(lambda: d.support_operator(F0), lambda: d.weighted_columns(F0), F0.size,
                                    pen.m[F0], d.rows.size)
        position = {int(j): i for i, j in enumerate(F0)}
        for _ in range(_POLISH_STEPS):
            F = np.intersect1d(F0, free_coordinates(beta, pen))
            if F.size == 0:
                break
            held = np.setdiff1d(np.flatnonzero(beta), F)
            rhs = self.q[F] - pen.a[F] * np.sign(beta[F])
            if held.size:
                rhs -= d.xt(d.x(held, beta[held]))[F]
            target = solve(np.array([position[int(j)] for j in F], dtype=np.intp), rhs, beta[F])
            if not segment_step(beta, F, target, pen) or np.array_equal(beta[F], np.clip(target, pen.lo[F],
                                                                                          pen.hi[F])):
                break
        support = np.flatnonzero(beta)
        r_new = d.y_c - d.x(support, beta[support])
        if 0.5 * float(d.v @ (r_new * r_new)) / d.sum_w + pen.value(beta) < objective:
            r[:] = r_new
        else:
            beta[:] = before

    def _box_gap(self, beta: np.ndarray, r: np.ndarray, c: np.ndarray, pen: BoxPenalty) -> float:
        """:func:`~pipeline.solvers.controls.box_duality_gap` over all p, the dual point projected off the
        unpenalized columns that need it (their Gram columns, one pass over X each, are formed once)."""
        from .box_gram import box_gap_parts

        d = self.design
        r2 = float(d.v @ (r * r)) / d.sum_w

        def free_columns(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            for u in U:
                if int(u) not in self._free_cols:
                    self._free_cols[int(u)] = d.xt(d.x(np.array([u]), np.ones(1)))
            return np.column_stack([self._free_cols[int(u)] for u in U]), self.q[U]

        return box_gap_parts(r2, self.yy - float(self.q @ beta), c, beta, pen, free_columns)

    # ------------------------------------------------------------ ridge
    def _ridge_solver(self) -> _Ridge:
        if self._ridge is None:
            self._ridge = _Ridge(self.design, self._weighted_rows(), self._kernel_for_ridge, once=self.once)
        return self._ridge

    def _ridge_fit(self, lam2: float, tol: float) -> RowFit:
        d = self.design
        beta, residual = self._ridge_solver().solve(lam2)
        fitted = d.x(np.arange(beta.size), beta)
        c_smooth = d.xt(d.y_c - fitted)
        gap = _ridge_suboptimality(self.q, c_smooth, beta, lam2)
        gap_tol = tol * max(0.5 * self.yy, np.finfo(np.float64).tiny)
        coef, intercept = d.to_original_scale(beta)
        result = FitResult(coef, intercept, beta, 0, float(gap), gap_tol, bool(gap <= gap_tol or lam2 == 0.0))
        return RowFit(result, c_smooth, fitted, 0.0, 0)


def _top_eigenvalue(apply: Callable[[np.ndarray], np.ndarray], m: int, rtol: float, k: int = 4,
                    max_iter: int = 100) -> float:
    """The largest eigenvalue of the PSD operator ``apply`` (m × m) by subspace iteration with Rayleigh–Ritz,
    until the top Ritz value changes by less than ``rtol`` relative (the error shrinks as ``(e_k+1/e_1)^2i``)."""
    if m == 0:
        return 0.0
    Z, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((m, min(k, m))))
    top = 0.0
    for _ in range(max_iter):
        Y = apply(Z)
        ritz = np.linalg.eigvalsh(Z.T @ Y)
        new = float(ritz[-1])
        if abs(new - top) <= rtol * abs(new):
            return new
        top = new
        Z, _ = np.linalg.qr(Y)
    return top


def _working_set(beta: np.ndarray, c: np.ndarray, lam1: float, lam_prev: float) -> np.ndarray:
    """The support of β plus its sequential strong set ``|c_j| ≥ 2λ1 − λ1'``, the strongest first and at
    most as many as the support holds (at least 10): far from the warm start (a cold start at λ1_max,
    say) the strong set is most of p, and the outer loop grows the set geometrically instead."""
    support = np.flatnonzero(beta)
    strong = np.flatnonzero((np.abs(c) >= 2.0 * lam1 - lam_prev) & (beta == 0))
    room = max(10, support.size)
    if strong.size > room:
        strong = strong[np.argpartition(np.abs(c[strong]), -room)[-room:]]
    return np.union1d(support, strong)


def _grow(W: np.ndarray, violation: np.ndarray, slack: float) -> tuple[np.ndarray, np.ndarray]:
    """The working set W grown by the features outside it whose KKT ``violation`` exceeds ``slack``, the
    largest first and at most as many as W holds (at least 10); returns it and the features added."""
    violation = violation.copy()
    violation[W] = -np.inf
    out = np.flatnonzero(violation > slack)
    batch = max(10, W.size)
    if out.size > batch:
        out = out[np.argpartition(violation[out], -batch)[-batch:]]
    return (np.union1d(W, out) if out.size else W), out


def _enet_gap(q: np.ndarray, yy: float, beta: np.ndarray, c: np.ndarray, r2: float, lam1: float,
              lam2: float) -> float:
    """The duality gap over all p (:func:`~pipeline.solvers.enet_duality_gap`'s formula) from the residual's
    weighted mean square ``r2`` and the full negative gradient ``c``."""
    c_norm = float(np.max(np.abs(c), initial=0.0))
    s = 1.0 if c_norm <= lam1 else lam1 / c_norm
    qb = float(q @ beta)
    gap = 0.5 * (1.0 + s * s) * (r2 + lam2 * float(beta @ beta)) + lam1 * float(np.abs(beta).sum()) - s * (yy - qb)
    return max(gap, 0.0)


class _Descent:
    """Coordinate descent on a working set of a :class:`RowDesign` (the compiled kernel of :mod:`._cd`)."""

    def __init__(self, design: RowDesign) -> None:
        d = self.design = design
        self.inv_scale = 1.0 / d.x_scale
        self.xv = np.zeros(d.n_features)  # Σv x̃_j²/Σv: 1 for standardized columns
        self.xv[d.cols] = d.x_var[d.cols] / (d.x_scale[d.cols] ** 2)
        self.vx = d.x_center * d.sum_w  # Σv x_j, for the sparse kernel's centring offset

    def solve(self, W: np.ndarray, beta: np.ndarray, r: np.ndarray, pen: BoxPenalty, threshold: float,
              max_sweeps: int = _CD_SWEEPS) -> int:
        """Minimise over the coordinates ``W`` (kept-column positions; ``pen`` their penalty) until a sweep
        changes no ``xv·Δβ²`` by more than ``threshold`` (glmnet's criterion); β and the residual r are
        updated in place."""
        d = self.design
        from ._cd import kernels  # numba: only where coordinate descent runs

        sweep_dense, sweep_sparse = kernels()
        cols = d.cols[W]
        bW = beta[W].copy()
        xv = self.xv[cols]
        offset = np.zeros(1)
        box = (pen.a, pen.m, pen.lo, pen.hi)
        if d.sparse:
            X = d.X

            def sweep(order: np.ndarray, svr: float) -> float:
                return float(sweep_sparse(X.data, X.indices, X.indptr, cols, d.x_center, self.inv_scale, self.vx,
                                          xv, d.v, d.sum_w, svr, r, offset, bW, order, *box))
        else:
            def sweep(order: np.ndarray, svr: float) -> float:
                return float(sweep_dense(d.X, cols, d.x_center, self.inv_scale, xv, d.v, d.sum_w, svr, r, bW, order,
                                         *box))

        everything = np.arange(W.size)
        svr = float(d.v @ r)  # Σv r: 0 up to rounding, and no update changes it (Σv x̃_j = 0)
        anderson = _Anderson(d.v, d.sum_w, pen)
        sweeps = 0
        while sweeps < max_sweeps:
            sweeps += 1
            if sweep(everything, svr) <= threshold:
                break
            while sweeps < max_sweeps:  # the active coordinates alone until they settle, then all again
                sweeps += 1
                if sweep(np.flatnonzero(bW), svr) <= threshold:
                    break
                if anderson.record(bW, r, offset):  # extrapolated: the residual now holds its offset
                    offset[0] = 0.0
        r += offset[0]
        beta[W] = bW
        return sweeps


class _Anderson:
    """Anderson extrapolation of coordinate-descent iterates (as in skglm: Bertrand & Massias 2021).

    Coordinate descent converges linearly but slowly when features are
    strongly correlated (one dominant direction of the Gram). Every
    :data:`ANDERSON_K` sweeps the last iterates are combined, ``β̂ = Σ cᵢ βᵢ``
    with the weights that minimise ``‖Σ cᵢ (βᵢ₊₁ − βᵢ)‖`` subject to
    ``Σ cᵢ = 1``; the residual is affine in β, so ``r̂ = Σ cᵢ rᵢ`` costs no
    product. The extrapolation replaces the iterate only if it lowers the
    objective, so the method still descends.
    """

    def __init__(self, v: np.ndarray, sum_w: float, pen: BoxPenalty) -> None:
        self.v, self.sum_w, self.pen = v, sum_w, pen
        self.betas: list[np.ndarray] = []
        self.residuals: list[np.ndarray] = []

    def objective(self, beta: np.ndarray, r: np.ndarray) -> float:
        return 0.5 * float(self.v @ (r * r)) / self.sum_w + self.pen.value(beta)  # ∞ outside the limits

    def record(self, beta: np.ndarray, r: np.ndarray, offset: np.ndarray) -> bool:
        """Keep this iterate; every K of them, replace (β, r) in place by the extrapolation if it is better."""
        self.betas.append(beta.copy())
        self.residuals.append(r + offset[0])
        if len(self.betas) <= ANDERSON_K:
            return False
        B, R = np.asarray(self.betas), np.asarray(self.residuals)
        self.betas, self.residuals = [], []
        U = np.diff(B, axis=0)
        C = U @ U.T
        try:
            z = np.linalg.solve(C + 1e-14 * np.trace(C) * np.eye(C.shape[0]), np.ones(C.shape[0]))
        except np.linalg.LinAlgError:
            return False
        if not np.all(np.isfinite(z)) or z.sum() == 0:
            return False
        c = z / z.sum()
        b_ext, r_ext = c @ B[1:], c @ R[1:]
        if self.objective(b_ext, r_ext) >= self.objective(B[-1], R[-1]):
            return False
        beta[:] = b_ext
        r[:] = r_ext
        return True


def _ridge_suboptimality(q: np.ndarray, c_smooth: np.ndarray, beta: np.ndarray, lam2: float) -> float:
    """``½ gᵀ(G + λ2 I)⁻¹g`` bounded by ``½‖g‖²/λ2`` for the gradient ``g = λ2β − c`` (0 at the optimum)."""
    g = lam2 * beta - c_smooth
    return 0.5 * float(g @ g) / lam2 if lam2 > 0 else 0.0


class _WeightedRows:
    """``A = V^{1/2} X̃ / √Σv`` and ``b = V^{1/2} y_c / √Σv`` on the problem's rows, as products with the design
    (``AᵀA`` is the standardized Gram ``G``, ``Aᵀb = q`` and ``½‖b − Aβ‖²`` the smooth part of the objective)."""

    def __init__(self, design: RowDesign) -> None:
        d = self.design = design
        self.sqrt_v = np.sqrt(d.v[d.rows])
        self.root_w = math.sqrt(d.sum_w)
        self.b = self.sqrt_v * d.y_c[d.rows] / self.root_w

    def a(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``A[:, idx] x`` on the problem's rows."""
        d = self.design
        return self.sqrt_v * d.x(idx, x)[d.rows] / self.root_w

    def at(self, u: np.ndarray) -> np.ndarray:
        """``Aᵀ u`` for u on the problem's rows (all kept features)."""
        d = self.design
        r = np.zeros(d.n_rows)
        r[d.rows] = u / self.sqrt_v
        return d.xt(r) * self.root_w

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """``A[:, idx]`` as a dense array (callers take at most 128 MB of it at a time)."""
        A = self.design.weighted_columns(idx)
        assert A is not None, "a block of columns above the design's copy limit"
        return A

    def kernel(self) -> np.ndarray:
        """``K = AAᵀ`` (n × n), accumulated block of columns by block so that no more than 128 MB of A is
        copied at a time. Each block is a BLAS ``gemm`` (OpenBLAS runs it faster than ``syrk``, which does half
        the flops). Sparse rows: :meth:`_sparse_kernel`."""
        d = self.design
        if d.sparse:
            return self._sparse_kernel()
        n = d.rows.size
        K = np.zeros((n, n))
        step = max(1, 2**24 // max(1, n))
        for a in range(0, d.n_kept, step):
            block = self.columns(np.arange(a, min(a + step, d.n_kept)))
            K += block @ block.T
        return K


    def _sparse_kernel(self) -> np.ndarray:
        """``K = AAᵀ`` of sparse rows, centred implicitly: with ``Xs = X[rows, kept] S⁻¹`` (still sparse) and
        ``c = m ⊘ s``, ``X̃ = Xs − 1cᵀ``, so ``X̃X̃ᵀ = XsXsᵀ − g1ᵀ − 1gᵀ + (cᵀc) 11ᵀ`` with ``g = Xs c``, and
        ``K = D X̃X̃ᵀ D / Σv``, ``D = diag(√v)``. The sparse product costs the non-zeros' pairs, not ``2n²p``:
        on 2,000 × 30,000 rows at 0.2% it took 0.09 s, where densifying blocks of columns took 1.2 s (each
        Newton step of a wide binomial ridge forms it: such a fit went from 8.3 s to 0.7 s). As in
        :meth:`RowDesign.gram` on sparse rows, the centring cancels digits for a column whose mean is large
        against its spread (a column of 10⁴ + N(0, 1): 3e-11 relative, 6e-9 unstandardized)."""
        import scipy.sparse

        d = self.design
        cols = d.cols
        Xs = scipy.sparse.csr_matrix(d.X[:, cols][d.rows]) @ scipy.sparse.diags(1.0 / d.x_scale[cols])
        K = np.asarray((Xs @ Xs.T).toarray(), dtype=np.float64)
        if d.fit_intercept:
            c = d.x_center[cols] / d.x_scale[cols]
            g = np.asarray(Xs @ c).ravel()
            K -= g[:, None]
            K -= g[None, :]
            K += float(c @ c)
        K *= self.sqrt_v[:, None]
        K *= self.sqrt_v[None, :]
        K /= d.sum_w
        return K


class _Ridge:
    """``(G + λ2 I)⁻¹ q`` for any λ2 through the kernel or a shared Lanczos basis (module docstring)."""

    def __init__(self, design: RowDesign, rows: _WeightedRows, kernel: Callable[[], np.ndarray], *,
                 once: bool = False) -> None:
        """``once``: a single λ2 > 0 is solved by a Cholesky factor of the smaller side (see :meth:`solve`)."""
        self.design, self.rows, self._kernel = design, rows, kernel
        d = design
        n, p = d.rows.size, d.n_kept
        self.dual = n <= p
        self.rhs = rows.b if self.dual else d.xt(d.y_c)  # b (dual side) or q = Aᵀb (primal side)
        self._eig: tuple[np.ndarray, np.ndarray] | None = None
        self._lanczos: ShiftedLanczos | None = None
        self._once = once and min(n, p) <= KERNEL_EIGH_MAX
        if not self._once:
            self._decompose()

    def _decompose(self) -> None:
        """What every λ2 is then solved with: the eigendecomposition of the smaller side, or a Lanczos basis."""
        d, rows = self.design, self.rows
        n, p = d.rows.size, d.n_kept
        every = np.arange(p)
        self._once = False
        if min(n, p) <= KERNEL_EIGH_MAX:
            self._eig = self._kernel_eig(self._kernel()) if self.dual else self._gram_eig()
        elif self.dual:
            self._lanczos = ShiftedLanczos(lambda u: rows.a(every, rows.at(u)), rows.b, n)
        else:
            self._lanczos = ShiftedLanczos(lambda beta: rows.at(rows.a(every, beta)), self.rhs, p)

    def _cholesky_solve(self, lam2: float) -> np.ndarray | None:
        """``(K + λ2 I)⁻¹ b`` or ``(G + λ2 I)⁻¹ q`` by one Cholesky factor (None if it fails numerically)."""
        import scipy.linalg

        if self.dual:
            M = self._kernel()
        else:
            every = np.arange(self.design.n_kept)
            M = self.design.gram(every, every)
        M.flat[:: M.shape[0] + 1] += lam2
        try:
            factor = scipy.linalg.cho_factor(M, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None
        return np.asarray(scipy.linalg.cho_solve(factor, self.rhs, check_finite=False))

    @staticmethod
    def _kernel_eig(K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigendecomposition of ``K = AAᵀ`` (overwritten) by LAPACK's divide and conquer (``syevd``)."""
        import scipy.linalg

        e, U = scipy.linalg.eigh(K, check_finite=False, overwrite_a=True, driver="evd")
        return np.maximum(e, 0.0), U

    def _gram_eig(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigendecomposition of ``G = AᵀA`` (p × p, p small: more rows than kept columns)."""
        import scipy.linalg

        d = self.design
        every = np.arange(d.n_kept)
        e, V = scipy.linalg.eigh(d.gram(every, every), check_finite=False)
        return np.maximum(e, 0.0), V

    def solve(self, lam2: float) -> tuple[np.ndarray, float]:
        """β for λ2 and the relative residual of the linear system (0 for an eigendecomposition).

        With ``G = V diag(e) Vᵀ``: ``β = V (Vᵀq ⊘ (e + λ2))``; with ``K = U diag(e) Uᵀ``:
        ``β = Aᵀ U (Uᵀb ⊘ (e + λ2))``. At λ2 = 0 eigenvalues at rounding level are dropped (the minimum-norm
        least-squares solution, as an SVD solver gives it); on the dual side at any λ2 too: ``Aᵀu = 0`` for
        ``Ku = 0``, but ``Uᵀb ⊘ λ2`` is large there wherever rows repeat with different targets, and ``Aᵀ`` of
        it left rounding noise that kept a tiny-λ2 fit's gap above its tolerance (1e-9 at λ2 = 5e-8 on a table
        of duplicated rows). The primal side keeps them for λ2 > 0: a tiny but real eigenvalue (two nearly
        equal columns) carries ``q``'s share there. Solved ``once`` (λ2 > 0): one
        Cholesky factor of ``K + λ2 I`` or ``G + λ2 I`` instead (n³/3 flops against about 4n³).
        """
        if self._once and lam2 > 0.0:
            x_once = self._cholesky_solve(lam2)
            if x_once is not None:
                return (self.rows.at(x_once) if self.dual else x_once), 0.0
        if self._eig is None and self._lanczos is None:
            self._decompose()
        if self._eig is not None:
            e, U = self._eig
            denom = e + lam2
            rounding = e.size * np.finfo(np.float64).eps * float(e[-1]) if e.size else 0.0
            keep = e > rounding if self.dual or lam2 == 0.0 else np.ones(e.size, dtype=bool)
            rhs = U.T @ self.rhs
            x = U[:, keep] @ (rhs[keep] / denom[keep])
            return (self.rows.at(x) if self.dual else x), 0.0
        assert self._lanczos is not None
        x, residual = self._lanczos.solve(lam2, _RIDGE_RTOL)
        return (self.rows.at(x) if self.dual else x), residual

    def largest_eigenvalue(self) -> float:
        if self._eig is None and self._lanczos is None:
            self._decompose()
        if self._eig is not None:
            return float(self._eig[0][-1])
        assert self._lanczos is not None
        return self._lanczos.largest_eigenvalue()
