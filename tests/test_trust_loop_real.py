"""The trust loop through the real components: label through the vLLM CPU server, route a
calibration sample into a blind queue, pick blind in the real review app in headless Chromium,
calibrate on those labels, recalibrate with lineage, and route with the bound policy (a run it
was not calibrated on is refused)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adjudication.store import open_store as open_queues
from adjudication.web import create_app, hash_password
from critic.routing import Policy, load_policy, policy_hash, save_policy
from critic.testing.vllm_server import VLLMServer
from tests.web.conftest import PASSWORD, SECRET
from tests.web.live import serve
from tests.web.test_browser import _log_in, _open, browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.vllm, pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(900)]

N = 12


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "critic.cli", *args], capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip


def test_blind_calibration_samples_picked_in_the_browser_calibrate_and_bind(
    vllm_server: VLLMServer, browser: Any, tmp_path: Path  # noqa: F811
) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "prompt": f"Human: question {k}?",
                                         "response": f"Answer {k}."}) + "\n"
                             for k in range(N)))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'c.db'}"
    backend = ["--backend", "vllm-server", "--base-url", vllm_server.base_url, "--model",
               vllm_server.model, "--db", db, "--max-tokens", "256", "--json"]  # fmt: skip
    labelled = _cli("label", str(items), "-c", "harmlessness", *backend)
    assert labelled.returncode in (0, 1), labelled.stderr[-3000:]
    run = json.loads(labelled.stdout)["run_id"]
    assert "confidence_signal" not in json.loads(labelled.stdout)  # logprobs by default

    with open_queues(db) as queues:
        queues.create_queue("calib", blind=True)
        queues.add_user("rita", "reviewer", queues=["calib"],
                        password_hash=hash_password(PASSWORD))  # fmt: skip
    review_all = tmp_path / "review-all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.6, delta=0.2), review_all)
    routed = _cli("route", "--db", db, "--policy", str(review_all), "--run", run,
                  "--calibration-rate", "1.0", "--queue", "calib", "--json")  # fmt: skip
    assert routed.returncode == 0, routed.stderr[-3000:]
    summary = json.loads(routed.stdout)
    drafted = summary["counts"]["calibration_sample"]
    assert drafted >= N - 2 and summary["enqueued"] >= drafted

    with open_queues(db) as queues:
        labels = {t.item_id: t.draft_label for t in queues.tasks("calib")}
    with serve(create_app(db, secret_key=SECRET)) as url:
        server = type("S", (), {"url": url, "db_url": db})()
        page = _log_in(browser, server, "rita").page
        picked = 0
        while True:
            _open(page, url + "/q/calib/review")
            if page.locator("input[name=item_id]").count() == 0:
                break
            item = page.locator("input[name=item_id]").input_value()
            # Before the pick nothing of the draft shows (not even its confidence); the pick is
            # the critic's own label (so the calibration sees agreement), by its number key.
            assert page.locator("#decision").get_attribute("data-confidence") == ""
            key = "1" if labels.get(item) in (None, "harmless") else "2"
            with page.expect_navigation():
                page.keyboard.press(key)
            with page.expect_navigation():
                page.keyboard.press("a")  # confirm the pick
            picked += 1
        assert picked == len(labels)

    policy = tmp_path / "policy.yaml"
    calibrated = _cli("calibrate", "--db", db, "--run", run, "--target-agreement", "0.6",
                      "--delta", "0.2", "-o", str(policy), "--json")  # fmt: skip
    assert calibrated.returncode in (0, 1), calibrated.stderr[-3000:]
    report = json.loads(calibrated.stdout)
    assert report["labels_used"]["calibration_sample"] == picked
    assert report["labels_left_out"] == []  # blind, drawn: every label is a fair sample
    bound = load_policy(policy)
    assert bound.binding is not None and bound.binding.model == vllm_server.model

    again = tmp_path / "again.yaml"
    recalibrated = _cli("calibrate", "--db", db, "--run", run, "--recalibrate", str(policy),
                        "-o", str(again), "--json")  # fmt: skip
    assert recalibrated.returncode in (0, 1), recalibrated.stderr[-3000:]
    lineage = load_policy(again).lineage
    assert lineage is not None and lineage.previous == policy_hash(bound)

    if bound.threshold is not None:  # the tiny model's labels may all agree with the picks
        other = _cli("label", str(items), "-c", "helpfulness", *backend)
        other_run = json.loads(other.stdout)["run_id"]
        refused = _cli("route", "--db", db, "--policy", str(policy), "--run", other_run)
        assert refused.returncode == 2 and "was not calibrated on run" in refused.stderr
