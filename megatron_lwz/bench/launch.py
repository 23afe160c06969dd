"""Run a benchmark worker module under torchrun on this node and return the JSON its rank 0 wrote.

Workers take ``--out PATH`` and write one JSON document there from rank 0; every launch gets a
fresh rendezvous port and ``OMP_NUM_THREADS`` (a benchmark's processes share the machine's cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_worker(module: str, nproc: int, args: list[str], threads: int, timeout_s: float) -> dict:
    """Run ``python -m torch.distributed.run -m <module>`` on ``nproc`` local ranks; returns rank 0's JSON."""
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory(prefix="lwz_bench_") as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore",
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
               f"--master_port={_free_port()}", "-m", module, *args, "--out", str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stdout + proc.stderr)[-4000:]
            raise RuntimeError(f"{module} on {nproc} ranks failed (rc={proc.returncode}):\n{tail}")
        return json.loads(out.read_text())
