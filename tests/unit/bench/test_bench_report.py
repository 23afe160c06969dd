"""Benchmark output convention (megatron_lwz.bench.report): a markdown table, then exactly one JSON
line, last, strict JSON (non-finite floats → null), every row key present."""

from __future__ import annotations

import io
import json
import math

from megatron_lwz.bench.report import BenchResult, Column, emit, format_markdown, to_json_line


def _result() -> BenchResult:
    rows = [{"name": "baseline", "seconds": 1.5, "ratio": 1.0, "hidden": "kept in JSON"},
            {"name": "ours", "seconds": 0.25, "ratio": 6.0, "hidden": None},
            {"name": "broken", "seconds": math.nan, "ratio": math.inf, "hidden": (1, 2)}]
    return BenchResult(bench="demo", title="demo bench", rows=rows,
                       columns=[Column(key="name", header="run"), Column(key="seconds", header="s", fmt=".3f"),
                                Column(key="ratio", header="x base", fmt=".2f")],
                       summary={"speedup": 6.0, "worst": math.nan, "nested": {1: [0.5, math.inf]}},
                       notes=["a note"])


def test_json_line_is_last_and_only_one():
    out = io.StringIO()
    emit(_result(), out)
    lines = out.getvalue().rstrip("\n").split("\n")
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    assert len(parsed) == 1, f"expected one JSON line, got {len(parsed)}"
    record = json.loads(lines[-1])
    assert record["bench"] == "demo" and record["speedup"] == 6.0
    assert record["worst"] is None and record["nested"] == {"1": [0.5, None]}  # strict JSON, no NaN/Infinity
    assert [r["name"] for r in record["rows"]] == ["baseline", "ours", "broken"]
    assert record["rows"][0]["hidden"] == "kept in JSON" and record["rows"][2]["hidden"] == [1, 2]
    assert record["rows"][2]["seconds"] is None and record["rows"][2]["ratio"] is None


def test_json_line_has_no_newline_and_is_strict():
    line = to_json_line(_result())
    assert "\n" not in line
    json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(f"non-strict constant {c}")))


def test_markdown_table_shape():
    text = format_markdown(_result())
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, separator, three rows
    assert len({len(line) for line in table}) == 1, "columns are not aligned"
    assert table[0].split("|")[1].strip() == "run"
    assert set(table[1]) <= set("|-:")
    cells = [c.strip() for c in table[2].split("|")[1:-1]]
    assert cells == ["baseline", "1.500", "1.00"]
    assert [c.strip() for c in table[4].split("|")[1:-1]] == ["broken", "-", "-"]  # non-finite shown as '-'
    assert text.splitlines()[0] == "## demo bench" and text.splitlines()[-1] == "a note"
