"""The study read back for people: one row per trial, and counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..candidate import MULTIPLIER_PREFIX
from ..report import TrialRow

if TYPE_CHECKING:
    from optuna import Study

__all__ = ["TrialRow", "n_complete", "trial_rows"]


def trial_rows(study: Study) -> list[TrialRow]:
    """One row per trial of the study (any state), from the study itself (the record of truth)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        cv = t.user_attrs.get("cv", {})
        rows.append({
            "number": t.number,
            "state": t.state.name,
            "penalty": t.params.get("penalty", ""),
            "lambda1": t.params.get("lambda1", 0.0),
            "lambda2": t.params.get("lambda2", 0.0),
            "cv_mse": t.value if t.value is not None else float("nan"),
            "cv_mse_se": cv.get("cv_mse_se", float("nan")),
            "train_mse": cv.get("train_mse", float("nan")),
            "cv_r2": cv.get("cv_r2", float("nan")),
            "n_nonzero": cv.get("n_nonzero", float("nan")),
            "fold_mse": " ".join(f"{v:.10g}" for v in cv.get("fold_mse", [])),
            "group_multipliers": {k[len(MULTIPLIER_PREFIX):]: float(v) for k, v in t.params.items()
                                  if k.startswith(MULTIPLIER_PREFIX)},
        })
    return rows


def n_complete(study: Study) -> int:
    """COMPLETE trials of the study."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
