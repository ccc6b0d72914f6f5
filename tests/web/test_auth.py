"""Session cookies, CSRF tokens, claim signatures and the log-in limiter, without a server."""

from __future__ import annotations

import pytest

from adjudication.errors import QueueError
from adjudication.testing import FakeClock
from adjudication.web.auth import LoginLimiter, Session, Signer, hash_password, verify_password


def test_a_session_cookie_round_trips_and_refuses_tampering_and_age() -> None:
    signer = Signer(b"k")
    session = Session(sid="abc", user="rita", issued=1000.0, key="f")
    cookie = signer.dumps(session)
    assert signer.loads(cookie, 1000.0 + 10, 3600) == session
    assert signer.loads(cookie, 1000.0 + 3601, 3600) is None  # too old
    payload, mac = cookie.split(".")
    forged = Signer(b"k").dumps(Session(sid="abc", user="ada", issued=1000.0)).split(".")[0]
    assert signer.loads(f"{forged}.{mac}", 1010.0, 3600) is None
    assert Signer(b"other").loads(cookie, 1010.0, 3600) is None
    assert signer.loads("garbage", 1010.0, 3600) is None
    assert signer.loads(f"{payload}x.{mac}", 1010.0, 3600) is None


def test_csrf_tokens_belong_to_one_session_and_claims_to_one_user() -> None:
    signer = Signer(b"k")
    a, b = Session.anonymous(0), Session.anonymous(0)
    assert signer.check_csrf(a, signer.csrf(a))
    assert not signer.check_csrf(b, signer.csrf(a))
    sig = signer.claim("rita", "harm", "tok", "item")
    assert signer.check_claim(sig, "rita", "harm", "tok", "item")
    assert not signer.check_claim(sig, "rick", "harm", "tok", "item")
    assert not signer.check_claim(sig, "rita", "harm", "tok", "other")


def test_passwords_hash_with_argon2id_and_verify() -> None:
    hashed = hash_password("long enough")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "long enough") == (True, None)
    assert verify_password(hashed, "wrong") == (False, None)
    assert verify_password(None, "anything") == (False, None)
    assert verify_password("not a hash", "anything") == (False, None)
    with pytest.raises(QueueError, match="at least 8"):
        hash_password("short")


def test_the_limiter_counts_failures_per_name_and_per_address() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock, window=60, per_user=3, per_address=5)
    for _ in range(3):
        assert limiter.wait("Rita", "1.1.1.1") is None
        limiter.failed("Rita", "1.1.1.1")
    assert limiter.wait("rita ", "2.2.2.2") == 60  # the name is blocked from anywhere
    assert limiter.wait("rick", "1.1.1.1") is None
    limiter.failed("rick", "1.1.1.1")
    limiter.failed("ron", "1.1.1.1")
    assert limiter.wait("new", "1.1.1.1") == 60  # the address is blocked for any name
    assert limiter.wait("new", "3.3.3.3") is None
    clock.advance(61)
    assert limiter.wait("rita", "1.1.1.1") is None
    limiter.failed("ann", "9.9.9.9")
    limiter.succeeded("ann")
    assert limiter.wait("ann", "8.8.8.8") is None
