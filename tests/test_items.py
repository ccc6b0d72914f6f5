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
