"""Dask TLS end to end: a real ``dask scheduler`` and ``dask worker`` speaking only tls:// on 127.0.0.1.

The certificate authority and the certificate are made here. ``regsweep
sweep`` with ``cluster.security`` completes a small sweep on that cluster;
without it, it is refused within seconds with a one-line error naming the
address (exit 1, not a hang).
"""

from __future__ import annotations

import functools
import json
import shutil
import time

import pytest

from tests.certs import make_tls_files

from .conftest import DASK, _Proc, _wait_for_workers, free_port, run_regsweep, stop_processes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    from distributed import Client, Security

    root = tmp_path_factory.mktemp("tls")
    tls = make_tls_files(root)
    flags = ["--tls-ca-file", tls["tls_ca_file"], "--tls-cert", tls["tls_client_cert"],
             "--tls-key", tls["tls_client_key"]]
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    scheduler = _Proc("dask scheduler (tls)",
                      [DASK, "scheduler", "--protocol", "tls", "--host", "127.0.0.1", "--port", str(port),
                       "--dashboard-address", f"127.0.0.1:{free_port()}", "--idle-timeout", "30 minutes", *flags],
                      root / "scheduler.log", root)
    procs = [scheduler]
    try:
        procs.append(_Proc("dask worker (tls)",
                           [DASK, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                            "--local-directory", str(root / "w"), "--death-timeout", "60", *flags],
                           root / "worker.log", root))
        security = Security(require_encryption=True, tls_ca_file=tls["tls_ca_file"],
                            tls_client_cert=tls["tls_client_cert"], tls_client_key=tls["tls_client_key"])
        _wait_for_workers(address, 1, procs, functools.partial(Client, security=security))
        yield address, tls
    finally:
        stop_processes(procs[::-1])


def test_sweep_over_tls(tmp_path, tls_cluster, mlflow_template):
    address, tls = tls_cluster
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")  # the default tracking.uri, already initialised
    proc = run_regsweep(["sweep", "--set", f"cluster.address={address}", "--set", "search.n_trials=4",
                         *(a for k, v in tls.items() for a in ("--set", f"cluster.security.{k}={v}")),
                         "--set", "tracking.log_trials=false", "--no-progress", "--summary-json", "s.json"],
                        cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "Dask: 1 workers, 1 threads" in proc.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_trials_complete"] == 4 and summary["n_rows"] == 442


def test_without_security_or_with_another_ca_the_tls_scheduler_is_refused(tmp_path, tls_cluster, mlflow_template):
    address, _ = tls_cluster
    proc = run_regsweep(["sweep", "--set", f"cluster.address={address}"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "needs cluster.security" in proc.stderr and list(tmp_path.iterdir()) == []  # refused at config load

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    foreign = make_tls_files(other)  # a certificate the cluster's CA did not sign
    t0 = time.monotonic()
    proc = run_regsweep(["sweep", "--set", f"cluster.address={address}", "--set", "search.n_trials=2",
                         *(a for k, v in foreign.items() for a in ("--set", f"cluster.security.{k}={v}"))],
                        cwd=tmp_path, timeout=90)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and address in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 60, elapsed  # bounded by the 10 s connect timeout plus start-up, not a hang
