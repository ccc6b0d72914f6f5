"""Items: input rows with stable ids, from JSONL, CSV, Parquet, a `datasets` directory or the Hub.

A bad row never stops a run: it comes back as a `BadRow` naming `FILE:LINE` and the reason, and
the run records it as a failed item.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from critic.errors import InputError


@dataclass(frozen=True)
class Fields:
    """Which input columns hold what. `text` replaces prompt + response when given."""

    id: str | None = None
    prompt: str = "prompt"
    response: str = "response"
    text: str | None = None
    # Pairwise inputs (compare): the two responses.
    a: str | None = None
    b: str | None = None

    @property
    def required(self) -> list[str]:
        if self.text:
            return [self.text]
        if self.a and self.b:
            return [self.prompt, self.a, self.b]
        return [self.prompt, self.response]


@dataclass(frozen=True)
class Item:
    """One input row with its stable id and where it came from."""

    id: str
    row: Mapping[str, Any]
    source: str
    fields: Fields = field(default_factory=Fields)

    def get(self, name: str) -> str:
        value = self.row[name]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    @property
    def prompt(self) -> str | None:
        return None if self.fields.text else self.get(self.fields.prompt)

    @property
    def response(self) -> str | None:
        if self.fields.text:
            return self.get(self.fields.text)
        if self.fields.a:
            return None
        return self.get(self.fields.response)

    @property
    def text(self) -> str | None:
        return self.get(self.fields.text) if self.fields.text else None


@dataclass(frozen=True)
class BadRow:
    """A row that cannot become an item; recorded as a failed item with the reason."""

    id: str
    source: str
    reason: str
    row: Mapping[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def content_id(row: Mapping[str, Any]) -> str:
    """A stable id from the row's content (key order does not matter)."""
    blob = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _bad_id(raw: str) -> str:
    return "invalid-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _to_item(row: Any, source: str, fields: Fields, raw: str) -> Item | BadRow:
    if not isinstance(row, dict):
        kind = type(row).__name__ if row is not None else "null"
        return BadRow(_bad_id(raw), source, f"expected a JSON object, got {kind}")
    if fields.id is not None:
        if fields.id not in row or row[fields.id] in (None, ""):
            return BadRow(
                _bad_id(raw), source, f"missing id field '{fields.id}'", row
            )  # the row is kept for the record
        item_id = str(row[fields.id])
    elif row.get("id") not in (None, ""):
        item_id = str(row["id"])
    else:
        item_id = content_id(row)
    missing = [name for name in fields.required if name not in row or row[name] is None]
    if missing:
        present = ", ".join(sorted(row)[:8]) or "none"
        return BadRow(
            item_id,
            source,
            f"missing field {', '.join(repr(m) for m in missing)} (fields present: {present})",
            row,
        )
    return Item(item_id, row, source, fields)


def _read_jsonl(path: Path) -> Iterator[tuple[int, str, Any]]:
    # utf-8-sig drops a BOM; splitlines() copes with CRLF.
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, line, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, line, _Malformed(f"not valid JSON: {exc.msg} at column {exc.colno}")


@dataclass(frozen=True)
class _Malformed:
    reason: str


def _read_csv(path: Path) -> Iterator[tuple[int, str, Any]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if None in row:
                yield (
                    reader.line_num,
                    json.dumps(row, default=str),
                    _Malformed(
                        f"{len(row[None])} more value(s) than the header has columns"  # type: ignore[index]
                    ),
                )
                continue
            yield reader.line_num, json.dumps(row), dict(row)


def _read_table(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, str, Any]]:
    for number, row in enumerate(rows, start=1):
        plain = dict(row)
        yield number, json.dumps(plain, default=str, sort_keys=True), plain


def _open_parquet(path: Path) -> Iterator[Mapping[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(path)
    for batch in table.iter_batches(batch_size=2048):
        yield from batch.to_pylist()


def _open_datasets(target: str, split: str | None, from_disk: bool) -> Iterator[Mapping[str, Any]]:
    import datasets

    if from_disk:
        loaded = datasets.load_from_disk(target)
    else:
        try:
            loaded = datasets.load_dataset(target, split=split or "train")
        except Exception as exc:  # the Hub raises many kinds; the message is what matters
            raise InputError(
                f"{target}: cannot load it as a Hugging Face Hub dataset: {exc}",
                hint="check the name and --split, your network access, or give a local file",
            ) from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        chosen = split or ("train" if "train" in names else names[0])
        if chosen not in loaded:
            raise InputError(f"{target}: no split '{chosen}'", hint=f"splits: {', '.join(names)}")
        loaded = loaded[chosen]
    yield from loaded


def load_items(
    source: str | Path, fields: Fields | None = None, *, split: str | None = None
) -> Iterator[Item | BadRow]:
    """Yield an `Item` for every good row and a `BadRow` for every bad one.

    Args:
        source: a .jsonl/.json/.csv/.parquet file, a directory saved with `save_to_disk`, or a
            Hub dataset name such as `Anthropic/hh-rlhf`.
        fields: which columns hold the id, prompt, response or text.
        split: the split to read from a Hub dataset or a saved DatasetDict.
    """
    fields = fields or Fields()
    path = Path(source)
    name = str(source)
    rows: Iterable[tuple[int, str, Any]]
    if path.is_dir():
        if not any((path / marker).exists() for marker in ("state.json", "dataset_dict.json")):
            raise InputError(
                f"{path}: a directory, but not one saved with datasets' save_to_disk",
                hint="give a .jsonl, .csv or .parquet file, or a save_to_disk directory",
            )
        rows = _read_table(_open_datasets(str(path), split, from_disk=True))
        label = f"{name}:row "
    elif path.exists():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            rows, label = _read_jsonl(path), f"{name}:"
        elif suffix == ".csv":
            rows, label = _read_csv(path), f"{name}:"
        elif suffix in (".parquet", ".pq"):
            rows, label = _read_table(_open_parquet(path)), f"{name}:row "
        else:
            raise InputError(
                f"{path}: unknown input format '{suffix or 'no extension'}'",
                hint="use .jsonl, .csv or .parquet, or a save_to_disk directory",
            )
    elif "/" in name and not name.startswith((".", "/")) and len(path.parts) == 2:
        rows, label = _read_table(_open_datasets(name, split, from_disk=False)), f"{name}:row "
    else:
        raise InputError(
            f"{source}: no such file or directory",
            hint="check the path; Hub datasets are named like owner/name",
        )
    seen: dict[str, str] = {}
    for number, raw, row in rows:
        where = f"{label}{number}"
        if isinstance(row, _Malformed):
            yield BadRow(_bad_id(raw), where, row.reason)
            continue
        result = _to_item(row, where, fields, raw)
        if isinstance(result, Item):
            if result.id in seen:
                yield BadRow(
                    _bad_id(f"{where}:{raw}"),
                    where,
                    f"duplicate id '{result.id}' (first at {seen[result.id]})",
                    result.row,
                )
                continue
            seen[result.id] = where
        yield result
