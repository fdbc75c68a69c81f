"""The study read back for people: one row per trial, and counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..candidate import MULTIPLIER_PREFIX
from ..metrics import EXTRA_METRICS, METRIC_OF
from ..report import TrialRow
from .results import explained_name

if TYPE_CHECKING:
    from optuna import Study

__all__ = ["FAMILY_ATTR", "TrialRow", "study_family", "trial_rows"]


FAMILY_ATTR = "regsweep:family"


def study_family(study: Study) -> str:
    """The family a study's trials were scored under (``gaussian`` for studies from before the families)."""
    return str(study.user_attrs.get(FAMILY_ATTR, "gaussian"))


def trial_rows(study: Study) -> list[TrialRow]:
    """One row per trial of the study (any state), from the study itself (the record of truth).

    The ``cv_mse``, ``cv_mse_se``, ``train_mse`` and ``fold_mse`` entries hold the study's metric (the mean
    deviance of a binomial or Poisson sweep), ``cv_r2`` the deviance explained, ``extra`` the family's other
    scores (:mod:`pipeline.metrics`)."""
    family = study_family(study)
    metric = METRIC_OF[family]
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
            "cv_mse_se": cv.get(f"cv_{metric}_se", float("nan")),
            "train_mse": cv.get(f"train_{metric}", float("nan")),
            "cv_r2": cv.get(explained_name(metric), float("nan")),
            "n_nonzero": cv.get("n_nonzero", float("nan")),
            "fold_mse": " ".join(f"{v:.10g}" for v in cv.get(f"fold_{metric}", [])),
            "extra": {name: cv.get(f"cv_{name}", float("nan")) for name in EXTRA_METRICS[family]},
            "group_multipliers": {k[len(MULTIPLIER_PREFIX):]: float(v) for k, v in t.params.items()
                                  if k.startswith(MULTIPLIER_PREFIX)},
        })
    return rows
