"""A scripted OpenAI-compatible stub server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest


class StubServer:
    """Answers POSTs from a script: each request pops the next action, or calls ``responder``.

    Actions: ("status", code) → HTTP error; ("sleep", seconds, text) → slow reply; ("text", text) →
    a chat-completions reply with that content; ("raw", bytes) → a raw body.
    """

    def __init__(self) -> None:
        self.script: list[tuple] = []
        self.responder: Callable[[dict], str] | None = None
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                    action = stub.script.pop(0) if stub.script else None
                if action is None:
                    action = ("text", stub.responder(body) if stub.responder else "")
                if action[0] == "status":
                    self.send_response(action[1])
                    self.end_headers()
                    return
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("text", action[2])
                if action[0] == "raw":
                    payload = action[1]
                elif "messages" in body:
                    message = {"role": "assistant", "content": action[1]}
                    payload = json.dumps({"choices": [{"message": message}]}).encode()
                else:
                    payload = json.dumps({"choices": [{"text": action[1]}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_server(monkeypatch):
    for var in ("no_proxy", "NO_PROXY"):  # never route the loopback stub through a configured proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    server = StubServer()
    yield server
    server.close()
