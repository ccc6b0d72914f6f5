"""Items: input rows with stable ids, from JSONL, CSV, Parquet, a `datasets` directory or the Hub.

A bad row never stops a run: it comes back as a `BadRow` naming `FILE:LINE` and the reason, and
the run records it as a failed item. Hostile rows are bad rows too: invalid UTF-8, nesting deeper
than `MAX_DEPTH`, CSV fields over `CSV_FIELD_LIMIT` characters, JSONL lines over
`MAX_LINE_BYTES`, ids over `MAX_ID_CHARS`, the NUL character anywhere, and JSON that only lenient
parsers read (see `strict_json`). Reasons quote data only through `critic.text.printable`, so a
field name cannot send escape sequences to the terminal.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from critic.errors import ConfigError, InputError
from critic.text import printable

MAX_DEPTH = 100
"""Rows nested deeper than this (objects and arrays) are bad rows: deeper rows are not real data,
and they would overflow the recursion of every JSON encoder, validator and template after us."""

CSV_FIELD_LIMIT = 16 * 1024 * 1024
"""The longest CSV field read, in characters (Python's default is 128 KiB). Longer is a bad row."""

MAX_LINE_BYTES = 8 * 1024 * 1024
"""The longest JSONL line read, in bytes (the default of `InputSpec.max_line_bytes`, the
`--max-line-bytes` flag). A longer line is a bad row, skipped without being held in memory: parsed,
a line takes about ten times its size (a 30 MB line took 310 MB)."""

MAX_ID_CHARS = 255
"""The longest item id, in characters: the stores' id columns hold 255 (PostgreSQL enforces it).
A longer id is a bad row on every store."""

FIELD_CHECK_ROWS = 20
"""How many rows `check_fields` reads before a run starts."""


@dataclass(frozen=True)
class Fields:
    """Which input columns hold what. `text` replaces prompt + response when given.

    `prompt` may name several columns (a tuple): the prompt is then their values joined in that
    order, each under its column's name (see `Item.prompt`). One column is kept as a plain
    string, so a run reading one prompt column keeps the identity it always had.
    """

    id: str | None = None
    prompt: str | tuple[str, ...] = "prompt"
    response: str = "response"
    text: str | None = None
    # Pairwise inputs (compare): the two responses.
    a: str | None = None
    b: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            names = tuple(self.prompt)  # a list, read back from a stored run's JSON
            if not names:
                raise ConfigError("prompt_field", "{prompt_field} needs at least one column")
            object.__setattr__(self, "prompt", names[0] if len(names) == 1 else names)

    @property
    def prompts(self) -> tuple[str, ...]:
        """The prompt column(s), in order."""
        return (self.prompt,) if isinstance(self.prompt, str) else self.prompt

    @property
    def required(self) -> list[str]:
        return [column for _, column in self.named()]

    def named(self) -> list[tuple[str, str]]:
        """(setting, column) for every column a row must have: the setting is the option that
        names the column (`prompt_field`, ...), so an error can say which one to fix."""
        if self.text:
            return [("text_field", self.text)]
        prompts = [("prompt_field", name) for name in self.prompts]
        if self.a and self.b:
            return [*prompts, ("a_field", self.a), ("b_field", self.b)]
        return [*prompts, ("response_field", self.response)]


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
        """The prompt column's value; with several, each non-empty one under its column's name
        (`instruction:\n...\n\ninput:\n...`), in the order they were given."""
        if self.fields.text:
            return None
        names = self.fields.prompts
        if len(names) == 1:
            return self.get(names[0])
        parts = ((name, self.get(name)) for name in names)
        return "\n\n".join(f"{name}:\n{value}" for name, value in parts if value != "")

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


def prompt_of(row: Mapping[str, Any], prompt: str | Sequence[str]) -> Any:
    """The prompt of a stored `row` as its run read it: `prompt` is the run's prompt field(s)
    (`Fields.prompt`, or the list a run's stored params hold). One field's value comes as it is;
    several are joined as `Item.prompt` joins them (None when one is missing)."""
    fields = Fields(prompt=prompt if isinstance(prompt, str) else tuple(prompt))
    if isinstance(fields.prompt, str):
        return row.get(fields.prompt)
    if any(row.get(name) is None for name in fields.prompts):
        return None
    return Item("", row, "", fields).prompt


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
    problem = _unstorable(row)
    if problem is not None:  # the row itself is not kept: a store could not hold it either
        return BadRow(_bad_id(f"{source}:{raw}"), source, problem)
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
    if len(item_id) > MAX_ID_CHARS:
        return BadRow(
            _bad_id(f"{source}:{raw}"), source,
            f"the id is {len(item_id):,} characters long; ids are at most {MAX_ID_CHARS}", row,
        )  # fmt: skip
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


def _unstorable(row: dict[Any, Any]) -> str | None:
    """Why no store can hold `row` as data, or None: nesting deeper than `MAX_DEPTH`, or the NUL
    character (U+0000) in a key or a value, which PostgreSQL text cannot hold (and which is not
    text a critic is meant to read)."""
    stack: list[tuple[Any, int, Any]] = [(value, 2, key) for key, value in row.items()]
    stack.extend((key, 1, key) for key in row)
    while stack:
        current, depth, top = stack.pop()
        if isinstance(current, str):
            if "\x00" in current:
                return (
                    f"field '{printable(top)}' holds the NUL character (U+0000), which the "
                    "stores cannot keep; remove it from the input"
                )
            continue
        if isinstance(current, dict):
            stack.extend((key, depth, top) for key in current)
            current = list(current.values())
        if isinstance(current, list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            stack.extend((child, depth + 1, top) for child in current)
    return None


@dataclass(frozen=True)
class _Malformed:
    reason: str


class _NotStrict(ValueError):
    """JSON that Python's parser reads but the standard does not define."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotStrict(
                    f"the key '{printable(key)}' appears twice in one object (JSON does not say "
                    "which value counts); keep one"
                )
            seen.add(key)
    return row


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotStrict(
            f"the number {printable(text[:40])} is too large for a 64-bit float (it would read "
            "as infinity); write it as a string"
        )
    return value


def _constant(name: str) -> Any:
    raise _NotStrict(f"{name} is not a JSON value; write null or a string")


def strict_json(text: str) -> Any:
    """`text` parsed as standard JSON (RFC 8259), which Python's `json.loads` is not.

    Python reads `NaN`, `Infinity` and `-Infinity`, turns `1e999` into infinity, and keeps the
    last of two equal keys; each of these raises `ValueError` here, saying what to fix.
    Integers longer than Python reads (4,300 digits) raise `ValueError` too.
    """
    return _STRICT.decode(text)


_STRICT = json.JSONDecoder(object_pairs_hook=_object, parse_float=_float, parse_constant=_constant)


@dataclass(frozen=True)
class _LongLine:
    """A line over the length limit, skipped: only its size is kept."""

    size: int


def _decode(line: bytes) -> str | _Malformed:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Malformed(
            f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            "re-encode the file as UTF-8"
        )


def _raw_lines(
    path: Path,
    start: int = 0,
    stop: int | None = None,
    first: int = 1,
    max_bytes: int | None = None,
) -> Iterator[tuple[int, bytes | _LongLine]]:
    """Numbered lines with their endings, split on "\\n" only (U+2028, U+2029 and U+0085 are
    legal inside JSON strings and CSV fields), without a BOM; read as a stream. `start`/`stop`
    are byte offsets at line starts (a `Part`), `first` the number of the line at `start`.
    A line longer than `max_bytes` (its ending not counted) comes as a `_LongLine`, read past in
    blocks, never held whole."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset, number = start, first
        while stop is None or offset < stop:
            line = handle.readline(-1 if max_bytes is None else max_bytes + 2)
            if not line:
                return
            offset += len(line)
            if max_bytes is not None and len(line.rstrip(b"\r\n")) > max_bytes:
                size = len(line.rstrip(b"\r\n"))
                while not line.endswith(b"\n") and (line := handle.readline(1 << 20)):
                    offset += len(line)
                    size += len(line.rstrip(b"\r\n"))
                yield number, _LongLine(size)
            else:
                yield number, line[3:] if number == 1 and line.startswith(b"\xef\xbb\xbf") else line
            number += 1


def _read_jsonl(
    path: Path,
    start: int = 0,
    stop: int | None = None,
    first: int = 1,
    max_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, str, Any]]:
    for number, raw in _raw_lines(path, start, stop, first, max_bytes):
        if isinstance(raw, _LongLine):
            yield number, f"{number}:{raw.size}", _Malformed(
                f"the line is {raw.size:,} bytes long, over the limit of {max_bytes:,}; "
                "split the row, or raise the limit (--max-line-bytes)"
            )  # fmt: skip
            continue
        raw = raw.removesuffix(b"\n").removesuffix(b"\r")
        line = _decode(raw)
        if isinstance(line, _Malformed):
            yield number, raw.decode("utf-8", errors="backslashreplace"), line
            continue
        if not line.strip():
            continue
        try:
            yield number, line, strict_json(line)
        except json.JSONDecodeError as exc:
            yield number, line, _Malformed(f"not valid JSON: {exc.msg} at column {exc.colno}")
        except _NotStrict as exc:
            yield number, line, _Malformed(f"not standard JSON: {exc}")
        except ValueError as exc:  # an integer longer than Python reads (4,300 digits)
            digits = re.search(r"value has (\d+) digits", str(exc))
            problem = (
                f"not standard JSON: an integer of {digits.group(1)} digits is longer than JSON "
                "readers take; write it as a string"
                if digits
                else f"not readable as JSON: {exc}"
            )
            yield number, line, _Malformed(problem)
        except RecursionError:
            yield number, line, _Malformed(f"nested deeper than {MAX_DEPTH} levels")


def _read_csv(path: Path) -> Iterator[tuple[int, str, Any]]:
    """Rows of a CSV file with a header. A bad record (a CSV error such as a field over the limit,
    invalid UTF-8, too many values) is reported at the line it starts on; reading goes on."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    invalid: dict[int, _Malformed] = {}

    def decoded() -> Iterator[str]:
        for number, raw in _raw_lines(path):  # endings kept: quoted fields may span lines
            assert isinstance(raw, bytes)  # no max_bytes: every line comes whole
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
            raw = json.dumps(plain, default=str, sort_keys=True, allow_nan=False)
        except ValueError as exc:
            problem = str(exc)
            if "float" in problem:  # allow_nan=False: "Out of range float values are not ..."
                problem = "a value is NaN or infinite, which JSON cannot hold; write null"
            yield number, f"row {number}", _Malformed(f"cannot be read as JSON: {problem}")
            continue
        except RecursionError as exc:
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
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Item | BadRow]:
    """Yield an `Item` for every good row and a `BadRow` for every bad one.

    Args:
        source: a .jsonl/.json/.csv/.parquet file, a directory saved with `save_to_disk`, or a
            Hub dataset name such as `Anthropic/hh-rlhf`.
        fields: which columns hold the id, prompt, response or text.
        split: the split to read from a Hub dataset or a saved DatasetDict.
        check_duplicates: report a repeated id as a bad row. This keeps every id seen, so the
            run engine, which streams datasets of any size, turns it off and asks its store.
        max_line_bytes: a longer JSONL line is a bad row (see `MAX_LINE_BYTES`).
    """
    fields = fields or Fields()
    path = Path(source)
    if path.is_dir() and not _is_saved_dataset(path):
        named = (
            row
            for file in data_files(path)
            for row in _named(*_rows_of(file, str(file), split, max_line_bytes))
        )
        yield from _entries(named, fields, check_duplicates)
        return
    rows = _rows_of(path, str(source), split, max_line_bytes)
    yield from _entries(_named(*rows), fields, check_duplicates)


def check_fields(
    source: str | Path,
    fields: Fields,
    *,
    split: str | None = None,
    limit: int | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> None:
    """Check, before a run starts, that the columns `fields` names exist in `source`.

    Reads the first `FIELD_CHECK_ROWS` rows (at most `limit`). When rows were read and a named
    column is in none of them, the name is wrong, not the rows: every row would be a bad row.

    Raises:
        ConfigError: naming the setting (`id_field`, `response_field`, ...), the missing column
            and the columns the rows have.
    """
    named = [("id_field", fields.id)] if fields.id else []
    named += fields.named()
    seen: dict[str, None] = {}  # the columns of the rows read, in order
    rows = 0
    entries = load_items(source, fields, split=split, check_duplicates=False,
                         max_line_bytes=max_line_bytes)  # fmt: skip
    for count, entry in enumerate(entries):
        if count >= min(FIELD_CHECK_ROWS, limit or FIELD_CHECK_ROWS):
            break
        if entry.row is not None:
            rows += 1
            seen.update(dict.fromkeys(entry.row))
    missing = [(setting, column) for setting, column in named if column not in seen]
    if not rows or not missing:
        return
    braces = str.maketrans({"{": "{{", "}": "}}"})  # ConfigError formats its text

    def quoted(name: object) -> str:
        return f"'{printable(name)}'".translate(braces)

    listed = " or ".join(f"{quoted(column)} ({{{setting}}})" for setting, column in missing)
    present = ", ".join(quoted(name) for name in list(seen)[:30])
    raise ConfigError(
        missing[0][0],
        f"{printable(source)}: ".translate(braces)
        + f"none of the first {rows} row(s) has the column {listed}; nothing was stored",
        hint=f"the rows have {present}; name one of them",
    )


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
    path: Path, name: str, split: str | None, max_line_bytes: int = MAX_LINE_BYTES
) -> tuple[Iterable[tuple[int, str, Any]], str]:
    """The numbered rows of one input, and the prefix that names them (`FILE:` or `FILE:row `)."""
    if path.is_dir():
        return _read_table(_open_datasets(str(path), split, from_disk=True)), f"{name}:row "
    if path.exists():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json", ".ndjson"):
            return _read_jsonl(path, max_bytes=max_line_bytes), f"{name}:"
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


def load_part(
    part: Part, fields: Fields | None = None, *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, Item | BadRow]]:
    """`(input position, item or bad row)` for each row of `part`, named as `load_items` names
    them (`FILE:LINE`, `FILE:row N`). Duplicate ids are the store's to find (see `critic.runs`)."""
    fields = fields or Fields()
    path = Path(part.source)
    rows: Iterable[tuple[int, str, Any]]
    if part.kind == "lines":
        lines = _read_jsonl(path, part.start, part.stop, part.first_line, max_line_bytes)
        rows, label = lines, f"{part.source}:"
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
