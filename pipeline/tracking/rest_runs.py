"""A child run's three requests as bare JSON over ``http.client``: a seventh of MLflow's client CPU.

Against a tracking server each trial's child run is three REST calls
(``runs/create``, ``runs/log-batch``, ``runs/update``). MLflow's client spends
about 8.8 ms of CPU on them (a ``requests`` session with its retry adapter,
entities turned into protobuf, JSON and back); the same three requests written
as JSON with ``http.client`` take about 1.3 ms (measured against ``mlflow
server`` 3.x on 127.0.0.1). On two cores the server's own work is the limit of
a sweep's child runs, and the client's CPU competes with it.

The requests are the ones MLflow's ``RestStore`` sends: the same endpoints,
fields, credentials (basic or bearer, from :func:`mlflow.utils.credentials.
get_default_host_creds`), TLS settings and request-header providers (so
regsweep's ``Connection: close`` of :mod:`.connections` applies). Where the two
could differ, :func:`rest_runs_for` returns None and the writer keeps MLflow's
client: an auth plugin (``MLFLOW_TRACKING_AUTH``), AWS SigV4, Databricks, an
MLflow workspace, or a proxy for the host (``requests`` honours ``HTTP(S)_PROXY``).

Failures raise :class:`RestCallError` naming the endpoint and the server's
answer; the caller's retry loop (:class:`.child_runs.ChildRunWriter`) decides
what happens next. A request is never retried here: ``runs/create`` is not
idempotent, and the caller looks for a run the failed attempt may have made.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RestCallError", "RestRuns", "rest_runs_for"]

_API = "/api/2.0/mlflow/"
_REUSE_WITHIN_S = 2.0
"""A kept-alive connection is reused only if its last answer came this recently: servers close idle ones
(uvicorn after 5 s), and a request sent on a connection the server is closing fails without telling whether
it arrived, which for ``runs/create`` means a search for the run. A new connection costs well under 1 ms."""


class RestCallError(RuntimeError):
    """A REST call that did not answer 200: the endpoint, the HTTP status and the server's message."""


class RestRuns:
    """``runs/create``, ``runs/log-batch`` and ``runs/update`` of one tracking server, thread-safe (one
    connection per thread)."""

    def __init__(self, uri: str, headers: Callable[[], Mapping[str, str]], auth: str | None = None,
                 tls: ssl.SSLContext | None = None, timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlsplit(uri)
        self._https = parsed.scheme == "https"
        self._host, self._port = parsed.hostname or "", parsed.port
        self._base = parsed.path.rstrip("/") + _API
        self._headers, self._auth, self._tls, self._timeout = headers, auth, tls, timeout
        self._local = threading.local()

    def create(self, experiment_id: str, run_name: str, start_ms: int, tags: Mapping[str, str]) -> str:
        """A new RUNNING run; its id. ``user_id`` as MLflow's client sends it (the ``mlflow.user`` tag)."""
        body = {"experiment_id": str(experiment_id), "user_id": tags.get("mlflow.user", "unknown"),
                "start_time": int(start_ms), "run_name": run_name, "tags": _key_values(tags)}
        return str(self._post("runs/create", body)["run"]["info"]["run_id"])

    def log_batch(self, run_id: str, metrics: Mapping[str, float], params: Mapping[str, str],
                  timestamp_ms: int) -> None:
        """Metrics (step 0, at ``timestamp_ms``) and params in one request; idempotent for equal values."""
        body = {"run_id": run_id, "params": _key_values(params),
                "metrics": [{"key": k, "value": float(v), "timestamp": int(timestamp_ms), "step": 0}
                            for k, v in metrics.items()]}
        self._post("runs/log-batch", body)

    def terminate(self, run_id: str, status: str, end_ms: int) -> None:
        """The run's final status and end time (MLflow's ``set_terminated``)."""
        self._post("runs/update", {"run_id": run_id, "run_uuid": run_id, "status": status, "end_time": int(end_ms)})

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {**self._headers(), "Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        conn = self._connection()
        try:
            conn.request("POST", self._base + endpoint, json.dumps(body), headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            self._local.conn = None
            raise
        self._local.last = time.monotonic()
        if response.will_close:
            conn.close()
        if response.status != 200:
            raise RestCallError(f"{endpoint}: HTTP {response.status}: {_message(data)}")
        return dict(json.loads(data or b"{}"))

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and time.monotonic() - self._local.last > _REUSE_WITHIN_S:
            conn.close()  # idle long enough that the server may be closing it
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn


def rest_runs_for(uri: str) -> RestRuns | None:
    """Bare REST calls for the tracking server at ``uri``, or None where MLflow's client must send them (see
    the module's docstring)."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return None
    proxies = urllib.request.getproxies()
    if parsed.scheme in proxies and not urllib.request.proxy_bypass(parsed.hostname):
        return None
    try:
        from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT
        from mlflow.tracking.request_header.registry import resolve_request_headers
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.workspace_context import get_request_workspace
    except ImportError:  # MLflow moved them: its client sends everything
        return None
    creds = get_default_host_creds(uri)
    special = ("aws_sigv4", "auth", "client_secret", "use_databricks_sdk", "workspace_id")
    if any(getattr(creds, name, None) for name in special) or get_request_workspace():
        return None
    auth = None
    if creds.username and creds.password:
        auth = "Basic " + base64.standard_b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    elif creds.token:
        auth = f"Bearer {creds.token}"
    tls = None
    if parsed.scheme == "https":
        tls = ssl.create_default_context(cafile=creds.server_cert_path)
        if creds.ignore_tls_verification:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        if creds.client_cert_path:
            tls.load_cert_chain(creds.client_cert_path)
    return RestRuns(uri, resolve_request_headers, auth, tls, float(MLFLOW_HTTP_REQUEST_TIMEOUT.get()))


def _key_values(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def _message(data: bytes) -> str:
    """The server's error message (MLflow's ``{"error_code", "message"}``), else the start of its answer."""
    try:
        answer = json.loads(data)
        return f"{answer.get('error_code', '')}: {answer.get('message', '')}"[:500]
    except (ValueError, AttributeError):
        return data[:500].decode("utf-8", "replace")
