"""Export stored results: one row per input item, failures included, with full provenance."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


def export_rows(store: Store, run_id: str | None = None) -> Iterator[dict[str, Any]]:
    """The export rows, in input order, with routes and human decisions merged in.

    `final_label` is what ships: the human (or adjudicated) label where a human decided, else the
    critic's; `label_source` says which (critic / human / adjudicated).
    """
    from critic.review import human_outcomes

    humans = human_outcomes(store.engine.url.render_as_string(hide_password=False))
    routes = store.latest_routes(run_id)
    for r in store.rows(run_id):
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
        human = humans.get((r["run_id"], r["item_id"]))
        route = routes.get((r["run_id"], r["item_id"]))
        row.update(
            {
                "route": route["decision"] if route else None,
                "route_reason": route["reason"] if route else None,
                "final_label": human["label"] if human else critic_verdict,
                "label_source": human["source"]
                if human
                else ("critic" if critic_verdict else None),
                "rejected": bool(human and human["rejected"]),
                "reviewers": human["reviewers"] if human else 0,
                "review_agreement": human["agreement"] if human else None,
            }
        )
        if "expected_score" in draft:
            row["expected_score"] = draft["expected_score"]
            row["score_distribution"] = json.dumps(draft.get("score_distribution"))
        yield row


def _arrow_safe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Arrow needs one type per column; input fields can be ragged across rows, so nested or mixed
    # values go out as JSON text and every row gets every column.
    columns: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            if value is not None:
                columns.setdefault(key, set()).add(type(value))
    text_columns = {
        k for k, types in columns.items() if len(types) > 1 or types & {dict, list, tuple}
    }
    return [
        {
            k: (json.dumps(row.get(k), ensure_ascii=False, default=str)
                if k in text_columns and row.get(k) is not None else row.get(k))
            for k in columns
        }
        for row in rows
    ]  # fmt: skip


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
    import datasets

    table = _arrow_safe(list(rows))
    dataset = datasets.Dataset.from_list(table)
    with replacing(out, directory=fmt == "hf") as temp:
        if fmt == "parquet":
            dataset.to_parquet(str(temp))
        else:
            dataset.save_to_disk(str(temp))
    return len(table)


def export(store: Store, out: str | Path, fmt: str = "jsonl", run_id: str | None = None) -> int:
    """Export a run (or every run in the store) to `out`; return the row count."""
    if run_id is not None:
        run_id = store.run(run_id).id
    return write(export_rows(store, run_id), out, fmt)
