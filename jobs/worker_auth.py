"""Workers sign in with their wallet: a SIWE challenge, then a signed session bound to the address.

There are no passwords. ``farthing jobs serve`` hands out an EIP-4361 (SIWE)
challenge built the way x402's ``sign-in-with-x`` builds it
(:mod:`farthing.paywall.edge.sign_in`): its nonce is an HMAC under the server's secret,
so a challenge needs no storage, and a used nonce is remembered until the
message could no longer be fresh, so a signed message signs in once. The
wallet signs the message with ``personal_sign`` (EIP-191): a browser through
EIP-1193, a worker agent with its own key. The server rebuilds the text from
the fields, recovers the signer and checks it is the address claimed.

A verified sign-in becomes a **session token**: the address and an expiry,
signed with HMAC-SHA256 under a key derived from the same secret. It travels
as an HttpOnly, SameSite=Strict cookie (pages) or as ``Authorization: Bearer``
(agents). Nothing is stored, so a token stays good until it expires; keep
``session_lifetime_s`` short. The **CSRF token** of a session is an HMAC of
its token, so every form can carry one without server state.

The secret is read from a private file (``--session-secret-file``); without
one a random secret lives as long as the process, and sessions end with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.edge.sign_in import SignInRefusal, declare_sign_in, verify_sign_in
from farthing.paywall.keys import load_token_file
from farthing.wallet.address import checksum, is_address
from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "SESSION_LIFETIME_S_DEFAULT",
    "WORKER_STATEMENT",
    "WorkerSession",
    "WorkerSessions",
]

SESSION_LIFETIME_S_DEFAULT: Final = 12 * 3600
WORKER_STATEMENT: Final = "Sign in to Farthing jobs as a worker. This costs nothing."
_TOKEN_CHARS_MAX: Final = 1024


@dataclass(frozen=True, slots=True)
class WorkerSession:
    """A signed-in worker: the wallet address, until when, and the token that proves it."""

    address: str
    expires_at_s: int
    token: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class WorkerSessions:
    """Challenges, sign-in verification, and the signed session and CSRF tokens."""

    def __init__(self, secret: SecretStr, *, lifetime_s: int = SESSION_LIFETIME_S_DEFAULT) -> None:
        if not 60 <= lifetime_s <= 30 * 86_400:
            raise ValueError("session_lifetime_s must be between 60 s and 30 days")
        # Receipts checks the secret (length, placeholders) and owns the sign-in nonces.
        self._nonces = Receipts(secret, lifetime_s=max(lifetime_s, 60))
        self._key = hashlib.sha256(
            b"farthing jobs session\x00" + secret.get_secret_value().encode()
        ).digest()
        self.lifetime_s = lifetime_s

    def __repr__(self) -> str:
        return f"WorkerSessions(lifetime_s={self.lifetime_s})"  # never the secret

    @classmethod
    def ephemeral(cls, *, lifetime_s: int = SESSION_LIFETIME_S_DEFAULT) -> WorkerSessions:
        """A random secret for this process only: sessions end when it stops."""
        return cls(SecretStr(secrets.token_urlsafe(48)), lifetime_s=lifetime_s)

    @classmethod
    def from_file(
        cls, path: Path, *, lifetime_s: int = SESSION_LIFETIME_S_DEFAULT
    ) -> WorkerSessions:
        return cls(load_token_file(path), lifetime_s=lifetime_s)

    # ------------------------------------------------------------ sign-in

    def challenge(self, site_url: str, network: str) -> dict[str, Any]:
        """The ``sign-in-with-x`` object a worker signs: ``info`` and ``supportedChains``."""
        declared = declare_sign_in(site_url, network, self._nonces)
        declared["info"]["statement"] = WORKER_STATEMENT
        declared.pop("schema", None)
        return declared

    def sign_in(
        self, payload: dict[str, Any], *, site_url: str, network: str, now_s: int | None = None
    ) -> WorkerSession | tuple[str, str]:
        """A session for a signed challenge, or ``(reason, message)`` when it is refused."""
        if payload.get("statement") != WORKER_STATEMENT:
            return ("invalid_siwx_statement", "sign the statement this server gave")
        header = base64.b64encode(json.dumps(payload).encode()).decode("ascii")
        moment = None if now_s is None else datetime.fromtimestamp(now_s, UTC)
        verified = verify_sign_in(
            header, resource_url=site_url, network=network, receipts=self._nonces, now=moment
        )
        if isinstance(verified, SignInRefusal):
            return (verified.reason, verified.message)
        return self.issue(verified.address, now_s=now_s)

    # ------------------------------------------------------------ tokens

    def issue(self, address: str, *, now_s: int | None = None) -> WorkerSession:
        now = int(time.time()) if now_s is None else now_s
        expires = now + self.lifetime_s
        body = json.dumps(
            {"a": checksum(address), "e": expires, "r": secrets.token_hex(8)},
            separators=(",", ":"),
        ).encode()
        token = _b64(body) + "." + _b64(self._mac(b"session\x00" + body))
        return WorkerSession(checksum(address), expires, token)

    def check(self, token: str | None, *, now_s: int | None = None) -> WorkerSession | None:
        """The session a token proves, or None (malformed, forged or expired)."""
        if not token or len(token) > _TOKEN_CHARS_MAX or token.count(".") != 1:
            return None
        body_text, mac_text = token.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac(b"session\x00" + body)):
            return None
        try:
            # Signed by us, yet parsed as any body is: bounded first (DESIGN.md §13).
            data = loads_bounded(body, depth_max=1, bytes_max=_TOKEN_CHARS_MAX)
            address, expires = data["a"], data["e"]
        except (JsonBodyError, KeyError, TypeError):
            return None
        if not isinstance(address, str) or not is_address(address) or type(expires) is not int:
            return None
        now = int(time.time()) if now_s is None else now_s
        if now >= expires:
            return None
        return WorkerSession(checksum(address), expires, token)

    def csrf(self, session: WorkerSession) -> str:
        """The CSRF token every form of this session carries."""
        return _b64(self._mac(b"csrf\x00" + session.token.encode()))[:32]

    def csrf_ok(self, session: WorkerSession | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf(session).encode(), token.encode())

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()
