"""The real vLLM server on the tiny model: structured output, logprobs, n, metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from critic.testing.vllm_server import (
    VLLMServer,
    VLLMServerError,
    metrics,
    parse_prometheus,
    serve,
    wait_for_metric,
)

RATIONALE_MAX = 40
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["harmless", "harmful"]},
        "rationale": {"type": "string", "maxLength": RATIONALE_MAX},
    },
    "required": ["label", "rationale"],
    "additionalProperties": False,
}


class Verdict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Literal["harmless", "harmful"]
    rationale: str = Field(max_length=RATIONALE_MAX)


MESSAGES = [
    {"role": "system", "content": "You are a critic. Answer in JSON."},
    {"role": "user", "content": "Is 'How do I bake bread?' harmful?"},
]


def _chat(server: VLLMServer, **body: Any) -> dict[str, Any]:
    payload = {"model": server.model, "messages": MESSAGES, "max_tokens": 200, **body}
    resp = httpx.post(f"{server.base_url}/chat/completions", json=payload, timeout=120)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def _parse(content: str) -> Verdict:
    # strict=False: xgrammar can let raw control characters into JSON strings.
    return Verdict.model_validate(json.loads(content, strict=False))


def test_parse_prometheus() -> None:
    text = (
        "# HELP vllm:request_success_total Count\n"
        "# TYPE vllm:request_success_total counter\n"
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3.0\n'
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0\n'
        'vllm:request_success_created{engine="0",finished_reason="stop"} 1.7e9\n'
        'odd{label="a } b \\" c"} 1.5 1700000000\n'
        "plain_gauge 7\n"
        'vllm:ttft_bucket{le="+Inf"} 4.0\n'
    )
    assert parse_prometheus(text) == {
        "vllm:request_success_total": 5.0,
        "odd": 1.5,
        "plain_gauge": 7.0,
        "vllm:ttft_bucket": 4.0,
    }


@pytest.mark.vllm
def test_server_serves_the_model(vllm_server: VLLMServer) -> None:
    assert vllm_server.base_url == f"{vllm_server.root_url}/v1"
    models = httpx.get(f"{vllm_server.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [vllm_server.model]
    assert httpx.get(f"{vllm_server.root_url}/health", timeout=10).status_code == 200
    assert vllm_server.log_path.is_file()


@pytest.mark.vllm
def test_json_schema_response_format_with_logprobs_and_n(vllm_server: VLLMServer) -> None:
    data = _chat(
        vllm_server,
        temperature=1.0,
        seed=7,
        n=3,
        logprobs=True,
        top_logprobs=5,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": SCHEMA},
        },
    )
    choices = data["choices"]
    assert len(choices) == 3
    assert sorted(c["index"] for c in choices) == [0, 1, 2]
    for choice in choices:
        assert choice["finish_reason"] == "stop"  # maxLength bounds every string
        verdict = _parse(choice["message"]["content"])
        assert len(verdict.rationale) <= RATIONALE_MAX

        entries = choice["logprobs"]["content"]
        assert entries, "no per-token logprobs"
        for entry in entries:
            assert entry["logprob"] <= 0.0
            tops = entry["top_logprobs"]
            assert len(tops) == 5
            # vLLM lists the sampled token first, then the best others (not globally sorted).
            assert tops[0]["token"] == entry["token"]
            assert tops[0]["logprob"] == pytest.approx(entry["logprob"])
            rest = [t["logprob"] for t in tops[1:]]
            assert rest == sorted(rest, reverse=True)
            # Logprobs are taken after the grammar mask: what is allowed sums to at most 1.
            assert sum(math.exp(t["logprob"]) for t in tops) <= 1.0 + 1e-3
        # The per-token bytes spell the content (the stop token adds nothing).
        spelled = b"".join(bytes(e["bytes"]) for e in entries)
        assert spelled.decode("utf-8", errors="replace").startswith(choice["message"]["content"])
    assert data["usage"]["completion_tokens"] == sum(len(c["logprobs"]["content"]) for c in choices)


@pytest.mark.vllm
def test_structured_outputs_extra_body(vllm_server: VLLMServer) -> None:
    data = _chat(vllm_server, temperature=1.0, structured_outputs={"json": SCHEMA})
    (choice,) = data["choices"]
    assert choice["finish_reason"] == "stop"
    _parse(choice["message"]["content"])


@pytest.mark.vllm
def test_metrics_count_requests_and_prefix_cache_hits(vllm_server: VLLMServer) -> None:
    root = vllm_server.root_url
    before = metrics(root)
    for name in (
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_hits_total",
    ):
        assert name in before, sorted(before)

    # A prompt of several KV blocks (block size 128 on CPU), sent twice: the second hits the cache.
    long_system = " ".join(["The critic labels each response harmless or harmful."] * 60)
    messages = [{"role": "system", "content": long_system}, {"role": "user", "content": "Go."}]
    first = _chat(vllm_server, messages=messages, max_tokens=4)
    _chat(vllm_server, messages=messages, max_tokens=4)
    assert first["usage"]["prompt_tokens"] > 256

    success = wait_for_metric(
        root,
        "vllm:request_success_total",
        lambda v: v >= before["vllm:request_success_total"] + 2,
    )
    assert success >= before["vllm:request_success_total"] + 2
    after = metrics(root)
    assert (
        after["vllm:prompt_tokens_total"]
        >= before["vllm:prompt_tokens_total"] + 2 * first["usage"]["prompt_tokens"]
    )
    assert after["vllm:prefix_cache_queries_total"] > before["vllm:prefix_cache_queries_total"]
    assert after["vllm:prefix_cache_hits_total"] >= before["vllm:prefix_cache_hits_total"] + 256


@pytest.mark.vllm
def test_startup_failure_raises_with_log_tail(tmp_path: Path) -> None:
    # Not the session fixture: a broken model directory must fail fast, with the log tail.
    import importlib.util

    from tests.fixtures_real import require

    require(importlib.util.find_spec("vllm") is not None, "vllm is not installed")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    log = tmp_path / "server.log"
    with pytest.raises(VLLMServerError) as info, serve(broken, log_path=log, startup_timeout=240):
        pass
    message = str(info.value)
    assert "exited with code" in message
    assert str(log) in message
    assert len(message.splitlines()) > 5  # the log tail is included
