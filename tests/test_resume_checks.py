"""A study is resumed only on the data its trials were scored on (pipeline.search.resume_checks).

Real sweeps on an embedded cluster, on the bundled diabetes data as a CSV: a re-run under the same
``search.study_name`` with another target, other columns, appended rows or values edited in place is refused
(exit 2, :class:`ConfigError`) before it asks a trial, and the study keeps its trials; the same data read in
other blocks (another ``data.block_rows``: another summation order, so another Gram fingerprint) resume, unless
rows are left out (their folds then follow the blocks).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.cv.passes import data_moments
from pipeline.errors import ConfigError
from pipeline.search.resume_checks import MOMENTS_RTOL, _close
from pipeline.solvers import SuffStats, merge_all
from pipeline.sweep import execute_sweep


def _config(tmp: Path, engine: str, trials: int, *settings: str):
    return load_config(None, [
        f"data.source={tmp}/d.csv", "data.target=target", f"model.engine={engine}", f"search.n_trials={trials}",
        f"search.storage=sqlite:///{tmp}/optuna.db", "search.study_name=s", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "tracking.experiment=s", "tracking.registered_model=s-model", "cluster.dashboard_address=null",
        *settings])


def _complete(tmp: Path) -> int:
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp}/optuna.db")
    return sum(t.state.name == "COMPLETE" for t in study.trials)


@pytest.mark.parametrize("engine", ["gram", "rows"])
def test_a_study_is_resumed_only_on_its_data(tmp_path, engine):
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.to_csv(tmp_path / "d.csv", index=False)
    quiet = {"echo": lambda _: None, "progress": False}
    execute_sweep(_config(tmp_path, engine, 3), **quiet)
    assert _complete(tmp_path) == 3
    # the finished study's recorded outcome is not reported for another target (nor a resume scored on it)
    with pytest.raises(ConfigError, match=r"data.target was 'target', is 's6' now"):
        execute_sweep(_config(tmp_path, engine, 3, "data.target=s6", "data.exclude=[target]"), **quiet)
    with pytest.raises(ConfigError, match=r"feature columns were 10, these are 9 \(no longer 'bmi'\)"):
        execute_sweep(_config(tmp_path, engine, 6, "data.exclude=[bmi]"), **quiet)
    with pytest.raises(ConfigError, match=r"\(data.weight was unset, is 'bmi' now\)"):  # (not "no longer 'bmi'")
        execute_sweep(_config(tmp_path, engine, 6, "data.weight=bmi"), **quiet)
    with pytest.raises(ConfigError, match="folds.k was 5, is 4 now"):
        execute_sweep(_config(tmp_path, engine, 6, "folds.k=4"), **quiet)
    pd.concat([frame, frame.iloc[:5]]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ConfigError, match="data.source held 442 rows then and holds 447 now"):
        execute_sweep(_config(tmp_path, engine, 6), **quiet)
    edited = frame.copy()
    edited.loc[7, "bmi"] += 0.1  # one value of 4,862, in place
    edited.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(ConfigError, match="the same rows with other values"):
        execute_sweep(_config(tmp_path, engine, 6), **quiet)
    assert _complete(tmp_path) == 3  # every refusal came before a trial
    frame.to_csv(tmp_path / "d.csv", index=False)
    summary = execute_sweep(_config(tmp_path, engine, 6, "data.block_rows=50"), **quiet)  # same data, other blocks
    assert summary["n_trials_complete"] == 6 and _complete(tmp_path) == 6


def test_a_resumed_study_with_another_lambda_range_says_so(tmp_path):
    """Optuna accepts another range for a parameter and its sampler learns from both; the run said nothing and
    its parent run showed only the new range (probe F)."""
    load_diabetes(as_frame=True, scaled=False).frame.to_csv(tmp_path / "d.csv", index=False)
    execute_sweep(_config(tmp_path, "gram", 2, "search.penalties=[l1]"), echo=lambda _: None, progress=False)
    said: list[str] = []
    execute_sweep(_config(tmp_path, "gram", 3, "search.penalties=[l1]", "search.lambda1.high=0.5"), echo=said.append,
                  progress=False)
    notes = [line for line in said if line.startswith("Note: search.lambda1: this run draws from [")]
    assert len(notes) == 1 and "0.5], the study's earlier trials from [" in notes[0], said
    said.clear()
    execute_sweep(_config(tmp_path, "gram", 4, "search.penalties=[l1]", "search.lambda1.high=0.5"), echo=said.append,
                  progress=False)  # now the last trials' range is this one's
    assert not [line for line in said if "this run draws from" in line], said


def test_the_refusal_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    load_diabetes(as_frame=True, scaled=False).frame.to_csv(tmp_path / "d.csv", index=False)
    execute_sweep(_config(tmp_path, "gram", 2), echo=lambda _: None, progress=False)
    args = ["sweep", "--no-progress", "--set", f"data.source={tmp_path}/d.csv", "--set", "data.target=s5",
            "--set", "data.exclude=[target]", "--set", f"search.storage=sqlite:///{tmp_path}/optuna.db",
            "--set", "search.study_name=s", "--set", "search.n_trials=2",
            "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "--set", "cluster.dashboard_address=null"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use a new search.study_name" in err[0] and "Traceback" not in err[0]


def test_moments_ignore_the_summation_order_and_see_one_changed_value():
    """The Gram engine's fingerprint hashes merged statistics, whose last bits depend on how the rows were
    blocked; its moments agree to ~1e-15 however they are merged, and one value of 60,000 changed by a
    fortieth of its column's spread moves them past the tolerance (a smaller change, whose effect on every
    statistic is below 1e-8, would leave the trials' scores those of the new data to that precision)."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(3.0, 2.0, size=(3000, 20)), rng.normal(size=3000)

    def moments(X: np.ndarray, cuts: list[int]) -> list[list[float]]:
        parts = [SuffStats.from_block(X[a:b], y[a:b]) for a, b in zip([0, *cuts], [*cuts, len(y)])]
        return data_moments(merge_all(parts))

    one, other = moments(X, [1000, 2000]), moments(X, [7, 1500, 1501, 2999])
    assert _close(one, other)
    assert max(abs(a - b) / s for (a, s), (b, _) in zip(one, other)) < 1e-13 < MOMENTS_RTOL
    changed = X.copy()
    changed[100, 4] += 0.05
    assert not _close(one, moments(changed, [1000, 2000]))
    # a column's values shuffled (its mean and variance unchanged: probe F resumed Boston with its two
    # strongest predictors permuted), a small change beside a column of large mean, and the cross-moments alone
    shuffled = X.copy()
    shuffled[:, 7] = rng.permutation(shuffled[:, 7])
    assert not _close(one, moments(shuffled, [1000, 2000]))
    wide = X.copy()
    wide[:, 0] += 1000.0
    small = wide.copy()
    small[100, 4] += 0.001
    assert _close(moments(wide, [1000, 2000]), moments(wide, [3, 2500]))
    assert not _close(moments(wide, [1000, 2000]), moments(small, [1000, 2000]))
    # a constant column under weights: its variance and covariance are rounding of 0 that the blocking sets
    # (0 against 3.9e-66), compared on the scale of its values, not on their own (review G: a resume refused)
    const = np.column_stack([X, np.full(len(y), 0.1)])
    weights = rng.uniform(0.5, 2.0, len(y))

    def weighted(cuts: list[int]) -> list[list[float]]:
        bounds = list(zip([0, *cuts], [*cuts, len(y)]))
        return data_moments(merge_all([SuffStats.from_block(const[a:b], y[a:b], weights[a:b]) for a, b in bounds]))

    assert _close(weighted([]), weighted(list(range(37, len(y), 37))))
    # a study recorded before the per-column moments: its five against the same five now
    assert _close(one[:5], other) and not _close(one[:5], moments(changed * 1.01, [1000, 2000]))


def _dropping(tmp: Path) -> None:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    frame.loc[[3, 50, 51, 200], "bmi"] = np.nan  # rows left out under data.missing: drop
    frame.to_csv(tmp / "d.csv", index=False)


def test_a_study_whose_folds_were_dealt_by_the_old_numbering_is_refused_and_told_why(tmp_path):
    """A study scored when rows kept beside rows left out were numbered by their place in the source has other
    folds for the same rows now, often with the same counts per fold: refused, saying that only the dealing
    changed (its record simulated: the record without the numbering, as regsweep wrote it then)."""
    _dropping(tmp_path)
    quiet = {"echo": lambda _: None, "progress": False}
    execute_sweep(_config(tmp_path, "gram", 2, "data.missing=drop"), **quiet)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    record = json.loads(study.user_attrs["regsweep:data"])
    assert sum(record["fold_rows"]) == 438 and record["layout"] is not None
    study.set_user_attr("regsweep:data", json.dumps({k: v for k, v in record.items()
                                                     if k not in ("numbering", "layout")}, sort_keys=True))
    with pytest.raises(ConfigError, match=r"other data: the rows kept beside rows left out are dealt to other folds "
                                          r"than when the study was scored \(regsweep now numbers them among"):
        execute_sweep(_config(tmp_path, "gram", 4, "data.missing=drop"), **quiet)
    assert _complete(tmp_path) == 2


@pytest.mark.parametrize("engine", ["gram", "rows"])
def test_with_rows_left_out_other_blocks_are_other_folds_and_refused(tmp_path, engine):
    """Without rows left out the same file read in other blocks resumes (above); with them each block's kept rows
    are dealt among themselves, so 89-row blocks put 303 of the 438 rows in other folds (with the same counts per
    fold at folds.seed 1): refused, naming data.block_rows; set back, the study resumes."""
    _dropping(tmp_path)
    quiet = {"echo": lambda _: None, "progress": False}
    execute_sweep(_config(tmp_path, engine, 2, "data.missing=drop", "folds.seed=1"), **quiet)
    with pytest.raises(ConfigError, match=r"with rows left out, the folds follow the blocks the rows are read in, "
                                          r"and these differ from then: set data.block_rows back"):
        execute_sweep(_config(tmp_path, engine, 4, "data.missing=drop", "folds.seed=1", "data.block_rows=89"), **quiet)
    assert _complete(tmp_path) == 2
    summary = execute_sweep(_config(tmp_path, engine, 4, "data.missing=drop", "folds.seed=1"), **quiet)
    assert summary["n_trials_complete"] == 4
