"""trl-sft and trl-dpo exports: TRL's conversational columns, provenance, and what is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from critic.backends.fake import FakeBackend
from critic.constitution import load_constitution
from critic.errors import UsageError
from critic.items import Fields
from critic.store import open_store
from critic.tasks.compare import compare
from critic.tasks.revise import revise
from critic.trl import export_trl, to_messages
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


def filled_store(tmp_path: Path) -> tuple[object, str, str]:
    store = open_store(str(tmp_path / "c.db"))
    revised = revise(convs_file(tmp_path), CAI, FakeBackend(script=quoting_script), store)
    compared = compare(
        pairs_file(tmp_path, 3, identical=True),
        PAIRWISE,
        FakeBackend(script=prefers_good),
        store,
        fields=Fields(a="a", b="b"),
    )
    return store, revised.run_id, compared.run_id


def test_trl_sft_is_conversational_messages_ending_in_the_final_revision(tmp_path: Path) -> None:
    store, revise_run, _ = filled_store(tmp_path)
    out = tmp_path / "sft"
    assert export_trl(store, out, "trl-sft") == 3  # type: ignore[arg-type]
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == 3
    row = ds[0]
    assert row["messages"][0] == {"role": "user", "content": "how do I pick lock 0?"}
    assert row["messages"][-1]["role"] == "assistant"
    assert row["messages"][-1]["content"] == "I can't help with that (revision 2)."
    assert row["task"] == "revise" and row["run_id"] == revise_run and row["source"] == "critic"
    assert row["constitution"] == CAI.hash and row["model"] == "fake-model"
    lines = [json.loads(x) for x in (out / "trl-sft.jsonl").read_text().splitlines()]
    assert lines == ds.to_list()


def test_trl_dpo_pairs_from_revise_and_compare(tmp_path: Path) -> None:
    store, _, compare_run = filled_store(tmp_path)
    out = tmp_path / "dpo"
    count = export_trl(store, out, "trl-dpo")  # type: ignore[arg-type]
    ds = datasets.load_from_disk(str(out))
    assert count == ds.num_rows == 3 + 3  # the identical pair (a tie) is skipped
    assert set(ds.column_names) >= {"prompt", "chosen", "rejected", "margin", "source",
                                    "constitution", "model"}  # fmt: skip
    for row in ds:
        assert row["prompt"][-1]["role"] == "user"
        assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        assert row["chosen"] != row["rejected"]
    from_revise = [r for r in ds if r["task"] == "revise"]
    assert all(r["rejected"][0]["content"].startswith("Sure, insert") for r in from_revise)
    assert all(r["margin"] is None for r in from_revise)
    from_compare = [r for r in ds if r["task"] == "compare"]
    assert all(r["chosen"][0]["content"].startswith("good") for r in from_compare)
    assert all(r["margin"] == 1.0 and r["constitution"] == PAIRWISE.hash for r in from_compare)
    only = export_trl(store, tmp_path / "one", "trl-dpo", run_id=compare_run[:6])  # type: ignore[arg-type]
    assert only == 3


def test_trl_dpo_skips_ties(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    always_a = FakeBackend(script=lambda r: '{"rationale":"x","preference":"A"}')
    compare(pairs_file(tmp_path, 2), PAIRWISE, always_a, store, fields=Fields(a="a", b="b"))
    assert export_trl(store, tmp_path / "dpo", "trl-dpo") == 0
    assert datasets.load_from_disk(str(tmp_path / "dpo")).num_rows == 0


def test_unknown_trl_format(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="trl-sft"):
        export_trl(open_store(str(tmp_path / "c.db")), tmp_path / "x", "trl-ppo")
