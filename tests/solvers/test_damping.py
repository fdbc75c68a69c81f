"""The damping of the GLM solvers' quadratic models (pipeline.solvers.damping): its model against least squares
on augmented rows, built by hand, and its schedule step by step."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.solvers.damping import Damping


def test_the_damped_model_is_least_squares_on_augmented_rows() -> None:
    """``(G + δI, q + δβ, yy + δ‖β‖²)`` must be the Gram, linear term and constant of the rows ``[X; √δ I]``
    against ``[z; √δ β]``, formed here from the stacked rows themselves; without damping the inputs come back
    unchanged (the same arrays)."""
    rng = np.random.default_rng(0)
    X, z, beta, delta = rng.normal(size=(50, 6)), rng.normal(size=50), rng.normal(size=6), 0.37
    G, q, yy = X.T @ X, X.T @ z, float(z @ z)
    damping = Damping(value=delta)
    H, r, c = damping.apply(G, q, yy, beta, copy=True)
    rows = np.vstack([X, np.sqrt(delta) * np.eye(6)])
    target = np.concatenate([z, np.sqrt(delta) * beta])
    np.testing.assert_allclose(H, rows.T @ rows, rtol=1e-12)
    np.testing.assert_allclose(r, rows.T @ target, rtol=1e-12)
    assert c == pytest.approx(float(target @ target), rel=1e-12)
    np.testing.assert_array_equal(G, X.T @ X)  # copy=True left G alone
    same = Damping().apply(G, q, yy, beta, copy=False)
    assert same[0] is G and same[1] is q and same[2] == yy


def test_the_schedule_starts_on_a_cut_step_and_ends_undamped() -> None:
    """0 while steps are taken whole or cut mildly (the residual is not even computed); a step cut to t ≤ 1/4
    sets δ = ‖r‖/(t‖d‖); a further cut raises it fourfold; whole steps lower it tenfold, to 0 below a hundredth
    of its peak; release drops it."""
    def never() -> float:
        raise AssertionError("the residual is needed only when a cut step starts the damping")

    d = Damping()
    d.after(1.0, 2.0, never)
    d.after(0.5, 1.0, never)
    assert d.value == 0.0
    d.after(0.1, 0.2, lambda: 3.0)  # the step taken: 0.2 long; ‖r‖ = 3
    assert d.value == pytest.approx(15.0)
    d.after(0.125, 0.4, lambda: 1.0)  # 4 × 15 beats 1/0.4
    assert d.value == pytest.approx(60.0)
    for expected in (6.0, 0.6, 0.0):  # the last: 0.06 < 60/100
        d.after(1.0, 1.0, never)
        assert d.value == pytest.approx(expected)
    d.after(0.01, 0.5, lambda: 1.0)
    assert d.value == pytest.approx(2.0)
    d.release()
    assert d.value == 0.0
