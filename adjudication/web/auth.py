"""Passwords, signed session cookies, CSRF tokens and the log-in rate limit.

Sessions are stateless: the cookie holds a session id, the user name, the time of log-in and a
fingerprint of the user's password hash, signed with HMAC-SHA256. Every request re-reads the user,
so deactivating an account or changing its password ends its sessions at once. The CSRF token of
a session is an HMAC of its id, so it needs no storage either, and a new session id (at log-in and
log-out) makes every older token useless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import QueueError

MIN_PASSWORD_LENGTH = 8

_HASHER = PasswordHasher()  # argon2id with the library's current (RFC 9106) parameters
# Verified against when the user does not exist, so that a wrong name costs as long as a wrong
# password and response times do not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash of a password, for `Store.add_user(password_hash=...)`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise QueueError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
            hint="choose a longer one (a passphrase of a few words works well)",
        )
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Check a password; returns (ok, a fresh hash if the stored one uses outdated parameters)."""
    try:
        _HASHER.verify(password_hash or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    if password_hash is None:
        return False, None
    fresh = _HASHER.hash(password) if _HASHER.check_needs_rehash(password_hash) else None
    return True, fresh


def fingerprint(password_hash: str | None) -> str:
    """A short digest of a password hash: sessions carry it, so a new password ends them."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Session:
    sid: str
    user: str | None
    issued: float
    """Unix time the session began (log-in time for a signed-in session)."""
    key: str | None = None
    """`fingerprint` of the user's password hash at log-in."""

    @staticmethod
    def anonymous(now: float) -> Session:
        return Session(sid=secrets.token_urlsafe(18), user=None, issued=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks everything the app hands to a browser and wants back unchanged."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, message: str) -> str:
        digest = hmac.new(self._secret, f"{purpose}\x00{message}".encode(), hashlib.sha256)
        return _b64(digest.digest())

    def dumps(self, session: Session) -> str:
        payload = _b64(
            json.dumps(
                {"s": session.sid, "u": session.user, "t": session.issued, "k": session.key},
                separators=(",", ":"),
            ).encode()
        )
        return f"{payload}.{self._mac('session', payload)}"

    def loads(self, cookie: str, now: float, max_age: float) -> Session | None:
        """The session in a cookie, or None if it is forged, malformed or too old."""
        payload, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(
                sid=str(data["s"]),
                user=None if data["u"] is None else str(data["u"]),
                issued=float(data["t"]),
                key=None if data.get("k") is None else str(data["k"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= now - session.issued <= max_age:
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token every form and POST of this session must carry."""
        return self._mac("csrf", session.sid)

    def check_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf(session).encode())

    def claim(self, user: str, queue: str, token: str, item_id: str) -> str:
        """Binds a claim token and its item to the user it was handed to."""
        return self._mac("claim", json.dumps([user, queue, token, item_id]))

    def check_claim(self, sig: str, user: str, queue: str, token: str, item_id: str) -> bool:
        return hmac.compare_digest(sig.encode(), self.claim(user, queue, token, item_id).encode())


class LoginLimiter:
    """Failed log-ins in a sliding window, per user name and per client address.

    Only failures count, so a team behind one address can all log in; a guesser is stopped
    after `per_user` wrong passwords for one name, or `per_address` from one address. Kept in
    memory: one server process, and a restart forgets the counts (the window is short).
    """

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        window: float = 300.0,
        per_user: int = 5,
        per_address: int = 50,
    ) -> None:
        self._clock = clock
        self.window = window
        self._limits = {"user": per_user, "address": per_address}
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def _keys(self, user: str, address: str) -> list[tuple[str, str]]:
        return [("user", user.strip().lower()), ("address", address)]

    def wait(self, user: str, address: str) -> float | None:
        """Seconds until this user name may try again from this address, or None if now."""
        now = self._clock().timestamp()
        longest = None
        with self._lock:
            for key in self._keys(user, address):
                times = self._failures.get(key)
                if times is None:
                    continue
                while times and times[0] <= now - self.window:
                    times.popleft()
                if not times:
                    del self._failures[key]
                elif len(times) >= self._limits[key[0]]:
                    wait = max(1.0, times[0] + self.window - now)
                    longest = max(wait, longest or 0.0)
        return longest

    def failed(self, user: str, address: str) -> None:
        now = self._clock().timestamp()
        with self._lock:
            for key in self._keys(user, address):
                self._failures.setdefault(key, deque()).append(now)
            while len(self._failures) > 20_000:  # a flood of names: keep memory bounded
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(("user", user.strip().lower()), None)
