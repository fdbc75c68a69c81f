"""Ridge for every λ2 from one Krylov space: ``(M + λI) x = b`` by Lanczos, all shifts at once.

For a symmetric positive semi-definite M known only through products, the
Krylov space ``K_m(M, b)`` does not depend on the shift λ (shift invariance).
Lanczos builds an orthonormal basis ``Q_m`` and a tridiagonal ``T_m`` with
``M Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ``; the Galerkin solution for any λ is

    x_m(λ) = Q_m (T_m + λI)⁻¹ ‖b‖ e₁,      ‖(M + λI) x_m − b‖ = β_m |e_mᵀ (T_m + λI)⁻¹ ‖b‖ e₁|

so the residual of every shift is known without a product, and one basis
serves a whole sweep's ridge trials and dense path. The basis is extended
only when a shift asks for more accuracy than it gives (the smallest λ sets
the pace: convergence goes as ``((√κ − 1)/(√κ + 1))^m`` with
``κ = (e_max + λ)/(e_min + λ)``). Full reorthogonalization (twice) keeps the
basis orthonormal in floating point; a breakdown (``β_m ≈ 0``) means the space
is invariant and every solution exact.

Used by the rows engine on the smaller side: ``K = AAᵀ`` (n × n, the dual,
for p > n) or ``G = AᵀA`` (p × p) for ``A = V^{1/2} X̃ / √Σv``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ShiftedLanczos"]

_EPS = np.finfo(np.float64).eps


class ShiftedLanczos:
    """Solve ``(M + λI) x = b`` for any λ ≥ 0 from one growing Krylov basis (module docstring).

    Parameters
    ----------
    matvec : callable
        ``v ↦ M v`` for a symmetric positive semi-definite M of size ``dim``.
    b : ndarray of shape (dim,)
    dim : int
        The size of M (the basis never exceeds it: at ``dim`` the solution is exact).
    """

    def __init__(self, matvec: Callable[[np.ndarray], np.ndarray], b: np.ndarray, dim: int) -> None:
        self.matvec = matvec
        self.b_norm = float(np.linalg.norm(b))
        self.dim = dim
        self.Q: list[np.ndarray] = [b / self.b_norm] if self.b_norm > 0 else []
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.invariant = self.b_norm == 0
        self.matvecs = 0
        self._eig: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def m(self) -> int:
        return len(self.alpha)

    def _extend(self) -> None:
        """One Lanczos step with full reorthogonalization."""
        q = self.Q[-1]
        w = self.matvec(q)
        self.matvecs += 1
        a = float(q @ w)
        basis = np.asarray(self.Q)
        for _ in range(2):  # "twice is enough" (Parlett): orthogonal to working precision
            w = w - basis.T @ (basis @ w)
        self.alpha.append(a)
        nrm = float(np.linalg.norm(w))
        scale = max(abs(a), max(self.beta, default=0.0), 1e-300)
        self.beta.append(nrm)
        self._eig = None
        if nrm <= 1e3 * _EPS * scale or self.m >= self.dim:
            self.invariant = True
        else:
            self.Q.append(w / nrm)

    def _tridiagonal_eig(self) -> tuple[np.ndarray, np.ndarray]:
        if self._eig is None:
            import scipy.linalg

            self._eig = scipy.linalg.eigh_tridiagonal(np.asarray(self.alpha), np.asarray(self.beta[:-1]))
        return self._eig

    def _coefficients(self, lam: float) -> tuple[np.ndarray, float]:
        """``y = (T_m + λI)⁺ ‖b‖ e₁`` and the residual norm of ``Q_m y`` (pseudo-inverse: λ = 0, singular M)."""
        e, V = self._tridiagonal_eig()
        denom = e + lam
        cutoff = (self.m * _EPS * max(float(np.abs(e).max()), 1e-300)) if lam == 0.0 else 0.0
        keep = denom > cutoff
        coef = np.zeros_like(e)
        coef[keep] = self.b_norm * V[0, keep] / denom[keep]
        y = V @ coef
        residual = 0.0 if self.invariant else self.beta[-1] * abs(float(y[-1]))
        return y, residual

    def solve(self, lam: float, rtol: float = 1e-12, max_iter: int | None = None) -> tuple[np.ndarray, float]:
        """``x`` with ``‖(M + λI)x − b‖ ≤ rtol·‖b‖`` (or the best the budget allows) and that relative residual."""
        if self.b_norm == 0:
            return np.zeros(self.dim), 0.0
        budget = self.dim if max_iter is None else max_iter
        while True:
            if self.m:
                y, residual = self._coefficients(lam)
                if self.invariant or residual <= rtol * self.b_norm or self.m >= budget:
                    x = np.asarray(self.Q[: self.m]).T @ y
                    return x, residual / self.b_norm
            self._extend()

    def largest_eigenvalue(self, rtol: float = 1e-6, max_iter: int = 100) -> float:
        """The largest eigenvalue of M, from the basis (extended until its Ritz value settles)."""
        last = -1.0
        while True:
            self._extend()
            top = float(self._tridiagonal_eig()[0][-1])
            if self.invariant or abs(top - last) <= rtol * top or self.m >= max_iter:
                return top
            last = top
