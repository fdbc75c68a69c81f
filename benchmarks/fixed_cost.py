"""The fixed cost of a sweep, as a user meets it: `regsweep sweep` from the command line against one process
running scikit-learn's ElasticNetCV on the same data and folds.

Run:  python benchmarks/fixed_cost.py [--repeats 5] [--cases quickstart bundled n1e4p10 ...] [--out DIR]

Cases (issue "Seconds, not tens of seconds"):

``quickstart``  ``regsweep sweep configs/quickstart.yaml`` as shipped (the bundled diabetes data, 442 × 10,
                60 trials).
``bundled``     the same data, 100 trials.
``nXpY``        synthetic rows (``pipeline.data.synthetic_rows``: equicorrelated ρ = 0.5, min(20, p) informative)
                as an ``X.npy``, n ∈ {10⁴, 10⁵} × p ∈ {10, 100}, 100 trials.

Every run starts in a new empty directory (new SQLite files for Optuna and MLflow, the embedded two-worker
cluster, one child run per trial, the model registered) and is timed from command start to exit; one
warm-up run first (page cache, bytecode, numba's and regsweep's caches), then ``--repeats`` runs. The peer
is a new ``python`` process that imports scikit-learn, loads the same rows (the bundled CSV as ``.npy``:
the faster read) and runs ``ElasticNetCV(l1_ratio=[.1, .5, .7, .9, 1], alphas=100,
cv=PredefinedSplit(<regsweep's folds>), n_jobs=2)`` after ``StandardScaler``, also timed from command
start to exit. Reported: medians, the ratio regsweep / ElasticNetCV (the target: at most 3), the median
of each phase of regsweep's ``timings_s``, and the CPU time of every process of the run (user + system, the
driver, MLflow's process, the workers, the fork server and the resource tracker: on Linux this script adopts
the orphans among them as a child subreaper, so that their time counts too). Half that CPU time is the wall
time the run could not beat on two cores with perfect overlap. Writes ``fixed_cost.jsonl`` and
``fixed_cost.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
K, SEED = 5, 0
CASES: dict[str, dict[str, Any]] = {
    "quickstart": {"config": "configs/quickstart.yaml", "trials": None},
    "bundled": {"config": "configs/quickstart.yaml", "trials": 100},
    **{f"n1e{e}p{p}": {"n": 10**e, "p": p, "trials": 100} for e in (4, 5) for p in (10, 100)},
}
PHASES = ("setup", "cluster_start", "data_pass", "trials", "path", "refit_and_logging")

_PEER = """
import sys, numpy as np
from sklearn.linear_model import ElasticNetCV
from sklearn.model_selection import PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
X, y, folds = np.load(sys.argv[1]), np.load(sys.argv[2]), np.load(sys.argv[3])
cv = ElasticNetCV(l1_ratio=[0.1, 0.5, 0.7, 0.9, 1.0], alphas=100, cv=PredefinedSplit(folds), n_jobs=2)
make_pipeline(StandardScaler(), cv).fit(X, y)
print(float(cv.mse_path_.mean(axis=-1).min()))
"""


def make_data(case: str, data_dir: Path) -> dict[str, str]:
    """The case's X.npy, y.npy and regsweep's fold ids (written once)."""
    from pipeline.folds import kfold_folds

    c = CASES[case]
    d = data_dir / ("bundled" if "config" in c else case)
    files = {k: str(d / f"{k}.npy") for k in ("X", "y", "folds")}
    if not (d / "folds.npy").exists():
        d.mkdir(parents=True, exist_ok=True)
        if "config" in c:
            from sklearn.datasets import load_diabetes  # the bundled CSV holds these rows

            X, y = load_diabetes(return_X_y=True, scaled=False)
        else:
            from pipeline.data import synthetic_rows

            X, y = synthetic_rows((c["n"], c["p"], min(20, c["p"]), 0.5, 1.0, SEED), 0, c["n"])
        np.save(files["X"], X)
        np.save(files["y"], y)
        np.save(files["folds"], kfold_folds(0, X.shape[0], K, SEED))
    return files


def adopt_orphans() -> bool:
    """Become a child subreaper (Linux): processes the command leaves behind are re-parented here, not to init,
    so that :func:`_timed` can wait for them and count their CPU time."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_all(deadline_s: float = 20.0) -> None:
    """Wait until no child is left (the adopted orphans end when the driver has gone)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.02)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall time from command start to exit, the CPU time of all its processes, the outcome."""
    c0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    _reap_all()
    return wall, _children_cpu() - c0, done


def run_regsweep(case: str, files: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    c = CASES[case]
    with tempfile.TemporaryDirectory(prefix="regsweep-fixed-") as tmp:
        work = Path(tmp)
        sets = [] if c["trials"] is None else [f"search.n_trials={c['trials']}"]
        if "config" in c:
            args = [str(REPO / c["config"])]
        else:
            args = ["--set", f"data.source={files['X']}", "--set", f"data.target={files['y']}",
                    "--set", f"folds.k={K}", "--set", f"folds.seed={SEED}"]
        for s in sets:
            args += ["--set", s]
        exe = str(Path(sys.executable).with_name("regsweep"))
        wall, cpu, done = _timed([exe, "sweep", *args, "--summary-json", "s.json", "--no-progress"], work, env)
        if done.returncode != 0:
            return {"status": f"failed: {done.stderr.strip()[-300:]}", "wall_s": wall}
        s = json.loads((work / "s.json").read_text())
    return {"status": "ok", "wall_s": wall, "cpu_s": cpu, "best_cv_mse": s["best_cv_mse"], "timings_s": s["timings_s"]}


def run_peer(files: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="enetcv-fixed-") as tmp:
        wall, cpu, done = _timed([sys.executable, "-c", _PEER, files["X"], files["y"], files["folds"]], Path(tmp), env)
    if done.returncode != 0:
        return {"status": f"failed: {done.stderr.strip()[-300:]}", "wall_s": wall}
    return {"status": "ok", "wall_s": wall, "cpu_s": cpu, "best_cv_mse": float(done.stdout.split()[-1])}


def table(records: list[dict[str, Any]]) -> str:
    lines = ["| case | regsweep wall s (median) | ElasticNetCV process s | ratio | regsweep CPU s, all processes "
             "| CPU / 2 cores | " + " | ".join(PHASES) + " |", "|---|---:|---:|---:|---:|---:|" + "---:|" * len(PHASES)]
    for case in dict.fromkeys(r["case"] for r in records):
        ours = [r for r in records if r["case"] == case and r["method"] == "regsweep" and r["status"] == "ok"]
        peer = [r for r in records if r["case"] == case and r["method"] == "enetcv" and r["status"] == "ok"]
        if not ours or not peer:
            continue
        a, b = statistics.median(r["wall_s"] for r in ours), statistics.median(r["wall_s"] for r in peer)
        phases = [statistics.median(r["timings_s"].get(k, 0.0) for r in ours) for k in PHASES]
        cpu = statistics.median(r.get("cpu_s", float("nan")) for r in ours)
        lines.append(f"| {case} | {a:.2f} | {b:.2f} | {a / b:.2f} | {cpu:.2f} | {cpu / 2:.2f} | "
                     + " | ".join(f"{v:.2f}" for v in phases) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--data-dir", default=None, help="where the data files live (default: OUT/data-fixed)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data-fixed"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if not adopt_orphans():
        print("CPU time: this system cannot adopt orphans; processes that outlive the driver are not counted")
    records: list[dict[str, Any]] = []
    with open(out / "fixed_cost.jsonl", "a") as log:
        for case in args.cases:
            files = make_data(case, data_dir)
            run_regsweep(case, files, env), run_peer(files, env)  # warm-up, not recorded
            for r in range(args.repeats):  # alternated, so that drift in the machine's load hits both
                for method, rec in (("regsweep", run_regsweep(case, files, env)), ("enetcv", run_peer(files, env))):
                    rec = {"case": case, "method": method, "repeat": r, "load": os.getloadavg()[0], **rec}
                    records.append(rec)
                    log.write(json.dumps(rec) + "\n")
                    log.flush()
                    print(f"{case:10s} {method:8s} {rec['status']:4s} {rec['wall_s']:7.2f} s", flush=True)
    md = table(records)
    (out / "fixed_cost.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
