"""Phase timers shared by the training loops."""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def timed(times: dict, name: str):
    """Record the wall time of the block as ``times[f"time/{name}_s"]``."""
    start = time.perf_counter()
    yield
    times[f"time/{name}_s"] = time.perf_counter() - start
