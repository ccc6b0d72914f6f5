"""Session cookies, CSRF tokens, claim signatures and the log-in limiter, without a server."""

from __future__ import annotations

import pytest

from adjudication.errors import QueueError
from adjudication.testing import FakeClock
from adjudication.web.auth import LoginLimiter, Session, Signer, hash_password, verify_password


def test_a_session_cookie_round_trips_and_refuses_tampering_and_age() -> None:
    signer = Signer(b"k")
    session = Session(sid="abc", user="rita", issued=1000.0, epoch=3, seen=1000.0)
    cookie = signer.dumps(session)
    assert signer.loads(cookie, 1000.0 + 10, 3600, 600) == session
    assert signer.loads(cookie, 1000.0 + 3601, 3600, 7200) is None  # too old
    assert signer.loads(cookie, 1000.0 + 601, 3600, 600) is None  # idle too long
    payload, mac = cookie.split(".")
    forged = Signer(b"k").dumps(Session(sid="abc", user="ada", issued=1000.0)).split(".")[0]
    assert signer.loads(f"{forged}.{mac}", 1010.0, 3600, 600) is None
    assert Signer(b"other").loads(cookie, 1010.0, 3600, 600) is None
    assert signer.loads("garbage", 1010.0, 3600, 600) is None
    assert signer.loads(f"{payload}x.{mac}", 1010.0, 3600, 600) is None


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
    with pytest.raises(QueueError, match="at least 10"):
        hash_password("short")


def test_the_limiter_counts_attempts_per_name_and_address_pair() -> None:
    clock = FakeClock()
    limiter = LoginLimiter(clock, window=60, limit=3)
    for _ in range(3):
        assert limiter.attempt("Rita", "1.1.1.1") is None
    assert limiter.attempt("rita ", "1.1.1.1") == 60  # the pair is blocked
    assert limiter.attempt("rita", "2.2.2.2") is None  # not the name from elsewhere
    assert limiter.attempt("rick", "1.1.1.1") is None  # nor the address for other names
    clock.advance(61)
    assert limiter.attempt("rita", "1.1.1.1") is None
    limiter.succeeded("rita", "1.1.1.1")  # a log-in clears its pair
    for _ in range(3):
        assert limiter.attempt("rita", "1.1.1.1") is None


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short one", "at least 10 characters (this one has 9)"),
        ("1212121212", "at least 5 different characters (this one has 2)"),
        ("Password2024!", "most common passwords"),
        ("  1qaz2wsx3edc  ", "most common passwords"),
        ("Correct Horse Battery Staple", "most common passwords"),
        ("Rita's own password!", "may not contain the user name ('rita')"),
    ],
)
def test_short_common_and_name_based_passwords_are_refused(password: str, problem: str) -> None:
    from adjudication.web.passwords import check_password

    with pytest.raises(QueueError, match=problem.replace("(", r"\(").replace(")", r"\)")) as info:
        check_password(password, user="rita")
    assert info.value.hint and "passphrase" in info.value.hint
    assert password not in str(info.value)


def test_passphrases_and_long_random_passwords_are_accepted() -> None:
    from adjudication.web.passwords import check_password

    for password in ("correct horse battery", "8#2!9@4$1%", "tea at noon on mars", "rit-a-tat!"):
        check_password(password, user="rita")
    check_password("ritardando is a tempo", user=None)  # no name to compare with
