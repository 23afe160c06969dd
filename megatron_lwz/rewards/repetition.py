"""Repetition signals of the Format RM: duplicate sentences/paragraphs, near-duplicate paragraphs,
keyword stuffing. Linear-time in the answer length (hashing + one sort; never all pairs of paragraphs).

The paper's Format RM "penalizes repetitive content based on semantic overlap metrics … models may
easily reach the target length required by the Length RM by generating nearly identical paragraphs"
(paper.md §3); the exact metric is not published. We measure, on the ``<answer>`` text:

* ``dup_sentence_ratio``: share of the answer's tokens that sit in a sentence (≥ ``min_sentence_words``)
  whose normalised token sequence already appeared earlier (2nd, 3rd… copies count, the first does not).
* ``dup_paragraph_ratio``: the same for paragraphs (non-empty lines, ≥ ``min_paragraph_words``).
* ``near_dup_ratio``: share of tokens in paragraphs that are exact duplicates **or** whose set of word
  ``shingle_size``-grams has Jaccard ≥ ``near_dup_threshold`` with some earlier paragraph.
  Exact Jaccard from a shingle inverted index: (shingle, paragraph) pairs are sorted by shingle hash,
  paragraphs sharing a shingle are paired (at most ``shingle_pair_cap`` neighbours per occurrence, so a
  shingle shared by many paragraphs costs O(cap), not O(n²)), and pair counts are intersection sizes.
* ``stuffing``: keyword-stuffing severity in [0, 1] from term-frequency outliers (``stuffing_stats``):
  the most frequent content term (English word ≥ 3 letters not in a stop list, or a CJK character
  bigram without a function character) must exceed both an absolute share of the content terms and
  ``stuffing_zipf_ratio`` × the count Zipf's law predicts from ranks 6–15 (f_1 ≈ r · f_r).

Normalisation for "same sentence": lower-cased tokens ``[\\u4e00-\\u9fff]`` (one per CJK character) and
``[a-z0-9]+``; punctuation, spacing and case are ignored. Ratios use all answer tokens as denominator.
Sentences end at ``. ! ? ;`` (and their full-width forms) or a newline.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import operator
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from megatron_lwz.config.base import ConfigError
from megatron_lwz.rewards.minhash import shingle_hashes, token_hashes

TOKEN_RE = re.compile(r"[\u4e00-\u9fff]|[a-z0-9]+")
SPLIT_RE = re.compile(r"[a-z0-9]+|[\u4e00-\u9fff]|[.!?;。！？；\n]")
BOUNDARIES = frozenset(".!?;。！？；\n")

EN_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just let like may me
might more most must my myself no nor not now of off on once one only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves yet however thus therefore many much well even still
every within without upon among across toward towards per via new make made use used using way ways
""".split())
"""English function words ignored by the stuffing detector (content terms only)."""
ZIPF_FIRST_RANK, ZIPF_LAST_RANK = 6, 15
"""Ranks whose r · f_r give the Zipf expectation of the top count (see ``stuffing_stats``)."""
ZH_FUNCTION_CHARS = frozenset("的了是在和也就都而及与着或一不这那有个我你他她它们之以其为于上下中来去到说要会能对把被从让给很更还又")
"""CJK characters that make a bigram a function-word bigram (excluded from stuffing counts)."""


@dataclass(kw_only=True)
class RepetitionConfig:
    """Thresholds of the repetition and keyword-stuffing checks (all measured on the answer text)."""

    min_sentence_words: int = 5
    """Sentences with fewer tokens are ignored for duplicate detection ("Let's begin." may repeat)."""
    min_paragraph_words: int = 8
    """Paragraphs (non-empty lines) with fewer tokens are ignored (headings, short list items)."""
    shingle_size: int = 3
    """Word n-gram size for near-duplicate paragraphs (3: a changed word breaks only 3 shingles)."""
    near_dup_threshold: float = 0.5
    """Shingle Jaccard at or above which a paragraph is a near-duplicate of an earlier one. Calibration
    (tests/unit/rewards): distinct paragraphs on one topic score 0.0; a 56-word paragraph with 4 words
    changed scores 0.64; reference-manual boilerplate lines ("Return True if all characters …") 0.5–0.8."""
    shingle_pair_cap: int = 16
    """Max neighbours one shingle occurrence is paired with (bounds the work: linear total time)."""
    stuffing_min_content_terms: int = 150
    """Stuffing is only judged on answers with at least this many content terms."""
    stuffing_min_count: int = 10
    """The top term must occur at least this many times to count as stuffing."""
    stuffing_max_share: float = 0.06
    """Share of content terms where the stuffing severity starts to rise from 0."""
    stuffing_full_share: float = 0.20
    """Share of content terms at which the stuffing severity reaches 1."""
    stuffing_zipf_ratio: float = 2.0
    """The top count must also be ≥ this multiple of its Zipf expectation (median of r · f_r, r=6..15).
    Calibration: natural text stays ≤ 0.9 even when its top term holds 10% of the content terms
    ('pattern' in the Python `re` docs, 2K-word chunks); a stuffed word or 3-word phrase gives ≥ 2.4."""

    def __post_init__(self) -> None:
        if not 0.0 < self.near_dup_threshold <= 1.0:
            raise ConfigError(f"near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")
        if self.shingle_size < 1 or self.shingle_pair_cap < 1:
            raise ConfigError("shingle_size and shingle_pair_cap must be >= 1")
        if not 0.0 < self.stuffing_max_share < self.stuffing_full_share <= 1.0:
            raise ConfigError("need 0 < stuffing_max_share < stuffing_full_share <= 1")


@dataclass(kw_only=True)
class RepetitionStats:
    """Repetition measurements of one answer (ratios are shares of the answer's tokens)."""

    num_tokens: int = 0
    dup_sentence_ratio: float = 0.0
    dup_paragraph_ratio: float = 0.0
    near_dup_ratio: float = 0.0
    stuffing: float = 0.0
    top_term: str | None = None
    top_term_share: float = 0.0
    zipf_excess: float = 0.0


@dataclass
class Tokenized:
    """An answer as one flat token list with sentence and paragraph boundaries."""

    tokens: list[str]
    """Lower-cased tokens of the whole answer."""
    sentences: list[tuple[int, int]]
    """[start, end) token offsets of each non-empty sentence."""
    paragraphs: list[tuple[int, int]]
    """[start, end) sentence indices of each paragraph (non-empty line)."""

    @functools.cached_property
    def counts(self) -> Counter[str]:
        """Occurrences of every distinct token."""
        return Counter(self.tokens)

    def paragraph_span(self, index: int) -> tuple[int, int]:
        """[start, end) token offsets of paragraph ``index``."""
        first, last = self.paragraphs[index]
        return self.sentences[first][0], self.sentences[last - 1][1]


def tokenize(answer: str) -> Tokenized:
    """One regex pass over the lower-cased answer, split at sentence terminators and newlines."""
    items = SPLIT_RE.findall(answer.lower())
    cuts = list(itertools.compress(range(len(items)), map(BOUNDARIES.__contains__, items)))  # C-level scan
    cuts.append(len(items))
    tokens: list[str] = []
    sentences: list[tuple[int, int]] = []
    paragraphs: list[tuple[int, int]] = []
    para_start, prev = 0, -1
    for cut in cuts:
        if cut > prev + 1:
            start = len(tokens)
            tokens.extend(items[prev + 1:cut])
            sentences.append((start, len(tokens)))
        if (cut == len(items) or items[cut] == "\n") and len(sentences) > para_start:
            paragraphs.append((para_start, len(sentences)))
            para_start = len(sentences)
        prev = cut
    return Tokenized(tokens, sentences, paragraphs)


def line_paragraphs(answer: str) -> list[tuple[str, int]]:
    """(text, number of tokens) of every non-empty line: the paragraphs the semantic check embeds."""
    lines = ((line, len(TOKEN_RE.findall(line.lower()))) for line in answer.split("\n"))
    return [(line.strip(), n) for line, n in lines if n]


def _exact_duplicates(units: list[tuple[str, int]], min_words: int) -> tuple[int, set[int]]:
    """(tokens in repeated units, indices of repeated units) for (key, num_tokens) units."""
    seen: set[str] = set()
    repeated_tokens, repeated = 0, set()
    for i, (key, n) in enumerate(units):
        if n < min_words:
            continue
        if key in seen:
            repeated_tokens += n
            repeated.add(i)
        else:
            seen.add(key)
    return repeated_tokens, repeated


def _near_duplicates(doc: Tokenized, spans: list[tuple[int, int]], cfg: RepetitionConfig) -> int:
    """Tokens in the paragraphs (token ``spans``) whose shingle Jaccard with an earlier one is high."""
    k, num = cfg.shingle_size, len(spans)
    if num < 2:
        return 0
    shingles_all = shingle_hashes(token_hashes(doc.tokens, doc.counts.keys()), k)  # (T-k+1,) by start position
    counts = np.array([end - start - k + 1 for start, end in spans])  # shingles per paragraph
    positions = np.concatenate([np.arange(start, end - k + 1) for start, end in spans])  # (M,)
    shingles = shingles_all[positions]
    owner = np.repeat(np.arange(num), counts)  # (M,) paragraph of each shingle
    order = np.lexsort((owner, shingles))  # by shingle, then paragraph
    shingles, owner = shingles[order], owner[order]
    fresh = np.ones(shingles.shape[0], dtype=bool)  # drop repeats of a shingle inside one paragraph
    fresh[1:] = (shingles[1:] != shingles[:-1]) | (owner[1:] != owner[:-1])
    shingles, owner = shingles[fresh], owner[fresh]
    set_size = np.bincount(owner, minlength=num)  # (num,) distinct shingles per paragraph
    pair_codes = []
    for gap in range(1, cfg.shingle_pair_cap + 1):
        same = shingles[gap:] == shingles[:-gap]
        if not same.any():  # no shingle is shared by more than `gap` paragraphs
            break
        pair_codes.append(owner[:-gap][same] * num + owner[gap:][same])  # earlier * num + later
    if not pair_codes:
        return 0
    codes, intersection = np.unique(np.concatenate(pair_codes), return_counts=True)
    earlier, later = codes // num, codes % num
    jaccard = intersection / (set_size[earlier] + set_size[later] - intersection)
    flagged = np.unique(later[jaccard >= cfg.near_dup_threshold])
    return int(sum(spans[i][1] - spans[i][0] for i in flagged.tolist()))


def _cjk_content_class() -> str:
    """Regex class of CJK characters minus ``ZH_FUNCTION_CHARS`` (as code-point ranges)."""
    ranges, start = [], 0x4E00
    for code in sorted(ord(c) for c in ZH_FUNCTION_CHARS):
        if code > start:
            ranges.append((start, code - 1))
        start = code + 1
    ranges.append((start, 0x9FFF))
    return "".join(f"\\u{lo:04x}-\\u{hi:04x}" if hi > lo else f"\\u{lo:04x}" for lo, hi in ranges)


CJK_CONTENT_RUN_RE = re.compile(f"[{_cjk_content_class()}]{{2,}}")
"""Runs of ≥ 2 CJK content characters (no punctuation, no function character inside)."""


def _top_content_terms(answer: str, token_counts: Counter[str], top: int) -> tuple[int, list[tuple[str, int]]]:
    """(number of content terms, the ``top`` most frequent with counts). Content terms are English
    words (≥ 3 letters, not stop words) and CJK bigrams inside runs of content characters."""
    english = {t: c for t, c in token_counts.items()
               if len(t) >= 3 and t.isascii() and t.isalpha() and t not in EN_STOPWORDS}
    has_cjk = any(len(t) == 1 and "\u4e00" <= t <= "\u9fff" for t in token_counts)
    bigram_total, bigrams = _cjk_bigram_counts(answer, top) if has_cjk else (0, [])
    total = sum(english.values()) + bigram_total
    ranked = heapq.nlargest(top, itertools.chain(english.items(), bigrams), key=operator.itemgetter(1))
    return total, ranked


def _cjk_bigram_counts(answer: str, top: int) -> tuple[int, list[tuple[str, int]]]:
    """(number of CJK content bigrams, the ``top`` most frequent) via numpy over code points."""
    runs = CJK_CONTENT_RUN_RE.findall(answer)
    if not runs:
        return 0, []
    points = np.frombuffer("\x00".join(runs).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    valid = (points[:-1] != 0) & (points[1:] != 0)  # pairs across a run separator do not count
    codes = (points[:-1] << 21 | points[1:])[valid]  # code points < 2^21: one int64 per bigram
    keys, counts = np.unique(codes, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:top]
    return int(codes.size), [(chr(int(keys[i]) >> 21) + chr(int(keys[i]) & 0x1FFFFF), int(counts[i])) for i in best]


def stuffing_stats(answer: str, token_counts: Counter[str],
                   cfg: RepetitionConfig) -> tuple[float, str | None, float, float]:
    """(severity, top term, its share of content terms, Zipf excess) of an answer and its token counts.

    Zipf excess = f_1 / median(r · f_r for r = 6..15). Under Zipf's law (f_r ∝ 1/r) every r · f_r
    estimates f_1, so natural text gives ≲ 1; ranks from 6 on keep a stuffed phrase (whose 2–4 words
    or bigrams are all inflated together) out of the reference. Severity ramps linearly from
    ``stuffing_max_share`` to ``stuffing_full_share`` once the count, size and Zipf conditions hold.
    """
    total, ranked = _top_content_terms(answer, token_counts, ZIPF_LAST_RANK)
    if not ranked:
        return 0.0, None, 0.0, 0.0
    top_term, top = ranked[0]
    share = top / total
    tail = [rank * c for rank, (_, c) in enumerate(ranked, start=1) if rank >= ZIPF_FIRST_RANK]
    expected = float(np.median(tail)) if tail else 1.0
    excess = top / max(expected, 1.0)
    if total < cfg.stuffing_min_content_terms or top < cfg.stuffing_min_count or excess < cfg.stuffing_zipf_ratio:
        return 0.0, top_term, share, excess
    severity = (share - cfg.stuffing_max_share) / (cfg.stuffing_full_share - cfg.stuffing_max_share)
    return min(1.0, max(0.0, severity)), top_term, share, excess


def repetition_stats(answer: str, cfg: RepetitionConfig | None = None) -> RepetitionStats:
    """All repetition signals of ``answer`` (see the module docstring for definitions)."""
    cfg = cfg or RepetitionConfig()
    doc = tokenize(answer)
    total = len(doc.tokens)
    if total == 0:
        return RepetitionStats()
    sentence_keys = [" ".join(doc.tokens[a:b]) for a, b in doc.sentences]
    dup_sent_tokens, _ = _exact_duplicates(
        [(key, b - a) for key, (a, b) in zip(sentence_keys, doc.sentences)], cfg.min_sentence_words)
    spans = [doc.paragraph_span(i) for i in range(len(doc.paragraphs))]
    para_units = [("\n".join(sentence_keys[a:b]), end - start)
                  for (a, b), (start, end) in zip(doc.paragraphs, spans)]
    dup_para_tokens, dup_paras = _exact_duplicates(para_units, cfg.min_paragraph_words)
    min_size = max(cfg.min_paragraph_words, cfg.shingle_size)
    near_spans = [s for i, s in enumerate(spans) if i not in dup_paras and s[1] - s[0] >= min_size]
    near_tokens = dup_para_tokens + _near_duplicates(doc, near_spans, cfg)
    severity, top_term, share, excess = stuffing_stats(answer, doc.counts, cfg)
    return RepetitionStats(
        num_tokens=total,
        dup_sentence_ratio=dup_sent_tokens / total,
        dup_paragraph_ratio=dup_para_tokens / total,
        near_dup_ratio=near_tokens / total,
        stuffing=severity,
        top_term=top_term,
        top_term_share=share,
        zipf_excess=excess,
    )
