"""SIGTERM during a sweep: the exit watchdog, in a real process (the fault tests cover the whole sweep)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

_HANGING_CLEANUP = """
import sys, time
import pipeline.signals as s
s._EXIT_DEADLINE_S = 0.5
with s.terminate_as_interrupt():
    print("ready", flush=True)
    try:
        time.sleep(30)
    except KeyboardInterrupt:
        time.sleep(30)  # a cleanup that hangs: the watchdog must end the process
"""


@pytest.mark.parametrize("fault_handler", [False, True])
def test_a_hanging_cleanup_after_sigterm_exits_143_and_says_why(fault_handler: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    if fault_handler:
        env["PYTHONFAULTHANDLER"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", _HANGING_CLEANUP], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 143 and time.monotonic() - t0 < 10
    assert "regsweep: stopped (received signal SIGTERM); the cleanup did not end within 0.5 s" in err
    # with the fault handler on, where the cleanup hung follows (the main thread's stack, in the sleep)
    assert ('File "<string>", line 10' in err) == fault_handler, err
