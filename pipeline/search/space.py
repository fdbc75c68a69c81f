"""The search space: penalty names and log-uniform λ ranges, resolved from the config and the data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..candidate import MULTIPLIER_PREFIX, Candidate, strengths_of
from ..config import SearchConfig
from ..errors import DataError

if TYPE_CHECKING:
    from optuna.trial import Trial

__all__ = ["SearchSpace", "resolve_space"]


@dataclass(frozen=True)
class SearchSpace:
    """Penalties, log-uniform λ ranges (resolved: no ``auto`` left) and the log-uniform ranges of the searched
    group multipliers (``search.group_multipliers``), in the config's order."""

    penalties: tuple[str, ...]
    lambda1: tuple[float, float]
    lambda2: tuple[float, float]
    multipliers: tuple[tuple[str, tuple[float, float]], ...] = ()

    def suggest(self, trial: Trial, number: int = -1) -> Candidate:
        """Draw one candidate from ``trial``; an l1 trial draws no λ2, an l2 trial no λ1 (conditional space);
        every trial draws each group's multiplier ``mult_<group>``."""
        penalty = str(trial.suggest_categorical("penalty", list(self.penalties)))
        ranges = {"lambda1": self.lambda1, "lambda2": self.lambda2}
        values = {name: trial.suggest_float(name, *ranges[name], log=True) for name in strengths_of(penalty)}
        mult = tuple((g, trial.suggest_float(f"{MULTIPLIER_PREFIX}{g}", *r, log=True)) for g, r in self.multipliers)
        return Candidate(number, penalty, multipliers=mult, **values)

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"penalties": list(self.penalties), "lambda1": list(self.lambda1),
                                  "lambda2": list(self.lambda2)}
        if self.multipliers:
            out["group_multipliers"] = {g: list(r) for g, r in self.multipliers}
        return out


def resolve_space(search: SearchConfig, bounds: Mapping[str, float]) -> SearchSpace:
    """The configured ranges with every ``auto`` bound taken from ``bounds`` (:func:`pipeline.cv.search_bounds`)."""
    resolved: dict[str, tuple[float, float]] = {}
    for name in ("lambda1", "lambda2"):
        cfg = getattr(search, name)
        lo = bounds[f"{name}_low"] if cfg.low == "auto" else float(cfg.low)
        hi = bounds[f"{name}_high"] if cfg.high == "auto" else float(cfg.high)
        if not (0 < lo < hi):
            auto = [b for b, v in (("low", cfg.low), ("high", cfg.high)) if v == "auto"]
            source = ("λ1_max, which is 0 when no feature varies or none is correlated with the target"
                      if name == "lambda1" else "the largest eigenvalue of the features' Gram, 1e-8 and 10 times it")
            why = "both bounds are set so" if not auto else f"the {' and '.join(auto)} bound came from {source}"
            raise DataError(f"search.{name}: the resolved range [{lo:.4g}, {hi:.4g}] is empty ({why}); set "
                            f"search.{name}.low below search.{name}.high, both explicitly if need be.")
        resolved[name] = (lo, hi)
    groups = tuple((g, (float(spec.range[0]), float(spec.range[1]))) for g, spec in search.group_multipliers.items())
    return SearchSpace(tuple(search.penalties), resolved["lambda1"], resolved["lambda2"], groups)
