"""Penalties of the regsweep objective: value, proximal operator, optimality.

One family covers all three penalty names:

    Ω(β) = λ1 · ‖β‖₁ + (λ2 / 2) · ‖β‖₂²

``l1`` is λ2 = 0, ``l2`` is λ1 = 0, ``elasticnet`` has both. Each penalty
object carries the mathematical pieces a solver or a test needs (as in
skglm's penalty contract): its value, its proximal operator, the distance
of a gradient to its subdifferential (the KKT residual), and the smallest
λ1 at which the solution is all zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "PENALTY_NAMES",
    "ElasticNet",
    "L1",
    "L2",
    "PenaltyName",
    "lambda1_max",
    "make_penalty",
    "soft_threshold",
]

PenaltyName = Literal["l1", "l2", "elasticnet"]
PENALTY_NAMES: tuple[str, ...] = ("l1", "l2", "elasticnet")


def soft_threshold(v: np.ndarray | float, threshold: float) -> np.ndarray:
    """``sign(v) · max(|v| − threshold, 0)``, elementwise."""
    v = np.asarray(v, dtype=np.float64)
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


def lambda1_max(q: np.ndarray) -> float:
    """Smallest λ1 whose solution is β = 0: ``‖q‖∞`` with ``q = XᵀW(y − ȳ)/Σw``.

    At β = 0 the gradient of the smooth part is ``−q``; zero is optimal iff
    ``|q_j| ≤ λ1`` for every j, whatever λ2 is.
    """
    q = np.asarray(q, dtype=np.float64)
    return float(np.max(np.abs(q))) if q.size else 0.0


@dataclass(frozen=True)
class ElasticNet:
    """``λ1‖β‖₁ + (λ2/2)‖β‖²`` with ``λ1, λ2 ≥ 0``."""

    lambda1: float
    lambda2: float

    name: str = "elasticnet"

    def __post_init__(self) -> None:
        for key in ("lambda1", "lambda2"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"`{key}` must be a real number, got {type(value).__name__} {value!r}.")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"`{key}` must be finite and >= 0, got {key}={value!r}.")
            object.__setattr__(self, key, float(value))

    def value(self, beta: np.ndarray) -> float:
        """``Ω(β)``."""
        beta = np.asarray(beta, dtype=np.float64)
        return self.lambda1 * float(np.abs(beta).sum()) + 0.5 * self.lambda2 * float(beta @ beta)

    def prox(self, v: np.ndarray | float, step: float) -> np.ndarray:
        """``argmin_β ½‖β − v‖² + step·Ω(β) = ST(v, step·λ1) / (1 + step·λ2)``."""
        return soft_threshold(v, step * self.lambda1) / (1.0 + step * self.lambda2)

    def subdiff_distance(self, beta: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Distance of ``−grad`` to ``∂Ω(β)``, per coordinate (the KKT residual).

        ``grad`` is the gradient of the smooth part (the data fit). β is
        optimal iff this is zero everywhere:

        - ``β_j ≠ 0``: ``∂Ω = {λ1 sign β_j + λ2 β_j}``, distance
          ``|grad_j + λ1 sign β_j + λ2 β_j|``;
        - ``β_j = 0``: ``∂Ω = [−λ1, λ1]``, distance ``max(|grad_j| − λ1, 0)``.
        """
        beta = np.asarray(beta, dtype=np.float64)
        grad = np.asarray(grad, dtype=np.float64)
        nonzero = beta != 0
        on_support = np.abs(grad + self.lambda1 * np.sign(beta) + self.lambda2 * beta)
        off_support = np.maximum(np.abs(grad) - self.lambda1, 0.0)
        return np.where(nonzero, on_support, off_support)


class L1(ElasticNet):
    """Lasso penalty ``λ1‖β‖₁``."""

    def __init__(self, lambda1: float) -> None:
        super().__init__(lambda1=lambda1, lambda2=0.0, name="l1")


class L2(ElasticNet):
    """Ridge penalty ``(λ2/2)‖β‖²``."""

    def __init__(self, lambda2: float) -> None:
        super().__init__(lambda1=0.0, lambda2=lambda2, name="l2")


def make_penalty(name: str, lambda1: float = 0.0, lambda2: float = 0.0) -> ElasticNet:
    """Build the penalty called ``name`` and check that the λs fit it.

    Raises
    ------
    ValueError
        Unknown name, negative or non-finite λ, ``l1`` with λ2 > 0, or ``l2``
        with λ1 > 0.
    TypeError
        ``name`` not a string or a λ not a real number.
    """
    if not isinstance(name, str):
        raise TypeError(f"`penalty` must be a string, one of {PENALTY_NAMES}, got {name!r}.")
    key = name.lower()
    if key not in PENALTY_NAMES:
        raise ValueError(
            f"`penalty` must be one of {PENALTY_NAMES}, got {name!r}; "
            "use 'l1' for lasso, 'l2' for ridge, 'elasticnet' for both."
        )
    penalty = ElasticNet(lambda1, lambda2)  # validates the λs
    if key == "l1":
        if penalty.lambda2 > 0:
            raise ValueError(
                f"penalty 'l1' must have lambda2 == 0, got lambda2={lambda2!r}; "
                "use penalty='elasticnet' to combine both."
            )
        return L1(penalty.lambda1)
    if key == "l2":
        if penalty.lambda1 > 0:
            raise ValueError(
                f"penalty 'l2' must have lambda1 == 0, got lambda1={lambda1!r}; "
                "use penalty='elasticnet' to combine both."
            )
        return L2(penalty.lambda2)
    return penalty
