"""Endless, resumable, per-epoch-shuffled index streams (RM pairs, RL prompts)."""

from __future__ import annotations

import random


def shuffled_stream(num_items: int, seed: int, consumed: int, count: int) -> list[int]:
    """Indices ``consumed .. consumed+count`` of the stream ``perm(seed+0) ++ perm(seed+1) ++ …``.

    The only state is ``consumed``: a run resumed from a checkpoint sees exactly the items an
    uninterrupted run would have seen next.
    """
    if num_items < 1:
        raise ValueError("cannot stream from an empty dataset")
    out: list[int] = []
    pos = consumed
    while len(out) < count:
        epoch, offset = divmod(pos, num_items)
        order = list(range(num_items))
        random.Random(seed + epoch).shuffle(order)
        take = min(count - len(out), num_items - offset)
        out += order[offset:offset + take]
        pos += take
    return out


def record_skip(skipped: dict[str, int], examples: list[str], where: str, err: Exception, keep: int = 5) -> None:
    """Count a malformed record by error kind and keep the first ``keep`` located messages."""
    kind = type(err).__name__
    skipped[kind] = skipped.get(kind, 0) + 1
    if len(examples) < keep:
        examples.append(f"{where}: {kind}: {err}")
