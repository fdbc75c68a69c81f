"""The elastic net with a dense solution, solved on its n-dimensional dual by a semismooth Newton method.

For λ2 > 0 the elastic net on ``A`` (n × p) and ``b`` (n), here
``A = V^{1/2} X̃ / √Σv`` and ``b = V^{1/2} y_c / √Σv`` on a problem's rows,

    P(β) = ½‖b − Aβ‖² + λ1‖β‖₁ + (λ2/2)‖β‖²,

has the (Fenchel) dual, maximised by the optimal residual ``θ* = b − Aβ*``,

    D(θ) = bᵀθ − ½‖θ‖² − (1/2λ2)‖S_λ1(Aᵀθ)‖²,       β(θ) = S_λ1(Aᵀθ) / λ2,

with S the soft threshold. D is unconstrained and 1-strongly concave in n
variables, and its gradient ``b − θ − Aβ(θ)`` is piecewise smooth, with
generalized Hessian ``−(I + A_J A_Jᵀ/λ2)`` for ``J = {j : |Aᵀθ|_j > λ1}`` (the
features β(θ) holds). Newton's method on it converges locally quadratically
(semismooth Newton: Qi & Sun 1993; Li, Sun & Toh 2018 use it for the lasso's
augmented Lagrangian), and globally with a backtracking line search on D.

Why the dual: when the solution holds thousands of features (a ridge-like
elastic net on correlated data) coordinate descent crawls along the common
factor, and the primal Newton system is |S| × |S|; the dual's is n × n
whatever the support. Its matrix ``A_J A_Jᵀ`` is maintained, not recomputed:
built as ``K − A_{J^c} A_{J^c}ᵀ`` from the kernel ``K = AAᵀ`` (which ridge
needs for the same problem) when J is most of p, directly when J is small,
and then updated by the features that enter or leave J (n² each; near the
solution few do). A step costs one Cholesky factorisation (n³/3 flops), two
products with A and the update. It stops at a duality gap ``P(β(θ)) − D(θ)``
below the tolerance, computed from what the step has at hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["DualNewtonResult", "DualOperators", "dual_newton"]

_MAX_STEPS = 30
_ARMIJO = 1e-4
_MIN_STEP = 1e-10
_BLOCK_BYTES = 2**27  # largest copy of columns of A taken at a time (128 MB)


@dataclass(frozen=True)
class DualNewtonResult:
    """β(θ) over all p, the dual point θ, its ``Aᵀθ``, the duality gap reached and the Newton steps taken."""

    beta: np.ndarray
    theta: np.ndarray
    z: np.ndarray
    gap: float
    steps: int
    converged: bool


@dataclass(frozen=True)
class DualOperators:
    """The products with ``A`` the method needs, without A itself.

    ``at(u) = Aᵀu`` (n → p, one pass over the rows); ``a(idx, x) = A[:, idx] x``; ``columns(idx)`` the
    dense ``A[:, idx]`` (n × |idx|); ``kernel()`` the n × n ``AAᵀ`` (asked for only when J is most of p,
    and expected to be cached by the caller: a problem's fits share it).
    """

    at: Callable[[np.ndarray], np.ndarray]
    a: Callable[[np.ndarray, np.ndarray], np.ndarray]
    columns: Callable[[np.ndarray], np.ndarray]
    kernel: Callable[[], np.ndarray]


def _soft(z: np.ndarray, lam1: float) -> np.ndarray:
    return np.sign(z) * np.maximum(np.abs(z) - lam1, 0.0)


class _JointGram:
    """``A_J A_Jᵀ`` (n × n) for the current J, updated as J changes (module docstring)."""

    def __init__(self, ops: DualOperators, n: int, p: int) -> None:
        self.ops, self.n, self.p = ops, n, p
        self.mask: np.ndarray | None = None
        self.M = np.zeros((n, n))

    def _accumulate(self, idx: np.ndarray, sign: float) -> None:
        step = max(1, _BLOCK_BYTES // (8 * max(1, self.n)))
        for a in range(0, idx.size, step):
            C = self.ops.columns(idx[a : a + step])
            if sign > 0:
                self.M += C @ C.T  # gemm: OpenBLAS runs it faster than syrk (see rows._Ridge)
            else:
                self.M -= C @ C.T

    def for_set(self, mask: np.ndarray) -> np.ndarray:
        size = int(mask.sum())
        rebuild = min(size, self.p - size)
        if self.mask is not None:
            add, drop = np.flatnonzero(mask & ~self.mask), np.flatnonzero(self.mask & ~mask)
            if add.size + drop.size < rebuild:
                self._accumulate(add, 1.0)
                self._accumulate(drop, -1.0)
                self.mask = mask
                return self.M
        if size <= self.p - size:
            self.M = np.zeros((self.n, self.n))
            self._accumulate(np.flatnonzero(mask), 1.0)
        else:
            self.M = self.ops.kernel().copy()
            self._accumulate(np.flatnonzero(~mask), -1.0)
        self.mask = mask
        return self.M


def dual_newton(ops: DualOperators, b: np.ndarray, theta: np.ndarray, z: np.ndarray, lam1: float, lam2: float,
                gap_tol: float, certify: Callable[[np.ndarray, np.ndarray], float] | None = None,
                max_steps: int | None = None) -> DualNewtonResult:
    """Maximise D from ``theta`` (with ``z = Aᵀθ``) until the duality gap is at most ``gap_tol``.

    Requires λ2 > 0. A warm start is any θ: the residual ``b − Aβ'`` of a nearby solution β' is the natural
    one. ``certify(β, b − Aβ)``, when given, is the caller's own certificate of β (a gap from a dual point
    built from β's residual, as the primal solvers use); once D's gap is met the steps go on until that one
    is met too. The two differ when λ2 is small: β(θ) is then within the gap in objective while its
    gradient, ``Aᵀ(b − Aβ(θ)) − λ2β(θ)``, is off by ``Aᵀ∇D(θ)``, and the caller's certificate and a KKT check
    see that; each further Newton step squares the error. Returns ``converged=False`` after ``max_steps``
    (default 30) or when the line search stalls (rounding), with the best point reached.
    """
    import scipy.linalg

    if not lam2 > 0:
        raise ValueError("the dual Newton method needs lambda2 > 0 (the dual of the lasso is constrained).")
    n, p = b.size, z.size
    max_steps = _MAX_STEPS if max_steps is None else max_steps
    theta, z = theta.copy(), z.copy()
    gram = _JointGram(ops, n, p)
    gap, steps = np.inf, 0
    while True:
        zt = _soft(z, lam1)
        beta = zt / lam2
        J = np.flatnonzero(beta)
        Ab = ops.a(J, beta[J]) if J.size else np.zeros(n)
        residual = b - Ab
        bb_beta = float(beta @ beta)
        primal = 0.5 * float(residual @ residual) + lam1 * float(np.abs(beta).sum()) + 0.5 * lam2 * bb_beta
        dual = float(b @ theta) - 0.5 * float(theta @ theta) - 0.5 * lam2 * bb_beta
        gap = max(primal - dual, 0.0)
        if gap <= gap_tol and certify is not None:
            gap = max(gap, certify(beta, residual))
        if gap <= gap_tol or steps >= max_steps:
            break
        steps += 1
        grad = theta - residual  # ∇(−D)(θ) = θ − b + Aβ(θ)
        H = gram.for_set(beta != 0) / lam2
        H[np.diag_indices_from(H)] += 1.0
        try:
            factor = scipy.linalg.cho_factor(H, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:  # cannot happen for I + PSD in exact arithmetic; rounding: give up here
            break
        d = -scipy.linalg.cho_solve(factor, grad, check_finite=False)
        w = ops.at(d)
        slope = float(grad @ d)
        phi = -dual
        t = 1.0
        while t >= _MIN_STEP:
            theta_t, z_t = theta + t * d, z + t * w
            s = _soft(z_t, lam1)
            phi_t = 0.5 * float(theta_t @ theta_t) - float(b @ theta_t) + 0.5 * float(s @ s) / lam2
            if phi_t <= phi + _ARMIJO * t * slope:
                break
            t *= 0.5
        if t < _MIN_STEP:
            break
        theta, z = theta_t, z_t
    return DualNewtonResult(beta, theta, z, gap, steps, bool(gap <= gap_tol))
