"""The command line: exit codes and one-line errors for bad config and input (no cluster is started)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _regsweep(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["sweep", "missing.yaml"], "cannot read config file 'missing.yaml'"),
        (["sweep", "--set", "search.n_trail=3"], "did you mean 'search.n_trials'?"),
        (["sweep", "--set", "data.source=nope.csv", "--set", "data.target=y"], "data.source 'nope.csv' does not exist"),
        (["sweep", "--set", "folds.k=1"], "folds.k: Input should be greater than or equal to 2, got 1"),
        # a sweep's flags work for a retrain (a script passing both): the config is what is wrong here
        (["retrain", "missing.yaml", "--no-progress"], "cannot read config file 'missing.yaml'"),
    ],
)
def test_bad_config_or_input_exits_2_with_one_message_and_no_files(tmp_path, args, fragment):
    proc = _regsweep(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # rejected before any storage, run or cluster exists


def test_unreachable_tracking_server_fails_fast_naming_the_uri(tmp_path):
    proc = _regsweep("sweep", "--set", "tracking.uri=http://127.0.0.1:9", cwd=tmp_path)
    assert proc.returncode == 1
    assert "http://127.0.0.1:9 is unreachable" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_check_config_prints_the_resolved_config(tmp_path):
    (tmp_path / "c.yaml").write_text("search:\n  n_trials: 7\n")
    proc = _regsweep("check-config", "c.yaml", "--set", "folds.k=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "n_trials: 7" in proc.stdout and "k: 3" in proc.stdout and "registered_model: regsweep-model" in proc.stdout


def test_a_sweep_exits_0_at_once_and_cleanly(tmp_path):
    """The executable leaves with os._exit once everything is written (cli.entry): exit code 0, its
    output complete to the last line, the summary and the registered model there, and nothing on
    stderr from any process it started (resource_tracker warnings, tracebacks)."""
    import json

    proc = _regsweep("sweep", "--set", "search.n_trials=4", "--set", "cluster.dashboard_address=null",
                     "--summary-json", "s.json", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "leaked" not in proc.stderr and "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["n_trials_complete"] == 4 and summary["model_version"] == 1
    assert proc.stdout.rstrip().endswith("Summary: s.json"), proc.stdout[-500:]


def test_a_score_that_does_not_exist_is_null_in_the_summary_json(tmp_path):
    """A binomial table with 3 positive rows in 2,000: some folds' held-out rows hold one class, so their deviance
    explained (and AUC) does not exist. The summary file stays JSON (no bare NaN, which ``JSON.parse`` and
    ``jq`` reject): such a value is null."""
    import json

    import numpy as np

    rng = np.random.default_rng(0)
    y = np.zeros(2000, dtype=int)
    y[[100, 900, 1700]] = 1
    rows = ["x1,x2,y", *(f"{a:.6f},{b:.6f},{t}" for a, b, t in zip(rng.normal(size=2000), rng.normal(size=2000), y))]
    (tmp_path / "rare.csv").write_text("\n".join(rows) + "\n")
    proc = _regsweep("sweep", "--set", "data.source=rare.csv", "--set", "data.target=y", "--set",
                     "model.family=binomial", "--set", "search.n_trials=6", "--set", "cluster.dashboard_address=null",
                     "--summary-json", "s.json", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "s.json").read_text()

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the summary JSON")

    summary = json.loads(text, parse_constant=refuse)
    assert summary["selected"]["cv_deviance_explained"] is None
