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
import os, signal, sys
import pipeline.signals as s
signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (a background job ignores Ctrl-C)
case = sys.argv[1]
with s.terminate_as_interrupt():
    try:
        with s.uninterrupted():
            with s.uninterrupted():  # nested: held to the end of the outer block
                os.kill(os.getpid(), signal.SIGINT if case in ("ctrl-c", "ctrl-c then term") else signal.SIGTERM)
                if case == "ctrl-c then term":
                    os.kill(os.getpid(), signal.SIGTERM)
            print("the block ran to its end", flush=True)
            if case == "error":
                raise ValueError("a write failed")
        print("not reached", flush=True)
    except KeyboardInterrupt as e:
        print(f"then stopped: {type(e).__name__}: {e}", flush=True)
        print(f"context: {e.__context__!r}", flush=True)
"""


@pytest.mark.parametrize(("case", "said"), [
    ("term", "Terminated: received signal SIGTERM"),
    ("ctrl-c", "KeyboardInterrupt: "),
    ("ctrl-c then term", "Terminated: received signal SIGTERM"),  # SIGTERM's exit code wins
    ("error", "Terminated: received signal SIGTERM"),  # the stop, with the error as its context
])
def test_a_stop_inside_uninterrupted_blocks_is_raised_when_the_outer_block_ends(case: str, said: str) -> None:
    out = subprocess.run([sys.executable, "-c", _HELD_STOP, case], capture_output=True, text=True,
                         timeout=30).stdout
    context = "ValueError('a write failed')" if case == "error" else "None"
    assert out.splitlines() == ["the block ran to its end", f"then stopped: {said}", f"context: {context}"]
