"""The code keeps the shape issue 15 asked for: no function over 60 lines, no class over
150 lines (outside the sandbox), no function with a McCabe complexity over 12.

Sizes are counted here with `ast`, since ruff has no rule for them. Complexity is ruff's
C901, whose limit lives in pyproject.toml (`[tool.ruff.lint.mccabe]`) and which `make lint`
applies too; the test runs it as well because CI (.ci/run) runs `make test`, not
`make lint`, and ruff takes a fraction of a second. The sandbox may hold larger functions
and classes (a reference server, not the connector), but not more complex ones.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "leadrat_source"
EXEMPT_FROM_SIZE = PACKAGE / "sandbox"
MAX_FUNCTION_LINES = 60
MAX_CLASS_LINES = 150
#: What `make lint` checks.
LINTED = ("leadrat_source", "tests", "bench", "pipelines")


def _definitions() -> Iterator[tuple[str, ast.AST, int]]:
    """(where, node, lines) for every function and class of the package outside the sandbox;
    a definition's lines run from its `def`/`class` line to its last line."""
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(EXEMPT_FROM_SIZE):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                assert node.end_lineno is not None
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                yield where, node, node.end_lineno - node.lineno + 1


def test_no_function_over_60_lines_and_no_class_over_150() -> None:
    too_long = [f"{where} ({lines} lines)" for where, node, lines in _definitions()
                if lines > (MAX_CLASS_LINES if isinstance(node, ast.ClassDef)
                            else MAX_FUNCTION_LINES)]
    assert not too_long, "split these up:\n" + "\n".join(too_long)


def test_no_function_more_complex_than_mccabe_12() -> None:
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "C901", "--output-format",
         "concise", "--no-cache", *LINTED],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
