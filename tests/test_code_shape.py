"""Size limits outside the numeric core: no function over 80 lines, no class over 250.

Long functions with closures and ``nonlocal`` counters hid the state of the
orchestration loops; these limits keep each step small enough to read and to
test on its own (issue "One wing per engine"). ``pipeline/solvers/`` is
exempt: its kernels are measured against references, not against line counts.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 250


def too_long(root: Path = PACKAGE) -> list[str]:
    """Every function and class of the package (solvers excepted) longer than its limit."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if "solvers" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit:
                    out.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {lines} lines > {limit}")
    return out


def test_no_function_or_class_outside_the_solvers_is_too_long() -> None:
    found = too_long()
    assert not found, "split these into smaller steps:\n" + "\n".join(found)


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    assert [line.split(" ")[1] for line in too_long(tmp_path)] == ["long:"]
