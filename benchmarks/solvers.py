"""Benchmark regsweep's Gram solvers against scikit-learn and a naive ridge.

What it measures
----------------
1. **Elastic net / lasso on a precomputed Gram.** For p in {20, 100, 500, 2000}
   and λ1/λ1_max in {0.5, 0.1, 0.01} (λ1_max = max|q|), elastic net with
   l1_ratio 0.9 (λ2 = λ1/9) and pure lasso (λ2 = 0), on synthetic data with
   AR(1)-correlated columns (ρ = 0.5), n = max(2p, 1000) rows and a sparse
   true β (10 % informative features, noise at SNR 4). The wall time of ONE
   fit is timed for

   - regsweep ``enet_gram(G, q, yy, λ1, λ2, beta0)``;
   - scikit-learn's Gram coordinate descent, called through
     ``enet_path(..., precompute=Gram, Xy=Xy, check_input=False)`` (the solver
     ``cd_fast.enet_coordinate_descent_gram`` plus negligible Python glue:
     the fair solver-vs-solver number, ``sk cd``);
   - ``ElasticNet(precompute=Gram, fit_intercept=False, copy_X=False).fit``
     (the estimator as a user calls it: also validates X, checks the Gram
     and recomputes ``Xy = Xᵀy``, ``O(np)``; ``sk fit``);

   both "cold" (β0 = 0) and "warm" (β0 = the solution at 1.1·λ, same
   l1_ratio, computed once beforehand and handed to every solver).

   Same problem: regsweep gets ``G = XsᵀXs/n``, ``q = Xsᵀyc/n``,
   ``yy = ycᵀyc/n`` (from ``SuffStats`` → ``GramProblem``, standardized,
   centred); sklearn gets the standardized centred ``Xs``, ``yc`` and exactly
   ``Gram = n·G``, ``Xy = n·q`` (sklearn wants the *unnormalized* XᵀX: its CD
   uses ``l1_reg = α·l1_ratio·n`` against ``Q = XᵀX``, and ``_pre_fit``'s
   Gram check compares one entry with ``XsᵀXs``). The penalty maps as
   ``α = λ1 + λ2``, ``l1_ratio = λ1/(λ1 + λ2)``.

   Same tolerance: sklearn's Gram CD objective is n × ours and it stops when
   (max coordinate update ≤ tol·max|w| and) ``gap_sk ≤ tol_sk · yᵀy``
   (``tol *= y_norm2`` in ``_cd_fast.pyx``), i.e. ``gap ≤ tol_sk · yy`` in our
   units; regsweep stops when ``gap ≤ tol · ½yy``. So ``tol_sk = tol/2`` gives
   the same absolute gap threshold. Both use the same gap formula
   ("formulation A"); the table shows each solver's gap evaluated by
   regsweep's ``enet_duality_gap`` on its returned β, in objective units
   (sklearn's ``dual_gap_`` is the same number, already divided by n).
   Main rows use tol = 1e-10 (regsweep's default), extra elastic-net rows
   use the looser tol = 1e-6.

2. **Ridge over a λ2 grid.** For p in {100, 500, 2000}: ``RidgeFactor``
   (one eigendecomposition, then ``O(p²)`` per λ2) for 100 log-spaced λ2,
   against a fresh ``scipy.linalg.solve(G + λ2 I, q, assume_a="pos")`` per
   λ2, with the max abs difference of the two coefficient paths.

Timing: ``time.perf_counter``, one untimed warm-up call, then the median
over repeats (7, or 3 for p = 2000; 2 with ``--quick``); a repeat loops the
call enough times to last ≥ 10 ms and reports the per-call time.

Threads: BLAS and OpenMP are pinned to ONE thread with
``threadpoolctl.threadpool_limits(1)`` so that neither solver wins by
parallel BLAS (sklearn's CD is single-threaded; regsweep's Cholesky and
GEMV calls would otherwise use every core). The thread pools found before
pinning (``threadpoolctl.threadpool_info()``) go into the JSON header.
``OPENBLAS_CORETYPE`` may be set on this machine to force an OpenBLAS kernel;
the script does not touch it, it only records its value in the header
(``architecture`` in the thread-pool info shows the kernel in use).

Run (from the repository root)::

    python benchmarks/solvers.py            # full run, a few minutes
    python benchmarks/solvers.py --quick    # p in {20, 100}, 2 repeats: seconds
    python benchmarks/solvers.py --out PATH # JSON lines elsewhere

Output: Markdown tables on stdout; JSON lines (a header, then one record per
row) in ``benchmarks/results/solvers.jsonl`` (git-ignored) or ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import scipy.linalg
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, enet_path
from threadpoolctl import threadpool_info, threadpool_limits

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(_REPO))

from pipeline.solvers import GramProblem, RidgeFactor, SuffStats, enet_duality_gap, enet_gram  # noqa: E402

P_FULL = (20, 100, 500, 2000)
P_QUICK = (20, 100)
RATIOS = (0.5, 0.1, 0.01)
PENALTIES = {"enet": 1.0 / 9.0, "lasso": 0.0}  # λ2 / λ1 (l1_ratio 0.9, 1.0)
TOL = 1e-10
TOL_LOOSE = 1e-6
LOOSE_RATIOS = (0.1, 0.01)  # enet rows repeated at TOL_LOOSE
WARM_FACTOR = 1.1  # warm start = solution at WARM_FACTOR · λ
RIDGE_P_FULL = (100, 500, 2000)
RIDGE_P_QUICK = (100,)
RIDGE_GRID = np.logspace(-4, 2, 100)
MIN_REPEAT_SECONDS = 0.01
DEFAULT_OUT = _REPO / "benchmarks" / "results" / "solvers.jsonl"


# --------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class Problem:
    """One synthetic regression, as regsweep and as sklearn see it."""

    p: int
    n: int
    G: np.ndarray  # XsᵀXs / n
    q: np.ndarray  # Xsᵀyc / n
    yy: float  # ycᵀyc / n
    Xs: np.ndarray  # standardized, centred design (Fortran order)
    yc: np.ndarray  # centred target
    gram_sk: np.ndarray  # n · G, C order (sklearn's precompute)
    xy_sk: np.ndarray  # n · q

    @property
    def lambda_max(self) -> float:
        return float(np.max(np.abs(self.q)))


def make_problem(p: int, seed: int = 0, rho: float = 0.5, informative: float = 0.1) -> Problem:
    """AR(1)-correlated design, sparse β, Gaussian noise at signal/noise variance 4."""
    rng = np.random.default_rng(seed + p)
    n = max(2 * p, 1000)
    Z = rng.standard_normal((n, p))
    X = np.empty((n, p))
    X[:, 0] = Z[:, 0]
    for j in range(1, p):  # corr(X_i, X_j) = rho^|i-j|
        X[:, j] = rho * X[:, j - 1] + np.sqrt(1.0 - rho**2) * Z[:, j]
    X = 3.0 * X + rng.uniform(-5.0, 5.0, p)  # non-trivial means and scales
    beta = np.zeros(p)
    support = rng.choice(p, max(1, round(informative * p)), replace=False)
    beta[support] = rng.choice([-1.0, 1.0], support.size) * rng.uniform(0.5, 2.0, support.size)
    signal = X @ beta
    y = signal + 0.5 * signal.std() * rng.standard_normal(n) + 7.0

    prob = GramProblem.from_stats(SuffStats.from_block(X, y), fit_intercept=True, standardize=True)
    if not prob.kept.all():
        raise RuntimeError("synthetic design has a constant column")
    Xs = np.asfortranarray((X - prob.x_center) / prob.x_scale)
    yc = y - prob.y_center
    return Problem(
        p=p,
        n=n,
        G=prob.G,
        q=prob.q,
        yy=prob.yy,
        Xs=Xs,
        yc=yc,
        gram_sk=np.ascontiguousarray(n * prob.G),
        xy_sk=n * prob.q,
    )


# ------------------------------------------------------------------- timing
def time_call(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` repeats (after one warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    loops = max(1, int(MIN_REPEAT_SECONDS / max(once, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops)
    return statistics.median(samples)


# ------------------------------------------------------------------ solvers
@dataclass(frozen=True)
class Fit:
    """What one timed call returns (the common gap is evaluated afterwards, untimed)."""

    beta: np.ndarray
    n_iter: int
    own_gap: float  # duality gap as the solver reported it (objective units)
    converged: bool


def fit_regsweep(
    pb: Problem, lam1: float, lam2: float, beta0: np.ndarray | None, tol: float
) -> Callable[[], Fit]:
    def run() -> Fit:
        res = enet_gram(pb.G, pb.q, pb.yy, lam1, lam2, beta0, tol=tol)
        return Fit(res.beta, res.n_iter, res.dual_gap, res.converged)

    return run


def _sk_penalty(lam1: float, lam2: float) -> tuple[float, float]:
    """(alpha, l1_ratio) of sklearn for ``λ1‖β‖₁ + (λ2/2)‖β‖²``."""
    return lam1 + lam2, lam1 / (lam1 + lam2)


def fit_sklearn_cd(
    pb: Problem, lam1: float, lam2: float, beta0: np.ndarray | None, tol: float
) -> Callable[[], Fit]:
    """sklearn's Gram CD through ``enet_path`` with validation off."""
    alpha, l1_ratio = _sk_penalty(lam1, lam2)

    def run() -> Fit:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            _, coefs, gaps, n_iters = enet_path(
                pb.Xs,
                pb.yc,
                l1_ratio=l1_ratio,
                alphas=[alpha],
                precompute=pb.gram_sk,
                Xy=pb.xy_sk,
                coef_init=None if beta0 is None else beta0.copy(),  # CD writes in place
                check_input=False,
                return_n_iter=True,
                tol=tol / 2.0,
                max_iter=100_000,
            )
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return Fit(coefs[:, 0], int(n_iters[0]), float(gaps[0]), converged)

    return run


def fit_sklearn_estimator(
    pb: Problem, lam1: float, lam2: float, beta0: np.ndarray | None, tol: float
) -> Callable[[], Fit]:
    """``ElasticNet(precompute=Gram).fit`` as a user would call it."""
    alpha, l1_ratio = _sk_penalty(lam1, lam2)

    def run() -> Fit:
        est = ElasticNet(
            alpha=alpha,
            l1_ratio=l1_ratio,
            precompute=pb.gram_sk,
            fit_intercept=False,
            copy_X=False,  # Xs is already what sklearn would copy to
            tol=tol / 2.0,
            max_iter=100_000,
            warm_start=beta0 is not None,
        )
        if beta0 is not None:
            est.coef_ = beta0.copy()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            est.fit(pb.Xs, pb.yc)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        return Fit(est.coef_, int(est.n_iter_), float(est.dual_gap_), converged)

    return run


# --------------------------------------------------------------- enet bench
def enet_cases(p: int) -> Iterable[tuple[str, float, float]]:
    """(penalty, λ1/λ1_max, tol) for one p."""
    for penalty in PENALTIES:
        for ratio in RATIOS:
            yield penalty, ratio, TOL
    for ratio in LOOSE_RATIOS:
        yield "enet", ratio, TOL_LOOSE


def bench_enet_case(
    pb: Problem, penalty: str, ratio: float, tol: float, repeats: int
) -> list[dict[str, Any]]:
    """Cold and warm rows for one (p, penalty, λ ratio, tol)."""
    lam1 = ratio * pb.lambda_max
    lam2 = PENALTIES[penalty] * lam1
    neighbour = enet_gram(pb.G, pb.q, pb.yy, WARM_FACTOR * lam1, WARM_FACTOR * lam2, tol=1e-14).beta
    rows = []
    for start, beta0 in (("cold", None), ("warm", neighbour)):
        rs, cd, est = (
            make(pb, lam1, lam2, beta0, tol)
            for make in (fit_regsweep, fit_sklearn_cd, fit_sklearn_estimator)
        )
        f_rs, f_cd, f_est = rs(), cd(), est()
        t_rs, t_cd, t_est = (time_call(fn, repeats) for fn in (rs, cd, est))
        gap_rs, gap_cd = (enet_duality_gap(pb.G, pb.q, pb.yy, f.beta, lam1, lam2) for f in (f_rs, f_cd))
        rows.append(
            {
                "kind": "enet",
                "p": pb.p,
                "n": pb.n,
                "penalty": penalty,
                "lambda_ratio": ratio,
                "lambda1": lam1,
                "lambda2": lam2,
                "tol": tol,
                "tol_sklearn": tol / 2.0,
                "gap_tol": tol * 0.5 * pb.yy,
                "start": start,
                "nnz": int(np.count_nonzero(f_rs.beta)),
                "nnz_sklearn": int(np.count_nonzero(f_cd.beta)),
                "regsweep_n_iter": f_rs.n_iter,
                "sklearn_n_iter": f_cd.n_iter,
                "regsweep_ms": 1e3 * t_rs,
                "sklearn_cd_ms": 1e3 * t_cd,
                "sklearn_fit_ms": 1e3 * t_est,
                "speedup_cd": t_cd / t_rs,
                "speedup_fit": t_est / t_rs,
                "regsweep_gap": gap_rs,
                "sklearn_gap": gap_cd,
                "regsweep_own_gap": f_rs.own_gap,
                "sklearn_own_gap": f_cd.own_gap,
                "regsweep_converged": f_rs.converged,
                "sklearn_converged": f_cd.converged,
                "max_abs_coef_diff": float(np.max(np.abs(f_rs.beta - f_cd.beta))),
                "max_abs_coef_diff_fit_vs_cd": float(np.max(np.abs(f_est.beta - f_cd.beta))),
                "repeats": repeats,
            }
        )
    return rows


def check_gram_mapping(pb: Problem) -> dict[str, Any]:
    """sklearn on the Gram (n·G, n·q) must equal sklearn on Xs itself (no Gram)."""
    lam1 = 0.1 * pb.lambda_max
    lam2 = lam1 / 9.0
    alpha, l1_ratio = _sk_penalty(lam1, lam2)
    common = dict(alpha=alpha, l1_ratio=l1_ratio, fit_intercept=False, tol=1e-12, max_iter=100_000)
    with_gram = ElasticNet(precompute=pb.gram_sk, **common).fit(pb.Xs, pb.yc).coef_
    no_gram = ElasticNet(precompute=False, **common).fit(pb.Xs, pb.yc).coef_
    ours = enet_gram(pb.G, pb.q, pb.yy, lam1, lam2, tol=1e-14).beta
    return {
        "kind": "gram_mapping_check",
        "p": pb.p,
        "max_abs_diff_gram_vs_nogram": float(np.max(np.abs(with_gram - no_gram))),
        "max_abs_diff_regsweep_vs_nogram": float(np.max(np.abs(ours - no_gram))),
    }


# -------------------------------------------------------------- ridge bench
def ridge_factor_path(G: np.ndarray, q: np.ndarray, grid: np.ndarray) -> np.ndarray:
    factor = RidgeFactor.from_gram(G, q)
    return np.stack([factor.solve(lam) for lam in grid])


def ridge_fresh_path(G: np.ndarray, q: np.ndarray, grid: np.ndarray) -> np.ndarray:
    eye = np.eye(G.shape[0])
    return np.stack([scipy.linalg.solve(G + lam * eye, q, assume_a="pos") for lam in grid])


def bench_ridge(pb: Problem, repeats: int) -> dict[str, Any]:
    grid = RIDGE_GRID
    diff = float(np.max(np.abs(ridge_factor_path(pb.G, pb.q, grid) - ridge_fresh_path(pb.G, pb.q, grid))))
    t_factor_path = time_call(lambda: ridge_factor_path(pb.G, pb.q, grid), repeats)
    t_fresh_path = time_call(lambda: ridge_fresh_path(pb.G, pb.q, grid), repeats)
    # breakdown, to explain the ratio
    t_eigh = time_call(lambda: RidgeFactor.from_gram(pb.G, pb.q), repeats)
    eye = np.eye(pb.p)
    t_one_fresh = time_call(lambda: scipy.linalg.solve(pb.G + eye, pb.q, assume_a="pos"), repeats)
    return {
        "kind": "ridge",
        "p": pb.p,
        "n_lambda": grid.size,
        "factor_once_ms": 1e3 * t_factor_path,
        "fresh_solve_ms": 1e3 * t_fresh_path,
        "speedup": t_fresh_path / t_factor_path,
        "eigh_ms": 1e3 * t_eigh,
        "one_fresh_solve_ms": 1e3 * t_one_fresh,
        "max_abs_diff": diff,
        "repeats": repeats,
    }


# ------------------------------------------------------------------ output
def header(args: argparse.Namespace, pools_before: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "header",
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "argv": sys.argv,
        "quick": args.quick,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sklearn": sklearn.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "threadpool_info": pools_before,
        "threadpool_info_pinned": threadpool_info(),
        "blas_threads": 1,
        "tol": TOL,
        "tol_loose": TOL_LOOSE,
        "tol_sklearn": "tol / 2 (same absolute gap threshold)",
        "warm_start": f"solution at {WARM_FACTOR} * lambda",
        "timing": f"median of repeats, each >= {MIN_REPEAT_SECONDS}s of loops, after 1 warm-up call",
    }


def _g(x: float) -> str:
    return f"{x:.1e}"


def _ms(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def enet_table(rows: list[dict[str, Any]]) -> str:
    cols = [
        "p", "pen", "λ1/λmax", "tol", "start", "nnz", "rs it", "sk ep",
        "rs ms", "sk cd ms", "sk fit ms", "sk cd/rs", "sk fit/rs",
        "gap tol", "gap rs", "gap sk", "max|Δβ|",
    ]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        flag = "" if r["regsweep_converged"] and r["sklearn_converged"] else " (!)"
        cells = [
            r["p"], r["penalty"], r["lambda_ratio"], _g(r["tol"]), r["start"], r["nnz"],
            r["regsweep_n_iter"], r["sklearn_n_iter"],
            _ms(r["regsweep_ms"]), _ms(r["sklearn_cd_ms"]), _ms(r["sklearn_fit_ms"]),
            f"{r['speedup_cd']:.2f}", f"{r['speedup_fit']:.2f}",
            _g(r["gap_tol"]), _g(r["regsweep_gap"]), _g(r["sklearn_gap"]),
            _g(r["max_abs_coef_diff"]) + flag,
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def ridge_table(rows: list[dict[str, Any]]) -> str:
    cols = [
        "p", "#λ2", "factor-once ms", "fresh solve ms", "speedup", "eigh ms", "1 solve ms", "max|Δβ|",
    ]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---:|" * len(cols)]
    for r in rows:
        cells = [
            r["p"], r["n_lambda"], _ms(r["factor_once_ms"]), _ms(r["fresh_solve_ms"]),
            f"{r['speedup']:.1f}", _ms(r["eigh_ms"]), _ms(r["one_fresh_solve_ms"]), _g(r["max_abs_diff"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, default=float) + "\n")


# -------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="p in {20, 100}, 2 repeats")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON-lines output file")
    return parser.parse_args(argv)


def repeats_for(p: int, quick: bool) -> int:
    if quick:
        return 2
    return 3 if p >= 2000 else 7


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    enet_sizes = P_QUICK if args.quick else P_FULL
    ridge_sizes = RIDGE_P_QUICK if args.quick else RIDGE_P_FULL
    pools_before = threadpool_info()
    records: list[dict[str, Any]] = []
    with threadpool_limits(limits=1):  # BLAS + OpenMP on one thread for both solvers
        records.append(header(args, pools_before))
        problems = {p: make_problem(p) for p in sorted({*enet_sizes, *ridge_sizes, 100})}

        check = check_gram_mapping(problems[100])
        records.append(check)
        print(
            f"sklearn Gram mapping check (p=100, tol 1e-12): max|β(Gram=n·G) − β(no Gram)| = "
            f"{_g(check['max_abs_diff_gram_vs_nogram'])}, max|β(regsweep) − β(sklearn, no Gram)| = "
            f"{_g(check['max_abs_diff_regsweep_vs_nogram'])}\n",
            flush=True,
        )

        enet_rows: list[dict[str, Any]] = []
        for p in enet_sizes:
            for penalty, ratio, tol in enet_cases(p):
                rows = bench_enet_case(problems[p], penalty, ratio, tol, repeats_for(p, args.quick))
                enet_rows += rows
                for r in rows:  # progress, on stderr so stdout stays Markdown
                    print(
                        f"  p={p} {penalty} {ratio} tol={tol:g} {r['start']}: "
                        f"rs {r['regsweep_ms']:.3g} ms, sk cd {r['sklearn_cd_ms']:.3g} ms",
                        file=sys.stderr,
                        flush=True,
                    )
        records += enet_rows

        ridge_rows = [bench_ridge(problems[p], repeats_for(p, args.quick)) for p in ridge_sizes]
        records += ridge_rows

    write_jsonl(args.out, records)
    print(
        f"## Elastic net / lasso on a Gram (tol = {TOL:g} unless stated; sklearn tol = tol/2; "
        f"BLAS pinned to 1 thread; times are ms per fit, median)\n"
    )
    print(enet_table(enet_rows))
    print(
        "\nrs = regsweep enet_gram; sk cd = sklearn Gram CD via enet_path(check_input=False); "
        "sk fit = ElasticNet(precompute=Gram).fit; rs it = Newton steps; sk ep = CD epochs; "
        "gap tol = tol·½yy (both solvers' threshold); gaps in objective units "
        "(enet_duality_gap on each β); max|Δβ| = regsweep vs sk cd (standardized scale); "
        "(!) = a solver reported non-convergence.\n"
    )
    print(
        f"## Ridge: {RIDGE_GRID.size} λ2 values, RidgeFactor (eigh once) "
        "vs scipy.linalg.solve per λ2\n"
    )
    print(ridge_table(ridge_rows))
    print(f"\nJSON lines: {args.out}")


if __name__ == "__main__":
    main()
