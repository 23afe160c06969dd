"""RL prompt selection from WildChat-1M / LMSYS-Chat-1M style dumps (``lwz data filter-prompts``).

The paper samples "English instructions from WildChat-1M and Chinese instructions from LMSYS-Chat-1M"
and has QwQ-32B keep "only requests that demand high-quality, extended outputs" (paper.md §8); its
filter prompt is not published. Our pipeline, cheapest stage first, every drop counted by reason:

1. read records (.jsonl / .jsonl.gz / .parquet; malformed lines counted with file:line, never fatal);
2. first user turn of ``conversation`` / ``conversations`` ({role, content} or {from, value}), or a
   plain ``question`` / ``prompt`` / ``instruction`` field;
3. optional toxicity flag drop (WildChat's ``toxic``), language (record ``language`` field, else CJK
   share ≥ 30% of the words → zh, any English word → en);
4. length bounds in words (``count_words``) and writing-request heuristics: at least one writing
   keyword, no non-writing keyword (code, maths, translation, image-prompt generators, jailbreaks);
5. exact duplicates (normalised text) and near duplicates (character 5-gram MinHash LSH, Jaccard
   estimate ≥ ``near_dup_threshold``; the first occurrence is kept);
6. optional LLM judge through any ``generate(prompts) -> texts`` (``JUDGE_PROMPT``, ours).

Output: one JSON object per kept prompt with ``prompt_id`` (content hash), ``question``, ``language``
(the template language: 'zh' iff the question holds a CJK character, the model card's rule) and
provenance fields; length ranges are added by ``lwz data predict-length`` (or ``--predict-length``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from megatron_lwz.rewards.length import CJK_CHAR_RE, ENGLISH_WORD_RE, count_words, detect_language
from megatron_lwz.rewards.llm_client import extract_json
from megatron_lwz.rewards.minhash import LSHIndex, MinHasher, char_shingle_hashes, estimated_jaccard
from megatron_lwz.rewards.records_io import BadRecords, iter_records, stable_prompt_id, write_jsonl_atomic
from megatron_lwz.rewards.length_predict import TextGenerator

LANGUAGE_NAMES = {"english": "en", "en": "en", "chinese": "zh", "zh": "zh", "zh-cn": "zh", "zh-tw": "zh",
                  "zh-hans": "zh", "zh-hant": "zh", "中文": "zh"}
USER_ROLES = frozenset({"user", "human", "prompter"})

JUDGE_PROMPT = """You are selecting user requests for training a long-form writing model.
Decide whether the request below asks for a substantial, high-quality piece of writing (for example an essay, \
story, report, article, speech, letter, proposal or a detailed guide) whose ideal answer runs to at least several \
hundred words, and whether it can be completed from the request alone (it does not depend on a missing attachment, \
link or earlier conversation).
Reply with JSON only: {"long_form": true} or {"long_form": false}.

Request:
<<QUERY>>"""
"""Our judge prompt (the paper's QwQ-32B filter prompt is unpublished); <<QUERY>> is the slot."""

_EN_WRITING = ("write|writing|rewrite|draft|compose|essay|essays|article|articles|story|stories|blog|report|"
               "novel|chapter|poem|poetry|letter|speech|script|screenplay|thesis|dissertation|paper|review|"
               "narrative|fiction|post|proposal|outline|describe|description|biography|memoir|diary|"
               "guide|tutorial|copywriting|advertisement|newsletter|press release|cover letter|eulogy|"
               "sermon|lyrics|fanfic|fan fiction|continue the story|elaborate|expand")
_EN_NOT_WRITING = ("code|coding|python|javascript|typescript|java|c\\+\\+|c#|sql|regex|html|css|json|"
                   "compile|compiler|debug|traceback|stack trace|error message|algorithm|"
                   "equation|calculate|integral|derivative|translate|translation|"
                   "midjourney|stable diffusion|prompt generator|image prompt|jailbreak|dan mode|"
                   "pretend to be|roleplay|role-play|role play|excel formula|spreadsheet|roblox")
_ZH_WRITING = ("写|撰写|创作|作文|文章|小说|故事|报告|论文|散文|诗|演讲|稿|文案|续写|扩写|改写|方案|策划|剧本|"
               "书信|日记|综述|大纲|心得|读后感|观后感|总结|介绍|描述|评论|章节|致辞|发言|申请书|计划书")
_ZH_NOT_WRITING = "代码|编程|函数|报错|程序|算法|翻译|计算|求解|方程|sql|python|java|正则|公式|角色扮演"


@dataclass(kw_only=True)
class PromptFilterConfig:
    """Thresholds and keyword lists of ``lwz data filter-prompts``."""

    languages: list[str] = field(default_factory=lambda: ["en", "zh"])
    """Languages to keep ('en', 'zh')."""
    min_words: int = 4
    """Minimum question length in words (CJK characters + English words)."""
    max_words: int = 2000
    """Maximum question length in words (long pasted documents make poor RL prompts)."""
    drop_toxic: bool = True
    """Drop records whose 'toxic' field is true (WildChat) or whose moderation flagged them."""
    writing_keywords_en: str = _EN_WRITING
    """'|'-separated English keywords (whole words) of which one must occur."""
    non_writing_keywords_en: str = _EN_NOT_WRITING
    """'|'-separated English keywords (whole words) of which none may occur; a code fence (```) also drops."""
    writing_keywords_zh: str = _ZH_WRITING
    """'|'-separated Chinese keywords (substrings) of which one must occur."""
    non_writing_keywords_zh: str = _ZH_NOT_WRITING
    """'|'-separated Chinese keywords (substrings) of which none may occur."""
    dedup: bool = True
    """Remove exact and near duplicates (first occurrence wins)."""
    near_dup_threshold: float = 0.8
    """Estimated Jaccard of character 5-gram sets at or above which two prompts are near duplicates."""
    shingle_chars: int = 5
    """Character n-gram size for near-duplicate detection."""
    num_perm: int = 128
    """MinHash permutations for the Jaccard estimate (std ≈ 0.035 at Jaccard 0.8)."""
    lsh_bands: int = 16
    """LSH bands over the first lsh_bands × lsh_rows slots of the signature."""
    lsh_rows: int = 4
    """Rows per band (16 × 4: a pair at Jaccard 0.8 becomes a candidate with probability > 0.999,
    one at 0.2 with probability 0.025)."""
    question_keys: list[str] = field(default_factory=lambda: ["question", "prompt", "instruction"])
    """Plain fields tried when a record has no conversation list."""
    max_records: int | None = None
    """Stop after reading this many records (quick looks at huge dumps)."""


def first_user_turn(record: dict[str, Any], question_keys: Sequence[str]) -> str | None:
    """Content of the first user turn of a chat record, or a plain question field."""
    for key in ("conversation", "conversations", "messages"):
        turns = record.get(key)
        if isinstance(turns, list):
            for turn in turns:
                if not isinstance(turn, dict):
                    continue
                role = str(turn.get("role", turn.get("from", ""))).lower()
                if role in USER_ROLES:
                    text = turn.get("content", turn.get("value"))
                    return text if isinstance(text, str) else None
            return None
    for key in question_keys:
        if isinstance(record.get(key), str):
            return record[key]
    return None


def source_language(record: dict[str, Any], text: str) -> str:
    """'en' / 'zh' / 'other' from the record's language field, else from the script of ``text``."""
    field_value = record.get("language")
    if isinstance(field_value, str) and field_value.strip():
        return LANGUAGE_NAMES.get(field_value.strip().lower(), "other")
    cjk = len(CJK_CHAR_RE.findall(text))
    words = cjk + len(ENGLISH_WORD_RE.findall(text))
    if words and cjk >= 0.3 * words:
        return "zh"
    return "en" if words else "other"


def _is_toxic(record: dict[str, Any]) -> bool:
    if record.get("toxic") is True:
        return True
    moderation = record.get("openai_moderation")
    if isinstance(moderation, list):
        return any(isinstance(m, dict) and m.get("flagged") is True for m in moderation[:1])
    return False


class WritingHeuristics:
    """Keyword rules deciding whether a request asks for writing (see PromptFilterConfig)."""

    def __init__(self, cfg: PromptFilterConfig) -> None:
        self.cfg = cfg
        self.en_yes = re.compile(rf"\b(?:{cfg.writing_keywords_en})\b", re.IGNORECASE)
        self.en_no = re.compile(rf"(?<![\w+#])(?:{cfg.non_writing_keywords_en})(?![\w+#])|```", re.IGNORECASE)
        self.zh_yes = re.compile(cfg.writing_keywords_zh)
        self.zh_no = re.compile(cfg.non_writing_keywords_zh, re.IGNORECASE)

    def reason_to_drop(self, text: str, language: str) -> str | None:
        """None if ``text`` passes, else the drop reason ('too_short', 'too_long', 'not_writing', …)."""
        words = count_words(text)
        if words < self.cfg.min_words:
            return "too_short"
        if words > self.cfg.max_words:
            return "too_long"
        if self.en_no.search(text) or self.zh_no.search(text):
            return "non_writing_keyword"
        yes = self.zh_yes.search(text) if language == "zh" else self.en_yes.search(text)
        return None if yes else "no_writing_keyword"


def normalise_for_dedup(text: str) -> str:
    """Lower-case, punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\u4e00-\u9fff]+", " ", text.lower()).split())


class PromptDeduper:
    """Exact (hash of the normalised text) + near (MinHash LSH) duplicate filter, first wins."""

    def __init__(self, cfg: PromptFilterConfig) -> None:
        self.cfg = cfg
        self.seen: set[bytes] = set()
        self.hasher = MinHasher(cfg.num_perm, seed=7)
        self.lsh_slots = cfg.lsh_bands * cfg.lsh_rows
        if self.lsh_slots > cfg.num_perm:
            raise ValueError("filter: lsh_bands × lsh_rows must not exceed num_perm")
        self.index = LSHIndex(self.lsh_slots, cfg.lsh_bands, bucket_cap=16)
        self.signatures: list = []

    def check(self, text: str) -> str | None:
        """None if new (and remembered), else 'exact_duplicate' / 'near_duplicate'."""
        norm = normalise_for_dedup(text)
        digest = hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()
        if digest in self.seen:
            return "exact_duplicate"
        signature = self.hasher.signature(char_shingle_hashes(norm, self.cfg.shingle_chars))
        for other in self.index.candidates(signature[:self.lsh_slots]):
            if estimated_jaccard(signature, self.signatures[other]) >= self.cfg.near_dup_threshold:
                return "near_duplicate"
        self.seen.add(digest)
        self.index.insert(len(self.signatures), signature[:self.lsh_slots])
        self.signatures.append(signature)
        return None


def judge_prompts(questions: Sequence[str], generate: TextGenerator, attempts: int = 2) -> list[bool | None]:
    """LLM verdict per question (True = long-form writing request; None = no usable reply)."""
    verdicts: list[bool | None] = [None] * len(questions)
    pending = list(range(len(questions)))
    for _ in range(max(1, attempts)):
        if not pending:
            break
        replies = generate([JUDGE_PROMPT.replace("<<QUERY>>", questions[i]) for i in pending])
        still = []
        for i, reply in zip(pending, replies):
            obj = None if isinstance(reply, BaseException) else extract_json(str(reply))
            if isinstance(obj, dict) and isinstance(obj.get("long_form"), bool):
                verdicts[i] = obj["long_form"]
            else:
                still.append(i)
        pending = still
    return verdicts


def _candidates(paths: Sequence[str | Path], cfg: PromptFilterConfig, bad: BadRecords,
                counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    heuristics = WritingHeuristics(cfg)
    deduper = PromptDeduper(cfg) if cfg.dedup else None
    for path in paths:
        for where, record in iter_records(path, bad):
            if cfg.max_records is not None and counts["read"] >= cfg.max_records:
                return
            counts["read"] += 1
            text = first_user_turn(record, cfg.question_keys)
            if text is None or not text.strip():
                bad.add(where, "no user turn / question field")
                continue
            text = text.strip()
            language = source_language(record, text)
            reason = ("toxic" if cfg.drop_toxic and _is_toxic(record) else
                      "language" if language not in cfg.languages else
                      heuristics.reason_to_drop(text, language))
            if reason is None and deduper is not None:
                reason = deduper.check(text)
            if reason is not None:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            source_id = next((record[k] for k in ("conversation_hash", "conversation_id", "id", "prompt_id")
                              if isinstance(record.get(k), (str, int))), None)
            yield {"prompt_id": stable_prompt_id(text), "question": text, "language": detect_language(text),
                   "source": Path(path).name, "source_id": source_id, "source_model": record.get("model"),
                   "source_language": language}


def filter_prompts(paths: Sequence[str | Path], output: str | Path, cfg: PromptFilterConfig | None = None,
                   judge: TextGenerator | None = None, judge_batch: int = 256) -> dict[str, Any]:
    """Run the whole filter; writes the kept prompts to ``output`` and returns the count summary."""
    from tqdm import tqdm

    cfg = cfg or PromptFilterConfig()
    bad = BadRecords()
    counts: dict[str, int] = {"read": 0}
    kept = list(tqdm(_candidates(paths, cfg, bad, counts), desc="filter-prompts", unit=" kept", mininterval=2))
    if judge is not None:
        verdicts: list[bool | None] = []
        for start in range(0, len(kept), judge_batch):
            verdicts += judge_prompts([r["question"] for r in kept[start:start + judge_batch]], judge)
        counts["judge_rejected"] = sum(v is False for v in verdicts)
        counts["judge_errors"] = sum(v is None for v in verdicts)
        kept = [r for r, v in zip(kept, verdicts) if v is True]
    written = write_jsonl_atomic(output, kept)
    return {"inputs": [str(p) for p in paths], "output": str(output), **counts,
            "bad_records": bad.count, "bad_examples": bad.examples, "kept": written}
