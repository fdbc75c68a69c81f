"""The Python API for notebooks: ``pipeline.run_sweep(config, *, overrides=None) -> SweepResult``.

The same sweep as ``regsweep sweep``, silent unless asked (``echo=print``),
returning a :class:`SweepResult`: the summary fields as attributes, the
registered model and the trials as a DataFrame::

    import pipeline
    result = pipeline.run_sweep("configs/quickstart.yaml", overrides={"search.n_trials": 20})
    result.selected, result.best_cv_mse, result.model_version
    result.model.predict(frame)
    result.trials.sort_values(f"cv_{result.metric}").head()
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import SweepConfig, config_from
from .errors import ConfigError
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
    if not cfg.cluster.address and cfg.cluster.processes:
        _check_main_guard()
    summary, model = sweep_with_model(cfg, echo=echo or (lambda _line: None), progress=progress)
    return SweepResult(summary, cfg, model)


def _check_main_guard() -> None:
    """Refuse a call at the top level of a script, outside ``if __name__ == "__main__":``, before any work.

    The embedded cluster's worker processes start from a fork server, which imports the script's ``__main__``
    once more (Python's multiprocessing): unguarded, that import runs the sweep again, and the cluster fails
    with a multiprocessing traceback ("Nanny failed to start") after seconds, having re-run whatever the
    script does before the call. The frame of the script's top level says on which line it called; the
    script's syntax tree says whether that line is inside the guard."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not str(path).endswith(".py"):
        return  # a notebook, python -c, an interpreter: nothing is imported again
    frame = sys._getframe(1)
    line = None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back  # type: ignore[assignment]
    if line is None:
        return
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    if any(_is_main_guard(node) and node.lineno <= line <= (node.end_lineno or node.lineno) for node in tree.body):
        return
    raise ConfigError(
        f"pipeline.run_sweep is called at the top level of {path} (line {line}): the sweep's worker processes "
        "start from a fork server that imports this script again, which would run the sweep again; put the call "
        'under if __name__ == "__main__": (or set cluster.processes: false for workers as threads).')


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` (either side of the comparison)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare) or len(node.test.comparators) != 1:
        return False
    sides = [node.test.left, node.test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return isinstance(node.test.ops[0], ast.Eq) and names == ["__name__"] and values == ["__main__"]


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
