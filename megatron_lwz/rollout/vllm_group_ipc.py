"""vLLM 0.33's CUDA-IPC trainer engine with its handle exchange restricted to one engine group.

``IPCTrainerWeightTransferEngine`` (vllm/distributed/weight_transfer/ipc_engine.py:251-472) all-gathers
the per-rank IPC handles and barriers over the *default* process group ("this assumes the default
group is exactly the set of colocated trainer ranks", ipc_engine.py:347-352, 354-376, 379-386). With
one engine per node (rollout/pool.py) the colocated trainer ranks of an engine are its node's group,
so this subclass overrides exactly those two hooks to use that group (gloo: the handles are small
picklable tuples) — no weight byte or handle crosses nodes. ``trainer_init`` and the data plane
(``_send_packed`` / ``_send_unpacked``, the packed buffer, ``_do_send`` on the sender = group rank 0)
are vLLM's own. Imported only where vLLM is installed.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _group_engine_class() -> type:
    import torch
    import torch.distributed as dist
    from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerWeightTransferEngine

    class GroupIPCTrainerWeightTransferEngine(IPCTrainerWeightTransferEngine):
        """IPC weight transfer whose all-gather and barriers run over ``self.group``."""

        group: Any = None

        def _all_gather_and_merge_handles(self, handles: list[dict[str, tuple]]) -> list[dict[str, tuple]]:
            size = dist.get_world_size(self.group)
            if size == 1:
                return handles
            gathered: list[Any] = [None] * size
            dist.all_gather_object(gathered, handles, group=self.group)
            dist.barrier(group=self.group)
            torch.accelerator.synchronize()
            if not self.is_sender:
                return [{} for _ in handles]
            merged = []
            for index in range(len(handles)):
                entry: dict[str, tuple] = {}
                for rank_handles in gathered:
                    if rank_handles is not None:
                        entry.update(rank_handles[index])
                merged.append(entry)
            return merged

        def _post_send_sync(self) -> None:  # vLLM's is a staticmethod over the default group
            if dist.get_world_size(self.group) > 1:
                dist.barrier(group=self.group)
            torch.cuda.ipc_collect()

    return GroupIPCTrainerWeightTransferEngine


def group_ipc_trainer_init(init_info: Any, *, client: Any, source: Any, group: Any) -> Any:
    """``IPCTrainerWeightTransferEngine.trainer_init`` with the handle exchange over ``group``;
    ``init_info.rank`` is the rank inside ``group`` (0 = the sender, the rank that owns the ``LLM``)."""
    try:
        cls = _group_engine_class()
    except (ImportError, AttributeError):  # no IPCTrainerWeightTransferEngine (the rehearsal's stand-in vLLM)
        from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

        return WeightTransferTrainerFactory.trainer_init(init_info, client=client, source=source)
    engine = cls.trainer_init(init_info, client=client, source=source)
    engine.group = group
    return engine


__all__ = ["group_ipc_trainer_init"]
