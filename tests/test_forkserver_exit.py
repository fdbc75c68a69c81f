"""The fork server of the embedded cluster exits quietly when its driver leaves mid-request (a real fork server
and a client that connects and goes away, as a driver stopped by SIGTERM while a worker is forked)."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import multiprocessing, socket, sys, time
from multiprocessing import forkserver
ctx = multiprocessing.get_context("forkserver")
ctx.set_forkserver_preload(sys.argv[1:])
forkserver.ensure_running()
with socket.socket(socket.AF_UNIX) as s:
    s.connect(forkserver._forkserver._forkserver_address)
time.sleep(1.0)
print("done")
"""


def _stderr(*preload: str) -> str:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, *preload], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    return proc.stderr


def test_a_client_leaving_mid_request_prints_no_traceback() -> None:
    from pipeline.cv.client import _FORKSERVER_PRELOAD

    assert _FORKSERVER_PRELOAD[0] == "pipeline.cv.forkserver_exit"
    assert "EOFError" in _stderr()  # the stock server prints the traceback after regsweep's own message
    assert _stderr("pipeline.cv.forkserver_exit") == ""


def test_other_errors_keep_their_traceback() -> None:
    code = "import pipeline.cv.forkserver_exit\nraise ValueError('kept')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "ValueError: kept" in proc.stderr and "Traceback" in proc.stderr
