"""Process-group state (the only owner) and the megatron-core CPU compatibility layer."""

from megatron_lwz.parallel.env import LaunchEnv, detect
from megatron_lwz.parallel.state import (
    ParallelContext,
    destroy_model_parallel,
    init,
    init_model_parallel,
    seed_everything,
    shutdown,
)

__all__ = ["LaunchEnv", "ParallelContext", "destroy_model_parallel", "detect", "init",
           "init_model_parallel", "seed_everything", "shutdown"]
