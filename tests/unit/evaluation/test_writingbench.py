"""``lwz eval writingbench`` against a real loopback judge: scripted 429 / 500 / malformed JSON /
missing scores, failure counts, hand-computed means, and a rerun that sends zero requests."""

import json
import re

import pytest
from judge_server import Script

from megatron_lwz.evaluation.judging import JudgeConfig
from megatron_lwz.evaluation.protocols import WRITINGBENCH
from megatron_lwz.evaluation.writingbench import WritingBenchConfig, parse_score, run_writingbench

CRITERIA = [{"name": n, "criteria_description": f"{n} matters", "1-2": "bad", "3-4": "weak", "5-6": "ok",
             "7-8": "good", "9-10": "great"} for n in ("c1", "c2")]
BENCH = [{"index": 1, "domain1": "Education", "domain2": "Essays", "query": "QUERY-1 write {an essay}",
          "criteria": CRITERIA},
         {"index": 2, "domain1": "Education", "domain2": "Lessons", "query": "QUERY-2 plan a lesson",
          "checklist": CRITERIA},  # the public files' name for the list
         {"index": 3, "domain1": "Finance & Business", "domain2": "Reports", "query": "QUERY-3 a report",
          "criteria": CRITERIA}]


def _files(tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps(b) for b in BENCH) + "\nnot json\n")
    runs = []
    for run, scores in enumerate([(8, 6, 4), (9, 7, 5)]):
        path = tmp_path / f"gen{run}.jsonl"
        lines = [{"id": str(i + 1), "prompt": b["query"],
                  "response": f"<think>SECRET plan</think> <answer>ANSWER s={scores[i]} run{run}</answer>"}
                 for i, b in enumerate(BENCH)]
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        runs.append(str(path))
    return bench, runs


def _responder(script):
    def respond(body):
        user = body["messages"][1]["content"]
        assert "SECRET" not in user, "the judge must only see the <answer> text"
        query = re.search(r"QUERY-(\d)", user).group(1)
        crit = re.search(r"'name': '(c\d)'", user).group(1)
        run = re.search(r"run(\d)", user).group(1)
        score = int(re.search(r"ANSWER s=(\d+)", user).group(1)) + (crit == "c2")
        good = ("text", f'```json\n{{"score": {score}, "reason": "fine"}}\n```')
        return script.next((query, crit, run), good)
    return respond


def test_writingbench_end_to_end_with_failures_and_resume(tmp_path, judge_server):
    script = Script({
        ("1", "c1", "0"): [("status", 429)],                                 # transient: retried
        ("1", "c2", "0"): [("status", 500), ("status", 503)],                # transient: retried twice
        ("2", "c1", "0"): [("text", '{"score": 7, "reason": "unterminated')],  # malformed → re-asked
        ("2", "c2", "0"): [("text", "no json at all")] * 3,                  # always unusable → failed
        ("3", "c1", "1"): [("text", '{"reason": "forgot the score"}')] * 3,  # missing score → failed
        ("3", "c2", "1"): [("text", '{"score": 11, "reason": "out of range"}')] * 3,  # invalid → failed
    })
    server = judge_server(_responder(script))
    bench, runs = _files(tmp_path)
    judge = JudgeConfig(url=server.url, model="critic", reask=2, backoff_s=0.01, concurrency=4)
    cfg = WritingBenchConfig(generations=runs, benchmark=str(bench), judge=judge, out_dir=str(tmp_path / "out"))
    summary = run_writingbench(cfg)
    # 2 runs × 3 queries × 2 criteria = 12 judgments; 3 failed for good.
    assert (summary["judged"], summary["failed"], summary["bad_records"]) == (9, 3, 1)
    # Hand computation. Run 0: q1 = (8+9)/2, q2 = 6 (c2 failed), q3 = (4+5)/2 → mean 6.6667.
    # Run 1: q1 = (9+10)/2, q2 = (7+8)/2, q3 unscored (both failed) → mean 8.5.
    run0, run1 = summary["runs"]
    assert run0["score"] == pytest.approx((8.5 + 6 + 4.5) / 3) and run1["score"] == pytest.approx((9.5 + 7.5) / 2)
    assert run1["queries_unscored"] == 1
    assert summary["score"] == pytest.approx((run0["score"] + run1["score"]) / 2)
    assert run0["by_domain"] == {"Education": pytest.approx((8.5 + 6) / 2), "Finance & Business": 4.5}
    assert summary["protocol"] == "writingbench-v1" and summary["partial"] is True
    assert summary["judge"] == {"url": server.url, "model": "critic", "temperature": 1.0, "top_p": 0.95,
                                "max_tokens": 2048, "reask": 2}
    sent = server.requests[0]
    assert sent["model"] == "critic" and sent["temperature"] == 1.0 and sent["max_tokens"] == 2048
    assert sent["messages"][0]["content"] == WRITINGBENCH["writingbench-v1"].system_prompt
    first_count = len(server.requests)
    # 12 first asks + 1 (429) + 2 (500, 503) + 1 re-ask (malformed) + 2×3 re-asks... counted server-side:
    assert first_count == 12 + 1 + 2 + 1 + 2 + 2 + 2
    lines = [json.loads(x) for x in (tmp_path / "out" / "judgments.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and sum(x["error"] is not None for x in lines) == 3
    assert all(x["prompt_tokens"] > 0 for x in lines)
    assert "protocol: writingbench-v1" in (tmp_path / "out" / "config.yaml").read_text()
    assert (tmp_path / "out" / "versions.json").is_file()
    # Rerun: same results, zero new requests (all replies come from the cache).
    again = run_writingbench(cfg)
    assert len(server.requests) == first_count
    assert again["score"] == summary["score"] and again["usage"]["cache_hits"] == first_count - 3
    assert again["usage"]["requests"] == 0


@pytest.mark.parametrize("text,expected", [
    ('{"score": 7, "reason": "ok"}', (7, "ok")),
    ('<think>maybe {"score": 2, "reason": "x"}</think>```json\n{"score": 9, "reason": "great"}\n```', (9, "great")),
    ('{"score": 7.0, "reason": "float integral"}', (7, "float integral")),
    ('{"score": "7", "reason": "string score"}', None),
    ('{"score": 0, "reason": "too low"}', None),
    ('{"score": 8}', None),
    ('{"score": 8, "reason": "cut', None),
    ("", None),
])
def test_parse_score(text, expected):
    assert parse_score(text) == expected


def test_prompts_are_the_released_strings():
    """SHA-256 of ``evaluate_prompt`` / ``evaluate_system`` in X-PLUG/WritingBench prompt.py at commits
    cf2827a (v1) and 2f3650b (v2), computed from the release (not from our copy)."""
    import hashlib

    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    v1, v2 = WRITINGBENCH["writingbench-v1"], WRITINGBENCH["writingbench-v2"]
    assert sha(v1.prompt_template) == "54f76c9e55293c0dbb8b658045b6fbeded74a24f3f8c49dc5d2ae97cee35a02b"
    assert sha(v2.prompt_template) == "db50de309a38e922c29bdaf9dae753a84f6141b0d60f35bd5001bf5e17d6f7ef"
    assert sha(v1.system_prompt) == "27ba80325caaf209ad169b616fc7ef203445f93649a85cda9328133489f46cc1"
    rendered = v1.render({"name": "c", "x": "{y}"}, "q {braces}", "r")[1]["content"]
    assert "```{'name': 'c', 'x': '{y}'}```" in rendered and "q {braces}" in rendered
