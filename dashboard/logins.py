"""Before a login: the login form's CSRF token and the failed-login limit, with no session.

Nothing is stored for a visitor who has not logged in, so no flood of
anonymous requests can push a logged-in session out of the store.

* **The login form's CSRF token** is stateless: the visitor's browser holds a
  random value in a cookie (HttpOnly, SameSite=Strict), and the form carries
  ``HMAC(server key, value)``. Another site can neither read the cookie nor
  compute the token, and the server keeps nothing.
* **The limit** counts login attempts per account name and per client
  address, each in a one-minute window. An attempt is counted *before* its
  password is checked (in the event loop, with no await in between), so
  concurrent guesses cannot all slip under the limit; a successful attempt is
  then taken off the count. Failures for one name do not limit another name,
  and failures from one address do not limit another address. The table of
  counters is bounded: past ``keys_max`` the least recently used goes first.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["LoginAttempt", "LoginForms", "LoginLimiter"]

_WINDOW_S: Final = 60.0
_KEYS_MAX_DEFAULT: Final = 10_000
# Names longer than this cannot exist (auth._NAME_LENGTH_MAX is 64): keep the key bounded.
_ACCOUNT_KEY_LENGTH_MAX: Final = 65
_COOKIE_VALUE_LENGTH_MAX: Final = 128


class LoginForms:
    """Stateless CSRF tokens for the login form, bound to a per-browser cookie value."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    @staticmethod
    def new_value() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def usable(value: str | None) -> bool:
        return bool(value) and len(value or "") <= _COOKIE_VALUE_LENGTH_MAX

    def token_for(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def ok(self, value: str | None, token: str | None) -> bool:
        """True when ``token`` is the form token for this browser's cookie ``value``."""
        if value is None or not self.usable(value) or not token:
            return False
        return hmac.compare_digest(self.token_for(value).encode(), token.encode())


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """One counted attempt: the counters it was added to, and in which windows."""

    keys: tuple[tuple[str, str], ...]
    windows: tuple[float, ...]


class LoginLimiter:
    """At most ``attempts_max`` failed logins a minute per account and per client."""

    def __init__(
        self,
        *,
        attempts_max: int,
        keys_max: int = _KEYS_MAX_DEFAULT,
        window_s: float = _WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts_max < 1 or keys_max < 2 or window_s <= 0:
            raise ValueError("the login limit needs attempts_max >= 1 and keys_max >= 2")
        self._attempts_max = attempts_max
        self._keys_max = keys_max
        self._window_s = window_s
        self._clock = clock
        # key -> [window start, attempts in that window]
        self._counts: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def _current(self, key: tuple[str, str], now: float) -> list[float]:
        entry = self._counts.get(key)
        if entry is None or now - entry[0] >= self._window_s:
            entry = [now, 0.0]
            self._counts[key] = entry
        self._counts.move_to_end(key)
        while len(self._counts) > self._keys_max:
            self._counts.popitem(last=False)
        return entry

    def begin(self, account: str, client: str) -> LoginAttempt | None:
        """Count an attempt before it is checked; None when either limit is reached."""
        now = self._clock()
        keys = (("account", account[:_ACCOUNT_KEY_LENGTH_MAX]), ("client", client))
        entries = [self._current(key, now) for key in keys]
        if any(entry[1] >= self._attempts_max for entry in entries):
            return None
        for entry in entries:
            entry[1] += 1
        return LoginAttempt(keys, tuple(entry[0] for entry in entries))

    def succeeded(self, attempt: LoginAttempt) -> None:
        """Take a successful attempt off the counts (it was not a failure)."""
        for key, window in zip(attempt.keys, attempt.windows, strict=True):
            entry = self._counts.get(key)
            if entry is not None and entry[0] == window and entry[1] > 0:
                entry[1] -= 1
