"""The equivalence-test comparisons fail on missing layouts, short lists and relative errors."""

from __future__ import annotations

import pytest

from tests.distributed.compare import assert_close_seq, assert_layouts, max_abs_diff


def test_missing_layout_fails():
    with pytest.raises(AssertionError, match="layouts that ran"):
        assert_layouts({"tp2": 1}, ["tp2", "pp2"])
    assert_layouts({"tp2": 1, "pp2": 2}, ["pp2", "tp2"])


def test_short_list_fails_where_zip_passed():
    got, want = [1.0], [1.0, 2.0]
    assert all(a == b for a, b in zip(got, want))  # what the old tests did: vacuously true
    with pytest.raises(AssertionError, match="1 values vs 2"):
        assert_close_seq(got, want, rel=1e-5, what="losses")
    with pytest.raises(AssertionError):
        max_abs_diff(got, want, "params")
    with pytest.raises(AssertionError, match="nothing to compare"):
        assert_close_seq([], [], rel=1e-5, what="losses")


def test_relative_tolerance_on_small_values():
    # 1e-5 × max(1, |v|) (the old GRPO check) accepts a 100 % error on a metric of size 1e-6.
    assert abs(2e-6 - 1e-6) <= 1e-5 * max(1.0, 1e-6)
    with pytest.raises(AssertionError):
        assert_close_seq([2e-6], [1e-6], rel=1e-5, what="kl")
    assert_close_seq([1.000001e-6], [1e-6], rel=1e-5, what="kl")
