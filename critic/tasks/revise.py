"""The revise task (supervised CAI): critique → revision chains.

Per (prompt, response) item, N rounds; each round samples a principle (seeded by the run seed and
the item id, and recorded), asks for a critique citing principle ids with quotes that are checked
against the reply, then asks for a revision *in the same conversation*, so every request extends
the previous one and vLLM's prefix cache serves it. One outcome per item holds the whole chain,
so a rerun resumes exactly where the last one stopped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Unpack

from pydantic import BaseModel, Field, create_model, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from critic import confidence as conf
from critic.backends.base import Backend, Message, Request
from critic.config import STRICT, Sampling
from critic.constitution import Constitution
from critic.errors import ConfigError, UsageError
from critic.items import Fields, Item
from critic.render import Templates
from critic.runs import RunArgs, RunSummary, configure, synchronous
from critic.schemas import json_schema
from critic.store import Outcome, Store
from critic.tasks.base import (
    Answer,
    Output,
    Task,
    arun_task,
    ask,
    literal,
    options_and_fields,
    sample_principles,
    user_turn,
)

REVISE_TEMPLATES = ("critique_system.j2", "critique_user.j2", "revise_user.j2", "reask.j2")

FINDINGS_MAX = 3
QUOTE_MAX = 160
PROBLEM_MAX = 240
CRITIQUE_MAX = 400


@lru_cache(maxsize=64)
def critique_model(principle_ids: tuple[str, ...]) -> type[BaseModel]:
    """The critique: findings that cite principle ids and quote the reply, then a summary."""
    finding: type[BaseModel] = create_model(
        "Finding",
        __base__=Output,
        principle=(literal(principle_ids), Field(description="Id of the principle broken.")),
        quote=(
            str,
            Field(
                min_length=1,
                max_length=QUOTE_MAX,
                description="An exact quote from the reply being critiqued, copied verbatim.",
            ),
        ),
        problem=(str, Field(max_length=PROBLEM_MAX, description="What is wrong with it.")),
    )
    model: type[BaseModel] = create_model(
        "Critique",
        __base__=Output,
        findings=(
            list[finding],  # type: ignore[valid-type,unused-ignore]
            Field(max_length=FINDINGS_MAX, description="At most three; empty if none."),
        ),
        critique=(str, Field(max_length=CRITIQUE_MAX, description="A short summary.")),
    )
    return model


@lru_cache(maxsize=16)
def revision_model(max_chars: int) -> type[BaseModel]:
    """The revision: the complete rewritten reply."""
    model: type[BaseModel] = create_model(
        "Revision",
        __base__=Output,
        revision=(
            str,
            Field(min_length=1, max_length=max_chars, description="The full rewritten reply."),
        ),
    )
    return model


@pydantic_dataclass(frozen=True, config=STRICT)
class ReviseOptions:
    """Rounds and bounds of a revise run. Everything here is part of the run's identity."""

    rounds: int = 2
    max_revision_chars: int = 2000
    sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=1024))

    @model_validator(mode="after")
    def _check(self) -> ReviseOptions:
        if self.rounds < 1:
            raise ConfigError("rounds", "{rounds} must be at least 1")
        if self.max_revision_chars < 16:
            raise ConfigError("max_revision_chars", "{max_revision_chars} must be at least 16")
        if self.sampling.samples != 1:
            raise ConfigError("samples", "revise draws one sample per request; drop {samples}")
        return self


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def quote_found(quote: str, text: str) -> bool:
    """Whether `quote` occurs in `text`, ignoring case, runs of whitespace and wrapping quotes or
    ellipses (models add them around quotes)."""
    core = _squash(quote).strip("\"'“”‘’`").strip(". …").strip()
    return bool(core) and core in _squash(text)


def evidence_problem(value: Mapping[str, Any], text: str) -> str | None:
    """The re-ask message for findings whose quote is not in `text`, or None when all are."""
    missing = [f["quote"] for f in value.get("findings", []) if not quote_found(f["quote"], text)]
    if not missing:
        return None
    listed = "; ".join(json.dumps(q, ensure_ascii=False) for q in missing[:3])
    return (
        f"field `findings`: these quotes do not occur in the reply being critiqued: {listed}. "
        "Copy each quote exactly from that reply, or drop the finding"
    )


def _require_requests(constitution: Constitution, which: tuple[str, ...]) -> None:
    missing = [p.id for p in constitution.principles if any(not getattr(p, w) for w in which)]
    if missing:
        raise UsageError(
            f"constitution '{constitution.id}': principle(s) {', '.join(missing)} have no "
            f"{' or '.join(w.replace('_', ' ') for w in which)}",
            hint="revise needs a critique_request and a revision_request on every principle; "
            "see constitutions/cai-principles.yaml",
        )


class Reviser:
    """Runs one item's critique → revision chain; many items run concurrently."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: Templates,
        options: ReviseOptions,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.options = options
        self.critique_model = critique_model(tuple(constitution.principle_ids))
        self.revision_model = revision_model(options.max_revision_chars)
        self.system = templates.render(
            "critique_system.j2",
            constitution=constitution,
            max_findings=FINDINGS_MAX,
            max_chars=options.max_revision_chars,
        )

    def _request(
        self, item: Item, messages: tuple[Message, ...], model: type[BaseModel]
    ) -> Request:
        s = self.options.sampling
        return Request(
            messages=messages, json_schema=json_schema(model), max_tokens=s.max_tokens,
            temperature=s.temperature, seed=s.seed,
            affinity=item.id,  # every round extends one conversation: one server's prefix cache
        )  # fmt: skip

    async def draft(self, item: Item) -> Outcome:
        response = item.response or ""
        principles = sample_principles(
            self.constitution.principles, self.options.rounds, self.options.sampling.seed, item.id
        )
        conversation: tuple[Message, ...] = ({"role": "system", "content": self.system},)
        current = response
        rounds: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        retries = 0
        for number, principle in enumerate(principles, start=1):
            user = self.templates.render(
                "critique_user.j2",
                item={"prompt": item.prompt, "response": response} if number == 1 else None,
                principle=principle,
                round=number,
            )
            shown = current  # the reply this round critiques: the original, then each revision
            critique = await ask(
                self.backend,
                self._request(item, (*conversation, user_turn(user)), self.critique_model),
                self.critique_model, self.templates, max_reasks=self.options.sampling.max_reasks,
                stage=f"critique-{number}", check=partial(evidence_problem, text=shown),
            )  # fmt: skip
            records += critique.records
            retries += critique.attempts - 1
            if critique.value is None:
                return _failed(item.id, critique, records, number)
            request = self.templates.render(
                "revise_user.j2",
                principle=principle,
                round=number,
                max_chars=self.options.max_revision_chars,
            )
            # The revision request continues the critique conversation: the whole critique
            # request is a prefix of it, which vLLM's prefix cache serves.
            revision = await ask(
                self.backend,
                self._request(
                    item, (*critique.conversation, user_turn(request)), self.revision_model
                ),
                self.revision_model, self.templates, max_reasks=self.options.sampling.max_reasks,
                stage=f"revision-{number}",
            )  # fmt: skip
            records += revision.records
            retries += revision.attempts - 1
            if revision.value is None:
                return _failed(item.id, revision, records, number)
            conversation = revision.conversation
            findings = [
                {**f, "found": quote_found(f["quote"], shown)} for f in critique.value["findings"]
            ]
            current = revision.value["revision"]
            rounds.append(
                {
                    "round": number,
                    "principle": principle.id,
                    "findings": findings,
                    "critique": critique.value["critique"],
                    "evidence_problem": critique.unresolved,
                    "revision": current,
                    "attempts": {"critique": critique.attempts, "revision": revision.attempts},
                }
            )
        components = conf.ConfidenceComponents(parse_retries=retries)
        return Outcome(
            item_id=item.id,
            status="drafted",
            draft={
                "original": response,
                "revision": current,
                "principles": [r["principle"] for r in rounds],
                "rounds": rounds,
                "unverified_quotes": sum(
                    1 for r in rounds for f in r["findings"] if not f["found"]
                ),
            },
            rationale=rounds[-1]["critique"] if rounds else None,
            # No measured signal vouches for a revision yet: combine() gives 0.0, so revisions
            # are reviewed unless calibration finds they can be accepted.
            confidence=conf.combine(components),
            components=components.to_dict(),
            parse_attempts=1 + retries,
            generations=tuple(records),
        )


def _failed(item_id: str, answer: Answer, records: list[dict[str, Any]], number: int) -> Outcome:
    detail = f"round {number}: {answer.detail}" if answer.detail else f"round {number}"
    return Outcome(
        item_id, "failed", answer.reason or "parse_failure", detail,
        parse_attempts=answer.attempts, generations=tuple(records),
    )  # fmt: skip


def _prepare(constitution: Constitution, fields: Fields | None) -> Fields:
    _require_requests(constitution, ("critique_request", "revision_request"))
    fields = fields or Fields()
    if fields.text or fields.a:
        raise UsageError("revise takes (prompt, response) items", hint="use --response-field")
    return fields


REVISE = Task(
    name="revise",
    templates=REVISE_TEMPLATES,
    options=ReviseOptions,
    prepare=_prepare,
    identity=options_and_fields,
    drafter=lambda backend, constitution, templates, options, _: Reviser(
        backend, constitution, templates, options
    ),
)


async def arevise(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    options: ReviseOptions | None = None,
    **run: Unpack[RunArgs],
) -> RunSummary:
    """Critique and revise every (prompt, response) item for N rounds; resume what is stored.

    `revise` is the same for callers without an event loop. Keyword arguments besides
    `options` are those of `critic.label` (see `RunArgs`).
    """
    return await arun_task(
        REVISE, source, constitution, backend, store, options=options, **configure(run)
    )


revise = synchronous(arevise, "revise")
