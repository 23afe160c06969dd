"""Writing-RM micro-batches: row layout (chosen rows, then rejected), padding for pipeline parallelism
(one shape, dummy pairs) and for sequence parallelism (widths a multiple of TP)."""

from __future__ import annotations

import pytest

from megatron_lwz.models.presets import round_up
from megatron_lwz.rewards.rm_data import PairSet, pad_batch, pair_microbatches

PAD = 0


def test_round_up():
    assert [round_up(n, 4) for n in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12] and round_up(7, 1) == 7


@pytest.mark.parametrize("multiple, width", [(1, 5), (2, 6), (8, 8)])
def test_pad_batch_rounds_the_width_up(multiple, width):
    batch = pad_batch([[5, 6, 7, 8, 9], [5, 6]], PAD, multiple=multiple)
    assert batch["tokens"].shape == (2, width) and batch["lengths"].tolist() == [5, 2]
    assert batch["tokens"][1].tolist() == [5, 6] + [PAD] * (width - 2)
    assert batch["position_ids"][0].tolist() == list(range(width))
    assert pad_batch([[1, 2, 3]], PAD, length=4, multiple=8)["tokens"].shape == (1, 4)  # an explicit length wins


def test_pair_microbatches_layout_and_padding():
    pairs = PairSet(chosen=[[1, 2, 3], [1, 2], [1]], rejected=[[4, 5], [4, 5, 6, 7, 8], [4]])
    mbs = pair_microbatches(pairs, [0, 1, 2], 2, PAD, None, multiple=4)
    assert [int(mb["num_pairs"]) for mb in mbs] == [2, 1] and [int(mb["side"]) for mb in mbs] == [2, 1]
    assert mbs[0]["tokens"].tolist() == [[1, 2, 3, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0],
                                         [4, 5, 0, 0, 0, 0, 0, 0], [4, 5, 6, 7, 8, 0, 0, 0]]
    assert mbs[1]["tokens"].tolist() == [[1, 0, 0, 0], [4, 0, 0, 0]]
    fixed = pair_microbatches(pairs, [0, 1, 2], 2, PAD, 8)  # PP: one shape; dummy one-token pair fills row 2
    assert [tuple(mb["tokens"].shape) for mb in fixed] == [(4, 8), (4, 8)]
    assert int(fixed[1]["num_pairs"]) == 1 and int(fixed[1]["side"]) == 2
    assert fixed[1]["lengths"].tolist() == [1, 1, 1, 1]


def test_pipelined_step_pads_to_the_longest_of_its_pairs_not_max_length():
    """PP: one shape per step = the longest sequence among the step's pairs (rounded to the SP
    multiple); a longer pair outside the step does not widen it (the old code padded to max_length)."""
    from megatron_lwz.rewards.rm_data import eval_microbatches, longest, step_microbatches

    pairs = PairSet(chosen=[[1] * 3, [1] * 6, [1] * 2, [1] * 40], rejected=[[2] * 5, [2] * 2, [2] * 9, [2] * 4])
    mbs, seq_len = step_microbatches(pairs, [0, 1, 2], 2, PAD, pipelined=True)
    assert seq_len == 9 == longest(pairs, [0, 1, 2])
    assert {tuple(mb["tokens"].shape) for mb in mbs} == {(4, 9)}
    mbs, seq_len = step_microbatches(pairs, [0, 1], 2, PAD, pipelined=True, multiple=4)
    assert seq_len == 8 and {tuple(mb["tokens"].shape) for mb in mbs} == {(4, 8)}
    mbs, seq_len = step_microbatches(pairs, [0, 1, 2], 2, PAD, pipelined=False)
    assert seq_len == 0 and [tuple(mb["tokens"].shape) for mb in mbs] == [(4, 6), (2, 9)]
    mbs, seq_len = eval_microbatches(pairs, 2, PAD, dp_rank=1, dp_size=2, pipelined=True)
    assert seq_len == 40 and {tuple(mb["tokens"].shape) for mb in mbs} == {(4, 40)}  # rank 1 holds pairs 2, 3
