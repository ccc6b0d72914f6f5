"""`--ray`: parts of an input read on their own, and runs drafted by actors on a real local Ray.

The parts are checked against `load_items` (same rows, same names, same order). The Ray tests
start a real local cluster (`ray.init`) through the CLI: 20,000 rows on the fake backend with the
driver killed by SIGKILL mid-run and a rerun that leaves every row exactly once, and 200 rows
through a real vLLM server from Ray workers, counted on the server, and 20 rows drafted by an
actor's own in-process vLLM engine (`--backend vllm`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from critic.items import BadRow, Item, load_items, load_part, plan_parts
from tests.fixtures_real import import_error, require

CRITIC = [sys.executable, "-m", "critic.cli"]


def write_jsonl(path: Path, n: int, bad_every: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            if bad_every and i % bad_every == bad_every - 1:
                f.write("{not json\n")
                continue
            f.write(json.dumps({"id": f"r{i}", "prompt": f"question {i}", "response": "ok"}) + "\n")
    return path


def names(entries: list[Item | BadRow]) -> list[tuple[str, str]]:
    return [(e.id, e.source) for e in entries]


def test_jsonl_parts_cover_every_line_once_with_its_own_line_number(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 1003, bad_every=250)
    parts = plan_parts(source, rows_per_part=100)
    assert [p.rows for p in parts] == [100] * 10 + [3]
    read = [entry for part in parts for _, entry in load_part(part)]
    whole = list(load_items(source, check_duplicates=False))
    assert names(read) == names(whole)
    bad = [e for e in read if isinstance(e, BadRow)]
    assert [e.source for e in bad] == [f"{source}:{n}" for n in (250, 500, 750, 1000)]
    seqs = [seq for part in parts for seq, _ in load_part(part)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_limit_cuts_the_last_part(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "rows.jsonl", 500)
    parts = plan_parts(source, rows_per_part=100, limit=250)
    assert len(parts) == 3 and parts[-1].max_rows == 50
    assert sum(1 for part in parts for _ in load_part(part)) == 250


def test_parquet_and_saved_dataset_parts_name_rows_like_load_items(tmp_path: Path) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": f"r{i}", "prompt": f"q{i}", "response": "ok"} for i in range(250)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet", row_group_size=100)
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "rows.parquet", tmp_path / "saved"):
        parts = plan_parts(source, rows_per_part=100)
        assert sum(p.rows for p in parts) == 250 and len(parts) == 3
        read = [entry for part in parts for _, entry in load_part(part)]
        assert names(read) == names(list(load_items(source)))


def test_a_split_the_saved_dataset_lacks_is_named_before_any_part_is_planned(
    tmp_path: Path,
) -> None:
    # It used to count as 0 rows: --ray then drafted nothing and said nothing.
    import datasets

    from critic.errors import InputError

    rows = [{"id": f"r{i}", "prompt": f"q{i}", "response": "ok"} for i in range(5)]
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(saved))
    assert sum(p.rows for p in plan_parts(saved, split="train")) == 5
    with pytest.raises(InputError, match=r"saved: no split 'test'") as err:
        plan_parts(saved, split="test")
    assert err.value.hint == "splits: train"


def test_a_folder_of_files_is_one_input_read_file_after_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", 150, bad_every=100)
    rows = [{"id": f"p{i}", "prompt": f"q{i}", "response": "ok"} for i in range(120)]
    pq.write_table(pa.Table.from_pylist(rows), folder / "b.parquet", row_group_size=50)
    (folder / "notes.txt").write_text("not data")
    whole = list(load_items(folder))
    assert len(whole) == 270 and whole[0].source == f"{folder / 'a.jsonl'}:1"
    assert whole[-1].source == f"{folder / 'b.parquet'}:row 120"
    assert whole[99].reason.startswith("not valid JSON")  # type: ignore[union-attr]
    parts = plan_parts(folder, rows_per_part=100)
    assert [(p.first, p.rows) for p in parts] == [(0, 100), (100, 50), (150, 50), (200, 50),
                                                  (250, 20)]  # fmt: skip
    read = [(seq, entry) for part in parts for seq, entry in load_part(part)]
    assert names([e for _, e in read]) == names(whole)
    assert [seq for seq, _ in read] == list(range(270))


def test_a_hub_name_is_refused_with_a_hint() -> None:
    from critic.errors import InputError

    with pytest.raises(InputError, match="save_to_disk"):
        plan_parts("owner/dataset")


# -- a real local Ray cluster ---------------------------------------------------------------------


@pytest.fixture
def ray_ready() -> None:
    problem = import_error("ray", "ray.data")
    require(problem is None, f"--ray needs Ray Data ({problem}): pip install 'critic[ray]'")


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return {
            "items": conn.execute("SELECT count(*) FROM items").fetchone()[0],
            "distinct": conn.execute("SELECT count(DISTINCT item_id) FROM items").fetchone()[0],
            "drafts": conn.execute("SELECT count(*) FROM drafts").fetchone()[0],
            "generations": conn.execute("SELECT count(*) FROM generations").fetchone()[0],
            "generated_items": conn.execute(
                "SELECT count(DISTINCT item_id) FROM generations"
            ).fetchone()[0],
            "pending": conn.execute(
                "SELECT count(*) FROM items WHERE status = 'pending'"
            ).fetchone()[0],
        }


def drafted_so_far(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM drafts").fetchone()[0])
    except sqlite3.Error:  # not created yet, or locked for a moment
        return 0


@pytest.mark.ray
@pytest.mark.slow
def test_ray_run_survives_sigkill_of_the_driver_and_the_rerun_leaves_each_row_once(
    ray_ready: None, tmp_path: Path
) -> None:
    n = 20_000
    source = write_jsonl(tmp_path / "rows.jsonl", n)
    db = tmp_path / "ray.db"
    args = [
        *CRITIC, "label", str(source), "-c", "harmlessness", "--backend", "fake",
        "--db", f"sqlite:///{db}", "--ray", "--ray-workers", "2", "--json", "-q",
    ]  # fmt: skip
    # Its own session, so the kill takes the driver and the local Ray cluster it started.
    driver = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while drafted_so_far(db) < 1000:
        assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no drafts after 10 minutes"
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    time.sleep(2)  # let the killed actors' last writes (if any) land or vanish
    before = table_counts(db)
    assert 1000 <= before["drafts"] < n, before

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=1200, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout)
    assert summary["engine"] == "ray" and summary["workers"] == 2
    assert summary["drafted"] == n and summary["pending"] == 0
    assert summary["processed"] == n - before["drafts"]
    after = table_counts(db)
    assert after == {
        "items": n, "distinct": n, "drafts": n, "generations": n, "generated_items": n,
        "pending": 0,
    }  # fmt: skip


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.slow
def test_ray_workers_draft_through_a_real_vllm_server(
    ray_ready: None, vllm_server: object, tmp_path: Path
) -> None:
    from critic.testing.vllm_server import VLLMServer, settled_metric

    assert isinstance(vllm_server, VLLMServer)
    source = write_jsonl(tmp_path / "rows.jsonl", 200)
    db = tmp_path / "ray-vllm.db"
    before = settled_metric(vllm_server.root_url)
    command = [
        *CRITIC, "label", str(source), "-c", "harmlessness", "--backend", "vllm-server",
        "--base-url", vllm_server.base_url, "--model", vllm_server.model,
        "--db", f"sqlite:///{db}", "--max-tokens", "768", "--concurrency", "16",
        "--ray", "--ray-workers", "2", "--json", "-q",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    summary = json.loads(result.stdout)
    counts = table_counts(db)
    assert summary["engine"] == "ray" and counts["items"] == 200 and counts["pending"] == 0
    assert counts["generated_items"] == 200  # every item was asked, from the actors
    sent = settled_metric(vllm_server.root_url, at_least=before + counts["generations"]) - before
    assert sent == counts["generations"] == summary["requests_this_run"]


@pytest.mark.ray
@pytest.mark.vllm
@pytest.mark.slow
def test_ray_workers_draft_with_their_own_in_process_vllm_engine(
    ray_ready: None, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # `--backend vllm`: each actor loads one engine (num_gpus=0 on a CPU-only machine, else 1);
    # the driver only names the model. About a minute here, most of it the engine's start-up.
    n = 20
    source = write_jsonl(tmp_path / "rows.jsonl", n)
    db = tmp_path / "ray-engine.db"
    command = [
        *CRITIC, "label", str(source), "-c", "harmlessness", "--backend", "vllm",
        "--model", str(tiny_model_dir), "--db", f"sqlite:///{db}", "--max-tokens", "768",
        "--ray", "--ray-workers", "1", "--json", "-q",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["engine"] == "ray" and summary["workers"] == 1
    assert summary["backend"] == "vllm" and summary["model"] == str(tiny_model_dir)
    assert summary["drafted"] == n and summary["requests_this_run"] == n
    assert table_counts(db) == {
        "items": n, "distinct": n, "drafts": n, "generations": n, "generated_items": n,
        "pending": 0,
    }  # fmt: skip
    with sqlite3.connect(db) as conn:  # the engine's token counts reached the store
        tokens = conn.execute("SELECT min(completion_tokens) FROM generations").fetchone()[0]
    assert tokens > 0


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost_or_duplicated(
    ray_ready: None, tmp_path: Path
) -> None:
    n, bad = 8_000, 8  # a malformed line every 1,000: named bad rows, not a failed job
    source = write_jsonl(tmp_path / "rows.jsonl", n, bad_every=1000)
    db = tmp_path / "ray.db"
    driver = subprocess.Popen(
        [*CRITIC, "label", str(source), "-c", "harmlessness", "--backend", "fake",
         "--db", f"sqlite:///{db}", "--ray", "--ray-workers", "2", "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while drafted_so_far(db) < 500:
            assert driver.poll() is None, driver.communicate()[1].decode()[-3000:]
            assert time.monotonic() < deadline, "no drafts after 10 minutes"
            time.sleep(0.2)
        listing = subprocess.run(
            ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
        ).stdout
        actors = [int(line.split()[0]) for line in listing.splitlines()
                  if "MapWorker" in line and "DraftWorker" in line]  # fmt: skip
        assert actors, listing
        os.kill(actors[0], signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=1200)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 1, stderr.decode()[-3000:]  # 1: some rows failed (the bad ones)
    summary = json.loads(stdout)
    assert summary["drafted"] == n - bad and summary["failures"] == {"invalid_input": bad}
    assert sorted(summary["bad_rows"]) == sorted(
        f"{source}:{line}: not valid JSON: Expecting property name enclosed in double quotes "
        "at column 2"
        for line in range(1000, n + 1, 1000)
    )
    assert table_counts(db) == {
        "items": n, "distinct": n, "drafts": n - bad, "generations": n - bad,
        "generated_items": n - bad, "pending": 0,
    }  # fmt: skip


def test_without_ray_nothing_imports_ray() -> None:
    probe = (
        "import sys, critic, critic.cli, critic.runs, critic.tasks, critic.items\n"
        "from critic.cli import run\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
