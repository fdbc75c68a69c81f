"""Where a sweep's time goes once the data pass is done: driver, tasks, tracking.

Run:  python benchmarks/sweep_overhead.py [--trials 1000] [--repeats 1] [--out PATH]

Measures, on the bundled diabetes data and an embedded 2-worker LocalCluster:

1. **Tracking cost.** The same N-trial sweep with one MLflow child run per
   trial (``tracking.log_trials=true``, the default) and without
   (``false``); reports the wall time of the trial loop and of the whole
   sweep for both and their ratio.
2. **Per-task overhead.** The round trip of a trivial Dask task (submit →
   result) against the worker-side time of one fold fit at p = 10 and p = 100,
   which is why candidates are batched per fold (``search.in_flight``).
3. **Driver cost per trial.** Time in Optuna ``ask`` + write-through
   ``tell`` per trial (TPE on the in-memory mirror, one RDB insert and one
   update).

Each sweep runs in a fresh temporary directory (new SQLite files). Results are
printed as a Markdown table and appended as JSON lines to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _sweep(tmp: Path, trials: int, log_trials: bool) -> dict:
    from pipeline.config import load_config
    from pipeline.sweep import execute_sweep

    cfg = load_config(None, [
        f"search.n_trials={trials}", f"search.storage=sqlite:///{tmp}/optuna.db",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.log_trials={str(log_trials).lower()}",
        "cluster.dashboard_address=null",
    ])
    t0 = time.perf_counter()
    summary = execute_sweep(cfg, echo=lambda *_: None, progress=False)
    summary["wall_s"] = time.perf_counter() - t0
    return summary


def tracking_cost(trials: int, repeats: int) -> list[dict]:
    rows = []
    for log_trials in (True, False):
        for r in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                s = _sweep(Path(tmp), trials, log_trials)
            rows.append({"bench": "tracking", "trials": trials, "log_trials": log_trials, "repeat": r,
                         "trials_s": s["timings_s"]["trials"], "wall_s": s["wall_s"],
                         "refit_and_logging_s": s["timings_s"]["refit_and_logging"],
                         "not_logged": len(s["trials_not_logged"])})
    return rows


def _noop() -> int:
    return 0


def task_overhead(repeats: int = 200) -> list[dict]:
    """Round trip of a trivial task vs one fold fit of a candidate, on a 2-worker LocalCluster."""
    from distributed import Client, LocalCluster

    from pipeline.candidate import Candidate
    from pipeline.cv.fold_models import make_fold_model, score_candidates
    from pipeline.cv.passes import BlockPass, finish_pass
    from pipeline.folds import block_fold_stats, kfold_folds

    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.submit(_noop, pure=False).result()
        rtt = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            client.submit(_noop, pure=False).result()
            rtt.append(time.perf_counter() - t0)
        rows.append({"bench": "task_round_trip", "median_ms": 1e3 * statistics.median(rtt)})
        rng = np.random.default_rng(0)
        for p in (10, 100):
            X = rng.standard_normal((5000, p))
            y = X[:, : p // 2].sum(axis=1) + rng.standard_normal(5000)
            folds = kfold_folds(0, 5000, 5, 0)
            passes = finish_pass(BlockPass(tuple(block_fold_stats(X, y, None, folds, 5)), 1), 5, 0)
            fold = make_fold_model(passes, 0, fit_intercept=True, standardize=True)
            lam_max = fold.problem.lambda1_max
            cands = [Candidate(i, "elasticnet", lam_max * 10 ** rng.uniform(-3, 0), 0.1) for i in range(200)]
            t0 = time.perf_counter()
            scores = score_candidates(fold, cands, 1e-10)
            per_fit = (time.perf_counter() - t0) / len(cands)
            rows.append({"bench": "fold_fit", "p": p, "median_worker_ms": 1e3 * statistics.median(s.seconds for s in scores),
                         "mean_ms_incl_warm_start": 1e3 * per_fit})
    return rows


def driver_cost(trials: int = 200) -> list[dict]:
    from pipeline.config import load_config
    from pipeline.search import SearchSpace, TrialStore

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"search.storage=sqlite:///{tmp}/o.db"])
        store = TrialStore(cfg.search)
        space = SearchSpace(("l1", "l2", "elasticnet"), (1e-3, 10.0), (1e-3, 10.0))
        rng = np.random.default_rng(0)
        ask, tell = [], []
        pending = []
        for _ in range(trials):
            t0 = time.perf_counter()
            pending.append(store.ask(space))
            ask.append(time.perf_counter() - t0)
            if len(pending) >= 8:
                t0 = time.perf_counter()
                done, value = pending.pop(0), float(rng.random())
                store.record(done, value, {"cv": {"fold_mse": [1.0] * 5}})
                store.teach(done, value)
                tell.append(time.perf_counter() - t0)
    return [{"bench": "driver_per_trial", "trials": trials, "ask_ms": 1e3 * statistics.median(ask),
             "tell_ms": 1e3 * statistics.median(tell)}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/sweep_overhead.jsonl")
    args = ap.parse_args()
    rows = task_overhead() + driver_cost() + tracking_cost(args.trials, args.repeats)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    for r in rows:
        print(r)
    on = [r for r in rows if r["bench"] == "tracking" and r["log_trials"]]
    off = [r for r in rows if r["bench"] == "tracking" and not r["log_trials"]]
    if on and off:
        t_on = statistics.median(r["trials_s"] for r in on)
        t_off = statistics.median(r["trials_s"] for r in off)
        w_on = statistics.median(r["wall_s"] for r in on)
        w_off = statistics.median(r["wall_s"] for r in off)
        print(f"\n| {args.trials} trials | trial loop s | whole sweep s |\n|---|---:|---:|")
        print(f"| child runs on | {t_on:.2f} | {w_on:.2f} |\n| child runs off | {t_off:.2f} | {w_off:.2f} |")
        print(f"| ratio on/off | {t_on / t_off:.2f} | {w_on / w_off:.2f} |")


if __name__ == "__main__":
    main()
