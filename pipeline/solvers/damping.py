"""Levenberg–Marquardt damping of the GLM solvers' quadratic models, for rows whose curvature vanishes.

A binomial row whose mean is near 0 or 1 (or a Poisson row whose mean is near 0) has an IRLS weight ``V(μ)``
near 0, and a column that only such rows hold, a rare level of a categorical above all, gets almost
no curvature in the quadratic model. Its minimiser then lies 10³–10⁸ away along that column, the Armijo line
search cuts the step to ``t ≈ 1e-8``, and every other coefficient moves by as little: on Caravan's 85
categorical columns (623 one-hot levels, 4,658 rows, lasso λ1 = 0.0021) a level held by two rows, at the
weights one step had saturated, had a diagonal of 2.5e-11 against 0.05 for the others and a proposed
coefficient of −3.3e8, and the fit took 17 Newton steps.

So the model takes ``(δ/2)‖β̃' − β̃‖²`` more (its Gram ``G + δI``, its linear term ``q + δβ̃``): Levenberg's
damping. The minimiser of the damped model is a proximal Newton step in a positive definite metric, which the
line search keeps convergent from any start (Lee, Sun & Saunders 2014), and its fixed points are those of the
undamped model, the optimum. ``δ`` is 0 until a step the line search cut to ``t ≤ 1/4``; it is then set to
``‖r‖ / (t‖d‖)``, with ``r`` the KKT residual at the step's start and ``t‖d‖`` the length of the step taken (the
damping of a gradient step of that length: the next steps are no longer than the one the line search found),
raised fourfold after each further cut step, lowered tenfold after each whole one, and dropped to 0 below a
hundredth of its peak, so the last steps are Newton's and converge quadratically. A fit stops only after an
undamped step (the damped model's small decrease says little about the undamped one). Fits whose steps the
line search never cuts below a quarter, those of tall well-conditioned rows, never damp and take exactly the
steps they took before. The Gram route only: the rows route's coordinate descent minimises a penalty about 0,
which cannot express the term about the current point.

Measured (Newton steps of :meth:`~.glm.GlmProblem.solve` from the null model, before → after): the Caravan
fit above 17 → 11, five Caravan fits (lasso and elastic net, λ1 from 0.003 to 0.1 of its largest) 80 → 59,
every objective the same to 12 digits; 120 lasso fits of synthetic one-hot rows with rare levels (damped in a
quarter of them) 1,321 → 1,314; the tall 10⁵ × 100 benchmarks' sweeps unchanged (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Damping"]

_CUT = 0.25  # a step the line search cut to at most this length starts the damping
_UP = 4.0  # the damping's rise after each further cut step ...
_DOWN = 10.0  # ... and its fall after each whole one
_FLOOR = 1e-2  # below this share of its peak the damping is dropped


@dataclass
class Damping:
    """The current ``δ`` of one fit (module docstring), 0 while its steps are taken whole."""

    value: float = 0.0
    peak: float = 0.0

    def after(self, t: float, step_length: float, residual: Callable[[], float]) -> None:
        """Adapt ``δ`` to the step just taken: length ``t`` of its direction, ``step_length = t‖d‖`` (β̃ scale);
        ``residual()`` gives ``‖r‖``, the KKT residual at the step's start (called only when a cut step starts
        the damping)."""
        if t >= 1.0:
            self.value /= _DOWN
            if self.value < _FLOOR * self.peak:
                self.value = 0.0
            return
        if self.value == 0.0 and t > _CUT:
            return
        start = residual() / step_length if step_length > 0.0 else 0.0
        self.value = max(_UP * self.value, start)
        if not np.isfinite(self.value):
            self.value = 0.0
        self.peak = max(self.peak, self.value)

    def release(self) -> None:
        """Drop the damping: the next step is undamped (a fit whose damped step met the tolerance takes one more
        before it stops)."""
        self.value = 0.0

    def apply(self, G: np.ndarray, q: np.ndarray, yy: float, beta: np.ndarray,
              copy: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """The damped model's ``(G + δI, q + δβ̃, yy + δ‖β̃‖²)``: the Gram, linear term and constant of least
        squares on the rows ``[X̃; √δ I]`` against ``[z; √δ β̃]``, whose duality gap the inner solvers measure
        (the inputs themselves when not damped; ``G`` changed in place unless ``copy``)."""
        if self.value == 0.0:
            return G, q, yy
        H = G.copy() if copy else G
        H[np.diag_indices_from(H)] += self.value
        return H, q + self.value * beta, yy + self.value * float(beta @ beta)
