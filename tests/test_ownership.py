"""Who owns a RUNNING trial: live drivers are left alone, dead ones are recognised at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from pipeline.ownership import LEASE_EXPIRY_S, DriverId, _process_start_ticks, is_stale


def _dead_driver() -> DriverId:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = _process_start_ticks(proc.pid)
    proc.wait()
    here = DriverId.current()
    return DriverId(here.host, proc.pid, ticks or 1)


def test_this_driver_is_never_stale() -> None:
    assert not is_stale(str(DriverId.current()), lease=0.0)


def test_a_driver_whose_process_exited_is_stale_at_once_whatever_its_lease() -> None:
    dead = _dead_driver()
    assert is_stale(str(dead), lease=time.time())


def test_a_reused_pid_with_another_start_time_is_stale() -> None:
    me = DriverId.current()
    parent = DriverId(me.host, os.getppid(), (_process_start_ticks(os.getppid()) or 0) + 12345)
    assert is_stale(str(parent), lease=time.time())


def test_a_live_driver_on_this_host_is_not_stale_even_with_an_old_lease() -> None:
    parent = os.getppid()
    alive = DriverId(DriverId.current().host, parent, _process_start_ticks(parent) or 0)
    assert not is_stale(str(alive), lease=0.0)


def test_another_hosts_driver_is_stale_only_once_its_lease_expired() -> None:
    remote = str(DriverId("some-other-host.invalid", 4242, 99))
    now = time.time()
    assert not is_stale(remote, lease=now - LEASE_EXPIRY_S / 2, now=now)
    assert is_stale(remote, lease=now - LEASE_EXPIRY_S - 1, now=now)
    assert not is_stale(remote, lease=None, now=now)  # never renewed: not enough to call it dead


def test_driver_ids_round_trip_and_garbage_is_rejected() -> None:
    me = DriverId.current()
    assert DriverId.parse(str(me)) == me
    for bad in ("", "host", "host/x/1", None):
        assert DriverId.parse(bad) is None  # type: ignore[arg-type]


def test_a_driver_in_another_pid_namespace_with_this_hostname_is_judged_by_its_lease() -> None:
    """Two containers may share a hostname: a PID of one means nothing in the other. A driver in
    another PID namespace is never declared dead by its PID (even one that does not exist here),
    only by an expired lease, as a driver on another host."""
    me = DriverId.current()
    assert me.pidns, "this test needs /proc/self/ns/pid"
    elsewhere = DriverId(me.host, _dead_driver().pid, 1, me.pidns + 1)  # that PID is dead *here*
    assert elsewhere.is_alive_here() is None
    now = time.time()
    assert not is_stale(str(elsewhere), lease=now - LEASE_EXPIRY_S / 2, now=now)
    assert is_stale(str(elsewhere), lease=now - LEASE_EXPIRY_S - 1, now=now)
    same_namespace = DriverId(me.host, elsewhere.pid, 1, me.pidns)
    assert is_stale(str(same_namespace), lease=now)  # here its PID is checked, and it is gone


def test_ids_written_before_the_pid_namespace_was_recorded_still_parse() -> None:
    old = DriverId.parse("some-host/4242/99")
    assert old == DriverId("some-host", 4242, 99, 0)
    assert DriverId.parse(str(DriverId("h", 1, 2, 3))) == DriverId("h", 1, 2, 3)


def _process_id(proc: subprocess.Popen[bytes]) -> DriverId:
    here = DriverId.current()
    return DriverId(here.host, proc.pid, _process_start_ticks(proc.pid) or 0, here.pidns)


def test_a_dead_drivers_records_are_not_stale_while_its_deputy_lives() -> None:
    """A driver that ended handing its last child runs to its MLflow process (its deputy): a later driver
    leaves its trials and runs alone until the deputy has exited too, then at once."""
    dead = str(_dead_driver())
    deputy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert is_stale(dead, lease=time.time())
        assert not is_stale(dead, lease=time.time(), deputy=str(_process_id(deputy)))
    finally:
        deputy.kill()
        deputy.wait()
    assert is_stale(dead, lease=time.time(), deputy=str(_process_id(deputy)))


def test_a_driver_on_another_host_whose_lease_expired_is_not_stale_while_its_deputy_runs_here() -> None:
    """The deputy's liveness is checked where it can be (here), whatever the driver's lease says; a deputy on
    another host is judged by that lease, as its driver is."""
    remote, now = str(DriverId("some-other-host.invalid", 4242, 99)), time.time()
    expired = now - LEASE_EXPIRY_S - 1
    deputy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not is_stale(remote, lease=expired, now=now, deputy=str(_process_id(deputy)))
    finally:
        deputy.kill()
        deputy.wait()
    assert is_stale(remote, lease=expired, now=now, deputy=str(_process_id(deputy)))
    elsewhere = str(DriverId("some-other-host.invalid", 43, 9))
    assert is_stale(remote, lease=expired, now=now, deputy=elsewhere)
    assert not is_stale(remote, lease=now - LEASE_EXPIRY_S / 2, now=now, deputy=elsewhere)


def test_a_process_that_exited_but_was_not_reaped_is_dead() -> None:
    """A zombie still answers ``kill(pid, 0)``: a deputy that exited while its driver (the parent that would
    reap it) still runs must count as gone, or the trials it left would never be replayed."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    zombie = _process_id(proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # exited, not yet waited for
        with open(f"/proc/{proc.pid}/stat", "rb") as fh:
            if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    try:
        os.kill(proc.pid, 0)  # still there for kill(): the case the check is for
        assert zombie.is_alive_here() is False
        assert is_stale(str(zombie), lease=time.time())
    finally:
        proc.wait()
