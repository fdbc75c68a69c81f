"""One trial's parameters, and the rule that ties the strengths to the penalty.

The rule, written once: ``l1`` has a λ1 and no λ2, ``l2`` a λ2 and no λ1,
``elasticnet`` both. It decides what Optuna is asked to suggest, what a trial
records as parameters (in the study and in MLflow), and how a recorded trial
becomes a candidate again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .solvers import ElasticNet, make_penalty

__all__ = ["MULTIPLIER_PREFIX", "STRENGTHS", "Candidate", "strengths_of"]

STRENGTHS: dict[str, tuple[str, ...]] = {
    "l1": ("lambda1",),
    "l2": ("lambda2",),
    "elasticnet": ("lambda1", "lambda2"),
}


def strengths_of(penalty: str) -> tuple[str, ...]:
    """The strength parameters penalty ``penalty`` has (``("lambda1",)`` for l1, …)."""
    try:
        return STRENGTHS[penalty]
    except KeyError:
        raise ValueError(f"`penalty` must be one of {tuple(STRENGTHS)}, got {penalty!r}.") from None


MULTIPLIER_PREFIX = "mult_"  # a searched group multiplier's parameter: mult_<group>


@dataclass(frozen=True)
class Candidate:
    """One trial's parameters: its number, the penalty name, the strengths (0 where unused) and the searched
    group multipliers ``((group, value), ...)`` (``search.group_multipliers``; none without groups)."""

    trial: int
    penalty: str
    lambda1: float = 0.0
    lambda2: float = 0.0
    multipliers: tuple[tuple[str, float], ...] = ()

    @property
    def group_multipliers(self) -> dict[str, float]:
        """``{group: multiplier}`` (empty without searched groups)."""
        return dict(self.multipliers)

    def penalty_object(self) -> ElasticNet:
        """The solver's penalty (checks the rule: an l1 candidate with λ2 > 0 is refused)."""
        return make_penalty(self.penalty, self.lambda1, self.lambda2)

    def params(self) -> dict[str, Any]:
        """What a trial records: the penalty, then λ1 and/or λ2, only those the penalty has."""
        out: dict[str, Any] = {"penalty": self.penalty}
        for name in strengths_of(self.penalty):
            out[name] = float(getattr(self, name))
        for group, value in self.multipliers:
            out[f"{MULTIPLIER_PREFIX}{group}"] = float(value)
        return out

    @classmethod
    def from_params(cls, trial: int, params: Mapping[str, Any]) -> Candidate:
        """The candidate of recorded parameters (a strength the penalty lacks is 0; ``mult_<group>`` are the
        group multipliers, in the order recorded)."""
        penalty = str(params["penalty"])
        values = {name: float(params.get(name, 0.0)) for name in strengths_of(penalty)}
        mult = tuple((k[len(MULTIPLIER_PREFIX):], float(v)) for k, v in params.items()
                     if k.startswith(MULTIPLIER_PREFIX))
        return cls(trial, penalty, multipliers=mult, **values)
