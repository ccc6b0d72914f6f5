"""What the workbench modules share: which task kinds it re-labels, item snippets, versions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from critic.constitution import (
    Constitution,
    load_constitution,
    parse_constitution,
)
from critic.errors import (
    ConstitutionError,
)
from critic.items import Fields
from critic.store import Store

LABEL_KINDS = ("categorical", "rubric")
SNIPPET_CHARS = 240


def snippet(row: Mapping[str, Any] | None, fields: Fields | None = None) -> str:
    """A short, plain-text view of an item for reports (still untrusted: escape on output)."""
    if not row:
        return ""
    fields = fields or Fields()
    names = [fields.text] if fields.text else [*fields.prompts, fields.response]
    parts = [str(row[n]) for n in names if n and row.get(n) is not None]
    if not parts:
        parts = [v for k in ("text", "prompt", "response") if isinstance(v := row.get(k), str)]
    text = " | ".join(parts) if parts else json.dumps(dict(row), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def load_version(target: str, store: Store | None = None) -> Constitution:
    """A constitution from a file, a shipped name, or (with a store) a stored hash or prefix."""
    path = Path(target)
    if path.exists() or store is None or not re.fullmatch(r"[0-9a-f]{6,64}", target):
        return load_constitution(target)
    content = store.constitution_content(target)
    if content is None:
        raise ConstitutionError(
            f"{target}: not a file, a shipped name, or a constitution hash stored in {store.url}",
            hint="`critic runs --db URL` lists the constitution hashes of stored runs",
        )
    return parse_constitution(content, source=target)


def pct(value: float | None, places: int = 1) -> str:
    """A share as a percentage (`12.5%` with one place), or `–` when there is none."""
    return "–" if value is None else f"{value:.{places}%}"
