"""A table with text columns of many levels, as a user meets it: `regsweep sweep` on the CSV against one process
running scikit-learn's one-hot pipeline and ElasticNetCV on the same rows and folds.

Run:  python benchmarks/levels.py [--n 100000] [--repeats 3] [--out DIR] [--data-dir DIR]
      python benchmarks/levels.py --family binomial --no-peer   # regsweep alone on a binary target

Data (seeded): ``n`` training rows and 50,000 test rows of 10 numeric columns (AR(1), ρ = 0.5; ``x3`` with 5%
gaps, imputed) and three text columns of 50, 200 and 800 levels drawn with Zipf-like frequencies (a level's
share ∝ 1/rank), 1,060 features once one-hot encoded. The target is linear in four numbers and in the levels
of ``shop`` and of 30 of ``city``'s levels, with unit noise; ``--family binomial`` makes it a class drawn with
``P(y = 1) = expit(y − 0.5)`` and scores the test rows by log-loss (the peer is then not run: scikit-learn's
``LogisticRegressionCV`` with saga over 20 Cs × 5 l1_ratios on these rows was not measured here).

- regsweep: ``regsweep sweep`` from the command line (100 trials, embedded two-worker cluster, new SQLite files,
  the model registered), timed from command start to exit; its registered model is loaded from MLflow as a
  user would and scored on the test rows (the raw frame, text and gaps as read by pandas).
- the peer: a new ``python`` process that reads the CSV with pandas and fits
  ``make_pipeline(ColumnTransformer([OneHotEncoder(handle_unknown="ignore"), make_pipeline(SimpleImputer(),
  StandardScaler())]), StandardScaler(with_mean=False), ElasticNetCV(l1_ratio=[.1, .5, .7, .9, 1], alphas=100,
  cv=PredefinedSplit(<regsweep's folds>), n_jobs=2))``: the sparse one-hot matrix, every feature scaled to unit
  variance as regsweep (and glmnet) standardizes, scikit-learn's documented way for text columns.

Reported: medians of the walls after one warm-up of each, their ratio, regsweep's ``timings_s`` phases, and both
test MSEs. Writes ``levels.jsonl`` and ``levels.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixed_cost import _timed, adopt_orphans  # noqa: E402  (the same timing as the fixed-cost benchmark)

K, SEED, N_TEST = 5, 0, 50_000
LEVELS = {"shop": 50, "city": 200, "sku": 800}
PHASES = ("setup", "cluster_start", "data_pass", "trials", "path", "refit_and_logging")

_PEER = """
import sys, numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import ElasticNetCV
from sklearn.model_selection import PredefinedSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
train, test, folds = pd.read_csv(sys.argv[1]), pd.read_csv(sys.argv[2]), np.load(sys.argv[3])
text = ["shop", "city", "sku"]
numbers = [c for c in train.columns if c not in text + ["y"]]
encode = ColumnTransformer([("text", OneHotEncoder(handle_unknown="ignore"), text),
                            ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers)])
cv = ElasticNetCV(l1_ratio=[0.1, 0.5, 0.7, 0.9, 1.0], alphas=100, cv=PredefinedSplit(folds), n_jobs=2)
model = make_pipeline(encode, StandardScaler(with_mean=False), cv).fit(train.drop(columns="y"), train["y"])
print(float(np.mean((model.predict(test.drop(columns="y")) - test["y"]) ** 2)))
"""

_SCORE = """
import sys, mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
test = pd.read_csv(sys.argv[3])
pred = np.asarray(mlflow.pyfunc.load_model(sys.argv[2]).predict(test.drop(columns="y")), dtype=float).ravel()
y = test["y"].to_numpy(dtype=float)
if sys.argv[4] == "binomial":  # the probability of the positive class (True): log-loss
    p = np.clip(pred, 1e-15, 1 - 1e-15)
    print(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
else:
    print(float(np.mean((pred - y) ** 2)))
"""


def binary(frame: Any, seed: int) -> Any:
    """The table with its target made a class, ``P(y = 1) = expit(y − 0.5)``."""
    rng = np.random.default_rng(seed + 100)
    return frame.assign(y=rng.random(len(frame)) < 1.0 / (1.0 + np.exp(-(frame["y"] - 0.5))))


def make_table(n: int, seed: int) -> Any:
    """``n`` rows of the generator (module docstring); the same ``seed`` gives the same effects."""
    import pandas as pd

    effects = np.random.default_rng(SEED)  # the model: fixed whatever rows are drawn
    beta = np.zeros(10)
    beta[[0, 2, 3, 7]] = effects.normal(0.0, 1.0, 4)
    shop_effect = effects.normal(0.0, 0.5, LEVELS["shop"])
    city_effect = np.where(np.arange(LEVELS["city"]) < 30, effects.normal(0.0, 1.0, LEVELS["city"]), 0.0)
    rng = np.random.default_rng(seed)
    X = np.empty((n, 10))
    X[:, 0] = rng.standard_normal(n)
    for j in range(1, 10):
        X[:, j] = 0.5 * X[:, j - 1] + np.sqrt(0.75) * rng.standard_normal(n)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(10)])
    codes = {}
    for name, levels in LEVELS.items():
        share = 1.0 / np.arange(1, levels + 1)
        codes[name] = rng.choice(levels, n, p=share / share.sum())
        frame[name] = np.char.add(name[:2], codes[name].astype(str))
    y = X @ beta + shop_effect[codes["shop"]] + city_effect[codes["city"]] + rng.standard_normal(n)
    frame.loc[rng.random(n) < 0.05, "x3"] = np.nan
    return frame.assign(y=y)


def make_data(n: int, data_dir: Path, family: str = "gaussian") -> dict[str, str]:
    """The training and test CSVs and regsweep's fold ids (written once per ``n`` and family)."""
    from pipeline.folds import kfold_folds

    d = data_dir / f"levels-n{n}" / family
    files = {"train": str(d / "train.csv"), "test": str(d / "test.csv"), "folds": str(d / "folds.npy")}
    if not Path(files["folds"]).exists():
        d.mkdir(parents=True, exist_ok=True)
        for path, rows, seed in ((files["train"], n, 1), (files["test"], N_TEST, 2)):
            table = make_table(rows, seed)
            (binary(table, seed) if family == "binomial" else table).to_csv(path, index=False)
        np.save(files["folds"], kfold_folds(0, n, K, SEED))
    return files


def run_regsweep(files: dict[str, str], env: dict[str, str], family: str = "gaussian") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="regsweep-levels-") as tmp:
        work = Path(tmp)
        args = ["--set", f"data.source={files['train']}", "--set", "data.target=y", "--set", "data.missing=impute",
                "--set", f"folds.k={K}", "--set", f"folds.seed={SEED}", "--set", "search.n_trials=100",
                "--set", f"model.family={family}"]
        exe = str(Path(sys.executable).with_name("regsweep"))
        wall, cpu, done = _timed([exe, "sweep", *args, "--summary-json", "s.json", "--no-progress"], work, env)
        if done.returncode != 0:
            return {"status": f"failed: {done.stderr.strip()[-300:]}", "wall_s": wall}
        s = json.loads((work / "s.json").read_text())
        scored = _timed([sys.executable, "-c", _SCORE, f"sqlite:///{work}/mlflow.db", s["model_uri"],
                         files["test"], family], work, env)[2]
    return {"status": "ok", "wall_s": wall, "cpu_s": cpu, "best_cv_metric": s["best_cv_metric"],
            "timings_s": s["timings_s"], "test_score": float(scored.stdout.split()[-1])}


def run_peer(files: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="enetcv-levels-") as tmp:
        wall, cpu, done = _timed([sys.executable, "-c", _PEER, files["train"], files["test"], files["folds"]],
                                 Path(tmp), env)
    if done.returncode != 0:
        return {"status": f"failed: {done.stderr.strip()[-300:]}", "wall_s": wall}
    return {"status": "ok", "wall_s": wall, "cpu_s": cpu, "test_score": float(done.stdout.split()[-1])}


def table(records: list[dict[str, Any]]) -> str:
    ours = [r for r in records if r["method"] == "regsweep" and r["status"] == "ok"]
    peer = [r for r in records if r["method"] == "enetcv" and r["status"] == "ok"]
    if not ours:
        return "(no complete run)"
    a = statistics.median(r["wall_s"] for r in ours)
    b = statistics.median(r["wall_s"] for r in peer) if peer else float("nan")
    score = "log-loss" if records[0]["family"] == "binomial" else "MSE"
    phases = " | ".join(f"{statistics.median(r['timings_s'].get(k, 0.0) for r in ours):.2f}" for k in PHASES)
    theirs = f"{peer[0]['test_score']:.6f}" if peer else "–"
    return "\n".join([
        f"| n | family | regsweep wall s | ElasticNetCV process s | ratio | regsweep test {score} | "
        f"peer test {score} | "
        + " | ".join(PHASES) + " |", "|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(PHASES),
        f"| {records[0]['n']} | {records[0]['family']} | {a:.2f} | {b:.2f} | {a / b:.3f} | "
        f"{ours[0]['test_score']:.6f} | {theirs} | {phases} |"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmark-results"))
    ap.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "regsweep-bench-data")
    ap.add_argument("--family", choices=("gaussian", "binomial"), default="gaussian")
    ap.add_argument("--no-peer", action="store_true", help="regsweep alone (always so for --family binomial)")
    args = ap.parse_args()
    adopt_orphans()
    args.out.mkdir(parents=True, exist_ok=True)
    files = make_data(args.n, args.data_dir, args.family)
    env = dict(os.environ)
    records: list[dict[str, Any]] = []
    methods: list[tuple[str, Any]] = [("regsweep", lambda f, e: run_regsweep(f, e, args.family))]
    if args.family == "gaussian" and not args.no_peer:
        methods.append(("enetcv", run_peer))
    for i in range(args.repeats + 1):  # the first round warms the page cache and the caches up
        for method, run in methods:
            rec = {"n": args.n, "family": args.family, "method": method, "round": i, "load": os.getloadavg()[0],
                   **run(files, env)}
            print(json.dumps(rec), flush=True)
            if i > 0:
                records.append(rec)
    with open(args.out / "levels.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    (args.out / "levels.md").write_text(table(records) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
