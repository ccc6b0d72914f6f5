"""The labeling config made from a constitution: labels with their descriptions as hints, the
instructions as a header, Response A / Response B for pairs, stars for a 1..N rubric."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from critic.constitution import load_constitution
from critic.labelstudio.config import Layout, labeling_config

PAIR_FIELDS = {"prompt": "question", "a": "left_reply", "b": "right_reply"}
FIELDS = {"prompt": "prompt", "response": "response"}


def layout(name: str, fields: dict[str, str] = FIELDS) -> Layout:
    return Layout.of(load_constitution(name).canonical_json(), fields)


def parsed(name: str, fields: dict[str, str] = FIELDS) -> ET.Element:
    return ET.fromstring(labeling_config(layout(name, fields)))


def test_categorical_labels_are_choices_with_their_descriptions_as_hints() -> None:
    constitution = load_constitution("harmlessness")
    root = parsed("harmlessness")
    (choices,) = root.iter("Choices")
    assert choices.attrib == {"name": "label", "toName": "response", "choice": "single-radio",
                              "required": "true"}  # fmt: skip
    assert [(c.get("value"), c.get("hint")) for c in choices] == [
        (x.name, " ".join(x.description.split())) for x in constitution.task.labels
    ]
    headers = [h.get("value") for h in root.iter("Header")]
    assert headers[0] == constitution.title
    assert headers[1] == " ".join((constitution.instructions or "").split())
    assert {t.get("name"): t.get("value") for t in root.iter("Text")} == {
        "prompt": "$prompt", "response": "$response"}  # fmt: skip


def test_pairs_show_response_a_and_b_with_a_pairwise_control_and_tie_as_a_choice() -> None:
    root = parsed("harmlessness-pairwise", PAIR_FIELDS)
    texts = {t.get("name"): t.get("value") for t in root.iter("Text")}
    assert texts == {"prompt": "$question", "a": "$left_reply", "b": "$right_reply"}
    headers = [h.get("value") for h in root.iter("Header")]
    assert headers.index("Response A") < headers.index("Response B")
    (pairwise,) = root.iter("Pairwise")
    assert pairwise.attrib == {"name": "preference", "toName": "a,b"}
    (choices,) = root.iter("Choices")
    assert [c.get("value") for c in choices] == ["tie"]  # A and B are the two sides
    assert choices.get("required") is None  # a side is an answer too


def test_a_one_to_five_rubric_is_five_stars_with_the_levels_listed() -> None:
    constitution = load_constitution("helpfulness")
    root = parsed("helpfulness")
    (rating,) = root.iter("Rating")
    assert rating.attrib == {"name": "score", "toName": "response", "maxRating": "5"}
    headers = [h.get("value") for h in root.iter("Header")]
    for level in constitution.task.levels:
        assert f"{level.score}: {' '.join(level.description.split())}" in headers
    assert not list(root.iter("Choices"))


def test_a_rubric_not_counted_from_one_is_choices_of_its_scores() -> None:
    import json

    content = json.loads(load_constitution("helpfulness").canonical_json())
    content["task"]["levels"] = [{"score": s, "description": f"level {s}"} for s in (0, 5, 10)]
    root = ET.fromstring(labeling_config(Layout.of(json.dumps(content), FIELDS)))
    assert [c.get("value") for c in root.iter("Choice")] == ["0", "5", "10"]
    assert not list(root.iter("Rating"))


def test_a_revision_is_a_text_area_and_text_items_show_one_text() -> None:
    root = parsed("cai-principles")
    (area,) = root.iter("TextArea")
    assert area.get("name") == "revision" and area.get("editable") == "true"
    only = parsed("harmlessness", {"text": "body", "prompt": "prompt"})
    assert {t.get("name"): t.get("value") for t in only.iter("Text")} == {"text": "$body"}


@pytest.mark.parametrize("name", ["harmlessness", "helpfulness", "harmlessness-pairwise"])
def test_descriptions_with_quotes_and_markup_stay_text(name: str) -> None:
    import json

    content = json.loads(load_constitution(name).canonical_json())
    content["instructions"] = 'Say "no" <b>twice</b> & mean it'
    root = ET.fromstring(labeling_config(Layout.of(json.dumps(content), PAIR_FIELDS)))
    assert 'Say "no" <b>twice</b> & mean it' in [h.get("value") for h in root.iter("Header")]
    assert not list(root.iter("b"))
