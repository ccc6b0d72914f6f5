"""Run settings: frozen, unknown keys rejected, errors that name the field."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from critic.config import BackendSpec, InputSpec, RunControl, Sampling
from critic.errors import ConfigError, UsageError
from critic.tasks.compare import CompareOptions
from critic.tasks.revise import ReviseOptions


def test_a_bad_value_names_the_field_and_the_caller_can_rename_it() -> None:
    with pytest.raises(ConfigError) as caught:
        Sampling(samples=2, temperature=0.0)
    error = caught.value
    assert isinstance(error, UsageError) and error.field == "samples"
    assert error.message.startswith("samples > 1 needs a temperature above 0")
    assert error.hint == "set temperature to 1.0"
    flags = error.renamed({"samples": "--samples", "temperature": "--temperature"})
    assert flags.message.startswith("--samples > 1 needs a --temperature above 0")
    assert flags.hint == "set --temperature to 1.0"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Sampling(max_tokens=8), "max_tokens"),
        (lambda: Sampling(top_logprobs=21), "top_logprobs"),
        (lambda: Sampling(max_reasks=-1), "max_reasks"),
        (lambda: InputSpec(limit=0), "limit"),
        (lambda: RunControl(concurrency=0), "concurrency"),
        (lambda: BackendSpec(backend="vllm"), "model"),
        (lambda: ReviseOptions(rounds=0), "rounds"),
        (lambda: CompareOptions(tie_margin=0.5), "tie_margin"),
    ],
)
def test_each_check_names_its_field(make: object, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.field == field and caught.value.message.startswith(field)


def test_settings_are_frozen_and_reject_unknown_keys() -> None:
    sampling = Sampling()
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampling.samples = 3  # type: ignore[misc]
    with pytest.raises((TypeError, ValidationError)):
        Sampling(smaples=3)  # type: ignore[call-arg]
    assert dataclasses.asdict(ReviseOptions())["sampling"]["max_tokens"] == 1024
