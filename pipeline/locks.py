"""A file lock that serializes the first-time setup of local SQLite stores.

Two drivers started at once on a new ``sqlite:///`` file both try to create
its tables (MLflow runs its schema migrations, Optuna creates its tables):
one fails with "table already exists", or worse, a half-migrated file is
left behind and MLflow falls back to the Default experiment. Holding an
exclusive ``flock`` on ``<file>.lock`` while a driver opens the store and
creates its experiment or study makes the second driver wait a moment and
then find everything in place. Server databases (PostgreSQL, MySQL) handle
this themselves: no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

__all__ = ["sqlite_setup_lock"]


@contextlib.contextmanager
def sqlite_setup_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock next to the SQLite file of ``url`` (no-op for other URLs)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix):] in ("", ":memory:"):
        yield
        return
    lock_path = Path(url[len(prefix):]).with_name(Path(url[len(prefix):]).name + ".lock")
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
