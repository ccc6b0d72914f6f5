"""`hf`: a Hugging Face `datasets` directory (`datasets.load_from_disk(OUT)`) with the record
columns and their fixed features, zero rows included."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from critic.exports.columns import schema
from critic.exports.files import quiet_datasets, replacing, scratch_dir
from critic.exports.parquet import write_parquet
from critic.exports.registry import ExportFormat, Tally
from critic.ship import FinalRecord


def write(records: Iterable[FinalRecord], out: Path, tally: Tally) -> int:
    import datasets

    with replacing(out, directory=True) as temp, scratch_dir(out) as scratch, quiet_datasets():
        parquet = scratch / "rows.parquet"
        count = write_parquet(records, parquet)
        features = datasets.Features.from_arrow_schema(schema())
        if count:  # read back in batches into `datasets`' own Arrow files on disk
            dataset = datasets.Dataset.from_parquet(
                str(parquet), features=features, cache_dir=str(scratch / "c")
            )
            dataset.save_to_disk(str(temp))
        else:  # one shard: `datasets` writes none for zero rows and cannot load that
            empty = datasets.Dataset.from_dict({k: [] for k in features}, features=features)
            empty.save_to_disk(str(temp), num_shards=1)
    return count


FORMAT = ExportFormat(
    "hf", "a datasets directory (load_from_disk) with the jsonl columns", write, directory=True
)
