"""Benchmark output convention: a human markdown table, then exactly ONE JSON line, last on stdout.

Every ``lwz bench`` command ends that way so that CI and scripts can take ``stdout.splitlines()[-1]``
and ``json.loads`` it. Measured values are ratios against a baseline timed in the same run.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass(kw_only=True)
class Column:
    """One table column: the row-dict key it shows, its header and a format spec."""

    key: str
    """Key in each row dict (also the key in the JSON rows)."""
    header: str
    """Column title in the markdown table."""
    fmt: str = ""
    """``format`` spec for the cell (e.g. ``.2f``); None cells print as ``-``."""


@dataclass(kw_only=True)
class BenchResult:
    """A benchmark's outcome: table rows, headline summary values and free-text notes."""

    bench: str
    """Benchmark name (the JSON ``bench`` field)."""
    title: str
    """One line above the table."""
    columns: list[Column]
    """Columns of the table, in order."""
    rows: list[dict[str, Any]]
    """One dict per table row; every key goes into the JSON, shown or not."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Headline values (ratios, pass/fail); top-level keys of the JSON line."""
    notes: list[str] = field(default_factory=list)
    """Lines printed under the table."""


def _clean(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists, dict keys strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def format_markdown(result: BenchResult) -> str:
    """Title, markdown table (right-aligned numbers) and notes."""
    cells = [[_cell(row.get(c.key), c.fmt) for c in result.columns] for row in result.rows]
    widths = [max([len(c.header)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
    lines = [f"## {result.title}", ""]
    lines.append("| " + " | ".join(c.header.ljust(w) for c, w in zip(result.columns, widths)) + " |")
    lines.append("|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    lines += ["| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    if result.notes:
        lines.append("")
        lines += result.notes
    return "\n".join(lines)


def to_json_line(result: BenchResult) -> str:
    """The single JSON line: ``bench``, the summary keys and ``rows`` (strict JSON, no newline)."""
    record = {"bench": result.bench, **_clean(result.summary), "rows": _clean(result.rows)}
    return json.dumps(record, sort_keys=True, allow_nan=False, separators=(",", ":"))


def emit(result: BenchResult, out: TextIO | None = None) -> None:
    """Print the table, then the JSON line as the last line of ``out`` (stdout by default)."""
    out = out or sys.stdout
    out.write(format_markdown(result) + "\n")
    out.write(to_json_line(result) + "\n")
    out.flush()
