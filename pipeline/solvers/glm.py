"""Penalized binomial and Poisson regression by proximal Newton: glmnet's IRLS with a line search.

Problem (on the penalized scale ``β̃_j = s_j β_j``, ``s`` the standard deviations under the sample weights
as for squared loss; :mod:`.families` for ``½d``):

    F(b, β̃) = Σ wᵢ ½ d(yᵢ, ηᵢ) / Σw + h(β̃),     ηᵢ = offsetᵢ + b + Σ_j x_ij β̃_j / s_j,

``h`` the elastic net, or the per-feature :class:`~pipeline.solvers.controls.BoxPenalty` (factors, limits).

Each outer iteration (glmnet's IRLS) replaces the mean deviance by its second-order model at the current
point: weights ``uᵢ = wᵢ V(μᵢ)`` and working response ``zᵢ = ηᵢ − offsetᵢ + (yᵢ − μᵢ)/V(μᵢ)``,

    Q(b', β̃') = Σ uᵢ (zᵢ − b' − x̃ᵢᵀβ̃')² / (2Σw) + h(β̃'),

a weighted penalized least-squares problem that the squared-loss solvers minimise exactly (its intercept
profiled out by centring at the u-weighted means). Where glmnet takes the full step, the step here is
cut back until the Armijo condition ``F(x + t d) ≤ F(x) + σ t Δ`` holds, ``Δ = ∇fᵀd + h(β̃+d) − h(β̃) < 0``
(Lee, Sun & Saunders 2014, proximal Newton): a globally convergent method, quadratically so near the
solution. It stops when the model decrease ``−Δ`` is at most ``tol`` times the objective of the null model
(the same relative tolerance as the squared-loss solvers' duality gap), or of the current point where that
is smaller (nearly separable classes: :func:`stop_scale`); the result reports the largest KKT
residual (intercept included) as its certificate.

The quadratic model is solved one of two ways (``inner``):

- ``gram``: its weighted Gram ``X̃ᵀUX̃/Σw`` formed from row blocks at every outer iteration (``O(np²)``),
  then the active-set solver (:func:`~.active_set.enet_gram`), the box solver or a Cholesky (ridge);
- ``rows``: the rows engine's working sets and coordinate descent on the rows (:class:`~.rows.RowProblem`
  on a :class:`~.design.RowDesign` with weights ``u`` and the fixed scales ``s``): no p × p matrix.

Many fits of one problem (a sweep's batch for a fold) take :func:`~.glm_chord.solve_many` instead on the Gram
route, and those of a worker's folds :func:`~.glm_chord.solve_together`: steps in the metric of a nearby fit's
Gram, one Gram per fit rather than one per Newton step.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import SolverConvergenceWarning
from .active_set import enet_gram
from .controls import BoxPenalty, FeatureControls
from .damping import Damping
from .design import RowDesign, dense_weighted_gram
from .families import Family
from .penalties import ElasticNet
from .problem import FitResult
from .rows import RowFit, RowProblem

__all__ = ["GlmFit", "GlmProblem", "largest_kkt"]

_ARMIJO = 1e-4
_KKT_ALARM = 1e-4  # a converged solve's largest KKT residual above this × max(1, F) is reported as not converged ...
_GAIN_ALARM = 1e-10  # ... if the decrease it promises, r²/2H, is above this × max(1, F) (the default tolerance)
_MAX_HALVINGS = 50
_GRAM_MAX_FEATURES = 4000  # `auto`: above this many kept features, the rows solve the quadratic models
_WORKING_SET_MIN = 30  # up to this many features every Newton step takes them all (their Gram is cheap)


@dataclass(frozen=True, eq=False)
class GlmFit:
    """A solved GLM problem.

    ``coef``/``intercept`` are on the data's scale; ``beta`` (penalized scale, kept columns) and
    ``intercept`` warm-start a neighbouring fit; ``eta`` is the linear predictor on every row of X (held-out
    rows and the offset included). ``kkt_residual`` is the largest distance of the gradient to the penalty's
    subdifferential over the kept features and the intercept.
    """

    coef: np.ndarray
    intercept: float
    beta: np.ndarray
    eta: np.ndarray
    objective: float
    kkt_residual: float
    n_iter: int
    converged: bool
    curvature: Any = None  # the fixed metric a batch solve ended in (glm_chord.Curvature), for its neighbours
    origin: int = 0  # the token of the problem it solves (:attr:`GlmProblem.token`): its eta starts that problem
    deviance: float = float("nan")  # the mean half deviance there (objective less penalty): a score needs no pass
    gradient: tuple[np.ndarray, float] | None = None  # (c, c0) at eta, the certificate's: a warm start needs no pass

    @property
    def n_nonzero(self) -> int:
        return int(np.count_nonzero(self.coef))


def largest_kkt(pen: BoxPenalty, beta: np.ndarray, gradient: tuple[np.ndarray, float],
                fit_intercept: bool) -> tuple[np.ndarray, float]:
    """The KKT residual of each kept feature at ``beta`` for the gradient's negative ``(c, c0)``, and the
    largest of them and, with an intercept, of ``|c0|`` (a fit's certificate)."""
    c, c0 = gradient
    each = pen.kkt_residual(beta, c)
    kkt = float(np.max(each, initial=0.0))
    return each, (max(kkt, abs(c0)) if fit_intercept else kkt)


class GlmProblem:
    """``F`` of the module docstring for rows ``X`` (dense or sparse), target ``y`` and sample weights ``w``
    (0 for rows outside the problem: a fold's held-out rows), solved for any penalty by :meth:`solve`."""

    def __init__(self, X: Any, y: np.ndarray, w: np.ndarray, family: Family, *, offset: np.ndarray | None = None,
                 fit_intercept: bool = True, standardize: bool = True, controls: FeatureControls | None = None,
                 inner: str = "auto") -> None:
        self.family = family
        self.base = RowDesign(X, y, w, fit_intercept=fit_intercept, standardize=standardize)
        d = self.base
        self.y = np.asarray(y, dtype=np.float64)
        self.offset = np.zeros(d.n_rows) if offset is None else np.asarray(offset, dtype=np.float64)
        self.controls = None if controls is None or controls.is_default else controls
        if inner == "auto":
            inner = "gram" if not d.sparse and d.n_kept <= min(d.rows.size, _GRAM_MAX_FEATURES) else "rows"
        if inner not in ("gram", "rows"):
            raise ValueError(f"`inner` must be 'auto', 'gram' or 'rows', got {inner!r}.")
        self.inner = inner
        self._null: tuple[float, np.ndarray] | None = None
        self._null_objective: float | None = None
        self._ratios: np.ndarray | None = None
        self._terms = family.deviance_terms(self.y)  # what the deviance needs of y, once
        self._weighted_runs: dict[int, np.ndarray] = {}
        self.token = secrets.randbits(63) + 1  # names this problem in its fits (copies of it keep it)

    # ------------------------------------------------------------ the objective and its pieces
    @property
    def batched(self) -> bool:
        """Whether batches of fits take :func:`~.glm_chord.solve_many` (the Gram route on dense rows)."""
        return self.inner == "gram" and not self.base.sparse

    @property
    def n_features(self) -> int:
        return self.base.n_features

    def eta(self, intercept: float, beta: np.ndarray, rows: slice | None = None) -> np.ndarray:
        """``offset + b + X (β̃ / s)`` on every row, or on the run of rows ``rows`` (no slice of sparse rows,
        which would copy them, when all are wanted)."""
        d = self.base
        coef = np.zeros(d.n_features)
        coef[d.cols] = beta / d.x_scale[d.cols]
        X, offset = (d.X, self.offset) if rows is None else (d.X[rows], self.offset[rows])
        return offset + intercept + np.asarray(X @ coef).ravel()

    def weighted_runs(self, size: int) -> np.ndarray:
        """Whether each run of ``size`` rows (rows ``[i·size, (i+1)·size)``) holds a row of the problem (weight
        above 0), once per size. A fold's held-out rows weigh 0: where they lie together (a worker's rows ordered
        by fold, :func:`pipeline.cv.rows.load_rows`), the passes of :mod:`.glm_chord` skip those runs for that
        fold's fits."""
        runs = self._weighted_runs.get(size)
        if runs is None:
            v = self.base.v
            runs = np.logical_or.reduceat(v > 0, np.arange(0, v.size, size)) if v.size else np.zeros(0, dtype=bool)
            self._weighted_runs[size] = runs
        return runs

    def mean_half_deviance(self, eta: np.ndarray) -> float:
        """``Σ wᵢ ½d(yᵢ, ηᵢ) / Σw`` over the problem's rows.

        Taken over every row, the others weighted 0 (no gather of the problem's rows: a fifth more arithmetic,
        three copies fewer); over the problem's rows alone when a row outside them has a linear predictor
        beyond range (0 · ∞)."""
        d = self.base
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(d.v @ self.family.half_deviance(self.y, eta, self._terms))
        if not math.isfinite(total):
            rows = d.rows
            terms = None if self._terms is None else self._terms[:, rows]
            total = float(d.v[rows] @ self.family.half_deviance(self.y[rows], eta[rows], terms))
        return total / d.sum_w

    def gradient(self, eta: np.ndarray) -> tuple[np.ndarray, float]:
        """``c = X̃ᵀW(y − μ)/Σw`` (minus the gradient in β̃, centred columns) and the intercept's ``Σw(y − μ)/Σw``."""
        d = self.base
        resid = np.where(d.v > 0, self.y - self.family.mean(eta), 0.0)
        return d.xt(resid), float(d.v @ resid) / d.sum_w

    def box_penalty(self, penalty: ElasticNet, multipliers: Mapping[str, float] | None = None) -> BoxPenalty:
        """The penalty on the kept columns' penalized scale (factors and limits when the problem has them)."""
        d = self.base
        controls = self.controls if self.controls is not None else FeatureControls.make(d.n_features)
        return controls.on_problem(d.cols, d.x_scale, penalty.lambda1, penalty.lambda2, multipliers)

    def null_model(self) -> tuple[float, np.ndarray]:
        """The intercept and linear predictor of the model without features (cached)."""
        if self._null is None:
            d = self.base
            rows = d.rows
            b = self.family.null_intercept(self.y[rows], d.v[rows], self.offset[rows]) if d.fit_intercept else 0.0
            self._null = (b, self.offset + b)
        return self._null

    def null_objective(self) -> float:
        """The null model's mean half deviance, the stopping rule's scale (cached: every fit of a sweep asks)."""
        if self._null_objective is None:
            self._null_objective = self.mean_half_deviance(self.null_model()[1])
        return self._null_objective

    @property
    def lambda1_max(self) -> float:
        """Smallest λ1 that zeroes every penalized coefficient: ``max_j |c_j| / f_j`` at the null model."""
        return float(np.max(self.lambda1_ratios(), initial=0.0))

    def lambda1_ratios(self) -> np.ndarray:
        """Per kept feature, the λ1 that keeps it at 0 in the null model (the unpenalized features fitted
        there, limits respected: :func:`~pipeline.solvers.box_gram.null_pull_ratios`), computed once."""
        if self._ratios is None:
            from .box_gram import null_pull_ratios

            d = self.base
            unit = self.box_penalty(ElasticNet(1.0, 0.0))
            free = unit.a == 0
            if np.any(free):
                eta = self._unpenalized_fit(d.cols[free])
            else:
                eta = self.null_model()[1]
            c, _ = self.gradient(eta)
            self._ratios = null_pull_ratios(c, unit.a, unit.lo, unit.hi, free)
        return self._ratios

    def _unpenalized_fit(self, U: np.ndarray) -> np.ndarray:
        """The linear predictor of the fit on the unpenalized columns ``U`` alone (their limits respected)."""
        d = self.base
        assert self.controls is not None
        controls = FeatureControls.make(U.size, lower=self.controls.lower[U], upper=self.controls.upper[U])
        sub = GlmProblem(d.X[:, U], self.y, d.v, self.family, offset=self.offset, fit_intercept=d.fit_intercept,
                         standardize=d.standardize, controls=controls, inner=self.inner)
        return sub.solve(ElasticNet(0.0, 0.0)).eta

    # ------------------------------------------------------------ the solver
    def solve(self, penalty: ElasticNet, warm: GlmFit | None = None, *, tol: float = 1e-10, max_iter: int = 100,
              multipliers: Mapping[str, float] | None = None) -> GlmFit:
        """Minimise ``F`` for ``penalty`` from ``warm`` (a fit of this problem) or the null model.

        ``multipliers``: a trial's group multipliers (controls). Warns with
        :class:`SolverConvergenceWarning` when ``max_iter`` outer iterations do not meet ``tol`` (separable
        classes or counts without a penalty: no finite minimiser).
        """
        pen = self.box_penalty(penalty, multipliers)
        b, beta, eta = self.starting_point(pen, warm)
        F = self.mean_half_deviance(eta) + _value(pen, beta)
        F_null = self.null_objective()
        W = self._first_working_set(eta, beta, pen, penalty.lambda1, self.carried_gradient(warm, eta))
        n_iter, converged, damping = 0, False, Damping()
        gradient = None  # at eta, once a KKT check formed it: the certificate needs no pass more
        damps = self.inner == "gram"  # the rows route's coordinate descent takes no damping (:mod:`.damping`)
        while n_iter < max_iter:
            n_iter += 1
            F_scale = stop_scale(F_null, F)
            b_new, beta_new = self._model_minimiser(eta, beta, penalty, pen, multipliers, tol * F_scale, W, damping)
            step = self._line_search(eta, F, b, beta, b_new, beta_new, pen)
            damped = damping.value > 0.0
            if step is not None:
                t, start = step[5], (eta, beta)
                if damps:
                    damping.after(t, t * float(np.linalg.norm(beta_new - beta)),
                                  lambda: self._residual_norm(*start, pen))
                b, beta, eta, F, model_decrease = step[:5]
            out, gradient = self._violators(eta, beta, pen, W)  # the features left out must agree (one pass)
            if out.size:
                W = None if W is None or W.size + out.size >= 0.75 * pen.size else np.union1d(W, out)
            elif step is None or model_decrease <= tol * F_scale:
                if not damped:
                    converged = True
                    break
                damping.release()  # a damped step's small decrease proves little: one undamped step more
        return self._result(b, beta, eta, F, pen, n_iter, converged, penalty, max_iter, gradient=gradient)

    def starting_point(self, pen: BoxPenalty, warm: GlmFit | None) -> tuple[float, np.ndarray, np.ndarray]:
        """``(b, β̃, η)`` to start from: ``warm`` (a fit of this problem; clipped into the limits) or the null model.
        A warm start this problem solved brings its η (a pass over the rows fewer), unless the limits moved it."""
        if warm is not None and warm.beta.size == self.base.n_kept:
            b, beta = warm.intercept, np.clip(warm.beta, pen.lo, pen.hi)
            if warm.origin == self.token and np.array_equal(beta, warm.beta):
                return b, beta, warm.eta
            return b, beta, self.eta(b, beta)
        b, eta = self.null_model()
        return b, np.zeros(self.base.n_kept), eta

    @staticmethod
    def carried_gradient(warm: GlmFit | None, eta: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The gradient ``warm`` carries if ``eta`` is its own (:meth:`starting_point` took its point as it was),
        else None. The smooth part's gradient does not depend on the penalty: a warm start there needs no pass."""
        return warm.gradient if warm is not None and eta is warm.eta else None

    def irls_weights(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``μ``, ``V(μ)`` and the IRLS weights ``u = wV`` (0 off the problem's rows) at the linear predictor."""
        d = self.base
        mu = self.family.mean(eta)
        V = self.family.variance(mu, d.rows)
        return mu, V, np.where(d.v > 0, d.v * V, 0.0)

    def _first_working_set(self, eta: np.ndarray, beta: np.ndarray, pen: BoxPenalty, lam1: float,
                           gradient: tuple[np.ndarray, float] | None = None) -> np.ndarray | None:
        """The features the Newton steps start on (Gram route, λ1 > 0; None: all of them): the support, the
        unpenalized features, and the largest KKT violators at the start (as many as the support holds, at least
        10). Features wrongly left out are added by the KKT check over all features (:meth:`_violators`), so
        the set only saves work: each Newton step forms the Gram of its columns, not of all p (glmnet's
        working sets; a sparse solution of 10 among 100 features takes a hundredth of the products).
        ``gradient``: the one at ``eta``, if a warm start brought it (no pass then)."""
        if self.inner != "gram" or lam1 <= 0 or pen.size <= _WORKING_SET_MIN:
            return None
        c, _ = self.gradient(eta) if gradient is None else gradient
        base = np.flatnonzero((beta != 0) | (pen.a == 0))
        W = np.union1d(base, _largest(pen.kkt_residual(beta, c), base, max(10, base.size)))  # grown each step
        return None if W.size >= 0.75 * pen.size else W

    def _residual_norm(self, eta: np.ndarray, beta: np.ndarray, pen: BoxPenalty) -> float:
        """``‖r‖``, the KKT residuals of the kept features at ``(η, β̃)`` (one pass over X)."""
        return float(np.linalg.norm(pen.kkt_residual(beta, self.gradient(eta)[0])))

    def _violators(self, eta: np.ndarray, beta: np.ndarray, pen: BoxPenalty, W: np.ndarray | None,
                   ) -> tuple[np.ndarray, tuple[np.ndarray, float] | None]:
        """The largest KKT violators outside the working set ``W`` at the current point (at most ``max(10, |W|)``:
        the set at most doubles per round; none without W), and the gradient there that showed them (None
        without W: no pass)."""
        if W is None:
            return np.zeros(0, dtype=np.intp), None
        gradient = self.gradient(eta)
        return _largest(pen.kkt_residual(beta, gradient[0]), W, max(10, W.size)), gradient

    def _result(self, b: float, beta: np.ndarray, eta: np.ndarray, F: float, pen: BoxPenalty, n_iter: int,
                converged: bool, penalty: ElasticNet, max_iter: int,
                gradient: tuple[np.ndarray, float] | None = None, warn: bool = True) -> GlmFit:
        """The fit at ``(b, β̃)`` with its KKT certificate (from ``gradient``, the gradient at ``eta``, if known);
        ``warn``: say what is wrong with it (:meth:`_warn`; a caller that may try again calls that itself)."""
        d = self.base
        c, c0 = self.gradient(eta) if gradient is None else gradient
        each, kkt = largest_kkt(pen, beta, (c, c0), d.fit_intercept)
        if converged and kkt > _KKT_ALARM * max(1.0, F) and self._kkt_gain(eta, each, c0) > _GAIN_ALARM * max(1.0, F):
            converged = False  # a stop the optimality conditions contradict
        coef = np.zeros(d.n_features)
        coef[d.cols] = beta / d.x_scale[d.cols]
        fit = GlmFit(coef, b, beta, eta, F, kkt, n_iter, converged, origin=self.token, deviance=F - _value(pen, beta),
                     gradient=(c, c0))
        if warn:
            self._warn(fit, pen, penalty, max_iter)
        return fit

    def _warn(self, fit: GlmFit, pen: BoxPenalty, penalty: ElasticNet, max_iter: int) -> None:
        """A :class:`SolverConvergenceWarning` for a fit that did not converge, or whose unpenalized features
        separate the classes (a binomial fit with no finite minimiser that met the tolerance anyway)."""
        if not fit.converged:
            warnings.warn(
                f"{self.family.name} {penalty.name} solve with lambda1={penalty.lambda1:.6g}, "
                f"lambda2={penalty.lambda2:.6g} did not converge after {fit.n_iter} of at most {max_iter} Newton "
                f"steps (largest KKT residual {fit.kkt_residual:.3g}); without a penalty, separable classes or "
                "perfectly fitted counts have no finite solution: use a positive penalty.", SolverConvergenceWarning,
                stacklevel=4)
        elif self.family.name == "binomial" and np.all(pen.a * np.abs(fit.beta) + pen.m * fit.beta ** 2 == 0):
            null = self.null_objective()
            if self.mean_half_deviance(fit.eta) <= 1e-8 * null and np.any(fit.beta):
                warnings.warn(
                    f"the classes are separable by the unpenalized features (training deviance "
                    f"{fit.objective:.3g}): the fit has no finite minimiser and its coefficients are where the "
                    "objective met the tolerance; use a positive penalty.", SolverConvergenceWarning, stacklevel=4)

    def _kkt_gain(self, eta: np.ndarray, each: np.ndarray, c0: float) -> float:
        """The largest decrease of ``F`` a single coordinate's KKT residual ``r`` promises, ``r²/2H`` with ``H``
        its curvature (the worst ten coordinates and the intercept). Counts of 2e7 make the curvature ~2e7, so a
        residual of 3e-3 is worth 2e-13 of F, below what the line search resolves: no failure, where 0.04 on
        counts of ~30 (a coefficient running off to −∞) is worth 3e-5."""
        d = self.base
        _, _, u = self.irls_weights(eta)
        top = np.argsort(each)[-10:]
        h = np.diag(_weighted_gram(d, u, np.zeros(d.n_rows), d.cols[top])[0]) if top.size else np.zeros(0)
        tiny = np.finfo(np.float64).tiny
        gain = float(np.max(each[top] ** 2 / (2.0 * np.maximum(h, tiny)), initial=0.0))
        if d.fit_intercept:
            gain = max(gain, c0 * c0 / (2.0 * max(float(u[d.rows].sum()) / d.sum_w, tiny)))
        return gain

    def _line_search(self, eta: np.ndarray, F: float, b: float, beta: np.ndarray, b_new: float,
                     beta_new: np.ndarray, pen: BoxPenalty,
                     ) -> tuple[float, np.ndarray, np.ndarray, float, float, float] | None:
        """Backtrack from the full step to the Armijo point ``(b, β̃, η, F, −Δ, t)``; None when the direction
        brings no decrease."""
        d_b, d_beta = b_new - b, beta_new - beta
        return self._armijo(eta, F, b, beta, d_b, d_beta, self.eta(d_b, d_beta) - self.offset, pen)

    def _armijo(self, eta: np.ndarray, F: float, b: float, beta: np.ndarray, d_b: float, d_beta: np.ndarray,
                d_eta: np.ndarray, pen: BoxPenalty, slope: float | None = None,
                at_one: tuple[np.ndarray, float] | None = None,
                ) -> tuple[float, np.ndarray, np.ndarray, float, float, float] | None:
        """The Armijo point along the step ``(d_b, d_beta)`` whose change of the linear predictor is ``d_eta``:
        ``(b, β̃, η, F, −Δ, t)``, or None when the direction brings no decrease (``Δ ≥ 0``). ``slope``: the
        smooth part's directional derivative ``Σw(μ − y)d_eta/Σw`` at ``eta``, if known; ``at_one``: the linear
        predictor ``eta + d_eta`` of the full step and its mean half deviance, if known."""
        d = self.base
        if slope is None:
            rows = d.rows
            resid = self.family.mean(eta[rows]) - self.y[rows]
            slope = float(d.v[rows] @ (resid * d_eta[rows])) / d.sum_w
        h0 = _value(pen, beta)
        delta = slope + _value(pen, beta + d_beta) - h0
        if not delta < 0:
            return None
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            beta_t = np.clip(beta + t * d_beta, pen.lo, pen.hi)  # a step onto a limit lands on it, not an ulp out
            if t == 1.0 and at_one is not None:
                eta_t, F_t = at_one[0], at_one[1] + _value(pen, beta_t)
            else:
                eta_t = eta + t * d_eta
                F_t = self.mean_half_deviance(eta_t) + _value(pen, beta_t)
            if F_t <= F + _ARMIJO * t * delta:
                return b + t * d_b, beta_t, eta_t, F_t, -delta, t
            t *= 0.5
        return None

    def _model_minimiser(self, eta: np.ndarray, beta: np.ndarray, penalty: ElasticNet, pen: BoxPenalty,
                         multipliers: Mapping[str, float] | None, abs_tol: float,
                         W: np.ndarray | None = None, damping: Damping | None = None) -> tuple[float, np.ndarray]:
        """The minimiser ``(b', β̃')`` of the quadratic model ``Q`` at ``eta`` (over the working set ``W`` only,
        the other coefficients held at 0, when given; damped on the Gram route: :mod:`.damping`)."""
        d = self.base
        mu, V, u = self.irls_weights(eta)
        z = np.where(d.v > 0, eta - self.offset + (self.y - mu) / V, 0.0)
        if self.inner == "gram":
            if W is None:
                return self._gram_minimiser(u, z, beta, penalty, pen, abs_tol, None, damping)
            b_new, beta_w = self._gram_minimiser(u, z, beta[W], penalty, pen.take(W), abs_tol, W, damping)
            beta_new = np.zeros_like(beta)
            beta_new[W] = beta_w
            return b_new, beta_new
        return self._rows_minimiser(u, z, beta, penalty, multipliers, abs_tol)

    def _gram_minimiser(self, u: np.ndarray, z: np.ndarray, beta: np.ndarray, penalty: ElasticNet, pen: BoxPenalty,
                        abs_tol: float, W: np.ndarray | None = None,
                        damping: Damping | None = None) -> tuple[float, np.ndarray]:
        d = self.base
        plain = self.controls is None
        where = d.cols if W is None else d.cols[W]
        G, q, yy, xbar, zbar = _weighted_gram(d, u, z, where)
        if damping is not None:
            G, q, yy = damping.apply(G, q, yy, beta, copy=False)
        tol = _inner_tol(abs_tol, yy)
        if pen.size == 0:
            beta_new = np.zeros(0)
        elif plain and penalty.lambda1 > 0:
            beta_new = enet_gram(G, q, yy, penalty.lambda1, penalty.lambda2, beta, tol=tol).beta
        elif plain:
            beta_new = _ridge_solve(G, q, penalty.lambda2)
        else:
            from .box_gram import box_gram

            beta_new = box_gram(G, q, yy, pen, beta, tol=_BOX_INNER_TOL).beta
        if not d.fit_intercept:
            return 0.0, beta_new
        # z ≈ b_c + X̃β̃ with X̃ = (X − m)S⁻¹: the data's intercept is b_c − mᵀS⁻¹β̃
        b_centred = zbar - float(xbar @ beta_new)
        return b_centred - float(d.x_center[where] @ (beta_new / d.x_scale[where])), beta_new

    def _rows_minimiser(self, u: np.ndarray, z: np.ndarray, beta: np.ndarray, penalty: ElasticNet,
                        multipliers: Mapping[str, float] | None, abs_tol: float) -> tuple[float, np.ndarray]:
        d = self.base
        scale = np.where(d.kept, d.x_scale, 0.0)
        inner = RowDesign(d.X, z, u, fit_intercept=d.fit_intercept, scale=scale)
        if inner.n_kept != d.n_kept:  # a column constant under the IRLS weights alone: cannot happen (u > 0 ⇔ w > 0)
            raise RuntimeError("the quadratic model lost a column; please report this with the data's shape.")
        ratio = d.sum_w / inner.sum_w  # Q's loss is normalised by Σw, the rows solver's by Σu
        c = self.controls
        controls = None if c is None else FeatureControls.make(
            d.n_features, penalty_factor=c.factors(multipliers), lower=c.lower, upper=c.upper, rescale=False)
        problem = RowProblem(inner, controls, once=True)  # a Newton step's quadratic model: one penalty
        lam1, lam2 = penalty.lambda1 * ratio, penalty.lambda2 * ratio
        warm = _row_warm(inner, beta, lam1) if lam1 > 0 or c is not None else None
        tol = _inner_tol(abs_tol / ratio, problem.yy)
        fit = problem.solve(ElasticNet(lam1, lam2), warm, tol=tol, quiet=True)
        return fit.result.intercept, fit.result.beta


def _largest(residual: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` features outside ``exclude`` with a KKT residual above rounding, largest first."""
    r = residual.copy()
    r[exclude] = 0.0
    out = np.flatnonzero(r > 1e-12 * max(float(np.max(np.abs(residual), initial=0.0)), 1.0))
    return out[np.argsort(-r[out], kind="stable")[:k]] if out.size > k else out


def _value(pen: BoxPenalty, beta: np.ndarray) -> float:
    return pen.value(beta) if beta.size else 0.0


STOP_FLOOR = 1e-4  # the stopping rule's scale is never below this share of the null objective


def stop_scale(F_null: float, F: float) -> float:
    """What ``tol`` is relative to in the stopping rule (a step's model decrease at most ``tol`` times this):
    the smaller of the null objective (glmnet's scale) and the current objective ``F``, but at least
    :data:`STOP_FLOOR` of the null objective.

    On nearly separable classes the optimum's ``F`` is far below the null objective (penguins, Adelie or not,
    λ1 = 9e-6: 4e-4 against 0.65), and a decrease bound of ``tol`` times the null objective is 1e-7 of ``F``
    there: warm-started fits stopped at points whose training deviance agreed to 7e-8 but whose held-out
    deviance, ruled by a few rows of large ``|η|``, differed by 0.4% between the chord and Newton routes
    (one fold: 0.07220 against 0.07248). Relative to ``F``, that fold's held-out deviance agrees to 5e-9 and
    the trials' CV values to 2.3e-6. The floor bounds the tightening (10⁴×) where ``F`` goes to 0 (separable
    classes with a vanishing penalty): there the bound nears the rounding of the binomial deviance
    (``ulp(|η|)`` per row), and a step the line search cannot resolve ends the fit as converged."""
    return max(min(F_null, F), STOP_FLOOR * F_null, np.finfo(np.float64).tiny)


_BOX_INNER_TOL = 1e-15
"""The duality-gap tolerance (of ½yy) of a Newton step's model under penalty factors or limits. The box solver
stops its coordinate descent at the gap asked for, and a gap of :func:`_inner_tol` left binomial fits with
factors at a KKT residual of 1e-8 and coefficients 4e-5 from the optimum (Poisson: 2e-7; probe H) where the
plain penalty's active-set solver, exact once its active set is right, reached 9e-13; asked for 1e-15, the
box solver's Newton steps on the free coordinates finish it too (KKT 5e-15, coefficients within 2e-11)."""


def _inner_tol(abs_tol: float, yy: float) -> float:
    """The relative gap tolerance that holds an inner solve's gap (relative to ½yy) to a tenth of ``abs_tol``."""
    scale = max(0.5 * yy, np.finfo(np.float64).tiny)
    return float(min(1e-10, max(1e-15, 0.1 * abs_tol / scale)))


def _ridge_solve(G: np.ndarray, q: np.ndarray, lam2: float) -> np.ndarray:
    """``(G + λ2 I)⁻¹ q`` (minimum-norm least squares when singular)."""
    import scipy.linalg

    H = G + lam2 * np.eye(q.size)
    try:
        return np.asarray(scipy.linalg.solve(H, q, assume_a="pos", check_finite=False))
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        return np.asarray(scipy.linalg.lstsq(H, q, check_finite=False)[0])


def _row_warm(inner: RowDesign, beta: np.ndarray, lam1: float) -> RowFit:
    """A warm start for the rows solver at the current point: β̃ and its smooth gradient on the new model."""
    support = np.flatnonzero(beta)
    fitted = inner.x(support, beta[support])
    c_smooth = inner.xt(inner.y_c - fitted)
    result = FitResult(np.zeros(inner.n_features), 0.0, beta.copy(), 0, math.inf, 0.0, False)
    return RowFit(result, c_smooth, fitted, lam1, 0)


def _weighted_gram(d: RowDesign, u: np.ndarray, z: np.ndarray, cols: np.ndarray,
                   single: bool = False) -> tuple[np.ndarray, np.ndarray, float, np.ndarray, float]:
    """``G = X̃ᵀU X̃/Σw``, ``q = X̃ᵀU(z − z̄)/Σw`` over the columns ``cols`` of X, ``yy`` about the u-weighted
    means, and those means (not centred, means 0, without an intercept).

    X̃ = (X − m) S⁻¹ with the design's (sample-weighted) means m: the columns are nearly centred before the
    products, so removing the u-weighted mean leaves no cancellation. Dense X in row blocks (no n × p copy).
    """
    s, m = d.x_scale[cols], d.x_center[cols]
    rows = d.rows
    su = float(u[rows].sum())
    centre = d.fit_intercept
    zbar = float(u[rows] @ z[rows]) / su if centre else 0.0
    zc = z[rows] - zbar
    if d.sparse:
        Xr = d.X[rows][:, cols]
        Xu = Xr.multiply(u[rows][:, None]).tocsc()
        raw = np.asarray((Xr.T @ Xu).todense())
        sx = np.asarray(Xu.sum(axis=0)).ravel()
        qz = np.asarray(Xu.T @ zc).ravel()
        xbar_raw = sx / su if centre else np.zeros(cols.size)
        G = (raw - su * np.outer(xbar_raw, xbar_raw)) / np.outer(s, s)
        xbar = (xbar_raw - m) / s
        q = (qz - xbar_raw * float(u[rows] @ zc)) / s
    else:
        G, sx, q = dense_weighted_gram(d.X, cols, m, s, u, z - zbar, single)
        xbar = sx / su if centre else np.zeros(cols.size)
        G -= su * np.outer(xbar, xbar)
        q -= xbar * float(u[rows] @ zc)
    yy = float(u[rows] @ (zc * zc))
    W = d.sum_w
    return G / W, q / W, yy / W, xbar, zbar
