"""The ``regsweep`` command line.

Exit codes: 0 done, 1 failed, 2 bad config or input (regsweep's own errors,
printed as one message without a traceback unless ``--debug``), 130 on Ctrl-C
and 143 on SIGTERM (trials in flight marked FAIL, runs ended KILLED).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import RegsweepError, Terminated


def _raise(error: Exception) -> None:
    raise error


def _run(debug: bool, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except KeyboardInterrupt as e:
        # The study and MLflow are already written: leave now, skipping the seconds-long
        # interpreter shutdown (atexit cluster closes) that a SIGTERM deadline has no room for.
        what = f"stopped ({e})" if isinstance(e, Terminated) else "interrupted"
        click.echo(f"regsweep: {what}; trials in flight marked FAIL, runs ended KILLED.", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(143 if isinstance(e, Terminated) else 130)
    except RegsweepError as e:
        if debug:
            raise
        click.echo(f"regsweep: error: {e}", err=True)
        sys.exit(2 if isinstance(e, ValueError | TypeError) else 1)


def entry() -> None:
    """The ``regsweep`` executable: :func:`main`, then leave without the interpreter's teardown.

    When a command returns, everything it owes is written: the study is
    committed, the MLflow runs are ended, the cluster is closed and the MLflow
    process has exited. What a normal exit would still do is tear the
    interpreter down (atexit hooks of distributed, MLflow and SQLAlchemy, and
    the collection of ~3000 modules): measured at 1.3 s after a sweep, 10% of
    a 100-trial sweep on 10⁶ rows. So the process flushes its streams and
    leaves. It exits normally instead if a child process is still alive (its
    cleanup would be skipped) or on an uncaught exception (the traceback).
    """
    import multiprocessing

    from .gc_pause import freeze_after_steps

    freeze_after_steps()  # this process ends with its command (pipeline.gc_pause)
    try:
        main()  # standalone mode: always ends in SystemExit
    except SystemExit as e:
        code = e.code
        if isinstance(code, str):  # sys.exit("message"): printed, exit 1
            raise
        if multiprocessing.active_children():
            raise
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="regsweep")
def main() -> None:
    """regsweep: tune lasso, ridge and elastic net on a Dask cluster, tracked in MLflow."""


@main.command()
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config key, e.g. --set search.n_trials=20 (repeatable).")
@click.option("--summary-json", type=click.Path(dir_okay=False, writable=True),
              help="Write the sweep summary (best params, scores, run ids, timings) to this JSON file.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def sweep(config: str | None, overrides: tuple[str, ...], summary_json: str | None,
          progress: bool | None, debug: bool) -> None:
    """Run the sweep in CONFIG (YAML; omitted = all defaults: bundled diabetes data, local cluster)."""
    from .config import load_config
    from .sweep import execute_sweep

    cfg = _run(debug, lambda: load_config(config, overrides))
    summary = _run(debug, lambda: execute_sweep(cfg, echo=click.echo, progress=progress))
    if summary_json:
        _write_summary(summary, summary_json)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Override a config key, e.g. --set retrain.mode=resweep (repeatable).")
@click.option("--summary-json", type=click.Path(dir_okay=False, writable=True),
              help="Write the decision (action, versions, scores, data fingerprint) to this JSON file.")
@click.option("--progress/--no-progress", default=None, hidden=True,
              help="Accepted as sweep takes it (a script may pass a sweep's flags); a retrain draws no progress bar.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def retrain(config: str, overrides: tuple[str, ...], summary_json: str | None, progress: bool | None,
            debug: bool) -> None:
    """Retrain the registered model of CONFIG on its data; promote the challenger only if it is better.

    Exit 0 when done or already up to date, 1 on failure (including another
    retrain of the same model holding the lock), 2 for bad config or input,
    143 on SIGTERM and 130 on Ctrl-C (the cluster stopped, the lock released).
    """
    from .config import load_config
    from .retrain import run_retrain

    cfg = _run(debug, lambda: load_config(config, overrides))
    summary = _run(debug, lambda: run_retrain(cfg, echo=click.echo))
    if summary_json:
        _write_summary(summary, summary_json)


def _write_summary(summary: dict[str, Any], path: str) -> None:
    """``summary`` as JSON in ``path``: a score that does not exist (NaN: the AUC of a fold whose held-out rows hold
    one class; an infinite value) is ``null``, as JSON has no NaN (``JSON.parse`` and ``jq`` reject it)."""
    Path(path).write_text(json.dumps(_json_safe(summary), indent=2, default=str, allow_nan=False) + "\n")
    click.echo(f"Summary: {path}")


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, in dicts, lists and tuples at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _some(names: Sequence[str], shown: int = 10) -> str:
    """A list of names for one line: the first ``shown``, then how many in all (207 categorical columns made
    a 3 KB line)."""
    head = ", ".join(repr(n) for n in names[:shown])
    return f"[{head}, … ({len(names)} in all)]" if len(names) > shown else f"[{head}]"


@main.command("check-config")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--debug", is_flag=True)
def check_config(config: str, overrides: tuple[str, ...], debug: bool) -> None:
    """Validate CONFIG, check its data source's columns and types, and print it with every default filled in.

    Reads metadata only (a CSV's header and first rows, Parquet footers, .npy
    headers): the target, feature, weight and group columns must exist and hold
    numbers (the group may hold anything).
    """
    from .config import load_config
    from .data import check_fold_count, check_head, plan_data, without_time_column
    from .feature_controls import check_control_names, check_controls_early

    cfg = _run(debug, lambda: load_config(config, overrides))
    plan = _run(debug, lambda: without_time_column(plan_data(cfg.data, cfg.folds, cfg.model.family), cfg.data,
                                                   cfg.retrain.holdout.time_column))
    read = _run(debug, lambda: check_head(plan))
    _run(debug, lambda: check_fold_count(plan, cfg.folds.k))
    _run(debug, lambda: check_control_names(cfg, plan.raw_features, plan.categorical))
    _run(debug, lambda: check_controls_early(cfg, plan.feature_names, plan.n_rows, plan.needs_scan))
    click.echo(cfg.to_yaml(), nl=False)
    click.echo(f"# data: {plan.source}: {plan.n_rows} rows, target {plan.target!r}, {plan.n_features} features"
               + (f", weight {plan.weight!r}" if plan.weight else "") + (f", group {plan.group!r}" if plan.group else "")
               + (f", categorical {_some(plan.categorical)} (levels are found when the sweep starts)"
                  if plan.categorical else "")
               + ": columns and types OK"
               + (f" (types checked on the first {read:,} rows: the sweep checks every row)"
                  if 0 < read < plan.n_rows else ""))
    for note in plan.notes:
        click.echo(f"# note: {note}")


@main.command("sync-tracking")
@click.argument("config", type=click.Path(dir_okay=False), required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--debug", is_flag=True)
def sync_tracking(config: str | None, overrides: tuple[str, ...], debug: bool) -> None:
    """Replay into MLflow what the study of CONFIG holds and MLflow lacks.

    Child runs of trials that were not logged (the server was down, the driver
    was killed) are written, runs left RUNNING by dead drivers are ended KILLED,
    and a best model that could not be registered is logged and registered.
    Needs the tracking server and the study's storage, not the cluster or the data.
    """
    from .bridge import study_names
    from .bridge import sync_tracking as run_sync
    from .config import load_config
    from .errors import ConfigError

    cfg = _run(debug, lambda: load_config(config, overrides))
    if config is None:  # the defaults name no sweep the user ran: refuse rather than create one
        found = _run(debug, lambda: study_names(cfg.search.storage))
        _run(debug, lambda: _raise(ConfigError(
            f"sync-tracking needs the config of the sweep to sync (its study, storage and tracking URI): "
            f"regsweep sync-tracking CONFIG; studies in {cfg.search.storage}: {found or 'none'}.")))
    summary = _run(debug, lambda: run_sync(cfg, echo=click.echo))
    if summary["not_logged"]:
        sys.exit(1)
