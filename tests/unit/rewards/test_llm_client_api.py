"""The judge-client API (chat / chat_many / cache / usage / concurrency) against the loopback stub server."""

import json
import threading
import time

import pytest

from megatron_lwz.rewards.llm_cache import ResponseCache, cache_key
from megatron_lwz.rewards.llm_client import ChatResult, EndpointConfig, LLMError, OpenAIClient, Sampling


def _client(url, **kw):
    sleeps = []
    cfg = EndpointConfig(url=url, model="judge", **{"backoff_s": 0.01, "max_backoff_s": 0.05, **kw})
    return OpenAIClient(cfg, sleep=sleeps.append), sleeps


def _reply(text, prompt_tokens, completion_tokens, finish="stop"):
    return ("raw", json.dumps({"choices": [{"message": {"role": "assistant", "content": text},
                                            "finish_reason": finish}],
                               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}
                              ).encode())


def test_chat_sends_messages_and_sampling_and_counts_tokens(stub_server):
    stub_server.script = [_reply("verdict [[A]]", 11, 3, "length")]
    client, _ = _client(stub_server.url, temperature=0.6, max_tokens=100)
    messages = [{"role": "system", "content": "be fair"}, {"role": "user", "content": "compare"}]
    result = client.chat(messages, Sampling(temperature=1.0, top_p=0.95, seed=7, extra_body={"top_k": 20}))
    assert result == ChatResult(text="verdict [[A]]", prompt_tokens=11, completion_tokens=3, finish_reason="length")
    body = stub_server.requests[0]["body"]
    assert body["messages"] == messages and body["model"] == "judge"
    assert (body["temperature"], body["top_p"], body["seed"], body["top_k"], body["max_tokens"]) == (1.0, 0.95, 7, 20, 100)
    assert client.usage.as_dict() == {"requests": 1, "retries": 0, "cache_hits": 0, "failures": 0,
                                      "prompt_tokens": 11, "completion_tokens": 3}


def test_cache_resumes_without_requests_and_keys_on_sampling(stub_server, tmp_path):
    stub_server.responder = lambda body: f"T={body['temperature']}:" + body["messages"][-1]["content"]
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    client, _ = _client(stub_server.url, cache_path=str(tmp_path / "c.sqlite"), concurrency=3)
    first = client.chat_many(convs, Sampling(temperature=1.0))
    assert [r.text for r in first] == [f"T=1.0:q{i}" for i in range(6)] and len(stub_server.requests) == 6
    client.close()
    again, _ = _client(stub_server.url, cache_path=str(tmp_path / "c.sqlite"))
    second = again.chat_many(convs, Sampling(temperature=1.0))
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert len(stub_server.requests) == 6 and again.usage.cache_hits == 6  # zero new requests
    again.chat(convs[0], Sampling(temperature=0.5))  # other sampling → other key → one request
    again.chat(convs[0], Sampling(temperature=1.0, seed=1))  # a seed asks for an independent sample
    assert len(stub_server.requests) == 8
    again.chat(convs[0], Sampling(temperature=1.0, sample=1))  # a sample index: new key, same body
    assert len(stub_server.requests) == 9 and "sample" not in stub_server.requests[-1]["body"]
    first_q0 = next(r for r in stub_server.requests if r["body"]["messages"] == convs[0])
    assert stub_server.requests[-1]["body"] == first_q0["body"]


def test_failures_are_returned_not_cached_and_asked_again(stub_server, tmp_path):
    stub_server.script = [("status", 400), ("text", "fine")]
    client, _ = _client(stub_server.url, cache_path=str(tmp_path / "c.sqlite"), concurrency=1)
    out = client.chat_many([[{"role": "user", "content": "bad"}], [{"role": "user", "content": "good"}]])
    assert isinstance(out[0], LLMError) and out[0].status == 400 and out[1].text == "fine"
    assert client.usage.failures == 1
    stub_server.script = [("text", "now fine")]
    assert client.chat([{"role": "user", "content": "bad"}]).text == "now fine"
    assert len(stub_server.requests) == 3


def test_concurrency_limit_holds_across_threads(stub_server):
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(body):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return "ok"

    stub_server.responder = slow
    client, _ = _client(stub_server.url, concurrency=3)
    convs = [[{"role": "user", "content": str(i)}] for i in range(12)]
    threads = [threading.Thread(target=client.chat_many, args=(convs,)) for _ in range(2)]  # 2 callers share it
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["peak"] == 3 and len(stub_server.requests) == 24


def test_backoff_on_429_and_5xx(stub_server):
    stub_server.script = [("status", 429), ("status", 500), ("status", 502), ("text", "ok")]
    client, sleeps = _client(stub_server.url, max_retries=3, backoff_s=0.01, max_backoff_s=1.0)
    assert client.chat([{"role": "user", "content": "x"}]).text == "ok"
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]
    assert client.usage.retries == 3 and client.usage.requests == 4


def test_cache_key_is_canonical(tmp_path):
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 1.5})
    cache = ResponseCache(tmp_path / "sub" / "c.sqlite")
    cache.put("k", {"text": "t"})
    assert cache.get("k") == {"text": "t"} and cache.get("missing") is None and len(cache) == 1


def test_chat_rejects_completions_endpoint(stub_server):
    client, _ = _client(stub_server.url, api="completions")
    with pytest.raises(LLMError, match="api='chat'"):
        client.chat([{"role": "user", "content": "x"}])
