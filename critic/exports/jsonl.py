"""`jsonl`: one JSON object per final record, every column of `columns` in every line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from critic.exports.columns import record_row
from critic.exports.files import json_line, replacing
from critic.exports.registry import ExportFormat, Tally
from critic.ship import FinalRecord


def write(records: Iterable[FinalRecord], out: Path, tally: Tally) -> int:
    count = 0
    with replacing(out) as temp, temp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json_line(record_row(record)))
            count += 1
    return count


FORMAT = ExportFormat("jsonl", "one JSON object per item (every column, typed nulls)", write)
