"""The embedded cluster's workers, forked from a preloaded fork server (:func:`pipeline.cv.prestart_local_workers`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# A fresh driver process: the fork server is one per process, started with the first preload list it is given.
_DRIVER = textwrap.dedent("""
    import json, os, sys
    from pipeline.config import ClusterConfig
    from pipeline.cv import open_client, prestart_local_workers

    def temporaries_faults():
        import resource
        import numpy as np
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):  # 1 MB arrays: above glibc's fixed 128 KB mmap threshold, below 32 MB
            a = np.ones(2**17)
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def probe():
        from threadpoolctl import threadpool_info
        loaded = "numba" in sys.modules  # before anything here could import it
        signatures = gram_signatures = 0
        if loaded:
            from pipeline.solvers._cd import sweep_dense, sweep_gram
            signatures = len(sweep_dense.signatures)
            gram_signatures = len(sweep_gram.signatures)
        return {"blas_threads": sorted({lib["num_threads"] for lib in threadpool_info()}),
                "env": os.environ.get("OPENBLAS_NUM_THREADS"), "hash_seed": os.environ.get("PYTHONHASHSEED"),
                "numba_loaded": loaded, "dense_signatures": signatures, "gram_signatures": gram_signatures,
                "parent": os.getppid(), "faults": temporaries_faults(),
                "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_")}

    cfg = ClusterConfig(n_workers=2, dashboard_address=None)
    prestart_local_workers(cfg, sys.argv[1:])
    with open_client(cfg) as client:
        out = list(client.run(probe).values())
    print(json.dumps({"workers": out, "driver": os.getpid()}))
""")


def _probe(*preload: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _DRIVER, *preload], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("preload", [(), ("pipeline.cv.warm_dense_kernel",), ("pipeline.cv.warm_gram_kernel",)])
def test_forked_workers_have_one_blas_thread_and_what_was_preloaded(preload) -> None:
    pytest.importorskip("threadpoolctl")
    out = _probe(*preload)
    assert len(out["workers"]) == 2
    for w in out["workers"]:
        assert w["parent"] != out["driver"]  # forked by the fork server, not spawned by the driver's nannies
        # the fork server got Dask's pre-spawn environment before NumPy loaded: one BLAS thread per worker
        assert w["env"] == "1" and w["blas_threads"] == [1]
        assert w["hash_seed"] == "6640"
        # Dask's trim setting fixes glibc's mmap threshold at 128 KB; the plugin raised it (pipeline.cv.allocator):
        # 50 arrays of 1 MB reuse the heap instead of faulting in 256 fresh pages each
        assert w["trim"] == "65536" and w["faults"] < 2_000
        assert w["numba_loaded"] == bool(preload)  # the Gram path never loads numba
        if preload:  # loaded in the fork server: the worker compiles nothing
            gram = preload == ("pipeline.cv.warm_gram_kernel",)
            assert (w["dense_signatures"], w["gram_signatures"]) == ((0, 1) if gram else (1, 0))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_trim_setting_maps_every_temporary_until_the_threshold_is_raised() -> None:
    """The control of the workers' fault count above: a process with Dask's trim setting maps every 1 MB array
    afresh (about 256 page faults each), and :func:`~pipeline.cv.allocator.heap_temporaries` stops it."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy as np
        from pipeline.cv.allocator import heap_temporaries
        if sys.argv[1] == "raised":
            assert heap_temporaries()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(50):
            a = np.ones(2**17)
            del a
        print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """)
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    faults = {}
    for case in ("fixed", "raised"):
        done = subprocess.run([sys.executable, "-c", script, case], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        faults[case] = int(done.stdout.split()[-1])
    assert faults["fixed"] >= 50 * 200 and faults["raised"] < 2_000, faults


def test_our_pre_spawn_environment_is_distributeds_default() -> None:
    import distributed  # noqa: F401  (registers its defaults)
    import dask

    from pipeline.cv.client import PRE_SPAWN_ENV

    assert dask.config.get("distributed.nanny.pre-spawn-environ") == PRE_SPAWN_ENV


def test_the_workers_preload_the_readers_of_the_source_and_the_kernel_of_a_certain_rows_engine(tmp_path) -> None:
    """Against the engine rule itself (:func:`pipeline.engine.choose_engine`) and the source kinds that read
    with pandas."""
    import numpy as np
    import scipy.sparse as sp

    from pipeline.config import DataConfig, FoldsConfig
    from pipeline.cv.engines import worker_preload
    from pipeline.data import plan_data

    rng = np.random.default_rng(0)
    np.save(tmp_path / "y.npy", rng.normal(size=50))

    def plan(name: str, X) -> object:
        if sp.issparse(X):
            sp.save_npz(tmp_path / name, X)
        else:
            np.save(tmp_path / name, X)
        return plan_data(DataConfig(source=str(tmp_path / name), target=str(tmp_path / "y.npy")), FoldsConfig(k=5))

    tall, wide = plan("tall.npy", rng.normal(size=(50, 5))), plan("wide.npy", rng.normal(size=(50, 41)))
    at_edge = plan("edge.npy", rng.normal(size=(50, 40)))  # p = 40 = the smallest fold's 40 training rows
    sparse = plan("sparse.npz", sp.random(50, 5, density=0.5, format="csr", random_state=0))
    assert worker_preload("auto", tall, 5) == ()
    assert worker_preload("auto", at_edge, 5) == ()  # gram: p ≤ n_train
    assert worker_preload("auto", wide, 5) == ("pipeline.cv.warm_dense_kernel",)
    assert worker_preload("gram", wide, 5) == ()
    assert worker_preload("rows", tall, 5) == ("pipeline.cv.warm_dense_kernel",)
    assert worker_preload("auto", sparse, 5) == ("pipeline.cv.warm_sparse_kernel",)
    bundled = plan_data(DataConfig(), FoldsConfig())  # the bundled diabetes CSV
    assert worker_preload("auto", bundled, 5) == ("pandas",)
    # penalty factors or limits: every fit runs the compiled sweep on a Gram, on either engine
    assert worker_preload("auto", tall, 5, controls=True) == ("pipeline.cv.warm_gram_kernel",)
    assert worker_preload("auto", wide, 5, controls=True) == ("pipeline.cv.warm_dense_kernel",
                                                              "pipeline.cv.warm_gram_kernel")


_DASHBOARD = textwrap.dedent("""
    import json, sys, urllib.error, urllib.request
    from pipeline.config import ClusterConfig
    from pipeline.cv import open_client

    def get(url):
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                return r.status, r.url, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, url, ""

    out = {}
    with open_client(ClusterConfig(n_workers=1, processes=False, dashboard_address="127.0.0.1:0")) as client:
        link = client.dashboard_link
        base = link.rsplit("/", 1)[0]
        out["bokeh_at_start"] = "bokeh" in sys.modules
        out["health"] = get(base + "/health")[::2]
        out["bokeh_after_health"] = "bokeh" in sys.modules
        status, url, body = get(link)
        out["status"] = [status, url == link, "Dask" in body and "bokeh" in body.lower()]
        out["bokeh_after_visit"] = "bokeh" in sys.modules
        out["root"] = get(base + "/")[:2]
        out["workers"] = get(base + "/workers")[0]
        out["unknown"] = get(base + "/no-such-page")[0]
    out["link"] = link
    print(json.dumps(out))
""")


def test_the_dashboard_is_connected_on_its_first_visit() -> None:
    """The embedded scheduler starts without Bokeh (0.2–0.4 s of the driver's CPU at every start); the printed
    link serves the dashboard from the first visit, other pages too, and an unknown path is still a 404."""
    done = subprocess.run([sys.executable, "-c", _DASHBOARD], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["link"].endswith("/status")
    assert not out["bokeh_at_start"] and not out["bokeh_after_health"]
    assert out["health"] == [200, "ok"]
    assert out["status"] == [200, True, True] and out["bokeh_after_visit"]
    assert out["root"] == [200, out["link"]]  # Bokeh's own redirect of / to /status
    assert out["workers"] == 200 and out["unknown"] == 404
