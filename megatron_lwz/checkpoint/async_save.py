"""Asynchronous checkpoint saves on megatron-core's ``AsyncCallsQueue``.

``dist_checkpointing.save(..., async_sharded_save=True)`` plans the save, stages the tensors (a copy
on the host: the training loop goes on changing the live ones) and returns an ``AsyncRequest``;
:meth:`AsyncSaver.schedule` hands it to megatron's ``TemporalAsyncCaller``, which forks a writer
process. The request's finalize functions — megatron's metadata write, then ours (sidecar files,
rename into place, the ``latest`` marker, pruning; see ``state.save_checkpoint``) — run on every
rank only after the writers of *all* ranks have finished (:meth:`poll` all-reduces that), so the
marker never names a checkpoint whose files are still being written. Call :meth:`poll` at every
step boundary (collective), :meth:`finalize` before the next save and before exit.
"""

from __future__ import annotations

import time
from typing import Callable


class AsyncSaver:
    """One job's queue of in-flight checkpoint saves (at most one at a time)."""

    def __init__(self, on_done: Callable[[float], None] | None = None):
        """``on_done(seconds)``: called when a save is finalized, with its time from scheduling."""
        from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

        self._queue = AsyncCallsQueue(persistent=False)
        self._on_done = on_done
        self._started: dict[int, float] = {}

    @property
    def pending(self) -> int:
        return self._queue.get_num_unfinalized_calls()

    def schedule(self, request) -> None:
        """Collective: start writing ``request`` (an ``AsyncRequest`` with its finalize functions)."""
        self.finalize()
        self._started[self._queue.schedule_async_request(request)] = time.time()

    def _done(self, finished: list[int]) -> None:
        for idx in finished:
            started = self._started.pop(idx, None)
            if started is not None and self._on_done is not None:
                self._on_done(time.time() - started)

    def poll(self) -> None:
        """Collective, cheap: finalize the saves that every rank has finished writing."""
        if self.pending:
            self._done(self._queue.maybe_finalize_async_calls(blocking=False))

    def finalize(self) -> None:
        """Collective: wait for the pending save on all ranks and publish it."""
        if self.pending:
            self._done(self._queue.maybe_finalize_async_calls(blocking=True))

    def close(self) -> None:
        self.finalize()
        self._queue.close()
