"""The import rules of the whole package (DESIGN.md, "Layout"), checked on the source.

Layers, each importing only those below it (and itself):

    cli → sweep / retrain → bridge → search → cv → base → solvers
                                    tracking ──────→ base

- ``solvers/`` is pure numerics: numpy, scipy and the standard library only, and numba in ``solvers/_cd.py``
  alone (the rows engine's compiled coordinate-descent kernel, imported on first use);
- ``cv/`` (Dask) imports neither Optuna nor MLflow;
- ``search/`` (Optuna) imports no MLflow;
- ``tracking/`` (MLflow) imports neither Optuna nor Dask;
- ``bridge/`` sees the study and MLflow, not Dask;
- ``sweep`` and ``retrain`` never import each other; nothing below them imports them;
- ``pipeline/__init__.py`` may name ``pipeline.api`` (``run_sweep``), which it imports on first use.

Imports under ``if TYPE_CHECKING:`` count as well: a type is a dependency too.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"

BASE = {"errors", "config", "metrics", "feature_controls", "data", "folds", "columns", "column_kinds", "encoding",
        "levels",
        "recoding", "validation", "targets",
        "candidate", "model", "fitting", "engine", "ownership", "locks", "signals", "sqlite_wal", "report", "console",
        "datasets", "selection", "plots", "background", "gc_pause", ""}
ORDER = ["solvers", "base", "cv", "search", "tracking", "bridge", "sweep", "retrain", "cli"]
ALLOWED_LAYERS = {
    "solvers": {"solvers"},
    "base": {"base", "solvers"},
    "cv": {"cv", "base", "solvers"},
    "search": {"search", "cv", "base", "solvers"},
    "tracking": {"tracking", "base", "solvers"},
    "bridge": {"bridge", "search", "tracking", "cv", "base", "solvers"},
    "sweep": {"sweep", "bridge", "search", "tracking", "cv", "base", "solvers"},
    "retrain": {"retrain", "bridge", "search", "tracking", "cv", "base", "solvers"},
    "cli": set(ORDER),
}
FORBIDDEN_THIRD_PARTY = {
    "base": {"dask", "distributed", "optuna", "mlflow"},
    "cv": {"optuna", "mlflow"},
    "search": {"mlflow"},
    "tracking": {"optuna", "distributed", "dask"},
    "bridge": {"distributed", "dask"},
}


def layer_of(module: str) -> str:
    """The layer of ``pipeline.<module>`` (dotted, without the ``pipeline.`` prefix)."""
    head = module.split(".")[0]
    if head in ("solvers", "cv", "search", "tracking", "bridge", "sweep", "retrain", "cli"):
        return head
    if head in ("__main__", "api"):
        return "cli"
    assert head in BASE, f"pipeline.{module} belongs to no layer: add it to BASE or to a wing in test_layering"
    return "base"


def _module_of(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str, bool]]:
    """``(line, absolute module, is ours)`` of every import in ``path`` (relative imports resolved)."""
    package = _module_of(path, root).split(".") if path.name == "__init__.py" else \
        _module_of(path, root).split(".")[:-1]
    package = [p for p in package if p]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                ours = alias.name == "pipeline" or alias.name.startswith("pipeline.")
                found.append((node.lineno, alias.name.removeprefix("pipeline").lstrip(".") if ours else alias.name,
                              ours))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                name = node.module or ""
                ours = name == "pipeline" or name.startswith("pipeline.")
                found.append((node.lineno, name.removeprefix("pipeline").lstrip(".") if ours else name, ours))
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, *([node.module] if node.module else [])])
            if not node.module:  # from . import x, y: a submodule, or a name of the package's __init__
                for alias in node.names:
                    sub = root.joinpath(*base, alias.name)
                    is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                    found.append((node.lineno, ".".join([*base, alias.name] if is_module else base), True))
            else:
                found.append((node.lineno, target, True))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """Every import of the package under ``root`` that breaks a rule of the module docstring."""
    out = []
    for path in sorted(root.rglob("*.py")):
        module = _module_of(path, root)
        layer = layer_of(module)
        for line, imported, ours in _imports(path, root):
            where = f"{path.relative_to(root)}:{line}"
            if ours:
                target = layer_of(imported) if imported else "base"
                # the package's face re-exports the notebook API (pipeline.api), lazily
                allowed = ALLOWED_LAYERS[layer] | ({"cli"} if module == "" else set())
                if target not in allowed:
                    out.append(f"{where}: {layer} imports pipeline.{imported} ({target})")
                continue
            top = imported.split(".")[0]
            numeric = ("numpy", "scipy", "numba") if path.name == "_cd.py" else ("numpy", "scipy")
            if layer == "solvers" and top not in numeric and top not in sys.stdlib_module_names:
                out.append(f"{where}: solvers import {top}")
            if top in FORBIDDEN_THIRD_PARTY.get(layer, set()):
                out.append(f"{where}: {layer} imports {top}")
    return out


def test_every_module_keeps_the_import_rules() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 40, "the scan must see the whole package"
    found = violations()
    assert not found, "import rules broken (see tests/test_layering.py):\n" + "\n".join(found)


def test_the_scan_catches_each_kind_of_forbidden_import(tmp_path: Path) -> None:
    copy = tmp_path / "pipeline"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    plants = {
        "solvers/active_set.py": "import dask\n",
        "cv/passes.py": "from optuna import Study\n",
        "search/space.py": "import mlflow\n",
        "tracking/records.py": "from ..search import TrialStore\n",
        "bridge/replay.py": "from distributed import Client\n",
        "retrain.py": "from .sweep import execute_sweep\n",
        "cv/refit.py": "from .. import sweep\n",
        "model.py": "from .cv import open_client\n",
    }
    for rel, line in plants.items():
        path = copy / rel
        path.write_text(path.read_text() + "\n" + line)
    found = "\n".join(violations(copy))
    for rel in plants:
        assert rel in found, f"a forbidden import planted in {rel} was not reported:\n{found}"
