"""`trl-sft`: one conversation per revised item that ships (TRL's conversational language-modeling
type, `{"messages": [...]}`): the prompt, then the final revision, a reviewer's edit included."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from critic.exports.registry import ExportFormat, Tally
from critic.exports.trl import assistant, prompt_messages, provenance, write_trl
from critic.ship import FinalRecord


def sft_rows(records: Iterable[FinalRecord], tally: Tally) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.task != "revise":
            tally.skip(f"{record.task} items (SFT takes revise runs)")
            continue
        if not record.revision:
            tally.skip("items without a revision")
            continue
        yield {"messages": prompt_messages(record) + assistant(record.revision),
               **provenance(record)}  # fmt: skip


FORMAT = ExportFormat(
    "trl-sft",
    "SFTTrainer conversations from revise runs (what ships only)",
    write_trl("trl-sft", sft_rows, ("messages",)),
    noun="SFT conversations",
    directory=True,
    shipped_only=True,
)
