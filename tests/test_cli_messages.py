"""What the command line says when there is nothing to do or something is missing: one line, the fix.

- ``sync-tracking`` without a config, or with a study that does not exist,
  refuses and names the studies found (it never creates a study, an
  experiment or a run out of nothing);
- a PostgreSQL URL whose driver is not installed names ``regsweep[postgres]``;
- ``check-config`` opens the data source's header and checks the columns, the folds and the names of the
  penalty controls, as the sweep does before its cluster starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tests.integration.conftest import run_regsweep
from tests.test_bad_input import _one_line_error


def test_sync_tracking_refuses_without_a_config_or_a_study(tmp_path: Path) -> None:
    proc = run_regsweep(["sync-tracking"], cwd=tmp_path)
    line = _one_line_error(proc, ["sync-tracking needs the config of the sweep", "studies in "])
    assert "none" in line
    assert not list(tmp_path.iterdir())  # no study file, no MLflow file
    import optuna

    optuna.create_study(study_name="mine", storage=f"sqlite:///{tmp_path}/regsweep-optuna.db")
    (tmp_path / "other.yaml").write_text("search: {study_name: other}\n")
    proc = run_regsweep(["sync-tracking", "other.yaml"], cwd=tmp_path)
    _one_line_error(proc, ["search.study_name 'other' is not a study", "['mine']"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.yaml", "regsweep-optuna.db"]


def test_a_postgresql_url_without_its_driver_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """psycopg2 hidden from the process (the test extra installs it)."""
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'psycopg2' else real(name, *a)\n"
        "from pipeline.cli import entry\n"
        "sys.argv = ['regsweep', 'sweep', '--set', 'search.storage=postgresql://u:pw@db/regsweep']\n"
        "entry()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    line = _one_line_error(proc, ["search.storage", "psycopg2", "pip install 'regsweep[postgres]'"])
    assert "pw" not in line  # the password is not printed
    assert not list(tmp_path.iterdir())


def test_check_config_checks_the_columns_and_their_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"], "y": [1.0, 0.0, 2.0]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.assign(b=["x", "y", "z"]).to_csv(tmp_path / "free.csv", index=False)  # a small table's level scan runs now
    _one_line_error(run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'free.csv'}",
                                  "--set", "data.target=y"], cwd=tmp_path),
                    ["column 'b' looks like free text: 3 distinct values in 3 rows"])
    _one_line_error(run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                                  "--set", "data.target=zz"], cwd=tmp_path), ["data.target 'zz' is not a column"])
    _one_line_error(run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                                  "--set", "data.target=b"], cwd=tmp_path),
                    ["data.target 'b'", "holds text, not numbers", "categorical target"])
    _one_line_error(run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                                  "--set", "data.target=y", "--set", "folds.k=5"], cwd=tmp_path),
                    ["folds.k=5 needs at least 5 rows, but the data have 3"])  # as the sweep says it
    _one_line_error(run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                                  "--set", "data.target=y", "--set", "folds.k=2", "--set",
                                  "model.penalty_factor={aa: 0}"], cwd=tmp_path),
                    ["model.penalty_factor: 'aa' matches no feature; closest: ['a']"])
    text = run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                         "--set", "data.target=y", "--set", "folds.k=3"], cwd=tmp_path)
    assert text.returncode == 0 and "2 features, categorical ['b']" in text.stdout, text.stderr
    ok = run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}",
                       "--set", "data.target=y", "--set", "data.features=[a]", "--set", "folds.k=3"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "3 rows, target 'y', 1 features: columns and types OK" in ok.stdout
    assert "types checked on the first" not in ok.stdout  # every row was read


def test_check_config_says_how_many_rows_it_read_and_keeps_a_wide_tables_line_short(tmp_path):
    """The fourth probe: a text value at row 3,000 of a numeric column passed check-config ('columns and types
    OK') and failed the sweep; the line now says that only the first 1,000 rows were read. A table of 207 text
    columns listed them all on that line (3 KB)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"t{j}": rng.choice(["u", "v"], 1500) for j in range(12)})
    frame["y"] = rng.standard_normal(1500)
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = run_regsweep(["check-config", "/dev/null", "--set", f"data.source={tmp_path / 'd.csv'}", "--set",
                        "data.target=y"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("# data:"))
    assert line.endswith("categorical ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7', 't8', 't9', … (12 in all)] "
                         "(levels are found when the sweep starts): columns and types OK (types checked on the "
                         "first 1,000 rows: the sweep checks every row)"), line
