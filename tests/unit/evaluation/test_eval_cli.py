"""``lwz eval writingbench | arena | length`` as a user runs them (subprocess, loopback judge): a table,
then ONE JSON line last; exit codes; a rerun sends no request."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from judge_server import Script

ROOT = Path(__file__).resolve().parents[3]


def _lwz(*args):
    env = dict(os.environ, no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost")
    return subprocess.run([sys.executable, "-m", "megatron_lwz.cli.main", "eval", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def test_writingbench_and_arena_cli(tmp_path, judge_server):
    crit = [{"name": "c1", "criteria_description": "d"}]
    bench = _write(tmp_path / "b.jsonl", [{"index": i, "domain1": "Education", "domain2": "x", "query": f"Q{i}",
                                           "criteria": crit} for i in range(3)])
    gen_a = _write(tmp_path / "a.jsonl", [{"id": i, "prompt": f"Q{i}", "response": "<answer>good text</answer>"}
                                          for i in range(3)])
    gen_b = _write(tmp_path / "b_sys.jsonl", [{"id": i, "prompt": f"Q{i}", "response": "<answer>bad</answer>"}
                                              for i in range(3)])
    script = Script({})

    def respond(body):
        user = body["messages"][1]["content"]
        if "[User Question]" in user:  # arena: the good text wins, wherever it is shown
            first = re.search(r"Assistant A's Answer\]\n(.*?)\n\[The End", user, re.S).group(1)
            return script.next(("arena", user), ("text", "[[A]]" if "good" in first else "[[B]]"))
        return script.next(("wb", user), ("text", '{"score": 8, "reason": "r"}'))

    server = judge_server(respond)
    proc = _lwz("writingbench", "--generations", gen_a, "--benchmark", bench, "--judge", server.url,
                "--judge-model", "critic", "--out", str(tmp_path / "wb"), "judge.backoff_s=0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    last = json.loads(lines[-1])
    assert last["score"] == 8.0 and last["by_domain"] == {"Education": 8.0} and (last["judged"], last["failed"]) == (3, 0)
    assert last["protocol"] == "writingbench-v1" and last["judge_model"] == "critic" and last["partial"] is True
    assert any(line.startswith("domain") for line in lines) and "PARTIAL" in proc.stdout
    before = len(server.requests)
    assert _lwz("writingbench", "--generations", gen_a, "--benchmark", bench, "--judge", server.url,
                "--judge-model", "critic", "--out", str(tmp_path / "wb")).returncode == 0
    assert len(server.requests) == before  # rerun: zero new requests

    proc = _lwz("arena", "--names", "good", "bad", "--judge", server.url, "--judge-model", "j", "--anchor",
                "bad=800", "--bootstrap", "100", "--out", str(tmp_path / "arena"), "--generations", gen_a, gen_b)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["elo"]["bad"] == 800.0 and last["elo"]["good"] > 900 and last["judgments"] == 6
    assert last["position_bias"] == 0.5 and last["failed"] == 0


def test_length_cli_and_bad_input(tmp_path):
    bench = _write(tmp_path / "lbw.jsonl", [{"prompt": "write two words", "length": 2}])  # id = line-1
    gen = _write(tmp_path / "g.jsonl", [{"id": "line-1", "response": "<answer>one two</answer>"}])
    proc = _lwz("length", "--generations", gen, "--benchmark", bench, "--out", str(tmp_path / "len"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["S_l"] == 100.0
    proc = _lwz("length", "--generations", gen, "--benchmark", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2 and "benchmark file not found" in proc.stderr
    proc = _lwz("writingbench", "--generations", gen, "--benchmark", bench, "--judge", "http://127.0.0.1:9/v1",
                "--protocol", "writingbench-v9")
    assert proc.returncode == 2 and "writingbench-v9" in proc.stderr
