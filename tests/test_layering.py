"""pipeline/solvers/ is pure numerics: it imports only numpy, scipy, the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SOLVERS = Path(__file__).resolve().parents[1] / "pipeline" / "solvers"
ALLOWED_THIRD_PARTY = {"numpy", "scipy"}


def _imports(path: Path) -> list[tuple[int, str, int]]:
    """(line, top-level module, relative level) of every import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0], 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, (node.module or "").split(".")[0], node.level))
    return found


def test_solvers_import_only_numpy_scipy_stdlib_and_siblings():
    files = sorted(SOLVERS.glob("*.py"))
    assert len(files) >= 5, "the scan must see the solver modules"
    offenders = []
    for path in files:
        for line, module, level in _imports(path):
            if level == 1:
                continue  # sibling inside pipeline/solvers
            if level > 1 or module == "pipeline":
                offenders.append(f"{path.name}:{line} imports another part of pipeline")
            elif module not in ALLOWED_THIRD_PARTY and module not in sys.stdlib_module_names:
                offenders.append(f"{path.name}:{line} imports {module}")
    assert not offenders, "pipeline/solvers must stay pure numpy/scipy:\n" + "\n".join(offenders)


def test_the_scan_catches_forbidden_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import dask\nfrom mlflow import log_metric\nfrom .. import config\nimport optuna.trial\n")
    modules = [(m, lvl) for _, m, lvl in _imports(bad)]
    assert ("dask", 0) in modules and ("mlflow", 0) in modules and ("optuna", 0) in modules
    assert any(lvl == 2 for _, lvl in modules)
