"""The exports are what trainers consume: TRL's DPOTrainer and SFTTrainer train a step on the tiny
test model from critic's `trl-dpo` and `trl-sft` exports, read back with `load_from_disk`, on CPU.

A change to the export format that breaks training fails here (and in CI, where TRL is installed
by `make install`: the `trl` extra).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.test_trl import filled_store

pytestmark = [pytest.mark.trl, pytest.mark.slow]


def _model(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _common(tmp_path: Path, name: str) -> dict[str, Any]:
    return {
        "output_dir": str(tmp_path / name), "max_steps": 1, "per_device_train_batch_size": 2,
        "learning_rate": 1e-3, "use_cpu": True, "report_to": [], "save_strategy": "no",
        "logging_steps": 1, "disable_tqdm": True, "dataloader_num_workers": 0, "seed": 0,
    }  # fmt: skip


def _snapshot(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict[str, Any], model: Any) -> bool:
    return any(not before[k].equal(v) for k, v in model.state_dict().items())


def train_a_step(trainer_name: str, dataset: Any, tiny_model_dir: Path, out_dir: Path) -> None:
    """Train the tiny model for one step on `dataset` with TRL's `DPO` or `SFT` trainer, and
    assert that it was a real optimiser step with a finite loss."""
    import trl

    model, tokenizer = _model(tiny_model_dir)
    before = _snapshot(model)
    config = getattr(trl, f"{trainer_name}Config")(**_common(out_dir, "run"), max_length=256)
    trainer = getattr(trl, f"{trainer_name}Trainer")(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert math.isfinite(result.training_loss)
    assert _changed(before, model)  # a real optimiser step on the exported rows


@pytest.mark.parametrize(("fmt", "rows", "trainer_name"),
                         [("trl-dpo", 6, "DPO"), ("trl-sft", 3, "SFT")])  # fmt: skip
def test_trl_trainer_trains_a_step_on_the_export(
    trl_ready: None, tiny_model_dir: Path, tmp_path: Path, fmt: str, rows: int, trainer_name: str
) -> None:
    import datasets

    from critic.exports import export_db

    db, _, _ = filled_store(tmp_path)
    out = tmp_path / fmt
    assert export_db(db, out, fmt, all_runs=True).count == rows
    train_a_step(trainer_name, datasets.load_from_disk(str(out)), tiny_model_dir, tmp_path)
