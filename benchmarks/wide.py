"""Wide data (p ≫ n): regsweep's rows engine side by side with glmnet, and its limits on 10⁵ features.

Run:  python benchmarks/wide.py                      # every case below, medians of 3 (about an hour)
      python benchmarks/wide.py --cases small corr   # some cases
      python benchmarks/wide.py --repeats 1          # one run each

Cases (``--cases``):

``corr``    n = 2,000, p = 20,000, equicorrelated columns (ρ = 0.5), 20
            informative, σ = 1 (:func:`pipeline.data.synthetic_rows`). regsweep
            against python-glmnet's cross-validation over 5 mixing values
            (α ∈ {0, .25, .5, .75, 1}: ridge to lasso, the penalties regsweep
            searches) × 100 λ × 5 folds, and against nothing else.
``small``   n = 100, p = 7,000 from the same generator: regsweep, glmnet as
            above, and scikit-learn's ``ElasticNetCV`` (5 l1_ratios × 100 alphas,
            n_jobs=2) after ``StandardScaler``.
``dense``   n = 1,000, p = 100,000, the same generator (800 MB of rows): regsweep alone.
``sparse``  n = 10,000, p = 100,000, 1% of entries non-zero (independent
            standard normal values at uniformly random places), 20 informative,
            σ = 1, an ``.npz`` source: regsweep alone.

Every method runs in its own process tree from a cold interpreter; its wall
time runs from process start to its best model fitted (regsweep: the CLI's
whole run, cluster start, MLflow logging and model registration included),
and the peak resident memory of every process in the tree is sampled (VmHWM,
as in ``compare.py``). Folds: regsweep's (:func:`pipeline.folds.kfold_folds`,
seed 0), given to glmnet as ``groups`` (``GroupKFold``) and to scikit-learn as
a ``PredefinedSplit``, so every CV MSE is over the same five folds. Peers are
set up as their documentation advises: glmnet with ``min_lambda_ratio`` 0.01
when n < p (R glmnet's default there), ``cut_point=0`` (the λ of least CV
error, regsweep's ``search.select: min``) and ``n_jobs=2``. Test MSE: each
method's selected model on 10,000 further rows of the same generator (rows
10⁹ onward; 1,000 for the dense p = 10⁵ case, whose 10,000 would take 8 GB).

Outputs under ``--out`` (default ``benchmarks/results/``): ``wide.jsonl`` (one
object per run) and ``wide.md`` (medians, ratios, CV and test MSE, peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import _child_env, _peaks, run_monitored  # noqa: E402

K, SEED, N_TRIALS, N_TEST = 5, 0, 100, 10_000
TEST_START = 10**9
MIXINGS = (0.0, 0.25, 0.5, 0.75, 1.0)
CASES = {
    "corr": {"n": 2_000, "p": 20_000, "kind": "dense", "peers": ["glmnet"], "n_test": N_TEST},
    "small": {"n": 100, "p": 7_000, "kind": "dense", "peers": ["glmnet", "enetcv"], "n_test": N_TEST},
    "dense": {"n": 1_000, "p": 100_000, "kind": "dense", "peers": [], "n_test": 1_000},  # 10⁴ test rows: 8 GB
    "sparse": {"n": 10_000, "p": 100_000, "kind": "sparse", "peers": [], "n_test": N_TEST},
}
INFORMATIVE, RHO, NOISE, DENSITY = 20, 0.5, 1.0, 0.01


# ======================================================================= data
def _dense_rows(p: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``start …`` of the equicorrelated generator (the same as ``data.source: synthetic``)."""
    from pipeline.data import synthetic_rows

    return synthetic_rows((start + n, p, INFORMATIVE, RHO, NOISE, SEED), start, n)


def _sparse_rows(p: int, start: int, n: int) -> tuple[Any, np.ndarray]:
    """Sparse rows: each row's non-zeros drawn from a generator seeded by its index, so rows are reproducible."""
    import scipy.sparse as sp

    beta = np.zeros(p)
    rng = np.random.default_rng([SEED, 2**31 - 1])
    beta[:INFORMATIVE] = rng.uniform(0.5, 2.0, INFORMATIVE) * rng.choice([-1.0, 1.0], INFORMATIVE)
    rows, cols, vals, y = [], [], [], np.empty(n)
    nnz = int(DENSITY * p)
    for i in range(n):
        r = np.random.default_rng([SEED, 7, start + i])
        c = np.sort(r.choice(p, nnz, replace=False))
        v = r.standard_normal(nnz)
        rows.append(np.full(nnz, i))
        cols.append(c)
        vals.append(v)
        y[i] = v @ beta[c] + NOISE * r.standard_normal()
    X = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, p))
    return X, y


def make_data(case: str, data_dir: Path) -> dict[str, str]:
    """The case's training files (written once) and test files."""
    c = CASES[case]
    d = data_dir / case
    files = {"X": str(d / ("X.npz" if c["kind"] == "sparse" else "X.npy")), "y": str(d / "y.npy"),
             "Xt": str(d / ("Xt.npz" if c["kind"] == "sparse" else "Xt.npy")), "yt": str(d / "yt.npy")}
    if (d / "done").exists():
        return files
    d.mkdir(parents=True, exist_ok=True)
    make = _sparse_rows if c["kind"] == "sparse" else _dense_rows
    for (xk, yk), (start, n) in zip((("X", "y"), ("Xt", "yt")), ((0, c["n"]), (TEST_START, c["n_test"]))):
        X, y = make(c["p"], start, n)
        if c["kind"] == "sparse":
            import scipy.sparse as sp

            sp.save_npz(files[xk], X)
        else:
            np.save(files[xk], X)
        np.save(files[yk], y)
    (d / "done").write_text("ok\n")
    return files


def _load_x(path: str) -> Any:
    if path.endswith(".npz"):
        import scipy.sparse as sp

        return sp.load_npz(path).tocsr()
    return np.load(path)


def _folds(n: int) -> np.ndarray:
    from pipeline.folds import kfold_folds

    return kfold_folds(0, n, K, SEED)


# =============================================================== child methods
def child_glmnet(spec: dict[str, Any]) -> dict[str, Any]:
    """python-glmnet's cv over the mixing values, on regsweep's folds; the best (α, λ) by CV MSE."""
    from glmnet import ElasticNet

    X, y = _load_x(spec["X"]), np.load(spec["y"])
    n, p = X.shape
    groups = _folds(n)
    t0 = time.perf_counter()
    best: dict[str, Any] = {"cv_mse": float("inf")}
    for alpha in MIXINGS:
        est = ElasticNet(alpha=alpha, n_lambda=100, min_lambda_ratio=0.01 if n < p else 1e-4, n_splits=K,
                         scoring="mean_squared_error", cut_point=0.0, n_jobs=2)
        est.fit(X, y, groups=groups)
        cv = float(-est.cv_mean_score_[est.lambda_max_inx_])
        if cv < best["cv_mse"]:
            best = {"cv_mse": cv, "alpha": alpha, "lambda": float(est.lambda_max_), "model": est}
    done = time.time()
    fit_s = time.perf_counter() - t0
    Xt, yt = _load_x(spec["Xt"]), np.load(spec["yt"])
    pred = best["model"].predict(Xt, lamb=best["lambda"])
    return {"fit_done_epoch": done, "fit_s": fit_s, "best_cv_mse": best["cv_mse"], "best_alpha": best["alpha"],
            "best_lambda": best["lambda"], "test_mse": float(np.mean((np.ravel(pred) - yt) ** 2))}


def child_enetcv(spec: dict[str, Any]) -> dict[str, Any]:
    """scikit-learn's ElasticNetCV (5 l1_ratios × 100 alphas) after StandardScaler, on regsweep's folds."""
    from sklearn.linear_model import ElasticNetCV
    from sklearn.model_selection import PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _load_x(spec["X"]), np.load(spec["y"])
    folds = _folds(X.shape[0])
    t0 = time.perf_counter()
    cv = ElasticNetCV(l1_ratio=[0.1, 0.5, 0.7, 0.9, 1.0], alphas=100, cv=PredefinedSplit(folds), n_jobs=2)
    pipe = make_pipeline(StandardScaler(), cv).fit(X, y)
    done = time.time()
    fit_s = time.perf_counter() - t0
    best = float(cv.mse_path_.mean(axis=-1).min())
    Xt, yt = _load_x(spec["Xt"]), np.load(spec["yt"])
    return {"fit_done_epoch": done, "fit_s": fit_s, "best_cv_mse": best,
            "test_mse": float(np.mean((pipe.predict(Xt) - yt) ** 2))}


def child_regsweep_test(spec: dict[str, Any]) -> dict[str, Any]:
    """regsweep's registered model, loaded from MLflow as a user would, on the test rows."""
    import mlflow

    mlflow.set_tracking_uri(spec["tracking_uri"])
    model = mlflow.pyfunc.load_model(spec["model_uri"]).get_raw_model()  # the FittedModel: predicts sparse rows
    Xt, yt = _load_x(spec["Xt"]), np.load(spec["yt"])
    return {"test_mse": float(np.mean((model.predict(Xt) - yt) ** 2))}


CHILDREN = {"glmnet": child_glmnet, "enetcv": child_enetcv, "regsweep_test": child_regsweep_test}


# ================================================================ orchestration
def run_child(method: str, spec: dict[str, Any], work: Path, timeout: float,
              script: Path = Path(__file__).resolve()) -> dict[str, Any]:
    """``method`` of ``script``'s ``--child`` mode in a process tree of its own; its result and peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    spec_path, res_path = work / f"{method}.spec.json", work / f"{method}.result.json"
    spec_path.write_text(json.dumps(spec))
    res_path.unlink(missing_ok=True)
    mon = run_monitored([sys.executable, str(script), "--child", method, str(spec_path),
                         str(res_path)], cwd=work, log=work / f"{method}.log", timeout=timeout, as_limit_gib=None,
                        env=_child_env(work))
    out: dict[str, Any] = {"processes": mon["processes"], "wall_s": mon["wall_s"]}
    if not res_path.exists():
        tail = (work / f"{method}.log").read_text(errors="replace").strip().splitlines()[-3:]
        return {**out, "status": "timeout" if mon["rc"] == "timeout" else f"failed (rc={mon['rc']})",
                "error": " | ".join(tail)[-400:]}
    res = json.loads(res_path.read_text())
    if "fit_done_epoch" in res:  # process start -> best model fitted
        out["wall_s"] = res["fit_done_epoch"] - mon["start_epoch"]
    return {**out, **res, "status": "ok"}


def run_regsweep(case: str, files: dict[str, str], work: Path, timeout: float, model: dict[str, Any] | None = None,
                 script: Path = Path(__file__).resolve()) -> dict[str, Any]:
    """regsweep's CLI on the case's files (``model``: extra ``model.*`` keys), then its registered model on
    the test rows by ``script``'s ``regsweep_test`` child."""
    import shutil

    import yaml

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cfg = {"data": {"source": files["X"], "target": files["y"]}, "folds": {"k": K, "seed": SEED},
           "search": {"n_trials": N_TRIALS, "seed": SEED, "storage": f"sqlite:///{work}/optuna.db",
                      "study_name": "wide"},
           "cluster": {"n_workers": 2},
           "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "wide", "registered_model": "wide"}}
    if model:
        cfg["model"] = model
    (work / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    exe = str(Path(sys.executable).with_name("regsweep"))
    mon = run_monitored([exe, "sweep", "sweep.yaml", "--summary-json", "summary.json", "--no-progress"],
                        cwd=work, log=work / "regsweep.log", timeout=timeout, as_limit_gib=None, env=_child_env())
    out: dict[str, Any] = {"processes": mon["processes"], "wall_s": mon["wall_s"]}
    if mon["rc"] != 0 or not (work / "summary.json").exists():
        tail = (work / "regsweep.log").read_text(errors="replace").strip().splitlines()[-3:]
        return {**out, "status": f"failed (rc={mon['rc']})", "error": " | ".join(tail)[-400:]}
    s = json.loads((work / "summary.json").read_text())
    t = run_child("regsweep_test", {"Xt": files["Xt"], "yt": files["yt"], "model_uri": s["model_uri"],
                                    "tracking_uri": f"sqlite:///{work}/mlflow.db"}, work, timeout=600, script=script)
    return {**out, "status": "ok", "engine": s["engine"], "best_cv_mse": s["best_cv_mse"],
            "best_params": s["best_params"], "selected": s["selected"], "timings_s": s["timings_s"],
            "test_mse": t.get("test_mse"), **{k: v for k, v in t.items() if k.startswith("min_")}}


def run_child_mode(child: list[str] | None, children: dict[str, Any]) -> bool:
    """A benchmark script's ``--child METHOD SPEC RESULT`` mode: run ``children[METHOD]`` on the spec and write
    its result (True), or nothing to do (False)."""
    if not child:
        return False
    method, spec_path, res_path = child
    Path(res_path).write_text(json.dumps(children[method](json.loads(Path(spec_path).read_text())), default=float))
    return True


def keep_record(jsonl: Path, rec: dict[str, Any], invocation: str, **labels: Any) -> dict[str, Any]:
    """``rec`` with its labels, the invocation, the load average and the peak memory, appended to ``jsonl``."""
    rec.update({**labels, "invocation": invocation, "load_avg_1m": os.getloadavg()[0], **_peaks(rec)})
    with open(jsonl, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")
    return rec


def write_report(jsonl: Path, invocation: str, render_fn: Any, path: Path) -> str:
    """The Markdown table of this invocation's records, written to ``path`` and returned."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    md = str(render_fn([r for r in records if r["invocation"] == invocation]))
    path.write_text(md)
    return md


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def render(records: list[dict[str, Any]]) -> str:
    """The table: per case and method, median wall time, the ratio to regsweep, CV and test MSE, peak memory."""
    lines = ["| case | n × p | method | wall s (median) | runs | ratio to regsweep | best CV MSE | test MSE "
             "| largest process MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, c in CASES.items():
        mine = [r for r in records if r["case"] == case and r["status"] == "ok"]
        if not mine:
            continue
        ours = _median([r["wall_s"] for r in mine if r["method"] == "regsweep"])
        for method in ("regsweep", "glmnet", "enetcv"):
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            wall = _median([r["wall_s"] for r in rs])
            ratio = f"{wall / ours:.2f}" if ours and wall else "—"
            lines.append(f"| {case} | {c['n']:,} × {c['p']:,} | {method} | {wall:.1f} | {len(rs)} | {ratio} "
                         f"| {_median([r['best_cv_mse'] for r in rs]):.5g} | {_median([r['test_mse'] for r in rs]):.5g} "
                         f"| {max(r['max_process_rss_mb'] or 0 for r in rs):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the data files live (default: OUT/data-wide)")
    args = ap.parse_args(argv)
    if run_child_mode(args.child, CHILDREN):
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "wide.jsonl"
    work_root = Path(tempfile.mkdtemp(prefix="regsweep-wide-"))
    invocation = time.strftime("%Y%m%dT%H%M%S")
    for case in args.cases:
        files = make_data(case, args.data_dir or args.out / "data-wide")
        for r in range(args.repeats):  # alternated, so that drift in the machine's speed hits every method alike
            for method in ["regsweep", *CASES[case]["peers"]]:
                work = work_root / case / f"{method}{r}"
                rec = (run_regsweep(case, files, work, args.timeout_s) if method == "regsweep"
                       else run_child(method, files, work, args.timeout_s))
                keep_record(jsonl, rec, invocation, case=case, method=method, repeat=r)
                print(f"{case:7s} {method:9s} rep={r} {rec['status']:8.30s} wall={rec['wall_s']:8.2f}s "
                      f"cv={rec.get('best_cv_mse')} test={rec.get('test_mse')} "
                      f"max_rss={rec['max_process_rss_mb']} MB load={rec['load_avg_1m']:.2f}", flush=True)
    print(write_report(jsonl, invocation, render, args.out / "wide.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
