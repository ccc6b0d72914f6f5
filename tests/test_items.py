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
