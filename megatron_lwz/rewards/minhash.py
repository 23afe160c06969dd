"""MinHash signatures + LSH banding for near-duplicate detection (numpy, deterministic, linear time).

Used twice: paragraphs of one answer (Format RM repetition check) and prompts of a whole dump
(``lwz data filter-prompts``). Both need "does this item have a near-duplicate among the items seen
before?" in linear time, which banded LSH gives: an item is compared only with items sharing at least
one band bucket, and buckets are capped so adversarial inputs cannot make it quadratic.

* Shingle hashes are 64-bit and stable across processes (crc32 of tokens / a polynomial over Unicode
  code points), never Python's salted ``hash()``, so rewards and filtered datasets are reproducible.
* Permutations: multiply-shift hashing ``h_i(x) = (a_i · x + b_i) mod 2^64 >> 32`` with odd ``a_i``
  from a seeded generator; the signature is the per-permutation minimum (Broder 1997).
* Banding: ``bands × rows = num_perm``; two items with Jaccard ``s`` become candidates with probability
  ``1 − (1 − s^rows)^bands`` (e.g. 16 × 2: 0.99 at s = 0.5, 0.04 at s = 0.05). Candidates are then
  verified exactly (``exact_jaccard``) or by signature agreement (``estimated_jaccard``).
"""

from __future__ import annotations

import zlib
from typing import Iterable

import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for polynomial shingle hashing
_EMPTY_SLOT = np.uint32(0xFFFFFFFF)


def token_hashes(tokens: list[str], vocabulary: Iterable[str] | None = None) -> np.ndarray:
    """Stable 64-bit hash per token (crc32 of UTF-8, computed once per distinct token).  # (n,) uint64

    ``vocabulary`` (the distinct tokens, if the caller already has them) saves a set() pass.
    """
    table = {tok: zlib.crc32(tok.encode("utf-8")) for tok in (set(tokens) if vocabulary is None else vocabulary)}
    return np.fromiter(map(table.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def shingle_hashes(hashes: np.ndarray, k: int) -> np.ndarray:
    """Hashes of the contiguous k-grams of a hashed sequence (polynomial, wrapping uint64).  # (n-k+1,)"""
    n = hashes.shape[0]
    if n < k:
        return hashes[:0].copy() if n == 0 else _combine(hashes, n)[:1]
    return _combine(hashes, k)


def _combine(hashes: np.ndarray, k: int) -> np.ndarray:
    n = hashes.shape[0]
    out = hashes[: n - k + 1].copy()
    for j in range(1, k):  # k is tiny (3–5): k vectorised passes
        out = out * _MIX + hashes[j: n - k + 1 + j]
    return out


def char_shingle_hashes(text: str, k: int) -> np.ndarray:
    """Stable hashes of the character k-grams of ``text`` (Unicode code points).  # (len-k+1,) uint64"""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return shingle_hashes(points, k)


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sets given as sorted unique uint64 arrays."""
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """Fraction of agreeing MinHash slots: an unbiased estimate of the Jaccard similarity."""
    return float(np.count_nonzero(sig_a == sig_b)) / sig_a.shape[0]


class MinHasher:
    """Computes MinHash signatures of shingle-hash sets with ``num_perm`` seeded permutations."""

    def __init__(self, num_perm: int = 32, seed: int = 1) -> None:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        rng = np.random.default_rng(seed)
        self.num_perm = num_perm
        self.a = (rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """MinHash signature of a set of shingle hashes.  # (num_perm,) uint32"""
        if shingles.size == 0:
            return np.full(self.num_perm, _EMPTY_SLOT, dtype=np.uint32)
        mixed = shingles[None, :] * self.a[:, None] + self.b[:, None]  # (P, m), wraps mod 2^64
        return (mixed >> np.uint64(32)).min(axis=1).astype(np.uint32)


class LSHIndex:
    """Banded LSH over MinHash signatures with a per-bucket cap (bounded work per query)."""

    def __init__(self, num_perm: int, bands: int, bucket_cap: int = 16) -> None:
        if bands < 1 or num_perm % bands:
            raise ValueError(f"bands ({bands}) must divide num_perm ({num_perm})")
        self.bands = bands
        self.rows = num_perm // bands
        self.bucket_cap = bucket_cap
        self.buckets: list[dict[bytes, list[int]]] = [{} for _ in range(bands)]

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        raw = signature.tobytes()
        width = self.rows * signature.itemsize
        return [raw[i * width:(i + 1) * width] for i in range(self.bands)]

    def candidates(self, signature: np.ndarray) -> list[int]:
        """Ids of inserted items sharing at least one band with ``signature`` (insertion order, unique)."""
        seen: dict[int, None] = {}
        for band, key in zip(self.buckets, self._keys(signature)):
            for item in band.get(key, ()):
                seen.setdefault(item, None)
        return list(seen)

    def insert(self, item: int, signature: np.ndarray) -> None:
        """Add ``item``; a full bucket keeps its first ``bucket_cap`` members (the earliest items)."""
        for band, key in zip(self.buckets, self._keys(signature)):
            members = band.setdefault(key, [])
            if len(members) < self.bucket_cap:
                members.append(item)
