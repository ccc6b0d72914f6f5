"""The app's routers, one module per area: log-in, review, adjudication, admin.

Members of a queue see its item list (`items.py`) and open its items; adjudicators and admins
also change items in bulk there.

Handlers are plain functions (FastAPI runs them in a thread pool), since the store is
synchronous; each one checks the role it needs through a dependency, and every POST passes
`deps.check_csrf` first (each router carries it).

Who sees what: reviewers and adjudicators see only the queues they are members of (every page
under `/q/NAME/` checks it, and the store refuses claims too); admins see every queue. In their
queues, adjudicators also adjudicate, see dashboards and item histories, and reopen items; admins
manage users, queues and who works in which queue.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import adjudicate, admin, auth, items, review

ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    review.router,
    items.router,
    adjudicate.router,
    admin.router,
)
