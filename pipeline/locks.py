"""Locks that keep concurrent drivers from stepping on each other.

**First-time SQLite setup** (:func:`sqlite_setup_lock`). Two drivers
started at once on a new ``sqlite:///`` file both try to create its tables (MLflow runs its schema migrations, Optuna creates its tables):
one fails with "table already exists", or worse, a half-migrated file is
left behind and MLflow falls back to the Default experiment. Holding an
exclusive ``flock`` on ``<file>.lock`` while a driver opens the store and
creates its experiment or study makes the second driver wait a moment and
then find everything in place. Server databases (PostgreSQL, MySQL) handle
this themselves: no lock.

**The retrain lock** (:func:`retrain_lock`): two retrains of one registered model never run at once.
``retrain.lock: auto`` uses a PostgreSQL session advisory lock in the Optuna
database when ``search.storage`` is PostgreSQL: every driver of a deployment
shares that database, on any host, and the lock dies with the session, so a
killed driver never leaves it behind. Otherwise it is an ``flock`` on a file
next to the statistics cache (``<cache dir>/<model>.retrain.lock``, or the
working directory), released by the kernel when the process dies; the file
names its holder. A path instead of ``auto`` names the lock file.

A second retrain does not wait: it raises :class:`RetrainLockedError` (exit
code 1) naming the holder, so scheduled runs never pile up behind a slow one;
the scheduler's next run tries again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from .config import SweepConfig
from .errors import RetrainLockedError
from .sqlite_wal import sqlite_path

__all__ = ["advisory_key", "retrain_lock", "sqlite_setup_lock"]


@contextlib.contextmanager
def retrain_lock(cfg: SweepConfig) -> Iterator[str]:
    """Hold the retrain lock of ``tracking.registered_model`` (module docstring); raise if it is taken."""
    name = cfg.tracking.registered_model
    if cfg.retrain.lock == "auto" and cfg.search.storage.startswith("postgresql"):
        with _advisory_lock(cfg.search.storage, name) as what:
            yield what
        return
    if cfg.retrain.lock != "auto":
        path = Path(cfg.retrain.lock)
    else:
        base = Path(cfg.retrain.cache) if cfg.retrain.cache not in (None, "mlflow") else Path(".")
        path = base / f"{_safe(name)}.retrain.lock"
    with _file_lock(path, name) as what:
        yield what


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def advisory_key(registered_model: str) -> int:
    """The 64-bit PostgreSQL advisory-lock key of a registered model's retrain."""
    digest = hashlib.sha256(f"regsweep-retrain:{registered_model}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(url: str, name: str) -> Iterator[str]:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    key = advisory_key(name)
    try:
        conn = engine.connect()
    except Exception as e:  # noqa: BLE001 - any driver error: say which database
        raise RetrainLockedError(f"cannot reach search.storage to take the retrain lock: {e}") from None
    try:
        got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            raise RetrainLockedError(
                f"another retrain of registered model {name!r} is running (PostgreSQL advisory lock {key} "
                "is held); this run stops. Try again when it has finished."
            )
        try:
            yield f"advisory lock {key}"
        finally:
            with contextlib.suppress(Exception):
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()
        engine.dispose()


@contextlib.contextmanager
def _file_lock(path: Path, name: str) -> Iterator[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RetrainLockedError(f"cannot open the retrain lock file {str(path)!r}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RetrainLockedError(
                f"another retrain of registered model {name!r} is running (lock file {str(path)!r} held by "
                f"{holder}); this run stops. Try again when it has finished."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(), 0)
        try:
            yield f"lock file {path}"
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def sqlite_setup_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock next to the SQLite file of ``url`` (no-op for other URLs)."""
    path = sqlite_path(url)
    if path is None:
        yield
        return
    lock_path = Path(path).with_name(Path(path).name + ".lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
