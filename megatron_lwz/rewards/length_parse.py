"""Deterministic parser for explicit length requests ("a 2,000-word essay", "不少于3000字"), tried before
the LLM range predictor (paper.md §1.3, rule 5: "If the query contains an explicit word-count
requirement, set the range to ±10% of that number").

Rules (N = the requested count, in words for English, characters for Chinese, like ``count_words``):

=============================  ==========================  ===============================================
request                        kind                        range
=============================  ==========================  ===============================================
"2,000 words", "about 800"     ``exact`` / ``about``       [round_down(0.9 N), round_up(1.1 N)]
"no more than N", "N字以内"     ``at_most``                 [round_down(0.9 N), N]
"at least N", "不少于N字"       ``at_least``                [N, round_up(1.1 N)]
"1500-2000 words", "N到M字"     ``range``                   [N, M] as written
=============================  ==========================  ===============================================

* Rounding: outward to multiples of 100 when N ≥ 1000 (the predictor's granularity, paper rule 2) and
  of 10 below (100 would turn "100 words" into [0, 200]); an explicit bound (the N of at_most/at_least,
  both ends of a range) is kept exactly as written.
* Caps (paper rule 3): bounds above 12,000 are clipped to 12,000; a request whose lower bound already
  exceeds 12,000 yields [0, 0] ("exceeds the limits", dropped from RL data by default).
* Counts below ``MIN_COUNT`` (10) are ignored ("in 5 words" is not a long-form request); Chinese
  numerals below 50 are words, not counts (十字路口, 八字, 一字不差).
* Ambiguity: several different constraints (e.g. "3 essays of 500 words each and a 200-word summary")
  return None and the LLM decides; one ``at_least`` plus one ``at_most`` combine into a range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from megatron_lwz.rewards.length import PREDICTOR_MAX_UPPER

LengthKind = Literal["exact", "about", "at_most", "at_least", "range"]
MIN_COUNT = 10
ZH_NUMERAL_MIN = 50

_EN_UNITS = {"zero": 0, "a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
             "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
             "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000}

_NUM = r"\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:\.\d+)?\s*[k千万](?![a-z])|\d+"
_EN_UNIT = r"\+?\s*-?\s*(?:words?|wds)\b"
_ZH_UNIT = r"\+?\s*个?\s*(?:汉字|中文字|字)(?![母幕典体号])"
_RANGE_SEP = r"\s*(?:-|~|to|至|到)\s*"

_EN_NUMBER_WORDS_RE = re.compile(
    r"\b(?:(" + "|".join(_EN_UNITS) + r")(?:[\s-](" + "|".join(_EN_UNITS) + r"))?[\s-])?(hundred|thousand)\b")
_ZH_NUMERAL_RE = re.compile(r"(?<![\d.])[零一二两三四五六七八九十百千万]+(?=\s*个?\s*字|\s*[-~到至]\s*[\d零一二两三四五六七八九十百千万]+\s*个?字)")
_MENTION_RE = re.compile(
    rf"(?:between\s+(?P<b_lo>{_NUM})\s+and\s+(?P<b_hi>{_NUM})\s*(?P<b_unit>{_EN_UNIT}))"
    rf"|(?:(?P<r_lo>{_NUM}){_RANGE_SEP}(?P<r_hi>{_NUM})\s*(?P<r_unit>{_EN_UNIT}|{_ZH_UNIT}))"
    rf"|(?:(?P<n>{_NUM})\s*(?P<unit>{_EN_UNIT}|{_ZH_UNIT}))"
    rf"|(?:(?:word\s+(?:count|limit)|字数)\s*(?:要求|需要|应该|应|须|必须|requirement)?\s*"
    rf"(?:of|is|should be|must be|在|为|是)?\s*[:：]?\s*(?P<q>[^\d\n]{{0,14}}?)\s*(?P<c>{_NUM}))"
)
_BEFORE: dict[LengthKind, re.Pattern] = {
    "at_most": re.compile(
        r"(?:no more than|not more than|(?:not|never|don't|do not|cannot|can't|shouldn't|must not|should not)"
        r" exceed(?:ing)?|not to exceed|no longer than|not longer than|at most|up to|maximum of|maximum|max\.?|"
        r"under|less than|fewer than|within|below|limit of|limited to|shorter than|不超过|不多于|不得超过|不能超过|"
        r"不要超过|不可超过|不超出|最多|至多|少于|低于|不大于|小于|限)\s*$"),
    "at_least": re.compile(
        r"(?:at least|no less than|not less than|no fewer than|not fewer than|minimum of|minimum|min\.?|"
        r"more than|over|upwards of|longer than|in excess of|exceed(?:ing)?|不少于|不低于|不得少于|不能少于|"
        r"至少|最少|超过|多于|大于|起码|不小于)\s*$"),
    "about": re.compile(r"(?:about|around|approximately|approx\.?|roughly|circa|some|nearly|close to|~|"
                        r"大约|大概|约|差不多)\s*$"),
}
"""Qualifiers right before the number; the longest match wins ("no less than" beats "less than")."""
_AFTER_UNIT = r"^\s*(?:个?字|words?)?\s*"
_AFTER: dict[LengthKind, re.Pattern] = {
    "at_most": re.compile(_AFTER_UNIT + r"(?:or less|or fewer|or under|max(?:imum)?\b|at most|limit|以内|之内|内|以下|为限)"),
    "at_least": re.compile(_AFTER_UNIT + r"(?:or more|or longer|minimum|min\b|at least|plus|以上|起)"),
    "about": re.compile(_AFTER_UNIT + r"(?:or so|左右|上下)"),
}
"""Qualifiers right after the number (and its unit); they take precedence over those before it."""


@dataclass(kw_only=True, frozen=True)
class ExplicitLength:
    """A length requirement found in a query and the Length RM range it maps to."""

    kind: LengthKind
    count: int
    """N (the lower end for 'range')."""
    count_hi: int | None = None
    """M for 'range'."""
    lower: int
    upper: int
    matched: str
    """The text that was matched (for logs and tests)."""


def _round_down(value: int, step: int) -> int:
    return value // step * step


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def range_for(kind: LengthKind, n: int, m: int | None = None) -> tuple[int, int]:
    """[lower, upper] for one requirement (module docstring rules; caps at 12,000 applied)."""
    step = 100 if n >= 1000 else 10
    lo_10, hi_10 = _round_down(9 * n // 10, step), _round_up(-(-11 * n // 10), step)
    lower, upper = {"exact": (lo_10, hi_10), "about": (lo_10, hi_10), "at_most": (lo_10, n),
                    "at_least": (n, hi_10), "range": (n, m if m is not None else n)}[kind]
    if lower > PREDICTOR_MAX_UPPER:
        return 0, 0
    return lower, min(upper, PREDICTOR_MAX_UPPER)


def _to_int(raw: str) -> int:
    raw = raw.replace(",", "").replace(" ", "")
    scale = {"k": 1000, "千": 1000, "万": 10000}.get(raw[-1:], 1)
    number = float(raw[:-1] if scale > 1 else raw)
    return int(round(number * scale))


def _zh_numeral(text: str) -> int:
    """Chinese numeral → int (一千五百 → 1500, 两万 → 20000, 三千五 → 3500)."""
    total, section, digit, last_unit = 0, 0, 0, 1
    for char in text:
        if char in _ZH_DIGITS:
            digit = _ZH_DIGITS[char]
        elif char in _ZH_UNITS:
            last_unit = _ZH_UNITS[char]
            section += (digit or 1) * last_unit
            digit = 0
        elif char == "万":
            total += (section + digit) * 10000
            section, digit, last_unit = 0, 0, 10000
    if digit and last_unit >= 100:  # "三千五" = 3500: a trailing digit is one unit below the last one
        digit *= last_unit // 10
    return total + section + digit


def _normalise(query: str) -> str:
    text = query.lower().translate(str.maketrans("０１２３４５６７８９，～–—", "0123456789,~--"))

    def en_words(match: re.Match) -> str:
        first, second = _EN_UNITS.get(match.group(1) or "a", 1), _EN_UNITS.get(match.group(2) or "", 0)
        # "twenty five hundred" = 25 × 100; "a five hundred" = 5 × 100 (the article is not a number)
        head = first + second if first >= 20 and second < 10 else (second or first)
        return str(head * (100 if match.group(3) == "hundred" else 1000))

    def zh_numeral(match: re.Match) -> str:
        value = _zh_numeral(match.group(0))  # below 50 it is a word, not a count: 十字路口, 八字, 一字不差
        return str(value) if value >= ZH_NUMERAL_MIN else match.group(0)

    text = _EN_NUMBER_WORDS_RE.sub(en_words, text)
    return _ZH_NUMERAL_RE.sub(zh_numeral, text)


def _kind(before: str, after: str) -> LengthKind:
    for kind, pattern in _AFTER.items():
        if pattern.match(after):
            return kind
    best: LengthKind = "exact"
    best_len = 0
    for kind, pattern in _BEFORE.items():
        match = pattern.search(before)
        if match and len(match.group(0).strip()) > best_len:
            best, best_len = kind, len(match.group(0).strip())
    return best


def _mentions(text: str) -> list[tuple[LengthKind, int, int | None, str]]:
    found = []
    for match in _MENTION_RE.finditer(text):
        groups = match.groupdict()
        before, after = text[max(0, match.start() - 30):match.start()], text[match.end():match.end() + 12]
        if groups["b_lo"] or groups["r_lo"]:
            lo, hi = _to_int(groups["b_lo"] or groups["r_lo"]), _to_int(groups["b_hi"] or groups["r_hi"])
            if MIN_COUNT <= lo < hi:
                found.append(("range", lo, hi, match.group(0)))
            continue
        raw = groups["n"] or groups["c"]
        n = _to_int(raw)
        if n < MIN_COUNT:
            continue
        if "+" in match.group(0):
            kind: LengthKind = "at_least"
        else:
            kind = _kind((before + (groups["q"] or "")).rstrip(), after)
            if kind == "exact" and "limit" in match.group(0):  # "word limit of 500"
                kind = "at_most"
        found.append((kind, n, None, match.group(0)))
    return found


def parse_explicit_length(query: str) -> ExplicitLength | None:
    """The Length RM range for an explicit length request in ``query``, or None (none / ambiguous)."""
    mentions = list(dict.fromkeys(_mentions(_normalise(query))))
    distinct = {(kind, n, m) for kind, n, m, _ in mentions}
    if len(distinct) == 1:
        kind, n, m, matched = mentions[0]
        lower, upper = range_for(kind, n, m)
        return ExplicitLength(kind=kind, count=n, count_hi=m, lower=lower, upper=upper, matched=matched)
    if len(distinct) == 2:
        by_kind = {kind: (n, matched) for kind, n, _, matched in mentions}
        if set(by_kind) == {"at_least", "at_most"} and by_kind["at_least"][0] < by_kind["at_most"][0]:
            lo, hi = by_kind["at_least"][0], by_kind["at_most"][0]
            lower, upper = range_for("range", lo, hi)
            return ExplicitLength(kind="range", count=lo, count_hi=hi, lower=lower, upper=upper,
                                  matched=f"{by_kind['at_least'][1]} / {by_kind['at_most'][1]}")
    return None
