"""A new connection per MLflow request when (and only when) the server stalls kept-alive requests.

The servers here are Python's own ``http.server`` speaking HTTP/1.1 with
kept-alive connections. The stalling one holds every response after the first
on a connection for 45 ms: the symptom of ``mlflow server``'s multi-worker
uvicorn (Nagle's algorithm against the client's delayed ACK,
Kludex/uvicorn#3149), made deterministic, since whether the kernel delays an
ACK depends on its heuristics (a first run in CI did not stall where the same
test did locally).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.tracking.connections import keepalive_stalls, stall_measured


class _Handler(BaseHTTPRequestHandler):
    """Answers at once (one handler per connection, kept alive)."""

    protocol_version = "HTTP/1.1"  # kept-alive connections
    disable_nagle_algorithm = True
    stall_s = 0.0
    seen_connection_headers: list[str | None] = []

    def setup(self) -> None:
        super().setup()
        self.answered = 0  # on this connection

    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        type(self).seen_connection_headers.append(self.headers.get("Connection"))
        if self.answered:
            time.sleep(self.stall_s)
        self.answered += 1
        body = json.dumps({"experiment": {"experiment_id": "0", "name": "Default"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _StallingHandler(_Handler):
    """Holds every response after the first on a connection, as uvicorn's multi-worker path does on Linux."""

    stall_s = 0.045


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def stalling_server() -> Iterator[str]:
    yield from _serve(_StallingHandler)


@pytest.fixture
def prompt_server() -> Iterator[str]:
    yield from _serve(_Handler)


def test_a_stall_is_a_gap_of_more_than_20_ms_between_the_medians() -> None:
    assert stall_measured([0.044, 0.043, 0.046], [0.002, 0.003, 0.002])
    assert not stall_measured([0.004, 0.003, 0.005], [0.002, 0.003, 0.002])
    assert not stall_measured([0.003, 0.300, 0.003], [0.002, 0.003, 0.002])  # one slow request is not a stall
    assert not stall_measured([], [0.002])


def test_a_server_that_stalls_kept_alive_requests_is_found_out(stalling_server: str) -> None:
    assert keepalive_stalls(stalling_server)


def test_a_prompt_server_keeps_its_connections(prompt_server: str) -> None:
    assert not keepalive_stalls(prompt_server, requests_each=7)  # medians of 7: a busy machine's hiccup is no stall


def test_no_server_is_no_stall() -> None:
    assert not keepalive_stalls("http://127.0.0.1:9", timeout=0.5)  # discard port: refused


def test_once_asked_every_mlflow_request_of_the_process_says_connection_close(prompt_server: str) -> None:
    """Through MLflow's own transport (``http_request``), in a new process: the header provider is
    process-wide, so this one stays clean."""
    code = (
        "import sys\n"
        "from mlflow.utils.rest_utils import MlflowHostCreds, http_request\n"
        "from pipeline.tracking.connections import close_connections\n"
        "url = sys.argv[1]\n"
        "http_request(MlflowHostCreds(url), '/api/2.0/mlflow/experiments/get', 'GET')\n"
        "assert close_connections() and close_connections()  # idempotent\n"
        "from mlflow.tracking.request_header.registry import _request_header_provider_registry as r\n"
        "assert sum(type(p).__name__ == '_CloseConnections' for p in r) == 1\n"
        "for _ in range(2):\n"
        "    http_request(MlflowHostCreds(url), '/api/2.0/mlflow/experiments/get', 'GET')\n"
    )
    _Handler.seen_connection_headers.clear()
    subprocess.run([sys.executable, "-c", code, prompt_server], check=True, timeout=120)
    assert _Handler.seen_connection_headers == ["keep-alive", "close", "close"]


def test_the_mlflow_process_closes_connections_only_to_a_server_that_stalls(stalling_server: str,
                                                                            prompt_server: str) -> None:
    """A :class:`~pipeline.tracking.tracker.Tracker` (what the sweep's MLflow process opens) on each server, in a
    new process each (the header provider is process-wide)."""
    code = (
        "import sys\n"
        "from pipeline.config import TrackingConfig\n"
        "from pipeline.tracking.tracker import Tracker\n"
        "from mlflow.tracking.request_header.registry import resolve_request_headers\n"
        "tracker = Tracker(TrackingConfig(uri=sys.argv[1], experiment='e'))\n"
        "print(tracker.closes_connections, resolve_request_headers().get('Connection'))\n"
    )
    seen = [subprocess.run([sys.executable, "-c", code, uri], check=True, timeout=120, capture_output=True,
                           text=True).stdout.split() for uri in (stalling_server, prompt_server)]
    assert seen == [["True", "close"], ["False", "None"]]
