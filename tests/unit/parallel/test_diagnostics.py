"""Hang diagnostics (issue 12 item 3): NCCL flight-recorder environment, faulthandler stack dumps on a
signal (the process runs on), and the rendezvous port outside the Linux ephemeral range."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from megatron_lwz.config.schema import ParallelConfig
from megatron_lwz.parallel import diagnostics
from megatron_lwz.parallel.env import EPHEMERAL_PORTS, detect, rendezvous_port

ROOT = Path(__file__).resolve().parents[3]


def test_flight_recorder_env(tmp_path):
    cfg = ParallelConfig(nccl_trace_buffer_size=2000, debug_dir=str(tmp_path / "dbg"))
    env = diagnostics.nccl_env(cfg, rank=5)
    prefix = str(tmp_path / "dbg" / "nccl_trace_rank_")
    assert env == {"TORCH_FR_BUFFER_SIZE": "2000", "TORCH_NCCL_DUMP_ON_TIMEOUT": "1",
                   "TORCH_FR_DUMP_TEMP_FILE": prefix}
    assert diagnostics.nccl_env(ParallelConfig(nccl_trace_buffer_size=0), 0) == {}
    assert "TORCH_FR_DUMP_TEMP_FILE" not in diagnostics.nccl_env(ParallelConfig(), 0)  # no dir: torch's default


def test_apply_keeps_exported_values_and_creates_the_dir(tmp_path):
    cfg = ParallelConfig(nccl_trace_buffer_size=64, debug_dir=str(tmp_path / "d"))
    environ = {"TORCH_FR_BUFFER_SIZE": "7"}
    added = diagnostics.apply(cfg, 0, environ)
    assert environ["TORCH_FR_BUFFER_SIZE"] == "7" and "TORCH_FR_BUFFER_SIZE" not in added
    assert environ["TORCH_NCCL_DUMP_ON_TIMEOUT"] == "1" and (tmp_path / "d").is_dir()


def test_torch_reads_these_variable_names():
    """The names must exist in the installed torch (a renamed variable would silently do nothing)."""
    import torch

    libs = [Path(torch.__file__).parent / "lib" / name for name in ("libtorch_cpu.so", "libtorch_cuda.so")]
    if not all(lib.exists() for lib in libs):
        pytest.skip("libtorch_cpu.so / libtorch_cuda.so not found")
    data = b"".join(lib.read_bytes() for lib in libs)
    for name in diagnostics.nccl_env(ParallelConfig(debug_dir="/x"), 0):
        assert name.encode() in data, name


SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    from megatron_lwz.config.schema import ParallelConfig
    from megatron_lwz.parallel import diagnostics

    def waiting_in_a_collective(stop):
        stop.wait()

    stop = threading.Event()
    threading.Thread(target=waiting_in_a_collective, args=(stop,), daemon=True).start()
    out = diagnostics.install_stack_dumps(ParallelConfig(debug_dir=sys.argv[1]), rank=3)
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.2)
    print("still running", flush=True)
    stop.set()
""")


def test_stack_dump_on_signal_covers_every_thread_and_keeps_running(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0 and "still running" in proc.stdout, proc.stderr
    dump = (tmp_path / "stacks.rank00003.txt").read_text()
    assert "waiting_in_a_collective" in dump and "Current thread" in dump, dump


def test_rendezvous_port_outside_ephemeral_range():
    ports = {rendezvous_port(job) for job in range(0, 200_000, 7)}
    assert min(ports) >= 1024 and not ports & set(EPHEMERAL_PORTS)
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "4321987", "SLURM_JOB_NODELIST": "n[1-2]"}
    assert detect(env).master_port == rendezvous_port(4321987) not in EPHEMERAL_PORTS


def test_bash_port_formula_matches_python():
    for job in (0, 1, 19_999, 20_000, 4_321_987):
        out = subprocess.run(["bash", "-c", f'source "{ROOT}/slurm/env.sh"; lwz_rendezvous_port {job}'],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert int(out) == rendezvous_port(job), job
