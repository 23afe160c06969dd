"""The gather-free DistOpt writer cuts a rank's flat slice of a parameter into rectangular boxes
(issue 12 item 1). Checked against brute force: the boxes cover exactly the slice's elements, in
memory order, and there are at most 2·ndim − 1 of them."""

from __future__ import annotations

import itertools
import random

import numpy as np

from megatron_lwz.checkpoint.distopt_io import flat_range_boxes


def _covered(boxes, shape):
    flat = []
    for offset, size in boxes:
        idx = np.ravel_multi_index(np.meshgrid(*[np.arange(o, o + s) for o, s in zip(offset, size)], indexing="ij"),
                                   shape)
        flat.extend(idx.ravel().tolist())
    return flat


def test_boxes_cover_the_flat_range_in_order():
    rng = random.Random(0)
    shapes = [(7,), (4, 5), (3, 4, 5), (2, 3, 2, 4), (1, 9), (6, 1)]
    for shape in shapes:
        n = int(np.prod(shape))
        ranges = list(itertools.combinations(range(n + 1), 2)) if n <= 24 else \
            [tuple(sorted(rng.sample(range(n + 1), 2))) for _ in range(300)]
        for start, end in ranges:
            boxes = flat_range_boxes(start, end, shape)
            assert _covered(boxes, shape) == list(range(start, end)), (shape, start, end, boxes)
            assert len(boxes) <= 2 * len(shape) - 1
            assert all(all(s > 0 for s in size) for _, size in boxes)


def test_whole_rows_are_one_box():
    assert flat_range_boxes(10, 30, (5, 10)) == [((1, 0), (2, 10))]
    assert flat_range_boxes(3, 27, (5, 10)) == [((0, 3), (1, 7)), ((1, 0), (1, 10)), ((2, 0), (1, 7))]
    assert flat_range_boxes(4, 4, (5, 10)) == []
