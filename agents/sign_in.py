"""Agents never pay twice: a 402 for something this wallet already bought is answered by signing in.

When a 402 declares x402's ``sign-in-with-x`` extension and the agent's own
books hold a posted payment for that exact URL, the paying client
(:class:`farthing.agents.client.PaymentAuth`) signs the challenge with the
paying wallet and retries with the ``SIGN-IN-WITH-X`` header before it reserves
or signs any payment. If the seller still answers 402 (it forgot, or another
wallet paid), the client pays as usual, from that fresh 402.

The message is EIP-4361 (SIWE) text, signed with EIP-191 ``personal_sign``, as
the x402 spec and its SDK do; the address goes in its EIP-55 checksum form. The
challenge is only signed when its ``domain`` and ``uri`` are the origin of the
URL we asked for, and only on the wallet's own chain: a seller cannot make the
agent sign in for another site.

The signer must be able to sign an EIP-191 message: a ``sign_message(text)``
method, or (our :class:`~farthing.wallet.signer.LocalSigner`) a raw-hash signer
given the EIP-191 digest, checked by recovering it right after signing. A
signer with neither simply pays, as before.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak

from farthing.agents.books import AgentBooks
from farthing.agents.reservations import booked_payments
from farthing.paywall.edge.sign_in import SIGN_IN_WITH_X, siwe_message
from farthing.paywall.wire import PAYMENT_REQUIRED_HEADER
from farthing.wallet.address import checksum
from farthing.wallet.errors import AddressError

__all__ = ["SIGN_IN_HEADER_BYTES_MAX", "owned", "sign_challenge", "sign_in_header"]

SIGN_IN_HEADER_BYTES_MAX: Final = 8 * 1024  # the seller's 402 header we are willing to parse
_TEXT_FIELDS: Final = ("domain", "uri", "version", "nonce", "issuedAt")
_OPTIONAL_FIELDS: Final = ("statement", "expirationTime", "notBefore", "requestId", "resources")


def owned(books: AgentBooks, url: str) -> bool:
    """Whether these books hold a posted (settled) payment for exactly ``url``."""
    return any(p.state == "posted" and p.resource == url for p in booked_payments(books))


def _declaration(response: httpx.Response) -> Mapping[str, Any] | None:
    header = response.headers.get(PAYMENT_REQUIRED_HEADER)
    if header is None or len(header) > SIGN_IN_HEADER_BYTES_MAX:
        return None
    try:
        required = json.loads(base64.b64decode(header, validate=True))
    except (binascii.Error, ValueError):
        return None
    extensions = required.get("extensions") if isinstance(required, dict) else None
    declared = extensions.get(SIGN_IN_WITH_X) if isinstance(extensions, dict) else None
    return declared if isinstance(declared, dict) else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _sign(signer: Any, message: str) -> str | None:
    """An EIP-191 signature of ``message`` by ``signer`` (0x hex), or None if it cannot."""
    encoded = encode_defunct(text=message)
    if callable(getattr(signer, "sign_message", None)):
        raw = signer.sign_message(message)
    elif callable(getattr(signer, "unsafe_sign_hash", None)):
        # The EIP-191 digest of exactly this text: a personal_sign, not a blind hash.
        digest = keccak(b"\x19" + encoded.version + encoded.header + encoded.body)
        raw = signer.unsafe_sign_hash(digest)
    else:
        return None
    signature = "0x" + bytes(raw).hex()
    if Account.recover_message(encoded, signature=signature).lower() != signer.address.lower():
        raise RuntimeError("the signer's EIP-191 signature does not recover to its address")
    return signature


def sign_in_header(
    signer: Any, books: AgentBooks, network: str, url: str, response: httpx.Response
) -> tuple[str, str] | None:
    """The ``SIGN-IN-WITH-X`` header that answers this 402 for an owned ``url``, else None."""
    declared = _declaration(response)
    if declared is None or not owned(books, url):
        return None
    info = declared.get("info")
    chains = declared.get("supportedChains")
    if not isinstance(info, dict) or not isinstance(chains, list):
        return None
    if not any(
        isinstance(c, dict) and c.get("chainId") == network and c.get("type") == "eip191"
        for c in chains
    ):
        return None
    if not all(isinstance(info.get(k), str) for k in _TEXT_FIELDS):
        return None
    # Bound to the origin we asked: never sign in to one site on another's behalf.
    if info["domain"] != urlsplit(url).netloc or _origin(info["uri"]) != _origin(url):
        return None
    payload = sign_challenge(signer, info, network)
    if payload is None:
        return None
    encoded = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    return SIGN_IN_WITH_X.upper(), encoded


def sign_challenge(signer: Any, info: Mapping[str, Any], network: str) -> dict[str, Any] | None:
    """The signed ``SIGN-IN-WITH-X`` payload for a challenge's ``info`` on ``network``, or None."""
    if not all(isinstance(info.get(k), str) for k in _TEXT_FIELDS):
        return None
    try:
        address = checksum(signer.address)
    except AddressError:
        return None
    payload: dict[str, Any] = {k: info[k] for k in _TEXT_FIELDS}
    payload.update({k: info[k] for k in _OPTIONAL_FIELDS if info.get(k) is not None})
    payload.update({"address": address, "chainId": network, "type": "eip191"})
    try:
        signature = _sign(signer, siwe_message(payload))
    except (KeyError, TypeError, ValueError):
        return None  # a field of the wrong shape: pay as usual rather than guess
    if signature is None:
        return None
    payload["signature"] = signature
    return payload
