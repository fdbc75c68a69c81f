"""Penalty factors and coefficient limits: regsweep with them, without them, and glmnet with them.

Run:  python benchmarks/controls.py                      # both cases, medians of 3
      python benchmarks/controls.py --cases wide --repeats 1

The controls (glmnet's ``penalty.factor`` and ``lower.limits``, the issue's two oldest requests):
features 0–4 unpenalized (factor 0: known drivers kept in the model), features 5–24 non-negative
(``lower = 0``), every other feature factor 1 and no limit. Data: the equicorrelated generator of
``benchmarks/wide.py`` (ρ = 0.5, 20 informative features of random sign, σ = 1), so the limits bind.

Cases (``--cases``): ``tall`` n = 200,000 × p = 100 (the Gram engine); ``wide`` n = 500 × p = 5,000
(the rows engine).

Methods, each from a cold interpreter in its own process tree (wall time from process start to the
best model fitted; regsweep's is the CLI's whole run with cluster start, MLflow and registration):

- ``regsweep``: 100 trials × 5 folds with the controls (``model.penalty_factor``, ``model.coef_limits``);
- ``regsweep_plain``: the same sweep without them (what the controls cost);
- ``glmnet``: python-glmnet with ``relative_penalties`` and ``lower_limits``, 5 mixing values × 100 λ on
  regsweep's folds, ``n_jobs=2``, set up as ``benchmarks/wide.py`` sets it up (the peer a user with
  these needs has: scikit-learn offers only ``positive=True`` for all features at once).

CV MSE is over the same five folds; test MSE on 10,000 further rows of the generator. Outputs under
``--out``: ``controls.jsonl`` and ``controls.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import wide  # noqa: E402

K, SEED, N_TRIALS = wide.K, wide.SEED, 100
CASES = {"tall": {"n": 200_000, "p": 100}, "wide": {"n": 500, "p": 5_000}}
UNPENALIZED, NONNEGATIVE = range(0, 5), range(5, 25)


def controls(p: int) -> tuple[np.ndarray, np.ndarray]:
    """The penalty factors and lower limits of the module docstring."""
    factor, lower = np.ones(p), np.full(p, -np.inf)
    factor[list(UNPENALIZED)] = 0.0
    lower[list(NONNEGATIVE)] = 0.0
    return factor, lower


def make_data(case: str, data_dir: Path) -> dict[str, str]:
    """Training and test rows of the case (written once)."""
    c = CASES[case]
    d = data_dir / case
    files = {k: str(d / f"{k}.npy") for k in ("X", "y", "Xt", "yt")}
    if not (d / "done").exists():
        d.mkdir(parents=True, exist_ok=True)
        for (xk, yk), (start, n) in zip((("X", "y"), ("Xt", "yt")), ((0, c["n"]), (wide.TEST_START, wide.N_TEST))):
            X, y = wide._dense_rows(c["p"], start, n)
            np.save(files[xk], X)
            np.save(files[yk], y)
        (d / "done").write_text("ok\n")
    return files


def child_glmnet(spec: dict[str, Any]) -> dict[str, Any]:
    """python-glmnet's cv over the mixing values with the factors and limits, on regsweep's folds."""
    from glmnet import ElasticNet

    X, y = np.load(spec["X"]), np.load(spec["y"])
    n, p = X.shape
    factor, lower = controls(p)
    groups = wide._folds(n)
    t0 = time.perf_counter()
    best: dict[str, Any] = {"cv_mse": float("inf")}
    for alpha in wide.MIXINGS:
        est = ElasticNet(alpha=alpha, n_lambda=100, min_lambda_ratio=0.01 if n < p else 1e-4, n_splits=K,
                         scoring="mean_squared_error", cut_point=0.0, n_jobs=2, lower_limits=lower)
        est.fit(X, y, groups=groups, relative_penalties=factor)
        cv = float(-est.cv_mean_score_[est.lambda_max_inx_])
        if cv < best["cv_mse"]:
            best = {"cv_mse": cv, "alpha": alpha, "lambda": float(est.lambda_max_), "model": est}
    done = time.time()
    fit_s = time.perf_counter() - t0
    Xt, yt = np.load(spec["Xt"]), np.load(spec["yt"])
    coef = best["model"].coef_path_[:, best["model"].lambda_max_inx_]
    pred = best["model"].predict(Xt, lamb=best["lambda"])
    return {"fit_done_epoch": done, "fit_s": fit_s, "best_cv_mse": best["cv_mse"], "best_alpha": best["alpha"],
            "best_lambda": best["lambda"], "test_mse": float(np.mean((np.ravel(pred) - yt) ** 2)),
            "min_nonnegative_coef": float(coef[list(NONNEGATIVE)].min())}


def child_regsweep_test(spec: dict[str, Any]) -> dict[str, Any]:
    out = wide.child_regsweep_test(spec)
    import mlflow

    mlflow.set_tracking_uri(spec["tracking_uri"])
    model = mlflow.pyfunc.load_model(spec["model_uri"]).get_raw_model()
    return {**out, "min_nonnegative_coef": float(model.coef[list(NONNEGATIVE)].min())}


CHILDREN = {"glmnet": child_glmnet, "regsweep_test": child_regsweep_test}


def run_child(method: str, spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    return wide.run_child(method, spec, work, timeout, script=Path(__file__).resolve())


def run_regsweep(files: dict[str, str], work: Path, with_controls: bool, timeout: float) -> dict[str, Any]:
    """``benchmarks/wide.py``'s regsweep run, with x0–x4 unpenalized and x5–x24 non-negative (by glob, as a
    user writes them) when ``with_controls``."""
    inf = float("inf")
    model = ({"penalty_factor": {"x[0-4]": 0},
              "coef_limits": {"x[5-9]": [0, inf], "x1[0-9]": [0, inf], "x2[0-4]": [0, inf]}}
             if with_controls else None)
    return wide.run_regsweep("", files, work, timeout, model=model, script=Path(__file__).resolve())


def render(records: list[dict[str, Any]]) -> str:
    lines = ["| case | n × p | method | wall s (median) | runs | ratio to regsweep | best CV MSE | test MSE "
             "| min coef of x5–x24 | largest process MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for case, c in CASES.items():
        mine = [r for r in records if r["case"] == case and r["status"] == "ok"]
        ours = wide._median([r["wall_s"] for r in mine if r["method"] == "regsweep"])
        for method in ("regsweep", "regsweep_plain", "glmnet"):
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            wall = wide._median([r["wall_s"] for r in rs])
            ratio = f"{wall / ours:.2f}" if ours and wall else "—"
            low = min(r.get("min_nonnegative_coef", float("nan")) for r in rs)
            lines.append(f"| {case} | {c['n']:,} × {c['p']:,} | {method} | {wall:.1f} | {len(rs)} | {ratio} "
                         f"| {wide._median([r['best_cv_mse'] for r in rs]):.5g} "
                         f"| {wide._median([r['test_mse'] for r in rs]):.5g} | {low:.3g} "
                         f"| {max(r['max_process_rss_mb'] or 0 for r in rs):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="where the data files live (default: OUT/data-controls)")
    args = ap.parse_args(argv)
    if wide.run_child_mode(args.child, CHILDREN):
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "controls.jsonl"
    work_root = Path(tempfile.mkdtemp(prefix="regsweep-controls-"))
    invocation = time.strftime("%Y%m%dT%H%M%S")
    for case in args.cases:
        files = make_data(case, args.data_dir or args.out / "data-controls")
        for r in range(args.repeats):  # alternated: drift in the machine's speed hits every method alike
            for method in ("regsweep", "regsweep_plain", "glmnet"):
                work = work_root / case / f"{method}{r}"
                rec = (run_child(method, files, work, args.timeout_s) if method == "glmnet"
                       else run_regsweep(files, work, method == "regsweep", args.timeout_s))
                wide.keep_record(jsonl, rec, invocation, case=case, method=method, repeat=r)
                print(f"{case:5s} {method:15s} rep={r} {rec['status']:8.30s} wall={rec['wall_s']:8.2f}s "
                      f"cv={rec.get('best_cv_mse')} test={rec.get('test_mse')} "
                      f"min_nonneg={rec.get('min_nonnegative_coef')} load={rec['load_avg_1m']:.2f}", flush=True)
    print(wide.write_report(jsonl, invocation, render, args.out / "controls.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
