"""An HF rollout engine in its own process (CPU): generation overlaps training for real.

The trainer process keeps a :class:`ProcessEngine` handle; the child (``spawn``) builds the
transformers model (:func:`~megatron_lwz.rollout.hf_engine.build_hf_model`) and an
:class:`~megatron_lwz.rollout.hf_engine.HFRolloutEngine`, then serves requests from a pipe, one at a
time: ``generate``, ``weights`` (load ``(hf_name, tensor)`` pairs), ``state`` (the engine's weights,
for verification), ``close``. :meth:`ProcessEngine.submit` returns at once, so one-step-off
generation runs while the trainer computes; :meth:`ProcessEngine.result` collects it.

Fail fast: every wait polls the pipe with a short timeout and checks that the child is alive; a
dead child raises :class:`EngineDied` naming its pid and exit code (and what it was doing), an error
raised inside the child comes back as :class:`EngineError` with the child's traceback.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from typing import Any, Callable, Iterable, Sequence

import torch

from megatron_lwz.rollout.types import PromptRecord, RolloutGroup, SamplingParams


class EngineDied(RuntimeError):
    """The rollout engine process exited (killed, crashed, out of memory)."""


class EngineError(RuntimeError):
    """The rollout engine process raised while serving a request (its traceback is in the message)."""


def _serve(conn, hf_config: Any, tokenizer_factory: Callable[[], Any], engine_kwargs: dict, threads: int,
           init_seed: int) -> None:
    """Child main loop (module docstring)."""
    from megatron_lwz.rollout.hf_engine import HFRolloutEngine, build_hf_model

    torch.set_num_threads(threads)
    engine = HFRolloutEngine(build_hf_model(hf_config, dtype="float32", init_seed=init_seed), tokenizer_factory(),
                             **engine_kwargs)
    conn.send(("ready", None))
    while True:
        try:
            kind, payload = conn.recv()
        except EOFError:
            return
        try:
            if kind == "close":
                conn.send(("ok", None))
                return
            if kind == "generate":
                out: Any = engine.generate(*payload)
            elif kind == "weights":
                report = engine.update_weights(payload)
                out = {"num_tensors": report.num_tensors, "num_bytes": report.num_bytes}
            elif kind == "state":
                out = {n: p.detach().clone() for n, p in engine.model.named_parameters()}
            else:
                raise ValueError(f"unknown request {kind!r}")
            conn.send(("ok", out))
        except Exception:  # noqa: BLE001 - the trainer re-raises it with the child's traceback
            conn.send(("error", traceback.format_exc()))


class ProcessEngine:
    """RolloutEngine whose HF model lives in a child process (module docstring)."""

    def __init__(self, hf_config: Any, tokenizer_factory: Callable[[], Any], *, threads: int = 1,
                 init_seed: int = 0, poll_s: float = 0.2, start_timeout_s: float = 600.0, **engine_kwargs: Any):
        """``tokenizer_factory``: a picklable callable returning the tokenizer (built in the child);
        ``engine_kwargs``: HFRolloutEngine options (``logprobs_mode``, ``max_batch_size``)."""
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, hf_config, tokenizer_factory, engine_kwargs, threads,
                                                        init_seed), daemon=True, name="lwz-rollout-engine")
        self.process.start()
        child.close()
        self._poll_s = poll_s
        self._pending: str | None = None
        self._wait("start", timeout_s=start_timeout_s)

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, kind: str, payload: Any) -> None:
        if self._pending is not None:
            raise RuntimeError(f"rollout engine is still busy with {self._pending!r}; collect it first")
        self._check_alive(kind)
        self._conn.send((kind, payload))
        self._pending = kind

    def _check_alive(self, doing: str) -> None:
        if not self.process.is_alive():
            raise EngineDied(f"rollout engine process {self.process.pid} exited with code {self.process.exitcode} "
                             f"(while: {doing}); the job cannot continue without it")

    def _wait(self, doing: str, timeout_s: float | None = None) -> Any:
        start = time.monotonic()
        while not self._conn.poll(self._poll_s):
            self._check_alive(doing)
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise EngineDied(f"rollout engine process {self.process.pid}: no answer to {doing!r} in {timeout_s:.0f} s")
        try:
            status, value = self._conn.recv()
        except (EOFError, ConnectionError) as err:
            raise EngineDied(f"rollout engine process {self.process.pid} closed its pipe (while: {doing}): {err}") from None
        finally:
            self._pending = None
        if status == "error":
            raise EngineError(f"rollout engine process {self.process.pid} failed (while: {doing}):\n{value}")
        return value

    # -- RolloutEngine protocol + async generation -------------------------------------------

    def submit(self, prompts: Sequence[PromptRecord], prompt_texts: Sequence[str],
               params: SamplingParams | Sequence[SamplingParams]) -> None:
        """Start generating; returns at once (collect with :meth:`result`)."""
        self._request("generate", (list(prompts), list(prompt_texts), params))

    @property
    def busy(self) -> bool:
        return self._pending is not None

    def result(self) -> list[RolloutGroup]:
        """The groups of the submitted generation (waits; raises EngineDied / EngineError)."""
        if self._pending != "generate":
            raise RuntimeError("rollout engine: result() without a submitted generation")
        return self._wait("generate")

    def generate(self, prompts: Sequence[PromptRecord], prompt_texts: Sequence[str],
                 params: SamplingParams | Sequence[SamplingParams]) -> list[RolloutGroup]:
        self.submit(prompts, prompt_texts, params)
        return self.result()

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> dict[str, int]:
        """Send ``(hf_name, full tensor)`` pairs to the child (copied, so export buffers may be reused)."""
        self._request("weights", [(n, t.detach().clone()) for n, t in named_tensors])
        return self._wait("weights")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The engine's current weights (verification)."""
        self._request("state", None)
        return self._wait("state")

    def sleep(self) -> None:
        """No-op (CPU)."""

    def wake(self) -> None:
        """No-op (CPU)."""

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        if self.process.is_alive() and self._pending is None:
            try:
                self._conn.send(("close", None))
                self._conn.poll(5.0)
            except (BrokenPipeError, ConnectionError, EOFError):
                pass
        self.process.join(timeout=5.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)


__all__ = ["EngineDied", "EngineError", "ProcessEngine"]
