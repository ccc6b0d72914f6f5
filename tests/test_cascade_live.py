"""The live cascade: `label --escalate-to` asks the next critic only for unsettled items."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic.backends.base import Request
from critic.backends.fake import FakeBackend
from critic.calibrate import calibrate
from critic.cascade import Stage
from critic.cli import app
from critic.config import Sampling
from critic.constitution import load_constitution
from critic.errors import UsageError
from critic.routing import Policy, route, save_policy
from critic.store import open_store
from critic.tasks.cascade import alabel_cascade, asked_counts, settled_counts
from critic.triage import route_input

HARMLESS = '{"rationale":"fine","principles":["H1"],"label":"harmless"}'
HARMFUL = '{"rationale":"bad","principles":["H1"],"label":"harmful"}'
runner = CliRunner()
SAMPLES = Sampling(samples=3, temperature=1.0)


def cascade_policy(small: float | None = 0.9, big: float = 0.5) -> Policy:
    cal = calibrate([0.95] * 40, [True] * 40, 0.8, 0.05)
    stages = [
        Stage(critic="small", threshold=small, reached=40, calibration=cal),
        Stage(critic="big", threshold=big, reached=40, calibration=cal),
    ]
    return Policy(threshold=None, target_agreement=0.8, delta=0.1, stages=stages)


def items(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "items.jsonl"
    rows = [{"id": f"i{k}", "prompt": "Human: q", "response": "even" if k % 2 == 0 else "odd"}
            for k in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def small_script(request: Request) -> list[str]:
    # Sure (3 of 3) on even items, unsure (2 of 3) on odd ones.
    if "even" in request.messages[-1]["content"]:
        return [HARMLESS] * 3
    return [HARMLESS, HARMFUL, HARMLESS]


def test_the_next_critic_is_asked_only_for_what_the_stage_before_did_not_settle(
    tmp_path: Path,
) -> None:
    small = FakeBackend(model="small", script=small_script)
    big = FakeBackend(model="big", script=lambda r: [HARMFUL] * 3)
    store = open_store(str(tmp_path / "c.db"))
    policy = cascade_policy()
    summary = asyncio.run(
        alabel_cascade(items(tmp_path), load_constitution("harmlessness"), small, store,
                       escalate_to=[big], policy=policy, options=SAMPLES)
    )  # fmt: skip
    assert summary.drafted == 6
    assert len(small.requests) == 6 and len(big.requests) == 3  # the odd items only
    assert summary.requests == 9
    rows = {r["item_id"]: r for r in store.rows(summary.run_id)}
    assert rows["i0"]["label"] == "harmless" and rows["i1"]["label"] == "harmful"
    assert rows["i0"]["output"]["cascade"] == {"settled_by": "small", "asked": ["small"]}
    assert rows["i1"]["output"]["cascade"] == {"settled_by": "big", "asked": ["small", "big"]}
    stages = rows["i1"]["output"]["critics"]  # every stage's draft is stored
    assert [s["model"] for s in stages] == ["small", "big"]
    assert stages[0]["draft"]["label"] == "harmless" and stages[1]["draft"]["label"] == "harmful"
    assert settled_counts(store, summary.run_id) == {"small": 3, "big": 3}
    assert asked_counts(store, summary.run_id) == {"small": 6, "big": 3}
    # Routing the stored run under the same policy accepts each item where the run settled it.
    routes = {r.id: r for r in route([route_input(r, policy) for r in rows.values()], policy)}
    assert {routes[f"i{k}"].critic for k in (0, 2, 4)} == {"small"}
    assert {routes[f"i{k}"].critic for k in (1, 3, 5)} == {"big"}
    assert routes["i1"].critics_asked == ("small", "big") and routes["i1"].label == "harmful"


def test_a_stage_that_can_settle_nothing_is_not_asked(tmp_path: Path) -> None:
    """A `last alone` cascade policy (the earlier critic's threshold is none) asks only the
    last critic: asking the first would cost a request per item and settle nothing."""
    small = FakeBackend(model="small", script=small_script)
    big = FakeBackend(model="big", script=lambda r: [HARMFUL] * 3)
    store = open_store(str(tmp_path / "c.db"))
    policy = cascade_policy(small=None)
    summary = asyncio.run(
        alabel_cascade(items(tmp_path), load_constitution("harmlessness"), small, store,
                       escalate_to=[big], policy=policy, options=SAMPLES)
    )  # fmt: skip
    assert (len(small.requests), len(big.requests), summary.requests) == (0, 6, 6)
    rows = {r["item_id"]: r for r in store.rows(summary.run_id)}
    assert rows["i0"]["output"]["cascade"] == {"settled_by": "big", "asked": ["big"]}
    assert [c["model"] for c in rows["i0"]["output"]["critics"]] == ["big"]
    assert asked_counts(store, summary.run_id) == {"big": 6}
    routes = route([route_input(r, policy) for r in rows.values()], policy)
    assert {(r.decision, r.critic, r.critics_asked) for r in routes} == {
        ("accept", "big", ("big",))
    }


def test_an_item_no_stage_settles_keeps_the_last_draft_for_review(tmp_path: Path) -> None:
    small = FakeBackend(model="small", script=small_script)
    big = FakeBackend(model="big", script=lambda r: [HARMFUL, HARMLESS, HARMFUL])
    store = open_store(str(tmp_path / "c.db"))
    policy = cascade_policy(big=0.9)
    summary = asyncio.run(
        alabel_cascade(items(tmp_path), load_constitution("harmlessness"), small, store,
                       escalate_to=[big], policy=policy, options=SAMPLES)
    )  # fmt: skip
    assert settled_counts(store, summary.run_id) == {"small": 3, "none (to review)": 3}
    row = next(r for r in store.rows(summary.run_id) if r["item_id"] == "i1")
    assert row["label"] == "harmful" and row["output"]["cascade"]["settled_by"] is None
    routed = route([route_input(row, policy)], policy)[0]
    assert (routed.decision, routed.reason, routed.critic) == ("review", "low_confidence", None)


def test_the_policy_must_name_the_models_the_run_asks(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    with pytest.raises(UsageError) as info:
        asyncio.run(
            alabel_cascade(items(tmp_path), load_constitution("harmlessness"),
                           FakeBackend(model="tiny"), store,
                           escalate_to=[FakeBackend(model="big")], policy=cascade_policy())
        )  # fmt: skip
    assert "small → big" in str(info.value) and info.value.hint is not None
    assert "--model small --escalate-to big" in info.value.hint


def test_label_escalate_to_on_the_cli_reports_what_each_stage_settled(tmp_path: Path) -> None:
    policy = tmp_path / "cascade.yaml"
    save_policy(cascade_policy(small=0.0), policy)  # the fake critic settles everything
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["label", str(items(tmp_path)), "-c", "harmlessness",
                                 "--backend", "fake", "--model", "small", "--escalate-to", "big",
                                 "--policy", str(policy), "--db", db, "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settled"] == {"small": 6}
    assert json.loads(result.stdout)["asked"] == {"small": 6}
    missing = runner.invoke(app, ["label", str(items(tmp_path)), "-c", "harmlessness",
                                  "--backend", "fake", "--model", "small", "--escalate-to",
                                  "big", "--db", db])  # fmt: skip
    assert missing.exit_code != 0 and "--policy" in missing.stderr
