"""Export stored results: one row per input item, failures included, with full provenance."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from critic.errors import UsageError
from critic.store import Store, verdict

Format = Literal["jsonl", "parquet", "hf"]
FORMATS: tuple[str, ...] = ("jsonl", "parquet", "hf")

# Columns critic writes; an input field with one of these names is kept as `input_<name>`.
RESERVED = {
    "id", "label", "score", "rationale", "principles", "confidence", "confidence_components",
    "status", "reason", "detail", "source", "constitution", "constitution_id",
    "constitution_version", "model", "backend", "template", "run_id", "task", "created_at",
    "drafted_at", "updated_at", "parse_attempts", "score_distribution", "expected_score",
    "route", "route_reason", "final_label", "label_source", "rejected", "reviewers",
    "review_agreement",
}  # fmt: skip


# Legal inside JSON strings, but line breaks to str.splitlines() and many JSONL readers.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def json_line(row: dict[str, Any]) -> str:
    """One JSONL line (with its newline): UTF-8 text, with the Unicode line breaks escaped."""
    return json.dumps(row, ensure_ascii=False, default=str).translate(_LINE_BREAKS) + "\n"


#: Rows per batch of the store's reads and route lookups.
BATCH = 2000
#: Rows per Parquet row group: each one is held as Python values and Arrow columns at once
#: (about 15 MB per 1,000 rows of the bench's size), so this bounds the export's memory.
PARQUET_ROWS = 5000


def _batches(rows: Iterable[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def export_rows(store: Store, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The export rows, in input order, with routes and human decisions merged in.

    `final_label` is what ships: the human (or adjudicated) label where a human decided, else the
    critic's; `label_source` says which (critic / human / adjudicated). Rows stream from the store
    in batches, and each batch looks up its own routes, so memory does not grow with the run.
    """
    from critic.review import human_outcomes

    humans = human_outcomes(store.engine.url.render_as_string(hide_password=False))
    for batch in _batches(store.rows(run_id)):
        routes = store.routes_for([(r["run_id"], r["item_id"]) for r in batch])
        for r in batch:
            key = (r["run_id"], r["item_id"])
            yield _export_row(r, routes.get(key), humans.get(key))


def _export_row(
    r: dict[str, Any], route: dict[str, Any] | None, human: dict[str, Any] | None
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": r["item_id"]}
    for key, value in (r["row"] or {}).items():
        if key == "id" and str(value) == r["item_id"]:
            continue
        row[f"input_{key}" if key in RESERVED else key] = value
    draft = r["output"] or {}
    row.update(
        {
            "label": r["label"],
            "score": r["score"],
            "rationale": r["rationale"],
            "principles": draft.get("principles"),
            "confidence": r["confidence"],
            "status": r["status"],
            "reason": r["reason"],
            "detail": r["detail"],
            "source": r["source"],
            "task": r["task"],
            "constitution": r["constitution_hash"],
            "constitution_id": r["constitution_id"],
            "constitution_version": r["constitution_version"],
            "model": r["model"],
            "backend": r["backend"],
            "template": r["template_hash"],
            "run_id": r["run_id"],
            "created_at": r["run_created_at"],
            "drafted_at": r["drafted_at"],
            "updated_at": r["updated_at"],
            "parse_attempts": r["parse_attempts"],
            "confidence_components": (
                None if r["components"] is None else json.dumps(r["components"])
            ),
        }
    )
    critic_verdict = verdict(r["label"], r["score"])
    row.update(
        {
            "route": route["decision"] if route else None,
            "route_reason": route["reason"] if route else None,
            "final_label": human["label"] if human else critic_verdict,
            "label_source": human["source"] if human else ("critic" if critic_verdict else None),
            "rejected": bool(human and human["rejected"]),
            "reviewers": human["reviewers"] if human else 0,
            "review_agreement": human["agreement"] if human else None,
        }
    )
    if "expected_score" in draft:
        row["expected_score"] = draft["expected_score"]
        row["score_distribution"] = json.dumps(draft.get("score_distribution"))
    return row


_ARROW_TYPES = {str: "string", int: "int64", float: "float64", bool: "bool"}


class ColumnTypes:
    """Arrow needs one type per column, and input fields can be ragged across rows: the columns in
    order of their first value with the Python types seen in each (a column that is always None is
    left out). A column with nested values or more than one type goes out as JSON text; every row
    gets every column (None where absent)."""

    def __init__(self) -> None:
        self.seen: dict[str, set[type]] = {}

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if value is not None:
                self.seen.setdefault(key, set()).add(type(value))

    def text_columns(self) -> set[str]:
        return {k for k, t in self.seen.items() if len(t) > 1 or t & {dict, list, tuple}}

    def schema(self) -> Any:
        import pyarrow as pa

        text = self.text_columns()
        fields = [] if self.seen else [pa.field("id", pa.string())]  # no rows: still a column
        for key, types in self.seen.items():
            if key in text:
                kind = pa.string()
            else:
                kind = pa.type_for_alias(_ARROW_TYPES.get(next(iter(types)), "string"))
            fields.append(pa.field(key, kind))
        return pa.schema(fields)

    def table(self, rows: list[dict[str, Any]], schema: Any, text: set[str]) -> Any:
        import pyarrow as pa

        columns = {
            k: [json.dumps(row[k], ensure_ascii=False, default=str)
                if k in text and row.get(k) is not None else row.get(k) for row in rows]
            for k in self.seen
        }  # fmt: skip
        return pa.Table.from_pydict(columns, schema=schema)


def _write_parquet(rows: Iterable[dict[str, Any]], target: Path, scratch: Path) -> int:
    """Parquet in row groups, at constant memory: the rows are first spilled to JSONL in `scratch`
    (one pass over the store, learning every column's type), then read back in batches against
    the one schema that fits them all."""
    import pyarrow.parquet as pq

    spill = scratch / "rows.jsonl"
    types = ColumnTypes()
    count = 0
    with spill.open("w", encoding="utf-8") as handle:
        for row in rows:
            types.add(row)
            handle.write(json_line(row))
            count += 1
    schema, text = types.schema(), types.text_columns()
    with spill.open(encoding="utf-8") as handle, pq.ParquetWriter(str(target), schema) as writer:
        lines = (json.loads(line) for line in handle)
        for batch in _batches(lines, PARQUET_ROWS):
            writer.write_table(types.table(batch, schema, text))
        if not count:
            writer.write_table(schema.empty_table())
    spill.unlink()
    return count


@contextmanager
def scratch_dir(out: Path) -> Iterator[Path]:
    """A hidden scratch directory beside `out` (same disk), removed afterwards whatever happens."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp") as d:
        yield Path(d)


@contextmanager
def replacing(out: Path, *, directory: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `out` to write to; it replaces `out` only once complete.

    An export that fails or is killed half-way leaves the previous `out` as it was (and at most a
    hidden `.NAME.*.tmp` beside it). A file is swapped in with one `os.replace`; a directory by
    moving the old one aside, renaming the new one into place, then deleting the old one.
    """
    if directory and out.is_file():
        raise UsageError(f"{out} is a file; this format writes a directory", hint="give a new path")
    if directory and out.is_dir() and any(out.iterdir()) and not (out / "state.json").is_file():
        # The whole directory is replaced: never one that holds anything but an earlier export.
        raise UsageError(
            f"{out} is a directory that holds something other than a datasets export",
            hint="give a new path (the export replaces the whole directory)",
        )
    if not directory and out.is_dir():
        raise UsageError(
            f"{out} is a directory; this format writes a file", hint="give a file path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp/mkdtemp: they create mode 0600/0700, and the export should get the umask's mode.
    temp = out.parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    try:
        yield temp
        if directory and out.exists():
            old = out.parent / f".{out.name}.{secrets.token_hex(6)}.old"
            os.replace(out, old)
            try:
                os.replace(temp, out)
            except BaseException:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, out)
    except BaseException:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise


def write(rows: Iterable[dict[str, Any]], out: str | Path, fmt: str) -> int:
    """Write rows as JSONL, Parquet or a `datasets` directory; return the row count.

    The output appears complete or not at all: it is written beside `out`, then swapped in.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
    out = Path(out)
    if fmt == "jsonl":
        count = 0
        with replacing(out) as temp, temp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json_line(row))
                count += 1
        return count
    with replacing(out, directory=fmt == "hf") as temp, scratch_dir(out) as scratch:
        if fmt == "parquet":
            return _write_parquet(rows, temp, scratch)
        import datasets

        parquet = scratch / "rows.parquet"
        count = _write_parquet(rows, parquet, scratch)
        if count:  # read back in batches into `datasets`' own Arrow files on disk
            dataset = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(scratch / "c"))
            dataset.save_to_disk(str(temp))
        else:  # one shard: `datasets` 5.2 writes none for zero rows and cannot load that
            features = datasets.Features({"id": datasets.Value("string")})
            empty = datasets.Dataset.from_dict({"id": []}, features=features)
            empty.save_to_disk(str(temp), num_shards=1)
    return count


def export(store: Store, out: str | Path, fmt: str = "jsonl", run_id: str | None = None) -> int:
    """Export a run (or every run in the store) to `out`; return the row count."""
    if run_id is not None:
        run_id = store.run(run_id).id
    return write(export_rows(store, run_id), out, fmt)
