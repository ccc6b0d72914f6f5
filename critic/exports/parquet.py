"""`parquet`: the record columns with their fixed Arrow types, written in row groups."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from critic.exports.columns import record_row, schema
from critic.exports.files import replacing
from critic.exports.registry import ExportFormat, Tally
from critic.ship import FinalRecord
from critic.ship.stream import batched

#: Rows per Parquet row group: each is held as Python values and Arrow columns at once, so this
#: bounds the export's memory.
PARQUET_ROWS = 5000


def write_parquet(records: Iterable[FinalRecord], target: Path) -> int:
    """Write records to a Parquet file at `target` (no atomic swap); return the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fixed = schema()
    count = 0
    with pq.ParquetWriter(str(target), fixed) as writer:
        for batch in batched(records, PARQUET_ROWS):
            writer.write_table(pa.Table.from_pylist([record_row(r) for r in batch], schema=fixed))
            count += len(batch)
        if not count:
            writer.write_table(fixed.empty_table())
    return count


def write(records: Iterable[FinalRecord], out: Path, tally: Tally) -> int:
    with replacing(out) as temp:
        return write_parquet(records, temp)


FORMAT = ExportFormat("parquet", "the same columns as jsonl, with fixed Arrow types", write)
