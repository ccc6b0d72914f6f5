"""Errors a reviewer, an admin or a calling program can act on: each says what and what to do.

`adjudication` never imports `critic`, so it has its own base class. It has the same shape as
`critic.errors.CriticError` (a message and an optional hint), so the CLI can print both alike.
"""

from __future__ import annotations


class AdjudicationError(Exception):
    """Base class for every error this package raises on purpose."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class StoreError(AdjudicationError):
    """The queue database cannot be opened, migrated or reached."""


class QueueError(AdjudicationError):
    """A queue operation cannot be done as asked (bad label, wrong state, unknown action...)."""


class NotFoundError(QueueError):
    """A queue, user or item that the call names does not exist."""


class PermissionDenied(QueueError):
    """The user's role (or inactive account) does not allow the operation."""


class LeaseError(QueueError):
    """A claim token is unknown, already used up, or its lease has expired (the claim is fenced)."""


class SettingsError(AdjudicationError):
    """A setting of the web app (its secret, its trusted proxies...) cannot be used as given."""


class AgreementError(AdjudicationError, ValueError):
    """The ratings cannot carry the asked statistic (no items, unequal rater counts...)."""
