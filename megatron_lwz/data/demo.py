"""Generate the demo data set: a small, license-clean long-form corpus plus CoT, RM and RL slices.

Everything is written procedurally from our own word lists (``demo_lexicon``), deterministically for a
given seed (each output uses its own ``random.Random(f"{seed}:{name}")`` stream), in about a second:

* ``books.jsonl``, ``reports.jsonl``, ``papers.jsonl``: English and Chinese (~25%) long-form documents
  (chapters / report sections / paper sections), one topic per document — the CPT corpus (paper §7).
* ``cot.jsonl``: think-format records: the exact think template (paper.md §6.1) with a length-constrained
  question filled in, then `` <think>plan</think> <answer>text</answer>``, where the answer's length
  (CJK characters + English words, paper.md §1.2) lies inside the range the question states. This
  teaches a tiny model the format and length conditioning (the paper mixes ~1% distilled CoT into CPT).
* ``rm_pairs.jsonl`` / ``rm_pairs_heldout.jsonl``: Writing-RM preferences ``{prompt, chosen, rejected,
  rejected_kind}``: ``chosen`` is an on-topic, fluent, in-range answer; ``rejected`` is the same-length
  answer made repetitive, word-shuffled, or off-topic (each kind with probability 1/3).
* ``rl_prompts.jsonl`` / ``rl_prompts_heldout.jsonl``: ``{prompt_id, question, language, length_lower,
  length_upper}`` with short ranges (bounds within 20–60) for a tiny CPU model; held-out questions are
  distinct from each other.

Held-out prompts never occur in the training files, compared by text: the question space is small
(≈ 216 RL questions, ≈ 720 RM prompts), so independent draws would repeat training prompts. Each
prompt text is assigned to the held-out side iff the first 4 bytes of its SHA-256, mod 100, are below
``HELDOUT_PERCENT``; training draws skip held-out texts and held-out draws skip training texts (rejection
sampling from the same distribution, independent of the seed and of the set sizes).
* ``manifest.json``: seed, files, record counts and bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from megatron_lwz.data import demo_lexicon as lex
from megatron_lwz.data.templates import format_think_prompt
from megatron_lwz.rewards.length import count_words  # the Length RM's count (paper.md §1.2)

_CJK = re.compile(r"[\u4e00-\u9fff]")
_SLOT = re.compile(r"\{(\w+)\}")
_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")
HELDOUT_PERCENT = 35
"""Share of the prompt-text space reserved for held-out sets (≈ 81 RL questions, ≈ 230 RM prompts)."""


@dataclass(kw_only=True)
class DemoConfig:
    """Sizes and seed of ``lwz data make-demo``."""

    out_dir: str
    """Output directory (created)."""
    seed: int = 0
    """Seed; the same seed gives byte-identical files."""
    scale: float = 1.0
    """Multiplies the number of books/reports/papers documents (1.0 ≈ 0.95 MB; cot.jsonl adds ≈ 1.2 MB)."""
    cot_records: int = 600
    """Think-format records in cot.jsonl."""
    rm_pairs: int = 600
    """Training preference pairs."""
    rm_heldout: int = 150
    """Held-out preference pairs."""
    rl_prompts: int = 256
    """Training RL prompts."""
    rl_heldout: int = 64
    """Held-out RL prompts."""


class _Writer:
    """Fills sentence templates from one topic's word lists."""

    def __init__(self, rng: random.Random, lang: str, topic: str) -> None:
        self.rng, self.lang, self.topic = rng, lang, topic
        self.words = (lex.EN_TOPICS if lang == "en" else lex.ZH_TOPICS)[topic]

    def fill(self, template: str) -> str:
        rng, w = self.rng, self.words
        nouns = rng.sample(w["nouns"], 3)
        adjs = rng.sample(w["adjs"], 2)
        names = rng.sample(lex.EN_NAMES if self.lang == "en" else lex.ZH_NAMES, 2)
        year = rng.randint(2005, 2024)
        if self.lang == "en":
            verb = rng.choice(w["verbs"] + lex.EN_COMMON_VERBS)
            verb_slots = {"vb": verb[0], "v3": verb[1], "vp": verb[2]}
        else:
            verb_slots = {"v": rng.choice(w["verbs"])}
        slots = {
            "n1": nouns[0], "n2": nouns[1], "n3": nouns[2], "adj": adjs[0], "adj2": adjs[1],
            "place": rng.choice(w["places"]), "topic": self.topic, "name": names[0], "name2": names[1],
            "time": rng.choice(lex.EN_TIMES if self.lang == "en" else lex.ZH_TIMES),
            "pct": str(rng.randint(3, 60)), "count": str(rng.randint(12, 900)),
            "year": str(year), "year0": str(year - rng.randint(1, 5)), "year1": str(year + rng.randint(1, 6)),
            **verb_slots,
        }
        text = _SLOT.sub(lambda m: slots[m.group(1)], template)
        if self.lang == "en":
            text = _A_BEFORE_VOWEL.sub(r"\1n ", text)
        return text[0].upper() + text[1:]

    def sentences(self, templates: list[str], n: int) -> list[str]:
        return [self.fill(self.rng.choice(templates)) for _ in range(n)]

    def paragraph(self, templates: list[str], lo: int = 3, hi: int = 6) -> str:
        sep = " " if self.lang == "en" else ""
        return sep.join(self.sentences(templates, self.rng.randint(lo, hi)))


def _pick_topic(rng: random.Random, lang: str) -> str:
    return rng.choice(sorted(lex.EN_TOPICS if lang == "en" else lex.ZH_TOPICS))


def _book(rng: random.Random, lang: str) -> tuple[str, str]:
    topic = _pick_topic(rng, lang)
    w = _Writer(rng, lang, topic)
    noun, adj, place = rng.choice(w.words["nouns"]), rng.choice(w.words["adjs"]), rng.choice(w.words["places"])
    mixed = (lex.EN_PAST + lex.EN_PRESENT) if lang == "en" else (lex.ZH_PAST + lex.ZH_PRESENT)
    past = lex.EN_PAST if lang == "en" else lex.ZH_PAST
    if lang == "en":
        parts = [f"The {adj.capitalize()} {noun.capitalize()} of {place.replace('the ', '').title()}"]
    else:
        parts = [f"《{place}的{adj}{noun}》"]
    for ch in range(1, rng.randint(3, 5) + 1):
        parts.append(f"Chapter {ch}" if lang == "en" else f"第{'一二三四五六'[ch - 1]}章")
        parts.extend(w.paragraph(mixed if i else past, 4, 7) for i in range(rng.randint(3, 5)))
    return topic, "\n\n".join(parts)


def _report(rng: random.Random, lang: str) -> tuple[str, str]:
    topic = _pick_topic(rng, lang)
    w = _Writer(rng, lang, topic)
    year = rng.randint(2010, 2024)
    rep = lex.EN_REPORT if lang == "en" else lex.ZH_REPORT
    pres = lex.EN_PRESENT if lang == "en" else lex.ZH_PRESENT
    if lang == "en":
        heads = [f"Report on {topic} {year}", "Summary", "Background", "Findings", "Discussion", "Recommendations"]
    else:
        heads = [f"{year}年{topic}报告", "摘要", "背景", "主要发现", "讨论", "建议"]
    findings = "\n".join(f"{i}. {s}" for i, s in enumerate(w.sentences(rep, rng.randint(3, 6)), start=1))
    body = [heads[0], heads[1], w.paragraph(pres + rep, 3, 5), heads[2], w.paragraph(pres, 4, 6), heads[3], findings,
            heads[4], w.paragraph(pres + rep, 4, 6), w.paragraph(pres, 3, 5), heads[5], w.paragraph(rep + pres, 2, 4)]
    return topic, "\n\n".join(body)


def _paper(rng: random.Random, lang: str) -> tuple[str, str]:
    topic = _pick_topic(rng, lang)
    w = _Writer(rng, lang, topic)
    pap = lex.EN_PAPER if lang == "en" else lex.ZH_PAPER
    pres = lex.EN_PRESENT if lang == "en" else lex.ZH_PRESENT
    noun = rng.choice(w.words["nouns"])
    if lang == "en":
        heads = [f"On the {noun} in {topic}", "Abstract", "1 Introduction", "2 Method", "3 Results", "4 Conclusion"]
    else:
        heads = [f"论{topic}中的{noun}", "摘要", "一、引言", "二、方法", "三、结果", "四、结论"]
    body = [heads[0], heads[1], w.paragraph(pap, 3, 4)]
    for head in heads[2:]:
        body += [head] + [w.paragraph(pap + pres, 3, 6) for _ in range(rng.randint(1, 3))]
    return topic, "\n\n".join(body)


def _answer(rng: random.Random, lang: str, topic: str, lo: int, hi: int) -> str:
    """Fluent on-topic text whose count_words lies in [lo, hi] (sentences picked to fit)."""
    w = _Writer(rng, lang, topic)
    templates = lex.EN_PRESENT if lang == "en" else lex.ZH_PRESENT
    sep = " " if lang == "en" else ""
    target = rng.randint(lo, hi)
    out: list[str] = []
    count = 0
    while count < lo:
        room = (target if count + 3 < target else hi) - count
        for _ in range(200):
            sent = w.fill(rng.choice(templates))
            if count_words(sent) <= room:
                break
        else:  # pragma: no cover - the lexicon has 3- and 4-unit sentences
            raise RuntimeError(f"cannot fill {lo}-{hi} words on {topic!r}")
        out.append(sent)
        count += count_words(sent)
    return sep.join(out)


def _question(rng: random.Random, lang: str, topic: str, lo: int, hi: int) -> tuple[str, int, int]:
    """A request stating a length; returns (question, lower, upper) with the stated range."""
    if rng.random() < 0.3:  # "about N words": ±10% (the range-prediction rule, paper.md §1.3)
        n = (lo + hi) // 2
        lo, hi = round(n * 0.9), round(n * 1.1)
        q = f"Write about {n} words on {topic}." if lang == "en" else f"用大约{n}字介绍{topic}。"
        return q, lo, hi
    forms = (["Write a note of {lo} to {hi} words about {t}.", "In {lo} to {hi} words, describe {t}.",
              "Write a short paragraph about {t} in {lo} to {hi} words."] if lang == "en" else
             ["请写一段{lo}到{hi}字的短文，主题是{t}。", "围绕{t}写{lo}至{hi}字的文字。"])
    return rng.choice(forms).format(lo=lo, hi=hi, t=topic), lo, hi


def _think(rng: random.Random, lang: str, topic: str, lo: int, hi: int) -> str:
    w = _Writer(rng, lang, topic)
    n1, n2, n3 = rng.sample(w.words["nouns"], 3)
    if lang == "en":
        return (f"The user wants {lo} to {hi} words about {topic}. I will start with the {n1}, then describe "
                f"the {n2} and the {n3}, and end with a short line. Tone: {rng.choice(lex.EN_TONES)}.")
    return (f"用户需要{lo}到{hi}字，主题是{topic}。我先写{n1}，再写{n2}和{n3}，最后用一句短话收尾。"
            f"语气：{rng.choice(lex.ZH_TONES)}。")


def _range(rng: random.Random, lo_choices: Iterable[int], widths: Iterable[int]) -> tuple[int, int]:
    lo = rng.choice(list(lo_choices))
    return lo, lo + rng.choice(list(widths))


def _cot_record(rng: random.Random, i: int) -> dict[str, Any]:
    lang = "zh" if rng.random() < 0.3 else "en"
    topic = _pick_topic(rng, lang)
    q, lo, hi = _question(rng, lang, topic, *_range(rng, range(20, 80, 10), (20, 30)))
    answer = _answer(rng, lang, topic, lo, hi)
    text = f"{format_think_prompt(q, lang)} <think>{_think(rng, lang, topic, lo, hi)}</think> <answer>{answer}</answer>"
    return {"id": f"cot-{i:05d}", "text": text, "source": "cot", "language": lang, "question": q,
            "length_lower": lo, "length_upper": hi, "answer_words": count_words(answer)}


def _corrupt(rng: random.Random, lang: str, topic: str, chosen: str, lo: int, hi: int) -> tuple[str, str]:
    """A rejected answer of similar length: repetitive, shuffled or off-topic."""
    kind = rng.choice(["repetitive", "shuffled", "off_topic"])
    sep = " " if lang == "en" else ""
    if kind == "repetitive":
        sent = _Writer(rng, lang, topic).fill(rng.choice(lex.EN_PRESENT[:6] if lang == "en" else lex.ZH_PRESENT[:4]))
        reps = max(2, round(count_words(chosen) / max(count_words(sent), 1)))
        return kind, sep.join([sent] * reps)
    if kind == "shuffled":
        units = chosen.replace(".", "").replace(",", "").split() if lang == "en" else list(_CJK.findall(chosen))
        rng.shuffle(units)
        return kind, (" ".join(units) + ".") if lang == "en" else ("".join(units) + "。")
    other = rng.choice([t for t in sorted(lex.EN_TOPICS if lang == "en" else lex.ZH_TOPICS) if t != topic])
    return kind, _answer(rng, lang, other, lo, hi)


def _rm_pair(rng: random.Random, i: int, tag: str) -> dict[str, Any]:
    lang = "zh" if rng.random() < 0.3 else "en"
    topic = _pick_topic(rng, lang)
    q, lo, hi = _question(rng, lang, topic, *_range(rng, range(20, 70, 10), (20, 30)))
    chosen = _answer(rng, lang, topic, lo, hi)
    kind, rejected = _corrupt(rng, lang, topic, chosen, lo, hi)
    return {"pair_id": f"rm-{tag}-{i:05d}", "prompt": q, "chosen": chosen, "rejected": rejected,
            "rejected_kind": kind, "language": lang}


def _rl_prompt(rng: random.Random, i: int, tag: str) -> dict[str, Any]:
    lang = "zh" if rng.random() < 0.3 else "en"
    topic = _pick_topic(rng, lang)
    q, lo, hi = _question(rng, lang, topic, *_range(rng, (20, 30, 40), (20,)))
    return {"prompt_id": f"demo-{tag}-{i:05d}", "question": q, "language": lang,
            "length_lower": lo, "length_upper": hi}


def is_heldout_text(text: str) -> bool:
    """Whether a prompt text belongs to the held-out side of the split (SHA-256 bucket, see module doc)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") % 100 < HELDOUT_PERCENT


def _draw(rng: random.Random, make: Callable, count: int, tag: str, key: str) -> list[dict[str, Any]]:
    """``count`` records of ``make`` whose ``key`` text is on the ``tag`` side of the split; held-out
    texts are also distinct from each other. Raises when the text space cannot supply them."""
    heldout, out, seen = tag == "heldout", [], set()
    for _ in range(200 * count + 1000):
        if len(out) == count:
            return out
        record = make(rng, len(out), tag)
        text = record[key]
        if is_heldout_text(text) != heldout or (heldout and text in seen):
            continue
        seen.add(text)
        out.append(record)
    if len(out) == count:
        return out
    raise ValueError(f"demo data: only {len(out)} distinct {tag} prompts exist for {make.__name__}, asked for {count}")


def _docs(rng: random.Random, make: Callable, source: str, n_en: int, n_zh: int) -> list[dict[str, Any]]:
    langs = ["en"] * n_en + ["zh"] * n_zh
    rng.shuffle(langs)
    out = []
    for i, lang in enumerate(langs):
        topic, text = make(rng, lang)
        out.append({"id": f"{source}-{i:05d}", "text": text, "source": source, "language": lang, "topic": topic})
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> dict[str, int]:
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.write_bytes(data)
    return {"records": len(records), "bytes": len(data)}


def make_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Write all demo files into ``cfg.out_dir``; returns the manifest (also written as manifest.json)."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def stream(name: str) -> random.Random:
        return random.Random(f"{cfg.seed}:{name}")

    def n(k: int) -> int:
        return max(1, round(k * cfg.scale))

    outputs: dict[str, list[dict[str, Any]]] = {
        "books.jsonl": _docs(stream("books"), _book, "books", n(60), n(20)),
        "reports.jsonl": _docs(stream("reports"), _report, "reports", n(110), n(36)),
        "papers.jsonl": _docs(stream("papers"), _paper, "papers", n(110), n(40)),
    }
    rng = stream("cot")
    outputs["cot.jsonl"] = [_cot_record(rng, i) for i in range(cfg.cot_records)]
    rng = stream("rm")
    outputs["rm_pairs.jsonl"] = _draw(rng, _rm_pair, cfg.rm_pairs, "train", "prompt")
    rng = stream("rm-heldout")
    outputs["rm_pairs_heldout.jsonl"] = _draw(rng, _rm_pair, cfg.rm_heldout, "heldout", "prompt")
    rng = stream("rl")
    outputs["rl_prompts.jsonl"] = _draw(rng, _rl_prompt, cfg.rl_prompts, "train", "question")
    rng = stream("rl-heldout")
    outputs["rl_prompts_heldout.jsonl"] = _draw(rng, _rl_prompt, cfg.rl_heldout, "heldout", "question")
    manifest = {"generator": "megatron_lwz.data.demo", "version": 2, "seed": cfg.seed, "scale": cfg.scale,
                "corpus": ["books.jsonl", "reports.jsonl", "papers.jsonl", "cot.jsonl"],
                "files": {name: _write_jsonl(out / name, recs) for name, recs in outputs.items()}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
