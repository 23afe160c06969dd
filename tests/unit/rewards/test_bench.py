"""The reward bench runs and prints a table followed by exactly one JSON line."""

import json

from megatron_lwz.rewards.bench import run_bench, synthetic_answer
from megatron_lwz.rewards.length import count_words


def test_run_bench_small(capsys):
    summary = run_bench((300, 600), repeats=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["words", "variant"]
    assert len(lines) == 1 + 2 * 3 + 1 and json.loads(lines[-1]) == summary
    clean = [r for r in summary["rows"] if r["variant"] == "clean"]
    repetitive = [r for r in summary["rows"] if r["variant"] == "repetitive"]
    assert all(r["score"] == 1.0 for r in clean) and all(r["score"] < 1.0 for r in repetitive)


def test_synthetic_answer_sizes():
    for words in (1000, 4000):
        assert words <= count_words(synthetic_answer(words)) < words + 300  # stops after the paragraph that crosses
        assert words <= count_words(synthetic_answer(words, language="zh")) < words + 300
