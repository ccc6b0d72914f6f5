from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from critic.backends.base import Generation, Request, Sample
from critic.backends.fake import FakeBackend
from critic.constitution import load_constitution
from critic.errors import BackendError
from critic.exports import export_db
from critic.ship import final_records
from critic.store import Store, open_store
from critic.tasks.label import LabelOptions, label

HARM = load_constitution("harmlessness")
GOOD = '{"rationale":"fine","principles":["H1"],"label":"harmless"}'


def items_file(tmp_path: Path, n: int = 10, bad: bool = True) -> Path:
    path = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"id": f"i{k}", "prompt": f"Human: q{k}", "response": f"a{k}"}) for k in range(n)
    ]
    if bad:
        lines.insert(3, "{broken")
    path.write_text("\n".join(lines) + "\n")
    return path


def export_rows(store: Store) -> Iterator[dict[str, Any]]:
    """What the run store holds for each item, under the names these tests check."""
    for r in store.rows():
        yield {
            "id": r["item_id"], "status": r["status"], "source": r["source"],
            "reason": r["reason"], "detail": r["detail"], "label": r["label"],
            "score": r["score"], "constitution": r["constitution_hash"], "model": r["model"],
            "template": r["template_hash"], "run_id": r["run_id"],
            "parse_attempts": r["parse_attempts"], "confidence": r["confidence"],
            "components": r["components"],
        }  # fmt: skip


def test_every_item_gets_a_draft_or_a_recorded_failure(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    summary = label(items_file(tmp_path), HARM, FakeBackend(), store)
    assert (summary.items, summary.drafted, summary.failed) == (11, 10, 1)
    assert summary.failures == {"invalid_input": 1}
    rows = list(export_rows(store))
    assert len(rows) == 11
    bad = [r for r in rows if r["status"] == "failed"]
    assert bad[0]["reason"] == "invalid_input" and bad[0]["source"].endswith("items.jsonl:4")
    good = [r for r in rows if r["status"] == "drafted"]
    assert {r["label"] for r in good} <= {"harmless", "harmful"}
    assert all(r["constitution"] == HARM.hash and r["model"] == "fake-model" for r in good)
    assert all(r["template"] and r["run_id"] == summary.run_id for r in good)


def test_identical_bad_lines_at_two_places_are_two_recorded_failures(
    tmp_path: Path, store_url: str
) -> None:
    path = tmp_path / "items.jsonl"
    good = json.dumps({"id": "i0", "prompt": "Human: q", "response": "a"})
    path.write_text("\n".join(["{broken", good, "{broken", "[1]", "[1]"]) + "\n")
    store = open_store(store_url)
    summary = label(path, HARM, FakeBackend(), store)
    assert (summary.items, summary.drafted, summary.failed) == (5, 1, 4)
    again = label(path, HARM, FakeBackend(), store)  # the rerun finds the same four, no more
    assert (again.items, again.failed, again.processed) == (5, 4, 0)
    sources = sorted(r["source"] for r in export_rows(store) if r["status"] == "failed")
    assert sources == [f"{path}:{n}" for n in (1, 3, 4, 5)]


def test_rerun_sends_no_requests_and_keeps_results(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    source = items_file(tmp_path)
    label(source, HARM, FakeBackend(), store)
    first = list(export_rows(store))
    again = FakeBackend()
    summary = label(source, HARM, again, store)
    assert again.requests == []
    assert summary.processed == 0 and summary.already_done == 10
    assert list(export_rows(store)) == first


def test_labelling_another_column_of_the_same_file_is_another_run(
    tmp_path: Path, store_url: str
) -> None:
    from critic.items import Fields

    store = open_store(store_url)
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(
        json.dumps({"id": f"i{k}", "prompt": f"q{k}", "response": f"first {k}",
                    "other": f"second {k}"}) + "\n"
        for k in range(4)
    ))  # fmt: skip
    default = label(path, HARM, FakeBackend(), store)
    backend = FakeBackend()
    other = label(path, HARM, backend, store, fields=Fields(response="other"))
    assert other.run_id != default.run_id
    assert other.processed == 4 and len(backend.requests) == 4  # not "already done"
    assert "second 0" in backend.requests[0].messages[-1]["content"]
    runs = {r.id: r for r in store.runs()}
    assert "fields" not in runs[default.run_id].params  # default columns: the key they always had
    assert runs[other.run_id].params["fields"]["response"] == "other"
    again = FakeBackend()
    assert label(path, HARM, again, store, fields=Fields(response="other")).run_id == other.run_id
    assert again.requests == []


def test_a_default_column_run_keeps_its_key() -> None:
    from dataclasses import asdict

    from critic.items import Fields
    from critic.runs import run_key
    from critic.tasks.label import label_identity

    options = LabelOptions()
    assert label_identity(options) == label_identity(options, Fields()) == asdict(options)
    # The key every default-column label run has had since the store began.
    assert run_key("label", "c", "t", "b", "m", label_identity(options, Fields()), "in") == (
        run_key("label", "c", "t", "b", "m", options, "in")
    )


def test_invalid_output_is_reasked_with_the_error(tmp_path: Path) -> None:
    def script(request: Request) -> str:
        if len(request.messages) == 2:
            return '{"rationale":"x","principles":[],"label":"unsure"}'
        assert "field `label`" in request.messages[-1]["content"]
        assert request.messages[-2]["role"] == "assistant"
        return GOOD

    store = open_store(str(tmp_path / "c.db"))
    summary = label(items_file(tmp_path, 3, bad=False), HARM, FakeBackend(script=script), store)
    assert summary.drafted == 3 and summary.requests == 6
    row = next(export_rows(store))
    assert row["parse_attempts"] == 2 and row["label"] == "harmless"


def test_unfixable_output_is_recorded_with_raw_text(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    backend = FakeBackend(script=lambda r: "I refuse to answer in JSON <script>")
    summary = label(
        items_file(tmp_path, 2, bad=False), HARM, backend, store, options=LabelOptions(max_reasks=1)
    )
    assert summary.failed == 2 and summary.failures == {"parse_failure": 2}
    run_id = summary.run_id
    gens = store.generations_for(run_id, "i0")
    assert len(gens) == 2 and json.loads(gens[0]["texts"]) == [
        "I refuse to answer in JSON <script>"
    ]
    row = next(export_rows(store))
    assert row["status"] == "failed" and "not valid JSON" in row["detail"]


def test_truncation_and_prompt_too_long_are_failures_not_crashes(tmp_path: Path) -> None:
    def script(request: Request) -> str | Generation:
        if "q0" in request.messages[1]["content"]:
            return Generation.failed("prompt_too_long", "HTTP 400: maximum context length is 4096")
        from critic.backends.base import Sample

        return Generation(samples=(Sample('{"rationale":"abc', "length"),))

    store = open_store(str(tmp_path / "c.db"))
    summary = label(items_file(tmp_path, 2, bad=False), HARM, FakeBackend(script=script), store)
    assert summary.failures == {"prompt_too_long": 1, "truncated": 1}


def test_retry_failed_reruns_failures_but_not_bad_input(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    source = items_file(tmp_path, 4)
    label(
        source,
        HARM,
        FakeBackend(script=lambda r: "nope"),
        store,
        options=LabelOptions(max_reasks=0),
    )
    skipped = FakeBackend(script=lambda r: GOOD)
    label(source, HARM, skipped, store, options=LabelOptions(max_reasks=0))
    assert skipped.requests == []  # permanent failures are finished work
    retried = FakeBackend(script=lambda r: GOOD)
    summary = label(
        source, HARM, retried, store, options=LabelOptions(max_reasks=0), retry_failed=True
    )
    assert len(retried.requests) == 4
    assert (summary.drafted, summary.failures) == (4, {"invalid_input": 1})


def test_interrupted_run_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, store_url: str
) -> None:
    calls = {"n": 0}

    def dying(request: Request) -> str:
        calls["n"] += 1
        if calls["n"] > 12:
            raise BackendError("lost the server")
        return GOOD

    store = open_store(store_url)
    source = items_file(tmp_path, 40, bad=False)
    with pytest.raises(BackendError):
        label(source, HARM, FakeBackend(script=dying), store, concurrency=4)
    partial = [r for r in export_rows(store) if r["status"] == "drafted"]
    assert 0 < len(partial) <= 12
    resumed = FakeBackend(script=lambda r: GOOD)
    summary = label(source, HARM, resumed, store, concurrency=4)
    assert summary.drafted == 40
    assert len(resumed.requests) == 40 - len(partial)
    ids = [r["id"] for r in export_rows(store)]
    assert len(ids) == len(set(ids)) == 40


def test_samples_use_n_in_one_request_and_vote(tmp_path: Path) -> None:
    answers = [GOOD, GOOD, GOOD.replace("harmless", "harmful")]
    backend = FakeBackend(script=lambda r: answers[: r.n])
    store = open_store(str(tmp_path / "c.db"))
    summary = label(
        items_file(tmp_path, 2, bad=False), HARM, backend, store,
        options=LabelOptions(samples=3, temperature=1.0),
    )  # fmt: skip
    assert summary.requests == 2 and all(r.n == 3 for r in backend.requests)
    row = next(export_rows(store))
    components = row["components"]
    assert row["label"] == "harmless" and components["sample_share"] == pytest.approx(2 / 3)
    assert row["confidence"] == pytest.approx(2 / 3)


def test_rubric_scores_and_logprob_distribution(tmp_path: Path) -> None:
    from critic.backends.base import TokenLogprob

    help_c = load_constitution("helpfulness")
    text = '{"rationale":"ok","principles":["P1"],"score":4}'
    head = text[: text.index("4")]
    tokens = (
        TokenLogprob(head, 0.0, {head: 0.0}),
        TokenLogprob("4", -0.2, {"4": -0.2231, "5": -1.8971, "3": -2.9957}),
        TokenLogprob("}", 0.0, {"}": 0.0}),
    )
    backend = FakeBackend(script=lambda r: Generation(samples=(Sample(text, "stop", tokens),)))
    store = open_store(str(tmp_path / "c.db"))
    label(
        items_file(tmp_path, 1, bad=False),
        help_c,
        backend,
        store,
        options=LabelOptions(top_logprobs=5),
    )
    record = next(final_records(store, None, [store.runs()[-1].id]))
    assert record.critic_label == "4"
    dist = record.score_distribution or {}
    assert dist["4"] == pytest.approx(0.8, abs=1e-3) and dist["5"] == pytest.approx(0.15, abs=1e-3)
    assert record.expected_score == pytest.approx(4 * 0.8 + 5 * 0.15 + 3 * 0.05, abs=1e-2)
    assert record.confidence == pytest.approx(0.8, abs=1e-3)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_formats_open_with_datasets(tmp_path: Path, fmt: str) -> None:
    import datasets

    store = open_store(str(tmp_path / "c.db"))
    label(items_file(tmp_path, 5), HARM, FakeBackend(), store)
    out = tmp_path / {"jsonl": "o.jsonl", "parquet": "o.parquet", "hf": "o_dir"}[fmt]
    assert export_db(str(tmp_path / "c.db"), out, fmt, include_all=True).count == 6
    if fmt == "hf":
        ds = datasets.load_from_disk(str(out))
    else:
        ds = datasets.load_dataset("json" if fmt == "jsonl" else "parquet", data_files=str(out))[
            "train"
        ]
    assert ds.num_rows == 6
    assert {"id", "label", "critic_label", "rationale", "status", "failure_reason",
            "constitution", "model", "input"} <= set(ds.column_names)  # fmt: skip
    assert sorted(ds["status"]) == ["failed"] + ["pending"] * 5  # never routed: nothing ships
    assert set(ds["label"]) == {None}


def test_concurrent_run_with_slow_backend_stores_every_outcome(
    tmp_path: Path, store_url: str
) -> None:
    # Outcomes arrive while earlier ones are being flushed: none may be lost.
    store = open_store(store_url)
    backend = FakeBackend(latency_s=0.02)
    source = items_file(tmp_path, 120, bad=False)
    import asyncio

    from critic.tasks.label import alabel

    summary = asyncio.run(alabel(source, HARM, backend, store, concurrency=16))
    assert summary.drafted == 120 and summary.processed == 120
    assert store.item_ids(summary.run_id, ["pending"]) == []


def test_a_panel_of_critics_lowers_confidence_where_they_disagree(tmp_path: Path) -> None:
    import asyncio

    from critic.tasks.label import alabel
    from critic.triage import route_input

    harmful = GOOD.replace("harmless", "harmful")
    primary = FakeBackend(model="m1", script=lambda r: GOOD)
    agrees = FakeBackend(model="m2", script=lambda r: GOOD)
    # The third critic disagrees on odd items only.
    splits = FakeBackend(
        model="m3", script=lambda r: harmful if r.messages[1]["content"].count("q1") else GOOD
    )
    store = open_store(str(tmp_path / "c.db"))
    source = items_file(tmp_path, 3, bad=False)
    summary = asyncio.run(alabel(source, HARM, primary, store, critics=[agrees, splits]))
    assert summary.drafted == 3 and summary.requests == 9
    rows = {r["item_id"]: r for r in store.rows(summary.run_id)}
    assert [c["model"] for c in rows["i1"]["output"]["critics"]] == ["m1", "m2", "m3"]
    assert rows["i1"]["components"]["critic_agreement"] == pytest.approx(2 / 3)
    assert rows["i0"]["components"]["critic_agreement"] == 1.0
    assert rows["i1"]["confidence"] < rows["i0"]["confidence"]
    assert route_input(rows["i1"]).critics_disagree and not route_input(rows["i0"]).critics_disagree
    # The panel is part of the run's identity: one critic alone is a different run.
    alone = asyncio.run(alabel(source, HARM, FakeBackend(model="m1"), store))
    assert alone.run_id != summary.run_id


def test_a_run_renders_the_templates_it_hashed_even_one_first_used_late(tmp_path: Path) -> None:
    # The re-ask template is first rendered at the first unusable answer, maybe hours in; an
    # edit on disk before that must not reach the run, whose key holds the hash read at start.
    import shutil

    from critic.config import InputSpec
    from critic.render import Templates, render_reask
    from critic.tasks import TASKS
    from critic.tasks.base import prepare_run

    prompts = tmp_path / "prompts"
    shutil.copytree(Templates.load().directory, prompts)
    task = TASKS["label"]
    _, _, templates = prepare_run(
        task, load_constitution("harmlessness"), InputSpec(prompts=prompts)
    )
    hashed = templates.hash(task.templates)
    (prompts / "reask.j2").write_text("EDITED {{ error }}")
    assert "EDITED" not in render_reask(templates, "bad json")
    assert templates.hash(task.templates) == hashed


def test_rubric_scores_are_counted_and_printed_as_whole_numbers(
    tmp_path: Path, store_url: str
) -> None:
    # Issue 20, finding 14: the summary printed `label 4.0` (a float column cast to text).
    from rich.console import Console

    from critic.cli.run import summary_table

    text = '{"rationale":"ok","principles":["P1"],"score":4}'
    backend = FakeBackend(script=lambda r: Generation(samples=(Sample(text, "stop"),)))
    summary = label(items_file(tmp_path, 3, bad=False), load_constitution("helpfulness"),
                    backend, open_store(store_url))  # fmt: skip
    assert summary.labels == {"4": 3}
    console = Console(width=200, record=True)
    console.print(summary_table(summary))
    printed = console.export_text()
    assert "label 4 " in printed and "4.0" not in printed
