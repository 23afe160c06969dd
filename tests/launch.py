"""Launch a worker script under torchrun (gloo on CPU) and return its JSON result (rank 0 writes it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(script: Path, nproc: int, args: list[str], out: Path, timeout: float = 600) -> dict:
    """Run ``script`` on ``nproc`` ranks; the script writes ``out`` (JSON) on rank 0."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT}:{os.environ.get('PYTHONPATH', '')}",
               PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "--tee=3", str(script), *args, "--out", str(out)]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-6000:]
        raise AssertionError(f"{script.name} x{nproc} failed (rc={proc.returncode}):\n{tail}")
    return json.loads(out.read_text())
