"""Fixtures for the rollout tests (helpers live in rollout_testlib.py)."""

from __future__ import annotations

import pytest
import torch
from rollout_testlib import ByteTokenizer, tiny_model


@pytest.fixture(scope="module")
def tokenizer():
    return ByteTokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """Tiny models: intra-op threads only add contention on the shared 2-core CI machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
