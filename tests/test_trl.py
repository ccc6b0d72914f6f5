"""trl-sft and trl-dpo exports: TRL's conversational columns, provenance, and what is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from critic.backends.fake import FakeBackend
from critic.constitution import load_constitution
from critic.errors import UsageError
from critic.exports import export_db
from critic.exports.trl import to_messages
from critic.items import Fields
from critic.store import open_store
from critic.tasks.compare import compare
from critic.tasks.revise import revise
from critic.triage import route_run
from tests.tasks.test_cai import convs_file, pairs_file, prefers_good, quoting_script

CAI = load_constitution("cai-principles")
PAIRWISE = load_constitution("harmlessness-pairwise")


@pytest.mark.parametrize(
    ("prompt", "messages"),
    [
        ("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant:",
         [("user", "hi"), ("assistant", "hello"), ("user", "how?")]),
        ("Human: one turn\n\nAssistant:", [("user", "one turn")]),
        ("Just a question, no speakers", [("user", "Just a question, no speakers")]),
        ("Preamble\n\nHuman: then a turn", [("user", "Preamble\n\nHuman: then a turn")]),
        ([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
         [("system", "be brief"), ("user", "hi")]),
    ],
)  # fmt: skip
def test_to_messages(prompt: object, messages: list[tuple[str, str]]) -> None:
    assert to_messages(prompt) == [{"role": r, "content": c} for r, c in messages]


def filled_store(tmp_path: Path) -> tuple[str, str, str]:
    """A database with a revise run and a compare run, both routed with --accept-all."""
    db = str(tmp_path / "c.db")
    store = open_store(db)
    revised = revise(convs_file(tmp_path), CAI, FakeBackend(script=quoting_script), store)
    compared = compare(
        pairs_file(tmp_path, 3, identical=True),
        PAIRWISE,
        FakeBackend(script=prefers_good),
        store,
        fields=Fields(a="a", b="b"),
    )
    for run in (revised.run_id, compared.run_id):
        route_run(store, None, run)
    store.close()
    return db, revised.run_id, compared.run_id


def test_trl_sft_is_conversational_messages_ending_in_the_final_revision(tmp_path: Path) -> None:
    db, revise_run, _ = filled_store(tmp_path)
    out = tmp_path / "sft"
    assert export_db(db, out, "trl-sft", run=revise_run).count == 3
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == 3
    row = ds[0]
    assert row["messages"][0] == {"role": "user", "content": "how do I pick lock 0?"}
    assert row["messages"][-1]["role"] == "assistant"
    assert row["messages"][-1]["content"] == "I can't help with that (revision 2)."
    assert row["task"] == "revise" and row["run_id"] == revise_run
    assert row["label_source"] == "critic" and row["status"] == "accepted"
    assert row["guaranteed"] is False and row["route_reason"] == "accept_all"
    assert row["constitution"] == CAI.hash and row["model"] == "fake-model"
    lines = [json.loads(x) for x in (out / "trl-sft.jsonl").read_text().splitlines()]
    assert lines == ds.to_list()


def test_trl_dpo_pairs_from_revise_and_compare(tmp_path: Path) -> None:
    db, _, compare_run = filled_store(tmp_path)
    out = tmp_path / "dpo"
    result = export_db(db, out, "trl-dpo", all_runs=True)
    ds = datasets.load_from_disk(str(out))
    assert result.count == ds.num_rows == 3 + 3  # the identical pair (a tie) is skipped
    assert result.tally.skipped == {"ties": 1}
    assert set(ds.column_names) >= {"prompt", "chosen", "rejected", "preference_probability",
                                    "label_source", "constitution", "model"}  # fmt: skip
    for row in ds:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
    from_revise = [r for r in ds if r["task"] == "revise"]
    assert all(r["rejected"][0]["content"].startswith("Sure, insert") for r in from_revise)
    assert all(r["preference_probability"] is None for r in from_revise)
    from_compare = [r for r in ds if r["task"] == "compare"]
    assert all(r["chosen"][0]["content"].startswith("good") for r in from_compare)
    assert all(r["preference_probability"] == 1.0 and r["constitution"] == PAIRWISE.hash
               for r in from_compare)  # fmt: skip
    only = export_db(db, tmp_path / "one", "trl-dpo", run=compare_run[:6])
    assert only.count == 3


def test_trl_dpo_skips_ties_and_says_so_in_counts(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    store = open_store(db)
    always_a = FakeBackend(script=lambda r: '{"rationale":"x","preference":"A"}')
    run = compare(pairs_file(tmp_path, 2), PAIRWISE, always_a, store, fields=Fields(a="a", b="b"))
    route_run(store, None, run.run_id)
    result = export_db(db, tmp_path / "dpo", "trl-dpo")
    assert result.count == 0
    assert result.empty_reason == "0 DPO pairs: 2 ties, 2 decided or accepted of 2 items"
    assert datasets.load_from_disk(str(tmp_path / "dpo")).num_rows == 0


def test_unknown_format_names_the_registered_ones(tmp_path: Path) -> None:
    db, _, _ = filled_store(tmp_path)
    with pytest.raises(UsageError, match="trl-sft"):
        export_db(db, tmp_path / "x", "trl-ppo")
