"""`critic queue`, `critic users` and `critic review next` on a real SQLite store, in-process and
in a real terminal (a pseudo-terminal, and tmux where it is installed)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from adjudication import Store, open_store
from critic.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
LABELS = "harmless,harmful"
HOSTILE = "[red]x[/red] \x1b[31mred <script>alert(1)</script>"


def run(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'critic.db'}"


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    with open_store(db) as opened:
        yield opened


def tasks(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "item_id": f"i{k}",
            "item": {"prompt": f"question {k} {HOSTILE}", "response": f"answer {k}"},
            "draft": {"rationale": f"reason {k}", "principle_texts": {"H1": "Avoid harm."}},
            "draft_label": "harmless",
            "confidence": (k + 1) / 10,
            "route_reason": "low_confidence",
            "principle_ids": ["H1"],
            **extra,
        }
        for k in range(n)
    ]


def seeded(db: str, n: int, overlap: int = 1, *reviewers: str) -> Store:
    for name in reviewers or ("alice",):
        assert run("users", "add", name, "--db", db).exit_code == 0
    members = [arg for name in reviewers or ("alice",) for arg in ("--member", name)]
    result = run("queue", "create", "harm", "--db", db, "--overlap", str(overlap),
                    "--labels", LABELS, *members)  # fmt: skip
    assert result.exit_code == 0, result.output
    store = open_store(db)
    store.enqueue("harm", tasks(n))
    return store


# -- critic queue ----------------------------------------------------------------------------


def test_queue_create_stores_the_settings(db: str, store: Store) -> None:
    result = run("queue", "create", "harm-review", "--db", db, "--overlap", "2", "--blind",
                    "--lease-seconds", "120", "--labels", "safe, unsafe")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "created queue 'harm-review'" in result.stdout and "critic route" in result.stdout
    queue = store.queue("harm-review")
    assert (queue.overlap, queue.blind, queue.lease_seconds, queue.labels, queue.ordinal) == (
        2, True, 120, ("safe", "unsafe"), False
    )  # fmt: skip
    scale = run("queue", "create", "rubric", "--db", db, "--labels", "1,2,3", "--ordinal",
                   "--json")  # fmt: skip
    assert json.loads(scale.stdout)["ordinal"] is True and store.queue("rubric").ordinal


def test_queue_create_refuses_an_absurd_overlap_or_lease(db: str, store: Store) -> None:
    huge_overlap = run("queue", "create", "wide", "--db", db, "--overlap", str(10**20))
    huge_lease = run("queue", "create", "long", "--db", db, "--lease-seconds", str(10**12))
    cases = [(huge_overlap, "--overlap", "less than or equal to 100"),
             (huge_lease, "--lease-seconds", "less than or equal to 86400")]  # fmt: skip
    for refused, flag, bound in cases:
        assert refused.exit_code == 2, refused.output
        said = " ".join(refused.output.replace("│", " ").split())
        assert f"Invalid value for '{flag}'" in said and bound in said
        assert "Traceback" not in refused.output
    assert store.queues() == []


def test_queue_create_errors_are_one_message(db: str) -> None:
    assert run("queue", "create", "harm", "--db", db).exit_code == 0
    again = run("queue", "create", "harm", "--db", db)
    assert again.exit_code == 1 and "queue 'harm' already exists" in again.stderr
    assert "Traceback" not in again.output
    empty = run("queue", "create", "other", "--db", db, "--labels", "a,,b")
    assert empty.exit_code == 2 and "has an empty label" in empty.stderr
    unordered = run("queue", "create", "other", "--db", db, "--ordinal")
    assert unordered.exit_code == 1 and "needs its labels" in unordered.stderr


def test_queue_list_shows_each_queue_with_its_counts(db: str) -> None:
    store = seeded(db, 3)
    assert run("queue", "create", "empty", "--db", db).exit_code == 0
    claim = store.claim("harm", "alice")
    assert claim is not None
    store.decide(claim.token, "accept")
    listed = json.loads(run("queue", "list", "--db", db, "--json").stdout)
    assert [(q["name"], q["tasks"], q["open"], q["done"]) for q in listed] == [
        ("empty", 0, 0, 0), ("harm", 3, 2, 1)
    ]  # fmt: skip
    table = run("queue", "list", "--db", db)
    assert table.exit_code == 0 and "harmless, harmful" in table.stdout


def test_queue_stats_gives_counts_override_rates_and_agreement(db: str) -> None:
    store = seeded(db, 4, 2, "ann", "bob")
    # ann and bob agree on i0, i1 and i3, and disagree on i2; bob rejects i3's draft.
    answers = {"ann": ["harmless", "harmless", "harmful", None],
               "bob": ["harmless", "harmless", "harmless", None]}  # fmt: skip
    for name, labels in answers.items():
        for label in labels:
            claim = store.claim("harm", name)
            assert claim is not None
            if label is None:
                store.decide(claim.token, "reject", seconds=2.0)
            elif label == claim.task.draft_label:
                store.decide(claim.token, "accept", seconds=2.0)
            else:
                store.decide(claim.token, "edit", label=label, seconds=2.0)
    result = run("queue", "stats", "harm", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["tasks"], stats["done"], stats["adjudication"], stats["reviews"]) == (4, 3, 1, 8)
    assert stats["actions"] == {"accept": 5, "edit": 1, "reject": 2, "escalate": 0}
    assert stats["override_rate"] == pytest.approx(3 / 8)
    assert stats["mean_seconds"] == pytest.approx(2.0)
    report = store.agreement("harm")
    agreement = stats["agreement"]
    assert agreement["overall"]["items"] == 4
    assert agreement["overall"]["percent"] == pytest.approx(0.75)
    assert agreement["overall"]["fleiss_kappa"] == pytest.approx(report.overall.fleiss_kappa)
    assert agreement["overall"]["alpha_nominal"] == pytest.approx(report.overall.alpha_nominal)
    [pair] = agreement["pairs"]
    assert (pair["a"], pair["b"], pair["items"]) == ("ann", "bob", 4)
    assert pair["kappa"] == pytest.approx(report.pairs[("ann", "bob")].kappa)
    assert agreement["critic_vs_human"]["items"] == 3
    assert set(agreement["by_reviewer"]) == {"ann", "bob"} and set(agreement["by_principle"]) == {
        "H1"
    }
    table = run("queue", "stats", "harm", "--db", db)
    for expected in ["override rate", "37.5%", "Fleiss' κ", "Krippendorff's α", "Cohen's κ",
                     "critic", "principle H1", "per reviewer"]:  # fmt: skip
        assert expected in table.stdout, expected


def test_queue_history_lists_every_event_of_an_item(db: str) -> None:
    store = seeded(db, 1)
    claim = store.claim("harm", "alice")
    assert claim is not None
    store.decide(claim.token, "edit", label="harmful", note="threat in line 2")
    events = json.loads(run("queue", "history", "harm", "i0", "--db", db, "--json").stdout)
    assert [e["kind"] for e in events] == ["enqueued", "claimed", "decided"]
    assert events[-1]["actor"] == "alice" and events[-1]["after"]["note"] == "threat in line 2"
    table = run("queue", "history", "harm", "i0", "--db", db)
    assert table.exit_code == 0 and "decided" in table.stdout and "threat in line 2" in table.stdout
    missing = run("queue", "history", "harm", "nope", "--db", db)
    assert missing.exit_code == 1 and "queue 'harm' has no item 'nope'" in missing.stderr


def test_unknown_queue_names_the_closest_one(db: str) -> None:
    seeded(db, 1)
    result = run("queue", "stats", "hram", "--db", db)
    assert result.exit_code == 1 and "no queue named 'hram'" in result.stderr
    assert "did you mean 'harm'?" in result.stderr


# -- critic users ----------------------------------------------------------------------------


def test_users_add_with_roles_and_a_hashed_password(db: str, store: Store) -> None:
    from argon2 import PasswordHasher

    from adjudication.web import verify_password

    assert run("users", "add", "alice", "--db", db).exit_code == 0
    result = run("users", "add", "ada", "--role", "adjudicator", "--db", db,
                    "--password-stdin", input="s3cret pass\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "with a web password" in result.stdout and "s3cret" not in result.output
    ada = store.user("ada")
    assert ada.role == "adjudicator" and ada.password_hash is not None
    assert "s3cret" not in ada.password_hash
    assert PasswordHasher().verify(ada.password_hash, "s3cret pass")
    assert verify_password(ada.password_hash, "s3cret pass")[0]  # the web app lets ada in
    assert store.user("alice").role == "reviewer" and store.user("alice").password_hash is None


def test_users_add_errors(db: str) -> None:
    typo = run("users", "add", "carl", "--role", "revewer", "--db", db)
    assert typo.exit_code == 1 and "unknown role 'revewer'" in typo.stderr
    assert "did you mean 'reviewer'?" in typo.stderr
    empty = run("users", "add", "dan", "--db", db, "--password-stdin", input="\n")
    assert empty.exit_code == 2 and "empty password" in empty.stderr
    short = run("users", "add", "dan", "--db", db, "--password-stdin", input="password\n")
    assert short.exit_code == 1 and "at least 10 characters" in short.stderr
    common = run("users", "add", "dan", "--db", db, "--password-stdin", input="Qwertyuiop1!\n")
    assert common.exit_code == 1 and "most common passwords" in common.stderr
    assert "Qwertyuiop1!" not in common.output
    named = run("users", "add", "dan", "--db", db, "--password-stdin", input="dan the reviewer\n")
    assert named.exit_code == 1 and "may not contain the user name ('dan')" in named.stderr
    assert run("users", "add", "eve", "--db", db).exit_code == 0
    twice = run("users", "add", "eve", "--db", db)
    assert twice.exit_code == 1 and "user 'eve' already exists" in twice.stderr


def test_users_list_never_shows_the_hash(db: str) -> None:
    password = "correct horse battery\n"
    run("users", "add", "bob", "--role", "admin", "--db", db, "--password-stdin", input=password)
    run("users", "add", "alice", "--db", db)
    listed = json.loads(run("users", "list", "--db", db, "--json").stdout)
    assert [(u["name"], u["role"], u["active"], u["password"]) for u in listed] == [
        ("alice", "reviewer", True, False), ("bob", "admin", True, True)
    ]  # fmt: skip
    table = run("users", "list", "--db", db)
    assert "argon2" not in table.stdout and "admin" in table.stdout


def test_queue_members_assign_and_unassign(db: str, store: Store) -> None:
    for name, role in (("alice", "reviewer"), ("ada", "adjudicator"), ("root", "admin")):
        assert run("users", "add", name, "--role", role, "--db", db).exit_code == 0
    created = run("queue", "create", "harm", "--db", db, "--member", "alice")
    assert created.exit_code == 0, created.output
    assert "members alice" in created.stdout
    bare = run("queue", "create", "help", "--db", db)
    assert "only admins can work in it until you add members" in bare.stdout
    assigned = run("queue", "assign", "help", "alice", "ada", "alice", "--db", db)
    assert assigned.exit_code == 0, assigned.output
    assert "added alice, ada" in assigned.stdout
    again = run("queue", "assign", "help", "ada", "--db", db)
    assert "added nobody (ada already in)" in again.stdout
    listed = json.loads(run("queue", "members", "help", "--db", db, "--json").stdout)
    assert [(m["name"], m["role"]) for m in listed] == [
        ("ada", "adjudicator"),
        ("alice", "reviewer"),
    ]
    users = {
        u["name"]: u["queues"]
        for u in json.loads(run("users", "list", "--db", db, "--json").stdout)
    }
    assert users == {"ada": ["help"], "alice": ["harm", "help"], "root": None}
    removed = run("queue", "unassign", "help", "alice", "bob", "--db", db)
    assert removed.exit_code == 1 and "no user named 'bob'" in removed.stderr  # nothing changed
    assert [u.name for u in store.members("help")] == ["ada", "alice"]
    removed = run("queue", "unassign", "help", "alice", "--db", db)
    assert "removed alice" in removed.stdout and "members now: ada" in removed.stdout
    typo = run("queue", "assign", "hlep", "ada", "--db", db)
    assert typo.exit_code == 1 and "did you mean 'help'?" in typo.stderr


def test_users_add_with_queues_and_a_reviewer_outside_the_queue(db: str, store: Store) -> None:
    assert run("queue", "create", "harm", "--db", db, "--labels", LABELS).exit_code == 0
    store.enqueue("harm", tasks(1))
    joined = run("users", "add", "alice", "--queue", "harm", "--db", db)
    assert joined.exit_code == 0 and "working in harm" in joined.stdout
    outside = run("users", "add", "bob", "--db", db)
    assert "they see no queue until added to one" in outside.stdout
    refused = run("review", "next", "--queue", "harm", "--as", "bob", "--db", db, input="a\n")
    assert refused.exit_code == 1
    assert "bob is not a member of queue 'harm'" in refused.stderr
    assert "critic queue assign harm bob" in refused.stderr
    assert store.decisions("harm") == []


# -- critic review next (stdin not a terminal: one key per line) ------------------------------


def test_review_next_decides_with_keys_and_records_everything(db: str) -> None:
    store = seeded(db, 6)
    keys = "a\n2\ne\n1\nn\nthreat in line 2\nr\ns\nq\n"
    result = run("review", "next", "--queue", "harm", "--as", "alice", "--db", db, input=keys)
    assert result.exit_code == 0, result.output

    decided = {d.item_id: (d.reviewer, d.action, d.label, d.note) for d in store.decisions("harm")}
    assert decided == {
        "i0": ("alice", "accept", "harmless", None),
        "i1": ("alice", "edit", "harmful", None),
        "i2": ("alice", "accept", "harmless", None),  # e, then the critic's own label
        "i3": ("alice", "reject", None, "threat in line 2"),
    }
    assert [e.kind for e in store.history("harm", "i4")][-1] == "skipped"
    assert [e.kind for e in store.history("harm", "i5")][-1] == "released"
    assert store.task("harm", "i5").state == "pending"
    out = result.stdout
    assert "why here: low_confidence" in out and "Avoid harm." in out
    assert "[red]x[/red]" in out and "\\x1b[31mred" in out and "\x1b" not in out
    assert "alice: 4 decided (accept 2, edit 1, reject 1), 1 skipped" in out.replace("\n", " ")
    assert "item 'i5' went back to the queue" in out.replace("\n", " ")


def test_review_next_runs_until_nothing_is_left(db: str) -> None:
    store = seeded(db, 2, 2, "alice", "bob")
    store.add_user("ada", "adjudicator", queues=["harm"])
    for name, keys in (("alice", "a\na\n"), ("bob", "2\na\n")):
        result = run("review", "next", "--queue", "harm", "--as", name, "--db", db, input=keys)
        assert result.exit_code == 0, result.output
        assert f"nothing left for {name} in queue 'harm'" in result.stdout.replace("\n", " ")
    assert store.task("harm", "i0").state == "adjudication"  # alice and bob disagree
    assert store.task("harm", "i1").final_source == "human"
    result = run("review", "next", "--queue", "harm", "--as", "ada", "--db", db, input="2\n")
    assert result.exit_code == 0, result.output
    assert "the reviewers disagree" in result.stdout and "edit → harmful" in result.stdout
    settled = store.task("harm", "i0")
    assert (settled.final_label, settled.final_source) == ("harmful", "adjudicated")


def test_review_next_with_an_unknown_user_says_how_to_add_them(db: str) -> None:
    seeded(db, 1)
    result = run("review", "next", "--queue", "harm", "--as", "zed", "--db", db, input="a\n")
    assert result.exit_code == 1 and "no user named 'zed'" in result.stderr
    assert "critic users add zed" in result.stderr


def test_review_next_shows_the_principle_text_of_a_routed_run(tmp_path: Path, db: str) -> None:
    from critic.routing import Policy, save_policy

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "prompt": "Human: q", "response": f"r{k}"})
                             + "\n" for k in range(4)))  # fmt: skip
    labelled = run("label", str(items), "-c", "harmlessness", "--backend", "fake", "--db", db,
                      "-q", "--logprobs", "2")  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    policy = tmp_path / "policy.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.9, delta=0.1), policy)
    assert run("queue", "create", "harm", "--db", db, "--labels", LABELS).exit_code == 0
    assert run("users", "add", "alice", "--queue", "harm", "--db", db).exit_code == 0
    routed = run("route", "--db", db, "--policy", str(policy), "--queue", "harm", "--json")
    assert json.loads(routed.stdout)["enqueued"] == 4

    result = run("review", "next", "--queue", "harm", "--as", "alice", "--db", db,
                    input="a\na\na\na\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(its text is not stored with this item)" not in result.stdout
    texts = re.findall(r"│ (H\d)  (\w+)", result.stdout)
    assert texts and all(word[0].isupper() for _, word in texts)  # "H2  Do not help ..."
    with open_store(db) as store:
        assert len(store.decisions("harm")) == 4 and store.stats("harm").done == 4


# -- critic review next in a real terminal ---------------------------------------------------

COMMAND = [sys.executable, "-m", "critic.cli"]
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


class Terminal:
    """A child process on a pseudo-terminal: keys in, screen text out."""

    def __init__(self, args: list[str], rows: int = 60, cols: int = 140) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, close_fds=True
        )
        os.close(slave)
        self.raw = b""
        self.seen = 0

    def _read(self, timeout: float) -> bool:
        if not select.select([self.master], [], [], timeout)[0]:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # the child closed the terminal
            return False
        self.raw += chunk
        return bool(chunk)

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def wait_for(self, wanted: str, timeout: float = 30) -> None:
        """Wait until `wanted` appears after the last thing waited for."""
        deadline = time.monotonic() + timeout
        while (found := self.text.find(wanted, self.seen)) < 0:
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(
                    f"{wanted!r} never appeared; screen ends:\n{self.text[-3000:]}"
                )
        self.seen = found + len(wanted)

    def press(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.1) and time.monotonic() < deadline:
            pass
        code = self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        os.close(self.master)
        return code


@pytest.mark.timeout(120)
def test_review_next_in_a_real_terminal_with_single_keys(db: str) -> None:
    store = seeded(db, 5)
    terminal = Terminal([*COMMAND, "review", "next", "--queue", "harm", "--as", "alice",
                         "--db", db])  # fmt: skip
    try:
        terminal.wait_for("item 1 of this session")
        terminal.wait_for(" q  quit")
        terminal.press(b"a")  # accept i0
        terminal.wait_for("item 2 of this session")
        terminal.wait_for(" q  quit")
        terminal.press(b"2")  # edit i1 to label 2 with a single key
        terminal.wait_for("item 3 of this session")
        terminal.wait_for(" q  quit")
        terminal.press(b"e")  # edit i2: e, then a label number and Enter
        terminal.wait_for("label: its number, or type it")
        terminal.press(b"2\r")
        terminal.wait_for("item 4 of this session")
        terminal.wait_for(" q  quit")
        terminal.press(b"s")  # skip i3
        terminal.wait_for("item 5 of this session")
        terminal.wait_for(" q  quit")
        terminal.press(b"q")  # quit at i4
        terminal.wait_for("went back to the queue")
        assert terminal.finish() == 0
    finally:
        if terminal.process.poll() is None:
            terminal.process.kill()

    decided = {d.item_id: (d.action, d.label) for d in store.decisions("harm")}
    assert decided == {"i0": ("accept", "harmless"), "i1": ("edit", "harmful"),
                       "i2": ("edit", "harmful")}  # fmt: skip
    assert [e.kind for e in store.history("harm", "i3")][-1] == "skipped"
    assert [e.kind for e in store.history("harm", "i4")][-1] == "released"
    assert store.task("harm", "i4").state == "pending"
    # The item's own escape sequence reached the terminal as visible text, not as a colour.
    assert b"\\x1b[31mred" in terminal.raw and b"\x1b[31mred" not in terminal.raw
    assert "[red]x[/red]" in terminal.text and "<script>alert(1)</script>" in terminal.text
    assert "alice: 3 decided (accept 1, edit 2), 1 skipped" in terminal.text


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_review_next_under_tmux_shows_the_screen_a_reviewer_sees(db: str) -> None:
    store = seeded(db, 2)
    socket = f"critic-test-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str) -> str:
        done = subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
        return done.stdout

    def screen_shows(wanted: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = tmux("capture-pane", "-p", "-t", "review")
            if wanted in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{wanted!r} never appeared; the pane shows:\n{screen}")

    # Rich takes COLUMNS over the terminal's size; the pane must be measured, not told.
    command = " ".join(map(shlex.quote, ["env", "-u", "COLUMNS", "-u", "LINES", *COMMAND,
                                         "review", "next", "--queue", "harm", "--as", "alice",
                                         "--db", db]))  # fmt: skip
    tmux("new-session", "-d", "-s", "review", "-x", "140", "-y", "60", "-c", str(REPO),
         f"{command}; echo exit=$?; sleep 60")  # fmt: skip
    try:
        screen = screen_shows(" q  quit")
        assert "item 1 of this session" in screen and "why here: low_confidence" in screen
        assert "[red]x[/red] \\x1b[31mred <script>alert(1)</script>" in screen
        assert "1  harmless (critic)" in screen
        tmux("send-keys", "-t", "review", "2")
        screen = screen_shows("item 2 of this session")
        assert "item 1 of this session" not in screen  # each item gets a fresh screen
        tmux("send-keys", "-t", "review", "q")
        screen = screen_shows("exit=")
        assert "exit=0" in screen and "alice: 1 decided (edit 1)" in screen
    finally:
        subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
    [decision] = store.decisions("harm")
    assert (decision.item_id, decision.action, decision.label) == ("i0", "edit", "harmful")
