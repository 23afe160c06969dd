"""Blending: source proportions, sample fields, deterministic resume from consumed_samples, DP slicing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from megatron_lwz.config.base import ConfigError, from_dict
from megatron_lwz.data.blend import (
    DataConfig, GlobalBatchIterator, PretrainingBatchSampler, SourceConfig, build_datasets, dp_sample_indices,
)
from megatron_lwz.data.tokenizer import TokenizerConfig

# Synthetic source k only uses token ids in RANGES[k] (plus EOD), so a sample's source is readable from its tokens.
RANGES = [(20, 300), (320, 600), (620, 900)]
WEIGHTS = [6.0, 3.0, 1.0]
TOLERANCE_PP = 3.0  # acceptance: each source's share of the first 1000 samples within ±3 percentage points


@pytest.fixture(scope="module")
def synthetic_sources(tmp_path_factory, sp_tokenizer):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    prefixes = []
    for k, (lo, hi) in enumerate(RANGES):
        prefix = str(root / f"src{k}")
        builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
        for _ in range(150):
            doc = np.append(rng.integers(lo, hi, size=rng.integers(20, 200)), sp_tokenizer.eod)
            builder.add_document(doc, [doc.size])
        builder.finalize(prefix + ".idx")
        prefixes.append(prefix)
    return prefixes


def _cfg(prefixes, tok_dir, cache, weights=WEIGHTS, seed=7, split="98,2,0", **kw) -> DataConfig:
    sources = [SourceConfig(name=f"s{k}", prefix=p, weight=w) for k, (p, w) in enumerate(zip(prefixes, weights))]
    return DataConfig(sources=sources, tokenizer=TokenizerConfig(path=str(tok_dir)), seq_length=32,
                      split=split, seed=seed, cache_dir=str(cache), **kw)


def _source_of(tokens: torch.Tensor, eod: int) -> int:
    body = tokens[tokens != eod]
    found = {k for k, (lo, hi) in enumerate(RANGES) if ((body >= lo) & (body < hi)).any()}
    assert len(found) == 1, found  # a sample never mixes sources
    return found.pop()


def test_blend_proportions_match_weights(tmp_path, synthetic_sources, sp_tokenizer_dir, sp_tokenizer):
    built = build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path), 1000, 20)
    assert len(built.train) >= 1000 and built.valid is not None and built.test is None
    assert built.source_names == ["s0", "s1", "s2"]
    counts = np.zeros(3)
    for i in range(1000):
        sample = built.train[i]
        k = _source_of(sample["tokens"], sp_tokenizer.eod)
        assert int(sample["dataset_id"]) == k
        counts[k] += 1
    share_pp = 100 * counts / counts.sum()
    target_pp = 100 * np.array(WEIGHTS) / sum(WEIGHTS)
    assert np.all(np.abs(share_pp - target_pp) <= TOLERANCE_PP), (share_pp, target_pp)


def test_sample_fields_and_eod_options(tmp_path, synthetic_sources, sp_tokenizer_dir, sp_tokenizer):
    eod = sp_tokenizer.eod
    plain = build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path), 64, 4).train[0]
    assert plain["tokens"].shape == plain["labels"].shape == (32,)
    assert torch.equal(plain["labels"][:-1], plain["tokens"][1:])
    assert torch.equal(plain["position_ids"], torch.arange(32)) and bool((plain["loss_mask"] == 1).all())
    assert "attention_mask" not in plain
    reset = build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path, reset_position_ids=True,
                                eod_mask_loss=True), 64, 4).train
    checked = 0
    for i in range(64):
        s = reset[i]
        toks = s["tokens"].tolist()
        if eod not in toks[:-1]:
            continue
        pos, expect = 0, []
        for t in toks:  # hand-computed: positions restart after each EOD
            expect.append(pos)
            pos = 0 if t == eod else pos + 1
        assert s["position_ids"].tolist() == expect
        assert s["loss_mask"].tolist() == [0.0 if t == eod else 1.0 for t in toks]
        checked += 1
    assert checked > 5


def test_resume_from_consumed_samples(tmp_path, synthetic_sources, sp_tokenizer_dir):
    cfg = _cfg(synthetic_sources, sp_tokenizer_dir, tmp_path / "cache")
    first = GlobalBatchIterator(build_datasets(cfg, 96, 8).train, global_batch_size=8, micro_batch_size=2)
    full = [next(first) for _ in range(6)]
    assert first.consumed_samples == 48 and len(full[0]) == 4 and full[0][0]["tokens"].shape == (2, 32)
    resumed_ds = build_datasets(cfg, 96, 8).train  # fresh build: loads the cached indices
    resumed = GlobalBatchIterator(resumed_ds, global_batch_size=8, micro_batch_size=2, consumed_samples=24)
    for want in full[3:]:
        got = next(resumed)
        for a, b in zip(want, got):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.consumed_samples == 48
    other_seed = build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path / "cache2", seed=8), 96, 8).train
    assert not torch.equal(other_seed[0]["tokens"], full[0][0]["tokens"][0])


def test_dp_slicing_partitions_global_batch(tmp_path, synthetic_sources, sp_tokenizer_dir):
    assert dp_sample_indices(16, 8, 0, 2) == range(16, 20)
    assert dp_sample_indices(16, 8, 1, 2) == range(20, 24)
    with pytest.raises(ValueError, match="divisible"):
        dp_sample_indices(0, 6, 0, 4)
    ds = build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path), 64, 4).train
    whole = GlobalBatchIterator(ds, global_batch_size=8, micro_batch_size=4, consumed_samples=8)
    ranks = [GlobalBatchIterator(ds, global_batch_size=8, micro_batch_size=2, consumed_samples=8, dp_rank=r, dp_size=2)
             for r in range(2)]
    for _ in range(2):
        ref = torch.cat([m["tokens"] for m in next(whole)])
        mine = torch.cat([m["tokens"] for r in ranks for m in next(r)])
        assert torch.equal(ref, mine)
    sampler = PretrainingBatchSampler(total_samples=30, consumed_samples=8, global_batch_size=8, micro_batch_size=2,
                                      dp_rank=1, dp_size=2)
    assert list(sampler) == [[12, 13], [14, 15], [20, 21], [22, 23]] and len(sampler) == 4


def test_demo_corpus_blend(tmp_path, demo_dir, sp_tokenizer_dir, hf_tokenizer_dir):
    from megatron_lwz.data.preprocess import PreprocessConfig, preprocess

    sources = []
    for name, weight in (("books", 0.4), ("papers", 0.4), ("cot", 0.2)):
        prefix = str(tmp_path / name)
        preprocess(PreprocessConfig(inputs=[str(demo_dir / f"{name}.jsonl")], output_prefix=prefix,
                                    tokenizer=TokenizerConfig(path=str(sp_tokenizer_dir)), progress=False))
        sources.append({"name": name, "prefix": prefix, "weight": weight})
    cfg = from_dict(DataConfig, {"sources": sources, "tokenizer": {"path": str(sp_tokenizer_dir)},
                                 "seq_length": 64, "cache_dir": str(tmp_path / "cache")})
    built = build_datasets(cfg, 200, 10, is_rank0_builder=True, num_samples_test=10)
    ids = [int(built.train[i]["dataset_id"]) for i in range(200)]
    assert np.bincount(ids, minlength=3).tolist() == pytest.approx([80, 80, 40], abs=6)
    assert built.test is not None and built.tokenizer.vocab_size == 1000
    wrong = from_dict(DataConfig, {"sources": sources, "tokenizer": {"path": str(hf_tokenizer_dir)}})
    with pytest.raises(ConfigError, match=r"sources\[0\]\.prefix: .*books \(source 'books'\) was tokenized with"):
        build_datasets(wrong, 200, 10)


def test_config_errors(tmp_path, synthetic_sources, sp_tokenizer_dir):
    with pytest.raises(ConfigError, match="unique"):
        DataConfig(sources=[SourceConfig(name="a", prefix="x"), SourceConfig(name="a", prefix="y")],
                   tokenizer=TokenizerConfig(path="t"))
    with pytest.raises(ConfigError, match=r"sources\[1\]\.weight"):
        _cfg(synthetic_sources[:2], sp_tokenizer_dir, tmp_path, weights=[1.0, 0.0])
    with pytest.raises(ConfigError, match="data.split"):
        _cfg(synthetic_sources, sp_tokenizer_dir, tmp_path, split="0,1,1")
    with pytest.raises(ConfigError, match=r"source 's0' has 150 documents, so data.split '99.9,0.1' leaves its valid"):
        build_datasets(_cfg(synthetic_sources, sp_tokenizer_dir, tmp_path, split="99.9,0.1"), 10, 1)
    cfg = _cfg([synthetic_sources[0], str(tmp_path / "nope")], sp_tokenizer_dir, tmp_path, weights=[1.0, 1.0])
    with pytest.raises(ConfigError, match=r"sources\[1\]\.prefix: .*nope\.bin/\.idx not found \(source 's1'\)"):
        build_datasets(cfg, 10, 1)
