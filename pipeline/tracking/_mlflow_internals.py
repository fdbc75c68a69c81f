"""Every place regsweep reads MLflow beyond its public API, with what was missing.

Kept in one module so that a change in MLflow breaks one file; each function
degrades to "do nothing special" when the private name is gone.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_request_headers", "artifact_repository", "drop_engine", "drop_inherited_connections",
           "no_installed_package_scan", "set_active_experiment"]


@contextlib.contextmanager
def no_installed_package_scan() -> Iterator[None]:
    """Spare ``Model.log`` MLflow's scan of every installed distribution (0.6 s of CPU per process).

    Missing public API: a way to log explicit ``pip_requirements`` without
    MLflow checking them against the environment. Given
    ``regsweep==<this version>``, MLflow still maps every module of every
    installed distribution to its package
    (``importlib_metadata.packages_distributions``) to check it. For the one
    requirement regsweep writes, the answer is known: this process runs it.
    While logging, the map MLflow builds lazily
    (``requirements_utils._MODULES_TO_PACKAGES``) is given the one entry it
    will look up, and put back as it was afterwards. If MLflow renames its
    cache, this is a no-op and the scan simply runs.
    """
    try:
        from mlflow.utils import requirements_utils as ru
    except ImportError:  # pragma: no cover - MLflow is a dependency
        yield
        return
    if getattr(ru, "_MODULES_TO_PACKAGES", ...) is not None:  # built already, or no such cache
        yield
        return
    setattr(ru, "_MODULES_TO_PACKAGES", {"pipeline": ["regsweep"]})  # noqa: B010 — typed None in MLflow
    try:
        yield
    finally:
        ru._MODULES_TO_PACKAGES = None
        ru._PACKAGES_TO_MODULES = None


def drop_inherited_connections() -> None:
    """In a forked child: leave the parent's pooled database connections alone and open new ones.

    Missing public API: MLflow keeps one SQLAlchemy engine per database URI
    for the whole process (``SqlAlchemyStore._engine_map``) with no way to
    reset it, so a forked child inherits the parent's pool, whose SQLite or
    PostgreSQL connections must never be used by two processes.
    ``dispose(close=False)`` is SQLAlchemy's recipe for a forked child: a fresh
    pool, the inherited connections dropped without closing them under the
    parent. (HTTP sessions need nothing: MLflow keys them by PID.) A no-op in
    a spawned process.
    """
    for engines in _engine_maps():
        for engine in list(engines.values()):
            engine.dispose(close=False)


def drop_engine(uri: str) -> None:
    """Close and forget MLflow's engine for ``uri``, so that the next store on it connects anew.

    Missing public API, as for :func:`drop_inherited_connections`: after a
    store was refused (a seeded SQLite file replaced by
    :mod:`.schema_cache`), the cached engine's pooled connection would still
    read the removed file.
    """
    for engines in _engine_maps():
        engine = engines.pop(uri, None)
        if engine is not None:
            engine.dispose()


def _engine_maps() -> Iterator[dict[str, Any]]:
    """MLflow's per-URI SQLAlchemy engines (``SqlAlchemyStore._engine_map``) of its tracking and registry
    stores, where those are imported; nothing if MLflow renamed them."""
    for module in ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"):
        engines = getattr(getattr(sys.modules.get(module), "SqlAlchemyStore", None), "_engine_map", None)
        if isinstance(engines, dict):
            yield engines


def add_request_headers(provider: type) -> bool:
    """Add ``provider`` (a class with ``in_context()`` and ``request_headers()``) to the header providers of
    every MLflow request in this process, once; whether it is (now) registered.

    Missing public API: request-header providers are a documented plugin
    interface, but only through a package's entry points, which would apply to
    every MLflow client of the environment; regsweep wants them in its MLflow
    process only. If MLflow moves its registry, nothing is added.
    """
    try:
        from mlflow.tracking.request_header.registry import _request_header_provider_registry as registry
    except ImportError:
        return False
    if not any(type(p) is provider for p in registry):
        registry.register(provider)
    return True


def set_active_experiment(experiment_id: str) -> None:
    """Make ``experiment_id`` the experiment MLflow's fluent API (``Model.log``) logs to, without reading it.

    Missing public API: ``mlflow.set_experiment(experiment_id=...)`` reads the
    experiment from the store to check it exists and is active (against a
    tracking server one request at the end of every sweep), where the caller
    got or created it from the same store when it started and checked its
    stage then. ``set_experiment`` also exports ``MLFLOW_EXPERIMENT_ID`` for
    subprocesses: ``Model.log`` starts none. If MLflow renames its global,
    ``set_experiment`` runs as before.
    """
    from mlflow.tracking import fluent

    if hasattr(fluent, "_active_experiment_id"):
        setattr(fluent, "_active_experiment_id", experiment_id)  # noqa: B010 — typed None in MLflow
    else:  # pragma: no cover - another MLflow
        import mlflow

        mlflow.set_experiment(experiment_id=experiment_id)


def artifact_repository(artifact_uri: str, tracking_uri: str) -> Any | None:
    """The repository MLflow's client writes a run's artifacts to, built from the run's ``artifact_uri``;
    None where this MLflow builds it another way (the caller then goes through ``MlflowClient``).

    Missing public API: ``MlflowClient.log_artifacts(run_id, ...)`` finds the
    artifact location by reading the run (one request to a server) and takes
    no location. Its private ``_get_artifact_repo`` builds the repository by
    the two calls made here, which take the tracking URI since MLflow 3
    (before, ``mlflow-artifacts:`` locations resolved against the process's
    global tracking URI): with an older signature, None.
    """
    import inspect

    try:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.uri import add_databricks_profile_info_to_artifact_uri
    except ImportError:  # pragma: no cover - another MLflow
        return None
    if "tracking_uri" not in inspect.signature(get_artifact_repository).parameters:
        return None  # pragma: no cover - MLflow 2
    return get_artifact_repository(add_databricks_profile_info_to_artifact_uri(artifact_uri, tracking_uri),
                                   tracking_uri=tracking_uri)
