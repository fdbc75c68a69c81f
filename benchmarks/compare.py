"""regsweep side by side with what users would run instead, and with the one-pass limit.

Run:  python benchmarks/compare.py            # the full comparison (hours on 2 shared cores)
      python benchmarks/compare.py --quick    # a few-minute smoke run (n = 10⁴, 10⁵ at p = 20)
      python benchmarks/compare.py --n 1e6 --p 100 --repeats 3    # one size
      python benchmarks/compare.py --n '' --big-n 1e7 1e8          # regsweep alone, synthetic on the workers

Methods (same data, same fold assignment, 100 candidates × 5 folds; same TPE
sampler and seed where the method searches with Optuna):

``regsweep``        ``regsweep sweep`` as a user runs it: the CLI, an embedded
                    2-worker LocalCluster, Optuna and MLflow in SQLite files,
                    one MLflow child run per trial, the best model registered.
``optuna_sklearn``  Optuna TPE (regsweep's sampler settings and search space)
                    + scikit-learn ``cross_val_score(n_jobs=2)`` on
                    ``StandardScaler`` + ``Lasso`` / ``Ridge`` / ``ElasticNet``.
``enetcv``          ``ElasticNetCV(l1_ratio=[.1, .5, .7, .9, 1], alphas=20,
                    cv=5 folds, n_jobs=2)`` after ``StandardScaler``.
``optuna_searchcv`` optuna-integration's ``OptunaSearchCV`` over ElasticNet
                    (alpha log-uniform, l1_ratio uniform), TPE seed 0, n_jobs=2.
``daskml_grid``     dask-ml's ``GridSearchCV`` (the same 5 × 20 grid as
                    ``enetcv``) on a 2-worker LocalCluster.
``onepass``         the one-pass limit: read X once (or generate it) and form
                    XᵀX, Xᵀy block by block in one process with BLAS. No method
                    that reads the data can beat it.

Data: synthetic ``y = Xβ + noise`` from :func:`pipeline.data.synthetic_rows`
(equicorrelated columns, ρ = 0.5, p/5 informative, noise σ = 1, seed 0),
written once to ``X.npy`` / ``y.npy`` for n ≤ ``--max-file-n``; every method
reads that file (regsweep through ``data.source: X.npy``, the others with
``np.load``), so loading is counted alike. Above it (``--big-n``) regsweep
generates the rows on its workers (``data.source: synthetic``) and the
one-pass limit reports generation and Gram time apart. Folds: regsweep's
(``pipeline.folds.kfold_folds``, seed 0), given to scikit-learn as a
``PredefinedSplit``. Test set: 50 000 further rows of the same distribution
(rows 2⁴⁰ onward, independent of the training rows); every method's best model
is scored on it (``test_mse``).

Wall time is measured around each method's own process, interpreter start-up
and imports included (the time a user waits), up to the moment its best model
is fitted. A baseline that would exceed ``--budget-s`` runs as many trials as
fit in the budget and is extrapolated linearly to 100 candidates (load and
refit counted once): ``extrapolated`` is true and ``trials_run`` says how many
ran. Peak resident memory: every process of the method's process tree (driver,
Dask workers, joblib workers, MLflow writer) is sampled every 0.2 s for its
``VmHWM`` (the kernel's high-water mark) in ``/proc``. Every baseline runs
under an address-space limit (``--mem-limit-gib``, default 10) so that a
method that needs more memory fails with ``MemoryError`` (reported as
``failed``) instead of exhausting the shared machine.

Outputs under ``--out`` (default ``benchmarks/results/``): ``compare.jsonl``
(one JSON object per run), ``compare.md`` (the tables) and ``compare.png``
(wall time against n, log-log).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
K = 5
N_CAND = 100
SEED = 0
N_TEST = 50_000
TEST_START = 2**40
L1_RATIOS = (0.1, 0.5, 0.7, 0.9, 1.0)
N_ALPHAS = 20
BLOCK_ROWS = 65_536
BIG_BLOCK_ROWS = 262_144
METHODS = ("onepass", "regsweep", "optuna_sklearn", "enetcv", "optuna_searchcv", "daskml_grid")


def synth_params(n: int, p: int) -> tuple[int, int, int, float, float, int]:
    """``DataPlan.synthetic`` for the benchmark data: p/5 informative, ρ = 0.5, σ = 1, seed 0."""
    return (n, p, max(1, p // 5), 0.5, 1.0, SEED)


# ====================================================================== memory
def _ppid_map() -> dict[int, int]:
    out: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        out[int(d)] = int(s[s.rindex(")") + 2 :].split()[1])
    return out


def _status(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    name, hwm = "?", 0
    for line in text.splitlines():
        if line.startswith("Name:"):
            name = line.split(None, 1)[1]
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])  # kB
    return name, hwm


def _cmd(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return ""


class TreeMonitor(threading.Thread):
    """Peak resident memory (``VmHWM``) of a process and all its descendants, sampled in ``/proc``.

    ``VmHWM`` is the kernel's own high-water mark, so a sample only misses
    growth in the last interval before a process exits.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.interval = interval
        self.peaks: dict[int, dict[str, Any]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        parents = _ppid_map()
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        todo, tree = [self.root], []
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, ()))
        for pid in tree:
            st = _status(pid)
            if st is None or st[1] == 0:
                continue
            rec = self.peaks.setdefault(pid, {"pid": pid, "name": st[0], "cmd": _cmd(pid), "hwm_kb": 0,
                                              "role": "driver" if pid == self.root else "child"})
            rec["hwm_kb"] = max(rec["hwm_kb"], st[1])

    def stop(self) -> list[dict[str, Any]]:
        self._halt.set()
        self.join(5)
        return sorted(self.peaks.values(), key=lambda r: -r["hwm_kb"])


def _label(rec: dict[str, Any]) -> str:
    cmd = rec["cmd"]
    if rec["role"] == "driver":
        return "driver"
    if "loky" in cmd or "joblib" in cmd:
        return "joblib-worker"
    if "spawn_main" in cmd or "forkserver" in cmd:
        return "mp-child"
    if "resource_tracker" in cmd:
        return "resource-tracker"
    return rec["name"]


def run_monitored(cmd: list[str], *, cwd: Path, log: Path, timeout: float, as_limit_gib: float | None,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` in its own session; return rc, wall time, end epoch and per-process peak RSS."""
    limit = None if as_limit_gib is None else int(as_limit_gib * 2**30)

    def preexec() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start_epoch = time.time()
    t0 = time.perf_counter()
    with open(log, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=preexec, start_new_session=True)
        mon = TreeMonitor(proc.pid)
        mon.start()
        status: int | str
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            status = "timeout"
        wall = time.perf_counter() - t0
        # the session we started: stop anything of it still alive (a timeout, or orphans)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(1.0 if sig == signal.SIGTERM else 0)
        proc.wait()
    procs = mon.stop()
    for r in procs:
        r["label"] = _label(r)
        r["peak_rss_mb"] = round(r.pop("hwm_kb") / 1024, 1)
    return {"rc": status, "wall_s": wall, "start_epoch": start_epoch, "processes": procs}


# ======================================================================= data
def make_npy(data_dir: Path, n: int, p: int) -> tuple[Path, Path]:
    """X.npy / y.npy for (n, p), written once and reused (generated block by block)."""
    from pipeline.data import synthetic_rows

    d = data_dir / f"n{n}_p{p}"
    X_path, y_path = d / "X.npy", d / "y.npy"
    if (d / "done").exists():
        return X_path, y_path
    d.mkdir(parents=True, exist_ok=True)
    X = np.lib.format.open_memmap(X_path, mode="w+", dtype=np.float64, shape=(n, p))
    y = np.lib.format.open_memmap(y_path, mode="w+", dtype=np.float64, shape=(n,))
    params = synth_params(n, p)
    for a in range(0, n, 1 << 18):
        b = min(n, a + (1 << 18))
        X[a:b], y[a:b] = synthetic_rows(params, a, b - a)
    X.flush()
    y.flush()
    del X, y
    (d / "done").write_text("ok\n")
    return X_path, y_path


def test_set(p: int) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.data import synthetic_rows

    return synthetic_rows(synth_params(N_TEST, p), TEST_START, N_TEST)


# =============================================================== child methods
# Each runs in its own process: ``compare.py --child METHOD SPEC.json RESULT.json``.
# ``fit_done_epoch`` marks the end of the timed part (best model fitted); the test
# score after it is not timed.
def _load(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return np.load(spec["X"]), np.load(spec["y"])


def _folds(n: int) -> Any:
    from sklearn.model_selection import PredefinedSplit

    from pipeline.folds import kfold_folds

    return PredefinedSplit(kfold_folds(0, n, K, SEED))


def _test_mse(model: Any, p: int) -> float:
    Xt, yt = test_set(p)
    return float(np.mean((model.predict(Xt) - yt) ** 2))


def child_onepass(spec: dict[str, Any]) -> dict[str, Any]:
    """One process, one pass: XᵀX, Xᵀy, Σx, Σy, yᵀy per block (BLAS); nothing else."""
    p, n = spec["p"], spec["n"]
    rows = min(n, spec.get("max_rows") or n)
    G = np.zeros((p, p))
    q = np.zeros(p)
    sx = np.zeros(p)
    sy = yy = 0.0
    gen_s = gram_s = 0.0
    t0 = time.perf_counter()
    if spec["X"]:
        X = np.load(spec["X"], mmap_mode="r")
        Y = np.load(spec["y"], mmap_mode="r")
    else:
        from pipeline.data import synthetic_rows

        params = synth_params(n, p)
    block = spec["block_rows"]
    for a in range(0, rows, block):
        b = min(rows, a + block)
        t1 = time.perf_counter()
        if spec["X"]:
            Xb, yb = np.array(X[a:b]), np.array(Y[a:b])
        else:
            Xb, yb = synthetic_rows(params, a, b - a)
        t2 = time.perf_counter()
        G += Xb.T @ Xb
        q += Xb.T @ yb
        sx += Xb.sum(axis=0)
        sy += float(yb.sum())
        yy += float(yb @ yb)
        t3 = time.perf_counter()
        gen_s += t2 - t1
        gram_s += t3 - t2
    total = time.perf_counter() - t0
    scale = n / rows
    return {"fit_done_epoch": time.time(), "pass_s": total * scale, "read_or_generate_s": gen_s * scale,
            "gram_s": gram_s * scale, "rows_done": rows, "extrapolated": rows < n, "checksum": float(G.trace())}


def _regsweep_sampler_space(spec: dict[str, Any]) -> tuple[Any, Any]:
    from pipeline.search import SearchSpace
    from pipeline.search.study import _sampler

    s = spec["space"]
    return _sampler(SEED), SearchSpace(tuple(s["penalties"]), tuple(s["lambda1"]), tuple(s["lambda2"]))


def _sk_model(penalty: str, lam1: float, lam2: float, n_train: float) -> Any:
    """regsweep's (penalty, λ1, λ2) as a scikit-learn pipeline with the same objective (glmnet's)."""
    from sklearn.linear_model import ElasticNet, Lasso, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if penalty == "l1":
        est = Lasso(alpha=lam1)
    elif penalty == "l2":
        est = Ridge(alpha=lam2 * n_train)  # ‖r‖²/(2n) + λ2/2‖β‖²  ==  (‖r‖² + n·λ2‖β‖²)/(2n)
    else:
        est = ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2))
    return make_pipeline(StandardScaler(), est)


def _extrapolate(t_fixed: float, t_trials: float, done: int) -> dict[str, Any]:
    """Measured time (``timed_s``) and the time for all 100 candidates (``inner_s``, linear in trials)."""
    full = done >= N_CAND
    inner = t_fixed + t_trials * (1 if full else N_CAND / max(1, done))
    return {"timed_s": t_fixed + t_trials, "inner_s": inner, "extrapolated": not full}


def child_optuna_sklearn(spec: dict[str, Any]) -> dict[str, Any]:
    import optuna
    from sklearn.model_selection import cross_val_score

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    X, y = _load(spec)
    cv = _folds(len(y))
    n_train = len(y) * (K - 1) / K
    sampler, space = _regsweep_sampler_space(spec)
    t_load = time.perf_counter() - t0

    def objective(trial: Any) -> float:
        cand = space.suggest(trial)
        penalty, l1, l2 = cand.penalty, cand.lambda1, cand.lambda2
        scores = cross_val_score(_sk_model(penalty, l1, l2, n_train), X, y, cv=cv,
                                 scoring="neg_mean_squared_error", n_jobs=2)
        return float(-scores.mean())

    study = optuna.create_study(direction="minimize", sampler=sampler)
    t1 = time.perf_counter()
    study.optimize(objective, n_trials=N_CAND, timeout=spec["budget_s"])
    t_trials = time.perf_counter() - t1
    done = len(study.trials)
    bp = study.best_params
    t2 = time.perf_counter()
    best = _sk_model(bp["penalty"], bp.get("lambda1", 0.0), bp.get("lambda2", 0.0), len(y)).fit(X, y)
    t_refit = time.perf_counter() - t2
    return {"fit_done_epoch": time.time(), "trials_run": done, **_extrapolate(t_load + t_refit, t_trials, done),
            "load_s": t_load, "trials_s": t_trials, "refit_s": t_refit, "best_cv_mse": study.best_value,
            "best_params": bp, "test_mse": _test_mse(best, spec["p"])}


def _enet_pipe(**kw: Any) -> Any:
    from sklearn.linear_model import ElasticNet, ElasticNetCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    est = ElasticNetCV(**kw) if kw else ElasticNet()
    return Pipeline([("scale", StandardScaler()), ("enet", est)])


def child_enetcv(spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    X, y = _load(spec)
    t_load = time.perf_counter() - t0
    pipe = _enet_pipe(l1_ratio=list(L1_RATIOS), alphas=N_ALPHAS, cv=_folds(len(y)), n_jobs=2)
    pipe.fit(X, y)
    t = time.perf_counter() - t0
    est = pipe.named_steps["enet"]
    cv_mse = float(np.min(est.mse_path_.mean(axis=-1)))
    return {"fit_done_epoch": time.time(), "trials_run": N_CAND, "extrapolated": False, "inner_s": t, "timed_s": t,
            "load_s": t_load, "best_cv_mse": cv_mse,
            "best_params": {"alpha": float(est.alpha_), "l1_ratio": float(est.l1_ratio_)},
            "test_mse": _test_mse(pipe, spec["p"])}


def _alpha_range(spec: dict[str, Any]) -> tuple[float, float]:
    s = spec["space"]
    return s["lambda1"][0], max(s["lambda1"][1], s["lambda2"][1])


def child_optuna_searchcv(spec: dict[str, Any]) -> dict[str, Any]:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna_integration import OptunaSearchCV

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    X, y = _load(spec)
    cv = _folds(len(y))
    t_load = time.perf_counter() - t0
    lo, hi = _alpha_range(spec)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    search = OptunaSearchCV(
        _enet_pipe(), {"enet__alpha": FloatDistribution(lo, hi, log=True), "enet__l1_ratio": FloatDistribution(0.0, 1.0)},
        cv=cv, n_trials=N_CAND, timeout=spec["budget_s"], n_jobs=2, study=study,
        scoring="neg_mean_squared_error", refit=False,
    )
    t1 = time.perf_counter()
    search.fit(X, y)
    t_trials = time.perf_counter() - t1
    done = len(study.trials)
    t2 = time.perf_counter()
    best = _enet_pipe().set_params(**study.best_params).fit(X, y)
    t_refit = time.perf_counter() - t2
    return {"fit_done_epoch": time.time(), "trials_run": done, **_extrapolate(t_load + t_refit, t_trials, done),
            "load_s": t_load, "trials_s": t_trials, "refit_s": t_refit, "best_cv_mse": -study.best_value,
            "best_params": study.best_params, "test_mse": _test_mse(best, spec["p"])}


def child_daskml_grid(spec: dict[str, Any]) -> dict[str, Any]:
    from dask_ml.model_selection import GridSearchCV
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                           memory_limit=f"{spec['worker_mem_gib']}GiB")
    client = Client(cluster)
    t_cluster = time.perf_counter() - t0
    X, y = _load(spec)
    cv = _folds(len(y))
    t_load = time.perf_counter() - t0
    lo, hi = _alpha_range(spec)
    alphas = np.geomspace(lo, hi, N_ALPHAS)
    ratios = list(L1_RATIOS)
    n_grid = spec.get("grid_subset") or N_CAND
    if n_grid < N_CAND:  # an even subset of the grid: every l1_ratio, alphas spread over the range
        per = max(1, n_grid // len(ratios))
        alphas = alphas[np.linspace(0, N_ALPHAS - 1, per).round().astype(int)]
    grid = {"enet__alpha": list(alphas), "enet__l1_ratio": ratios}
    done = len(alphas) * len(ratios)
    search = GridSearchCV(_enet_pipe(), grid, cv=cv, scoring="neg_mean_squared_error", refit=False)
    t1 = time.perf_counter()
    search.fit(X, y)
    t_trials = time.perf_counter() - t1
    t2 = time.perf_counter()
    res = search.cv_results_
    best_params = res["params"][int(np.argmax(res["mean_test_score"]))]
    best = _enet_pipe().set_params(**best_params).fit(X, y)
    t_refit = time.perf_counter() - t2
    fit_done = time.time()
    client.close()
    cluster.close()
    return {"fit_done_epoch": fit_done, "trials_run": done, **_extrapolate(t_load + t_refit, t_trials, done),
            "cluster_start_s": t_cluster, "load_s": t_load - t_cluster, "trials_s": t_trials, "refit_s": t_refit,
            "best_cv_mse": -float(np.max(res["mean_test_score"])), "best_params": {k: float(v) for k, v in best_params.items()},
            "test_mse": _test_mse(best, spec["p"])}


def child_regsweep_test(spec: dict[str, Any]) -> dict[str, Any]:
    """Score regsweep's registered model (loaded from MLflow as a user would) on the test set."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(spec["tracking_uri"])
    model = mlflow.pyfunc.load_model(spec["model_uri"])
    Xt, yt = test_set(spec["p"])
    pred = np.asarray(model.predict(pd.DataFrame(Xt, columns=[f"x{j}" for j in range(spec["p"])])))
    return {"test_mse": float(np.mean((pred - yt) ** 2))}


CHILDREN = {name[len("child_"):]: fn for name, fn in globals().items() if name.startswith("child_")}


# ================================================================ orchestration
def _python() -> str:
    return sys.executable


def _child_env(scratch: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if scratch is not None:  # joblib's memmapped copies of X on disk, not in /dev/shm (RAM) of a shared machine
        env["JOBLIB_TEMP_FOLDER"] = str(scratch)
    return env


def run_child(method: str, spec: dict[str, Any], work: Path, *, timeout: float, as_limit_gib: float | None) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    spec_path, res_path = work / f"{method}.spec.json", work / f"{method}.result.json"
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    mon = run_monitored([_python(), str(Path(__file__).resolve()), "--child", method, str(spec_path), str(res_path)],
                        cwd=work, log=work / f"{method}.log", timeout=timeout, as_limit_gib=as_limit_gib,
                        env=_child_env(work))
    out: dict[str, Any] = {"processes": mon["processes"]}
    if res_path.exists():
        res = json.loads(res_path.read_text())
        out.update(res)
        # wall: process start -> best model fitted; a reduced run adds the extrapolated trial time
        measured = res["fit_done_epoch"] - mon["start_epoch"] if "fit_done_epoch" in res else mon["wall_s"]
        startup = measured - res.get("timed_s", measured)
        out["startup_s"] = startup
        if "pass_s" in res:
            out["wall_s"] = res["pass_s"]  # the limit itself (extrapolated past max_rows): no start-up counted
        else:
            out["wall_s"] = measured if not res.get("extrapolated") else startup + res["inner_s"]
        out["status"] = "ok"
    else:
        tail = (work / f"{method}.log").read_text(errors="replace").strip().splitlines()[-3:]
        memerr = any("MemoryError" in t or "Unable to allocate" in t or "Cannot allocate" in t for t in tail)
        out["status"] = ("timeout" if mon["rc"] == "timeout" else "failed: out of memory (address-space limit)"
                         if memerr else f"failed (rc={mon['rc']})")
        out["error"] = " | ".join(tail)[-400:]
        out["wall_s"] = mon["wall_s"]
    return out


def regsweep_config(n: int, p: int, work: Path, X: Path | None, y: Path | None) -> dict[str, Any]:
    data: dict[str, Any]
    if X is not None:
        data = {"source": str(X), "target": str(y), "block_rows": BLOCK_ROWS}
    else:
        nn, pp, ni, rho, noise, seed = synth_params(n, p)
        data = {"source": "synthetic", "block_rows": BIG_BLOCK_ROWS,
                "synthetic": {"n_rows": nn, "n_features": pp, "n_informative": ni, "correlation": rho,
                              "noise": noise, "seed": seed}}
    return {
        "data": data,
        "folds": {"k": K, "seed": SEED},
        "search": {"n_trials": N_CAND, "seed": SEED, "storage": f"sqlite:///{work}/optuna.db",
                   "study_name": "bench"},
        "cluster": {"n_workers": 2, "memory_limit": "6GiB"},
        "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "bench", "registered_model": "bench"},
    }


def run_regsweep(n: int, p: int, work: Path, X: Path | None, y: Path | None, timeout: float) -> dict[str, Any]:
    import yaml

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "sweep.yaml").write_text(yaml.safe_dump(regsweep_config(n, p, work, X, y)))
    exe = str(Path(_python()).with_name("regsweep"))
    mon = run_monitored([exe, "sweep", "sweep.yaml", "--summary-json", "summary.json", "--no-progress"],
                        cwd=work, log=work / "regsweep.log", timeout=timeout, as_limit_gib=None, env=_child_env())
    out: dict[str, Any] = {"processes": mon["processes"], "wall_s": mon["wall_s"], "trials_run": N_CAND,
                           "extrapolated": False}
    if mon["rc"] != 0 or not (work / "summary.json").exists():
        out["status"] = f"failed (rc={mon['rc']})"
        out["error"] = " | ".join((work / "regsweep.log").read_text(errors="replace").strip().splitlines()[-3:])
        return out
    s = json.loads((work / "summary.json").read_text())
    out.update({"status": "ok", "best_cv_mse": s["best_cv_mse"], "best_params": s["best_params"],
                "timings_s": s["timings_s"], "elapsed_s": s["elapsed_s"], "space": s["search_space"],
                "trials_not_logged": len(s.get("trials_not_logged", []))})
    t = run_child("regsweep_test", {"p": p, "model_uri": s["model_uri"], "tracking_uri": f"sqlite:///{work}/mlflow.db"},
                  work, timeout=600, as_limit_gib=None)
    out["test_mse"] = t.get("test_mse")
    out["startup_s"] = round(out["wall_s"] - s["elapsed_s"], 3)  # interpreter, imports, config, shutdown
    return out


def _peaks(rec: dict[str, Any]) -> dict[str, Any]:
    procs = rec.get("processes", [])
    drv = [r["peak_rss_mb"] for r in procs if r["role"] == "driver"]
    kids = [r["peak_rss_mb"] for r in procs if r["role"] != "driver"]
    return {"driver_rss_mb": drv[0] if drv else None, "max_child_rss_mb": max(kids) if kids else None,
            "max_process_rss_mb": max(drv + kids) if (drv or kids) else None, "n_processes": len(procs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="smoke run: n = 1e4, 1e5 at p = 20, budget 20 s, no big n")
    ap.add_argument("--n", nargs="*", type=float, default=[1e4, 1e5, 1e6], help="sizes read from X.npy (all methods)")
    ap.add_argument("--p", nargs="*", type=int, default=[20, 100, 500])
    ap.add_argument("--big-n", nargs="*", type=float, default=[1e7, 1e8],
                    help="regsweep alone (synthetic on the workers) at p = 100")
    ap.add_argument("--big-p", type=int, default=100)
    ap.add_argument("--big-repeats", type=int, default=1, help="runs of regsweep per --big-n size")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeats", type=int, default=3, help="runs of regsweep and onepass per size (median)")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="runs of each baseline that is not extrapolated")
    ap.add_argument("--budget-s", type=float, default=300.0,
                    help="a baseline's trial time before it stops and is extrapolated to 100 candidates")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="hard limit of any one process tree")
    ap.add_argument("--mem-limit-gib", type=float, default=10.0, help="address-space limit of every baseline")
    ap.add_argument("--search-baselines-max-n", type=float, default=1e6,
                    help="largest n for the searching baselines (Optuna + sklearn, OptunaSearchCV, dask-ml); "
                         "ElasticNetCV runs at every n read from a file")
    ap.add_argument("--max-file-n", type=float, default=1e7, help="largest n written to X.npy")
    ap.add_argument("--onepass-max-rows", type=float, default=2e7,
                    help="synthetic one-pass limit: rows actually generated (then extrapolated)")
    ap.add_argument("--data-dir", type=Path, default=None, help="where X.npy files live (default: OUT/data)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--tag", default="compare", help="output file stem")
    args = ap.parse_args(argv)

    if args.child:
        method, spec_path, res_path = args.child
        res = CHILDREN[method](json.loads(Path(spec_path).read_text()))
        Path(res_path).write_text(json.dumps(res, default=float))
        return 0

    if args.quick:
        args.n, args.p, args.big_n, args.budget_s, args.repeats = [1e4, 1e5], [20], [], 20.0, 1
        args.tag = args.tag if args.tag != "compare" else "compare-quick"
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or args.out / "data"
    jsonl = args.out / f"{args.tag}.jsonl"
    work_root = Path(tempfile.mkdtemp(prefix="regsweep-compare-"))
    sizes = [(int(n), p, True) for p in args.p for n in args.n]
    sizes += [(int(n), args.big_p, False) for n in args.big_n]
    records: list[dict[str, Any]] = []

    invocation = time.strftime("%Y%m%dT%H%M%S")

    def emit(rec: dict[str, Any]) -> None:
        rec.update(_peaks(rec))
        rec["invocation"] = invocation
        records.append(rec)
        with open(jsonl, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
        print(f"  {rec['method']:16s} n={rec['n']:>10d} p={rec['p']:>4d} rep={rec.get('repeat', 0)} "
              f"{rec['status']:10.40s} wall={rec['wall_s']:9.2f}s test_mse={rec.get('test_mse')} "
              f"max_rss={rec['max_process_rss_mb']} MB" + (" (extrapolated)" if rec.get("extrapolated") else ""),
              flush=True)

    print(f"results -> {jsonl}; scratch {work_root}", flush=True)
    try:
        for n, p, from_file in sizes:
            print(f"== n={n:.0e} p={p} ({'X.npy' if from_file else 'synthetic on the workers'})", flush=True)
            X = y = None
            if from_file and n <= args.max_file_n:
                t0 = time.perf_counter()
                X, y = make_npy(data_dir, n, p)
                print(f"  data ready ({time.perf_counter() - t0:.1f} s): {X}", flush=True)
            base = {"n": n, "p": p, "source": "npy" if X else "synthetic"}
            if "onepass" in args.methods:
                spec = {"n": n, "p": p, "X": str(X) if X else "", "y": str(y) if y else "",
                        "block_rows": BLOCK_ROWS if X else BIG_BLOCK_ROWS,
                        "max_rows": None if X else int(args.onepass_max_rows)}
                for r in range(args.repeats if from_file else args.big_repeats):
                    emit({**base, "method": "onepass", "repeat": r,
                          **run_child("onepass", spec, work_root / f"n{n}_p{p}", timeout=args.timeout_s,
                                      as_limit_gib=args.mem_limit_gib)})
            space = None
            if "regsweep" in args.methods:
                for r in range(args.repeats if from_file else args.big_repeats):
                    rec = run_regsweep(n, p, work_root / f"n{n}_p{p}" / f"regsweep{r}", X, y, args.timeout_s)
                    space = space or rec.get("space")
                    emit({**base, "method": "regsweep", "repeat": r, **rec})
            if not from_file or X is None:
                continue
            if space is None and jsonl.exists():  # an earlier regsweep run of this point
                earlier = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
                space = next((r["space"] for r in reversed(earlier) if r.get("method") == "regsweep"
                              and (r["n"], r["p"]) == (n, p) and r.get("space")), None)
            if space is None:
                print("  no regsweep search space (regsweep did not run or failed): baselines skipped", flush=True)
                continue
            for method in ("optuna_sklearn", "enetcv", "optuna_searchcv", "daskml_grid"):
                if method not in args.methods or (method != "enetcv" and n > args.search_baselines_max_n):
                    continue
                spec = {"n": n, "p": p, "X": str(X), "y": str(y), "space": space, "budget_s": args.budget_s,
                        "worker_mem_gib": round(args.mem_limit_gib / 2, 1),
                        "grid_subset": None if n <= 10_000 else 10}
                for r in range(args.baseline_repeats):
                    rec = run_child(method, spec, work_root / f"n{n}_p{p}", timeout=args.timeout_s,
                                    as_limit_gib=args.mem_limit_gib)
                    emit({**base, "method": method, "repeat": r, **rec})
                    if rec.get("extrapolated") or rec["status"] != "ok":
                        break
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    all_records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    md = render_markdown(all_records)
    (args.out / f"{args.tag}.md").write_text(md)
    plot(all_records, args.out / f"{args.tag}.png")
    print(md)
    return 0


# ===================================================================== report
def _src(r: dict[str, Any]) -> str:
    return r.get("source", "npy")


def summarize(records: list[dict[str, Any]]) -> dict[tuple[int, int, str, str], dict[str, Any]]:
    """Median wall over repeats per (n, p, source, method); the latest invocation of a point wins."""
    groups: dict[tuple[int, int, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["n"], r["p"], _src(r), r["method"]), []).append(r)
    for key, recs in groups.items():  # a point measured again replaces the earlier invocation's runs
        latest = max(r.get("invocation", "") for r in recs)
        groups[key] = [r for r in recs if r.get("invocation", "") == latest]
    out = {}
    for key, recs in groups.items():
        ok = [r for r in recs if r["status"] == "ok"]
        use = ok or recs[-1:]
        walls = [r["wall_s"] for r in use]
        last = use[-1]
        out[key] = {**last, "wall_median_s": statistics.median(walls), "runs": len(use),
                    "max_process_rss_mb": max((r.get("max_process_rss_mb") or 0) for r in use),
                    "driver_rss_mb": max((r.get("driver_rss_mb") or 0) for r in use),
                    "max_child_rss_mb": max((r.get("max_child_rss_mb") or 0) for r in use)}
    return out


NAMES = {"regsweep": "regsweep sweep", "optuna_sklearn": "Optuna TPE + sklearn cross_val_score",
         "enetcv": "sklearn ElasticNetCV", "optuna_searchcv": "optuna-integration OptunaSearchCV",
         "daskml_grid": "dask-ml GridSearchCV", "onepass": "one-pass limit (read + XᵀX)"}


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def render_markdown(records: list[dict[str, Any]]) -> str:
    summ = summarize(records)
    lines = ["| n | p | method | runs | wall s | × regsweep time | test MSE | vs best test MSE | "
             "peak RSS MB: driver / largest other | note |", "|---:|---:|---|---:|---:|---:|---:|---:|---|---|"]
    points = sorted({(n, p, src) for n, p, src, _ in summ}, key=lambda t: (t[1], t[0], t[2]))
    order = {m: i for i, m in enumerate(METHODS)}
    for n, p, src in points:
        ms = sorted((m for nn, pp, ss, m in summ if (nn, pp, ss) == (n, p, src)), key=order.get)
        rs = summ.get((n, p, src, "regsweep"))
        rs_wall = rs["wall_median_s"] if rs and rs["status"] == "ok" else None
        tests = [summ[(n, p, src, m)].get("test_mse") for m in ms if summ[(n, p, src, m)].get("test_mse") is not None]
        best = min(tests) if tests else None
        for m in ms:
            r = summ[(n, p, src, m)]
            ok = r["status"] == "ok"
            ratio = r["wall_median_s"] / rs_wall if ok and rs_wall and m != "regsweep" else None
            tm = r.get("test_mse")
            rel = f"{100 * (tm / best - 1):+.2f}%" if tm is not None and best else "–"
            note = []
            if r.get("extrapolated"):
                note.append(f"**extrapolated** from {r.get('trials_run')} of 100 candidates"
                            if m != "onepass" else f"extrapolated from {r.get('rows_done'):.2g} rows")
            if not ok:
                note.append(r["status"] + (f" after {r['wall_s']:.0f} s" if r["status"] == "timeout" else ""))
            if m == "onepass" and ok:
                note.append(f"read/generate {_fmt(r.get('read_or_generate_s'))} s + XᵀX {_fmt(r.get('gram_s'))} s")
            if src == "synthetic":
                note.append("synthetic: generated on the workers" if m == "regsweep" else "synthetic: generated here")
            wall = _fmt(r["wall_median_s"]) if ok else (f"> {r['wall_s']:.0f}" if r["status"] == "timeout" else "–")
            lines.append(f"| {n:.0e} | {p} | {NAMES[m]} | {r['runs']} | {wall} | "
                         f"{'**' + _fmt(ratio) + '×**' if ratio else '–'} | {_fmt(tm, 5)} | {rel} | "
                         f"{_fmt(r.get('driver_rss_mb'))} / {_fmt(r.get('max_child_rss_mb'))} | {'; '.join(note)} |")
    lines += ["", "regsweep's time (s), median over runs. start-up: interpreter, imports and exit around the "
              "sweep; setup: plan the data, start the MLflow process, open the study; cluster start: the "
              "embedded LocalCluster (the MLflow process imports MLflow and creates the experiment meanwhile); "
              "MLflow wait: what the driver then still waited for it, at the start of the data pass; Optuna: "
              "driver time in ask/tell (TPE + RDB writes); fits: worker time of all fold fits, summed; refit + "
              "model logging: refit, plots, parent params, model logged and registered; MLflow drain: waiting for "
              "the last child runs at the end; beyond: wall − one-pass limit − cluster start; beyond its pass: wall − "
              "regsweep's own data pass − cluster start (its fixed cost: the limit is measured in another process, "
              "and at 10⁷ two workers reading the file can beat it).", "",
              "| n | p | wall | start-up | setup | cluster start | MLflow wait | data pass | trials | of which Optuna | "
              "fits | refit + model logging | MLflow drain | one-pass limit | beyond | beyond its pass |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, p, src in points:
        recs = [r for r in records if (r["n"], r["p"], _src(r), r["method"]) == (n, p, src, "regsweep")
                and r["status"] == "ok"]
        if not recs:
            continue
        latest = max(r.get("invocation", "") for r in recs)
        recs = [r for r in recs if r.get("invocation", "") == latest]
        med = lambda f: statistics.median(f(r) for r in recs)  # noqa: E731
        tim = lambda key: med(lambda r: r["timings_s"].get(key, float("nan")))  # noqa: E731
        lim = summ.get((n, p, src, "onepass"))
        lim_s = lim["wall_median_s"] if lim and lim["status"] == "ok" else None
        wall = med(lambda r: r["wall_s"])
        beyond = med(lambda r: r["wall_s"] - r["timings_s"]["cluster_start"]) - lim_s if lim_s is not None else None
        fixed = med(lambda r: r["wall_s"] - r["timings_s"]["cluster_start"] - r["timings_s"]["data_pass"])
        lines.append(f"| {n:.0e}{' (synthetic)' if src == 'synthetic' else ''} | {p} | {_fmt(wall)} | {_fmt(med(lambda r: r['startup_s']))} | {_fmt(tim('setup'))} | "
                     f"{_fmt(tim('cluster_start'))} | {_fmt(tim('tracking_wait'))} | {_fmt(tim('data_pass'))} | "
                     f"{_fmt(tim('trials'))} | {_fmt(tim('optuna'))} | {_fmt(tim('fits'))} | "
                     f"{_fmt(tim('refit_and_logging'))} | {_fmt(tim('mlflow_drain'))} | {_fmt(lim_s)} | "
                     f"**{_fmt(beyond)}** | {_fmt(fixed)} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = summarize(records)
    ps = sorted({p for _, p, _, _ in summ})
    fig, axes = plt.subplots(1, len(ps), figsize=(5.5 * len(ps), 4.5), squeeze=False)
    for ax, p in zip(axes[0], ps):
        for m in METHODS:
            pts = sorted(((n, r) for (n, pp, _, mm), r in summ.items() if pp == p and mm == m and r["status"] == "ok"),
                         key=lambda t: t[0])
            if not pts:
                continue
            ns = [n for n, _ in pts]
            ws = [r["wall_median_s"] for _, r in pts]
            line, = ax.plot(ns, ws, "-", label=NAMES[m])
            for n, r in pts:
                ax.plot([n], [r["wall_median_s"]], "o", color=line.get_color(),
                        mfc="none" if r.get("extrapolated") else line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows n")
        ax.set_ylabel("wall time (s)")
        ax.set_title(f"p = {p}, 100 candidates × 5 folds (hollow: extrapolated)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
