"""Writing an export safely: strict JSON lines, and outputs that appear complete or not at all."""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from critic.errors import UsageError

# Legal inside JSON strings, but line breaks to str.splitlines() and many JSONL readers.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def json_line(row: dict[str, Any]) -> str:
    """One JSONL line (with its newline): strict JSON as UTF-8 text, with the Unicode line breaks
    escaped. JSON has no NaN or infinity: a non-finite number (none comes from input rows, which
    refuse them) is written as null rather than as a bare `NaN` strict parsers reject."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and (value != value or abs(value) == float("inf")):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        return value

    try:
        text = json.dumps(row, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere in the row
        text = json.dumps(finite(row), ensure_ascii=False, default=str, allow_nan=False)
    return text.translate(_LINE_BREAKS) + "\n"


#: A leftover of an unknown writer older than this was left by a killed export.
STALE_AFTER_S = 3600.0


def _temp_name(out: Path, kind: str) -> Path:
    """`.NAME.PID-RANDOM.KIND` beside `out`: the pid says whether its writer still runs."""
    return out.parent / f".{out.name}.{os.getpid()}-{secrets.token_hex(6)}.{kind}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: Path, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the hidden `.NAME.PID-*.tmp` / `.old` siblings that a killed export of `out` left
    behind: those whose writer's process is gone, and any other such leftover older than
    `older_than_s` (so a concurrent export's files are spared)."""
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for leftover in out.parent.glob(f".{glob.escape(out.name)}.*"):
        if leftover.suffix not in (".tmp", ".old"):
            continue
        owner = leftover.name[len(out.name) + 2 :].split("-", 1)[0]
        try:
            if owner.isdigit() and int(owner) != os.getpid():
                if _alive(int(owner)):
                    continue
            elif leftover.lstat().st_mtime > cutoff:
                continue
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        except OSError:
            continue
        removed.append(leftover)
    return removed


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """`datasets`' own progress bars off (critic shows its own progress), restored after."""
    import datasets

    was_off = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_off:
            datasets.enable_progress_bars()


@contextmanager
def scratch_dir(out: Path) -> Iterator[Path]:
    """A hidden scratch directory beside `out` (same disk), removed afterwards whatever happens."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=out.parent, prefix=f".{out.name}.{os.getpid()}-", suffix=".tmp"
    ) as d:
        yield Path(d)


@contextmanager
def replacing(
    out: Path, *, directory: bool = False, marker: str = "state.json", kind: str = "datasets"
) -> Iterator[Path]:
    """A fresh temporary path beside `out` to write to; it replaces `out` only once complete.

    An export that fails or is killed half-way leaves the previous `out` as it was (and at most a
    hidden `.NAME.*.tmp` beside it). A file is swapped in with one `os.replace`; a directory by
    moving the old one aside, renaming the new one into place, then deleting the old one. A
    directory is replaced only when it is empty or holds an earlier export (its `marker` file,
    written by a `kind` export).
    """
    if directory and out.is_file():
        raise UsageError(f"{out} is a file; this format writes a directory", hint="give a new path")
    if directory and out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        # The whole directory is replaced: never one that holds anything but an earlier export.
        raise UsageError(
            f"{out} is a directory that holds something other than a {kind} export",
            hint="give a new path (the export replaces the whole directory)",
        )
    if not directory and out.is_dir():
        raise UsageError(
            f"{out} is a directory; this format writes a file", hint="give a file path"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    # Not mkstemp/mkdtemp: they create mode 0600/0700, and the export should get the umask's mode.
    temp = _temp_name(out, "tmp")
    try:
        yield temp
        if directory and out.exists():
            old = _temp_name(out, "old")
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
