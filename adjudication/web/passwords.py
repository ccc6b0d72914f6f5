"""Which passwords the review app refuses: short ones, common ones and ones built on the user's
own name. Checked wherever a password is set (`hash_password`: `critic users add
--password-stdin` and the admin's Users page); a password set before this rule keeps working.

The rule, which README and SECURITY.md repeat:
- at least `MIN_PASSWORD_LENGTH` (10) characters;
- at least `MIN_DISTINCT` (5) different characters (`aaaaaaaaaa`, `1212121212` are refused);
- not on the built-in list of common passwords (`COMMON`), compared ignoring case, and also
  after taking digits and symbols off both ends (`Password2024!` is `password`);
- not containing the user's own name (names of 3 characters or more).

The list is short on purpose: the length rule already refuses most of the passwords that are
guessed first, and argon2 with a log-in limit of 5 attempts per name and address in 5 minutes
makes an online guess slow. It holds the bases those passwords are built on and the long
keyboard and digit runs.
"""

from __future__ import annotations

import string

from ..errors import QueueError

MIN_PASSWORD_LENGTH = 10
MIN_DISTINCT = 5
_ENDS = string.digits + string.punctuation + string.whitespace
_HINT = "choose a longer one: a passphrase of three or four unrelated words works well"

_COMMON_WORDS = """
    password passwort passw0rd p@ssword p@ssw0rd pa55word pa$$word p4ssword p4ssw0rd
    mypassword yourpassword nopassword newpassword temppassword changeme changeit default
    motdepasse contrasena contraseña senha wachtwoord salasana haslo
    qwerty qwertyu qwertyui qwertyuiop qwertz qwertzuiop azerty azertyuiop asdf asdfgh
    asdfghjk asdfghjkl zxcvbn zxcvbnm qazwsx qazwsxedc 1qaz2wsx 1qaz2wsx3edc zaq12wsx
    zaq1zaq1 1q2w3e 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y q1w2e3r4 q1w2e3r4t5 qwe123 123qwe
    qwer1234 1234qwer qweasdzxc qweasd asdasd asdfasdf
    1234567890 0123456789 0987654321 9876543210 12345678910 1234512345 1122334455
    1357924680 123454321 1234554321 123123123 1234567899 147258369 159357 741852963
    abc abcd abcde abcdef abcdefg abcdefgh abcdefghi abcdefghij abcdefghijk
    abc123 abcd1234 a1b2c3 a1b2c3d4 a1b2c3d4e5 aa123456
    letmein welcome iloveyou iloveu loveyou loveme lovely trustno1 whatever opensesame
    secret topsecret access login admin administrator root toor guest user username
    test tester testing hello helloworld hellohello goodbye nothing somebody everybody
    monkey dragon master shadow sunshine princess superman batman spiderman starwars
    football baseball basketball soccer hockey golfer tennis liverpool arsenal chelsea
    manchester barcelona realmadrid juventus
    michael jennifer jordan hunter ranger buster thomas tigger robert charlie harley
    george daniel jessica nicole andrew joshua hannah ashley maggie matthew anthony
    summer winter spring autumn freedom matrix mustang pokemon computer internet
    samsung google apple linkedin facebook twitter instagram microsoft windows
    chocolate cheese cookie pepper ginger flower butterfly killer biteme
    blink182 myspace babygirl baby sweety sweetheart jesus
    critic review reviewer adjudicator adjudication labeling label
    correcthorsebatterystaple correcthorse
"""
COMMON = frozenset(_COMMON_WORDS.split())
"""Common passwords and the bases common passwords are built on, lower case."""


def check_password(password: str, *, user: str | None = None) -> None:
    """Refuse a password the rule above does not allow, saying which part it breaks (never
    repeating the password)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise QueueError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters "
            f"(this one has {len(password)})",
            hint=_HINT,
        )
    folded = password.casefold()
    if len(set(folded)) < MIN_DISTINCT:
        raise QueueError(
            f"a password needs at least {MIN_DISTINCT} different characters "
            f"(this one has {len(set(folded))})",
            hint=_HINT,
        )
    core = folded.strip(_ENDS)
    if folded in COMMON or core in COMMON or "".join(folded.split()) in COMMON:
        raise QueueError(
            "that is one of the most common passwords (or one with digits or symbols added), "
            "which are guessed first",
            hint=_HINT,
        )
    if user is not None and len(user) >= 3 and user.casefold() in folded:
        raise QueueError(
            f"a password may not contain the user name ({user!r})",
            hint=_HINT,
        )
