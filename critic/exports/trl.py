"""What the TRL formats share (`trl_sft`, `trl_dpo`): chat messages, columns, the writer.

Column names and types follow TRL's "Dataset formats and types" page (huggingface.co/docs/trl/
dataset_formats, TRL v0.24, checked 2025): SFTTrainer takes the conversational language-modeling
type, `{"messages": [{"role", "content"}, ...]}`; DPOTrainer takes the conversational preference
type with an explicit prompt, `{"prompt": [{"role": "user", ...}], "chosen": [{"role":
"assistant", ...}], "rejected": [{"role": "assistant", ...}]}`. Extra columns (provenance here)
are allowed next to them.

Each export is a `datasets` directory (`datasets.load_from_disk(out)`) holding the same rows as
`out/<format>.jsonl`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from critic.backends.base import Message
from critic.exports.files import json_line, quiet_datasets, replacing, scratch_dir
from critic.exports.registry import Tally
from critic.ship import FinalRecord

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant|User|System):[ \t]?", re.IGNORECASE)
_ROLES = {"human": "user", "user": "user", "assistant": "assistant", "system": "system"}


def to_messages(prompt: Any) -> list[Message]:
    """The prompt as chat messages.

    A list of `{"role", "content"}` stays as it is; an HH-RLHF style transcript
    (`\\n\\nHuman: ... \\n\\nAssistant: ...`, ending in an open `Assistant:` turn) becomes one
    message per turn; any other text is one user message.
    """
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        return [{"role": str(m["role"]), "content": str(m.get("content", ""))} for m in prompt]
    text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
    marks = list(_TURN.finditer(text))
    if not marks or text[: marks[0].start()].strip():
        return [{"role": "user", "content": text.strip()}]
    messages: list[Message] = []
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        content = text[mark.end() : following.start() if following else len(text)].strip()
        messages.append({"role": _ROLES[mark.group(1).lower()], "content": content})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open turn the completion fills
    return messages


def assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def prompt_messages(record: FinalRecord) -> list[Message]:
    """The conversation the item answers, as chat messages."""
    return to_messages("" if record.prompt is None else record.prompt)


def provenance(record: FinalRecord) -> dict[str, Any]:
    """The columns every TRL row carries next to TRL's own (the same names and types as in the
    record formats)."""
    return {
        "id": record.item_id,
        "run_id": record.run_id,
        "task": record.task,
        "status": record.status,
        "label_source": record.label_source,
        "human_edited": record.human_edited,
        "reviewers": list(record.reviewers),
        "confidence": record.confidence,
        "preference_probability": record.preference_probability,
        "guaranteed": record.guaranteed,
        "route_reason": record.route_reason,
        "policy": record.policy,
        "principles": list(record.principles),
        "constitution": record.constitution,
        "constitution_id": record.constitution_id,
        "constitution_version": record.constitution_version,
        "model": record.model,
    }


def features(conversation_columns: Iterable[str]) -> Any:
    import datasets

    text = datasets.Value("string")
    turns = datasets.List({"role": text, "content": text})
    number, flag = datasets.Value("float64"), datasets.Value("bool")
    return datasets.Features(
        {
            **{name: turns for name in conversation_columns},
            "id": text, "run_id": text, "task": text, "status": text, "label_source": text,
            "human_edited": flag, "reviewers": datasets.List(text), "confidence": number,
            "preference_probability": number, "guaranteed": flag, "route_reason": text,
            "policy": text, "principles": datasets.List(text), "constitution": text,
            "constitution_id": text, "constitution_version": text, "model": text,
        }
    )  # fmt: skip


def write_trl(
    name: str,
    rows: Callable[[Iterable[FinalRecord], Tally], Iterator[dict[str, Any]]],
    conversation_columns: tuple[str, ...],
) -> Callable[[Iterable[FinalRecord], Path, Tally], int]:
    """A writer of a `datasets` directory at OUT holding the rows, with `OUT/<name>.jsonl`
    beside its Arrow files. Streamed: the rows go to the JSONL file as they come, and the
    dataset is built from it in batches, so memory does not grow with the run."""

    def write(records: Iterable[FinalRecord], out: Path, tally: Tally) -> int:
        import datasets

        with (
            replacing(out, directory=True) as temp,
            scratch_dir(out) as scratch,
            quiet_datasets(),
        ):
            jsonl = scratch / f"{name}.jsonl"
            count = 0
            with jsonl.open("w", encoding="utf-8") as handle:
                for row in rows(records, tally):
                    handle.write(json_line(row))
                    count += 1
            fixed = features(conversation_columns)
            if count:
                dataset = datasets.Dataset.from_generator(
                    _read_jsonl, gen_kwargs={"path": str(jsonl)}, features=fixed,
                    cache_dir=str(scratch / "cache"),
                )  # fmt: skip
                dataset.save_to_disk(str(temp))
            else:
                # Still TRL's columns and types; and one shard: `datasets` writes none for zero
                # rows (and cannot load that), and `from_generator` refuses an empty generator.
                empty = datasets.Dataset.from_dict({k: [] for k in fixed}, features=fixed)
                empty.save_to_disk(str(temp), num_shards=1)
            os.replace(jsonl, temp / f"{name}.jsonl")
        return count

    return write


def _read_jsonl(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)
