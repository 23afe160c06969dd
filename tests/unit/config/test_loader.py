"""YAML + dotted overrides → typed config tree; errors name the field."""

from __future__ import annotations

import pytest

from megatron_lwz.config.base import ConfigError, load_config, parse_overrides, to_dict
from megatron_lwz.pretrain.config import PretrainJobConfig

RECIPE = """
model: {preset: tiny}
optim: {lr: 1.0e-3}
data:
  tokenizer: {path: tok}
  sources: [{name: a, prefix: p/a, weight: 2}]
"""


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    cfg = load_config(PretrainJobConfig, path, ["optim.lr=1e-5", "parallel.tensor_parallel=2", "model.qkv_bias=false"])
    assert cfg.optim.lr == 1e-5 and cfg.parallel.tensor_parallel == 2 and cfg.model.qkv_bias is False
    assert cfg.data.sources[0].weight == 2.0 and isinstance(cfg.data.sources[0].weight, float)
    # round trip through plain data
    assert to_dict(cfg)["data"]["sources"][0]["prefix"] == "p/a"


def test_unknown_field_suggests(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    with pytest.raises(ConfigError, match=r"optim.lrr: unknown field of OptimConfig \(did you mean 'lr'\?\)"):
        load_config(PretrainJobConfig, path, ["optim.lrr=1"])


def test_type_errors_name_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    with pytest.raises(ConfigError, match=r"parallel.tensor_parallel: expected an integer, got 'two'"):
        load_config(PretrainJobConfig, path, ["parallel.tensor_parallel=two"])
    with pytest.raises(ConfigError, match=r"model.layer_spec: 'fast' is not one of"):
        load_config(PretrainJobConfig, path, ["model.layer_spec=fast"])


def test_missing_required_section(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {preset: tiny}\n")
    with pytest.raises(ConfigError, match=r"missing required field\(s\) \['data'\]"):
        load_config(PretrainJobConfig, path)


def test_env_expansion(tmp_path, monkeypatch):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE.replace("{path: tok}", '{path: "${TOKDIR:-fallback}/tok"}'))
    assert load_config(PretrainJobConfig, path).data.tokenizer.path == "fallback/tok"
    monkeypatch.setenv("TOKDIR", "/scratch")
    assert load_config(PretrainJobConfig, path).data.tokenizer.path == "/scratch/tok"


def test_parse_overrides_nesting():
    assert parse_overrides(["a.b.c=1", "a.b.d=[1, 2]", "e=x"]) == {"a": {"b": {"c": 1, "d": [1, 2]}}, "e": "x"}
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_overrides(["novalue"])
