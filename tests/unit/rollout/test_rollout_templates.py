"""Prompt templates: exact released strings (paper.md §6.1/§6.2) and CJK selection."""

import hashlib
import importlib

import pytest

from megatron_lwz.rollout import templates as T

# sha256 of the strings as copied from the released model card (reference paper.md §6.1 / §6.2).
SHA = {
    "THINK_TEMPLATE_EN": "66e03fdadb7b7c66f4aabeec22f768c7e77011948e30102b023d09dc31089f78",
    "THINK_TEMPLATE_ZH": "47e9f2c45d77bb3da8a1f3f8990e7d4cbad0dfe48c8ab832e02e37df284d205c",
    "DIRECT_INSTRUCTION": "96b6f3502be7ab137c4e2e977329a16ff240858116a5007da5bd2e5c86a579b4",
}


@pytest.mark.parametrize("name", sorted(SHA))
def test_template_strings_are_the_released_ones(name):
    assert hashlib.sha256(getattr(T, name).encode("utf-8")).hexdigest() == SHA[name]


def test_english_template_details():
    en = T.THINK_TEMPLATE_EN
    assert "\n" not in en and en.count("{question}") == 1
    assert en.endswith("refinement.</answer>  <|user|>: {question} <|assistant|>:")  # two spaces
    assert en.count("etc..") == 2 and "design—including" in en


def test_language_selection_and_substitution():
    zh = T.format_prompt("写一篇关于秋天的散文")
    assert zh.startswith("用户与助手之间的对话。") and zh.endswith("<|用户|>: 写一篇关于秋天的散文 <|助手|>:")
    en = T.format_prompt("Write {a} story about 50% of {b}")  # braces / percent survive
    assert en.startswith("A conversation between the user and the assistant.")
    assert en.endswith("<|user|>: Write {a} story about 50% of {b} <|assistant|>:")
    mixed = T.format_prompt("Translate 春 into English")  # any CJK ideograph → Chinese template
    assert mixed.startswith("用户与助手之间的对话。")
    assert not T.is_chinese("こんにちは")  # kana are outside [\u4e00-\u9fff], like the released rule


def test_direct_template():
    text = T.format_prompt("Write a poem", template="direct")
    lines = text.split("\n")
    assert lines[0] == "A conversation between the user and the assistant."
    assert lines[4] == "<answer>Final written work.</answer>"
    assert lines[5] == "<|user|>: Write a poem <|assistant|>:"
    with pytest.raises(ValueError, match="template"):
        T.format_prompt("x", template="cot")


def test_default_stop():
    assert T.default_stop() == ["</answer>", "<|user|>", "<|endoftext|>"]
    stops = T.default_stop()
    stops.append("x")
    assert T.default_stop() == ["</answer>", "<|user|>", "<|endoftext|>"]


def test_same_strings_as_data_templates():
    """The data package carries its own copy of the think templates; they must not drift apart."""
    try:
        data = importlib.import_module("megatron_lwz.data.templates")
    except ImportError:
        pytest.skip("megatron_lwz.data.templates not present")
    assert data.THINK_TEMPLATE_EN == T.THINK_TEMPLATE_EN
    assert data.THINK_TEMPLATE_ZH == T.THINK_TEMPLATE_ZH
