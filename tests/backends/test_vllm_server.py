"""The vllm-server backend over real HTTP, against local aiohttp servers that misbehave on cue.

The fake servers (fake_server.py) drop connections, answer 429/5xx or a 400 verdict on cue; the
real vLLM servers are tested in test_pool_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from critic.backends import pool as pool_module
from critic.backends import vllm_server
from critic.backends.base import Request
from critic.backends.vllm_server import VLLMServerBackend
from critic.errors import BackendError
from tests.backends.fake_server import ANSWER, FakeServer, servers_in_thread


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_server, "backoff_s", lambda attempt: 0.01)
    monkeypatch.setattr(pool_module, "PROBE_AFTER_S", 0.05)


def req(text: str = "hello", affinity: str | None = None, **kw: Any) -> Request:
    return Request(messages=({"role": "user", "content": text},), affinity=affinity, **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_structured_output_samples_and_logprobs_go_out_and_come_back() -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string", "maxLength": 9}}}

    async def go() -> None:
        server = await FakeServer().start()
        backend = VLLMServerBackend(base_url=server.url)  # model: the one the server serves
        try:
            request = req(json_schema=schema, n=2, temperature=1.0, top_logprobs=2, seed=7)
            [gen] = await backend.generate([request])
            other = VLLMServerBackend(model="tiny", base_url=server.url, structured="openai")
            await other.generate([req(json_schema=schema)])
            await other.aclose()
        finally:
            await backend.aclose()
            await server.stop()
        assert backend.model == "tiny"
        sent = server.bodies[0]
        assert sent["structured_outputs"] == {"json": schema, "disable_any_whitespace": True}
        assert (sent["n"], sent["logprobs"], sent["top_logprobs"], sent["seed"]) == (2, True, 2, 7)
        assert server.bodies[1]["response_format"]["json_schema"]["schema"] == schema
        assert gen.error is None and [s.text for s in gen.samples] == [ANSWER, ANSWER]
        assert gen.prompt_tokens == 11 and gen.completion_tokens == 5
        assert gen.samples[0].logprobs is not None
        assert gen.samples[0].logprobs[0].top == {"harm": -0.1, "safe": -2.3}

    run(go())


def test_dropped_connections_429_and_5xx_are_retried_until_an_answer() -> None:
    async def go() -> None:
        server = await FakeServer(script=("drop", "500", "429", "503")).start()
        backend = VLLMServerBackend(base_url=server.url, max_retries=5)
        try:
            [gen] = await backend.generate([req()])
        finally:
            await backend.aclose()
            await server.stop()
        assert gen.error is None and gen.text == ANSWER
        assert server.actions == ["drop", "500", "429", "503", "ok"]
        assert backend.stats()["requests_sent"] == 5

    run(go())


def test_a_server_dropping_reused_keepalive_connections_fails_no_request() -> None:
    """Every request that arrives on a reused connection is dropped unanswered, which is what a
    client sees when the server closes an idle connection just as the request goes out."""

    async def go() -> None:
        server = await FakeServer(drop_reused=True).start()
        backend = VLLMServerBackend(base_url=server.url, concurrency=4, max_retries=2)
        try:
            for i in range(10):
                [gen] = await backend.generate([req(f"one {i}")])
                assert gen.error is None
            gens = await backend.generate([req(f"burst {i}") for i in range(12)])
        finally:
            await backend.aclose()
            await server.stop()
        assert all(g.error is None for g in gens)
        assert server.actions.count("ok") == 22 and "drop" in server.actions
        assert backend.pool.servers[0].up

    run(go())


def test_a_server_closing_idle_connections_on_its_own_timeout_fails_no_request() -> None:
    async def go() -> None:
        server = await FakeServer(keepalive_s=0.05).start()
        backend = VLLMServerBackend(base_url=server.url, concurrency=8, max_retries=1)
        try:
            for i in range(6):
                gens = await backend.generate([req(f"{i}-{k}") for k in range(8)])
                assert all(g.error is None for g in gens)
                await asyncio.sleep(0.1)  # longer than the server keeps an idle connection
        finally:
            await backend.aclose()
            await server.stop()
        assert server.actions.count("ok") == 48

    run(go())


def test_error_answers_map_to_kinds_and_are_not_retried() -> None:
    async def go() -> None:
        server = await FakeServer(script=("too_long", "bad")).start()
        backend = VLLMServerBackend(base_url=server.url)
        try:
            [long] = await backend.generate([req("long")])
            [bad] = await backend.generate([req("bad")])
        finally:
            await backend.aclose()
            await server.stop()
        assert long.error_kind == "prompt_too_long" and "maximum context length" in str(long.error)
        assert bad.error_kind == "request_rejected" and "n must be 1" in str(bad.error)
        assert len(server.bodies) == 2

    run(go())


def test_a_request_the_server_keeps_failing_while_it_answers_others_fails_alone() -> None:
    """A 500 for one request only is that request's problem: it fails, the server stays up."""

    def poison(body: dict[str, Any]) -> str | None:
        return "500" if "POISON" in body["messages"][0]["content"] else None

    async def go() -> None:
        server = await FakeServer(rule=poison, delay_s=0.005).start()
        backend = VLLMServerBackend(base_url=server.url, max_retries=3, concurrency=8)
        try:
            gens = await backend.generate([req("POISON")] + [req(f"ok {i}") for i in range(30)])
        finally:
            await backend.aclose()
            await server.stop()
        assert gens[0].error_kind == "backend_error" and "HTTP 500" in str(gens[0].error)
        assert all(g.error is None for g in gens[1:])
        assert backend.pool.servers[0].up

    run(go())


def test_a_server_answering_5xx_past_the_retries_is_marked_down_and_the_other_serves() -> None:
    async def go() -> None:
        bad = await FakeServer(default="503").start()
        good = await FakeServer().start()
        backend = VLLMServerBackend(base_url=[bad.url, good.url], max_retries=2, concurrency=4)
        try:
            gens = await backend.generate([req(f"r{i}", affinity=f"i{i}") for i in range(20)])
            stats = backend.stats()
        finally:
            await backend.aclose()
            await bad.stop()
            await good.stop()
        assert all(g.error is None for g in gens)
        assert good.actions.count("ok") == 20
        down, up = stats["servers"]
        assert down["url"] == bad.url and not down["up"] and "HTTP 503" in down["last_error"]
        assert up["up"] and up["requests"] == 20

    run(go())


def test_a_server_that_dies_is_left_its_requests_go_on_and_it_is_taken_back_when_up() -> None:
    async def go() -> None:
        first = await FakeServer(delay_s=0.01).start()
        second = await FakeServer(delay_s=0.01).start()
        backend = VLLMServerBackend(base_url=f"{first.url},{second.url}", concurrency=4)
        try:
            gens = await backend.generate([req(f"a{i}", affinity=f"a{i}") for i in range(8)])
            assert first.actions and second.actions
            port = first.port
            await first.stop()
            gens += await backend.generate([req(f"b{i}", affinity=f"a{i}") for i in range(16)])
            assert not backend.pool.servers[0].up
            revived = FakeServer(delay_s=0.01)
            revived.port = port
            await revived.start()
            await asyncio.sleep(0.1)  # past the probe back-off
            for _ in range(20):  # the next requests trigger the probe; it comes back
                gens += await backend.generate([req(f"c{k}") for k in range(4)])
                if backend.pool.servers[0].up and revived.actions:
                    break
                await asyncio.sleep(0.05)
            stats = backend.stats()
        finally:
            await backend.aclose()
            await second.stop()
            await revived.stop()
        assert all(g.error is None for g in gens)
        assert revived.actions, "the revived server got requests again"
        assert stats["servers"][0]["times_down"] == 1
        assert "ClientConnectorError" in stats["servers"][0]["last_error"]

    run(go())


def test_when_every_server_is_down_the_run_stops_naming_each_and_its_last_error() -> None:
    async def go() -> None:
        one = await FakeServer().start()
        two = await FakeServer(default="500").start()
        backend = VLLMServerBackend(base_url=[one.url, two.url], max_retries=1)
        await backend.check()
        await one.stop()
        try:
            with pytest.raises(BackendError) as err:
                await backend.generate([req(f"x{i}") for i in range(4)])
            with pytest.raises(BackendError):  # and stays stopped
                await backend.generate([req("later")])
        finally:
            await backend.aclose()
            await two.stop()
        message = str(err.value)
        assert "every vLLM server is down" in message
        # The error that took each server down, or the failed probe after it.
        assert re.search(rf"{re.escape(one.url)}: (probe: )?ClientConnectorError", message)
        assert re.search(rf"{re.escape(two.url)}: (probe: )?HTTP 500", message)
        assert "rerun the same command" in message

    run(go())


def test_check_names_each_server_that_is_unreachable_or_serves_another_model() -> None:
    async def go() -> None:
        right = await FakeServer(model="tiny").start()
        other = await FakeServer(model="big-model").start()
        dead = await FakeServer().start()
        dead_url = dead.url
        await dead.stop()
        try:
            many = VLLMServerBackend(model="tiny", base_url=[right.url, other.url, dead_url])
            with pytest.raises(BackendError) as err:
                await many.check()
            await many.aclose()
            one = VLLMServerBackend(model="tiny", base_url=other.url)
            with pytest.raises(BackendError) as single:
                await one.check()
            await one.aclose()
            fine = VLLMServerBackend(
                base_url=[right.url, right.url.replace("127.0.0.1", "localhost")]
            )
            await fine.check()
            await fine.aclose()
        finally:
            await right.stop()
            await other.stop()
        message = str(err.value)
        assert "2 of 3 vLLM servers cannot be used" in message
        assert f"the server at {other.url} does not serve model 'tiny'" in message
        assert "big-model" in message
        assert f"cannot reach the vLLM server at {dead_url}" in message
        assert right.url + " " not in message
        assert f"the server at {other.url} does not serve model 'tiny'" in str(single.value)
        assert fine.model == "tiny"

    run(go())


def test_requests_spread_by_load_stay_with_their_item_and_respect_the_concurrency() -> None:
    async def go() -> None:
        servers = [await FakeServer(delay_s=0.02).start() for _ in range(2)]
        backend = VLLMServerBackend(base_url=[s.url for s in servers], concurrency=3)
        try:
            batch = [req(f"item{k} ask{j}", affinity=f"item{k}") for k in range(12) for j in (0, 1)]
            await backend.generate(batch)
            # A second round for the same items (a re-ask, a revise round, the other order).
            await backend.generate([req(f"item{k} ask2", affinity=f"item{k}") for k in range(12)])
        finally:
            await backend.aclose()
            for s in servers:
                await s.stop()
        homes: dict[str, set[int]] = {}
        for index, server in enumerate(servers):
            for body in server.bodies:
                item = body["messages"][0]["content"].split()[0]
                homes.setdefault(item, set()).add(index)
        assert all(len(h) == 1 for h in homes.values()), homes
        counts = [len(s.bodies) for s in servers]
        assert sum(counts) == 36 and min(counts) >= 9, counts
        assert all(s.max_in_flight <= 3 for s in servers)
        assert [s["requests"] for s in backend.stats()["servers"]] == counts

    run(go())


def test_the_backend_works_again_in_the_next_event_loop() -> None:
    """The sync wrappers run one asyncio.run per call and close the backend at its end: a session
    is bound to its loop, so the backend opens new ones in the next loop."""
    with servers_in_thread(FakeServer()) as (server,):
        backend = VLLMServerBackend(base_url=server.url)

        async def once() -> Any:
            try:
                return await backend.generate([req()])
            finally:
                await backend.aclose()

        for _ in range(2):
            [gen] = asyncio.run(once())
            assert gen.error is None
    assert len(server.bodies) == 2


def test_a_server_whose_engine_died_stays_down_though_its_api_answers() -> None:
    """vLLM with a dead engine still lists its models but answers 500 to every completion: the
    probe asks for a completion, so the run stops instead of cycling down and up forever."""

    async def go() -> None:
        server = await FakeServer(default="500").start()
        backend = VLLMServerBackend(base_url=server.url, max_retries=2)
        try:
            with pytest.raises(BackendError, match="the vLLM server is down"):
                await asyncio.wait_for(backend.generate([req(f"x{i}") for i in range(3)]), 10)
        finally:
            await backend.aclose()
            await server.stop()
        assert backend.pool.servers[0].downs == 1

    run(go())


def test_the_body_is_the_compact_json_of_the_request() -> None:
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "ü"], "maxLength": 9}}}
    request = Request(
        messages=({"role": "system", "content": "✓ \"q\"\n"}, {"role": "user", "content": "x"}),
        json_schema=schema, temperature=0.5, seed=3, top_logprobs=2,
    )  # fmt: skip
    body = vllm_server.request_body("tiny", request)
    encoded = vllm_server.encode_body(body)
    assert encoded == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert json.loads(encoded) == body
