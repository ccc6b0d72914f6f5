"""Label Studio tasks from final records, and answers from annotations: a label, a rating, a
pairwise side, a revision; a skip; what is left out and why (with the task id)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from critic.constitution import load_constitution
from critic.labelstudio.config import Layout
from critic.labelstudio.tasks import annotator_name, read_annotations, to_task
from critic.ship import compose

FIELDS = {"prompt": "prompt", "response": "response"}


def layout(name: str, fields: dict[str, str] = FIELDS) -> Layout:
    return Layout.of(load_constitution(name).canonical_json(), fields)


def record(name: str = "harmlessness", **row: Any) -> Any:
    constitution = load_constitution(name)
    stored = {
        "run_id": "run1", "item_id": "i1", "task": "label", "status": "drafted",
        "label": "harmful", "score": None, "confidence": 0.42, "model": "tiny-critic",
        "constitution_hash": constitution.hash, "params": {"fields": FIELDS},
        "row": {"id": "i1", "prompt": [{"role": "user", "content": "hi"}], "response": "ok",
                "extra": 3},
        "output": {},
    }  # fmt: skip
    stored.update(row)
    route = {"decision": "review", "reason": "low_confidence", "policy_hash": "p"}
    from critic.ship import label_set

    return compose(stored, route, [], label_set(constitution.canonical_json()))


def test_a_task_holds_the_item_the_origin_the_status_and_the_critic_label_as_a_prediction() -> (
    None
):
    shown = layout("harmlessness")
    task = to_task(record(), shown)
    digest = load_constitution("harmlessness").hash
    assert task["data"] == {
        "id": "i1", "prompt": '[{"role": "user", "content": "hi"}]', "response": "ok",
        "extra": 3, "critic_origin": "run1/i1", "critic_status": "pending",
        "critic_confidence": 0.42, "critic_route_reason": "low_confidence",
    }  # fmt: skip
    assert task["predictions"] == [
        {
            "model_version": f"tiny-critic:{digest[:12]}",
            "score": 0.42,
            "result": [{"id": "critic", "from_name": "label", "to_name": "response",
                        "type": "choices", "value": {"choices": ["harmful"]}}],
        }
    ]  # fmt: skip


def test_rubric_scores_are_ratings_and_pairs_are_sides_or_a_tie_choice() -> None:
    rubric = to_task(record("helpfulness", label=None, score=4.0), layout("helpfulness"))
    assert rubric["predictions"][0]["result"][0]["type"] == "rating"
    assert rubric["predictions"][0]["result"][0]["value"] == {"rating": 4}
    pair_fields = {"prompt": "prompt", "a": "a", "b": "b"}
    pairs = layout("harmlessness-pairwise", pair_fields)
    for verdict, result in (
        ("a", {"from_name": "preference", "to_name": "a", "type": "pairwise",
               "value": {"selected": "left"}}),
        ("b", {"from_name": "preference", "to_name": "a", "type": "pairwise",
               "value": {"selected": "right"}}),
        ("tie", {"from_name": "label", "to_name": "prompt", "type": "choices",
                 "value": {"choices": ["tie"]}}),
    ):  # fmt: skip
        made = record(
            "harmlessness-pairwise", task="compare", label=verdict,
            params={"fields": pair_fields}, row={"prompt": "p", "a": "x", "b": "y"},
        )  # fmt: skip
        assert to_task(made, pairs)["predictions"][0]["result"] == [{"id": "critic", **result}]


def test_an_item_without_a_verdict_has_no_prediction() -> None:
    failed = record(status="failed", label=None, reason="parse_failure")
    assert "predictions" not in to_task(failed, layout("harmlessness"))


def annotation(result: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    return {"id": 40, "completed_by": 2, "result": result or [], "was_cancelled": False,
            "lead_time": 6.5, "created_at": "2025-06-01T12:00:00.5Z", **kw}  # fmt: skip


def choice(label: str) -> dict[str, Any]:
    return {"from_name": "label", "to_name": "response", "type": "choices",
            "value": {"choices": [label]}}  # fmt: skip


def test_annotations_are_labels_skips_and_problems_named_by_task() -> None:
    exported = [
        {"id": 7, "data": {"critic_origin": "run1/i1"}, "annotations": [
            annotation([choice("harmful")]),
            annotation(was_cancelled=True, completed_by=3, id=41),
            annotation([choice("maybe")], id=42),
            annotation([choice("harmful"), choice("harmless")], id=43),
            annotation([], id=44),
        ]},
        {"id": 8, "data": {"text": "not ours"}, "annotations": [annotation([choice("harmful")])]},
        {"id": 9, "data": {"critic_origin": "run1/i2"}, "annotations": []},
    ]  # fmt: skip
    users = {2: {"id": 2, "email": "ann@lab.org"}}
    found, problems = read_annotations(exported, layout("harmlessness"), users)
    assert [(a.annotation, a.annotator, a.label, a.cancelled, a.lead_time) for a in found] == [
        (40, "ann-lab.org", "harmful", False, 6.5),
        (41, "label-studio-user-3", None, True, 6.5),
    ]
    assert found[0].origin == "run1/i1" and found[0].created_at is not None
    assert [(p.task, p.annotation) for p in problems] == [(7, 42), (7, 43), (7, 44), (8, None)]
    assert "label 'maybe' is not in the constitution (harmless, harmful)" in str(problems[0])
    assert str(problems[0]).startswith("task 7, annotation 42: ")
    assert "several answers" in problems[1].message
    assert "no critic_origin" in problems[3].message


def test_ratings_pairwise_sides_and_revisions_come_back_as_answers() -> None:
    rating = [{"from_name": "score", "to_name": "response", "type": "rating",
               "value": {"rating": 2}}]  # fmt: skip
    (got,), _ = read_annotations(
        [{"id": 1, "data": {"critic_origin": "r/i"}, "annotations": [annotation(rating)]}],
        layout("helpfulness"),
    )
    assert got.label == "2"
    pairs = layout("harmlessness-pairwise", {"prompt": "prompt", "a": "a", "b": "b"})
    right = [{"from_name": "preference", "to_name": "a", "type": "pairwise",
              "value": {"selected": "right"}}]  # fmt: skip
    (got,), _ = read_annotations(
        [{"id": 1, "data": {"critic_origin": "r/i"}, "annotations": [annotation(right)]}], pairs
    )
    assert got.label == "B"  # the constitution's spelling
    text = [{"from_name": "revision", "to_name": "response", "type": "textarea",
             "value": {"text": ["a kinder reply"]}}]  # fmt: skip
    (got,), _ = read_annotations(
        [{"id": 1, "data": {"critic_origin": "r/i"}, "annotations": [annotation(text)]}],
        layout("cai-principles"),
    )
    assert (got.revision, got.label) == ("a kinder reply", None)


def test_annotators_are_named_by_email_in_a_form_critic_accepts() -> None:
    odd = {"id": 5, "email": "Ann.O'Neil+qa@lab.org"}
    assert annotator_name(odd, {}) == "Ann.O-Neil-qa-lab.org"
    assert annotator_name(5, {5: {"email": "bob@x.io"}}) == "bob-x.io"
    assert annotator_name(5, {}) == "label-studio-user-5"
    assert annotator_name(None, {}) == "label-studio-user-unknown"
    assert replace(layout("harmlessness")).labels == ("harmless", "harmful")
