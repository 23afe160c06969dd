"""Engine pool: one rollout engine per group of trainer ranks, length-aware dispatch, group-local sync.

Every rank holds an :class:`EnginePool` and calls its methods in lockstep. The leader of each engine
group (parallel/rollout_groups.py) owns the engine — an HF engine on CPU (in-process, or a
:class:`~megatron_lwz.rollout.engine_proc.ProcessEngine` so generation can overlap training), a vLLM
``LLM`` spanning the group's GPUs on GPU — and generates its shards of the step's plan
(rollout/dispatch.py: the same plan on every rank, per-sample seeds, so the samples do not depend on
the number of engines). Leaders exchange their groups over the leaders' gloo group, then each leader
hands the merged rollout to its group over the group's gloo group: ranks that do not generate wait in
a host collective, never inside an NCCL call.

Weights move group-locally: every rank drives the Megatron → HF export (its TP/PP collectives) and
the leader loads the tensors (HF), or every rank of the group pushes its CUDA-IPC handles to the
leader's vLLM workers with the handle all-gather restricted to the group (rollout/vllm_group_ipc.py).

Failures are agreed on before anyone raises: a leader whose engine died (or raised) reports it in the
exchange, and every rank then raises :class:`RolloutPoolError` naming the engine and the cause — the
job fails fast with one clear message instead of waiting in a collective until a timeout.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch.distributed as dist

from megatron_lwz.parallel import rehearsal
from megatron_lwz.parallel.rollout_groups import EngineGroups
from megatron_lwz.rollout.dispatch import Shard, engine_request, merge_groups, plan_dispatch, shard_params
from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, SamplingParams


class RolloutPoolError(RuntimeError):
    """An engine of the pool failed; raised on every rank with the same message."""


class EnginePool:
    """Collective generation and weight sync over the engines of the job (module docstring)."""

    def __init__(self, groups: EngineGroups, engine: Any, *, dispatch: str = "length_aware",
                 cost: Callable[[PromptRecord], float] | None = None, every_rank_syncs: bool = False):
        """``engine``: this rank's engine (None where it holds none); ``cost``: predicted tokens of one
        sample of a prompt (rollout/dispatch.py ``predicted_tokens``); ``every_rank_syncs``: every rank
        of a group calls ``engine.update_weights`` (vLLM IPC) instead of only the leader."""
        if groups.is_leader and engine is None:
            raise ValueError(f"rank {groups.rank} leads engine {groups.index} but holds no engine")
        self.groups = groups
        self.engine = engine
        self.dispatch = dispatch
        self.cost = cost or (lambda record: 1.0)
        self.every_rank_syncs = every_rank_syncs
        self._plan: list[list[Shard]] | None = None
        self._request: tuple[list[PromptRecord], list[str], SamplingParams] | None = None
        self._local: Any = None
        self.last_plan: list[list[Shard]] = []
        self.compute_dtype: Any = None
        """dtype the engines compute in (weights are exported in it; set by the builder)."""

    # -- generation ---------------------------------------------------------------------------

    def plan(self, prompts: Sequence[PromptRecord], group_size: int) -> list[list[Shard]]:
        return plan_dispatch([self.cost(p) for p in prompts], group_size, self.groups.num_engines,
                             self.dispatch)  # type: ignore[arg-type]

    def submit(self, prompts: Sequence[PromptRecord], texts: Sequence[str], params: SamplingParams) -> None:
        """Start this step's generation (leaders); a process engine returns at once."""
        if self._request is not None:
            raise RuntimeError("engine pool: a rollout is already in flight; collect() it first")
        self._plan = self.plan(prompts, params.n)
        self._request = (list(prompts), list(texts), params)
        self._local = None
        if not self.groups.is_leader:
            return
        shards = self._plan[self.groups.index]
        try:
            args = engine_request(shards, prompts, texts, params)
            if hasattr(self.engine, "submit"):
                self.engine.submit(*args)
                self._local = "pending"
            else:
                self._local = self.engine.generate(*args) if shards else []
        except Exception as err:  # noqa: BLE001 - agreed on in collect(), raised on every rank
            self._local = _failure(self.groups.index, "generate", err)

    def collect(self) -> list[RolloutGroup]:
        """The step's groups on every rank (collective; raises RolloutPoolError if an engine failed)."""
        if self._request is None or self._plan is None:
            raise RuntimeError("engine pool: collect() without submit()")
        prompts, texts, params = self._request
        plan, self._request = self._plan, None
        self.last_plan = plan  # which engine drew which samples (per-engine verification, rl/engine_verify.py)
        local = self._local
        if self.groups.is_leader and local == "pending":
            try:
                local = self.engine.result()
            except Exception as err:  # noqa: BLE001
                local = _failure(self.groups.index, "generate", err)

        def peer(e: int) -> list[RolloutGroup]:  # one request per shard, as the engine would answer it
            return [group for s in plan[e] for group in rehearsal.peer_call(
                self.engine.generate, [prompts[s.prompt_index]], [texts[s.prompt_index]], shard_params(params, s))]

        return merge_groups(prompts, plan, self._exchange(local, peer), params.n)

    def generate(self, prompts: Sequence[PromptRecord], texts: Sequence[str], params: SamplingParams) -> list[RolloutGroup]:
        self.submit(prompts, texts, params)
        return self.collect()

    # -- weights ------------------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable) -> Any:
        """Every rank, in lockstep: drive the export; the leader's engine (or, for vLLM, every rank's
        engine handle) loads it. Raises RolloutPoolError on every rank if any engine failed."""
        report, failure = None, None
        if self.every_rank_syncs or self.groups.is_leader:
            try:
                report = self.engine.update_weights(named_tensors)
            except Exception as err:  # noqa: BLE001
                failure = _failure(self.groups.index, "weight sync", err)
        else:
            for _ in named_tensors:  # the export's collectives must run on every rank
                pass
        self._exchange(failure if failure is not None else True)
        return report

    # -- exchange -----------------------------------------------------------------------------

    def _exchange(self, local: Any, peer: Callable[[int], Any] | None = None) -> list[Any]:
        """Leaders all-gather ``local``; each leader broadcasts the list to its group; raise on failure.
        A rehearsed rank (parallel/rehearsal.py) receives nothing from other ranks: ``peer(e)`` stands in
        for engine ``e``'s answer (the stand-in vLLM's, as for rank 0's rollout without a pool)."""
        parts = [local]
        g = self.groups
        if rehearsal.is_active():
            if isinstance(local, _Failure):
                raise RolloutPoolError(str(local))
            mine = g.index if g.is_leader else -1
            return [local if e == mine else peer(e) for e in range(g.num_engines)] if peer else parts
        if g.leaders_group is not None and g.num_engines > 1:
            parts = [None] * g.num_engines
            dist.all_gather_object(parts, local, group=g.leaders_group)
        if g.group is not None and len(g.ranks) > 1:
            holder = [parts if g.is_leader else None]
            dist.broadcast_object_list(holder, src=g.leader, group=g.group)
            parts = holder[0]
        failures = [p for p in parts if isinstance(p, _Failure)]
        if failures:
            raise RolloutPoolError("; ".join(str(f) for f in failures))
        return parts

    def sleep(self) -> None:
        if self.engine is not None:
            self.engine.sleep()

    def wake(self) -> None:
        if self.engine is not None:
            self.engine.wake()

    @property
    def busy(self) -> bool:
        """A generation was submitted and not collected yet."""
        return self._request is not None

    def close(self) -> None:
        if self.engine is not None and hasattr(self.engine, "close"):
            self.engine.close()


class _Failure:
    """A picklable failure report of one engine."""

    def __init__(self, engine: int, doing: str, err: BaseException):
        self.text = f"rollout engine {engine} failed during {doing}: {type(err).__name__}: {err}"

    def __str__(self) -> str:
        return self.text


def _failure(engine: int, doing: str, err: BaseException) -> _Failure:
    return _Failure(engine, doing, err)


__all__ = ["EnginePool", "RolloutPoolError"]
