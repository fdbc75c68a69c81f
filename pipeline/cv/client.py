"""The Dask client: connect to a scheduler, or start the embedded LocalCluster.

Everything started here listens on 127.0.0.1 (scheduler, workers and the
dashboard); a remote scheduler is only ever connected to. With
``cluster.security`` every connection is TLS (``distributed.Security``). No
numerics here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from typing import TYPE_CHECKING, Any

from ..config import ClusterConfig, SecurityConfig
from ..errors import ClusterError, SweepError
from ..gc_pause import collector_paused
from .lazy_dashboard import SCHEDULER_KWARGS, serve_dashboard_on_first_visit

if TYPE_CHECKING:
    from distributed import Client, LocalCluster, Security

__all__ = ["check_scheduler", "cluster_workers", "dask_security", "live_workers", "open_client",
           "prestart_local_workers", "total_threads"]

_CONNECT_TIMEOUT_S = 10
_WORKER_PRELOAD = ("pipeline.cv.fold_models", "scipy.linalg")
_FORKSERVER_PRELOAD = ("pipeline.cv.forkserver_exit", "distributed", "numpy", *_WORKER_PRELOAD)
#: distributed's default ``distributed.nanny.pre-spawn-environ`` (a test checks they agree)
PRE_SPAWN_ENV = {"MALLOC_TRIM_THRESHOLD_": 65536, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}
_PREFLIGHT_TIMEOUT_S = 5.0
WORKER_WAIT_S = 60.0  # how long a placement waits for a worker when every worker has left


def check_scheduler(cfg: ClusterConfig) -> None:
    """Fail within seconds, naming the address, if the configured scheduler does not accept connections.

    A TCP connect only (no Dask handshake): cheap enough to run before any
    data is planned or any MLflow run is created. Nothing to check for the
    embedded cluster.
    """
    import socket
    from urllib.parse import urlsplit

    if not cfg.address:
        return
    parts = urlsplit(cfg.address if "://" in cfg.address else f"tcp://{cfg.address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # inproc:// or ucx://: left to Dask
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError as e:
        raise ClusterError(f"cluster.address {cfg.address!r} is not a valid address ({e}).") from None
    try:
        with socket.create_connection((host, port), timeout=_PREFLIGHT_TIMEOUT_S):
            pass
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {cfg.address} ({e.strerror or e}); check that it is running "
            "and cluster.address, or set cluster.address to null to start a local cluster."
        ) from None


def dask_security(cfg: SecurityConfig | None, *, local_cluster: bool = False) -> Security | None:
    """``cluster.security`` as a ``distributed.Security`` (None without TLS).

    A LocalCluster started here is one party: its scheduler and workers use
    the client's certificate too.
    """
    if cfg is None:
        return None
    from distributed import Security

    cert, key = cfg.tls_client_cert, cfg.tls_client_key
    roles = {"tls_client_cert": cert, "tls_client_key": key}
    if local_cluster:
        roles |= {"tls_scheduler_cert": cert, "tls_scheduler_key": key, "tls_worker_cert": cert, "tls_worker_key": key}
    return Security(require_encryption=cfg.require_encryption, tls_ca_file=cfg.tls_ca_file,
                    **{k: v for k, v in roles.items() if v is not None})


def prestart_local_workers(cfg: ClusterConfig, preload: Sequence[str] = ()) -> None:
    """Start the process the embedded cluster's workers will be forked from, and return at once.

    A spawned worker is a new interpreter that imports distributed, NumPy,
    SciPy and the fold models: about a second of CPU each, most of the
    embedded cluster's start (2.3–2.6 s of a 9 s quickstart on two cores).
    multiprocessing's fork server imports them once, while the driver opens
    the study and starts the tracking process; each worker is then a fork of
    it (≈ 0.1 s). ``preload`` adds modules the sweep will need on every
    worker (the rows engine's solvers). Called again, or after the server
    started, it does nothing. A remote cluster, or workers that are threads,
    start nothing here.

    The server is started with Dask's pre-spawn environment
    (``distributed.nanny.pre-spawn-environ``: one BLAS/OpenMP thread per
    worker, set before NumPy loads; the fixed ``PYTHONHASHSEED`` of Dask's
    nannies), which a forked worker cannot set for itself any more.
    """
    if not _forked_workers(cfg):
        return
    import multiprocessing
    import os
    from multiprocessing import forkserver

    import dask

    # distributed's defaults are registered only when it is imported (0.35 s, on this path): ours, then the user's
    env = {k: str(v) for k, v in {**PRE_SPAWN_ENV, **dask.config.get("distributed.nanny.pre-spawn-environ", {})}.items()}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"  # distributed.nanny's choice, for consistent hashing across workers
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(dict.fromkeys([*_FORKSERVER_PRELOAD, *preload])))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # distributed would otherwise set its own preload list, importing pandas and lz4 into the driver to
    # check them (the server is running already: the list would be ignored anyway)
    import distributed.utils

    distributed.utils._forkserver_preload_set = True


def _local_cluster(cfg: ClusterConfig, security: Security | None) -> LocalCluster:
    """The embedded LocalCluster of ``cfg``, started."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=cfg.n_workers,
        threads_per_worker=cfg.threads_per_worker,
        processes=cfg.processes,
        # also with thread workers: bound to 127.0.0.1, not in-process
        protocol="tcp://" if security is None else "tls://",
        security=security,
        host="127.0.0.1",
        dashboard_address=cfg.dashboard_address,
        # no dashboard: the scheduler still serves /health on HTTP; keep it on a free loopback
        # port (distributed would try 8787 first and warn when it is taken)
        # with one, Bokeh is imported on the dashboard's first visit (pipeline.cv.lazy_dashboard)
        scheduler_kwargs=SCHEDULER_KWARGS if cfg.dashboard_address else {"dashboard": False,
                                                                        "dashboard_address": "127.0.0.1:0"},
        memory_limit=cfg.memory_limit,
        silence_logs=logging.CRITICAL,
        # the workers import what their tasks run while they start (≈ 0.5 s each,
        # scipy included), not when the first data-pass or trial task arrives
        preload=list(_WORKER_PRELOAD),
    )
    if cfg.dashboard_address:
        cluster.sync(serve_dashboard_on_first_visit, cluster.scheduler)  # in the scheduler's event loop
    return cluster


def _forked_workers(cfg: ClusterConfig) -> bool:
    """Whether the workers are processes of an embedded cluster, forked from the fork server (POSIX only;
    elsewhere Dask's default start method stays)."""
    import multiprocessing

    return not cfg.address and cfg.processes and "forkserver" in multiprocessing.get_all_start_methods()


@contextlib.contextmanager
def open_client(cfg: ClusterConfig) -> Iterator[Client]:
    """Yield a connected ``distributed.Client``; close it (and any cluster it started) on exit."""
    import dask
    from distributed import Client
    from distributed.comm import CommClosedError

    # A failed task reaches the driver as its exception (bad data: a DataError the CLI prints in one
    # line); the worker's own "Compute Failed" log with the remote traceback would only repeat it.
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cluster: LocalCluster | None = None
    prestart_local_workers(cfg)  # a no-op when the caller started it early, as a sweep does
    settings = {"distributed.admin.large-graph-warning-threshold": "1GB"}  # not the "large graph" chatter
    if _forked_workers(cfg):
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    with dask.config.set(settings):
        try:
            if cfg.address:
                client = Client(cfg.address, timeout=_CONNECT_TIMEOUT_S, set_as_default=False,
                                security=dask_security(cfg.security))
            else:
                security = dask_security(cfg.security, local_cluster=True)
                with collector_paused():  # the scheduler imports its dashboard (bokeh) as it starts
                    cluster = _local_cluster(cfg, security)
                client = Client(cluster, set_as_default=False, security=security)
        except (OSError, TimeoutError) as e:
            target = cfg.address or "an embedded LocalCluster"
            raise ClusterError(
                f"cannot reach the Dask scheduler at {target} within {_CONNECT_TIMEOUT_S} s ({e}); "
                "check cluster.address, or set it to null to start a local cluster."
            ) from None
        aborted = False
        try:
            from .allocator import HeapTemporaries

            client.register_plugin(HeapTemporaries())  # (see allocator: the binomial and Poisson passes)
            yield client
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the caller exits at once (see cli._run)
            aborted = True
            if cluster is not None:
                _kill_local_workers(cluster)
            raise
        except CommClosedError as e:  # the scheduler went away while we talked to it
            raise ClusterError(
                f"lost the connection to the Dask scheduler at {cfg.address or 'the embedded cluster'} ({e}); "
                "completed trials are kept in the study. Run the same command again once a scheduler is up "
                "(with cluster.address pointing at it) to finish the study."
            ) from None
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=2 if aborted else 5)
            if cluster is not None and not aborted:
                with contextlib.suppress(Exception):
                    cluster.close(timeout=5)


def _kill_local_workers(cluster: LocalCluster) -> None:
    """SIGKILL the worker processes of an embedded LocalCluster.

    A graceful close of a LocalCluster takes seconds to tens of seconds on a
    busy machine; a process told to stop (SIGTERM, with ~10 s before SIGKILL
    under Kubernetes or Slurm) cannot wait for it. The workers hold nothing
    that is not recorded elsewhere (the study and MLflow are written first).
    """
    import os
    import signal

    for nanny in list(getattr(cluster, "workers", {}).values()):
        pid = getattr(nanny, "pid", None)  # Nanny.pid: its worker process
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def total_threads(client: Client) -> int:
    """Worker threads in the cluster right now (at least 1)."""
    return max(1, sum(w.get("nthreads", 1) for w in cluster_workers(client).values()))


def cluster_workers(client: Client) -> dict[str, dict[str, Any]]:
    """Every worker of the cluster now: its address and what the scheduler knows of it (one round trip).

    Asked for all of them: distributed 2025.4 to 2026.6 listed at most five unless asked (dask/distributed#9045,
    fixed by #9308), so on a larger cluster the folds went to five workers and a fold on a sixth looked lost
    whenever the five listed changed; older versions ignore the keyword."""
    return dict(client.scheduler_info(n_workers=-1).get("workers", {}))


def live_workers(client: Client, wait_s: float = WORKER_WAIT_S) -> dict[str, dict[str, Any]]:
    """The cluster's workers (:func:`cluster_workers`, by address); when every worker has left, the first ones
    to join within ``wait_s`` (a nanny restarts a killed worker in seconds, an autoscaler in a minute).
    Raises :class:`SweepError` when none does: the trials so far are in the study, and the same command
    resumes it."""
    workers = cluster_workers(client)
    if not workers:
        try:
            client.wait_for_workers(1, timeout=wait_s)
        except TimeoutError:
            pass
        workers = cluster_workers(client)
    if not workers:
        raise SweepError(f"every Dask worker left the cluster and none joined within {wait_s:.0f} s; the completed "
                         "trials are kept in the study: check the workers' logs and memory limits, start workers, "
                         "and run the same command again to resume.")
    return dict(sorted(workers.items()))
