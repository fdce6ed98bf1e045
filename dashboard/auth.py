"""Who may look and who may decide: hashed credentials, sessions, roles and CSRF tokens.

* **Credentials** are ``NAME ROLE HASH`` entries, from the environment
  (``FARTHING_DASHBOARD_USERS``, separated by ``;``) or a file (one a line).
  The hash is ``scrypt$N$r$p$SALT$KEY`` (hex), made by
  ``farthing dashboard --hash-password``; a plain password is refused.
* **Roles**: ``viewer`` sees every page; ``approver`` may also approve or deny
  payments and run reconciliation.
* **Sessions** live in this process's memory only, behind a random 256-bit
  cookie (HttpOnly, SameSite=Strict). Only a login makes one (or, on loopback
  without credentials, the one shared session of the local operator), so
  anonymous traffic never fills the store, and a cookie planted before login
  is worthless after it.
* **Unknown names** are checked against a dummy hash with the scrypt
  parameters of the real ones (``dummy_hash``), so a wrong name costs what a
  wrong password costs.
* **CSRF**: each session holds a random token that every form carries; a POST
  without the session's token is refused before anything else happens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from farthing.dashboard.errors import DashboardConfigError
from farthing.dashboard.settings import DashboardSettings

__all__ = [
    "ROLES",
    "Role",
    "Session",
    "SessionStore",
    "User",
    "authenticate",
    "check_password",
    "csrf_ok",
    "dummy_hash",
    "hash_password",
    "load_users",
]

Role = Literal["viewer", "approver"]
ROLES: Final = ("viewer", "approver")
SCRYPT_N_DEFAULT: Final = 2**15
_SCRYPT_MAXMEM: Final = 128 * 1024 * 1024
_NAME_LENGTH_MAX: Final = 64


def hash_password(password: str, *, n: int = SCRYPT_N_DEFAULT, r: int = 8, p: int = 1) -> str:
    """The stored form of ``password``: scrypt with a fresh 16-byte salt."""
    if not password:
        raise DashboardConfigError("a password must not be empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return f"scrypt${n}${r}${p}${salt.hex()}${key.hex()}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise DashboardConfigError(
            "a credential is not an scrypt hash; make one with `farthing dashboard --hash-password`"
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = bytes.fromhex(parts[4]), bytes.fromhex(parts[5])
    except ValueError as exc:
        raise DashboardConfigError("a credential's scrypt hash is malformed") from exc
    if n < 2**10 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise DashboardConfigError("a credential's scrypt parameters are out of range")
    if len(salt) < 8 or len(key) < 16:
        raise DashboardConfigError("a credential's scrypt salt or key is too short")
    return n, r, p, salt, key


def check_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored``; compared in constant time."""
    n, r, p, salt, key = _parse_hash(stored)
    got = hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=len(key)
    )
    return hmac.compare_digest(got, key)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    password_hash: str = field(repr=False)

    def check(self, password: str) -> bool:
        return check_password(password, self.password_hash)


def _parse_entry(text: str, where: str) -> User:
    fields = text.split()
    if len(fields) != 3:
        raise DashboardConfigError(f"{where}: want `NAME ROLE HASH`, found {len(fields)} field(s)")
    name, role, stored = fields
    plain = name.replace("-", "").replace("_", "").replace(".", "")
    if len(name) > _NAME_LENGTH_MAX or not plain.isascii() or not plain.isalnum():
        raise DashboardConfigError(f"{where}: a user name is letters, digits, '-', '_' and '.'")
    if role not in ROLES:
        raise DashboardConfigError(f"{where}: the role must be viewer or approver, not {role!r}")
    _parse_hash(stored)
    return User(name, role, stored)  # type: ignore[arg-type]


def load_users(settings: DashboardSettings) -> dict[str, User]:
    """Every configured user, by name; none means nobody can log in."""
    entries: list[tuple[str, str]] = []
    if settings.users is not None:
        for i, text in enumerate(settings.users.get_secret_value().split(";"), 1):
            if text.strip():
                entries.append((text, f"FARTHING_DASHBOARD_USERS entry {i}"))
    if settings.users_file is not None:
        path = Path(settings.users_file).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise DashboardConfigError(
                f"cannot read the users file {path}: {exc.strerror}"
            ) from exc
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append((line, f"{path} line {number}"))
    users: dict[str, User] = {}
    for text, where in entries:
        user = _parse_entry(text, where)
        if user.name in users:
            raise DashboardConfigError(f"{where}: user {user.name!r} is defined twice")
        users[user.name] = user
    return users


def dummy_hash(users: dict[str, User]) -> str:
    """A hash with the scrypt parameters, salt and key sizes most users' hashes have.

    Checked when a name is unknown, so a wrong name costs as long as a wrong
    password (with the default parameters when there are no users).
    """
    shapes = Counter(
        (n, r, p, len(salt), len(key))
        for n, r, p, salt, key in (_parse_hash(u.password_hash) for u in users.values())
    )
    n, r, p, salt_len, key_len = (
        shapes.most_common(1)[0][0] if shapes else (SCRYPT_N_DEFAULT, 8, 1, 16, 32)
    )
    return f"scrypt${n}${r}${p}${'00' * salt_len}${'00' * key_len}"


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user whose name and password these are, or None (taking as long either way)."""
    user = users.get(name)
    if user is None:
        check_password(password, dummy_hash(users))
        return None
    return user if user.check(password) else None


@dataclass(slots=True)
class Session:
    """One browser's session: anonymous until it logs in."""

    token: str
    csrf: str
    expires_at: float
    user: str | None = None
    role: Role | None = None

    def may_decide(self) -> bool:
        return self.role == "approver"


class SessionStore:
    """Sessions in memory, bounded in number and in age."""

    def __init__(self, *, ttl_s: int, count_max: int, clock: object = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._count_max = count_max
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def new(self, *, user: str | None = None, role: Role | None = None) -> Session:
        while len(self._sessions) >= self._count_max:
            self._sessions.popitem(last=False)
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires_at=self._now() + self._ttl_s,
            user=user,
            role=role,
        )
        self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires_at <= self._now():
            del self._sessions[token]
            return None
        return session

    def drop(self, token: str) -> None:
        self._sessions.pop(token, None)


def csrf_ok(session: Session | None, token: str | None) -> bool:
    """True when ``token`` is this session's CSRF token."""
    if session is None or not token:
        return False
    return hmac.compare_digest(session.csrf.encode(), token.encode())
