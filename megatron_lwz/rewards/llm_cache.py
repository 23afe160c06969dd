"""On-disk cache of LLM replies for ``OpenAIClient`` (stdlib ``sqlite3``, one file, safe across threads).

Key: SHA-256 of the canonical JSON of ``{"model", "api", "messages" | "prompt", "sampling"}`` — the model
name, the full conversation and every resolved sampling parameter (temperature, top_p, max_tokens,
seed, extra body fields). Two requests share a cache entry only if the server would have received the
same body. Only successful replies are stored (text, token counts, finish reason); a request that
failed for good is asked again by the next run, so an interrupted or partly failed evaluation resumes
by re-sending exactly the requests it has no answer for.

Sampled replies (temperature > 0) are cached too: a rerun returns the same sample. Callers that want
independent samples of one conversation put a different ``Sampling.seed`` in each request.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


def cache_key(request: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no whitespace, UTF-8) of ``request``."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """``key → JSON value`` in an SQLite file (created with its parent directories on first use).

    Thread-safe through one lock around one connection; several processes may share the file (SQLite
    file locking, 60 s busy timeout), e.g. data-parallel ranks asking the same judge.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored value, or None (also for an entry that no longer parses)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Store (or replace) ``value`` under ``key``; committed at once (autocommit)."""
        blob = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, value) VALUES (?, ?)", (key, blob))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
