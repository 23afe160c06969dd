"""A real OpenAI-compatible judge on 127.0.0.1 (``http.server`` in a thread) with scripted replies.

``respond(body) -> action`` decides each reply: ("text", content) → a chat completion with a
``usage`` block; ("status", code) → an HTTP error; ("raw", bytes) → that body. Every request is
counted server-side (``requests``), so tests can prove that a rerun sends none.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class JudgeServer:
    def __init__(self, respond: Callable[[dict], tuple]) -> None:
        self.respond = respond
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    action = server.respond(body)
                if action[0] == "status":
                    self.send_response(action[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action[0] == "raw":
                    payload = action[1]
                else:
                    prompt = sum(len(m["content"]) for m in body["messages"]) // 4
                    payload = json.dumps({
                        "choices": [{"message": {"role": "assistant", "content": action[1]}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": len(action[1]) // 4}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Script:
    """Per-key queues of actions: ``next(key, default)`` pops the key's next action, else ``default``."""

    def __init__(self, queues: dict) -> None:
        self.queues = {k: list(v) for k, v in queues.items()}
        self.seen: dict = {}

    def next(self, key, default: tuple) -> tuple:
        self.seen[key] = self.seen.get(key, 0) + 1
        queue = self.queues.get(key)
        return queue.pop(0) if queue else default
