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


_LEAVE = """
import multiprocessing, os, sys
from multiprocessing import forkserver
ctx = multiprocessing.get_context("forkserver")
ctx.set_forkserver_preload(sys.argv[1:])
forkserver.ensure_running()
server = forkserver._forkserver
os.close(server._forkserver_alive_fd)  # as when the driver exits: the server reads EOF and leaves
_, status = os.waitpid(server._forkserver_pid, 0)
print(os.waitstatus_to_exitcode(status))
"""

_TORN_DOWN = """
import os

_fd = os.open(os.environ["REGSWEEP_TEST_MARK"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


class _Marker:
    def __del__(self, write=os.write, fd=_fd) -> None:  # run when the interpreter tears this module down
        write(fd, b"torn down")


marker = _Marker()
"""


def test_the_server_leaves_with_its_driver_without_the_module_teardown(tmp_path) -> None:
    """The teardown of the preloaded modules (0.33 s after a sweep) is skipped; the exit status stays 0."""
    import os

    (tmp_path / "teardown_marker.py").write_text(_TORN_DOWN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
           "REGSWEEP_TEST_MARK": str(tmp_path / "mark")}

    def leave(*preload: str) -> bool:
        proc = subprocess.run([sys.executable, "-c", _LEAVE, *preload], capture_output=True, text=True, timeout=60,
                              env=env)
        assert proc.returncode == 0 and proc.stdout.strip() == "0", proc.stderr  # the server's exit status
        return (tmp_path / "mark").read_text() == "torn down"

    assert leave("teardown_marker")  # the stock server tears its modules down
    assert not leave("pipeline.cv.forkserver_exit", "teardown_marker")
