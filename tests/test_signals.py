"""SIGTERM during a sweep: the exit watchdog and the held stop, in a real process (the fault tests cover the
whole sweep)."""

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
    try:
        print("ready", flush=True)  # inside the try: a SIGTERM right after it must reach the cleanup
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


_HELD_STOP = """
import os, signal
import pipeline.signals as s
with s.terminate_as_interrupt():
    try:
        with s.uninterrupted():
            os.kill(os.getpid(), signal.SIGTERM)
            print("the block ran to its end", flush=True)
        print("not reached", flush=True)
    except KeyboardInterrupt as e:
        print(f"then stopped: {type(e).__name__}: {e}", flush=True)
"""


def test_a_sigterm_inside_an_uninterrupted_block_is_raised_when_the_block_ends() -> None:
    out = subprocess.run([sys.executable, "-c", _HELD_STOP], capture_output=True, text=True, timeout=30).stdout
    assert out.splitlines() == ["the block ran to its end", "then stopped: Terminated: received signal SIGTERM"]
