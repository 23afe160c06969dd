"""Format/repetition RM timing on synthetic answers of 1K, 4K and 14K words (``lwz bench rewards``).

The Format RM runs on every one of the G × prompts samples of a GRPO step on CPU, so it must be
linear in the answer length and fast at the paper's output sizes (≤ 14K tokens). The baseline in the
same run is one ``count_words`` pass (two regex scans, the cheapest possible look at the text); the
table reports ms per call, ms per 1K words, the ratio to that baseline, and the growth of the per-1K
cost from the smallest to the largest size (≈ 1 means linear).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass

from megatron_lwz.rewards.format import FormatRewardConfig, format_reward
from megatron_lwz.rewards.length import count_words

_FUNCTION = ("the of and to in a is that for it as with was on be by this are from at or an have not "
             "which but their they more can its has been also these will other into than most such").split()
_CONTENT = ("city park tree water climate policy planner budget resident district housing street garden "
            "heat flood rain summer community school health study data research market energy carbon "
            "transport bus rail bicycle road traffic noise air quality river coast storm drainage soil "
            "plant species habitat biodiversity design maintenance funding council investment equity rent "
            "tenant neighbourhood history culture festival library museum market shop worker family child "
            "elderly walk bench shade lawn meadow roof wall facade courtyard square plaza canal bridge "
            "survey report evidence benefit cost risk program initiative strategy future decade century "
            "growth decline pattern trend network system infrastructure capacity demand supply resource "
            "local national global regional urban rural public private green sustainable resilient "
            "affordable dense open narrow wide historic modern ambitious careful gradual rapid").split()
_ZH_CHARS = "城市公园绿地树木雨水气候政策规划预算居民街区住房花园高温洪水夏季社区学校健康研究数据市场能源交通空气质量河流土壤植物设计维护资金投资租金历史文化家庭儿童老人广场桥梁报告证据风险项目战略未来发展系统资源公共私人绿色可持续韧性"


def synthetic_answer(num_words: int, *, repeat: float = 0.0, language: str = "en", seed: int = 0) -> str:
    """Prose-like answer of ~``num_words`` words: Zipf-distributed vocabulary, 8–28-word sentences,
    3–7-sentence paragraphs, a heading every ~5 paragraphs. ``repeat`` = share of paragraphs that copy
    an earlier one (half verbatim, half with ~3 words changed)."""
    rng = random.Random(seed)
    vocab = _FUNCTION + _CONTENT
    weights = [1.0 / (rank + 1) for rank in range(len(vocab))]
    paragraphs: list[str] = []
    words = 0
    while words < num_words:
        if paragraphs and rng.random() < repeat:
            para = rng.choice([p for p in paragraphs if not p.startswith("#")] or paragraphs)
            if rng.random() < 0.5:
                tokens = para.split(" ")
                for _ in range(3):
                    tokens[rng.randrange(len(tokens))] = rng.choice(_CONTENT)
                para = " ".join(tokens)
        elif len(paragraphs) % 5 == 0:
            para = "## " + " ".join(rng.choices(_CONTENT, k=3)).title()
        else:
            sentences = []
            for _ in range(rng.randint(3, 7)):
                if language == "zh":
                    sentences.append("".join(rng.choices(_ZH_CHARS, k=rng.randint(12, 40))) + "。")
                else:
                    body = rng.choices(vocab, weights=weights, k=rng.randint(8, 28))
                    sentences.append(" ".join(body).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
            para = ("" if language == "zh" else " ").join(sentences)
        paragraphs.append(para)
        words += count_words(para)
    return "\n\n".join(paragraphs)


@dataclass(kw_only=True)
class BenchRow:
    """Timing of one (size, variant) cell."""

    words: int
    variant: str
    ms: float
    ms_per_1k_words: float
    ratio_vs_count_words: float
    score: float


def _median_ms(fn, repeats: int) -> float:
    """Median CPU time of ``fn`` in ms: process CPU time, so other jobs on a shared box do not count."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def run_bench(sizes: tuple[int, ...] = (1000, 4000, 14000), repeats: int = 15,
              cfg: FormatRewardConfig | None = None, print_table: bool = True) -> dict:
    """Time ``format_reward`` per size and variant; returns (and prints) the JSON summary."""
    cfg = cfg or FormatRewardConfig()
    variants = {"clean": dict(repeat=0.0), "repetitive": dict(repeat=0.35), "zh": dict(language="zh")}
    rows: list[BenchRow] = []
    for words in sizes:
        for name, kwargs in variants.items():
            response = f"<think>plan</think>\n<answer>{synthetic_answer(words, seed=words, **kwargs)}</answer>"
            n = count_words(response)
            format_reward(response, cfg)  # warm-up (regex caches, numpy)
            ms = _median_ms(lambda text=response: format_reward(text, cfg), repeats)
            base = _median_ms(lambda text=response: count_words(text), repeats)
            score = format_reward(response, cfg).score
            rows.append(BenchRow(words=n, variant=name, ms=ms, ms_per_1k_words=ms / n * 1e3,
                                 ratio_vs_count_words=ms / base, score=score))
    clean = [r for r in rows if r.variant == "clean"]
    summary = {
        "bench": "rewards_format",
        "rows": [r.__dict__ for r in rows],
        "max_ms_at_largest": max(r.ms for r in rows if r.words >= 0.9 * max(sizes)),
        "per_1k_growth_small_to_large": clean[-1].ms_per_1k_words / clean[0].ms_per_1k_words,
    }
    if print_table:
        print(f"{'words':>7} {'variant':>11} {'ms':>8} {'ms/1Kw':>8} {'x count_words':>13} {'score':>6}")
        for r in rows:
            print(f"{r.words:>7} {r.variant:>11} {r.ms:>8.2f} {r.ms_per_1k_words:>8.3f} "
                  f"{r.ratio_vs_count_words:>13.1f} {r.score:>6.3f}")
        print(json.dumps(summary, separators=(",", ":")))
    return summary
