"""The MLflow UI of a finished sweep, as a user sees it: headless Chromium against a real ``mlflow server``.

The page the sweep prints opens the runs table of the "Model training" view
on the study's trial runs (a shared view: best first, penalty, strengths and
scores as columns); the parent run's page shows its description and the
registered model under "Logged models". Chromium renders the single-page app
(``--dump-dom`` after a virtual-time budget) and the test reads the rendered
text.

Outside CI the test is skipped, saying why, when no Chromium is installed; with
``CI=true`` a missing browser fails it (``.ci/run`` installs Debian's
``chromium``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import run_regsweep

pytestmark = pytest.mark.integration

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--window-size=1600,1000"]


def chromium() -> str:
    """The Chromium executable, or skip (fail under CI) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true but no Chromium is installed (.ci/run installs Debian's chromium package)")
    pytest.skip("no headless browser: install Debian's chromium package to look at the MLflow UI")


def rendered_text(browser: str, url: str, profile: Path) -> str:
    """The visible text of ``url`` once the app has rendered (tags stripped, spaces collapsed)."""
    out = subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", out.stdout))


def test_the_mlflow_ui_shows_the_trials_and_the_logged_model(tmp_path: Path, mlflow_server: str) -> None:
    browser = chromium()
    names = {"study": "ui", "experiment": "ui-experiment", "model": "ui-model"}
    run = run_regsweep(["sweep", "--no-progress", "--summary-json", "s.json",
                        "--set", "search.n_trials=12", "--set", f"search.storage=sqlite:///{tmp_path}/o.db",
                        "--set", f"search.study_name={names['study']}", "--set", f"tracking.uri={mlflow_server}",
                        "--set", f"tracking.experiment={names['experiment']}",
                        "--set", f"tracking.registered_model={names['model']}",
                        "--set", "cluster.dashboard_address=null"], cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    url = summary["mlflow_ui_url"]
    assert url in run.stdout and "workflowType=machine_learning" in url  # what the terminal tells the user

    runs_page = rendered_text(browser, url, tmp_path / "profile-runs")
    shown = set(re.findall(r"trial-\d{4}", runs_page))
    assert len(shown) >= 10, runs_page[:3000]  # the table renders the study's trial runs (at least its first rows)
    assert "cv_mse" in runs_page and "lambda1" in runs_page  # their scores and strengths are columns
    assert "12 matching runs" in runs_page  # the shared view's filter: the trials, not the parent

    parent = f"{mlflow_server}/#/experiments/{summary['experiment_id']}/runs/{summary['mlflow_run_id']}"
    run_page = rendered_text(browser, parent, tmp_path / "profile-run")
    assert "Logged models (1)" in run_page, run_page[:3000]  # logged in the sweep's experiment, not Default
    assert f"{names['model']} v{summary['model_version']}" in run_page
    assert "Registered: the min choice" in run_page  # the Markdown description
