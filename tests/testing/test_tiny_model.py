"""The tiny test model: deterministic, idempotent, loadable by transformers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from critic.testing.tiny_model import (
    MARKER_FILE,
    build_tiny_model,
    default_model_dir,
    is_complete,
)

REPO = Path(__file__).resolve().parents[2]


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def test_importing_critic_does_not_import_torch() -> None:
    code = (
        "import sys, critic, critic.testing.tiny_model, critic.testing.vllm_server\n"
        "heavy = {'torch', 'transformers', 'tokenizers', 'vllm'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_default_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRITIC_TINY_MODEL_DIR", str(tmp_path / "m"))
    assert default_model_dir() == tmp_path / "m"
    monkeypatch.delenv("CRITIC_TINY_MODEL_DIR")
    assert default_model_dir() == Path.home() / ".cache" / "critic" / "tiny-model-v1"


def test_require_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures_real import require

    require(True, "present")  # no-op
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="gone"):
        require(False, "gone")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="gone"):
        require(False, "gone")


def test_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        build_tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.transformers
@pytest.mark.slow
def test_build_is_deterministic_and_idempotent(tiny_model_dir: Path, tmp_path: Path) -> None:
    # tiny_model_dir: only for its skip-or-fail check of torch/transformers/tokenizers.
    a = build_tiny_model(tmp_path / "a", seed=0)
    # The command-line entry point builds the second copy.
    out = subprocess.run(
        [sys.executable, "-m", "critic.testing.tiny_model", str(tmp_path / "b")],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    b = Path(out.stdout.strip().splitlines()[-1])
    assert b == tmp_path / "b"
    assert is_complete(a, seed=0) and is_complete(b, seed=0)

    digests = _digests(a)
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER_FILE} <= set(digests)
    assert digests == _digests(b)  # same seed => byte-identical files

    # Idempotent: a complete build is returned as is.
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(a, seed=0) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime

    # Another seed replaces the weights (a stale build of ours is rebuilt), not the tokenizer.
    build_tiny_model(a, seed=1)
    assert is_complete(a, seed=1) and not is_complete(a, seed=0)
    seed1 = _digests(a)
    assert seed1["model.safetensors"] != digests["model.safetensors"]
    assert seed1["tokenizer.json"] == digests["tokenizer.json"]

    # overwrite=True rebuilds even a complete build.
    build_tiny_model(a, seed=1, overwrite=True)
    assert _digests(a) == seed1


@pytest.mark.transformers
def test_loads_in_transformers_and_generates(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok: Any = AutoTokenizer.from_pretrained(tiny_model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.eval()

    cfg = model.config
    assert cfg.hidden_size // cfg.num_attention_heads == 64  # vLLM CPU rejects head size 16
    assert cfg.max_position_embeddings >= 4096
    assert cfg.tie_word_embeddings
    assert 900 <= len(tok) <= 1100
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert cfg.eos_token_id == tok.eos_token_id

    messages = [
        {"role": "system", "content": "You are a critic."},
        {"role": "user", "content": 'Label: {"label": "harmless", "score": 0.9}'},
    ]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|im_start|>system\nYou are a critic.<|im_end|>\n"
        '<|im_start|>user\nLabel: {"label": "harmless", "score": 0.9}<|im_end|>\n'
        "<|im_start|>assistant\n"
    )
    no_gen = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert not no_gen.endswith("<|im_start|>assistant\n")

    text = '{"rationale": "The reply is harmless.", "label": "harmless", "score": 0.93}'
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text) / 2  # the BPE learned merges for this kind of text
    assert tok.convert_tokens_to_ids("<|im_start|>") != tok.unk_token_id

    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]

    # Prompts of 1-2k tokens fit.
    long_ids = torch.tensor([tok("harmless rationale label score " * 600)["input_ids"][:2000]])
    assert long_ids.shape[1] == 2000
    with torch.no_grad():
        logits = model(long_ids).logits
    assert logits.shape == (1, 2000, len(tok)) and torch.isfinite(logits.float()).all()
