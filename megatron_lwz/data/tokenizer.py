"""One tokenizer interface for pretraining data, megatron-core datasets and RL.

``Tokenizer`` wraps either a Hugging Face *fast* tokenizer (a directory holding ``tokenizer.json``,
e.g. Qwen2.5's, read with the ``tokenizers`` library; a hub id is fetched with ``huggingface_hub``)
or a sentencepiece ``.model`` (e.g. one trained by ``lwz tokenizer train``). It exposes:

* what megatron-core's ``GPTDataset`` reads: ``vocab_size``, ``eod``, ``pad``, ``unique_identifiers``
  (hashed into the dataset cache key, so it names the tokenizer *content*, not its path),
  ``special_tokens_dict``, ``tokenize`` / ``detokenize``;
* what RL needs: ``encode`` / ``decode``, ``eod_token``, ``special_tokens`` (think/answer tags, role
  markers, EOD), ``token_to_id``.

EOD handling: pretraining documents are tokenized *without* BOS/EOS (``add_special_tokens=False`` for
HF) and the preprocessor appends exactly one ``eod`` id per document (``--append-eod``), so packed
sequences carry a document boundary that GPTDataset can use for ``reset_position_ids`` /
``reset_attention_mask`` / ``eod_mask_loss``. ``pad`` is a dedicated padding id, or -1 when the
tokenizer has none distinct from EOD (as for Qwen2.5): GPTDataset masks labels equal to ``pad``, so a
pad that equals EOD would silently stop the model from learning to end documents. ``pad_id`` is the
id to *fill* padded batch positions with (``pad`` if it exists, else ``eod``).

Special-token strings in the text (``<think>``, ``<|endoftext|>``, …) map to their single ids in both
backends (HF added tokens / sentencepiece user-defined symbols), and ``decode`` renders them back, so
``decode(encode(s)) == s`` for byte-level / byte-fallback vocabularies.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from megatron_lwz.data.templates import EOD_TOKEN, ROLE_MARKERS, THINK_TAGS

META_FILENAME = "lwz_tokenizer.json"
"""Metadata file written next to ``tokenizer.model`` by ``lwz tokenizer train``."""
SP_MODEL_FILENAME = "tokenizer.model"
HF_TOKENIZER_FILENAME = "tokenizer.json"
_PAD_CANDIDATES = ("<pad>", "<|pad|>", "[PAD]", "<|finetune_right_pad_id|>")


@dataclass(kw_only=True)
class TokenizerConfig:
    """Where the tokenizer lives and which backend reads it."""

    path: str
    """Directory with tokenizer.json (HF) or tokenizer.model (sentencepiece), a .model file, or a HF hub id."""
    kind: Literal["auto", "hf", "sentencepiece"] = "auto"
    """Backend; 'auto' picks from the files found at ``path``."""
    eod_token: Optional[str] = None
    """Override the end-of-document token string (default: '<|endoftext|>' if present, else the EOS token)."""

    @classmethod
    def from_spec(cls, spec: str) -> "TokenizerConfig":
        """Parse a CLI spec: 'PATH', 'hf:PATH_OR_HUB_ID' or 'sentencepiece:PATH'."""
        for kind in ("hf", "sentencepiece"):
            if spec.startswith(kind + ":"):
                return cls(path=spec[len(kind) + 1:], kind=kind)
        return cls(path=spec)


def _resolve_kind(cfg: TokenizerConfig) -> tuple[str, Path | str]:
    """(backend, file) for ``cfg``; raises ValueError naming the path and what was looked for."""
    path = Path(cfg.path).expanduser()
    if cfg.kind in ("auto", "sentencepiece"):
        if path.is_file() and path.suffix == ".model":
            return "sentencepiece", path
        prefer_hf = cfg.kind == "auto" and (path / HF_TOKENIZER_FILENAME).is_file()  # e.g. Llama dirs hold both
        if (path / SP_MODEL_FILENAME).is_file() and not prefer_hf:
            return "sentencepiece", path / SP_MODEL_FILENAME
        if cfg.kind == "sentencepiece":
            raise ValueError(f"tokenizer.path: no sentencepiece model at {path} (expected a .model file or "
                             f"a directory with {SP_MODEL_FILENAME})")
    if path.is_file() and path.name.endswith(".json"):
        return "hf", path
    if (path / HF_TOKENIZER_FILENAME).is_file():
        return "hf", path / HF_TOKENIZER_FILENAME
    if path.exists():
        raise ValueError(f"tokenizer.path: {path} has neither {HF_TOKENIZER_FILENAME} nor {SP_MODEL_FILENAME}; "
                         "pass an HF tokenizer directory or a sentencepiece .model")
    return "hf", cfg.path  # not local: treat as a hub id


def _hub_file(repo_id: str, filename: str, required: bool) -> Optional[Path]:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename))
    except Exception as err:  # noqa: BLE001 - network / missing-file errors vary by hub version
        if required:
            raise ValueError(f"tokenizer.path: {repo_id!r} is not a local path and downloading {filename} "
                             f"from the Hugging Face hub failed: {err}") from None
        return None


def _token_content(value: Any) -> Optional[str]:
    """tokenizer_config.json stores special tokens as strings or {'content': ...} dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Tokenizer:
    """A HF-fast or sentencepiece tokenizer with megatron-core's and RL's interface (see module doc)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        self.config = cfg
        self.kind, model_file = _resolve_kind(cfg)
        meta: dict[str, Any] = {}
        if self.kind == "sentencepiece":
            self._load_sentencepiece(Path(model_file))
            meta_path = Path(model_file).parent / META_FILENAME
            if meta_path.is_file():
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
        else:
            meta = self._load_hf(model_file)
        self._resolve_specials(meta)
        self.unique_identifiers: dict[str, Any] = {
            "class": "megatron_lwz.data.tokenizer.Tokenizer",
            "kind": self.kind,
            "sha256": _sha256(self._model_file),
            "vocab_size": self.vocab_size,
            "eod": self.eod,
            "pad": self.pad,
        }
        """Identity of the tokenizer content, hashed by megatron-core into its dataset cache keys."""

    # ---- loading -------------------------------------------------------------------------------
    def _load_sentencepiece(self, model_file: Path) -> None:
        import sentencepiece as spm

        self._model_file = model_file
        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self._hf = None
        self._vocab_size = int(self._sp.get_piece_size())

    def _load_hf(self, model_file: Path | str) -> dict[str, Any]:
        from tokenizers import Tokenizer as HFTokenizer

        config_file: Optional[Path]
        if isinstance(model_file, str):  # hub id
            model_file = _hub_file(model_file, HF_TOKENIZER_FILENAME, required=True)
            config_file = _hub_file(self.config.path, "tokenizer_config.json", required=False)
        else:
            config_file = model_file.parent / "tokenizer_config.json"
        self._model_file = Path(model_file)
        self._hf = HFTokenizer.from_file(str(model_file))
        self._sp = None
        self._vocab_size = max(self._hf.get_vocab(with_added_tokens=True).values()) + 1
        meta: dict[str, Any] = {}
        if config_file is not None and config_file.is_file():
            raw = json.loads(config_file.read_text(encoding="utf-8"))
            for key in ("eos_token", "pad_token", "bos_token"):
                content = _token_content(raw.get(key))
                if content is not None:
                    meta[key] = content
        return meta

    def _resolve_specials(self, meta: dict[str, Any]) -> None:
        candidates = [self.config.eod_token, meta.get("eod_token"), EOD_TOKEN, meta.get("eos_token"), "</s>"]
        if self._sp is not None and self._sp.eos_id() >= 0:
            candidates.append(self._sp.id_to_piece(self._sp.eos_id()))
        if self.config.eod_token is not None and self.token_to_id(self.config.eod_token) is None:
            raise ValueError(f"tokenizer.eod_token: {self.config.eod_token!r} is not in the vocabulary of {self.config.path}")
        found = [(tok, self.token_to_id(tok)) for tok in candidates if tok is not None]
        found = [(tok, idx) for tok, idx in found if idx is not None]
        if not found:
            raise ValueError(f"tokenizer {self.config.path}: no end-of-document token found (tried "
                             f"{[c for c in candidates if c]}); set tokenizer.eod_token")
        self.eod_token, self.eod = found[0]
        pad_names = [meta.get("pad_token"), *_PAD_CANDIDATES]
        if self._sp is not None and self._sp.pad_id() >= 0:
            pad_names.insert(0, self._sp.id_to_piece(self._sp.pad_id()))
        pad_ids = [self.token_to_id(p) for p in pad_names if p is not None]
        self.pad: int = next((i for i in pad_ids if i is not None and i != self.eod), -1)
        """Dedicated padding id, or -1 when there is none distinct from EOD (megatron-core's convention)."""
        bos_name = meta.get("bos_token")
        if bos_name is None and self._sp is not None and self._sp.bos_id() >= 0:
            bos_name = self._sp.id_to_piece(self._sp.bos_id())
        self.bos: Optional[int] = self.token_to_id(bos_name) if bos_name else None
        """BOS id if the tokenizer defines one (pretraining documents never get it), else None."""
        wanted = (*THINK_TAGS, *ROLE_MARKERS, EOD_TOKEN, self.eod_token)
        self.special_tokens: dict[str, int] = {
            tok: idx for tok in wanted if (idx := self.token_to_id(tok)) is not None
        }
        """Template/format tokens present in the vocabulary as single tokens (string → id)."""

    # ---- megatron-core / RL interface ----------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of token ids (max id + 1, added tokens included); the model may pad it further."""
        return self._vocab_size

    @property
    def pad_id(self) -> int:
        """The id to fill padded batch positions with: ``pad`` if defined, else ``eod``."""
        return self.pad if self.pad >= 0 else self.eod

    @property
    def special_tokens_dict(self) -> dict[str, int]:
        """megatron-core checks ``pad`` against these ids for collisions."""
        return {"eod_token": self.eod, "pad_token": self.pad}

    def token_to_id(self, token: str) -> Optional[int]:
        """Id of a single-token string, or None when the string is not one token."""
        if self._sp is not None:
            idx = self._sp.piece_to_id(token)
            return None if idx == self._sp.unk_id() and token != self._sp.id_to_piece(idx) else int(idx)
        return self._hf.token_to_id(token)

    def id_to_token(self, idx: int) -> str:
        """The vocabulary string of one id."""
        if self._sp is not None:
            return self._sp.id_to_piece(int(idx))
        return self._hf.id_to_token(int(idx))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no BOS/EOS added; special-token strings map to their ids)."""
        if self._sp is not None:
            return self._sp.encode(text, out_type=int)
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        """``encode`` for many texts; ``num_threads`` bounds sentencepiece's threads (HF uses RAYON_NUM_THREADS)."""
        if self._sp is not None:
            return self._sp.encode(list(texts), out_type=int, num_threads=num_threads)
        return [e.ids for e in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; special tokens are rendered unless ``skip_special_tokens`` (rollout
        engines never skip them: megatron_lwz/rollout/text.py)."""
        ids = [int(i) for i in ids]
        if self._sp is not None:
            if skip_special_tokens:
                specials = set(self.special_tokens.values())
                ids = [i for i in ids if i not in specials and not self._sp.is_control(i)]
            return self._sp.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)

    # megatron-core's MegatronTokenizer names
    tokenize = encode
    detokenize = decode

    @property
    def eos(self) -> int:
        """Alias of ``eod`` (megatron-core inference stops on it)."""
        return self.eod

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"Tokenizer(kind={self.kind!r}, path={self.config.path!r}, vocab_size={self.vocab_size}, "
                f"eod={self.eod} {self.eod_token!r}, pad={self.pad})")

    # Picklable for DataLoader / preprocessing workers: reload from the config.
    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])


def load_tokenizer(spec: "str | os.PathLike[str] | TokenizerConfig") -> Tokenizer:
    """Tokenizer from a config or a CLI spec string (see ``TokenizerConfig.from_spec``)."""
    cfg = spec if isinstance(spec, TokenizerConfig) else TokenizerConfig.from_spec(str(spec))
    return Tokenizer(cfg)
