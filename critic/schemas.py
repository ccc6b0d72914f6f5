"""Output models: what the critic must produce, built from the constitution.

Output models are prompts too: fields are generated in order, so the rationale comes first and
the verdict last; every string and list is bounded so constrained generation always terminates.
Validator messages are written for the model, because they are fed back in a re-ask.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from critic.constitution import Constitution

RATIONALE_MAX = 600


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _literal(values: list[Any]) -> Any:
    return Literal[tuple(values)]


@lru_cache(maxsize=64)
def _label_model(
    labels: tuple[str, ...], scores: tuple[int, ...], principle_ids: tuple[str, ...]
) -> type[BaseModel]:
    fields: dict[str, Any] = {
        "rationale": (
            str,
            Field(
                max_length=RATIONALE_MAX,
                description="Why the verdict follows from the principles; written before it.",
            ),
        ),
        "principles": (
            list[_literal(list(principle_ids))],  # type: ignore[misc]
            Field(
                max_length=3,
                description="Ids of the principles that decide this case (at most three).",
            ),
        ),
    }
    if scores:
        fields["score"] = (_literal(list(scores)), Field(description="The rubric score."))
        name = "RubricDraft"
    else:
        fields["label"] = (_literal(list(labels)), Field(description="The label."))
        name = "LabelDraft"
    model: type[BaseModel] = create_model(name, __base__=_Output, **fields)
    return model


def label_model(constitution: Constitution) -> type[BaseModel]:
    """The output model of the label task for this constitution (categorical or rubric)."""
    if constitution.task.kind == "rubric":
        return _label_model((), tuple(constitution.scores), tuple(constitution.principle_ids))
    return _label_model(tuple(constitution.label_names), (), tuple(constitution.principle_ids))


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to the backend: always derived from the pydantic model."""
    return model.model_json_schema()
