"""Full-text search over a queue's items, drafts and notes, and the index behind precedents.

Two indexes, both derived data that `rebuild` can remake at any time:

- `task_search`: every task's item text, draft text and (once it is no longer open for review)
  its decision notes. The item list searches it.
- `precedent_search`: the item text of every decided task, with the constitution it was drafted
  under. "Similar decided items" rank against it, so a precedent query never touches the (many
  more) open items.

SQLite keeps them as FTS5 tables (porter stemming, BM25 ranking); PostgreSQL as tsvector columns
with GIN indexes (`english` configuration, `ts_rank`). Every write that changes what they index
(enqueue, a decision, an undo, a reopen, a bulk action) updates them in its own transaction, so a
search never sees an index older than the tasks it joins.

The query language is the same on both: words (all must match), "quoted phrases", `OR` between
groups of words, and `-word` to exclude. It is parsed here, never handed to FTS5 as is (its syntax
errors on a stray quote or colon), and PostgreSQL gets the same meaning as a tsquery built from
the parsed terms.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from .schema import queues, tasks
from .text import Segment

CONFIG = "english"
"""PostgreSQL's text search configuration (stemming and stop words); SQLite's FTS5 tables use
the porter tokenizer to the same end."""
FTS5_TOKENIZER = "porter unicode61 remove_diacritics 2"

# Draft keys that are provenance, not text a reviewer would search for.
_NOT_TEXT = frozenset(
    {"constitution", "run_id", "item_id", "principle_texts", "fields", "principles"}
)
_CHUNK = 500


# -- what is indexed ------------------------------------------------------------------------


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, Mapping):
        for inner in value.values():
            _strings(inner, out)
    elif isinstance(value, list | tuple):
        for inner in value:
            _strings(inner, out)


def _clean(parts: list[str]) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return "\n".join(parts).replace("\x00", " ")


def item_text(item: Mapping[str, Any], hidden: Iterable[str] | None = ()) -> str:
    """Every string in an item, in order: what "item text" means to search and precedents.

    `hidden` names the fields the item's queue hides from reviewers (`queue.hidden_fields`):
    they are left out, so neither a search nor a snippet nor a precedent's ranking can reveal
    them (exports read the item itself, so they keep them)."""
    gone = set(hidden or ())
    parts: list[str] = []
    _strings({k: v for k, v in item.items() if k not in gone}, parts)
    return _clean(parts)


def draft_text(draft: Mapping[str, Any]) -> str:
    """Every string the critic wrote in a draft (not the provenance it carries)."""
    parts: list[str] = []
    for key, value in draft.items():
        if key not in _NOT_TEXT:
            _strings(value, parts)
    return _clean(parts)


def constitution_of(draft: Mapping[str, Any]) -> str | None:
    """The constitution version a draft names (critic: its content hash), if any."""
    found = draft.get("constitution")
    return found if isinstance(found, str) and 0 < len(found) <= 200 else None


# -- keeping the index current ----------------------------------------------------------------


def create(conn: Connection) -> None:
    """Create both indexes (empty) on the connection's database."""
    if conn.dialect.name == "postgresql":
        for statement in (
            # Item text weighs A, the draft B, notes C: `ts_filter` keeps a viewer to the parts
            # they may search.
            # The queue beside the vector: a search of one queue, ranked and counted, then
            # reads these rows only, not each match's task too.
            "CREATE TABLE task_search (task_id INTEGER PRIMARY KEY REFERENCES tasks(id) "
            "ON DELETE CASCADE, queue_id INTEGER NOT NULL, everything TSVECTOR NOT NULL)",
            "CREATE INDEX ix_task_search_everything ON task_search USING gin (everything)",
            "CREATE TABLE precedent_search (task_id INTEGER PRIMARY KEY REFERENCES tasks(id) "
            "ON DELETE CASCADE, queue_id INTEGER NOT NULL, constitution VARCHAR(200), "
            "item TSVECTOR NOT NULL)",
            # Written once per decision, read many times per review page (a count per word
            # and the ranking): no pending list of new entries, which every read would scan
            # (up to 4 MB: at 1M items it made the page's word counts 75% slower).
            "CREATE INDEX ix_precedent_search_item ON precedent_search USING gin (item) "
            "WITH (fastupdate = off)",
        ):
            conn.execute(text(statement))
        return
    conn.execute(
        text(
            "CREATE VIRTUAL TABLE task_search USING fts5("
            f"item, draft, notes, tokenize='{FTS5_TOKENIZER}')"
        )
    )
    conn.execute(
        text(
            "CREATE VIRTUAL TABLE precedent_search USING fts5("
            f"item, constitution UNINDEXED, tokenize='{FTS5_TOKENIZER}')"
        )
    )


_TASKS = (
    select(
        tasks.c.id, tasks.c.queue_id, tasks.c.item, tasks.c.draft, tasks.c.state,
        queues.c.hidden_fields,
    )
    .join(queues, queues.c.id == tasks.c.queue_id)
    .where(tasks.c.id.in_(bindparam("ids", expanding=True)))
)  # fmt: skip
_NOTES = text(
    "SELECT task_id, note FROM decisions WHERE task_id IN :ids AND note IS NOT NULL ORDER BY id"
).bindparams(bindparam("ids", expanding=True))

_PG_TASK = text(
    "INSERT INTO task_search (task_id, queue_id, everything) VALUES (:id, :queue_id, "
    f"setweight(to_tsvector('{CONFIG}', :item), 'A') || "
    f"setweight(to_tsvector('{CONFIG}', :draft), 'B') || "
    f"setweight(to_tsvector('{CONFIG}', :notes), 'C')) "
    "ON CONFLICT (task_id) DO UPDATE SET queue_id = excluded.queue_id, "
    "everything = excluded.everything"
)
_PG_PRECEDENT = text(
    f"INSERT INTO precedent_search (task_id, queue_id, constitution, item) "
    f"VALUES (:id, :queue_id, :constitution, to_tsvector('{CONFIG}', :item)) "
    "ON CONFLICT (task_id) DO UPDATE SET queue_id = excluded.queue_id, "
    "constitution = excluded.constitution, item = excluded.item"
)
_SQLITE_TASK = text(
    "INSERT OR REPLACE INTO task_search (rowid, item, draft, notes) "
    "VALUES (:id, :item, :draft, :notes)"
)
_SQLITE_PRECEDENT = text(
    "INSERT OR REPLACE INTO precedent_search (rowid, item, constitution) "
    "VALUES (:id, :item, :constitution)"
)


def index_new(
    conn: Connection, rows: Sequence[Mapping[str, Any]], hidden: Iterable[str] | None = ()
) -> None:
    """Index tasks just inserted (`id`, `queue_id`, `item`, `draft`; pending, so no notes or
    precedent) in a queue that hides the fields `hidden`."""
    if not rows:
        return
    gone = tuple(hidden or ())
    values = [
        {
            "id": r["id"],
            "queue_id": r["queue_id"],
            "item": item_text(r["item"], gone),
            "draft": draft_text(r["draft"]),
            "notes": "",
        }
        for r in rows
    ]
    conn.execute(_PG_TASK if conn.dialect.name == "postgresql" else _SQLITE_TASK, values)


def refresh(conn: Connection, task_ids: Iterable[int]) -> None:
    """Re-index tasks whose notes or state changed: their text with every note, and whether
    they are precedents (decided) or not."""
    ids = list(dict.fromkeys(task_ids))
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = conn.execute(_TASKS, {"ids": chunk}).mappings().all()
        notes: dict[int, list[str]] = {}
        for task_id, note in conn.execute(_NOTES, {"ids": chunk}):
            notes.setdefault(task_id, []).append(note)
        texts = [
            {
                "id": r["id"],
                "queue_id": r["queue_id"],
                "item": item_text(r["item"], r["hidden_fields"]),
                "draft": draft_text(r["draft"]),
                # Reviewers answer an open item independently: its notes are searchable once
                # it leaves open review, by everyone.
                "notes": "" if r["state"] == "pending" else _clean(notes.get(r["id"], [])),
                "constitution": constitution_of(r["draft"]),
                "done": r["state"] == "done",
            }
            for r in rows
        ]
        decided = [t for t in texts if t["done"]]
        gone = [t["id"] for t in texts if not t["done"]]
        if conn.dialect.name == "postgresql":
            conn.execute(_PG_TASK, texts)
            if decided:
                conn.execute(_PG_PRECEDENT, decided)
        else:
            conn.execute(_SQLITE_TASK, texts)
            if decided:
                conn.execute(_SQLITE_PRECEDENT, decided)
        forget_precedents(conn, gone)


def forget_precedents(conn: Connection, task_ids: Sequence[int]) -> None:
    """Tasks that are no longer decided stop being precedents."""
    column = "task_id" if conn.dialect.name == "postgresql" else "rowid"
    statement = text(f"DELETE FROM precedent_search WHERE {column} IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    for start in range(0, len(task_ids), _CHUNK):
        conn.execute(statement, {"ids": list(task_ids[start : start + _CHUNK])})


def forget_queue(conn: Connection, queue_id: int) -> None:
    """Drop a queue's tasks from both indexes before they are deleted (PostgreSQL does it by
    itself, on cascade)."""
    if conn.dialect.name == "postgresql":
        return
    ids = "SELECT id FROM tasks WHERE queue_id = :q"
    conn.execute(text(f"DELETE FROM precedent_search WHERE rowid IN ({ids})"), {"q": queue_id})
    conn.execute(text(f"DELETE FROM task_search WHERE rowid IN ({ids})"), {"q": queue_id})


def reindex_queue(conn: Connection, queue_id: int) -> int:
    """Index a queue's tasks again (after its hidden fields changed); returns how many."""
    last, count = 0, 0
    page = text("SELECT id FROM tasks WHERE queue_id = :q AND id > :last ORDER BY id LIMIT :n")
    while ids := list(conn.execute(page, {"q": queue_id, "last": last, "n": _CHUNK}).scalars()):
        refresh(conn, ids)
        last, count = ids[-1], count + len(ids)
    return count


def rebuild(conn: Connection) -> int:
    """Index every task again from the tasks and decisions tables; returns how many."""
    conn.execute(text("DELETE FROM task_search"))
    conn.execute(text("DELETE FROM precedent_search"))
    last, count = 0, 0
    page = text("SELECT id FROM tasks WHERE id > :last ORDER BY id LIMIT :n")
    while ids := list(conn.execute(page, {"last": last, "n": _CHUNK}).scalars()):
        refresh(conn, ids)
        last, count = ids[-1], count + len(ids)
    return count


# -- the query language ----------------------------------------------------------------------

_TOKEN = re.compile(r'-?"[^"]*"?|\S+')
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Terms:
    """A parsed search: groups of terms joined by OR, each a tuple of phrases that must all
    match (a phrase is a tuple of words); and phrases that must not match."""

    groups: tuple[tuple[tuple[str, ...], ...], ...]
    excluded: tuple[tuple[str, ...], ...] = ()

    @property
    def words(self) -> list[str]:
        """The words a match may show, for highlighting."""
        return [w for group in self.groups for phrase in group for w in phrase]

    def __bool__(self) -> bool:
        return bool(self.groups)


def parse(query: str) -> Terms:
    """Read a search: words, "phrases", OR, -excluded. Punctuation between words is ignored."""
    groups: list[tuple[tuple[str, ...], ...]] = []
    current: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    for token in _TOKEN.findall(query[:1000]):
        if token == "OR":
            if current:
                groups.append(tuple(current))
            current = []
            continue
        negative = token.startswith("-") and len(token) > 1
        words = tuple(w.lower() for w in _WORD.findall(token))
        if not words:
            continue
        (excluded if negative else current).append(words)
    if current:
        groups.append(tuple(current))
    return Terms(tuple(groups[:20]), tuple(excluded[:20]))


def _fts5_phrase(words: tuple[str, ...]) -> str:
    return '"' + " ".join(words).replace('"', '""') + '"'


def fts5_query(terms: Terms, columns: str | None = None) -> str:
    """The FTS5 MATCH expression of `terms` (only in these space-separated columns, if given)."""
    alternatives = [
        "(" + " AND ".join(_fts5_phrase(p) for p in group) + ")" for group in terms.groups
    ]
    expression = "(" + " OR ".join(alternatives) + ")"
    for phrase in terms.excluded:
        expression += f" NOT {_fts5_phrase(phrase)}"
    return f"{{{columns}}} : ({expression})" if columns else expression


def _tsquery_word(word: str) -> str:
    # Single-quoted lexeme in tsquery syntax: quotes and backslashes are escaped.
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def pg_query(terms: Terms) -> tuple[str, list[str]]:
    """The tsquery of `terms`, as SQL over bind parameters `:w0`, `:w1`..., and their values.

    Each phrase becomes `phraseto_tsquery` (which stems and drops stop words as the index did),
    so the user's text never reaches tsquery's own syntax."""
    values: list[str] = []

    def phrase(words: tuple[str, ...]) -> str:
        values.append(" ".join(words))
        return f"phraseto_tsquery('{CONFIG}', :w{len(values) - 1})"

    alternatives = ["(" + " && ".join(phrase(p) for p in group) + ")" for group in terms.groups]
    sql = "(" + " || ".join(alternatives) + ")"
    for p in terms.excluded:
        sql = f"({sql} && !!{phrase(p)})"
    return sql, values


# -- precedents: which words of an item to look for ------------------------------------------

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves human assistant""".split()  # noqa: SIM905
)


def key_words(text_: str, limit: int = 24) -> list[str]:
    """The words of an item that say what it is about: not stop words, most frequent first,
    then longest (a plain stand-in for rarity that needs no statistics)."""
    counts = Counter(
        w
        for w in (m.lower() for m in _WORD.findall(text_))
        if len(w) >= 3 and w not in STOP_WORDS and not w.isdigit()
    )
    ranked = sorted(counts, key=lambda w: (-counts[w], -len(w), w))
    return ranked[:limit]


# -- snippets ----------------------------------------------------------------------------------


def snippet(texts: Sequence[str], words: Sequence[str], width: int = 180) -> tuple[Segment, ...]:
    """A window of the first text that holds one of `words` (as a word prefix, ignoring case),
    split into segments with the matches marked; the start of the first text if none holds one.
    Segments are plain text: the page prints them escaped and wraps marked ones in `<mark>`."""
    if words:
        pattern = re.compile(
            r"\b(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
            + r")\w*",
            re.IGNORECASE | re.UNICODE,
        )  # fmt: skip
        for body in texts:
            first = pattern.search(body)
            if first is None:
                continue
            start = max(0, first.start() - width // 3)
            end = min(len(body), start + width)
            window = body[start:end]
            parts: list[Segment] = []
            if start > 0:
                parts.append(Segment("…"))
            at = 0
            for match in pattern.finditer(window):
                if match.start() > at:
                    parts.append(Segment(_flat(window[at : match.start()])))
                parts.append(Segment(_flat(match.group()), (0,)))
                at = match.end()
            if at < len(window):
                parts.append(Segment(_flat(window[at:])))
            if end < len(body):
                parts.append(Segment("…"))
            return tuple(parts)
    first_text = next((t for t in texts if t.strip()), "")
    shown = _flat(first_text[:width]).strip()
    return (Segment(shown + ("…" if len(first_text) > width else "")),) if shown else ()


def _flat(value: str) -> str:
    return re.sub(r"\s+", " ", value)
