"""Export revise and compare runs in the shapes TRL's trainers take: `trl-sft` and `trl-dpo`.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from critic.backends.base import Message
from critic.errors import UsageError
from critic.export import export_rows, json_line, replacing, scratch_dir
from critic.store import Store

TRL_FORMATS = ("trl-sft", "trl-dpo")

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


def _assistant(text: str) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def _joined(store: Store, run_id: str | None) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(stored row, export row with human decisions merged) for every drafted item."""
    for stored, exported in zip(store.rows(run_id), export_rows(store, run_id), strict=True):
        if stored["status"] == "drafted" and not exported["rejected"]:
            yield stored, exported


def _provenance(stored: dict[str, Any], exported: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": stored["item_id"],
        "task": stored["task"],
        "source": exported["label_source"] or "critic",
        "constitution": stored["constitution_hash"],
        "constitution_id": stored["constitution_id"],
        "model": stored["model"],
        "run_id": stored["run_id"],
        "confidence": stored["confidence"],
        "reviewers": exported["reviewers"],
    }


def _prompt(stored: dict[str, Any]) -> Any:
    fields = (stored["params"] or {}).get("fields") or {}
    return (stored["row"] or {}).get(fields.get("prompt") or "prompt", "")


def sft_rows(store: Store, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """One conversation per revised item: the prompt, then the final revision."""
    for stored, exported in _joined(store, run_id):
        if stored["task"] != "revise":
            continue
        output = stored["output"]
        yield {
            "messages": to_messages(_prompt(stored)) + _assistant(output["revision"]),
            **_provenance(stored, exported),
            "margin": None,
            "principles": ",".join(output["principles"]),
        }


def dpo_rows(store: Store, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Preference pairs: (final revision ≻ original) from revise runs, and (preferred ≻ other)
    from compare runs. Ties, identical responses and human-rejected drafts are skipped; a human
    decision replaces the critic's verdict."""
    for stored, exported in _joined(store, run_id):
        output = stored["output"]
        if stored["task"] == "revise":
            chosen, rejected, margin = output["revision"], output["original"], None
            principles = output["principles"]
        elif stored["task"] == "compare":
            fields = (stored["params"] or {}).get("fields") or {}
            a, b = (str(stored["row"][fields[k]]) for k in ("a", "b"))
            verdict = exported["final_label"]
            if verdict not in ("a", "b"):
                continue
            chosen, rejected = (a, b) if verdict == "a" else (b, a)
            margin = output.get("margin") if exported["label_source"] == "critic" else 1.0
            principles = output.get("principles") or []
        else:
            continue
        if chosen.strip() == rejected.strip():
            continue  # a pair with nothing to learn from (a revision that changed nothing)
        yield {
            "prompt": to_messages(_prompt(stored)),
            "chosen": _assistant(chosen),
            "rejected": _assistant(rejected),
            **_provenance(stored, exported),
            "margin": margin,
            "principles": ",".join(principles),
        }


def _features(fmt: str) -> Any:
    import datasets

    turns = [{"role": datasets.Value("string"), "content": datasets.Value("string")}]
    columns = {"messages": turns} if fmt == "trl-sft" else {
        "prompt": turns, "chosen": turns, "rejected": turns,
    }  # fmt: skip
    return datasets.Features(
        {
            **columns,
            "id": datasets.Value("string"),
            "task": datasets.Value("string"),
            "source": datasets.Value("string"),
            "constitution": datasets.Value("string"),
            "constitution_id": datasets.Value("string"),
            "model": datasets.Value("string"),
            "run_id": datasets.Value("string"),
            "confidence": datasets.Value("float64"),
            "reviewers": datasets.Value("int64"),
            "margin": datasets.Value("float64"),
            "principles": datasets.Value("string"),
        }
    )


def export_trl(store: Store, out: str | Path, fmt: str, run_id: str | None = None) -> int:
    """Write a `datasets` directory at `out` and `out/<fmt>.jsonl`; return the row count.

    The directory is written beside `out` and swapped in complete (see `export.replacing`)."""
    if fmt not in TRL_FORMATS:
        raise UsageError(
            f"unknown TRL format '{fmt}'", hint=f"use one of: {', '.join(TRL_FORMATS)}"
        )
    import datasets

    if run_id is not None:
        run_id = store.run(run_id).id
    rows = sft_rows(store, run_id) if fmt == "trl-sft" else dpo_rows(store, run_id)
    out = Path(out)
    with replacing(out, directory=True) as temp, scratch_dir(out) as scratch:
        # Streamed: the rows go to the JSONL file as they come, and the dataset is built from it
        # in batches (written to disk by `datasets`), so memory does not grow with the run.
        jsonl = scratch / f"{fmt}.jsonl"
        count = 0
        with jsonl.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json_line(row))
                count += 1
        features = _features(fmt)
        if count:
            dataset = datasets.Dataset.from_generator(
                _read_jsonl, gen_kwargs={"path": str(jsonl)}, features=features,
                cache_dir=str(scratch / "cache"),
            )  # fmt: skip
            dataset.save_to_disk(str(temp))
        else:
            # Still TRL's columns and types; and one shard: `datasets` 5.2 writes none for zero
            # rows (and cannot load that), and `from_generator` refuses an empty generator.
            empty = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
            empty.save_to_disk(str(temp), num_shards=1)
        os.replace(jsonl, temp / f"{fmt}.jsonl")
    return count


def _read_jsonl(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)
