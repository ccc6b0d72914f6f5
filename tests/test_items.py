from __future__ import annotations

import json
from pathlib import Path

import pytest

from critic.errors import InputError
from critic.items import BadRow, Fields, Item, content_id, load_items


def test_jsonl_with_bom_crlf_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "prompt": "p", "response": "r"}),
        "{not json",
        "[1, 2]",
        json.dumps({"id": "b", "prompt": "p"}),
        "",
        json.dumps({"id": "a", "prompt": "p2", "response": "r2"}),
        json.dumps({"prompt": "p3", "response": "r3"}),
    ]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    out = list(load_items(path))
    assert [type(x).__name__ for x in out] == [
        "Item",
        "BadRow",
        "BadRow",
        "BadRow",
        "BadRow",
        "Item",
    ]
    assert isinstance(out[0], Item) and out[0].id == "a" and out[0].response == "r"
    bad = [str(x) for x in out if isinstance(x, BadRow)]
    assert bad[0].startswith(f"{path}:2: not valid JSON")
    assert bad[1] == f"{path}:3: expected a JSON object, got list"
    assert bad[2].startswith(f"{path}:4: missing field 'response'")
    assert bad[3] == f"{path}:6: duplicate id 'a' (first at {path}:1)"
    assert out[-1].id == content_id({"prompt": "p3", "response": "r3"})


def test_content_id_is_stable_under_key_order() -> None:
    assert content_id({"a": 1, "b": 2}) == content_id({"b": 2, "a": 1})


def test_explicit_id_field_must_be_present(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"uid": 7, "prompt": "p", "response": "r"}) + "\n"
                    + json.dumps({"prompt": "p", "response": "r"}) + "\n")  # fmt: skip
    out = list(load_items(path, Fields(id="uid")))
    assert isinstance(out[0], Item) and out[0].id == "7"
    assert isinstance(out[1], BadRow) and "missing id field 'uid'" in out[1].reason


def test_csv_parquet_and_datasets_dir(tmp_path: Path) -> None:
    import datasets

    rows = [{"id": "1", "text": "hello"}, {"id": "2", "text": "world"}]
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("id,text\n1,hello\n2,world\n3,too,many\n")
    out = list(load_items(csv_path, Fields(text="text")))
    assert [x.id for x in out[:2]] == ["1", "2"]
    assert isinstance(out[2], BadRow) and out[2].source == f"{csv_path}:4"
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "in.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "in.parquet", tmp_path / "saved"):
        items = list(load_items(source, Fields(text="text")))
        assert [i.text for i in items if isinstance(i, Item)] == ["hello", "world"]


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        list(load_items(tmp_path / "nope.jsonl"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match=r"unknown input format '\.txt'"):
        list(load_items(tmp_path / "x.txt"))


# -- hostile input: every bad row is FILE:LINE: reason, and reading goes on ------------------


def _good(k: int) -> str:
    return json.dumps({"id": f"g{k}", "prompt": "p", "response": f"r{k}"})


def test_jsonl_splits_on_newline_only(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    tricky = {"id": "sep", "prompt": "a\u2028b\u2029c\x85d", "response": "line\u2028break"}
    text = "\n".join([_good(0), json.dumps(tricky, ensure_ascii=False), "{bad", _good(1)])
    path.write_bytes(text.encode() + b"\r\n")
    out = list(load_items(path))
    assert [type(x).__name__ for x in out] == ["Item", "Item", "BadRow", "Item"]
    assert isinstance(out[1], Item) and out[1].row == tricky
    assert str(out[2]).startswith(f"{path}:3: not valid JSON")  # later lines keep their numbers
    assert isinstance(out[3], Item) and out[3].source == f"{path}:4"


def test_invalid_utf8_in_jsonl_is_a_bad_row_not_a_replacement_character(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    broken = b'{"id": "x", "prompt": "p", "response": "caf\xe9"}'
    path.write_bytes(b"\n".join([_good(0).encode(), broken, _good(1).encode()]) + b"\n")
    out = list(load_items(path))
    assert [type(x).__name__ for x in out] == ["Item", "BadRow", "Item"]
    assert str(out[1]).startswith(f"{path}:2: not valid UTF-8 (byte 0xe9 at column 44)")


def test_deep_nesting_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    deep = "[" * 100_000 + "]" * 100_000
    nested = {"id": "n", "prompt": "p", "response": "r", "meta": [[[[[[[[[[1]]]]]]]]]] * 1}
    for _ in range(100):
        nested["meta"] = [nested["meta"]]
    lines = [_good(0), deep, '{"id": "d", "prompt": "p", "response": ' + deep + "}",
             json.dumps(nested), _good(1)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    out = list(load_items(path))
    assert [type(x).__name__ for x in out] == ["Item", "BadRow", "BadRow", "BadRow", "Item"]
    for line, bad in zip((2, 3, 4), out[1:4], strict=True):
        assert str(bad) == f"{path}:{line}: nested deeper than 100 levels"


def test_hostile_csv_rows_are_bad_rows_and_reading_goes_on(tmp_path: Path) -> None:
    from critic.items import CSV_FIELD_LIMIT

    assert CSV_FIELD_LIMIT == 16 * 1024 * 1024  # as the README documents
    path = tmp_path / "in.csv"
    big = "x" * (200 * 1024)  # over Python's default 128 KiB field limit
    huge = "y" * (CSV_FIELD_LIMIT + 1)
    path.write_bytes(
        b"id,prompt,response\r\n"
        b"g0,p,r0\r\n"
        + f"big,p,{big}\r\n".encode()
        + b"bad,p,caf\xe9\r\n"
        + b'multi,"a\nb\xff",r\r\n'  # a quoted field over two lines, the second invalid
        + f"huge,p,{huge}\n".encode()
        + b"g1,p,r1\r\n"
        + b"sep,p,\xe2\x80\xa8inside\r\n"
    )
    out = list(load_items(path))
    kinds = [(type(x).__name__, x.source.rsplit(":", 1)[1]) for x in out]
    assert kinds == [("Item", "2"), ("Item", "3"), ("BadRow", "4"), ("BadRow", "5"),
                     ("BadRow", "7"), ("Item", "8"), ("Item", "9")]  # fmt: skip
    assert isinstance(out[1], Item) and out[1].response == big
    assert "not valid UTF-8 (byte 0xe9" in out[2].reason  # type: ignore[union-attr]
    assert "not valid UTF-8 (byte 0xff" in out[3].reason  # type: ignore[union-attr]
    assert out[4].reason == (  # type: ignore[union-attr]
        f"not readable as CSV: a field is longer than {CSV_FIELD_LIMIT:,} characters"
    )
    assert isinstance(out[6], Item) and out[6].response == "\u2028inside"


def test_field_names_from_data_cannot_reach_the_terminal_raw(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    row = {"\x1b]0;owned\x07\x1b[2J": 1, "prompt\u202e": "p", "x\ny": 2}
    dup = {"id": "\x1b[31mred", "prompt": "p", "response": "r"}
    path.write_text("\n".join(json.dumps(r) for r in (row, dup, dup)) + "\n")
    bad, _, again = list(load_items(path))
    for message in (str(bad), str(again)):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in message)
    assert "fields present: \\x1b]0;owned\\x07\\x1b[2J, prompt\\u202e, x\\ny" in str(bad)
    assert "duplicate id '\\x1b[31mred'" in str(again)


def test_printable_escapes_controls_and_keeps_text() -> None:
    from critic.text import printable

    assert printable("caf\u00e9 \u2603 ok") == "caf\u00e9 \u2603 ok"
    assert printable("a\x1b[1mb\x9bc\x7f") == "a\\x1b[1mb\\x9bc\\x7f"
    assert printable("one\ntwo\tthree\r") == "one\\ntwo\\tthree\\r"
    assert printable("one\ntwo\tthree\r", lines=True) == "one\ntwo\tthree\\r"
    assert printable("\u2028\u202e\u2066") == "\\u2028\\u202e\\u2066"
    assert printable(printable("\x1b")) == "\\x1b"


# -- issue 20: JSON only lenient parsers read, long lines, ids and text no store can hold -------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": 1e999, "prompt": "p", "response": "r"}',
         "not standard JSON: the number 1e999 is too large for a 64-bit float"),
        ('{"id": "a", "prompt": "p", "response": "r", "id": "b"}',
         "not standard JSON: the key 'id' appears twice in one object"),
        ('{"id": "a", "prompt": "p", "response": {"x": 1, "x": 2}}',
         "not standard JSON: the key 'x' appears twice in one object"),
        ('{"id": "a", "prompt": "p", "response": "r", "s": NaN}',
         "not standard JSON: NaN is not a JSON value"),
        ('{"id": "a", "prompt": "p", "response": [Infinity]}',
         "not standard JSON: Infinity is not a JSON value"),
    ],
)  # fmt: skip
def test_json_that_only_lenient_parsers_read_is_a_named_bad_row(
    tmp_path: Path, line: str, reason: str
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(_good(0) + "\n" + line + "\n" + _good(1) + "\n")
    out = list(load_items(path))
    assert [type(x).__name__ for x in out] == ["Item", "BadRow", "Item"]
    assert str(out[1]).startswith(f"{path}:2: {reason}"), str(out[1])
    assert [x.row["response"] for x in out if isinstance(x, Item)] == ["r0", "r1"]


def test_large_finite_numbers_and_long_integers_python_reads_stay_items(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1e300, "prompt": "p", "response": "r", "n": ' + "9" * 4000 + "}\n")
    (item,) = load_items(path)
    assert isinstance(item, Item) and item.id == "1e+300" and item.row["n"] == int("9" * 4000)


def test_a_parquet_row_holding_nan_is_a_bad_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    table = pa.table({"id": ["a", "b"], "prompt": ["p", "p"], "response": ["r", "r"],
                      "score": [1.0, float("nan")]})  # fmt: skip
    pq.write_table(table, path)
    out = list(load_items(path))
    assert isinstance(out[0], Item) and isinstance(out[1], BadRow)
    assert str(out[1]) == (
        f"{path}:row 2: cannot be read as JSON: a value is NaN or infinite, which JSON cannot "
        "hold; write null"
    )


def test_a_line_over_the_cap_is_a_bad_row_read_past_without_holding_it(tmp_path: Path) -> None:
    import tracemalloc

    from critic.items import MAX_LINE_BYTES

    path = tmp_path / "big.jsonl"
    body = 30 * 1024 * 1024  # the 30 MB line of issue 20 (it took 310 MB)
    with path.open("w") as handle:
        handle.write(_good(0) + "\n")
        handle.write('{"id": "big", "prompt": "p", "response": "' + "x" * body + '"}\r\n')
        handle.write(_good(1) + "\n")
    tracemalloc.start()
    try:
        out = list(load_items(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [type(x).__name__ for x in out] == ["Item", "BadRow", "Item"]
    size = body + len('{"id": "big", "prompt": "p", "response": ""}')
    assert str(out[1]) == (
        f"{path}:2: the line is {size:,} bytes long, over the limit of {MAX_LINE_BYTES:,}; "
        "split the row, or raise the limit (--max-line-bytes)"
    )
    assert out[2].source == f"{path}:3"
    assert peak < 3 * MAX_LINE_BYTES, f"peak {peak / 2**20:.1f} MiB"
    # The cap is a setting: raised, the same line is an item.
    (_, item, _) = load_items(path, max_line_bytes=body + 100)
    assert isinstance(item, Item) and len(item.row["response"]) == body


def test_a_line_of_exactly_the_cap_is_read_and_the_cap_counts_no_line_ending(
    tmp_path: Path,
) -> None:
    line = _good(0)
    path = tmp_path / "x.jsonl"
    path.write_text(line + "\r\n" + line.replace("r0", "r01") + "\n")
    first, second = load_items(path, max_line_bytes=len(line), check_duplicates=False)
    assert isinstance(first, Item) and isinstance(second, BadRow)
    assert f"the line is {len(line) + 1:,} bytes long" in second.reason


def test_an_id_longer_than_the_stores_hold_and_nul_characters_are_bad_rows(tmp_path: Path) -> None:
    from critic.items import MAX_ID_CHARS

    path = tmp_path / "x.jsonl"
    rows = [
        {"id": "x" * MAX_ID_CHARS, "prompt": "p", "response": "r"},
        {"id": "x" * (MAX_ID_CHARS + 1), "prompt": "p", "response": "r"},
        {"id": "n", "prompt": "p", "response": {"deep": ["a\x00"]}},
        {"id": "k", "prompt": "p", "response": "r", "\x00": "v"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = list(load_items(path))
    assert isinstance(out[0], Item)
    assert [str(x) for x in out[1:]] == [
        f"{path}:2: the id is 256 characters long; ids are at most 255",
        f"{path}:3: field 'response' holds the NUL character (U+0000), which the stores cannot "
        "keep; remove it from the input",
        f"{path}:4: field '\\x00' holds the NUL character (U+0000), which the stores cannot "
        "keep; remove it from the input",
    ]
    assert out[2].row is None  # not kept: no store could hold it


# -- issue 20: several prompt fields -----------------------------------------------------------


def test_several_prompt_fields_are_joined_in_order_each_under_its_name() -> None:
    fields = Fields(prompt=("instruction", "input"), response="output")
    row = {"instruction": "Summarise.", "input": "A long text.", "output": "Short."}
    item = Item("1", row, "x:1", fields)
    assert item.prompt == "instruction:\nSummarise.\n\ninput:\nA long text."
    assert Item("2", {**row, "input": ""}, "x:2", fields).prompt == "instruction:\nSummarise."
    assert fields.required == ["instruction", "input", "output"]
    assert Fields(prompt=["q"]) == Fields(prompt="q") and Fields(prompt=("prompt",)) == Fields()


def test_a_row_lacking_one_of_several_prompt_fields_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "1", "instruction": "i", "output": "o"}\n')
    (bad,) = load_items(path, Fields(prompt=("instruction", "input"), response="output"))
    assert isinstance(bad, BadRow) and "missing field 'input'" in bad.reason
