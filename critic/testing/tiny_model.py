"""A tiny, randomly initialised chat model for tests (no model hub needed).

The recipe (see ``/work/shared/ENVIRONMENT.md``): a byte-level BPE tokenizer (vocabulary of about
1000, ChatML special tokens) trained with ``tokenizers`` on a built-in synthetic English/JSON
corpus, wrapped in ``PreTrainedTokenizerFast`` with a Qwen-style ChatML chat template, saved next
to a randomly initialised ``LlamaForCausalLM`` (hidden 128, 2 layers, 2 heads of size 64 -- vLLM's
CPU attention rejects head size 16 --, intermediate 256, tied embeddings, 4096 positions so
prompts of 1-2k tokens fit). Weights are stored as bfloat16 safetensors (~0.9 MB): vLLM's CPU
build computes in bfloat16 (it casts float32 weights, with a warning per tensor), and
transformers loads and generates with them on CPU too.

Its outputs are meaningless, but under constrained decoding they are schema-valid, which is all
pipeline tests need. The build is deterministic: the same ``seed`` gives byte-identical files.

``torch``, ``transformers`` and ``tokenizers`` are imported lazily inside functions, so importing
this module (or ``critic``) never imports torch.

Command line: ``python -m critic.testing.tiny_model [DIR] [--seed N] [--overwrite]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "MARKER_FILE",
    "RECIPE_VERSION",
    "SPECIAL_TOKENS",
    "build_tiny_model",
    "default_model_dir",
    "is_complete",
    "main",
]

#: Bump when anything in the recipe changes: existing caches are then rebuilt.
RECIPE_VERSION = 1
#: Written last; its presence (with the right recipe version and seed) marks a complete build.
MARKER_FILE = "critic-tiny-model.json"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 1000
HIDDEN_SIZE = 128
NUM_LAYERS = 2
NUM_HEADS = 2  # head size 64: vLLM's CPU attention rejects 16
INTERMEDIATE_SIZE = 256
MAX_POSITIONS = 4096
DTYPE = "bfloat16"  # what vLLM CPU computes in (dtype "auto"); float32 gets cast

#: Qwen-style ChatML template with ``add_generation_prompt`` support. Message content must be a
#: string (vLLM detects the "string" content format from this template).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

_WORDS_TEXT = """
the a an of to and in is it that this for on with as was be by not are or from at have has
had but which one all were when we there can been if more will would no so what up out about
into than them only other new some could time these two may then first any my now such like
our over man me even most made after also did many before must through back years where much
your way well down should because each just those people how too little state good very make
world still own see men work long get here between both life being under never day same
another know while last might us great old year off come since against go came right used
take three label labels labeling score scores scoring rationale reason harmless harmful
helpful honest safe unsafe benign toxic violent illegal dangerous critique critic revision
principle constitution policy review reviewer human model answer response prompt request
user assistant system message confidence calibrated threshold route routing accept reject
abstain escalate uncertain certain probability true false null yes sorry cannot help explain
please thanks question because therefore however although example weapon medicine chemistry
recipe password account email address privacy advice legal medical financial opinion fact
claim evidence source citation evaluate judge compare better worse choice option item text
document sentence word token category class positive negative neutral agree disagree rating
scale low medium high none some all
"""
_WORDS = _WORDS_TEXT.split()

_LABELS = ("harmless", "harmful", "helpful", "unsafe", "benign", "uncertain")


def default_model_dir() -> Path:
    """Where tests cache the tiny model: ``$CRITIC_TINY_MODEL_DIR`` or
    ``~/.cache/critic/tiny-model-v1``."""
    env = os.environ.get("CRITIC_TINY_MODEL_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "critic" / f"tiny-model-v{RECIPE_VERSION}"


def _marker_content(seed: int) -> dict[str, Any]:
    return {
        "recipe": "critic-tiny-model",
        "recipe_version": RECIPE_VERSION,
        "seed": seed,
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "dtype": DTYPE,
    }


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((path / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(path: str | Path, *, seed: int | None = None) -> bool:
    """True if ``path`` holds a finished build of the current recipe (and of ``seed``, if given)."""
    marker = _read_marker(Path(path))
    if marker is None or marker.get("recipe_version") != RECIPE_VERSION:
        return False
    return seed is None or marker.get("seed") == seed


def _corpus(n_sentences: int = 6000) -> list[str]:
    """A deterministic English-ish corpus with JSON punctuation, digits and ChatML text."""
    rng = random.Random(1234)  # fixed: the tokenizer is the same for every weight seed
    lines: list[str] = []
    for i in range(n_sentences):
        n = rng.randint(4, 16)
        words = [rng.choice(_WORDS) for _ in range(n)]
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + rng.choice(".?!.,;:")
        kind = i % 6
        if kind == 0:
            obj = {
                "label": rng.choice(_LABELS),
                "score": round(rng.random(), rng.randint(1, 4)),
                "rationale": sentence,
            }
            lines.append(json.dumps(obj))
        elif kind == 1:
            obj2 = {
                "rationale": sentence,
                "label": rng.choice(_LABELS),
                "confidence": rng.randint(0, 100),
                "harmful": rng.random() < 0.5,
                "tags": [rng.choice(_WORDS) for _ in range(rng.randint(0, 3))],
                "note": None,
            }
            lines.append(json.dumps(obj2, separators=(",", ":")))
        elif kind == 2:
            lines.append(
                "<|im_start|>system\nYou are a careful critic. Answer in JSON.<|im_end|>\n"
                f"<|im_start|>user\n{sentence}<|im_end|>\n<|im_start|>assistant\n"
                f'{{"label": "{rng.choice(_LABELS)}", "score": {rng.randint(1, 10)}}}<|im_end|>'
            )
        elif kind == 3:
            nums = " ".join(str(rng.randint(0, 10 ** rng.randint(1, 6))) for _ in range(5))
            lines.append(f"{sentence} {nums} {rng.random():.3f} -{rng.randint(1, 99)}%")
        elif kind == 4:
            lines.append(f"- {sentence} ({rng.choice(_LABELS)}) [{i}] {{key: 'value'}} a/b\\c")
        else:
            lines.append(sentence)
    lines.append("0123456789 {}[]:,\"'\\/ -+.eE true false null\t\n")
    return lines


def train_tokenizer() -> Any:
    """Train the byte-level BPE as a ``PreTrainedTokenizerFast`` (both test models use it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )


def _build_into(out: Path, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

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
    config.dtype = getattr(torch, DTYPE)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(getattr(torch, DTYPE)).eval()  # type: ignore[no-untyped-call]
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=pad_id, eos_token_id=eos_id, pad_token_id=pad_id
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # transformers 5 records its new class name ("TokenizersBackend"); the generic fast class name
    # loads in transformers 4.x and 5.x alike.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n", encoding="utf-8")
    (out / MARKER_FILE).write_text(
        json.dumps(_marker_content(seed), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _make_readable(directory: Path) -> None:
    """``mkdtemp`` creates 0700 and safetensors writes 0600; use the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for child in directory.iterdir():
        child.chmod(0o666 & ~umask)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` next to ``path`` (serialises concurrent builders)."""
    lock_path = path.parent / f".{path.name}.lock"
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def build_tiny_model(path: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Build the tiny model into ``path`` (a directory) and return it.

    Idempotent: if ``path`` already holds a complete build of this recipe version and ``seed``,
    it is returned as is (unless ``overwrite``). A stale build (older recipe, other seed, or
    interrupted) is replaced; a non-empty directory that is not a tiny-model build is never
    deleted unless ``overwrite`` is true (``FileExistsError``). The build happens in a sibling
    temporary directory that is renamed into place, under a file lock, so concurrent callers
    are safe.
    """
    return build_atomically(
        path,
        lambda tmp: _build_into(tmp, seed),
        complete=lambda p: is_complete(p, seed=seed),
        ours=lambda p: _read_marker(p) is not None,
        what="tiny-model",
        overwrite=overwrite,
    )


def build_atomically(
    path: str | Path,
    build_into: Callable[[Path], None],
    *,
    complete: Callable[[Path], bool],
    ours: Callable[[Path], bool],
    what: str,
    overwrite: bool = False,
) -> Path:
    """Build a model directory once: in a sibling temporary directory renamed into place, under
    a file lock, so concurrent callers build once and an interrupted build leaves nothing behind.

    A complete build at `path` is returned as is (unless `overwrite`); a non-empty directory that
    `ours` does not recognise is never deleted unless `overwrite` (``FileExistsError``).
    """
    path = Path(path).expanduser().absolute()
    if not overwrite and complete(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path):
        if not overwrite and complete(path):
            return path  # another process built it while we waited
        if path.exists() and (
            not path.is_dir() or (any(path.iterdir()) and not ours(path) and not overwrite)
        ):
            raise FileExistsError(
                f"{path} exists and is not a critic {what} build; pass overwrite=True to replace it"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.build-", dir=path.parent))
        try:
            build_into(tmp)
            _make_readable(tmp)
            if path.exists():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m critic.testing.tiny_model",
        description="Build the tiny random test model (tokenizer + Llama) into DIR.",
    )
    parser.add_argument("dir", nargs="?", type=Path, default=None, help="default: cache dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    out = build_tiny_model(
        args.dir if args.dir is not None else default_model_dir(),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
