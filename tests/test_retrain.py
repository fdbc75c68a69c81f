"""``regsweep retrain`` on the embedded cluster: decisions, exact held-out scores, the cache, the lock, exit codes.

One registered model lives through a sequence of runs on a growing Parquet
directory (one file per delivery): sweep → first retrain (promoted) → same
data (up to date, nothing read) → more data of the same distribution (kept,
only the new blocks read) → data of a shifted distribution (promoted). Every
reported score is recomputed independently with numpy on the held-out rows,
and every challenger against scikit-learn fitted on the training rows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import ElasticNet, Lasso, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import pipeline.cv.statcache as statcache
from pipeline.config import load_config
from pipeline.retrain import retrain_plan, run_retrain
from pipeline.cv.statcache import heldout_rows
from pipeline.sweep import execute_sweep

P = 5
ROWS_PER_GROUP = 250
BLOCK_ROWS = 500  # two row groups per block
BETA_A = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
BETA_B = np.array([-1.0, 2.0, 1.5, 0.0, -2.0])  # the shifted distribution


def _write_part(directory: Path, index: int, n: int, beta: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, P)) * [1.0, 2.0, 0.5, 1.0, 3.0] + [0.0, 5.0, -1.0, 0.0, 10.0]
    y = X @ beta + 3.0 + rng.standard_normal(n)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(P)]).assign(y=y)
    frame.to_parquet(directory / f"part-{index:03d}.parquet", row_group_size=ROWS_PER_GROUP, index=False)


def _rows(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.concat([pd.read_parquet(p) for p in sorted(directory.glob("*.parquet"))], ignore_index=True)
    return frame[[f"x{j}" for j in range(P)]].to_numpy(), frame["y"].to_numpy()


def _sklearn_model(penalty: str, lam1: float, lam2: float):
    """The same objective in scikit-learn's terms, standardizing inside the fit (glmnet's 1/n variance)."""
    if penalty == "l1":
        reg = Lasso(alpha=lam1, tol=1e-12, max_iter=1_000_000)
    elif penalty == "l2":
        reg = None
    else:
        reg = ElasticNet(alpha=lam1 + lam2, l1_ratio=lam1 / (lam1 + lam2), tol=1e-12, max_iter=1_000_000)
    return reg


def _reference_scores(directory: Path, summary: dict, prev_coef: np.ndarray, prev_intercept: float, cfg) -> tuple[float, float]:
    """Champion and challenger held-out MSE from the rows: numpy for the champion, scikit-learn for the challenger."""
    X, y = _rows(directory)
    held = heldout_rows(0, len(y), cfg.retrain.holdout.fraction, cfg.retrain.holdout.seed)
    champion = float(np.mean((X[held] @ prev_coef + prev_intercept - y[held]) ** 2))
    p = summary["challenger_params"]
    Xt, yt = X[~held], y[~held]
    if p["penalty"] == "l2":
        est = make_pipeline(StandardScaler(), Ridge(alpha=len(yt) * p["lambda2"], solver="svd")).fit(Xt, yt)
    else:
        est = make_pipeline(StandardScaler(), _sklearn_model(p["penalty"], p["lambda1"], p["lambda2"])).fit(Xt, yt)
    challenger = float(np.mean((est.predict(X[held]) - y[held]) ** 2))
    return champion, challenger


class _CountLoads:
    """Counts ``load_block`` calls made by the retrain's statistics tasks (thread workers: same process)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loaded: list[tuple[str, int]] = []
        real = statcache.load_block

        def counting(plan, spec):
            self.loaded.append((Path(spec.path).name, spec.index))
            return real(plan, spec)

        monkeypatch.setattr(statcache, "load_block", counting)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data directory, a config and the sweep that registered the first candidate."""
    tmp = tmp_path_factory.mktemp("retrain")
    data = tmp / "data"
    data.mkdir()
    _write_part(data, 0, 2000, BETA_A, seed=1)
    overrides = [
        f"data.source={data}", "data.target=y", f"data.block_rows={BLOCK_ROWS}",
        f"search.storage=sqlite:///{tmp}/optuna.db", "search.study_name=rt", "search.n_trials=8",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db", "tracking.experiment=rt", "tracking.registered_model=rt-model",
        "cluster.processes=false", "cluster.dashboard_address=null",
        f"retrain.cache={tmp}/cache", "retrain.holdout.fraction=0.25", "retrain.holdout.seed=7",
    ]
    cfg = load_config(None, overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # a SQLite tracking store puts artifacts under ./mlruns of the creating process
        sweep = execute_sweep(cfg, echo=lambda s: None, progress=False)
        yield {"tmp": tmp, "data": data, "overrides": overrides, "cfg": cfg, "sweep": sweep}


def _retrain(world, *extra: str) -> tuple[dict, object]:
    cfg = load_config(None, [*world["overrides"], *extra])
    return run_retrain(cfg, echo=lambda s: None), cfg


def _model(cfg, version: int):
    from mlflow import MlflowClient

    from pipeline.tracking.registry import load_version
    from pipeline.tracking import Tracker

    tracker = Tracker(cfg.tracking)
    mv = MlflowClient(cfg.tracking.uri).get_model_version(cfg.tracking.registered_model, str(version))
    return load_version(tracker.client, tracker.uri, cfg.tracking.registered_model, mv, None).model, dict(mv.tags)


def _alias(cfg, alias: str) -> int:
    from mlflow import MlflowClient

    return int(MlflowClient(cfg.tracking.uri).get_model_version_by_alias(cfg.tracking.registered_model, alias).version)


def test_retrain_sequence(world, monkeypatch):
    """promoted → up_to_date → kept (same distribution, margin) → promoted (shifted distribution)."""
    count = _CountLoads(monkeypatch)
    data = world["data"]
    candidate_version = world["sweep"]["model_version"]

    # 1. first retrain: starts from the sweep's candidate, sets the champion
    s1, cfg = _retrain(world)
    assert s1["action"] == "promoted" and s1["previous_alias"] == "candidate"
    assert s1["previous_version"] == candidate_version
    assert s1["challenger_version"] == s1["champion_version"] == candidate_version + 1
    assert _alias(cfg, "champion") == s1["challenger_version"]
    assert _alias(cfg, "candidate") == candidate_version  # the retrain does not touch the sweep's alias
    assert sorted(count.loaded) == [("part-000.parquet", i) for i in range(4)]
    cand_model, _ = _model(cfg, candidate_version)
    ref_champion, ref_challenger = _reference_scores(data, s1, cand_model.coef, cand_model.intercept, cfg)
    # statistics vs rows: rounding only (1e-10); scikit-learn's CD at tol=1e-12 agrees to ~1e-9
    assert s1["incumbent_score"] == pytest.approx(ref_champion, rel=1e-10)
    assert s1["challenger_score"] == pytest.approx(ref_challenger, rel=1e-8)
    # after the decision the champion is the challenger, version and score alike
    assert (s1["incumbent_version"], s1["champion_score"]) == (candidate_version, s1["challenger_score"])
    sel = world["sweep"]["selected"]  # refit: the candidate's (the sweep's selected model's) penalty and λ
    assert s1["challenger_params"] == {k: sel[k] for k in ("penalty", "lambda1", "lambda2")}
    assert s1["n_rows_heldout"] == int(heldout_rows(0, 2000, 0.25, 7).sum())
    _, tags = _model(cfg, s1["challenger_version"])
    assert tags["regsweep.decision"] == "promoted" and tags["regsweep.data_fingerprint"] == s1["data_fingerprint"]

    # 2. same data: nothing read, nothing registered
    count.loaded.clear()
    s2, _ = _retrain(world)
    assert s2["action"] == "up_to_date"
    assert s2["data_fingerprint"] == s1["data_fingerprint"]
    assert (s2["champion_version"], s2["challenger_version"]) == (s1["champion_version"], s1["challenger_version"])
    for key in ("incumbent_version", "incumbent_score", "champion_score", "challenger_score"):
        assert s2[key] == s1[key], key
    assert count.loaded == []

    # 3. more rows of the same distribution, 5% margin: only the new file's blocks are read; kept
    _write_part(data, 1, 1000, BETA_A, seed=2)
    count.loaded.clear()
    s3, cfg = _retrain(world, "retrain.margin=0.05")
    assert sorted(count.loaded) == [("part-001.parquet", 4), ("part-001.parquet", 5)]
    assert (s3["blocks_read"], s3["blocks_cached"]) == (2, 4)
    assert s3["action"] == "kept" and s3["previous_alias"] == "champion"
    assert s3["challenger_score"] >= 0.95 * s3["incumbent_score"]
    assert s3["champion_version"] == s3["incumbent_version"] == s1["champion_version"] == _alias(cfg, "champion")
    assert s3["champion_score"] == s3["incumbent_score"]  # kept: the champion is still the incumbent
    champ_model, _ = _model(cfg, s1["champion_version"])
    ref_champion, ref_challenger = _reference_scores(data, s3, champ_model.coef, champ_model.intercept, cfg)
    assert s3["incumbent_score"] == pytest.approx(ref_champion, rel=1e-10)  # cached + new statistics are exact
    assert s3["challenger_score"] == pytest.approx(ref_challenger, rel=1e-8)
    _, tags = _model(cfg, s3["challenger_version"])
    assert tags["regsweep.decision"] == "kept"  # registered either way

    # 4. a shifted distribution arrives: the challenger wins by far more than the margin
    _write_part(data, 2, 3000, BETA_B, seed=3)
    count.loaded.clear()
    s4, cfg = _retrain(world, "retrain.margin=0.05")
    assert {name for name, _ in count.loaded} == {"part-002.parquet"} and len(count.loaded) == 6
    assert s4["action"] == "promoted"
    assert s4["challenger_score"] < 0.95 * s4["incumbent_score"]
    assert s4["champion_version"] == s4["challenger_version"] == _alias(cfg, "champion")
    ref_champion, ref_challenger = _reference_scores(data, s4, champ_model.coef, champ_model.intercept, cfg)
    assert s4["incumbent_score"] == pytest.approx(ref_champion, rel=1e-10)
    assert s4["challenger_score"] == pytest.approx(ref_challenger, rel=1e-8)

    # 5. the data go back to what step 3's challenger was trained on: that version met another incumbent, so
    #    the champion (trained on other rows) meets a new challenger; it is not "up to date" (it was, naming v3's
    #    champion while the alias held v5)
    shifted = data / "part-002.parquet"
    aside = shifted.rename(world["tmp"] / "part-002.parquet")
    s5, cfg = _retrain(world, "retrain.margin=0.05")
    assert s5["data_fingerprint"] == s3["data_fingerprint"]
    assert s5["action"] in ("promoted", "kept") and s5["incumbent_version"] == s4["champion_version"]
    assert s5["challenger_version"] > s4["challenger_version"]
    assert s5["champion_version"] == _alias(cfg, "champion")

    # 6. the shifted rows are back and the alias is moved to step 4's champion by hand: up to date, and the
    #    champion reported is the alias's, with the incumbent step 4's contest named
    aside.rename(shifted)
    from mlflow import MlflowClient

    MlflowClient(cfg.tracking.uri).set_registered_model_alias(cfg.tracking.registered_model, "champion",
                                                              str(s4["champion_version"]))
    s6, cfg = _retrain(world, "retrain.margin=0.05")
    assert s6["action"] == "up_to_date" and s6["data_fingerprint"] == s4["data_fingerprint"]
    assert s6["champion_version"] == s4["champion_version"] == _alias(cfg, "champion")
    assert (s6["champion_score"], s6["incumbent_version"]) == (s4["challenger_score"], s4["incumbent_version"])
    assert s6["previous_alias"] == "champion" and s6["previous_version"] == s4["previous_version"]

    # 7. the alias moved back by hand to the version step 4's winner beat: a rollback, left as set (review G)
    MlflowClient(cfg.tracking.uri).set_registered_model_alias(cfg.tracking.registered_model, "champion",
                                                              str(s4["incumbent_version"]))
    s7, cfg = _retrain(world, "retrain.margin=0.05")
    assert s7["action"] == "up_to_date" and s7["champion_version"] == s4["incumbent_version"] == _alias(cfg, "champion")
    assert s7["champion_score"] == s4["incumbent_score"]
    assert s7["reason"].endswith(f"the alias champion was moved back to v{s4['incumbent_version']} since, and is left "
                                 "as set")
    MlflowClient(cfg.tracking.uri).set_registered_model_alias(cfg.tracking.registered_model, "champion",
                                                              str(s4["champion_version"]))  # as the tests after expect


def test_a_deleted_champion_alias_is_set_again_on_the_champion_the_latest_retrain_recorded(world, monkeypatch):
    """The champion alias deleted by hand: the next retrain started from the candidate and, on data a retrain had
    settled, said 'up to date' with a champion no alias named, run after run (the retrain probe); on other data
    it met the candidate as if no retrain had run (its review). Now the alias is set again on the champion the
    latest retrain recorded, with a note, and the retrain goes on from it."""
    from mlflow import MlflowClient

    from pipeline.errors import RetrainInputError

    names = ["tracking.registered_model=rt-deleted", "search.study_name=rt-deleted", "search.n_trials=4"]
    execute_sweep(load_config(None, [*world["overrides"], *names]), echo=lambda s: None, progress=False)
    s1, cfg = _retrain(world, *names)
    assert s1["action"] == "promoted" and s1["champion_restored"] is None
    client = MlflowClient(cfg.tracking.uri)
    client.delete_registered_model_alias(cfg.tracking.registered_model, "champion")
    # refused before anything starts: the registry is left as it is
    with pytest.raises(RetrainInputError, match="predicts .y., but data.target is .x0."):
        _retrain(world, *names, "data.target=x0", "data.exclude=[y]")
    assert "champion" not in client.get_registered_model(cfg.tracking.registered_model).aliases
    said: list[str] = []
    s2 = run_retrain(cfg, echo=said.append)  # the same data: settled by s1's contest
    assert s2["champion_restored"] == s1["challenger_version"] == _alias(cfg, "champion")
    assert s2["action"] == "up_to_date" and s2["champion_version"] == s1["challenger_version"]
    assert "moved back" not in s2["reason"]
    assert any(line.startswith(f"Note: rt-deleted had no 'champion' alias (deleted since); set again on "
                               f"v{s1['challenger_version']}") for line in said), said
    # another retrain on other data, the alias deleted again: its contest is against the restored champion
    monkeypatch.setattr("pipeline.retrain.data_fingerprint", lambda *a, **k: "other-data")
    client.delete_registered_model_alias(cfg.tracking.registered_model, "champion")
    s3 = run_retrain(cfg, echo=lambda s: None)
    assert s3["champion_restored"] == s1["challenger_version"] == s3["incumbent_version"]
    assert s3["previous_alias"] == "champion" and "no champion yet" not in s3["reason"]


def test_a_champion_trained_under_another_hold_out_rule_meets_no_contest(tmp_path, monkeypatch):
    """retrain.holdout.seed changed between retrains: today's held-out rows were largely the champion's training
    rows, and the contest kept it silently (the retrain probe: 851 of 1,155). Such a champion is promoted over
    without a contest, as a first retrain's candidate is; the rule each version was trained under is recorded."""
    from mlflow import MlflowClient

    data = tmp_path / "data"
    data.mkdir()
    _write_part(data, 0, 1500, BETA_A, seed=1)
    monkeypatch.chdir(tmp_path)
    base = [f"data.source={data}", "data.target=y", f"data.block_rows={BLOCK_ROWS}", "search.n_trials=4",
            f"search.storage=sqlite:///{tmp_path}/optuna.db", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
            "tracking.registered_model=rt-rule", "cluster.processes=false", "cluster.dashboard_address=null",
            "retrain.holdout.fraction=0.25", "retrain.holdout.seed=7"]
    execute_sweep(load_config(None, base), echo=lambda s: None, progress=False)
    s1 = run_retrain(load_config(None, base), echo=lambda s: None)
    assert s1["action"] == "promoted"
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    tags = client.get_model_version("rt-rule", str(s1["challenger_version"])).tags
    assert json.loads(tags["regsweep.holdout"]) == {"fraction": 0.25, "seed": 7, "time_column": None}
    _write_part(data, 1, 500, BETA_A, seed=2)
    s2 = run_retrain(load_config(None, [*base, "retrain.holdout.seed=1"]), echo=lambda s: None)
    assert s2["action"] == "promoted" and s2["incumbent_version"] == s1["challenger_version"]
    assert s2["reason"].startswith(f"retrain.holdout changed since v{s1['challenger_version']} was trained (seed 7 → "
                                   "1): its training rows may hold today's held-out ones, so the challenger becomes "
                                   "champion without a contest")
    _write_part(data, 2, 500, BETA_A, seed=3)
    s3 = run_retrain(load_config(None, [*base, "retrain.holdout.seed=1", "retrain.margin=0.5"]), echo=lambda s: None)
    assert s3["action"] == "kept" and "holdout changed" not in s3["reason"]  # the same rule: a contest again


def test_resweep_warm_starts_from_the_champion(world):
    """A resweep enqueues the starting model's parameters first; its challenger is the study's best trial."""
    import optuna

    names = ["tracking.registered_model=rt-resweep", "search.study_name=rt-resweep", "search.n_trials=4"]
    sweep = execute_sweep(load_config(None, [*world["overrides"], *names]), echo=lambda s: None, progress=False)
    s, cfg = _retrain(world, *names, "retrain.mode=resweep", "retrain.n_trials=6")
    assert s["action"] == "promoted" and s["previous_alias"] == "candidate"
    study = optuna.load_study(study_name=s["resweep_study"], storage=cfg.search.storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 == s["resweep_trials_complete"]
    start = {k: sweep["selected"][k] for k in ("penalty", "lambda1", "lambda2")}  # the registered candidate's
    previous = optuna.load_study(study_name="rt-resweep", storage=cfg.search.storage)
    warm = sorted((t for t in previous.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    # enqueued first: the starting model's parameters, then the previous study's best trials (deduplicated;
    # the best one is the candidate's own point)
    expected = [start]
    for t in warm[:5]:
        p = {"penalty": t.params["penalty"], "lambda1": t.params.get("lambda1", 0.0),
             "lambda2": t.params.get("lambda2", 0.0)}
        if p not in expected:
            expected.append(p)
    assert len(expected) < 6
    for trial, want in zip(study.trials, expected):
        got = {"penalty": trial.params["penalty"], "lambda1": trial.params.get("lambda1", 0.0),
               "lambda2": trial.params.get("lambda2", 0.0)}
        assert got["penalty"] == want["penalty"]
        assert got["lambda1"] == pytest.approx(want["lambda1"], rel=1e-12)
        assert got["lambda2"] == pytest.approx(want["lambda2"], rel=1e-12)
    best = min(complete, key=lambda t: t.value)
    assert s["challenger_params"]["penalty"] == best.params["penalty"]
    assert s["resweep_best_cv_mse"] == best.value


def test_time_holdout_reads_only_new_and_straddling_blocks(world, tmp_path, monkeypatch):
    """Held-out rows = the newest fraction of the time span; old blocks come from the cache."""
    count = _CountLoads(monkeypatch)
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(5)

    def part(i: int, n: int, t0: float, beta: np.ndarray) -> None:
        X = rng.standard_normal((n, P))
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(P)])
        frame["t"] = t0 + np.arange(n, dtype=float)
        frame["y"] = X @ beta + rng.standard_normal(n)
        frame.to_parquet(data / f"part-{i:03d}.parquet", row_group_size=ROWS_PER_GROUP, index=False)

    part(0, 1000, 0.0, BETA_A)
    overrides = [
        f"data.source={data}", "data.target=y", f"data.block_rows={BLOCK_ROWS}",
        f"search.storage={world['cfg'].search.storage}", "search.study_name=rt-time", "search.n_trials=5",
        "search.penalties=[l2]", f"tracking.uri={world['cfg'].tracking.uri}", "tracking.registered_model=rt-time",
        "cluster.processes=false", "cluster.dashboard_address=null", "data.features=[x0,x1,x2,x3,x4]",
        f"retrain.cache={tmp_path}/cache", "retrain.holdout.time_column=t", "retrain.holdout.fraction=0.3",
    ]
    execute_sweep(load_config(None, overrides), echo=lambda s: None, progress=False)
    s1 = run_retrain(load_config(None, overrides), echo=lambda s: None)
    # cut-off 999 − 0.3·999 = 699.3: block 1 (rows 500–999) straddles it and is read twice
    assert s1["time_cutoff"] == pytest.approx(999 - 0.3 * 999)
    assert sorted(count.loaded) == [("part-000.parquet", 0), ("part-000.parquet", 1), ("part-000.parquet", 1)]
    assert s1["n_rows_heldout"] == 1000 - 700 and s1["rows_left_out"] == 0

    part(1, 2000, 1000.0, BETA_B)  # t 1000 … 2999: cut-off 2099.3 falls inside the new file's block 4
    count.loaded.clear()
    cfg = load_config(None, overrides)
    s2 = run_retrain(cfg, echo=lambda s: None)
    assert s2["time_cutoff"] == pytest.approx(2999 - 0.3 * 2999)
    assert sorted(count.loaded) == [("part-001.parquet", i) for i in (2, 3, 4, 4, 5)]
    # blocks 2–5 read (4 once more across the cut-off: counted once), 0–1 from the cache: they add up
    assert (s2["blocks_read"], s2["blocks_cached"], s2["blocks_total"]) == (4, 2, 6)
    frame = pd.concat([pd.read_parquet(p) for p in sorted(data.glob("*.parquet"))], ignore_index=True)
    held = frame["t"].to_numpy() >= s2["time_cutoff"]
    X, y = frame[[f"x{j}" for j in range(P)]].to_numpy(), frame["y"].to_numpy()
    champ = _model(cfg, s1["challenger_version"])[0]
    assert s2["incumbent_score"] == pytest.approx(float(np.mean((X[held] @ champ.coef + champ.intercept - y[held]) ** 2)),
                                                 rel=1e-10)
    lam2 = s2["challenger_params"]["lambda2"]
    est = make_pipeline(StandardScaler(), Ridge(alpha=(~held).sum() * lam2, solver="svd")).fit(X[~held], y[~held])
    assert s2["challenger_score"] == pytest.approx(float(np.mean((est.predict(X[held]) - y[held]) ** 2)), rel=1e-9)
    assert s2["action"] == "promoted"  # the newest rows follow BETA_B; the old champion knew only BETA_A


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def test_lock_refuses_a_concurrent_retrain_with_exit_1(world, tmp_path):
    """While another process holds the model's lock file, the CLI stops at once with exit 1 and says why."""
    lock = world["tmp"] / "cache" / "rt-model.retrain.lock"
    lock.parent.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, b'pid %d (test holder)' % os.getpid())\nprint('locked', flush=True)\ntime.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        args = [a for o in world["overrides"] for a in ("--set", o)]
        proc = _cli("retrain", os.devnull, *args, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "another retrain of registered model 'rt-model' is running" in proc.stderr
        assert f"pid {holder.pid}" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the lock with its holder: the same retrain now runs (no RetrainLockedError)
    summary, _ = _retrain(world)
    assert summary["action"] in ("promoted", "kept", "up_to_date")


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--set", "retrain.mode=refitt"], "retrain.mode: Input should be 'refit' or 'resweep'"),
    (["--set", "retrain.holdout.fraction=1.5"], "retrain.holdout.fraction: Input should be less than 1"),
    (["--set", "retrain.holdout.time_column=t"], "retrain.holdout.time_column 't' needs a tabular source"),
    (["--set", "folds.group=g"], "does not support group k-fold"),
])
def test_bad_retrain_config_exits_2_before_anything_is_created(tmp_path, extra, fragment):
    proc = _cli("retrain", os.devnull, "--set", "data.source=synthetic", *extra, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_registered_model_exits_2_naming_the_fix(world, tmp_path):
    proc = _cli("retrain", os.devnull, "--set", f"tracking.uri={world['cfg'].tracking.uri}",
                "--set", "tracking.registered_model=never-swept", "--set", f"retrain.cache={tmp_path}/cache",
                cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "has no 'champion' or 'candidate' alias" in proc.stderr and "regsweep sweep" in proc.stderr


def test_a_changed_target_is_named_as_such(world):
    """The sweep tags its version with the target column; a retrain asked for another target names both
    (before, the old target appeared among "changed features", the new one missing from them)."""
    from pipeline.errors import RetrainInputError

    assert _model(world["cfg"], 1)[1]["regsweep.target"] == "y"
    with pytest.raises(RetrainInputError, match=r"rt-model v\d+ predicts 'y', but data.target is 'x4'; retrain "
                                                 r"keeps the target: set data.target to 'y'"):
        _retrain(world, "data.target=x4")


def test_a_store_that_does_not_exist_exits_2_and_creates_nothing(tmp_path):
    """A retrain run where no sweep ran (the default ``sqlite:///mlflow.db``) left an empty store and the lock."""
    proc = _cli("retrain", os.devnull, "--set", "data.source=synthetic", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "tracking.uri sqlite:///mlflow.db names no file" in proc.stderr and "regsweep sweep" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_rows_without_a_time_value_are_counted_and_said(tmp_path):
    """Under imputation a missing time value is not imputed (the row is neither older nor newer than the
    cut-off): those rows are left out, now with a note and ``rows_left_out``, and the rest are all used."""
    rng = np.random.default_rng(2)
    n = 300
    frame = pd.DataFrame(rng.standard_normal((n, 3)), columns=["a", "b", "c"])
    frame["t"] = np.arange(n, dtype=float)
    frame.loc[::20, "t"] = np.nan  # 15 rows
    frame.loc[3::17, "b"] = np.nan  # imputed: these rows stay
    frame["y"] = frame["a"] - 2 * frame["c"].fillna(0) + rng.standard_normal(n)
    frame.to_csv(tmp_path / "d.csv", index=False)
    overrides = [f"data.source={tmp_path}/d.csv", "data.target=y", "data.missing=impute", "search.n_trials=3",
                 f"search.storage=sqlite:///{tmp_path}/o.db", f"tracking.uri=sqlite:///{tmp_path}/m.db",
                 "cluster.processes=false", "cluster.dashboard_address=null", f"retrain.cache={tmp_path}/cache",
                 "retrain.holdout.time_column=t"]
    execute_sweep(load_config(None, overrides), echo=lambda s: None, progress=False)
    lines: list[str] = []
    summary = run_retrain(load_config(None, overrides), echo=lines.append)
    assert summary["rows_left_out"] == 15 and summary["n_rows_train"] + summary["n_rows_heldout"] == n - 15
    assert "Note: 15 of 300 rows left out, for a missing target or time value ('t')." in lines


def test_time_column_is_not_a_feature(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "t": [1, 2, 3], "y": [0.0, 1.0, 0.0]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    cfg = load_config(None, [f"data.source={tmp_path}/d.csv", "data.target=y", "retrain.holdout.time_column=t"])
    assert retrain_plan(cfg).feature_names == ("a",)


def test_the_sweep_and_check_config_plan_the_time_column_as_retrain_does(tmp_path):
    """The sweep used a retrain's time column as a feature, so retrain could never run on its model ("the data
    lack ['t']"), and a misspelt one passed check-config and the sweep (the fourth probe)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=150), "t": np.arange(150), "y": rng.normal(size=150)})
    frame.to_csv(tmp_path / "d.csv", index=False)  # (t: distinct whole numbers close together, a row counter's)
    base = ["--set", f"data.source={tmp_path}/d.csv", "--set", "data.target=y"]
    proc = _cli("check-config", os.devnull, *base, "--set", "retrain.holdout.time_column=t", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 features" in proc.stdout and "time_column 't' is left out of the features" in proc.stdout
    # its counter-like values are no identifier to leave out: that note said so of a column already left out
    assert "holds a different whole number" not in proc.stdout, proc.stdout
    proc = _cli("check-config", os.devnull, *base, "--set", "retrain.holdout.time_column=tt", cwd=tmp_path)
    assert proc.returncode == 2 and "retrain.holdout.time_column 'tt' is not a column" in proc.stderr
    proc = _cli("sweep", os.devnull, *base, "--set", "retrain.holdout.time_column=tt", cwd=tmp_path)
    assert proc.returncode == 2 and "'tt' is not a column" in proc.stderr and "Dask" not in proc.stdout


@pytest.mark.parametrize("mode", ["refit", "resweep"])
def test_retrain_keeps_penalty_factors_limits_and_group_multipliers(world, mode):
    """The challenger is fitted under the config's factors and limits; a refit keeps the champion's multiplier,
    a resweep searches it again; the registered version carries them all."""
    controls = ["model.penalty_factor={x0: 0}", "model.coef_limits={x1: [0, .inf], x3: [-0.2, 0.2]}",
                "search.group_multipliers={g: {columns: [x2, x4], range: [0.5, 2]}}"]
    names = [f"tracking.registered_model=rt-ctl-{mode}", f"search.study_name=rt-ctl-{mode}", "search.n_trials=6"]
    sweep = execute_sweep(load_config(None, [*world["overrides"], *names, *controls]), echo=lambda s: None,
                          progress=False)
    s, cfg = _retrain(world, *names, *controls, f"retrain.mode={mode}", "retrain.n_trials=4")
    model, _ = _model(cfg, s["challenger_version"])
    assert model.penalty_factor is not None and model.penalty_factor[0] == 0
    assert model.coef[1] >= 0 and -0.2 <= model.coef[3] <= 0.2
    # held at a limit exactly (the earlier tests of this module may have shifted the data: whether x3's
    # coefficient reaches ±0.2 depends on which rows there are now)
    np.testing.assert_array_equal(model.at_limit, np.isclose(np.abs(model.coef), 0.2, rtol=0, atol=0)
                                  & (np.arange(5) == 3))
    np.testing.assert_array_equal(np.isfinite(model.lower), [False, True, False, True, False])
    mult = model.group_multipliers["g"]
    assert 0.5 <= mult <= 2
    if mode == "refit":
        assert mult == sweep["selected"]["group_multipliers"]["g"]
    base = model.penalty_factor[2] / mult  # the rescaled factor of x2 before its group's multiplier
    np.testing.assert_allclose(model.penalty_factor, [0, base, base * mult, base, base * mult], rtol=1e-12)
    assert base == pytest.approx(5 / 4)  # four features with factor 1 rescaled to sum to p = 5


def test_a_champion_naming_the_positive_class_otherwise_is_the_same_class_with_a_note():
    """A champion registered before true/false targets kept their classes predicts class 1 where the data's
    positive class is now True: the same class, retrained with a note (its prediction column is renamed); a
    champion of the other class is refused with the fix."""
    from types import SimpleNamespace

    from pipeline.errors import RetrainInputError
    from pipeline.retrain import _check_positive_class

    cfg = SimpleNamespace(tracking=SimpleNamespace(registered_model="churn"))
    said: list[str] = []
    champion = SimpleNamespace(version=3, model=SimpleNamespace(positive_class=1, negative_class=0))
    _check_positive_class(champion, {"positive_class": True, "negative_class": False}, cfg, said.append)
    assert said == ["Note: v3 names its positive class 1, the data True: the same class; a challenger's prediction "
                    "column is probability_True."]
    _check_positive_class(SimpleNamespace(version=4, model=SimpleNamespace(positive_class=True, negative_class=False)),
                          {"positive_class": True, "negative_class": False}, cfg, said.append)
    assert len(said) == 1  # named alike: nothing to say
    with pytest.raises(RetrainInputError, match=r"churn v3 predicts the class 1, but the data's positive class is "
                                                r"False; set data.positive_class to 1, or run a new sweep"):
        _check_positive_class(champion, {"positive_class": False, "negative_class": True}, cfg, said.append)
    # a text class: the fix says to quote it (YAML reads a bare yes as true, and the same error came back)
    union = SimpleNamespace(version=2, model=SimpleNamespace(positive_class="yes", negative_class="no"))
    with pytest.raises(RetrainInputError, match=r"set data.positive_class to 'yes' \(quoted, as YAML reads a bare "
                                                r"yes/no/on/off as true/false\)"):
        _check_positive_class(union, {"positive_class": "no", "negative_class": "yes"}, cfg, said.append)
    # the target recoded from yes/no to 1/0: no positive class can help, and the error says what changed
    with pytest.raises(RetrainInputError, match=r"the target's labels changed: churn v2 was trained on the labels "
                                                r"\['no', 'yes'\] \(positive 'yes'\), the data's are \[0, 1\]; "
                                                r"recode the target to its old labels, or run a new sweep"):
        _check_positive_class(union, {"positive_class": 1, "negative_class": 0}, cfg, said.append)


def test_a_champion_is_not_replaced_on_a_hold_out_of_a_few_rows():
    """The second probe replaced a model on 3 held-out rows (17 training rows, against 560 before). A contest
    needs MIN_HELDOUT_ROWS; a first retrain (no champion yet) still promotes without one."""
    from pipeline import fit
    from pipeline.model import FittedModel
    from pipeline.retrain import MIN_HELDOUT_ROWS, _decide
    from pipeline.tracking.registry import RegisteredVersion

    model = fit(np.eye(3), np.arange(3.0), lambda1=0.1)
    champion = RegisteredVersion(4, "champion", model, {})
    assert _decide(champion, 2.0, 1.0, 0.01, "MSE", MIN_HELDOUT_ROWS)[0] == "promoted"
    action, reason = _decide(champion, 2.0, 1.0, 0.01, "MSE", 3)
    assert action == "kept" and reason.startswith("the hold-out holds 3 rows, too few to tell two models apart")
    assert "raise retrain.holdout.fraction" in reason
    assert _decide(RegisteredVersion(1, "candidate", model, {}), 2.0, 3.0, 0.01, "MSE", 3)[0] == "promoted"
    assert isinstance(model, FittedModel)


def test_only_a_hold_out_change_that_can_hold_out_training_rows_skips_the_contest():
    """Another seed (no time column), another time column, a larger fraction: rows the champion trained on may be
    held out now. A smaller fraction (a subset of the same rows), the seed beside a time column (unused), a rule
    recorded before a setting existed (its default): they cannot, and the contest stays. A challenger whose
    error is not finite never becomes champion (the review: the no-contest rule came first)."""
    from pipeline import fit
    from pipeline.config import load_config
    from pipeline.retrain import _decide, _holdout_changed
    from pipeline.tracking.registry import RegisteredVersion

    model = fit(np.eye(3), np.arange(3.0), lambda1=0.1)

    def changed(then: dict, *now: str):
        version = RegisteredVersion(4, "champion", model, {"regsweep.holdout": json.dumps(then)})
        return _holdout_changed(version, load_config(None, list(now)))

    rows = {"fraction": 0.2, "seed": 0, "time_column": None}
    assert changed(rows, "retrain.holdout.seed=1") == "seed 0 → 1"
    assert changed(rows, "retrain.holdout.fraction=0.3") == "fraction 0.2 → 0.3"
    assert changed(rows, "retrain.holdout.time_column=t") == "time_column None → 't'"
    assert changed(rows, "retrain.holdout.fraction=0.1") is None
    assert changed({**rows, "time_column": "t"}, "retrain.holdout.time_column=t", "retrain.holdout.seed=5") is None
    assert changed({"fraction": 0.2}) is None  # recorded before seed and time_column: their defaults
    assert _holdout_changed(RegisteredVersion(4, "champion", model, {}), load_config(None, [])) is None
    champion = RegisteredVersion(4, "champion", model, {})
    assert _decide(champion, 1.0, float("nan"), 0.01, "MSE", 100, "seed 0 → 1")[0] == "kept"
    action, reason = _decide(champion, 1.0, 2.0, 0.01, "MSE", 100, "seed 0 → 1")
    assert action == "promoted" and reason.startswith("retrain.holdout changed since v4 was trained (seed 0 → 1)")


def test_a_first_retrain_does_not_claim_the_candidate_saw_the_hold_out_and_says_when_it_scores_better():
    """The fourth probe: rows appended after the sweep were the whole hold-out, so the candidate had never seen
    them, yet the reason said it was fit on them ('optimistic') while a challenger 2.3× worse was promoted."""
    from pipeline import fit
    from pipeline.retrain import _decide
    from pipeline.tracking.registry import RegisteredVersion

    candidate = RegisteredVersion(1, "candidate", fit(np.eye(3), np.arange(3.0), lambda1=0.1), {})
    action, reason = _decide(candidate, 1.72973e6, 3.9753e6, 0.01, "MSE")
    assert action == "promoted" and "optimistic" not in reason
    assert reason == (
        "first retrain: there is no champion yet, so the challenger becomes it without a contest (the candidate v1 "
        "it started from was fit on all of its sweep's rows, which may hold held-out ones, so its held-out MSE "
        "1.72973e+06 is only reported); v1 scores better on this hold-out (1.72973e+06 against 3.9753e+06): if its "
        "sweep never saw these rows (they arrived since), it is the better model: set the alias 'champion' on v1 in "
        "MLflow to keep it instead")
    assert "scores better" not in _decide(candidate, 2.0, 1.5, 0.01, "MSE")[1]


def test_a_changed_feature_set_is_named_by_what_is_missing_and_new():
    """The message listed both feature lists whole (thousands of names on a wide table) and did not say that a
    time column used as a feature by the model is read apart in a retrain (the second probe)."""
    from pipeline.retrain import _features_differ

    said = _features_differ(["a", "b", "t"], ["a", "b"], "m v1", "t")
    assert said.startswith("the data's features differ from those of m v1: the data lack ['t'] (retrain.holdout."
                           "time_column 't' is read apart from the features, but m v1 has it as one")
    assert "the data lack ['y'] and add ['c'];" in _features_differ(["a", "y"], ["a", "c"], "m v1", None)
    wide = _features_differ([f"g{i}" for i in range(5000)], ["g0"], "m v1", None)
    assert "… (4999 in all)]" in wide and len(wide) < 400
    # the fixes that work without a new sweep (probe E: the order is kept by listing data.features, verified
    # KEPT with the same held-out MSE; a new column is kept out by data.exclude)
    assert _features_differ(["a", "b"], ["b", "a"], "m v1", None).endswith(
        "in their order; list the model's columns in its order with data.features: ['a', 'b'], or run a new sweep.")
    assert _features_differ(["a"], ["a", "c"], "m v1", None).endswith(
        "add ['c']; leave the new columns out with data.exclude (add ['c'] to it), or run a new sweep to use them.")


@pytest.mark.parametrize(("extra", "fix"), [
    (["retrain.holdout.time_column=year"], "hold out fewer of the newest rows (lower retrain.holdout.fraction), or "
                                           "by row fraction (unset retrain.holdout.time_column)"),
    ([], "lower retrain.holdout.fraction"),
])
def test_a_binomial_challenger_needs_both_classes_in_its_training_rows(extra, fix):
    """A time hold-out whose older rows hold one class (a regime change) ended in a traceback, exit 1 (the fourth
    probe); now a one-line error naming the hold-out, and nothing for a gaussian model or two classes."""
    from pipeline.errors import RetrainInputError
    from pipeline.retrain import _check_two_classes

    cfg = load_config(None, ["model.family=binomial", *extra])
    for share in (0.0, 1.0):
        with pytest.raises(RetrainInputError, match=re.escape(f"hold one class only, so no logistic model can be "
                                                              f"fitted on them; {fix}, or add rows of the other")):
            _check_two_classes({"y_mean_train": share}, cfg)
    _check_two_classes({"y_mean_train": 0.3}, cfg)
    _check_two_classes({"y_mean_train": 1.0}, load_config(None, extra))  # gaussian: a constant target is its own case


def test_a_delivery_copied_in_twice_gets_a_note(tmp_path):
    """The fourth probe copied part-002 to part-003: accepted without a word, its rows counted twice."""
    import shutil

    from pipeline.cv.statcache import block_fingerprint
    from pipeline.data import plan_data
    from pipeline.retrain import _copied_blocks

    _write_part(tmp_path, 0, 300, BETA_A, seed=1)
    _write_part(tmp_path, 1, 300, BETA_A, seed=2)
    cfg = load_config(None, [f"data.source={tmp_path}", "data.target=y"])
    plan = plan_data(cfg.data, cfg.folds)
    assert _copied_blocks(plan, [block_fingerprint(plan, b) for b in plan.blocks]) is None
    shutil.copy(tmp_path / "part-001.parquet", tmp_path / "part-002.parquet")
    plan = plan_data(cfg.data, cfg.folds)
    said = _copied_blocks(plan, [block_fingerprint(plan, b) for b in plan.blocks])
    assert said == ("'part-002.parquet' holds the same rows as 'part-001.parquet' (300 rows, byte for byte): the same "
                    "delivery twice? Its rows count twice, in training and in the hold-out; remove the copy.")
