"""Launch-environment detection: torchrun variables, SLURM variables (srun without torchrun), single."""

from __future__ import annotations

from megatron_lwz.parallel.env import detect, expand_nodelist


def test_expand_nodelist():
    assert expand_nodelist("gpu[001-003,007]") == ["gpu001", "gpu002", "gpu003", "gpu007"]
    assert expand_nodelist("login1,node[9-10]") == ["login1", "node9", "node10"]
    assert expand_nodelist("a01") == ["a01"]


def test_torchrun_wins():
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1234",
           "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    got = detect(env)
    assert (got.rank, got.world_size, got.local_rank, got.master_addr, got.master_port, got.launcher) == \
        (3, 8, 1, "h", 1234, "torchrun")


def test_slurm_without_torchrun():
    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "424242",
           "SLURM_JOB_NODELIST": "h100-[017-018]"}
    got = detect(env)
    assert (got.rank, got.world_size, got.local_rank, got.launcher) == (9, 16, 1, "slurm")
    assert got.master_addr == "h100-017"
    assert got.master_port == 12000 + 424242 % 20000  # job-specific: two jobs on a node do not collide


def test_single_process():
    got = detect({})
    assert (got.rank, got.world_size, got.launcher) == (0, 1, "single") and got.master_port > 0
