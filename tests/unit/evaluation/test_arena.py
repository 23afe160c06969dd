"""``lwz eval arena`` against a real loopback judge: both orders, scripted failures, hand-counted
win rates and position bias, Elo order, PNGs, and a rerun with zero new requests."""

import json
import re

import numpy as np
import pytest
from judge_server import Script

from megatron_lwz.evaluation.arena import ArenaConfig, run_arena
from megatron_lwz.evaluation.elo import EloConfig
from megatron_lwz.evaluation.judging import JudgeConfig
from megatron_lwz.evaluation.pairwise import pair_messages, parse_verdict

BASE = {"strong": 0.8, "mid": 0.5, "weak": 0.2}
PROMPTS = 12


def _quality(name, p):
    rng = np.random.default_rng([list(BASE).index(name), p])
    return round(max(0.0, BASE[name] + rng.uniform(-0.35, 0.35)), 2)


def _files(tmp_path, qualities):
    paths = []
    for name in BASE:
        lines = [{"id": f"p{p}", "prompt": f"PROMPT {p}: write a story",
                  "response": f"<think>hidden</think><answer>QUALITY={qualities[name, p]} by {name}</answer>"}
                 for p in range(PROMPTS)]
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        paths.append(str(path))
    return paths


def _expected(qa, qb):
    return "C" if abs(qa - qb) < 0.05 else ("A" if qa > qb else "B")


def _responder(script):
    def respond(body):
        user = body["messages"][1]["content"]
        assert "hidden" not in user
        p = re.search(r"PROMPT (\d+)", user).group(1)
        (qa, na), (qb, nb) = re.findall(r"QUALITY=([\d.]+) by (\w+)", user)
        good = ("text", f"A is {'better' if float(qa) > float(qb) else 'worse'}. [[{_expected(float(qa), float(qb))}]]")
        return script.next((p, na, nb), good)
    return respond


def test_arena_end_to_end_with_failures_and_resume(tmp_path, judge_server):
    qualities = {(n, p): _quality(n, p) for n in BASE for p in range(PROMPTS)}
    script = Script({
        ("0", "strong", "mid"): [("status", 429)],                        # transient
        ("1", "mid", "weak"): [("status", 500)],                          # transient
        ("2", "weak", "strong"): [("text", "I refuse to pick.")] * 3,    # missing verdict → failed
        ("3", "strong", "weak"): [("text", "[[D]] nonsense")],           # malformed → re-asked, then ok
        ("4", "mid", "strong"): [("raw", b"{not json")],                 # broken body → client retry, ok
    })
    server = judge_server(_responder(script))
    judge = JudgeConfig(url=server.url, model="judge-7b", backoff_s=0.01, concurrency=4)
    cfg = ArenaConfig(generations=_files(tmp_path, qualities), judge=judge, out_dir=str(tmp_path / "arena"),
                      elo=EloConfig(bootstrap=200, prior_ties=0.1))
    summary = run_arena(cfg)
    total = 3 * PROMPTS * 2  # 3 pairs × 12 prompts × 2 orders
    assert (summary["judgments"], summary["failed"]) == (total - 1, 1)
    # Hand count from the qualities: wins of row over column (ties ½), failed comparison left out.
    names = list(BASE)
    wins, games, first_wins, decisive = np.zeros((3, 3)), np.zeros((3, 3)), 0, 0
    for p in range(PROMPTS):
        for i, x in enumerate(names):
            for j, y in enumerate(names):
                if i == j or (p, x, y) == (2, "weak", "strong"):
                    continue
                v = _expected(qualities[x, p], qualities[y, p])
                s = {"A": 1.0, "B": 0.0, "C": 0.5}[v]
                wins[i, j] += s
                wins[j, i] += 1 - s
                games[i, j] += 1
                games[j, i] += 1
                decisive += v != "C"
                first_wins += v == "A"
    for i, x in enumerate(names):
        for j, y in enumerate(names):
            if i != j:
                assert summary["win_rate"][x][y] == pytest.approx(wins[i, j] / games[i, j])
    assert summary["position_bias"] == pytest.approx(first_wins / decisive)
    elo = summary["elo"]
    assert elo["strong"] > elo["mid"] > elo["weak"]
    assert np.mean(list(elo.values())) == pytest.approx(1000.0)
    assert all(lo <= elo[n] <= hi for n, (lo, hi) in summary["ci"].items())
    out = tmp_path / "arena"
    assert (out / "elo.png").stat().st_size > 1000 and (out / "win_rate.png").stat().st_size > 1000
    assert len((out / "judgments.jsonl").read_text().splitlines()) == total
    assert (out / "win_rate.csv").read_text().startswith("row_vs_col,strong,mid,weak")
    first = len(server.requests)
    assert first == total + 1 + 1 + 2 + 1 + 1  # + 429, 500, 2 re-asks (refusal), 1 re-ask ([[D]]), 1 bad body
    again = run_arena(cfg)
    assert len(server.requests) == first and again["elo"] == summary["elo"]  # zero new requests


def test_rm_judge_is_position_free():
    qualities = {("a", p): 0.1 * p for p in range(5)} | {("b", p): 0.25 for p in range(5)}
    score = lambda qs, answers: [float(re.search(r"Q=([\d.]+)", a).group(1)) for a in answers]  # noqa: E731
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name in ("a", "b"):
            path = Path(tmp) / f"{name}.jsonl"
            path.write_text("\n".join(json.dumps({"id": p, "prompt": "q", "response": f"<answer>Q={qualities[name, p]}</answer>"})
                                      for p in range(5)) + "\n")
            paths.append(str(path))
        cfg = ArenaConfig(generations=paths, rm_checkpoint="unused", out_dir=str(Path(tmp) / "o"),
                          elo=EloConfig(bootstrap=50))
        summary = run_arena(cfg, score_fn=score)
    # a: 0.0, 0.1, 0.2 < 0.25 lose; 0.3, 0.4 win → 2 of 5 prompts, both orders agree
    assert summary["win_rate"]["a"]["b"] == pytest.approx(0.4) and summary["position_bias"] == pytest.approx(0.5)
    assert summary["judgments"] == 10 and summary["failed"] == 0


def test_verdict_parsing_and_messages():
    assert parse_verdict("<think>[[B]] hmm</think> after all, [[A]]") == "A"
    assert parse_verdict("first [[A]] then final [[ C ]]") == "C"
    assert parse_verdict("[[D]] or [A]") is None
    msgs = pair_messages("mt-bench-pair-v2", "Q {answer_b}", "ans {question}", "second")
    assert msgs[1]["content"] == ("[User Question]\nQ {answer_b}\n\n[The Start of Assistant A's Answer]\n"
                                  "ans {question}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant "
                                  "B's Answer]\nsecond\n[The End of Assistant B's Answer]")
    assert msgs[0]["content"].endswith('"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, '
                                       'and "[[C]]" for a tie.')
