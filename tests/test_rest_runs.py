"""The bare REST child-run calls (:mod:`pipeline.tracking.rest_runs`) send what MLflow's own client sends.

A recording HTTPS server on 127.0.0.1 (certificate from a CA made here) takes
the requests of both writers of :class:`~pipeline.tracking.child_runs.
ChildRunWriter`: MLflow's ``MlflowClient`` and the bare calls. Their
endpoints, JSON bodies and credentials must be equal. (That a real ``mlflow
server`` stores them identically is tested in
``tests/integration/test_rest_runs_server.py``.)
"""

from __future__ import annotations

import json
import math
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.tracking.child_runs import ChildRunWriter
from pipeline.tracking.records import TrialRecord
from pipeline.tracking.rest_runs import RestCallError, rest_runs_for
from tests.certs import make_tls_files

_RUN = {"info": {"run_id": "r1", "run_uuid": "r1", "experiment_id": "3", "status": "RUNNING",
                 "lifecycle_stage": "active", "artifact_uri": "mlflow-artifacts:/3/r1/artifacts"},
        "data": {}}


class _Recorder(BaseHTTPRequestHandler):
    """Answers MLflow's run endpoints as a server would, recording every POST; ``/fail`` paths answer 400."""

    seen: list[tuple[str, dict[str, Any], str | None]]

    def do_POST(self) -> None:  # noqa: N802 — http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.seen.append((self.path, body, self.headers.get("Authorization")))
        if self.path.startswith("/fail"):
            self._answer(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Param value too long"})
        elif self.path.endswith("runs/create"):
            self._answer(200, {"run": _RUN})
        elif self.path.endswith("runs/update"):
            self._answer(200, {"run_info": _RUN["info"] | {"status": body.get("status", "RUNNING")}})
        else:
            self._answer(200, {})

    def do_GET(self) -> None:  # noqa: N802 — a client may read the run back (not recorded)
        self._answer(200, {"run": _RUN})

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_server(tmp_path, monkeypatch) -> Iterator[tuple[str, list[Any]]]:
    """A recording HTTPS server trusted through ``MLFLOW_TRACKING_SERVER_CERT_PATH``; its URI and record."""
    tls = make_tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls["tls_client_cert"], tls["tls_client_key"])
    seen: list[Any] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "MLFLOW_TRACKING_AUTH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", tls["tls_ca_file"])
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/prefix", seen
    finally:
        server.shutdown()
        server.server_close()


def _record() -> TrialRecord:
    return TrialRecord(number=7, params={"penalty": "elasticnet", "lambda1": 0.12345678901234, "lambda2": 1e-5},
                       metrics={"cv_mse": 1.5, "cv_mse_se": 0.1, "n_nonzero": 3.0, "cv_r2": math.nan},
                       start_ms=1_700_000_000_000, end_ms=1_700_000_000_250, status="FAILED")


@pytest.mark.parametrize("credentials", [{"MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "s3:cr"},
                                         {"MLFLOW_TRACKING_TOKEN": "tok-123"}, {}])
def test_the_bare_calls_send_what_mlflows_client_sends(https_server, monkeypatch, credentials) -> None:
    from mlflow import MlflowClient

    uri, seen = https_server
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    writer = ChildRunWriter(MlflowClient(uri), uri, "3", "parent-1", "s'q", "driver-1")
    assert writer._rest is not None
    assert writer.write(_record()) is None
    by_rest = list(seen)
    seen.clear()
    writer._rest = None
    assert writer.write(_record()) is None
    by_client = list(seen)
    assert [path for path, _, _ in by_rest] == ["/prefix/api/2.0/mlflow/runs/create",
                                               "/prefix/api/2.0/mlflow/runs/log-batch",
                                               "/prefix/api/2.0/mlflow/runs/update"]
    assert by_rest == by_client
    assert by_rest[0][2] == by_client[0][2] and (by_rest[0][2] is not None) == bool(credentials)
    assert {m["key"] for m in by_rest[1][1]["metrics"]} == {"cv_mse", "cv_mse_se", "n_nonzero"}  # NaN left out


def test_a_refused_call_names_the_endpoint_and_the_servers_message(https_server) -> None:
    uri, _ = https_server
    rest = rest_runs_for(uri.replace("/prefix", "/fail"))
    assert rest is not None
    with pytest.raises(RestCallError, match=r"runs/log-batch: HTTP 400: INVALID_PARAMETER_VALUE: Param value too"):
        rest.log_batch("r1", {"cv_mse": 1.0}, {}, 0)


def test_an_untrusted_certificate_is_refused(https_server, monkeypatch) -> None:
    uri, seen = https_server
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    rest = rest_runs_for(uri)
    assert rest is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        rest.terminate("r1", "FINISHED", 0)
    assert seen == []
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")  # as MLflow's client: then unchecked
    rest = rest_runs_for(uri)
    assert rest is not None
    rest.terminate("r1", "FINISHED", 0)
    assert len(seen) == 1


def test_mlflows_client_sends_what_the_bare_calls_cannot(monkeypatch) -> None:
    for key in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "MLFLOW_TRACKING_AUTH"):
        monkeypatch.delenv(key, raising=False)
    assert rest_runs_for("http://127.0.0.1:5000") is not None
    assert rest_runs_for("sqlite:///mlflow.db") is None
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "my_auth_plugin")  # an auth plugin signs MLflow's requests
    assert rest_runs_for("http://127.0.0.1:5000") is None
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")  # requests goes through the proxy
    assert rest_runs_for("http://mlflow.example:5000") is None
    monkeypatch.setenv("NO_PROXY", "mlflow.example")
    assert rest_runs_for("http://mlflow.example:5000") is not None
