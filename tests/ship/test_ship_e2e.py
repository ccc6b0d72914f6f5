"""What ships is what was decided, through the real path, on SQLite and on PostgreSQL.

One set of five pairs is labelled, revised and compared through the vLLM CPU server on the tiny
model (`critic label`, `revise`, `compare`); each run is routed into its own queue by a saved
policy (`critic route --policy --queue`); a reviewer decides in the real web app, in headless
Chromium: accepts a label, accepts one revision and edits another, and chooses Response B on a
pair; then every registered format is exported, with and without `--all`. What ships by default
is what was accepted or decided; the review format (label-studio) holds exactly what awaits
review.

The policies review everything (`threshold: null`); the label and compare runs have a review
budget, so their most confident drafts are accepted (reason `budget`) and their other review
items stay undecided: pending. The three runs share item ids, each in its own queue, so the
decisions are told apart by their origin (run, item) only.

The whole path runs once per database, on one vLLM server for the session: the file takes 2 to
2 min 40 s on 2 busy cores (load 7-11), of which about a minute is the server's start-up and
20-50 s each database's pass. TRL trains a step on the SQLite exports only (about 15 s): the
exports are the same files whatever the database.

Needs vLLM (CPU), Chromium with Playwright, PostgreSQL for the `postgres` half, TRL for the
training test; each skips with its reason locally and fails in CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from adjudication import Store as QueueStore
from adjudication import open_store as open_queue_store
from adjudication.models import OriginOutcome, Task
from adjudication.web import create_app
from critic.cli import app
from critic.exports import formats, get_format
from critic.routing import Policy, save_policy
from critic.ship import SHIPPED, parse_origin
from critic.testing.vllm_server import VLLMServer
from tests.web.conftest import PASSWORD, SECRET
from tests.web.live import chromium, serve

pytestmark = [pytest.mark.vllm, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1500)]

runner = CliRunner()
N = 5
EDITED = "HUMAN REVISED TEXT: I can't help you break in; a locksmith can open the door for you."
PAIRS = [
    {
        "id": f"p{k}",
        "prompt": f"Human: How do I get into house {k} when I am locked out?\n\nAssistant:",
        "chosen": f"Call a locksmith or the landlord of house {k}; they can let you in.",
        "rejected": f"Break a window of house {k} with a brick and climb in.",
    }
    for k in range(N)
]
BY_ID = {p["id"]: p for p in PAIRS}
QUEUES = {"label": "labels", "revise": "revisions", "compare": "pairs"}
# threshold None: nothing is trusted, every draft would go to review; a budget then accepts the
# most confident drafts (reason `budget`, no guarantee) and reviews the least confident.
POLICIES = {
    "label": Policy(threshold=None, target_agreement=0.9, delta=0.1, budget=3),
    "revise": Policy(threshold=None, target_agreement=0.9, delta=0.1),
    "compare": Policy(threshold=None, target_agreement=0.9, delta=0.1, budget=3),
}
TRL = ("trl-sft", "trl-dpo")


def cli(*args: str, input: str | None = None) -> Result:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, (args, result.stdout[-2000:], result.stderr[-3000:])
    return result


@dataclass
class Shipped:
    """What one pass through the real path left behind."""

    db: str
    runs: dict[str, str]  # task -> run id
    decided: dict[str, tuple[str, str]] = field(default_factory=dict)
    """What the reviewer did -> (task, item id): `label accepted`, `revision edited`, ..."""
    critic_label_b: bool = False
    """The critic had answered B too on the pair decided B (then B changed nothing); a pair it
    did not answer B is chosen when the queue has one."""
    exports: dict[tuple[str, bool], list[dict[str, Any]]] = field(default_factory=dict)
    """(format, --all) -> the rows it wrote."""
    read: dict[tuple[str, bool], dict[str, int]] = field(default_factory=dict)
    """(format, --all) -> the items `critic export --json` said it read, by status."""
    dirs: dict[str, Path] = field(default_factory=dict)
    """TRL format -> the default export's directory."""

    def key(self, what: str) -> tuple[str, str]:
        task, item = self.decided[what]
        return self.runs[task], item


# -- drafting and routing ----------------------------------------------------------------------


def draft(server: VLLMServer, db: str, source: Path) -> dict[str, str]:
    """label, revise and compare the pairs through the vLLM server; the run id of each."""
    backend = ["--backend", "vllm-server", "--base-url", server.base_url, "--model",
               server.model, "--db", db, "--concurrency", "8", "--json"]  # fmt: skip
    commands = {
        "label": ["label", str(source), "-c", "harmlessness", "--response-field", "chosen",
                  "--logprobs", "5", "--max-tokens", "768"],
        "revise": ["revise", str(source), "-c", "cai-principles", "--response-field",
                   "rejected", "--rounds", "1", "--max-revision-chars", "300",
                   "--max-tokens", "1024"],
        "compare": ["compare", str(source), "-c", "harmlessness-pairwise", "--a-field",
                    "chosen", "--b-field", "rejected", "--principles-per-item", "1",
                    "--logprobs", "5", "--tie-margin", "0", "--max-tokens", "768"],
    }  # fmt: skip
    runs = {}
    for task, args in commands.items():
        # A process of its own, as a user runs it (and asyncio cannot start inside Playwright's
        # running event loop).
        result = subprocess.run(
            [sys.executable, "-m", "critic.cli", *args, *backend],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert result.stdout, result.stderr[-3000:]
        summary = json.loads(result.stdout)
        assert summary["items"] == N, result.stderr[-3000:]
        assert summary["drafted"] >= N - 1, summary  # constrained decoding: nearly all parse
        runs[task] = summary["run_id"]
    return runs


def route(db: str, runs: dict[str, str], tmp: Path) -> None:
    """One queue per run (labels from the run's constitution), routed by a saved policy."""
    cli("users", "add", "rita", "--role", "reviewer", "--db", db, "--password-stdin",
        input=PASSWORD + "\n")  # fmt: skip
    for task, run in runs.items():
        cli("queue", "create", QUEUES[task], "--db", db, "--member", "rita")
        path = tmp / f"{task}-policy.yaml"
        save_policy(POLICIES[task], path)
        summary = json.loads(cli("route", "--policy", str(path), "--db", db, "--run", run,
                                 "--queue", QUEUES[task], "--json").stdout)  # fmt: skip
        budget = POLICIES[task].budget  # failures are reviewed whatever the budget
        expected = N if budget is None else max(budget, summary["counts"]["parse_failure"])
        assert summary["review"] == summary["enqueued"] == expected, summary


# -- deciding in the browser -------------------------------------------------------------------


def log_in(browser: Any, url: str, problems: list[str]) -> Any:
    """rita's page, signed in; its script errors and dialogs go to `problems` (and dialogs are
    dismissed)."""
    page = browser.new_context().new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def dialog(shown: Any) -> None:
        problems.append(f"dialog: {shown.message}")
        shown.dismiss()

    page.on("dialog", dialog)
    page.goto(url + "/login")
    page.fill("input[name=username]", "rita")
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == url + "/", page.locator("body").inner_text()[:500]
    return page


def shown(page: Any) -> str | None:
    """The id of the item on the review page (None: the queue has nothing for the reviewer)."""
    field_ = page.locator("input[name=item_id]")
    return field_.input_value() if field_.count() else None


def open_item(
    page: Any, url: str, queues: QueueStore, queue: str, wanted: Callable[[Task, bool], bool]
) -> Task | None:
    """Open the queue's review page and claim items, skipping (S) those `wanted(task, more)`
    says no to (`more`: other items are left after it), until one it wants shows; that item's
    task. None if no item is wanted."""
    page.goto(f"{url}/q/{queue}/review")
    if shown(page) is None:
        with page.expect_navigation():
            page.locator("form#claim button[type=submit]").click()
    passed: set[str] = set()
    while (item := shown(page)) is not None:
        task = queues.task(queue, item)
        left = {t.item_id for t in queues.tasks(queue, state="pending")} - passed - {item}
        if wanted(task, bool(left)):
            return task
        passed.add(item)
        with page.expect_navigation():
            page.keyboard.press("s")
    return None


def item_field(page: Any, title: str) -> str:
    """The text of the item's field shown under `title` (a field's name, or `Response B`)."""
    name = page.locator(".panel.item .field-name", has_text=title)
    assert name.count() == 1, f"no field {title!r} on the page"
    text: str = name.locator("xpath=following-sibling::div[1]").inner_text()
    return text


def principles_have_text(page: Any) -> bool:
    """Every principle the page cites (the round's, and any a finding names) shows its text (a
    draft may cite none: the tiny model's labels often do not)."""
    cited = page.locator(".panel.principles")
    return not cited.count() or "was not included" not in cited.inner_text()


def note(page: Any, text: str) -> None:
    """Write a note (needed when overriding a confident draft), then leave the text box."""
    page.fill("textarea[name=note]", text)
    page.keyboard.press("Escape")


def decide_in_browser(browser: Any, shipped: Shipped) -> None:
    with (
        open_queue_store(shipped.db) as queues,
        serve(create_app(shipped.db, secret_key=SECRET)) as url,
    ):
        problems: list[str] = []
        page = log_in(browser, url, problems)

        def done(task: Task) -> OriginOutcome:
            assert task.origin is not None
            (outcome,) = queues.outcomes_for([task.origin])[task.origin]
            return outcome

        # Accept the critic's label (A).
        task = open_item(page, url, queues, "labels", lambda t, _: t.draft_label is not None)
        assert task is not None, "every label review item failed to parse"
        assert item_field(page, "chosen") == BY_ID[task.item_id]["chosen"]
        assert principles_have_text(page)
        with page.expect_navigation():
            page.keyboard.press("a")
        assert (done(task).state, done(task).source) == ("done", "human")
        shipped.decided["label accepted"] = ("label", task.item_id)

        # Edit a revision: E opens the revision's text, type the new text, Ctrl+Enter saves.
        def revision(t: Task, more: bool) -> bool:
            return t.answer == "revision"

        task = open_item(page, url, queues, "revisions", revision)
        assert task is not None, "no revision to review"
        assert page.locator("button[name=label]").count() == 0  # a revision takes no label
        assert item_field(page, "rejected") == BY_ID[task.item_id]["rejected"]
        assert principles_have_text(page)
        note(page, "the revision still explained how to get in")
        page.keyboard.press("e")
        box = page.locator("textarea[name=revision]")
        assert box.is_visible() and box.input_value() == task.draft["revision"]
        box.fill(EDITED)
        with page.expect_navigation():
            page.keyboard.press("Control+Enter")
        assert done(task).edit == {"revision": EDITED}
        shipped.decided["revision edited"] = ("revise", task.item_id)

        # Accept another revision as the critic wrote it (A: "Accept revision").
        task = open_item(page, url, queues, "revisions", revision)
        assert task is not None, "no second revision to review"
        assert "Accept revision" in page.locator("button[value=accept]").inner_text()
        with page.expect_navigation():
            page.keyboard.press("a")
        assert (done(task).state, done(task).edit) == ("done", None)
        shipped.decided["revision accepted"] = ("revise", task.item_id)

        # Choose Response B on a pair: one the critic answered A or tie, unless there is none.
        def pair(t: Task, more: bool) -> bool:
            return t.draft_label in ("A", "tie") or not more

        task = open_item(page, url, queues, "pairs", pair)
        assert task is not None, "no pair to review"
        shipped.critic_label_b = task.draft_label == "B"
        # The page says which text is Response B: the input's `rejected` (--b-field).
        assert item_field(page, "Response A") == BY_ID[task.item_id]["chosen"]
        assert item_field(page, "Response B") == BY_ID[task.item_id]["rejected"]
        assert principles_have_text(page)
        button = page.locator("button[name=label][value=B]")
        assert "Response B" in button.inner_text()  # the constitution's label, with its meaning
        note(page, "B refuses to help with breaking in")
        with page.expect_navigation():
            button.click()
        assert (done(task).state, done(task).label) == ("done", "B")
        shipped.decided["pair B"] = ("compare", task.item_id)
        assert problems == []


# -- exporting ---------------------------------------------------------------------------------


def read(fmt: str, out: Path) -> list[dict[str, Any]]:
    """The rows an export wrote (a Label Studio task as its run, id and status)."""
    if fmt == "label-studio":
        from critic.labelstudio.tasks import ORIGIN, STATUS

        found = []
        for task in json.loads((out / "tasks.json").read_text()):
            run_id, item_id = parse_origin(task["data"][ORIGIN])
            found.append({"run_id": run_id, "id": item_id, "status": task["data"][STATUS]})
        return found
    if fmt == "jsonl":
        return [json.loads(line) for line in out.read_text().splitlines()]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = pq.read_table(out).to_pylist()
        return rows
    if get_format(fmt).directory:  # hf and the TRL formats: a `datasets` directory
        import datasets

        return list(datasets.load_from_disk(str(out)))
    raise AssertionError(f"export format {fmt!r} is new here: teach read() to read it")


def export_everything(shipped: Shipped, tmp: Path) -> None:
    """Every registered format, with and without `--all`: of every run at once, or run by run
    for a format made for review (a Label Studio project takes one constitution's labels)."""
    assert {"jsonl", "parquet", "hf", "label-studio", *TRL} <= set(formats())
    for fmt, kind in formats().items():
        for everything in (False, True):
            flags = ["--all"] if everything else []
            chosen = [["--run", run] for run in shipped.runs.values()] if kind.review_only else [
                ["--all-runs"]]  # fmt: skip
            rows: list[dict[str, Any]] = []
            said: Counter[str] = Counter()
            for runs in chosen:
                out = tmp / fmt / f"{'all' if everything else 'default'}-{runs[-1].lstrip('-')}"
                result = cli("export", str(out), "--db", shipped.db, "--format", fmt, *runs,
                             *flags, "--json")  # fmt: skip
                summary, written = json.loads(result.stdout), read(fmt, out)
                assert summary["rows"] == len(written) and summary["conflicts"] == 0
                said.update(summary["statuses"])
                rows += written
                if fmt in TRL and not everything:
                    shipped.dirs[fmt] = out
            shipped.exports[fmt, everything] = rows
            shipped.read[fmt, everything] = dict(said)


def ship(db: str, server: VLLMServer, browser: Any, tmp: Path) -> Shipped:
    source = tmp / "pairs.jsonl"
    source.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    shipped = Shipped(db, draft(server, db, source))
    route(db, shipped.runs, tmp)
    decide_in_browser(browser, shipped)
    export_everything(shipped, tmp)
    return shipped


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def on_sqlite(
    vllm_server: VLLMServer, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Shipped:
    tmp = tmp_path_factory.mktemp("ship-sqlite")
    return ship(f"sqlite:///{tmp / 'critic.db'}", vllm_server, browser, tmp)


@pytest.fixture(scope="module")
def on_postgres(
    vllm_server: VLLMServer, browser: Any, tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Shipped:  # fmt: skip
    server = request.getfixturevalue("postgres_server")
    return ship(server.create_database(), vllm_server, browser, tmp_path_factory.mktemp("ship-pg"))


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shipped(request: pytest.FixtureRequest) -> Shipped:
    found: Shipped = request.getfixturevalue(f"on_{request.param}")
    return found


def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found = {(r["run_id"], r["id"]): r for r in rows}
    assert len(found) == len(rows), "an item was written twice"
    return found


# -- what ships --------------------------------------------------------------------------------


def test_only_what_was_decided_ships_and_all_adds_the_rest_with_its_status(
    shipped: Shipped,
) -> None:
    everything = keyed(shipped.exports["jsonl", True])
    assert len(everything) == 3 * N  # every item of the three runs
    decided = {shipped.key(what) for what in shipped.decided}
    for key, row in everything.items():
        if key in decided:
            assert row["status"] == "decided", row
        elif row["route"] == "accept":
            assert (row["status"], row["route_reason"]) == ("accepted", "budget"), row
        elif row["failure_reason"] is not None:
            assert row["status"] == "failed", row
        else:  # routed to review, in its queue, and nobody decided it
            assert (row["route"], row["status"]) == ("review", "pending"), row
            assert row["queue"] == QUEUES[row["task"]] and row["label"] is None
    statuses = [row["status"] for row in everything.values()]
    assert statuses.count("decided") == 4
    pending = {k for k, r in everything.items() if r["status"] == "pending"}
    assert pending, "nothing was left undecided"
    shipping = {k for k, r in everything.items() if r["status"] in SHIPPED}

    for fmt, kind in formats().items():
        for with_all in (False, True):
            assert shipped.read[fmt, with_all] == dict(Counter(statuses)), fmt  # every item
        default = keyed(shipped.exports[fmt, False])
        if kind.review_only:  # made for review: what awaits review, and nothing that ships
            assert set(default) == pending, fmt
            assert set(keyed(shipped.exports[fmt, True])) == set(everything), fmt
            continue
        assert not pending & set(default), f"{fmt} ships pending items"
        assert {r["status"] for r in default.values()} <= set(SHIPPED), fmt
        if fmt in TRL:  # what ships only, even with --all
            assert shipped.exports[fmt, True] == shipped.exports[fmt, False], fmt
            continue
        assert set(default) == shipping, fmt
        full = keyed(shipped.exports[fmt, True])
        assert set(full) == set(everything), fmt
        assert {k: r["status"] for k, r in full.items()} == {
            k: r["status"] for k, r in everything.items()
        }, fmt


def test_the_record_formats_hold_the_same_rows(shipped: Shipped) -> None:
    """jsonl, parquet and hf: the same columns with the same values (one type per field)."""
    for everything in (False, True):
        jsonl = shipped.exports["jsonl", everything]
        for fmt in ("parquet", "hf"):
            assert shipped.exports[fmt, everything] == jsonl, (fmt, everything)


def test_jsonl_says_who_decided_and_what_a_human_changed(shipped: Shipped) -> None:
    rows = keyed(shipped.exports["jsonl", False])

    label = rows[shipped.key("label accepted")]
    assert (label["label_source"], label["human_edited"]) == ("human", False)
    assert label["label"] == label["critic_label"] == label["human_label"]
    assert label["label"] in ("harmless", "harmful") and label["reviewers"] == ["rita"]
    assert label["guaranteed"] is False

    edited = rows[shipped.key("revision edited")]
    assert (edited["label_source"], edited["human_edited"]) == ("human", True)
    assert edited["label"] is None  # a revision ships its text, not a label
    assert edited["revision"] == EDITED != edited["critic_revision"]
    assert edited["critic_revision"]  # the critic's own revision stays beside the edit
    assert edited["original"] == BY_ID[edited["id"]]["rejected"]

    accepted = rows[shipped.key("revision accepted")]
    assert (accepted["label_source"], accepted["human_edited"]) == ("human", False)
    assert accepted["revision"] == accepted["critic_revision"] != EDITED

    pair = rows[shipped.key("pair B")]
    assert (pair["label"], pair["preferred"], pair["label_source"]) == ("B", "b", "human")
    assert pair["human_label"] == "B" and pair["human_edited"] is not shipped.critic_label_b
    assert pair["preference_probability"] is None  # the human's choice, not the critic's
    if pair["critic_label"] is not None:  # a draft: judged in both orders
        assert {o["order"] for o in pair["order_verdicts"]} == {"ab", "ba"}

    for row in rows.values():
        if row["status"] == "accepted":
            assert (row["label_source"], row["human_edited"], row["guaranteed"]) == (
                "critic",
                False,
                False,
            ), row
            assert row["reviewers"] == [] and row["policy"]


def test_the_edited_revision_and_the_human_preference_are_what_trl_gets(
    shipped: Shipped,
) -> None:
    sft = keyed(shipped.exports["trl-sft", False])
    dpo = keyed(shipped.exports["trl-dpo", False])
    edited, accepted = shipped.key("revision edited"), shipped.key("revision accepted")
    jsonl = keyed(shipped.exports["jsonl", False])

    # The edited text is the SFT target and the DPO chosen, over the original response.
    assert set(sft) == {edited, accepted}  # every other revision is pending (or failed)
    assert sft[edited]["messages"][-1] == {"role": "assistant", "content": EDITED}
    assert sft[edited]["messages"][0]["role"] == "user"
    assert (sft[edited]["label_source"], sft[edited]["human_edited"]) == ("human", True)
    assert sft[accepted]["messages"][-1]["content"] == jsonl[accepted]["critic_revision"]
    assert dpo[edited]["chosen"] == [{"role": "assistant", "content": EDITED}]
    original = BY_ID[edited[1]]["rejected"]
    assert dpo[edited]["rejected"] == [{"role": "assistant", "content": original}]

    # The human's B: chosen is response B (the input's `rejected`), rejected is response A.
    pair = dpo[shipped.key("pair B")]
    item = BY_ID[shipped.key("pair B")[1]]
    assert pair["chosen"] == [{"role": "assistant", "content": item["rejected"]}]
    assert pair["rejected"] == [{"role": "assistant", "content": item["chosen"]}]
    assert (pair["label_source"], pair["status"]) == ("human", "decided")

    # Nothing pending: the DPO pairs are the shipped revisions and shipped, non-tie comparisons.
    assert {r["task"] for r in dpo.values()} == {"revise", "compare"}
    assert {k for k, r in dpo.items() if r["task"] == "revise"} == {edited, accepted}
    assert {k for k, r in dpo.items() if r["task"] == "compare"} == {
        k for k, r in jsonl.items() if r["task"] == "compare" and r["preferred"] in ("a", "b")
    }
    assert all(jsonl[k]["status"] in SHIPPED for k in dpo)


@pytest.mark.trl
def test_trl_trains_a_step_on_what_shipped(
    on_sqlite: Shipped, trl_ready: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """SQLite only: the exports are the same files whatever the database."""
    import datasets

    from tests.test_trl_training import train_a_step

    for fmt, trainer in (("trl-dpo", "DPO"), ("trl-sft", "SFT")):
        dataset = datasets.load_from_disk(str(on_sqlite.dirs[fmt]))
        assert dataset.num_rows == len(on_sqlite.exports[fmt, False]) >= 2
        train_a_step(trainer, dataset, tiny_model_dir, tmp_path / fmt)
