"""A tiny critic *trained* on a synthetic labelling task, so its confidence means something.

The random model of :mod:`critic.testing.tiny_model` is enough for pipeline tests, but its
label-token probabilities are noise. This module trains a model of the same shape (its tokenizer,
chat template and save format are reused from ``tiny_model``) for a few minutes on CPU, with a
fixed seed, on a task whose truth is known, so that end-to-end tests can check that higher
confidence means higher accuracy and that a calibrated routing policy meets its target.

The synthetic task (constitution ``synthetic-sentiment``, labels ``harmless`` / ``harmful``):

* Each item's truth ``y`` is drawn first, harmless or harmful with equal chance. Its reply then
  holds 5-9 *content words* among 0-2 filler words: harm words (``weapon``, ``toxic``, ...) or calm
  words (``recipe``, ``medicine``, ...). In a *clear* item (half of them) every content word comes
  from the truth's vocabulary; in a *mixed* item each comes from it with probability
  ``MIXED_Q`` = 0.6 and from the other vocabulary otherwise. So some replies settle the truth and
  others only lean towards it, and an even split says nothing at all.
* Because the generating process is known, so is the Bayes posterior ``P(harmful | reply)`` of
  every item (:func:`posterior_harmful`): the best any critic can do. Its accuracy against the
  truth is 1.0 on clear items, about 0.71 on mixed ones, 0.86 overall (0.998 on the more
  confident half, 0.72 on the other).
* Training labels are the truth flipped with probability ``NOISE`` = 0.1 (annotator noise), so
  the model cannot simply memorise a rule: the best it can learn is a probability that is high
  where the evidence is clear (about 0.9: the noise caps it) and near 0.5 where it is not.

Training examples (after a short warm-up curriculum, see `_train`) are the real prompt critic
sends (``critic.render.render_label`` with the
shipped templates and the ``synthetic-sentiment`` constitution, through the tokenizer's chat
template with the generation prompt) followed by the full answer in critic's JSON format, compact
as xgrammar writes it with ``disable_any_whitespace``, then ``<|im_end|>``::

    {"rationale":"See S1 and S2.","principles":["S1","S2"],"label":"harmful"}

The rationale and principles are the same for every item, so the decision is made at the label
token and its probability is the model's confidence (``harmless`` and ``harmful`` are single
tokens). The loss covers every answer token, the label token weighted ``LABEL_WEIGHT`` times.
Every example shares the system prompt, so each step runs the shared token prefix once, repeats
its key/value cache over the batch and runs only the per-item suffixes: the same gradients as
full sequences at a fraction of the cost (a test checks the logits match).

The model: Llama, hidden 128, 2 layers, 2 heads of size 64 (vLLM's CPU attention needs 64),
tied embeddings, 4096 positions, saved in bfloat16 (~1.3 MB). Training runs ``STEPS`` steps of
``BATCH`` fresh items with AdamW on one CPU thread (one thread: reproducible, and no slower on a
shared 2-core machine), the first ``CURRICULUM_STEPS`` of them a warm-up curriculum (see
`_train`); about 2 minutes of CPU time. The same seed on the same machine gives the same
weights. The marker file records the recipe, the final training loss and a held-out evaluation
done in-process (accuracy, Bayes accuracy, accuracy by confidence half).

``torch``, ``transformers`` and ``tokenizers`` are imported lazily inside functions.

Command line: ``python -m critic.testing.trained_model [DIR] [--seed N] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from critic.testing.tiny_model import (
    DTYPE,
    MAX_POSITIONS,
    build_atomically,
    train_tokenizer,
)

if TYPE_CHECKING:
    from critic.constitution import Constitution
    from critic.render import Templates

__all__ = [
    "ANSWER_PRINCIPLES",
    "CALM_WORDS",
    "CONSTITUTION",
    "HARM_WORDS",
    "LABELS",
    "MARKER_FILE",
    "RATIONALE",
    "RECIPE_VERSION",
    "SyntheticItem",
    "answer_text",
    "build_info",
    "build_trained_model",
    "default_trained_dir",
    "is_complete",
    "main",
    "posterior_harmful",
    "prompt_text",
    "synthetic_items",
]

#: Bump when anything in the recipe changes: existing caches are then rebuilt.
RECIPE_VERSION = 1
#: Written last; its presence (with the right recipe version and seed) marks a complete build.
MARKER_FILE = "critic-trained-model.json"

#: The shipped constitution of the synthetic task (constitutions/synthetic-sentiment.yaml).
CONSTITUTION = "synthetic-sentiment"
LABELS = ("harmless", "harmful")
#: Content words; each is one token of the tiny-model tokenizer (with its leading space).
HARM_WORDS = ("weapon", "toxic", "violent", "illegal", "dangerous", "unsafe")
CALM_WORDS = ("recipe", "medicine", "safe", "benign", "helpful", "honest")
FILLER_WORDS = ("people", "world", "day", "work", "time", "life", "year", "way", "state", "man")
OPENERS = ("Sure, the", "Well, the", "Okay, the", "I think the", "So the", "Here the")
PROMPTS = (
    "Human: Tell me about your day.",
    "Human: What happened at work?",
    "Human: Write one sentence about it.",
    "Human: Describe what you saw.",
)
#: Same for every item, so the label token carries the decision.
RATIONALE = "See S1 and S2."
ANSWER_PRINCIPLES = ("S1", "S2")

CLEAR_SHARE = 0.5  # share of items whose content words all come from the truth's vocabulary
MIXED_Q = 0.6  # in a mixed item, the chance each content word comes from the truth's vocabulary
MIN_CONTENT, MAX_CONTENT = 5, 9
NOISE = 0.1  # chance a training label is flipped

HIDDEN_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 2  # head size 64: vLLM's CPU attention rejects 16
INTERMEDIATE_SIZE = 512
STEPS = 300
#: The first steps are a curriculum (see `_train`): clear items, true labels, no system message.
CURRICULUM_STEPS = 120
BATCH = 32
LEARNING_RATE = 3e-3
WARMUP_STEPS = 30
LABEL_WEIGHT = 5.0
EVAL_ITEMS = 400


def default_trained_dir() -> Path:
    """Where tests cache the trained model: ``$CRITIC_TRAINED_MODEL_DIR`` or
    ``~/.cache/critic/trained-critic-v1``."""
    env = os.environ.get("CRITIC_TRAINED_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "critic" / f"trained-critic-v{RECIPE_VERSION}"


# --------------------------------------------------------------------------------------------
# The synthetic task


@dataclass(frozen=True)
class SyntheticItem:
    """One item of the synthetic task with everything known about it.

    Attributes:
        id: stable id (``syn-{split}-{seed}-{index}``).
        prompt / response: the conversation critic judges.
        truth: the label the item was generated from.
        noisy_label: the truth flipped with probability ``NOISE`` (what an annotator wrote; the
            training target).
        p_harmful: the Bayes posterior P(truth = harmful | reply), from the generating process.
        harm_words / calm_words: how many content words of each kind the reply holds.
        clear: whether the item was generated as a clear one.
    """

    id: str
    prompt: str
    response: str
    truth: str
    noisy_label: str
    p_harmful: float
    harm_words: int
    calm_words: int
    clear: bool

    @property
    def bayes_label(self) -> str:
        """The label the Bayes posterior prefers (harmless on a tie)."""
        return "harmful" if self.p_harmful > 0.5 else "harmless"

    @property
    def bayes_confidence(self) -> float:
        return max(self.p_harmful, 1.0 - self.p_harmful)

    def row(self) -> dict[str, str]:
        """The input row critic reads (JSONL): id, prompt and response only."""
        return {"id": self.id, "prompt": self.prompt, "response": self.response}


def posterior_harmful(harm: int, calm: int) -> float:
    """P(truth = harmful | a reply with `harm` harm words and `calm` calm words).

    Both vocabularies have the same size and words are drawn uniformly within one, so the
    likelihood of a reply given the truth depends only on the two counts.
    """
    like_harmful = (
        CLEAR_SHARE * (calm == 0) + (1 - CLEAR_SHARE) * MIXED_Q**harm * (1 - MIXED_Q) ** calm
    )
    like_harmless = (
        CLEAR_SHARE * (harm == 0) + (1 - CLEAR_SHARE) * MIXED_Q**calm * (1 - MIXED_Q) ** harm
    )
    return like_harmful / (like_harmful + like_harmless)


def _draw(rng: random.Random, item_id: str, *, clean: bool = False) -> SyntheticItem:
    """One item; `clean` draws only clear items with noise-free labels (warm-up curriculum)."""
    truth = rng.choice(LABELS)
    clear = clean or rng.random() < CLEAR_SHARE
    n_content = rng.randint(MIN_CONTENT, MAX_CONTENT)
    own, other = (HARM_WORDS, CALM_WORDS) if truth == "harmful" else (CALM_WORDS, HARM_WORDS)
    content: list[str] = []
    harm = 0
    for _ in range(n_content):
        vocab = own if clear or rng.random() < MIXED_Q else other
        content.append(rng.choice(vocab))
        harm += vocab is HARM_WORDS
    words = content + [rng.choice(FILLER_WORDS) for _ in range(rng.randint(0, 2))]
    rng.shuffle(words)
    response = f"{rng.choice(OPENERS)} {' '.join(words)}."
    noisy = truth if clean or rng.random() >= NOISE else LABELS[1 - LABELS.index(truth)]
    return SyntheticItem(
        id=item_id,
        prompt=rng.choice(PROMPTS),
        response=response,
        truth=truth,
        noisy_label=noisy,
        p_harmful=posterior_harmful(harm, n_content - harm),
        harm_words=harm,
        calm_words=n_content - harm,
        clear=clear,
    )


def _stream(split: str, seed: int, *, clean: bool = False) -> Iterator[SyntheticItem]:
    rng = random.Random(f"critic-synthetic:{split}:{seed}")
    index = 0
    while True:
        yield _draw(rng, f"syn-{split}-{seed}-{index}", clean=clean)
        index += 1


def synthetic_items(n: int, *, seed: int = 0, split: str = "test") -> list[SyntheticItem]:
    """`n` items of the synthetic task, deterministic in (`split`, `seed`).

    The model trains on split ``"train"`` of its build seed and evaluates itself on ``"eval"``;
    the default ``"test"`` split is for callers (tests, the demo), and different splits or seeds
    give independent items.
    """
    stream = _stream(split, seed)
    return [next(stream) for _ in range(n)]


def answer_text(label: str) -> str:
    """The full answer for `label`, compact JSON exactly as constrained decoding writes it."""
    answer = {"rationale": RATIONALE, "principles": list(ANSWER_PRINCIPLES), "label": label}
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))


@functools.cache
def _label_context() -> tuple[Templates, Constitution]:
    """The shipped templates and the synthetic constitution, loaded once."""
    from critic.constitution import load_constitution
    from critic.render import Templates

    return Templates.load(), load_constitution(CONSTITUTION)


def prompt_text(tokenizer: Any, item: SyntheticItem) -> str:
    """The prompt critic sends for `item` (system + user message rendered by critic with the
    shipped templates), through the tokenizer's chat template with the generation prompt: what
    vLLM feeds the model."""
    from critic.items import Item
    from critic.render import render_label

    templates, constitution = _label_context()
    messages = render_label(templates, constitution, Item(item.id, item.row(), "synthetic"))
    text: str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text


# --------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class _Example:
    prompt_ids: list[int]
    answer_ids: list[int]  # the answer's tokens and the end-of-turn token
    label_index: int  # position of the label token within answer_ids


def _example(
    tokenizer: Any, item: SyntheticItem, label: str, eos_id: int, *, curriculum: bool = False
) -> _Example:
    prompt = prompt_text(tokenizer, item)
    if curriculum:  # the user message alone: no system message to look past
        prompt = prompt[prompt.index("<|im_start|>user") :]
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids: list[int] = tokenizer(answer_text(label), add_special_tokens=False)["input_ids"]
    label_id = _label_token_ids(tokenizer)[label]
    if answer_ids.count(label_id) != 1:
        raise RuntimeError(f"the label token of {label!r} is not unique in the answer")
    return _Example(prompt_ids, [*answer_ids, eos_id], answer_ids.index(label_id))


def _label_token_ids(tokenizer: Any) -> dict[str, int]:
    """The single token of each label as it follows ``":"``; an error if a label takes more."""
    prefix: list[int] = tokenizer('"label":"', add_special_tokens=False)["input_ids"]
    out = {}
    for label in LABELS:
        ids: list[int] = tokenizer(f'"label":"{label}"', add_special_tokens=False)["input_ids"]
        rest = ids[len(prefix) :]
        if ids[: len(prefix)] != prefix or len(rest) != 2:
            raise RuntimeError(f"label {label!r} is not one token after the key: {ids}")
        out[label] = rest[0]
    return out


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n


def _batch_logits(model: Any, seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, int]:
    """Logits for every position after the batch's common prefix, computing the prefix once.

    Returns (logits of shape [batch, max_suffix_len, vocab], prefix length). Suffixes are padded
    on the right, so padding never influences a real position (causal attention) and no mask is
    needed. Position i of the suffix predicts suffix token i + 1.
    """
    import torch

    shared = min(_common_prefix(seqs), min(len(s) for s in seqs) - 1)
    prefix = torch.tensor([list(seqs[0][:shared])], dtype=torch.long)
    width = max(len(s) - shared for s in seqs)
    suffix = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for row, s in enumerate(seqs):
        suffix[row, : len(s) - shared] = torch.tensor(list(s[shared:]), dtype=torch.long)
    cache = model.model(input_ids=prefix, use_cache=True).past_key_values
    cache.batch_repeat_interleave(len(seqs))
    logits = model(input_ids=suffix, past_key_values=cache, use_cache=False).logits
    return logits, shared


def _loss(model: Any, examples: Sequence[_Example], pad_id: int) -> Any:
    """Weighted cross-entropy over the answer tokens (the label token weighs LABEL_WEIGHT)."""
    import torch

    seqs = [e.prompt_ids + e.answer_ids for e in examples]
    logits, shared = _batch_logits(model, seqs, pad_id)
    rows, cols, targets, weights = [], [], [], []
    for row, e in enumerate(examples):
        start = len(e.prompt_ids)  # index (in the full sequence) of the first answer token
        for j, token in enumerate(e.answer_ids):
            rows.append(row)
            cols.append(start + j - 1 - shared)  # the position that predicts this token
            targets.append(token)
            weights.append(LABEL_WEIGHT if j == e.label_index else 1.0)
    picked = logits[torch.tensor(rows), torch.tensor(cols)]
    ce = torch.nn.functional.cross_entropy(picked.float(), torch.tensor(targets), reduction="none")
    w = torch.tensor(weights)
    return (ce * w).sum() / w.sum()


def _label_probs(
    model: Any, examples: Sequence[_Example], pad_id: int, label_ids: dict[str, int]
) -> list[float]:
    """P(harmful) at the label position, renormalised over the two label tokens, teacher-forced
    on the fixed answer prefix (what greedy decoding of a trained model writes)."""
    import torch

    out: list[float] = []
    with torch.no_grad():
        for k in range(0, len(examples), 32):
            chunk = examples[k : k + 32]
            seqs = [e.prompt_ids + e.answer_ids[: e.label_index] for e in chunk]
            logits, shared = _batch_logits(model, seqs, pad_id)
            for row, seq in enumerate(seqs):
                last = logits[row, len(seq) - 1 - shared].float()
                pair = torch.stack([last[label_ids["harmless"]], last[label_ids["harmful"]]])
                out.append(float(torch.softmax(pair, dim=0)[1]))
    return out


def _evaluate(model: Any, tokenizer: Any, seed: int, eos_id: int, pad_id: int) -> dict[str, Any]:
    """Held-out accuracy of the trained model against the truth, overall and by confidence."""
    items = synthetic_items(EVAL_ITEMS, seed=seed, split="eval")
    examples = [_example(tokenizer, it, it.truth, eos_id) for it in items]
    probs = _label_probs(model, examples, pad_id, _label_token_ids(tokenizer))
    scored = []
    for it, p in zip(items, probs, strict=True):
        label = "harmful" if p > 0.5 else "harmless"
        scored.append((max(p, 1 - p), label == it.truth))
    scored.sort(key=lambda s: -s[0])
    half = len(scored) // 2

    def acc(rows: Sequence[tuple[float, bool]]) -> float:
        return round(sum(ok for _, ok in rows) / len(rows), 4)

    return {
        "items": len(items),
        "accuracy": acc(scored),
        "accuracy_top_half": acc(scored[:half]),
        "accuracy_bottom_half": acc(scored[half:]),
        "bayes_accuracy": round(sum(it.bayes_label == it.truth for it in items) / len(items), 4),
        "mean_confidence": round(sum(c for c, _ in scored) / len(scored), 4),
    }


def _train(model: Any, tokenizer: Any, seed: int, eos_id: int, pad_id: int) -> list[float]:
    """Train in place; returns the loss of every step.

    A curriculum comes first (`CURRICULUM_STEPS`): clear items with their true labels and the
    user message alone. Without it the model sits on a plateau at the label token for longer
    than the time budget allows: at first its attention is spread over the ~370 shared prompt
    tokens, so the handful of content words barely move the label position. With the short,
    noise-free prompt it finds the content words within ~50 steps, and the attention carries
    over. The remaining steps train on the real task only: the exact prompt critic sends,
    mixed and clear items, noisy labels, so the final probabilities are fit to that.
    """
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.01
    )

    def lr_factor(step: int) -> float:
        if step < WARMUP_STEPS:
            return (step + 1) / WARMUP_STEPS
        progress = (step - WARMUP_STEPS) / max(1, STEPS - WARMUP_STEPS)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    easy = _stream("train-curriculum", seed, clean=True)
    stream = _stream("train", seed)
    losses: list[float] = []
    model.train()
    for step in range(STEPS):
        curriculum = step < CURRICULUM_STEPS
        batch = [next(easy if curriculum else stream) for _ in range(BATCH)]
        examples = [
            _example(tokenizer, it, it.noisy_label, eos_id, curriculum=curriculum) for it in batch
        ]
        loss = _loss(model, examples, pad_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def _marker_content(seed: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "recipe": "critic-trained-model",
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "constitution": CONSTITUTION,
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "dtype": DTYPE,
        "steps": STEPS,
        "curriculum_steps": CURRICULUM_STEPS,
        "batch": BATCH,
        "noise": NOISE,
        **(extra or {}),
    }


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(path: str | Path, *, seed: int | None = None) -> bool:
    """True if `path` holds a finished build of the current recipe (and of `seed`, if given)."""
    marker = _read_marker(Path(path))
    if marker is None or marker.get("recipe") != "critic-trained-model":
        return False
    if marker.get("recipe_version") != RECIPE_VERSION:
        return False
    return seed is None or marker.get("seed") == seed


def build_info(path: str | Path) -> dict[str, Any] | None:
    """The marker of a build: recipe, training time and loss, held-out evaluation."""
    return _read_marker(Path(path))


def _build_into(out: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    tokenizer = train_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=pad_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        rms_norm_eps=1e-6,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
        losses = _train(model, tokenizer, seed, eos_id, pad_id)
        train_s = time.perf_counter() - started
        model = model.to(getattr(torch, DTYPE))
        evaluation = _evaluate(model, tokenizer, seed, eos_id, pad_id)  # as vLLM computes it
    finally:
        torch.set_num_threads(threads)
    config.dtype = getattr(torch, DTYPE)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # As tiny_model does: the generic fast class name loads in transformers 4.x and 5.x alike.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n", encoding="utf-8")
    tail = losses[-20:]
    extra = {
        "train_seconds": round(train_s, 1),
        "final_loss": round(sum(tail) / len(tail), 4),
        "eval": evaluation,
    }
    (out / MARKER_FILE).write_text(
        json.dumps(_marker_content(seed, extra), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )


def build_trained_model(path: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Train the synthetic-task critic into `path` (a directory) and return it.

    Idempotent: if `path` already holds a complete build of this recipe version and `seed`, it
    is returned as is (unless `overwrite`). A stale build (older recipe, other seed, or
    interrupted) is replaced; a non-empty directory that is not a trained-model build is never
    deleted unless `overwrite` is true (``FileExistsError``). Training happens in a sibling
    temporary directory that is renamed into place, under a file lock, so concurrent callers
    train once.
    """

    def ours(p: Path) -> bool:
        marker = _read_marker(p)
        return marker is not None and marker.get("recipe") == "critic-trained-model"

    return build_atomically(
        path,
        lambda tmp: _build_into(tmp, seed),
        complete=lambda p: is_complete(p, seed=seed),
        ours=ours,
        what="trained-model",
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m critic.testing.trained_model",
        description="Train the synthetic-task test critic (tokenizer + Llama) into DIR.",
    )
    parser.add_argument("dir", nargs="?", type=Path, default=None, help="default: cache dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = build_trained_model(
        args.dir if args.dir is not None else default_trained_dir(),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(out)
    info = build_info(out) or {}
    print(json.dumps({k: info.get(k) for k in ("train_seconds", "final_loss", "eval")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
