"""`trl-dpo`: preference pairs that ship (TRL's conversational preference type with an explicit
prompt): (final revision ≻ original) from revise runs, (preferred ≻ other) from compare runs. The
shipped verdict is the human's where one decided; ties and pairs with nothing to learn from are
left out and counted."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from critic.exports.registry import ExportFormat, Tally
from critic.exports.trl import assistant, prompt_messages, provenance, write_trl
from critic.ship import FinalRecord


def dpo_rows(records: Iterable[FinalRecord], tally: Tally) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.task == "revise":
            if not record.revision or record.original is None:
                tally.skip("items without a revision")
                continue
            chosen, rejected = record.revision, record.original
        elif record.task == "compare":
            a, b = record.responses
            if record.preferred not in ("a", "b") or a is None or b is None:
                tally.skip("ties" if record.preferred == "tie" else "pairs without a preference")
                continue
            chosen, rejected = (a, b) if record.preferred == "a" else (b, a)
        else:
            tally.skip(f"{record.task} items (DPO takes revise and compare runs)")
            continue
        if chosen.strip() == rejected.strip():
            tally.skip("identical pairs")  # e.g. a revision that changed nothing
            continue
        yield {
            "prompt": prompt_messages(record),
            "chosen": assistant(chosen),
            "rejected": assistant(rejected),
            **provenance(record),
        }


FORMAT = ExportFormat(
    "trl-dpo",
    "DPOTrainer pairs from revise and compare runs (what ships only)",
    write_trl("trl-dpo", dpo_rows, ("prompt", "chosen", "rejected")),
    noun="DPO pairs",
    directory=True,
    shipped_only=True,
)
