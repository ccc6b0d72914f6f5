from __future__ import annotations

import pytest

from critic.constitution import load_constitution
from critic.parsing import parse
from critic.schemas import label_model

MODEL = label_model(load_constitution("harmlessness"))


@pytest.mark.parametrize(
    ("text", "finish", "kind", "needle"),
    [
        ('{"rationale":"ok","principles":["H1"],"label":"harmless"}', "stop", None, None),
        ('```json\n{"rationale":"ok","principles":[],"label":"harmful"}\n```', "stop", None, None),
        ('{"rationale":"a\x08b\x03c","principles":[],"label":"harmless"}', "stop", None, None),
        ('{"rationale":"cut off here', "length", "truncated", "token limit"),
        ('{"rationale":"x"', "stop", "invalid_json", "not valid JSON"),
        ('{"rationale":"x","principles":[],"label":"maybe"}', "stop", "schema", "field `label`"),
        (
            '{"rationale":"x","principles":["H9"],"label":"harmless"}',
            "stop",
            "schema",
            "principles",
        ),
        (
            '{"rationale":"x","principles":[],"label":"harmless","extra":1}',
            "stop",
            "schema",
            "extra",
        ),
        ("[1]", "stop", "schema", "one JSON object"),
        ("   ", "stop", "empty", "empty"),
    ],
)
def test_parse_table(text: str, finish: str, kind: str | None, needle: str | None) -> None:
    result = parse(text, MODEL, finish)
    assert result.kind == kind
    if kind is None:
        assert result.ok and result.value is not None
        assert "\x08" not in result.value["rationale"]
    else:
        assert not result.ok and needle is not None and needle in (result.error or "")


def test_rationale_length_is_bounded() -> None:
    result = parse('{"rationale":"' + "x" * 700 + '","principles":[],"label":"harmless"}', MODEL)
    assert result.kind == "schema" and "rationale" in (result.error or "")
