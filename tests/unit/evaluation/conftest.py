"""Fixtures of the evaluation tests: the loopback judge server (see judge_server.py)."""

from __future__ import annotations

import pytest
from judge_server import JudgeServer


@pytest.fixture
def judge_server(monkeypatch):
    """``make(respond)`` → a started JudgeServer (closed after the test)."""
    for var in ("no_proxy", "NO_PROXY"):  # never route loopback through a configured proxy
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    servers = []

    def make(respond):
        servers.append(JudgeServer(respond))
        return servers[-1]

    yield make
    for server in servers:
        server.close()
