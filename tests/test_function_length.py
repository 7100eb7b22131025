"""No function in ``src/hipo`` is longer than 60 lines unless its docstring says why (issue 13).

A function's length counts every line from its ``def`` to its last line, docstring included (decorators not). The
stated reason is a docstring sentence containing the phrase ``Long because``. Cheap (parses the sources only), so
it is in the fast tier.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hipo"
MAX_LINES = 60
REASON = "Long because"


def long_functions(root: Path = SRC, max_lines: int = MAX_LINES) -> list[str]:
    """``path:line name (N lines)`` for every function over ``max_lines`` lines without a stated reason."""
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > max_lines and REASON not in (ast.get_docstring(node) or ""):
                found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_over_60_lines_without_a_stated_reason() -> None:
    offenders = long_functions()
    assert not offenders, (
        f"functions over {MAX_LINES} lines: split them into helpers, or say why in the docstring "
        f"({REASON!r} ...):\n" + "\n".join(offenders)
    )


def test_the_check_sees_long_functions_and_their_reasons(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        f"def long():\n{body}\n\n\ndef kept():\n    '''Long because it is.'''\n{body}\n\n\ndef short():\n    pass\n"
    )
    assert long_functions(tmp_path / "pkg") == ["pkg/mod.py:1 long (61 lines)"]
