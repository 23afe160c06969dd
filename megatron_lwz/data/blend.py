"""Data recipe → megatron-core blended GPT datasets, and a resumable data-parallel batch sampler.

Datasets: ``build_datasets`` turns a ``DataConfig`` (named ``.bin/.idx`` sources with weights, a
train/valid/test split string, sequence length and seed) into megatron-core's
``BlendedMegatronDatasetBuilder(GPTDataset, sizes, is_built_on_rank, GPTDatasetConfig)``. Every
source is split by *document* ("98,1,1"), each split is packed into ``seq_length + 1``-token samples
that cross document boundaries (documents end with EOD, see ``preprocess``), shuffled with
``seed``, and the sources are interleaved by megatron-core's ``BlendedDataset``, whose
``build_blending_indices`` greedily picks, at each position, the source furthest below its target
share, so any prefix of the blend matches the weights to within about one sample per source. Index
files are cached in ``cache_dir`` (keyed by an MD5 of sources, sizes, split, seed, sequence length and
the tokenizer's ``unique_identifiers``); under ``torch.distributed`` megatron-core builds them on
global rank 0 first and the other ranks load them after a barrier.

Batches: a global batch is ``global_batch_size`` consecutive blend indices starting at
``consumed_samples``; DP rank r of d takes the contiguous slice ``[r·G/d, (r+1)·G/d)`` of it
(``dp_sample_indices``) and splits it into micro-batches. The only progress state is
``consumed_samples`` (stored in the training checkpoint): resuming from it yields exactly the batches
an uninterrupted run would have seen next.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from megatron_lwz.config.base import ConfigError
from megatron_lwz.data.preprocess import read_summary
from megatron_lwz.data.tokenizer import Tokenizer, TokenizerConfig


@dataclass(kw_only=True)
class SourceConfig:
    """One named, weighted data source (a preprocessed prefix)."""

    name: str
    """Short name used in logs and metrics (e.g. 'books')."""
    prefix: str
    """Path prefix of PREFIX.bin / PREFIX.idx written by ``lwz preprocess``."""
    weight: float = 1.0
    """Relative sampling weight (normalized over all sources)."""


@dataclass(kw_only=True)
class DataConfig:
    """A pretraining data recipe: weighted sources, packing, split and seed."""

    sources: list[SourceConfig]
    """The blend; weights are relative."""
    tokenizer: TokenizerConfig
    """The tokenizer the sources were preprocessed with (supplies EOD/pad and the cache key)."""
    seq_length: int = 2048
    """Tokens per packed training sample (the model's sequence length)."""
    split: str = "98,1,1"
    """Train/valid/test shares of every source's documents."""
    seed: int = 1234
    """Seed of the document/sample shuffles."""
    cache_dir: Optional[str] = None
    """Directory for megatron-core's index caches (default: next to each prefix)."""
    reset_position_ids: bool = False
    """Restart position ids after every EOD (per-document positions in packed samples)."""
    reset_attention_mask: bool = False
    """Block attention across EOD boundaries (needs create_attention_mask or a packed-sequence kernel)."""
    eod_mask_loss: bool = False
    """Zero the loss on positions whose input token is EOD."""
    create_attention_mask: bool = False
    """Materialize a (1, T, T) attention mask per sample (memory grows as T²; off for causal kernels)."""
    mid_level_dataset_surplus: float = 0.005
    """Extra share of samples built per source so the blend never runs short."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("data.sources: give at least one source")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.sources: names must be unique, got {names}")
        for i, src in enumerate(self.sources):
            if not src.weight > 0:
                raise ConfigError(f"data.sources[{i}].weight: must be > 0 (source {src.name!r}), got {src.weight}")
        shares = [float(x) for x in re.findall(r"[.0-9]+", self.split)]
        if not 1 <= len(shares) <= 3 or shares[0] <= 0 or any(x < 0 for x in shares):
            raise ConfigError(f"data.split: expected 'train,valid,test' shares with train > 0, got {self.split!r}")
        if self.seq_length < 1:
            raise ConfigError(f"data.seq_length: must be >= 1, got {self.seq_length}")

    @property
    def split_shares(self) -> list[float]:
        """The split string as three non-normalized shares."""
        shares = [float(x) for x in re.findall(r"[.0-9]+", self.split)]
        return shares + [0.0] * (3 - len(shares))


@dataclass
class BuiltDatasets:
    """The three top-level datasets (None where the split is empty or this rank builds nothing)."""

    train: Any
    valid: Any
    test: Any
    source_names: list[str] = field(default_factory=list)
    """Source names in dataset-id order (a BlendedDataset sample's 'dataset_id' indexes this)."""
    tokenizer: Optional[Tokenizer] = None


def _check_sources(cfg: DataConfig, tokenizer: Tokenizer) -> None:
    """Every prefix exists and, where its summary says, was tokenized with this very tokenizer."""
    for i, src in enumerate(cfg.sources):
        missing = [s for s in (".bin", ".idx") if not Path(src.prefix + s).is_file()]
        if missing:
            raise ConfigError(f"data.sources[{i}].prefix: {src.prefix}{'/'.join(missing)} not found "
                              f"(source {src.name!r}); run `lwz preprocess --output-prefix {src.prefix}` first")
        _check_split_sizes(cfg, i, src)
        summary = read_summary(src.prefix)
        used = (summary or {}).get("tokenizer", {}).get("sha256")
        if used and used != tokenizer.unique_identifiers["sha256"]:
            raise ConfigError(f"data.sources[{i}].prefix: {src.prefix} (source {src.name!r}) was tokenized with "
                              f"{summary['tokenizer'].get('path')!r}, not data.tokenizer {cfg.tokenizer.path!r} "
                              "(the tokenizer files differ); re-run preprocessing or fix data.tokenizer")


def _num_sequences(prefix: str) -> int:
    """Sequence (= document, for our preprocessing) count from the .idx header."""
    with open(prefix + ".idx", "rb") as f:
        header = f.read(34)  # magic (9) + version (8) + dtype code (1) + sequence count (8) + document count (8)
    return struct.unpack("<Q", header[18:26])[0]


def _check_split_sizes(cfg: DataConfig, i: int, src: SourceConfig) -> None:
    """Every non-empty split must get >= 1 document of every source (megatron-core loops forever otherwise)."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix, parse_and_normalize_split,
    )

    n = _num_sequences(src.prefix)
    matrix = convert_split_vector_to_split_matrix(parse_and_normalize_split(",".join(map(str, cfg.split_shares))))
    for name, bounds in zip(("train", "valid", "test"), matrix):
        if bounds is not None and int(round(bounds[1] * n)) - int(round(bounds[0] * n)) < 1:
            raise ConfigError(f"data.sources[{i}]: source {src.name!r} has {n} documents, so data.split "
                              f"{cfg.split!r} leaves its {name} split empty; add documents or give {name} a "
                              "larger share (or 0)")


def gpt_dataset_config(cfg: DataConfig, tokenizer: Tokenizer) -> Any:
    """megatron-core ``GPTDatasetConfig`` for ``cfg`` (every masking option set explicitly)."""
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    prefixes = [src.prefix for src in cfg.sources]
    weights = [float(src.weight) for src in cfg.sources] if len(prefixes) > 1 else None
    return GPTDatasetConfig(
        random_seed=cfg.seed,
        sequence_length=cfg.seq_length,
        blend=(prefixes, weights),
        split=",".join(str(x) for x in cfg.split_shares),
        path_to_cache=cfg.cache_dir,
        tokenizer=tokenizer,
        reset_position_ids=cfg.reset_position_ids,
        reset_attention_mask=cfg.reset_attention_mask,
        eod_mask_loss=cfg.eod_mask_loss,
        create_attention_mask=cfg.create_attention_mask,
        mid_level_dataset_surplus=cfg.mid_level_dataset_surplus,
    )


def build_datasets(cfg: DataConfig, num_samples_train: int, num_samples_valid: int,
                   is_rank0_builder: bool = True, *, num_samples_test: int = 0,
                   tokenizer: Optional[Tokenizer] = None) -> BuiltDatasets:
    """Build train/valid/test blended GPT datasets with at least the requested samples.

    ``is_rank0_builder`` is megatron-core's ``is_built_on_rank``: True on ranks that read data (global
    rank 0 must pass True; in Megatron-LM: TP rank 0 of the first and last pipeline stages). Call it on
    every rank when torch.distributed is initialized: megatron-core barriers inside.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset

    if num_samples_train < 1:
        raise ConfigError(f"num_samples_train: must be >= 1, got {num_samples_train}")
    tokenizer = tokenizer or Tokenizer(cfg.tokenizer)
    _check_sources(cfg, tokenizer)
    shares = cfg.split_shares
    # A split with a zero share is None in megatron; a non-empty split needs >= 1 sample requested.
    sizes = [num_samples_train,
             max(num_samples_valid, 1) if shares[1] > 0 else 0,
             max(num_samples_test, 1) if shares[2] > 0 else 0]
    builder = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: is_rank0_builder,
                                            gpt_dataset_config(cfg, tokenizer))
    train, valid, test = builder.build()
    return BuiltDatasets(train=train, valid=valid, test=test, source_names=[s.name for s in cfg.sources],
                         tokenizer=tokenizer)


def dp_sample_indices(consumed_samples: int, global_batch_size: int, dp_rank: int, dp_size: int) -> range:
    """This DP rank's dataset indices of the global batch that starts at ``consumed_samples``."""
    if global_batch_size % dp_size:
        raise ValueError(f"global_batch_size {global_batch_size} must be divisible by dp_size {dp_size}")
    if not 0 <= dp_rank < dp_size:
        raise ValueError(f"dp_rank {dp_rank} is outside [0, {dp_size})")
    per_rank = global_batch_size // dp_size
    start = consumed_samples + dp_rank * per_rank
    return range(start, start + per_rank)


class PretrainingBatchSampler:
    """Batch sampler yielding this rank's micro-batches (lists of dataset indices), global batch by global batch.

    Deterministic and stateless beyond ``consumed_samples``; drops a last incomplete global batch.
    """

    def __init__(self, *, total_samples: int, consumed_samples: int, global_batch_size: int,
                 micro_batch_size: int, dp_rank: int = 0, dp_size: int = 1) -> None:
        if global_batch_size % (micro_batch_size * dp_size):
            raise ValueError(f"global_batch_size {global_batch_size} must be divisible by micro_batch_size × dp_size "
                             f"= {micro_batch_size} × {dp_size}")
        if consumed_samples < 0 or consumed_samples > total_samples:
            raise ValueError(f"consumed_samples {consumed_samples} is outside [0, {total_samples}] "
                             "(the checkpoint was trained on more samples than this dataset holds?)")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.dp_rank = dp_rank
        self.dp_size = dp_size

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per global batch on each rank."""
        return self.global_batch_size // (self.micro_batch_size * self.dp_size)

    def __len__(self) -> int:
        return (self.total_samples - self.consumed_samples) // self.global_batch_size * self.num_microbatches

    def __iter__(self) -> Iterator[list[int]]:
        start = self.consumed_samples
        while start + self.global_batch_size <= self.total_samples:
            mine = dp_sample_indices(start, self.global_batch_size, self.dp_rank, self.dp_size)
            for m in range(0, len(mine), self.micro_batch_size):
                yield list(mine[m:m + self.micro_batch_size])
            start += self.global_batch_size


class GlobalBatchIterator:
    """Iterates global batches as lists of collated micro-batches; tracks ``consumed_samples``.

    Each item is ``num_microbatches`` dicts of tensors (``tokens``, ``labels``, ``loss_mask``,
    ``position_ids``, optionally ``attention_mask``, and ``dataset_id`` for blends), each (mbs, T).
    ``consumed_samples`` counts global samples (all DP ranks) handed out so far.
    """

    def __init__(self, dataset: Any, *, global_batch_size: int, micro_batch_size: int, consumed_samples: int = 0,
                 dp_rank: int = 0, dp_size: int = 1, num_workers: int = 0, pin_memory: bool = False) -> None:
        from torch.utils.data import DataLoader

        self.sampler = PretrainingBatchSampler(
            total_samples=len(dataset), consumed_samples=consumed_samples, global_batch_size=global_batch_size,
            micro_batch_size=micro_batch_size, dp_rank=dp_rank, dp_size=dp_size)
        self.global_batch_size = global_batch_size
        self.consumed_samples = consumed_samples
        self._loader = iter(DataLoader(dataset, batch_sampler=self.sampler, num_workers=num_workers,
                                       pin_memory=pin_memory, persistent_workers=num_workers > 0))

    def __iter__(self) -> "GlobalBatchIterator":
        return self

    def __next__(self) -> list[dict[str, Any]]:
        micro = [next(self._loader) for _ in range(self.sampler.num_microbatches)]
        self.consumed_samples += self.global_batch_size
        return micro
