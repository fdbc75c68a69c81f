"""The Python API for notebooks: ``pipeline.run_sweep(config, *, overrides=None) -> SweepResult``.

The same sweep as ``regsweep sweep``, silent unless asked (``echo=print``),
returning a :class:`SweepResult`: the summary fields as attributes, the
registered model and the trials as a DataFrame::

    import pipeline
    result = pipeline.run_sweep("configs/quickstart.yaml", overrides={"search.n_trials": 20})
    result.selected, result.best_cv_mse, result.model_version
    result.model.predict(frame)
    result.trials.sort_values("cv_mse").head()
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SweepConfig, config_from
from .model import FittedModel

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SweepResult", "run_sweep"]


def run_sweep(config: str | Path | Mapping[str, Any] | SweepConfig | None = None, *,
              overrides: Mapping[str, Any] | None = None, echo: Callable[[str], None] | None = None,
              progress: bool = False) -> SweepResult:
    """Run a sweep; return its :class:`SweepResult`.

    Parameters
    ----------
    config : path, mapping or :class:`~pipeline.config.SweepConfig`, default None
        A YAML file, a mapping with the YAML's structure, or a config object;
        None for every default (the bundled data on an embedded cluster).
    overrides : mapping, optional
        Dotted key paths to typed values, applied as ``--set`` would
        (``{"search.n_trials": 20, "search.penalties": ["l1", "l2"]}``).
    echo : callable, optional
        Receives the lines the command line would print (default: nothing).
    progress : bool, default False
        A progress bar (tqdm) while the trials run.

    Raises
    ------
    pipeline.errors.RegsweepError
        Bad config or data (before any work), or a sweep that cannot go on.
    """
    from .sweep import sweep_with_model

    cfg = config_from(config, overrides)
    summary, model = sweep_with_model(cfg, echo=echo or (lambda _line: None), progress=progress)
    return SweepResult(summary, cfg, model)


class SweepResult:
    """A finished sweep: every summary field as an attribute (``result.best_cv_mse``, ``result.selected``),
    plus :attr:`model` and :attr:`trials`. ``summary`` is the dict ``--summary-json`` writes."""

    def __init__(self, summary: dict[str, Any], config: SweepConfig, model: FittedModel | None = None) -> None:
        self.summary = summary
        self.config = config
        self._model = model

    def __getattr__(self, name: str) -> Any:
        summary = self.__dict__.get("summary", {})
        if name in summary:
            return summary[name]
        raise AttributeError(f"SweepResult has no field {name!r}; the fields are {sorted(summary)}")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.summary})

    def __repr__(self) -> str:
        s = self.summary
        sel = s.get("selected", {})
        return (f"SweepResult(study={s.get('study_name')!r}, trials={s.get('n_trials_complete')}, "
                f"selected={sel.get('penalty')} λ1={sel.get('lambda1', 0):.4g} λ2={sel.get('lambda2', 0):.4g} "
                f"({sel.get('rule')}), cv_{s.get('metric')}={sel.get('cv_metric', float('nan')):.6g}, "
                f"model={s.get('registered_model')} v{s.get('model_version')})")

    @property
    def model(self) -> FittedModel:
        """The registered model (the ``search.select`` choice refit on all rows).

        A study that was finished before this call fitted nothing: its model is
        then read from the registry (this imports MLflow).
        """
        if self._model is None:
            self._model = _registered_model(self.summary, self.config)
        return self._model

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial of the study (the columns of ``trials.csv``), read from the study."""
        import optuna
        import pandas as pd

        from .metrics import METRIC_OF
        from .report import trial_table
        from .search import study_family, trial_rows

        study = optuna.load_study(study_name=self.config.search.study_name, storage=self.config.search.storage)
        fields, rows = trial_table(trial_rows(study), METRIC_OF[study_family(study)])
        return pd.DataFrame(rows, columns=fields)


def _registered_model(summary: Mapping[str, Any], config: SweepConfig) -> FittedModel:
    from .errors import TrackingError
    from .tracking import Tracker
    from .tracking.registry import load_version

    name, version = config.tracking.registered_model, summary.get("model_version")
    if version is None:
        raise TrackingError(f"no model of this sweep is registered yet (MLflow at {config.tracking.uri} was away); "
                            "run `regsweep sync-tracking` with the same config once it is back.")
    tracker = Tracker(config.tracking)
    mv = tracker.client.get_model_version(name, str(version))
    return load_version(tracker.client, tracker.uri, name, mv, None).model
