"""Sign-in-with-x: a payer proves control of the paying wallet and reads again for free.

This is x402's ``sign-in-with-x`` extension (``specs/extensions/`` in the x402
repository) for EVM wallets. A 402 of an article route declares, under
``extensions["sign-in-with-x"]``, an ``info`` object (``domain``, ``uri``,
``version``, ``nonce``, ``issuedAt``, ``expirationTime``, ``resources``) and
the ``supportedChains``. The client signs the EIP-4361 (SIWE) message built
from it with ``personal_sign`` (EIP-191) and retries with the base64 JSON
payload in the ``SIGN-IN-WITH-X`` header. The message text is built exactly
as the x402 SDK builds it, so its clients and ours are interchangeable.

The server checks, in this order: the header decodes; the domain and the
URI's origin are this site's; the chain is the route's network; the nonce is
one this server issued for that ``issuedAt``; the message is fresh
(``issuedAt`` under five minutes old, as the spec and the SDK default;
``expirationTime`` and ``notBefore`` respected); the signature recovers to
the address (:func:`check_sign_in`). The middleware then grants the article
only if that address has a settled payment for its path (an indexed query by
payer), and only then spends the nonce. Only EOA signatures are checked (no
EIP-1271 smart wallets yet).

The origin (the domain and URI a message must name) is the server's
configured public URL, never the request's ``Host``: the paywall offers
sign-in only when one is set (DESIGN.md §13).

Nonces: each challenge gets its own (the spec's MUST): 16 random hex digits
and a 16-hex-digit HMAC over them, the origin and ``issuedAt``, so checking one
needs no storage. A nonce is spent once, by a sign-in that opened something
(the spec's SHOULD): the paywall records it in the payment database
(``farthing.paywall.edge.nonces``), which every replica shares, until the
message could no longer be fresh. A sign-in that opens nothing (a wallet that
never paid) stores nothing. :func:`verify_sign_in` checks and spends in one
step against a process's own memory (``Receipts.first_use``), for servers
without a database.

Addresses: the spec asks clients for the EIP-55 checksum form and our clients
(the page and the agents) send it. EIP-4361 says SHOULD, and the SDK's verifier
accepts an all-lowercase address, so we accept one too (the signature covers the
text exactly as sent, so the case cannot be changed in flight); a mixed-case
address with a wrong checksum is refused, as the SDK refuses it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct

from farthing.paywall.edge.receipts import Receipts
from farthing.paywall.records.store import PaymentStore
from farthing.wallet.address import checksum
from farthing.wallet.errors import AddressError
from farthing.web import JsonBodyError, loads_bounded

__all__ = [
    "SIGN_IN_WITH_X",
    "SIWX_CLOCK_SKEW_S",
    "SIWX_HEADER_BYTES_MAX",
    "SIWX_MESSAGE_AGE_S_MAX",
    "SignIn",
    "SignInRefusal",
    "check_sign_in",
    "declare_sign_in",
    "has_paid",
    "siwe_message",
    "verify_sign_in",
]

SIGN_IN_WITH_X: Final = "sign-in-with-x"  # the extension key and the header name
SIWX_HEADER_BYTES_MAX: Final = 8 * 1024
SIWX_MESSAGE_AGE_S_MAX: Final = 300  # the spec's and the SDK's default
# Only replicas' clocks differ here (this server wrote issuedAt), so a little slack.
SIWX_CLOCK_SKEW_S: Final = 5
_CHALLENGE_LIFETIME_S: Final = 300
_NONCE_SALT_HEX: Final = 16
_STATEMENT: Final = "Sign in to read what this wallet already paid for."
_PAYLOAD_DEPTH_MAX: Final = 4  # an object holding a list of resource URIs


@dataclass(frozen=True, slots=True)
class SignIn:
    """A verified sign-in: the wallet that signed, and the nonce it may spend.

    ``nonce`` and ``fresh_until_s`` (the last second the message is fresh) are
    what a store of used nonces needs; they do not count in equality.
    """

    address: str
    nonce: str = field(default="", compare=False)
    fresh_until_s: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SignInRefusal:
    """Why a sign-in was refused (the x402 SDK's snake_case reason codes where it has one)."""

    reason: str
    message: str


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _nonce(receipts: Receipts, salt: str, origin: str, issued_at: str) -> str:
    tag: str = receipts.nonce(salt, origin, issued_at)[: 32 - _NONCE_SALT_HEX]
    return salt + tag


def _nonce_is_ours(receipts: Receipts, nonce: str, origin: str, issued_at: str) -> bool:
    if len(nonce) != 32:
        return False
    expected = _nonce(receipts, nonce[:_NONCE_SALT_HEX], origin, issued_at)
    return hmac.compare_digest(nonce.encode(), expected.encode())


def declare_sign_in(
    resource_url: str, network: str, receipts: Receipts, *, now: datetime | None = None
) -> dict[str, Any]:
    """The ``extensions["sign-in-with-x"]`` object of a 402 for ``resource_url``."""
    issued = now or datetime.now(UTC)
    issued_at = _iso(issued)
    info = {
        "domain": urlsplit(resource_url).netloc,
        "uri": resource_url,
        "statement": _STATEMENT,
        "version": "1",
        "nonce": _nonce(
            receipts, secrets.token_hex(_NONCE_SALT_HEX // 2), _origin(resource_url), issued_at
        ),
        "issuedAt": issued_at,
        "expirationTime": _iso(issued + timedelta(seconds=_CHALLENGE_LIFETIME_S)),
        "resources": [resource_url],
    }
    return {
        "info": info,
        "supportedChains": [{"chainId": network, "type": "eip191"}],
        "schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": [
                "domain",
                "address",
                "uri",
                "version",
                "chainId",
                "type",
                "nonce",
                "issuedAt",
                "signature",
            ],
        },
    }


def siwe_message(payload: Mapping[str, Any]) -> str:
    """The EIP-4361 text a wallet signs, laid out line for line as the spec (and the SDK) do."""
    chain = str(payload["chainId"])
    chain_id = chain.split(":", 1)[1] if chain.startswith("eip155:") else chain
    head = (
        f"{payload['domain']} wants you to sign in with your Ethereum account:\n"
        f"{payload['address']}"
    )
    statement = payload.get("statement")
    # EIP-4361: without a statement its line is left empty.
    head = f"{head}\n\n{statement}" if statement else head + "\n"
    lines = [
        f"URI: {payload['uri']}",
        f"Version: {payload['version']}",
        f"Chain ID: {chain_id}",
        f"Nonce: {payload['nonce']}",
        f"Issued At: {payload['issuedAt']}",
    ]
    for key, label in (
        ("expirationTime", "Expiration Time"),
        ("notBefore", "Not Before"),
        ("requestId", "Request ID"),
    ):
        if payload.get(key):
            lines.append(f"{label}: {payload[key]}")
    resources = payload.get("resources")
    if resources:
        lines.append("\n".join(["Resources:", *(f"- {r}" for r in resources)]))
    return head + "\n\n" + "\n".join(lines)


def _decode(header: str) -> dict[str, Any] | SignInRefusal:
    if len(header) > SIWX_HEADER_BYTES_MAX:
        return SignInRefusal("invalid_siwx_header", "the SIGN-IN-WITH-X header is too large")
    try:
        raw = base64.b64decode(header, validate=True)
        data = loads_bounded(raw, depth_max=_PAYLOAD_DEPTH_MAX, bytes_max=SIWX_HEADER_BYTES_MAX)
    except (binascii.Error, JsonBodyError, ValueError):
        return SignInRefusal("invalid_siwx_header", "the SIGN-IN-WITH-X header is not base64 JSON")
    required = ("domain", "address", "uri", "version", "chainId", "type", "nonce", "issuedAt")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in required):
        return SignInRefusal("invalid_siwx_header", f"the sign-in needs text fields {required}")
    if not isinstance(data.get("signature"), str):
        return SignInRefusal("invalid_siwx_header", "the sign-in has no signature")
    resources = data.get("resources")
    if resources is not None and (
        not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)
    ):
        return SignInRefusal("invalid_siwx_header", "resources must be a list of URIs")
    return data


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_sign_in(
    header: str,
    *,
    resource_url: str,
    network: str,
    receipts: Receipts,
    now: datetime | None = None,
) -> SignIn | SignInRefusal:
    """Check a ``SIGN-IN-WITH-X`` header for ``resource_url`` on ``network``; spend nothing.

    The caller spends :attr:`SignIn.nonce` (until :attr:`SignIn.fresh_until_s`)
    once the sign-in opens something, and refuses it if it was spent before.
    """
    data = _decode(header)
    if isinstance(data, SignInRefusal):
        return data
    origin = _origin(resource_url)
    if data["domain"] != urlsplit(resource_url).netloc:
        return SignInRefusal("invalid_siwx_domain_mismatch", "the message is for another site")
    if _origin(data["uri"]) != origin:
        return SignInRefusal("invalid_siwx_uri_mismatch", "the message's URI is another site's")
    if data["chainId"] != network or data["type"] != "eip191":
        return SignInRefusal("invalid_siwx_unsupported_chain", f"sign in on {network} (eip191)")
    if not _nonce_is_ours(receipts, data["nonce"], origin, data["issuedAt"]):
        return SignInRefusal("invalid_siwx_nonce", "this server did not issue that nonce")
    moment = now or datetime.now(UTC)
    issued = _time(data["issuedAt"])
    if issued is None:
        return SignInRefusal("invalid_siwx_issued_at", "issuedAt is not a timestamp")
    if issued > moment + timedelta(seconds=SIWX_CLOCK_SKEW_S):
        return SignInRefusal("invalid_siwx_issued_at_in_future", "issuedAt is in the future")
    if (moment - issued).total_seconds() > SIWX_MESSAGE_AGE_S_MAX:
        return SignInRefusal("invalid_siwx_issued_at_too_old", "the message is too old")
    expires = data.get("expirationTime")
    if expires is not None:
        expiry = _time(expires)
        if expiry is None:
            return SignInRefusal("invalid_siwx_expiration_time", "expirationTime is not a time")
        if expiry < moment:
            return SignInRefusal("invalid_siwx_expired", "the message has expired")
    not_before = data.get("notBefore")
    if not_before is not None:
        start = _time(not_before)
        if start is None:
            return SignInRefusal("invalid_siwx_not_before", "notBefore is not a timestamp")
        if moment < start:
            return SignInRefusal("invalid_siwx_not_yet_valid", "the message is not valid yet")
    try:
        address = checksum(data["address"])
    except AddressError:
        return SignInRefusal("invalid_siwx_address", "the address is not an EVM address")
    try:
        signer = Account.recover_message(
            encode_defunct(text=siwe_message(data)), signature=data["signature"]
        )
    except Exception:  # noqa: BLE001 - any undecodable signature is simply not valid
        return SignInRefusal("invalid_siwx_signature", "the signature cannot be recovered")
    if signer.lower() != address.lower():
        return SignInRefusal("invalid_siwx_signature", "the signature is not the address's")
    fresh_until_s = int(issued.timestamp()) + SIWX_MESSAGE_AGE_S_MAX + SIWX_CLOCK_SKEW_S
    return SignIn(address=address, nonce=data["nonce"], fresh_until_s=fresh_until_s)


def verify_sign_in(
    header: str,
    *,
    resource_url: str,
    network: str,
    receipts: Receipts,
    now: datetime | None = None,
) -> SignIn | SignInRefusal:
    """:func:`check_sign_in`, then spend the nonce in this process's memory (single use)."""
    signed = check_sign_in(
        header, resource_url=resource_url, network=network, receipts=receipts, now=now
    )
    if isinstance(signed, SignInRefusal):
        return signed
    moment = now or datetime.now(UTC)
    if not receipts.first_use(signed.nonce, signed.fresh_until_s, now_s=int(moment.timestamp())):
        return SignInRefusal("invalid_siwx_nonce_reused", "this sign-in was already used")
    return signed


def has_paid(store: PaymentStore, path: str, payer: str) -> bool:
    """Whether ``payer`` has a settled payment for the resource at ``path``."""
    wanted = path.rstrip("/") or "/"
    # The store finds the payer's settled rows by index; a reader owns few of them.
    return any(
        (urlsplit(record.resource).path.rstrip("/") or "/") == wanted
        for record in store.settled_by(payer)
    )
