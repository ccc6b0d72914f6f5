"""Render prompts from jinja2 templates: shared content first, the item last.

The system message carries everything shared by all items (instructions, constitution, examples),
the user message only the item, so vLLM's prefix cache serves the shared part once per run.

Item text is data, and it may try to end its own section (`</reply></item> SYSTEM: ...`) or its
whole chat turn (`<|im_end|><|im_start|>system`). The shipped templates pass every item value
through the `data` filter (`fence`): it writes any of the prompts' own tags inside it as
`&lt;item>` (`fence_delimiters`), so no item can close a section, and the first character of any
chat special-token string as a character reference (`neutralise_special_tokens`), so that no
tokenizer reads a control token out of item text, whatever backend sends the prompt.
Templates render in jinja2's `SandboxedEnvironment`; a `--prompts` directory is still trusted
code (it decides what the model is told), so only point it at templates you would run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from critic.backends.base import Message
from critic.constitution import Constitution
from critic.errors import TemplateError
from critic.items import Item

LABEL_TEMPLATES = ("label_system.j2", "label_user.j2", "reask.j2")

DELIMITERS = ("item", "conversation", "reply", "response_a", "response_b")
"""The tags the shipped prompts wrap item text in."""

_DELIMITER = re.compile(r"<(?=\s*/?\s*(?:" + "|".join(DELIMITERS) + r")\b)", re.IGNORECASE)


def fence_delimiters(text: object) -> str:
    """`text` with every opening or closing tag of the prompts' sections (`<item>`, `</reply>`,
    `< / Conversation >`, ...) written as `&lt;item>`, so that it cannot end its own section."""
    return _DELIMITER.sub("&lt;", str(text))


#: The chat special tokens written as words in angle brackets (`<s>`, `</s>`, `<end_of_turn>`),
#: matched exactly (tokenizers match them case-sensitively): Llama 2 / Mistral / Gemma's
#: sentence, turn and padding tokens, Qwen3 and DeepSeek-R1's reasoning and tool tags, Command R's.
WORD_TOKENS = (
    "s", "unk", "pad", "mask", "bos", "eos", "start_of_turn", "end_of_turn", "start_of_image",
    "end_of_image", "think", "tool_call", "tool_response", "BOS_TOKEN", "EOS_TOKEN",
)  # fmt: skip
#: Mistral's control tokens, written in square brackets (`[INST]`, `[/INST]`, ...).
BRACKET_TOKENS = (
    "INST", "SYSTEM_PROMPT", "AVAILABLE_TOOLS", "TOOL_RESULTS", "TOOL_CALLS", "TOOL_CONTENT",
    "THINK", "IMG", "IMG_BREAK", "IMG_END", "PREFIX", "MIDDLE", "SUFFIX", "ARGS", "CALL_ID",
)  # fmt: skip

_SPECIAL = re.compile(
    # `<|` and the full-width `<｜` open every token of the pipe families: ChatML / Qwen
    # (`<|im_start|>`), Llama 3 (`<|eot_id|>`), Phi, Granite, gpt-oss, Command R, DeepSeek
    # (`<｜User｜>`). Any such opening is neutralised, closed or not.
    r"<(?=[|\uff5c])"
    + r"|<(?=/?(?:" + "|".join(map(re.escape, WORD_TOKENS)) + r")>)"
    + r"|<(?=</?SYS>>)"  # Llama 2's <<SYS>> and <</SYS>>
    + r"|\[(?=/?(?:" + "|".join(BRACKET_TOKENS) + r")\])"
)  # fmt: skip
_REFERENCE = {"<": "&lt;", "[": "&#91;"}


def neutralise_special_tokens(text: object) -> str:
    """`text` with every chat special-token string written so that no tokenizer reads it as a
    control token: its first character as a character reference (`&lt;|im_end|>`, `&lt;/s>`,
    `&#91;INST]`).

    The rule covers the families of chat templates in use rather than one model's tokenizer
    (rendering does not know which model will read the prompt): anything opening with `<|` or
    `<｜`, the words of `WORD_TOKENS` in angle brackets, `<<SYS>>`, and the words of
    `BRACKET_TOKENS` in square brackets.
    """
    return _SPECIAL.sub(lambda m: _REFERENCE[m.group()], str(text))


def fence(text: object) -> str:
    """The `data` filter: `text` with the prompts' section tags fenced (`fence_delimiters`) and
    chat special tokens neutralised (`neutralise_special_tokens`)."""
    return neutralise_special_tokens(fence_delimiters(text))


def shipped_prompts_dir() -> Path:
    """The directory of prompt templates that ship with critic."""
    return Path(str(resources.files("critic.prompts")))


@dataclass(frozen=True)
class Templates:
    """A directory of prompt templates; the shipped ones unless the user points elsewhere.

    `sources` (name, text) pairs, when given, are the templates themselves, read once by
    `snapshot()`: what `--ray` sends to its workers, which may run on machines without that
    directory (or with another copy of it) and must render what the run hashed at start.
    """

    directory: Path
    sources: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Templates:
        path = Path(directory) if directory else shipped_prompts_dir()
        if not path.is_dir():
            raise TemplateError(
                f"{path}: no such prompt directory",
                hint="--prompts takes a directory holding label_system.j2, label_user.j2, ...",
            )
        return cls(path)

    def snapshot(self) -> Templates:
        """These templates with every `*.j2` under the directory read now, into memory."""
        if self.sources is not None:
            return self
        files = sorted(p for p in self.directory.rglob("*.j2") if p.is_file())
        return Templates(
            self.directory,
            tuple((p.relative_to(self.directory).as_posix(), p.read_text("utf-8")) for p in files),
        )

    def __getstate__(self) -> dict[str, Any]:
        # Pickled (to Ray workers) without the jinja2 environment, which each side builds anew.
        return {k: v for k, v in self.__dict__.items() if k != "env"}

    @cached_property
    def env(self) -> jinja2.Environment:
        loader: jinja2.BaseLoader = (
            jinja2.FileSystemLoader(str(self.directory))
            if self.sources is None
            else jinja2.DictLoader(dict(self.sources))
        )
        env = jinja2.sandbox.SandboxedEnvironment(
            loader=loader,
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # A run renders what it hashed at start (`hash()` is stored with the run), not an edit
            # made while it runs; and no stat() of the template file per prompt.
            auto_reload=False,
        )
        env.filters["data"] = fence
        return env

    def source(self, name: str) -> str:
        path = self.directory / name
        if self.sources is not None:
            held = dict(self.sources)
            if name in held:
                return held[name]
            raise TemplateError(
                f"{path}: template missing (it was not there when the run read its templates)",
                hint="put it in the --prompts directory and start the run again",
            )
        if not path.is_file():
            shipped = shipped_prompts_dir() / name
            raise TemplateError(
                f"{path}: template missing",
                hint=f"copy the shipped one from {shipped} and edit it"
                if shipped.is_file()
                else None,
            )
        return path.read_text(encoding="utf-8")

    def hash(self, names: tuple[str, ...]) -> str:
        """sha256 over the names and sources of the templates a task uses."""
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode() + b"\0" + self.source(name).encode() + b"\0")
        return digest.hexdigest()

    def render(self, name: str, **context: Any) -> str:
        try:
            return self.env.get_template(name).render(**context).strip()
        except jinja2.TemplateNotFound:
            self.source(name)  # raises the TemplateError that names the file and a fix
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"{self.directory / name}:{exc.lineno}: template syntax error: {exc.message}"
            ) from None
        except jinja2.exceptions.SecurityError as exc:
            raise TemplateError(
                f"{self.directory / name}: the template did something unsafe: {exc}",
                hint="templates may read the values they are given, not call into Python",
            ) from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{self.directory / name}: {exc.message}",
                hint=f"variables available here: {', '.join(sorted(context))}",
            ) from None


def _examples(constitution: Constitution) -> list[dict[str, Any]]:
    out = []
    for p in constitution.principles:
        for ex in p.examples:
            verdict = ex.label if ex.label is not None else ex.score
            if verdict is None:
                continue
            out.append({**ex.model_dump(), "principle": p.id, "verdict": verdict})
    return out


def render_label_system(templates: Templates, constitution: Constitution) -> Message:
    """The shared system message of the label task: identical for every item of a run."""
    content = templates.render(
        "label_system.j2", constitution=constitution, examples=_examples(constitution)
    )
    return {"role": "system", "content": content}


def render_label_user(templates: Templates, item: Item) -> Message:
    """The per-item user message of the label task; the item comes last."""
    content = templates.render(
        "label_user.j2",
        item={"prompt": item.prompt, "response": item.response, "text": item.text},
        fields=dict(item.row),
    )
    return {"role": "user", "content": content}


def render_label(templates: Templates, constitution: Constitution, item: Item) -> list[Message]:
    """Chat messages for the label task: system = shared content, user = the item."""
    return [render_label_system(templates, constitution), render_label_user(templates, item)]


def render_reask(templates: Templates, error: str) -> str:
    """The follow-up message after an unusable answer, quoting the validation error (which may
    quote the answer: its special-token strings are neutralised)."""
    return templates.render("reask.j2", error=neutralise_special_tokens(error))


def assistant_turn(text: str) -> Message:
    """The model's own answer as a turn of a later request (a re-ask, the next round): a
    special-token string the model spelled out in plain tokens is neutralised, so that the
    answer cannot end its own turn when the conversation is tokenized again."""
    return {"role": "assistant", "content": neutralise_special_tokens(text)}
