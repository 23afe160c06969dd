"""LongBench-Write S_l: the released formula by hand, word counts of the Length RM, buckets, bad lines."""

import json

import pytest

from megatron_lwz.evaluation.length import LengthEvalConfig, length_score, run_length


@pytest.mark.parametrize("x,y,expected", [
    (1000, 1000, 100.0),
    (1000, 2500, 50.0),     # 1 − (2.5 − 1)/3 = 0.5
    (1000, 4000, 0.0),      # 1 − (4 − 1)/3 = 0
    (1000, 500, 50.0),      # 1 − (2 − 1)/2 = 0.5
    (1000, 250, 0.0),       # 1 − (4 − 1)/2 < 0
    (1000, 0, 0.0),
    (300, 400, 100 * (1 - (400 / 300 - 1) / 3)),
])
def test_length_score_formula(x, y, expected):
    assert length_score(x, y) == pytest.approx(expected)


def test_run_length(tmp_path):
    bench = tmp_path / "lbw.jsonl"
    bench.write_text("\n".join([json.dumps({"index": 0, "prompt": "write 4 words", "length": 4}),
                                json.dumps({"index": 1, "prompt": "写十个字", "length": "10"}),
                                json.dumps({"index": 2, "prompt": "bad length", "length": -3}),
                                json.dumps({"index": 3, "prompt": "no answer given", "length": 600})]) + "\n")
    gens = tmp_path / "gen.jsonl"
    gens.write_text("\n".join([
        json.dumps({"id": 0, "response": "<think>many many words here</think><answer>one two three four</answer>"}),
        json.dumps({"id": "1", "response": "<answer>这是五个字 and two</answer>"}),  # 5 CJK + 2 words = 7
        "{broken",
    ]) + "\n")
    summary = run_length(LengthEvalConfig(generations=[str(gens)], benchmark=str(bench), out_dir=str(tmp_path / "o")))
    s0, s1 = 100.0, 100 * (1 - (10 / 7 - 1) / 2)
    assert summary["S_l"] == pytest.approx((s0 + s1) / 2)
    assert summary["scored"] == 2 and summary["missing"] == 1 and summary["bad_records"] == 2
    assert summary["by_range"] == {"[0, 500)": pytest.approx((s0 + s1) / 2)}
    rows = [json.loads(x) for x in (tmp_path / "o" / "length_scores.jsonl").read_text().splitlines()]
    assert [r["words"] for r in rows] == [4, 7]
