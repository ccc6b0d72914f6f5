"""`critic label` over several servers: repeatable --base-url, CRITIC_BASE_URL lists, the affinity
of an item's requests, and the --json summary's requests per server and per invocation."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from critic.backends import get_backend
from critic.backends.vllm_server import VLLMServerBackend
from tests.backends.fake_server import FakeServer, servers_in_thread

runner = CliRunner()
LABEL = json.dumps({"rationale": "fine", "principles": ["H1"], "label": "harmless"})


def items(path: Path, n: int) -> Path:
    rows = [{"id": f"i{k}", "prompt": f"Human: q{k}?", "response": f"a{k}."} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def label(
    args: list[str], env: dict[str, str] | None = None, exit_code: int = 0
) -> dict[str, object]:
    from critic.cli import app

    result = runner.invoke(app, ["label", *args, "--json", "--quiet"], env=env)
    assert result.exit_code == exit_code, result.output
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def test_repeated_base_url_spreads_one_run_and_a_resume_reports_zero_sent(tmp_path: Path) -> None:
    source = items(tmp_path / "in.jsonl", 40)
    with servers_in_thread(*(FakeServer(answer=LABEL, delay_s=0.01) for _ in range(2))) as pair:
        args = [
            str(source), "-c", "harmlessness", "--backend", "vllm-server", "--model", "tiny",
            "--base-url", pair[0].url, "--base-url", pair[1].url, "--concurrency", "4",
            "--db", f"sqlite:///{tmp_path / 'c.db'}",
        ]  # fmt: skip
        first = label(args)
        again = label(args)
    assert first["drafted"] == 40 and first["requests"] == 40 and first["requests_this_run"] == 40
    servers = first["servers"]
    assert isinstance(servers, list) and [s["url"] for s in servers] == [p.url for p in pair]
    assert [s["requests"] for s in servers] == [len(p.bodies) for p in pair]
    assert all(len(p.bodies) >= 4 for p in pair)  # both filled; 8 in flight = 4 per server
    assert sum(len(p.bodies) for p in pair) == 40
    assert again["requests"] == 40 and again["requests_this_run"] == 0
    assert again["already_done"] == 40


def test_a_comma_separated_base_url_is_several_servers() -> None:
    backend = get_backend("vllm-server", base_url="http://127.0.0.1:1/v1, http://127.0.0.1:2/v1/")
    assert isinstance(backend, VLLMServerBackend)
    assert backend.base_urls == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]


def test_critic_base_url_env_list_reaches_every_server(tmp_path: Path) -> None:
    source = items(tmp_path / "in.jsonl", 16)
    with servers_in_thread(*(FakeServer(answer=LABEL, delay_s=0.01) for _ in range(2))) as pair:
        env = {"CRITIC_BASE_URL": f"{pair[0].url},{pair[1].url}"}
        summary = label(
            [str(source), "-c", "harmlessness", "--backend", "vllm-server", "--model", "tiny",
             "--concurrency", "2", "--db", f"sqlite:///{tmp_path / 'c.db'}"],
            env=env,
        )  # fmt: skip
    assert summary["drafted"] == 16
    assert all(p.bodies for p in pair)


def test_every_request_of_an_item_goes_to_one_server_across_re_asks(tmp_path: Path) -> None:
    """Answers that never validate make each item ask three times: all on the server it began."""
    source = items(tmp_path / "in.jsonl", 24)
    with servers_in_thread(
        *(FakeServer(answer="not json", delay_s=0.005) for _ in range(2))
    ) as pair:
        summary = label(
            [str(source), "-c", "harmlessness", "--backend", "vllm-server", "--model", "tiny",
             "--base-url", pair[0].url, "--base-url", pair[1].url, "--concurrency", "3",
             "--max-reasks", "2", "--db", f"sqlite:///{tmp_path / 'c.db'}"],
            exit_code=1,  # every item failed to parse, and is recorded so
        )  # fmt: skip
    home: dict[int, int] = {}
    for index, server in enumerate(pair):
        for body in server.bodies:
            user = body["messages"][1]["content"]
            item = next(k for k in range(24) if f"q{k}?" in user)
            assert home.setdefault(item, index) == index, f"item {item}'s re-ask changed server"
    assert len(home) == 24 and set(home.values()) == {0, 1}
    assert summary["failed"] == 24 and summary["requests_this_run"] == 72
