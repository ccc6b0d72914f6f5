"""The constitution workbench on the fake backend: diff tables, regression cases, impact with
reused drafts, and stats on decisions seeded through the adjudication store API."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import critic.cli.constitution
from adjudication import open_store as open_queue_store
from critic.backends.base import Request
from critic.backends.fake import FakeBackend
from critic.calibrate import clopper_pearson
from critic.cli import app
from critic.constitution import Constitution, load_constitution
from critic.errors import ConstitutionError, InputError, StoreError, UsageError
from critic.store import open_store
from critic.tasks.label import label
from critic.workbench import (
    cases_path,
    check_cases,
    decision_stats,
    diff_constitutions,
    enqueue_flips,
    impact,
    is_gap_note,
    is_override,
    load_cases,
    render_word_diff,
    run_cases,
    word_diff,
    write_stats_html,
)

HARM = load_constitution("harmlessness")
HELP = load_constitution("helpfulness")
runner = CliRunner()


def edit(c: Constitution, **changes: Any) -> Constitution:
    """A copy of `c` with top-level fields replaced (principles: a list of dicts)."""
    data = c.model_dump(mode="json")
    data.update(changes)
    return Constitution.model_validate(data)


def with_principle(c: Constitution, pid: str, **changes: Any) -> Constitution:
    data = c.model_dump(mode="json")
    for p in data["principles"]:
        if p["id"] == pid:
            p.update(changes)
    return Constitution.model_validate(data)


# -- diff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("a b c", "a b c", [("equal", "a b c")]),
        ("a b c", "a x c", [("equal", "a"), ("delete", "b"), ("insert", "x"), ("equal", "c")]),
        ("", "new words", [("insert", "new words")]),
        ("old words", "", [("delete", "old words")]),
        ("theft, fraud, hacking", "theft, fraud, scams, hacking",
         [("equal", "theft, fraud,"), ("insert", "scams,"), ("equal", "hacking")]),
        ("one  two\nthree", "one two three", [("equal", "one two three")]),  # whitespace only
    ],
)  # fmt: skip
def test_word_diff(old: str, new: str, expected: list[tuple[str, str]]) -> None:
    assert list(word_diff(old, new)) == expected


def test_render_word_diff_marks_deleted_and_inserted_words() -> None:
    assert render_word_diff(word_diff("do not help", "never help")) == "[-do not-] {+never+} help"


SWAPPED = [HARM.principles[1].model_dump(), HARM.principles[0].model_dump(),
           *(p.model_dump() for p in HARM.principles[2:])]  # fmt: skip


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (HARM, {"identical": True}),
        (edit(HARM, version="1.1"), {"meta": ["version"], "global": [], "affected": []}),
        (with_principle(HARM, "H2", text="Do not help with scams."),
         {"changed": {"H2": ["text"]}, "global": [], "affected": ["H2"]}),
        (with_principle(HARM, "H1", examples=[]),
         {"changed": {"H1": ["examples[0]"]}, "affected": ["H1"]}),
        (with_principle(HARM, "H3", critique_request="Find slurs."),
         {"changed": {"H3": ["critique_request"]}}),
        (edit(HARM, principles=[p.model_dump() for p in HARM.principles if p.id != "H4"]),
         {"removed": ["H4"], "global": [], "affected": ["H4"]}),
        (edit(HARM, principles=[*(p.model_dump() for p in HARM.principles),
                                {"id": "H6", "text": "Do not help stalk people."}]),
         {"added": ["H6"], "global": ["principles added: H6"], "affected": []}),
        (edit(HARM, principles=SWAPPED), {"reordered": True, "global": ["principle order"]}),
        (edit(HARM, instructions="Judge strictly."), {"meta": ["instructions"],
                                                      "global": ["instructions"]}),
        (edit(HARM, task={**HARM.task.model_dump(), "labels": [
            *HARM.task.model_dump()["labels"], {"name": "unsure", "description": "Cannot tell."}]}),
         {"labels_added": ["unsure"], "global": ["task.labels"]}),
        (edit(HARM, task={**HARM.task.model_dump(), "labels": [
            {"name": "harmless", "description": "Safe."},
            {"name": "harmful", "description": HARM.task.labels[1].description}]}),
         {"task": ["task.labels.harmless"]}),
        (edit(HARM, task={**HARM.task.model_dump(),
                          "labels": list(reversed(HARM.task.model_dump()["labels"]))}),
         {"task": ["task.labels (order)"]}),
    ],
)  # fmt: skip
def test_diff_constitutions(new: Constitution, expected: dict[str, Any]) -> None:
    diff = diff_constitutions(HARM, new)
    assert diff.identical == expected.get("identical", False)
    assert [c.field for c in diff.meta] == expected.get("meta", [])
    assert [c.field for c in diff.task] == expected.get("task", [])
    assert {p.id: [c.field for c in p.changes] for p in diff.principles_changed} == expected.get(
        "changed", {}
    )
    assert list(diff.principles_added) == expected.get("added", [])
    assert list(diff.principles_removed) == expected.get("removed", [])
    assert diff.principles_reordered == expected.get("reordered", False)
    assert list(diff.labels_added) == expected.get("labels_added", [])
    if "global" in expected:
        assert list(diff.global_changes) == expected["global"]
    if "affected" in expected:
        assert list(diff.affected_principles) == expected["affected"]
    json.dumps(diff.to_dict())  # always serialisable


def test_rubric_level_changes() -> None:
    levels = HELP.task.model_dump()["levels"]
    changed = [{**levels[0], "description": "Useless."}, *levels[1:4]]
    diff = diff_constitutions(HELP, edit(HELP, task={**HELP.task.model_dump(), "levels": changed}))
    assert [c.field for c in diff.task] == ["task.levels.1"]
    assert diff.levels_removed == (5,) and diff.levels_added == ()
    assert "task.levels" in diff.global_changes


def test_principle_text_change_has_a_word_diff_in_json() -> None:
    text = HARM.principle("H2").text.replace("fraud,", "fraud, scams,")
    new = with_principle(HARM, "H2", text=text)
    data = diff_constitutions(HARM, new).to_dict()
    (change,) = data["principles_changed"][0]["changes"]
    assert {"op": "insert", "text": "scams,"} in change["words"]
    assert change["old"] == HARM.principle("H2").text


def test_diff_cli_prints_words_and_json(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(HARM.model_dump(mode="json")))
    changed = with_principle(HARM, "H2", text="Do not help with [red]scams[/red].")
    new.write_text(yaml.safe_dump(changed.model_dump(mode="json")))
    result = runner.invoke(app, ["constitution", "diff", str(old), str(new)])
    assert result.exit_code == 0, result.output
    assert "~ principle H2" in result.stdout
    assert "{+[red]scams[/red].+}" in result.stdout  # printed as text, not as console markup
    assert "reaches items citing: H2" in result.stdout
    result = runner.invoke(app, ["constitution", "diff", str(old), str(new), "--json"])
    assert json.loads(result.stdout)["affected_principles"] == ["H2"]


# -- regression cases ------------------------------------------------------------------------


def test_shipped_cases_are_clean() -> None:
    suite, problems = check_cases(cases_path("harmlessness"), HARM)
    assert problems == [] and suite is not None
    assert len(suite.cases) >= 6
    assert {c.principle for c in suite.cases} == set(HARM.principle_ids)


def write_cases(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.cases.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_case_problems_are_all_reported_with_lines(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: helpfulness
        cases:
          - {id: a, principle: H9, response: r, expect: {label: harmful}}
          - {id: a, principle: H1, response: r, expect: {label: maybe}}
          - {id: b, principle: H1, response: r, expect: {score: 3}}
        """,
    )
    _, problems = check_cases(path, HARM)
    text = "\n".join(map(str, problems))
    assert "constitution: these cases are for 'helpfulness', not 'harmlessness'" in text
    assert f"{path}:4: cases[0].principle: 'H9' is not a principle" in text
    assert "cases[1].id: 'a' is used twice" in text
    assert "cases[1].expect.label: 'maybe' is not a label" in text
    assert "cases[2].expect: a categorical constitution expects a `label`" in text
    with pytest.raises(ConstitutionError, match="5 problem"):
        load_cases(path, HARM)


def test_case_shape_errors(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: harmlessness
        cases:
          - id: a
            principle: H1
            expect: {label: harmful}
          - id: b
            principle: H1
            response: r
            expect: {label: harmful, score: 2}
          - id: c
            principle: H1
            responce: typo
            expect: {label: harmful}
        """,
    )
    _, problems = check_cases(path, HARM)
    text = "\n".join(map(str, problems))
    assert "cases[0]: Value error, a case needs one item: a `response`" in text
    assert "cases[1].expect: Value error, give exactly one of `label`, `score` and" in text
    assert f"{path}:13: cases[2].responce: Extra inputs are not permitted" in text


def test_rubric_cases_take_a_score_band(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: helpfulness
        cases:
          - {id: good, principle: P1, response: r, expect: {score: [4, 5]}}
          - {id: bad, principle: P2, text: t, expect: {score: 1}}
          - {id: outside, principle: P2, text: t, expect: {score: [0, 9]}}
          - {id: word, principle: P2, text: t, expect: {label: good}}
        """,
    )
    suite, problems = check_cases(path, HELP)
    assert suite is not None and suite.cases[0].expect.band == (4, 5)
    assert [str(p).split(": ", 1)[1] for p in problems] == [
        "cases[2].expect.score: [0, 9] is outside the score levels (hint: use levels among: "
        "1, 2, 3, 4, 5)",
        "cases[3].expect: a rubric constitution expects a `score` (hint: write `expect: "
        "{score: 4}` or a band `expect: {score: [3, 5]}`)",
    ]
    inverted = write_cases(
        tmp_path,
        """
        constitution: helpfulness
        cases: [{id: inverted, principle: P2, text: t, expect: {score: [5, 4]}}]
        """,
    )
    _, problems = check_cases(inverted, HELP)
    assert "cases[0].expect: Value error, the score band [5, 4] has min above max" in str(
        problems[0]
    )


def scripted(answers: dict[str, str]) -> FakeBackend:
    """A backend answering by a word found in the item (the user message)."""

    def script(request: Request) -> str:
        item = request.messages[-1]["content"]
        for word, answer in answers.items():
            if word in item:
                return answer
        return "not json"

    return FakeBackend(script=script)


def answer(verdict: str | int, *principles: str, key: str = "label") -> str:
    return json.dumps({"rationale": "because", "principles": list(principles), key: verdict})


def test_run_cases_pass_fail_and_error_per_principle(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: harmlessness
        cases:
          - {id: bomb, principle: H1, prompt: p, response: bomb, expect: {label: harmful}}
          - {id: knife, principle: H1, prompt: p, response: knife, expect: {label: harmless}}
          - {id: fraud, principle: H2, prompt: p, response: fraud, expect: {label: harmful}}
          - {id: junk, principle: H3, prompt: p, response: junk, expect: {label: harmful}}
        """,
    )
    backend = scripted({"bomb": answer("harmful", "H1"), "knife": answer("harmful", "H1"),
                        "fraud": answer("harmful", "H2")})  # fmt: skip
    report = run_cases(HARM, load_cases(path, HARM), backend)
    assert [(r.id, r.status, r.got) for r in report.results] == [
        ("bomb", "pass", "harmful"), ("knife", "fail", "harmful"), ("fraud", "pass", "harmful"),
        ("junk", "error", None),
    ]  # fmt: skip
    assert report.results[0].source == f"{path}:4" and report.results[0].cited == ("H1",)
    assert report.by_principle["H1"] == {"cases": 2, "passed": 1, "failed": 1}
    assert report.by_principle["H3"] == {"cases": 1, "passed": 0, "failed": 1}
    assert report.untested == ["H4", "H5"]
    assert not report.ok and report.failed == 2
    data = report.to_dict()
    assert data["failed"] == 2 and data["results"][3]["detail"].startswith("parse_failure")
    only = run_cases(HARM, load_cases(path, HARM), backend, principles=["H2"])
    assert [r.id for r in only.results] == ["fraud"] and only.ok


def test_run_cases_rubric_band(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: helpfulness
        cases:
          - {id: in, principle: P1, response: four, expect: {score: [3, 5]}}
          - {id: out, principle: P2, response: two, expect: {score: [3, 5]}}
        """,
    )
    backend = scripted({"four": answer(4, "P1", key="score"), "two": answer(2, key="score")})
    report = run_cases(HELP, load_cases(path, HELP), backend)
    assert [(r.status, r.expected, r.got) for r in report.results] == [
        ("pass", "3-5", "4"), ("fail", "3-5", "2"),
    ]  # fmt: skip


def test_run_cases_refuses_a_critique_constitution(tmp_path: Path) -> None:
    cai = load_constitution("cai-principles")
    path = write_cases(
        tmp_path,
        f"""
        constitution: {cai.id}
        cases: [{{id: a, principle: {cai.principle_ids[0]}, response: r, expect: {{label: x}}}}]
        """,
    )
    suite, _ = check_cases(path, cai)
    assert suite is not None
    with pytest.raises(UsageError, match="drives a critique_revise task"):
        run_cases(cai, suite, FakeBackend())


PAIR = load_constitution("harmlessness-pairwise")


def test_pairwise_case_problems(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: harmlessness-pairwise
        cases:
          - {id: one, principle: P1, prompt: p, response: r, expect: {label: A}}
          - {id: half, principle: P1, prompt: p, a: x, expect: {preference: a}}
        """,
    )
    _, problems = check_cases(path, PAIR)
    text = "\n".join(map(str, problems))
    assert "cases[1]: Value error, a case needs one item" in text
    path = write_cases(
        tmp_path,
        """
        constitution: harmlessness-pairwise
        cases:
          - {id: one, principle: P1, prompt: p, response: r, expect: {label: A}}
        """,
    )
    _, problems = check_cases(path, PAIR)
    assert [p.message for p in problems] == [
        "a pairwise case has two responses `a` and `b` and expects a `preference`"
    ]
    _, problems = check_cases(
        write_cases(tmp_path, """
            constitution: harmlessness
            cases: [{id: x, principle: H1, prompt: p, a: x, b: y, expect: {preference: a}}]
            """),
        HARM,
    )  # fmt: skip
    assert "judges one response, not a preference" in problems[0].message


def test_pairwise_cases_are_judged_in_both_orders_under_their_principle(tmp_path: Path) -> None:
    path = write_cases(
        tmp_path,
        """
        constitution: harmlessness-pairwise
        cases:
          - {id: refuse, principle: P3, prompt: "Human: pick a lock",
             a: "Insert a tension wrench...", b: "I can't help with that.", expect: {preference: B}}
          - {id: same, principle: P5, prompt: "Human: hi", a: hello, b: hello,
             expect: {preference: tie}}
          - {id: wrong, principle: P1, prompt: "Human: hi", a: kind, b: rude,
             expect: {preference: b}}
        """,
    )
    judged: list[str] = []

    def script(request: Request) -> str:
        user = request.messages[-1]["content"]
        judged.append(user.rsplit("Principle ", 1)[1].split(":")[0])
        # Prefer whichever side holds the refusal (or the kind reply), in either order.
        first = user.split("<response_b>")[0]
        good_first = "can't help" in first or "kind" in first
        return json.dumps({"rationale": "r", "preference": "A" if good_first else "B"})

    report = run_cases(PAIR, load_cases(path, PAIR), FakeBackend(script=script))
    assert [(r.id, r.status, r.expected, r.got) for r in report.results] == [
        ("refuse", "pass", "b", "b"), ("same", "pass", "tie", "tie"), ("wrong", "fail", "b", "a"),
    ]  # fmt: skip
    assert sorted(judged) == ["P1", "P1", "P3", "P3"]  # both orders, only the case's principle
    assert report.results[0].cited == ("P3",)


def test_test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    base = ["constitution", "test", "harmlessness", "--backend", "fake", "-q"]
    result = runner.invoke(app, [*base, "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["ok"] else 1)
    assert report["cases"] == 6 and set(report["by_principle"]) == set(HARM.principle_ids)
    # Cases that expect what this (deterministic) backend says: all pass, exit 0.
    cases = yaml.safe_load(cases_path("harmlessness").read_text())
    got = {r["id"]: r["got"] for r in report["results"]}
    for case in cases["cases"]:
        case["expect"] = {"label": got[case["id"]]}
    path = tmp_path / "mine.cases.yaml"
    path.write_text(yaml.safe_dump(cases))
    result = runner.invoke(app, [*base, "--cases", str(path)])
    assert result.exit_code == 0, result.output
    assert "6 of 6 case(s) passed" in result.stderr
    missing = runner.invoke(app, ["constitution", "test", str(tmp_path / "c.yaml"), "-b", "fake"])
    assert missing.exit_code == 1 and "no such constitution file" in missing.stderr
    copy = tmp_path / "c.yaml"
    copy.write_text(cases_path("harmlessness").with_name("harmlessness.yaml").read_text())
    nocases = runner.invoke(app, ["constitution", "test", str(copy), "-b", "fake"])
    assert nocases.exit_code == 1 and "no such cases file" in nocases.stderr
    assert "Traceback" not in nocases.output


# -- impact ----------------------------------------------------------------------------------

SCAMS = with_principle(HARM, "H2", text="Do not help with scams, theft, fraud or hacking.")


def policy_backend() -> FakeBackend:
    """Cites H2 on items about scams, H1 otherwise; calls scam items harmful only when the
    constitution (the system prompt) mentions scams, so the change flips exactly those."""

    def script(request: Request) -> str:
        system, item = request.messages[0]["content"], request.messages[-1]["content"]
        if "scam" in item:
            return answer("harmful" if "scams" in system else "harmless", "H2")
        return answer("harmless", "H1")

    return FakeBackend(script=script)


def items(tmp_path: Path, n: int = 30) -> Path:
    path = tmp_path / "items.jsonl"
    rows = [{"id": f"i{k}", "prompt": "Human: help",
             "response": f"a scam <b>{k}</b>" if k % 3 == 0 else f"a recipe {k}"}
            for k in range(n)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_impact_relabels_only_drafts_citing_the_change_and_reuses_old_ones(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path / "c.db"))
    label(items(tmp_path), HARM, policy_backend(), store)
    backend = policy_backend()
    report = impact(HARM, SCAMS, store, backend)
    assert report.mode == "cited" and report.population == report.selected == 10
    assert len(backend.requests) == 10  # the old version's drafts were reused, not re-run
    assert report.compared == 10 and len(report.flips) == 10 and report.flip_rate == 1.0
    assert report.transitions == {"harmless -> harmful": 10}
    assert report.by_principle["H2"]["flipped"] == 10 and report.by_principle["H2"]["changed"]
    assert report.flips[0].snippet.startswith("Human: help | a scam <b>0</b>")
    data = report.to_dict(examples=2)
    assert len(data["by_principle"]["H2"]["examples"]) == 2 and data["estimated_flips"] == 10
    assert data["flip_rate_95"] == list(clopper_pearson(10, 10))
    again = policy_backend()
    second = impact(HARM, SCAMS, store, again)
    assert again.requests == [] and second.relabeled == 0 and len(second.flips) == 10


def test_impact_on_a_global_change_samples_with_a_seed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    label(items(tmp_path), HARM, policy_backend(), store)
    new = edit(SCAMS, instructions="Judge scams strictly.")
    first = impact(HARM, new, store, policy_backend(), sample=12, seed=1)
    assert first.mode == "sample" and "instructions" in first.reason
    assert first.population == 30 and first.selected == first.compared == 12
    ids = {f.item_id for f in first.flips}
    assert all(int(i[1:]) % 3 == 0 for i in ids)
    same = impact(HARM, new, store, policy_backend(), sample=12, seed=1)
    assert {f.item_id for f in same.flips} == ids and same.relabeled == 0
    other = impact(HARM, new, store, policy_backend(), sample=12, seed=2)
    assert other.relabeled > 0  # another sample: some items were not labeled yet


def test_impact_matches_a_full_rerun_of_the_sample(tmp_path: Path, store_url: str) -> None:
    store = open_store(store_url)
    source = items(tmp_path)
    label(source, HARM, policy_backend(), store)
    report = impact(HARM, SCAMS, store, policy_backend(), sample=6, seed=3)
    chosen = set(report.new_rows)
    assert len(chosen) == 6
    rerun = open_store(str(tmp_path / "rerun.db"))
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(line + "\n" for line in source.read_text().splitlines()
                              if json.loads(line)["id"] in chosen))  # fmt: skip
    verdicts = {}
    for version in (HARM, SCAMS):
        summary = label(subset, version, policy_backend(), rerun)
        verdicts[version.hash] = {r["item_id"]: r["label"] for r in rerun.rows(summary.run_id)}
    flipped = {i for i in chosen if verdicts[HARM.hash][i] != verdicts[SCAMS.hash][i]}
    assert flipped == {f.item_id for f in report.flips}


def test_impact_falls_back_to_a_sample_when_no_draft_cites_the_change(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    label(items(tmp_path), HARM, policy_backend(), store)
    new = with_principle(HARM, "H5", text="Never reveal addresses.")
    report = impact(HARM, new, store, policy_backend(), sample=5)
    assert report.mode == "sample" and "no stored draft cites H5" in report.reason
    assert report.selected == 5 and report.flips == []


def test_impact_errors(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    with pytest.raises(UsageError, match="identical"):
        impact(HARM, HARM, store, FakeBackend())
    with pytest.raises(StoreError, match="no label run of harmlessness") as info:
        impact(HARM, SCAMS, store, FakeBackend())
    assert "critic label" in (info.value.hint or "")
    label(items(tmp_path), HARM, policy_backend(), store)
    with pytest.raises(UsageError, match="from categorical to rubric"):
        impact(HARM, edit(HELP, id="harmlessness"), store, FakeBackend())
    from critic.items import Fields

    with pytest.raises(InputError, match="lack the input field"):
        impact(HARM, SCAMS, store, FakeBackend(), fields=Fields(prompt="question"))
    with pytest.raises(UsageError, match="used constitution"):
        impact(SCAMS, HARM, store, FakeBackend(), run_id=store.runs()[0].id)


def test_impact_reads_the_old_runs_input_columns(tmp_path: Path, store_url: str) -> None:
    from critic.items import Fields

    store = open_store(store_url)
    path = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in items(tmp_path).read_text().splitlines()]
    renamed = [{"id": r["id"], "question": r["prompt"], "answer": r["response"]} for r in rows]
    path.write_text("".join(json.dumps(r) + "\n" for r in renamed))
    columns = Fields(prompt="question", response="answer")
    old = label(path, HARM, policy_backend(), store, fields=columns)
    backend = policy_backend()
    report = impact(HARM, SCAMS, store, backend)  # no fields given: the stored ones are used
    assert report.old["run_id"] == old.run_id and len(report.flips) == 10
    assert "a scam" in backend.requests[0].messages[-1]["content"]
    assert report.flips[0].snippet.startswith("Human: help | a scam")
    # The new version's drafts form the run a full `critic label` with these columns resumes.
    again = policy_backend()
    full = label(path, SCAMS, again, store, fields=columns)
    assert full.run_id == report.new["run_id"] and full.already_done == 10
    assert len(again.requests) == 20


def test_impact_refuses_a_panel_run_with_a_hint(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "c.db"))
    label(items(tmp_path, 6), HARM, policy_backend(), store, critics=[policy_backend()])
    with pytest.raises(UsageError, match="panel of critics") as info:
        impact(HARM, SCAMS, store, policy_backend())
    assert "--run" in (info.value.hint or "")


def test_flipped_items_go_to_a_review_queue(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(db)
    label(items(tmp_path), HARM, policy_backend(), store)
    with open_queue_store(db) as queues:
        queues.create_queue("policy-change", labels=["harmless", "harmful"])
    report = impact(HARM, SCAMS, store, policy_backend())
    assert enqueue_flips(db, "policy-change", report) == 10
    with open_queue_store(db) as queues:
        tasks = queues.tasks("policy-change")
    assert len(tasks) == 10
    task = tasks[0]
    assert task.draft_label == "harmful" and task.route_reason == "constitution_change"
    assert task.principle_ids == ("H2",)
    assert task.draft["previous_verdict"] == "harmless"
    assert task.draft["previous_constitution"] == HARM.hash
    assert task.draft["constitution"] == SCAMS.hash


def test_diff_impact_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    label(items(tmp_path), HARM, FakeBackend(), open_store(db))
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(edit(HARM, instructions="Be strict.").model_dump(mode="json")))
    base = ["constitution", "diff", "harmlessness", str(new), "--db", db, "-b", "fake", "-q"]
    result = runner.invoke(app, [*base, "--impact", "--sample", "8", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["selection"]["mode"] == "sample" and data["selection"]["selected"] == 8
    assert data["compared"] == 8 and data["old"]["hash"] == HARM.hash
    result = runner.invoke(app, [*base, "--impact", "--sample", "8"])
    assert result.exit_code == 0, result.output
    assert "impact" in result.stdout and "per principle" in result.stdout
    # The old version given as a stored hash prefix works as well as a file.
    result = runner.invoke(app, ["constitution", "diff", HARM.hash[:10], str(new), "--db", db])
    assert result.exit_code == 0 and "instructions:" in result.stdout
    result = runner.invoke(app, ["constitution", "diff", "harmlessness", str(new), "--impact"],
                           env={"CRITIC_DB": ""})  # fmt: skip
    assert result.exit_code == 2 and "--impact needs --db" in result.stderr


def test_diff_impact_cli_fails_above_max_flip_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    label(items(tmp_path), HARM, policy_backend(), open_store(db))
    monkeypatch.setattr(critic.cli.constitution, "make_backend", lambda *a, **k: policy_backend())
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(SCAMS.model_dump(mode="json")))
    args = ["constitution", "diff", "harmlessness", str(new), "--db", db, "-q", "--impact"]
    assert json.loads(runner.invoke(app, [*args, "--json"]).stdout)["flip_rate"] == 1.0
    failed = runner.invoke(app, [*args, "--max-flip-rate", "0.5"])
    assert failed.exit_code == 1, failed.output
    assert "harmless → harmful" in failed.stdout and "scam <b>0</b>" in failed.stdout
    assert runner.invoke(app, [*args, "--max-flip-rate", "1.0"]).exit_code == 0


# -- stats -----------------------------------------------------------------------------------

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"
GAP = "[constitution gap]"  # the review app's note prefix for its "flag a gap" escalation


@pytest.mark.parametrize(
    ("note", "gap"),
    [("[constitution gap] satire", True), ("#gap: nothing covers satire", True),
     ("Gap: satire", True), ("see #constitution-gap", True),
     ("constitution gap: x", True), ("a gap in the fence", False), (None, False), ("#gaps", False)],
)  # fmt: skip
def test_gap_notes(note: str | None, gap: bool) -> None:
    assert is_gap_note(note) is gap


@pytest.mark.parametrize(
    ("action", "label", "edit_", "critic", "overridden"),
    [("accept", "harmless", None, "harmless", False), ("reject", None, None, "harmless", True),
     ("edit", "harmful", None, "harmless", True), ("edit", "harmless", {"revision": "r"},
     "harmless", True), ("edit", "harmless", None, "harmless", False),
     ("accept", "harmful", None, "harmless", True)],  # the last: a blind reviewer's own label
)  # fmt: skip
def test_is_override(
    action: str, label: str | None, edit_: dict[str, str] | None, critic: str, overridden: bool
) -> None:
    assert is_override(action, label, edit_, critic) is overridden


# item: (principles, critic label, {reviewer: (action, label, note)})
PLAN: dict[str, tuple[list[str], str, dict[str, tuple[str, str | None, str | None]]]] = {
    "a1": (["H1"], "harmless", {"ann": ("accept", None, None), "bob": ("accept", None, None)}),
    "a2": (["H1"], "harmless", {"ann": ("accept", None, None), "bob": ("accept", None, None)}),
    "a3": (["H1", "H2"], "harmful", {"ann": ("edit", "harmless", "#gap satire is not covered"),
                                     "bob": ("edit", "harmless", "#gap Satire is not covered")}),
    "b1": (["H2"], "harmless", {"ann": ("reject", None, XSS), "bob": ("accept", None, None)}),
    "b2": (["H2"], "harmful", {"ann": ("escalate", None, f"{GAP} Satire is not covered"),
                               "bob": ("edit", "harmless", "too strict")}),
    "c1": ([], "harmless", {"ann": ("accept", None, None), "bob": ("accept", None, None)}),
}  # fmt: skip


def seed_decisions(db: str) -> None:
    store = open_store(db)
    label(items(Path(db.removeprefix("sqlite:///")).parent, 3), HARM, FakeBackend(), store)
    with open_queue_store(db) as queues:
        queues.create_queue("harm", overlap=2, labels=["harmless", "harmful"])
        queues.create_queue("empty")
        for name in ("ann", "bob"):
            queues.add_user(name, queues=["harm", "empty"])
        queues.enqueue("harm", [
            {"item_id": i, "item": {"prompt": "Human: q", "response": f"{XSS} reply {i}"},
             "draft": {"constitution": HARM.hash}, "draft_label": critic, "principle_ids": ps,
             "confidence": 0.5}
            for i, (ps, critic, _) in PLAN.items()
        ])  # fmt: skip
        for reviewer in ("ann", "bob"):
            while (claim := queues.claim("harm", reviewer)) is not None:
                action, new_label, note = PLAN[claim.task.item_id][2][reviewer]
                queues.decide(claim.token, action, label=new_label, note=note)


def test_stats_per_principle_from_seeded_decisions(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    seed_decisions(db)
    report = decision_stats(db)
    by = {p.principle: p for p in report.principles}
    assert set(by) == {"H1", "H2", "(none)"}
    h1, h2 = by["H1"], by["H2"]
    assert (h1.decisions, h1.overrides, h1.items) == (6, 2, 3)  # a1, a2 accepted; a3 edited
    assert h1.override_rate == pytest.approx(2 / 6)
    assert h1.interval == clopper_pearson(2, 6, 0.05)
    assert h1.constitution == "harmlessness" and h1.text == HARM.principle("H1").text
    assert (h2.decisions, h2.overrides, h2.escalations) == (5, 4, 1)
    assert h2.actions == {"edit": 3, "reject": 1, "accept": 1}
    assert h1.gap_flags == 2 and h2.gap_flags == 3  # two #gap notes, one review-app gap flag
    assert h1.top_notes[0] == ("satire is not covered", 2, True)
    assert h2.top_notes == (
        ("satire is not covered", 3, True), (XSS.lower(), 1, False), ("too strict", 1, False),
    )  # fmt: skip
    assert h1.agreement == 1.0 and h1.agreement_items == 3  # both reviewers agree on a1..a3
    assert h2.agreement == pytest.approx(0.5) and h2.agreement_items == 2  # a3 agree, b1 not
    assert [e.item_id for e in h2.examples] == ["a3", "b1", "b2"]
    assert report.overall.decisions == 11 and report.overall.overrides == 4
    assert report.principles[0].principle == "H2"  # the highest lower bound first
    assert decision_stats(db, constitution="helpfulness").overall.decisions == 0
    json.dumps(report.to_dict(), default=str)


def test_stats_html_is_static_escaped_and_has_plots(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    seed_decisions(db)
    page = write_stats_html(decision_stats(db, examples=5), tmp_path / "report")
    text = page.read_text()
    assert "<script" not in text and "onerror=alert" not in text.replace("onerror=alert(2)&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Content-Security-Policy" in text
    for png in ("override_rate.png", "actions.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png}"' in text


def test_stats_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    seed_decisions(db)
    result = runner.invoke(app, ["constitution", "stats", "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["overall"]["decisions"] == 11 and data["queues"] == ["empty", "harm"]
    result = runner.invoke(
        app, ["constitution", "stats", "--db", db, "--html", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "stats · harmlessness 1.0 · 11 review" in result.stdout  # the version counted
    assert "│ H2 " in result.stdout and (tmp_path / "r" / "index.html").exists()
    assert "<script>aler" in result.stdout  # shown as plain text, not as console markup
    result = runner.invoke(app, ["constitution", "stats", "--db", db, "--queue", "harn"])
    assert result.exit_code == 1 and "harm" in result.stderr
