"""Export replaces its output only once the new one is complete: an interrupted export keeps the
previous file or directory as it was and leaves nothing half-written behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest

from critic.errors import UsageError
from critic.exports import export_db, formats
from critic.exports.files import replacing
from tests.test_trl import filled_store

# label-studio holds what awaits review, so these runs (accepted with --accept-all) give it
# nothing: tests/labelstudio/test_files.py checks its replacing and interruption instead.
FORMATS = [name for name, fmt in formats().items() if not fmt.review_only]


def _export(db: str, out: Path, fmt: str, run_id: str | None = None) -> int:
    return export_db(db, out, fmt, run=run_id, all_runs=run_id is None).count


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def _break_writers(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Make the writer that writes `fmt`'s output write part of it, then fail (a full disk).

    Parquet is streamed by `ParquetWriter`; `hf` and the TRL formats end in `save_to_disk` (the
    hf export's scratch Parquet is left alone, so the failure comes while the output directory is
    half written)."""
    if fmt != "parquet":

        def save_to_disk(self: Any, target: str, *args: Any, **kwargs: Any) -> None:
            Path(target).mkdir(parents=True, exist_ok=True)
            (Path(target) / "data-00000-of-00001.arrow").write_bytes(b"half a shard")
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_to_disk)
        return
    real_write_table = pq.ParquetWriter.write_table

    def write_table(self: Any, table: Any, *args: Any, **kwargs: Any) -> None:
        real_write_table(self, table.slice(0, 1), *args, **kwargs)  # one row group is on disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_table)


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_interrupted_export_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    db, _, _ = filled_store(tmp_path)
    out = tmp_path / "exports" / ("out.jsonl" if fmt == "jsonl" else "out")
    assert _export(db, out, fmt) > 0
    before = _snapshot(out)
    with monkeypatch.context() as patched:
        if fmt == "jsonl":
            import critic.exports.jsonl as module

            calls = []

            def row_then_crash(record: Any) -> Any:
                calls.append(record)
                if len(calls) > 1:
                    raise KeyboardInterrupt  # the user pressed Ctrl-C half-way
                return {"id": "first"}

            patched.setattr(module, "record_row", row_then_crash)
            with pytest.raises(KeyboardInterrupt):
                _export(db, out, fmt)
        else:
            _break_writers(patched, fmt)
            with pytest.raises(OSError, match="No space left"):
                _export(db, out, fmt)
    assert _snapshot(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary left


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_finished_export_replaces_the_previous_one_whole(tmp_path: Path, fmt: str) -> None:
    db, _, compare_run = filled_store(tmp_path)
    out = tmp_path / "exports" / ("out.jsonl" if fmt == "jsonl" else "out")
    everything = _export(db, out, fmt)
    fewer = _export(db, out, fmt, compare_run)  # only the compare run: fewer rows (sft: none)
    assert fewer < everything
    if fmt in ("hf", "trl-sft", "trl-dpo"):
        assert datasets.load_from_disk(str(out)).num_rows == fewer
    elif fmt == "parquet":
        assert datasets.Dataset.from_parquet(str(out)).num_rows == fewer
    else:
        assert len(out.read_text().splitlines()) == fewer
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_a_directory_export_never_replaces_a_folder_of_other_files(tmp_path: Path) -> None:
    db, _, _ = filled_store(tmp_path)
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    for fmt in ("hf", "trl-sft"):
        with pytest.raises(UsageError, match="something other than a datasets export"):
            _export(db, precious, fmt)
    assert (precious / "thesis.tex").read_text() == "years of work"
    with pytest.raises(UsageError, match="is a directory"), replacing(precious):
        pass


def test_json_lines_are_strict_json_a_non_finite_number_is_written_as_null() -> None:
    import json

    from critic.exports.files import json_line

    def refuse(name: str) -> object:
        raise AssertionError(f"non-JSON constant {name}")

    line = json_line({"a": float("nan"), "b": [float("inf"), {"c": -float("inf")}], "d": 1.5})
    expected = {"a": None, "b": [None, {"c": None}], "d": 1.5}
    assert json.loads(line, parse_constant=refuse) == expected
    assert json_line({"x": "NaN", "y": 2}) == '{"x": "NaN", "y": 2}\n'


@pytest.mark.parametrize("fmt", ["hf", "trl-dpo"])
def test_export_shows_critics_progress_not_datasets_own_bars(tmp_path: Path, fmt: str) -> None:
    from typer.testing import CliRunner

    from critic.cli import app

    db, _, _ = filled_store(tmp_path)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "out"), "--db", db, "--format",
                                      fmt, "--all-runs"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "export" in result.stderr and "items/s" in result.stderr  # critic's own bar
    for datasets_bar in ("Saving the dataset", "Generating train split", "examples/s"):
        assert datasets_bar not in result.stderr
