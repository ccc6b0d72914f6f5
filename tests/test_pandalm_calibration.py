"""Calibration on real judgments: GPT-3.5 and PandaLM-7B as two critics, humans as truth.

PandaLM's test set has, for 999 response pairs, the majority of three human annotators and the
verdicts of GPT-3.5 and PandaLM-7B (0 tie, 1, 2). The two models are treated as two critics;
confidence comes from their agreement. Calibrate on one seeded half, check on the other.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from critic.calibrate import binomial_upper_bound, calibrate
from critic.confidence import ConfidenceComponents, combine, critic_agreement
from critic.routing import Policy, RouteInput, route, route_counts

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pandalm" / "testset.jsonl"
TARGET, DELTA = 0.75, 0.1

pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"PandaLM test set not found at {DATA}")


def _verdict(value: object) -> str | None:
    """'1' / 2 / 'Tie' as '1' / '2' / '0'; anything else is output that failed to parse."""
    text = str(value).strip().lower()
    return {"0": "0", "tie": "0", "1": "1", "2": "2"}.get(text)


def _items() -> list[tuple[str, RouteInput, str]]:
    """(id, what routing sees, the human label) for every row."""
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        votes = [_verdict(row["gpt35_result"]), _verdict(row["pandalm7b_result"])]
        label, share = critic_agreement(votes)  # GPT-3.5 first: its verdict wins a split
        confidence = combine(ConfidenceComponents(critic_agreement=share))
        item = RouteInput(
            id=str(row["idx"]),
            label=label,
            confidence=confidence,
            critics_disagree=share < 1.0,
        )
        out.append((item.id, item, str(row["human_majority"])))
    return out


def test_calibrated_policy_meets_its_target_on_held_out_items() -> None:
    items = _items()
    random.Random(0).shuffle(items)
    half = len(items) // 2
    calib, held_out = items[:half], items[half:]

    result = calibrate(
        [i.confidence or 0.0 for _, i, _ in calib],
        [i.label == human for _, i, human in calib],
        TARGET,
        DELTA,
    )
    assert result.threshold is not None, result.guarantee
    assert result.lower_bound is not None and result.lower_bound >= TARGET
    assert result.coverage > 0.5

    policy = Policy.from_calibration(result)
    routes = route([i for _, i, _ in held_out], policy)
    human = {item_id: label for item_id, _, label in held_out}
    shipped = {item_id: i.label for item_id, i, _ in held_out}
    accepted = [r.id for r in routes if r.decision == "accept"]
    agree = sum(shipped[i] == human[i] for i in accepted)
    overall = sum(shipped[i] == human[i] for i in human) / len(human)

    counts = route_counts(routes)
    assert counts["confident"] == len(accepted) > 0.5 * len(held_out)
    assert counts["critics_disagree"] > 0
    # Within sampling error: the target lies inside a 99% one-sided bound of held-out agreement.
    assert binomial_upper_bound(agree, len(accepted), 0.01) >= TARGET
    assert agree / len(accepted) > overall
