"""Comparisons for the layout-equivalence tests that cannot pass vacuously.

``zip`` stops at the shorter list, so a layout that ran fewer steps (or did not run at all) used to
compare nothing. These helpers first assert that every expected layout ran and that the lengths
match, then compare values.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence


def assert_layouts(out: Mapping, expected: Iterable[str]) -> None:
    """Every expected layout produced a result, and nothing else did."""
    expected = list(expected)
    assert sorted(out) == sorted(expected), f"layouts that ran: {sorted(out)}, expected: {sorted(expected)}"


def assert_close_seq(got: Sequence[float], want: Sequence[float], *, rel: float, abs_tol: float = 0.0,
                     what: str) -> None:
    """Same length, then each element within ``rel`` relative (or ``abs_tol`` absolute) tolerance."""
    assert len(got) == len(want), f"{what}: {len(got)} values vs {len(want)} expected"
    assert len(want) > 0, f"{what}: nothing to compare"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol), f"{what}[{i}]: {a!r} vs {b!r} (rel {rel}, abs {abs_tol})"


def max_abs_diff(got: Sequence[float], want: Sequence[float], what: str) -> float:
    """Largest elementwise difference of two equally long, non-empty sequences."""
    assert len(got) == len(want) and len(want) > 0, f"{what}: {len(got)} values vs {len(want)} expected"
    return max(abs(x - y) for x, y in zip(got, want, strict=True))
