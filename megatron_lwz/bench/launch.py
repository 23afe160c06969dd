"""Run a benchmark worker module on N local ranks and return the JSON its rank 0 wrote.

The ranks are started directly with torchrun's environment contract (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT — what ``parallel.env.detect`` reads), so no torchrun agent process holds
a second copy of torch in RAM; the workers stay launchable by hand with ``python -m
torch.distributed.run -m <module>``. Workers take ``--out PATH`` and write one JSON document there
from rank 0. If one rank fails, the others are terminated instead of waiting in a collective.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(procs: list[subprocess.Popen], timeout_s: float) -> list[int | None]:
    """Poll until every rank exits; on the first failure or the timeout, terminate the others."""
    deadline = time.monotonic() + timeout_s
    while True:
        codes = [p.poll() for p in procs]
        failed = any(c not in (None, 0) for c in codes)
        if all(c is not None for c in codes) or failed or time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            return [p.poll() for p in procs]
        time.sleep(0.1)


def launch_worker(module: str, nproc: int, args: list[str], threads: int, timeout_s: float) -> dict:
    """Run ``python -m <module> ARGS --out FILE`` on ``nproc`` local ranks (gloo/nccl rendezvous on a
    free port, ``OMP_NUM_THREADS=threads``); returns the JSON rank 0 wrote, or raises with the logs."""
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="lwz_bench_") as tmp:
        out = Path(tmp) / "result.json"
        base = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore", MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=str(free_port()), WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc),
                    PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        logs = [open(Path(tmp) / f"rank{r}.log", "w+") for r in range(nproc)]
        try:
            procs = [subprocess.Popen([sys.executable, "-m", module, *args, "--out", str(out)],
                                      env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=log,
                                      stderr=subprocess.STDOUT) for r, log in enumerate(logs)]
            codes = _wait(procs, timeout_s)
            if any(codes) or not out.exists():
                tails = []
                for r, log in enumerate(logs):
                    log.seek(0)
                    tails.append(f"--- rank {r} (exit {codes[r]}) ---\n{log.read()[-3000:]}")
                raise RuntimeError(f"{module} on {nproc} ranks failed:\n" + "\n".join(tails))
            return json.loads(out.read_text())
        finally:
            for log in logs:
                log.close()
