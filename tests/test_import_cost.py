"""What importing regsweep costs: the light entry points pull in none of the heavy libraries.

``python -X importtime`` lists every module a process imports (on stderr, one
line each); the tests read that list rather than trusting ``sys.modules`` at
one moment. MLflow's import alone costs ~2 s of CPU, Optuna's, pandas' and
matplotlib's a few tenths each: ``import pipeline`` (the solver API), the
Dask wing and the MLflow wing (which MLflow loads as a model's loader
module) must pay none of them until they are used.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("mlflow", "optuna", "matplotlib", "pandas")


def imported_modules(code: str, cwd: str | None = None, timeout: float = 120) -> set[str]:
    """Top-level names of every module a fresh interpreter running ``code`` imports."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         timeout=timeout, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    names = set()
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    assert "pipeline" in names or "numpy" in names, "the importtime listing was not read"
    return names


def test_importing_pipeline_and_its_dask_and_mlflow_wings_imports_no_heavy_library() -> None:
    names = imported_modules("import pipeline, pipeline.cv, pipeline.tracking, pipeline.search, pipeline.bridge")
    assert not names & set(HEAVY), f"imported at import time: {sorted(names & set(HEAVY))}"


def test_the_sweeps_driver_never_imports_mlflow_nor_pandas(tmp_path) -> None:
    """Every MLflow call of a sweep runs in its tracking process (pipeline.tracking.service): the
    driver itself never imports MLflow (its ~2 s import overlaps the cluster start instead), nor
    pandas (the model's example rows pass through it as Parquet bytes).

    The driver's own ``sys.modules`` is read at the end: ``-X importtime`` would also list what the
    forked tracking process and the workers import, on the same stderr."""
    code = (
        "import sys\n"
        "from pipeline.config import load_config\n"
        "from pipeline.sweep import execute_sweep\n"
        f"cfg = load_config(None, ['search.n_trials=6', 'search.storage=sqlite:///{tmp_path}/o.db',\n"
        f"                         'tracking.uri=sqlite:///{tmp_path}/m.db', 'cluster.dashboard_address=null'])\n"
        "s = execute_sweep(cfg, echo=lambda *_: None, progress=False)\n"
        "assert (s['model_version'], s['n_trials_complete'], s['trials_not_logged']) == (1, 6, []), s\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    names = set(out.stdout.split())
    assert {"optuna", "distributed"} <= names  # the list is the whole sweep's driver
    assert "mlflow" not in names and "pandas" not in names
