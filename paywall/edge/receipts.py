"""Receipts: a reader who paid for an article reads it again from the same browser.

After a settled payment for an article route the paywall sets a cookie
holding a receipt: the canonical path, the payer and an expiry, signed with
HMAC-SHA256 under the server's receipt secret. A request that carries a
valid receipt for exactly its path reaches the article without a payment.

The secret is a setting, read from a file that only its owner can read
(``receipt_secret_file``); a short or well-known placeholder is refused. A
paywall started without one makes a random secret for its own lifetime, so
its receipts stop working at restart, which is safe (the reader can still sign
in with the paying wallet, see ``farthing.paywall.edge.sign_in``).

The same object makes sign-in nonces: :meth:`Receipts.nonce` is an HMAC
under the same key. :meth:`Receipts.first_use` remembers used ones in this
process until they could no longer be fresh, for servers with no database
(the jobs board's worker sign-in); the paywall keeps its used sign-in nonces
in the payment database instead (``farthing.paywall.edge.nonces``), shared by
every process.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from farthing.paywall.errors import PaywallConfigError
from farthing.paywall.keys import load_token_file
from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "RECEIPT_COOKIE_PREFIX",
    "RECEIPT_LIFETIME_S_DEFAULT",
    "RECEIPT_SECRET_BYTES_MIN",
    "Receipt",
    "ReceiptRefusal",
    "Receipts",
    "write_receipt_secret",
]

RECEIPT_COOKIE_PREFIX: Final = "farthing_receipt_"
RECEIPT_LIFETIME_S_DEFAULT: Final = 30 * 24 * 3600
RECEIPT_SECRET_BYTES_MIN: Final = 32
_TOKEN_CHARS_MAX: Final = 4096
# Secrets that appear in examples and tutorials: never good outside a test.
_PLACEHOLDERS: Final = frozenset({"changeme", "change-me", "secret", "development", "password"})


@dataclass(frozen=True, slots=True)
class Receipt:
    """A checked receipt: who paid for which path, and until when it is good."""

    path: str
    payer: str
    expires_at_s: int


@dataclass(frozen=True, slots=True)
class ReceiptRefusal:
    """Why a receipt does not open the article (a snake_case reason)."""

    reason: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Receipts:
    """Issues and checks signed, expiring receipts bound to a path and a payer."""

    def __init__(
        self,
        secret: SecretStr,
        *,
        lifetime_s: int = RECEIPT_LIFETIME_S_DEFAULT,
    ) -> None:
        value = secret.get_secret_value()
        if len(value.encode()) < RECEIPT_SECRET_BYTES_MIN:
            raise PaywallConfigError(
                f"the receipt secret must be at least {RECEIPT_SECRET_BYTES_MIN} bytes"
            )
        if value.strip().lower() in _PLACEHOLDERS or len(set(value)) < 8:
            raise PaywallConfigError("the receipt secret is a placeholder: generate a random one")
        if not 60 <= lifetime_s <= 366 * 24 * 3600:
            raise PaywallConfigError("receipt_lifetime_s must be between 60 s and a year")
        self._key = hashlib.sha256(b"farthing receipt\x00" + value.encode()).digest()
        self.lifetime_s = lifetime_s
        # sign-in nonce -> the last second it could be fresh, and the same by that second,
        # so expiry drops whole seconds (constant work per call, never a scan of all).
        self._nonces_used: dict[str, int] = {}
        self._nonces_by_second: defaultdict[int, list[str]] = defaultdict(list)
        self._nonces_swept_s: int | None = None
        self._nonces_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Receipts(lifetime_s={self.lifetime_s})"  # never the secret

    @classmethod
    def ephemeral(cls, *, lifetime_s: int = RECEIPT_LIFETIME_S_DEFAULT) -> Receipts:
        """A random secret for this process only: receipts end when it stops."""
        return cls(SecretStr(secrets.token_urlsafe(48)), lifetime_s=lifetime_s)

    @classmethod
    def from_file(cls, path: Path, *, lifetime_s: int = RECEIPT_LIFETIME_S_DEFAULT) -> Receipts:
        return cls(load_token_file(path), lifetime_s=lifetime_s)

    def cookie_name(self, path: str) -> str:
        """One cookie per article, named by its path (so a reader can own many)."""
        return RECEIPT_COOKIE_PREFIX + hashlib.sha256(path.encode()).hexdigest()[:16]

    def issue(self, path: str, payer: str, *, now_s: int | None = None) -> str:
        now = int(time.time()) if now_s is None else now_s
        body = json.dumps(
            {"p": path, "a": payer.lower(), "e": now + self.lifetime_s}, separators=(",", ":")
        ).encode()
        return _b64(body) + "." + _b64(self._mac(body))

    def check(self, token: str, path: str, *, now_s: int | None = None) -> Receipt | ReceiptRefusal:
        if len(token) > _TOKEN_CHARS_MAX or token.count(".") != 1:
            return ReceiptRefusal("receipt_malformed")
        body_text, mac_text = token.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            return ReceiptRefusal("receipt_malformed")
        if not hmac.compare_digest(mac, self._mac(body)):
            return ReceiptRefusal("receipt_signature_invalid")
        try:
            data = loads_bounded(body, depth_max=2, bytes_max=_TOKEN_CHARS_MAX)
            receipt = Receipt(
                path=str(data["p"]), payer=str(data["a"]), expires_at_s=int(data["e"])
            )
        except (JsonBodyError, ValueError, KeyError, TypeError):
            return ReceiptRefusal("receipt_malformed")
        if receipt.path != path:
            return ReceiptRefusal("receipt_for_another_resource")
        now = int(time.time()) if now_s is None else now_s
        if now >= receipt.expires_at_s:
            return ReceiptRefusal("receipt_expired")
        return receipt

    def set_cookie(self, path: str, payer: str, *, secure: bool) -> bytes:
        """A ``Set-Cookie`` value: HttpOnly (no script reads it), SameSite=Lax, Path=/."""
        attributes = [
            f"{self.cookie_name(path)}={self.issue(path, payer)}",
            "Path=/",
            f"Max-Age={self.lifetime_s}",
            "HttpOnly",
            "SameSite=Lax",
        ]
        if secure:
            attributes.append("Secure")
        return "; ".join(attributes).encode("latin-1")

    def nonce(self, *parts: str) -> str:
        """A server nonce that needs no storage: an HMAC of what it is bound to (32 hex)."""
        return hmac.new(self._key, "\x00".join(("siwx", *parts)).encode(), "sha256").hexdigest()[
            :32
        ]

    def first_use(self, nonce: str, until_s: int, *, now_s: int | None = None) -> bool:
        """Remember a sign-in nonce until ``until_s``; False only if it was used before.

        Entries are dropped a whole second at a time once that second has
        passed, so each call does constant work on average. There is no count
        limit to run into: a nonce is never refused for lack of room, and the
        memory holds at most what verified within one freshness window.
        """
        now = int(time.time()) if now_s is None else now_s
        with self._nonces_lock:
            self._expire_nonces(now)
            if nonce in self._nonces_used:
                return False
            second = max(until_s, now)  # a bucket the sweep has not passed yet
            self._nonces_used[nonce] = second
            self._nonces_by_second[second].append(nonce)
            return True

    def _expire_nonces(self, now: int) -> None:
        swept = self._nonces_swept_s
        if swept is None or now - swept > len(self._nonces_by_second):
            # First call, or a long idle gap: the buckets are fewer than the seconds.
            seconds = [s for s in self._nonces_by_second if s < now]
        else:
            seconds = [s for s in range(swept, now) if s in self._nonces_by_second]
        for second in seconds:
            for nonce in self._nonces_by_second.pop(second):
                if self._nonces_used.get(nonce) == second:
                    del self._nonces_used[nonce]
        self._nonces_swept_s = now

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()


def write_receipt_secret(path: Path) -> None:
    """A new random receipt secret, readable by its owner only."""
    path.write_text(secrets.token_urlsafe(48) + "\n", encoding="ascii")
    path.chmod(0o600)
