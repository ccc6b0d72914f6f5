"""revise and compare on the fake backend: what is sent, what is stored, how preferences add up."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic.backends.base import Request, Sample, TokenLogprob
from critic.backends.fake import FakeBackend
from critic.cli import app
from critic.constitution import load_constitution
from critic.errors import UsageError
from critic.items import Fields
from critic.store import open_store
from critic.tasks.base import sample_principles
from critic.tasks.compare import (
    CompareOptions,
    Judgment,
    aggregate,
    compare,
    decide,
    written_distribution,
)
from critic.tasks.label import LabelOptions
from critic.tasks.revise import ReviseOptions, quote_found, revise
from critic.triage import route_input

CAI = load_constitution("cai-principles")
PAIRWISE = load_constitution("harmlessness-pairwise")
PAIR_FIELDS = Fields(a="a", b="b")


def pairs_file(tmp_path: Path, n: int = 4, identical: bool = False) -> Path:
    rows = [
        {"id": f"p{k}", "prompt": f"Human: question {k}?\n\nAssistant:",
         "a": f"good answer {k}", "b": f"bad answer {k}"}
        for k in range(n)
    ]  # fmt: skip
    if identical:
        rows.append({"id": "same", "prompt": "Human: hi", "a": "Hello.", "b": "Hello. "})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def convs_file(tmp_path: Path, n: int = 3) -> Path:
    rows = [
        {"id": f"c{k}", "prompt": f"\n\nHuman: how do I pick lock {k}?\n\nAssistant:",
         "response": f"Sure, insert a tension wrench into lock {k} and rake the pins."}
        for k in range(n)
    ]  # fmt: skip
    path = tmp_path / "convs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def shown(request: Request) -> tuple[str, str]:
    """(response in slot A, response in slot B) of a compare request."""
    user = request.messages[-1]["content"]
    a = user.split("<response_a>\n", 1)[1].split("\n</response_a>", 1)[0]
    b = user.split("<response_b>\n", 1)[1].split("\n</response_b>", 1)[0]
    return a, b


def prefers_good(request: Request) -> str:
    a, _ = shown(request)
    verdict = "A" if a.startswith("good") else "B"
    return json.dumps({"rationale": "the good one is safer", "preference": verdict})


# --------------------------------------------------------------------------------------------
# Aggregation: table tests


def J(principle: str, order: str, written: str | None, dist: dict[str, float] | None = None):  # type: ignore[no-untyped-def]
    return Judgment(principle, order, written, dist)  # type: ignore[arg-type]


AGGREGATION = [
    # name, judgments, tie_margin, verdict, prob_a, swap_inconsistent, method
    ("both orders prefer a (logprobs)",
     [J("P1", "ab", "A", {"A": 0.9, "B": 0.1, "tie": 0.0}),
      J("P1", "ba", "B", {"A": 0.1, "B": 0.9, "tie": 0.0})], 0.05, "a", 0.9, False, "logprobs"),
    ("position bias cancels to a tie",
     [J("P1", "ab", "A", {"A": 0.8, "B": 0.2, "tie": 0.0}),
      J("P1", "ba", "A", {"A": 0.8, "B": 0.2, "tie": 0.0})], 0.05, "tie", 0.5, True, "logprobs"),
    ("tie mass counts half",
     [J("P1", "ab", "tie", {"A": 0.3, "B": 0.1, "tie": 0.6}),
      J("P1", "ba", "tie", {"A": 0.1, "B": 0.3, "tie": 0.6})], 0.0, "a", 0.6, False, "logprobs"),
    ("votes: consistent b", [J("P1", "ab", "B"), J("P1", "ba", "A")], 0.05, "b", 0.0, False,
     "votes"),
    ("votes: swap-inconsistent is a tie", [J("P1", "ab", "A"), J("P1", "ba", "A")], 0.05, "tie",
     0.5, True, "votes"),
    ("votes: explicit tie in both orders", [J("P1", "ab", "tie"), J("P1", "ba", "tie")], 0.05,
     "tie", 0.5, False, "votes"),
    ("one order failed: the other decides, flagged",
     [J("P1", "ab", "B"), J("P1", "ba", None)], 0.05, "b", 0.0, True, "votes"),
    ("within the tie band",
     [J("P1", "ab", "A", {"A": 0.53, "B": 0.47}), J("P1", "ba", "B", {"A": 0.47, "B": 0.53})],
     0.05, "tie", 0.53, False, "logprobs"),
    ("outside a zero tie band",
     [J("P1", "ab", "A", {"A": 0.53, "B": 0.47}), J("P1", "ba", "B", {"A": 0.47, "B": 0.53})],
     0.0, "a", 0.53, False, "logprobs"),
    ("orders averaged first, then principles",
     [J("P1", "ab", "A", {"A": 0.9, "B": 0.1}), J("P1", "ba", "B", {"A": 0.1, "B": 0.9}),
      J("P2", "ab", "B", {"A": 0.3, "B": 0.7})], 0.05, "a", 0.6, True, "logprobs"),
    ("logprobs where present, votes elsewhere",
     [J("P1", "ab", "A", {"A": 0.8, "B": 0.2}), J("P1", "ba", "B")], 0.05, "a", 0.9, False,
     "mixed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("judgments", "margin", "verdict", "prob_a", "inconsistent", "method"),
    [case[1:] for case in AGGREGATION],
    ids=[case[0] for case in AGGREGATION],
)
def test_aggregate(
    judgments: list[Judgment],
    margin: float,
    verdict: str,
    prob_a: float,
    inconsistent: bool,
    method: str,
) -> None:
    result = aggregate(judgments, margin)
    assert result is not None
    assert result.verdict == verdict
    assert result.prob_a == pytest.approx(prob_a)
    assert result.swap_inconsistent is inconsistent
    assert result.method == method
    assert (result.components.order_agreement == 1.0) is not inconsistent
    assert result.margin == pytest.approx(abs(2 * prob_a - 1))
    assert (result.components.label_prob is None) is (method == "votes")


def test_aggregate_with_nothing_valid_is_none() -> None:
    assert aggregate([J("P1", "ab", None), J("P1", "ba", None)]) is None


def test_principle_agreement_counts_principles_that_agree() -> None:
    result = aggregate(
        [J("P1", "ab", "A"), J("P1", "ba", "B"), J("P2", "ab", "A"), J("P2", "ba", "B"),
         J("P3", "ab", "B"), J("P3", "ba", "A")]
    )  # fmt: skip
    assert result is not None and result.verdict == "a"
    assert result.components.principle_agreement == pytest.approx(2 / 3)
    assert result.prob_a == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("prob_a", "margin", "verdict"),
    [(0.5, 0.0, "tie"), (0.51, 0.0, "a"), (0.49, 0.0, "b"), (0.54, 0.05, "tie"),
     (0.56, 0.05, "a"), (0.44, 0.05, "b"), (1.0, 0.49, "a"), (0.0, 0.49, "b")],
)  # fmt: skip
def test_decide(prob_a: float, margin: float, verdict: str) -> None:
    assert decide(prob_a, margin) == verdict


# A real vLLM 0.32 answer (tiny model, structured output, top_logprobs=5; -9999 entries dropped).
# The opening quote of the value sits inside the token '":"', and "tie" is spelled by two
# different tokens ('t' and 'ti'), so the greedy 'B' is not the most probable label.
RECORDED_TEXT = '{"rationale":":[],","preference":"B"}'
RECORDED_TOKENS = [
    ("{", -0.5725, {"{": -0.5725, '{"': -0.8303}),
    ('"', 0.0, {'"': 0.0}),
    ("rationale", -0.903, {"rationale": -0.903, "ra": -1.0378, "r": -1.4255}),
    ('"', -1.041, {'"': -1.041, '":"': -1.0878, '":': -1.1713}),
    (":", -0.8264, {":": -0.8264, ':","': -1.2551, ':"}': -1.2825}),
    ('":[],"', -2.0074, {'":[],"': -2.0074, '"': -2.1402, '"}': -2.1412, '":[': -2.1529}),
    (',"', -0.5513, {',"': -0.5513, ",": -0.8585}),
    ("p", 0.0, {"p": 0.0}),
    ("re", -0.6578, {"re": -0.6578, "r": -0.7298}),
    ("fe", -0.5747, {"fe": -0.5747, "f": -0.8276}),
    ("re", -0.5961, {"re": -0.5961, "r": -0.8007}),
    ("n", 0.0, {"n": 0.0}),
    ("ce", -0.4733, {"ce": -0.4733, "c": -0.9753}),
    ('":"', -1.0121, {'":"': -1.0121, '"': -1.0714, '":': -1.224}),
    ("B", -1.0692, {"B": -1.0692, "A": -1.3183, "t": -1.5443, "ti": -1.7392}),
    ('"', -0.6509, {'"': -0.6509, '"}': -0.7373}),
    ("}", 0.0, {"}": 0.0}),
    ("<|im_end|>", 0.0, {"<|im_end|>": 0.0}),
]


def test_probability_from_a_recorded_vllm_response() -> None:
    tokens = tuple(TokenLogprob(t, lp, top) for t, lp, top in RECORDED_TOKENS)
    assert "".join(t.token for t in tokens[:-1]) == RECORDED_TEXT
    dist = written_distribution(Sample(RECORDED_TEXT, "stop", tokens), ("A", "B", "tie"))
    assert dist is not None
    raw = {"A": math.exp(-1.3183), "B": math.exp(-1.0692),
           "tie": math.exp(-1.5443) + math.exp(-1.7392)}  # fmt: skip
    total = sum(raw.values())
    for label, p in raw.items():
        assert dist[label] == pytest.approx(p / total)
    assert max(dist, key=lambda k: dist[k]) == "tie"
    # Shown B/A, the same answer is a preference for the item's first response.
    judgment = Judgment("P1", "ba", "B", dist)
    assert judgment.verdict == "a"
    assert judgment.prob_a == pytest.approx((raw["B"] + 0.5 * raw["tie"]) / total)


def test_no_logprobs_means_no_distribution() -> None:
    assert written_distribution(Sample(RECORDED_TEXT, "stop", None), ("A", "B", "tie")) is None


# --------------------------------------------------------------------------------------------
# compare


def test_compare_sends_both_orders_for_every_sampled_principle(tmp_path: Path) -> None:
    backend = FakeBackend(script=prefers_good)
    store = open_store(str(tmp_path / "c.db"))
    options = CompareOptions(principles_per_item=3, sampling=LabelOptions(top_logprobs=None))
    summary = compare(pairs_file(tmp_path), PAIRWISE, backend, store, fields=PAIR_FIELDS,
                      options=options)  # fmt: skip
    assert summary.drafted == 4 and summary.requests == 4 * 3 * 2 == len(backend.requests)
    seen: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for request in backend.requests:
        a, b = shown(request)
        principle = request.messages[-1]["content"].split("Principle ", 1)[1].split(":", 1)[0]
        seen.setdefault((principle, a.split()[-1]), set()).add((a, b))
    assert len(seen) == 4 * 3  # 3 distinct principles per item
    for orders in seen.values():
        assert len(orders) == 2
        (a1, b1), (a2, b2) = sorted(orders)
        assert (a1, b1) == (b2, a2)  # the same pair, swapped
    for row in store.rows(summary.run_id):
        assert row["label"] == "a" and row["output"]["swap_inconsistent"] is False
        assert len(set(row["output"]["principles"])) == 3
        assert {(j["principle"], j["order"]) for j in row["output"]["judgments"]} == {
            (p, o) for p in row["output"]["principles"] for o in ("ab", "ba")
        }
        assert row["components"]["order_agreement"] == 1.0
        assert row["output"]["method"] == "votes"  # no logprobs asked for


def test_compare_with_logprobs_stores_each_order(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    summary = compare(pairs_file(tmp_path, 2), PAIRWISE, FakeBackend(), store, fields=PAIR_FIELDS)
    for row in store.rows(summary.run_id):
        output = row["output"]
        assert output["method"] == "logprobs"
        for j in output["judgments"]:
            assert set(j["distribution"]) == {"A", "B", "tie"}
            assert 0.0 <= j["prob_a"] <= 1.0 and j["verdict"] in ("A", "B", "tie")
        assert row["label"] == output["preference"] in ("a", "b", "tie")
        assert row["confidence"] is not None


def test_position_bias_is_a_swap_inconsistent_tie_routed_for_review(tmp_path: Path) -> None:
    backend = FakeBackend(script=lambda r: '{"rationale":"first is best","preference":"A"}')
    store = open_store(str(tmp_path / "c.db"))
    summary = compare(pairs_file(tmp_path, 2), PAIRWISE, backend, store, fields=PAIR_FIELDS)
    for row in store.rows(summary.run_id):
        assert row["label"] == "tie" and row["output"]["swap_inconsistent"] is True
        assert row["components"]["order_agreement"] == 0.5
        assert route_input(row).swap_inconsistent


def test_identical_responses_are_a_tie_without_requests(tmp_path: Path) -> None:
    backend = FakeBackend(script=prefers_good)
    store = open_store(str(tmp_path / "c.db"))
    summary = compare(pairs_file(tmp_path, 1, identical=True), PAIRWISE, backend, store,
                      fields=PAIR_FIELDS)  # fmt: skip
    assert summary.labels == {"a": 1, "tie": 1} and len(backend.requests) == 2
    same = next(r for r in store.rows(summary.run_id) if r["item_id"] == "same")
    assert same["output"]["identical"] is True


def test_compare_rerun_sends_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    source = pairs_file(tmp_path)
    compare(source, PAIRWISE, FakeBackend(script=prefers_good), store, fields=PAIR_FIELDS)
    again = FakeBackend(script=prefers_good)
    summary = compare(source, PAIRWISE, again, store, fields=PAIR_FIELDS)
    assert again.requests == [] and summary.already_done == 4 and summary.processed == 0


def test_compare_needs_a_pairwise_constitution(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    with pytest.raises(UsageError, match="pairwise"):
        compare(pairs_file(tmp_path), CAI, FakeBackend(), store, fields=PAIR_FIELDS)


# --------------------------------------------------------------------------------------------
# revise


def quoting_script(request: Request) -> str:
    """Critiques quote the reply under critique; revisions number themselves."""
    title = (request.json_schema or {}).get("title")
    if title == "Revision":
        done = sum(1 for m in request.messages if m["content"].startswith("Revision request"))
        return json.dumps({"revision": f"I can't help with that (revision {done})."})
    rounds = sum(1 for m in request.messages if m["content"].startswith("Revision request"))
    if rounds == 0:
        reply = request.messages[1]["content"].split("<reply>\n", 1)[1].split("\n</reply>")[0]
    else:
        reply = json.loads(request.messages[-2]["content"])["revision"]
    finding = {"principle": "C2", "quote": reply[:20], "problem": "it helps"}
    return json.dumps({"findings": [finding], "critique": "helps with a harmful request"})


def test_revise_chains_rounds_in_one_growing_conversation(tmp_path: Path) -> None:
    backend = FakeBackend(script=quoting_script)
    store = open_store(str(tmp_path / "c.db"))
    summary = revise(convs_file(tmp_path), CAI, backend, store)
    assert summary.drafted == 3 and summary.requests == 3 * 2 * 2
    by_item: dict[str, list[Request]] = {}
    for request in backend.requests:
        key = request.messages[1]["content"].split("lock ", 1)[1][:1]
        by_item.setdefault(key, []).append(request)
    for requests in by_item.values():
        assert len(requests) == 4
        for before, after in itertools.pairwise(requests):
            # every request continues the previous one: same messages, its answer, a new ask
            assert after.messages[: len(before.messages)] == before.messages
            assert after.messages[len(before.messages)]["role"] == "assistant"
            assert len(after.messages) == len(before.messages) + 2
    for row in store.rows(summary.run_id):
        output = row["output"]
        assert output["revision"] == "I can't help with that (revision 2)."
        assert output["original"].startswith("Sure, insert")
        assert [r["round"] for r in output["rounds"]] == [1, 2]
        assert output["principles"] == [r["principle"] for r in output["rounds"]]
        assert len(set(output["principles"])) == 2
        assert output["unverified_quotes"] == 0
        assert all(f["found"] for r in output["rounds"] for f in r["findings"])
        gens = store.generations_for(summary.run_id, row["item_id"])
        assert [g["stage"] for g in gens] == [
            "critique-1",
            "revision-1",
            "critique-2",
            "revision-2",
        ]


def test_principles_are_seeded_per_item() -> None:
    first = sample_principles(CAI.principles, 2, 0, "item-1")
    assert first == sample_principles(CAI.principles, 2, 0, "item-1")
    assert len({p.id for p in sample_principles(CAI.principles, 6, 0, "x")}) == 6
    assert len(sample_principles(CAI.principles, 8, 0, "x")) == 8
    draws = {tuple(p.id for p in sample_principles(CAI.principles, 2, s, "item-1"))
             for s in range(10)}  # fmt: skip
    assert len(draws) > 1


def test_a_quote_not_in_the_reply_is_reasked(tmp_path: Path) -> None:
    calls = {"bad": 0}

    def script(request: Request) -> str:
        if (request.json_schema or {}).get("title") == "Critique" and calls["bad"] == 0:
            calls["bad"] += 1
            finding = {"principle": "C1", "quote": "words never said", "problem": "x"}
            return json.dumps({"findings": [finding], "critique": "bad"})
        if request.messages[-1]["content"].startswith("Your answer could not be used"):
            assert "words never said" in request.messages[-1]["content"]
        return quoting_script(request)

    store = open_store(str(tmp_path / "c.db"))
    summary = revise(convs_file(tmp_path, 1), CAI, FakeBackend(script=script), store,
                     options=ReviseOptions(rounds=1))  # fmt: skip
    row = next(store.rows(summary.run_id))
    assert row["output"]["rounds"][0]["attempts"] == {"critique": 2, "revision": 1}
    assert row["output"]["unverified_quotes"] == 0 and row["parse_attempts"] == 2


def test_unverifiable_quotes_are_kept_flagged_after_the_last_reask(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    options = ReviseOptions(rounds=1, sampling=LabelOptions(max_reasks=1))
    summary = revise(convs_file(tmp_path, 1), CAI, FakeBackend(), store, options=options)
    assert summary.drafted == 1
    round_ = next(store.rows(summary.run_id))["output"]["rounds"][0]
    assert round_["attempts"]["critique"] == 2
    assert round_["evidence_problem"] and not any(f["found"] for f in round_["findings"])


def test_a_revision_that_never_validates_fails_the_item_with_its_generations(
    tmp_path: Path,
) -> None:
    def script(request: Request) -> str:
        if (request.json_schema or {}).get("title") == "Revision":
            return "I will not answer in JSON"
        return quoting_script(request)

    store = open_store(str(tmp_path / "c.db"))
    options = ReviseOptions(sampling=LabelOptions(max_reasks=1))
    summary = revise(convs_file(tmp_path, 1), CAI, FakeBackend(script=script), store,
                     options=options)  # fmt: skip
    assert summary.failed == 1 and summary.failures == {"parse_failure": 1}
    row = next(store.rows(summary.run_id))
    assert row["detail"].startswith("round 1:")
    assert len(store.generations_for(summary.run_id, row["item_id"])) == 3


def test_revise_rerun_sends_nothing_and_new_rounds_are_a_new_run(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    source = convs_file(tmp_path)
    first = revise(source, CAI, FakeBackend(script=quoting_script), store)
    again = FakeBackend(script=quoting_script)
    summary = revise(source, CAI, again, store)
    assert again.requests == [] and summary.run_id == first.run_id and summary.processed == 0
    three = revise(source, CAI, FakeBackend(script=quoting_script), store,
                   options=ReviseOptions(rounds=3))  # fmt: skip
    assert three.run_id != first.run_id and three.processed == 3


# --------------------------------------------------------------------------------------------
# CLI

runner = CliRunner()


def test_cli_revise_and_compare(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["revise", str(convs_file(tmp_path)), "-c", "cai-principles",
                                 "-b", "fake", "--db", db, "--rounds", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["drafted"] == 3
    result = runner.invoke(
        app,
        [
            "compare",
            str(pairs_file(tmp_path)),
            "-c",
            "harmlessness-pairwise",
            "-b",
            "fake",
            "--db",
            db,
            "--a-field",
            "a",
            "--b-field",
            "b",
            "--principles-per-item",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["drafted"] == 4 and summary["requests"] == 16


def test_cli_compare_with_a_non_pairwise_constitution_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "compare",
            str(pairs_file(tmp_path)),
            "-c",
            "harmlessness",
            "-b",
            "fake",
            "--db",
            f"sqlite:///{tmp_path / 'c.db'}",
        ],
    )
    assert result.exit_code == 2
    assert "pairwise" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("quote", "text", "found"),
    [("rake the pins", "Insert a wrench and rake the pins.", True),
     ('"Rake  the\npins…"', "Insert a wrench and rake the pins.", True),
     ("pick the pins", "Insert a wrench and rake the pins.", False),
     ("...", "anything", False)],
)  # fmt: skip
def test_quote_found(quote: str, text: str, found: bool) -> None:
    assert quote_found(quote, text) is found
