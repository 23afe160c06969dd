"""OpenAI-compatible client against a local stub server: retries, timeouts, fatal errors, parsing."""

import pytest

from megatron_lwz.rewards.llm_client import EndpointConfig, LLMError, OpenAIClient, extract_json, strip_reasoning


def _client(url, **kw):
    sleeps = []
    cfg = EndpointConfig(url=url, model="stub", **{"backoff_s": 0.01, "max_backoff_s": 0.02, **kw})
    return OpenAIClient(cfg, sleep=sleeps.append), sleeps


def test_retries_transient_errors_then_succeeds(stub_server):
    stub_server.script = [("status", 503), ("status", 429), ("text", "hello")]
    client, sleeps = _client(stub_server.url, max_retries=3)
    assert client.complete("hi") == "hello"
    assert len(stub_server.requests) == 3 and len(sleeps) == 2
    assert sleeps[1] > sleeps[0] * 1.1  # exponential backoff (0.01 then 0.02, ±25% jitter)
    request = stub_server.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "stub" and request["body"]["messages"][0]["content"] == "hi"


def test_gives_up_after_max_retries(stub_server):
    stub_server.script = [("status", 500)] * 5
    client, _ = _client(stub_server.url, max_retries=2)
    with pytest.raises(LLMError, match="3 attempts"):
        client.complete("hi")
    assert len(stub_server.requests) == 3


def test_client_error_is_not_retried(stub_server):
    stub_server.script = [("status", 400), ("text", "never reached")]
    client, _ = _client(stub_server.url, max_retries=3)
    with pytest.raises(LLMError, match="HTTP 400"):
        client.complete("hi")
    assert len(stub_server.requests) == 1


def test_timeout_is_retried(stub_server):
    stub_server.script = [("sleep", 2.0, "too late"), ("text", "on time")]
    client, sleeps = _client(stub_server.url, timeout_s=0.6, max_retries=1)  # room for a loaded 2-core box
    assert client.complete("hi") == "on time"
    assert len(sleeps) == 1


def test_malformed_reply_shape_and_body(stub_server):
    stub_server.script = [("raw", b'{"unexpected": 1}')]
    client, _ = _client(stub_server.url, max_retries=0)
    with pytest.raises(LLMError, match="unexpected reply shape"):
        client.complete("hi")
    stub_server.script = [("raw", b"not json"), ("text", "recovered")]
    client, _ = _client(stub_server.url, max_retries=1)
    assert client.complete("hi") == "recovered"


def test_generate_keeps_order_and_isolates_failures(stub_server):
    stub_server.responder = lambda body: "echo:" + body["messages"][0]["content"]
    client, _ = _client(stub_server.url, concurrency=4)
    prompts = [f"p{i}" for i in range(10)]
    assert client.generate(prompts) == [f"echo:{p}" for p in prompts]
    stub_server.script = [("status", 404)]  # the first request of the next batch fails for good
    client, _ = _client(stub_server.url, concurrency=1)
    out = client.generate(["a", "b"])
    assert isinstance(out[0], LLMError) and out[1] == "echo:b"


def test_completions_api_and_auth_header(stub_server, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "secret")
    stub_server.script = [("text", "raw completion")]
    client, _ = _client(stub_server.url, api="completions", api_key_env="STUB_KEY")
    assert client.complete("prompt") == "raw completion"
    request = stub_server.requests[0]
    assert request["path"] == "/v1/completions" and request["body"]["prompt"] == "prompt"
    assert request["auth"] == "Bearer secret"


def test_reasoning_content_field_is_kept_as_think(stub_server):
    stub_server.script = [("raw", b'{"choices":[{"message":{"content":"{\\"range\\": [1, 2]}",'
                                  b'"reasoning_content":"thinking {\\"range\\": [9, 9]}"}}]}')]
    client, _ = _client(stub_server.url)
    text = client.complete("hi")
    assert text.startswith("<think>thinking") and extract_json(text) == {"range": [1, 2]}


@pytest.mark.parametrize("text,expected", [
    ('{"range": [800, 1000]}', {"range": [800, 1000]}),
    ('<think>Example {"range": [1800, 2200]} ... so</think>\n{"range": [400, 800]}', {"range": [400, 800]}),
    ('Okay, the query asks... </think>\n```json\n{"range": [600, 900]}\n```', {"range": [600, 900]}),
    ('First {"range": [1, 2]} then final: {"range": [3, 4]} done.', {"range": [3, 4]}),
    ('{"range": [5, 6], "meta": {"note": "x"}}', {"range": [5, 6], "meta": {"note": "x"}}),
    ('<think>cut off {"range": [800, 1000]}', None),   # unfinished reasoning: no answer yet
    ("no json at all", None),
    ('{"range": [1, 2}', None),
])
def test_extract_json(text, expected):
    assert extract_json(text) == expected


def test_strip_reasoning():
    assert strip_reasoning("<think>a</think>b<think>c</think>d") == "bd"
    assert strip_reasoning("reasoning without opening tag</think>answer") == "answer"
    assert strip_reasoning("answer<think>unfinished") == "answer"


def test_endpoint_config_validation():
    with pytest.raises(ValueError, match="http"):
        EndpointConfig(url="localhost:8000", model="m")
