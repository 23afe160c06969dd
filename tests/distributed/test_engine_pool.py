"""Engine pool (issue 13 acceptance): 4 ranks as 2 nodes with one HF engine process each produce
exactly one engine's samples (per-sample seeds); after every sync both engines' weights equal the
trainer's; killing one engine fails every rank fast with a clear error instead of hanging."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.launch import torchrun

pytestmark = pytest.mark.distributed
WORKER = Path(__file__).with_name("worker_engine_pool.py")


def test_engine_pool_two_nodes(tmp_path):
    ranks = torchrun(WORKER, 4, [], tmp_path / "pool.json", timeout=420)
    assert [r["engine"] for r in ranks] == [0, 0, 1, 1]
    for r in ranks:
        assert r["samples_equal"] == [True, True], f"rank {r['rank']}: pool samples differ from one engine's"
        assert r["error"] is not None and "rollout engine 1 failed during generate" in r["error"], r["error"]
        assert "EngineDied" in r["error"] and r["fail_s"] < 30, (r["error"], r["fail_s"])
    leaders = [r for r in ranks if r["rank"] in (0, 2)]
    assert all(r["weights_equal"] == [True, True] for r in leaders)
    plan = ranks[0]["plan"]
    assert all(plan) and any(first > 0 for e in plan for _, first, _ in e), "the long group must be split"
