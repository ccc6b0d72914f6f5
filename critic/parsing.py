"""Parse and validate model output: constrained decoding is an optimisation, this the contract."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

FailureKind = Literal["truncated", "invalid_json", "schema", "empty"]

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)
# xgrammar can let raw control characters such as \x08 or \x03 into JSON strings.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Parsed:
    """A validated value, or why there is none (written so a model can act on it)."""

    value: dict[str, Any] | None
    error: str | None = None
    kind: FailureKind | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub("", value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "the object"
        parts.append(f"field `{where}`: {err['msg']}")
    return "; ".join(parts)


def parse(text: str, model: type[BaseModel], finish_reason: str | None = None) -> Parsed:
    """Parse `text` as JSON and validate it against `model`."""
    if not text.strip():
        return Parsed(None, "the answer was empty; answer with one JSON object", "empty")
    match = _FENCE.match(text)
    body = match.group(1) if match else text.strip()
    try:
        # strict=False accepts raw control characters inside strings; _clean removes them.
        data = _clean(json.loads(body, strict=False))
    except json.JSONDecodeError as exc:
        if finish_reason == "length":
            return Parsed(
                None,
                "the answer was cut off at the token limit before the JSON object closed; "
                "give a shorter rationale",
                "truncated",
            )
        return Parsed(
            None, f"the answer is not valid JSON ({exc.msg} at char {exc.pos})", "invalid_json"
        )
    if not isinstance(data, dict):
        return Parsed(None, "the answer must be one JSON object, not a list or a value", "schema")
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        return Parsed(None, _describe(exc), "schema")
    return Parsed(validated.model_dump(mode="json"))
