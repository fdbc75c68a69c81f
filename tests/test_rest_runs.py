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
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.tracking.child_runs import ChildRunWriter
from pipeline.tracking.records import TrialRecord
from pipeline.tracking.rest_runs import RestCallError, client_may_differ, rest_runs_for
from tests.certs import make_tls_files

_RUN = {"info": {"run_id": "r1", "run_uuid": "r1", "experiment_id": "3", "status": "RUNNING",
                 "lifecycle_stage": "active", "artifact_uri": "mlflow-artifacts:/3/r1/artifacts"},
        "data": {}}


_HEADERS = ("Authorization", "User-Agent", "Connection", "Content-Type")


class _Recorder(BaseHTTPRequestHandler):
    """Answers MLflow's run endpoints as a server would (HTTP/1.1, kept alive), recording every POST: its path,
    JSON body and the headers that matter. ``/fail`` paths answer 400; ``/moved`` paths redirect (308) to
    ``/prefix``, as an ingress that moved the server would; ``/busy`` answers its first request 429."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, Any], dict[str, str | None]]]

    def do_POST(self) -> None:  # noqa: N802 — http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        headers = {h: self.headers.get(h) for h in _HEADERS}
        headers["Connection"] = headers["Connection"] or "keep-alive"  # HTTP/1.1's default, which requests spells out
        client_cert = self.connection.getpeercert()  # type: ignore[attr-defined]  # an ssl socket
        headers["client certificate"] = str(client_cert["subject"]) if client_cert else None
        self.seen.append((self.path, body, headers))
        if self.path.startswith("/closing"):  # closes each connection after answering, without saying so
            self.close_connection = True
        if self.path.startswith("/busy") and len(self.seen) == 1:  # rate limited, once
            self._answer(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"})
        elif self.path.startswith("/moved"):
            self.send_response(308)
            self.send_header("Location", self.path.replace("/moved", "/prefix", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/fail"):
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


@pytest.fixture(autouse=True)
def _no_settings_of_this_machine(tmp_path, monkeypatch) -> None:
    """Neither this machine's proxies, credentials (``~/.netrc``, ``~/.mlflow/credentials``) nor MLflow
    settings reach the tests: each sets what it tests."""
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                "no_proxy", "MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_CLIENT_CERT_PATH", "MLFLOW_TRACKING_INSECURE_TLS",
                "MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_AWS_SIGV4", "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE", "MLFLOW_ACTIVE_MODEL_ID", "_MLFLOW_ACTIVE_MODEL_ID", "MLFLOW_WORKSPACE",
                "_MLFLOW_DATABRICKS_TRAFFIC_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))  # MLflow reads ~/.mlflow/credentials


@pytest.fixture
def https_server(tmp_path, monkeypatch) -> Iterator[tuple[str, list[Any]]]:
    """A recording HTTPS server trusted through ``MLFLOW_TRACKING_SERVER_CERT_PATH``; its URI and record."""
    tls = make_tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls["tls_client_cert"], tls["tls_client_key"])
    context.load_verify_locations(tls["tls_ca_file"])  # a client certificate, if sent, must be the CA's
    context.verify_mode = ssl.CERT_OPTIONAL
    seen: list[Any] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
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
    assert by_rest == by_client  # paths, JSON bodies, credentials and headers (User-Agent from MLflow's providers)
    assert (by_rest[0][2]["Authorization"] is not None) == bool(credentials)
    assert by_rest[0][2]["User-Agent"] and by_rest[0][2]["User-Agent"].startswith("mlflow-python-client")
    assert {m["key"] for m in by_rest[1][1]["metrics"]} == {"cv_mse", "cv_mse_se", "n_nonzero"}  # NaN left out


def test_a_client_certificate_and_the_connection_header_reach_the_server(https_server, tmp_path,
                                                                         monkeypatch) -> None:
    from mlflow.tracking.request_header.registry import _request_header_provider_registry as registry

    from pipeline.tracking.connections import close_connections

    monkeypatch.setattr(registry, "_registry", list(registry._registry))  # the provider added below: this test's
    uri, seen = https_server
    pem = tmp_path / "client.pem"  # MLflow's client certificate: one file with the certificate and its key
    pem.write_text((tmp_path / "cert.pem").read_text() + (tmp_path / "key.pem").read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_CLIENT_CERT_PATH", str(pem))
    rest = rest_runs_for(uri)
    assert rest is not None and rest._tls is not None
    rest.terminate("r1", "FINISHED", 1)
    assert seen[-1][2]["client certificate"] == str(((("commonName", "127.0.0.1"),),))
    assert seen[-1][2]["Connection"] == "keep-alive"
    assert close_connections()  # as for a server that stalls kept-alive requests
    rest.terminate("r1", "FINISHED", 1)
    assert seen[-1][2]["Connection"] == "close"


def test_a_kept_alive_connection_the_server_closed_is_not_reused(https_server) -> None:
    uri, seen = https_server
    rest = rest_runs_for(uri.replace("/prefix", "/closing"))
    assert rest is not None
    rest.terminate("r1", "FINISHED", 1)
    time.sleep(0.2)  # the server's close has arrived: the socket reads EOF
    rest.terminate("r1", "FINISHED", 1)  # on a new connection (the old one would fail: RemoteDisconnected)
    assert len(seen) == 2


def test_a_redirect_is_followed_by_mlflows_client_and_the_bare_calls_are_dropped(https_server) -> None:
    from mlflow import MlflowClient

    uri, seen = https_server
    moved = uri.replace("/prefix", "/moved")
    writer = ChildRunWriter(MlflowClient(moved), moved, "3", "parent-1", "s'q", "driver-1")
    assert writer._rest is not None
    assert writer.write(_record()) is None
    assert writer._rest is None  # MLflow's client did what the bare calls did not: it writes from now on
    paths = [path.replace("/api/2.0/mlflow/", " ") for path, _, _ in seen]
    assert paths == ["/moved runs/create",  # the bare call, answered 308: no run was made
                     "/moved runs/search", "/prefix runs/search",  # the client looks for one, redirected
                     "/moved runs/create", "/prefix runs/create",
                     "/moved runs/log-batch", "/prefix runs/log-batch", "/moved runs/update", "/prefix runs/update"]


def test_a_rate_limit_is_waited_out_with_the_bare_calls(https_server) -> None:
    from mlflow import MlflowClient

    uri, seen = https_server
    busy = uri.replace("/prefix", "/busy")
    writer = ChildRunWriter(MlflowClient(busy), busy, "3", "parent-1", "s'q", "driver-1")
    assert writer.write(_record()) is None
    assert writer._rest is not None  # MLflow's client would have met the same 429: not a reason to drop them
    paths = [path.replace("/api/2.0/mlflow/", " ") for path, _, _ in seen]
    assert paths == ["/busy runs/create", "/busy runs/search",  # 429, then a look for the run (MLflow's client)
                     "/busy runs/create", "/busy runs/log-batch", "/busy runs/update"]


@pytest.mark.parametrize(("error", "differs"), [
    (RestCallError("x", 308), True), (RestCallError("x", 400), True), (RestCallError("x", 401), True),
    (RestCallError("x", 200), True), (RestCallError("x", 429), False), (RestCallError("x", 408), False),
    (RestCallError("x", 503), False), (ssl.SSLCertVerificationError("bad"), True), (ssl.SSLEOFError("eof"), False),
    (ConnectionRefusedError(), False), (TimeoutError(), False), (ValueError("NaN"), True)])
def test_which_failures_hand_a_record_to_mlflows_client(error, differs) -> None:
    assert client_may_differ(error) is differs


def test_unknown_times_are_sent_as_now_as_mlflows_client_sends_them(https_server) -> None:
    uri, seen = https_server
    rest = rest_runs_for(uri)
    assert rest is not None
    before = int(time.time() * 1000)
    rest.create("3", "trial-0001", 0, {})
    rest.terminate("r1", "FINISHED", 0)
    assert before <= seen[0][1]["start_time"] <= int(time.time() * 1000)
    assert before <= seen[1][1]["end_time"] <= int(time.time() * 1000)


def test_an_ipv6_address_keeps_its_default_port() -> None:
    rest = rest_runs_for("http://[::1]/mlflow")
    assert rest is not None and (rest._host, rest._port, rest._base) == ("::1", 80, "/mlflow/api/2.0/mlflow/")
    rest = rest_runs_for("https://[2001:db8::5]")
    assert rest is not None and (rest._host, rest._port) == ("2001:db8::5", 443)


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


def test_mlflows_client_sends_what_the_bare_calls_cannot(monkeypatch, tmp_path) -> None:
    assert rest_runs_for("http://127.0.0.1:5000") is not None
    assert rest_runs_for("sqlite:///mlflow.db") is None
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "my_auth_plugin")  # an auth plugin signs MLflow's requests
    assert rest_runs_for("http://127.0.0.1:5000") is None
    monkeypatch.delenv("MLFLOW_TRACKING_AUTH")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")  # requests goes through the proxy
    assert rest_runs_for("http://mlflow.example:5000") is None
    monkeypatch.setenv("NO_PROXY", "mlflow.example")
    assert rest_runs_for("http://mlflow.example:5000") is not None
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.example:1080")
    assert rest_runs_for("http://other.example:5000") is None
    monkeypatch.delenv("ALL_PROXY")
    monkeypatch.delenv("HTTP_PROXY")
    (tmp_path / "netrc").write_text("machine mlflow.example login ann password pw\n")  # requests would send it
    assert rest_runs_for("http://mlflow.example:5000") is None
    assert rest_runs_for("http://other.example:5000") is not None
    monkeypatch.setenv("MLFLOW_ACTIVE_MODEL_ID", "m-1")  # MLflow's client adds it to every metric
    assert rest_runs_for("http://other.example:5000") is None
    monkeypatch.delenv("MLFLOW_ACTIVE_MODEL_ID")
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "missing.pem"))  # MLflow's to report
    assert rest_runs_for("https://other.example") is None
