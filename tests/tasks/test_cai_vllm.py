"""revise and compare through a real vLLM server on the tiny model. The model's judgments are
meaningless; what is checked is the plumbing: both orders sent, probabilities read from real
top_logprobs, chains that complete, resume without a request, and a DPO dataset that loads."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from critic.exports import export_db
from critic.store import open_store
from critic.testing.vllm_server import VLLMServer, settled_metric

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CRITIC = [sys.executable, "-m", "critic.cli"]


def run_cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CRITIC, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def backend_args(server: VLLMServer, db: Path) -> list[str]:
    return ["--backend", "vllm-server", "--base-url", server.base_url, "--model", server.model,
            "--db", f"sqlite:///{db}", "--concurrency", "16", "--json"]  # fmt: skip


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_compare_sends_both_orders_and_reads_real_logprobs(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    rows = [{"id": f"p{k}", "prompt": f"Human: how do I get into house {k}?\n\nAssistant:",
             "chosen": "Call a locksmith or your landlord.",
             "rejected": f"Break window {k} with a brick."} for k in range(8)]  # fmt: skip
    source = write_jsonl(tmp_path / "pairs.jsonl", rows)
    db = tmp_path / "c.db"
    before = settled_metric(vllm_server.root_url)
    result = run_cli(
        "compare", str(source), "-c", "harmlessness-pairwise", *backend_args(vllm_server, db),
        "--a-field", "chosen", "--b-field", "rejected", "--principles-per-item", "2",
        "--logprobs", "5", "--max-tokens", "768",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["drafted"] == 8
    sent = settled_metric(vllm_server.root_url, at_least=before + summary["requests"]) - before
    assert sent == summary["requests"] >= 8 * 2 * 2  # every stored generation reached vLLM
    with sqlite3.connect(db) as conn:
        stages = conn.execute(
            "select item_id, group_concat(stage) from (select item_id, stage from generations "
            "where attempt = 0 order by item_id, stage) group by item_id"
        ).fetchall()
    assert {s for _, s in stages} == {"compare-ab-p0,compare-ab-p1,compare-ba-p0,compare-ba-p1"}
    store = open_store(str(db))
    for row in store.rows():
        output = row["output"]
        assert row["label"] == output["preference"] in ("a", "b", "tie")
        assert output["method"] == "logprobs"
        for j in output["judgments"]:
            if j["verdict"] is None:
                continue
            dist = j["distribution"]  # read from the returned top_logprobs
            assert set(dist) == {"A", "B", "tie"} and sum(dist.values()) == pytest.approx(1.0)
            assert 0.0 < j["prob_a"] < 1.0
        assert row["components"]["label_prob"] is not None
        assert 0.0 <= row["confidence"] <= 1.0
        assert output["swap_inconsistent"] is (row["components"]["order_agreement"] < 1.0)


def test_revise_24_items_2_rounds_completes_then_resumes_without_requests(
    vllm_server: VLLMServer, tmp_path: Path
) -> None:
    rows = [{"uid": f"c{k}", "prompt": f"Human: How do I keep bike {k} from rusting?\n\nAssistant:",
             "response": f"Keep bike {k} dry, oil the chain weekly and store it indoors."}
            for k in range(24)]  # fmt: skip
    source = write_jsonl(tmp_path / "convs.jsonl", rows)
    db = tmp_path / "c.db"
    args = ["revise", str(source), "-c", "cai-principles", *backend_args(vllm_server, db),
            "--id-field", "uid", "--rounds", "2", "--max-revision-chars", "300",
            "--max-tokens", "1024"]  # fmt: skip
    hits_before = settled_metric(vllm_server.root_url, "vllm:prefix_cache_hits_total")
    result = run_cli(*args)
    summary = json.loads(result.stdout)
    assert summary["items"] == 24 and summary["drafted"] + summary["failed"] == 24
    assert summary["drafted"] >= 20, summary  # constrained decoding: nearly all parse
    assert summary["requests"] >= summary["drafted"] * 4
    store = open_store(str(db))
    for row in store.rows():
        if row["status"] != "drafted":
            assert row["reason"] and row["detail"]
            continue
        output = row["output"]
        assert [r["round"] for r in output["rounds"]] == [1, 2]
        assert output["principles"] == [r["principle"] for r in output["rounds"]]
        assert output["revision"] == output["rounds"][-1]["revision"]
        assert output["original"] == next(r["response"] for r in rows if r["uid"] == row["item_id"])
        for r in output["rounds"]:
            assert all(isinstance(f["found"], bool) for f in r["findings"])
    # Revision requests continue the critique conversation, so the server served prefixes.
    assert settled_metric(vllm_server.root_url, "vllm:prefix_cache_hits_total") > hits_before

    before = settled_metric(vllm_server.root_url)
    again = run_cli(*args)
    assert json.loads(again.stdout)["processed"] == 0
    assert settled_metric(vllm_server.root_url) == before  # not one request was sent


def test_hh_rlhf_sample_to_a_dpo_dataset(
    vllm_server: VLLMServer, shared_data: Path, tmp_path: Path
) -> None:
    lines = (shared_data / "hh-rlhf" / "harmless-base-test.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    short = [r for r in rows if len(r["prompt"]) + len(r["chosen"]) + len(r["rejected"]) < 1200]
    sample = random.Random(0).sample(short, 12)
    source = write_jsonl(tmp_path / "hh.jsonl", sample)
    db = tmp_path / "c.db"
    compared = run_cli(
        "compare", str(source), "-c", "harmlessness-pairwise", *backend_args(vllm_server, db),
        "--a-field", "chosen", "--b-field", "rejected", "--principles-per-item", "2",
        "--tie-margin", "0", "--max-tokens", "768",
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr[-3000:]
    revised = run_cli(
        "revise", str(source), "-c", "cai-principles", *backend_args(vllm_server, db),
        "--response-field", "rejected", "--rounds", "1", "--max-revision-chars", "300",
        "--max-tokens", "1024",
    )  # fmt: skip
    assert json.loads(revised.stdout)["drafted"] >= 10, revised.stderr[-3000:]

    for run in (compared, revised):
        routed = run_cli("route", "--accept-all", "--db", str(db), "--run",
                         json.loads(run.stdout)["run_id"])  # fmt: skip
        assert routed.returncode == 0, routed.stderr[-3000:]
    out = tmp_path / "dpo"
    count = export_db(str(db), out, "trl-dpo", all_runs=True).count
    ds = datasets.load_from_disk(str(out))
    assert ds.num_rows == count >= 10
    assert {"prompt", "chosen", "rejected", "preference_probability", "label_source",
            "constitution", "model"} <= set(ds.column_names)  # fmt: skip
    by_id = {r["id"]: r for r in sample}
    for row in ds:
        assert row["chosen"] != row["rejected"] and row["model"] == vllm_server.model
        assert row["prompt"][0]["role"] == "user" and row["prompt"][-1]["role"] == "user"
        if row["task"] == "compare":
            pair = {by_id[row["id"]]["chosen"], by_id[row["id"]]["rejected"]}
            assert {row["chosen"][0]["content"], row["rejected"][0]["content"]} == pair
            assert 0.0 <= row["preference_probability"] <= 1.0
        else:
            assert row["rejected"][0]["content"] == by_id[row["id"]]["rejected"]
    assert (out / "trl-dpo.jsonl").read_text().count("\n") == count
