"""Child runs to a tracking server on this machine are released at a pace; all of them when the sweep waits or
hands them over (pipeline.tracking.pacing, and the tracking process's pool)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from pipeline.tracking.pacing import SERVER_CPU_PER_RUN_S, SERVER_SHARE, Pacer, on_this_machine, runs_per_second
from pipeline.tracking.records import TrialRecord
from pipeline.bridge import sweep_tracking
from pipeline.tracking.service import _Call, _ChildRunPool, _hand_off


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_grants_its_burst_at_once_then_its_rate() -> None:
    clock = _Clock()
    pacer = Pacer(4.0, clock=clock)  # steps of 1/8 s: exact in binary, so the counts are exact
    assert [pacer.take() for _ in range(5)] == [True] * 4 + [False]
    clock.now += 0.25  # one release's worth at 4 per second
    assert [pacer.take(), pacer.take()] == [True, False]
    clock.now += 0.125
    assert not pacer.take()  # half a release: not yet
    clock.now += 0.125
    assert pacer.take()
    clock.now += 3600  # an idle hour refills the bucket to its burst, no more
    assert sum(pacer.take() for _ in range(20)) == 4


def test_a_slow_rate_still_grants_one_release_at_a_time() -> None:
    clock = _Clock()
    pacer = Pacer(0.5, clock=clock)
    assert [pacer.take(), pacer.take()] == [True, False]
    clock.now += 2.0
    assert pacer.take()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://localhost", "http://[::1]:5000",
                                 f"http://{socket.gethostname()}:5000"])
def test_a_server_on_this_machine_is_paced_by_the_share_of_its_cores(uri: str) -> None:
    assert on_this_machine(uri)
    assert runs_per_second(uri, cores=2) == pytest.approx(SERVER_SHARE * 2 / SERVER_CPU_PER_RUN_S)
    assert runs_per_second(uri, cores=16) == pytest.approx(8 * runs_per_second(uri, cores=2))


def test_loopback_is_this_machine_even_when_its_own_name_does_not_resolve(monkeypatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "no-such-host.invalid")
    assert on_this_machine("http://127.0.0.1:5000") and on_this_machine("http://[::1]:5000")
    assert not on_this_machine("http://192.0.2.1:5000")


@pytest.mark.parametrize("uri", ["http://192.0.2.1:5000", "https://mlflow.example.invalid", "http://:5000"])
def test_a_server_elsewhere_or_unknown_is_not_paced(uri: str) -> None:
    """192.0.2.0/24 is reserved for documentation (RFC 5737): no machine's own address."""
    assert not on_this_machine(uri)
    assert runs_per_second(uri) is None


class _Tracker:
    """What the pool asks of a tracker: a writer made once, then one write per record."""

    def __init__(self) -> None:
        self.written: list[int] = []

    def trial_writer(self, watch_driver: bool = False) -> object:
        return self

    def write_trial(self, record: TrialRecord, *, watch_driver: bool = False) -> str | None:
        self.written.append(record.number)
        return None


class _Outbox(list[Any]):
    def put(self, item: Any) -> None:
        self.append(item)

    def cancel_join_thread(self) -> None:
        pass


def _submit(pool: _ChildRunPool, tracker: _Tracker, n: int) -> None:
    """Records 0..n-1, as the tracking process takes them (a pool with threads always takes them)."""
    for i in range(n):
        assert pool.submit(tracker, TrialRecord(i, {"penalty": "l1"}, {"cv_mse": 1.0}, 0, 1))  # type: ignore[arg-type]


def test_the_pool_holds_what_the_pace_does_not_grant_and_drain_writes_everything_in_order() -> None:
    clock, tracker, outbox = _Clock(), _Tracker(), _Outbox()
    pool = _ChildRunPool(outbox, threads=1, rate=2.0)
    pool.pacer = Pacer(2.0, clock=clock)
    try:
        _submit(pool, tracker, 10)
        assert len(pool.held) == 8 and 8 <= pool.queued <= 10 and pool.busy  # two granted, maybe written
        clock.now += 1.0  # two more granted
        pool.harvest()
        assert len(pool.held) == 6
        pool.drain()  # a call that must see every child run (a ping): all of them, paced or not
        assert tracker.written == list(range(10)) and not pool.busy and pool.queued == 0
        assert sorted(outbox) == [(i, None) for i in range(10)]
    finally:
        pool.shutdown()


def test_a_pool_handed_over_writes_everything_and_reports_to_nobody() -> None:
    clock, tracker, outbox = _Clock(), _Tracker(), _Outbox()
    pool = _ChildRunPool(outbox, threads=2, rate=1.0)
    pool.pacer = Pacer(1.0, clock=clock)
    try:
        _submit(pool, tracker, 6)
        pool.harvest(wait=False)
        assert len(pool.held) == 5
        pool.detach()  # the driver handed the rest over: no outbox
        assert len(pool.held) == 5 and pool.outbox is None
        pool.unpace()  # and has exited: no pace
        assert not pool.held and pool.pacer is None
        pool.drain()
        assert sorted(tracker.written) == list(range(6))
        assert len(outbox) <= 1  # at most the one written before the hand-over was reported
    finally:
        pool.shutdown()


def test_without_a_pace_every_record_is_written_at_once() -> None:
    tracker, outbox = _Tracker(), _Outbox()
    pool = _ChildRunPool(outbox, threads=2, rate=None)
    try:
        _submit(pool, tracker, 5)
        assert not pool.held
        pool.drain()
        assert sorted(tracker.written) == list(range(5))
    finally:
        pool.shutdown()


class _Writer:
    def __init__(self, gone: bool = False) -> None:
        self.server_gone, self.outlived = gone, False

    def outlive_driver(self) -> None:
        self.outlived = True


class _HandOffTracker(_Tracker):
    def __init__(self, writer: _Writer) -> None:
        super().__init__()
        self.writer = writer

    def trial_writer(self, watch_driver: bool = False) -> object:
        return self.writer


@pytest.mark.parametrize("case", ["nothing queued", "a write failed", "server gone"])
def test_the_tracking_process_refuses_a_hand_over_it_could_not_honour(case: str) -> None:
    """Nothing to hand over, or a server that already refused a record: the driver then waits for the runs,
    replays what failed and reports it, as before."""
    tracker, outbox = _HandOffTracker(_Writer(gone=case == "server gone")), _Outbox()
    pool = _ChildRunPool(outbox, threads=1, rate=1.0)
    try:
        if case != "nothing queued":
            _submit(pool, tracker, 5)
        pool.errors = int(case == "a write failed")
        reply = _hand_off(tracker, pool, _Call(7, "hand_off", (), {}))  # type: ignore[arg-type]
        assert reply.id == 7 and reply.value[1] is None
        assert reply.value[0] == (0 if case == "nothing queued" else pool.queued)
        assert not tracker.writer.outlived and pool.outbox is outbox  # still reporting to its driver
    finally:
        pool.shutdown()


@pytest.mark.parametrize(("pid", "ppid", "env", "outlives"), [
    (4242, 4000, {}, True),
    (1, 0, {}, False),  # a container's first process
    (4242, 1, {}, False),  # started by an init that exits with it, or by systemd
    (4242, 4000, {"SLURM_JOB_ID": "17"}, False),
    (4242, 4000, {"PBS_JOBID": "17.server"}, False),
    (4242, 4000, {"LSB_JOBID": "17"}, False),
])
def test_child_runs_are_handed_over_only_where_a_process_left_behind_outlives_the_command(
        monkeypatch, pid: int, ppid: int, env: dict[str, str], outlives: bool) -> None:
    monkeypatch.setattr(sweep_tracking.os, "getpid", lambda: pid)
    monkeypatch.setattr(sweep_tracking.os, "getppid", lambda: ppid)
    for name in sweep_tracking._BATCH_JOB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert sweep_tracking._outlives_command() is outlives
