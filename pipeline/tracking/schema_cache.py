"""A new SQLite tracking store from a cached empty schema, instead of MLflow's migrations every time.

MLflow creates a new SQLite store by running its whole Alembic history
(about a hundred migration scripts): 2.8 s of CPU on this two-core machine,
against 1.1 s to open a store whose schema is already at head. Every
quickstart, every benchmark run and every test in a new directory pays it,
and on two cores it competes with the workers and the driver.

So the first store created on a machine (per MLflow version) is saved, empty,
in the user's cache directory, and later new stores start as a copy of it:

- the saved copy holds the schema at MLflow's head revision and the rows
  MLflow's migrations insert (the default workspace), but no experiment:
  MLflow creates its ``Default`` experiment on the first open, with the
  artifact location of the new store, exactly as for a store it migrated;
- it is keyed by MLflow's version (another version migrates as before, and
  saves its own copy);
- only a file that does not exist yet is seeded; if the seeded file fails
  MLflow's schema check the caller removes it and lets MLflow migrate
  (:func:`discard_seed`).

Where: ``$XDG_CACHE_HOME/regsweep`` (default ``~/.cache/regsweep``); a cache
that cannot be written is skipped silently (MLflow migrates, as without it).
No MLflow import here: the version is read from package metadata.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from ..sqlite_wal import sqlite_path

__all__ = ["discard_seed", "save_schema", "schema_file", "seed_store"]


def schema_file() -> Path | None:
    """The cached empty store for the installed MLflow (whether it exists or not); None without a version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("mlflow")
    except PackageNotFoundError:
        return None
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "regsweep"
    return root / f"mlflow-{v}-empty-store.db"


def seed_store(uri: str) -> str:
    """Before MLflow opens ``uri``: ``"seeded"`` if its new SQLite file was copied from the cache,
    ``"new"`` if it is new but nothing is cached yet (call :func:`save_schema` once MLflow created it),
    ``""`` otherwise (not a SQLite file, or one that exists)."""
    path = sqlite_path(uri)
    if path is None or (os.path.exists(path) and os.path.getsize(path) > 0):
        return ""
    cached = schema_file()
    if cached is None or not cached.is_file():
        return "new"
    try:
        _copy_db(cached, Path(path))
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):
            os.remove(path)
        return "new"
    return "seeded"


def discard_seed(uri: str) -> None:
    """Remove a seeded store that MLflow refused (close MLflow's engine on it first), and the cached copy it
    came from."""
    path = sqlite_path(uri)
    files = [] if path is None else [path, f"{path}-wal", f"{path}-shm"]  # never a stale WAL beside a new file
    for f in (*files, schema_file()):
        if f is not None:
            with contextlib.suppress(OSError):
                os.remove(f)


def save_schema(uri: str) -> None:
    """Save the store MLflow just created at ``uri`` (before any experiment of ours) as the cached empty
    store: a consistent copy, its experiments removed, moved into place atomically."""
    path, cached = sqlite_path(uri), schema_file()
    if path is None or cached is None:
        return
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        os.close(fd)
        try:
            _copy_db(Path(path), Path(tmp))
            with contextlib.closing(sqlite3.connect(tmp)) as db, db:
                db.execute("DELETE FROM experiment_tags")
                db.execute("DELETE FROM experiments")
            with contextlib.closing(sqlite3.connect(tmp)) as db:
                db.execute("VACUUM")
            os.replace(tmp, cached)
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)
    except (OSError, sqlite3.Error):
        return


def _copy_db(src: Path, dst: Path) -> None:
    """A consistent copy of SQLite file ``src`` at ``dst`` (SQLite's backup API: safe while others write),
    in the rollback-journal mode a new file has."""
    with contextlib.closing(sqlite3.connect(f"file:{src}?mode=ro", uri=True)) as s, \
            contextlib.closing(sqlite3.connect(dst)) as d:
        s.backup(d)
        d.execute("PRAGMA journal_mode=DELETE")
