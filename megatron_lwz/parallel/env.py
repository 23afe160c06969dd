"""Where this process sits in the job: torchrun variables, SLURM variables, or a lone process.

Pure stdlib, so launch scripts and tests can use it without importing torch.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from dataclasses import dataclass


PORT_BASE = 12000
PORT_SPAN = 20000
"""Rendezvous ports are PORT_BASE + job id mod PORT_SPAN = 12000–31999: a job-specific port (two jobs
sharing a node do not collide), below Linux's ephemeral range (32768–60999, net.ipv4.ip_local_port_range)
from which the kernel hands out the source ports of outgoing connections — a port in that range can
already be taken by any process's client socket on the master node. ``slurm/env.sh`` has the same
formula (``lwz_rendezvous_port``)."""
EPHEMERAL_PORTS = range(32768, 61000)


def rendezvous_port(job_id: int) -> int:
    """The job's MASTER_PORT when none is exported (see PORT_BASE)."""
    return PORT_BASE + job_id % PORT_SPAN


@dataclass(frozen=True)
class LaunchEnv:
    """Rank layout and rendezvous address of this process."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launcher: str
    """'torchrun', 'slurm' or 'single'."""


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a SLURM nodelist such as ``gpu[001-003,007],login1`` into host names."""
    hosts: list[str] = []
    for match in re.finditer(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist):
        prefix, ranges = match.group(1), match.group(2)
        if not ranges:
            hosts.append(prefix)
            continue
        for part in ranges.split(","):
            if "-" in part:
                lo, hi = part.split("-", 1)
                width = len(lo)
                hosts.extend(f"{prefix}{i:0{width}d}" for i in range(int(lo), int(hi) + 1))
            else:
                hosts.append(f"{prefix}{part}")
    return hosts


def _first_slurm_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                             text=True, timeout=10, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return expand_nodelist(nodelist)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def detect(environ: dict[str, str] | None = None) -> LaunchEnv:
    """Read the launch environment: torchrun first, then SLURM (``srun python -m ...``), else single."""
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env and "WORLD_SIZE" in env:
        return LaunchEnv(
            rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", 0)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"), master_port=int(env.get("MASTER_PORT", 29500)),
            launcher="torchrun",
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
        addr = env.get("MASTER_ADDR") or (_first_slurm_host(nodelist) if nodelist else "127.0.0.1")
        # slurm/launch.sh exports MASTER_ADDR/MASTER_PORT once for all ranks; bare srun computes them here.
        port = int(env.get("MASTER_PORT", rendezvous_port(int(env.get("SLURM_JOB_ID", "0")))))
        return LaunchEnv(
            rank=int(env["SLURM_PROCID"]), world_size=int(env["SLURM_NTASKS"]),
            local_rank=int(env.get("SLURM_LOCALID", 0)), master_addr=addr, master_port=port,
            launcher="slurm",
        )
    return LaunchEnv(rank=0, world_size=1, local_rank=0, master_addr="127.0.0.1",
                     master_port=int(env.get("MASTER_PORT", 0)) or free_port(), launcher="single")
