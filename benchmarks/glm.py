"""Binomial and Poisson sweeps: regsweep against what a user would otherwise run, in one run.

Run:  python benchmarks/glm.py --n 100000 --repeats 1                 # both families
      python benchmarks/glm.py --families binomial --n 1000000 --methods regsweep

Data (written once per n under ``--data-dir``): p = 100 AR(1)-correlated Gaussian features (ρ = 0.5), ten
informative coefficients of random sign. ``binomial``: ``P(y = 1) = expit(−0.5 + xᵀβ)``. ``poisson``: counts
with mean ``exposure · exp(−1 + 0.3 xᵀβ)``, exposure uniform on [0.5, 2] (a ``data.exposure`` column). The
held-out scores are on 50,000 further rows of the same generator.

Methods (each from a cold interpreter in its own process tree; wall time from process start to the best model
fitted; regsweep's is the CLI's whole run with cluster start, MLflow and registration; all on regsweep's folds,
``n_jobs=2``; the data files read once before, so that each finds them in the page cache):

- ``regsweep``: 100 trials × 5 folds (``model.family``), the ``min`` choice registered;
- ``lrcv`` (binomial): scikit-learn's ``LogisticRegressionCV(solver="saga", Cs=20, l1_ratios=[.1, .5, .7, .9,
  1])`` after a ``StandardScaler`` (saga's documentation: it converges fast only on scaled features), default
  tolerance;
- ``optuna`` (binomial): 100 Optuna (TPE) trials of ``cross_val_score`` over a ``StandardScaler`` +
  ``LogisticRegression``: lbfgs for l2, saga for l1 and the elastic net (scikit-learn's advice);
- ``glum`` (poisson): ``GeneralizedLinearRegressorCV(family="poisson", l1_ratio=[.1, .5, .7, .9, 1],
  n_alphas=100)`` with the log exposure as offset.

Scores: held-out log-loss (binomial) or mean Poisson deviance (poisson) of each method's chosen model. Outputs
under ``--out``: ``glm.jsonl`` and ``glm.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import wide  # noqa: E402

K, SEED, N_TRIALS, P, N_TEST = 5, 0, 100, 100, 50_000
L1_RATIOS = [0.1, 0.5, 0.7, 0.9, 1.0]
METHODS = {"binomial": ("regsweep", "lrcv", "optuna"), "poisson": ("regsweep", "glum")}


# ================================================================ data
def _rows(family: str, seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 11])
    beta = np.zeros(P)
    beta[:10] = np.random.default_rng(99).uniform(0.3, 1.0, 10) * np.random.default_rng(98).choice([-1, 1], 10)
    X = np.empty((n, P))
    X[:, 0] = rng.standard_normal(n)
    for j in range(1, P):  # AR(1): corr(x_j, x_k) = 0.5^|j−k|
        X[:, j] = 0.5 * X[:, j - 1] + np.sqrt(0.75) * rng.standard_normal(n)
    if family == "binomial":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(0.5 - X @ beta))).astype(np.float64)
        return {"X": X, "y": y}
    exposure = rng.uniform(0.5, 2.0, n)
    return {"X": X, "y": rng.poisson(exposure * np.exp(-1.0 + 0.3 * (X @ beta))).astype(np.float64),
            "exposure": exposure}


def make_data(family: str, n: int, data_dir: Path) -> dict[str, str]:
    d = data_dir / f"{family}-{n}"
    names = ["X", "y", "Xt", "yt"] + (["exposure", "exposure_t"] if family == "poisson" else [])
    files = {k: str(d / f"{k}.npy") for k in names}
    if not (d / "done").exists():
        d.mkdir(parents=True, exist_ok=True)
        for suffix, seed, rows in (("", 1, n), ("t", 2, N_TEST)):
            for key, arr in _rows(family, seed, rows).items():
                name = key + (("_" if key == "exposure" else "") + suffix if suffix else "")
                np.save(files[name], arr)
        (d / "done").write_text("ok\n")
    return files


def _read_once(files: dict[str, str]) -> None:
    """Read the data files once, so that every method finds them in the page cache (data written in an earlier
    run may have left it: the first method would pay the disk for all)."""
    for path in files.values():
        with open(path, "rb") as fh:
            while fh.read(2**24):
                pass


def _folds(family: str, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """regsweep's folds: stratified by class for binomial (folds.stratify), the row hash otherwise."""
    from pipeline.folds import kfold_folds, stratified_folds

    f = stratified_folds(y, K, SEED) if family == "binomial" else kfold_folds(0, y.size, K, SEED)
    return [(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in range(K)]


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y / mu, 1.0)), 0.0)
    return float(np.mean(2 * (ylogy - (y - mu))))


# ================================================================ peers
def child_lrcv(spec: dict[str, Any]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = np.load(spec["X"]), np.load(spec["y"])
    t0 = time.perf_counter()
    est = make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=20, l1_ratios=L1_RATIOS, solver="saga", cv=_folds("binomial", y), scoring="neg_log_loss", n_jobs=2))
    est.fit(X, y)
    done, fit_s = time.time(), time.perf_counter() - t0
    lr = est[-1]
    Xt, yt = np.load(spec["Xt"]), np.load(spec["yt"])
    return {"fit_done_epoch": done, "fit_s": fit_s, "test_score": _log_loss(yt, est.predict_proba(Xt)[:, 1]),
            "best": {"C": float(lr.C_[0]), "l1_ratio": float(lr.l1_ratio_[0])},
            "n_nonzero": int(np.count_nonzero(lr.coef_))}


def child_optuna(spec: dict[str, Any]) -> dict[str, Any]:
    import warnings

    import optuna
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", ConvergenceWarning)
    X, y = np.load(spec["X"]), np.load(spec["y"])
    folds = _folds("binomial", y)

    def model(params: dict[str, Any]) -> Any:
        kind, C = params["penalty"], params["C"]
        ratio = {"l1": 1.0, "l2": 0.0}.get(kind, params.get("l1_ratio", 0.5))
        lr = LogisticRegression(C=C, l1_ratio=ratio, solver="lbfgs" if kind == "l2" else "saga")
        return make_pipeline(StandardScaler(), lr)

    def objective(trial: Any) -> float:
        params = {"penalty": trial.suggest_categorical("penalty", ["l1", "l2", "elasticnet"]),
                  "C": trial.suggest_float("C", 1e-4, 1e2, log=True)}
        if params["penalty"] == "elasticnet":
            params["l1_ratio"] = trial.suggest_float("l1_ratio", 0.05, 0.95)
        return -float(np.mean(cross_val_score(model(params), X, y, cv=folds, scoring="neg_log_loss", n_jobs=2)))

    t0 = time.perf_counter()
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=SEED))
    def progress(study: Any, trial: Any) -> None:  # in the child's log: how far a run cut by --timeout-s got
        print(f"trial {trial.number} done at {time.perf_counter() - t0:.1f} s: {trial.params} {trial.value}",
              file=sys.stderr, flush=True)

    study.optimize(objective, n_trials=N_TRIALS, callbacks=[progress])
    best = model(study.best_params).fit(X, y)
    done, fit_s = time.time(), time.perf_counter() - t0
    Xt, yt = np.load(spec["Xt"]), np.load(spec["yt"])
    return {"fit_done_epoch": done, "fit_s": fit_s, "test_score": _log_loss(yt, best.predict_proba(Xt)[:, 1]),
            "best": study.best_params, "n_nonzero": int(np.count_nonzero(best[-1].coef_))}


def child_glum(spec: dict[str, Any]) -> dict[str, Any]:
    from glum import GeneralizedLinearRegressorCV

    X, y, e = np.load(spec["X"]), np.load(spec["y"]), np.load(spec["exposure"])
    t0 = time.perf_counter()
    est = GeneralizedLinearRegressorCV(family="poisson", l1_ratio=L1_RATIOS, n_alphas=100,
                                       cv=_folds("poisson", y), n_jobs=2)
    est.fit(X, y, offset=np.log(e))
    done, fit_s = time.time(), time.perf_counter() - t0
    Xt, yt, et = np.load(spec["Xt"]), np.load(spec["yt"]), np.load(spec["exposure_t"])
    mu = est.predict(Xt, offset=np.log(et))
    return {"fit_done_epoch": done, "fit_s": fit_s, "test_score": _poisson_deviance(yt, mu),
            "best": {"alpha": float(est.alpha_), "l1_ratio": float(est.l1_ratio_)},
            "n_nonzero": int(np.count_nonzero(est.coef_))}


def child_regsweep_test(spec: dict[str, Any]) -> dict[str, Any]:
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(spec["tracking_uri"])
    model = mlflow.pyfunc.load_model(spec["model_uri"]).get_raw_model()
    Xt, yt = np.load(spec["Xt"]), np.load(spec["yt"])
    if spec["family"] == "binomial":
        return {"test_score": _log_loss(yt, model.predict(Xt)), "n_nonzero": model.n_nonzero}
    et = np.load(spec["exposure_t"])
    frame = pd.DataFrame(Xt, columns=list(model.feature_names))
    return {"test_score": _poisson_deviance(yt, model.predict(frame, offset=et)), "n_nonzero": model.n_nonzero}


CHILDREN = {"lrcv": child_lrcv, "optuna": child_optuna, "glum": child_glum, "regsweep_test": child_regsweep_test}


# ================================================================ orchestration
def run_child(method: str, spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    return wide.run_child(method, spec, work, timeout, script=Path(__file__).resolve())


def run_regsweep(family: str, files: dict[str, str], work: Path, timeout: float) -> dict[str, Any]:
    """The CLI on the files (``model.family``; the exposure as ``data.exposure``), then its model on the test rows."""
    import shutil

    import yaml

    from compare import _child_env, run_monitored

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = {"source": files["X"], "target": files["y"], **({"exposure": files["exposure"]} if family == "poisson"
                                                           else {})}
    cfg = {"data": data, "model": {"family": family}, "folds": {"k": K, "seed": SEED},
           "search": {"n_trials": N_TRIALS, "seed": SEED, "storage": f"sqlite:///{work}/optuna.db",
                      "study_name": "glm"},
           "cluster": {"n_workers": 2},
           "tracking": {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "glm", "registered_model": "glm"}}
    (work / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    exe = str(Path(sys.executable).with_name("regsweep"))
    mon = run_monitored([exe, "sweep", "sweep.yaml", "--summary-json", "summary.json", "--no-progress"],
                        cwd=work, log=work / "regsweep.log", timeout=timeout, as_limit_gib=None, env=_child_env())
    out: dict[str, Any] = {"processes": mon["processes"], "wall_s": mon["wall_s"]}
    if mon["rc"] != 0 or not (work / "summary.json").exists():
        tail = (work / "regsweep.log").read_text(errors="replace").strip().splitlines()[-3:]
        return {**out, "status": f"failed (rc={mon['rc']})", "error": " | ".join(tail)[-400:]}
    s = json.loads((work / "summary.json").read_text())
    t = run_child("regsweep_test", {**files, "family": family, "model_uri": s["model_uri"],
                                    "tracking_uri": f"sqlite:///{work}/mlflow.db"}, work, timeout=600)
    return {**out, "status": "ok", "engine": s["engine"], "best_cv_metric": s["best_cv_metric"],
            "selected": s["selected"], "timings_s": s["timings_s"], "newton_steps": _newton_steps(work),
            "test_score": t.get("test_score"), "n_nonzero": t.get("n_nonzero")}


def _newton_steps(work: Path) -> int:
    """Newton steps of all trials' fold fits (each is one pass over the rows for the weighted Gram of its
    working set, and two or three more for its line search and KKT check)."""
    import optuna

    study = optuna.load_study(study_name="glm", storage=f"sqlite:///{work}/optuna.db")
    return int(sum(t.user_attrs.get("cv", {}).get("n_iter", 0) for t in study.trials))


def render(records: list[dict[str, Any]]) -> str:
    lines = ["| family | n × p | method | wall s (median) | runs | time ratio to regsweep | held-out score "
             "| score ratio to the best | non-zero | largest process MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for family in METHODS:
        mine = [r for r in records if r["family"] == family and r["status"] == "ok"]
        if not mine:
            continue
        ours = wide._median([r["wall_s"] for r in mine if r["method"] == "regsweep"])
        best = min(r["test_score"] for r in mine)
        for method in METHODS[family]:
            rs = [r for r in mine if r["method"] == method]
            if not rs:
                continue
            wall = wide._median([r["wall_s"] for r in rs]) or float("nan")
            ratio = f"{wall / ours:.2f}" if ours else "—"
            score = wide._median([r["test_score"] for r in rs]) or float("nan")
            lines.append(f"| {family} | {rs[0]['n']:,} × {P} | {method} | {wall:.1f} | {len(rs)} | {ratio} "
                         f"| {score:.5f} | {score / best:.4f} | {rs[0].get('n_nonzero')} "
                         f"| {max(r['max_process_rss_mb'] or 0 for r in rs):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=3, metavar=("METHOD", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("--families", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--methods", nargs="*", default=None, help="default: every method of the family")
    ap.add_argument("--n", type=float, default=1e5, help="training rows")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--timeout-s", type=float, default=7200.0)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--data-dir", type=Path, default=None, help="where the data live (default: OUT/data-glm)")
    args = ap.parse_args(argv)
    if wide.run_child_mode(args.child, CHILDREN):
        return 0
    n = int(args.n)
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / "glm.jsonl"
    work_root = Path(tempfile.mkdtemp(prefix="regsweep-glm-"))
    invocation = time.strftime("%Y%m%dT%H%M%S")
    for family in args.families:
        files = make_data(family, n, (args.data_dir or args.out / "data-glm").resolve())  # runs start elsewhere
        _read_once(files)
        for r in range(args.repeats):
            for method in args.methods or METHODS[family]:
                if method not in METHODS[family]:
                    continue
                work = work_root / family / f"{method}{r}"
                rec = (run_regsweep(family, files, work, args.timeout_s) if method == "regsweep"
                       else run_child(method, files, work, args.timeout_s))
                wide.keep_record(jsonl, rec, invocation, family=family, method=method, n=n, repeat=r)
                print(f"{family:8s} {method:9s} rep={r} {rec['status']:8.30s} wall={rec['wall_s']:8.2f}s "
                      f"test={rec.get('test_score')} nnz={rec.get('n_nonzero')} newton={rec.get('newton_steps')} "
                      f"load={rec['load_avg_1m']:.2f}", flush=True)
    print(wide.write_report(jsonl, invocation, render, args.out / "glm.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
