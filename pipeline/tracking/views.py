"""How the MLflow UI opens on a sweep: the "Machine learning" experiment view, and a shared view of
the trials sorted by CV error with the columns that matter.

MLflow 3 opens an experiment on its GenAI overview (traces, token usage)
unless the experiment says otherwise: the tag ``mlflow.experimentKind`` set to
``custom_model_development`` makes "Model training" its view. A shared view
(an experiment tag ``mlflow.sharedViewState.<key>`` holding the runs table's
state as JSON, opened by ``?viewStateShareKey=<key>``) shows one study's trial
runs, best first, with their penalty, strengths and scores as columns, with
no clicks. Both are read by the MLflow UI only; nothing else depends on them.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from .records import quote

__all__ = ["EXPERIMENT_KIND", "experiment_tags", "runs_url", "view_key"]

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
_SHARED_VIEW = "mlflow.sharedViewState."
_EXTRA_COLUMNS = {"mse": (), "binomial_deviance": ("cv_auc", "cv_log_loss"), "poisson_deviance": ("cv_mae",)}


def _columns(metric: str) -> list[str]:
    """The runs table's columns for a sweep of ``metric``: the strengths, the CV error and its SE, the share
    explained, the family's headline scores, non-zeros and the training error."""
    explained = "cv_r2" if metric == "mse" else "cv_deviance_explained"
    names = [f"cv_{metric}", f"cv_{metric}_se", explained, *_EXTRA_COLUMNS.get(metric, ()), "n_nonzero",
             f"train_{metric}"]
    return ["params.`penalty`", "params.`lambda1`", "params.`lambda2`", *(f"metrics.`{n}`" for n in names)]


def view_key(study_name: str) -> str:
    """The shared-view key of a study's trials."""
    return "regsweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)


def experiment_tags(study_name: str, metric: str = "mse") -> dict[str, str]:
    """The experiment tags that make the UI open on the study's trials (module docstring), sorted by ``metric``."""
    state = {
        "searchFilter": f"tags.`regsweep.study` = '{quote(study_name)}' and tags.`regsweep.kind` = 'trial'",
        "orderByKey": f"metrics.`cv_{metric}`",
        "orderByAsc": True,
        "selectedColumns": _columns(metric),
    }
    return {EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1], _SHARED_VIEW + view_key(study_name): json.dumps(state)}


def runs_url(base: str, experiment_id: str, study_name: str) -> str:
    """The address of the study's trials in the runs table of the "Model training" view."""
    query = urllib.parse.urlencode({"workflowType": "machine_learning", "viewStateShareKey": view_key(study_name)})
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
