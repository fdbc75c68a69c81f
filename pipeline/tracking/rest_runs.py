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
get_default_host_creds`), certificate checks (``requests``' CA bundle unless
MLflow's settings name another) and request-header providers (so regsweep's
``Connection: close`` of :mod:`.connections` applies). Where the two could
differ, :func:`rest_runs_for` returns None and the writer keeps MLflow's
client: an auth plugin (``MLFLOW_TRACKING_AUTH``), AWS SigV4, Databricks, an
MLflow workspace or active model, credentials in ``~/.netrc`` (``requests``
uses them), or a proxy for the host (``requests`` honours ``HTTP(S)_PROXY``
and ``ALL_PROXY``).

Failures raise :class:`RestCallError` (an answer other than 200 with JSON:
the endpoint, the status and the server's message) or the connection's own
error. The caller (:class:`.child_runs.ChildRunWriter`) waits out a server
that is away or busy, as MLflow's client would; a failure the client may not
share (:func:`client_may_differ`: a redirect, a refused batch it would split,
credentials it would re-read) goes to the client at once, and if the client
then succeeds the bare calls are dropped for the rest of the sweep. A request
is never retried here: ``runs/create`` is not idempotent, and the caller looks
for a run the failed attempt may have made.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import select
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RestCallError", "RestRuns", "client_may_differ", "rest_runs_for"]

_API = "/api/2.0/mlflow/"
_REUSE_WITHIN_S = 2.0
"""A kept-alive connection is reused only if its last answer came this recently: servers close idle ones
(uvicorn after 5 s), and a request sent on a connection the server is closing fails without telling whether
it arrived, which for ``runs/create`` means a search for the run. (Measured against ``mlflow server`` on
127.0.0.1: a request on a kept-alive connection 7-8 ms, on a new one about 10 ms.)"""


class RestCallError(RuntimeError):
    """A REST call that did not answer 200 with JSON: the endpoint, the HTTP status and the server's message."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


_PASSING = frozenset({408, 425, 429})
"""Statuses MLflow's client also meets and waits out (a timeout, too early, rate limited), as it does 5xx."""


def client_may_differ(error: BaseException) -> bool:
    """Whether MLflow's client may succeed where a bare call failed with ``error``: an answer it handles
    otherwise (a redirect, a refused batch it would split, credentials it would re-read: a 3xx or 4xx), a
    certificate it would check otherwise, an answer it would read otherwise. Not a server that is away,
    busy or failing (no answer, a broken TLS stream, a timeout, 408/425/429, a 5xx): that fails the client
    too, and is waited out."""
    if isinstance(error, RestCallError):
        return error.status < 500 and error.status not in _PASSING
    return isinstance(error, (ssl.SSLCertVerificationError, ValueError, TypeError, KeyError))


class RestRuns:
    """``runs/create``, ``runs/log-batch`` and ``runs/update`` of one tracking server, thread-safe (one
    connection per thread)."""

    def __init__(self, uri: str, headers: Callable[[], Mapping[str, str]], auth: str | None = None,
                 tls: ssl.SSLContext | None = None, timeout: float = 120.0) -> None:
        parsed = urllib.parse.urlsplit(uri)
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or ""  # an IPv6 address without its brackets
        self._port = parsed.port or (443 if self._https else 80)  # given: http.client would parse "::1" for one
        from requests.utils import requote_uri

        self._base = requote_uri(parsed.path.rstrip("/")) + _API  # as requests quotes it
        self._headers, self._auth, self._tls, self._timeout = headers, auth, tls, timeout
        self._local = threading.local()

    def create(self, experiment_id: str, run_name: str, start_ms: int, tags: Mapping[str, str]) -> str:
        """A new RUNNING run; its id. ``user_id`` as MLflow's client sends it (the ``mlflow.user`` tag)."""
        body = {"experiment_id": str(experiment_id), "user_id": tags.get("mlflow.user", "unknown"),
                "start_time": _ms_or_now(start_ms), "run_name": run_name, "tags": _key_values(tags)}
        answer = self._post("runs/create", body, empty_ok=False)
        try:
            return str(answer["run"]["info"]["run_id"])
        except (KeyError, TypeError):
            raise RestCallError(f"runs/create: HTTP 200 without a run id: {str(answer)[:200]}", 200) from None

    def log_batch(self, run_id: str, metrics: Mapping[str, float], params: Mapping[str, str],
                  timestamp_ms: int) -> None:
        """Metrics (step 0, at ``timestamp_ms``) and params in one request; idempotent for equal values."""
        body = {"run_id": run_id, "params": _key_values(params),
                "metrics": [{"key": k, "value": float(v), "timestamp": int(timestamp_ms), "step": 0}
                            for k, v in metrics.items()]}
        self._post("runs/log-batch", body)

    def terminate(self, run_id: str, status: str, end_ms: int) -> None:
        """The run's final status and end time (MLflow's ``set_terminated``)."""
        self._post("runs/update", {"run_id": run_id, "run_uuid": run_id, "status": status,
                                   "end_time": _ms_or_now(end_ms)})

    def _post(self, endpoint: str, body: dict[str, Any], empty_ok: bool = True) -> dict[str, Any]:
        """POST ``body`` as JSON; the JSON answer (an empty 200 as ``{}`` where ``empty_ok``, as MLflow's
        client reads it)."""
        headers = {**self._headers(), "Content-Type": "application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        try:
            conn = self._connection()
            conn.request("POST", self._base + endpoint, json.dumps(body, allow_nan=False), headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            self._drop_connection()
            raise
        self._local.last = time.monotonic()
        if response.will_close:
            conn.close()
        try:
            answer = json.loads(data) if response.status == 200 else None
        except ValueError:
            answer = {} if empty_ok and data.strip() in (b"", b"200 OK") else None
        if not isinstance(answer, dict):
            raise RestCallError(f"{endpoint}: HTTP {response.status}: {_message(data)}", response.status)
        return answer

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None and (time.monotonic() - self._local.last > _REUSE_WITHIN_S
                                                           or _readable(conn.sock)):
            conn.close()  # idle long enough that the server may be closing it, or closed (readable: EOF)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._tls)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None


def _readable(sock: Any) -> bool:
    """Whether an idle kept-alive socket has something to read: the server's EOF (it closed), not an answer.
    ``poll``, not ``select``: a process with many files has descriptors above ``select``'s 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def rest_runs_for(uri: str) -> RestRuns | None:
    """Bare REST calls for the tracking server at ``uri``, or None where MLflow's client must send them (see
    the module's docstring), or where they cannot be set up (then MLflow's client says why, if it must)."""
    try:
        return _rest_runs_for(uri)
    except Exception:  # noqa: BLE001 — an odd setting is MLflow's client's to judge, not a reason to stop
        return None


def _rest_runs_for(uri: str) -> RestRuns | None:
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.username:
        return None
    proxies = urllib.request.getproxies()
    if (parsed.scheme in proxies or "all" in proxies) and not urllib.request.proxy_bypass(parsed.hostname):
        return None
    if any(os.environ.get(name) for name in ("MLFLOW_ACTIVE_MODEL_ID", "_MLFLOW_ACTIVE_MODEL_ID",
                                             "_MLFLOW_DATABRICKS_TRAFFIC_ID")):
        return None  # MLflow's client adds a model id to every metric, or a Databricks header
    from requests.utils import get_netrc_auth

    if get_netrc_auth(uri):  # requests sends these, over any Authorization header
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
    tls = _tls_context(creds.server_cert_path, creds.client_cert_path, creds.ignore_tls_verification) \
        if parsed.scheme == "https" else None
    return RestRuns(uri, resolve_request_headers, auth, tls, float(MLFLOW_HTTP_REQUEST_TIMEOUT.get()))


def _tls_context(server_cert: str | None, client_cert: str | None, insecure: bool) -> ssl.SSLContext:
    """The certificate checks of MLflow's ``requests`` session: MLflow's CA file or directory, else
    ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or certifi's bundle; MLflow's client certificate (one PEM)."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        import certifi

        ca = server_cert or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or certifi.where()
        context = ssl.create_default_context(capath=ca) if os.path.isdir(ca) else \
            ssl.create_default_context(cafile=ca)
    if client_cert:
        context.load_cert_chain(client_cert)
    return context


def _ms_or_now(ms: int) -> int:
    """A time in ms, 0 (unknown) as now: MLflow's client sends ``start_time or now``."""
    return int(ms) or int(time.time() * 1000)


def _key_values(items: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def _message(data: bytes) -> str:
    """The server's error message (MLflow's ``{"error_code", "message"}``), else the start of its answer."""
    try:
        answer = json.loads(data)
        return f"{answer.get('error_code', '')}: {answer.get('message', '')}"[:500]
    except (ValueError, AttributeError):
        return data[:500].decode("utf-8", "replace")
