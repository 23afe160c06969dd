"""A scripted, deterministic judge speaking OpenAI's ``/v1/chat/completions`` on loopback (stdlib only).

For tests, CPU runs and CPU-scale ablations of the judge channels (``reward.pairwise``,
``reward.rubric``) without a GPU or an LLM. It recognises the three conversations of
``rewards/judge.py`` and ``rewards/rubric.py`` and answers them by a fixed heuristic of the texts:

* quality q(answer) = distinct words − 2 × repeated words (rich, non-repetitive answers win);
* pairwise: ``[[A]]`` if q(A) > q(B), ``[[B]]`` if lower, ``[[C]]`` on a tie, or always ``[[A]]`` with
  ``bias='first'`` (a maximally position-biased judge);
* rubric writing: three criteria named after the request's first words (WritingBench format);
* rubric scoring: per criterion 1 + min(9, q / 4), shifted by the criterion index (JSON ``scores``).

Replies carry ``usage`` (whitespace tokens) so token accounting is exercised. ``counts`` tallies the
requests by kind. Run ``python -m megatron_lwz.rewards.scripted_judge -- CMD …`` to serve for the
lifetime of CMD, with ``LWZ_JUDGE_URL`` set in its environment (what the ablation studies do).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RESPONSE = re.compile(r"\[Response A\]\n(.*)\n\n\[Response B\]\n(.*)\Z", re.DOTALL)


def quality(text: str) -> int:
    """distinct words − 2 × repeated words of ``text`` (lower-cased whitespace tokens)."""
    words = text.lower().split()
    distinct = len(set(words))
    return distinct - 2 * (len(words) - distinct)


class ScriptedJudge:
    """The reply policy; ``counts`` holds requests per kind ('pairwise', 'rubric', 'score', 'other')."""

    def __init__(self, bias: str = "none") -> None:
        self.bias = bias
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def reply(self, messages: list[dict]) -> str:
        system = " ".join(m.get("content", "") for m in messages if m.get("role") == "system")
        user = "\n".join(m.get("content", "") for m in messages if m.get("role") != "system")
        if "[Response A]" in user:
            kind, text = "pairwise", self._pairwise(user)
        elif "evaluation rubrics" in system:
            kind, text = "rubric", self._rubric(user)
        elif "[Criteria]" in user:
            kind, text = "score", self._score(user)
        else:
            kind, text = "other", "{}"
        with self.lock:
            self.counts[kind] += 1
        return text

    def _pairwise(self, user: str) -> str:
        if self.bias == "first":
            return "A is shown first. [[A]]"
        match = _RESPONSE.search(user)
        a, b = (match.group(1), match.group(2)) if match else ("", "")
        qa, qb = quality(a), quality(b)
        return "Verdict: " + ("[[A]]" if qa > qb else "[[B]]" if qb > qa else "[[C]]")

    @staticmethod
    def _rubric(user: str) -> str:
        topic = " ".join(user.split("\n", 1)[-1].split()[:4])
        bands = {"1-2": "fails", "3-4": "weak", "5-6": "adequate", "7-8": "good", "9-10": "excellent"}
        names = ("relevance", "richness", "structure")
        criteria = [{"name": f"{n} ({topic})", "criteria_description": f"{n} of the answer to: {topic}", **bands}
                    for n in names]
        return json.dumps({"criteria": criteria})

    @staticmethod
    def _score(user: str) -> str:
        answer = user.rsplit("[Response]\n", 1)[-1]
        count = len(re.findall(r"^\d+\. ", user.split("[Criteria]", 1)[1].split("[Response]", 1)[0], re.M))
        base = 1 + min(9, max(0, quality(answer)) // 4)
        return json.dumps({"scores": [max(1, min(10, base - k % 2)) for k in range(count)]})


def serve(judge: ScriptedJudge, port: int = 0) -> ThreadingHTTPServer:
    """Start serving ``judge`` on 127.0.0.1:``port`` (0 = any free port) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = body.get("messages") or [{"role": "user", "content": body.get("prompt", "")}]
            text = judge.reply(messages)
            usage = {"prompt_tokens": sum(len(m.get("content", "").split()) for m in messages),
                     "completion_tokens": len(text.split())}
            payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                               "finish_reason": "stop"}], "usage": usage}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def main(argv: list[str] | None = None) -> int:
    """``[--bias first] [-- CMD …]``: serve; run CMD with LWZ_JUDGE_URL set and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    bias = own[own.index("--bias") + 1] if "--bias" in own else "none"
    server = serve(ScriptedJudge(bias))
    env = dict(os.environ, LWZ_JUDGE_URL=url_of(server), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    if not cmd:
        print(f"scripted judge at {url_of(server)}", flush=True)
        threading.Event().wait()
    try:
        return subprocess.call(cmd, env=env)
    finally:
        server.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
