"""regsweep: tune lasso, ridge and elastic net at cluster scale.

One fit on in-memory data::

    import pipeline
    model = pipeline.fit(X, y, penalty="l1", lambda1=0.1)
    model.predict(X_new); model.save("model_dir"); pipeline.FittedModel.load("model_dir")

A whole sweep, from a notebook (Dask, Optuna and MLflow are imported when it runs)::

    result = pipeline.run_sweep("configs/quickstart.yaml", overrides={"search.n_trials": 20})
    result.selected, result.model.predict(X_new), result.trials
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .fitting import fit
from .model import FittedModel

if TYPE_CHECKING:
    from .api import SweepResult, run_sweep

__all__ = ["FittedModel", "SweepResult", "fit", "run_sweep"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``run_sweep`` and ``SweepResult`` on first use: importing ``pipeline`` stays light."""
    if name in ("run_sweep", "SweepResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
