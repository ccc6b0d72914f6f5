"""Routing decisions and reasons, the audit draw, the budget, and policy files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from critic.calibrate import calibrate
from critic.errors import CriticError
from critic.routing import (
    Policy,
    Route,
    RouteInput,
    audit_draw,
    load_policy,
    policy_hash,
    route,
    route_counts,
    save_policy,
)


def policy(**changes: object) -> Policy:
    base: dict[str, object] = {"threshold": 0.8, "target_agreement": 0.9, "delta": 0.1}
    return Policy.model_validate({**base, **changes})


def draft(id: str, confidence: float | None = 0.9, **flags: bool) -> RouteInput:
    return RouteInput(id=id, label="x", confidence=confidence, **flags)


# --------------------------------------------------------------------------------------------
# Reasons


@pytest.mark.parametrize(
    ("item", "decision", "reason"),
    [
        (draft("a", 0.95), "accept", "confident"),
        (draft("a", 0.8), "accept", "confident"),  # the threshold itself is accepted
        (draft("a", 0.79), "review", "low_confidence"),
        (draft("a", None), "review", "low_confidence"),
        (draft("a", 0.99, parse_failed=True), "review", "parse_failure"),
        (RouteInput("a", None, 0.99), "review", "parse_failure"),  # no label to ship
        (draft("a", 0.99, swap_inconsistent=True), "review", "swap_inconsistent"),
        (draft("a", 0.99, critics_disagree=True), "review", "critics_disagree"),
        (
            draft("a", 0.1, parse_failed=True, swap_inconsistent=True, critics_disagree=True),
            "review",
            "parse_failure",
        ),
        (
            draft("a", 0.1, swap_inconsistent=True, critics_disagree=True),
            "review",
            "swap_inconsistent",
        ),
        (draft("a", 0.1, critics_disagree=True), "review", "critics_disagree"),
    ],
)
def test_route_reasons(item: RouteInput, decision: str, reason: str) -> None:
    label = item.label if decision == "accept" else None  # the label that ships, if any
    assert route([item], policy()) == [Route("a", decision, reason, label=label)]  # type: ignore[arg-type]


def test_disagreement_rules_can_be_switched_off() -> None:
    p = policy(route_swap_inconsistent=False, route_critics_disagree=False)
    items = [draft("s", swap_inconsistent=True), draft("c", critics_disagree=True)]
    assert [r.reason for r in route(items, p)] == ["confident", "confident"]


def test_no_threshold_accepts_nothing() -> None:
    assert [r.reason for r in route([draft("a", 1.0)], policy(threshold=None))] == [
        "low_confidence"
    ]


def test_duplicate_ids_are_an_error() -> None:
    with pytest.raises(CriticError, match="twice"):
        route([draft("a"), draft("a")], policy())


# --------------------------------------------------------------------------------------------
# Audit sample


def test_audit_draw_is_uniform_and_depends_on_seed_and_id() -> None:
    draws = [audit_draw(0, f"item-{i}") for i in range(20_000)]
    assert all(0 <= d < 1 for d in draws)
    assert sum(draws) / len(draws) == pytest.approx(0.5, abs=0.01)
    assert sum(d < 0.03 for d in draws) / len(draws) == pytest.approx(0.03, abs=0.005)
    assert audit_draw(0, "x") == audit_draw(0, "x")
    assert audit_draw(0, "x") != audit_draw(1, "x")


def test_audit_sample_is_a_share_of_would_be_accepted_items() -> None:
    items = [draft(f"i{n}", 0.95) for n in range(2000)] + [
        draft(f"low{n}", 0.1) for n in range(500)
    ]
    routes = route(items, policy(audit_rate=0.1, seed=3))
    counts = route_counts(routes)
    assert counts["audit_sample"] == pytest.approx(200, abs=45)
    assert counts["confident"] + counts["audit_sample"] == 2000
    assert counts["low_confidence"] == 500
    assert all(r.decision == "review" for r in routes if r.reason == "audit_sample")


def test_audit_sample_is_stable_under_reordering_and_subsets() -> None:
    items = [draft(f"i{n}", 0.95) for n in range(300)]
    p = policy(audit_rate=0.2, seed=7)
    first = {r.id: r for r in route(items, p)}
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    assert {r.id: r for r in route(shuffled, p)} == first
    # A resumed run routing only the new half decides those items the same way.
    assert {r.id: r for r in route(items[150:], p)} == {i.id: first[i.id] for i in items[150:]}
    other_seed = {r.id: r for r in route(items, policy(audit_rate=0.2, seed=8))}
    assert other_seed != first


# --------------------------------------------------------------------------------------------
# Budget


def test_budget_keeps_the_least_confident_and_accepts_the_rest() -> None:
    items = [
        draft("a", 0.5),
        draft("b", 0.1),
        draft("c", None),
        draft("d", 0.7, swap_inconsistent=True),
        draft("e", 0.3),
        draft("f", 0.95),
    ]
    routes = {r.id: r for r in route(items, policy(budget=3))}
    assert {i for i, r in routes.items() if r.decision == "review"} == {"b", "c", "e"}
    assert routes["a"] == Route("a", "accept", "budget", label="x")
    assert routes["d"] == Route("d", "accept", "budget", label="x")
    assert routes["f"] == Route("f", "accept", "confident", label="x")


def test_parse_failures_always_go_to_review_and_use_the_budget_first() -> None:
    items = [draft("p1", 0.99, parse_failed=True), draft("p2", parse_failed=True), draft("l", 0.1)]
    routes = {r.id: r.reason for r in route(items, policy(budget=1))}
    assert routes == {"p1": "parse_failure", "p2": "parse_failure", "l": "budget"}


def test_audit_samples_come_after_untrusted_items_and_stay_uniform() -> None:
    confident = [draft(f"i{n}", 0.99) for n in range(1000)]
    low = [draft(f"low{n}", 0.2) for n in range(10)]
    p = policy(audit_rate=0.1, seed=1, budget=40)
    routes = {r.id: r for r in route(confident + low, p)}
    assert all(routes[d.id].reason == "low_confidence" for d in low)
    audited = [d.id for d in confident if routes[d.id].reason == "audit_sample"]
    assert len(audited) == 30
    # The 30 kept are the 30 smallest draws among all would-be audits: a uniform sub-sample.
    drawn = sorted((audit_draw(1, d.id), d.id) for d in confident if audit_draw(1, d.id) < 0.1)
    assert sorted(audited) == sorted(i for _, i in drawn[:30])
    assert all(routes[i].reason == "budget" for _, i in drawn[30:])
    assert sum(r.decision == "review" for r in routes.values()) == 40


def test_zero_budget_accepts_everything_with_a_label() -> None:
    items = [draft("a", 0.1), draft("b", parse_failed=True), draft("c", 0.99)]
    assert [r.reason for r in route(items, policy(budget=0, audit_rate=1.0))] == [
        "budget",
        "parse_failure",
        "budget",
    ]


def test_route_counts_lists_every_reason() -> None:
    routes = [Route("a", "accept", "confident"), Route("b", "review", "low_confidence")]
    counts = route_counts(routes)
    assert counts == {
        "confident": 1,
        "accept_all": 0,
        "calibration_sample": 0,
        "budget": 0,
        "low_confidence": 1,
        "swap_inconsistent": 0,
        "critics_disagree": 0,
        "parse_failure": 0,
        "audit_sample": 0,
    }


# --------------------------------------------------------------------------------------------
# Policy files


def _calibrated_policy(**options: object) -> Policy:
    scores = [i / 200 for i in range(200)]
    correct = [s > 0.3 or i % 2 == 0 for i, s in enumerate(scores)]
    return Policy.from_calibration(calibrate(scores, correct, 0.9, 0.1), **options)  # type: ignore[arg-type]


def test_policy_round_trips_through_yaml(tmp_path: Path) -> None:
    p = _calibrated_policy(audit_rate=0.03, budget=500, seed=4)
    assert p.threshold is not None and p.calibration is not None
    path = tmp_path / "policy.yaml"
    save_policy(p, path)
    text = path.read_text()
    assert text.startswith("# critic routing policy")
    assert "With probability" in text
    loaded = load_policy(path)
    # The file carries its own content hash, so a later hand edit shows.
    assert loaded == p.model_copy(update={"content_hash": policy_hash(p)})
    assert policy_hash(loaded) == policy_hash(p)


def test_policy_hash_changes_with_any_setting() -> None:
    p = _calibrated_policy()
    assert len(policy_hash(p)) == 64
    assert policy_hash(p) == policy_hash(Policy.model_validate(p.model_dump()))
    assert policy_hash(p.model_copy(update={"audit_rate": 0.05})) != policy_hash(p)
    assert policy_hash(p.model_copy(update={"seed": 1})) != policy_hash(p)


@pytest.mark.parametrize(
    ("content", "message", "hint"),
    [
        (
            "threshold: 0.8\ntarget_agreement: 0.9\ndelta: 0.1\naudit_rat: 0.1\n",
            "unknown key 'audit_rat'",
            "audit_rate",
        ),
        ("threshold: 1.8\ntarget_agreement: 0.9\ndelta: 0.1\n", "threshold:", None),
        ("threshold: 0.8\ndelta: 0.1\n", "target_agreement: Field required", None),
        ("threshold: [0.8\n", "policy.yaml:", None),
        ("- 1\n", "a YAML mapping", None),
    ],
)
def test_load_policy_errors_say_where_and_what(
    tmp_path: Path, content: str, message: str, hint: str | None
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(content)
    with pytest.raises(CriticError) as info:
        load_policy(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)
    if hint:
        assert info.value.hint is not None and hint in info.value.hint


def test_load_policy_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(CriticError) as info:
        load_policy(tmp_path / "policy.yaml")
    assert info.value.hint is not None and "critic calibrate" in info.value.hint


def test_policy_must_match_its_calibration(tmp_path: Path) -> None:
    data = _calibrated_policy().model_dump(mode="json")
    data["target_agreement"] = 0.8
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CriticError, match="recalibrate"):
        load_policy(path)


def test_a_constitution_or_its_cases_given_as_a_policy_is_named_for_what_it_is() -> None:
    from typer.testing import CliRunner

    from critic.cli import app
    from critic.constitution import shipped_dir

    constitution = shipped_dir() / "harmlessness.yaml"
    with pytest.raises(CriticError) as info:
        load_policy(constitution)
    assert info.value.message == (
        f"{constitution}: this is a constitution ('harmlessness'; give it with -c/--constitution), "
        "not a routing policy"
    )
    assert "critic calibrate" in (info.value.hint or "")
    with pytest.raises(CriticError, match="this is a constitution's test cases"):
        load_policy(shipped_dir() / "harmlessness.cases.yaml")
    result = CliRunner().invoke(app, ["route", "--policy", str(constitution),
                                      "--db", "sqlite:///nowhere.db"])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "this is a constitution" in result.stderr and "threshold" not in result.stderr
