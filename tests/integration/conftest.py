"""Real processes for the integration tests: a Dask scheduler with two workers and an MLflow server.

Everything listens on 127.0.0.1 on free ports, runs from a temporary
directory, writes its output to a log file there, and is stopped by PID at the
end of the session (SIGTERM, then SIGKILL after a grace period). Each process
is started in its own session, so its PID is also its process-group id and the
children it spawns (Dask nannies' workers, MLflow's uvicorn/gunicorn workers)
are stopped with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
DASK = BIN / "dask"
MLFLOW = BIN / "mlflow"

DASK_START_TIMEOUT_S = 60.0
MLFLOW_START_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0
N_WORKERS = 2


# ------------------------------------------------------------------ helpers
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


class _Proc:
    """A started process and its log file."""

    def __init__(self, name: str, cmd: Sequence[str | os.PathLike[str]], log: Path, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._log_fh = open(log, "wb")  # noqa: SIM115 — closed in stop_processes()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            [str(c) for c in cmd],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # pid == pgid: the whole tree can be signalled by this PID
        )
        self.pid = self.popen.pid

    def check_alive(self) -> None:
        rc = self.popen.poll()
        if rc is not None:
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited with code {rc}; log {self.log}:\n{_tail(self.log)}")

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def wait_group_gone(self, timeout: float) -> bool:
        """Reap the leader and wait until no process of its group is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.popen.poll()
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return True
            time.sleep(0.1)
        return False


def stop_processes(procs: Sequence[_Proc], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM each process group in order, wait up to ``grace`` s, then SIGKILL what is left."""
    for p in procs:
        p.signal_group(signal.SIGTERM)
        if not p.wait_group_gone(grace):
            p.signal_group(signal.SIGKILL)
            p.wait_group_gone(5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(timeout=5.0)
        p._log_fh.close()


def _no_proxy(env: dict[str, str]) -> dict[str, str]:
    """``env`` with 127.0.0.1 and localhost exempt from any HTTP(S) proxy."""
    extra = "127.0.0.1,localhost"
    for key in ("NO_PROXY", "no_proxy"):
        env[key] = f"{env[key]},{extra}" if env.get(key) else extra
    return env


def run_regsweep(args: Sequence[str | os.PathLike[str]], cwd: str | os.PathLike[str], timeout: float = 180.0
                 ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pipeline ARGS`` (the ``regsweep`` CLI) in ``cwd``; output captured as text."""
    env = _no_proxy(dict(os.environ))
    env.pop("MLFLOW_TRACKING_URI", None)  # only what the arguments say
    env.pop("MLFLOW_REGISTRY_URI", None)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *(str(a) for a in args)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wait_for_background_writers(cwd)
    return done


def background_writers(cwd: str | os.PathLike[str]) -> list[int]:
    """Live regsweep processes working in ``cwd`` other than this one: after a command returned, the MLflow
    process writing a sweep's last child runs (``tracking.wait_for_child_runs: false``)."""
    where, pids = os.path.realpath(cwd), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") != where or b"pipeline" not in (entry / "cmdline").read_bytes():
                continue
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        if stat[stat.rfind(b")") + 2:].split()[0] not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def wait_for_background_writers(cwd: str | os.PathLike[str], timeout: float = 90.0) -> None:
    """Wait until :func:`background_writers` is empty (at most ``timeout`` s, then let the test's checks say what
    is missing): a test reads MLflow as a user reads it once the last child runs are written."""
    deadline = time.monotonic() + timeout
    while background_writers(cwd) and time.monotonic() < deadline:
        time.sleep(0.05)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``dask scheduler`` and two single-threaded ``dask worker`` processes; yields the address."""
    from distributed import Client

    root = tmp_path_factory.mktemp("dask")
    port, dash = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _Proc(
        "dask scheduler",
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{dash}",
         # a safety net should this session be killed before teardown: the scheduler stops itself
         "--idle-timeout", "30 minutes"],
        root / "scheduler.log", root,
    )
    workers: list[_Proc] = []
    try:
        for i in range(N_WORKERS):
            local = root / f"worker-{i}"
            local.mkdir()
            workers.append(_Proc(
                f"dask worker {i}",
                [DASK, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1",
                 "--no-dashboard", "--local-directory", str(local), "--name", f"itest-{i}",
                 "--death-timeout", "60"],
                root / f"worker-{i}.log", root,
            ))
        _wait_for_workers(address, N_WORKERS, [scheduler, *workers], Client)
        yield address
    finally:
        stop_processes([*workers, scheduler])


def _wait_for_workers(address: str, n: int, procs: Sequence[_Proc], client_cls: type) -> None:
    deadline = time.monotonic() + DASK_START_TIMEOUT_S
    client = None
    seen = 0
    try:
        while time.monotonic() < deadline:
            for p in procs:
                p.check_alive()
            if client is None:
                try:
                    client = client_cls(address, timeout=5, set_as_default=False)
                except (OSError, TimeoutError):
                    time.sleep(0.5)
                    continue
            seen = len(client.scheduler_info(n_workers=-1)["workers"])
            if seen >= n:
                return
            time.sleep(0.5)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
    logs = "\n\n".join(f"--- {p.name} ({p.log}):\n{_tail(p.log, 30)}" for p in procs)
    raise RuntimeError(f"Dask scheduler {address} had {seen}/{n} workers after {DASK_START_TIMEOUT_S:.0f} s\n{logs}")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` (SQLite backend, proxied artifacts in a temp dir); yields its URI."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = _Proc(
        "mlflow server",
        [MLFLOW, "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        root / "mlflow-server.log", root,
        # no background job runner (a tree of huey consumers for GenAI jobs): less memory, faster stop
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        _wait_for_health(uri, server)
        yield uri
    finally:
        stop_processes([server])


def _wait_for_health(uri: str, server: _Proc) -> None:
    deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
    last = "no answer"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            with opener.open(f"{uri}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.5)
    raise RuntimeError(
        f"MLflow server {uri} not healthy after {MLFLOW_START_TIMEOUT_S:.0f} s ({last}); "
        f"log {server.log}:\n{_tail(server.log)}"
    )


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server on a Unix socket in a temp dir, with database ``regsweep``; yields its SQLAlchemy URL.

    One per test session: the retrain test and the trial-writer test share it (distinct study names).
    """
    from tests.embedded_pg import postgres_database

    with postgres_database(tmp_path_factory.mktemp("pg") / "data", "regsweep") as url:
        yield url
