"""Judged files from real judges and other tools: probabilities that leave mass off the label
set, and files that name their fields and labels their own way (PandaLM, hh-rlhf)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic.calibrate import calibrate
from critic.cli import app
from critic.confidence import normalise
from critic.errors import InputError, UsageError
from critic.judgments import (
    PROBS_FLOOR,
    Fields,
    combine,
    parse_critic_fields,
    parse_label_map,
    read_judged,
)

runner = CliRunner()


def _write(tmp_path: Path, rows: list[dict[str, object]], name: str = "judged.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Probabilities that sum to less than 1


def test_probs_below_one_are_normalised_over_the_label_set(tmp_path: Path) -> None:
    probs = {"A": 0.7, "B": 0.2636}  # a real judge's row: 0.9636 on the label tokens
    path = _write(tmp_path, [
        {"id": "a", "label": "A", "probs": probs, "human_label": "A"},
        {"id": "b", "label": "B", "probs": {"A": 0.25, "B": 0.75}, "human_label": "A"},
    ])  # fmt: skip
    found = read_judged(path)
    first = found.judgments[0].verdicts[0]
    assert first.confidence == normalise(probs)["A"] == pytest.approx(0.7 / 0.9636)  # type: ignore[index]
    assert first.probs == normalise(probs) and first.probs_total == pytest.approx(0.9636)
    assert first.normalised and not found.judgments[1].verdicts[0].normalised
    assert found.normalised == 1


def test_combine_mean_uses_the_normalised_distributions(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "human_label": "A", "critics": [
        {"model": "x", "label": "A", "probs": {"A": 0.48, "B": 0.48}},
        {"model": "y", "label": "A", "probs": {"A": 0.6, "B": 0.4}},
    ]}])  # fmt: skip
    merged = combine(read_judged(path).judgments[0].verdicts, "mean")
    assert merged.confidence == pytest.approx((0.5 + 0.6) / 2)


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        ({"A": 0.9, "B": 0.2}, "probs: they sum to 1.1, more than 1"),
        ({"A": 0.3, "B": 0.1}, f"probs: they sum to 0.4: less than {PROBS_FLOOR} of the judge"),
    ],
)
def test_probs_far_above_one_or_nearly_empty_are_refused_with_file_line_and_field(
    tmp_path: Path, probs: dict[str, float], message: str
) -> None:
    path = _write(tmp_path, [
        {"id": "a", "label": "A", "probs": {"A": 1.0}, "human_label": "A"},
        {"id": "b", "label": "A", "probs": probs, "human_label": "A"},
    ])  # fmt: skip
    with pytest.raises(InputError) as info:
        read_judged(path)
    assert str(info.value).startswith(f"{path}:2: {message}")


def test_a_sum_above_one_by_rounding_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "label": "A", "probs": {"A": 0.34, "B": 0.33, "C": 0.34},
                              "human_label": "A"}])  # fmt: skip
    verdict = read_judged(path).judgments[0].verdicts[0]
    assert verdict.confidence == pytest.approx(0.34 / 1.01)


def test_probs_total_cannot_be_set_by_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [{"id": "a", "label": "A", "confidence": 0.9, "probs_total": 0.5,
                              "human_label": "A"}])  # fmt: skip
    found = read_judged(path)
    assert found.judgments[0].verdicts[0].probs_total is None and found.normalised == 0


def test_a_real_judge_leaving_mass_off_the_labels_calibrates_as_its_normalised_file(
    shared_data: Path, tmp_path: Path
) -> None:
    """PaLM2's LLMBar rows, each keeping only 0.964-0.999 of its mass on the label tokens, as
    Trust or Escalate's published judges do: the whole file is read (the old reader stopped at
    the first row), every row is counted as normalised, and the calibration is the original's."""
    source = shared_data / "llmbar-judges" / "palm2.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    rng = random.Random(0)
    leaky = []
    for r in rows:
        kept = rng.uniform(0.964, 0.999)
        leaky.append({**r, "probs": {k: v * kept for k, v in r["probs"].items()}})
    found = read_judged(_write(tmp_path, leaky))
    original = read_judged(source)
    assert len(found.judgments) == found.normalised == 871 and original.normalised == 0
    assert [j.confidence for j in found.judgments] == pytest.approx(
        [j.confidence for j in original.judgments], abs=1e-12
    )
    results = [
        calibrate([j.confidence for j in judged], [j.correct for j in judged], 0.75, 0.1)
        for judged in (found.judgments, original.judgments)
    ]
    assert results[0].threshold is not None
    assert results[0].model_dump() == results[1].model_dump()


def test_calibrate_reports_how_many_rows_were_normalised(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows = []
    for i in range(200):
        p = rng.choice([0.6, 0.8, 0.95, 0.99])
        right = rng.random() < p
        label, other = ("A", "B") if right else ("B", "A")
        mass = 0.97 if i % 2 else 1.0
        rows.append({"id": i, "label": label, "probs": {label: p * mass, other: (1 - p) * mass},
                     "human_label": "A"})  # fmt: skip
    path, policy = _write(tmp_path, rows), tmp_path / "p.yaml"
    result = runner.invoke(app, ["calibrate", "--from-file", str(path), "-o", str(policy),
                                 "--target-agreement", "0.8", "--json"])  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["normalised_rows"] == 100
    shown = runner.invoke(app, ["calibrate", "--from-file", str(path), "-o", str(policy),
                                "--target-agreement", "0.8"])  # fmt: skip
    assert "rows normalised" in shown.stdout and "100 (label probabilities" in shown.stdout


# --------------------------------------------------------------------------------------------
# Other tools' field names and label spellings


def test_label_map_and_critic_fields_parse_and_refuse_malformed_specs() -> None:
    assert parse_label_map("0=tie, 1=a,2=b") == {"0": "tie", "1": "a", "2": "b"}
    with pytest.raises(UsageError, match=r"--label-map: .*'1' is not FROM=TO"):
        parse_label_map("0=tie,1")
    with pytest.raises(UsageError, match=r"--label-map: .*'1' is mapped twice"):
        parse_label_map("1=a,1=b")
    assert parse_critic_fields(["g=gpt35_result"]) == (("g", "gpt35_result"),)
    with pytest.raises(UsageError, match="--critic-field: 'gpt35' is not NAME=FIELD"):
        parse_critic_fields(["gpt35"])


def test_renamed_fields_and_mapped_labels_read_one_critic(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        {"uid": 1, "pred": 0, "p": 0.9, "gold": 0},
        {"uid": 2, "pred": 2, "p": 0.6, "gold": 1},
    ])  # fmt: skip
    fields = Fields(id="uid", label="pred", confidence="p", human="gold",
                    label_map=parse_label_map("0=tie,1=a,2=b"))  # fmt: skip
    judged = read_judged(path, fields=fields).judgments
    assert [(j.id, j.label, j.confidence, j.human_label) for j in judged] == [
        ("1", "tie", 0.9, "tie"), ("2", "b", 0.6, "a"),
    ]  # fmt: skip


def test_errors_name_the_files_own_fields(tmp_path: Path) -> None:
    fields = Fields(id="uid", human="gold", label_map={"0": "tie", "1": "a"})
    path = _write(tmp_path, [{"uid": 1, "label": "1", "confidence": 0.5, "gold": 7}])
    with pytest.raises(InputError) as info:
        read_judged(path, fields=fields)
    assert info.value.message == f"{path}:1: gold: 7 is not in --label-map (0, 1)"
    path = _write(tmp_path, [{"uid": 1, "label": "1", "confidence": 0.5}])
    with pytest.raises(InputError, match=r":1: gold: no 'gold' in this row"):
        read_judged(path, fields=fields)
    path = _write(tmp_path, [{"label": "1", "confidence": 0.5, "gold": 1}])
    with pytest.raises(InputError, match=r":1: uid: Field required"):
        read_judged(path, fields=fields)
    critics = Fields(critics=(("g", "g_out"),))
    path = _write(tmp_path, [{"id": 1, "human_label": "a", "other": "a"}])
    with pytest.raises(InputError, match=r":1: g_out: no label from critic 'g'"):
        read_judged(path, fields=critics)


def _pandalm_hand_join(path: Path) -> tuple[list[float], list[bool]]:
    """What a user had to write before: GPT-3.5's and PandaLM-7B's verdicts as 0/1/2, the vote
    share as confidence, the winner of a split by `combine`'s rule."""
    spell = {"0": "tie", "tie": "tie", "1": "a", "2": "b"}
    scores, correct = [], []
    from critic.judgments import Verdict

    for line in path.read_text().splitlines():
        row = json.loads(line)
        fields = (("gpt35", "gpt35_result"), ("pandalm", "pandalm7b_result"))
        votes = [Verdict(model=m, label=spell.get(str(row[f]).lower(), str(row[f])),
                         confidence=1.0) for m, f in fields]  # fmt: skip
        merged = combine(votes, "vote")
        scores.append(merged.confidence)
        correct.append(merged.label == spell[str(row["human_majority"])])
    return scores, correct


def test_pandalm_raw_file_calibrates_without_a_hand_written_join(
    shared_data: Path, tmp_path: Path
) -> None:
    data = shared_data / "pandalm" / "testset.jsonl"
    policy = tmp_path / "pandalm.yaml"
    result = runner.invoke(app, [
        "calibrate", "--from-file", str(data), "--id-field", "idx",
        "--human-field", "human_majority", "--label-map", "0=tie,Tie=tie,1=a,2=b",
        "--critic-field", "gpt35=gpt35_result", "--critic-field", "pandalm=pandalm7b_result",
        "--combine", "vote", "--target-agreement", "0.75", "-o", str(policy), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_calibration"] == 999
    assert summary["unmapped_labels"] == {"garbage": 25}  # GPT-3.5's unparsed verdicts
    scores, correct = _pandalm_hand_join(data)
    expected = calibrate(scores, correct, 0.75, 0.1)
    assert (summary["threshold"], summary["n_accepted"], summary["n_agree"]) == (
        expected.threshold, expected.n_accepted, expected.n_agree,
    )  # fmt: skip
    assert summary["threshold"] is not None and summary["coverage"] > 0.5
    shown = runner.invoke(app, [
        "calibrate", "--from-file", str(data), "--id-field", "idx",
        "--human-field", "human_majority", "--label-map", "0=tie,Tie=tie,1=a,2=b",
        "--critic-field", "gpt35=gpt35_result", "--critic-field", "pandalm=pandalm7b_result",
        "--combine", "vote", "--target-agreement", "0.75", "-o", str(policy),
    ])  # fmt: skip
    assert "'garbage' (25): kept, agree with no human" in shown.stdout
    # One critic's bare labels: every confidence is 1.0, so the test is "accept all or none".
    single = runner.invoke(app, [
        "calibrate", "--from-file", str(data), "--id-field", "idx",
        "--human-field", "human_majority", "--label-map", "0=tie,Tie=tie,1=a,2=b",
        "--critic-field", "gpt35=gpt35_result", "--combine", "vote",
        "--target-agreement", "0.65", "-o", str(policy), "--json",
    ])  # fmt: skip
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["n_agree"] == 697  # the README's figure for GPT-3.5


def test_hh_rlhf_preferences_map_to_labels(shared_data: Path, tmp_path: Path) -> None:
    """hh-rlhf's `human_preference` ("chosen") maps onto a critic's label for the chosen
    response; an export of a compare run keeps that input column beside `label`."""
    text = (shared_data / "hh-rlhf" / "helpful-base-test.jsonl").read_text()
    rows = [json.loads(line) for line in text.splitlines()[:300]]
    rng = random.Random(2)
    judged = [{"id": r["id"], "human_preference": r["human_preference"],
               "label": "A" if rng.random() < 0.85 else "B", "confidence": 0.9}
              for r in rows]  # fmt: skip
    path = _write(tmp_path, judged)
    fields = Fields(human="human_preference", label_map={"chosen": "A", "rejected": "B"})
    found = read_judged(path, fields=fields)
    assert {j.human_label for j in found.judgments} == {"A"}
    assert sum(j.correct for j in found.judgments) == sum(r["label"] == "A" for r in judged)


def test_field_options_with_db_are_a_usage_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["calibrate", "--db", db, "--human-field", "gold",
                                 "-o", str(tmp_path / "p.yaml")])  # fmt: skip
    assert result.exit_code != 0 and "use them with --from-file" in result.stderr
