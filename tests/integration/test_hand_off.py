"""The last child runs handed to the MLflow process, written after the sweep returned (tracking.wait_for_child_runs:
false, the default against a tracking server): they arrive complete, a driver started meanwhile leaves them to
that process, and when it dies the next one replays what it left. Real processes, a real ``mlflow server``."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from pipeline.config import TrackingConfig
from pipeline.ownership import DriverId
from pipeline.tracking import TrackingService
from pipeline.tracking.records import TrialRecord

from .conftest import _no_proxy, background_writers
from .faults import (Driver, by_state, check_one_child_run_per_trial, child_runs_by_trial, mlflow_runs, read_summary,
                     study_trials, sweep_args)

pytestmark = pytest.mark.integration

N_TRIALS = 100
"""Enough that the pace of a server on this machine (3.3 child runs per second per core) leaves runs queued at
the end: 100 trials on the bundled data take about 2 s on two cores."""


def _wait_for_exit(pid: int, timeout: float = 90.0) -> None:
    """Wait until ``pid`` (not a child of this process) has exited: gone, or a zombie whose threads are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            if state in (b"Z", b"X") and len(os.listdir(f"/proc/{pid}/task")) <= 1:
                return
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still writing after {timeout:.0f} s")


def test_child_runs_handed_over_arrive_complete_after_the_driver_let_go(mlflow_server: str, monkeypatch) -> None:
    for key, value in _no_proxy({k: os.environ[k] for k in ("NO_PROXY", "no_proxy") if k in os.environ}).items():
        monkeypatch.setenv(key, value)
    study = f"handoff-{uuid.uuid4().hex[:8]}"
    tracking = TrackingService(TrackingConfig(uri=mlflow_server, experiment=study), study)
    try:
        parent = tracking.start_parent(run_name=study, tags={})
        for i in range(50):
            tracking.log_trial(TrialRecord(i, {"penalty": "l1", "lambda1": 0.01 * (i + 1)},
                                           {"cv_mse": 1.0 + i, "cv_mse_se": 0.1}, 1_700_000_000_000 + i,
                                           1_700_000_001_000 + i))
        process = tracking._process
        handed = tracking.hand_off()
        assert handed is not None, "50 child runs queued at once, paced: some must still be queued"
        pending, deputy = handed
        assert 0 < pending <= 50
        helper = DriverId.parse(deputy)
        assert helper is not None and helper.pid == process.pid
        tracking.end_run(parent, "FINISHED")  # still answered after the hand-over
    finally:
        tracking.close()
    assert process not in multiprocessing.active_children()  # neither stopped nor waited for at this one's exit
    os.kill(process.pid, signal.SIGSTOP)  # still writing (raises if it is done: then this shows nothing)
    try:  # it closed the pipes it inherited, but not the one that tells this process it exited
        assert os.readlink(f"/proc/self/fd/{process.sentinel}") in _pipes(process.pid)
        process.join(0.2)  # times out, which it could not with that pipe closed (it would wait for the exit)
        assert process.exitcode is None
    finally:
        os.kill(process.pid, signal.SIGCONT)
    process.join(90)
    assert process.exitcode == 0
    runs = mlflow_runs(mlflow_server, study)
    children = child_runs_by_trial(runs)
    assert sorted(children) == list(range(50)) and all(len(rs) == 1 for rs in children.values())
    for n, (run,) in children.items():
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.metrics == {"cv_mse": 1.0 + n, "cv_mse_se": 0.1}
        assert (run.info.start_time, run.info.end_time) == (1_700_000_000_000 + n, 1_700_000_001_000 + n)
    (parent_run,) = [r for r in runs if r.info.run_id == parent]
    assert parent_run.info.status == "FINISHED"


def _sweep_and_stop_its_writer(tmp_path: Path, mlflow_server: str, dask_cluster: str, tag: str
                               ) -> tuple[list[str], int, dict[str, str]]:
    """A sweep that hands its last child runs over; the writer stopped (SIGSTOP) as soon as the sweep returned.
    Returns the sweep's arguments, the writer's PID and the names used."""
    u = f"{tag}-{uuid.uuid4().hex[:8]}"
    names = {"study": f"study-{u}", "experiment": f"exp-{u}", "model": f"model-{u}"}
    config = tmp_path / "sweep.yaml"
    config.write_text("search:\n  in_flight: 4\n")
    args = sweep_args(config, address=dask_cluster, tracking=mlflow_server, storage=f"sqlite:///{tmp_path / 'o.db'}",
                      names=names, n_trials=N_TRIALS, summary=tmp_path / "s.json")
    driver = Driver(args, tmp_path)
    assert driver.wait(300, writers=False) == 0, driver.output()
    summary = read_summary(tmp_path / "s.json")
    pid = summary["background_writer_pid"]
    assert summary["trials_logging_in_background"] > 0 and pid, summary
    os.kill(pid, signal.SIGSTOP)  # raises if it already finished: then this test would show nothing
    try:
        assert background_writers(tmp_path) == [pid]
        shared = {other: _pipes(other) & _pipes(pid) for other in os.listdir("/proc") if other.isdigit()
                  and int(other) != pid and _pipes(other) & _pipes(pid)}
        assert not shared, f"pipes the writer shares with other processes (which wait for them to close): {shared}"
        out = driver.out.read_text()
        assert f"by process {pid}" in out and "child runs are being written after this command returns" in out, out
    except BaseException:
        os.kill(pid, signal.SIGCONT)  # not left stopped for good
        raise
    return args, pid, names


def _pipes(pid: int | str) -> set[str]:
    """The pipes process ``pid`` holds open (``pipe:[inode]``)."""
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if (target := os.readlink(f"/proc/{pid}/fd/{fd}")).startswith("pipe:"):
                    out.add(target)
    except OSError:
        pass
    return out


def _sync_tracking(args: list[str], tmp_path: Path) -> None:
    sync = Driver(["sync-tracking", args[1], *args[2: args.index("--no-progress")]], tmp_path, "sync")
    assert sync.wait(120, writers=False) == 0, sync.output()


def test_a_driver_started_while_the_writer_works_leaves_its_runs_to_it(
    tmp_path: Path, mlflow_server: str, dask_cluster: str
) -> None:
    args, pid, names = _sweep_and_stop_its_writer(tmp_path, mlflow_server, dask_cluster, "deputy")
    try:
        _sync_tracking(args, tmp_path)  # the writer still lives: its trials and open runs are not abandoned
        out = (tmp_path / "sync.out").read_text()
        assert "sync-tracking: 0 child runs replayed, 0 stale runs closed" in out, out
        runs = mlflow_runs(mlflow_server, names["experiment"])
        children = child_runs_by_trial(runs)
        assert len(children) < N_TRIALS and all(len(rs) == 1 for rs in children.values())  # its trials left to it
        assert [r.info.status for r in runs if r.info.status == "KILLED"] == []
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_for_exit(pid)
    trials = study_trials(f"sqlite:///{tmp_path / 'o.db'}", names["study"])
    assert len(by_state(trials, "COMPLETE")) == N_TRIALS
    check_one_child_run_per_trial(trials, mlflow_runs(mlflow_server, names["experiment"]))


@pytest.mark.parametrize("then", ["sync-tracking", "sweep"])
def test_when_the_writer_dies_the_next_sync_writes_what_it_left_once(
    tmp_path: Path, mlflow_server: str, dask_cluster: str, then: str
) -> None:
    """Killed before it wrote everything: `regsweep sync-tracking`, or the next `regsweep sweep` of the study (which
    is finished: it only reports its outcome, after bringing MLflow in step once), writes the rest, one run per
    trial; neither looks for them again afterwards."""
    args, pid, names = _sweep_and_stop_its_writer(tmp_path, mlflow_server, dask_cluster, f"deputy-killed-{then}")
    os.kill(pid, signal.SIGKILL)
    _wait_for_exit(pid)
    trials = study_trials(f"sqlite:///{tmp_path / 'o.db'}", names["study"])
    assert len(child_runs_by_trial(mlflow_runs(mlflow_server, names["experiment"]))) < len(trials)
    if then == "sync-tracking":
        _sync_tracking(args, tmp_path)
    else:
        again = Driver(args, tmp_path, "again")
        assert again.wait(120, writers=False) == 0, again.output()
        out = again.out.read_text()
        assert "already holds" in out and "Checking that MLflow holds every child run" in out, out
        assert "sync-tracking: 0 child runs replayed" not in out, out
    check_one_child_run_per_trial(trials, mlflow_runs(mlflow_server, names["experiment"]))
    last = Driver(args, tmp_path, "last")  # the deputy's runs were looked for once: not on every later start
    assert last.wait(120, writers=False) == 0, last.output()
    out = last.out.read_text()
    assert "already holds" in out and "Checking that MLflow" not in out, out
