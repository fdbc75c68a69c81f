"""Per-feature penalty factors and coefficient limits (glmnet's ``penalty.factor``, ``lower/upper.limits``).

With factors ``f_j ≥ 0`` and limits ``l_j ≤ 0 ≤ u_j`` the objective becomes

    P(β) = 1/(2Σw) Σ wᵢ (yᵢ − b − xᵢᵀβ)² + Σ_j [ λ1 f_j |β_j| + (λ2/2) f_j β_j² ],   l ≤ β ≤ u

(the factor multiplies both parts of feature j's penalty; ``f_j = 0`` leaves it unpenalized). As in
glmnet the factors are rescaled once to sum to p (so a factor vector of all 2s is the same as all 1s);
searched group multipliers (``search.group_multipliers``) then multiply the rescaled factors, without a
second rescaling, so that a multiplier moves one group's penalty against the others'.

The limits are given on the scale of the data. The solvers work on the penalized scale, where column j
is divided by ``s_j`` (standardization) and ``β̃_j = s_j β_j``: there the limits are ``s_j l_j``, ``s_j u_j``
(a sign-preserving rescaling, so ``l ≤ 0 ≤ u`` still holds).

This module holds the pure pieces every engine shares: :class:`FeatureControls` (checked, rescaled, on
the feature index of the data) and :class:`BoxPenalty` (the same on a problem's kept columns and
penalized scale, with the value, the coordinate-wise minimizer, the KKT residual, the conjugate and the
duality gap the solvers certify with).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BoxPenalty", "FeatureControls", "box_duality_gap"]


def _array(value: object, p: int, name: str, default: float) -> np.ndarray:
    """A scalar or a length-p array as a float64 array of length p (``None`` is ``default``)."""
    if value is None:
        return np.full(p, default)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return np.full(p, float(arr))
    if arr.shape != (p,):
        raise ValueError(f"`{name}` must be a scalar or an array of length {p} (one per feature), "
                         f"got shape {arr.shape}.")
    return arr.copy()


@dataclass(frozen=True, eq=False)
class FeatureControls:
    """Penalty factors (rescaled to sum to p) and coefficient limits, one per feature of the data.

    Build with :meth:`make`, which checks every rule before any work: factors finite and ≥ 0, not all 0
    (nothing would be penalized: λ1 and λ2 would mean nothing), ``lower ≤ 0 ≤ upper`` (glmnet's rule: 0
    must be feasible, so the null model exists), no NaN.

    ``groups[j]`` is the index of feature j's searched group in ``group_names`` (−1 outside every group);
    a trial's multipliers ``{group: value}`` scale the factors of their group's features.
    """

    factor: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    groups: np.ndarray
    group_names: tuple[str, ...] = ()

    @classmethod
    def make(cls, n_features: int, penalty_factor: object = None, lower: object = None, upper: object = None,
             groups: Sequence[int] | np.ndarray | None = None, group_names: Sequence[str] = (),
             rescale: bool = True) -> FeatureControls:
        """Checked and rescaled controls for ``n_features`` features (``None`` = 1 / −inf / +inf / no group).

        ``rescale=False`` keeps the factors as given (a fitted model's effective factors, already rescaled
        and multiplied)."""
        p = int(n_features)
        f = _array(penalty_factor, p, "penalty_factor", 1.0)
        lo = _array(lower, p, "lower", -math.inf)
        hi = _array(upper, p, "upper", math.inf)
        if not np.all(np.isfinite(f)) or np.any(f < 0):
            bad = int(np.flatnonzero(~np.isfinite(f) | (f < 0))[0])
            raise ValueError(f"`penalty_factor` must be finite and >= 0 for every feature, got {f[bad]!r} for "
                             f"feature {bad}; use 0 to leave a feature unpenalized.")
        if p and not np.any(f > 0):
            raise ValueError("`penalty_factor` is 0 for every feature, so nothing is penalized; give the "
                             "features to penalize a positive factor.")
        for name, arr, ok in (("lower", lo, lo <= 0), ("upper", hi, hi >= 0)):
            if np.any(np.isnan(arr)) or not np.all(ok):
                bad = int(np.flatnonzero(np.isnan(arr) | ~ok)[0])
                side = "<= 0" if name == "lower" else ">= 0"
                raise ValueError(f"`{name}` must be {side} for every feature (0 must be a feasible coefficient, as "
                                 f"in glmnet), got {arr[bad]!r} for feature {bad}; use -inf/+inf for no limit.")
        g = np.full(p, -1, dtype=np.intp) if groups is None else np.asarray(groups, dtype=np.intp)
        if g.shape != (p,) or (g.size and g.max() >= len(group_names)):
            raise ValueError(f"`groups` must have one entry per feature ({p}) below {len(group_names)}, got {g!r}.")
        f = f * (p / f.sum()) if p and rescale else f
        return cls(factor=f, lower=lo, upper=hi, groups=g, group_names=tuple(group_names))

    @property
    def is_default(self) -> bool:
        """Every factor 1, no limit, no group: the plain penalty."""
        return bool(np.all(self.factor == 1.0) and np.all(np.isneginf(self.lower)) and np.all(np.isposinf(self.upper))
                    and np.all(self.groups < 0))

    @property
    def key(self) -> bytes:
        """A digest of the contents (to key caches of problems built with these controls)."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for arr in (self.factor, self.lower, self.upper, self.groups):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x1f".join(self.group_names).encode())
        return h.digest()

    @property
    def bounded(self) -> np.ndarray:
        """Which features have a finite limit."""
        return np.isfinite(self.lower) | np.isfinite(self.upper)

    def factors(self, multipliers: Mapping[str, float] | None = None) -> np.ndarray:
        """The effective factors of a trial: the rescaled factors times the multiplier of each feature's group
        (``{group: value}``; a group without one, and every feature outside the groups, keeps factor × 1)."""
        if not multipliers:
            return self.factor
        unknown = sorted(set(multipliers) - set(self.group_names))
        if unknown:
            raise ValueError(f"group multipliers for unknown groups {unknown}; "
                             f"the groups are {list(self.group_names)}.")
        m = np.array([float(multipliers.get(g, 1.0)) for g in self.group_names] + [1.0])  # index −1: no group
        if not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise ValueError(f"group multipliers must be finite and > 0, got {dict(multipliers)!r}.")
        return self.factor * m[self.groups]

    def lambda1_max_by_group(self, ratios: np.ndarray, kept: np.ndarray) -> dict[str, float]:
        """The largest ratio among each searched group's kept features (``""``: the features outside every
        group): λ1_max under multipliers m is ``max(by[""], max_g by[g] / m_g)``."""
        idx = np.flatnonzero(kept) if np.asarray(kept).dtype == bool else np.asarray(kept, dtype=np.intp)
        groups = self.groups[idx]
        names = ("", *self.group_names)
        return {name: float(np.max(ratios[groups == g], initial=0.0)) for g, name in zip(range(-1, len(names) - 1),
                                                                                          names)}

    def on_problem(self, kept: np.ndarray, scale: np.ndarray, lambda1: float, lambda2: float,
                   multipliers: Mapping[str, float] | None = None) -> BoxPenalty:
        """The penalty of a problem whose kept columns are ``kept`` (a mask or indices into the features)
        and whose penalized coefficients are ``scale · β`` (``scale`` per feature)."""
        idx = np.flatnonzero(kept) if np.asarray(kept).dtype == bool else np.asarray(kept, dtype=np.intp)
        f = self.factors(multipliers)[idx]
        s = np.asarray(scale, dtype=np.float64)[idx]
        return BoxPenalty(lambda1 * f, lambda2 * f, self.lower[idx] * s, self.upper[idx] * s)


@dataclass(frozen=True, eq=False)
class BoxPenalty:
    """``h(β) = Σ_j a_j|β_j| + ½ m_j β_j² + ι[lo_j, hi_j](β_j)`` on a problem's penalized scale.

    ``a = λ1 f``, ``m = λ2 f``, ``lo ≤ 0 ≤ hi``. Separable, so every solver works per coordinate.
    """

    a: np.ndarray
    m: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def uniform(cls, size: int, lambda1: float, lambda2: float) -> BoxPenalty:
        """The plain penalty ``λ1‖β‖₁ + (λ2/2)‖β‖²`` on ``size`` coordinates (no limits)."""
        return cls(np.full(size, float(lambda1)), np.full(size, float(lambda2)), np.full(size, -math.inf),
                   np.full(size, math.inf))

    @property
    def size(self) -> int:
        return int(self.a.shape[0])

    def take(self, idx: np.ndarray) -> BoxPenalty:
        """The penalty of the coordinates ``idx``."""
        return BoxPenalty(self.a[idx], self.m[idx], self.lo[idx], self.hi[idx])

    def value(self, beta: np.ndarray) -> float:
        """``h(β)`` (∞ outside the box)."""
        if np.any(beta < self.lo) or np.any(beta > self.hi):
            return math.inf
        return float(self.a @ np.abs(beta) + 0.5 * (self.m @ (beta * beta)))

    def kkt_residual(self, beta: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Distance of ``c − mβ`` (minus the smooth gradient, c = ``X̃ᵀVr/Σv``) to ``∂(a|·| + ι)(β)``, per coordinate.

        Free coordinates need ``c − mβ = a sign β``; at 0 (inside the box) ``|c| ≤ a``; at the upper limit
        only ``c − mβ ≥ a`` is allowed (the data pull beyond it), at the lower ``c − mβ ≤ −a``.
        """
        g = c - self.m * beta
        at_hi = (beta >= self.hi) & (beta > 0)
        at_lo = (beta <= self.lo) & (beta < 0)
        zero = beta == 0
        free = ~(at_hi | at_lo | zero)
        out = np.where(free, np.abs(g - self.a * np.sign(beta)), 0.0)
        out = np.where(at_hi, np.maximum(self.a - g, 0.0), out)
        out = np.where(at_lo, np.maximum(g + self.a, 0.0), out)
        up = np.where(self.hi > 0, np.maximum(g - self.a, 0.0), 0.0)  # at 0, room to move up / down
        down = np.where(self.lo < 0, np.maximum(-g - self.a, 0.0), 0.0)
        return np.where(zero, np.maximum(up, down), out)

    def conjugate_argmax(self, v: np.ndarray) -> np.ndarray:
        """``argmax_b v b − h_j(b)`` per coordinate (±inf where the conjugate is infinite)."""
        shrunk = np.sign(v) * np.maximum(np.abs(v) - self.a, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(shrunk == 0.0, 0.0, np.where(self.m > 0, shrunk / self.m, np.sign(shrunk) * math.inf))
        return np.clip(b, self.lo, self.hi)

    def conjugate(self, v: np.ndarray) -> float:
        """``h*(v) = Σ_j sup_b v_j b − h_j(b)``."""
        b = self.conjugate_argmax(v)
        if not np.all(np.isfinite(b)):
            return math.inf
        return float(v @ b - self.a @ np.abs(b) - 0.5 * (self.m @ (b * b)))

    def projected(self, beta: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The unpenalized coordinates (``a = m = 0``) the dual point must be made orthogonal to: those inside
        their limits (``c_j = 0`` at the optimum) and those at a limit whose conjugate is infinite at ``c_j``
        (c pulls towards the unlimited side: rounding, at the optimum). No rescaling can help there."""
        unpenalized = (self.a == 0) & (self.m == 0)
        inside = (beta > self.lo) & (beta < self.hi)
        infinite = np.where(c > 0, np.isposinf(self.hi), np.where(c < 0, np.isneginf(self.lo), False))
        return np.asarray(unpenalized & (inside | infinite))

    def dual_scaling(self, v: np.ndarray) -> float:
        """The largest ``s ≤ 1`` that keeps ``h*(s v)`` finite (the lasso's dual rescaling, per side); the
        penalty's coordinates must all have ``a_j > 0`` wherever ``v_j`` points to an unlimited side."""
        infinite_side = (self.m == 0) & np.where(v > 0, np.isposinf(self.hi), np.isneginf(self.lo))
        excess = infinite_side & (np.abs(v) > self.a) & (self.a > 0)
        if not np.any(excess):
            return 1.0
        return float(min(1.0, np.min(self.a[excess] / np.abs(v[excess]))))


def box_duality_gap(r2: float, beta: np.ndarray, penalty: BoxPenalty, b_theta: float, theta2: float,
                    c_theta: np.ndarray, projected: np.ndarray | None = None) -> float:
    """Duality gap ``P(β) − D(sθ)`` of ``P(β) = ½‖b − Aβ‖² + h(β)``, ``D(θ) = bᵀθ − ½‖θ‖² − h*(Aᵀθ)``.

    ``r2 = ‖b − Aβ‖²`` is the primal residual; the dual point θ is given by ``b_theta = bᵀθ``,
    ``theta2 = ‖θ‖²`` and ``c_theta = Aᵀθ`` (on the problem's scale: ``A = V^{1/2}X̃/√Σv``, so with θ the
    residual r, ``bᵀr = yy − qᵀβ`` and ``Aᵀr = X̃ᵀVr/Σv``; or θ projected by :func:`project_free`). It is
    rescaled by the ``s`` of :meth:`BoxPenalty.dual_scaling` (the lasso's rescaled residual, side by side:
    a one-sided limit needs the rescaling only on its unlimited side):

        gap = ½ r2 + h(β) − s bᵀθ + ½ s² ‖θ‖² + h*(s Aᵀθ).

    The coordinates ``projected`` (:meth:`BoxPenalty.projected`) need ``(Aᵀθ)_j = 0`` (θ projected by
    :func:`project_free`); what is left there is rounding and is ignored.
    """
    keep = np.ones(penalty.size, dtype=bool) if projected is None else ~projected
    pen = penalty if np.all(keep) else penalty.take(np.flatnonzero(keep))
    v = c_theta[keep]
    s = pen.dual_scaling(v)
    primal = 0.5 * r2 + penalty.value(beta)
    dual = s * b_theta - 0.5 * s * s * theta2 - pen.conjugate(s * v)
    return max(primal - dual, 0.0)


def project_free(c: np.ndarray, yy_minus_qb: float, r2: float, G_cols: np.ndarray, q_free: np.ndarray,
                 free: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The dual point θ' = r − A_U (A_UᵀA_U)⁺ A_Uᵀr, orthogonal to the unpenalized, unlimited columns U.

    Returns ``(Aᵀθ', bᵀθ', ‖θ'‖²)`` from ``c = Aᵀr``, ``bᵀr``, ``‖r‖²`` and ``G_cols = AᵀA_U`` (all p × |U|),
    ``q_free = A_Uᵀb``: with ``z = G_UU⁺ c_U``, ``Aᵀθ' = c − G_cols z``, ``bᵀθ' = bᵀr − q_Uᵀz``,
    ``‖θ'‖² = ‖r‖² − c_Uᵀz`` (a projection). At the optimum ``c_U = 0`` and nothing changes.
    """
    cu = c[free]
    z = np.linalg.lstsq(G_cols[free], cu, rcond=None)[0]
    return c - G_cols @ z, yy_minus_qb - float(q_free @ z), max(r2 - float(cu @ z), 0.0)
