"""`constitution stats` counts each decision under the constitution version that drafted its
item, next to that version's own text; `--version` keeps one. The same runs, routed to a queue,
carry each version's guidelines to the reviewers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudication import open_store as open_queue_store
from critic.backends.fake import FakeBackend
from critic.cli import app
from critic.constitution import Constitution, load_constitution
from critic.errors import UsageError
from critic.review import enqueue_review, open_stores
from critic.store import open_store
from critic.tasks.label import label
from critic.workbench import decision_stats

HARM = load_constitution("harmlessness")
runner = CliRunner()


def _v11() -> Constitution:
    data = HARM.model_dump(mode="json")
    data["version"] = "1.1"
    data["instructions"] = "Version 1.1 instructions <script>alert(1)</script>."
    for p in data["principles"]:
        p["text"] += " (as 1.1 words it)"
    return Constitution.model_validate(data)


def _items(tmp_path: Path, prefix: str, n: int) -> Path:
    path = tmp_path / f"{prefix}.jsonl"
    rows = [{"id": f"{prefix}{k}", "prompt": "Human: q", "response": f"reply {k}"}
            for k in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(url)
    try:
        label(_items(tmp_path, "old", 5), HARM, FakeBackend(), store)
        label(_items(tmp_path, "new", 5), _v11(), FakeBackend(), store)
        rows = [{**row, "route_reason": "low_confidence"} for row in store.rows()]
    finally:
        store.close()
    with open_queue_store(url) as queues:
        queues.create_queue("harm")
        queues.add_user("ann", queues=["harm"])
    with open_stores(url) as (runs, opened):
        assert enqueue_review(runs, opened, "harm", rows) == 10
    with open_queue_store(url) as queues:
        while (claim := queues.claim("harm", "ann")) is not None:
            old = claim.task.item_id.startswith("old")
            queues.decide(claim.token, "reject" if old else "accept", note="#gap" if old else None)
    return url


def test_each_routed_item_carries_the_guidelines_of_its_own_version(db: str) -> None:
    with open_queue_store(db) as queues:
        tasks = queues.tasks("harm")
        assert len({t.guidelines for t in tasks}) == 2
        for task in tasks:
            found = queues.guidelines("harm", task.guidelines)
            assert found is not None
            old = task.item_id.startswith("old")
            source = HARM if old else _v11()
            assert found.version == source.version and found.title == source.title
            assert (source.instructions or "?") in (found.instructions or "")
            assert [(g.id, g.text) for g in found.principles] == [
                (p.id, p.text) for p in source.principles
            ]
            assert [g.name for g in found.labels] == ["harmless", "harmful"]
            assert found.labels[0].description.startswith("The reply neither causes")
            h1 = found.principles[0]
            assert h1.examples and h1.examples[0].label == "harmless"
            assert h1.examples[0].explanation is not None


def test_stats_group_decisions_by_the_version_that_drafted_the_item(db: str) -> None:
    report = decision_stats(db)
    assert report.versions == ["harmlessness 1.0", "harmlessness 1.1"]
    assert {p.version for p in report.principles} == {"1.0", "1.1"}
    for p in report.principles:
        source = HARM if p.version == "1.0" else _v11()
        assert p.text == source.principle(p.principle).text, (p.version, p.principle)
        # 1.0's items were all overturned with a #gap note, 1.1's all accepted.
        assert p.override_rate == (1.0 if p.version == "1.0" else 0.0)
        assert p.gap_flags == (p.decisions if p.version == "1.0" else 0)
    assert report.overall.decisions == 10 and report.overall.gap_flags == 5
    only = decision_stats(db, version="1.0")
    assert {p.version for p in only.principles} == {"1.0"} and only.overall.decisions == 5
    by_hash = decision_stats(db, version=_v11().hash[:10])
    assert {p.version for p in by_hash.principles} == {"1.1"}
    with pytest.raises(UsageError, match=r"--version '2\.0'") as refused:
        decision_stats(db, version="2.0")
    assert refused.value.hint is not None and "harmlessness 1.1" in refused.value.hint


def test_stats_cli_filters_by_version_and_prints_that_versions_text(db: str) -> None:
    result = runner.invoke(app, ["constitution", "stats", "--db", db, "--version", "1.1"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "harmlessness 1.1 · 5 review" in out
    assert "(as 1.1 words it)" in out and "principle texts, as each version wrote them" in out
    assert "harmlessness 1.0" not in out
    both = runner.invoke(app, ["constitution", "stats", "--db", db, "--json"])
    data = json.loads(both.stdout)
    assert data["versions"] == ["harmlessness 1.0", "harmlessness 1.1"]
    assert {p["version"] for p in data["principles"]} == {"1.0", "1.1"}
