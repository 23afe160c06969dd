"""Files ≲ 400 lines and functions ≲ 60 lines (style rule 5); exemptions must be listed with a reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FILE_LIMIT, FILE_HARD = 400, 800
FUNC_LIMIT, FUNC_HARD = 60, 150
# path (relative to the repo) → reason. Keep this list short.
FILE_EXEMPT: dict[str, str] = {}
FUNC_EXEMPT: dict[str, str] = {}


def _sources() -> list[Path]:
    return sorted(p for d in ("megatron_lwz", "tools") for p in (ROOT / d).rglob("*.py"))


def test_file_sizes():
    too_big = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= FILE_HARD, f"{rel}: {lines} lines exceeds the hard limit {FILE_HARD}"
        if lines > FILE_LIMIT and rel not in FILE_EXEMPT:
            too_big.append(f"{rel} ({lines})")
    assert not too_big, f"files over {FILE_LIMIT} lines (split them or add a reasoned exemption): {too_big}"


def test_function_sizes():
    too_long = []
    for path in _sources():
        rel = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                key = f"{rel}:{node.name}"
                assert length <= FUNC_HARD, f"{key}: {length} lines exceeds the hard limit {FUNC_HARD}"
                if length > FUNC_LIMIT and key not in FUNC_EXEMPT:
                    too_long.append(f"{key} ({length})")
    assert not too_long, f"functions over {FUNC_LIMIT} lines: {too_long}"
