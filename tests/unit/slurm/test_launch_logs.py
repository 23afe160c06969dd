"""slurm/ scripts (issue 12 item 3): syntax, per-rank log routing, the optional pyxis container, the
rendezvous computed once and exported, the debug directory passed to the trainers, and the relay of a
stack-dump request to the trainer. Runs the real launch.sh with a stand-in ``srun`` on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from megatron_lwz.parallel.env import EPHEMERAL_PORTS, rendezvous_port

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = sorted((ROOT / "slurm").glob("*.sh")) + sorted((ROOT / "slurm").glob("*.sbatch"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _launch(tmp_path: Path, **env: str) -> tuple[list[str], dict[str, str]]:
    """launch.sh pretrain with a stand-in srun that records its arguments and environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {tmp_path}/args\nenv > {tmp_path}/env\n')
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho gpu017; echo gpu018\n")  # show hostnames
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    full = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NUM_NODES="2",
                SLURM_JOB_NODELIST="gpu[017-018]", LWZ_STATE_DIR=str(tmp_path / "state"),
                RUNS_DIR=str(tmp_path / "runs"), LWZ_POLL_SECONDS="0.1", LWZ_PYTHON="python3", **env)
    for var in ("MASTER_ADDR", "MASTER_PORT", "LWZ_DEBUG_DIR", "LWZ_CONTAINER_IMAGE"):
        if var not in env:
            full.pop(var, None)
    proc = subprocess.run(["bash", str(ROOT / "slurm/launch.sh"), "pretrain", str(ROOT / "examples/pretrain/tiny_cpu.yaml")],
                          env=full, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    args = (tmp_path / "args").read_text().splitlines()
    srun_env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    return args, srun_env


def test_label_rendezvous_and_debug_dir(tmp_path):
    args, env = _launch(tmp_path)
    assert "--label" in args and not any(a.startswith("--container") for a in args)
    assert env["MASTER_ADDR"] == "gpu017"
    assert int(env["MASTER_PORT"]) == rendezvous_port(4242) and int(env["MASTER_PORT"]) not in EPHEMERAL_PORTS
    debug = str(tmp_path / "runs" / "debug" / "4242")
    assert f"parallel.debug_dir={debug}" in args and env["LWZ_DEBUG_DIR"] == debug


def test_per_rank_files_and_container(tmp_path):
    args, env = _launch(tmp_path, LWZ_LOG_MODE="files", LWZ_LOG_DIR=str(tmp_path / "logs"),
                        LWZ_CONTAINER_IMAGE="nvcr.io#nvidia/pytorch:26.01-py3", MASTER_PORT="23456")
    assert "--label" not in args and f"--output={tmp_path}/logs/%x-%j.rank%t.log" in args
    assert "--container-image=nvcr.io#nvidia/pytorch:26.01-py3" in args
    mounts = next(a for a in args if a.startswith("--container-mounts="))
    assert f"{ROOT}:{ROOT}" in mounts and f"--container-workdir={ROOT}" in args
    assert env["MASTER_PORT"] == "23456"  # an exported value wins
    assert env["LWZ_PYTHON"] == "python3" and str(ROOT) in env["PYTHONPATH"].split(":")


def test_torchrun_uses_the_same_rendezvous(tmp_path):
    args, env = _launch(tmp_path, LWZ_LAUNCHER="torchrun")
    assert f"--rdzv-endpoint=gpu017:{rendezvous_port(4242)}" in args and "--tee=3" in args


TRAINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from megatron_lwz.config.schema import ParallelConfig
    from megatron_lwz.parallel import diagnostics

    debug = Path(sys.argv[1])
    diagnostics.install_stack_dumps(ParallelConfig(debug_dir=str(debug)), rank=0)
    (debug / "ready").write_text("")
    dump = debug / "stacks.rank00000.txt"
    for _ in range(300):
        if dump.exists() and "Current thread" in dump.read_text():
            sys.exit(0)
        time.sleep(0.05)
    sys.exit(3)
""")


def test_stack_dump_request_reaches_the_trainer(tmp_path):
    """The batch shell appends to LWZ_STACKS_FILE on USR2; each task's wrapper turns that into SIGUSR2
    for its trainer, whose faulthandler dumps and keeps running (exit 0 = it saw its own dump)."""
    stacks = tmp_path / "stacks"
    env = dict(os.environ, LWZ_STACKS_FILE=str(stacks), LWZ_POLL_SECONDS="0.05", PYTHONPATH=str(ROOT),
               LWZ_LAUNCHER="srun")
    task = subprocess.Popen(["bash", str(ROOT / "slurm/launch.sh"), "--task", sys.executable, "-c", TRAINER,
                             str(tmp_path)], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for _ in range(400):
        if (tmp_path / "ready").exists():
            break
        task.poll()
        assert task.returncode is None, task.stderr.read()
        time.sleep(0.05)
    stacks.write_text("1\n")
    assert task.wait(timeout=60) == 0, task.stderr.read()
