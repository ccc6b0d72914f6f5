"""Items: input rows with stable ids, from JSONL, CSV, Parquet, a `datasets` directory or the Hub.

A bad row never stops a run: it comes back as a `BadRow` naming `FILE:LINE` and the reason, and
the run records it as a failed item. Hostile rows are bad rows too: invalid UTF-8, nesting deeper
than `MAX_DEPTH`, CSV fields over `CSV_FIELD_LIMIT` characters. Reasons quote data only through
`critic.text.printable`, so a field name cannot send escape sequences to the terminal.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from critic.errors import InputError
from critic.text import printable

MAX_DEPTH = 100
"""Rows nested deeper than this (objects and arrays) are bad rows: deeper rows are not real data,
and they would overflow the recursion of every JSON encoder, validator and template after us."""

CSV_FIELD_LIMIT = 16 * 1024 * 1024
"""The longest CSV field read, in characters (Python's default is 128 KiB). Longer is a bad row."""


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
        return printable(f"{self.source}: {self.reason}")


def content_id(row: Mapping[str, Any]) -> str:
    """A stable id from the row's content (key order does not matter)."""
    blob = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _bad_id(raw: str) -> str:
    # Callers pass the row's place with its text: identical bad lines at two places are two
    # failed items, and a rerun finds each again under the same id.
    return "invalid-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _to_item(row: Any, source: str, fields: Fields, raw: str) -> Item | BadRow:
    if not isinstance(row, dict):
        kind = type(row).__name__ if row is not None else "null"
        return BadRow(_bad_id(f"{source}:{raw}"), source, f"expected a JSON object, got {kind}")
    if _deeper_than(row, MAX_DEPTH):
        return BadRow(_bad_id(f"{source}:{raw}"), source, f"nested deeper than {MAX_DEPTH} levels")
    if fields.id is not None:
        if fields.id not in row or row[fields.id] in (None, ""):
            return BadRow(
                _bad_id(f"{source}:{raw}"), source, f"missing id field '{fields.id}'", row
            )  # the row is kept for the record
        item_id = str(row[fields.id])
    elif row.get("id") not in (None, ""):
        item_id = str(row["id"])
    else:
        item_id = content_id(row)
    missing = [name for name in fields.required if name not in row or row[name] is None]
    if missing:
        present = ", ".join(printable(name) for name in sorted(row)[:8]) or "none"
        return BadRow(
            item_id,
            source,
            f"missing field {', '.join(repr(m) for m in missing)} (fields present: {present})",
            row,
        )
    return Item(item_id, row, source, fields)


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            current = list(current.values())
        if isinstance(current, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in current)
    return False


@dataclass(frozen=True)
class _Malformed:
    reason: str


def _decode(line: bytes) -> str | _Malformed:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Malformed(
            f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            "re-encode the file as UTF-8"
        )


def _raw_lines(
    path: Path, start: int = 0, stop: int | None = None, first: int = 1
) -> Iterator[tuple[int, bytes]]:
    """Numbered lines with their endings, split on "\\n" only (U+2028, U+2029 and U+0085 are
    legal inside JSON strings and CSV fields), without a BOM; read as a stream. `start`/`stop`
    are byte offsets at line starts (a `Part`), `first` the number of the line at `start`."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset, number = start, first
        while stop is None or offset < stop:
            line = handle.readline()
            if not line:
                return
            offset += len(line)
            yield number, line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line
            number += 1


def _read_jsonl(
    path: Path, start: int = 0, stop: int | None = None, first: int = 1
) -> Iterator[tuple[int, str, Any]]:
    for number, raw in _raw_lines(path, start, stop, first):
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        line = _decode(raw)
        if isinstance(line, _Malformed):
            yield number, raw.decode("utf-8", errors="backslashreplace"), line
            continue
        if not line.strip():
            continue
        try:
            yield number, line, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, line, _Malformed(f"not valid JSON: {exc.msg} at column {exc.colno}")
        except RecursionError:
            yield number, line, _Malformed(f"nested deeper than {MAX_DEPTH} levels")


def _read_csv(path: Path) -> Iterator[tuple[int, str, Any]]:
    """Rows of a CSV file with a header. A bad record (a CSV error such as a field over the limit,
    invalid UTF-8, too many values) is reported at the line it starts on; reading goes on."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    invalid: dict[int, _Malformed] = {}

    def decoded() -> Iterator[str]:
        for number, raw in _raw_lines(path):  # endings kept: quoted fields may span lines
            line = _decode(raw)
            if isinstance(line, _Malformed):
                invalid[number] = line
                line = raw.decode("utf-8", errors="replace")
            yield line

    reader = csv.reader(decoded())
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        failure: _Malformed | None = None
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = str(exc)
            if "field larger than field limit" in problem:
                problem = f"a field is longer than {CSV_FIELD_LIMIT:,} characters"
            failure, values = _Malformed(f"not readable as CSV: {problem}"), []
        spanned = [invalid.pop(n) for n in range(start, reader.line_num + 1) if n in invalid]
        failure = failure or (spanned[0] if spanned else None)
        if header is None:
            if failure is not None:
                raise InputError(f"{path}:{start}: cannot read the CSV header: {failure.reason}")
            header = values
            continue
        if failure is not None:
            yield start, f"{path}:{start}:{json.dumps(values)}", failure
            continue
        if not values:
            continue  # a blank line
        # The same rows (and so the same ids for bad rows) as csv.DictReader gave before.
        row: dict[Any, Any] = dict.fromkeys(header)
        row.update(zip(header, values, strict=False))
        if len(values) > len(header):
            extra = values[len(header) :]
            row[None] = extra
            yield (
                start,
                json.dumps(row, default=str),
                _Malformed(f"{len(extra)} more value(s) than the header has columns"),
            )
            continue
        yield start, json.dumps(row), row


def _read_table(
    rows: Iterable[Mapping[str, Any]], first: int = 1
) -> Iterator[tuple[int, str, Any]]:
    for number, row in enumerate(rows, start=first):
        plain = dict(row)
        try:
            raw = json.dumps(plain, default=str, sort_keys=True)
        except (RecursionError, ValueError) as exc:
            yield number, f"row {number}", _Malformed(f"cannot be read as JSON: {exc}")
            continue
        yield number, raw, plain


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
    yield from _choose_split(loaded, split, target)


def _choose_split(loaded: Any, split: str | None, target: object) -> Any:
    """The split `split` of a `DatasetDict` (default: train, else the first), or `loaded` itself
    when it is one dataset."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    names = list(loaded)
    chosen = split or ("train" if "train" in names else (names[0] if names else "train"))
    if chosen not in loaded:
        raise InputError(
            f"{target}: no split '{chosen}'", hint=f"splits: {', '.join(names) or 'none'}"
        )
    return loaded[chosen]


def load_items(
    source: str | Path,
    fields: Fields | None = None,
    *,
    split: str | None = None,
    check_duplicates: bool = True,
) -> Iterator[Item | BadRow]:
    """Yield an `Item` for every good row and a `BadRow` for every bad one.

    Args:
        source: a .jsonl/.json/.csv/.parquet file, a directory saved with `save_to_disk`, or a
            Hub dataset name such as `Anthropic/hh-rlhf`.
        fields: which columns hold the id, prompt, response or text.
        split: the split to read from a Hub dataset or a saved DatasetDict.
        check_duplicates: report a repeated id as a bad row. This keeps every id seen, so the
            run engine, which streams datasets of any size, turns it off and asks its store.
    """
    fields = fields or Fields()
    path = Path(source)
    if path.is_dir() and not _is_saved_dataset(path):
        named = (
            row for file in data_files(path) for row in _named(*_rows_of(file, str(file), split))
        )
        yield from _entries(named, fields, check_duplicates)
        return
    yield from _entries(_named(*_rows_of(path, str(source), split)), fields, check_duplicates)


_DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".parquet", ".pq")


def _is_saved_dataset(path: Path) -> bool:
    return any((path / marker).exists() for marker in ("state.json", "dataset_dict.json"))


def data_files(directory: Path) -> list[Path]:
    """The data files (JSONL, CSV, Parquet) directly in `directory`, in name order: a directory
    of such files is read as one input, file after file."""
    files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES
    )
    if not files:
        raise InputError(
            f"{directory}: a directory with no .jsonl, .csv or .parquet files in it, and not one "
            "saved with datasets' save_to_disk",
            hint="give a .jsonl, .csv or .parquet file, a folder of them, or a save_to_disk dir",
        )
    return files


def _rows_of(
    path: Path, name: str, split: str | None
) -> tuple[Iterable[tuple[int, str, Any]], str]:
    """The numbered rows of one input, and the prefix that names them (`FILE:` or `FILE:row `)."""
    if path.is_dir():
        return _read_table(_open_datasets(str(path), split, from_disk=True)), f"{name}:row "
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            return _read_jsonl(path), f"{name}:"
        if suffix == ".csv":
            return _read_csv(path), f"{name}:"
        if suffix in (".parquet", ".pq"):
            return _read_table(_open_parquet(path)), f"{name}:row "
        raise InputError(
            f"{path}: unknown input format '{suffix or 'no extension'}'",
            hint="use .jsonl, .csv or .parquet, or a save_to_disk directory",
        )
    if "/" in name and not name.startswith((".", "/")) and len(path.parts) == 2:
        return _read_table(_open_datasets(name, split, from_disk=False)), f"{name}:row "
    raise InputError(
        f"{name}: no such file or directory",
        hint="check the path; Hub datasets are named like owner/name",
    )


def _named(rows: Iterable[tuple[int, str, Any]], label: str) -> Iterator[tuple[str, str, Any]]:
    """Rows with their names (`FILE:LINE`, `FILE:row N`) instead of their numbers."""
    for number, raw, row in rows:
        yield f"{label}{number}", raw, row


def _entries(
    rows: Iterable[tuple[str, str, Any]], fields: Fields, check_duplicates: bool
) -> Iterator[Item | BadRow]:
    seen: dict[str, str] = {}
    for where, raw, row in rows:
        if isinstance(row, _Malformed):
            yield BadRow(_bad_id(f"{where}:{raw}"), where, row.reason)
            continue
        result = _to_item(row, where, fields, raw)
        if isinstance(result, Item) and check_duplicates:
            if result.id in seen:
                yield BadRow(
                    _bad_id(f"{where}:{raw}"),
                    where,
                    f"duplicate id '{printable(result.id)}' (first at {seen[result.id]})",
                    result.row,
                )
                continue
            seen[result.id] = where
        yield result


def count_rows(source: str | Path, *, split: str | None = None) -> int | None:
    """About how many rows `source` has, read cheaply (for a progress bar); None if unknown.

    Lines of a JSONL file (blank ones included), lines after a CSV header (a quoted field may
    span lines), a Parquet file's metadata, a saved dataset's length. A split the saved
    dataset lacks is an InputError, as it is when reading.
    """
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_dir() and not _is_saved_dataset(path):
        counts = [count_rows(file) for file in data_files(path)]
        return None if None in counts else sum(c or 0 for c in counts)
    if path.is_file() and suffix in (".jsonl", ".json", ".ndjson", ".csv"):
        lines, last = 0, b"\n"
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(0, lines - 1) if suffix == ".csv" else lines
    if path.is_file() and suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if path.is_dir():
        import datasets

        return len(_choose_split(datasets.load_from_disk(str(path)), split, path))
    return None


@dataclass(frozen=True)
class Part:
    """A piece of an input that a worker reads on its own (`load_part`), for `--ray`.

    `kind` says what `start`/`stop` count: `lines` are byte offsets of whole lines of a JSONL
    file, `row_groups` are a Parquet file's row groups, `rows` the row indexes of a saved
    dataset, and `file` is a whole CSV file (a quoted field may span lines, so a CSV file is not
    cut). `first` is the input position (the store's
    `seq`) of the part's first row, `first_line` its line or row number in its own file; `rows`
    its row count; `max_rows` cuts it short for `--limit`.
    """

    source: str
    kind: str
    start: int
    stop: int
    first: int
    rows: int
    first_line: int = 1
    split: str | None = None
    max_rows: int | None = None


def plan_parts(
    source: str | Path,
    *,
    split: str | None = None,
    limit: int | None = None,
    rows_per_part: int = 2000,
) -> list[Part]:
    """Cut `source` into parts of about `rows_per_part` rows, reading only what says where rows
    start (JSONL line ends, Parquet metadata, a saved dataset's length): no row is held.

    Raises:
        InputError: for a Hub dataset name (save it to shared storage with `save_to_disk`) or a
            format `load_items` does not read.
    """
    path = Path(source)
    name = str(source)
    suffix = path.suffix.lower()
    parts: list[Part] = []
    if path.is_dir() and not _is_saved_dataset(path):
        offset = 0
        for file in data_files(path):
            for part in plan_parts(file, rows_per_part=rows_per_part):
                parts.append(replace(part, first=part.first + offset))
            offset = parts[-1].first + parts[-1].rows if parts else offset
    elif path.is_file() and suffix in (".jsonl", ".json", ".ndjson"):
        with path.open("rb") as handle:
            start, lines, offset = 0, 0, 0
            for line in handle:
                offset += len(line)
                lines += 1
                if lines % rows_per_part == 0:
                    first = lines - rows_per_part
                    parts.append(
                        Part(name, "lines", start, offset, first, rows_per_part, first + 1)
                    )
                    start = offset
            if offset > start:
                first = lines - lines % rows_per_part
                parts.append(Part(name, "lines", start, offset, first, lines - first, first + 1))
    elif path.is_file() and suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        first = 0
        for group in range(meta.num_row_groups):
            count = meta.row_group(group).num_rows
            parts.append(Part(name, "row_groups", group, group + 1, first, count, first + 1))
            first += count
    elif path.is_file() and suffix == ".csv":
        parts.append(Part(name, "file", 0, 0, 0, count_rows(path) or 0))
    elif path.is_dir():
        total = count_rows(path, split=split) or 0
        for start in range(0, total, rows_per_part):
            stop = min(total, start + rows_per_part)
            parts.append(Part(name, "rows", start, stop, start, stop - start, start + 1, split))
    else:
        raise InputError(
            f"{source}: --ray reads JSONL, CSV and Parquet files, folders of them, and "
            "save_to_disk directories",
            hint="save a Hub dataset with datasets' save_to_disk to storage every worker can read",
        )
    if limit is None:
        return parts
    kept: list[Part] = []
    for part in parts:
        if part.first >= limit:
            break
        if part.first + part.rows > limit or part.kind == "file":
            part = replace(part, max_rows=limit - part.first)
        kept.append(part)
    return kept


def load_part(part: Part, fields: Fields | None = None) -> Iterator[tuple[int, Item | BadRow]]:
    """`(input position, item or bad row)` for each row of `part`, named as `load_items` names
    them (`FILE:LINE`, `FILE:row N`). Duplicate ids are the store's to find (see `critic.runs`)."""
    fields = fields or Fields()
    path = Path(part.source)
    rows: Iterable[tuple[int, str, Any]]
    if part.kind == "lines":
        rows, label = _read_jsonl(path, part.start, part.stop, part.first_line), f"{part.source}:"
    elif part.kind == "row_groups":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(path)

        def groups() -> Iterator[Mapping[str, Any]]:
            for group in range(part.start, part.stop):
                yield from table.read_row_group(group).to_pylist()

        rows, label = _read_table(groups(), part.first_line), f"{part.source}:row "
    elif part.kind == "rows":
        import datasets

        loaded = _choose_split(datasets.load_from_disk(str(path)), part.split, path)
        selected = loaded.select(range(part.start, part.stop))
        rows, label = _read_table(selected, part.first_line), f"{part.source}:row "
    elif part.kind == "file":
        rows, label = _read_csv(path), f"{part.source}:"
    else:
        raise ValueError(f"unknown part kind {part.kind!r}")
    entries = _entries(_named(rows, label), fields, check_duplicates=False)
    for offset, entry in enumerate(entries):
        if part.max_rows is not None and offset >= part.max_rows:
            return
        yield part.first + offset, entry
