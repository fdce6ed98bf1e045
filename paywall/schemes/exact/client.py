"""The ``exact`` scheme's client part: the EIP-3009 payment for a seller's terms, and its header.

The payer decides (which offer, whether to pay at all), makes the payment's
id and nonce and reserves the money. This module turns the chosen
requirements into the ``transferWithAuthorization`` terms
(:func:`authorization_for`, or :func:`authorization_again` for a payment
re-presented byte for byte) and wraps the signed authorization in the x402
payment header (:func:`payment_header`: v2's ``PAYMENT-SIGNATURE``, or v1's
``X-PAYMENT``). The signing itself is the wallet's
(``farthing.wallet.eip3009.sign_authorization``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from farthing.paywall.wire import (
    PAYMENT_SIGNATURE_HEADER,
    X402_VERSION,
    PaymentRequirements,
    b64_json,
)
from farthing.wallet.eip3009 import Authorization, SignedAuthorization, build_authorization

__all__ = ["X_PAYMENT_HEADER", "authorization_again", "authorization_for", "payment_header"]

X_PAYMENT_HEADER: Final = "X-PAYMENT"  # x402 v1's payment header


def authorization_for(
    requirements: PaymentRequirements,
    *,
    payer: str,
    nonce: bytes,
    now: int,
    valid_for_s: int,
) -> Authorization:
    """The terms that pay ``requirements`` from ``payer``.

    Valid from ``now`` (the chain's clock) for ``valid_for_s``, and never
    longer than the offer's ``maxTimeoutSeconds``.
    """
    return build_authorization(
        from_address=payer,
        to=requirements.pay_to,
        value=requirements.amount,
        valid_for_s=min(valid_for_s, requirements.max_timeout_seconds),
        now=now,
        nonce=nonce,
    )


def authorization_again(
    requirements: PaymentRequirements,
    *,
    payer: str,
    nonce: bytes,
    valid_after: int,
    valid_before: int,
) -> Authorization:
    """An earlier payment's terms, rebuilt from what was saved before it was signed.

    Signing is deterministic (RFC 6979): the same terms sign to the same bytes.
    """
    return Authorization(
        from_address=payer,
        to=requirements.pay_to,
        value=requirements.amount,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=nonce,
    )


def payment_header(
    signed: SignedAuthorization,
    requirements: PaymentRequirements,
    *,
    x402_version: int,
    wire_network: str,
    accepted: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    url: str,
) -> tuple[str, str]:
    """The header (name, value) that carries ``signed`` to the seller.

    v1 echoes the scheme and the network as the seller spelled it
    (``wire_network``). v2 echoes the offer exactly as it was sent
    (``accepted``, or the requirements when it was not kept), and the
    challenge's resource object (or ``{"url": url}`` when it sent none).
    """
    if x402_version == 1:
        payload = {
            "x402Version": 1,
            "scheme": requirements.scheme,
            "network": wire_network,
            "payload": signed.to_wire(),
        }
        return X_PAYMENT_HEADER, b64_json(payload)
    body: dict[str, object] = {
        "x402Version": X402_VERSION,
        "payload": signed.to_wire(),
        "accepted": dict(accepted) or requirements.to_wire(),
        "resource": dict(resource) if resource else {"url": url},
    }
    return PAYMENT_SIGNATURE_HEADER, b64_json(body)
