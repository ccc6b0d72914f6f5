"""The review web app: server-rendered pages over a queue database (`critic review serve`).

    from adjudication.web import create_app
    app = create_app("sqlite:///queue.db", secret_key=...)   # any ASGI server, e.g. uvicorn

Needs the `web` extra (FastAPI, uvicorn, argon2-cffi, python-multipart).

Who sees what. Reviewers and adjudicators see only the queues they are members of (admins add
them on the queue's Members page, or `critic queue assign QUEUE USER`); admins see every queue.
In their queues adjudicators also settle disagreements, see dashboards and item histories, and
reopen decided items. Admins add users, change roles, passwords and active flags, create queues
and choose who works in them.

Security (threat model and findings: SECURITY.md). Passwords are argon2id hashes, at most
`password_checks` computed at once. Sessions are HMAC-signed cookies (HttpOnly, SameSite=Lax,
Secure over HTTPS) that carry the user's stored session epoch: log-out, a new password or
deactivation moves it on and ends every session of the user; a session also ends after
`idle_minutes` without a request. The signing secret is the given one (at least 32 random bytes)
or one generated and kept in the database. Every POST carries a per-session CSRF token; log-in
attempts are limited per (user name, address), with `X-Forwarded-For` believed only from
`forwarded_allow_ips`; bodies are capped before anything parses them; a claim token is bound to
the user it was handed to; a GET never changes state (claiming is a POST). 403 and 404 pages
are generic; the detail goes to the `adjudication.web` log. Items and drafts are untrusted:
templates autoescape everything and never mark model text safe, highlights and diffs are built
as text segments, and a Content-Security-Policy allows only this server's one script, which
builds the one panel it fills (the review page's precedents, from JSON) with text nodes.

Review keys. A accept, 1-9 give a label, E edit (label, revision), R reject, X escalate,
G flag a constitution gap (an escalation whose note starts with `[constitution gap] `),
S skip, N note, Z undo. Decisions are sent at once; Z takes back the reviewer's newest decision
in the queue (`Store.undo`: for `undo_seconds`, 10 minutes by default, and only while nobody has
decided that item since) and shows that item again. After that an adjudicator can still reopen
the item from its history page. Overriding a draft with confidence >= 0.9 needs a note. In a
blind queue the draft stays hidden until the reviewer's pick is posted and recorded (and then
it cannot change).

Principle texts. The screen shows the text of each cited principle when the task's draft has
`principle_texts`, a `{principle id: text}` object; without it only the ids are shown.
"""

from .app import create_app
from .auth import hash_password, verify_password

__all__ = ["create_app", "hash_password", "verify_password"]
