"""Passwords, signed session cookies, CSRF tokens, the signing secret and the log-in limit.

The cookie holds a session id, the user name, the time of log-in, the time of the last request
and the user's session epoch, signed with HMAC-SHA256. Every request re-reads the user, and a
session whose epoch is not the user's current one is over: log-out, a new password and
deactivation bump the stored epoch (`Store.end_sessions`, `Store.update_user`), so they end
every session the user had, on every device. A session also ends after `idle` seconds without a
request and `max_age` seconds after log-in. The CSRF token of a session is an HMAC of its id, so
a new session id (at log-in and log-out) makes every older token useless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ..errors import SettingsError
from .passwords import check_password

MIN_SECRET_BYTES = 32
MIN_SECRET_CHARS = 43
"""A text secret needs as many characters as `secrets.token_urlsafe(32)` gives (32 bytes)."""
SECRET_HINT = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"

_HASHER = PasswordHasher()  # argon2id with the library's current (RFC 9106) parameters: 64 MiB
# Verified against when the user does not exist, so that a wrong name costs as long as a wrong
# password and response times do not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


def hash_password(password: str, *, user: str | None = None) -> str:
    """An argon2id hash of a new password, for `Store.add_user(password_hash=...)`.

    Args:
        password: refused (QueueError) when short, common or built on the user's name
            (`passwords.check_password` has the rule).
        user: the name of the user it is for, when known.
    """
    check_password(password, user=user)
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


class Busy(Exception):
    """Too many password checks are running; the client should try again shortly."""


class PasswordSlots:
    """Bounds how many argon2 hashes run at once: each takes 64 MiB, so a burst of log-ins
    must not take the server's memory. A check waits up to `wait` seconds for a slot."""

    def __init__(self, size: int, *, wait: float = 10.0) -> None:
        self._slots = threading.BoundedSemaphore(max(1, size))
        self._wait = wait

    @contextmanager
    def hold(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait):
            raise Busy
        try:
            yield
        finally:
            self._slots.release()


def signing_secret(secret: str | bytes) -> bytes:
    """A configured secret as bytes, refused when it is too short to resist guessing."""
    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    short = (
        len(secret) < MIN_SECRET_CHARS if isinstance(secret, str) else len(raw) < MIN_SECRET_BYTES
    )
    if short or len(set(raw)) < 10:
        need = (
            f"{MIN_SECRET_CHARS} characters"
            if isinstance(secret, str)
            else f"{MIN_SECRET_BYTES} bytes"
        )
        raise SettingsError(
            f"the web app's secret key is too weak (it needs at least {need} of random data)",
            hint=f"{SECRET_HINT}, or pass none and the app keeps a generated one in the database",
        )
    return raw


@dataclass(frozen=True)
class Session:
    sid: str
    user: str | None
    issued: float
    """Unix time the session began (log-in time for a signed-in session)."""
    epoch: int = 0
    """The user's session epoch at log-in."""
    seen: float = 0.0
    """Unix time of the session's last request (refreshed now and then), for the idle timeout."""

    @staticmethod
    def anonymous(now: float) -> Session:
        return Session(sid=secrets.token_urlsafe(18), user=None, issued=now, seen=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks everything the app hands to a browser and wants back unchanged."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _mac(self, purpose: str, message: str) -> bytes:
        digest = hmac.new(self._secret, f"{purpose}\x00{message}".encode(), hashlib.sha256)
        return _b64(digest.digest()).encode()

    def _check(self, purpose: str, message: str, mac: str) -> bool:
        # Bytes, not str: compare_digest refuses non-ASCII text, and a cookie may hold any.
        return hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac(purpose, message))

    def dumps(self, session: Session) -> str:
        fields = {
            "s": session.sid,
            "u": session.user,
            "t": session.issued,
            "e": session.epoch,
            "a": session.seen,
        }
        payload = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"{payload}.{self._mac('session', payload).decode()}"

    def loads(self, cookie: str, now: float, max_age: float, idle: float) -> Session | None:
        """The session in a cookie, or None if it is forged, malformed, too old or idle too long."""
        payload, _, mac = cookie.partition(".")
        if not self._check("session", payload, mac):
            return None
        try:
            data = json.loads(_unb64(payload))
            user = data["u"]
            session = Session(
                sid=str(data["s"]),
                user=None if user is None else str(user),
                issued=float(data["t"]),
                epoch=int(data["e"]),
                seen=float(data["a"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if not 0 <= now - session.issued <= max_age:
            return None
        if session.user is not None and now - session.seen > idle:
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token every form and POST of this session must carry."""
        return self._mac("csrf", session.sid).decode()

    def check_csrf(self, session: Session, token: str) -> bool:
        return self._check("csrf", session.sid, token)

    def claim(self, user: str, queue: str, token: str, item_id: str) -> str:
        """Binds a claim token and its item to the user it was handed to."""
        return self._mac("claim", json.dumps([user, queue, token, item_id])).decode()

    def check_claim(self, sig: str, user: str, queue: str, token: str, item_id: str) -> bool:
        return self._check("claim", json.dumps([user, queue, token, item_id]), sig)


class LoginLimiter:
    """Log-in attempts per (user name, client address) in a sliding window.

    An attempt is counted before its password is checked, under a lock, so concurrent guesses
    cannot slip past the limit; a successful log-in clears its pair. Limiting the pair, not the
    name or the address alone, means a guesser elsewhere cannot lock a user out, and a team
    behind one proxy address is not locked out together. Kept in memory: one server process,
    and a restart forgets the counts (the window is short).
    """

    def __init__(
        self, clock: Callable[[], datetime], *, window: float = 300.0, limit: int = 5
    ) -> None:
        self._clock = clock
        self.window = window
        self.limit = limit
        self._attempts: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(user: str, address: str) -> tuple[str, str]:
        return user.strip().lower(), address

    def attempt(self, user: str, address: str) -> float | None:
        """Count one attempt. Returns None when it may go ahead, else the seconds to wait
        (an attempt refused here is not counted)."""
        now = self._clock().timestamp()
        key = self._key(user, address)
        with self._lock:
            times = self._attempts.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.limit:
                return max(1.0, times[0] + self.window - now)
            times.append(now)
            while len(self._attempts) > 20_000:  # a flood of names: keep memory bounded
                self._attempts.pop(next(iter(self._attempts)))
        return None

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._attempts.pop(self._key(user, address), None)


class ClientAddress:
    """The client's address for the log-in limit. `X-Forwarded-For` is believed only when the
    connection comes from a trusted proxy (`forwarded_allow_ips`); then the client is the
    nearest address in it that is not a trusted proxy itself."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self._any = "*" in trusted
        try:
            self._networks = [ipaddress.ip_network(t.strip()) for t in trusted if t != "*"]
        except ValueError as exc:
            raise SettingsError(
                f"forwarded_allow_ips: {exc}",
                hint="give proxy addresses or networks, e.g. 127.0.0.1,10.0.0.0/8",
            ) from exc

    def trusts(self, address: str) -> bool:
        if self._any:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def __call__(self, peer: str | None, forwarded: Sequence[str]) -> str:
        if peer is None:
            return "unknown"
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for header in forwarded for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusts(hop):
                return hop
        return hops[0] if hops else peer
