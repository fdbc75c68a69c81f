"""The elastic net on a large support, solved without its Gram block: Newton steps by preconditioned CG.

Once coordinate descent has found the support S and signs θ of an elastic-net
solution, the solution solves the linear system (see :mod:`.active_set`)

    (G_SS + λ2 I) β_S = q_S − λ1 θ                                       (1)

When S is too large for its Gram block (thousands of features: a ridge-like
elastic net with a dense solution) the system is solved by conjugate gradients
with products ``G_SS u = A_Sᵀ(A_S u)`` on the rows, ``A = V^{1/2} X̃ / √Σv``.
Coordinate descent itself is hopeless there on correlated data: one dominant
eigenvalue of G (a common factor of the features) makes its steps tiny while
the objective is still far from the optimum.

CG has the same difficulty (its rate depends on the condition number of
``G_SS + λ2 I``), so it is preconditioned with a randomized Nyström
approximation of G_SS of rank k (Frangella, Tropp & Udell 2023, "Randomized
Nyström preconditioning"): with ``G_SS ≈ U diag(Λ) Uᵀ``,

    P⁻¹ = U diag((Λ_k + λ2)/(Λ + λ2)) Uᵀ + (I − UUᵀ),

which removes the k largest eigenvalues from the condition number: a common
factor or a few latent ones cost one CG iteration each instead of dominating.

Signs are kept consistent as in :mod:`.active_set`: if the solution of (1)
flips a sign, the step stops at the first coefficient that reaches zero (on
that segment the objective is the convex quadratic of (1), so it decreases),
that coefficient leaves S, and (1) is solved again. The caller certifies the
result with the duality gap over all p.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["support_newton", "shifted_gram_solver"]

_RANK = 40  # Nyström rank on many rows
_FULL_RANK_ROWS = 400  # up to this many rows the Nyström rank is the Gram's whole rank (rows + a margin)
_CG_RTOL = 1e-13
_CG_MAX = 500
_MAX_STEPS = 50  # sign-consistency steps
Matvec = Callable[[np.ndarray], np.ndarray]


def _nystrom(apply: Matvec, m: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A rank-k Nyström approximation ``U diag(Λ) Uᵀ`` of the PSD operator ``apply`` (m × m), stabilised by a
    small shift (Tropp et al. 2017, Algorithm 3)."""
    rng = np.random.default_rng(seed)
    omega, _ = np.linalg.qr(rng.standard_normal((m, k)))
    Y = apply(omega)
    nu = np.sqrt(m) * np.finfo(np.float64).eps * float(np.linalg.norm(Y))
    Y = Y + nu * omega
    try:
        C = np.linalg.cholesky(omega.T @ Y)
    except np.linalg.LinAlgError:
        return np.zeros((m, 0)), np.zeros(0)
    B = np.linalg.solve(C, Y.T).T  # Y C⁻ᵀ
    U, s, _ = np.linalg.svd(B, full_matrices=False)
    return U, np.maximum(s * s - nu, 0.0)


def _kernel_eigen(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact eigendecomposition ``U diag(Λ) Uᵀ`` of ``AᵀA`` (A: n × m, n small) through the n × n kernel:
    ``AAᵀ = Q diag(Λ) Qᵀ`` gives ``U = AᵀQΛ^{-1/2}`` (eigenvalues at rounding level dropped). Returns
    ``(QΛ^{-1/2}, Λ)``: U is never formed (that product alone cost what the kernel does, O(n²m)); applying
    U or Uᵀ to a vector costs one product with A, O(nm). A full-rank Nyström sketch would cost a QR and
    an SVD of m × (n + 8) besides two products."""
    e, Q = np.linalg.eigh(A @ A.T)
    keep = e > A.shape[0] * np.finfo(np.float64).eps * max(float(e[-1]), 0.0)
    e, Q = e[keep][::-1], Q[:, keep][:, ::-1]
    return Q / np.sqrt(e), e


def _pcg(apply: Matvec, rhs: np.ndarray, x0: np.ndarray, precondition: Matvec) -> np.ndarray:
    """Preconditioned conjugate gradients on the SPD ``apply`` from ``x0``, to ``‖r‖ ≤ rtol ‖rhs‖``, or until a
    direction has no curvature (a singular ``apply``: the iterate so far is returned)."""
    x = x0.copy()
    r = rhs - apply(x[:, None])[:, 0]
    target = _CG_RTOL * float(np.linalg.norm(rhs))
    z = precondition(r)
    d = z.copy()
    rz = float(r @ z)
    for _ in range(_CG_MAX):
        if float(np.linalg.norm(r)) <= target:
            break
        Ad = apply(d[:, None])[:, 0]
        curvature = float(d @ Ad)
        if not curvature > 0.0:  # d in the null space of a singular system (duplicated columns): stop there
            break
        alpha = rz / curvature
        x += alpha * d
        r -= alpha * Ad
        z = precondition(r)
        rz, rz_old = float(r @ z), rz
        d = z + (rz / rz_old) * d
    return x


def support_newton(operator: Callable[[np.ndarray], Matvec], q: np.ndarray, S: np.ndarray, beta: np.ndarray,
                   lam1: float, lam2: float, n_rows: int, max_steps: int = _MAX_STEPS,
                   columns: Callable[[np.ndarray], np.ndarray | None] | None = None) -> np.ndarray:
    """Solve the elastic net restricted to the support ``S`` of ``beta`` (updated in place); return the support
    that remains.

    At most ``max_steps`` sign-consistency steps (each a CG solve): with fewer the result is a descent step
    from ``beta`` rather than the solution on S, for a caller that repairs signs otherwise (coordinate
    descent repairs all of them in one sweep, where each step here drops only the first to cross zero).

    ``operator(S)`` returns a function ``U ↦ G_SS U`` for (|S|, k) blocks ``U`` (built once per support, so
    that it may cache the columns of S); ``q`` is ``X̃ᵀV y_c / Σv`` over all features. ``G_SS`` has rank at
    most ``n_rows``: on few rows the preconditioner takes all of it, and CG converges in a step or two. There
    ``columns(S)``, when given, returns ``A_S = V^{1/2} X̃_S / √Σv`` on the problem's rows as a dense array
    (or None when it would be too large), and the preconditioner is then the exact eigendecomposition of
    ``G_SS = A_SᵀA_S`` from its n × n kernel (:func:`_kernel_eigen`; 100 × 7,000: 4 times cheaper than the
    full-rank sketch, which took half of a sweep's fits).

    (Solving each system through the n × n kernel of S by the Woodbury identity instead was measured on
    n = 1,600, p = 20,000: no faster, since building and updating the kernel costs what CG's products do.)
    """
    S = S[beta[S] != 0]
    A = columns(S) if columns is not None and n_rows <= _FULL_RANK_ROWS else None
    if A is not None:
        cg = _CG(lambda U: A.T @ (A @ U), S.size, lam2, 0, _kernel_eigen(A), A)
    else:
        rank = n_rows + 8 if n_rows <= _FULL_RANK_ROWS else _RANK
        cg = _CG(operator(S), S.size, lam2, rank)  # built once: later supports are subsets of S
    kept = np.arange(S.size)  # positions in the first S of the current support
    for _ in range(max_steps):
        if kept.size == 0:
            break
        current = S[kept]
        b = beta[current]
        theta = np.sign(b)
        rhs = q[current] - lam1 * theta
        apply = cg.system(kept)
        z = cg.solve(kept, rhs, b)
        flipped = np.flatnonzero(theta * z <= 0)
        if flipped.size == 0:
            beta[current] = z
            break
        new = _sign_step(apply, rhs, b, z, theta, flipped)
        beta[current] = new
        kept = kept[new != 0]
    return S[kept]


class _CG:
    """Nyström-preconditioned conjugate gradients on ``G_SS + λ2 I`` and its subsets (padded back into S)."""

    def __init__(self, gram: Matvec, m: int, lam2: float | np.ndarray, rank: int,
                 eigen: tuple[np.ndarray, np.ndarray] | None = None, A: np.ndarray | None = None) -> None:
        """``eigen``: the basis and its eigenvalues when known (else a Nyström sketch of rank ``rank``); with
        ``A`` the basis is implicit, ``U = AᵀW`` for the n × r ``W`` given (:func:`_kernel_eigen`). ``lam2``
        may be one shift per coordinate (penalty factors: ``G_SS + diag(λ2 f_S)``); the preconditioner then
        takes their mean."""
        self.gram, self.m, self.A = gram, m, A
        self.shift: np.ndarray = np.asarray(lam2, dtype=np.float64)  # () or (m,): applied as a column
        if self.shift.ndim:
            self.shift = self.shift[:, None]
        self.lam2 = float(np.mean(lam2)) if np.ndim(lam2) else float(lam2)
        self.U, self.lam = eigen if eigen is not None else _nystrom(gram, m, min(rank, m))

    def system(self, kept: np.ndarray) -> Matvec:
        gram, m = self.gram, self.m
        shift = self.shift if self.shift.ndim == 0 or kept.size == m else self.shift[kept]

        def apply(M: np.ndarray) -> np.ndarray:
            if kept.size == m:
                return gram(M) + shift * M
            full = np.zeros((m, M.shape[1]))
            full[kept] = M
            return gram(full)[kept] + shift * M

        return apply

    def solve(self, kept: np.ndarray, rhs: np.ndarray, x0: np.ndarray) -> np.ndarray:
        scale = ((self.lam[-1] if self.lam.size else 0.0) + self.lam2) / (self.lam + self.lam2) - 1.0  # P⁻¹ SPD
        if self.A is None:
            Uk = self.U[kept]

            def precondition(r: np.ndarray) -> np.ndarray:
                return r + Uk @ (scale * (Uk.T @ r))
        else:  # U[kept] = A[:, kept]ᵀ W
            Ak, W = (self.A if kept.size == self.m else self.A[:, kept]), self.U

            def precondition(r: np.ndarray) -> np.ndarray:
                return r + Ak.T @ (W @ (scale * (W.T @ (Ak @ r))))

        return _pcg(self.system(kept), rhs, x0, precondition)


def _sign_step(apply: Matvec, rhs: np.ndarray, b: np.ndarray, z: np.ndarray, theta: np.ndarray,
               flipped: np.ndarray) -> np.ndarray:
    """A descent step from ``b`` towards the Newton point ``z`` that flips the signs ``flipped``.

    On the orthant of θ the objective is the quadratic ``f`` of :func:`_quadratic`, and projecting onto
    the orthant (zeroing what crossed) keeps every point there. The first coefficient to reach zero on
    the segment b → z bounds a step that surely descends (the segment point, one coefficient out); the
    projected points ``P(b + t(z − b))`` for t = 1, ½, ¼, … down to that bound may drop many at once
    (projected Newton with backtracking, Bertsekas 1982), for one product each. The lowest of the
    points tried is taken, so the step never does worse than the segment point.
    """
    t_j = b[flipped] / (b[flipped] - z[flipped])
    t_first = float(t_j.min())
    best = b + t_first * (z - b)
    best[flipped[t_j <= t_first * (1.0 + 1e-12)]] = 0.0
    best_value = _quadratic(apply, rhs, best)
    t = 1.0
    while t > t_first:
        trial = b + t * (z - b)
        trial[theta * trial < 0] = 0.0
        value = _quadratic(apply, rhs, trial)
        if value < best_value:
            return trial
        t *= 0.5
    return best


def _quadratic(apply: Matvec, rhs: np.ndarray, x: np.ndarray) -> float:
    """``½ xᵀHx − rhsᵀx``: the objective (up to a constant) on the orthant of the signs behind ``rhs``."""
    return 0.5 * float(x @ apply(x[:, None])[:, 0]) - float(rhs @ x)


def shifted_gram_solver(operator: Callable[[], Matvec], columns: Callable[[], np.ndarray | None], size: int,
                        shift: np.ndarray, n_rows: int) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """``(kept, rhs, x0) ↦ (G_SS + diag(shift))[kept, kept]⁻¹ rhs`` by preconditioned CG, for the Newton steps
    of penalties with factors and limits (:mod:`.box_gram`, on supports too large for their Gram block):
    ``operator()`` builds the product with G_SS, ``columns()`` ``A_S`` (or None), as for :func:`support_newton`,
    whose preconditioners it shares; only the one the preconditioner uses is built."""
    A = columns() if n_rows <= _FULL_RANK_ROWS else None
    if A is not None:
        cg = _CG(lambda U: A.T @ (A @ U), size, shift, 0, _kernel_eigen(A), A)
    else:
        cg = _CG(operator(), size, shift, n_rows + 8 if n_rows <= _FULL_RANK_ROWS else _RANK)
    return cg.solve
