"""Helpers for the fault tests: clusters and servers that a test may kill, and what to read back.

Each fault test owns the processes it kills (a scheduler, workers, an MLflow
server), started here on 127.0.0.1 free ports and stopped by PID, so the
session-wide fixtures stay healthy for the other tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .conftest import (DASK, MLFLOW, _no_proxy, _Proc, _tail, _wait_for_health, _wait_for_workers, free_port,
                       wait_for_background_writers)

K = 5


@dataclass
class Cluster:
    """A ``dask scheduler`` and its ``dask worker`` processes."""

    address: str
    scheduler: _Proc
    workers: list[_Proc] = field(default_factory=list)

    def procs(self) -> list[_Proc]:
        return [*self.workers, self.scheduler]


def start_cluster(root: Path, n_workers: int = 2, *, nanny: bool = True, preload: Path | None = None,
                  scheduler_env: dict[str, str] | None = None) -> Cluster:
    """A scheduler and ``n_workers`` single-threaded workers (with nannies unless ``nanny=False``)."""
    from distributed import Client

    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    tag = uuid.uuid4().hex[:6]
    scheduler = _Proc("dask scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                         "--no-dashboard", "--idle-timeout", "10 minutes"],
                      root / f"scheduler-{tag}.log", root, env=scheduler_env)
    cluster = Cluster(address, scheduler)
    for i in range(n_workers):
        local = root / f"worker-{tag}-{i}"
        local.mkdir()
        cmd = [DASK, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
               "--local-directory", str(local), "--name", f"fault-{tag}-{i}", "--death-timeout", "30",
               "--nanny" if nanny else "--no-nanny"]
        if preload is not None:
            cmd += ["--preload", str(preload)]
        cluster.workers.append(_Proc(f"dask worker {i}", cmd, root / f"worker-{tag}-{i}.log", root))
    _wait_for_workers(address, n_workers, cluster.procs(), Client)
    return cluster


class MlflowServer:
    """An ``mlflow server`` on a fixed port and backend file, so it can be killed and started again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: _Proc | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = _Proc(
            "mlflow server",
            [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--serve-artifacts", "--artifacts-destination", str(self.root / "artifacts"),
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            self.root / f"mlflow-{self.starts}.log", self.root,
            env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        _wait_for_health(self.uri, self.proc)

    def kill(self) -> None:
        """SIGKILL the whole server (its process group) and wait until it is gone."""
        assert self.proc is not None
        self.proc.signal_group(signal.SIGKILL)
        assert self.proc.wait_group_gone(10.0)
        self.proc.popen.wait(timeout=5)
        self.proc._log_fh.close()
        self.proc = None


def regsweep_env() -> dict[str, str]:
    env = _no_proxy(dict(os.environ))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a cleanup that hangs past the SIGTERM watchdog shows every thread's stack
    return env


def sweep_args(config: Path, *, address: str | None, tracking: str, storage: str, names: dict[str, str],
               n_trials: int, summary: Path | None = None, extra: Sequence[str] = (), debug: bool = True
               ) -> list[str]:
    """``regsweep sweep`` arguments for a bundled-data sweep with every location given."""
    args = ["sweep", str(config),
            "--set", f"cluster.address={address or 'null'}",
            "--set", f"tracking.uri={tracking}",
            "--set", f"tracking.experiment={names['experiment']}",
            "--set", f"tracking.registered_model={names['model']}",
            "--set", f"search.storage={storage}",
            "--set", f"search.study_name={names['study']}",
            "--set", f"search.n_trials={n_trials}",
            "--no-progress", *(["--debug"] if debug else []), *extra]
    if summary is not None:
        args += ["--summary-json", str(summary)]
    return args


class Driver:
    """``python -m pipeline ARGS`` in the background, in its own process group, output to files."""

    def __init__(self, args: Sequence[str], cwd: Path, name: str = "driver") -> None:
        self.out = cwd / f"{name}.out"
        self.err = cwd / f"{name}.err"
        self._fh = (open(self.out, "w"), open(self.err, "w"))  # noqa: SIM115 — closed in wait()
        self.popen = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=regsweep_env(),
                                      stdin=subprocess.DEVNULL, stdout=self._fh[0], stderr=self._fh[1],
                                      start_new_session=True)
        self.pid = self.popen.pid
        self.cwd = cwd

    def children(self) -> list[int]:
        """PIDs whose parent is this driver (the MLflow writer, LocalCluster nannies)."""
        out = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_bytes()
                except OSError:
                    continue
                if int(stat[stat.rfind(b")") + 2 :].split()[1]) == self.pid:
                    out.append(int(entry.name))
        return out

    def wait(self, timeout: float, writers: bool = True) -> int:
        """The driver's exit code, once it (and with ``writers`` any process writing its last child runs) has
        exited."""
        try:
            code = self.popen.wait(timeout=timeout)
            if writers:
                wait_for_background_writers(self.cwd)
            return code
        finally:
            for fh in self._fh:
                fh.close()

    def output(self) -> str:
        return f"stdout:\n{_tail(self.out, 40)}\nstderr:\n{_tail(self.err, 40)}"

    def kill_group(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(predicate: Any, timeout: float, what: str, driver: Driver | None = None, poll: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if driver is not None and driver.popen.poll() is not None:
            raise AssertionError(f"the driver exited ({driver.popen.returncode}) before {what}\n{driver.output()}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f"\n{driver.output()}" if driver else ""))


def study_trials(storage: str, study_name: str) -> list[Any]:
    """Every trial of the study (empty if it does not exist yet); asserts trial numbers are unique."""
    import optuna

    from pipeline.locks import sqlite_setup_lock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        # the driver creates a new SQLite schema under this lock; a poll that created it meanwhile made the
        # driver's own creation fail (UNIQUE constraint failed: alembic_version.version_num)
        with sqlite_setup_lock(storage):
            study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return []
    except Exception as e:  # polled while the driver creates the schema: "table ... already exists" (SQLite)
        if "already exists" in str(e):
            return []
        raise
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)), f"duplicate trial numbers: {sorted(numbers)}"
    return trials


def by_state(trials: Sequence[Any], state: str) -> list[Any]:
    return [t for t in trials if t.state.name == state]


def n_complete(storage: str, study_name: str) -> int:
    return len(by_state(study_trials(storage, study_name), "COMPLETE"))


def mlflow_runs(uri: str, experiment: str) -> list[Any]:
    """Every run of ``experiment`` (all pages)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment!r} does not exist"
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs += page
        token = page.token
        if not token:
            return runs


def child_runs_by_trial(runs: Sequence[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for r in runs:
        if r.data.tags.get("regsweep.kind") == "trial":
            out.setdefault(int(r.data.tags["regsweep.trial"]), []).append(r)
    return out


def check_one_child_run_per_trial(trials: Sequence[Any], runs: Sequence[Any], metric: str = "mse") -> dict[int, Any]:
    """Exactly one child run per finished trial, none RUNNING, a COMPLETE trial's run FINISHED with its value
    (``cv_<metric>``)."""
    children = child_runs_by_trial(runs)
    finished = {t.number: t for t in trials if t.state.name in ("COMPLETE", "FAIL")}
    assert sorted(children) == sorted(finished), (
        f"child runs for trials {sorted(set(children) ^ set(finished))} missing or extra")
    dup = {n: len(rs) for n, rs in children.items() if len(rs) != 1}
    assert not dup, f"trials with more than one child run: {dup}"
    for n, (run,) in children.items():
        t = finished[n]
        if t.state.name == "COMPLETE":
            assert run.info.status == "FINISHED", (n, run.info.status)
            assert abs(run.data.metrics[f"cv_{metric}"] - t.value) <= 1e-12 * abs(t.value), n
        else:
            assert run.info.status in ("FAILED", "KILLED"), (n, run.info.status)
    assert not [r.info.run_id for r in runs if r.info.status == "RUNNING"], "runs left RUNNING"
    return {n: rs[0] for n, rs in children.items()}


def check_folds_counted_once(trials: Sequence[Any], metric: str = "mse") -> None:
    """Every COMPLETE trial's value is the mean of exactly K fold errors (no fold lost or counted twice)."""
    for t in trials:
        if t.state.name == "COMPLETE":
            folds = t.user_attrs["cv"][f"fold_{metric}"]
            assert len(folds) == K, (t.number, folds)
            assert abs(sum(folds) / K - t.value) <= 1e-12 * t.value, t.number


def read_summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
